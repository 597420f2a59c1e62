"""Compiled kernels of the low-mag mixture (`ptolemy_rt.mixture`): the pixel scan, the value
histogram, the Poisson-mixture EM on that histogram and the lookup-table mask.

Written for numba (`kernels.compiled`); callers use the wrappers in `ptolemy_rt.kernels`,
which load the ahead-of-time build of this module or, failing that, jit it. `EXPORTS` lists
the exported kernels with their signatures (images as float32 or float64, one export each).
Images are [row, col] arrays.
"""
from __future__ import annotations

import math

import numpy as np

from .kernels import compiled


@compiled
def scan_pixels(px):
    """Largest value and integrality of an image, in one pass.

    Parameters
    ----------
    px : ndarray, float32 or float64, [row, col]
        The image (any units).

    Returns
    -------
    vmax : float
        Largest value, negatives counted as 0 (so 0.0 for an all-negative image).
    whole : bool
        Whether every value is a whole number.

    Examples
    --------
    >>> scan_pixels(np.array([[1.0, -3.0], [2.5, 0.0]]))
    (2.5, False)
    """
    h, w = px.shape
    vmax = 0.0
    whole = True
    for r in range(h):
        for c in range(w):
            v = np.float64(px[r, c])
            if v > vmax:
                vmax = v
            if whole and np.floor(v) != v:
                whole = False
    return vmax, whole


@compiled
def _bin(v, scale, top):
    """trunc(min(max(v · scale, 0), top)) with v · scale in float64."""
    k = np.float64(v) * scale
    if k < 0.0:
        k = 0.0
    if k > top:
        k = top
    return np.int64(k)


@compiled
def value_histogram(px, scale, nbins):
    """Histogram of the scaled, truncated pixel values, in one pass.

    Parameters
    ----------
    px : ndarray, float32 or float64, [row, col]
        The image.
    scale : float
        Value → bin factor: pixel x goes to bin trunc(max(x, 0) · scale) (product in float64).
    nbins : int
        Number of bins; larger bins are capped at nbins − 1.

    Returns
    -------
    ndarray, int64, (nbins,)
        Pixel count per bin.

    Examples
    --------
    >>> value_histogram(np.array([[0.2, 1.4], [-5.0, 9.0]]), 2.0, 4)
    array([2, 0, 1, 1])
    """
    hist = np.zeros(nbins, np.int64)
    top = np.float64(nbins - 1)
    h, w = px.shape
    for r in range(h):
        for c in range(w):
            hist[_bin(px[r, c], scale, top)] += 1
    return hist


@compiled
def _log_joint(k, pi, mu):
    # log(pi) + log Poisson(k | mu) without the −log k! term (cancels in posteriors and gains)
    return math.log(pi) + k * math.log(mu) - mu


@compiled
def poisson_em(values, counts, max_iter, tol):
    """EM for a two-component Poisson mixture on a histogram.

    Deterministic start: the responsibility of component a is 1 for values above the mean
    value, else 0. Each iteration is an M-step then an E-step; EM stops when the
    log-likelihood gains less than tol or after max_iter iterations.

    Parameters
    ----------
    values : ndarray, float64, (m,)
        The distinct (binned) values, ascending.
    counts : ndarray, float64, (m,)
        How many pixels have each value.
    max_iter : int
        Iteration limit.
    tol : float
        Log-likelihood gain (nats, summed over pixels) below which EM stops.

    Returns
    -------
    pi_a : float
        Weight of component a.
    mu_a, mu_b : float
        Means of components a and b (bin units, ≥ 1e-12).
    iterations : int
        Iterations run.
    loglik : float
        Final log-likelihood, nats, without the −Σ log k! term.

    Examples
    --------
    >>> pi, mu_a, mu_b, it, ll = poisson_em(np.array([2.0, 3.0, 20.0, 21.0]),
    ...                                     np.array([10.0, 10.0, 5.0, 5.0]), 100, 1e-3)
    >>> round(pi, 3), round(mu_a, 2), round(mu_b, 2)
    (0.333, 20.5, 2.5)
    """
    m = values.shape[0]
    n = 0.0
    sv = 0.0
    for i in range(m):
        n += counts[i]
        sv += counts[i] * values[i]
    mean = sv / n
    resp = np.empty(m, np.float64)
    for i in range(m):
        resp[i] = 1.0 if values[i] > mean else 0.0
    tiny = 1e-300
    pi = 0.5
    mu_a = 1.0
    mu_b = 1.0
    prev = -np.inf
    ll = -np.inf
    it = 0
    while it < max_iter:
        wa = 0.0
        sa = 0.0
        wb = 0.0
        sb = 0.0
        for i in range(m):  # M-step
            ca = counts[i] * resp[i]
            cb = counts[i] * (1.0 - resp[i])
            wa += ca
            sa += ca * values[i]
            wb += cb
            sb += cb * values[i]
        pi = min(max(wa / n, tiny), 1.0 - 1e-16)
        mu_a = max(sa / wa, 1e-12) if wa > 0 else 1e-12
        mu_b = max(sb / wb, 1e-12) if wb > 0 else 1e-12
        ll = 0.0
        for i in range(m):  # E-step and log-likelihood
            la = _log_joint(values[i], pi, mu_a)
            lb = _log_joint(values[i], 1.0 - pi, mu_b)
            hi = max(la, lb)
            lse = hi + math.log(math.exp(la - hi) + math.exp(lb - hi))
            resp[i] = math.exp(la - lse)
            ll += counts[i] * lse
        it += 1
        if ll - prev < tol:
            break
        prev = ll
    return pi, mu_a, mu_b, it, ll


@compiled
def lut_mask(px, scale, lut):
    """Mask of the pixels whose bin is set in a lookup table.

    Parameters
    ----------
    px : ndarray, float32 or float64, [row, col]
        The image.
    scale : float
        Value → bin factor, as in `value_histogram` (bins capped at len(lut) − 1).
    lut : ndarray, bool, (nbins,)
        Per-bin answer.

    Returns
    -------
    ndarray, bool, [row, col]
        mask[r, c] = lut[trunc(max(px[r, c], 0) · scale)], px's shape.

    Examples
    --------
    >>> lut_mask(np.array([[0.0, 1.0, 7.0]]), 1.0, np.array([False, True, False]))
    array([[False,  True, False]])
    """
    h, w = px.shape
    out = np.empty((h, w), np.bool_)
    top = np.float64(lut.shape[0] - 1)
    for r in range(h):
        for c in range(w):
            out[r, c] = lut[_bin(px[r, c], scale, top)]
    return out


#: Exported kernels: name -> (function name here, numba signature), C-contiguous arrays.
EXPORTS = {
    "scan_pixels_f4": ("scan_pixels", "Tuple((f8, b1))(f4[:, ::1])"),
    "scan_pixels_f8": ("scan_pixels", "Tuple((f8, b1))(f8[:, ::1])"),
    "value_histogram_f4": ("value_histogram", "i8[::1](f4[:, ::1], f8, i8)"),
    "value_histogram_f8": ("value_histogram", "i8[::1](f8[:, ::1], f8, i8)"),
    "lut_mask_f4": ("lut_mask", "b1[:, ::1](f4[:, ::1], f8, b1[::1])"),
    "lut_mask_f8": ("lut_mask", "b1[:, ::1](f8[:, ::1], f8, b1[::1])"),
    "poisson_em": ("poisson_em", "Tuple((f8, f8, f8, i8, f8))(f8[::1], f8[::1], i8, f8)"),
}
