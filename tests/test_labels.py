"""Labelled-data folders: round trip through write_dataset/read_dataset, one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ptolemy_rt import synthetic
from ptolemy_rt.errors import InputImageError
from ptolemy_rt.labels import LabelDataError, read_dataset, write_dataset


def _img(h=80, w=100):
    return np.arange(h * w, dtype=np.float32).reshape(h, w) % 17


def _write(tmp_path, pts=None, kind="medmag", points="selected"):
    pts = [{"x": 10.0, "y": 20.5, "label": "good", "good": True, "radius": 5.0}] if pts is None else pts
    return write_dataset(tmp_path / "ds", kind, [("a", _img(), pts)], pixel_size_nm=14.0, points=points)


def test_round_trip(tmp_path):
    root = _write(tmp_path, [{"x": 10, "y": 20.5, "label": "good"}, {"x": 99.5, "y": 0, "good": False, "radius": 3}])
    ds = read_dataset(root)
    assert ds.kind == "medmag" and ds.pixel_size_nm == 14.0 and ds.points_mode == "selected"
    (it,) = ds.images
    assert it.shape == (80, 100)
    assert it.points.tolist() == [[10.0, 20.5], [99.5, 0.0]]
    assert it.good.tolist() == [True, False] and it.labels == ["good", ""]
    assert np.isnan(it.radius[0]) and it.radius[1] == 3
    img = it.load()
    assert np.array_equal(img.pixels, _img()) and img.pixel_size_nm == pytest.approx(14.0, rel=1e-5)


def test_synthetic_evalset_format(tmp_path):
    from export.evalset import atlas_points, hole_points

    a, ta = synthetic.atlas(3, shape=(400, 500))
    m, tm = synthetic.medmag_image(3, shape=(400, 500))
    write_dataset(tmp_path / "low", "lowmag", [("x", a, atlas_points(ta, a.shape))], points="all", dtype=np.int16)
    write_dataset(tmp_path / "med", "medmag", [("y", m, hole_points(tm, m.shape))], points="all", dtype=np.float16)
    low, med = read_dataset(tmp_path / "low"), read_dataset(tmp_path / "med")
    assert low.kind == "lowmag" and len(low.images[0].points) == sum(
        0 <= t.center[0] < 500 and 0 <= t.center[1] < 400 for t in ta)
    assert np.array_equal(low.images[0].load().pixels, a)  # counts survive int16
    assert low.images[0].polygons[0].shape == (4, 2)
    assert med.images[0].good.tolist() == [t.good for t in tm if 0 <= t.center[0] < 500 and 0 <= t.center[1] < 400]


def _fails(root, *words):
    with pytest.raises(LabelDataError) as e:
        read_dataset(root)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    assert isinstance(e.value, InputImageError)  # exit code 3 in the CLI
    return msg


def test_missing_folder_and_dataset_json(tmp_path):
    _fails(tmp_path / "nope", "nope", "not a directory")
    (tmp_path / "empty").mkdir()
    _fails(tmp_path / "empty", "dataset.json", "no such file")


def test_bad_dataset_json(tmp_path):
    root = _write(tmp_path)
    (root / "dataset.json").write_text("{bad json")
    _fails(root, "dataset.json", "bad JSON")
    (root / "dataset.json").write_text(json.dumps({"kind": "highmag"}))
    _fails(root, "dataset.json", "kind")
    (root / "dataset.json").write_text(json.dumps({"kind": "lowmag", "pixel_size_nm": "big"}))
    _fails(root, "dataset.json", "pixel_size_nm")


def test_bad_label_files(tmp_path):
    root = _write(tmp_path)
    lab = root / "labels" / "a.json"
    lab.write_text("[1, 2")
    _fails(root, "a.json", "bad JSON")
    lab.write_text(json.dumps({"image": "images/zzz.mrc", "points": []}))
    _fails(root, "a.json", "zzz.mrc", "not found")
    lab.write_text(json.dumps({"image": "images/a.mrc", "points": [{"x": 100, "y": 5}]}))
    _fails(root, "a.json", "outside", "80×100")
    lab.write_text(json.dumps({"image": "images/a.mrc", "points": [{"x": -0.5, "y": 5}]}))
    _fails(root, "a.json", "outside")
    lab.write_text(json.dumps({"image": "images/a.mrc", "points": [{"x": "3", "y": 5}]}))
    _fails(root, "a.json", "'x'", "number")
    lab.write_text(json.dumps({"image": "images/a.mrc", "points": [{"y": 5}]}))
    _fails(root, "a.json", "no 'x'")
    lab.write_text(json.dumps({"image": "images/a.mrc", "points": [{"x": 1, "y": 5, "good": "yes"}]}))
    _fails(root, "a.json", "'good'")
    lab.write_text(json.dumps({"image": "images/a.mrc", "points": {"x": 1}}))
    _fails(root, "a.json", "'points' must be a list")
    lab.write_text(json.dumps({"image": "images/a.mrc"}))
    _fails(root, "a.json", "no 'points'")


def test_image_without_labels_and_garbage_image(tmp_path):
    root = _write(tmp_path)
    (root / "images" / "b.mrc").write_bytes((root / "images" / "a.mrc").read_bytes())
    _fails(root, "b.mrc", "no label file")
    (root / "images" / "b.mrc").unlink()
    (root / "images" / "a.mrc").write_bytes(b"not an mrc" * 10)
    _fails(root, "a.mrc")
