"""Regions of a binary mask and their convex-hull polygons (SPEC §4.3-4.4).

Coordinates: arrays are indexed [row, col]. Polygons are K×2 float64 arrays of (row, col)
vertices in *pixel-corner* coordinates: pixel (r, c) covers the unit square
[r, r+1) × [c, c+1), so its four corners are (r, c), (r+1, c), (r+1, c+1), (r, c+1).
Areas are in px².

Hulls are computed without one full-image scan per region: one numpy pass over the label
image (in row strips) collects, for each (row, label) pair, the leftmost and rightmost
pixel; only those pixels' corners can be hull vertices. A monotone-chain hull per region
follows. No numba here: loading numba costs more (≈0.6 CPU s, ≈100 MB) than these passes.
"""
from __future__ import annotations

import sys

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
    # 0/1 uint8 result viewed as bool: no second full-size array
    return ndi.maximum_filter(m.view(np.uint8), size=(size, size), mode="constant", cval=0).view(bool)


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
    grown = dilate_mask(m, dilate) if dilate > 1 else m
    labels, n = ndi.label(grown, structure=_EIGHT, output=np.int32)
    del grown
    h, w = m.shape
    step = max(1, STRIP_PX // max(1, w))
    for r in range(0, h, step):  # in strips: no full-size temporary
        blk = labels[r:r + step]
        blk[~m[r:r + step]] = 0
    return labels, int(n)



#: Pixels per strip in the run-extraction pass (bounds the temporaries).
STRIP_PX = 1 << 21


def _row_extremes(labels, n):
    """Per (row, label) the min and max col of labels [row, col] (numpy, in row strips).

    Returns (row, cmin, cmax) int32 arrays, one entry per (row, label) pair present, grouped
    by label (rows ascending within a label), and start offsets per label (n+2): the
    entries of label i are [starts[i], starts[i+1])."""
    h, w = labels.shape
    step = max(1, STRIP_PX // max(1, w))
    parts = []
    for r0 in range(0, h, step):
        blk = labels[r0:r0 + step]
        on = blk > 0
        # run starts / ends along each row: pixel differs from its left / right neighbour
        st = on.copy()
        st[:, 1:] &= blk[:, 1:] != blk[:, :-1]
        en = on
        en[:, :-1] &= blk[:, :-1] != blk[:, 1:]
        sr, sc = np.nonzero(st)  # row-major: runs in (row, col) order
        _, ec = np.nonzero(en)  # the same runs, same order
        if len(sr) == 0:
            continue
        lab = blk[sr, sc]
        # per (row, label): first run's start, last run's end (runs ascend along the row)
        order = np.lexsort((sc, lab, sr))  # by row, then label, then col
        sr, sc, ec, lab = sr[order], sc[order], ec[order], lab[order]
        new = np.ones(len(sr), bool)
        new[1:] = (sr[1:] != sr[:-1]) | (lab[1:] != lab[:-1])
        first = np.nonzero(new)[0]
        last = np.append(first[1:], len(sr)) - 1
        parts.append((lab[first], sr[first] + r0, sc[first], ec[last]))
    if not parts:
        return (np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int32),
                np.zeros(n + 2, np.int64))
    lab = np.concatenate([p[0] for p in parts])
    order = np.argsort(lab, kind="stable")  # rows stay ascending within a label
    lab = lab[order]
    rows = np.concatenate([p[1] for p in parts])[order].astype(np.int32)
    cmin = np.concatenate([p[2] for p in parts])[order].astype(np.int32)
    cmax = np.concatenate([p[3] for p in parts])[order].astype(np.int32)
    starts = np.searchsorted(lab, np.arange(n + 2), side="left").astype(np.int64)
    return rows, cmin, cmax, starts


def _corner_rows(rows, cmin, cmax):
    """Corner rows of pixel runs (row r, cols cmin..cmax; rows ascending): per corner row y
    (ascending) the leftmost and rightmost corner col (runs of rows y−1 and y both touch y)."""
    ys = np.concatenate([rows, rows + 1]).astype(np.int64)
    lo = np.concatenate([cmin, cmin]).astype(np.int64)
    hi = np.concatenate([cmax, cmax]).astype(np.int64) + 1
    order = np.argsort(ys, kind="stable")
    ys, lo, hi = ys[order], lo[order], hi[order]
    brk = np.ones(len(ys), bool)
    brk[1:] = ys[1:] != ys[:-1]
    idx = np.nonzero(brk)[0]
    return ys[idx], np.minimum.reduceat(lo, idx), np.maximum.reduceat(hi, idx)


def _monotone_chain(sr, sc):
    """Convex hull (counter-clockwise in (row, col) axes, no collinear points) of integer
    points given sorted by (row, col) (lists). Returns lists (hr, hc) without repeating
    the first point."""
    hr = []
    hc = []
    for pr, pc in zip(sr, sc):  # lower chain
        while len(hr) >= 2 and (hr[-1] - hr[-2]) * (pc - hc[-2]) - (hc[-1] - hc[-2]) * (pr - hr[-2]) <= 0:
            hr.pop()
            hc.pop()
        hr.append(pr)
        hc.append(pc)
    lower = len(hr) + 1
    for j in range(len(sr) - 2, -1, -1):  # upper chain
        pr, pc = sr[j], sc[j]
        while len(hr) >= lower and (hr[-1] - hr[-2]) * (pc - hc[-2]) - (hc[-1] - hc[-2]) * (pr - hr[-2]) <= 0:
            hr.pop()
            hc.pop()
        hr.append(pr)
        hc.append(pc)
    return hr[:-1], hc[:-1]  # the last point repeats the first


def _hull_of_rows(rows, cmin, cmax):
    """Convex hull (counter-clockwise in (row, col) axes, no collinear points) of the corners
    of pixel runs: row r, columns cmin..cmax (rows strictly ascending). Returns K×2 float64.

    Only the leftmost and rightmost corner of each corner row can be hull vertices; they are
    produced already sorted by (row, col), so no sort is needed."""
    ys, lo, hi = _corner_rows(rows, cmin, cmax)
    k = len(ys)
    sr = np.repeat(ys, 2)
    sc = np.empty(2 * k, np.int64)
    sc[0::2] = lo  # (row, col) order; lo < hi always
    sc[1::2] = hi
    hr, hc = _monotone_chain(sr.tolist(), sc.tolist())
    out = np.empty((len(hr), 2), np.float64)
    out[:, 0] = hr
    out[:, 1] = hc
    return out


def _hull_of_rows_loops(rows, cmin, cmax):
    """Same result as `_hull_of_rows`, written as plain loops for numba (used only when numba
    is already loaded, e.g. by the medium-magnification pipeline with thousands of regions)."""
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
    for j in range(k):
        sr[2 * j] = ys[j]
        sc[2 * j] = lo[j]
        sr[2 * j + 1] = ys[j]
        sc[2 * j + 1] = hi[j]
    hr = np.empty(2 * npts + 1, np.int64)
    hc = np.empty(2 * npts + 1, np.int64)
    t = 0
    for j in range(npts):  # lower chain
        while t >= 2 and ((hr[t - 1] - hr[t - 2]) * (sc[j] - hc[t - 2])
                          - (hc[t - 1] - hc[t - 2]) * (sr[j] - hr[t - 2])) <= 0:
            t -= 1
        hr[t] = sr[j]
        hc[t] = sc[j]
        t += 1
    lower = t + 1
    for j in range(npts - 2, -1, -1):  # upper chain
        while t >= lower and ((hr[t - 1] - hr[t - 2]) * (sc[j] - hc[t - 2])
                              - (hc[t - 1] - hc[t - 2]) * (sr[j] - hr[t - 2])) <= 0:
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


_HULL_JIT = None


def _hull_function():
    """numba-compiled hull loops when numba is already imported (no import cost to pay),
    else the numpy / plain-Python `_hull_of_rows`. Both give identical vertices."""
    global _HULL_JIT
    if "numba" not in sys.modules:
        return _hull_of_rows
    if _HULL_JIT is None:
        import numba

        _HULL_JIT = numba.njit(cache=True)(_hull_of_rows_loops)
    return _HULL_JIT


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
    hull = _hull_function()
    out = []
    for i in range(1, n + 1):
        a, b = starts[i], starts[i + 1]
        if a == b:
            out.append(np.empty((0, 2), np.float64))
        else:
            out.append(hull(rows[a:b], cmin[a:b], cmax[a:b]))
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
    """Run the hull code once on a tiny input; compiles (and caches) the numba hull kernel
    used when numba is loaded anyway (medium-magnification pipeline)."""
    import numba  # noqa: F401  (selects and compiles the numba kernel)

    m = np.zeros((6, 6), dtype=bool)
    m[1:3, 1:4] = True
    m[4, 5] = True
    labels, n = label_regions(m, 0)
    region_hulls(labels, n)
