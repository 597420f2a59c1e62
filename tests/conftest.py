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
