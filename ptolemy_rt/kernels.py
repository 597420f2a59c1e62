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
    """"aot" (compiled extension) or "jit" (numba at run time)."""
    _load()
    return _BACKEND


def _fn(name: str, dtype=None):
    impl = _load()
    if _BACKEND == "aot":
        return getattr(impl, name if dtype is None else f"{name}_{'f4' if dtype == np.float32 else 'f8'}")
    return getattr(impl, name)


def _image(px: np.ndarray) -> np.ndarray:
    a = np.asarray(px)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


def scan_pixels(px: np.ndarray) -> tuple[float, bool]:
    """(largest value, negatives counted as 0; whether every value is a whole number)."""
    a = _image(px)
    vmax, whole = _fn("scan_pixels", a.dtype)(a)
    return float(vmax), bool(whole)


def value_histogram(px: np.ndarray, scale: float, nbins: int) -> np.ndarray:
    """int64 counts of trunc(max(x, 0) · scale) capped at nbins − 1 (one pass)."""
    a = _image(px)
    return _fn("value_histogram", a.dtype)(a, float(scale), int(nbins))


def lut_mask(px: np.ndarray, scale: float, lut: np.ndarray) -> np.ndarray:
    """bool [row, col]: lut[trunc(max(x, 0) · scale)]."""
    a = _image(px)
    return _fn("lut_mask", a.dtype)(a, float(scale), np.ascontiguousarray(lut, dtype=np.bool_))


def poisson_em(values, counts, max_iter: int, tol: float):
    """(pi_a, mu_a, mu_b, iterations, loglik) of the histogram EM (see `mixture_kernels.poisson_em`)."""
    pi, ma, mb, it, ll = _fn("poisson_em")(np.ascontiguousarray(values, np.float64),
                                           np.ascontiguousarray(counts, np.float64), int(max_iter), float(tol))
    return float(pi), float(ma), float(mb), int(it), float(ll)


def label_components(grown: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(labels int32 [row, col], n): 8-connected components of grown, on mask pixels only."""
    labels, n = _fn("label_components")(np.ascontiguousarray(grown, np.bool_),
                                        np.ascontiguousarray(mask, np.bool_))
    return labels, int(n)


def row_extremes(labels: np.ndarray, n: int):
    """(rows, cmin, cmax int32, starts int64) per (row, label), grouped by label."""
    return _fn("row_extremes")(np.ascontiguousarray(labels, np.int32), int(n))


def hulls_of_rows(rows, cmin, cmax, starts):
    """(vertices float64 K×2 (row, col), offsets int64 (n + 1)) of all labels' hulls."""
    return _fn("hulls_of_rows")(np.ascontiguousarray(rows, np.int32), np.ascontiguousarray(cmin, np.int32),
                                np.ascontiguousarray(cmax, np.int32), np.ascontiguousarray(starts, np.int64))


def box_area_sum(pts: np.ndarray, starts: np.ndarray, theta_deg: float) -> float:
    """Σ bounding-box areas (px²) of the polygons rotated by theta_deg."""
    return float(_fn("box_area_sum")(np.ascontiguousarray(pts, np.float64),
                                     np.ascontiguousarray(starts, np.int64), float(theta_deg)))


def lattice_points(c0, c1, d0, d1, h, w, margin) -> np.ndarray:
    """n×2 float64 (row, col) lattice points within the image plus margin (`lattice_kernels.lattice_points`)."""
    return _fn("lattice_points")(float(c0), float(c1), float(d0), float(d1), float(h), float(w), float(margin))


def lattice_points2(c0, c1, u0, u1, v0, v1, h, w, margin) -> np.ndarray:
    """n×2 float64 (row, col) points c + a·u + b·v within the image plus margin (`lattice_kernels.lattice_points2`)."""
    return _fn("lattice_points2")(*(float(v) for v in (c0, c1, u0, u1, v0, v1, h, w, margin)))


def shortest_vector2(u0, u1, v0, v1) -> float:
    """Squared length (px²) of the shortest vector of the lattice spanned by u and v."""
    return float(_fn("shortest_vector2")(float(u0), float(u1), float(v0), float(v1)))


def score_candidates(mask, centroids, neighbours, margin: float, box: int, oblique: bool = False,
                     min_len2: float = 0.0, max_len2: float = float("inf")):
    """(costs n×k, counts n×k, oblique costs n×k(k−1)/2) int64 of every lattice candidate
    (`lattice_kernels.score_candidates`; oblique basis vectors limited to squared lengths
    [min_len2, max_len2] px²)."""
    m = np.asarray(mask)
    m = np.ascontiguousarray(m.view(np.uint8) if m.dtype == np.bool_ else m, np.uint8)
    return _fn("score_candidates")(m, np.ascontiguousarray(centroids, np.float64),
                                   np.ascontiguousarray(neighbours, np.int64), float(margin), int(box),
                                   bool(oblique), float(min_len2), float(max_len2))
