"""The command line with the real pipelines and model sets on the example images (skipped when
the model set is not built or ../shared is absent)."""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from conftest import LOWMAG_MRC, MEDMAG_MRC, REFERENCE, needs_shared
from test_cli_common import _have_pipelines, assert_one_error_line, check_published_schema, needs_models, run_cli

needs_published = pytest.mark.skipif(not _have_pipelines("ptolemy-2022"),
                                     reason="published model set not built (make models)")


@needs_shared
@needs_models
def test_lowmag_real_json_on_stdout():
    p = run_cli("lowmag", "-f", "json", LOWMAG_MRC)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # the example's 1 Å header is the unset placeholder: no warning
    data = json.loads(p.stdout)
    check_published_schema(data, "lowmag")
    assert len(data) > 10
    for d in data:
        assert 0 <= d["center"][0] < 1024 and 0 <= d["center"][1] < 1024
        assert d["area"] > 100 and 0.0 <= d["score"] <= 1.0


@needs_shared
@needs_published
def test_lowmag_real_crop_grid_square():
    """--crop-grid square on the example with the published set: the published squares, running
    scores within 0.05 of the published tool's (crops move by < 1 px; measured max 0.030)."""
    p = run_cli("lowmag", "-f", "json-full", "--crop-grid", "square", "--batchnorm", "running",
                "--models", "ptolemy-2022", LOWMAG_MRC)
    assert p.returncode == 0, p.stderr
    full = json.loads(p.stdout)
    assert full["crop_grid"] == "square" and full["batchnorm"] == "running" and full["count"] == 48
    check_published_schema([{k: d[k] for k in ("vertices", "center", "area", "brightness", "score")}
                            for d in full["items"]], "lowmag")
    ref = REFERENCE / "lowmag_20may08a_16760340.running-stats.json"
    want = {tuple(d["center"]): d["score"] for d in json.loads(ref.read_text())}
    assert {tuple(d["center"]) for d in full["items"]} == set(want)
    assert max(abs(d["score"] - want[tuple(d["center"])]) for d in full["items"]) < 0.05


@needs_shared
@needs_published
def test_lowmag_real_norm_keeps_json_bytes():
    """-f json-full reports the atlas's normalisation constants; --norm with exactly these
    gives the same -f json bytes as no --norm (published scores, within 1e-4 of the reference),
    and -f json never carries the constants (the published schema)."""
    args = ("lowmag", "--models", "ptolemy-2022", LOWMAG_MRC)
    p = run_cli(*args, "-f", "json-full")
    assert p.returncode == 0, p.stderr
    norm = json.loads(p.stdout)["normalisation"]
    assert norm["source"] == "image" and abs(norm["mean"] - 160.83) < 0.01 and abs(norm["std"] - 27.64) < 0.01
    plain = run_cli(*args, "-f", "json")
    given = run_cli(*args, "-f", "json", "--norm", f"{norm['mean']!r},{norm['std']!r}")
    assert plain.returncode == given.returncode == 0 and plain.stderr == given.stderr == ""
    assert given.stdout == plain.stdout and "normalisation" not in plain.stdout
    data = json.loads(plain.stdout)
    check_published_schema(data, "lowmag")
    ref = REFERENCE / "lowmag_20may08a_16760340.published.json"
    want = {tuple(d["center"]): d["score"] for d in json.loads(ref.read_text())}
    assert {tuple(d["center"]) for d in data} == set(want)
    assert max(abs(d["score"] - want[tuple(d["center"])]) for d in data) < 1e-4


@needs_shared
@needs_models
def test_medmag_real_json_full_and_plot(tmp_path):
    from PIL import Image

    out = tmp_path / "holes.json"
    png = tmp_path / "holes.png"
    p = run_cli("medmag", "-f", "json-full", "-o", out, "--plot", png, "--pixel-size", "20", MEDMAG_MRC)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    full = json.loads(out.read_text())
    assert full["shape"] == [1024, 1440] and full["pixel_size_nm"] == 20.0
    assert full["lattice_spacing_px"] > 0 and full["count"] == len(full["items"]) > 0
    check_published_schema([{k: d[k] for k in ("vertices", "center", "area", "score")} for d in full["items"]],
                           "medmag")
    assert "total" in full["timings_s"]
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (1440, 1024)


@needs_shared
@needs_models
def test_batch_real_two_workers(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(LOWMAG_MRC, d / "a.mrc")
    shutil.copy(LOWMAG_MRC, d / "b.mrc")
    (d / "bad.mrc").write_bytes(b"\0" * 2000)
    out = tmp_path / "out"
    p = run_cli("lowmag", d, "-o", out, "-j", "2")
    assert p.returncode == 6, p.stderr
    assert p.stdout == ""
    a, b = (out / "a.json").read_text(), (out / "b.json").read_text()
    assert a == b  # same input, same output, whichever worker ran it
    check_published_schema(json.loads(a), "lowmag")
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
    assert rows[0]["n_targets"] == str(len(json.loads(a)))
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("ptolemy: error:")]
    assert len(errors) == 1 and "bad.mrc" in errors[0]
    p = run_cli("lowmag", d, "-o", out, "-j", "2")  # rerun: only the bad one is tried again
    assert p.returncode == 6
    with open(out / "summary.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["skipped", "skipped", "failed"]


@needs_models
def test_demo(tmp_path):
    pytest.importorskip("ptolemy_rt.synthetic")
    from PIL import Image

    p = run_cli("demo", tmp_path / "demo")
    assert p.returncode == 0, p.stderr
    files = p.stdout.split()
    names = sorted(f.rsplit("/", 1)[-1] for f in files)
    assert names == ["atlas.json", "atlas.mrc", "atlas.png", "atlas.truth.json",
                     "square.json", "square.mrc", "square.png", "square.truth.json"]
    check_published_schema(json.loads((tmp_path / "demo" / "atlas.json").read_text()), "lowmag")
    check_published_schema(json.loads((tmp_path / "demo" / "square.json").read_text()), "medmag")
    with Image.open(tmp_path / "demo" / "square.png") as im:
        assert im.size == (1440, 1024)
    # the demo's atlas is a valid input for the command line too (truth next to it)
    assert len(json.loads((tmp_path / "demo" / "atlas.truth.json").read_text())) > 0


def test_demo_into_a_file_fails(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    p = run_cli("demo", f)
    assert p.returncode == 5
    assert_one_error_line(p.stderr, "folder")
