"""Compiled kernels of `ptolemy_rt.lattice`: lattice points, the shortest lattice vector, and
the cost of every candidate lattice (the `lattice` module docstring defines the cost, the
summed-area fast path and the covering bound).

Written for numba (`kernels.compiled`); callers use the wrappers in `ptolemy_rt.kernels`,
which load the ahead-of-time build of this module or, failing that, jit it. `EXPORTS` lists
the exported kernels with their signatures. The constants come from
`ptolemy_rt.kernel_constants` (frozen into the compiled code).

Coordinates: masks are [row, col] arrays; points and vectors are (row, col) float64 in
pixel-corner coordinates (pixel (r, c) covers [r, r+1) × [c, c+1)), px.

Two box rules (`score_candidates(..., published)`): the robust one (rounded, clipped boxes;
docs/ALGORITHM.md#medmag-lattice-cost) and the published tool's (truncated coordinates and
Python slice semantics, `_slice_bounds`; docs/ALGORITHM.md#published-box-rule). Under the
published rule a box can wrap to the opposite edge, so the summed-area shortcut does not
apply: every candidate is painted (`_cost_paint`), or, for lattices so dense that painting
would touch every pixel many times, counted with a difference array (`_cost_cover`); both
are exact.
"""
from __future__ import annotations

import math

import numpy as np

from .kernel_constants import MISS_WEIGHT, OBLIQUE_MAX_COS, OBLIQUE_MIN_RATIO
from .kernels import compiled


@compiled
def _ab_range(c0, c1, u0, u1, v0, v1, lo0, hi0, lo1, hi1):
    """Integer ranges of a and b such that c + a·u + b·v can fall in [lo0, hi0] × [lo1, hi1]
    (u, v independent)."""
    det = u0 * v1 - u1 * v0
    amin = 1e300
    amax = -1e300
    bmin = 1e300
    bmax = -1e300
    for k in range(4):
        x0 = lo0 if k < 2 else hi0
        x1 = lo1 if k % 2 == 0 else hi1
        w0 = x0 - c0
        w1 = x1 - c1
        a = (w0 * v1 - w1 * v0) / det
        b = (u0 * w1 - u1 * w0) / det
        amin = min(amin, a)
        amax = max(amax, a)
        bmin = min(bmin, b)
        bmax = max(bmax, b)
    return (int(math.floor(amin)) - 1, int(math.ceil(amax)) + 1,
            int(math.floor(bmin)) - 1, int(math.ceil(bmax)) + 1)


@compiled
def lattice_points2(c0, c1, u0, u1, v0, v1, h, w, margin):
    """Points of the lattice c + a·u + b·v that fall within the image plus a margin.

    Parameters
    ----------
    c0, c1 : float
        Origin c, (row, col), px.
    u0, u1, v0, v1 : float
        Basis vectors u and v, (row, col), px; linearly independent.
    h, w : float
        Image height (rows) and width (cols), px.
    margin : float
        Points with −margin ≤ row ≤ h + margin and −margin ≤ col ≤ w + margin are kept, px.

    Returns
    -------
    ndarray, float64, (n, 2)
        (row, col) points, a-major then b, both ascending.

    Examples
    --------
    u = (1, 0), v = (1, 1): point (a + b, b); a = −2, b = 2 comes first.

    >>> lattice_points2(0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.0).tolist()
    [[0.0, 2.0], [0.0, 1.0], [1.0, 2.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]
    """
    lo0 = -margin
    hi0 = h + margin
    lo1 = -margin
    hi1 = w + margin
    a0, a1, b0, b1 = _ab_range(c0, c1, u0, u1, v0, v1, lo0, hi0, lo1, hi1)
    out = np.empty(((a1 - a0 + 1) * (b1 - b0 + 1), 2), np.float64)
    n = 0
    for a in range(a0, a1 + 1):
        for b in range(b0, b1 + 1):
            r = c0 + a * u0 + b * v0
            c = c1 + a * u1 + b * v1
            if r >= lo0 and r <= hi0 and c >= lo1 and c <= hi1:
                out[n, 0] = r
                out[n, 1] = c
                n += 1
    return out[:n].copy()


@compiled
def lattice_points(c0, c1, d0, d1, h, w, margin):
    """Points of the square lattice c + a·d + b·d⊥, d⊥ = (−d_col, d_row), within the image
    plus a margin: `lattice_points2` with v = d⊥ (the same arithmetic: c + b·(−d1) equals
    c − b·d1 in IEEE).

    Parameters
    ----------
    c0, c1 : float
        Origin c, (row, col), px.
    d0, d1 : float
        Lattice vector d, (row, col), px; non-zero.
    h, w, margin : float
        Image height (rows), width (cols) and margin, px, as in `lattice_points2`.

    Returns
    -------
    ndarray, float64, (n, 2)
        (row, col) points, a-major then b, both ascending.

    Examples
    --------
    >>> lattice_points(0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0).tolist()
    [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    """
    return lattice_points2(c0, c1, d0, d1, -d1, d0, h, w, margin)


@compiled
def shortest_vector2(u0, u1, v0, v1):
    """Squared length of the shortest non-zero vector of the lattice spanned by u and v
    (Lagrange-Gauss reduction, at most 64 steps).

    Parameters
    ----------
    u0, u1, v0, v1 : float
        Basis vectors u and v, (row, col), px.

    Returns
    -------
    float
        Squared length, px² (0.0 when a basis vector is zero).

    Examples
    --------
    >>> shortest_vector2(1.0, 0.0, 5.0, 1.0), shortest_vector2(3.0, 0.0, 4.0, 2.0)
    (1.0, 5.0)
    """
    a0, a1, b0, b1 = u0, u1, v0, v1
    na = a0 * a0 + a1 * a1
    nb = b0 * b0 + b1 * b1
    if na > nb:
        a0, a1, b0, b1, na, nb = b0, b1, a0, a1, nb, na
    for _ in range(64):
        if na == 0.0:
            return 0.0
        m = math.floor((a0 * b0 + a1 * b1) / na + 0.5)
        b0 -= m * a0
        b1 -= m * a1
        nb = b0 * b0 + b1 * b1
        if nb >= na:
            break
        a0, a1, b0, b1, na, nb = b0, b1, a0, a1, nb, na
    return na


@compiled
def _box_bounds(pr, pc, box, h, w):
    """Pixel rows r0..r1−1, cols c0..c1−1 of the box×box box of lattice point (pr, pc) (rows
    floor(pr + 0.5) − box//2 … + box − 1, same for cols), clipped to the h×w image."""
    r0 = int(math.floor(pr + 0.5)) - box // 2
    c0 = int(math.floor(pc + 0.5)) - box // 2
    return max(r0, 0), max(c0, 0), min(r0 + box, h), min(c0 + box, w)


@compiled
def _slice_bounds(start, stop, n):
    """[lo, hi) indices that the Python slice ``a[start:stop]`` selects on an axis of n
    elements (step 1): a negative bound counts from the end (+ n), then both are clipped to
    [0, n]; hi ≤ lo is an empty slice (returned as lo = hi)."""
    if start < 0:
        start += n
        if start < 0:
            start = 0
    elif start > n:
        start = n
    if stop < 0:
        stop += n
        if stop < 0:
            stop = 0
    elif stop > n:
        stop = n
    if stop < start:
        stop = start
    return start, stop


@compiled
def _box_bounds_published(pr, pc, box, h, w):
    """The published tool's box of lattice point (pr, pc): ``mask[int(pr) − box//2 :
    int(pr) + box//2, int(pc) − box//2 : int(pc) + box//2]`` with int() truncating toward
    zero and Python slice semantics (`_slice_bounds`: a box above or left of the image wraps
    to the opposite edge or is empty; docs/ALGORITHM.md#published-box-rule). Returns
    r0, c0, r1, c1 (rows r0..r1−1, cols c0..c1−1)."""
    half = box // 2
    tr = int(pr)
    tc = int(pc)
    r0, r1 = _slice_bounds(tr - half, tr + half, h)
    c0, c1 = _slice_bounds(tc - half, tc + half, w)
    return r0, c0, r1, c1


@compiled
def _bounds(pr, pc, box, h, w, published):
    """Box of a lattice point under the published rule or the robust one (`_box_bounds`)."""
    if published:
        return _box_bounds_published(pr, pc, box, h, w)
    return _box_bounds(pr, pc, box, h, w)


#: px: side of the blocks of `_summed_area` (in-block counts ≤ SAT_BLOCK² = 4096 fit uint16)
SAT_BLOCK = 64


@compiled
def _summed_area(mask):
    """The summed-area table P(r, c) = mask pixels in rows < r, cols < c ((H+1) × (W+1)) in
    ≈ 2.1 bytes/px instead of an int32 table's 4 (issue 14: 0.54 instead of 1.07 GB at
    16384²), as (t, prow, pcol): with B = SAT_BLOCK, R = ⌊r/B⌋·B, C = ⌊c/B⌋·B,
    t[r, c] = the count in [R, r) × [C, c) (uint16), prow[k, c] = P(k·B, c) and
    pcol[r, j] = P(r, j·B) (int32), so P(r, c) = t[r, c] + prow[⌊r/B⌋, c] + pcol[r, ⌊c/B⌋]
    − prow[⌊r/B⌋, C] (`_sat_at`; exact for masks below 2³¹ px, which the caller checks)."""
    h, w = mask.shape
    b = SAT_BLOCK
    t = np.zeros((h + 1, w + 1), np.uint16)
    prow = np.zeros((h // b + 1, w + 1), np.int32)
    pcol = np.zeros((h + 1, w // b + 1), np.int32)
    colsum = np.zeros(w, np.int32)  # per column: mask pixels in rows [R, r)
    for r in range(h + 1):
        k = r // b
        if r % b == 0 and r > 0:  # a block-row boundary: P(k·B, ·), and colsum restarts
            run = 0
            for c in range(w):
                run += colsum[c]
                prow[k, c + 1] = prow[k - 1, c + 1] + run
                colsum[c] = 0
        run = 0  # [C, c)
        runall = 0  # [0, c)
        for c in range(w + 1):
            if c % b == 0:
                run = 0
                pcol[r, c // b] = prow[k, c] + runall
            t[r, c] = run
            if c < w:
                run += colsum[c]
                runall += colsum[c]
        if r < h:
            for c in range(w):
                colsum[c] += mask[r, c]
    return t, prow, pcol


@compiled
def _sat_at(t, prow, pcol, r, c):
    """P(r, c) of `_summed_area`'s blocked table, int64."""
    k = r // SAT_BLOCK
    j = c // SAT_BLOCK
    return np.int64(t[r, c]) + np.int64(prow[k, c]) + np.int64(pcol[r, j]) - np.int64(prow[k, j * SAT_BLOCK])


@compiled
def _cost_sat(points, t, prow, pcol, h, w, box, total):
    """Cost from the summed-area table (`_summed_area`; exact only when no two boxes overlap)."""
    covered = 0
    inside = 0
    for k in range(points.shape[0]):
        r0, c0, r1, c1 = _box_bounds(points[k, 0], points[k, 1], box, h, w)
        if r1 <= r0 or c1 <= c0:
            continue
        covered += (r1 - r0) * (c1 - c0)
        inside += (_sat_at(t, prow, pcol, r1, c1) - _sat_at(t, prow, pcol, r0, c1)) - (
            _sat_at(t, prow, pcol, r1, c0) - _sat_at(t, prow, pcol, r0, c0))
    return MISS_WEIGHT * (total - inside) + (covered - inside)


@compiled
def _cost_paint(points, mask, stamp, tag, box, total, published):
    """Exact union cost by painting into `stamp` (int32 [H, W]); pixels equal to tag are
    already covered by this candidate, so the buffer never needs clearing. Boxes by the
    published or the robust rule (`_bounds`)."""
    h, w = mask.shape
    covered = 0
    inside = 0
    for k in range(points.shape[0]):
        r0, c0, r1, c1 = _bounds(points[k, 0], points[k, 1], box, h, w, published)
        for r in range(r0, r1):
            for c in range(c0, c1):
                if stamp[r, c] != tag:
                    stamp[r, c] = tag
                    covered += 1
                    inside += mask[r, c]
    return MISS_WEIGHT * (total - inside) + (covered - inside)


@compiled
def _cost_cover(points, mask, box, total, published):
    """Exact union cost from a difference array of the boxes (O(points + H·W); for lattices
    dense enough that painting would touch each pixel many times): +1/−1 at the four
    corners of every non-empty box, a 2-D prefix sum gives each pixel's box count, and a
    pixel is covered when it is > 0. Boxes by `_bounds`."""
    h, w = mask.shape
    diff = np.zeros((h + 1, w + 1), np.int32)
    for k in range(points.shape[0]):
        r0, c0, r1, c1 = _bounds(points[k, 0], points[k, 1], box, h, w, published)
        if r1 <= r0 or c1 <= c0:
            continue
        diff[r0, c0] += 1
        diff[r0, c1] -= 1
        diff[r1, c0] -= 1
        diff[r1, c1] += 1
    acc = np.zeros(w, np.int64)
    covered = 0
    inside = 0
    for r in range(h):
        run = 0
        for c in range(w):
            run += diff[r, c]
            acc[c] += run
            if acc[c] > 0:
                covered += 1
                inside += mask[r, c]
    return MISS_WEIGHT * (total - inside) + (covered - inside)


@compiled
def _tilted_square(nu, nv, dot):
    """Whether basis vectors with squared lengths nu, nv and dot product dot can be a square
    lattice imaged at a tilt up to ~45° (see kernel_constants.OBLIQUE_MIN_RATIO,
    OBLIQUE_MAX_COS)."""
    r2 = OBLIQUE_MIN_RATIO * OBLIQUE_MIN_RATIO
    return nu >= r2 * nv and nv >= r2 * nu and dot * dot <= OBLIQUE_MAX_COS * OBLIQUE_MAX_COS * nu * nv


@compiled
def _lattice_cost(pts, mask, sat_t, sat_prow, sat_pcol, stamp, tag, box, total, short2, published):
    """Cost of one candidate's points. Robust rule: summed-area table when no two boxes can
    overlap (shortest lattice vector² short2 ≥ 2·box²), else exact painting into `stamp`
    (allocated [H, W] int32 on first use; tag advanced). Published rule (boxes may wrap, so
    they may overlap at any spacing): painting, or `_cost_cover` when the boxes hold more
    than twice the image's pixels. Returns (cost, stamp, tag)."""
    h, w = mask.shape
    if published:
        if pts.shape[0] * box * box > 2 * h * w:
            return _cost_cover(pts, mask, box, total, True), stamp, tag
    elif short2 >= 2.0 * box * box:
        return _cost_sat(pts, sat_t, sat_prow, sat_pcol, h, w, box, total), stamp, tag
    if stamp.shape[0] != h:
        stamp = np.zeros((h, w), np.int32)
    tag += 1
    return _cost_paint(pts, mask, stamp, tag, box, total, published), stamp, tag


@compiled
def score_candidates(mask, centroids, neighbours, margin, box, oblique, min_len2, max_len2, published):
    """Costs of every candidate lattice (the `lattice` module docstring defines them).

    Square candidates (i, s): d = c[neighbours[i, s]] − c[i] and d⊥. With `oblique`, also
    (i, p) for every pair p of neighbour slots s < t (pairs in row-major order):
    u = c[nb[i, s]] − c[i] and v = c[nb[i, t]] − c[i], when u and v can be a tilted square
    lattice (`_tilted_square`) and both squared lengths lie in [min_len2, max_len2]. Oblique
    candidates within the covering bound (shortest vector ≤ (box/2 − 1.5)·√2) are left out:
    the square candidate of the same neighbour has that cost. A candidate's cost uses the
    summed-area table when its shortest vector² ≥ 2·box² (no two boxes overlap), else exact
    painting. With `published`, boxes follow the published tool's slice rule
    (`_box_bounds_published`) and are always painted (or counted, `_cost_cover`); the
    covering shortcut then applies only to square lattices with |d|² < 1/2 on images of
    ≥ 16 px per side (every unit cell holds a point, and the points with int(coord) in
    [15, side − 1] alone paint the whole image).

    Parameters
    ----------
    mask : ndarray, uint8 (0/1), [row, col]
        The hole mask.
    centroids : ndarray, float64, (n, 2)
        Candidate origins c, (row, col), px.
    neighbours : ndarray, int64, (n, k)
        Indices of each centroid's k nearest other centroids, nearest first; −1 = none.
    margin : float
        Lattice points up to this far outside the image count, px.
    box : int
        Side of each lattice point's box, px.
    oblique : bool
        Whether to score the oblique candidates too.
    min_len2, max_len2 : float
        Range of the oblique basis vectors' squared lengths, px².
    published : bool
        Paint boxes by the published tool's rule (docs/ALGORITHM.md#published-box-rule)
        instead of the robust one.

    Returns
    -------
    costs : ndarray, int64, (n, k)
        Square candidates' costs; −1 where there is no candidate.
    counts : ndarray, int64, (n, k)
        Their numbers of lattice points; −1 where the candidate covers the whole image and
        its points were not enumerated.
    oblique_costs : ndarray, int64, (n, k·(k − 1)/2)
        Oblique candidates' costs; −1 where there is none (all −1 unless `oblique`).

    Examples
    --------
    Four 10×10 holes on a 60 px grid (120×120 image, margin 100, box 30): each square
    candidate has 36 points and costs 4 × 800 (box pixels outside the holes). With
    `oblique`, the only pair of neighbours, (60, 0) and (0, 60), is square and scored too.
    Run through the `kernels` wrapper (the ahead-of-time build when it is current: no
    compiling here).

    >>> from ptolemy_rt.kernels import score_candidates
    >>> m = np.zeros((120, 120), np.uint8)
    >>> for r, c in [(20, 20), (20, 80), (80, 20), (80, 80)]:
    ...     m[r - 5:r + 5, c - 5:c + 5] = 1
    >>> cen = np.array([[20, 20], [20, 80], [80, 20], [80, 80]], np.float64)
    >>> nb = np.array([[2, 1], [3, 0], [0, 3], [1, 2]], np.int64)
    >>> costs, counts, ob = score_candidates(m, cen, nb, 100.0, 30, True, 0.0, 1e9)
    >>> costs[0].tolist(), counts[0].tolist(), ob.ravel().tolist()
    ([3200, 3200], [36, 36], [3200, 3200, 3200, 3200])

    Under the published rule the boxes of the points at −100 wrap to rows (columns) 5-34,
    those at −40 to 65-94: the union is the same here. Move the origins by 7.5 px and the
    rules differ: int(27.5) − 15 = 12 is not round(27.5) − 15 = 13, and the boxes of the
    points at −32.5 wrap onto the far edge.

    >>> score_candidates(m, cen, nb, 100.0, 30, False, 0.0, 1e9, True)[0][0].tolist()
    [3200, 3200]
    >>> [score_candidates(m, cen + 7.5, nb, 100.0, 30, False, 0.0, 1e9, p)[0][0].tolist() for p in (False, True)]
    [[3200, 3200], [3444, 3444]]
    """
    h, w = mask.shape
    n, k = neighbours.shape
    costs = np.full((n, k), -1, np.int64)
    counts = np.zeros((n, k), np.int64)
    costs2 = np.full((n, k * (k - 1) // 2), -1, np.int64)
    total = 0
    for r in range(h):
        for c in range(w):
            total += mask[r, c]
    sat_t, sat_prow, sat_pcol = _summed_area(mask)
    stamp = np.zeros((1, 1), np.int32)
    tag = 0
    cover_d2 = 2.0 * (box / 2.0 - 1.5) ** 2
    can_cover = margin >= box and box % 2 == 0
    if published:  # docstring: every unit cell holds a point, the image is >= 16 px a side
        cover_d2 = 0.5
        can_cover = h >= box // 2 + 1 and w >= box // 2 + 1 and margin >= 0.0
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
            if can_cover and (d2 < cover_d2 if published else d2 <= cover_d2):
                costs[i, s] = h * w - total
                counts[i, s] = -1
                continue
            pts = lattice_points(centroids[i, 0], centroids[i, 1], d0, d1, float(h), float(w), margin)
            counts[i, s] = pts.shape[0]
            costs[i, s], stamp, tag = _lattice_cost(pts, mask, sat_t, sat_prow, sat_pcol, stamp, tag, box, total, d2, published)
        if not oblique:
            continue
        p = -1
        for s in range(k):
            for t in range(s + 1, k):
                p += 1
                js = neighbours[i, s]
                jt = neighbours[i, t]
                if js < 0 or jt < 0:
                    continue
                u0 = centroids[js, 0] - centroids[i, 0]
                u1 = centroids[js, 1] - centroids[i, 1]
                v0 = centroids[jt, 0] - centroids[i, 0]
                v1 = centroids[jt, 1] - centroids[i, 1]
                nu = u0 * u0 + u1 * u1
                nv = v0 * v0 + v1 * v1
                dot = u0 * v0 + u1 * v1
                if (nu < min_len2 or nv < min_len2 or nu > max_len2 or nv > max_len2 or nu == 0.0 or nv == 0.0
                        or not _tilted_square(nu, nv, dot)):
                    continue
                short2 = shortest_vector2(u0, u1, v0, v1)
                if short2 <= cover_d2:
                    continue
                pts = lattice_points2(centroids[i, 0], centroids[i, 1], u0, u1, v0, v1, float(h), float(w), margin)
                costs2[i, p], stamp, tag = _lattice_cost(pts, mask, sat_t, sat_prow, sat_pcol, stamp, tag, box, total, short2, published)
    return costs, counts, costs2


#: Exported kernels: name -> (function name here, numba signature), C-contiguous arrays.
EXPORTS = {
    "lattice_points": ("lattice_points", "f8[:, ::1](f8, f8, f8, f8, f8, f8, f8)"),
    "shortest_vector2": ("shortest_vector2", "f8(f8, f8, f8, f8)"),
    "lattice_points2": ("lattice_points2", "f8[:, ::1](f8, f8, f8, f8, f8, f8, f8, f8, f8)"),
    "score_candidates": ("score_candidates", "Tuple((i8[:, ::1], i8[:, ::1], i8[:, ::1]))"
                         "(u1[:, ::1], f8[:, ::1], i8[:, ::1], f8, i8, b1, f8, f8, b1)"),
}
