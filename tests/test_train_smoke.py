"""`export/train.py` end to end at toy size: trains all three models on synthetic data,
exports a model set the runtime loads and runs, and is reproducible from its seed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytest.importorskip("torch")
pytest.importorskip("onnx")

TOY = ["--square-atlases", "2", "--square-epochs", "1", "--hole-images", "2", "--hole-epochs", "1",
       "--unet-images", "2", "--unet-steps", "3", "--unet-patch", "128", "--calib-images", "1"]


def _train(workdir, out):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "export.train", "--out", str(out), "--seed", "3", *TOY],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    return json.loads((out / "manifest.json").read_text())


def _assert_usage_error(workdir, env, bad_args):
    """export.train with bad_args: exit 2, a usage error naming the option, no traceback,
    no output folder."""
    proc = subprocess.run([sys.executable, "-m", "export.train", "--out", str(workdir / "x"), *bad_args],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-800:]
    assert bad_args[0] in proc.stderr and not (workdir / "x").exists()


def _part_hashes(manifest):
    return {(k, r): p["sha256"] for k, m in manifest["models"].items() for r, p in m["parts"].items()}


def test_toy_training_exports_a_working_reproducible_set(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    root = tmp_path / "sets"
    man_a = _train(a, root / "toy-a")
    man_b = _train(b, root / "toy-b")
    assert set(man_a["models"]) == {"square_classifier", "hole_classifier", "hole_unet"}
    assert _part_hashes(man_a) == _part_hashes(man_b), "same seed must give the same networks"

    code = (
        "from ptolemy_rt import synthetic, find_squares, find_holes\n"
        "img, truth = synthetic.atlas(5, (1024, 1024))\n"
        "sq = find_squares(img, models='toy-a')\n"
        "assert all(0.0 <= s.score <= 1.0 for s in sq.squares)\n"
        "assert len(sq.squares) >= 0.8 * len([t for t in truth if t.label != 'edge'])\n"
        "img, truth = synthetic.medmag_image(5, (1024, 1440))\n"
        "ho = find_holes(img, models='toy-a')\n"
        "assert ho.holes or ho.reason\n"
        "print(len(sq.squares), len(ho.holes))\n"
    )
    env = dict(os.environ, PTOLEMY_MODELS_DIR=str(root))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_fine_tune_steps_record_their_start_and_refuse_missing_checkpoints(tmp_path):
    """The recipe's fine-tune steps (`--hole-init/--hole-lr`, `--unet-init/--unet-sigma-max`)
    start from the given checkpoint and say so in the manifest; a missing checkpoint or a
    non-positive rate is a one-line usage error (exit 2), not a traceback."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = tmp_path / "sets" / "toy"
    _train(tmp_path, out)
    cache = tmp_path / "build" / "train-cache"
    start = tmp_path / "start.pt"
    start.write_bytes((cache / "hole_classifier.pt").read_bytes())
    ustart = tmp_path / "ustart.pt"
    ustart.write_bytes((cache / "hole_unet.pt").read_bytes())
    proc = subprocess.run([sys.executable, "-m", "export.train", "--out", str(out), "--seed", "3", *TOY,
                           "--only", "hole_classifier,hole_unet", "--hole-init", str(start), "--hole-lr", "1e-4",
                           "--unet-init", str(ustart), "--unet-sigma-max", "2", "--unet-lr", "3e-4"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-1500:]
    tr = json.loads((out / "manifest.json").read_text())["training"]
    assert tr["hole_classifier"]["init"]["from"] == str(start) and tr["hole_classifier"]["lr"] == 1e-4
    assert tr["hole_unet"]["init"]["from"] == str(ustart)
    assert tr["hole_unet"]["blur_sigma_max_px"] == 2.0 and tr["hole_unet"]["blur_sigma_px"] <= 2.0
    for bad in (["--hole-init", str(tmp_path / "missing.pt")], ["--unet-lr", "0"]):
        _assert_usage_error(tmp_path, env, bad)


def test_hole_classifier_options_are_recorded_and_bad_values_refused(tmp_path):
    """`--hole-channels` sets the trained (and exported) width, `--hole-schedule cosine`,
    `--hole-pooling centre` / `--hole-centre-sigma` and `--hole-gold-extra` are written to the
    step's record; an unknown schedule or head, a width < 1, a gold fraction outside [0, 1]
    or a sigma ≤ 0 is a usage error (exit 2)."""
    torch = pytest.importorskip("torch")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "export.train", "--out", str(tmp_path / "toy"), "--seed", "3", *TOY,
                           "--only", "hole_classifier", "--hole-channels", "8", "--hole-schedule", "cosine",
                           "--hole-pooling", "centre", "--hole-centre-sigma", "0.2", "--hole-gold-extra", "1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-1500:]
    ck = torch.load(tmp_path / "build" / "train-cache" / "hole_classifier.pt", map_location="cpu")
    assert ck["arch"]["channels"] == 8 and ck["state"]["convs.1.weight"].shape[:2] == (8, 8)
    assert ck["arch"]["crop_normalisation"] == "image"
    assert ck["info"]["schedule"] == "cosine" and ck["info"]["steps"] > 0
    assert ck["arch"]["pooling"] == "centre" and ck["arch"]["centre_sigma"] == 0.2
    assert ck["info"]["pooling"] == "centre" and ck["info"]["data"]["gold_extra"] == 1.0
    for bad in (["--hole-schedule", "linear"], ["--hole-channels", "0"], ["--hole-pooling", "max"],
                ["--hole-gold-extra", "1.5"], ["--hole-centre-sigma", "0"]):
        _assert_usage_error(tmp_path, env, bad)


def test_hole_fusion_step_writes_a_set_the_runtime_scores_with(tmp_path):
    """--only hole_fusion on the own set: the new set is the base's parts plus a fitted
    score_fusion and its training record; it loads, and its hole scores are the fused ones."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PTOLEMY_MODELS_DIR=str(tmp_path))
    out = tmp_path / "fused-toy"
    base = REPO / "onnx_models" / "ptolemy-rt-synth-v1"
    proc = subprocess.run([sys.executable, "-m", "export.train", "--only", "hole_fusion", "--hole-images", "3",
                           "--no-fusion-eval", "--fusion-base", str(base), "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    man = json.loads((out / "manifest.json").read_text())
    old = json.loads((base / "manifest.json").read_text())
    assert man["name"] == "fused-toy" and _part_hashes(man) == _part_hashes(old)
    fusion = man["models"]["hole_classifier"]["score_fusion"]
    assert fusion["features"] == ["cnn_logit", "level_dev", "contrast_dev", "log_texture"]
    assert fusion["weights"][0] > 0  # the classifier's logit still counts for a good hole
    rec = man["training"]["hole_fusion"]
    assert rec["base"]["name"] == "ptolemy-rt-synth-v1" and rec["n_crops"] > 10 and "heldout_auc" not in rec
    code = ("from ptolemy_rt import synthetic, find_holes\n"
            "img, truth = synthetic.medmag_image(5, (1024, 1440))\n"
            "a = find_holes(img, models='fused-toy')\n"
            "assert a.holes and all(0.0 <= h.score <= 1.0 for h in a.holes)\n"
            "print(len(a.holes))\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-1500:]
    bad = subprocess.run([sys.executable, "-m", "export.train", "--only", "hole_fusion,hole_unet", "--out", str(tmp_path / "x")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--only hole_fusion" in bad.stderr and not (tmp_path / "x").exists()
