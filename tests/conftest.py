"""Shared test fixtures: paths to the published material beside the repo (../shared)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PTOLEMY_SHARED", REPO.parent / "shared")) / "ptolemy-2022"
IMAGES = SHARED / "images"
REFERENCE = SHARED / "reference"
WEIGHTS = SHARED / "weights"
LOWMAG_MRC = IMAGES / "lowmag_20may08a_16760340.mrc"
MEDMAG_MRC = IMAGES / "medmag_readme_1024x1440.mrc"

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/ptolemy-2022 not present")


# ------------------------------------------------------------------ property-based fuzzing
# Profiles of hypothesis (tests/test_fuzz.py): "ci" (a few hundred examples per target, the
# default in `make test`) and "fuzz" (10 000 per target, `make fuzz`; PTOLEMY_FUZZ_EXAMPLES
# changes the number); HYPOTHESIS_PROFILE chooses. Without hypothesis installed the fuzz tests skip.
try:
    from hypothesis import HealthCheck, settings

    _SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=_SLOW_OK,
                              derandomize=True, database=None)
    settings.register_profile("fuzz", max_examples=int(os.environ.get("PTOLEMY_FUZZ_EXAMPLES", "10000")),
                              deadline=None, suppress_health_check=_SLOW_OK, database=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover - the [test] extra lists hypothesis
    pass


# ------------------------------------------------------------------ the fault corpus summary

def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line for the fault corpus (tests/test_fault_corpus.py) when it ran."""
    import sys

    corpus = sys.modules.get("faults")
    stats = getattr(corpus, "STATS", None)
    if stats and stats.get("cases"):
        terminalreporter.write_line(corpus.summary_line())
