"""Lattice search (docs/ALGORITHM.md#medmag-lattice): synthetic lattices with known truth, the summed-area-table cost
against brute-force painting, and the reference U-Net mask of the published example.

Coordinates: (row, col) px, pixel-corner coordinates (pixel (r, c) covers [r, r+1) × [c, c+1)).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import REFERENCE, needs_shared
from ptolemy_rt import kernels, lattice, medmag, regions


def disc_mask(shape, centres, radius):
    """bool [row, col] mask: pixels whose centre (r + 0.5, c + 0.5) lies within radius of a centre."""
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]]
    m = np.zeros(shape, dtype=bool)
    for r, c in centres:
        m |= (rr + 0.5 - r) ** 2 + (cc + 0.5 - c) ** 2 <= radius**2
    return m


def true_lattice(origin, spacing, angle_deg, shape, margin=0.0):
    """Points origin + a·d + b·d⊥ with d at angle_deg from the row axis, inside shape ± margin."""
    t = math.radians(angle_deg)
    d = np.array([math.cos(t), math.sin(t)]) * spacing
    dp = np.array([-d[1], d[0]])
    k = int(math.hypot(*shape) / spacing) + 3
    a, b = np.meshgrid(np.arange(-k, k + 1), np.arange(-k, k + 1), indexing="ij")
    p = np.asarray(origin) + a.reshape(-1, 1) * d + b.reshape(-1, 1) * dp
    keep = ((p[:, 0] >= -margin) & (p[:, 0] <= shape[0] + margin)
            & (p[:, 1] >= -margin) & (p[:, 1] <= shape[1] + margin))
    return p[keep]


def centroids_of(mask):
    labels, n = regions.label_regions(mask, 6)
    return np.array([regions.polygon_centroid(h) for h in regions.region_hulls(labels, n)])


def angle_mod90_diff(a, b):
    x = (a - b) % 90.0
    return min(x, 90.0 - x)


@pytest.mark.parametrize("spacing,angle,origin", [(150.0, 20.0, (333.3, 411.7)), (97.5, -38.0, (250.2, 260.9))])
def test_recovers_synthetic_lattice(spacing, angle, origin):
    shape = (700, 900)
    truth = true_lattice(origin, spacing, angle, shape)
    inside = truth[(truth[:, 0] > 25) & (truth[:, 0] < shape[0] - 25) & (truth[:, 1] > 25) & (truth[:, 1] < shape[1] - 25)]
    # drop two holes (empty holes the U-Net misses) and add a spurious blob
    kept = np.delete(inside, [3, len(inside) // 2], axis=0)
    mask = disc_mask(shape, kept, 14.0)
    mask[600:606, 20:26] = True
    cents = centroids_of(mask)
    lat = lattice.find_lattice(mask, cents)
    assert lat is not None
    assert abs(lat.spacing_px - spacing) < 0.5
    assert angle_mod90_diff(lat.angle_deg, angle) < 0.3
    # every true lattice point within the image + margin is found (within 3 px), and no other
    expected = true_lattice(origin, spacing, angle, shape, margin=lattice.MARGIN_PX - 2)
    dist = np.sqrt(((expected[:, None, :] - lat.points[None, :, :]) ** 2).sum(-1))
    # (centroids of rasterised discs are off by a fraction of a px; errors grow along the lattice)
    assert dist.min(axis=1).max() < 3.0  # includes the two holes missing from the mask
    loose = true_lattice(origin, spacing, angle, shape, margin=lattice.MARGIN_PX + 2)
    assert len(expected) <= len(lat.points) <= len(loose)


def test_sat_cost_equals_painted_cost_on_random_candidates():
    rng = np.random.default_rng(7)
    for trial in range(6):
        h, w = int(rng.integers(60, 200)), int(rng.integers(60, 200))
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.5)
        m8 = np.ascontiguousarray(mask.view(np.uint8))
        n = 8
        cents = np.column_stack([rng.uniform(-20, h + 20, n), rng.uniform(-20, w + 20, n)])
        if trial == 0:  # exact half-pixel positions exercise the box rounding
            cents = np.round(cents) + 0.5
        nb = lattice.nearest_neighbours(cents, 6)
        costs, counts, _ = kernels.score_candidates(m8, cents, nb, 30.0, 30)
        n_small = 0
        for i in range(n):
            for s in range(6):
                j = nb[i, s]
                d = cents[j] - cents[i]
                pts = lattice.lattice_points(cents[i], d, mask.shape, 30.0)
                assert counts[i, s] in (len(pts), -1)
                assert costs[i, s] == lattice.painted_cost(mask, pts), (trial, i, s)
                n_small += np.hypot(*d) < 30 * math.sqrt(2)
    assert n_small > 5  # the painting and whole-cover paths (overlapping boxes) were exercised


def test_degenerate_candidate_covers_whole_image():
    mask = np.zeros((300, 400), dtype=bool)
    mask[100:120, 100:120] = True
    mask[100:120, 300:320] = True
    cents = np.array([[110.0, 110.0], [110.3, 110.2], [110.0, 310.0]])  # two 0.36 px apart
    m8 = np.ascontiguousarray(mask.view(np.uint8))
    nb = lattice.nearest_neighbours(cents, 6)
    costs, counts, _ = kernels.score_candidates(m8, cents, nb, 100.0, 30)
    assert counts[0, 0] == -1 and costs[0, 0] == mask.size - mask.sum()
    for d in (np.array([19.0, 0.0]), np.array([13.4, 13.4]), np.array([7.0, -11.0])):
        pts = lattice.lattice_points(cents[0], d, mask.shape, 100.0)
        assert lattice.painted_cost(mask, pts) == mask.size - mask.sum()  # the proof, checked
    lat = lattice.find_lattice(mask, cents)
    assert lat.spacing_px == pytest.approx(200.0, abs=1)


def test_overlapping_boxes_use_exact_union():
    mask = np.zeros((80, 80), dtype=bool)
    mask[20:40, 20:40] = True
    cents = np.array([[30.0, 30.0], [40.0, 35.0]])  # |d| ≈ 11 px: boxes overlap heavily
    m8 = np.ascontiguousarray(mask.view(np.uint8))
    nb = lattice.nearest_neighbours(cents, 6)
    costs, _, _ = kernels.score_candidates(m8, cents, nb, 100.0, 30)
    pts = lattice.lattice_points(cents[0], cents[1] - cents[0], mask.shape, 100.0)
    assert costs[0, 0] == lattice.painted_cost(mask, pts)
    # every pixel is covered: cost = pixels outside the mask only
    assert costs[0, 0] == mask.size - mask.sum()


def test_fewer_than_two_centroids_give_no_lattice():
    mask = np.zeros((50, 50), dtype=bool)
    assert lattice.find_lattice(mask, np.empty((0, 2))) is None
    assert lattice.find_lattice(mask, np.array([[10.0, 10.0]])) is None
    assert lattice.find_lattice(mask, np.array([[10.0, 10.0], [10.0, 10.0]])) is None  # d = 0


def test_nearest_neighbours_excludes_self_and_pads():
    c = np.array([[0.0, 0.0], [0.0, 10.0], [0.0, 25.0]])
    nb = lattice.nearest_neighbours(c, 6)
    assert nb.shape == (3, 6)
    assert nb[0, :2].tolist() == [1, 2] and (nb[:, 2:] == -1).all()
    assert nb[2, :2].tolist() == [1, 0]


@pytest.mark.parametrize("n", [2, 7, 300, 600])
def test_nearest_neighbours_are_the_nearest_in_index_order_on_ties(n):
    """Against a full stable sort of all distances (blocks of NEIGHBOUR_BLOCK rows: n = 600
    spans three), on a perfect lattice (every distance tied many times) shuffled and on
    jittered points; the distances agree with scipy's k-d tree."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(n)
    side = int(np.ceil(np.sqrt(n)))
    grid = np.array([(r * 40.0, c * 40.0) for r in range(side) for c in range(side)])[:n]
    for pts in (grid[rng.permutation(n)], grid + rng.normal(scale=2.0, size=grid.shape)):
        nb = lattice.nearest_neighbours(pts, 6)
        d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d2, np.inf)
        kk = min(6, n - 1)
        want = np.argsort(d2, axis=1, kind="stable")[:, :kk]
        assert (nb[:, :kk] == want).all() and (nb[:, kk:] == -1).all()
        dist, _ = cKDTree(pts).query(pts, k=kk + 1)
        got = np.sqrt(np.take_along_axis(d2, nb[:, :kk], axis=1))
        np.testing.assert_allclose(got, np.asarray(dist).reshape(n, -1)[:, 1:], rtol=1e-12)


def test_angle_convention():
    assert lattice.lattice_angle_deg((1.0, 1.0)) == pytest.approx(45.0)
    assert lattice.lattice_angle_deg((-1.0, -1.0)) == pytest.approx(45.0)  # quadrant lost
    assert lattice.lattice_angle_deg((1.0, -2.0)) == pytest.approx(-63.4349, abs=1e-3)
    assert lattice.lattice_angle_deg((0.0, 5.0)) == 90.0


@needs_shared
def test_reference_mask_lattice():
    mask = np.load(REFERENCE / "medmag_readme_1024x1440.unet_mask.npy").astype(bool)
    cents = centroids_of(mask)
    assert len(cents) == 17
    lat = lattice.find_lattice(mask, cents)
    assert lat.spacing_px == pytest.approx(290.1533524701491, abs=1e-6)
    assert lat.angle_deg == pytest.approx(56.946399251641985, abs=1e-6)
    assert len(lat.points) == 24  # before the edge filter (reference intermediates)
    slow = lattice.find_lattice_painted(mask, cents)
    assert (slow.i, slow.j, slow.cost) == (lat.i, lat.j, lat.cost)
    assert np.array_equal(slow.points, lat.points)


def _oblique_mask(shape, origin, u, v, radius=9.0):
    """Discs on the oblique lattice origin + a·u + b·v ((row, col) px) and their centres."""
    h, w = shape
    pts = kernels.lattice_points2(*origin, *u, *v, h, w, 0.0)
    rr, cc = np.mgrid[:h, :w]
    m = np.zeros(shape, bool)
    for r, c in pts:
        m |= (rr + 0.5 - r) ** 2 + (cc + 0.5 - c) ** 2 <= radius * radius
    return m, pts


def test_oblique_lattice_of_a_tilted_grid_is_found():
    """A square grid imaged at 35° tilt (one axis shrunk by cos 35°) is an oblique lattice:
    the oblique search finds every hole; the published square search cannot."""
    t = math.radians(35)
    rot = np.array([[math.cos(0.3), -math.sin(0.3)], [math.sin(0.3), math.cos(0.3)]])
    basis = rot @ np.diag([1.0, math.cos(t)]) @ rot.T @ (70.0 * np.eye(2))
    u, v = basis[:, 0], basis[:, 1]
    shape = (420, 560)
    mask, truth = _oblique_mask(shape, (43.0, 57.0), u, v)
    cents = medmag.mask_centroids(mask)
    inside = truth[medmag.inside_points(truth, shape, medmag.EDGE_PX + 2)]
    lat = lattice.find_lattice(mask, cents, oblique=True)
    assert lat.oblique
    found = lat.points[medmag.inside_points(lat.points, shape)]
    dist = np.sqrt(((inside[:, None, :] - found[None, :, :]) ** 2).sum(-1))
    # (basis vectors come from rasterised disc centroids: errors grow along the lattice)
    assert dist.min(axis=1).max() < 5.0  # every hole found
    dist_all = np.sqrt(((found[:, None, :] - truth[None, :, :]) ** 2).sum(-1))
    assert dist_all.min(axis=1).max() < 5.0  # and nothing else
    assert lat.shortest_px == pytest.approx(min(np.hypot(*u), np.hypot(*v)), abs=0.5)
    square = lattice.find_lattice(mask, cents)
    sq = square.points[medmag.inside_points(square.points, shape)]
    dsq = np.sqrt(((inside[:, None, :] - sq[None, :, :]) ** 2).sum(-1)).min(axis=1) if len(sq) else np.inf
    assert np.sum(dsq < 5.0) < 0.8 * len(inside)  # the square lattice misses many holes
    assert lat.cost < square.cost


def test_oblique_search_keeps_a_square_grid_square():
    """On an untilted grid the square candidate stays the winner (ties go to square)."""
    mask, truth = _oblique_mask((400, 500), (40.0, 50.0), (0.0, 80.0), (-80.0, 0.0))
    cents = medmag.mask_centroids(mask)
    a = lattice.find_lattice(mask, cents)
    b = lattice.find_lattice(mask, cents, oblique=True)
    assert not b.oblique and b.cost == a.cost
    np.testing.assert_array_equal(a.points, b.points)


def test_oblique_costs_equal_painted_costs():
    """Every oblique candidate's cost (SAT or painting path) equals painting its points."""
    rng = np.random.default_rng(9)
    n_paint = n_sat = 0
    for trial in range(4):
        h, w = int(rng.integers(80, 200)), int(rng.integers(80, 200))
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.4)
        n = 7
        cents = np.column_stack([rng.uniform(0, h, n), rng.uniform(0, w, n)])
        nb = lattice.nearest_neighbours(cents, 6)
        _, _, costs2 = kernels.score_candidates(mask, cents, nb, 30.0, 30, True)
        for i in range(n):
            p = -1
            for s in range(6):
                for t in range(s + 1, 6):
                    p += 1
                    if costs2[i, p] < 0:
                        continue
                    u, v = cents[nb[i, s]] - cents[i], cents[nb[i, t]] - cents[i]
                    pts = kernels.lattice_points2(*cents[i], *u, *v, h, w, 30.0)
                    assert costs2[i, p] == lattice.painted_cost(mask, pts), (trial, i, s, t)
                    short = math.sqrt(kernels.shortest_vector2(*u, *v))
                    n_sat += short >= 30 * math.sqrt(2)
                    n_paint += short < 30 * math.sqrt(2)
    assert n_sat > 5 and n_paint > 5


@pytest.mark.parametrize("u, v, want", [((10, 0), (3, 10), 100.0), ((10, 0), (11, 1), 2.0),
                                        ((0, 7), (50, 21), 49.0), ((6, 8), (-8, 6), 100.0)])
def test_shortest_vector(u, v, want):
    assert kernels.shortest_vector2(*u, *v) == pytest.approx(want)
    assert kernels.shortest_vector2(*v, *u) == pytest.approx(want)


def _oblique_mask_with_noise(seed=1, n_noise=60, side=600, rh=12, rn=9):
    """Discs of radius rh on an exact oblique lattice (a tilted square grid) plus n_noise
    discs of radius rn at seeded random places ≥ 40 px from every hole (mask regions between
    holes, as a U-Net gives on film): (mask, true points (row, col), u, v)."""
    from ptolemy_rt import kernels

    u, v, o = np.array([100.0, 8.0]), np.array([-7.0, 88.0]), np.array([50.0, 45.0])
    pts = kernels.lattice_points2(o[0], o[1], *u, *v, side, side, 0.0)
    pts = pts[(pts >= rh).all(1) & (pts < side - rh).all(1)]
    rr, cc = np.mgrid[:side, :side] + 0.5
    m = np.zeros((side, side), bool)
    for p in pts:
        m |= (rr - p[0]) ** 2 + (cc - p[1]) ** 2 <= rh * rh
    rng = np.random.default_rng(seed)
    k = 0
    while k < n_noise:
        q = rng.uniform(rn, side - rn, 2)
        if np.hypot(*(pts - q).T).min() < 40:
            continue
        m |= (rr - q[0]) ** 2 + (cc - q[1]) ** 2 <= rn * rn
        k += 1
    return m, pts, u, v


def test_measured_basis_recovers_lattice_the_search_loses():
    # issue 15 (120 nm/px, tilted R1/1): noise regions between the holes make the
    # centroid-pair search keep a wrong, denser lattice; the scale stage's measured basis,
    # scored anchored at each centroid, is cheaper and puts a point on every true hole
    from ptolemy_rt.medmag import mask_centroids

    m, pts, u, v = _oblique_mask_with_noise()
    c = mask_centroids(m)
    plain = lattice.find_lattice(m, c, oblique=True)
    assert plain.shortest_px < 70.0  # the search alone loses the 88 px spacing
    lat = lattice.find_lattice(m, c, oblique=True, basis=[u, v])
    assert lat.j == -1 and lat.cost < plain.cost
    assert lat.d.tolist() == u.tolist() and lat.d2.tolist() == v.tolist()
    near = np.hypot(*(lat.points[:, None] - pts[None]).transpose(2, 0, 1)).min(0)
    assert near.max() < 3.0  # every true hole has a lattice point within 3 px
    # the SAT costs equal the painted reference
    costs = lattice.basis_costs(m, c[:5], u, v)
    for i in range(5):
        ref = lattice.painted_cost(m, lattice.kernels.lattice_points2(*c[i], *u, *v, *m.shape, lattice.MARGIN_PX))
        assert costs[i] == ref


def test_measured_basis_left_out_when_search_agrees_and_refused_when_published():
    m, pts, u, v = _oblique_mask_with_noise(seed=3, n_noise=20)
    from ptolemy_rt.medmag import mask_centroids

    c = mask_centroids(m)
    plain = lattice.find_lattice(m, c, oblique=True)
    with_b = lattice.find_lattice(m, c, oblique=True, basis=[u * 1.01, v * 0.99])
    assert with_b.n_candidates == plain.n_candidates and with_b.cost == plain.cost and with_b.j == plain.j
    with pytest.raises(ValueError):
        lattice.find_lattice(m, c, published=True, basis=[u, v])
