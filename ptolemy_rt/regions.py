"""Regions of a binary mask and their convex-hull polygons (docs/ALGORITHM.md#regions-and-polygons).

Coordinates: arrays are indexed [row, col]. Polygons are K×2 float64 arrays of (row, col)
vertices in *pixel-corner* coordinates: pixel (r, c) covers the unit square
[r, r+1) × [c, c+1), so its four corners are (r, c), (r+1, c), (r+1, c+1), (r, c+1).
Areas are in px².

Labelling and hulls are compiled kernels (`regions_kernels`, loaded by `kernels`), without
one full-image scan per region: labelling joins the runs of each row with those of the row
above (union-find); one pass over the label image collects, for each (row, label) pair, the
leftmost and rightmost pixel (only those pixels' corners can be hull vertices); a monotone
chain per region follows.
"""
from __future__ import annotations

import numpy as np

from . import kernels

def dilate_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Dilate a bool [row, col] mask by a size×size box.

    Equals `scipy.signal.convolve2d(mask, ones((size, size)), mode="same") > 0`, including the
    offset of even sizes (pixel (r, c) spreads to rows r - (size-1)//2 ... r + size//2, same for
    columns); pixels outside the image count as 0. size ≤ 1: the mask itself.

    Parameters
    ----------
    mask : array_like, bool, [row, col]
        The mask.
    size : int
        Box side, px.

    Returns
    -------
    ndarray, bool, [row, col]
        The dilated mask (a new array).

    Examples
    --------
    An even size spreads each pixel to itself and the next column (and row).

    >>> m = np.zeros((1, 5), bool); m[0, 1] = m[0, 3] = True
    >>> dilate_mask(m, 2).astype(int).tolist()
    [[0, 1, 1, 1, 1]]
    """
    m = np.asarray(mask, dtype=bool)
    if size <= 1:
        return m.copy()
    # output pixel c is covered by the pixels c - size//2 ... c + (size-1)//2 (checked in tests)
    return kernels.dilate_box(m, size // 2, (size - 1) // 2)


def label_regions(mask: np.ndarray, dilate: int = 0) -> tuple[np.ndarray, int]:
    """Regions of a bool [row, col] mask (docs/ALGORITHM.md#regions).

    Regions are the 8-connected components of the mask dilated by a dilate×dilate box
    (dilate = 0 or 1: no dilation). Returns (labels, n): labels int32 [row, col] holds the
    region number 1..n on the *original* mask pixels only and 0 elsewhere. Every region has at
    least one mask pixel (a dilated component always contains the pixels that made it).
    Numbering follows the first pixel of each component in row-major order (as
    scipy.ndimage.label). One pass over the runs of each row (`regions_kernels.label_components`).

    Parameters
    ----------
    mask : array_like, bool, 2-D [row, col]
        The mask.
    dilate : int, optional
        Box side, px, of the dilation that joins nearby pixels (0 or 1: none).

    Returns
    -------
    labels : ndarray, int32, [row, col]
        Region number on mask pixels, 0 elsewhere.
    n : int
        Number of regions.

    Raises
    ------
    ValueError
        When mask is not 2-D.

    Examples
    --------
    Two pixels one column apart: two regions, or one after a 3×3 dilation.

    >>> m = np.zeros((3, 5), bool); m[1, 1] = m[1, 3] = True
    >>> labels, n = label_regions(m)
    >>> n, labels[1].tolist()
    (2, [0, 1, 0, 2, 0])
    >>> labels, n = label_regions(m, dilate=3)
    >>> n, labels[1].tolist()
    (1, [0, 1, 0, 1, 0])
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    grown = dilate_mask(m, dilate) if dilate > 1 else m
    return kernels.label_components(grown, m)


class RegionRuns:
    """The regions of `label_regions` kept as row runs instead of a label image
    (docs/ALGORITHM.md#regions): the same numbering, hulls and per-strip labels, with memory
    that grows with the number of runs (16 bytes each; at most one run per 7 px with a 6×6
    dilation, usually far fewer) instead of 4 bytes per pixel.

    Attributes: rr, rs, re, lab (int32 per run: row, first and last column, region 1..n),
    n (number of regions), mask (bool [row, col]: the pixels that carry a label), shape.

    Examples
    --------
    >>> m = np.zeros((4, 6), bool); m[1:3, 1:3] = True; m[0, 5] = True
    >>> runs = region_runs(m)
    >>> labels, n = label_regions(m)
    >>> runs.n == n, bool(np.array_equal(runs.labels(slice(1, 3)), labels[1:3]))
    (True, True)
    >>> [h.tolist() for h in runs.hulls()] == [h.tolist() for h in region_hulls(labels, n)]
    True
    """

    def __init__(self, rr, rs, re, lab, n: int, mask: np.ndarray):
        self.rr, self.rs, self.re, self.lab, self.n = rr, rs, re, lab, int(n)
        self.mask = mask
        self.shape = mask.shape

    def labels(self, rows: slice) -> np.ndarray:
        """int32 labels of the rows `rows` (a slice with step 1): `label_regions`'s rows."""
        r0, r1, _ = rows.indices(self.shape[0])
        k0, k1 = np.searchsorted(self.rr, [r0, r1], side="left")
        return kernels.paint_runs(self.rr[k0:k1], self.rs[k0:k1], self.re[k0:k1], self.lab[k0:k1],
                                  self.mask[r0:r1], r0)

    def strips(self):
        """(row slice, int32 labels of those rows) over the image, in `core.row_strips`."""
        from .core import row_strips

        for sl in row_strips(*self.shape):
            yield sl, self.labels(sl)

    def hulls(self) -> list[np.ndarray]:
        """`region_hulls` of the regions (the same polygons, without the label image)."""
        if self.n <= 0:
            return []
        rows, cmin, cmax, starts = kernels.run_row_extremes(self.rr, self.rs, self.re, self.lab, self.mask, self.n)
        verts, offsets = kernels.hulls_of_rows(rows, cmin, cmax, starts)
        return [verts[offsets[i - 1]:offsets[i]] for i in range(1, self.n + 1)]

    def at(self, rows, cols) -> np.ndarray:
        """int32 labels (0: no label) of the pixels (rows[i], cols[i]) (integer px, inside the
        image): the runs are row-major, so each pixel's run is found by binary search.

        Examples
        --------
        >>> m = np.zeros((4, 6), bool); m[1:3, 1:3] = True; m[0, 5] = True
        >>> region_runs(m).at(np.array([0, 1, 2, 3]), np.array([5, 1, 3, 0])).tolist()
        [1, 2, 0, 0]
        """
        r = np.asarray(rows, dtype=np.int64).reshape(-1)
        c = np.asarray(cols, dtype=np.int64).reshape(-1)
        w = int(self.shape[1]) + 1
        key = self.rr.astype(np.int64) * w + self.rs
        k = np.searchsorted(key, r * w + c, side="right") - 1
        out = np.zeros(len(r), dtype=np.int32)
        ok = k >= 0
        kk = k[ok]
        hit = (self.rr[kk] == r[ok]) & (self.re[kk] >= c[ok])
        out[np.flatnonzero(ok)[hit]] = self.lab[kk[hit]]
        return out

    def areas(self) -> np.ndarray:
        """int64 pixels of each region, indexed by label (entry 0: 0)."""
        return np.bincount(self.lab, weights=(self.re - self.rs + 1).astype(np.float64),
                           minlength=self.n + 1).astype(np.int64)

    def lookup(self, table: np.ndarray) -> np.ndarray:
        """table[labels] for a bool table of n + 1 entries (table[0]: pixels without a label),
        made strip by strip: a bool [row, col] image."""
        out = np.empty(self.shape, bool)
        for sl, lab in self.strips():
            out[sl] = table[lab]
        return out


def region_runs(mask: np.ndarray, dilate: int = 0) -> RegionRuns:
    """`label_regions` as row runs (`RegionRuns`): no int32 label image.

    Parameters
    ----------
    mask : array_like, bool, 2-D [row, col]
        The mask (kept by reference: do not modify it while the runs are used).
    dilate : int, optional
        Box side, px, of the dilation that joins nearby pixels (0 or 1: none).

    Returns
    -------
    RegionRuns

    Raises
    ------
    ValueError
        When mask is not 2-D.

    Examples
    --------
    >>> m = np.zeros((3, 5), bool); m[1, 1] = m[1, 3] = True
    >>> region_runs(m).n, region_runs(m, dilate=3).n
    (2, 1)
    """
    m = np.ascontiguousarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    grown = dilate_mask(m, dilate) if dilate > 1 else m
    rr, rs, re, lab, n = kernels.label_runs(grown)
    del grown
    return RegionRuns(rr, rs, re, lab, n, m)


#: Bytes per row run while `region_runs` labels (run arrays and union-find).
RUN_BYTES = 24


def run_count(mask: np.ndarray) -> int:
    """Number of row runs of a bool [row, col] mask, counted in row strips (`core.row_strips`).

    Examples
    --------
    >>> run_count(np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 0, 1, 0]], bool))
    4
    """
    from .core import row_strips

    total = 0
    for sl in row_strips(*mask.shape):
        m = mask[sl]
        total += int(np.count_nonzero(m[:, 0])) + int(np.count_nonzero(m[:, 1:] > m[:, :-1]))
    return total


def runs_are_smaller(mask: np.ndarray) -> bool:
    """True when `region_runs` of the 2-D bool mask takes less memory than an int32 label image
    (`run_count` × RUN_BYTES ≤ 4 bytes per pixel): then the run-based path is used.

    Examples
    --------
    >>> m = np.zeros((64, 64), bool); m[8:40, 8:40] = True
    >>> runs_are_smaller(m), runs_are_smaller(np.indices((64, 64)).sum(axis=0) % 2 == 0)  # a checkerboard: not
    (True, False)
    """
    return mask.ndim == 2 and run_count(mask) * RUN_BYTES <= 4 * mask.size


def region_hulls(labels: np.ndarray, n: int) -> list[np.ndarray]:
    """Per region 1..n the convex hull of its pixels' corners (docs/ALGORITHM.md#polygons).

    labels: int [row, col] (0 = background). Returns a list of n K×2 float64 arrays of
    (row, col) vertices in pixel-corner coordinates, counter-clockwise in (row, col) axes
    (i.e. the shoelace sum is positive), without repeated or collinear vertices. A region
    with no pixels gives an empty 0×2 array. Two passes over the label image in all
    (`regions_kernels.row_extremes`), then one monotone chain per region (`hulls_of_rows`).

    Parameters
    ----------
    labels : array_like, int, [row, col]
        Label image (e.g. from `label_regions`).
    n : int
        Number of regions.

    Returns
    -------
    list of ndarray, float64, (K, 2)
        One hull per region 1..n, (row, col) pixel-corner vertices, px.

    Examples
    --------
    A single pixel at (0, 5) (region 1: first in row-major order) and a 2×2 block at rows
    1-2, cols 1-2 (region 2).

    >>> m = np.zeros((4, 6), bool); m[1:3, 1:3] = True; m[0, 5] = True
    >>> [h.tolist() for h in region_hulls(*label_regions(m))]
    [[[0.0, 5.0], [1.0, 5.0], [1.0, 6.0], [0.0, 6.0]], [[1.0, 1.0], [3.0, 1.0], [3.0, 3.0], [1.0, 3.0]]]
    """
    if n <= 0:
        return []
    rows, cmin, cmax, starts = kernels.row_extremes(labels, int(n))
    verts, offsets = kernels.hulls_of_rows(rows, cmin, cmax, starts)
    return [verts[offsets[i - 1]:offsets[i]] for i in range(1, int(n) + 1)]


def polygon_area(poly: np.ndarray) -> float:
    """Area (px²) of a simple polygon given as K×2 vertices (either order), shoelace formula.

    Parameters
    ----------
    poly : array_like, (K, 2)
        Vertices, (row, col) px (or any consistent pair of axes).

    Returns
    -------
    float
        Area, px² (0.0 for fewer than 3 vertices).

    Examples
    --------
    >>> polygon_area([[0, 0], [0, 3], [2, 3], [2, 0]])
    6.0
    """
    p = np.asarray(poly, dtype=np.float64)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def polygon_centroid(poly: np.ndarray) -> tuple[float, float]:
    """Centre of mass (row, col), px, of a simple polygon given as K×2 (row, col) vertices.

    A degenerate polygon (area 0, or fewer than 3 vertices) gives the mean of its vertices.

    Parameters
    ----------
    poly : array_like, (K, 2)
        (row, col) vertices, px, either order.

    Returns
    -------
    tuple of float
        (row, col), px.

    Raises
    ------
    ValueError
        When the polygon has no vertices.

    Examples
    --------
    >>> polygon_centroid([[0, 0], [0, 3], [2, 3], [2, 0]]), polygon_centroid([[1, 1], [3, 3]])
    ((1.0, 1.5), (2.0, 2.0))
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
    """Run labelling and hulls once on a tiny input (loads, or compiles, the kernels).

    Examples
    --------
    >>> warmup()
    """
    m = np.zeros((6, 6), dtype=bool)
    m[1:3, 1:4] = True
    m[4, 5] = True
    labels, n = label_regions(m, 0)
    region_hulls(labels, n)
