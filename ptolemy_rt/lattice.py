"""Square-lattice search over hole centroids (SPEC §5.5).

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

Winner: the cheapest candidate; ties go to the first in enumeration order (centroid i
ascending, then neighbours nearest first). Deterministic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from scipy.spatial import cKDTree

N_NEIGHBOURS = 6
MARGIN_PX = 100.0
BOX_PX = 30
MAX_POINTS = 5_000_000  # a winning lattice denser than this gets no point list (degenerate)
MISS_WEIGHT = 10  # cost of one mask pixel not covered; a covered pixel outside the mask costs 1


@dataclass(frozen=True)
class Lattice:
    """The winning lattice.

    origin: (row, col) px, the centroid c_i it was built from; d: (row, col) px lattice vector
    c_j − c_i (the second one is d⊥ = (−d_col, d_row)); points: n×2 (row, col) px of all
    lattice points within the image plus the margin (before any edge filter);
    cost: its cost (see module docstring); i, j: indices of the centroids that made it;
    n_candidates: how many candidates were scored.
    """

    origin: np.ndarray
    d: np.ndarray
    points: np.ndarray
    cost: int
    i: int
    j: int
    n_candidates: int

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
    """atan(d_col / d_row), degrees, in (−90, 90]; d = (row, col) px (d_row = 0 gives 90)."""
    dr, dc = float(d[0]), float(d[1])
    if dr == 0.0:
        return 90.0
    return float(np.degrees(np.arctan(dc / dr)))


@numba.njit(cache=True)
def _ab_range(c0, c1, d0, d1, lo0, hi0, lo1, hi1):
    """Integer ranges of a and b such that c + a·d + b·d⊥ can fall in [lo0, hi0] × [lo1, hi1]."""
    n2 = d0 * d0 + d1 * d1
    amin = 1e300
    amax = -1e300
    bmin = 1e300
    bmax = -1e300
    for k in range(4):
        x0 = lo0 if k < 2 else hi0
        x1 = lo1 if k % 2 == 0 else hi1
        v0 = x0 - c0
        v1 = x1 - c1
        a = (v0 * d0 + v1 * d1) / n2
        b = (-v0 * d1 + v1 * d0) / n2  # d⊥ = (-d1, d0)
        amin = min(amin, a)
        amax = max(amax, a)
        bmin = min(bmin, b)
        bmax = max(bmax, b)
    return (int(math.floor(amin)) - 1, int(math.ceil(amax)) + 1,
            int(math.floor(bmin)) - 1, int(math.ceil(bmax)) + 1)


@numba.njit(cache=True)
def _lattice_points(c0, c1, d0, d1, h, w, margin):
    """All points c + a·d + b·d⊥ with −margin ≤ row ≤ h + margin, −margin ≤ col ≤ w + margin,
    a-major then b, ascending. Returns n×2 float64 (row, col)."""
    lo0 = -margin
    hi0 = h + margin
    lo1 = -margin
    hi1 = w + margin
    a0, a1, b0, b1 = _ab_range(c0, c1, d0, d1, lo0, hi0, lo1, hi1)
    na = a1 - a0 + 1
    nb = b1 - b0 + 1
    out = np.empty((na * nb, 2), np.float64)
    n = 0
    for a in range(a0, a1 + 1):
        for b in range(b0, b1 + 1):
            r = c0 + a * d0 - b * d1
            c = c1 + a * d1 + b * d0
            if r >= lo0 and r <= hi0 and c >= lo1 and c <= hi1:
                out[n, 0] = r
                out[n, 1] = c
                n += 1
    return out[:n]


@numba.njit(cache=True)
def _box_start(x, half):
    return int(math.floor(x + 0.5)) - half


@numba.njit(cache=True)
def _summed_area(mask):
    """SAT int64 [(H+1), (W+1)]: sat[r, c] = number of mask pixels in rows < r, cols < c."""
    h, w = mask.shape
    sat = np.zeros((h + 1, w + 1), np.int64)
    for r in range(h):
        run = 0
        for c in range(w):
            run += mask[r, c]
            sat[r + 1, c + 1] = sat[r, c + 1] + run
    return sat


@numba.njit(cache=True)
def _cost_sat(points, sat, h, w, box, total):
    half = box // 2
    covered = 0
    inside = 0
    for k in range(points.shape[0]):
        r0 = _box_start(points[k, 0], half)
        c0 = _box_start(points[k, 1], half)
        r1 = min(r0 + box, h)
        c1 = min(c0 + box, w)
        r0 = max(r0, 0)
        c0 = max(c0, 0)
        if r1 <= r0 or c1 <= c0:
            continue
        covered += (r1 - r0) * (c1 - c0)
        inside += sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]
    return MISS_WEIGHT * (total - inside) + (covered - inside)


@numba.njit(cache=True)
def _cost_paint(points, mask, stamp, tag, box, total):
    """Exact union cost by painting into `stamp` (int32 [H, W]); pixels equal to tag are
    already covered by this candidate, so the buffer never needs clearing."""
    h, w = mask.shape
    half = box // 2
    covered = 0
    inside = 0
    for k in range(points.shape[0]):
        r0 = _box_start(points[k, 0], half)
        c0 = _box_start(points[k, 1], half)
        r1 = min(r0 + box, h)
        c1 = min(c0 + box, w)
        for r in range(max(r0, 0), r1):
            for c in range(max(c0, 0), c1):
                if stamp[r, c] != tag:
                    stamp[r, c] = tag
                    covered += 1
                    inside += mask[r, c]
    return MISS_WEIGHT * (total - inside) + (covered - inside)


@numba.njit(cache=True)
def _score_candidates(mask, centroids, neighbours, margin, box):
    """Cost (int64) and point count of every candidate (i, neighbours[i, k]); cost -1 where
    the neighbour slot is empty (index < 0) or d = 0; count -1 where the candidate covers the
    whole image and its points were not enumerated."""
    h, w = mask.shape
    n, k = neighbours.shape
    costs = np.full((n, k), -1, np.int64)
    counts = np.zeros((n, k), np.int64)
    total = 0
    for r in range(h):
        for c in range(w):
            total += mask[r, c]
    sat = _summed_area(mask)
    stamp = np.zeros((1, 1), np.int32)
    tag = 0
    min_d2 = 2.0 * box * box
    cover_d2 = 2.0 * (box / 2.0 - 1.5) ** 2
    for i in range(n):
        for s in range(k):
            j = neighbours[i, s]
            if j < 0:
                continue
            d0 = centroids[j, 0] - centroids[i, 0]
            d1 = centroids[j, 1] - centroids[i, 1]
            d2 = d0 * d0 + d1 * d1
            if d2 == 0.0:
                continue
            if d2 <= cover_d2 and margin >= box and box % 2 == 0:
                costs[i, s] = h * w - total
                counts[i, s] = -1
                continue
            pts = _lattice_points(centroids[i, 0], centroids[i, 1], d0, d1, float(h), float(w), margin)
            counts[i, s] = pts.shape[0]
            if d2 >= min_d2:
                costs[i, s] = _cost_sat(pts, sat, h, w, box, total)
            else:
                if stamp.shape[0] != h:
                    stamp = np.zeros((h, w), np.int32)
                tag += 1
                costs[i, s] = _cost_paint(pts, mask, stamp, tag, box, total)
    return costs, counts


def nearest_neighbours(centroids: np.ndarray, k: int = N_NEIGHBOURS) -> np.ndarray:
    """n×k int64: for each centroid the indices of its k nearest *other* centroids, nearest
    first (cKDTree order); slots beyond n−1 others are −1."""
    c = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    n = len(c)
    out = np.full((n, k), -1, np.int64)
    if n < 2:
        return out
    kk = min(k + 1, n)
    _, idx = cKDTree(c).query(c, k=kk)
    idx = np.asarray(idx).reshape(n, kk)
    for i in range(n):
        row = [int(j) for j in idx[i] if int(j) != i][:k]
        out[i, : len(row)] = row
    return out


def lattice_points(origin, d, shape, margin: float = MARGIN_PX) -> np.ndarray:
    """All points origin + a·d + b·d⊥ within the image of `shape` (rows, cols) plus `margin`
    px; n×2 float64 (row, col), px, pixel-corner coordinates, a-major order."""
    return _lattice_points(float(origin[0]), float(origin[1]), float(d[0]), float(d[1]),
                           float(shape[0]), float(shape[1]), float(margin))


def find_lattice(mask: np.ndarray, centroids: np.ndarray, *, k: int = N_NEIGHBOURS,
                 margin: float = MARGIN_PX, box: int = BOX_PX) -> Lattice | None:
    """Cheapest candidate lattice (module docstring) for a bool [row, col] mask and n×2
    (row, col) centroids (px, pixel-corner coordinates). None when fewer than 2 centroids
    (no candidate)."""
    m = np.ascontiguousarray(np.asarray(mask, dtype=bool).view(np.uint8))
    c = np.ascontiguousarray(np.asarray(centroids, dtype=np.float64).reshape(-1, 2))
    if len(c) < 2:
        return None
    nb = nearest_neighbours(c, k)
    costs, _ = _score_candidates(m, c, nb, float(margin), int(box))
    valid = costs >= 0
    if not valid.any():
        return None
    flat = np.where(valid, costs, np.iinfo(np.int64).max).ravel()
    best = int(np.argmin(flat))  # first minimum in (i, neighbour rank) order
    i, s = divmod(best, nb.shape[1])
    j = int(nb[i, s])
    d = c[j] - c[i]
    est = (m.shape[0] + 2 * margin + 1) * (m.shape[1] + 2 * margin + 1) / float(d @ d)
    pts = lattice_points(c[i], d, m.shape, margin) if est <= MAX_POINTS else np.empty((0, 2))
    return Lattice(origin=c[i].copy(), d=d, points=pts, cost=int(costs[i, s]), i=int(i), j=j,
                   n_candidates=int(valid.sum()))


def painted_cost(mask: np.ndarray, points: np.ndarray, box: int = BOX_PX) -> int:
    """Reference cost by painting every box into a full-image mask (numpy, slow); the same
    definition as the fast kernels. points: n×2 (row, col) px."""
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
    (reference and benchmark baseline; slow)."""
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
    """Compile (and cache) the kernels on a tiny input (both the SAT and the painting path)."""
    m = np.zeros((40, 40), dtype=bool)
    m[5:8, 5:8] = True
    m[30:33, 30:33] = True
    m[5:8, 30:33] = True
    find_lattice(m, np.array([[6.5, 6.5], [31.5, 31.5], [6.5, 31.5]]))  # |d| < 42: painting
    m2 = np.zeros((120, 120), dtype=bool)
    m2[10:14, 10:14] = True
    m2[70:74, 10:14] = True
    find_lattice(m2, np.array([[12.0, 12.0], [72.0, 12.0]]))  # |d| = 60: SAT
