"""Test-only oracle: a literal, slow transcription of the published tool's lattice search,
written from the published facts (the shared specification's lattice search, summarised in
docs/ALGORITHM.md#published-box-rule), not from ptolemy_rt's kernels.

- Candidates: centroids i in ascending order; for each, ``np.argpartition(dist[i], 6)[:6]``
  (dist: Euclidean distances between centroids) in the order numpy returns it; the entry
  that is i itself is skipped, so five neighbours j are tried. With fewer than 7 centroids
  the published call would fail (kth out of bounds); the oracle then takes every centroid
  (kth = n − 1), as ptolemy-rt documents.
- The lattice of (i, j): c_i + a·d + b·d⊥, d = c_j − c_i, d⊥ = (−d_col, d_row), a and b
  integers, kept when −100 ≤ row ≤ H + 100 and −100 ≤ col ≤ W + 100.
- Each point (r, c) paints ``covered[int(r) - 15:int(r) + 15, int(c) - 15:int(c) + 15]``:
  a plain numpy slice, so Python's slice semantics decide (truncation, negative indices
  counted from the end, no clipping at the top or left).
- cost = 10 × (mask pixels not covered) + (covered pixels outside the mask); the first
  strict minimum wins; its points with 10 ≤ row ≤ H − 10 and 10 ≤ col ≤ W − 10 are the holes.

Coordinates: (row, col) px, pixel-corner coordinates, as `ptolemy_rt.medmag.mask_centroids`
gives the centroids. The float arithmetic of a point is c + a·d + b·d⊥ evaluated left to
right in float64 (the spec does not say more; truncation could only tell evaluation orders
apart at coordinates that are whole numbers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MARGIN = 100
HALF = 15
MISS = 10
EDGE = 10


@dataclass
class OracleLattice:
    cost: int
    i: int
    j: int
    d: tuple[float, float]
    points: np.ndarray  # (n, 2) all lattice points within the margin, (row, col)
    holes: np.ndarray  # (m, 2) the points at least EDGE px inside, (row, col)
    n_candidates: int


def lattice_points(c, d, shape) -> np.ndarray:
    """Every c + a·d + b·d⊥ within the image plus the margin, by brute force over a and b."""
    h, w = shape
    c0, c1 = float(c[0]), float(c[1])
    d0, d1 = float(d[0]), float(d[1])
    reach = math.hypot(h + 2 * MARGIN, w + 2 * MARGIN) + math.hypot(c0, c1) + math.hypot(h, w)
    n = int(reach / math.hypot(d0, d1)) + 2
    a, b = np.meshgrid(np.arange(-n, n + 1, dtype=np.float64), np.arange(-n, n + 1, dtype=np.float64),
                       indexing="ij")
    r = c0 + a * d0 + b * (-d1)
    q = c1 + a * d1 + b * d0
    keep = (-MARGIN <= r) & (r <= h + MARGIN) & (-MARGIN <= q) & (q <= w + MARGIN)
    return np.stack([r[keep], q[keep]], axis=1).reshape(-1, 2)


def paint_cost(mask: np.ndarray, points: np.ndarray) -> int:
    """The published cost of one candidate: every box painted with a Python slice."""
    covered = np.zeros(mask.shape, dtype=bool)
    for r, q in points:
        covered[int(r) - HALF:int(r) + HALF, int(q) - HALF:int(q) + HALF] = True
    missed = int(np.count_nonzero(mask & ~covered))
    extra = int(np.count_nonzero(covered & ~mask))
    return MISS * missed + extra


def neighbours(centroids: np.ndarray, i: int) -> list[int]:
    """The published neighbour set of centroid i, argpartition order, i itself left out."""
    c = np.asarray(centroids, dtype=np.float64)
    dist = np.sqrt(((c - c[i]) ** 2).sum(axis=1))
    kth = min(6, len(c) - 1)
    return [int(j) for j in np.argpartition(dist, kth)[:6] if int(j) != i]


def published_lattice(mask, centroids, min_spacing: float = 3.0) -> OracleLattice | None:
    """The published search on a bool [row, col] mask and (n, 2) (row, col) centroids.

    min_spacing: a candidate shorter than this (px) is refused with ValueError (the literal
    painting would take hours; the tests' images have none)."""
    m = np.asarray(mask, dtype=bool)
    c = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    if len(c) < 2:
        return None
    best = None
    n_cand = 0
    for i in range(len(c)):
        for j in neighbours(c, i):
            d = c[j] - c[i]
            if d[0] == 0.0 and d[1] == 0.0:
                continue
            if math.hypot(d[0], d[1]) < min_spacing:
                raise ValueError(f"candidate ({i}, {j}) has |d| = {math.hypot(*d):.3g} px: too slow to paint")
            n_cand += 1
            pts = lattice_points(c[i], d, m.shape)
            cost = paint_cost(m, pts)
            if best is None or cost < best[0]:
                best = (cost, i, j, d, pts)
    if best is None:
        return None
    cost, i, j, d, pts = best
    h, w = m.shape
    inside = (pts[:, 0] >= EDGE) & (pts[:, 0] <= h - EDGE) & (pts[:, 1] >= EDGE) & (pts[:, 1] <= w - EDGE)
    return OracleLattice(int(cost), int(i), int(j), (float(d[0]), float(d[1])), pts, pts[inside], n_cand)
