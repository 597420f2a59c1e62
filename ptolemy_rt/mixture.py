"""Two-component Poisson mixture over pixel values (docs/ALGORITHM.md#lowmag-mask).

The published tool sets negative pixels to 0, truncates the image to integers and fits a
two-component Poisson mixture to the pixels by EM from random responsibilities; the
component with the larger mean is "square" and the mask is posterior > 0.5.

Here the same likelihood is maximised on the *histogram* of the integer values (one pass
over the pixels builds it; EM then costs O(number of distinct values) per iteration; the
pixel passes and the EM loop are compiled kernels, `mixture_kernels` via `kernels`), from a
deterministic start: responsibility 1 for the high component on values above the mean
value, 0 below. EM stops when the log-likelihood gains less than 1e-3 or after 100
iterations, like the published fit, and reaches the same fixed point on the published
example. The mask comes from a per-value lookup table (posterior > 0.5), so it is always a
threshold on the value: mask = (value ≥ t).

Integer conversion (the only deviation from the published tool, documented):
- integer-valued images (int MRC modes, or floats holding whole numbers) with values up to
  2**20: used as they are (negatives → 0). This is the published behaviour.
- non-integer images whose largest value is below 4096 (e.g. [0, 1] normalised images,
  which the published truncation turns into all zeros): values are rescaled linearly,
  v = trunc(x · 4095 / max(x)), for the mixture only.
- any image with values above 2**20: rescaled the same way to 0..65535 (bounded histogram).
- other non-integer images (max ≥ 4096): truncated, as published (loses < 1/4096 of the range).
With ``compat="published"`` (`--compat published`) every image up to 2**20 is truncated as
published, [0, 1] images included; only the bound on the histogram above 2**20 stays.
Brightness and normalisation elsewhere use the raw values; only the mask depends on this.
Coordinates: the mask is a bool array [row, col] of the input's shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import kernels

MAX_ITER = 100
TOL = 1e-3  # log-likelihood gain (sum over pixels, nats) below which EM stops
RESCALE_MAX = 4095  # float images with a small range are rescaled to 0..RESCALE_MAX
MAX_VALUE = 1 << 20  # larger values are rescaled to 0..65535


@dataclass(frozen=True)
class MixtureFit:
    """Result of `fit_mixture` (see its example).

    mu_high, mu_low: component means in mixture units (integer values after `scale`).
    weight_high: mixing weight of the high (square) component, in [0, 1].
    mask: bool [row, col], posterior of the high component > 0.5.
    scale: factor applied before truncation (1.0 = published behaviour; see module doc).
    threshold: smallest raw value (input units) in the mask, or None when the mask is empty.
    iterations: EM iterations run. loglik: final log-likelihood (nats, without the
    constant −Σ log k! term).
    valley_ratio: depth of the histogram valley between the two populations: lowest
    smoothed count between the dark and the bright histogram peaks divided by the lower
    peak (0 = empty valley, ≈ 1 = no valley: unimodal or flat histogram, e.g. pure noise
    or a smooth gradient, where the mask means nothing). See `valley_ratio`.
    """

    mu_high: float
    mu_low: float
    weight_high: float
    mask: np.ndarray
    scale: float
    threshold: float | None
    iterations: int
    loglik: float
    valley_ratio: float = 1.0
    #: pixel count per integer value (mixture units), the histogram the fit was made on
    hist: np.ndarray | None = field(default=None, repr=False, compare=False)


def _log_joint(k, pi, mu):
    # log(pi) + log Poisson(k | mu) without the −log k! term (cancels in posteriors and gains)
    return np.log(pi) + k * np.log(mu) - mu


def _posterior_table(nbins, pi_hi, mu_hi, mu_lo):
    """lut[k] = posterior of the high component at value k > 0.5."""
    k = np.arange(nbins, dtype=np.float64)
    return _log_joint(k, pi_hi, mu_hi) > _log_joint(k, 1.0 - pi_hi, mu_lo)


def mixture_scale(vmax: float, integer_valued: bool, compat: str = "robust") -> float:
    """Factor applied to pixel values before truncation to integers (see module doc).

    Parameters
    ----------
    vmax : float
        Largest pixel value (negatives counted as 0), input units.
    integer_valued : bool
        Whether every pixel value is a whole number.
    compat : str, optional
        "robust" (default) or "published": no rescaling of small-range float images (the
        published truncation; a [0, 1] image then has the values 0 and 1 only).

    Returns
    -------
    float
        Mixture units per input unit (1.0: values used as they are).

    Examples
    --------
    A [0, 1] float image is spread over 0..4095; integer counts are kept; huge values are
    brought to 0..65535.

    >>> mixture_scale(1.0, False), mixture_scale(200.0, True), mixture_scale(65535.0 * 32, True)
    (4095.0, 1.0, 0.03125)
    >>> mixture_scale(1.0, False, "published")
    1.0
    """
    if vmax > MAX_VALUE:
        return 65535.0 / vmax
    if compat != "published" and not integer_valued and 0.0 < vmax < RESCALE_MAX + 1:
        return RESCALE_MAX / vmax
    return 1.0


def _smooth(h: np.ndarray, w: int) -> np.ndarray:
    """Moving average of width w; windows are cut at the ends and divided by their length."""
    n = len(h)
    if w <= 1 or n == 0:
        return h
    c = np.concatenate([[0.0], np.cumsum(h)])
    i = np.arange(n)
    lo = np.clip(i - (w - 1) // 2, 0, n)
    hi = np.clip(i + w // 2 + 1, 0, n)
    return (c[hi] - c[lo]) / (hi - lo)


def valley_ratio(hist: np.ndarray, threshold_bin: int, mu_high: float, mu_low: float) -> float:
    """Bimodality of a value histogram split at threshold_bin (first bin of the bright side).

    Counts are smoothed with a moving average of width max(1, round((mu_high − mu_low)/8))
    bins, separately on each side of the threshold (a spike never leaks across); p_lo, p_hi = highest smoothed count below / from the threshold; the result is the
    lowest smoothed count between those two peaks divided by min(p_lo, p_hi). For any
    unimodal histogram it is ≈ 1 (a point between two others on both sides of the mode is
    at least as high as the lower of them); a clean two-population atlas gives ≈ 0.04.

    Parameters
    ----------
    hist : array_like, (nbins,)
        Pixel count per integer value (mixture units).
    threshold_bin : int
        First bin of the bright side (the mask threshold in mixture units).
    mu_high, mu_low : float
        The two component means, mixture units (set the smoothing width).

    Returns
    -------
    float
        Valley depth ratio, ≥ 0 (1.0 when the threshold is outside the histogram or a side
        is empty).

    Examples
    --------
    Two peaks with empty bins between them, then one single peak.

    >>> valley_ratio([0, 5, 9, 5, 1, 0, 0, 1, 6, 10, 6, 0], 6, 9.0, 2.0)
    0.0
    >>> valley_ratio([1, 3, 6, 9, 6, 3, 1], 4, 5.0, 2.0)
    1.0
    """
    h = np.asarray(hist, dtype=np.float64)
    t = int(threshold_bin)
    if t <= 0 or t >= len(h):
        return 1.0
    w = max(1, int(round((mu_high - mu_low) / 8.0)))
    d = np.concatenate([_smooth(h[:t], w), _smooth(h[t:], w)])  # windows never cross t
    ilo = int(np.argmax(d[:t]))
    ihi = t + int(np.argmax(d[t:]))
    low_peak = min(d[ilo], d[ihi])
    if low_peak <= 0:
        return 1.0
    return float(d[ilo:ihi + 1].min() / low_peak)


def fit_mixture(pixels: np.ndarray, integer_valued: bool | None = None, compat: str = "robust") -> MixtureFit:
    """Fit the two-component Poisson mixture to a 2-D [row, col] image and return the mask.

    Parameters
    ----------
    pixels : array_like, 2-D [row, col]
        Raw image (any real dtype; negatives count as 0; not modified).
    integer_valued : bool or None, optional
        Whether all values are whole numbers (None: checked here).
    compat : str, optional
        "robust" or "published": the integer conversion (`mixture_scale`).

    Returns
    -------
    MixtureFit
        Means, weight, mask (bool [row, col], pixels's shape), threshold (input units) and
        fit diagnostics.

    Raises
    ------
    ValueError
        When the image is not 2-D.

    Examples
    --------
    A 10×10 bright square (Poisson mean 50) on a 20×20 background (mean 5): the mask is the
    square, every pixel of it and nothing else.

    >>> rng = np.random.default_rng(0)
    >>> img = rng.poisson(5, (20, 20)).astype(float)
    >>> img[5:15, 5:15] = rng.poisson(50, (10, 10))
    >>> fit = fit_mixture(img)
    >>> round(fit.mu_low, 2), round(fit.mu_high, 2), round(fit.weight_high, 3), fit.threshold
    (4.87, 50.41, 0.25, 20.0)
    >>> int(fit.mask.sum()), bool(fit.mask[5:15, 5:15].all()), fit.valley_ratio
    (100, True, 0.0)
    """
    a = np.asarray(pixels)
    if a.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    a = np.ascontiguousarray(a)
    vmax, whole = kernels.scan_pixels(a)
    if integer_valued is None:
        integer_valued = bool(whole)
    scale = mixture_scale(float(vmax), bool(integer_valued), compat)
    nbins = int(vmax * scale) + 1
    hist = kernels.value_histogram(a, scale, nbins)
    values = np.nonzero(hist)[0]
    counts = hist[values].astype(np.float64)
    if len(values) < 2:  # one value only: nothing to separate
        v = float(values[0]) if len(values) else 0.0
        return MixtureFit(v, v, 0.0, np.zeros(a.shape, bool), scale, None, 0, 0.0)
    pi_a, mu_a, mu_b, it, ll = kernels.poisson_em(values.astype(np.float64), counts, MAX_ITER, TOL)
    if mu_a >= mu_b:
        pi_hi, mu_hi, mu_lo = pi_a, mu_a, mu_b
    else:
        pi_hi, mu_hi, mu_lo = 1.0 - pi_a, mu_b, mu_a
    lut = _posterior_table(nbins, pi_hi, mu_hi, mu_lo)
    mask = kernels.lut_mask(a, scale, lut)
    on = np.nonzero(lut)[0]
    thr = float(on[0] / scale) if len(on) else None
    vr = valley_ratio(hist, int(on[0]), mu_hi, mu_lo) if len(on) else 1.0
    return MixtureFit(float(mu_hi), float(mu_lo), float(pi_hi), mask, scale, thr, int(it), float(ll), vr, hist)


#: Fraction of the pixels allowed below the zero level (cold / dead pixels), and the quantiles
#: of the "counts from 0" test (docs/ALGORITHM.md#lowmag-zero-level).
ZERO_RANK_FRACTION = 1e-5
ZERO_TEST_QUANTILE = 1e-3
#: An image is taken as counts from 0 when its low quantile lies in [0, this × its range].
ZERO_TEST_FRACTION = 0.05


def zero_level(pixels: np.ndarray) -> float:
    """The value that stands for zero counts in a 2-D [row, col] image (input units).

    The published mixture models counts from 0 (docs/ALGORITHM.md#lowmag-zero-level): an
    image already on that scale (its 0.1 % quantile q_lo ≥ 0 and q_lo ≤ 0.05 × (q_hi −
    q_lo), q_hi the 99.9 % quantile) gives 0.0, so it is used as it is. Otherwise (a camera
    bias, a background-subtracted or zero-mean image, float data with an offset) the zero
    level is the image's value of rank ⌊10⁻⁵ · N⌋ from the bottom (the minimum when N <
    10⁵), an order statistic: for any gain g > 0 and offset o, `zero_level(g·x + o)` is
    g·zero_level(x) + o, rounding aside, and up to 10 cold pixels per megapixel are ignored.

    Parameters
    ----------
    pixels : array_like, 2-D [row, col]
        The image, input units.

    Returns
    -------
    float
        The zero level, input units (0.0 for counts from 0).

    Examples
    --------
    >>> img = np.arange(100, dtype=np.float32).reshape(10, 10)
    >>> zero_level(img), zero_level(img + 1000), zero_level(img * 0.5 - 20)
    (0.0, 1000.0, -20.0)
    """
    a = np.asarray(pixels)
    if a.size == 0:
        return 0.0
    n = a.size
    k_lo, k_hi = int(ZERO_TEST_QUANTILE * n), n - 1 - int(ZERO_TEST_QUANTILE * n)
    k0 = int(ZERO_RANK_FRACTION * n)
    ks = sorted({k0, k_lo, k_hi})
    if a.dtype == np.float32 and a.ndim == 2 and n > STREAM_MIN_PX:
        q = dict(zip(ks, order_statistics_f32(a, ks)))  # no whole-image copy
    else:
        part = np.partition(a.ravel(), ks)
        q = {k: part[k] for k in ks}
    q_lo, q_hi = float(q[k_lo]), float(q[k_hi])
    if 0.0 <= q_lo <= ZERO_TEST_FRACTION * (q_hi - q_lo):
        return 0.0
    return float(q[k0])


#: Images above this many pixels get their order statistics by `order_statistics_f32`
#: (streamed) instead of `numpy.partition` (a whole-image copy).
STREAM_MIN_PX = 1 << 22


def _sort_keys(u: np.ndarray) -> np.ndarray:
    """uint32 keys of float32 bit patterns (viewed as uint32) whose unsigned order is the
    values' order (negative floats: all bits flipped; others: sign bit set)."""
    return np.where(u >= np.uint32(0x80000000), ~u, u | np.uint32(0x80000000))


def order_statistics_f32(a: np.ndarray, ks) -> list:
    """The k-th smallest values (0-based ranks ks) of a 2-D float32 [row, col] array without
    NaN: `numpy.partition(a.ravel(), k)[k]` for each k, without copying the image.

    Two histogram passes over row strips (`core.row_strips`) of a monotone uint32 key of the
    float32 bits: the high 16 bits find each rank's bin, the low 16 bits within it give
    the exact value. Memory: 65536-entry histograms and one strip's keys. (−0.0 sorts
    before +0.0; both compare equal to 0.)

    Parameters
    ----------
    a : numpy.ndarray
        2-D float32 [row, col], finite or ±inf, no NaN.
    ks : sequence of int
        Ranks, 0 ≤ k < a.size.

    Returns
    -------
    list of numpy.float32
        One value per rank, in the order of ks.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(300, 200)).astype(np.float32)
    >>> got = order_statistics_f32(x, [0, 17, 59999])
    >>> got == [np.partition(x.ravel(), k)[k] for k in (0, 17, 59999)]
    True
    """
    from .core import row_strips

    u = a.view(np.uint32)
    hist = np.zeros(1 << 16, np.int64)
    for sl in row_strips(*a.shape):
        hist += np.bincount((_sort_keys(u[sl].ravel()) >> np.uint32(16)).astype(np.intp), minlength=1 << 16)
    cum = np.cumsum(hist)
    target = {}
    for k in ks:
        b = int(np.searchsorted(cum, k, side="right"))
        target[k] = (b, int(k - (cum[b - 1] if b else 0)))
    bins = sorted({b for b, _ in target.values()})
    low = {b: np.zeros(1 << 16, np.int64) for b in bins}
    for sl in row_strips(*a.shape):
        key = _sort_keys(u[sl].ravel())
        hi = key >> np.uint32(16)
        for b in bins:
            sel = key[hi == b] & np.uint32(0xFFFF)
            if sel.size:
                low[b] += np.bincount(sel.astype(np.intp), minlength=1 << 16)
    out = []
    for k in ks:
        b, r = target[k]
        lo = int(np.searchsorted(np.cumsum(low[b]), r, side="right"))
        key = np.array([(b << 16) | lo], np.uint32)
        bits = np.where(key >= np.uint32(0x80000000), key & np.uint32(0x7FFFFFFF), ~key)
        out.append(bits.view(np.float32)[0])
    return out


@dataclass(frozen=True)
class LowerFit:
    """Second split of the pixels below a mixture threshold (`fit_below`).

    threshold: smallest input value (mixture units / scale) of the upper part, or None.
    mu_high, mu_low: means of the two components below the first threshold (mixture units).
    weight_high: share of the upper component among the pixels below the first threshold.
    valley_ratio: `valley_ratio` of the histogram below the first threshold at this split.
    """

    threshold: float | None
    mu_high: float
    mu_low: float
    weight_high: float
    valley_ratio: float


def fit_below(fit: MixtureFit) -> LowerFit:
    """Fit the two-component Poisson mixture again to the values below `fit`'s threshold.

    Used by the dark-square pass (docs/ALGORITHM.md#lowmag-dark): below the bright (square)
    population the histogram holds the bars and rim, and, when the atlas has them, thick-ice
    (dark) squares; the second split separates them, and its valley ratio says whether
    there are two populations at all.

    Parameters
    ----------
    fit : MixtureFit
        A fit from `fit_mixture` (with its histogram).

    Returns
    -------
    LowerFit
        threshold None (and valley ratio 1.0) when the first fit had no threshold or fewer
        than two values lie below it.

    Examples
    --------
    Bars (mean 5), dark squares (mean 40) and bright squares (mean 150):

    >>> rng = np.random.default_rng(1)
    >>> img = rng.poisson(5, (60, 60)).astype(float)
    >>> img[5:25, 5:25] = rng.poisson(40, (20, 20)); img[30:55, 30:55] = rng.poisson(150, (25, 25))
    >>> low = fit_below(fit_mixture(img))
    >>> low.threshold, round(low.mu_low, 1), round(low.mu_high, 1), low.valley_ratio
    (18.0, 5.0, 39.0, 0.0)
    """
    none = LowerFit(None, 0.0, 0.0, 0.0, 1.0)
    if fit.threshold is None or fit.hist is None:
        return none
    t1 = int(np.ceil(fit.threshold * fit.scale - 1e-9))
    h = fit.hist[:t1]
    values = np.nonzero(h)[0]
    if len(values) < 2:
        return none
    counts = h[values].astype(np.float64)
    pi_a, mu_a, mu_b, _, _ = kernels.poisson_em(values.astype(np.float64), counts, MAX_ITER, TOL)
    if mu_a >= mu_b:
        pi_hi, mu_hi, mu_lo = pi_a, mu_a, mu_b
    else:
        pi_hi, mu_hi, mu_lo = 1.0 - pi_a, mu_b, mu_a
    if not (0.0 < pi_hi < 1.0) or not mu_hi > mu_lo:
        return none
    on = np.nonzero(_posterior_table(t1, pi_hi, mu_hi, mu_lo))[0]
    if not len(on):
        return none
    vr = valley_ratio(h, int(on[0]), mu_hi, mu_lo)
    return LowerFit(float(on[0] / fit.scale), float(mu_hi), float(mu_lo), float(pi_hi), vr)


def warmup() -> None:
    """Run the fit once on tiny inputs (loads, and with the jit backend compiles, the kernels).

    Examples
    --------
    >>> warmup()
    """
    img = np.zeros((4, 4), np.float32)
    img[:2] = 9.0
    img[0, 0] = 12.0
    fit_mixture(img)
    fit_mixture(img.astype(np.float64) / 20.0)
