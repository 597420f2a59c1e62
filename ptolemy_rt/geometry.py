"""Image rotation and the matching point maps (docs/ALGORITHM.md#rotation, #lowmag-grid-angle, #medmag-rotation).

Coordinates: arrays are indexed [row, col]. Points are (row, col) float arrays in
*pixel-corner* coordinates: pixel (r, c) covers [r, r+1) × [c, c+1), so the centre of pixel
(r, c) is (r + 0.5, c + 0.5) (the convention of `regions` polygons and of the results).
To map array indices (pixel centres) add 0.5 before and subtract 0.5 after.
Angles are in degrees.

`rotate_image(image, θ)` is `scipy.ndimage.rotate(image, θ, reshape=True, order=3, cval=0)`
to float64 rounding (own compiled cubic-spline kernels, `geometry_kernels`: no run imports
scipy.ndimage for its rotations). That function samples input position
p_in = Rᵀ (p_out − c_out) + c_in for each output position, with c_in, c_out the centres of
the two frames (shape / 2 in corner coordinates, so (shape − 1) / 2 in index coordinates)
and, in (row, col) axes,

    R(θ) = [[cos θ, −sin θ],
            [sin θ,  cos θ]].

So a point maps forward as p_out = R (p_in − c_in) + c_out, for any input shape (square or
not). The published tool used c = (m//2, m//2) with m = min(H, W) in both frames, which is
exact only for square images of even size; these maps are exact for every shape.
"""
from __future__ import annotations

import math

import numpy as np

from . import kernels

#: Brent's bounded search (`bounded_brent`): the golden section's step fraction (3 − √5) / 2
GOLDEN_FRACTION = 0.5 * (3.0 - math.sqrt(5.0))
#: its relative tolerance, √(2.2·10⁻¹⁶) (the constant of scipy.optimize.fminbound, so that the grid
#: angle equals the published tool's bit for bit); absolute tolerance default XATOL
SQRT_EPS = math.sqrt(2.2e-16)
XATOL = 1e-5


def _rot(angle_deg: float) -> np.ndarray:
    t = np.deg2rad(float(angle_deg))
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s], [s, c]])


def rotated_shape(in_shape: tuple[int, int], angle_deg: float) -> tuple[int, int]:
    """(rows, cols) of `rotate_image` output for an input of shape (rows, cols), without
    rotating anything: the rounded extent of the rotated image rectangle (computed exactly
    as scipy.ndimage.rotate does).

    Parameters
    ----------
    in_shape : tuple of int
        Input (rows, cols), px.
    angle_deg : float
        Rotation, degrees.

    Returns
    -------
    tuple of int
        Output (rows, cols), px.

    Examples
    --------
    >>> rotated_shape((2, 4), 90), rotated_shape((10, 20), 45)
    ((4, 2), (21, 21))
    """
    return _rotation_transform((int(in_shape[0]), int(in_shape[1])), angle_deg)[2]


def rotate_image(image: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate a 2-D [row, col] image by angle_deg degrees (docs/ALGORITHM.md#rotation).

    scipy.ndimage.rotate with reshape=True (the output holds the whole rotated image),
    cubic spline interpolation (order 3) and fill value 0 outside the input, to float64
    rounding (≤ 1e-12 of the pixel values; tests/test_geometry.py), made by the compiled
    kernels (`kernels.spline_coefficients`, `kernels.affine_cubic`). The dtype is
    kept for float32/float64 input (other dtypes give float32). Output shape equals
    `rotated_shape(image.shape, angle_deg)`.

    Parameters
    ----------
    image : array_like, 2-D, [row, col]
        The image.
    angle_deg : float
        Rotation, degrees (positive: counter-clockwise as displayed with row 0 on top).

    Returns
    -------
    ndarray, [row, col]
        The rotated image, shape `rotated_shape(image.shape, angle_deg)`.

    Examples
    --------
    A 3×4 ramp turned by 90°: the last column becomes the first row.

    >>> im = np.arange(1.0, 13.0).reshape(3, 4)
    >>> (np.round(rotate_image(im, 90), 3) + 0.0).tolist()
    [[4.0, 8.0, 12.0], [3.0, 7.0, 11.0], [2.0, 6.0, 10.0], [1.0, 5.0, 9.0]]
    """
    a = np.asarray(image)
    return rotate_window_at(a, angle_deg, (0.0, 0.0), rotated_shape(a.shape, angle_deg))


#: Extra input pixels around a crop's source window for the spline prefilter. The cubic
#: B-spline prefilter is a recursive filter along each line whose boundary influence decays
#: as |z|^d, z = √3 − 2 ≈ −0.268: at 20 px it is ~4e-12 of a pixel value, far below the
#: float32 resolution of the crops (and ≤ 1e-9 as documented), so a window prefilter equals the
#: whole-image prefilter wherever it is used (40 px, before: the same crops, twice the area to
#: prefilter for a low-mag square crop).
WINDOW_MARGIN_PX = 20


def cos_sin_degrees(angle_deg: float) -> tuple[float, float]:
    """(cos θ, sin θ) of an angle in degrees, exact at multiples of 90° (as scipy.special's
    cosdg / sindg, which scipy.ndimage.rotate uses: a quarter turn is an exact index
    permutation and `rotated_shape` rounds the same extents); elsewhere math.cos / math.sin of
    the angle in radians (within 2 ulp of cosdg / sindg).

    Examples
    --------
    >>> cos_sin_degrees(90.0), cos_sin_degrees(-270.0), cos_sin_degrees(180.0)
    ((0.0, 1.0), (0.0, 1.0), (-1.0, 0.0))
    >>> [round(v, 12) for v in cos_sin_degrees(30.0)]
    [0.866025403784, 0.5]
    """
    a = float(angle_deg)
    if math.isfinite(a) and a == math.floor(a) and a % 90.0 == 0.0:
        return ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))[int(a % 360.0) // 90]
    t = math.radians(a)
    return math.cos(t), math.sin(t)


def _rotation_transform(in_shape, angle_deg: float):
    """(matrix, offset, out_shape) exactly as scipy.ndimage.rotate (reshape=True) builds them
    for a 2-D input of in_shape [row, col]: input index = matrix @ output index + offset
    (cosine and sine of the angle by `cos_sin_degrees`)."""
    c, s = cos_sin_degrees(angle_deg)
    m = np.array([[c, s], [-s, c]])
    in_plane = np.asarray(in_shape[:2])
    iy, ix = in_plane
    out_bounds = m @ [[0, 0, iy, iy], [0, ix, 0, ix]]
    out_plane = (np.ptp(out_bounds, axis=1) + 0.5).astype(int)
    out_center = m @ ((out_plane - 1) / 2)
    in_center = (in_plane - 1) / 2
    return m, in_center - out_center, (int(out_plane[0]), int(out_plane[1]))


def rotate_window(image: np.ndarray, angle_deg: float, bounds) -> np.ndarray:
    """`rotate_image(image, angle_deg)[r0:r1, c0:c1]` without rotating the whole image.

    bounds: (r0, c0, r1, c1) int, px, inside the rotated frame (`rotated_shape`). Only the
    input window that the block samples (plus `WINDOW_MARGIN_PX`) is spline-prefiltered
    (float64, as scipy) and interpolated with the same affine map, cubic, fill 0. Equal to
    the whole-image rotation up to float64 rounding (≤ 1e-9 of the pixel values). Same dtype
    rule as `rotate_image`. Same as `rotate_window_at(image, angle_deg, (r0, c0), (r1 - r0, c1 - c0))`.

    Parameters
    ----------
    image : array_like, 2-D, [row, col]
        The unrotated image.
    angle_deg : float
        Rotation, degrees.
    bounds : sequence of 4 int
        (r0, c0, r1, c1), px, rotated-frame rows r0..r1−1 and cols c0..c1−1.

    Returns
    -------
    ndarray, (r1 − r0, c1 − c0)
        The block of the rotated image.

    Examples
    --------
    >>> a = np.zeros((20, 20)); a[5:9, 6:12] = 1.0
    >>> block = rotate_window(a, 30, (3, 4, 9, 12))
    >>> block.shape, bool(np.abs(block - rotate_image(a, 30)[3:9, 4:12]).max() < 1e-9)
    ((6, 8), True)
    """
    r0, c0, r1, c1 = (int(v) for v in bounds)
    return rotate_window_at(image, angle_deg, (r0, c0), (max(0, r1 - r0), max(0, c1 - c0)))


def rotate_window_at(image: np.ndarray, angle_deg: float, origin_rc, shape) -> np.ndarray:
    """A block of the rotated frame of `rotate_image(image, angle_deg)` on a grid with a
    fractional origin: out[i, j] = the rotated image sampled at rotated-frame *index*
    coordinates (origin_rc[0] + i, origin_rc[1] + j) (row, col; index coordinates: the centre
    of rotated pixel (r, c) is (r, c)).

    origin_rc: (row, col) float, px; shape: (rows, cols) int of the block. Integer origins give
    `rotate_image(...)[r0:r0 + rows, c0:c0 + cols]` (up to float64 rounding; points outside
    the rotated frame are sampled too, 0 outside the input). The input window the block
    samples plus `WINDOW_MARGIN_PX` is spline-prefiltered (float64), then cubic
    interpolation, fill 0 outside the input. Same dtype rule as `rotate_image`.

    Parameters
    ----------
    image : array_like, 2-D, [row, col]
        The unrotated image.
    angle_deg : float
        Rotation, degrees.
    origin_rc : sequence of 2 float
        Rotated-frame index coordinates (row, col), px, of out[0, 0].
    shape : sequence of 2 int
        (rows, cols) of the block; non-positive sizes give an empty block.

    Returns
    -------
    ndarray, shape `shape`
        The sampled block.

    Examples
    --------
    Rotation by 0° and a half-pixel column shift: far from the edges (fill 0 beyond them),
    a linear ramp is sampled exactly between its pixels.

    >>> ramp = np.tile(np.arange(40.0), (40, 1))
    >>> np.round(rotate_window_at(ramp, 0, (20.0, 20.5), (1, 4)), 6).tolist()
    [[20.5, 21.5, 22.5, 23.5]]
    """
    a = np.asarray(image)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    oh, ow = (max(0, int(v)) for v in shape)
    if oh == 0 or ow == 0:
        return np.zeros((oh, ow), a.dtype)
    r0, c0 = (float(v) for v in origin_rc)
    m, offset, _ = _rotation_transform(a.shape, angle_deg)
    r1, c1 = r0 + (oh - 1), c0 + (ow - 1)
    corners = np.array([[r0, c0], [r0, c1], [r1, c0], [r1, c1]], np.float64)
    src = corners @ m.T + offset
    h, w = a.shape
    lo = np.floor(src.min(axis=0)).astype(np.int64) - WINDOW_MARGIN_PX
    hi = np.ceil(src.max(axis=0)).astype(np.int64) + WINDOW_MARGIN_PX + 1
    wr0, wc0 = int(np.clip(lo[0], 0, h)), int(np.clip(lo[1], 0, w))
    wr1, wc1 = int(np.clip(hi[0], 0, h)), int(np.clip(hi[1], 0, w))
    if wr1 <= wr0 or wc1 <= wc0:  # the block samples nothing inside the input
        return np.zeros((oh, ow), a.dtype)
    coef = kernels.spline_coefficients(a[wr0:wr1, wc0:wc1])
    off = offset + m @ np.array([r0, c0], np.float64) - np.array([wr0, wc0], np.float64)
    return kernels.affine_cubic(coef, m, off, (oh, ow), dtype=a.dtype, cval=0.0)


def rotate_points(points_rc: np.ndarray, angle_deg: float, in_shape, out_shape) -> np.ndarray:
    """Map (row, col) points (pixel-corner coordinates, px) of the input frame (shape
    in_shape) into the frame of `rotate_image(image, angle_deg)` (shape out_shape).

    points_rc: array (..., 2). Returns float64 (..., 2) (row, col). Exact for any shape.

    Parameters
    ----------
    points_rc : array_like, (..., 2)
        (row, col) points of the input frame, pixel-corner coordinates, px.
    angle_deg : float
        Rotation, degrees, as given to `rotate_image`.
    in_shape, out_shape : sequence of int
        (rows, cols) of the input and of the rotated frame (`rotated_shape`).

    Returns
    -------
    ndarray, float64, (..., 2)
        (row, col) in the rotated frame, px.

    Examples
    --------
    The top-left corner of a 2×4 image turned by 90° is the bottom-left corner of the 4×2
    result (the content of pixel (0, 0) ends up in pixel (3, 0), see `rotate_image`).

    >>> (rotate_points([[0.0, 0.0], [0.5, 0.5]], 90, (2, 4), (4, 2)).round(6) + 0.0).tolist()
    [[4.0, 0.0], [3.5, 0.5]]
    """
    p = np.asarray(points_rc, dtype=np.float64)
    c_in = np.asarray(in_shape[:2], dtype=np.float64) / 2.0
    c_out = np.asarray(out_shape[:2], dtype=np.float64) / 2.0
    return (p - c_in) @ _rot(angle_deg).T + c_out


def unrotate_points(points_rc: np.ndarray, angle_deg: float, in_shape, out_shape) -> np.ndarray:
    """Inverse of `rotate_points`: map (row, col) points (pixel-corner coordinates, px) of the
    rotated frame (shape out_shape) back to the input frame (shape in_shape).

    Same argument order as `rotate_points`. Returns float64 (..., 2) (row, col).

    Parameters
    ----------
    points_rc : array_like, (..., 2)
        (row, col) points of the rotated frame, pixel-corner coordinates, px.
    angle_deg : float
        The rotation that made the rotated frame, degrees.
    in_shape, out_shape : sequence of int
        (rows, cols) of the input and of the rotated frame.

    Returns
    -------
    ndarray, float64, (..., 2)
        (row, col) in the input frame, px.

    Examples
    --------
    >>> (unrotate_points([[4.0, 0.0], [3.5, 0.5]], 90, (2, 4), (4, 2)).round(6) + 0.0).tolist()
    [[0.0, 0.0], [0.5, 0.5]]
    """
    p = np.asarray(points_rc, dtype=np.float64)
    c_in = np.asarray(in_shape[:2], dtype=np.float64) / 2.0
    c_out = np.asarray(out_shape[:2], dtype=np.float64) / 2.0
    return (p - c_out) @ _rot(angle_deg) + c_in


def _stack(polygons) -> tuple[np.ndarray, np.ndarray]:
    polys = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]
    polys = [p for p in polys if len(p)]
    if not polys:
        return np.empty((0, 2)), np.empty(0, np.int64)
    starts = np.cumsum([0] + [len(p) for p in polys[:-1]]).astype(np.int64)
    return np.concatenate(polys), starts


def bounding_boxes(polygons, angle_deg: float, in_shape=(0, 0), out_shape=(0, 0)) -> np.ndarray:
    """Axis-aligned bounding boxes of polygons ((row, col) vertices) after `rotate_points`.

    Returns float64 n×4 (row_min, col_min, row_max, col_max), px, in the rotated frame.
    With the default shapes (0, 0) the rotation is about the origin (only sizes matter).
    Empty polygons are skipped.

    Parameters
    ----------
    polygons : sequence of array_like, (K, 2)
        (row, col) vertices, px.
    angle_deg : float
        Rotation, degrees.
    in_shape, out_shape : sequence of int, optional
        Frames as in `rotate_points`.

    Returns
    -------
    ndarray, float64, (n, 4)
        (row_min, col_min, row_max, col_max) per non-empty polygon, px.

    Examples
    --------
    A 1×2 (rows × cols) rectangle turned by 90° about the origin becomes 2×1.

    >>> rect = [[0, 0], [0, 2], [1, 2], [1, 0]]
    >>> (bounding_boxes([rect], 90).round(6) + 0.0).tolist()
    [[-2.0, 0.0, 0.0, 1.0]]
    """
    pts, starts = _stack(polygons)
    if len(starts) == 0:
        return np.empty((0, 4))
    q = rotate_points(pts, angle_deg, in_shape, out_shape)
    lo = np.minimum.reduceat(q, starts, axis=0)
    hi = np.maximum.reduceat(q, starts, axis=0)
    return np.concatenate([lo, hi], axis=1)


def grid_angle(hulls) -> float:
    """Grid angle θ, degrees in [0, 90] (docs/ALGORITHM.md#lowmag-grid-angle): minimises the summed areas (px²) of the
    axis-aligned bounding boxes of all polygons ((row, col) vertices) rotated by θ as
    `rotate_points` rotates them; `bounded_brent` on (0, 90) (as the published tool's scipy
    minimize_scalar, method "bounded", default tolerance: the same θ) over the compiled cost `geometry_kernels.box_area_sum`. No polygons: 0.0.

    Parameters
    ----------
    hulls : sequence of array_like, (K, 2)
        Polygons' (row, col) vertices, px (e.g. `regions.region_hulls`).

    Returns
    -------
    float
        θ, degrees, in [0, 90].

    Examples
    --------
    Two squares tilted by 20° (`rotate_points` at 20°): rotating by 70° (≡ −20° modulo 90°)
    makes them axis-aligned.

    >>> sq = np.array([[0, 0], [0, 4], [4, 4], [4, 0]], float)
    >>> tilted = [rotate_points(p, 20, (0, 0), (0, 0)) for p in (sq, sq + 10)]
    >>> round(grid_angle(tilted), 3), grid_angle([])
    (70.0, 0.0)
    """
    pts, starts = _stack(hulls)
    if len(starts) == 0:
        return 0.0
    pts = np.ascontiguousarray(pts - pts.mean(axis=0))  # translation keeps sizes; small numbers
    return bounded_brent(lambda theta: kernels.box_area_sum(pts, starts, theta), 0.0, 90.0)


def bounded_brent(cost, lo: float, hi: float, xatol: float = XATOL, max_evaluations: int = 500) -> float:
    """x in [lo, hi] minimising the scalar function ``cost``: Brent's method (golden section
    search with parabolic interpolation; Brent 1973, ch. 5; Forsythe, Malcolm & Moler 1977,
    *fmin*), stopped when the bracket around the best point is within
    2·(SQRT_EPS·|x| + xatol/3) of it, or after ``max_evaluations`` calls of ``cost``.

    The same iterates as scipy.optimize.minimize_scalar(method="bounded") with its default
    options (tests/test_geometry.py checks equality), without importing scipy.optimize
    (≈ 0.15 s per process, docs/BENCH.md#startup).

    Parameters
    ----------
    cost : callable
        float → float, evaluated only inside (lo, hi).
    lo, hi : float
        The bracket, lo < hi (units of x).
    xatol : float, optional
        Absolute tolerance on x.
    max_evaluations : int, optional
        Most calls of ``cost``.

    Returns
    -------
    float
        The best x found.

    Examples
    --------
    >>> round(bounded_brent(lambda x: (x - 1.25) ** 2, 0.0, 90.0), 6)
    1.25
    >>> round(bounded_brent(lambda x: -x, 0.0, 2.0), 4)  # a minimum at the bound is approached
    2.0
    """
    a, b = float(lo), float(hi)
    # x: best point so far; w: second best; v: the previous w (names as Brent's)
    x = w = v = a + GOLDEN_FRACTION * (b - a)
    fx = fw = fv = cost(x)
    step = previous_step = 0.0
    evaluations = 1
    mid = 0.5 * (a + b)
    tol = SQRT_EPS * abs(x) + xatol / 3.0
    while abs(x - mid) > 2.0 * tol - 0.5 * (b - a):
        golden = True
        if abs(previous_step) > tol:
            # parabola through (v, fv), (w, fw), (x, fx): its vertex is x + p / q
            r = (x - w) * (fx - fv)
            q = (x - v) * (fx - fw)
            p = (x - v) * q - (x - w) * r
            q = 2.0 * (q - r)
            if q > 0.0:
                p = -p
            q = abs(q)
            older_step, previous_step = previous_step, step
            if abs(p) < abs(0.5 * q * older_step) and q * (a - x) < p < q * (b - x):
                golden = False
                step = p / q
                if (x + step) - a < 2.0 * tol or b - (x + step) < 2.0 * tol:
                    step = tol if mid >= x else -tol
        if golden:
            previous_step = (a - x) if x >= mid else (b - x)
            step = GOLDEN_FRACTION * previous_step
        u = x + (1.0 if step >= 0.0 else -1.0) * max(abs(step), tol)
        fu = cost(u)
        evaluations += 1
        if fu <= fx:
            if u >= x:
                a = x
            else:
                b = x
            v, fv, w, fw, x, fx = w, fw, x, fx, u, fu
        else:
            if u < x:
                a = u
            else:
                b = u
            if fu <= fw or w == x:
                v, fv, w, fw = w, fw, u, fu
            elif fu <= fv or v == x or v == w:
                v, fv = u, fu
        mid = 0.5 * (a + b)
        tol = SQRT_EPS * abs(x) + xatol / 3.0
        if evaluations >= max_evaluations:
            break
    return float(x)
