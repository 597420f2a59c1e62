"""Compiled kernels of `ptolemy_rt.regions`: 8-connected labelling by row runs, per-row
extremes of each label, and the convex hulls of the labels' pixel corners.

Written for numba (`kernels.compiled`); callers use the wrappers in `ptolemy_rt.kernels`,
which load the ahead-of-time build of this module or, failing that, jit it. `EXPORTS` lists
the exported kernels with their signatures.

Coordinates: masks and label images are [row, col] arrays; hull vertices are (row, col)
float64 in pixel-corner coordinates (pixel (r, c) covers [r, r+1) × [c, c+1)).
"""
from __future__ import annotations

import numpy as np

from .kernels import compiled


@compiled
def _find(parent, i):
    """Root of i in the union-find forest `parent` (halving the path on the way)."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@compiled
def label_components(grown, mask):
    """8-connected components of `grown`, written on the pixels of `mask` only.

    Components are numbered 1..n in the row-major order of their first pixel (as
    scipy.ndimage.label numbers them). The runs of `label_runs` painted by `paint_runs`: one pass finds each row's runs and
    joins those touching a run of the row above (8-connectivity: column ranges overlap or
    touch diagonally); union-find keeps the smallest run index as root.

    Parameters
    ----------
    grown : ndarray, bool, [row, col]
        The pixels whose connectivity defines the components (e.g. a dilated mask).
    mask : ndarray, bool, [row, col]
        Same shape: the pixels that receive their component's label (others get 0).

    Returns
    -------
    labels : ndarray, int32, [row, col]
        0 off mask, else the component number.
    n : int
        Number of components of `grown`.

    Examples
    --------
    >>> m = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 0, 0]], bool)
    >>> labels, n = label_components(m, m)
    >>> n
    3
    >>> labels
    array([[1, 0, 0, 2],
           [0, 1, 0, 2],
           [0, 0, 0, 0],
           [3, 3, 0, 0]], dtype=int32)
    """
    rr, rs, re, lab, n = label_runs(grown)  # one labelling: the runs, painted on mask's pixels
    return paint_runs(rr, rs, re, lab, mask, 0), n


@compiled
def label_runs(grown):
    """8-connected components of `grown` as row runs (no label image).

    The runs and numbering of `label_components` (components 1..n in the row-major order of
    their first pixel), without the int32 label image: memory grows with the number of
    runs, not with the image.

    Parameters
    ----------
    grown : ndarray, bool, [row, col]
        The pixels whose connectivity defines the components.

    Returns
    -------
    rr, rs, re : ndarray, int32, (m,)
        Row, first and last (inclusive) column of each run, in row-major order.
    lab : ndarray, int32, (m,)
        Component number 1..n of each run.
    n : int
        Number of components.

    Examples
    --------
    >>> m = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 0]], bool)
    >>> rr, rs, re, lab, n = label_runs(m)
    >>> rr.tolist(), rs.tolist(), re.tolist(), lab.tolist(), n
    ([0, 0, 1, 3], [0, 2, 1, 0], [0, 2, 1, 1], [1, 1, 1, 2], 2)
    """
    h, w = grown.shape
    nruns = 0
    for r in range(h):
        prev = False
        for c in range(w):
            v = grown[r, c]
            if v and not prev:
                nruns += 1
            prev = v
    rr = np.empty(nruns, np.int32)
    rs = np.empty(nruns, np.int32)
    re = np.empty(nruns, np.int32)  # inclusive end column
    parent = np.arange(nruns)
    k = 0
    prev_lo = 0
    prev_hi = 0
    for r in range(h):
        row_lo = k
        j0 = prev_lo
        c = 0
        while c < w:
            if not grown[r, c]:
                c += 1
                continue
            s = c
            while c < w and grown[r, c]:
                c += 1
            e = c - 1
            rr[k] = r
            rs[k] = s
            re[k] = e
            while j0 < prev_hi and re[j0] < s - 1:
                j0 += 1
            j = j0
            while j < prev_hi and rs[j] <= e + 1:
                a = _find(parent, k)
                b = _find(parent, j)
                if a < b:
                    parent[b] = a
                elif b < a:
                    parent[a] = b
                j += 1
            k += 1
        prev_lo = row_lo
        prev_hi = k
    lab = np.zeros(nruns, np.int32)
    n = 0
    for i in range(nruns):
        root = _find(parent, i)
        if lab[root] == 0:  # root = the component's first run, met first here
            n += 1
            lab[root] = n
        lab[i] = lab[root]
    return rr, rs, re, lab, n


@compiled
def paint_runs(rr, rs, re, lab, mask, r0):
    """Label image of rows r0 .. r0 + mask.shape[0] − 1 from runs (`label_runs`).

    Parameters
    ----------
    rr, rs, re, lab : ndarray, int32, (m,)
        The runs meeting those rows (row, first and last column, component), row-major.
    mask : ndarray, bool, [row, col]
        The rows' mask: only its pixels receive their run's component (others 0).
    r0 : int
        Image row of mask's first row.

    Returns
    -------
    ndarray, int32, mask's shape
        Component number on mask pixels inside a run, 0 elsewhere: the rows of
        `label_components(grown, mask)`.

    Examples
    --------
    >>> m = np.array([[1, 1, 0, 1]], bool)
    >>> paint_runs(*label_runs(m)[:4], np.array([[1, 0, 0, 1]], bool), 0).tolist()
    [[1, 0, 0, 2]]
    """
    h, w = mask.shape
    out = np.zeros((h, w), np.int32)
    for i in range(rr.shape[0]):
        r = rr[i] - r0
        if r < 0 or r >= h:
            continue
        v = lab[i]
        for c in range(rs[i], re[i] + 1):
            if mask[r, c]:
                out[r, c] = v
    return out


@compiled
def _row_tables(cnt, n):
    """The (row, label) tables of `row_extremes` from cnt[v + 1] = rows of label v: starts
    (n + 2, int64: label v's entries are starts[v]..starts[v + 1] − 1), empty rows, cmin,
    cmax (int32) and pos (a copy of starts: the next free entry of each label)."""
    starts = np.zeros(n + 2, np.int64)
    for i in range(1, n + 2):
        starts[i] = starts[i - 1] + cnt[i]
    total = starts[n + 1]
    rows = np.empty(total, np.int32)
    cmin = np.empty(total, np.int32)
    cmax = np.empty(total, np.int32)
    return starts, rows, cmin, cmax, starts.copy()


@compiled
def _note_pixel(r, c, v, last, pos, rows, cmin, cmax):
    """Record pixel (r, c) of label v, met in row-major order: a new (row, label) entry at
    pos[v] when the label's last row seen (last[v]) is another, else extend its last column."""
    if last[v] != r:
        last[v] = r
        p = pos[v]
        rows[p] = r
        cmin[p] = c
        cmax[p] = c
        pos[v] = p + 1
    else:
        cmax[pos[v] - 1] = c


@compiled
def run_row_extremes(rr, rs, re, lab, mask, n):
    """`row_extremes` of the label image the runs paint on `mask` (`paint_runs` on every
    row), without making it: the runs are visited in row-major order, so the entries are
    the same.

    Parameters
    ----------
    rr, rs, re, lab : ndarray, int32, (m,)
        All runs of the image (`label_runs`).
    mask : ndarray, bool, [row, col]
        The whole image's mask.
    n : int
        Number of components.

    Returns
    -------
    rows, cmin, cmax, starts
        As `row_extremes`.

    Examples
    --------
    One 8-connected region over two rows:

    >>> m = np.array([[0, 1, 1], [1, 0, 1]], bool)
    >>> [a.tolist() for a in run_row_extremes(*label_runs(m)[:4], m, 1)]
    [[0, 1], [1, 0], [2, 2], [0, 0, 2]]
    """
    last = np.full(n + 1, -1, np.int64)
    cnt = np.zeros(n + 2, np.int64)
    for i in range(rr.shape[0]):
        r = rr[i]
        v = lab[i]
        if last[v] == r:
            continue
        for c in range(rs[i], re[i] + 1):
            if mask[r, c]:
                last[v] = r
                cnt[v + 1] += 1
                break
    starts, rows, cmin, cmax, pos = _row_tables(cnt, n)
    last[:] = -1
    for i in range(rr.shape[0]):
        r = rr[i]
        v = lab[i]
        for c in range(rs[i], re[i] + 1):
            if mask[r, c]:
                _note_pixel(r, c, v, last, pos, rows, cmin, cmax)
    return rows, cmin, cmax, starts


@compiled
def row_extremes(labels, n):
    """First and last column of every (row, label) pair present in a label image.

    Parameters
    ----------
    labels : ndarray, int32, [row, col]
        Label image, 0 = no label, labels 1..n.
    n : int
        Largest label.

    Returns
    -------
    rows, cmin, cmax : ndarray, int32, (m,)
        One entry per (row, label) pair: the row and its first and last column of that
        label; grouped by label 1..n, rows ascending within a label.
    starts : ndarray, int64, (n + 2,)
        Entries of label i are [starts[i], starts[i + 1]) (starts[0] = starts[1] = 0).

    Examples
    --------
    >>> lab = np.array([[0, 1, 1], [2, 0, 1]], np.int32)
    >>> rows, cmin, cmax, starts = row_extremes(lab, 2)
    >>> rows, cmin, cmax, starts
    (array([0, 1, 1], dtype=int32), array([1, 2, 0], dtype=int32), array([2, 2, 0], dtype=int32), array([0, 0, 2, 3]))
    """
    h, w = labels.shape
    last = np.full(n + 1, -1, np.int64)
    cnt = np.zeros(n + 2, np.int64)
    for r in range(h):
        for c in range(w):
            v = labels[r, c]
            if v > 0 and last[v] != r:
                last[v] = r
                cnt[v + 1] += 1
    starts, rows, cmin, cmax, pos = _row_tables(cnt, n)
    last[:] = -1
    for r in range(h):
        for c in range(w):
            v = labels[r, c]
            if v > 0:
                _note_pixel(r, c, v, last, pos, rows, cmin, cmax)
    return rows, cmin, cmax, starts


@compiled
def _hull_into(rows, cmin, cmax, a, b, out, t0):
    """Convex hull of the pixel corners of runs a..b−1 (row rows[i], cols cmin[i]..cmax[i],
    rows ascending), counter-clockwise in (row, col) axes, no collinear vertices, written to
    out[t0:]. Only each corner row's leftmost and rightmost corner can be a vertex; they come
    sorted by (row, col), so a monotone chain needs no sort. Returns the vertex count."""
    m = b - a
    ys = np.empty(2 * m, np.int64)
    lo = np.empty(2 * m, np.int64)
    hi = np.empty(2 * m, np.int64)
    k = 0
    for i in range(a, b):
        r = np.int64(rows[i])
        x0 = np.int64(cmin[i])
        x1 = np.int64(cmax[i]) + 1
        for d in range(2):
            y = r + d
            if k > 0 and ys[k - 1] == y:
                lo[k - 1] = min(lo[k - 1], x0)
                hi[k - 1] = max(hi[k - 1], x1)
            else:
                ys[k] = y
                lo[k] = x0
                hi[k] = x1
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
    t -= 1  # the last point repeats the first
    for j in range(t):
        out[t0 + j, 0] = hr[j]
        out[t0 + j, 1] = hc[j]
    return t


@compiled
def hulls_of_rows(rows, cmin, cmax, starts):
    """Convex hulls of every label's pixel corners, from its per-row extremes.

    Parameters
    ----------
    rows, cmin, cmax : ndarray, int32, (m,)
        Per (row, label) pair: the row, first and last column, as `row_extremes` returns.
    starts : ndarray, int64, (n + 2,)
        Entries of label i are [starts[i], starts[i + 1]).

    Returns
    -------
    vertices : ndarray, float64, (K, 2)
        All hulls' vertices, (row, col) pixel-corner coordinates, px; each hull
        counter-clockwise in (row, col) axes, without collinear vertices.
    offsets : ndarray, int64, (n + 1,)
        Label i's hull is vertices[offsets[i − 1]:offsets[i]] (empty for a label without
        pixels).

    Examples
    --------
    One pixel at (row 2, col 5): its four corners.

    >>> one = np.array([2], np.int32), np.array([5], np.int32), np.array([5], np.int32)
    >>> verts, offsets = hulls_of_rows(*one, np.array([0, 0, 1]))
    >>> verts.tolist(), offsets.tolist()
    ([[2.0, 5.0], [3.0, 5.0], [3.0, 6.0], [2.0, 6.0]], [0, 4])
    """
    n = starts.shape[0] - 2
    out = np.empty((4 * rows.shape[0] + 1, 2), np.float64)
    offsets = np.zeros(n + 1, np.int64)
    t = 0
    for i in range(1, n + 1):
        a = starts[i]
        b = starts[i + 1]
        if b > a:
            t += _hull_into(rows, cmin, cmax, a, b, out, t)
        offsets[i] = t
    return out[:t].copy(), offsets


@compiled
def dilate_box(mask, back, ahead):
    """Dilation of a bool [row, col] mask by a box: out[r, c] is True when any mask pixel lies
    in rows r − back … r + ahead and columns c − back … c + ahead (pixels outside count as 0).

    Two running counts (down the columns into the output, then along each row of it in place,
    from a one-row copy): O(1) per pixel whatever the box, and no array but the output
    (1 byte/px).

    Parameters
    ----------
    mask : ndarray, bool, (H, W), C-contiguous
    back, ahead : int
        Box reach before and after each pixel, px (≥ 0).

    Returns
    -------
    ndarray, bool, (H, W)

    Examples
    --------
    >>> m = np.zeros((1, 6), np.bool_); m[0, 2] = True
    >>> dilate_box(m, 1, 0).astype(np.int8).tolist()
    [[0, 0, 1, 1, 0, 0]]
    """
    h, w = mask.shape
    out = np.zeros((h, w), np.bool_)
    counts = np.zeros(w, np.int64)
    for r in range(min(ahead, h)):
        for c in range(w):
            if mask[r, c]:
                counts[c] += 1
    for r in range(h):
        if r + ahead < h:
            for c in range(w):
                if mask[r + ahead, c]:
                    counts[c] += 1
        if r - back - 1 >= 0:
            for c in range(w):
                if mask[r - back - 1, c]:
                    counts[c] -= 1
        for c in range(w):
            out[r, c] = counts[c] > 0
    row = np.zeros(w, np.bool_)
    for r in range(h):
        for c in range(w):
            row[c] = out[r, c]
        count = 0
        for c in range(min(ahead, w)):
            if row[c]:
                count += 1
        for c in range(w):
            if c + ahead < w and row[c + ahead]:
                count += 1
            if c - back - 1 >= 0 and row[c - back - 1]:
                count -= 1
            out[r, c] = count > 0
    return out


#: Exported kernels: name -> (function name here, numba signature), C-contiguous arrays.
EXPORTS = {
    "label_components": ("label_components", "Tuple((i4[:, ::1], i8))(b1[:, ::1], b1[:, ::1])"),
    "label_runs": ("label_runs", "Tuple((i4[::1], i4[::1], i4[::1], i4[::1], i8))(b1[:, ::1])"),
    "paint_runs": ("paint_runs", "i4[:, ::1](i4[::1], i4[::1], i4[::1], i4[::1], b1[:, ::1], i8)"),
    "run_row_extremes": ("run_row_extremes",
                         "Tuple((i4[::1], i4[::1], i4[::1], i8[::1]))(i4[::1], i4[::1], i4[::1], i4[::1], b1[:, ::1], i8)"),
    "row_extremes": ("row_extremes", "Tuple((i4[::1], i4[::1], i4[::1], i8[::1]))(i4[:, ::1], i8)"),
    "hulls_of_rows": ("hulls_of_rows", "Tuple((f8[:, ::1], i8[::1]))(i4[::1], i4[::1], i4[::1], i8[::1])"),
    "dilate_box": ("dilate_box", "b1[:, ::1](b1[:, ::1], i8, i8)"),
}
