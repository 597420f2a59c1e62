"""Compiled kernels of `ptolemy_rt.geometry`: the grid-angle cost (summed bounding-box areas
of rotated polygons), evaluated once per step of the angle search, and cubic B-spline
interpolation under an affine map (the image rotations: `spline_prefilter`, `affine_cubic`;
the same numbers as scipy.ndimage's order-3 `spline_filter` and `affine_transform` with
mode "constant", to float64 rounding — tests/test_geometry.py compares them).

Written for numba (`kernels.compiled`); callers use the wrapper in `ptolemy_rt.kernels`,
which loads the ahead-of-time build of this module or, failing that, jits it. `EXPORTS`
lists the exported kernel with its signature. Points are (row, col) float64, px.
"""
from __future__ import annotations

import math

import numpy as np

from .kernel_constants import SPLINE_EDGE_TOLERANCE_PX, SPLINE_INIT_TERMS, SPLINE_POLE
from .kernels import compiled


@compiled
def box_area_sum(pts, starts, theta_deg):
    """Summed areas of the polygons' axis-aligned bounding boxes after a rotation.

    The (row, col) points are rotated as `geometry.rotate_points` rotates them:
    q = R p with R = [[cos θ, −sin θ], [sin θ, cos θ]].

    Parameters
    ----------
    pts : ndarray, float64, (K, 2)
        All polygons' vertices stacked, (row, col), px.
    starts : ndarray, int64, (n,)
        Index of each polygon's first vertex, ascending (polygon p is
        pts[starts[p]:starts[p + 1]], the last one runs to the end).
    theta_deg : float
        Rotation angle θ, degrees.

    Returns
    -------
    float
        Σ over polygons of the bounding-box area, px² (empty polygons add 0).

    Examples
    --------
    A unit square: area 1 upright, 2 turned by 45°.

    >>> sq = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    >>> starts = np.array([0])
    >>> box_area_sum(sq, starts, 0.0), round(box_area_sum(sq, starts, 45.0), 12)
    (1.0, 2.0)
    """
    t = theta_deg * (math.pi / 180.0)
    co = math.cos(t)
    si = math.sin(t)
    total = 0.0
    n = starts.shape[0]
    for p in range(n):
        a = starts[p]
        b = starts[p + 1] if p + 1 < n else pts.shape[0]
        lo0 = np.inf
        hi0 = -np.inf
        lo1 = np.inf
        hi1 = -np.inf
        for i in range(a, b):
            q0 = co * pts[i, 0] - si * pts[i, 1]
            q1 = si * pts[i, 0] + co * pts[i, 1]
            lo0 = min(lo0, q0)
            hi0 = max(hi0, q0)
            lo1 = min(lo1, q1)
            hi1 = max(hi1, q1)
        if b > a:
            total += (hi0 - lo0) * (hi1 - lo1)
    return total


@compiled
def _mirror_index(i, n):
    """Index i (any int) of a line of n samples extended by mirroring about its first and last
    samples (…, 2, 1, 0, 1, 2, …, n−2, n−1, n−2, …), as an index in 0..n−1."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i = abs(i) % period
    return period - i if i > n - 1 else i


@compiled
def _causal_start(line, n):
    """First causal coefficient of a mirrored line of n ≥ 2 samples (already × 6): the sum
    Σ z^k x̃[k] over one mirror period (exact, lines of ≤ SPLINE_INIT_TERMS samples) or its
    first SPLINE_INIT_TERMS terms (longer lines: the rest is below 1e-23 of the values)."""
    z = SPLINE_POLE
    if n <= SPLINE_INIT_TERMS:
        zn = z ** (n - 1)
        total = line[0] + zn * line[n - 1]
        zk = z
        z2 = zn * zn / z  # z^(2n−3); × 1/z^k in the loop gives z^(2n−2−k)
        for k in range(1, n - 1):
            total += (zk + z2) * line[k]
            zk *= z
            z2 /= z
        return total / (1.0 - zn * zn)
    total = 0.0
    zk = 1.0
    for k in range(SPLINE_INIT_TERMS):
        total += zk * line[k]
        zk *= z
    return total


@compiled
def spline_prefilter(coef):
    """Cubic B-spline coefficients of a 2-D [row, col] image, in place, float64.

    Along each axis: gain 6, the causal recursion c⁺[k] = x[k] + z c⁺[k−1] from `_causal_start`,
    the anticausal one c[k] = z (c[k+1] − c⁺[k]) from c[n−1] = z / (z² − 1) (c⁺[n−1] + z c⁺[n−2]),
    z = SPLINE_POLE: the mirror boundary, which is what scipy.ndimage.spline_filter(order=3)
    uses for mode "constant" too. Lines of one sample are left as they are.

    Parameters
    ----------
    coef : ndarray, float64, (H, W), C-contiguous
        The image on entry, its coefficients on return.

    Examples
    --------
    A constant image is its own set of coefficients (the B-spline weights sum to 1).

    >>> a = np.full((5, 7), 3.0); spline_prefilter(a); bool(np.allclose(a, 3.0))
    True
    """
    h, w = coef.shape
    z = SPLINE_POLE
    lam = (1.0 - z) * (1.0 - 1.0 / z)
    if w > 1:  # along each row
        for r in range(h):
            line = coef[r]
            for k in range(w):
                line[k] *= lam
            line[0] = _causal_start(line, w)
            for k in range(1, w):
                line[k] += z * line[k - 1]
            line[w - 1] = (z / (z * z - 1.0)) * (line[w - 1] + z * line[w - 2])
            for k in range(w - 2, -1, -1):
                line[k] = z * (line[k + 1] - line[k])
    if h > 1:  # along each column, all columns at once (row by row: contiguous memory)
        for r in range(h):
            for c in range(w):
                coef[r, c] *= lam
        col = np.empty(min(h, SPLINE_INIT_TERMS), np.float64)
        first = np.empty(w, np.float64)
        for c in range(w):  # `_causal_start` reads at most the first SPLINE_INIT_TERMS samples
            for r in range(min(h, SPLINE_INIT_TERMS)):
                col[r] = coef[r, c]
            first[c] = _causal_start(col, h)
        for c in range(w):
            coef[0, c] = first[c]
        for r in range(1, h):
            for c in range(w):
                coef[r, c] += z * coef[r - 1, c]
        g = z / (z * z - 1.0)
        for c in range(w):
            coef[h - 1, c] = g * (coef[h - 1, c] + z * coef[h - 2, c])
        for r in range(h - 2, -1, -1):
            for c in range(w):
                coef[r, c] = z * (coef[r + 1, c] - coef[r, c])


@compiled
def _cubic_weights(t, weights):
    """The cubic B-spline's weights of the taps floor(x) − 1 … floor(x) + 2 for a sample at
    fraction t = x − floor(x) ∈ [0, 1), into weights[0:4] (they sum to 1)."""
    u = 1.0 - t
    weights[0] = u * u * u / 6.0
    weights[1] = (4.0 - 6.0 * t * t + 3.0 * t * t * t) / 6.0
    weights[3] = t * t * t / 6.0
    weights[2] = 1.0 - weights[0] - weights[1] - weights[3]


@compiled
def affine_cubic(coef, m00, m01, m10, m11, off0, off1, out, cval):
    """Cubic B-spline interpolation of `spline_prefilter` coefficients under an affine map.

    Fills out[i, j] with the image sampled at index coordinates (row, col) = (m00 i + m01 j + off0,
    m10 i + m11 j + off1) (index coordinates: sample (r, c) of `coef` sits at (r, c)). Points
    outside [0, H−1] × [0, W−1] are `cval` (scipy.ndimage's mode "constant": no interpolation
    beyond the edge samples; points within SPLINE_EDGE_TOLERANCE_PX of it are on the edge);
    inside, the 4×4 taps beyond the edges are mirrored.

    Parameters
    ----------
    coef : ndarray, float64, (H, W), C-contiguous
        Spline coefficients (`spline_prefilter`).
    m00, m01, m10, m11, off0, off1 : float
        The map from output index (i, j) to input index coordinates (row, col), px.
    out : ndarray, float32 or float64, (out_h, out_w), C-contiguous
        Filled with the samples (rounded to its dtype).
    cval : float
        Value outside the input.

    Examples
    --------
    The identity map gives back the image; a quarter-pixel shift of a ramp interpolates it
    (away from the edges, where the mirror bends the ramp).

    >>> a = np.tile(np.arange(40.0), (4, 1)); c = a.copy(); spline_prefilter(c)
    >>> out = np.empty((4, 40)); affine_cubic(c, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, out, 0.0)
    >>> bool(np.allclose(out, a))
    True
    >>> out = np.empty((1, 4)); affine_cubic(c, 1.0, 0.0, 0.0, 1.0, 1.0, 20.25, out, 0.0)
    >>> np.round(out, 9).tolist()
    [[20.25, 21.25, 22.25, 23.25]]
    """
    h, w = coef.shape
    out_h, out_w = out.shape
    tol = SPLINE_EDGE_TOLERANCE_PX
    wy = np.empty(4, np.float64)
    wx = np.empty(4, np.float64)
    ry = np.empty(4, np.int64)
    cx = np.empty(4, np.int64)
    for i in range(out_h):
        for j in range(out_w):
            y = m00 * i + m01 * j + off0
            x = m10 * i + m11 * j + off1
            if not (y >= -tol and y <= h - 1 + tol and x >= -tol and x <= w - 1 + tol):  # NaN: outside
                out[i, j] = cval
                continue
            y = min(max(y, 0.0), h - 1.0)
            x = min(max(x, 0.0), w - 1.0)
            fy = math.floor(y)
            fx = math.floor(x)
            _cubic_weights(y - fy, wy)
            _cubic_weights(x - fx, wx)
            r0 = int(fy) - 1
            c0 = int(fx) - 1
            for k in range(4):
                ry[k] = _mirror_index(r0 + k, h)
                cx[k] = _mirror_index(c0 + k, w)
            total = 0.0
            for a in range(4):
                row = 0.0
                for b in range(4):
                    row += wx[b] * coef[ry[a], cx[b]]
                total += wy[a] * row
            out[i, j] = total


#: Exported kernels: name -> (function name here, numba signature), C-contiguous arrays.
EXPORTS = {
    "box_area_sum": ("box_area_sum", "f8(f8[:, ::1], i8[::1], f8)"),
    "spline_prefilter": ("spline_prefilter", "void(f8[:, ::1])"),
    "affine_cubic_f4": ("affine_cubic", "void(f8[:, ::1], f8, f8, f8, f8, f8, f8, f4[:, ::1], f8)"),
    "affine_cubic_f8": ("affine_cubic", "void(f8[:, ::1], f8, f8, f8, f8, f8, f8, f8[:, ::1], f8)"),
}
