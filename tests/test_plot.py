"""Overlay pictures: valid PNGs of the image's size, colours by score, `ptolemy plot`."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ptolemy_rt import plot
from ptolemy_rt.errors import EXIT_BAD_INPUT

from conftest import LOWMAG_MRC, MEDMAG_MRC, REFERENCE, needs_shared
from test_cli_common import assert_one_error_line, good_image, run_cli, write_mrc

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


def test_score_colours():
    assert plot.score_colour(0.0) == (230, 0, 0)
    assert plot.score_colour(0.5) == (230, 230, 0)
    assert plot.score_colour(1.0) == (0, 230, 0)
    assert plot.score_colour(7.0) == (0, 230, 0) and plot.score_colour(float("nan")) == (230, 0, 0)


def test_grey_uses_robust_percentiles():
    a = np.linspace(0, 100, 10000).reshape(100, 100)
    a[0, 0] = 1e9  # one hot pixel must not flatten the contrast
    g = plot.to_grey(a)
    assert g.dtype == np.uint8 and g.shape == (100, 100)
    assert g[50, 50] in range(120, 136) and g[99, 99] == 255 and g[0, 1] == 0
    assert plot.to_grey(np.ones((8, 8))).max() == 0


def test_render_size_and_box_colour():
    pix = np.zeros((120, 200), np.float32)
    pix[::2] = 1.0
    items = [{"vertices": [[20.0, 10.0], [80.0, 10.0], [80.0, 70.0], [20.0, 70.0]], "center": [50, 40], "score": 1.0},
             {"vertices": [[100.0, 20.0], [180.0, 20.0], [180.0, 100.0], [100.0, 100.0]], "center": [140, 60], "score": 0.0}]
    img = plot.render(pix, items)
    assert img.size == (200, 120) and img.mode == "RGB"
    assert img.getpixel((50, 10)) == (0, 230, 0)  # top edge of the best box: green (x=col, y=row)
    assert img.getpixel((140, 100)) == (230, 0, 0)  # bottom edge of the worst: red
    assert img.getpixel((5, 115))[0] == img.getpixel((5, 115))[1]  # elsewhere still grey
    # rank labels drawn in white near the centres
    box = np.asarray(img)[30:50, 40:60]
    assert (box == 255).all(axis=2).any()


def test_write_overlay_png(tmp_path):
    out = tmp_path / "o.png"
    plot.write_overlay(good_image(1, (64, 96)), [], out)
    with Image.open(out) as im:
        im.verify()
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (96, 64)
    assert os.listdir(tmp_path) == ["o.png"]


def test_read_items_errors(tmp_path):
    bad = tmp_path / "bad.json"
    for text, word in [("{not json", "not a JSON"), ('{"a": 1}', "not a ptolemy result"),
                       ('[{"center": [1, 2], "score": 0.5}]', "target 0")]:
        bad.write_text(text)
        with pytest.raises(plot.ResultFileError) as e:
            plot.read_items(bad)
        assert word in str(e.value) and e.value.exit_code == EXIT_BAD_INPUT
    with pytest.raises(plot.ResultFileError):
        plot.read_items(tmp_path / "missing.json")
    full = tmp_path / "full.json"
    full.write_text(json.dumps({"items": [{"vertices": [[0, 0], [1, 0], [1, 1], [0, 1]], "center": [0, 0], "score": 0.1},
                                          {"vertices": [[0, 0], [1, 0], [1, 1], [0, 1]], "center": [0, 0], "score": 0.9}]}))
    assert [d["score"] for d in plot.read_items(full)] == [0.9, 0.1]


@needs_shared
@pytest.mark.parametrize("ref,image", [("lowmag_20may08a_16760340.published.json", LOWMAG_MRC),
                                       ("medmag_readme_1024x1440.published.json", MEDMAG_MRC)])
def test_plot_command_on_published_results(tmp_path, ref, image):
    out = tmp_path / "overlay.png"
    p = run_cli("plot", REFERENCE / ref, image, out)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    with Image.open(out) as im:
        assert im.format == "PNG"
        h, w = 1024, (1024 if "lowmag" in ref else 1440)
        assert im.size == (w, h)


def test_plot_command_errors(tmp_path):
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    res = tmp_path / "r.json"
    res.write_text("garbage")
    out = tmp_path / "o.png"
    p = run_cli("plot", res, img, out)
    assert p.returncode == 3
    assert_one_error_line(p.stderr, "r.json", "JSON")
    res.write_text("[]")
    p = run_cli("plot", res, img, img)
    assert p.returncode == 5
    assert_one_error_line(p.stderr, "refusing")
    p = run_cli("plot", res, tmp_path / "missing.mrc", out)
    assert p.returncode == 3
    assert_one_error_line(p.stderr, "missing.mrc")
    assert not out.exists()
    p = run_cli("plot", res, img, out)
    assert p.returncode == 0 and out.exists()


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("where", ["center", "vertex", "score"])
def test_read_items_rejects_non_finite_numbers(tmp_path, bad, where):
    """Python's JSON reader accepts NaN / Infinity (and 1e400 is read as inf)."""
    center, vertex, score = "[1, 2]", "[0, 0]", "0.5"
    if where == "center":
        center = f"[{bad}, 2]"
    elif where == "vertex":
        vertex = f"[0, {bad}]"
    else:
        score = bad
    res = tmp_path / "r.json"
    res.write_text(f'[{{"vertices": [{vertex}, [4, 0], [4, 4], [0, 4]], "center": {center}, "score": {score}}}]')
    with pytest.raises(plot.ResultFileError) as e:
        plot.read_items(res)
    assert "non-finite" in str(e.value) and "target 0" in str(e.value) and e.value.exit_code == EXIT_BAD_INPUT


def test_read_items_rejects_unparseable_numbers(tmp_path):
    res = tmp_path / "r.json"
    res.write_text('[{"vertices": [[0, 0], [4, 0], [4, 4]], "center": [' + "9" * 5000 + ', 2], "score": 0.5}]')
    with pytest.raises(plot.ResultFileError) as e:
        plot.read_items(res)
    assert "\n" not in str(e.value) and e.value.exit_code == EXIT_BAD_INPUT
    res.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(plot.ResultFileError):
        plot.read_items(res)


def test_labels_far_outside_the_picture_are_skipped():
    """A target centred far off the image (a result of another image) draws no label and
    does not crash Pillow's text placement."""
    items = [{"vertices": [[1e20, 1e20], [1e20 + 4, 1e20], [1e20 + 4, 1e20 + 4]], "center": [1e20, 1e20], "score": 0.9},
             {"vertices": [[-5e9, 3.0], [-5e9, 9.0], [2.0, 9.0]], "center": [-5e9, 6.0], "score": 0.1}]
    img = plot.render(np.zeros((40, 60), np.float32), items)
    assert img.size == (60, 40)


def test_plot_command_nan_result_is_bad_input(tmp_path):
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    res = tmp_path / "r.json"
    res.write_text('[{"vertices": [[0, 0], [4, 0], [4, 4], [0, 4]], "center": [NaN, 2], "score": 0.5}]')
    out = tmp_path / "o.png"
    p = run_cli("plot", res, img, out)
    assert p.returncode == 3, p.stderr
    assert_one_error_line(p.stderr, "r.json", "non-finite")
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["a.mrc", "r.json"]


def test_overlay_png_is_what_write_overlay_writes(tmp_path):
    pix = good_image(2, (48, 64))
    items = [{"vertices": [[4.0, 4.0], [20.0, 4.0], [20.0, 20.0], [4.0, 20.0]], "center": [12, 12], "score": 0.6}]
    out = tmp_path / "o.png"
    plot.write_overlay(pix, items, out)
    assert out.read_bytes() == plot.overlay_png(pix, items)
