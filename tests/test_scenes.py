"""Scene generator (issue 16): determinism, truth against the drawn pixels, parameter ranges."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ptolemy_rt import scenes as S

SHAPE = (512, 512)


def _counts(s):
    """The image back in detector counts (before gain and offset)."""
    return (s.image - s.params["offset"]) / s.params["gain"]


def test_same_seed_same_scene_other_seed_differs():
    a = S.scene(3, SHAPE)
    b = S.scene(3, SHAPE)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.holes == b.holes and a.params == b.params
    assert (a.film == b.film).all() and (a.ids == b.ids).all()
    c = S.scene(4, SHAPE)
    assert c.image.tobytes() != a.image.tobytes()


@pytest.mark.parametrize("pixel_nm,hole_um,pitch_um", [(20.0, 1.0, 2.0), (50.0, 1.2, 2.5), (120.0, 2.0, 4.0)])
def test_pitch_and_radius_in_px_follow_um_and_pixel_size(pixel_nm, hole_um, pitch_um):
    s = S.scene(1, SHAPE, kind="hole", pixel_nm=pixel_nm, hole_um=hole_um, pitch_um=pitch_um, tilt_deg=0.0,
                view_center_um=(0.0, 0.0), square_um=80.0)
    pitch_px = pitch_um * 1000 / pixel_nm
    assert s.params["pitch_px"] == pytest.approx(pitch_px)
    assert s.params["radius_px"] == pytest.approx(hole_um * 500 / pixel_nm)
    xy = np.array([h.center for h in s.holes])
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    np.fill_diagonal(d, np.inf)
    assert np.allclose(d.min(1), pitch_px, rtol=1e-6)          # a square lattice of that pitch
    for hh in s.holes:
        assert hh.radius == pytest.approx(hole_um * 500 / pixel_nm, rel=0.031)
        assert hh.axes[0] == pytest.approx(hh.radius) and hh.axes[1] == pytest.approx(hh.radius)


def test_tilt_foreshortens_the_lattice_across_the_axis():
    s = S.scene(2, SHAPE, kind="hole", pixel_nm=25.0, hole_um=1.0, pitch_um=2.0, tilt_deg=30.0,
                tilt_axis_deg=0.0, lattice_angle_deg=0.0, view_center_um=(0.0, 0.0), square_um=80.0)
    major, minor = s.holes[0].axes
    assert minor / major == pytest.approx(math.cos(math.radians(30)), rel=1e-6)
    xy = np.array([h.center for h in s.holes])
    dx = np.abs(xy[:, None, 0] - xy[None, :, 0])
    dy = np.abs(xy[:, None, 1] - xy[None, :, 1])
    # along x (the tilt axis) the full pitch, along y its cosine
    assert dx[(dy < 1e-6) & (dx > 1e-6)].min() == pytest.approx(80.0)
    assert dy[(dx < 1e-6) & (dy > 1e-6)].min() == pytest.approx(80.0 * math.cos(math.radians(30)))


@pytest.mark.parametrize("seed", range(6))
def test_truth_agrees_with_film_mask_and_id_map(seed):
    s = S.scene(seed, SHAPE)
    h, w = SHAPE
    assert s.image.dtype == np.float32 and s.image.shape == SHAPE == s.film.shape == s.ids.shape
    ids = [hh.id for hh in s.holes]
    assert ids == list(range(1, len(ids) + 1))
    present = set(np.unique(s.ids).tolist()) - {0}
    assert present <= set(ids)
    for hh in s.holes:
        assert hh.label in S.SCENE_HOLE_LABELS and hh.good == (hh.label == "good")
        x, y = hh.center
        if 0 <= x <= w - 1 and 0 <= y <= h - 1:
            assert hh.on_film == bool(s.film[round(y), round(x)])
        assert (hh.label == "off_film") == (not hh.on_film)
        n = int((s.ids == hh.id).sum())
        assert (n > 0) == (hh.id in present)
        if hh.label in ("good", "empty", "thick", "contaminated", "crystalline"):
            assert hh.visible_fraction >= 0.9
        if hh.label == "good":
            assert S.EMPTY_ICE_NM <= hh.ice_nm <= S.THICK_ICE_NM
        if hh.on_film and hh.id in present:
            area = math.pi * hh.axes[0] * hh.axes[1]
            assert min(1.0, n / area) == pytest.approx(hh.visible_fraction, abs=0.03 + 1.5 / hh.axes[1])
    # ice only on the film
    assert (s.ice_nm[~s.film] == 0).all()


@pytest.mark.parametrize("seed,material", [(0, "carbon"), (1, "gold"), (2, "carbon"), (3, "gold")])
def test_each_hole_is_brighter_or_darker_as_drawn(seed, material):
    s = S.scene(seed, (768, 768), kind="hole", film_material=material, contamination=0.0, cracks=0, peel=False,
                tilt_deg=0.0, view_center_um=(0.0, 0.0), square_um=80.0, dose=400.0)
    c = _counts(s)
    rows, cols = np.indices(c.shape)
    checked = 0
    for hh in s.holes:
        if hh.label not in ("good", "empty", "thick") or abs(math.log(hh.contrast)) < 0.1:
            continue
        x, y = hh.center
        d = np.hypot(cols - x, rows - y)
        inner = c[(s.ids == hh.id) & (d < 0.7 * hh.radius)]
        gap = 0.5 * (s.params["pitch_px"] - 2 * hh.radius)
        ring = c[(d > hh.radius + 6) & (d < hh.radius + max(gap, 8)) & (s.ids == 0) & s.film]
        if len(inner) < 20 or len(ring) < 20:
            continue
        measured = np.median(inner) / np.median(ring)
        assert (measured > 1) == (hh.contrast > 1), (hh, measured)
        assert measured == pytest.approx(hh.contrast, rel=0.25)
        checked += 1
    assert checked >= 3


def test_square_view_shows_the_whole_square_inside_dark_bars():
    s = S.scene(5, SHAPE, kind="square", tears=0.0, contamination=0.0)
    h, w = SHAPE
    poly = np.array(s.square["polygon"])
    assert (poly >= 0).all() and (poly[:, 0] < w).all() and (poly[:, 1] < h).all()
    t = math.radians(s.params["square_angle_deg"])
    box = s.square["side_px"] * (abs(math.cos(t)) + abs(math.sin(t)))
    assert 0.55 * min(SHAPE) - 1e-6 <= box <= 0.92 * min(SHAPE) + 1e-6
    c = _counts(s)
    assert np.median(c[~s.film]) < 0.1 * np.median(c[s.film])      # bars are dark
    on = [hh for hh in s.holes if hh.on_film]
    off = [hh for hh in s.holes if not hh.on_film]
    assert len(on) > 20 and len(off) > 20                             # lattice points on the bars too
    assert all(hh.ice_nm == 0 for hh in off)
    # the film fills the opening: its area is the square's (rounded corners, wavy edge)
    assert s.film.sum() == pytest.approx(s.square["side_px"] ** 2, rel=0.1)


def test_contamination_density_and_labels():
    kw = dict(kind="hole", pixel_nm=40.0, hole_um=2.0, pitch_um=3.0, view_center_um=(0.0, 0.0), square_um=80.0)
    clean = S.scene(7, SHAPE, contamination=0.0, **kw)
    dirty = S.scene(7, SHAPE, contamination=1.0, **kw)
    lab = lambda s: sum(hh.label in ("contaminated", "crystalline") for hh in s.holes)  # noqa: E731
    assert lab(dirty) > lab(clean)
    assert lab(dirty) >= 3


def test_parameter_ranges_over_seeds():
    kinds, materials = set(), set()
    for seed in range(30):
        p = S._params(np.random.default_rng([seed, 16]), (1024, 1024), {})
        kinds.add(p["kind"])
        materials.add(p["film_material"])
        assert S.HOLE_UM[0] <= p["hole_um"] <= S.HOLE_UM[1]
        assert S.PITCH_UM[0] <= p["pitch_um"] <= S.PITCH_UM[1] and p["pitch_um"] > p["hole_um"]
        assert 0 <= p["contamination"] <= 1 and 0 <= p["tears"] <= 1
        if p["kind"] == "hole":
            assert S.HOLE_VIEW_NM[0] <= p["pixel_nm"] <= S.HOLE_VIEW_NM[1]
        else:
            t = math.radians(p["square_angle_deg"])
            box = p["square_um"] * 1000 / p["pixel_nm"] * (abs(math.cos(t)) + abs(math.sin(t)))
            assert 0.55 * 1024 - 1e-6 <= box <= 0.92 * 1024 + 1e-6
    assert kinds == set(S.SCENE_KINDS) and materials == set(S.FILM_MATERIALS)


def test_bad_parameters_raise():
    with pytest.raises(TypeError, match="unknown parameter"):
        S.scene(0, SHAPE, colour="red")
    with pytest.raises(ValueError, match="kind"):
        S.scene(0, SHAPE, kind="atlas")
    with pytest.raises(ValueError, match="pitch_um"):
        S.scene(0, SHAPE, hole_um=2.0, pitch_um=1.5)
