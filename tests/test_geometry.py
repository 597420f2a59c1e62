"""Rotation maps checked against actually rotated images, for square and non-square shapes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage as ndi

from ptolemy_rt import geometry, regions
from conftest import LOWMAG_MRC, REFERENCE, needs_shared

SHAPES = [(64, 64), (65, 65), (64, 100), (101, 70), (80, 131)]
ANGLES = [0.0, 12.5, 30.0, 45.0, 60.0, 89.0, 90.0, -17.0, 137.0]


def _blobs(shape, centres_rc, sigma=1.6):
    """Gaussian blobs at given pixel-corner positions (index position + 0.5)."""
    r, c = np.indices(shape, dtype=np.float64)
    img = np.zeros(shape)
    for pr, pc in centres_rc:
        img += np.exp(-((r + 0.5 - pr) ** 2 + (c + 0.5 - pc) ** 2) / (2 * sigma**2))
    return img.astype(np.float32)


def _peak_centre(img, near_rc, radius=5):
    """Weighted centre (pixel-corner coordinates) of the blob nearest near_rc."""
    r0, c0 = int(np.floor(near_rc[0])), int(np.floor(near_rc[1]))
    sl = (slice(max(r0 - radius, 0), r0 + radius + 1), slice(max(c0 - radius, 0), c0 + radius + 1))
    w = np.clip(img[sl], 0, None).astype(np.float64)
    rr, cc = np.indices(w.shape)
    rr = rr + sl[0].start + 0.5
    cc = cc + sl[1].start + 0.5
    return np.array([(w * rr).sum() / w.sum(), (w * cc).sum() / w.sum()])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("angle", ANGLES)
def test_rotated_shape_matches_scipy(shape, angle):
    img = np.zeros(shape, np.float32)
    out = geometry.rotate_image(img, angle)
    assert out.shape == geometry.rotated_shape(shape, angle)
    assert out.dtype == np.float32


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("angle", ANGLES)
def test_rotate_points_follow_the_image(shape, angle):
    h, w = shape
    centres = np.array([[12.3, 15.7], [h / 2, w / 2], [h - 13.2, w - 12.1], [14.5, w - 16.0], [h - 15.0, 18.5]])
    img = _blobs(shape, centres)
    out = geometry.rotate_image(img, angle)
    pred = geometry.rotate_points(centres, angle, shape, out.shape)
    for p in pred:
        got = _peak_centre(out, p)
        np.testing.assert_allclose(got, p, atol=0.05)
    back = geometry.unrotate_points(pred, angle, shape, out.shape)
    np.testing.assert_allclose(back, centres, atol=1e-9)


def test_single_bright_pixel_non_square():
    # one bright pixel, linear interpolation: the rotated peak sits where the map says
    shape = (50, 90)
    img = np.zeros(shape, np.float32)
    img[9, 70] = 1.0
    for angle in (20.0, 45.0, 90.0, 270.0):
        out = ndi.rotate(img, angle, reshape=True, order=0)
        assert out.shape == geometry.rotated_shape(shape, angle)
        (r,), (c,) = np.nonzero(out == out.max())[0][:1], np.nonzero(out == out.max())[1][:1]
        p = geometry.rotate_points([9.5, 70.5], angle, shape, out.shape)
        assert abs(p[0] - (r + 0.5)) <= 0.5 + 1e-9 and abs(p[1] - (c + 0.5)) <= 0.5 + 1e-9


def test_quarter_turn_exact():
    shape = (30, 50)
    img = np.arange(30 * 50, dtype=np.float32).reshape(shape)
    out = geometry.rotate_image(img, 90.0)
    assert out.shape == (50, 30)
    # a quarter turn is a pure index permutation: check it against the point map
    for r, c in [(0, 0), (3, 41), (29, 49), (17, 5)]:
        q = geometry.rotate_points([r + 0.5, c + 0.5], 90.0, shape, out.shape) - 0.5
        qi = np.round(q).astype(int)
        np.testing.assert_allclose(q, qi, atol=1e-9)
        assert out[qi[0], qi[1]] == pytest.approx(img[r, c], abs=1e-2)


def _boxes_in_rotated_frame(n=4, size=20, gap=9):
    polys = []
    for i in range(n):
        for j in range(n):
            r0, c0 = 10 + i * (size + gap), 10 + j * (size + gap + 3)
            polys.append(np.array([[r0, c0], [r0, c0 + size + 2 * i], [r0 + size, c0 + size + 2 * i], [r0 + size, c0]], float))
    return polys


@pytest.mark.parametrize("theta", [0.0, 7.0, 30.0, 45.0, 61.0, 88.0])
def test_grid_angle_recovers_known_rotation(theta):
    in_shape = out_shape = (200, 200)
    polys = [geometry.unrotate_points(p, theta, in_shape, out_shape) for p in _boxes_in_rotated_frame()]
    got = geometry.grid_angle(polys)
    assert 0.0 <= got <= 90.0
    d = abs(got - theta) % 90.0
    assert min(d, 90.0 - d) < 1e-3
    # and rotating by it makes them axis-aligned again: boxes are as small as the originals
    boxes = geometry.bounding_boxes(polys, got)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    want = [regions.polygon_area(p) for p in polys]
    np.testing.assert_allclose(areas, want, rtol=1e-4)


def test_grid_angle_empty():
    assert geometry.grid_angle([]) == 0.0


def _brent_cases(n):
    """n (cost, lo, hi): smooth, kinked, periodic and box-area-like costs, seeded."""
    rng = np.random.default_rng(20261203)
    for i in range(n):
        c, s = rng.uniform(-20, 120), rng.uniform(0.1, 50)
        lo = rng.uniform(-10, 10)
        hi = lo + rng.uniform(0.5, 100)
        kind = i % 4
        if kind == 0:
            yield (lambda x, c=c: (x - c) ** 2), lo, hi
        elif kind == 1:
            yield (lambda x, c=c, s=s: abs(x - c) ** 0.5 + 0.1 * np.sin(x / s)), lo, hi
        elif kind == 2:
            k = int(rng.integers(1, 8))
            yield (lambda x, k=k: np.cos(k * np.radians(x)) + 0.01 * x), lo, hi
        else:
            pts = rng.normal(size=(int(rng.integers(3, 30)), 2)) * s
            yield (lambda x, p=pts: float(np.abs(p @ [np.cos(np.radians(x)), np.sin(np.radians(x))]).sum())), 0.0, 90.0


def test_bounded_brent_equals_scipy_minimize_scalar_bounded():
    """The published tool's grid angle came from scipy's bounded Brent: the own search must take
    the very same steps (equal floats, not approximately equal) on every kind of cost."""
    from scipy.optimize import minimize_scalar

    for cost, lo, hi in _brent_cases(400):
        want = minimize_scalar(cost, bounds=(lo, hi), method="bounded").x
        assert geometry.bounded_brent(cost, lo, hi) == want, (lo, hi)


def test_bounded_brent_stops_at_max_evaluations():
    calls = []
    geometry.bounded_brent(lambda x: calls.append(x) or np.sin(x), 0.0, 1000.0, xatol=1e-300, max_evaluations=7)
    assert len(calls) == 7 and all(0.0 < x < 1000.0 for x in calls)


def test_bounding_boxes_layout():
    poly = np.array([[1.0, 2.0], [4.0, 2.0], [4.0, 7.0], [1.0, 7.0]])
    b = geometry.bounding_boxes([poly, np.empty((0, 2)), poly + 10], 0.0)
    np.testing.assert_allclose(b, [[1, 2, 4, 7], [11, 12, 14, 17]])


@needs_shared
def test_grid_angle_on_atlas():
    from ptolemy_rt.io import read_mrc

    img = read_mrc(LOWMAG_MRC).pixels
    mask = img >= 58
    lab, n = regions.label_regions(mask, 6)
    hulls = [h for h in regions.region_hulls(lab, n) if regions.polygon_area(h) > 100]
    ref = json.loads((REFERENCE / "intermediates.json").read_text())["lowmag_20may08a_16760340.mrc"]
    assert len(hulls) == ref["polygons_kept"] == 48
    ang = geometry.grid_angle(hulls)
    assert ang == pytest.approx(ref["grid_angle_deg"], abs=1e-3)
    assert geometry.rotated_shape(img.shape, ang) == tuple(ref["rotated_shape"])


@pytest.mark.parametrize("shape", SHAPES + [(1, 1), (1, 7), (9, 2), (3, 3)])
@pytest.mark.parametrize("angle", ANGLES + [180.0, 270.0, -90.0, 450.0, 359.9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_rotate_image_equals_scipy_rotate(shape, angle, dtype):
    """The own cubic-spline rotation (compiled kernels) equals scipy.ndimage.rotate (reshape,
    order 3, mode constant, cval 0), edges and tiny images included: same shape, same dtype
    (float32 for integers), same zero pattern outside the input, values to float64 rounding
    (float32 outputs: to one float32 rounding step)."""
    rng = np.random.default_rng(len(shape) * 1000 + int(abs(angle) * 10))
    img = (rng.random(shape) * 500 + 1).astype(dtype)  # no zero pixel: zeros mark "outside"
    want = ndi.rotate(img.astype(np.float32) if dtype == np.uint16 else img, angle, reshape=True, order=3,
                      mode="constant", cval=0.0)
    got = geometry.rotate_image(img, angle)
    assert got.shape == want.shape and got.dtype == want.dtype
    # samples on the input's edge (to 1e-9 px) are the edge value here, where scipy includes or
    # drops them by the last bit of its cos/sin and coordinate arithmetic
    m, off, _ = geometry._rotation_transform(shape, angle)
    src = np.tensordot(m, np.indices(got.shape, dtype=np.float64), axes=1) + off[:, None, None]
    lim = np.array(shape, np.float64)[:, None, None] - 1
    on_edge = (np.minimum(np.abs(src), np.abs(src - lim)) < 1e-6).any(axis=0)
    assert not ((got == 0) != (want == 0))[~on_edge].any()
    assert not ((got == 0) & ~on_edge & (want != 0)).any()
    tol = 500 * (1e-6 if got.dtype == np.float32 else 1e-12)
    both = (got != 0) & (want != 0) | ~on_edge
    np.testing.assert_allclose(got[both], want[both], rtol=0, atol=tol)


def test_rotated_shape_equals_scipy_on_an_angle_sweep():
    """`rotated_shape` (own cos/sin of degrees, exact at quarter turns) rounds the rotated
    extents as scipy.ndimage.rotate does, on 1500 angles × 4 shapes (special angles included)."""
    angles = np.concatenate([np.arange(-360.0, 360.0, 0.5), np.arange(-720.0, 721.0, 15.0),
                             np.random.default_rng(0).uniform(-400, 400, 50)])
    for shape in [(64, 100), (101, 70), (7, 7), (1, 30)]:
        img = np.zeros(shape, np.float32)
        for a in angles:
            assert geometry.rotated_shape(shape, a) == ndi.rotate(img, a, reshape=True, order=0).shape, (shape, a)


@pytest.mark.parametrize("seed", range(6))
def test_spline_kernels_equal_scipy(seed):
    """`kernels.spline_coefficients` = scipy.ndimage.spline_filter(order 3, mode constant) and
    `kernels.affine_cubic` = scipy.ndimage.affine_transform(order 3, mode constant,
    prefilter=False) on random images and maps (scaled, rotated, sheared; identity and
    integer shifts that put samples exactly on the edges), both output dtypes."""
    from ptolemy_rt import kernels

    rng = np.random.default_rng(seed)
    for trial in range(40):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        img = rng.normal(size=(h, w)) * 100
        coef = kernels.spline_coefficients(img)
        ref = ndi.spline_filter(img, 3, output=np.float64, mode="constant")
        np.testing.assert_allclose(coef, ref, rtol=0, atol=1e-10)
        if trial % 4 == 0:
            m, off = np.eye(2), np.round(rng.uniform(-4, 4, 2))
        else:
            m = rng.normal(size=(2, 2))
            off = np.array([h, w]) / 2 - m @ [15.0, 15.0] + rng.uniform(-3, 3, 2)
        for dt in (np.float64, np.float32):
            want = ndi.affine_transform(ref, m, off, (30, 30), output=dt, order=3, mode="constant",
                                        cval=-7.0, prefilter=False)
            got = kernels.affine_cubic(coef, m, off, (30, 30), dtype=dt, cval=-7.0)
            assert got.dtype == dt
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 if dt == np.float64 else 1e-3)
            np.testing.assert_array_equal(got == -7.0, want == -7.0)


@pytest.mark.parametrize("shape,angle", [((301, 257), 12.345), ((200, 333), 77.7), ((256, 256), 45.0),
                                         ((150, 170), 0.0), ((150, 170), 90.0)])
def test_rotate_window_equals_whole_rotation(shape, angle):
    """Blocks rotated from a window of the input (spline prefilter on the window + margin)
    equal the same blocks of the whole rotated image, including blocks at the frame edges
    and blocks partly or wholly outside the input (fill 0)."""
    rng = np.random.default_rng(7)
    img = (rng.random(shape) * 200).astype(np.float32)
    full = geometry.rotate_image(img, angle)
    h, w = full.shape
    blocks = [(0, 0, h, w), (0, 0, 40, 40), (h - 30, w - 50, h, w), (h // 3, w // 4, min(h, h // 3 + 90), min(w, w // 4 + 120)),
              (5, w // 2, 6, w // 2 + 1), (10, 10, 10, 20)]
    for _ in range(20):
        r0, c0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        blocks.append((r0, c0, min(h, r0 + int(rng.integers(1, 150))), min(w, c0 + int(rng.integers(1, 150)))))
    for r0, c0, r1, c1 in blocks:
        blk = geometry.rotate_window(img, angle, (r0, c0, r1, c1))
        assert blk.dtype == np.float32 and blk.shape == (r1 - r0, c1 - c0)
        np.testing.assert_allclose(blk, full[r0:r1, c0:c1], rtol=0, atol=1e-4)


@pytest.mark.parametrize("shape,angle", [((301, 257), 12.345), ((200, 333), 77.7), ((150, 170), 0.0)])
def test_rotate_window_at_fractional_origin(shape, angle):
    """A block on a grid with a fractional origin ((row, col) index coordinates of the rotated
    frame) equals the whole input sampled at those points (cubic spline, fill 0); an integer
    origin gives exactly `rotate_window`; shifting the input content by whole pixels and the
    origin with it gives the same block (the grid follows the content)."""
    rng = np.random.default_rng(3)
    img = rng.random(shape) * 200
    m, off, rshape = geometry._rotation_transform(shape, angle)
    cases = [((10.25, 7.5), (40, 33)), ((rshape[0] / 3 + 0.731, rshape[1] / 4 - 0.219), (90, 120)),
             ((-3.4, -5.9), (20, 20)), ((rshape[0] - 10.5, rshape[1] - 30.3), (25, 45))]
    for origin, bshape in cases:
        blk = geometry.rotate_window_at(img, angle, origin, bshape)
        ii, jj = np.indices(bshape, dtype=np.float64)
        src = np.tensordot(m, np.stack([ii + origin[0], jj + origin[1]]), axes=1) + off[:, None, None]
        want = ndi.map_coordinates(img, src, order=3, mode="constant", cval=0.0, prefilter=True)
        assert blk.dtype == np.float64 and blk.shape == bshape
        np.testing.assert_allclose(blk, want, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(geometry.rotate_window_at(img, angle, (5, 8), (30, 40)),
                                  geometry.rotate_window(img, angle, (5, 8, 35, 48)))
    # the same content 17 rows / 29 cols further in a bigger image: origin mapped with it
    big = np.zeros((shape[0] + 40, shape[1] + 50))
    big[17:17 + shape[0], 29:29 + shape[1]] = img
    mb, offb, _ = geometry._rotation_transform(big.shape, angle)
    origin = np.array([rshape[0] / 3 + 0.731, rshape[1] / 4 - 0.219])
    origin_b = mb.T @ (m @ origin + off + [17, 29] - offb)
    a = geometry.rotate_window_at(img, angle, origin, (60, 70))
    b = geometry.rotate_window_at(big, angle, origin_b, (60, 70))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)
