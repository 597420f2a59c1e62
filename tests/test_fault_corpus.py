"""The fault corpus (tests/faults.py) through the command line: every crafted input, output
path, signal moment, batch collision and corrupt model set gives its documented exit code,
one ``ptolemy: error:`` line, no traceback, no partial or changed output and no process left.

All selected cases run once, two at a time, in a module fixture (about a minute on two idle
cores); each case is then its own test. The summary line is printed by
`conftest.pytest_terminal_summary`. Cases of the published model set skip without it (it is
built from ../shared).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

if os.name != "posix":  # process groups, FIFOs, /dev/full, RLIMIT_FSIZE
    pytest.skip("the fault corpus needs a POSIX system", allow_module_level=True)

import faults  # noqa: E402
from conftest import REPO, SHARED  # noqa: E402
from ptolemy_rt.models import OWN_SET  # noqa: E402

PUBLISHED = SHARED.is_dir() and (REPO / "onnx_models" / faults.PUBLISHED_SET / "manifest.json").is_file()
CASES = {c.name: c for c in faults.cases(published=True)}
WORKERS = 2


def _needs_published(case) -> bool:
    return faults.PUBLISHED_SET in case.name


@pytest.fixture(scope="module")
def corpus(request, tmp_path_factory):
    """Run every selected case (two at a time); name → Verdict, or the reason it skipped."""
    wanted = [it.callspec.params["name"] for it in request.session.items
              if getattr(it, "originalname", None) == "test_fault_case" and hasattr(it, "callspec")]
    root = tmp_path_factory.mktemp("fault-corpus")
    out: dict = {}

    def one(item):
        i, name = item
        case = CASES[name]
        if _needs_published(case) and not PUBLISHED:
            return name, "the published model set is not built (needs ../shared; `make models`)"
        try:
            v = faults.run_and_judge(case, root / f"{i:03d}")
        except faults.Skip as e:
            return name, str(e)
        faults.record(v)
        return name, v

    with ThreadPoolExecutor(WORKERS) as ex:
        for name, v in ex.map(one, enumerate(wanted)):
            out[name] = v
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_fault_case(name, corpus):
    v = corpus[name]
    if isinstance(v, str):
        pytest.skip(v)
    assert v.ok, f"{name}: {'; '.join(v.problems)}\n--- stderr ---\n{v.result.stderr[-2000:]}"


def test_corpus_covers_every_kind():
    """The corpus holds every family the issue lists (a guard against cases silently dropped)."""
    names = list(CASES)
    for prefix in ("mrc/", "input/", "output/", "option/", "batch/", "models/", "signal/", "plot/", "demo/"):
        assert any(n.startswith(prefix) for n in names), prefix
    for must in ("mrc/empty-file", "mrc/truncated-header", "mrc/truncated-data", "mrc/bad-mode-map",
                 "mrc/negative-nx", "mrc/zero-nx", "mrc/huge-dims", "mrc/nz-zero", "mrc/nan-pixel", "mrc/inf-pixel",
                 "mrc/constant", "mrc/ext-header-wrong-size", "mrc/garbage", "input/directory", "input/unreadable",
                 "output/missing-folder", "output/read-only-folder", "output/dev-full", "output/fsize-limit-plot",
                 "output/fifo", "output/dev-null", "output/symlink", "output/the-input", "batch/colliding-names",
                 f"models/{OWN_SET}/missing-onnx", f"models/{OWN_SET}/bad-manifest",
                 f"models/{OWN_SET}/digest-mismatch"):
        assert any(n.startswith(must) for n in names), must
    moments = {n.split("/")[3] for n in names if n.startswith("signal/default/")}
    assert {"start-up", "model-load", "compute"} <= moments
