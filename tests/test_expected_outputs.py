"""The shipped own set's outputs on committed synthetic inputs match the committed expected
outputs (tests/make_expected.py made them), so a refactor that changes any result is caught
on a fresh clone without ../shared.

Integers, strings, counts, keys and order must match exactly; floats to 1e-4 absolute (px,
scores, degrees), which allows for last-bit differences of ONNX Runtime kernels between CPUs
but not for any real change of a result.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_expected as E  # noqa: E402

FLOAT_TOL = 1e-4


def _diff(expected, got, where="$"):
    """First difference between two JSON values, as a string, or None."""
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        return None if expected == got else f"{where}: expected {expected!r}, got {got!r}"
    if isinstance(expected, (int, float)):
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return f"{where}: expected a number {expected!r}, got {got!r}"
        if isinstance(expected, int) and isinstance(got, int):
            return None if expected == got else f"{where}: expected {expected}, got {got}"
        if math.isclose(expected, got, rel_tol=0.0, abs_tol=FLOAT_TOL):
            return None
        return f"{where}: expected {expected!r}, got {got!r}"
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return f"{where}: expected a list of {len(expected)}, got {got!r:.80}"
        for i, (a, b) in enumerate(zip(expected, got)):
            d = _diff(a, b, f"{where}[{i}]")
            if d:
                return d
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or list(got) != list(expected):
            return f"{where}: keys {list(expected)} expected, got {list(got) if isinstance(got, dict) else got!r}"
        for k in expected:
            d = _diff(expected[k], got[k], f"{where}.{k}")
            if d:
                return d
        return None
    raise TypeError(f"{where}: unexpected JSON value {expected!r}")


def test_comparison_catches_changes():
    doc = {"count": 2, "items": [{"score": 0.5, "center": [3, 4]}], "models": "x"}
    assert _diff(doc, json.loads(json.dumps(doc))) is None
    assert _diff(doc, {**doc, "count": 3})
    assert _diff(doc, {**doc, "items": [{"score": 0.5002, "center": [3, 4]}]})
    assert _diff(doc, {**doc, "items": [{"score": 0.5, "center": [3, 5]}]})
    assert _diff(doc, {**doc, "items": []})
    assert _diff(doc, {"models": "x", "count": 2, "items": doc["items"]})  # key order


@pytest.mark.parametrize("case", sorted(E.CASES))
def test_own_set_outputs_match_the_committed_expected(case):
    expected = json.loads((E.DATA / f"{case}.json").read_text())
    got = E.comparable(E.run_case(case))
    got = json.loads(json.dumps(got, sort_keys=True))  # the stored form: keys sorted
    assert expected["count"] > 0  # every case finds targets
    d = _diff(expected, got)
    assert d is None, f"{case}: {d} (if intended, rerun tests/make_expected.py and say why)"
