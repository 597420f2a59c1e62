"""Regions and hulls against brute-force references on random and crafted masks."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal as ss
from scipy.spatial import ConvexHull

from ptolemy_rt import regions


def _random_mask(seed: int, shape=(90, 110), p=0.003, blobs=True):
    rng = np.random.default_rng(seed)
    m = rng.random(shape) < p
    if blobs:
        m = ndi.binary_dilation(m, iterations=int(rng.integers(0, 3)))
    return m


@pytest.mark.parametrize("size", [0, 1, 2, 3, 5, 6, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dilation_equals_convolve2d_same(size, seed):
    m = _random_mask(seed, p=0.01, blobs=False)
    m[0, 0] = m[-1, -1] = m[0, -1] = m[-1, 0] = True  # edges
    got = regions.dilate_mask(m, size)
    if size <= 1:
        want = m
    else:
        want = ss.convolve2d(m.astype(float), np.ones((size, size)), mode="same") > 0
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (3, 4), (12, 5)])
@pytest.mark.parametrize("size", [2, 3, 8, 15])
def test_dilation_of_masks_smaller_than_the_box(shape, size):
    """Boxes as large as the mask or larger (the running counts start and end outside it)."""
    rng = np.random.default_rng(size * 100 + shape[0])
    for _ in range(5):
        m = rng.random(shape) < 0.2
        want = ss.convolve2d(m.astype(float), np.ones((size, size)), mode="same") > 0
        np.testing.assert_array_equal(regions.dilate_mask(m, size), want)


def _brute_labels(mask, size):
    grown = ss.convolve2d(mask.astype(float), np.ones((size, size)), mode="same") > 0 if size > 1 else mask
    lab, n = ndi.label(grown, structure=np.ones((3, 3)))
    lab[~mask] = 0
    return lab, n


def _brute_hull(lab, i):
    r, c = np.nonzero(lab == i)
    pts = np.concatenate([np.stack([r + dr, c + dc], 1) for dr, dc in ((0, 0), (1, 0), (1, 1), (0, 1))])
    pts = np.unique(pts, axis=0).astype(float)
    h = ConvexHull(pts)
    return pts[h.vertices], h.volume


@pytest.mark.parametrize("seed", range(6))
def test_labels_and_hulls_match_brute_force(seed):
    m = _random_mask(seed)
    lab, n = regions.label_regions(m, 6)
    want_lab, want_n = _brute_labels(m, 6)
    assert n == want_n and n > 1
    np.testing.assert_array_equal(lab, want_lab)
    assert lab.dtype == np.int32
    hulls = regions.region_hulls(lab, n)
    assert len(hulls) == n
    for i, h in enumerate(hulls, start=1):
        want_v, want_area = _brute_hull(lab, i)
        assert h.dtype == np.float64 and h.shape[1] == 2
        # same vertex set (no collinear or repeated vertices)
        got = sorted(map(tuple, h))
        assert got == sorted(map(tuple, want_v))
        assert regions.polygon_area(h) == pytest.approx(want_area, abs=1e-9)
        # counter-clockwise in (row, col) axes: positive shoelace sum
        x, y = h[:, 0], h[:, 1]
        assert np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)) > 0


def test_no_dilation_is_8_connected():
    m = np.zeros((10, 10), bool)
    m[2, 2] = m[3, 3] = True  # diagonal neighbours: one region
    m[2, 6] = True  # two columns away: separate
    lab, n = regions.label_regions(m, 0)
    assert n == 2
    assert lab[2, 2] == lab[3, 3] != lab[2, 6]
    # 6×6 dilation joins pixels up to 5 apart
    m2 = np.zeros((20, 20), bool)
    m2[5, 5] = m2[5, 10] = True
    assert regions.label_regions(m2, 6)[1] == 1
    m2[5, 10] = False
    m2[5, 11] = True  # 6 apart: boxes cols 3..8 and 9..14 touch -> still 8-connected
    assert regions.label_regions(m2, 6)[1] == 1
    m2[5, 11] = False
    m2[5, 12] = True  # boxes 3..8 and 10..15: gap at col 9
    assert regions.label_regions(m2, 6)[1] == 2


def test_single_pixel_and_empty():
    m = np.zeros((8, 8), bool)
    assert regions.label_regions(m, 6)[1] == 0
    assert regions.region_hulls(np.zeros((8, 8), np.int32), 0) == []
    m[3, 4] = True
    lab, n = regions.label_regions(m, 6)
    (h,) = regions.region_hulls(lab, n)
    assert sorted(map(tuple, h)) == [(3.0, 4.0), (3.0, 5.0), (4.0, 4.0), (4.0, 5.0)]
    assert regions.polygon_area(h) == 1.0
    assert regions.polygon_centroid(h) == pytest.approx((3.5, 4.5))


def test_area_and_centroid_known_polygons():
    tri = np.array([[0.0, 0.0], [0.0, 6.0], [3.0, 0.0]])
    assert regions.polygon_area(tri) == 9.0
    assert regions.polygon_area(tri[::-1]) == 9.0
    assert regions.polygon_centroid(tri) == pytest.approx((1.0, 2.0))
    assert regions.polygon_centroid(tri[::-1]) == pytest.approx((1.0, 2.0))
    rect = np.array([[10.0, 20.0], [10.0, 30.0], [14.0, 30.0], [14.0, 20.0]])
    assert regions.polygon_area(rect) == 40.0
    assert regions.polygon_centroid(rect) == pytest.approx((12.0, 25.0))
    assert regions.polygon_centroid(np.array([[1.0, 1.0], [3.0, 3.0]])) == (2.0, 2.0)


def test_large_region_many_rows():
    # more (row, label) entries than the initial buffer: exercises growth
    m = np.zeros((1500, 40), bool)
    m[:, 5:30] = True
    m[::3, 35] = True
    lab, n = regions.label_regions(m, 0)
    hulls = regions.region_hulls(lab, n)
    assert n == 1 + 500
    assert regions.polygon_area(hulls[0]) == 1500 * 25
