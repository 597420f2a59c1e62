"""Lattice search over hole centroids (docs/ALGORITHM.md#medmag-lattice), square as published, optionally oblique.

Coordinates: points and vectors are (row, col) float64 in *pixel-corner* coordinates
(pixel (r, c) covers [r, r+1) × [c, c+1); the convention of `regions` polygons), px.
Masks are bool/uint8 arrays indexed [row, col].

Candidates: for each centroid c_i and each of its k = 6 nearest other centroids c_j,
d = c_j − c_i and d⊥ = (−d_col, d_row) (d turned 90°); the candidate lattice is every
point c_i + a·d + b·d⊥ (a, b integers) with −margin ≤ row ≤ H + margin and
−margin ≤ col ≤ W + margin (margin = 100 px). Points are enumerated a-major, then b, both
ascending.

Cost of a candidate (lower is better):
    10 × (mask pixels not covered) + (covered pixels outside the mask)
where each lattice point p covers the box of box×box pixels (box = 30) whose centres lie in
[p − box/2, p + box/2) on both axes, i.e. rows floor(p_row + 0.5) − 15 … + 14 (same for
columns), clipped to the image; "covered" is the union of the boxes. Only pixels inside the
image count.

Fast path: the in-mask count of a box comes from a summed-area table of the mask, so a
candidate costs O(points) instead of painting a whole mask. That sum equals the painted
union exactly when no two boxes overlap. Two boxes overlap only when both coordinate
differences of their starts are < 30, which needs both coordinate differences of the two
points < 30, i.e. a point distance < 30·√2; distinct points of a square lattice are at least
|d| apart, so for |d|² ≥ 2·box² boxes never overlap. Smaller |d| falls back to painting
(exact) into a stamp buffer — except for |d| ≤ (box/2 − 1.5)·√2 (19.09 px for 30 px boxes),
where the boxes provably cover the whole image (every pixel centre has a lattice point within
s/√2 ≤ box/2 − 1.5 px on both axes, and such a point's box holds it; the margin supplies the
points beyond the edges), so cost = (pixels outside the mask) without enumerating anything.
That keeps degenerate candidates (two centroids a few px apart) O(1) instead of millions of
points.

Oblique search (`oblique=True`; not in the published tool): a grid imaged at a stage tilt
is an oblique lattice (a square lattice shrunk by cos(tilt) across the tilt axis), which no
square candidate fits beyond a few holes. Besides the square candidates, every pair of
neighbours (c_j, c_k) of c_i whose vectors u = c_j − c_i, v = c_k − c_i can be a square
lattice seen at up to ~45° tilt (lengths within a factor 0.7 of each other, angle 90° ± 25°)
gives the candidate c_i + a·u + b·v, with the same cost; the summed-area path applies when
the lattice's shortest vector (Lagrange-Gauss reduction) is ≥ box·√2. The oblique search
refines the square one: it runs after it and keeps only bases whose lengths are within a
factor 0.7 of the square winner's |d| (the square search finds the spacing, the oblique
one the shape; without that limit a noisy mask of large blobs is covered more cheaply by a
dense wrong lattice). The square candidates stay in, so an untilted grid keeps its square
lattice unless an oblique one is strictly cheaper.

The candidate loop is a compiled kernel (`lattice_kernels.score_candidates`, loaded by `kernels`).

Winner: the cheapest candidate; ties go to the first in enumeration order (centroid i
ascending, then neighbours nearest first; all square candidates before oblique ones).
Deterministic.

Published rule (`published=True`, `--compat published`; docs/ALGORITHM.md#published-box-rule):
the published tool's search exactly. Neighbours are `published_neighbours` (the six
entries of ``argpartition(dist[i], 6)[:6]``, centroid i itself among them and skipped, so
five, in argpartition order), and each lattice point (r, c) covers
``mask[int(r) − 15 : int(r) + 15, int(c) − 15 : int(c) + 15]`` with Python slice
semantics: truncated coordinates, boxes above or left of the image wrapped to the far edge
or empty. The cheapest candidate wins, the first on ties (the published loop replaces the
best only when strictly cheaper).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import kernels
from .kernel_constants import MISS_WEIGHT  # uncovered mask pixel's cost (covered outside: 1)

#: rows of the squared-distance table `nearest_neighbours` holds at a time (256 × n float64)
NEIGHBOUR_BLOCK = 256

N_NEIGHBOURS = 6
MARGIN_PX = 100.0
BOX_PX = 30
MAX_POINTS = 5_000_000  # a winning lattice denser than this gets no point list (degenerate)
#: Oblique candidates' basis vectors are within this factor of the square winner's |d|.
OBLIQUE_LENGTH_RATIO = 0.7
#: The measured basis is scored only when the search's winner has a cell area more than this
#: factor from the basis's (it lost the spacing: e.g. twice the pitch, 4× the area).
BASIS_AREA_RATIO = 1.5


@dataclass(frozen=True)
class Lattice:
    """The winning lattice.

    origin: (row, col) px, the centroid c_i it was built from; d: (row, col) px lattice vector
    c_j − c_i; d2: the second lattice vector, (−d_col, d_row) for a square lattice, c_k − c_i
    for an oblique one; points: n×2 (row, col) px of all
    lattice points within the image plus the margin (before any edge filter);
    cost: its cost (see module docstring); i, j: indices of the centroids that made it (j = −1
    for the measured basis of `find_lattice`);
    n_candidates: how many candidates were scored.

    Examples
    --------
    >>> lat = Lattice(origin=np.zeros(2), d=np.array([3.0, 4.0]), points=np.empty((0, 2)),
    ...               cost=0, i=0, j=1, n_candidates=1)
    >>> lat.d2.tolist(), lat.spacing_px, round(lat.angle_deg, 3), lat.oblique
    ([-4.0, 3.0], 5.0, 53.13, False)
    """

    origin: np.ndarray
    d: np.ndarray
    points: np.ndarray
    cost: int
    i: int
    j: int
    n_candidates: int
    d2: np.ndarray | None = None

    def __post_init__(self):
        if self.d2 is None:
            object.__setattr__(self, "d2", np.array([-self.d[1], self.d[0]], dtype=np.float64))

    @property
    def oblique(self) -> bool:
        """True when d2 is not d turned by 90°."""
        return not np.array_equal(self.d2, np.array([-self.d[1], self.d[0]], dtype=np.float64))

    @property
    def shortest_px(self) -> float:
        """Length (px) of the shortest non-zero lattice vector (= |d| for a square lattice)."""
        if not self.oblique:
            return self.spacing_px
        from .kernels import shortest_vector2

        return float(math.sqrt(shortest_vector2(*self.d, *self.d2)))

    @property
    def spacing_px(self) -> float:
        """|d|, px."""
        return float(math.hypot(self.d[0], self.d[1]))

    @property
    def angle_deg(self) -> float:
        """atan(d_col / d_row) in degrees, in (−90, 90] (the published tool's angle: the
        quadrant is lost, every one of the four lattice directions gives the same value
        modulo 90°). Rotating the image by −angle_deg (`geometry.rotate_image`) makes the
        lattice axis-aligned."""
        return lattice_angle_deg(self.d)


def lattice_angle_deg(d) -> float:
    """atan(d_col / d_row), degrees, in (−90, 90]; d = (row, col) px (d_row = 0 gives 90).

    Parameters
    ----------
    d : sequence of 2 float
        Lattice vector (row, col), px.

    Returns
    -------
    float
        Angle, degrees, in (−90, 90].

    Examples
    --------
    >>> lattice_angle_deg((10, 10)), lattice_angle_deg((10, -10)), lattice_angle_deg((0, 5))
    (45.0, -45.0, 90.0)
    """
    dr, dc = float(d[0]), float(d[1])
    if dr == 0.0:
        return 90.0
    return float(np.degrees(np.arctan(dc / dr)))


def nearest_neighbours(centroids: np.ndarray, k: int = N_NEIGHBOURS) -> np.ndarray:
    """n×k int64: for each centroid the indices of its k nearest *other* centroids, nearest
    first, equal distances in index order; slots beyond n−1 others are −1.

    Squared distances (Δrow² + Δcol², px²) of NEIGHBOUR_BLOCK rows at a time against all
    points (O(n²) time, O(NEIGHBOUR_BLOCK · n) memory; n is at most a few thousand holes
    once the image is at the model set's pitch). No scipy.spatial: its import costs
    ≈ 0.1 s per process (docs/BENCH.md#startup).

    Parameters
    ----------
    centroids : array_like, (n, 2)
        (row, col) points, px.
    k : int, optional
        Neighbours per point.

    Returns
    -------
    ndarray, int64, (n, k)
        Neighbour indices, nearest first; −1 where there are fewer than k others.

    Examples
    --------
    >>> c = [[0, 0], [0, 1], [0, 3], [5, 0]]
    >>> nearest_neighbours(c, 2).tolist()
    [[1, 2], [0, 2], [1, 0], [0, 1]]
    >>> nearest_neighbours([[0, 0], [0, 1]], 2).tolist()
    [[1, -1], [0, -1]]
    >>> nearest_neighbours([[0, 0], [0, 2], [0, -2], [2, 0]], 3)[0].tolist()  # a tie: index order
    [1, 2, 3]
    """
    c = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    n = len(c)
    out = np.full((n, k), -1, np.int64)
    kk = min(k, n - 1)
    if kk <= 0:
        return out
    for start in range(0, n, NEIGHBOUR_BLOCK):
        rows = np.arange(start, min(n, start + NEIGHBOUR_BLOCK))
        d2 = (c[rows, None, 0] - c[None, :, 0]) ** 2 + (c[rows, None, 1] - c[None, :, 1]) ** 2
        d2[np.arange(len(rows)), rows] = np.inf
        # the kk nearest, then the rows' ties at the kk-th distance settled by index
        kth = np.partition(d2, kk - 1, axis=1)[:, kk - 1:kk]
        for i, row in enumerate(rows):
            cand = np.flatnonzero(d2[i] <= kth[i])
            out[row, :kk] = cand[np.argsort(d2[i, cand], kind="stable")][:kk]
    return out


def published_neighbours(centroids: np.ndarray) -> np.ndarray:
    """The published tool's neighbour slots (docs/ALGORITHM.md#published-box-rule): row i
    holds ``argpartition(dist[i], 6)[:6]`` in the order numpy returns it, dist[i] the
    Euclidean distances (sqrt of the summed squared (row, col) differences, px) from centroid
    i to every centroid, with i itself (distance 0) replaced by −1. So five neighbours are
    tried, not sorted by distance. With fewer than 7 centroids (where the published call
    would fail: kth out of bounds) every centroid is taken, in ``argpartition(dist[i], n − 1)``
    order.

    Parameters
    ----------
    centroids : array_like, (n, 2)
        (row, col) points, px.

    Returns
    -------
    ndarray, int64, (n, min(n, 6))
        Neighbour indices in argpartition order; −1 in the slot of i itself (when i is not
        among the six, at coincident centroids, every slot holds another index).

    Examples
    --------
    >>> c = [[0, 0], [0, 1], [0, 3], [5, 0]]
    >>> nb = published_neighbours(c)
    >>> nb.shape, sorted(nb[0].tolist()), sorted(nb[3].tolist())
    ((4, 4), [-1, 1, 2, 3], [-1, 0, 1, 2])
    """
    c = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    n = len(c)
    k = min(n, N_NEIGHBOURS)
    out = np.full((n, k), -1, np.int64)
    if n < 2:
        return out
    diff = c[:, None, :] - c[None, :, :]
    dist = np.sqrt(diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1])
    for i in range(n):
        idx = np.argpartition(dist[i], min(N_NEIGHBOURS, n - 1))[:k]
        out[i] = np.where(idx == i, -1, idx)
    return out


def lattice_points(origin, d, shape, margin: float = MARGIN_PX) -> np.ndarray:
    """All points origin + a·d + b·d⊥ within the image of `shape` (rows, cols) plus `margin`
    px; n×2 float64 (row, col), px, pixel-corner coordinates, a-major order.

    Parameters
    ----------
    origin, d : sequence of 2 float
        Origin and lattice vector (row, col), px; d non-zero (d⊥ = (−d_col, d_row)).
    shape : sequence of int
        Image (rows, cols).
    margin : float, optional
        px beyond the image edges where points are kept.

    Returns
    -------
    ndarray, float64, (n, 2)
        (row, col) points, px.

    Examples
    --------
    >>> lattice_points((0, 0), (2, 0), (2, 2), margin=0).tolist()
    [[0.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 2.0]]
    """
    return kernels.lattice_points(float(origin[0]), float(origin[1]), float(d[0]), float(d[1]),
                           float(shape[0]), float(shape[1]), float(margin))


def find_lattice(mask: np.ndarray, centroids: np.ndarray, *, k: int = N_NEIGHBOURS,
                 margin: float = MARGIN_PX, box: int = BOX_PX, oblique: bool = False,
                 published: bool = False, basis=None) -> Lattice | None:
    """Cheapest candidate lattice (module docstring) for a bool [row, col] mask and n×2
    (row, col) centroids (px, pixel-corner coordinates); square candidates only (published)
    unless oblique. None when fewer than 2 centroids (no candidate).

    Parameters
    ----------
    mask : array_like, bool, [row, col]
        Hole mask.
    centroids : array_like, (n, 2)
        Hole centroids (row, col), px, pixel-corner coordinates.
    k : int, optional
        Neighbours per centroid that make candidates.
    margin : float, optional
        px beyond the image where lattice points still count.
    box : int, optional
        Side of each lattice point's box, px.
    oblique : bool, optional
        Also score oblique candidates (module docstring).
    published : bool, optional
        The published tool's search (`--compat published`): its neighbours
        (`published_neighbours`; k is then ignored) and box rule
        (docs/ALGORITHM.md#published-box-rule). False: k sorted neighbours, rounded and
        clipped boxes (docs/ALGORITHM.md#medmag-lattice-cost).
    basis : array_like (2, 2) or None, optional
        A lattice measured beforehand (the scale stage's, in this mask's frame): two
        (row, col) px vectors. Not with `published`. When given, the lattice of this basis
        anchored at each centroid is a candidate too (`basis_costs`), after all the others
        (it wins only when strictly cheaper), when the cheapest of the others has a cell area
        more than `BASIS_AREA_RATIO` from the basis's: a mask whose neighbours mislead the square
        search (noise regions between holes: a lattice of twice the pitch wins it, and the
        oblique pass only looks near that) still gets the measured lattice.

    Returns
    -------
    Lattice or None
        The cheapest candidate (first in enumeration order on ties).

    Examples
    --------
    Four 10×10 px holes on a 60 px square grid in a 120×120 image: the lattice has
    spacing 60 px along the rows; each 30×30 box covers its hole and 800 px outside it.

    >>> m = np.zeros((120, 120), bool)
    >>> for r, c in [(20, 20), (20, 80), (80, 20), (80, 80)]:
    ...     m[r - 5:r + 5, c - 5:c + 5] = True
    >>> lat = find_lattice(m, [[20, 20], [20, 80], [80, 20], [80, 80]])
    >>> lat.origin.tolist(), lat.d.tolist(), lat.cost, lat.n_candidates, len(lat.points)
    ([20.0, 20.0], [0.0, 60.0], 3200, 12, 36)
    >>> find_lattice(m, [[20, 20]]) is None
    True

    The published rule tries 3 neighbours of each of the 4 centroids here too (all others:
    fewer than 7 centroids) and finds the same lattice.

    >>> lat = find_lattice(m, [[20, 20], [20, 80], [80, 20], [80, 80]], published=True)
    >>> lat.origin.tolist(), lat.cost, lat.n_candidates
    ([20.0, 20.0], 3200, 12)

    A measured basis whose cell area the search's winner disagrees with (here 4×: a basis
    of 30 px) is scored too, anchored at each centroid (it loses here: its boxes cover more
    film); one that agrees is not scored:

    >>> lat = find_lattice(m, [[20, 20], [20, 80], [80, 20], [80, 80]], basis=[[30, 0], [0, 30]])
    >>> lat.d.tolist(), lat.cost, lat.n_candidates, lat.oblique
    ([0.0, 60.0], 3200, 16, False)
    >>> find_lattice(m, [[20, 20], [20, 80], [80, 20], [80, 80]], basis=[[61, 0], [0, 59]]).n_candidates
    12
    """
    if published and basis is not None:
        raise ValueError("a measured basis is not part of the published search")
    m = np.ascontiguousarray(np.asarray(mask, dtype=bool).view(np.uint8))
    c = np.ascontiguousarray(np.asarray(centroids, dtype=np.float64).reshape(-1, 2))
    if len(c) < 2:
        return None
    nb = published_neighbours(c) if published else nearest_neighbours(c, k)
    costs, _, costs2 = kernels.score_candidates(m, c, nb, float(margin), int(box), False, published=published)
    big = np.iinfo(np.int64).max
    if oblique and (costs >= 0).any():  # second pass: shapes near the square winner's spacing
        i, s = divmod(int(np.argmin(np.where(costs >= 0, costs, big))), nb.shape[1])
        d2sq = float(np.sum((c[nb[i, s]] - c[i]) ** 2))
        r2 = OBLIQUE_LENGTH_RATIO ** 2
        _, _, costs2 = kernels.score_candidates(m, c, nb, float(margin), int(box), True, r2 * d2sq, d2sq / r2,
                                                published)
    costs3 = np.empty(0, np.int64)
    if basis is not None and _basis_disagrees(c, nb, costs, costs2, basis):
        uv = np.asarray(basis, dtype=np.float64).reshape(2, 2)
        costs3 = basis_costs(m.view(bool), c, uv[0], uv[1], margin=margin, box=box)
    flat = np.concatenate([np.where(costs >= 0, costs, big).ravel(), np.where(costs2 >= 0, costs2, big).ravel(),
                           np.where(costs3 >= 0, costs3, big)])
    n_valid = int((costs >= 0).sum() + (costs2 >= 0).sum() + (costs3 >= 0).sum())
    if n_valid == 0:
        return None
    best = int(np.argmin(flat))  # first minimum: square candidates first, (i, neighbour rank) order
    if best >= costs.size + costs2.size:  # the measured basis at centroid i
        i = best - costs.size - costs2.size
        j = -1
        d, d2 = uv[0].copy(), uv[1].copy()
        cost = int(costs3[i])
    elif best < costs.size:
        i, s = divmod(best, nb.shape[1])
        j = int(nb[i, s])
        d = c[j] - c[i]
        d2 = np.array([-d[1], d[0]])
        cost = int(costs[i, s])
    else:
        i, p = divmod(best - costs.size, costs2.shape[1])
        s, t = _pair(p, nb.shape[1])
        j = int(nb[i, s])
        d = c[j] - c[i]
        d2 = c[int(nb[i, t])] - c[i]
        cost = int(costs2[i, p])
    area = abs(float(d[0] * d2[1] - d[1] * d2[0]))
    est = (m.shape[0] + 2 * margin + 1) * (m.shape[1] + 2 * margin + 1) / area
    if est > MAX_POINTS:
        pts = np.empty((0, 2))
    else:
        pts = kernels.lattice_points2(c[i, 0], c[i, 1], d[0], d[1], d2[0], d2[1], m.shape[0], m.shape[1], margin)
    return Lattice(origin=c[i].copy(), d=d, points=pts, cost=cost, i=int(i), j=j, n_candidates=n_valid, d2=d2)


#: `refine_to_centroids`: centroids within this × the shortest lattice vector of their
#: lattice point enter the fit (a hole's centroid, not a blob between holes)
REFINE_MAX_OFFSET = 0.25
REFINE_MIN_CENTROIDS = 6  # fewer matched centroids: the winner is kept as it is
REFINE_MAX_CHANGE = 0.05  # a refined vector further than this × |d| from the winner's: kept as it is
#: the refined lattice replaces the winner only when it moves a lattice point inside the image by
#: more than this × the shortest vector (smaller corrections: the search's own geometry is kept)
REFINE_MIN_MOVE = 0.05


def refine_to_centroids(lat: Lattice, centroids: np.ndarray, shape, *, margin: float = MARGIN_PX) -> Lattice:
    """The winning lattice fitted by least squares to the centroids it explains (robust
    pipeline; not part of the published search).

    The search builds its winner from one centroid difference, so a few px of centroid
    noise tilt and stretch the whole lattice: over the 15-30 periods of a low-magnification
    square that is ≥ 1 % of the pitch at the far edge. Each centroid within
    `REFINE_MAX_OFFSET` × the shortest vector of a lattice point gets that point's integer
    indices (a, b); origin, d and d2 are then the least-squares solution of
    centroid = origin + a·d + b·d2 (for a square lattice with d2 = d turned by 90°: four
    unknowns), fitted twice, the second time without the centroids whose residual exceeds
    three times the median. Kept as it is when fewer than `REFINE_MIN_CENTROIDS` centroids
    match, the indices do not span two directions, a vector would move by more than
    `REFINE_MAX_CHANGE` × |d|, or no point of the image would move by more than
    `REFINE_MIN_MOVE` × the shortest vector (the search's geometry is then good enough: on
    the README example, 17 holes, the refinement would move points by ≤ 2.7 % of the pitch,
    and the published geometry stays).

    Parameters
    ----------
    lat : Lattice
        The search's winner (`find_lattice`).
    centroids : array_like, (n, 2)
        Hole centroids (row, col), px, pixel-corner coordinates (the search's).
    shape : sequence of int
        Image (rows, cols), for the point list.
    margin : float
        As in `find_lattice`.

    Returns
    -------
    Lattice
        The refined lattice (origin: the fitted point of indices (0, 0), the same i, j, cost
        and n_candidates), or ``lat`` itself.

    Examples
    --------
    Centroids of a 40 px lattice turned by 10°, with ±1 px of noise; the winner built from
    two of them is off by about a px per vector, the refined one by a small fraction:

    >>> rng = np.random.default_rng(0)
    >>> t = np.deg2rad(10.0)
    >>> d, d2 = 40 * np.array([np.cos(t), np.sin(t)]), 40 * np.array([-np.sin(t), np.cos(t)])
    >>> ab = np.array([(a, b) for a in range(8) for b in range(8)], float)
    >>> cents = 20 + ab @ np.stack([d, d2]) + rng.uniform(-1, 1, (64, 2))
    >>> win = Lattice(origin=cents[0], d=cents[8] - cents[0], points=np.empty((0, 2)), cost=0, i=0, j=8,
    ...               n_candidates=1)
    >>> ref = refine_to_centroids(win, cents, (360, 360))
    >>> bool(np.hypot(*(ref.d - d)) < 0.2 < np.hypot(*(win.d - d))), ref.oblique, len(ref.points) > 64
    (True, False, True)
    """
    c = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    basis = np.stack([lat.d, lat.d2])  # rows: the two vectors (row, col)
    if len(c) < REFINE_MIN_CENTROIDS or abs(float(np.linalg.det(basis))) < 1e-9:
        return lat
    rel = c - lat.origin
    ab = np.rint(np.linalg.solve(basis.T, rel.T).T)
    resid = np.hypot(*(rel - ab @ basis).T)
    keep = resid <= REFINE_MAX_OFFSET * lat.shortest_px
    square = not lat.oblique
    fit = None
    for _ in range(2):
        if keep.sum() < REFINE_MIN_CENTROIDS or np.linalg.matrix_rank(ab[keep] - ab[keep].mean(axis=0)) < 2:
            return lat
        a, b = ab[keep, 0], ab[keep, 1]
        one, zero = np.ones_like(a), np.zeros_like(a)
        if square:  # row = o_r + a·p − b·q, col = o_c + a·q + b·p; d = (p, q), d2 = (−q, p)
            design = np.concatenate([np.stack([one, zero, a, -b], axis=1), np.stack([zero, one, b, a], axis=1)])
            sol = np.linalg.lstsq(design, np.concatenate([c[keep, 0], c[keep, 1]]), rcond=None)[0]
            o, d, d2 = sol[:2], sol[2:], np.array([-sol[3], sol[2]])
        else:
            design = np.stack([one, a, b], axis=1)
            sol = np.linalg.lstsq(design, c[keep], rcond=None)[0]  # rows: origin, d, d2
            o, d, d2 = sol[0], sol[1], sol[2]
        fit = o, d, d2
        res_all = np.hypot(*(c - o - ab[:, :1] * d - ab[:, 1:] * d2).T)
        keep = keep & (res_all <= 3.0 * max(float(np.median(res_all[keep])), 1e-6))
    o, d, d2 = fit
    if max(np.hypot(*(d - lat.d)), np.hypot(*(d2 - lat.d2))) > REFINE_MAX_CHANGE * lat.spacing_px:
        return lat
    h, w = float(shape[0]), float(shape[1])
    corners = np.array([[0.0, 0.0], [0.0, w], [h, 0.0], [h, w]])  # the largest move is at a corner
    ij = np.linalg.solve(basis.T, (corners - lat.origin).T).T
    moved = (o - lat.origin) + ij[:, :1] * (d - lat.d) + ij[:, 1:] * (d2 - lat.d2)
    if float(np.hypot(*moved.T).max()) <= REFINE_MIN_MOVE * lat.shortest_px:
        return lat
    area = abs(float(d[0] * d2[1] - d[1] * d2[0]))
    if (shape[0] + 2 * margin + 1) * (shape[1] + 2 * margin + 1) / area > MAX_POINTS:
        return lat
    pts = kernels.lattice_points2(float(o[0]), float(o[1]), float(d[0]), float(d[1]), float(d2[0]), float(d2[1]),
                                  int(shape[0]), int(shape[1]), float(margin))
    return Lattice(origin=np.asarray(o, dtype=np.float64), d=np.asarray(d, dtype=np.float64), points=pts,
                   cost=lat.cost, i=lat.i, j=lat.j, n_candidates=lat.n_candidates,
                   d2=np.asarray(d2, dtype=np.float64))


def basis_costs(mask: np.ndarray, centroids: np.ndarray, u, v, *, margin: float = MARGIN_PX,
                box: int = BOX_PX) -> np.ndarray:
    """Cost (module docstring: robust box rule) of the lattice c_i + a·u + b·v anchored at
    each centroid c_i; −1 where u, v are (nearly) parallel or the lattice is degenerate
    (more than `MAX_POINTS` points).

    Summed-area table when the lattice's shortest vector is ≥ box·√2 (boxes cannot
    overlap), else `painted_cost` (exact, slow).

    Parameters
    ----------
    mask : array_like, bool, [row, col]
        Hole mask.
    centroids : array_like, (n, 2)
        Anchors (row, col), px, pixel-corner coordinates.
    u, v : sequence of 2 float
        Basis vectors (row, col), px.
    margin, box
        As in `find_lattice`.

    Returns
    -------
    ndarray, int64, (n,)
        One cost per centroid.

    Examples
    --------
    Two 10×10 px holes 60 px apart: anchored at either hole the 60 px lattice covers both
    (800 px outside each hole in its box) and puts two empty boxes at row 80 (900 px each):

    >>> m = np.zeros((100, 100), bool); m[15:25, 15:25] = True; m[15:25, 75:85] = True
    >>> basis_costs(m, [[20, 20], [20, 80]], (60, 0), (0, 60)).tolist()
    [3400, 3400]
    """
    m = np.asarray(mask, dtype=bool)
    c = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    h, w = m.shape
    out = np.full(len(c), -1, np.int64)
    area = abs(float(u[0] * v[1] - u[1] * v[0]))
    if len(c) == 0 or area < 1e-9 * (float(u @ u) + float(v @ v)) or \
            (h + 2 * margin + 1) * (w + 2 * margin + 1) / max(area, 1e-300) > MAX_POINTS:
        return out
    total = int(np.count_nonzero(m))
    sat_ok = kernels.shortest_vector2(u[0], u[1], v[0], v[1]) >= 2.0 * box * box
    if sat_ok:
        sat = BlockedSAT(m) if m.size > BLOCKED_SAT_MIN_PIXELS else _SAT(m)
    half = box // 2
    for i in range(len(c)):
        pts = kernels.lattice_points2(c[i, 0], c[i, 1], u[0], u[1], v[0], v[1], h, w, margin)
        if not sat_ok:
            out[i] = painted_cost(m, pts, box)
            continue
        s = np.floor(pts + 0.5).astype(np.int64) - half
        r0, c0 = np.clip(s[:, 0], 0, h), np.clip(s[:, 1], 0, w)
        r1, c1 = np.clip(s[:, 0] + box, 0, h), np.clip(s[:, 1] + box, 0, w)
        ok = (r1 > r0) & (c1 > c0)
        r0, c0, r1, c1 = r0[ok], c0[ok], r1[ok], c1[ok]
        covered = int(np.sum((r1 - r0) * (c1 - c0)))
        inside = int(np.sum((sat.at(r1, c1) - sat.at(r0, c1)) - (sat.at(r1, c0) - sat.at(r0, c0))))
        out[i] = MISS_WEIGHT * (total - inside) + (covered - inside)
    return out


#: masks above this many pixels get the 2-byte `BlockedSAT` instead of the int32 table
BLOCKED_SAT_MIN_PIXELS = 4096 * 4096
SAT_BLOCK = 64  # px: a block's in-block counts (≤ 64² = 4096) fit uint16


class _SAT:
    """Summed-area table of a bool mask, int32 (h + 1) × (w + 1): at(r, c) = mask pixels in
    rows < r, cols < c (exact below 2³¹ mask pixels); 4 bytes/px."""

    def __init__(self, m: np.ndarray):
        h, w = m.shape
        self.t = np.zeros((h + 1, w + 1), np.int32)
        np.cumsum(m, axis=0, dtype=np.int32, out=self.t[1:, 1:])
        np.cumsum(self.t[1:, 1:], axis=1, out=self.t[1:, 1:])

    def at(self, r, c) -> np.ndarray:
        return self.t[r, c].astype(np.int64)


class BlockedSAT:
    """The summed-area table of `_SAT` (the same integers) in ≈ 2.1 bytes/px instead of 4
    (issue 14: 0.54 instead of 1.07 GB at 16384²). With B = SAT_BLOCK, R = ⌊r/B⌋·B and
    C = ⌊c/B⌋·B, P(r, c) = T(r, c) + P(R, c) + P(r, C) − P(R, C): T, the count in
    [R, r) × [C, c) (≤ B², uint16, every pixel), and P on block-row boundaries (all cols)
    and on block-column boundaries (all rows), int32. Built block row by block row.

    Examples
    --------
    >>> m = np.random.default_rng(0).random((150, 131)) < 0.4
    >>> r, c = np.meshgrid(np.arange(151), np.arange(132), indexing="ij")
    >>> bool(np.array_equal(BlockedSAT(m).at(r, c), _SAT(m).at(r, c)))
    True
    """

    def __init__(self, m: np.ndarray, block: int = SAT_BLOCK):
        h, w = m.shape
        b = self.b = int(block)
        nk, nj = h // b + 1, w // b + 1
        self.t = np.zeros((h + 1, w + 1), np.uint16)
        self.prow = np.zeros((nk, w + 1), np.int32)  # P(k·B, c)
        self.pcol = np.zeros((h + 1, nj), np.int32)  # P(r, j·B)
        starts = (np.arange(w + 1) // b) * b  # C of every column index c
        jb = np.arange(nj) * b
        for k in range(nk):
            r0 = k * b
            n = min(b, h - r0)  # mask rows in this block row (0 for a last, empty one)
            cc = np.zeros((n + 1, w + 1), np.int32)  # cc[a, c]: rows r0 .. r0 + a − 1, cols < c
            if n > 0:
                np.cumsum(m[r0:r0 + n], axis=0, dtype=np.int32, out=cc[1:, 1:])
                np.cumsum(cc[1:, 1:], axis=1, out=cc[1:, 1:])
            rows = min(b, h + 1 - r0)  # table rows r0 .. r0 + rows − 1 belong to block row k
            self.t[r0:r0 + rows] = cc[:rows] - cc[:rows, starts]
            self.pcol[r0:r0 + rows] = self.prow[k][None, jb] + cc[:rows, jb]
            if k + 1 < nk:
                self.prow[k + 1] = self.prow[k] + cc[n]

    def at(self, r, c) -> np.ndarray:
        """int64 P(r, c) (mask pixels in rows < r, cols < c) for integer arrays r in [0, h], c in [0, w]."""
        r = np.asarray(r, dtype=np.int64)
        c = np.asarray(c, dtype=np.int64)
        k, j = r // self.b, c // self.b
        return (self.t[r, c].astype(np.int64) + self.prow[k, c] + self.pcol[r, j]) - self.prow[k, j * self.b]


def _basis_disagrees(c, nb, costs, costs2, basis) -> bool:
    """True when the cheapest centroid-pair candidate's cell area differs from the measured
    basis's by more than a factor BASIS_AREA_RATIO (or there is none): only then is the
    basis scored, so a search that found the measured spacing keeps its exact
    (centroid-derived) lattice."""
    big = np.iinfo(np.int64).max
    flat = np.concatenate([np.where(costs >= 0, costs, big).ravel(), np.where(costs2 >= 0, costs2, big).ravel()])
    uv = np.asarray(basis, dtype=np.float64).reshape(2, 2)
    area_b = abs(float(uv[0, 0] * uv[1, 1] - uv[0, 1] * uv[1, 0]))
    if flat.size == 0 or flat.min() == big or area_b == 0.0:
        return True
    best = int(np.argmin(flat))
    if best < costs.size:
        i, s = divmod(best, nb.shape[1])
        d = c[nb[i, s]] - c[i]
        area = float(d @ d)
    else:
        i, p = divmod(best - costs.size, costs2.shape[1])
        s, t = _pair(p, nb.shape[1])
        d, d2 = c[nb[i, s]] - c[i], c[nb[i, t]] - c[i]
        area = abs(float(d[0] * d2[1] - d[1] * d2[0]))
    return not (area > 0.0 and abs(math.log(area / area_b)) < math.log(BASIS_AREA_RATIO))


def _pair(p: int, k: int) -> tuple[int, int]:
    """Neighbour slots (s, t), s < t, of the p-th pair in row-major order (k slots)."""
    for s in range(k):
        if p < k - 1 - s:
            return s, s + 1 + p
        p -= k - 1 - s
    raise IndexError(p)


def painted_cost(mask: np.ndarray, points: np.ndarray, box: int = BOX_PX) -> int:
    """Reference cost by painting every box into a full-image mask (numpy, slow); the same
    definition as the fast kernels. points: n×2 (row, col) px.

    Parameters
    ----------
    mask : array_like, bool, [row, col]
        Hole mask.
    points : array_like, (n, 2)
        Lattice points (row, col), px, pixel-corner coordinates.
    box : int, optional
        Box side, px.

    Returns
    -------
    int
        MISS_WEIGHT × (mask pixels not covered) + (covered pixels outside the mask).

    Examples
    --------
    One box on one of two 10×10 holes: 100 px missed (×10) and 800 px covered outside.

    >>> m = np.zeros((100, 100), bool); m[15:25, 15:25] = True; m[65:75, 65:75] = True
    >>> painted_cost(m, [[20.0, 20.0]])
    1800
    """
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    half = box // 2
    cov = np.zeros((h, w), dtype=bool)
    for r, c in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        r0 = int(math.floor(r + 0.5)) - half
        c0 = int(math.floor(c + 0.5)) - half
        r1, c1 = min(r0 + box, h), min(c0 + box, w)
        r0, c0 = max(r0, 0), max(c0, 0)
        if r1 > r0 and c1 > c0:
            cov[r0:r1, c0:c1] = True
    inside = int(np.count_nonzero(cov & m))
    return MISS_WEIGHT * (int(np.count_nonzero(m)) - inside) + (int(np.count_nonzero(cov)) - inside)


def find_lattice_painted(mask: np.ndarray, centroids: np.ndarray, *, k: int = N_NEIGHBOURS,
                         margin: float = MARGIN_PX, box: int = BOX_PX) -> Lattice | None:
    """The same search as `find_lattice`, scoring every candidate with `painted_cost`
    (reference and benchmark baseline; slow).

    Parameters
    ----------
    mask, centroids, k, margin, box
        As in `find_lattice` (square candidates only).

    Returns
    -------
    Lattice or None
        The cheapest candidate; None when fewer than 2 centroids or no candidate.

    Examples
    --------
    >>> m = np.zeros((120, 120), bool)
    >>> for r, c in [(20, 20), (20, 80), (80, 20), (80, 80)]:
    ...     m[r - 5:r + 5, c - 5:c + 5] = True
    >>> lat = find_lattice_painted(m, [[20, 20], [20, 80], [80, 20], [80, 80]])
    >>> lat.d.tolist(), lat.cost, lat.n_candidates
    ([0.0, 60.0], 3200, 12)
    """
    m = np.asarray(mask, dtype=bool)
    c = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    if len(c) < 2:
        return None
    nb = nearest_neighbours(c, k)
    best = None
    n_cand = 0
    for i in range(len(c)):
        for s in range(nb.shape[1]):
            j = int(nb[i, s])
            if j < 0:
                continue
            d = c[j] - c[i]
            if not d.any():
                continue
            n_cand += 1
            pts = lattice_points(c[i], d, m.shape, margin)
            cost = painted_cost(m, pts, box)
            if best is None or cost < best[0]:
                best = (cost, i, j, d, pts)
    if best is None:
        return None
    cost, i, j, d, pts = best
    return Lattice(origin=c[i].copy(), d=d, points=pts, cost=int(cost), i=i, j=j, n_candidates=n_cand)


def warmup() -> None:
    """Compile (and cache) the kernels on a tiny input (both the SAT and the painting path).

    Examples
    --------
    >>> warmup()
    """
    m = np.zeros((40, 40), dtype=bool)
    m[5:8, 5:8] = True
    m[30:33, 30:33] = True
    m[5:8, 30:33] = True
    find_lattice(m, np.array([[6.5, 6.5], [31.5, 31.5], [6.5, 31.5]]))  # |d| < 42: painting
    m2 = np.zeros((120, 120), dtype=bool)
    m2[10:14, 10:14] = True
    m2[70:74, 10:14] = True
    find_lattice(m2, np.array([[12.0, 12.0], [72.0, 12.0]]))  # |d| = 60: SAT
