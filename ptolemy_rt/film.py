"""Holes only on film, and the polarity of the film/hole contrast (robust medium-mag mode;
docs/ALGORITHM.md#medmag-film, #medmag-polarity).

The lattice search fills the whole image with lattice points, including the dark area
around a grid square, grid bars and torn film, where there is no hole. `film_check` measures
the film around every lattice point and drops the points whose surroundings are not film.
`hole_polarity` tells whether the holes are brighter than the film (the normal case: the film
absorbs more than the ice in a hole) or darker (an inverted image), from the pixels alone.

Conventions: arrays are [row, col]; points are (row, col) px in pixel-corner coordinates
(pixel (r, c) covers [r, r+1) × [c, c+1), as `medmag`); a pixel's own position is its centre
(r + 0.5, c + 0.5). Units: px; intensities in the image's own units (every rule compares
levels with differences of levels, so an offset or a positive gain changes nothing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import regions
from .core import row_strips

#: annulus around a lattice point where the film is measured: from HOLE_MARGIN × the hole
#: radius (+1 px) out to OUTER_FRACTION × the lattice spacing
HOLE_MARGIN = 1.25
OUTER_FRACTION = 0.6
#: U-Net mask pixels (holes) are dilated by this fraction of the spacing (+2 px) and left out
MASK_DILATE_FRACTION = 0.04
#: a point is off film when its film level is below F − max(DARK_SPREAD × S, DARK_CONTRAST × C):
#: F the film level of the points whose hole the U-Net saw, S their robust spread, C the
#: hole-to-film contrast |H − F|
DARK_SPREAD = 6.0
DARK_CONTRAST = 0.25
#: ... or, bright side (film missing: torn film, vacuum), above F + max(BRIGHT_SPREAD × S,
#: BRIGHT_CONTRAST × C) when the holes are brighter than the film
BRIGHT_SPREAD = 6.0
BRIGHT_CONTRAST = 0.75
#: a dark area (the frame around a square, grid bars) is a tight cluster of point levels: the
#: lower Otsu class of all the points' levels, accepted when its median D lies at least
#: DARK_CLUSTER_SEP robust sd (of that class) below the film reference's low end P (the 5th
#: percentile of the levels of the points on U-Net holes); then a point is also off film below
#: D + DARK_CLUSTER_FRACTION × (P − D), half way from the dark area to the film
DARK_CLUSTER_SEP = 6.0
DARK_CLUSTER_FRACTION = 0.5
DARK_CLUSTER_REF_PERCENTILE = 5.0
#: the mask dilation of the check runs on the mask binned so that the spacing is ≥ this many px
CHECK_SPACING_BINNED_PX = 40.0
MIN_SEEN = 3  # lattice points on U-Net holes needed for a film reference
MIN_ANNULUS_PX = 12  # fewer usable annulus pixels: the point is kept (nothing to measure)
MIN_DISC_PX = 4  # fewer hole-disc pixels: the dark test uses the annulus alone
#: a point whose hole disc (radius rh) has a median at or above the dark threshold and above
#: the median of the annulus pixels at or above it (the local film) by more than
#: HOLE_LIKE_FRACTION × (H − F) is a hole (when H > F): never off film on the dark side (a
#: hole at the film's edge)
HOLE_LIKE_FRACTION = 0.5
#: `hole_polarity` calls the holes dark only when the cell's mean − median is at least this
#: many robust standard errors from zero (and the lattice is confident)
POLARITY_Z = 3.0


@dataclass
class FilmCheck:
    """Which lattice points lie on the holey film.

    Attributes
    ----------
    on_film : numpy.ndarray of bool, one per point
    level : numpy.ndarray of float64, one per point
        Median intensity of the point's film annulus (image units; NaN: not measured).
    film_level, spread, hole_level : float or None
        F, S and H of the rule (image units), None when there was no reference.
    low, high : float or None
        The dark and bright thresholds (image units; high None: no bright rule).
    dark_level : float or None
        D, the median level of the points of a dark area (`_dark_cluster`), None when the
        levels hold none.
    hole_radius_px, inner_px, outer_px : float
        Estimated hole radius and the annulus radii, px.
    rule : str
        One line: the rule and its thresholds.
    """

    on_film: np.ndarray
    level: np.ndarray = field(default_factory=lambda: np.empty(0))
    film_level: float | None = None
    spread: float | None = None
    hole_level: float | None = None
    hole_radius_px: float = 0.0
    inner_px: float = 0.0
    outer_px: float = 0.0
    low: float | None = None
    high: float | None = None
    dark_level: float | None = None
    rule: str = ""

    def as_dict(self, factor: float = 1.0) -> dict:
        """JSON-ready summary; radii divided by `factor` (the scale stage's zoom) to input px."""
        n_off = int(np.count_nonzero(~self.on_film))
        below = int(np.count_nonzero(~self.on_film & (self.level < (self.low if self.low is not None else -np.inf))))

        def r(v):
            return None if v is None else float(f"{float(v):.6g}")

        return {"lattice_points": int(len(self.on_film)), "off_film": n_off, "off_film_dark": below,
                "off_film_bright": n_off - below, "film_level": r(self.film_level), "film_spread": r(self.spread),
                "hole_level": r(self.hole_level), "dark_below": r(self.low), "bright_above": r(self.high), "dark_level": r(self.dark_level),
                "hole_radius_px": round(self.hole_radius_px / factor, 2),
                "annulus_px": [round(self.inner_px / factor, 2), round(self.outer_px / factor, 2)],
                "rule": self.rule}


def _robust_sd(v: np.ndarray) -> float:
    v = np.asarray(v, dtype=np.float64)
    if v.size == 0:
        return 0.0
    return 1.4826 * float(np.median(np.abs(v - np.median(v))))


def _median_as_float64(v: np.ndarray) -> float:
    """``np.median(v.astype(np.float64))`` of a 1-D array of real values exactly representable
    in float64 (float32, small ints), without the float64 copy: `v` (the caller's own array)
    is partitioned in place and the middle value(s) converted (even n: their float64 sum / 2,
    as numpy's mean of the two). NaN for an empty array.

    Examples
    --------
    >>> v = np.array([3.5, 1.25, 2.0, 7.0], np.float32)
    >>> _median_as_float64(v.copy()) == float(np.median(v.astype(np.float64))), _median_as_float64(v[:3].copy())
    (True, 2.0)
    """
    n = v.size
    if n == 0:
        return float("nan")
    k = n // 2
    if n % 2:
        v.partition(k)
        return float(np.float64(v[k]))
    v.partition([k - 1, k])
    return float((np.float64(v[k - 1]) + np.float64(v[k])) / 2.0)


def hole_radius_px(mask: np.ndarray, points: np.ndarray, spacing_px: float) -> float:
    """Typical hole radius (px): the median equivalent-disc radius sqrt(area / π) of the
    8-connected U-Net mask components under the lattice points, clipped to [0.15, 0.45] ×
    the spacing; 0.3 × the spacing when no point lies on the mask.

    Examples
    --------
    >>> m = np.zeros((40, 40), bool); yy, xx = np.mgrid[:40, :40]
    >>> m[(yy - 20) ** 2 + (xx - 20) ** 2 <= 36] = True
    >>> round(hole_radius_px(m, np.array([[20.5, 20.5]]), 30.0), 1)
    6.0
    """
    import scipy.ndimage as ndi

    d = float(spacing_px)
    m = np.asarray(mask, dtype=bool)
    p = np.floor(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
    ok = (p[:, 0] >= 0) & (p[:, 0] < m.shape[0]) & (p[:, 1] >= 0) & (p[:, 1] < m.shape[1])
    p = p[ok]
    if len(p) == 0 or not m[p[:, 0], p[:, 1]].any():
        return 0.3 * d
    if regions.runs_are_smaller(m):  # row runs: no int32 label image (the same components)
        runs = regions.region_runs(m, 0)
        ids = runs.at(p[:, 0], p[:, 1])
        ids = np.unique(ids[ids > 0])
        areas = runs.areas()[ids]
    else:
        labels, n = ndi.label(m, structure=np.ones((3, 3), dtype=bool))
        ids = labels[p[:, 0], p[:, 1]]
        ids = np.unique(ids[ids > 0])
        areas = np.zeros(n + 1, dtype=np.int64)
        for sl in row_strips(*labels.shape):  # no whole-image int64 copy of the labels
            areas += np.bincount(labels[sl].ravel(), minlength=n + 1)
        areas = areas[ids]
    r = math.sqrt(float(np.median(areas)) / math.pi)
    return float(min(max(r, 0.15 * d), 0.45 * d))


def _dark_cluster(levels: np.ndarray, reference: np.ndarray) -> tuple[float, float] | None:
    """(D, P) when the lattice points' film levels hold a dark area (docs/ALGORITHM.md#medmag-film),
    else None.

    The levels (NaN ignored) split in two by Otsu's threshold; the lower class is a dark area
    when it has at least MIN_SEEN points and its median D lies at least DARK_CLUSTER_SEP
    robust sd (1.4826 × MAD of the class, at least 1e-6 × |P| + 1e-12) below P, the
    DARK_CLUSTER_REF_PERCENTILE-th percentile of `reference` (the levels of the points on
    U-Net holes). The frame around a square or a grid bar is flat and far below the film: a
    tight class well under the whole reference. The film alone (an illumination gradient, a
    thicker-ice corner) splits into classes that overlap the reference: no dark area.
    """
    v = np.asarray(levels, dtype=np.float64)
    v = v[np.isfinite(v)]
    ref = np.asarray(reference, dtype=np.float64)
    ref = ref[np.isfinite(ref)]
    if len(v) < 2 * MIN_SEEN or len(ref) < MIN_SEEN:
        return None
    lower = v[v <= _otsu(v)]
    if len(lower) < MIN_SEEN or len(lower) == len(v):
        return None
    D = float(np.median(lower))
    P = float(np.percentile(ref, DARK_CLUSTER_REF_PERCENTILE))
    sd = max(_robust_sd(lower), 1e-6 * abs(P) + 1e-12)
    if P - D < DARK_CLUSTER_SEP * sd:
        return None
    return D, P


def film_check(image: np.ndarray, mask: np.ndarray, points: np.ndarray, spacing_px: float,
               polarity: int = 1) -> FilmCheck:
    """Lattice points on the holey film (docs/ALGORITHM.md#medmag-film).

    For each lattice point the film level is the median of the pixels of an annulus around
    it (inside HOLE_MARGIN × the hole radius + 1 px excluded, out to OUTER_FRACTION × the
    spacing; U-Net mask pixels, dilated, excluded: neighbouring holes), on the image
    multiplied by `polarity`. The reference is the points whose own pixel is in the U-Net
    mask (the U-Net saw a hole there): film level F (median of their levels), spread S
    (1.4826 × MAD), hole level H (median of the mask pixels within a hole radius of
    those points) and contrast C = |H − F|. A
    point is off film when its level is below F − max(6 S, 0.25 C) (dark: the area around a
    square, a grid bar, thick debris), or, when H > F, above F + max(6 S, 0.75 C) (the film
    itself is missing: torn film). F − 6 S alone misses a dark area when the film's level
    varies across the image (the beam's fall-off over a whole square makes S ~ 15 % of F)
    and F − 0.25 C when the holes are far brighter than the film (gold: C several times F),
    so when the points' levels hold a dark area (a tight class well below the reference,
    `_dark_cluster`, at level D) a point is also off film below D + 0.5 (P − D), P the 5th
    percentile of the reference levels: half way from the dark area to the dimmest film.
    On the dark side a point whose hole disc (radius rh) has a median at or above the dark
    threshold stays when the U-Net saw a hole at it (its pixel in the mask) or when the disc
    is above the film part of its annulus (the pixels at or above the threshold,
    their median) by more than 0.5 (H − F) (when H > F) is a hole and stays: a hole at the
    film's edge, its annulus mostly on the dark area. Fewer than 3 reference points: every point is kept. The
    levels are medians of full-resolution pixels (block means would shrink S and call film
    in an illumination gradient dark); only the mask dilation runs on the mask binned to a
    spacing of ≥ 40 px (speed on upsampled images).

    Parameters
    ----------
    image : 2-D array [row, col], any units
    mask : bool [row, col], the U-Net hole mask of the same image
    points : n×2 (row, col) px, pixel-corner coordinates
    spacing_px : float, the lattice's shortest vector length, px
    polarity : +1 (holes brighter than film) or −1 (inverted image)

    Returns
    -------
    FilmCheck

    Examples
    --------
    A film of level 100 with bright holes on the left half, a dark surround (level 0) on the
    right half: the lattice points on the right are off film.

    >>> img = np.zeros((60, 120)); img[:, :60] = 100.0
    >>> yy, xx = np.mgrid[:60, :120]; pts = np.array([[30.0, c] for c in (15.0, 45.0, 75.0, 105.0)])
    >>> mask = np.zeros(img.shape, bool)
    >>> for r, c in pts[:2]:
    ...     mask |= (yy + 0.5 - r) ** 2 + (xx + 0.5 - c) ** 2 <= 49
    >>> img[mask] = 150.0
    >>> ext = np.array([[10.0, 15.0], [50.0, 45.0]])  # two more film points for the reference
    >>> for r, c in ext:
    ...     m2 = (yy + 0.5 - r) ** 2 + (xx + 0.5 - c) ** 2 <= 49; mask |= m2; img[m2] = 150.0
    >>> film_check(img, mask, np.vstack([pts, ext]), 30.0).on_film.tolist()
    [True, True, False, False, True, True]
    """
    return _film_check(image, mask, points, spacing_px, polarity)


def _dilate(m: np.ndarray, grow: int, b: int) -> np.ndarray:
    """bool mask dilated by `grow` px (3×3 steps); for b > 1 on the mask binned b × b ("any")
    and repeated back, which covers at least the same pixels (up to b − 1 px more)."""
    import scipy.ndimage as ndi

    if not m.any():
        return m
    if b <= 1:
        return ndi.binary_dilation(m, structure=np.ones((3, 3), dtype=bool), iterations=grow)
    h, w = m.shape
    hp, wp = -(-h // b) * b, -(-w // b) * b
    pad = np.zeros((hp, wp), dtype=bool)
    pad[:h, :w] = m
    mb = pad.reshape(hp // b, b, wp // b, b).any(axis=(1, 3))
    mb = ndi.binary_dilation(mb, structure=np.ones((3, 3), dtype=bool), iterations=max(1, -(-grow // b)))
    return np.repeat(np.repeat(mb, b, axis=0), b, axis=1)[:h, :w]


def _film_check(image, mask, points, spacing_px, polarity) -> FilmCheck:
    import scipy.ndimage as ndi

    x = np.asarray(image)
    m = np.asarray(mask, dtype=bool)
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = len(p)
    d = float(spacing_px)
    sign = -1.0 if polarity < 0 else 1.0
    keep_all = FilmCheck(np.ones(n, dtype=bool), np.full(n, np.nan))
    if n == 0 or not (d > 0):
        keep_all.rule = "no lattice points"
        return keep_all
    rh = hole_radius_px(m, p, d)
    r_in = min(HOLE_MARGIN * rh + 1.0, 0.5 * d)
    r_out = max(OUTER_FRACTION * d, r_in + 2.0)
    grow = int(math.ceil(MASK_DILATE_FRACTION * d + 2.0))
    excl = _dilate(m, grow, max(1, int(d / CHECK_SPACING_BINNED_PX)))
    R = int(math.ceil(r_out)) + 1
    h, w = x.shape

    def window(pr, pc):
        """(values × sign, annulus selection, hole-disc selection) around a point, or None."""
        r0, r1 = max(0, int(math.floor(pr)) - R), min(h, int(math.floor(pr)) + R + 1)
        c0, c1 = max(0, int(math.floor(pc)) - R), min(w, int(math.floor(pc)) + R + 1)
        if r0 >= r1 or c0 >= c1:
            return None
        dr = (np.arange(r0, r1) + 0.5 - pr)[:, None]
        dc = (np.arange(c0, c1) + 0.5 - pc)[None, :]
        d2 = dr * dr + dc * dc
        sel = (d2 >= r_in * r_in) & (d2 <= r_out * r_out) & ~excl[r0:r1, c0:c1]
        return sign * np.asarray(x[r0:r1, c0:c1], dtype=np.float64), sel, d2 <= rh * rh

    level = np.full(n, np.nan)
    hole = np.full(n, np.nan)  # median of the hole disc (radius rh) at each point
    for k, (pr, pc) in enumerate(p):
        got = window(pr, pc)
        if got is None:
            continue
        win, sel, dsel = got
        if np.count_nonzero(sel) >= MIN_ANNULUS_PX:
            level[k] = float(np.median(win[sel]))
        if np.count_nonzero(dsel) >= MIN_DISC_PX:
            hole[k] = float(np.median(win[dsel]))
    pi = np.floor(p).astype(np.int64)
    inside = (pi[:, 0] >= 0) & (pi[:, 0] < h) & (pi[:, 1] >= 0) & (pi[:, 1] < w)
    seen = np.zeros(n, dtype=bool)
    seen[inside] = m[pi[inside, 0], pi[inside, 1]]
    seen &= np.isfinite(level)
    out = FilmCheck(np.ones(n, dtype=bool), level, hole_radius_px=rh, inner_px=r_in, outer_px=r_out)
    if np.count_nonzero(seen) < MIN_SEEN:
        out.rule = f"kept every point: fewer than {MIN_SEEN} lattice points on U-Net holes for a film reference"
        return out
    F = float(np.median(level[seen]))
    S = _robust_sd(level[seen])
    # hole level: the mask pixels within a hole radius of the points on U-Net holes (not the
    # whole mask: a U-Net may also mark parts of a dark surround)
    disc = np.zeros(m.shape, dtype=bool)
    rr = int(math.ceil(rh))
    for pr, pc in p[seen]:
        r0, r1 = max(0, int(pr) - rr), min(h, int(pr) + rr + 1)
        c0, c1 = max(0, int(pc) - rr), min(w, int(pc) + rr + 1)
        dr = (np.arange(r0, r1) + 0.5 - pr)[:, None]
        dc = (np.arange(c0, c1) + 0.5 - pc)[None, :]
        disc[r0:r1, c0:c1] |= dr * dr + dc * dc <= rh * rh
    disc &= m
    H = sign * _median_as_float64(np.asarray(x)[disc])  # the disc pixels only: no whole-image float64 copy
    C = abs(H - F)
    low = F - max(DARK_SPREAD * S, DARK_CONTRAST * C)
    dark = _dark_cluster(level, level[seen])
    if dark is not None:
        out.dark_level, p_ref = dark
        low = max(low, out.dark_level + DARK_CLUSTER_FRACTION * (p_ref - out.dark_level))
    high = F + max(BRIGHT_SPREAD * S, BRIGHT_CONTRAST * C) if H > F else None
    lv = np.where(np.isfinite(level), level, F)
    # dark side: a hole at the film's edge, its annulus mostly on the dark area, is still a
    # hole itself (its disc brighter than the film part of its annulus by half the hole
    # contrast); a point on the dark area, or on the film's edge, is not
    off_film = lv < low
    off_film[seen & (hole >= low)] = False  # the U-Net saw a hole there, and it is not dark
    if H > F:
        for k in np.flatnonzero(off_film & np.isfinite(hole) & (hole >= low)):
            win, sel, _ = window(*p[k])
            film_px = win[sel & (win >= low)]  # the annulus's film part: the local film level
            if len(film_px) >= MIN_ANNULUS_PX and hole[k] > float(np.median(film_px)) + HOLE_LIKE_FRACTION * (H - F):
                off_film[k] = False
    if high is not None:
        off_film |= lv > high
    out.on_film = ~off_film
    out.film_level, out.spread, out.hole_level, out.low, out.high = F, S, H, low, high
    out.rule = ("film = median of the annulus (annulus_px) around each lattice point (U-Net holes"
                f" left out); off film below F - max({DARK_SPREAD:g} S, {DARK_CONTRAST:g} |H - F|)"
                + (f" or above F + max({BRIGHT_SPREAD:g} S, {BRIGHT_CONTRAST:g} |H - F|)" if high is not None else "")
                + "; F, S from the points on U-Net holes, H the median of the U-Net holes at those points"
                + (f"; not dark when the hole disc is above that and on a U-Net hole or {HOLE_LIKE_FRACTION:g} (H - F) above the annulus's film part"
                   if H > F else "")
                + ("" if dark is None else f"; a dark area at D (dark_level): also off film below D +"
                   f" {DARK_CLUSTER_FRACTION:g} (P - D), P the {DARK_CLUSTER_REF_PERCENTILE:g}th percentile of those points"))
    return out


@dataclass(frozen=True)
class Polarity:
    """The sign of the hole/film contrast (docs/ALGORITHM.md#medmag-polarity).

    sign: +1 holes brighter than the film (normal), −1 darker (inverted image; the pipeline
    negates it); z: (mean − median) of the lattice-folded cell in robust standard errors
    (positive: bright holes); note: one line for json-full.
    """

    sign: int
    z: float | None
    note: str

    def as_dict(self) -> dict:
        """JSON-ready summary."""
        return {"sign": self.sign, "z": None if self.z is None else round(self.z, 2), "note": self.note}


FOLD_BINS = 24  # phase bins per lattice vector of the folded unit cell


def hole_polarity(image: np.ndarray, vectors_xy, bin_factor: int | None = None) -> Polarity:
    """Whether the holes of a medium-mag image are brighter than its film.

    The image is binned to ≤ 512 px a side and robustly normalised (`scale.robust_normalise`:
    offset and gain drop out, a dark surround is clipped), then folded over the measured hole
    lattice (`vectors_xy`, the scale stage's reduced basis, (x, y) px of the input image):
    every pixel goes to one of 24 × 24 phase bins of the unit cell, and the bins' means form
    the average cell. Holes cover less than half of a cell (π r² / pitch² ≤ 0.47 for every
    common film), so the cell's median is the film and its mean − median has the sign of
    hole − film. The holes are called darker (sign −1) only when that difference is
    below −POLARITY_Z standard errors (its spread estimated from the cell's bin-to-bin
    noise); otherwise +1.

    Parameters
    ----------
    image : 2-D array [row, col]
    vectors_xy : two (x, y) lattice vectors, px of `image`
    bin_factor : int, optional (default: the smallest making the longer side ≤ 512)

    Returns
    -------
    Polarity

    Examples
    --------
    >>> yy, xx = np.mgrid[:256, :256]
    >>> holes = ((yy % 32 - 16) ** 2 + (xx % 32 - 16) ** 2) < 64
    >>> img = np.where(holes, 200.0, 100.0) + np.random.default_rng(0).normal(0, 5, (256, 256))
    >>> hole_polarity(img, ((32.0, 0.0), (0.0, 32.0))).sign, hole_polarity(-img, ((32.0, 0.0), (0.0, 32.0))).sign
    (1, -1)
    """
    from . import scale

    a = np.asarray(image)
    b = int(bin_factor) if bin_factor else max(1, int(math.ceil(max(a.shape) / scale.WORK_SIDE_PX)))
    x = scale.robust_normalise(scale.bin_image(a, b)).astype(np.float64)
    A = np.asarray(vectors_xy, dtype=np.float64).T / b  # columns: lattice vectors (x, y), binned px
    if abs(np.linalg.det(A)) < 1e-6:
        return Polarity(1, None, "degenerate lattice: polarity not measured (holes taken as bright)")
    h, w = x.shape
    yy, xx = np.mgrid[:h, :w]
    uv = np.linalg.solve(A, np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5]).astype(np.float64))
    iu = np.floor((uv[0] % 1.0) * FOLD_BINS).astype(np.int64) % FOLD_BINS
    iv = np.floor((uv[1] % 1.0) * FOLD_BINS).astype(np.int64) % FOLD_BINS
    idx = iu * FOLD_BINS + iv
    cnt = np.bincount(idx, minlength=FOLD_BINS ** 2)
    tot = np.bincount(idx, weights=x.ravel(), minlength=FOLD_BINS ** 2)
    ok = cnt > 0
    if np.count_nonzero(ok) < FOLD_BINS ** 2 // 2:
        return Polarity(1, None, "too few pixels per lattice cell: polarity not measured (holes taken as bright)")
    cell = tot[ok] / cnt[ok]
    diff = float(cell.mean() - np.median(cell))
    # noise of the bin means: robust spread of neighbouring-bin differences / sqrt 2
    grid = np.full(FOLD_BINS ** 2, np.nan)
    grid[ok] = cell
    g = grid.reshape(FOLD_BINS, FOLD_BINS)
    nd = np.concatenate([(g - np.roll(g, 1, 0)).ravel(), (g - np.roll(g, 1, 1)).ravel()])
    noise = _robust_sd(nd[np.isfinite(nd)]) / math.sqrt(2.0)
    se = max(noise * math.sqrt(1.0 / cell.size + 1.0 / cell.size), 1e-12)
    z = diff / se
    if z <= -POLARITY_Z:
        return Polarity(-1, z, f"holes darker than the film (folded cell mean - median {z:.1f} s.e.): image negated")
    return Polarity(1, z, f"holes brighter than the film (folded cell mean - median {z:.1f} s.e.)")


#: `film_region`: the smoothed image must split into two classes at least this many pooled
#: standard deviations apart (a unimodal or evenly graded image splits into ≈ 2.7-3.5)
REGION_SEPARATION = 5.0
REGION_MIN_FRACTION = 0.02  # the non-film class must cover at least this fraction
PERIOD_BINNED_PX = 8.0  # the film region is found on the image binned to this many px per period


@dataclass(frozen=True)
class FilmRegion:
    """Where the holey film is, before the U-Net (docs/ALGORITHM.md#medmag-film-region).

    mask: bool [row, col] of the image, or None when the whole image is film; fraction: the
    film's share of the image; separation: the two classes' distance in pooled standard
    deviations (None when not split); note: one line for json-full.
    """

    mask: np.ndarray | None
    fraction: float
    separation: float | None
    note: str

    def as_dict(self) -> dict:
        """JSON-ready summary (without the mask)."""
        return {"fraction": round(self.fraction, 4),
                "separation": None if self.separation is None else round(self.separation, 2), "note": self.note}


def _otsu(v: np.ndarray, bins: int = 256) -> float:
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        return lo
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    c = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * c)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def _film_is_brighter(texture: np.ndarray, hi: np.ndarray, reach: int) -> bool:
    """Whether the film is the brighter class ``hi`` (bool [row, col] of the binned image) by
    the local contrast ``texture`` (same shape), judged on each class's interior: the pixels
    farther than ``reach`` binned px from the other class (the image border does not count),
    so that the step at the boundary between the classes, which the texture filter turns into
    contrast on both sides of it, does not decide. A class with no interior (a strip narrower
    than 2 × reach, e.g. a grid bar's edge in the picture) is not the film; with neither, the
    whole classes are compared.

    >>> t = np.ones((20, 20)); hi = np.zeros((20, 20), bool); hi[:, 3:] = True
    >>> t[:, :6] = 5.0        # the step at the boundary, as the texture filter makes it
    >>> _film_is_brighter(t, hi, 3), _film_is_brighter(t, hi, 0)
    (True, False)
    """
    import scipy.ndimage as ndi

    st = np.ones((3, 3), bool)
    core_hi = ndi.binary_erosion(hi, st, iterations=reach, border_value=1) if reach > 0 else hi
    core_lo = ndi.binary_erosion(~hi, st, iterations=reach, border_value=1) if reach > 0 else ~hi
    if core_hi.any() and core_lo.any():
        return float(np.median(texture[core_hi])) >= float(np.median(texture[core_lo]))
    if core_hi.any() or core_lo.any():
        return bool(core_hi.any())
    return float(np.median(texture[hi])) >= float(np.median(texture[~hi]))


def film_region(image: np.ndarray, period_px: float | None) -> FilmRegion:
    """The holey film of a medium-mag image, from its pixels alone (robust mode).

    The image is binned so that a lattice period is about 8 px, smoothed by the mean over a
    box of one period (holes and film average out to the film's cell mean) and split in two by
    Otsu's threshold. The split is accepted only when the two classes lie at least
    REGION_SEPARATION pooled standard deviations apart and the smaller covers at least 2 %;
    the film is then the class with the larger local contrast (holes in it: median absolute
    deviation of the binned image from its smoothed version), the other being the flat dark
    area around a square, a grid bar or vacuum. Otherwise the whole image is film.

    Parameters
    ----------
    image : 2-D array [row, col]
    period_px : float or None, the hole lattice period in px of `image` (None: whole image)

    Returns
    -------
    FilmRegion

    Examples
    --------
    >>> yy, xx = np.mgrid[:256, :256]
    >>> img = np.where(((yy % 16 - 8) ** 2 + (xx % 16 - 8) ** 2) < 16, 150.0, 100.0)
    >>> img[:, 160:] = 5.0                                  # a dark area on the right
    >>> r = film_region(img + np.random.default_rng(0).normal(0, 3, img.shape), 16.0)
    >>> abs(r.fraction - 160 / 256) < 0.02, bool(r.mask[100, 50]), bool(r.mask[100, 220])
    (True, True, False)
    >>> film_region(np.where(((yy % 16 - 8) ** 2 + (xx % 16 - 8) ** 2) < 16, 150.0, 100.0), 16.0).mask is None
    True
    """
    import scipy.ndimage as ndi

    from .scale import bin_image

    a = np.asarray(image)
    if period_px is None or not (period_px > 0) or a.size == 0:
        return FilmRegion(None, 1.0, None, "no lattice period: the whole image is film")
    b = max(1, int(period_px / PERIOD_BINNED_PX))
    x = bin_image(a, b).astype(np.float64)
    if min(x.shape) < 4:
        return FilmRegion(None, 1.0, None, "image too small: the whole image is film")
    sig = float(period_px) / b
    sm = ndi.uniform_filter(x, max(1, int(round(sig))), mode="nearest")
    t = _otsu(sm.ravel())
    hi = sm > t
    f_hi = float(hi.mean())
    if min(f_hi, 1.0 - f_hi) < REGION_MIN_FRACTION:
        return FilmRegion(None, 1.0, None, "one class: the whole image is film")
    v_hi, v_lo = sm[hi], sm[~hi]
    pooled = math.sqrt(0.5 * (v_hi.var() + v_lo.var()))
    sep = float((v_hi.mean() - v_lo.mean()) / pooled) if pooled > 0 else math.inf
    if sep < REGION_SEPARATION:
        return FilmRegion(None, 1.0, sep, f"no separate off-film area (classes {sep:.1f} sd apart): the whole image is film")
    blur = 0.25 * sig  # binned px
    texture = np.abs(x - ndi.gaussian_filter(x, blur, mode="nearest"))
    film_is_hi = _film_is_brighter(texture, hi, int(math.ceil(3.0 * blur)) + 1)
    fb = hi if film_is_hi else ~hi
    full = np.zeros(a.shape, dtype=bool)
    up = np.repeat(np.repeat(fb, b, axis=0), b, axis=1)
    full[: up.shape[0], : up.shape[1]] = up
    if up.shape[0] < a.shape[0]:  # rows and columns beyond the last whole block: as their neighbours
        full[up.shape[0]:, : up.shape[1]] = up[-1:, :]
    if up.shape[1] < a.shape[1]:
        full[:, up.shape[1]:] = full[:, up.shape[1] - 1: up.shape[1]]
    frac = float(full.mean())
    return FilmRegion(full, frac, sep, f"film = the {'brighter' if film_is_hi else 'darker'} of two classes {sep:.1f} sd "
                      f"apart in the image smoothed over a period ({frac:.0%} of the image)")
