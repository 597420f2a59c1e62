"""Synthetic generator: exact truth (ID maps), determinism by seed, value ranges."""
from __future__ import annotations

import numpy as np
import pytest

from ptolemy_rt import synthetic as S


def _check_ids(ids, truth):
    present = set(np.unique(ids).tolist()) - {0}
    assert present == {t.id for t in truth}, "ID map and truth disagree"
    assert [t.id for t in truth] == list(range(1, len(truth) + 1))


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_atlas_truth_matches_id_map(seed):
    img, truth, ids, p = S.atlas_with_ids(seed)
    assert img.dtype == np.float32 and img.shape == (1024, 1024) == ids.shape
    _check_ids(ids, truth)
    h, w = img.shape
    for t in truth:
        assert t.label in S.SQUARE_LABELS and t.good == (t.label == "good")
        x, y = t.center
        if t.visible_fraction >= 0.98:
            assert t.label != "edge"
            # the centre of a full square lies in its own drawn area
            assert ids[int(round(y)), int(round(x))] == t.id
        else:
            assert t.label == "edge"
        area = (ids == t.id).sum()
        assert abs(area / (t.side ** 2) - t.visible_fraction) < 0.05
    # integer Poisson counts; bars dark, squares bright
    assert np.all(img == np.floor(img)) and img.min() >= 0
    assert np.median(img[ids == 0]) < 20
    full = [t for t in truth if t.label == "good"]
    for t in full:
        assert 90 < t.brightness < 250


@pytest.mark.parametrize("seed", [0, 3, 5, 11])
def test_medmag_truth_matches_id_map(seed):
    img, truth, ids, p = S.medmag_with_ids(seed)
    assert img.dtype == np.float32 and img.shape == (1024, 1440) == ids.shape
    assert np.isfinite(img).all() and img.std() > 0
    _check_ids(ids, truth)
    for t in truth:
        assert t.label in S.HOLE_LABELS and t.good == (t.label == "good")
        x, y = t.center
        if t.label not in ("edge", "broken"):
            assert t.visible_fraction >= 0.95
            assert ids[int(round(y)), int(round(x))] == t.id
        area = (ids == t.id).sum()
        assert abs(area / (np.pi * t.axes[0] * t.axes[1]) - t.visible_fraction) < 0.05


def test_medmag_tilt_gives_ellipses_and_lattice():
    img, truth, ids, p = S.medmag_with_ids(4, tilt_deg=40.0, film="R2/2", pixel_nm=14.0)
    t = max(truth, key=lambda t: t.visible_fraction)
    assert t.axes[1] == pytest.approx(t.axes[0] * np.cos(np.radians(40)), rel=1e-6)
    # hole centres lie on the lattice c = origin + A n
    A = np.array(p["lattice"])
    for t in truth:
        n = np.linalg.solve(A, np.array(t.center) - p["origin"])
        assert np.allclose(n, np.round(n), atol=1e-6)


def test_deterministic_by_seed():
    a1, t1 = S.atlas(5, shape=(512, 600))
    a2, t2 = S.atlas(5, shape=(512, 600))
    assert np.array_equal(a1, a2) and t1 == t2
    m1, h1 = S.medmag_image(9)
    m2, h2 = S.medmag_image(9)
    assert np.array_equal(m1, m2) and h1 == h2
    m3, _ = S.medmag_image(10)
    assert not np.array_equal(m1, m3)


def test_parameters_are_respected_and_unknown_rejected():
    img, truth, ids, p = S.atlas_with_ids(1, pitch=150.0, angle_deg=45.0, side_fraction=0.6)
    assert p["pitch"] == 150.0 and all(t.angle_deg == 45.0 for t in truth)
    assert all(abs(t.side - 90.0) < 1e-9 for t in truth)
    img, truth, ids, p = S.medmag_with_ids(1, film="R1.2/1.3", pixel_nm=10.0, angle_deg=0.0, tilt_deg=0.0)
    assert p["pitch_px"] == pytest.approx(250.0) and p["radius_px"] == pytest.approx(60.0)
    with pytest.raises(TypeError):
        S.atlas(0, bogus=1)
    with pytest.raises(ValueError):
        S.medmag_image(0, film="R9/9")


def test_large_image_strips():
    img, truth, ids, p = S.atlas_with_ids(3, shape=(2100, 1500))
    _check_ids(ids, truth)
    img, truth, ids, p = S.medmag_with_ids(3, shape=(2100, 1500))
    _check_ids(ids, truth)


def test_grid_atlas_deterministic_with_exact_truth():
    a, ta, ids, p = S.grid_atlas_with_ids(4, (384, 512))
    b, tb = S.grid_atlas(4, (384, 512))
    assert np.array_equal(a, b) and ta == tb
    assert bool((a == np.round(a)).all()) and a.dtype == np.float32
    # every id in the map has a truth entry and lies on the mesh disc
    assert set(np.unique(ids)) == {0, *range(1, len(ta) + 1)}
    rows, cols = np.nonzero(ids)
    assert (np.hypot(cols + 0.5 - p["center"][0], rows + 0.5 - p["center"][1]) < p["radius"]).all()
    # the rim is dark; beyond it the background level
    r = np.hypot(np.arange(512)[None] + 0.5 - p["center"][0], np.arange(384)[:, None] + 0.5 - p["center"][1])
    rim = (r > p["radius"] + 1) & (r < p["radius"] + p["rim_width"] - 1)
    assert a[rim].mean() < 10
    labels = {t.label for t in ta}
    assert labels <= {"good", "thick", "edge"}
    c, _ = S.grid_atlas(4, (384, 512), gain=0.5, offset=1000.0)
    np.testing.assert_allclose(c, a.astype(np.float64) * 0.5 + 1000.0, rtol=1e-6)
    with pytest.raises(TypeError):
        S.grid_atlas(0, (64, 64), nonsense=1)
