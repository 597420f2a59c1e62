"""Helpers shared by the CLI tests (crafted images, a stand-in pipeline, running the CLI) and
checks of the published JSON schema."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from conftest import REPO

VENV_BIN = Path(sys.executable).parent
PTOLEMY = VENV_BIN / "ptolemy"


def write_mrc(path, data, voxel_a=None):
    """An MRC file holding `data` ([row, col] or [section, row, col]); voxel size in Å."""
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data))
        if voxel_a is not None:
            m.voxel_size = voxel_a
    return Path(path)


def good_image(seed=0, shape=(128, 160)):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 100).astype(np.float32)


def fake_pipeline(kind, image, models, options=None):
    """Stand-in for find_squares / find_holes (`batch.run_pipeline`) while exercising the
    command line: a fixed, deterministic result derived from the image (empty when the
    image's mean is below 10; lowmag normalisation: `options.norm`, else (50.0, 10.0) from the
    "image"). options: the kind's pipeline options (None: the defaults)."""
    from ptolemy_rt.options import pipeline_options
    from ptolemy_rt.results import Hole, HoleResult, Square, SquareResult

    options = pipeline_options(kind, options)
    batchnorm = options.batchnorm

    px = image.pixels
    h, w = px.shape
    empty = float(px.mean()) < 10.0
    boxes = [((10.5, 20.25), (60.5, 20.25), (60.5, 70.25), (10.5, 70.25)),
             ((70.0, 30.0), (110.0, 30.0), (110.0, 70.0), (70.0, 70.0)),
             ((20.0, 80.0), (40.0, 80.0), (40.0, 100.0), (20.0, 100.0))]
    scores = [0.9, 0.125, 0.5]
    if kind == "lowmag":
        sq = [] if empty else [Square(b, (int(round(sum(x for x, _ in b) / 4)), int(round(sum(y for _, y in b) / 4))),
                                      float((b[1][0] - b[0][0]) * (b[2][1] - b[1][1])), float(px.mean()) + i, s)
                               for i, (b, s) in enumerate(zip(boxes, scores))]
        sq.sort(key=lambda t: -t.score)
        norm = options.norm
        return SquareResult(sq, (h, w), 12.5, batchnorm, models or "fake-set",
                            "the mixture model found no bright squares" if empty else None, {"all": 0.01},
                            options.crop_grid,
                            None if empty and norm is None else (norm or (50.0, 10.0)),
                            "image" if norm is None else "given")
    ho = [] if empty else [Hole(b, (int(round(sum(x for x, _ in b) / 4)), int(round(sum(y for _, y in b) / 4))),
                                float((b[1][0] - b[0][0]) * (b[2][1] - b[1][1])), s)
                           for b, s in zip(boxes, scores)]
    ho.sort(key=lambda t: -t.score)
    return HoleResult(ho, (h, w), 30.0, 45.0 if not empty else None, batchnorm, models or "fake-set",
                      "fewer than 2 hole regions: no lattice" if empty else None, {"all": 0.01})


@pytest.fixture
def fake(monkeypatch):
    """Replace the pipelines and the model-set loading by `fake_pipeline` (in this process)."""
    from ptolemy_rt import batch

    monkeypatch.setattr(batch, "run_pipeline", fake_pipeline)
    monkeypatch.setattr(batch, "model_set", lambda name: None)
    return fake_pipeline


def run_inproc(argv, capsys):
    """Run the CLI in this process; returns (exit code, stdout, stderr)."""
    from ptolemy_rt.cli import run

    code = run([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def run_cli(*args, env=None, cwd=None, timeout=600):
    """Run the installed `ptolemy` command in a subprocess; returns CompletedProcess."""
    e = dict(os.environ)
    e.pop("PTOLEMY_DEBUG", None)
    if env:
        e.update(env)
    cmd = [str(PTOLEMY)] if PTOLEMY.exists() else [sys.executable, "-m", "ptolemy_rt.cli"]
    return subprocess.run([*cmd, *[str(a) for a in args]], capture_output=True, text=True,
                          env=e, cwd=cwd or REPO, timeout=timeout)


def assert_one_error_line(err: str, *words: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ptolemy: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w.lower() in lines[0].lower(), (w, err)
    return lines[0]


def check_published_schema(data, kind: str) -> None:
    """`data` (parsed JSON) is a list of targets in the published schema and key order."""
    assert isinstance(data, list)
    keys = ["vertices", "center", "area", "brightness", "score"] if kind == "lowmag" else \
        ["vertices", "center", "area", "score"]
    for d in data:
        assert list(d.keys()) == keys
        assert len(d["vertices"]) == 4
        assert all(len(v) == 2 and all(isinstance(c, float) for c in v) for v in d["vertices"])
        assert len(d["center"]) == 2 and all(isinstance(c, int) for c in d["center"])
        assert isinstance(d["area"], float) and isinstance(d["score"], float)
        if kind == "lowmag":
            assert isinstance(d["brightness"], float)
    scores = [d["score"] for d in data]
    assert scores == sorted(scores, reverse=True)


def test_fake_pipeline_is_sorted():
    from ptolemy_rt.io import validate_array

    img = validate_array(good_image())
    for kind in ("lowmag", "medmag"):
        r = fake_pipeline(kind, img, None)
        ts = r.squares if kind == "lowmag" else r.holes
        assert [t.score for t in ts] == [0.9, 0.5, 0.125]


def _have_pipelines(name=None) -> bool:
    try:
        import ptolemy_rt.lowmag  # noqa: F401
        import ptolemy_rt.medmag  # noqa: F401
        from ptolemy_rt.models import load_model_set

        load_model_set(name)
        return True
    except Exception:
        return False


HAVE_PIPELINES = _have_pipelines()
needs_models = pytest.mark.skipif(not HAVE_PIPELINES, reason="pipelines or default model set not available (make models)")
