"""The compiled hot loops, loaded once per process, and the wrappers the callers use.

The kernels are written for numba in one module per stage, beside their callers:
`mixture_kernels` (pixel scan, histogram, mixture EM, lookup mask), `regions_kernels`
(labelling, row extremes, hulls), `geometry_kernels` (grid-angle cost) and `lattice_kernels`
(lattice points and candidate costs); the constants they share with Python code are in
`kernel_constants` (no numba). Each kernel module lists its exports in `EXPORTS`.

Backend: the ahead-of-time extension `ptolemy_rt._kernels_aot` (built by `make install`,
`python -m ptolemy_rt.aot`) when it exists, is intact (sha256 written at build time) and
was built from the kernel sources beside it (`source_digest`); otherwise the kernel modules
jitted by numba with its on-disk cache (the first run compiles, about 5-10 s; later runs
load the cache). `PTOLEMY_KERNELS=jit` forces the jitted backend. `backend()` says which one
is in use ("aot" or "jit").

The wrappers below make the arrays what the kernels' signatures expect (C-contiguous, the
dtypes of the `EXPORTS` tables), so both backends take the same arguments and give
identical results. Coordinates are as in the kernel modules: [row, col] arrays, (row, col)
points.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import types
from pathlib import Path

import numpy as np

_PACKAGE = Path(__file__).resolve().parent
#: The kernel modules (ptolemy_rt.<name>), in the order the extension exports them.
KERNEL_MODULES = ("mixture_kernels", "regions_kernels", "geometry_kernels", "lattice_kernels")
#: The files the compiled code is made from: the kernel modules and their constants.
SOURCES = tuple(f"{m}.py" for m in KERNEL_MODULES) + ("kernel_constants.py",)
_IMPL = None
_BACKEND = None


def compiled(fn):
    """Decorator of every kernel: ``numba.njit(cache=True, nogil=True)`` (imports numba).

    Parameters
    ----------
    fn : function
        The kernel, written in numba's subset of Python.

    Returns
    -------
    numba dispatcher
        Jitted on first call, cached on disk; ``.py_func`` is `fn` (what `aot` compiles).

    Examples
    --------
    Every kernel keeps its plain Python function, runnable without compiling:

    >>> from ptolemy_rt.lattice_kernels import shortest_vector2
    >>> shortest_vector2.py_func(3.0, 0.0, 4.0, 2.0)
    5.0
    """
    import numba

    return numba.njit(cache=True, nogil=True)(fn)


def source_digest() -> int:
    """Digest of the kernel sources (`SOURCES`), compiled into the extension at build time.

    Returns
    -------
    int
        First 60 bits of the sha256 over each file's name and bytes, in `SOURCES` order, as a
        non-negative int (fits the extension's int64).

    Examples
    --------
    >>> d = source_digest()
    >>> 0 <= d < 2 ** 60, d == source_digest()
    (True, True)
    """
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (_PACKAGE / name).read_bytes() + b"\0")
    return int(h.hexdigest()[:15], 16)


def kernel_modules() -> list:
    """The kernel modules, imported (this imports numba).

    Returns
    -------
    list of module
        ptolemy_rt.<name> for each name of `KERNEL_MODULES`.

    Examples
    --------
    >>> [m.__name__ for m in kernel_modules()][-1]
    'ptolemy_rt.lattice_kernels'
    """
    return [importlib.import_module(f"{__package__}.{m}") for m in KERNEL_MODULES]


def exports() -> dict:
    """Every exported kernel of every kernel module (imports numba).

    Returns
    -------
    dict
        Exported name -> (module, function name in it, numba signature), in module order.

    Raises
    ------
    ValueError
        When two modules export the same name or define the same kernel name (the jit
        backend is one namespace, like the extension).

    Examples
    --------
    >>> ex = exports()
    >>> ex["shortest_vector2"][1:], list(ex)[:2]
    (('shortest_vector2', 'f8(f8, f8, f8, f8)'), ['scan_pixels_f4', 'scan_pixels_f8'])
    """
    out = {}
    owner = {}
    for mod in kernel_modules():
        for name, (fname, sig) in mod.EXPORTS.items():
            if name in out or owner.get(fname, mod) is not mod:
                raise ValueError(f"kernel {name!r} ({fname}) exported twice")
            out[name] = (mod, fname, sig)
            owner[fname] = mod
    return out


def jit_kernels() -> types.SimpleNamespace:
    """The jit backend: every exported kernel, jitted (imports numba; compiles on first call).

    Returns
    -------
    types.SimpleNamespace
        One attribute per kernel function, named as in its module (``scan_pixels``, not the
        extension's per-dtype ``scan_pixels_f4``).

    Examples
    --------
    >>> ns = jit_kernels()
    >>> hasattr(ns, "scan_pixels"), hasattr(ns, "scan_pixels_f4")
    (True, False)
    """
    return types.SimpleNamespace(**{fname: getattr(mod, fname) for mod, fname, _ in exports().values()})


def _extension_usable() -> bool:
    """Whether the built extension exists, its bytes match the sha256 written beside it at
    build time (loading a truncated shared library kills the process with SIGBUS), and the
    numpy it was built against can be loaded by this one (the sidecar's second line,
    "numpy X.Y.Z": an extension built against numpy 1.x does not load under numpy 2, and
    numpy says so on stderr at length; one built against numpy 2 loads under 1.x)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("ptolemy_rt._kernels_aot")
        if spec is None or not spec.origin:
            return False
        so = Path(spec.origin)
        lines = (so.parent / "_kernels_aot.sha256").read_text().split("\n")
        if hashlib.sha256(so.read_bytes()).hexdigest() != lines[0].strip():
            return False
        built = next((ln.split()[1] for ln in lines[1:] if ln.startswith("numpy ")), None)
        return built is None or int(built.split(".")[0]) >= 2 or int(np.__version__.split(".")[0]) < 2
    except (OSError, ValueError, IndexError, ImportError):
        return False


def _load():
    global _IMPL, _BACKEND
    if _IMPL is not None:
        return _IMPL
    if os.environ.get("PTOLEMY_KERNELS", "").lower() != "jit" and _extension_usable():
        try:
            aot = importlib.import_module("ptolemy_rt._kernels_aot")
            if int(aot.source_digest()) == source_digest():
                _IMPL, _BACKEND = aot, "aot"
                return _IMPL
        except ImportError:
            pass
    _IMPL, _BACKEND = jit_kernels(), "jit"
    return _IMPL


def backend() -> str:
    """Which backend runs the kernels in this process (loads it on first call).

    Returns
    -------
    str
        "aot" (the compiled extension) or "jit" (the kernel modules, numba at run time).

    Examples
    --------
    >>> backend() in ("aot", "jit")
    True
    """
    _load()
    return _BACKEND


def _fn(name: str, dtype=None):
    """The backend's kernel `name` (the extension's per-dtype export for image kernels)."""
    impl = _load()
    if _BACKEND == "aot":
        return getattr(impl, name if dtype is None else f"{name}_{'f4' if dtype == np.float32 else 'f8'}")
    return getattr(impl, name)


def _image(px: np.ndarray) -> np.ndarray:
    """px as a C-contiguous float32 or float64 array (other dtypes → float64)."""
    a = np.asarray(px)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


# --- wrappers: the callers' API. Semantics, units and examples are the kernels' own
# (`mixture_kernels`, `regions_kernels`, `geometry_kernels`, `lattice_kernels`); these
# accept any array-like and convert it to the signature's dtype and layout. --------------

def scan_pixels(px: np.ndarray) -> tuple[float, bool]:
    """Largest value and integrality of an image (`mixture_kernels.scan_pixels`).

    Parameters
    ----------
    px : array_like, [row, col]
        The image (float32 and float64 used as they are, other dtypes as float64).

    Returns
    -------
    vmax : float
        Largest value, negatives counted as 0.
    whole : bool
        Whether every value is a whole number.

    Examples
    --------
    >>> scan_pixels(np.array([[3, -1], [7, 2]], np.int16))
    (7.0, True)
    """
    a = _image(px)
    vmax, whole = _fn("scan_pixels", a.dtype)(a)
    return float(vmax), bool(whole)


def value_histogram(px: np.ndarray, scale: float, nbins: int) -> np.ndarray:
    """Histogram of trunc(max(x, 0) · scale), capped at nbins − 1 (`mixture_kernels.value_histogram`).

    Parameters
    ----------
    px : array_like, [row, col]
        The image.
    scale : float
        Value → bin factor.
    nbins : int
        Number of bins.

    Returns
    -------
    ndarray, int64, (nbins,)
        Pixel count per bin.

    Examples
    --------
    −3 counts as 0, 9 falls in the last bin.

    >>> value_histogram(np.array([[0.5, 1.2], [-3.0, 9.0]]), 1.0, 4).tolist()
    [2, 1, 0, 1]
    """
    a = _image(px)
    return _fn("value_histogram", a.dtype)(a, float(scale), int(nbins))


def lut_mask(px: np.ndarray, scale: float, lut: np.ndarray) -> np.ndarray:
    """Mask lut[trunc(max(x, 0) · scale)] of an image (`mixture_kernels.lut_mask`).

    Parameters
    ----------
    px : array_like, [row, col]
        The image.
    scale : float
        Value → bin factor (bins capped at len(lut) − 1).
    lut : array_like, bool, (nbins,)
        Per-bin answer.

    Returns
    -------
    ndarray, bool, [row, col]
        px's shape.

    Examples
    --------
    Values from 2 up are on (9 falls in the last bin).

    >>> lut_mask(np.array([[0.5, 1.2], [2.7, 9.0]]), 1.0, [False, False, True]).tolist()
    [[False, False], [True, True]]
    """
    a = _image(px)
    return _fn("lut_mask", a.dtype)(a, float(scale), np.ascontiguousarray(lut, dtype=np.bool_))


def poisson_em(values, counts, max_iter: int, tol: float):
    """Two-component Poisson mixture EM on a histogram (`mixture_kernels.poisson_em`).

    Parameters
    ----------
    values, counts : array_like, (m,)
        Distinct values (ascending) and their pixel counts.
    max_iter : int
        Iteration limit.
    tol : float
        Log-likelihood gain (nats) below which EM stops.

    Returns
    -------
    tuple of (float, float, float, int, float)
        pi_a, mu_a, mu_b, iterations, log-likelihood (nats, without −Σ log k!).

    Examples
    --------
    40 pixels around 3 and 20 around 21:

    >>> pi_a, mu_a, mu_b, it, ll = poisson_em([2, 3, 4, 20, 21, 22], [10, 20, 10, 5, 10, 5], 100, 1e-3)
    >>> round(pi_a, 3), round(mu_a, 3), round(mu_b, 3)
    (0.333, 21.0, 3.0)
    """
    pi, ma, mb, it, ll = _fn("poisson_em")(np.ascontiguousarray(values, np.float64),
                                           np.ascontiguousarray(counts, np.float64), int(max_iter), float(tol))
    return float(pi), float(ma), float(mb), int(it), float(ll)


def label_components(grown: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of grown, written on mask pixels only
    (`regions_kernels.label_components`; numbered as scipy.ndimage.label).

    Parameters
    ----------
    grown, mask : array_like, bool, [row, col]
        Connectivity image and the pixels that receive labels (same shape).

    Returns
    -------
    labels : ndarray, int32, [row, col]
        0 off mask, else the component number 1..n.
    n : int
        Number of components.

    Examples
    --------
    >>> m = np.array([[1, 0, 1], [0, 0, 1]], bool)
    >>> labels, n = label_components(m, m)
    >>> n, labels.tolist()
    (2, [[1, 0, 2], [0, 0, 2]])
    """
    labels, n = _fn("label_components")(np.ascontiguousarray(grown, np.bool_),
                                        np.ascontiguousarray(mask, np.bool_))
    return labels, int(n)


def dilate_box(mask: np.ndarray, back: int, ahead: int) -> np.ndarray:
    """Box dilation of a bool [row, col] mask (`regions_kernels.dilate_box`): out[r, c] is True
    when a mask pixel lies within rows r − back … r + ahead and columns c − back … c + ahead.

    Examples
    --------
    >>> dilate_box(np.eye(3, dtype=bool), 0, 1).astype(int).tolist()
    [[1, 1, 0], [1, 1, 1], [0, 1, 1]]
    """
    return _fn("dilate_box")(np.ascontiguousarray(mask, np.bool_), max(0, int(back)), max(0, int(ahead)))


def label_runs(grown: np.ndarray):
    """8-connected components of grown as row runs (`regions_kernels.label_runs`; the
    numbering of `label_components`, no label image).

    Parameters
    ----------
    grown : array_like, bool, [row, col]
        Connectivity image.

    Returns
    -------
    rr, rs, re, lab : ndarray, int32, (m,)
        Row, first and last column (inclusive) and component of each run, row-major.
    n : int
        Number of components.

    Examples
    --------
    >>> [a.tolist() if hasattr(a, "tolist") else a for a in label_runs(np.array([[1, 0, 1], [0, 0, 1]], bool))]
    [[0, 0, 1], [0, 2, 2], [0, 2, 2], [1, 2, 2], 2]
    """
    rr, rs, re, lab, n = _fn("label_runs")(np.ascontiguousarray(grown, np.bool_))
    return rr, rs, re, lab, int(n)


def paint_runs(rr, rs, re, lab, mask: np.ndarray, r0: int) -> np.ndarray:
    """int32 labels of the rows r0 .. r0 + len(mask) − 1 from runs, on mask pixels only
    (`regions_kernels.paint_runs`).

    Parameters
    ----------
    rr, rs, re, lab : array_like, int32, (m,)
        Runs (`label_runs`); runs outside those rows are skipped.
    mask : array_like, bool, [row, col]
        The rows' mask.
    r0 : int
        Image row of mask's first row.

    Returns
    -------
    ndarray, int32, mask's shape

    Examples
    --------
    >>> m = np.array([[1, 0, 1], [0, 0, 1]], bool)
    >>> paint_runs(*label_runs(m)[:4], m[1:], 1).tolist()
    [[0, 0, 2]]
    """
    i4 = np.int32
    return _fn("paint_runs")(np.ascontiguousarray(rr, i4), np.ascontiguousarray(rs, i4),
                             np.ascontiguousarray(re, i4), np.ascontiguousarray(lab, i4),
                             np.ascontiguousarray(mask, np.bool_), int(r0))


def run_row_extremes(rr, rs, re, lab, mask: np.ndarray, n: int):
    """`row_extremes` of the label image runs paint on mask (`regions_kernels.run_row_extremes`).

    Parameters
    ----------
    rr, rs, re, lab : array_like, int32, (m,)
        All runs of the image (`label_runs`).
    mask : array_like, bool, [row, col]
        The image's mask.
    n : int
        Number of components.

    Returns
    -------
    tuple of ndarray
        rows, cmin, cmax, starts, as `row_extremes`.

    Examples
    --------
    >>> m = np.array([[1, 1, 0], [0, 1, 1], [0, 1, 0]], bool)
    >>> [a.tolist() for a in run_row_extremes(*label_runs(m)[:4], m, 1)]
    [[0, 1, 2], [0, 1, 1], [1, 2, 1], [0, 0, 3]]
    """
    i4 = np.int32
    return _fn("run_row_extremes")(np.ascontiguousarray(rr, i4), np.ascontiguousarray(rs, i4),
                                   np.ascontiguousarray(re, i4), np.ascontiguousarray(lab, i4),
                                   np.ascontiguousarray(mask, np.bool_), int(n))


def row_extremes(labels: np.ndarray, n: int):
    """First and last column of each (row, label) pair (`regions_kernels.row_extremes`).

    Parameters
    ----------
    labels : array_like, int, [row, col]
        Label image, 0 = none, labels 1..n.
    n : int
        Largest label.

    Returns
    -------
    tuple of ndarray
        rows, cmin, cmax (int32, one entry per pair, grouped by label, rows ascending) and
        starts (int64, n + 2): label i's entries are [starts[i], starts[i + 1]).

    Examples
    --------
    >>> lab = np.array([[1, 1, 0], [0, 2, 2], [0, 2, 0]])
    >>> [a.tolist() for a in row_extremes(lab, 2)]
    [[0, 1, 2], [0, 1, 1], [1, 2, 1], [0, 0, 1, 3]]
    """
    return _fn("row_extremes")(np.ascontiguousarray(labels, np.int32), int(n))


def hulls_of_rows(rows, cmin, cmax, starts):
    """Convex hulls of all labels' pixel corners (`regions_kernels.hulls_of_rows`).

    Parameters
    ----------
    rows, cmin, cmax, starts : array_like
        As `row_extremes` returns them.

    Returns
    -------
    vertices : ndarray, float64, (K, 2)
        (row, col) pixel-corner coordinates, px.
    offsets : ndarray, int64, (n + 1,)
        Label i's hull is vertices[offsets[i − 1]:offsets[i]].

    Examples
    --------
    Label 1: pixels (0, 0) and (0, 1), a 1×2 rectangle of corners.

    >>> lab = np.array([[1, 1, 0], [0, 2, 2], [0, 2, 0]])
    >>> verts, offsets = hulls_of_rows(*row_extremes(lab, 2))
    >>> verts[:offsets[1]].tolist(), offsets.tolist()
    ([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0], [0.0, 2.0]], [0, 4, 9])
    """
    return _fn("hulls_of_rows")(np.ascontiguousarray(rows, np.int32), np.ascontiguousarray(cmin, np.int32),
                                np.ascontiguousarray(cmax, np.int32), np.ascontiguousarray(starts, np.int64))


def box_area_sum(pts: np.ndarray, starts: np.ndarray, theta_deg: float) -> float:
    """Summed bounding-box areas of polygons rotated by theta_deg (`geometry_kernels.box_area_sum`).

    Parameters
    ----------
    pts : array_like, (K, 2)
        All polygons' (row, col) vertices stacked, px.
    starts : array_like, int, (n,)
        Each polygon's first vertex.
    theta_deg : float
        Rotation, degrees.

    Returns
    -------
    float
        px².

    Examples
    --------
    A 2×2 square: box area 4 px² unrotated, 8 px² at 45°.

    >>> sq = np.array([[0, 0], [0, 2], [2, 2], [2, 0]], float)
    >>> box_area_sum(sq, [0], 0.0), round(box_area_sum(sq, [0], 45.0), 6)
    (4.0, 8.0)
    """
    return float(_fn("box_area_sum")(np.ascontiguousarray(pts, np.float64),
                                     np.ascontiguousarray(starts, np.int64), float(theta_deg)))


def spline_coefficients(image: np.ndarray) -> np.ndarray:
    """Cubic B-spline coefficients of a 2-D [row, col] image, mirror boundary, as a new float64
    array (`geometry_kernels.spline_prefilter`; = scipy.ndimage.spline_filter(image, 3,
    mode="constant") to float64 rounding).

    Parameters
    ----------
    image : array_like, 2-D, [row, col]

    Returns
    -------
    ndarray, float64, the image's shape

    Examples
    --------
    >>> spline_coefficients(np.full((3, 4), 2.0)).round(12).tolist()[0]
    [2.0, 2.0, 2.0, 2.0]
    """
    coef = np.array(image, dtype=np.float64, order="C", copy=True)
    if coef.ndim != 2:
        raise ValueError(f"spline_coefficients needs a 2-D image, got {coef.ndim}-D")
    if coef.size:
        _fn("spline_prefilter")(coef)
    return coef


def affine_cubic(coef: np.ndarray, matrix, offset, shape, dtype=np.float64, cval: float = 0.0) -> np.ndarray:
    """Cubic interpolation of spline coefficients under an affine map
    (`geometry_kernels.affine_cubic`; = scipy.ndimage.affine_transform(coef, matrix, offset,
    shape, order=3, mode="constant", cval=cval, prefilter=False) to float64 rounding).

    Parameters
    ----------
    coef : array_like, float64, (H, W)
        `spline_coefficients` of the image.
    matrix : array_like, (2, 2); offset : array_like, (2,)
        Output index (i, j) ↦ input index coordinates matrix @ (i, j) + offset, (row, col), px.
    shape : (int, int)
        Output (rows, cols).
    dtype : float32 or float64
        Output dtype (samples rounded to it).
    cval : float
        Value outside the input's [0, H−1] × [0, W−1].

    Returns
    -------
    ndarray, `dtype`, `shape`

    Examples
    --------
    Half a pixel along the columns of a constant image: the last output column lies beyond
    the input's last column (7.5 > 7), so it is `cval`.

    >>> c = spline_coefficients(np.full((3, 8), 2.0))
    >>> affine_cubic(c, np.eye(2), (1.0, 4.5), (1, 4), cval=-1.0).round(9).tolist()
    [[2.0, 2.0, 2.0, -1.0]]
    """
    m = np.asarray(matrix, dtype=np.float64)
    off = np.asarray(offset, dtype=np.float64)
    dt = np.float32 if np.dtype(dtype) == np.float32 else np.float64
    out = np.empty((int(shape[0]), int(shape[1])), dt)
    c = np.ascontiguousarray(coef, np.float64)
    if out.size == 0:
        return out
    if c.size == 0:
        out.fill(cval)
        return out
    _fn("affine_cubic", dt)(c, float(m[0, 0]), float(m[0, 1]), float(m[1, 0]), float(m[1, 1]),
                            float(off[0]), float(off[1]), out, float(cval))
    return out


def lattice_points(c0, c1, d0, d1, h, w, margin) -> np.ndarray:
    """Square-lattice points c + a·d + b·d⊥ within the image plus margin
    (`lattice_kernels.lattice_points`).

    Parameters
    ----------
    c0, c1, d0, d1 : float
        Origin c and lattice vector d, (row, col), px.
    h, w, margin : float
        Image rows, cols and margin, px.

    Returns
    -------
    ndarray, float64, (n, 2)
        (row, col) points, a-major then b, ascending.

    Examples
    --------
    >>> lattice_points(0, 0, 1, 0, 1, 1, 0).tolist()
    [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    """
    return _fn("lattice_points")(float(c0), float(c1), float(d0), float(d1), float(h), float(w), float(margin))


def lattice_points2(c0, c1, u0, u1, v0, v1, h, w, margin) -> np.ndarray:
    """Lattice points c + a·u + b·v within the image plus margin (`lattice_kernels.lattice_points2`).

    Parameters
    ----------
    c0, c1, u0, u1, v0, v1 : float
        Origin c and independent basis vectors u, v, (row, col), px.
    h, w, margin : float
        Image rows, cols and margin, px.

    Returns
    -------
    ndarray, float64, (n, 2)
        (row, col) points, a-major then b, ascending.

    Examples
    --------
    u = (2, 0), v = (1, 2) in a 2×2 image without margin:

    >>> lattice_points2(0, 0, 2, 0, 1, 2, 2, 2, 0).tolist()
    [[0.0, 0.0], [1.0, 2.0], [2.0, 0.0]]
    """
    return _fn("lattice_points2")(*(float(v) for v in (c0, c1, u0, u1, v0, v1, h, w, margin)))


def shortest_vector2(u0, u1, v0, v1) -> float:
    """Squared length of the shortest vector of the lattice spanned by u and v
    (`lattice_kernels.shortest_vector2`).

    Parameters
    ----------
    u0, u1, v0, v1 : float
        Basis vectors, (row, col), px.

    Returns
    -------
    float
        px².

    Examples
    --------
    >>> shortest_vector2(3, 0, 4, 2)
    5.0
    """
    return float(_fn("shortest_vector2")(float(u0), float(u1), float(v0), float(v1)))


def score_candidates(mask, centroids, neighbours, margin: float, box: int, oblique: bool = False,
                     min_len2: float = 0.0, max_len2: float = float("inf"), published: bool = False):
    """Costs of every candidate lattice (`lattice_kernels.score_candidates`).

    Parameters
    ----------
    mask : array_like, bool or uint8, [row, col]
        The hole mask.
    centroids : array_like, (n, 2)
        (row, col) centroids, px.
    neighbours : array_like, int, (n, k)
        Nearest other centroids, nearest first, −1 = none.
    margin : float
        px beyond the image where lattice points still count.
    box : int
        Box side, px.
    oblique : bool
        Also score oblique candidates.
    min_len2, max_len2 : float
        Squared-length range of oblique basis vectors, px².
    published : bool
        The published tool's box rule (truncated coordinates, Python slice semantics;
        docs/ALGORITHM.md#published-box-rule) instead of rounded, clipped boxes.

    Returns
    -------
    tuple of ndarray, int64
        Square costs (n, k), their point counts (n, k), oblique costs (n, k(k − 1)/2);
        −1 where there is no candidate (count −1: whole image covered, not enumerated).

    Examples
    --------
    Four 10×10 holes on a 60 px grid: each square candidate has 36 points in the image
    plus margin and costs 4 × 800 (box pixels outside the holes); no oblique pass.

    >>> m = np.zeros((120, 120), bool)
    >>> for r, c in [(20, 20), (20, 80), (80, 20), (80, 80)]:
    ...     m[r - 5:r + 5, c - 5:c + 5] = True
    >>> cen = [[20, 20], [20, 80], [80, 20], [80, 80]]
    >>> nb = [[1, 2], [0, 3], [0, 3], [1, 2]]
    >>> costs, counts, ob = score_candidates(m, cen, nb, 100.0, 30)
    >>> costs.tolist(), counts[0].tolist(), ob.tolist()
    ([[3200, 3200], [3200, 3200], [3200, 3200], [3200, 3200]], [36, 36], [[-1], [-1], [-1], [-1]])

    Origins 7.5 px off the holes: the published rule truncates and wraps boxes around.

    >>> [int(score_candidates(m, np.add(cen, 7.5), nb, 100.0, 30, published=p)[0][0, 0]) for p in (False, True)]
    [3200, 3444]
    """
    m = np.asarray(mask)
    if m.size >= 2 ** 31 - 1:  # the kernel's summed-area table is int32
        raise ValueError(f"mask of {m.size} px is too large for the lattice kernels (< 2**31 px)")
    m = np.ascontiguousarray(m.view(np.uint8) if m.dtype == np.bool_ else m, np.uint8)
    return _fn("score_candidates")(m, np.ascontiguousarray(centroids, np.float64),
                                   np.ascontiguousarray(neighbours, np.int64), float(margin), int(box),
                                   bool(oblique), float(min_len2), float(max_len2), bool(published))
