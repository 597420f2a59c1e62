"""`ptolemy evaluate`: paper metrics of the default (own) model set on a tiny labelled folder."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from conftest import REPO
from export.evalset import atlas_points
from ptolemy_rt import synthetic
from ptolemy_rt.labels import write_dataset


def test_evaluate_command_prints_table_and_writes_json(tmp_path):
    def atlases():
        for seed in (9_500_000, 9_500_001):
            img, truth = synthetic.atlas(seed, (1024, 1024))
            yield f"atlas_{seed}", img, atlas_points(truth, img.shape)

    data = write_dataset(tmp_path / "lowmag", "lowmag", atlases(), points="all", dtype=np.int16)
    out = tmp_path / "metrics.json"
    proc = subprocess.run([sys.executable, "-m", "ptolemy_rt.cli", "evaluate", str(data), "-o", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "square localisation recall" in proc.stdout
    metrics = json.loads(out.read_text())
    loc = metrics["lowmag"]["square_localisation"]
    assert loc["labelled"] > 20
    # the own model set finds (nearly) every non-edge square of its own synthetic atlases
    assert loc["recall"] >= 0.95
    assert 0.0 <= metrics["lowmag"]["square_classification"]["roc_auc"] <= 1.0


def test_evaluate_command_bad_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ptolemy_rt.cli", "evaluate", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and str(tmp_path) in proc.stderr
