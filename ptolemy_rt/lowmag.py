"""Low-magnification pipeline: grid squares in an atlas (docs/ALGORITHM.md#lowmag).

Stages (timed in `SquareResult.timings_s`): load → mixture (mask) → regions (6×6 dilation,
8-connected labels) → hulls (convex hulls, area filter, brightness) → angle (grid angle) →
rotate (rotated frame; the cubic rotation itself is done per crop block in "crops", same
pixels as rotating the whole image) → crops (boxes, crop preparation) → classify.

Coordinates: arrays are [row, col]; polygons and boxes use pixel-corner coordinates (pixel
(r, c) covers [r, r+1) × [c, c+1)); output points are (x, y) = (col, row), px, in the input
frame. Unlike the published tool (which rotates points about (m//2, m//2), m = min(H, W)),
the point maps are exact for non-square images (see `geometry`).

Crop sampling (`crop_grid`): "image" (default, the published tool) cuts each crop from the
whole-image rotated frame, rotated index rows trunc(r_min) .. trunc(r_max) − 1 (cols alike),
so the sampling lattice's sub-pixel phase depends on the image's size and on where it was
cut. "square" samples crop pixel (i, j) at rotated-frame index coordinates (r_min + i,
c_min + j), i < round(r_max − r_min), j < round(c_max − c_min) (the box corner in
pixel-corner coordinates used as an index origin, exactly as "image" uses trunc(r_min)):
the lattice moves with the square, so its crop does not depend on the image's size or cut
position (given the same normalisation constants, which are image-wide, docs/ALGORITHM.md#lowmag-crops; near a
cut edge the window's spline prefilter differs by ~0.268^distance: measured ≤ 2e-5 of the
normalised values from 3 px inside a cut on). The crop size is round(), not trunc(), of the
box extent: the nearest whole number of pixels (a size jumps only where an extent crosses a
half pixel; on the example the extents are ≥ 0.0097 px from one, far above the ~1e-5 px
by which a cut moves the boxes).

Compat modes: with ``compat="robust"`` (default) the zero level, the region screen and
the dark-square pass run (docs/ALGORITHM.md#lowmag-zero-level, #lowmag-screen, #lowmag-dark):
offset or zero-mean images give the squares of the raw counts, background and large
border regions are rejected (listed in `SquareResult.regions`), dark squares come after the
bright ones. On counts-from-0 atlases without background or dark squares (the README
example) every number is the published one; ``compat="published"`` skips those stages.

Normalisation (`norm`): every crop is normalised as (crop − mean) / std, by default with the
mean and standard deviation of all square-mask pixels of the image (docs/ALGORITHM.md#lowmag-crops), so the same
square scores differently in a cut-out or tile holding other squares. `find_squares(...,
norm=(mean, std))` uses given constants instead (input pixel units), e.g. the full atlas's
(`SquareResult.norm`): with crop_grid "square" a cut-out's squares then score as in the atlas.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import geometry, io, mixture, regions
from .core import Stopwatch, clamp_negatives, mean_std, row_strips, targets_from_boxes
from .options import LowmagOptions, pipeline_options
from .results import Square, SquareResult

DILATE_PX = 6  # box dilation before labelling (docs/ALGORITHM.md#lowmag-regions)
MIN_AREA_PX2 = 100.0  # polygons of area ≤ this are dropped (docs/ALGORITHM.md#lowmag-regions)
CROP_PX = 240  # classifier input side (docs/ALGORITHM.md#square-classifier, #lowmag-crops)
#: A mask is used only when the pixel histogram has a valley between the dark and the bright
#: population (`mixture.valley_ratio` below this); unimodal or flat histograms (pure noise,
#: smooth gradients) hold no squares. Not in the published tool, which returns noise regions.
MAX_VALLEY_RATIO = 0.75
MODEL_KEY = "square_classifier"


@dataclass
class SquareCandidates:
    """Everything `find_squares` computes before scoring (geometry only, no models).

    pixels: float32 [row, col] input minus the zero level `zero` (0 unless robust mode found
    an offset, docs/ALGORITHM.md#lowmag-zero-level), negatives → 0: the pipeline's pixel units.
    mask: bool [row, col] mixture mask.
    hulls: kept polygons, K×2 (row, col), pixel-corner coordinates, input frame.
    brightness: mean pixel value per candidate (input units); candidates are the bright ones
    (the first n_bright) then the dark ones (docs/ALGORITHM.md#lowmag-dark, robust mode).
    angle_deg: grid angle (degrees). rotated_shape: (rows, cols) of the rotated frame, px.
    rotated: float32 rotated image, made on first access only (the pipeline rotates just
    the crop blocks, `geometry.rotate_window`, which gives the same pixels).
    boxes: n×4 float (row_min, col_min, row_max, col_max) in the rotated frame, px.
    crop_bounds: n×4 int (r0, c0, r1, c1) of the crops in the rotated frame (truncated, clipped).
    vertices: n×4×2 (x, y) = (col, row) box corners in the input frame, px.
    norm: (mean, std) of `pixels` inside the mask (robust mode: less rejected regions), in
    the pipeline's units (input units − zero).
    """

    pixels: np.ndarray
    mask: np.ndarray
    hulls: list[np.ndarray]
    brightness: np.ndarray
    angle_deg: float | None = None
    rotated_shape: tuple[int, int] | None = None
    integer_valued: bool = False
    boxes: np.ndarray | None = None
    crop_bounds: np.ndarray | None = None
    vertices: np.ndarray | None = None
    norm: tuple[float, float] = (0.0, 1.0)
    reason: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    #: robust mode: zero level subtracted from the input (input units; 0.0 = none), the
    #: number of bright candidates (the first n_bright; the rest come from the dark pass),
    #: the rejected regions ({region, bbox [x0, y0, x1, y1] px, area px², reason}) and the
    #: dark pass's split ({threshold (pixels units), valley_ratio, used, count}) or None.
    zero: float = 0.0
    n_bright: int = 0
    rejected: list = field(default_factory=list)
    dark: dict | None = None
    robust: bool = False

    _rotated: np.ndarray | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return 0 if self.boxes is None else len(self.boxes)

    @property
    def rotated(self) -> np.ndarray | None:
        """Whole rotated image (float32 [row, col]), computed on first access; None before
        the grid angle is known."""
        if self._rotated is None and self.angle_deg is not None:
            rot = geometry.rotate_image(self.pixels, self.angle_deg)
            if self.integer_valued:
                np.rint(rot, out=rot)
            self._rotated = rot
        return self._rotated

    def rotated_block(self, bounds) -> np.ndarray:
        """`rotated[r0:r1, c0:c1]` for bounds (r0, c0, r1, c1), px, without rotating the
        whole image (float32; integer-valued inputs rounded as in `rotated`)."""
        if self._rotated is not None:
            r0, c0, r1, c1 = bounds
            return self._rotated[r0:r1, c0:c1]
        blk = geometry.rotate_window(self.pixels, self.angle_deg, bounds)
        if self.integer_valued:
            np.rint(blk, out=blk)
        return blk

    def square_block(self, i: int) -> np.ndarray:
        """Crop i on its own box's grid (crop_grid "square"): pixel (j, k) is the rotated image
        at rotated-frame index coordinates (r_min + j, c_min + k), px, shape (round(r_max −
        r_min), round(c_max − c_min)); cubic, 0 outside the input, float32, integer-valued
        inputs rounded as in `rotated`. Not clipped to the rotated frame."""
        r_min, c_min, r_max, c_max = (float(v) for v in self.boxes[i])
        shape = (int(np.rint(r_max - r_min)), int(np.rint(c_max - c_min)))
        blk = geometry.rotate_window_at(self.pixels, self.angle_deg, (r_min, c_min), shape)
        if self.integer_valued:
            np.rint(blk, out=blk)
        return blk




def fit_to_side(crop: np.ndarray, side: int = CROP_PX) -> np.ndarray:
    """Centre-crop or zero-pad a 2-D [row, col] crop to side×side (docs/ALGORITHM.md#lowmag-crops).

    Per axis the crop's middle index s//2 lands on the output's middle index side//2: a
    shorter crop is placed at offset side//2 − s//2 (an odd margin puts the extra pixel
    *before* the crop), a longer one keeps [s//2 − side//2, s//2 − side//2 + side). This
    placement reproduces the published scores (the other choice moves them by up to 0.03).

    Parameters
    ----------
    crop : numpy.ndarray
        2-D [row, col].
    side : int
        Output side, px (default CROP_PX = 240).

    Returns
    -------
    numpy.ndarray
        A new float32 side×side array.

    Examples
    --------
    A 3×3 crop in 6×6: its middle (1, 1) lands on (3, 3), two zero rows/columns before it:

    >>> fit_to_side(np.ones((3, 3)), 6).sum(axis=1).tolist(), bool(fit_to_side(np.ones((3, 3)), 6)[2:5, 2:5].all())
    ([0.0, 0.0, 3.0, 3.0, 3.0, 0.0], True)
    >>> fit_to_side(np.arange(25.0).reshape(5, 5), 2).tolist()  # middle 2×2 of a 5×5: rows/cols 1, 2
    [[6.0, 7.0], [11.0, 12.0]]
    >>> fit_to_side(np.ones((300, 100))).shape
    (240, 240)
    """
    out = np.zeros((side, side), np.float32)
    src = []
    dst = []
    for s in crop.shape:
        off = s // 2 - side // 2
        if off >= 0:
            src.append(slice(off, off + side))
            dst.append(slice(0, side))
        else:
            src.append(slice(0, s))
            dst.append(slice(-off, -off + s))
    out[dst[0], dst[1]] = crop[src[0], src[1]]
    return out


def _region_sums(runs: regions.RegionRuns, px: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per label 0..n: pixel count and float64 sum of px (input units), in row strips (the
    labels of each strip painted from the runs: no whole label image)."""
    counts = np.zeros(n + 1, np.int64)
    sums = np.zeros(n + 1, np.float64)
    for sl, lab in runs.strips():
        lab = lab.ravel()
        counts += np.bincount(lab, minlength=n + 1)
        sums += np.bincount(lab, weights=px[sl].ravel(), minlength=n + 1)
    return counts, sums


def _minus_zero(pixels: np.ndarray, zero: float, out: np.ndarray | None = None) -> np.ndarray:
    """float32 (pixels − zero), negatives → 0: `clamp_negatives(float64(pixels) − zero)`,
    value for value (its float32 cast, then max(·, 0)), in row strips: no whole float64 copy.
    out: a float32 array of pixels' shape to write to (pixels itself: in place); None: a new one."""
    a = np.asarray(pixels)
    out = np.empty(a.shape, np.float32) if out is None else out
    if a.ndim != 2:
        out[...] = clamp_negatives(np.asarray(a, np.float64) - zero)
        return out
    for sl in row_strips(*a.shape):
        v = np.asarray(a[sl], np.float64) - zero
        out[sl] = v
        np.maximum(out[sl], 0, out=out[sl])
    return out

def published_box_shift(angle_deg: float, in_shape, out_shape) -> np.ndarray:
    """(row, col) px that the published tool's point map adds to the exact one
    (`geometry.rotate_points`) for a rotation by angle_deg from in_shape to out_shape
    (docs/ALGORITHM.md#lowmag-boxes): it rotates about (m//2, m//2), m = min(rows, cols), in
    both frames, instead of the exact centres shape / 2. Zero for square images with an even
    side whose rotated frame has an even side too (the README atlas: 1024² → 1448²).

    Parameters
    ----------
    angle_deg : float
        Grid angle, degrees.
    in_shape, out_shape : sequence of int
        (rows, cols) of the input and of the rotated frame.

    Returns
    -------
    ndarray, float64, (2,)
        Shift (row, col), px.

    Examples
    --------
    >>> published_box_shift(45.0, (1024, 1024), (1448, 1448)).tolist()
    [0.0, 0.0]

    A 100×300 atlas turned by 90°: the published boxes lie 200 px too high in the 300×100
    rotated frame (its crops miss the squares; the vertices, mapped back by the same map,
    are right).

    >>> (published_box_shift(90.0, (100, 300), (300, 100)).round(9) + 0.0).tolist()
    [-200.0, 0.0]
    """
    i = np.asarray(in_shape[:2], dtype=np.float64)
    o = np.asarray(out_shape[:2], dtype=np.float64)
    ci_pub = np.full(2, float(int(min(i)) // 2))
    co_pub = np.full(2, float(int(min(o)) // 2))
    return geometry.rotate_points(i / 2.0 - ci_pub, angle_deg, (0, 0), (0, 0)) + co_pub - o / 2.0


#: Robust mode (docs/ALGORITHM.md#lowmag-screen): a region covering more than this share of the
#: image is background; a region touching the border with a polygon area above
#: BORDER_AREA_RATIO × the median square area is background or rim, never a square.
BACKGROUND_FRACTION = 0.5
BORDER_AREA_RATIO = 4.0
#: Dark-square pass (docs/ALGORITHM.md#lowmag-dark): pixels within a NEAR_BRIGHT_PX box of a
#: bright region are its edge ramp, not a dark square; a dark region is kept when its polygon
#: area is within DARK_AREA_RANGE × the median bright square area and its pixels fill at
#: least DARK_MIN_FILL of its polygon.
NEAR_BRIGHT_PX = 2 * DILATE_PX + 1
#: A candidate of the bright mask whose mean value above the zero level is below this share
#: of the median candidate's is a dark square too (ranked with the dark pass's).
DARK_BRIGHTNESS_RATIO = 0.4
#: ... and so is one whose mask pixels fill less than this share of its polygon (a dark
#: square whose brightest noise pixels passed the threshold, joined by the dilation).
SPARSE_FILL = 0.5
DARK_AREA_RANGE = (0.3, 2.5)
DARK_MIN_FILL = 0.6
#: The dark pass keeps only pixels at least this many times the bar level (the median value,
#: above the zero level, of the non-mask pixels beside the bright squares): a split of the
#: histogram below the bright squares that falls between the rim / background and the bars
#: must not turn the bars into squares.
DARK_CONTRAST = 2.0


def _touches_border(hull: np.ndarray, shape) -> bool:
    """Whether a (row, col) pixel-corner polygon reaches the image border (shape: rows, cols)."""
    return bool(hull[:, 0].min() <= 0 or hull[:, 1].min() <= 0 or hull[:, 0].max() >= shape[0]
                or hull[:, 1].max() >= shape[1])


def _bbox_xy(hull: np.ndarray) -> list[float]:
    """[x0, y0, x1, y1] px (pixel corners) of a (row, col) polygon."""
    return [float(hull[:, 1].min()), float(hull[:, 0].min()), float(hull[:, 1].max()), float(hull[:, 0].max())]


def screen_regions(hulls: list[np.ndarray], areas: np.ndarray, shape) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Which polygons can be squares in the robust pipeline (docs/ALGORITHM.md#lowmag-screen).

    Parameters
    ----------
    hulls : list of (K, 2) (row, col) pixel-corner polygons, px (regions above the area floor).
    areas : (n,) their areas, px².
    shape : (rows, cols) of the image, px.

    Returns
    -------
    keep : bool (n,), True for polygons that stay candidates.
    reasons : [(index into hulls, reason)] for the others, in index order.

    Examples
    --------
    Three 10×10 squares and a region of half a 100×100 image touching its border:

    >>> sq = lambda r, c, s: np.array([[r, c], [r + s, c], [r + s, c + s], [r, c + s]], float)
    >>> hulls = [sq(10, 10, 10), sq(10, 40, 10), sq(40, 10, 10), sq(0, 60, 40)]
    >>> keep, why = screen_regions(hulls, np.array([100.0, 100.0, 100.0, 1600.0]), (100, 100))
    >>> keep.tolist(), why
    ([True, True, True, False], [(3, 'touches the border and area 1600 px² > 4 × the median square area (100 px²)')])
    """
    n = len(hulls)
    keep = np.ones(n, bool)
    reasons: list[tuple[int, str]] = []
    if n == 0:
        return keep, reasons
    total = float(shape[0]) * float(shape[1])
    border = np.array([_touches_border(h, shape) for h in hulls])
    inner = areas[~border & (areas <= BACKGROUND_FRACTION * total)]
    pool = inner if len(inner) else areas[areas <= BACKGROUND_FRACTION * total]
    med = float(np.median(pool)) if len(pool) else None
    for i in range(n):
        if areas[i] > BACKGROUND_FRACTION * total:
            keep[i] = False
            reasons.append((i, f"background: area {areas[i]:.0f} px² > {BACKGROUND_FRACTION:g} × the image area"))
        elif border[i] and med is not None and areas[i] > BORDER_AREA_RATIO * med:
            keep[i] = False
            reasons.append((i, f"touches the border and area {areas[i]:.0f} px² > {BORDER_AREA_RATIO:g} × the "
                               f"median square area ({med:.0f} px²)"))
    return keep, reasons


def _dark_regions(px, fit, runs, n, region_ok, bright_areas, shape):
    """The dark-square pass (docs/ALGORITHM.md#lowmag-dark): polygons, their pixel counts and
    sums, the split used, and [(hull, area, reason)] for rejected dark regions."""
    low = mixture.fit_below(fit)
    info = {"threshold": low.threshold, "valley_ratio": low.valley_ratio, "used": False}
    if low.threshold is None or low.valley_ratio > MAX_VALLEY_RATIO or not len(bright_areas):
        return [], np.zeros(0), np.zeros(0), info, []
    info["used"] = True
    big = np.zeros(n + 1, bool)
    big[1:] = region_ok
    seed = runs.lookup(big)
    near = regions.dilate_mask(seed, NEAR_BRIGHT_PX)
    del seed
    ring = np.empty(px.shape, bool)  # the bars beside the bright squares: near & ~mask
    for sl in row_strips(*px.shape):
        np.greater(near[sl], fit.mask[sl], out=ring[sl])
    bar = float(np.median(px[ring])) if ring.any() else 0.0
    del ring
    thr = max(float(low.threshold), DARK_CONTRAST * bar)
    info.update(bar_level=bar, threshold=thr)
    dmask = np.empty(px.shape, bool)
    for sl in row_strips(*px.shape):
        np.greater_equal(px[sl], np.float32(thr), out=dmask[sl])
        dmask[sl] &= ~near[sl]
    del near
    druns = regions.region_runs(dmask, DILATE_PX)
    dn = druns.n
    dhulls = druns.hulls()
    dareas = np.array([regions.polygon_area(h) for h in dhulls])
    counts, sums = _region_sums(druns, px, dn)
    del druns, dmask
    med = float(np.median(bright_areas))
    lo, hi = DARK_AREA_RANGE[0] * med, DARK_AREA_RANGE[1] * med
    keep_h, keep_c, keep_s, rejected = [], [], [], []
    for i in np.nonzero(dareas > MIN_AREA_PX2)[0]:
        h, a, c = dhulls[i], float(dareas[i]), float(counts[i + 1])
        if not lo <= a <= hi:
            why = f"dark region: area {a:.0f} px² outside {DARK_AREA_RANGE[0]:g}-{DARK_AREA_RANGE[1]:g} × the median square area ({med:.0f} px²)"
        elif c < DARK_MIN_FILL * a:
            why = f"dark region: its pixels fill {c / a:.2f} < {DARK_MIN_FILL:g} of its polygon"
        elif _touches_border(h, shape) and a > BORDER_AREA_RATIO * med:
            why = "dark region touches the border"
        else:
            keep_h.append(h)
            keep_c.append(c)
            keep_s.append(float(sums[i + 1]))
            continue
        rejected.append((h, a, why))
    return keep_h, np.array(keep_c), np.array(keep_s), info, rejected


def locate_squares(image, integer_valued: bool | None = None, compat: str = "robust") -> SquareCandidates:
    """Steps 1-7 of docs/ALGORITHM.md#lowmag without the classifier: mask, regions, polygons, grid
    angle, rotated frame, boxes and vertices.

    Parameters
    ----------
    image : str, pathlib.Path, io.LoadedImage or numpy.ndarray
        An MRC path, a loaded image or a 2-D [row, col] array (the caller's array is never
        modified).
    integer_valued : bool or None
        Whether the pixels are integer counts (rounds the rotated crop pixels as the published
        tool); None: as `io` found.
    compat : str
        "published" (docs/ALGORITHM.md#compat-published: the published stages exactly: the
        published integer conversion of the mixture, no valley gate, crops cut with the
        published point map `published_box_shift`) or "robust" (default: also the zero level,
        docs/ALGORITHM.md#lowmag-zero-level, the region screen, #lowmag-screen, and the
        dark-square pass, #lowmag-dark; identical to "published" on counts-from-0 atlases
        without background or dark squares).

    Returns
    -------
    SquareCandidates
        Candidates in region order (row-major); `reason` set and no boxes when none is found.

    Raises
    ------
    InputImageError
        The image cannot be read.

    Examples
    --------
    A synthetic atlas with squares of side 60 px on a 100 px grid (4 fully inside, 5 cut by
    the edge): 9 regions, grid angle 0°, boxes centred on the true squares:

    >>> from ptolemy_rt import synthetic
    >>> image, truth = synthetic.atlas(0, (256, 256), pitch=100.0, angle_deg=0.0, side_fraction=0.6)
    >>> cand = locate_squares(image)
    >>> cand.n, round(cand.angle_deg, 3), cand.reason, cand.vertices.shape
    (9, 0.0, None, (9, 4, 2))
    >>> full = [t.center for t in truth if t.visible_fraction == 1.0]
    >>> centres = cand.vertices.mean(axis=1)  # (x, y) px
    >>> [round(float(np.hypot(*(centres - c).T).min()), 1) for c in full]
    [0.6, 0.6, 0.6, 0.6]
    >>> locate_squares(np.zeros((64, 64)))
    Traceback (most recent call last):
    ...
    ptolemy_rt.errors.InputImageError: <array>: image is constant (every pixel is 0); nothing to find
    """
    sw = Stopwatch()
    loaded = io.as_loaded_image(image)
    if integer_valued is None:
        integer_valued = loaded.integer_valued
    robust = compat != "published"
    zero = mixture.zero_level(loaded.pixels) if robust else 0.0
    # The pixels are this call's own when read from a path or copied from an array, or a
    # LoadedImage marked `scratch`: then the zero level and the clamp are applied in place
    # (no second whole-image array); any other LoadedImage is never modified (a new array).
    own = ((not isinstance(image, io.LoadedImage) or loaded.scratch) and loaded.pixels.dtype == np.float32
           and loaded.pixels.flags.writeable and loaded.pixels.flags.c_contiguous)
    if zero != 0.0:
        # counts above the zero level
        px = _minus_zero(loaded.pixels, zero, out=loaded.pixels if own else None)
        integer_valued = bool(integer_valued) and float(zero).is_integer()
    elif own and loaded.pixels.size and float(loaded.pixels.min()) < 0.0:
        px = loaded.pixels  # docs/ALGORITHM.md#lowmag-clamp, as `clamp_negatives`, in place
        for sl in row_strips(*px.shape):
            np.maximum(px[sl], 0, out=px[sl])
    else:
        px = clamp_negatives(loaded.pixels)  # docs/ALGORITHM.md#lowmag-clamp (a copy: never modify the caller's array)
    del loaded
    sw.lap("load")

    published = compat == "published"
    fit = mixture.fit_mixture(px, integer_valued, compat)
    mask = fit.mask
    sw.lap("mixture")

    runs = regions.region_runs(mask, DILATE_PX)  # row runs: no whole int32 label image
    n = runs.n
    sw.lap("regions")

    hulls_all = runs.hulls()
    areas = np.array([regions.polygon_area(h) for h in hulls_all])
    big = areas > MIN_AREA_PX2
    keep = np.nonzero(big)[0]
    rejected: list[dict] = []
    if robust:
        ok, why = screen_regions([hulls_all[i] for i in keep], areas[keep], px.shape)
        for j, text in why:
            i = keep[j]
            rejected.append({"region": int(i + 1), "bbox": _bbox_xy(hulls_all[i]), "area": float(areas[i]),
                             "reason": text})
        keep = keep[ok]
    counts, sums = _region_sums(runs, px, n)
    bright = sums[keep + 1] / np.maximum(counts[keep + 1], 1) + zero
    hulls = [hulls_all[i] for i in keep]
    dark_info = None
    n_bright = len(hulls)
    if robust and n_bright:
        # dark squares that made it into the bright mask go with the dark pass's
        rel = bright - zero
        fill = counts[keep + 1] / np.maximum(areas[keep], 1.0)
        dk = (rel < DARK_BRIGHTNESS_RATIO * float(np.median(rel))) | (fill < SPARSE_FILL)
        if dk.any():
            idx = np.concatenate([np.nonzero(~dk)[0], np.nonzero(dk)[0]])
            hulls = [hulls[i] for i in idx]
            bright = bright[idx]
            n_bright = int((~dk).sum())
    if robust and mask.any() and fit.valley_ratio <= MAX_VALLEY_RATIO:
        dh, dc, ds, dark_info, drej = _dark_regions(px, fit, runs, n, big, areas[keep], px.shape)
        dark_info["from_mask"] = len(hulls) - n_bright
        for h, a, text in drej:
            rejected.append({"region": None, "bbox": _bbox_xy(h), "area": a, "reason": text})
        if dh:
            hulls = hulls + dh
            bright = np.concatenate([bright, ds / np.maximum(dc, 1) + zero])
        dark_info["count"] = len(hulls) - n_bright
    norm_mask = mask
    gone_ids = [r["region"] for r in rejected if r["region"] is not None]
    if gone_ids:
        # robust: the pixels of rejected regions (background, rim) do not set the constants
        gone = np.zeros(n + 1, bool)
        gone[gone_ids] = True
        norm_mask = runs.lookup(~gone)  # mask & ~gone[labels] (unlabelled pixels: off the mask)
        norm_mask &= mask
    del runs
    sw.lap("hulls")
    tm = sw.timings

    cand = SquareCandidates(px, mask, hulls, bright, timings_s=tm)
    cand.zero = float(zero)
    cand.n_bright = n_bright
    cand.rejected = rejected
    cand.dark = dark_info
    cand.robust = robust
    if not mask.any():
        cand.reason = "the mixture model found no bright (square) pixels"
        return cand
    if fit.valley_ratio > MAX_VALLEY_RATIO and not published:
        cand.reason = (
            "the pixel histogram has no dark/bright valley (valley ratio "
            f"{fit.valley_ratio:.2f} > {MAX_VALLEY_RATIO}): no squares (noise or smooth background?)"
        )
        return cand
    if not hulls:
        cand.reason = (f"no region larger than {MIN_AREA_PX2:g} px² in the mask" if not rejected else
                       f"every region larger than {MIN_AREA_PX2:g} px² was rejected (background, rim or border)")
        return cand

    # grid angle from the bright squares (the dark ones, when there are only dark ones)
    angle = geometry.grid_angle(hulls[:n_bright] if n_bright else hulls)
    sw.lap("angle")

    # Only the crop blocks are rotated, when they are cut (`SquareCandidates.rotated_block`).
    # For integer-valued images the rotated pixels are rounded to integers: the published
    # tool rotates the integer array itself; doing the same keeps the scores within 1e-6.
    rshape = geometry.rotated_shape(px.shape, angle)
    sw.lap("rotate")

    exact = geometry.bounding_boxes(hulls, angle, px.shape, rshape)
    # published: the crops are cut where the published point map puts the boxes; the
    # vertices map back with its inverse, which gives the exact corners again
    shift = published_box_shift(angle, px.shape, rshape) if published else np.zeros(2)
    boxes = exact + np.concatenate([shift, shift])
    rh, rw = rshape
    lo = np.trunc(boxes[:, :2]).astype(np.int64)
    hi = np.trunc(boxes[:, 2:]).astype(np.int64)
    r0 = np.clip(lo[:, 0], 0, rh)
    c0 = np.clip(lo[:, 1], 0, rw)
    r1 = np.clip(hi[:, 0], 0, rh)
    c1 = np.clip(hi[:, 1], 0, rw)
    bounds = np.stack([r0, c0, np.maximum(r1, r0), np.maximum(c1, c0)], axis=1)
    # box corners (float, untruncated) back in the input frame: (row, col) -> (x, y)
    corners = np.stack(
        [exact[:, [0, 1]], exact[:, [2, 1]], exact[:, [2, 3]], exact[:, [0, 3]]], axis=1
    )
    verts_rc = geometry.unrotate_points(corners, angle, px.shape, rshape)
    vertices = verts_rc[..., ::-1].copy()
    mean, std = mean_std(px, norm_mask)
    del norm_mask
    if not std > 0:
        std = 1.0
    cand.angle_deg = float(angle)
    cand.rotated_shape = rshape
    cand.integer_valued = bool(integer_valued)
    cand.boxes = boxes
    cand.crop_bounds = bounds
    cand.vertices = vertices
    cand.norm = (mean, std)
    sw.lap("crops")
    return cand


def prepared_crop(cand: SquareCandidates, i: int, crop_grid: str = "image",
                  norm: tuple[float, float] | None = None) -> np.ndarray:
    """Crop i from the rotated image, fitted to 240×240 then normalised (docs/ALGORITHM.md#lowmag-crops).

    Parameters
    ----------
    cand : SquareCandidates
        From `locate_squares`.
    i : int
        Candidate index.
    crop_grid : str
        "image": `crop_bounds[i]` of the whole rotated image (published); "square":
        `SquareCandidates.square_block(i)` (see the module docstring).
    norm : (float, float) or None
        (mean, std), input units, to normalise with; None = `cand.norm` (the image's
        square-mask pixels).

    Returns
    -------
    numpy.ndarray
        float32 240×240 [row, col].

    Examples
    --------
    The zero padding around a small crop becomes −mean/std after normalising:

    >>> from ptolemy_rt import synthetic
    >>> cand = locate_squares(synthetic.atlas(0, (256, 256), pitch=100.0, angle_deg=0.0, side_fraction=0.6)[0])
    >>> c = prepared_crop(cand, 4)
    >>> mean, std = cand.norm
    >>> c.shape, c.dtype, bool(np.isclose(c[0, 0], -mean / std))
    ((240, 240), dtype('float32'), True)
    >>> bool(np.allclose(prepared_crop(cand, 4, norm=(0.0, 1.0)), fit_to_side(cand.rotated_block(tuple(cand.crop_bounds[4])))))
    True
    """
    if crop_grid == "square":
        blk = cand.square_block(i)
    else:
        blk = cand.rotated_block(tuple(int(v) for v in cand.crop_bounds[i]))
    out = fit_to_side(blk)
    mean, std = cand.norm if norm is None else norm
    out -= np.float32(mean)
    out /= np.float32(std)
    return out


def find_squares(image, options: LowmagOptions | None = None, *, models=None, intermediates: bool = False,
                 **keywords) -> SquareResult:
    """Find and score grid squares in a low-magnification image (docs/ALGORITHM.md#lowmag).

    Parameters
    ----------
    image : path to an MRC file, `io.LoadedImage`, or 2-D [row, col] array.
    options : `options.LowmagOptions`, or None (the defaults: the published behaviour).
    models : model-set name, None (default set) or a loaded `models.ModelSet`.
    intermediates : also return what the pipeline computed on the way, in
        `SquareResult.intermediates`: "candidates" (the `SquareCandidates`), "mask" (bool
        [row, col] mixture mask), "hulls" (kept polygons), "boxes" (n×4 rotated frame),
        "crop_bounds", "vertices" (n×4×2 (x, y)), "crops" ({candidate index: the prepared
        240×240 float32 crop the classifier saw}) and "order" (candidate index of each
        reported square, best first). Candidates are in region order, not score order.
    **keywords : fields of `LowmagOptions`, replacing those of `options`:
        batchnorm: "published" (BatchNorm statistics of all crops of the image together, as
        the published tool) or "running" (stored statistics, each crop alone).
        crop_grid: "image" (crops cut from the whole rotated image, as the published tool)
        or "square" (each crop sampled on its own box's grid: independent of image size and
        cut position; see the module docstring).
        norm: None (crops normalised by the mean / std of the image's square-mask pixels,
        docs/ALGORITHM.md#lowmag-crops) or (mean, std) in input pixel units (finite, std > 0) to use instead,
        e.g. another image's `SquareResult.norm`. The constants used are in
        `SquareResult.norm` (None when no crop was scored) and `norm_source` ("image" |
        "given").
        compat: "robust" (default) or "published" (the published tool exactly: every image
        truncated to integers for the mixture, no valley gate, crops cut where the published
        point map puts them, `published_box_shift`; docs/ALGORITHM.md#compat-published).
        The mode used is `SquareResult.compat`.

    Returns
    -------
    SquareResult: squares sorted by score, highest first (ties: region order, row-major);
    in robust mode the dark squares after all the bright ones (docs/ALGORITHM.md#lowmag-dark),
    and `regions` holds the robust stages' account (None with compat "published").
    Vertices and centres are (x, y) = (col, row), px, in the input frame; area in px².
    An image without squares gives an empty list and `reason`.

    Raises
    ------
    OptionError (a ValueError) for a bad option value, TypeError for an unknown keyword,
    InputImageError (bad image), ModelSetError (model set missing or corrupt).

    Examples
    --------
    A synthetic atlas (100 px grid, squares of side 60 px): all 9 regions are scored, and
    the own set ranks the 4 squares fully inside the image first; their boxes are 60×60 px:

    >>> from ptolemy_rt import synthetic
    >>> image, truth = synthetic.atlas(0, (256, 256), pitch=100.0, angle_deg=0.0, side_fraction=0.6)
    >>> res = find_squares(image, models="ptolemy-rt-synth-v1")
    >>> len(res.squares), res.reason, res.norm_source
    (9, None, 'image')
    >>> full = sorted((round(t.center[0]), round(t.center[1])) for t in truth if t.visible_fraction == 1.0)
    >>> sorted(s.center for s in res.squares[:4]) == full, [round(s.area) for s in res.squares[:4]]
    (True, [3600, 3600, 3600, 3600])
    >>> find_squares(image, models="ptolemy-rt-synth-v1", crop_grid="diagonal")
    Traceback (most recent call last):
    ...
    ptolemy_rt.options.OptionError: crop_grid 'diagonal': must be one of 'image', 'square'

    The compat modes on a synthetic 384×512 atlas with 10 squares, default model set:

    >>> from ptolemy_rt import synthetic
    >>> atlas, truth = synthetic.atlas(5, (384, 512))
    >>> res = find_squares(atlas, compat="published")
    >>> len(truth), len(res.squares), res.compat
    (10, 10, 'published')
    >>> [len(find_squares(atlas, compat=c).squares) for c in ("robust", "published")]
    [10, 10]
    """
    opts = pipeline_options("lowmag", options, **keywords)
    batchnorm, crop_grid, norm = opts.batchnorm, opts.crop_grid, opts.norm
    source = "image" if norm is None else "given"
    from . import classifier
    from .models import ModelSet, load_model_set

    t0 = time.perf_counter()
    mset = models if isinstance(models, ModelSet) else load_model_set(models)
    t_models = time.perf_counter() - t0

    cand = locate_squares(image, compat=opts.compat)
    sw = Stopwatch(dict(cand.timings_s))
    tm = sw.timings
    tm["models"] = t_models
    shape = tuple(int(s) for s in cand.pixels.shape)
    zero = cand.zero
    # constants in the pipeline's pixel units (input − zero level); reported in input units
    norm_px = None if norm is None else (float(norm[0]) - zero, float(norm[1]))
    used = norm if norm is not None else ((float(cand.norm[0]) + zero, float(cand.norm[1])) if cand.n else None)
    info = _regions_report(cand) if cand.robust else None
    kept = {"candidates": cand, "mask": cand.mask, "hulls": cand.hulls, "boxes": cand.boxes,
            "crop_bounds": cand.crop_bounds, "vertices": cand.vertices, "crops": {}} if intermediates else None
    if cand.n == 0:
        return SquareResult([], shape, cand.angle_deg, batchnorm, mset.name, cand.reason, tm, crop_grid,
                            used, source, intermediates=kept, compat=opts.compat, regions=info)

    def get_crop(i: int) -> np.ndarray:
        with sw.stage("crops"):
            c = prepared_crop(cand, i, crop_grid, norm_px)
        if kept is not None:
            kept["crops"][i] = c
        return c

    t1 = time.perf_counter()
    crops_before = tm.get("crops", 0.0)
    nb = cand.n_bright if cand.robust else cand.n
    # bright and dark candidates are scored as two batches: the dark pass never changes
    # the bright squares' scores (published BatchNorm uses the statistics of the batch)
    parts = [np.asarray(classifier.score_crops(mset, MODEL_KEY, nb, get_crop, batchnorm), dtype=np.float64)
             if nb else np.zeros(0)]
    if cand.n > nb:
        parts.append(np.asarray(classifier.score_crops(mset, MODEL_KEY, cand.n - nb, lambda k: get_crop(nb + k),
                                                       batchnorm), dtype=np.float64))
    scores = np.concatenate(parts)
    tm["classify"] = time.perf_counter() - t1 - (tm.get("crops", 0.0) - crops_before)

    b = cand.boxes
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    is_dark = np.arange(cand.n) >= nb
    # best first; the dark squares (docs/ALGORITHM.md#lowmag-dark) after every bright one
    order = np.lexsort((np.arange(cand.n), -scores, is_dark))
    squares = targets_from_boxes(Square, cand.vertices, order, area=areas, brightness=cand.brightness, score=scores)
    if kept is not None:
        kept["order"] = order
    tm["total"] = time.perf_counter() - t0
    return SquareResult(squares, shape, cand.angle_deg, batchnorm, mset.name, None, tm, crop_grid, used, source,
                        intermediates=kept, compat=opts.compat, regions=info)



def _regions_report(cand: SquareCandidates) -> dict:
    """The robust stages' account for ``-f json-full`` (docs/ALGORITHM.md#lowmag-screen)."""
    dark = cand.dark or {}
    return {
        "zero_level": float(cand.zero),
        "bright": int(cand.n_bright),
        "dark": int(len(cand.hulls) - cand.n_bright),
        "dark_threshold": None if dark.get("threshold") is None else float(dark["threshold"]) + float(cand.zero),
        "dark_valley_ratio": None if not dark else float(dark["valley_ratio"]),
        "rejected": list(cand.rejected),
    }
