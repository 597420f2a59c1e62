"""Scale of a medium-magnification image: the hole lattice measured from the pixels, and the
resampling that brings it to the scale a model set was trained at (issue 15, "Scale").

Conventions
-----------
Arrays are indexed [row, col]. Points are (x, y) = (col, row) in px with pixel *centres* at
integer indices (pixel (r, c) is centred on (x, y) = (c, r)) unless a function says
"corner": pixel-corner coordinates, where pixel (r, c) covers [c, c+1) × [r, r+1) (the
internal convention of `medmag`, `regions`, `geometry`); corner = centre + 0.5.
Lattice vectors are (x, y) px. Angles are degrees from +x towards +y (clockwise on screen,
since y = row points down). Frequencies are cycles per px.

Measurement (`measure_hole_lattice`), classical and deterministic:
  1. bin the image by an integer factor b so that its longer side is ≤ `WORK_SIDE_PX`
     (block means; speed) and normalise robustly: subtract the median, divide by 1.4826·MAD,
     clip to ±`CLIP_SIGMA` (offset-, gain- and sign-invariant; contamination and a dark
     surround cannot dominate), subtract a least-squares quadratic surface (ice gradients,
     illumination). Two features are measured: these signed pixels, and their magnitude
     |x| − mean (`hole_feature`: holes brighter and darker than the film, i.e. mixed ice,
     no longer cancel);
  2. separable Tukey taper, zero padding by half the shorter side (no circular wrap at the
     lags searched), one real FFT; the power spectrum is divided by the square root of its
     mean on each ring of equal |frequency| (half whitening: broad structure no longer
     dominates, noise is not blown up) and by the root of its mean per direction (straight
     edges of grid bars or of a square are streaks through the origin);
  3. inverse FFT: the autocorrelation, divided by the taper's own autocorrelation (so its
     envelope does not pull the peaks towards zero lag) and by its zero-lag value. Its local
     maxima of at least `STRONG_FRACTION` × the strongest one are the candidate lattice
     vectors; among pairs of the `N_PEAKS` shortest, the basis is the consistent pair (a1 ± a2,
     2a1, 2a2 present, the half vectors absent) with the smallest cell;
  4. sub-pixel quadratic fits of the maxima at a1, a2, a1 ± a2, 2a1, 2a2 and a least-squares
     fit give the basis, Lagrange-Gauss reduced (a1 the shortest vector, |a2| ≥ |a1|);
  5. of the two features, the finer lattice wins when the other is a superlattice of it,
     else the clearer (`quality`); an image binned by b > 1 whose lattice is fine (< 40
     binned px) or unclear is also measured unbinned on its central `FINE_SIDE_PX` square.

Measured on 60 random `synthetic.medmag_image` images (10-200 nm/px, all films, gold and
carbon, tilt, bars, contamination; seeds 5000+): 55 within 3 % and 2°. Known weak cases:
tilted carbon film with bars, R0.6/1 at > 120 nm/px (holes < 5 px), holes barely
contrasted against a dark grid bar. Cost: ~50 ms of CPU on 1024×1440.

A square hole lattice imaged at a stage tilt is oblique (shrunk across the tilt axis): both
reduced vectors are reported; `period_px` is their mean length.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .modelspec import PipelineSpec, default

WORK_SIDE_PX = 512  # the measurement runs on the image binned to a longer side ≤ this
CLIP_SIGMA = 4.0  # robustly normalised pixels are clipped to ± this
TAPER_FRACTION = 0.15  # Tukey taper: cosine ramp over this fraction of each side, at each end
MIN_PERIOD_BINNED_PX = 4.0  # shortest period looked for, in binned px
FINE_PERIOD_BINNED_PX = 20.0  # binned periods below 2 × this are also measured unbinned (crop)
FINE_SIDE_PX = 384  # side of the central crop measured unbinned when the image is binned
PRESENT_FRACTION = 0.3  # an autocorrelation maximum ≥ this × the strongest one is a lattice point
#: when no basis is consistent at PRESENT_FRACTION, lattice points are looked for again at
#: this fraction (a weak row of repeats in an image only ~3 periods across)
WEAK_PRESENT_FRACTION = 0.2
STRONG_FRACTION = 0.5  # basis candidates: the N_PEAKS shortest maxima ≥ this × the strongest
MIN_PERIODS = 2.0  # a lattice needs at least this many periods across the shorter side
N_PEAKS = 10  # the shortest strong autocorrelation maxima tried as basis vectors
#: a half vector t = v/2 of a basis candidate marks a finer lattice only when it rises above
#: the lag 1.5 t by at least this fraction of v's rise (a ridge through the origin does not)
HALF_PEAK_CONTRAST = 0.5
#: the noise of `LatticeScale.quality` is measured on lags farther than this × the shortest
#: basis vector from every point of the lattice found
NOISE_EXCLUSION = 0.25
STREAK_NORMALISATION = True  # divide the spectrum by the root of its mean per direction
ANGLE_BINS = 360  # direction bins of the half circle for the streak normalisation
CONFIDENT_QUALITY = 5.0  # `LatticeScale.confident` needs quality ≥ this
#: a lattice below CONFIDENT_QUALITY but at least this (pure noise ≲ 3) is tried by
#: `weak_decision` when the image as it is gave no holes
WEAK_QUALITY = 4.0
WEAK_SOURCE = "measured (weak)"  # `ScaleDecision.source` of `weak_decision`
#: |factor − 1| within this (relative, log) → not resampled: the published default of the
#: model-set declaration `pipeline.hole_pitch_tolerance` (each set declares its own)
SAME_SCALE_TOLERANCE = default(PipelineSpec, "hole_pitch_tolerance")
CROSS_CHECK_TOLERANCE = 0.10  # measured vs metadata period agree within this (relative)


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LatticeScale:
    """A hole lattice measured in an image.

    Attributes
    ----------
    vectors_xy : tuple of two (x, y) tuples
        Reduced lattice basis, px: a1 the shortest lattice vector, a2 the shortest one not
        parallel to it (|a2| ≥ |a1|, angle between them in [60°, 120°]).
    period_px : float
        Mean of |a1| and |a2|, px (for a square lattice: its pitch).
    orientation_deg : float
        Direction of a1, degrees from +x towards +y, in [0, 90) when the lattice is
        near-square (|a1| ≈ |a2|, angle ≈ 90°: a1 and a2 are then interchangeable), else in
        [0, 180).
    quality : float
        Height of the weaker of the two basis maxima of the normalised autocorrelation,
        in robust standard deviations of the autocorrelation over the searched lags farther
        than NOISE_EXCLUSION × |a1| from the lattice's points (pure noise ≲ 3; the real example images 18-33; `confident` needs ≥ CONFIDENT_QUALITY).
    periods_across : float
        Shorter image side / longest period of the basis (how many repeats were seen).
    method : str
        How it was found: "autocorrelation" plus ", sub-pixel" when the refinement
        succeeded, " of |pixels|" for the magnitude feature, " (central crop)" when taken
        from the unbinned central square.
    bin_factor : int
        Integer binning of the image the measurement ran on.
    """

    vectors_xy: tuple[tuple[float, float], tuple[float, float]]
    period_px: float
    orientation_deg: float
    quality: float
    periods_across: float
    method: str
    bin_factor: int

    @property
    def lengths_px(self) -> tuple[float, float]:
        """(|a1|, |a2|), px."""
        (x1, y1), (x2, y2) = self.vectors_xy
        return (math.hypot(x1, y1), math.hypot(x2, y2))

    @property
    def confident(self) -> bool:
        """True when the lattice is clear (quality ≥ CONFIDENT_QUALITY) and repeats at least
        MIN_PERIODS times across the image."""
        return self.quality >= CONFIDENT_QUALITY and self.periods_across >= MIN_PERIODS

    def as_dict(self) -> dict:
        """JSON-ready summary (rounded: px to 0.01, degrees to 0.01, quality to 0.01)."""
        return {"period_px": round(self.period_px, 2), "orientation_deg": round(self.orientation_deg, 2),
                "vectors_xy_px": [[round(v, 2) for v in a] for a in self.vectors_xy],
                "quality": round(self.quality, 2), "periods_across": round(self.periods_across, 2),
                "confident": self.confident, "method": self.method, "bin_factor": self.bin_factor}


# ---------------------------------------------------------------------------------------
# preparation
# ---------------------------------------------------------------------------------------

def bin_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Block means of `factor`×`factor` pixels (rows and columns beyond the last whole block are
    dropped). Returns float32 [row, col]; factor 1 returns a float32 copy-or-view.

    Parameters
    ----------
    image : 2-D array [row, col]
    factor : int ≥ 1

    Returns
    -------
    numpy.ndarray
        float32, shape (rows // factor, cols // factor).

    Examples
    --------
    >>> bin_image(np.arange(16.0).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    a = np.asarray(image, dtype=np.float32)
    f = int(factor)
    if f <= 1:
        return a
    h, w = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    return a[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3), dtype=np.float32)


def robust_normalise(image: np.ndarray, clip: float | None = None) -> np.ndarray:
    """(image − median) / (1.4826 · MAD), clipped to ±clip, with a least-squares quadratic
    surface subtracted afterwards. Invariant to offset, positive gain and (up to sign) to
    contrast inversion. Returns float32 [row, col]; a constant image gives zeros.

    Parameters
    ----------
    image : 2-D array [row, col], any units
    clip : float, optional
        Clip level in robust standard deviations (default CLIP_SIGMA).

    Returns
    -------
    numpy.ndarray
        float32 [row, col], dimensionless.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.full((8, 8), 100.0); a[3:5, 3:5] = 200.0
    >>> b = a * 3.0 + 7.0                      # offset and gain change nothing
    >>> bool(np.allclose(robust_normalise(a), robust_normalise(b)))
    True
    >>> robust_normalise(np.full((4, 4), 5.0)).tolist()[0]
    [0.0, 0.0, 0.0, 0.0]
    """
    clip = CLIP_SIGMA if clip is None else float(clip)
    a = np.asarray(image, dtype=np.float32)
    sub = a[::2, ::2] if a.size > 40000 else a
    finite = sub[np.isfinite(sub)]
    if finite.size == 0:
        return np.zeros(a.shape, np.float32)
    med = float(np.median(finite))
    mad = float(np.median(np.abs(finite - med))) * 1.4826
    if not mad > 0:
        mad = float(np.std(finite))
    if not mad > 0:
        return np.zeros(a.shape, np.float32)
    x = np.nan_to_num((a - np.float32(med)) / np.float32(mad), nan=0.0, posinf=clip, neginf=-clip)
    np.clip(x, -clip, clip, out=x)
    return (x - _quadratic_surface(x)).astype(np.float32)


def _quadratic_surface(x: np.ndarray) -> np.ndarray:
    """Least-squares fit of c0 + c1 u + c2 v + c3 u² + c4 uv + c5 v² (u, v ∈ [−1, 1] along
    columns, rows) to a [row, col] array, fitted on a ≤ 64×64 subsample, evaluated everywhere."""
    h, w = x.shape
    sr, sc = max(1, h // 64), max(1, w // 64)
    rr = np.arange(0, h, sr)
    cc = np.arange(0, w, sc)
    v = (rr / max(h - 1, 1) * 2 - 1)[:, None] * np.ones((1, len(cc)))
    u = np.ones((len(rr), 1)) * (cc / max(w - 1, 1) * 2 - 1)[None, :]
    design = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1).reshape(-1, 6)
    yv = x[::sr, ::sc].reshape(-1).astype(np.float64)
    coef = np.linalg.solve(design.T @ design + 1e-9 * np.eye(6), design.T @ yv)
    vr = (np.arange(h) / max(h - 1, 1) * 2 - 1)[:, None]
    uc = (np.arange(w) / max(w - 1, 1) * 2 - 1)[None, :]
    return (coef[0] + coef[1] * uc + coef[2] * vr + coef[3] * uc * uc + coef[4] * uc * vr
            + coef[5] * vr * vr).astype(np.float32)


def hole_feature(x: np.ndarray) -> np.ndarray:
    """The image the lattice is measured on: |x| − mean(|x|) of a robustly normalised image
    (`robust_normalise`). Holes brighter than the film (thin or no ice) and holes darker than
    it (thick ice) both become positive, so a lattice with holes of mixed ice does not
    cancel out; contrast inversion changes nothing. float32 [row, col].

    Parameters
    ----------
    x : 2-D float array [row, col], robustly normalised (dimensionless)

    Returns
    -------
    numpy.ndarray
        float32 [row, col], zero mean.

    Examples
    --------
    A bright and a dark hole (±2) on film (0) give the same feature; so does the inverted
    image:

    >>> x = np.array([[-2.0, 0.0], [2.0, 0.0]])
    >>> hole_feature(x).tolist(), hole_feature(-x).tolist(), hole_feature(x).dtype
    ([[1.0, -1.0], [1.0, -1.0]], [[1.0, -1.0], [1.0, -1.0]], dtype('float32'))
    """
    m = np.abs(np.asarray(x, np.float32))
    return m - np.float32(m.mean(dtype=np.float64))


def _tukey(n: int, fraction: float = TAPER_FRACTION) -> np.ndarray:
    """1-D Tukey window of n samples: cosine ramps over `fraction`·n at each end."""
    m = max(1, int(round(fraction * n)))
    w = np.ones(n, np.float64)
    if n <= 2 * m:
        return np.hanning(n + 2)[1:-1]
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
    w[:m] = ramp
    w[n - m:] = ramp[::-1]
    return w


def _auto1d(w: np.ndarray, n_fft: int) -> np.ndarray:
    """Linear autocorrelation of a 1-D window at lags 0..n_fft−1 in FFT order (negative lags
    at the end), from a zero-padded FFT of size n_fft."""
    f = np.fft.rfft(w, n_fft)
    return np.fft.irfft(f * np.conj(f), n_fft)


# ---------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------

def _reduce_basis(a1: np.ndarray, a2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lagrange-Gauss reduction of a 2-D basis: a1 shortest, |a2| ≥ |a1|, |a1·a2| ≤ |a1|²/2."""
    a1 = np.asarray(a1, np.float64).copy()
    a2 = np.asarray(a2, np.float64).copy()
    for _ in range(64):
        if a2 @ a2 < a1 @ a1:
            a1, a2 = a2, a1
        q = round(float(a1 @ a2) / float(a1 @ a1))
        if q == 0:
            break
        a2 = a2 - q * a1
    if a2 @ a2 < a1 @ a1:
        a1, a2 = a2, a1
    return a1, a2


def lattice_orientation_deg(a1, a2) -> float:
    """Orientation of a reduced basis (x, y) px: direction of a1 in degrees from +x towards
    +y, modulo 90° for a near-square lattice (lengths within 5 %, angle 90° ± 5°), else
    modulo 180°.

    Parameters
    ----------
    a1, a2 : (x, y) px, a reduced basis (`LatticeScale.vectors_xy`)

    Returns
    -------
    float
        degrees in [0, 90) or [0, 180).

    Examples
    --------
    >>> round(lattice_orientation_deg((0.0, -10.0), (10.0, 0.0)), 6)
    0.0
    """
    a1 = np.asarray(a1, np.float64)
    a2 = np.asarray(a2, np.float64)
    l1, l2 = float(np.hypot(*a1)), float(np.hypot(*a2))
    ang = math.degrees(math.atan2(a1[1], a1[0]))
    cos12 = abs(float(a1 @ a2)) / max(l1 * l2, 1e-12)
    square = l2 <= 1.05 * l1 and cos12 <= math.sin(math.radians(5.0))
    mod = 90.0 if square else 180.0
    out = ang % mod
    return 0.0 if mod - out < 1e-6 else out


def measure_hole_lattice(image: np.ndarray) -> LatticeScale | None:
    """Measure the hole lattice (period, orientation) of a medium-magnification image.

    Classical and deterministic (module docstring): robust normalisation, tapered power
    spectrum half-whitened per ring, autocorrelation corrected for the taper, the
    lattice-consistent pair of its maxima, refined by sub-pixel fits. Invariant to intensity
    offset, gain and inversion; tolerant of contamination, ice gradients, grid bars and the
    dark surround of a whole square.

    Parameters
    ----------
    image : 2-D array [row, col]
        Any real dtype and units; NaN/inf are treated as the median.

    Returns
    -------
    LatticeScale or None
        None when the image is too small (shorter side < 16 px), constant, or shows no pair of
        non-collinear repeats (each at least MIN_PERIODS times across the shorter side);
        otherwise the lattice, with `quality` telling how clear it is (see `confident`).

    Raises
    ------
    ValueError
        If `image` is not 2-D.

    Examples
    --------
    >>> yy, xx = np.mgrid[0:128, 0:128]
    >>> holes = ((xx % 16 - 8) ** 2 + (yy % 16 - 8) ** 2 < 25).astype(float)
    >>> s = measure_hole_lattice(holes)
    >>> o = s.orientation_deg  # in [0, 90): a square lattice along the axes gives ~0 or ~90
    >>> round(s.period_px, 1), round(min(o, 90.0 - o), 1), s.confident
    (16.0, 0.0, True)
    """
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"measure_hole_lattice needs a 2-D image, got shape {a.shape}")
    if min(a.shape) < 16:
        return None
    b = max(1, int(math.ceil(max(a.shape) / WORK_SIDE_PX)))
    res = _measure_either(a, b)
    if b > 1 and (res is None or not res.confident or max(res.lengths_px) < 2 * FINE_PERIOD_BINNED_PX * b):
        # a lattice too fine for the binned image: measure the central FINE_SIDE_PX square
        # unbinned, and keep it when it is clear and finer than binning resolves well
        h, w = a.shape
        s = min(FINE_SIDE_PX, h, w)
        r0, c0 = (h - s) // 2, (w - s) // 2
        fine = _measure_either(a[r0:r0 + s, c0:c0 + s], 1)
        if fine is not None and fine.confident and (
                res is None or not res.confident
                or (max(res.lengths_px) < FINE_PERIOD_BINNED_PX * b
                    and abs(math.log(fine.period_px / res.period_px)) < math.log(1.25))
                or (fine.period_px < res.period_px / 1.2 and _coarser_lattice_of(res, fine))):
            res = LatticeScale(fine.vectors_xy, fine.period_px, fine.orientation_deg, fine.quality,
                               min(a.shape) / max(fine.lengths_px), fine.method + " (central crop)", 1)
    return res


def _coarser_lattice_of(coarse: LatticeScale, fine: LatticeScale, tol: float = 0.1) -> bool:
    """True when both basis vectors of `coarse` are integer combinations (within `tol` in
    lattice coordinates) of the basis of `fine`: a lattice measured too coarsely."""
    inv = np.linalg.inv(np.asarray(fine.vectors_xy, np.float64))
    coef = np.asarray(coarse.vectors_xy, np.float64) @ inv
    return bool(np.all(np.abs(coef - np.rint(coef)) <= tol))


def _measure_either(a: np.ndarray, b: int) -> LatticeScale | None:
    """`_measure` on the signed pixels and on their magnitude (`hole_feature`). When one
    result is a coarser lattice of the other (its vectors are integer combinations of the
    other's: holes of mixed brightness seen as a superlattice, or a finer lattice missed),
    the finer one is kept; otherwise the one of higher quality."""
    x = robust_normalise(bin_image(a, b))
    if not np.any(x):
        return None
    res = _measure(x, b, min(a.shape))
    alt = _measure(hole_feature(x), b, min(a.shape), "abs")
    if res is None or alt is None:
        return res if alt is None else alt
    if res.confident and alt.confident:
        if alt.period_px < res.period_px / 1.2 and _coarser_lattice_of(res, alt):
            return alt
        if res.period_px < alt.period_px / 1.2 and _coarser_lattice_of(alt, res):
            return res
    return alt if alt.quality > res.quality else res


def _measure(x: np.ndarray, b: int, min_side: int, feature: str = "signed") -> LatticeScale | None:
    """The lattice of one prepared image x (binned by b, `robust_normalise`d, and for feature
    "abs" passed through `hole_feature`); lengths are returned in px of the input image,
    whose shorter side is min_side px."""
    from scipy import fft as sfft

    h, w = x.shape
    wr, wc = _tukey(h), _tukey(w)
    xw = (x * wr[:, None].astype(np.float32)) * wc[None, :].astype(np.float32)
    max_lag = min(h, w) / MIN_PERIODS  # binned px
    nr = sfft.next_fast_len(int(h + max_lag) + 2, real=True)
    nc = sfft.next_fast_len(int(w + max_lag) + 2, real=True)
    spec = sfft.rfft2(xw, s=(nr, nc), workers=1)  # float32 in: complex64 out
    power = (spec.real * spec.real + spec.imag * spec.imag).astype(np.float64)
    del spec
    ac, ok = _whitened_autocorrelation(power, (nr, nc), (h, w))
    if ac is None:
        return None
    found = _lattice_from_autocorrelation(ac, ok, max_lag)
    if found is None:
        return None
    a1, a2, quality = found
    method = "autocorrelation"
    refined = _refine(ac, ok, a1, a2, (h, w))
    if refined is not None:
        a1, a2 = refined
        method = "autocorrelation, sub-pixel"
    method += " of |pixels|" if feature == "abs" else ""
    a1, a2 = _reduce_basis(a1, a2)
    a1 = a1 * b
    a2 = a2 * b
    l1, l2 = float(np.hypot(*a1)), float(np.hypot(*a2))
    if l1 <= 0:
        return None
    if math.atan2(a1[1], a1[0]) < 0:  # a lattice vector's sign is arbitrary: a1 in [0°, 180°)
        a1 = -a1
    if float(a1[0] * a2[1] - a1[1] * a2[0]) < 0:
        a2 = -a2
    return LatticeScale(vectors_xy=((float(a1[0]), float(a1[1])), (float(a2[0]), float(a2[1]))),
                        period_px=0.5 * (l1 + l2), orientation_deg=lattice_orientation_deg(a1, a2),
                        quality=float(quality), periods_across=min_side / max(l1, l2),
                        method=method, bin_factor=b)


def _freq_grid(shape_fft: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (cycles/px) of the rfft2 layout: fy [rows, 1], fx [1, cols]."""
    nr, nc = shape_fft
    return np.fft.fftfreq(nr)[:, None], np.fft.rfftfreq(nc)[None, :]


def _lag_grid(shape_fft: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Signed lags (px) of a circular autocorrelation layout: rows [rows, 1], cols [1, cols]."""
    nr, nc = shape_fft
    lr = np.arange(nr)
    lc = np.arange(nc)
    return np.where(lr <= nr // 2, lr, lr - nr)[:, None], np.where(lc <= nc // 2, lc, lc - nc)[None, :]


@functools.lru_cache(maxsize=8)
def _spectrum_bins(nr: int, nc: int):
    """Per-bin ring index (|f| in units of 1/max(nr, nc)), direction bin (ANGLE_BINS over
    the half circle), multiplicity weight (1 or 2: rfft2 columns 0 < kx < nc/2 stand for ±kx)
    and the ring counts of an rfft2 layout of shape (nr, nc // 2 + 1). Read-only arrays."""
    fy, fx = _freq_grid((nr, nc))
    ring = np.rint(np.sqrt(fy * fy + fx * fx) * max(nr, nc)).astype(np.intp)
    wts = np.full(ring.shape, 2.0)
    wts[:, 0] = 1.0
    if nc % 2 == 0:
        wts[:, -1] = 1.0
    ang = np.arctan2(fy * np.ones_like(fx), fx * np.ones_like(fy))  # [−90°, 90°]
    abin = np.minimum(((ang + np.pi / 2) / np.pi * ANGLE_BINS).astype(np.intp), ANGLE_BINS - 1)
    use = (ring > max(nr, nc) // 16) & (ring < max(nr, nc) // 2)
    cnt = np.bincount(ring.ravel(), weights=wts.ravel())
    acnt = np.bincount(abin.ravel(), weights=(wts * use).ravel(), minlength=ANGLE_BINS)
    for arr in (ring, wts, abin, use, cnt, acnt):
        arr.setflags(write=False)
    return ring, wts, abin, use, cnt, acnt


@functools.lru_cache(maxsize=8)
def _taper_envelope(h: int, w: int, nr: int, nc: int):
    """(env, ok): the autocorrelation of the separable Tukey taper of an h×w image at the
    circular lags of an (nr, nc) FFT, relative to zero lag, and ok = env > 5 %."""
    env = _auto1d(_tukey(h), nr)[:, None] * _auto1d(_tukey(w), nc)[None, :]
    env = env / float(env[0, 0])
    ok = env > 0.05
    env = np.where(ok, env, 1.0)
    env.setflags(write=False)
    ok.setflags(write=False)
    return env, ok


def _whitened_autocorrelation(power: np.ndarray, shape_fft, shape):
    """Autocorrelation of the tapered image with its power spectrum divided by the square
    root of the mean power on its ring of |frequency| (rings smoothed over ±2; half
    whitening: low frequencies no longer dominate, noise is not blown up) and by the root of
    the mean ring-normalised power in its direction (straight edges of grid bars or of a
    square are streaks through the origin), divided by the taper's autocorrelation (unbiased
    envelope) and by its zero-lag value. Returns (ac [lag_row, lag_col] float64 circular
    layout, ok: bool, lags where the taper overlap is ≥ 5 %), or (None, None) for a zero
    spectrum."""
    from scipy import fft as sfft

    nr, nc = shape_fft
    ring, wts, abin, use, cnt, acnt = _spectrum_bins(nr, nc)
    tot = np.bincount(ring.ravel(), weights=(wts * power).ravel())
    mean = tot / np.maximum(cnt, 1e-12)
    mean = np.convolve(np.pad(mean, 2, mode="edge"), np.ones(5) / 5.0, mode="valid")
    if not mean.max() > 0:
        return None, None
    mean = np.maximum(mean, 1e-30 * mean.max())
    rel = power / mean[ring]
    filt = rel * np.sqrt(mean)[ring]  # = power / sqrt(ring mean)
    if STREAK_NORMALISATION:
        atot = np.bincount(abin.ravel(), weights=(wts * np.where(use, rel, 0.0)).ravel(), minlength=ANGLE_BINS)
        amean = atot / np.maximum(acnt, 1e-12)
        amean = amean / max(float(np.median(amean)), 1e-30)
        filt /= np.sqrt(np.maximum(amean, 1.0))[abin]
    filt[0, 0] = 0.0
    ac = sfft.irfft2(filt, s=(nr, nc), workers=1)
    env, ok = _taper_envelope(shape[0], shape[1], nr, nc)
    ac = np.where(ok, ac / env, 0.0)
    ac0 = float(ac[0, 0])
    if not ac0 > 0:
        return None, None
    return ac / ac0, ok


def _sample_max(ac: np.ndarray, t, r: int = 1) -> float | None:
    """Max of the circular autocorrelation over the (2r+1)² lags around the lag t (x, y) px."""
    nr, nc = ac.shape
    c, rr = int(round(float(t[0]))), int(round(float(t[1])))
    if abs(rr) > nr // 2 - r - 1 or abs(c) > nc // 2 - r - 1:
        return None
    ys = [(rr + k) % nr for k in range(-r, r + 1)]
    xs = [(c + k) % nc for k in range(-r, r + 1)]
    return float(ac[np.ix_(ys, xs)].max())


def _lattice_from_autocorrelation(ac: np.ndarray, ok: np.ndarray, max_lag: float):
    """Lattice basis (x, y) binned px from the normalised autocorrelation, and its quality.

    Candidates are the local maxima (5×5) of at least STRONG_FRACTION × the strongest one; a
    lag holding ≥ PRESENT_FRACTION × the strongest is a lattice point. Among pairs of the
    N_PEAKS shortest candidates, the basis is the consistent pair with the smallest
    cell: a1 ± a2, 2a1 and 2a2 are lattice points (where within the searched lags) and the
    half vectors a1/2, a2/2, (a1 ± a2)/2 are not (that would be a finer lattice: a half
    vector on a ridge through the origin, without a peak of its own, is none); ties in
    cell area (within 5 %) go to the higher sum of maxima. When no pair is consistent, the
    search is repeated with lattice points at WEAK_PRESENT_FRACTION × the strongest. None
    without such a pair."""
    from scipy.ndimage import maximum_filter

    nr, nc = ac.shape
    L = int(min(max_lag, nr // 2 - 3, nc // 2 - 3))
    rsel = np.r_[nr - L:nr, 0:L + 1]
    csel = np.r_[nc - L:nc, 0:L + 1]
    sub = ac[np.ix_(rsel, csel)]  # lags −L..L on both axes, contiguous
    lr = np.arange(-L, L + 1)[:, None]
    lc = np.arange(-L, L + 1)[None, :]
    dist = np.hypot(lr, lc)
    half = (lr > 0) | ((lr == 0) & (lc > 0))  # AC(τ) = AC(−τ): one of each pair
    region = ok[np.ix_(rsel, csel)] & half & (dist >= MIN_PERIOD_BINNED_PX) & (dist <= max_lag)
    mx = maximum_filter(sub, size=5, mode="nearest")
    idx = np.flatnonzero((sub >= mx) & region & (sub > 0))
    if idx.size < 2:
        return None
    vals = sub.ravel()[idx]
    vmax = float(vals.max())
    present = PRESENT_FRACTION * vmax
    keep = vals >= STRONG_FRACTION * vmax
    idx, vals = idx[keep], vals[keep]
    d = dist.ravel()[idx]
    order = np.lexsort((idx, d))[:N_PEAKS]  # shortest first, ties by index
    rows, cols = np.unravel_index(idx[order], sub.shape)
    vec = np.stack([lc[0, cols], lr[rows, 0]], axis=1).astype(np.float64)  # (x, y)
    val = vals[order]

    def is_present(t, r: int = 1) -> bool | None:
        """Whether the lag t (x, y) holds a value ≥ present within ±r px; None outside."""
        if math.hypot(*t) > max_lag:
            return None
        v = _sample_max(ac, t, r)
        return None if v is None else v >= present

    def is_finer_peak(t) -> bool:
        """Whether the half vector t = v/2 is a lattice point of a finer lattice: present, and
        a peak along v as v itself is (its rise above the lag 1.5 t, halfway to v, at least
        HALF_PEAK_CONTRAST × that of v). A straight edge (the border of a square, a grid bar)
        along a lattice direction is a ridge through the origin: high at t but no peak."""
        if not is_present(t):
            return False
        trough, full = _sample_max(ac, 1.5 * t, 0), _sample_max(ac, 2.0 * t, 1)
        if trough is None or full is None or full <= trough:
            return True
        return _sample_max(ac, t, 1) - trough >= HALF_PEAK_CONTRAST * (full - trough)

    best = None
    for fraction in (PRESENT_FRACTION, WEAK_PRESENT_FRACTION):  # the weaker only when nothing is found
        if best is not None:
            break
        present = fraction * vmax
        for i in range(len(vec)):
            a1 = vec[i]
            n1 = math.hypot(*a1)
            for j in range(2 * len(vec)):
                a2 = vec[j] if j < len(vec) else -vec[j - len(vec)]
                n2 = math.hypot(*a2)
                cross = abs(a1[0] * a2[1] - a1[1] * a2[0])
                if cross < math.sin(math.radians(30.0)) * n1 * n2 or n2 > 2.5 * n1 or n1 > 2.5 * n2:
                    continue
                if any(is_present(t, 2) is False for t in (a1 + a2, a1 - a2, 2 * a1, 2 * a2)):
                    continue
                if any(math.hypot(*t) >= MIN_PERIOD_BINNED_PX and is_finer_peak(t)
                       for t in (0.5 * a1, 0.5 * a2, 0.5 * (a1 + a2), 0.5 * (a1 - a2))):
                    continue
                score = float(val[i] + val[j % len(vec)])
                if best is None or cross < 0.95 * best[0] or (cross <= 1.05 * best[0] and score > best[1]):
                    best = (cross, score, a1.copy(), a2.copy(), min(float(val[i]), float(val[j % len(vec)])))
    if best is None:
        return None
    # noise: robust spread of the autocorrelation over the searched lags away from the
    # lattice's own points (a fine lattice fills the search with its peaks)
    basis = np.array([best[2], best[3]], np.float64)  # rows a1, a2 (x, y)
    lx, ly = (lc * np.ones_like(lr))[region], (lr * np.ones_like(lc))[region]
    coef = np.stack([lx, ly], axis=1) @ np.linalg.inv(basis)
    resid = np.stack([lx, ly], axis=1) - np.rint(coef) @ basis
    away = np.hypot(resid[:, 0], resid[:, 1]) > NOISE_EXCLUSION * float(min(np.hypot(*best[2]), np.hypot(*best[3])))
    sample = sub[region][away] if np.count_nonzero(away) >= 100 else sub[region]
    if sample.size > 20000:
        sample = sample[:: sample.size // 20000]
    noise = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
    quality = best[4] / noise if noise > 0 else float("inf")
    return best[2], best[3], quality


def _refine(ac: np.ndarray, ok: np.ndarray, a1: np.ndarray, a2: np.ndarray, shape):
    """Sub-pixel basis (x, y) binned px: quadratic fits of the autocorrelation maxima near
    a1, a2, a1 ± a2, 2a1, 2a2, combined by least squares. None when fewer than 2 independent
    maxima are found or the result moves more than 10 % from (a1, a2)."""
    h, w = shape
    rows, obs = [], []
    radius = 0.12 * min(math.hypot(*a1), math.hypot(*a2)) + 1.5
    for m, n in ((1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2)):
        t = m * a1 + n * a2  # (x, y) = (col lag, row lag)
        if abs(t[1]) > h - 2 or abs(t[0]) > w - 2:
            continue
        pk = _subpixel_peak(ac, ok, t, radius)
        if pk is None:
            continue
        rows.append((m, n))
        obs.append(pk)
    if len(rows) < 2:
        return None
    M = np.array(rows, np.float64)
    if abs(np.linalg.det(M.T @ M)) < 1e-9:
        return None
    sol, *_ = np.linalg.lstsq(M, np.array(obs), rcond=None)
    b1, b2 = sol[0], sol[1]
    if (np.hypot(*(b1 - a1)) > 0.1 * np.hypot(*a1)) or (np.hypot(*(b2 - a2)) > 0.1 * np.hypot(*a2)):
        return None
    return b1, b2


_YY, _XX = (g.ravel() for g in np.mgrid[-2:3, -2:3].astype(np.float64))
_QFIT = np.linalg.pinv(np.stack([np.ones(25), _XX, _YY, _XX ** 2, _XX * _YY, _YY ** 2], axis=1))


def _subpixel_peak(ac: np.ndarray, ok: np.ndarray, t: np.ndarray, radius: float):
    """Sub-pixel (x, y) lag of the maximum of the circular autocorrelation `ac` within
    `radius` px of the lag t (x, y); quadratic least-squares fit on the 5×5 lags around the
    discrete maximum. None when the maximum sits on the search border (no peak there)."""
    nr, nc = ac.shape
    cx, cy = float(t[0]), float(t[1])
    R = int(math.ceil(radius)) + 2
    ys = np.arange(int(math.floor(cy)) - R, int(math.floor(cy)) + R + 2)
    xs = np.arange(int(math.floor(cx)) - R, int(math.floor(cx)) + R + 2)
    sub = ac[np.ix_(ys % nr, xs % nc)]
    okk = ok[np.ix_(ys % nr, xs % nc)]
    d2 = (ys[:, None] - cy) ** 2 + (xs[None, :] - cx) ** 2
    inside = (d2 <= radius * radius) & okk
    if not inside.any():
        return None
    masked = np.where(inside, sub, -np.inf)
    k = int(np.argmax(masked))
    r, c = divmod(k, sub.shape[1])
    # a maximum on the edge of the search disc is no peak
    if d2[r, c] > (radius - 1.0) ** 2:
        return None
    if r < 2 or c < 2 or r > sub.shape[0] - 3 or c > sub.shape[1] - 3:
        return None
    patch = sub[r - 2:r + 3, c - 2:c + 3]
    coef = _QFIT @ patch.ravel()
    H = np.array([[2 * coef[3], coef[4]], [coef[4], 2 * coef[5]]])
    if np.linalg.det(H) <= 0 or H[0, 0] >= 0:
        off = np.zeros(2)
    else:
        off = -np.linalg.solve(H, coef[1:3])
        if np.any(np.abs(off) > 1.5):
            off = np.zeros(2)
    return np.array([xs[c] + off[0], ys[r] + off[1]], np.float64)


# ---------------------------------------------------------------------------------------
# the scale decision and the resampling
# ---------------------------------------------------------------------------------------

def expected_period_px(pixel_size_nm: float, hole_pitch_um: float) -> float:
    """Hole-lattice period in px from the pixel size and the grid's hole pitch.

    Parameters
    ----------
    pixel_size_nm : float
        nm per px (> 0).
    hole_pitch_um : float
        centre-to-centre hole distance in µm (> 0), e.g. 2.5 for R1.2/1.3.

    Returns
    -------
    float
        px.

    Raises
    ------
    ValueError
        If either value is not a positive finite number.

    Examples
    --------
    >>> expected_period_px(8.62, 2.5)  # doctest: +ELLIPSIS
    290.0...
    """
    p, h = float(pixel_size_nm), float(hole_pitch_um)
    if not (math.isfinite(p) and p > 0 and math.isfinite(h) and h > 0):
        raise ValueError(f"pixel size ({pixel_size_nm} nm) and hole pitch ({hole_pitch_um} µm) must be positive")
    return h * 1000.0 / p


def resample_factor(period_px: float, model_period_px: float,
                    tolerance: float = SAME_SCALE_TOLERANCE) -> float:
    """Zoom factor that brings a lattice of `period_px` to `model_period_px`: their ratio
    model / measured, or exactly 1.0 when it is within `tolerance` of 1 (|ln ratio| ≤
    ln(1 + tolerance)): an image already at the model's scale is not resampled.

    Parameters
    ----------
    period_px : float
        Lattice period in the image, px (> 0).
    model_period_px : float
        Period the model set expects, px (> 0).
    tolerance : float
        Relative band around 1 that counts as "same scale" (default 0.15).

    Returns
    -------
    float
        > 1 upsamples, < 1 downsamples.

    Raises
    ------
    ValueError
        If a period is not positive.

    Examples
    --------
    >>> resample_factor(72.5, 290.0), resample_factor(300.0, 290.0)
    (4.0, 1.0)
    """
    m, t = float(period_px), float(model_period_px)
    if not (m > 0 and t > 0 and math.isfinite(m) and math.isfinite(t)):
        raise ValueError(f"periods must be positive (measured {period_px}, model {model_period_px})")
    ratio = t / m
    if abs(math.log(ratio)) <= math.log1p(max(0.0, float(tolerance))):
        return 1.0
    return ratio


def resampled_shape(shape, factor: float) -> tuple[int, int]:
    """(rows, cols) of an image of `shape` zoomed by `factor`: each side round(n·factor),
    at least 1.

    Examples
    --------
    >>> resampled_shape((1024, 1440), 0.35)
    (358, 504)
    """
    f = float(factor)
    return (max(1, int(round(int(shape[0]) * f))), max(1, int(round(int(shape[1]) * f))))


@dataclass(frozen=True)
class Resampling:
    """The map between an input image and its resampled copy.

    Pixel-area convention: the two images cover the same area, so with pixel centres at
    integer indices, x_in = (x_out + 0.5) · in_cols / out_cols − 0.5 (rows likewise); with
    pixel-corner coordinates (pixel (r, c) covers [c, c + 1)), x_in = x_out · in_cols /
    out_cols. The per-axis factors out/in differ slightly from the requested factor because
    the shape is rounded.

    Attributes
    ----------
    in_shape, out_shape : (rows, cols)
    """

    in_shape: tuple[int, int]
    out_shape: tuple[int, int]

    @property
    def factors_rc(self) -> tuple[float, float]:
        """(out_rows / in_rows, out_cols / in_cols)."""
        return (self.out_shape[0] / self.in_shape[0], self.out_shape[1] / self.in_shape[1])

    @property
    def identity(self) -> bool:
        """True when nothing was resampled."""
        return tuple(self.in_shape) == tuple(self.out_shape)

    def to_input_xy(self, points_xy, corner: bool = False) -> np.ndarray:
        """(x, y) px points of the resampled image → the input image's (x, y) px.

        Parameters
        ----------
        points_xy : array-like n×2 (or 2), (x, y) = (col, row) px
        corner : bool
            False: pixel centres at integer indices; True: pixel-corner coordinates.

        Returns
        -------
        numpy.ndarray
            float64, same shape as given.

        Examples
        --------
        >>> Resampling((100, 200), (50, 100)).to_input_xy([[0.0, 0.0], [49.5, 24.5]])
        array([[ 0.5,  0.5],
               [99.5, 49.5]])
        """
        p = np.asarray(points_xy, dtype=np.float64)
        fr, fc = self.factors_rc
        scale = np.array([1.0 / fc, 1.0 / fr])
        if corner:
            return p * scale
        return (p + 0.5) * scale - 0.5

    def to_output_xy(self, points_xy, corner: bool = False) -> np.ndarray:
        """Inverse of `to_input_xy`: input (x, y) px → resampled (x, y) px."""
        p = np.asarray(points_xy, dtype=np.float64)
        fr, fc = self.factors_rc
        scale = np.array([fc, fr])
        if corner:
            return p * scale
        return (p + 0.5) * scale - 0.5


def resample(image: np.ndarray, factor: float, overwrite: bool = False) -> tuple[np.ndarray, Resampling]:
    """Zoom a 2-D image by `factor` (pixel-area convention of `Resampling`).

    Downsampling low-pass filters first (Gaussian, σ = (1/factor − 1)/2 px of the input, as
    scikit-image's anti-aliasing), then interpolates bilinearly; upsampling interpolates
    bilinearly (no ringing, monotone: intensities stay within the input's range). Factor 1
    (or a shape that rounds to the input's) returns the input unchanged (as float32).

    Parameters
    ----------
    image : 2-D array [row, col], any real dtype
    factor : float > 0
    overwrite : bool
        True: the caller lets the image go afterwards, so a float32 image (writable,
        C-contiguous) is low-pass filtered in place (no second whole-image float32 array
        while downsampling: −4 bytes/px of the input; scipy's 1-D filters buffer each line
        before writing it, so the values are those of the filtered copy, bit for bit, tested)
        and is garbage afterwards.

    Returns
    -------
    (numpy.ndarray, Resampling)
        float32 [row, col] of `resampled_shape(image.shape, factor)`, and the point map.

    Raises
    ------
    ValueError
        If the image is not 2-D or the factor is not positive and finite.

    Examples
    --------
    >>> out, rs = resample(np.ones((4, 6)), 0.5)
    >>> out.shape, rs.factors_rc
    ((2, 3), (0.5, 0.5))
    """
    from scipy import ndimage as ndi

    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"resample needs a 2-D image, got shape {a.shape}")
    f = float(factor)
    if not (math.isfinite(f) and f > 0):
        raise ValueError(f"resample factor must be positive, got {factor}")
    shape = (int(a.shape[0]), int(a.shape[1]))
    out_shape = resampled_shape(shape, f)
    rs = Resampling(shape, out_shape)
    x = np.asarray(a, dtype=np.float32)
    if rs.identity:
        return x, rs
    fr, fc = rs.factors_rc
    sig = (max(0.0, (1.0 / fr - 1.0) / 2.0), max(0.0, (1.0 / fc - 1.0) / 2.0))
    if sig[0] > 0 or sig[1] > 0:
        in_place = overwrite and x is a and x.dtype == np.float32 and x.flags.writeable and x.flags.c_contiguous
        x = ndi.gaussian_filter(x, sig, mode="nearest", output=x if in_place else None)
    out = ndi.zoom(x, (fr, fc), order=1, mode="nearest", grid_mode=True)
    if out.shape != out_shape:  # zoom rounds the same way; guard against float edge cases
        raise RuntimeError(f"resample produced {out.shape}, expected {out_shape}")
    return out.astype(np.float32, copy=False), rs


@dataclass(frozen=True)
class ScaleDecision:
    """What the scale stage decided for one image.

    Attributes
    ----------
    factor : float
        Zoom applied before the U-Net (1.0: not resampled).
    period_px : float or None
        Lattice period in the input image the factor was computed from, px.
    source : str
        "measured" (the image's own lattice), "metadata" (pixel size × hole pitch),
        "none" (no confident lattice and no metadata: not resampled), or `WEAK_SOURCE`
        (`weak_decision`: a lattice below the confident quality, tried because the image as
        it is gave no holes).
    measured : LatticeScale or None
        The measurement (always attempted).
    expected_px : float or None
        Period from pixel size and hole pitch, px, when both were given.
    agrees : bool or None
        Whether measured and expected periods agree within CROSS_CHECK_TOLERANCE (None when
        there is nothing to compare).
    note : str
        One line for logs / json-full: how the period was found, and any disagreement.
    """

    factor: float
    period_px: float | None
    source: str
    measured: LatticeScale | None
    expected_px: float | None = None
    agrees: bool | None = None
    note: str = ""

    def as_dict(self) -> dict:
        """JSON-ready summary."""
        return {"factor": round(self.factor, 6), "period_px": None if self.period_px is None else round(self.period_px, 2),
                "source": self.source, "measured": None if self.measured is None else self.measured.as_dict(),
                "expected_period_px": None if self.expected_px is None else round(self.expected_px, 2),
                "agrees": self.agrees, "note": self.note}


def cross_check(measured: LatticeScale | None, expected_px: float,
                tolerance: float = CROSS_CHECK_TOLERANCE) -> tuple[bool | None, str]:
    """Compare a measured lattice with the period expected from pixel size and hole pitch.

    Parameters
    ----------
    measured : LatticeScale or None
    expected_px : float
        px.
    tolerance : float
        Relative agreement needed (default 0.10).

    Returns
    -------
    (bool or None, str)
        agrees (None when there is no confident measurement) and a one-line note; a ratio
        near √2 or 2 is named (a diagonal or doubled lattice: wrong pitch, or a wrong
        measurement).

    Examples
    --------
    >>> s = LatticeScale(((290.0, 0.0), (0.0, 290.0)), 290.0, 0.0, 20.0, 3.5, "autocorrelation", 3)
    >>> cross_check(s, 300.0)[0], cross_check(s, 205.0)[1]
    (True, 'measured 290.0 px vs expected 205.0 px (ratio 1.41, about sqrt 2): disagree')
    """
    if measured is None or not measured.confident:
        return None, f"expected {expected_px:.1f} px; no confident lattice measured to check it"
    ratio = measured.period_px / float(expected_px)
    agrees = abs(math.log(ratio)) <= math.log1p(tolerance)
    name = ""
    for value, label in ((math.sqrt(2), "sqrt 2"), (2.0, "2"), (1 / math.sqrt(2), "1/sqrt 2"), (0.5, "1/2")):
        if abs(ratio / value - 1) < 0.05:
            name = f", about {label}"
    return agrees, (f"measured {measured.period_px:.1f} px vs expected {expected_px:.1f} px "
                    f"(ratio {ratio:.2f}{name}): {'agree' if agrees else 'disagree'}")


def weak_decision(decision: ScaleDecision, model_period: float | None,
                  tolerance: float = SAME_SCALE_TOLERANCE) -> ScaleDecision | None:
    """A second chance for an image whose lattice was measured but not confidently: the
    decision from that measurement (source `WEAK_SOURCE`), for the pipeline to try when the
    image as it is gave no holes. None when ``decision`` did not come out "none", when the
    measurement is missing, below `WEAK_QUALITY` or under MIN_PERIODS repeats, or when it
    would not resample (factor 1).

    Parameters
    ----------
    decision : ScaleDecision
        What `choose_scale` decided.
    model_period : float or None
        px the model set expects; None: None.
    tolerance : float
        Same-scale band of `resample_factor`.

    Returns
    -------
    ScaleDecision or None

    Examples
    --------
    >>> m = LatticeScale(vectors_xy=((26.6, 0.0), (0.0, 26.6)), period_px=26.6, orientation_deg=0.0,
    ...                  quality=4.7, periods_across=7.8, method="autocorrelation", bin_factor=1)
    >>> d = choose_scale(np.zeros((8, 8)), 275.0, measured=m)
    >>> d.source, d.factor
    ('none', 1.0)
    >>> w = weak_decision(d, 275.0, 0.1)
    >>> w.source, round(w.factor, 2), round(w.period_px, 1)
    ('measured (weak)', 10.34, 26.6)
    >>> weak_decision(d, None) is None, weak_decision(choose_scale(np.zeros((8, 8)), 26.6, measured=m), 26.6) is None
    (True, True)
    """
    m = decision.measured
    if (decision.source != "none" or m is None or model_period is None or m.quality < WEAK_QUALITY
            or m.periods_across < MIN_PERIODS):
        return None
    factor = resample_factor(m.period_px, model_period, tolerance)
    if factor == 1.0:
        return None
    return ScaleDecision(factor, m.period_px, WEAK_SOURCE, m, decision.expected_px, decision.agrees,
                         f"measured {m.period_px:.1f} px ({m.method}, quality {m.quality:.1f}: below the confident "
                         f"{CONFIDENT_QUALITY:g}, tried because the image as it is gave no holes); "
                         f"model {float(model_period):.0f} px, factor {factor:.4g}")


def choose_scale(image: np.ndarray, model_period: float | None, *, pixel_size_nm: float | None = None,
                 hole_pitch_um: float | None = None, measured: LatticeScale | None = None,
                 tolerance: float = SAME_SCALE_TOLERANCE) -> ScaleDecision:
    """The scale stage: measure the image's hole lattice and choose the zoom factor that
    brings it to the model set's period.

    With both `pixel_size_nm` and `hole_pitch_um` the period from the metadata is used and
    the measurement only cross-checks it; otherwise a confident measurement is used; else
    the image is not resampled.

    Parameters
    ----------
    image : 2-D array [row, col]
    model_period : float or None
        px the model set expects (`model_period_px`); None: never resample.
    pixel_size_nm, hole_pitch_um : float or None
        nm/px and µm (both needed for the metadata path).
    measured : LatticeScale, optional
        A measurement already made (skips `measure_hole_lattice`).
    tolerance : float
        Same-scale band of `resample_factor`.

    Returns
    -------
    ScaleDecision

    Raises
    ------
    ValueError
        For a non-positive pixel size or hole pitch, or a non-2-D image.

    Examples
    --------
    A synthetic R2/2 film at 20 nm/px has a 200 px hole lattice: for a model trained at
    400 px the image is upsampled ×2, from the measurement or from the metadata
    ((2 + 2) µm / 20 nm = 200 px), which the measurement then confirms; noise has no
    confident lattice and is left alone:

    >>> from ptolemy_rt import synthetic
    >>> image, _ = synthetic.medmag_image(0, (512, 512), pixel_nm=20.0, film="R2/2", angle_deg=0.0, tilt_deg=0.0)
    >>> d = choose_scale(image, 400.0, tolerance=0.1)
    >>> round(d.factor, 2), round(d.period_px), d.source
    (2.0, 200, 'measured')
    >>> d = choose_scale(image, 400.0, pixel_size_nm=20.0, hole_pitch_um=4.0, tolerance=0.1)
    >>> d.factor, d.period_px, d.source, d.agrees
    (2.0, 200.0, 'metadata', True)
    >>> d = choose_scale(np.random.default_rng(0).standard_normal((256, 256)), 400.0)
    >>> d.factor, d.source, d.note.endswith("not resampled")
    (1.0, 'none', True)
    """
    m = measured if measured is not None else measure_hole_lattice(image)
    expected = None
    agrees = None
    if pixel_size_nm is not None and hole_pitch_um is not None:
        expected = expected_period_px(pixel_size_nm, hole_pitch_um)
        agrees, note = cross_check(m, expected)
        period, source = expected, "metadata"
    elif m is not None and m.confident:
        period, source = m.period_px, "measured"
        note = f"measured {m.period_px:.1f} px ({m.method}, quality {m.quality:.1f})"
    else:
        period, source = None, "none"
        note = ("no confident hole lattice measured" + ("" if m is None else f" (quality {m.quality:.1f},"
                f" {m.periods_across:.1f} periods)") + ": not resampled")
    if period is None or model_period is None:
        return ScaleDecision(1.0, period, source, m, expected, agrees, note)
    factor = resample_factor(period, model_period, tolerance)
    return ScaleDecision(factor, period, source, m, expected, agrees,
                         note + f"; model {float(model_period):.0f} px, factor {factor:.4g}")
