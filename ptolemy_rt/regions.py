"""Regions of a binary mask and their convex-hull polygons (SPEC §4.3-4.4).

Coordinates: arrays are indexed [row, col]. Polygons are K×2 float64 arrays of (row, col)
vertices in *pixel-corner* coordinates: pixel (r, c) covers the unit square
[r, r+1) × [c, c+1), so its four corners are (r, c), (r+1, c), (r+1, c+1), (r, c+1).
Areas are in px².

Hulls are computed without one full-image scan per region: a single numba pass over the
label image collects, for each (row, label) pair, the leftmost and rightmost pixel; only
those pixels' corners can be hull vertices. A monotone-chain hull per region follows.
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.ndimage as ndi

_EIGHT = np.ones((3, 3), dtype=bool)


def dilate_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Dilate a bool [row, col] mask by a size×size box.

    Equals `scipy.signal.convolve2d(mask, ones((size, size)), mode="same") > 0`, including the
    offset of even sizes (pixel (r, c) spreads to rows r - (size-1)//2 ... r + size//2, same for
    columns); pixels outside the image count as 0. size ≤ 1: the mask itself.
    """
    m = np.asarray(mask, dtype=bool)
    if size <= 1:
        return m.copy()
    # maximum_filter with origin 0 centres the window like convolve2d 'same' (checked in tests)
    return ndi.maximum_filter(m.view(np.uint8), size=(size, size), mode="constant", cval=0).astype(bool)


def label_regions(mask: np.ndarray, dilate: int = 0) -> tuple[np.ndarray, int]:
    """Regions of a bool [row, col] mask (SPEC §4.3).

    Regions are the 8-connected components of the mask dilated by a dilate×dilate box
    (dilate = 0 or 1: no dilation). Returns (labels, n): labels int32 [row, col] holds the
    region number 1..n on the *original* mask pixels only and 0 elsewhere. Every region has at
    least one mask pixel (a dilated component always contains the pixels that made it).
    Numbering follows the first pixel of each component in row-major order.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    grown = dilate_mask(m, dilate)
    labels, n = ndi.label(grown, structure=_EIGHT, output=np.int32)
    labels[~m] = 0
    return labels, int(n)



@numba.njit(cache=True)
def _row_extremes(labels, n):
    """One pass over labels [row, col]: per (row, label) the min and max col.

    Returns (lab, row, cmin, cmax) arrays, one entry per (row, label) pair present, grouped
    by label (stable: rows ascending within a label), and start offsets per label (n+2)."""
    h, w = labels.shape
    cap = 1024
    e_lab = np.empty(cap, np.int32)
    e_row = np.empty(cap, np.int32)
    e_min = np.empty(cap, np.int32)
    e_max = np.empty(cap, np.int32)
    count = 0
    slot = np.full(n + 1, -1, np.int64)  # entry index of label in the current row
    for r in range(h):
        first = count
        for c in range(w):
            lab = labels[r, c]
            if lab <= 0:
                continue
            k = slot[lab]
            if k < first:  # not yet seen in this row
                if count == cap:
                    cap *= 2
                    t1 = np.empty(cap, np.int32)
                    t1[:count] = e_lab[:count]
                    e_lab = t1
                    t2 = np.empty(cap, np.int32)
                    t2[:count] = e_row[:count]
                    e_row = t2
                    t3 = np.empty(cap, np.int32)
                    t3[:count] = e_min[:count]
                    e_min = t3
                    t4 = np.empty(cap, np.int32)
                    t4[:count] = e_max[:count]
                    e_max = t4
                e_lab[count] = lab
                e_row[count] = r
                e_min[count] = c
                e_max[count] = c
                slot[lab] = count
                count += 1
            else:
                e_max[k] = c  # columns increase along the row
    # group by label (counting sort, stable)
    starts = np.zeros(n + 2, np.int64)
    for i in range(count):
        starts[e_lab[i] + 1] += 1
    for lab in range(1, n + 2):
        starts[lab] += starts[lab - 1]
    pos = starts.copy()
    o_row = np.empty(count, np.int32)
    o_min = np.empty(count, np.int32)
    o_max = np.empty(count, np.int32)
    for i in range(count):
        lab = e_lab[i]
        p = pos[lab]
        o_row[p] = e_row[i]
        o_min[p] = e_min[i]
        o_max[p] = e_max[i]
        pos[lab] = p + 1
    return o_row, o_min, o_max, starts


@numba.njit(cache=True)
def _cross(o0, o1, a0, a1, b0, b1):
    return (a0 - o0) * (b1 - o1) - (a1 - o1) * (b0 - o0)


@numba.njit(cache=True)
def _hull_of_rows(rows, cmin, cmax):
    """Convex hull (counter-clockwise in (row, col) axes, no collinear points) of the corners
    of pixel runs: row r, columns cmin..cmax (rows strictly ascending). Returns K×2 float64.

    Only the leftmost and rightmost corner of each corner row can be hull vertices; they are
    produced already sorted by (row, col), so no sort is needed."""
    m = rows.shape[0]
    ys = np.empty(2 * m, np.int64)
    lo = np.empty(2 * m, np.int64)
    hi = np.empty(2 * m, np.int64)
    k = 0
    for i in range(m):
        r = np.int64(rows[i])
        a = np.int64(cmin[i])
        b = np.int64(cmax[i]) + 1
        for d in range(2):
            y = r + d
            if k > 0 and ys[k - 1] == y:
                if a < lo[k - 1]:
                    lo[k - 1] = a
                if b > hi[k - 1]:
                    hi[k - 1] = b
            else:
                ys[k] = y
                lo[k] = a
                hi[k] = b
                k += 1
    npts = 2 * k
    sr = np.empty(npts, np.int64)
    sc = np.empty(npts, np.int64)
    for j in range(k):  # (row, col) order; lo < hi always
        sr[2 * j] = ys[j]
        sc[2 * j] = lo[j]
        sr[2 * j + 1] = ys[j]
        sc[2 * j + 1] = hi[j]
    hr = np.empty(2 * npts + 1, np.int64)
    hc = np.empty(2 * npts + 1, np.int64)
    t = 0
    for j in range(npts):  # lower chain
        while t >= 2 and _cross(hr[t - 2], hc[t - 2], hr[t - 1], hc[t - 1], sr[j], sc[j]) <= 0:
            t -= 1
        hr[t] = sr[j]
        hc[t] = sc[j]
        t += 1
    lower = t + 1
    for j in range(npts - 2, -1, -1):  # upper chain
        while t >= lower and _cross(hr[t - 2], hc[t - 2], hr[t - 1], hc[t - 1], sr[j], sc[j]) <= 0:
            t -= 1
        hr[t] = sr[j]
        hc[t] = sc[j]
        t += 1
    t -= 1  # last point repeats the first
    out = np.empty((t, 2), np.float64)
    for j in range(t):
        out[j, 0] = hr[j]
        out[j, 1] = hc[j]
    return out


def region_hulls(labels: np.ndarray, n: int) -> list[np.ndarray]:
    """Per region 1..n the convex hull of its pixels' corners (SPEC §4.4).

    labels: int [row, col] (0 = background). Returns a list of n K×2 float64 arrays of
    (row, col) vertices in pixel-corner coordinates, counter-clockwise in (row, col) axes
    (i.e. the shoelace sum is positive), without repeated or collinear vertices. A region
    with no pixels gives an empty 0×2 array.
    """
    lab = np.ascontiguousarray(labels, dtype=np.int32)
    if n <= 0:
        return []
    rows, cmin, cmax, starts = _row_extremes(lab, int(n))
    out = []
    for i in range(1, n + 1):
        a, b = starts[i], starts[i + 1]
        if a == b:
            out.append(np.empty((0, 2), np.float64))
        else:
            out.append(_hull_of_rows(rows[a:b], cmin[a:b], cmax[a:b]))
    return out


def polygon_area(poly: np.ndarray) -> float:
    """Area (px²) of a simple polygon given as K×2 vertices (either order), shoelace formula."""
    p = np.asarray(poly, dtype=np.float64)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def polygon_centroid(poly: np.ndarray) -> tuple[float, float]:
    """Centre of mass (row, col), px, of a simple polygon given as K×2 (row, col) vertices.

    A degenerate polygon (area 0, or fewer than 3 vertices) gives the mean of its vertices.
    """
    p = np.asarray(poly, dtype=np.float64)
    if len(p) == 0:
        raise ValueError("polygon has no vertices")
    if len(p) >= 3:
        r, c = p[:, 0], p[:, 1]
        r2, c2 = np.roll(r, -1), np.roll(c, -1)
        cross = r * c2 - r2 * c
        a = cross.sum() / 2.0
        if abs(a) > 1e-12:
            return (float(((r + r2) * cross).sum() / (6.0 * a)), float(((c + c2) * cross).sum() / (6.0 * a)))
    m = p.mean(axis=0)
    return (float(m[0]), float(m[1]))


def warmup() -> None:
    """Compile (and cache) the numba kernels on a tiny input."""
    m = np.zeros((6, 6), dtype=bool)
    m[1:3, 1:4] = True
    m[4, 5] = True
    labels, n = label_regions(m, 0)
    region_hulls(labels, n)
