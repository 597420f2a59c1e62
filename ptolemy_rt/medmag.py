"""Medium-magnification pipeline: holes of a holey-carbon grid square (docs/ALGORITHM.md#medmag).

Data flow (one small function per step, each testable alone):
  load → `normalise` (negatives → 0, zero mean, unit population std) → `pad_for_unet` →
  U-Net logits (`unet.unet_logits`) → `mask_from_logits` (sigmoid > 1e-4, cut back) →
  `holes_from_mask`: regions (6×6 dilation, convex hulls, no area filter) → centroids →
  `lattice.find_lattice` → edge filter → rotate the image so the lattice is axis-aligned →
  one square crop per hole → `score_holes` (hole classifier) → `HoleResult`.

Coordinates: arrays are [row, col]. Internal points are (row, col) float64 in pixel-corner
coordinates (pixel (r, c) covers [r, r+1) × [c, c+1), as `regions` and `geometry` use);
results are (x, y) = (col, row) in the same coordinates of the input image. Units: px, px²,
degrees.

Published conventions reproduced (derived from the reference outputs of the published tool):
- the lattice angle is atan(d_col / d_row) in degrees (quadrant lost); the image is rotated
  by −angle with `geometry.rotate_image`, which makes d axis-aligned;
- points are rotated about the integer centres shape // 2 of both frames
  (`published_frame_shift`); a hole at rotated position o has the crop rows
  floor(o_row) − h … floor(o_row) + h − 1 (same for columns) with h = floor(|d| / 2) − 10, clipped to the rotated image, so crops
  near the image edge are smaller (the example gives 270×270, 270×261 and 270×202);
- the reported vertices are the unclipped box o ± h mapped back, in the order
  (−h, −h), (−h, +h), (+h, +h), (+h, −h) (rotated frame, row/col offsets); area = (2h)²;
- centre = the mean of the vertices truncated to int, as the published JSON (holes are
  ≥ 10 px inside, so this is the array index of the pixel holding the lattice point);
- published BatchNorm regime: when all crops have one shape they form one batch, otherwise
  every crop is scored alone (`score_holes`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

import numpy as np

from . import film, geometry, lattice, regions, scale
from .core import Stopwatch, clamp_negatives, mean_std, row_strips, strip_mean_std, targets_from_boxes
from .options import COMPAT_MODES, LATTICE_SEARCHES, MedmagOptions, pipeline_options
from .modelspec import LATTICE_MODES, HoleClassifierArch, PipelineSpec, default, hole_cnn_min_input
from .results import Hole, HoleResult

UNET_MIN_SHAPE = (1024, 1440)  # (rows, cols) px: smaller inputs are padded up to this
UNET_MULTIPLE = 512  # px: larger inputs are padded up to a multiple of this
MASK_THRESHOLD = 1e-4  # on sigmoid(logits)
REGION_DILATE = 6  # px, box side (docs/ALGORITHM.md#regions)
EDGE_PX = 10.0  # holes are lattice points at least this far inside the image
CROP_SHRINK_PX = 10  # half-size of a crop = floor(|d| / 2) − this
MIN_CROP_PX = hole_cnn_min_input((5, 3, 3, 3))  # 63 px: the published classifier's; a set's: its min_input
HOLE_KEY = "hole_classifier"


# ---------------------------------------------------------------------------------------
# image preparation and mask
# ---------------------------------------------------------------------------------------

def normalise(pixels: np.ndarray, clamp: bool = True, where: np.ndarray | None = None) -> np.ndarray:
    """Negative pixels → 0 (clamp True: the published pipeline; False: the robust one, so
    that the result does not change with an offset or a positive gain), then zero mean and
    unit population std (docs/ALGORITHM.md#medmag-normalise).

    Parameters
    ----------
    pixels : numpy.ndarray
        2-D [row, col], any real dtype, input units.
    clamp : bool
        Negative pixels → 0 first (the published pipeline).
    where : numpy.ndarray or None
        bool [row, col]: the mean and std are those of these pixels only (the robust
        pipeline's film region, `film.film_region`, so a dark area around a square does not
        squeeze the film's contrast), and the pixels outside are set to 0, the film's mean (a
        flat area where no network sees holes). None (or no True pixel): every pixel.

    Returns
    -------
    numpy.ndarray
        float32 [row, col], same shape (statistics and arithmetic in float64, cast at the
        end). A constant image gives all zeros. Computed in row strips (`core.row_strips`, the
        strips `mean_std` uses, so the numbers are those of a whole float64 copy): memory is
        the float32 result plus float64 strips.

    Examples
    --------
    The negative pixel counts as 0, so the values are 0, 1, 2, 3 (mean 1.5, std √1.25):

    >>> out = normalise(np.array([[-5.0, 1.0], [2.0, 3.0]]))
    >>> out.dtype, out.astype(float).round(4).tolist()
    (dtype('float32'), [[-1.3416, -0.4472], [0.4472, 1.3416]])
    >>> normalise(np.full((2, 3), 7.0)).tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]

    Without the clamp, an offset and a positive gain change nothing:

    >>> a = np.array([[0.0, 1.0], [2.0, 5.0]])
    >>> bool(np.allclose(normalise(a * 3.0 - 100.0, clamp=False), normalise(a)))
    True
    """
    a = np.asarray(pixels)
    w = None if where is None or not np.any(where) else np.asarray(where, dtype=bool)
    if a.ndim != 2:
        v = clamp_negatives(a, np.float64) if clamp else np.asarray(a, dtype=np.float64)
        mean, std = mean_std(v, w)
        out = v - mean
        if std > 0:
            out /= std
        if w is not None:
            out[~w] = 0.0
        return out.astype(np.float32)
    if a.size == 0:
        return np.zeros(a.shape, np.float32)
    mean, std = _normalise_stats(a, clamp, w)
    out = np.empty(a.shape, np.float32)
    for sl in row_strips(*a.shape):
        out[sl] = _normalised_rows(a, sl, mean, std, clamp, w)
    return out


def _clamped_rows(a: np.ndarray, sl: slice, clamp: bool = True) -> np.ndarray:
    """Rows sl of a as float64, negatives → 0 when clamp."""
    v = np.asarray(a[sl], dtype=np.float64)
    return np.maximum(v, 0) if clamp and v.size and float(v.min()) < 0.0 else v


def _normalise_stats(a: np.ndarray, clamp: bool = True, where: np.ndarray | None = None) -> tuple[float, float]:
    """(mean, population std) of a 2-D image (negatives counted as 0 when clamp; only the
    pixels of the bool mask `where` when given), float64, in the row strips of `normalise`
    (`core.strip_mean_std`: the numbers `core.mean_std` gives on a whole float64 copy); (0, 0)
    when no pixel counts."""
    mean, std = strip_mean_std(lambda sl: _clamped_rows(a, sl, clamp), a.shape, where)
    return (0.0, 0.0) if math.isnan(mean) else (mean, std)


def _normalised_rows(a: np.ndarray, sl: slice, mean: float, std: float, clamp: bool = True,
                     where: np.ndarray | None = None) -> np.ndarray:
    """Rows sl of `normalise(a, clamp, where)` (float32), given its (mean, std): the same
    per-pixel float64 arithmetic, so any row range gives the whole result's rows."""
    v = _clamped_rows(a, sl, clamp) - mean
    if std > 0:
        v /= std
    if where is not None:
        v[~where[sl]] = 0.0  # off the film: the film's mean (no hole-like structure)
    return v.astype(np.float32)


#: numpy sums float32 arrays into float64 in buffers of this many elements (pairwise within a
#: buffer, in order across buffers); `_NormalisedPadded` repeats that order, so its fill is
#: `np.mean` of the whole normalised image bit for bit (tests/test_memory_bounded.py checks it).
_NUMPY_BUFSIZE = 8192


#: Images above this many pixels reach the U-Net as bands normalised when read
#: (`_NormalisedPadded`), and the polarity check's negated image as `_Negated` bands.
LAZY_UNET_INPUT_PIXELS = 4096 * 4096


class _Negated:
    """Stands for ``-pixels`` (2-D [row, col]) where only row bands are read (``[rows]``, as
    `_NormalisedPadded` reads them): the polarity check's negated image without a whole-image
    copy (−4 bytes/px while the U-Net runs on it). Same values as ``-pixels``.

    Examples
    --------
    >>> a = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> n = _Negated(a)
    >>> n.shape, bool(np.array_equal(n[0:2], -a))
    ((2, 3), True)
    """

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels
        self.shape = pixels.shape
        self.size = pixels.size
        self.ndim = pixels.ndim
        self.dtype = pixels.dtype

    def __getitem__(self, key) -> np.ndarray:
        return np.negative(self.pixels[key])


class _NormalisedPadded:
    """Stands for `pad_for_unet(normalise(pixels, clamp, where))` (float32 [row, col], `shape`) where only
    row bands are read (`rows`): each is normalised when asked for, so the whole normalised
    and padded image never exists (images above `LAZY_UNET_INPUT_PIXELS`; the U-Net reads
    bands, `unet.unet_logits`). Same values as the whole arrays."""

    def __init__(self, pixels: np.ndarray, clamp: bool = True, where: np.ndarray | None = None):
        self.pixels = pixels if isinstance(pixels, _Negated) else np.asarray(pixels)
        self.clamp = bool(clamp)
        self.where = None if where is None or not np.any(where) else np.asarray(where, dtype=bool)
        h, w = self.pixels.shape
        self.shape = unet_padded_shape(h, w)
        self.mean, self.std = _normalise_stats(self.pixels, self.clamp, self.where)
        self.fill = None
        if self.shape != (h, w):
            self.fill = np.float32(self._mean_of_normalised())

    def _mean_of_normalised(self) -> float:
        """`np.mean(normalise(pixels), dtype=np.float64)`, streamed (see `_NUMPY_BUFSIZE`)."""
        a, b = self.pixels, _NUMPY_BUFSIZE
        total, rest = 0.0, np.empty(0, np.float32)
        for sl in row_strips(*a.shape):
            f = _normalised_rows(a, sl, self.mean, self.std, self.clamp, self.where).ravel()
            if rest.size:
                take = b - rest.size
                rest, f = np.concatenate([rest, f[:take]]), f[take:]
                if rest.size < b:
                    continue
                total += np.add.reduce(rest.astype(np.float64))
                rest = np.empty(0, np.float32)
            k = f.size - f.size % b
            for i in range(0, k, b):
                total += np.add.reduce(f[i:i + b].astype(np.float64))
            rest = f[k:].copy()
        if rest.size:
            total += np.add.reduce(rest.astype(np.float64))
        return total / a.size

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """float32 rows [lo, hi) of the padded normalised image."""
        h, w = self.pixels.shape
        ph, pw = self.shape
        out = np.empty((hi - lo, pw), np.float32)
        r1 = min(hi, h)
        if r1 > lo:
            out[: r1 - lo, :w] = _normalised_rows(self.pixels, slice(lo, r1), self.mean, self.std, self.clamp, self.where)
        if self.fill is not None:
            out[: max(0, r1 - lo), w:] = self.fill
            out[max(0, r1 - lo):] = self.fill
        return out


def unet_padded_shape(height: int, width: int) -> tuple[int, int]:
    """(rows, cols) the U-Net input is padded to (docs/ALGORITHM.md#medmag-padding).

    A side below its minimum (1024 rows, 1440 cols) goes up to that minimum, any other side up
    to the next multiple of 512 px (unchanged when already a multiple). No upper limit: the
    published tool refused images above 2048 px, this runtime processes any size.

    Parameters
    ----------
    height, width : int
        Image rows and columns, px.

    Returns
    -------
    (int, int)
        Padded (rows, cols), px.

    Examples
    --------
    >>> unet_padded_shape(256, 256)  # small images go up to the minimum
    (1024, 1440)
    >>> unet_padded_shape(1024, 1440)  # 1440 is not below its minimum: next multiple of 512
    (1024, 1536)
    >>> unet_padded_shape(2048, 3000)
    (2048, 3072)
    """

    def side(n: int, minimum: int) -> int:
        if n < minimum:
            return minimum
        return -(-n // UNET_MULTIPLE) * UNET_MULTIPLE

    return side(int(height), UNET_MIN_SHAPE[0]), side(int(width), UNET_MIN_SHAPE[1])


def pad_for_unet(norm: np.ndarray) -> np.ndarray:
    """Pad a normalised [row, col] image at the bottom and right to `unet_padded_shape`, filling
    with the normalised image's mean.

    Parameters
    ----------
    norm : numpy.ndarray
        2-D [row, col], normally the output of `normalise`.

    Returns
    -------
    numpy.ndarray
        float32 [row, col] of the padded shape, the image in its top-left corner (the input
        itself, as float32, if no padding is needed).

    Examples
    --------
    >>> a = np.arange(12, dtype=np.float32).reshape(3, 4)
    >>> p = pad_for_unet(a)
    >>> p.shape, bool((p[:3, :4] == a).all()), float(p[1000, 1000])  # fill = mean of 0..11
    ((1024, 1440), True, 5.5)
    """
    h, w = norm.shape
    ph, pw = unet_padded_shape(h, w)
    if (ph, pw) == (h, w):
        return np.ascontiguousarray(norm, dtype=np.float32)
    out = np.full((ph, pw), np.float32(np.mean(norm, dtype=np.float64)), dtype=np.float32)
    out[:h, :w] = norm
    return out


def _logit_threshold() -> np.float32:
    """logit(MASK_THRESHOLD) as float32: the mask is logits > this."""
    return np.float32(math.log(MASK_THRESHOLD / (1.0 - MASK_THRESHOLD)))


def mask_from_logits(logits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Hole mask sigmoid(logits) > 1e-4 (compared as logits > logit(1e-4) ≈ −9.21), cut back to
    the input image.

    Parameters
    ----------
    logits : numpy.ndarray
        2-D float [row, col] U-Net logits of the padded image.
    shape : (int, int)
        (rows, cols) of the input image (≤ the logits' shape).

    Returns
    -------
    numpy.ndarray
        bool [row, col] of `shape`.

    Examples
    --------
    >>> logits = np.array([[-10.0, -9.0, 0.0], [5.0, -20.0, -9.2]], np.float32)
    >>> mask_from_logits(logits, (2, 2)).tolist()
    [[False, True], [True, False]]
    """
    return np.asarray(logits[: shape[0], : shape[1]]) > _logit_threshold()


def drop_small_regions(mask: np.ndarray, min_px: int) -> np.ndarray:
    """The mask without its 8-connected components of fewer than `min_px` pixels.

    Used only when a model set asks for it (`hole_unet.architecture.mask_min_region_px`): the
    published pipeline has no such filter, and small own U-Nets leave speckles that pull the
    lattice search to a wrong spacing.

    Parameters
    ----------
    mask : numpy.ndarray
        bool [row, col].
    min_px : int
        Smallest component kept, px²; ≤ 1 returns the mask unchanged (the same object).

    Returns
    -------
    numpy.ndarray
        bool [row, col], same shape.

    Examples
    --------
    A 3×3 block (9 px²) survives ``min_px=5``, a lone pixel does not:

    >>> m = np.zeros((10, 10), bool); m[1:4, 1:4] = True; m[7, 7] = True
    >>> kept = drop_small_regions(m, 5)
    >>> int(kept.sum()), bool(kept[7, 7]), drop_small_regions(m, 1) is m
    (9, False, True)
    """
    if min_px <= 1:
        return mask
    m = np.ascontiguousarray(mask, dtype=bool)
    if regions.runs_are_smaller(m):
        # row runs (`regions.region_runs`): no int32 label image (the same 8-connected components)
        runs = regions.region_runs(m, 0)
        if runs.n == 0:
            return mask
        sizes = np.bincount(runs.lab, weights=(runs.re - runs.rs + 1).astype(np.float64), minlength=runs.n + 1)
        keep = sizes >= min_px
        keep[0] = False
        return runs.lookup(keep)
    import scipy.ndimage as ndi

    labels, n = ndi.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return mask
    keep = np.bincount(labels.ravel(), minlength=n + 1) >= min_px
    keep[0] = False
    return keep[labels]


def mask_min_region_px(models) -> int:
    """Speckle filter size (px²) a model set declares for its U-Net mask
    (`modelspec.UnetArch.mask_min_region_px`); 0 = none.

    Parameters
    ----------
    models : models.ModelSet

    Returns
    -------
    int
        px²; `drop_small_regions` removes smaller components.

    Examples
    --------
    >>> from ptolemy_rt.models import load_model_set
    >>> mask_min_region_px(load_model_set("ptolemy-rt-synth-v1"))
    200
    """
    return models.model("hole_unet").architecture.mask_min_region_px


# ---------------------------------------------------------------------------------------
# holes from a mask
# ---------------------------------------------------------------------------------------

@dataclass
class HoleLayout:
    """Geometry of the holes found from a mask (everything except the scores).

    centroids: m×2 (row, col) px, polygon centres of mass of the mask regions.
    lattice: the winning `lattice.Lattice` or None.
    points: n×2 (row, col) px of the holes (lattice points ≥ 10 px inside the image).
    angle_deg: lattice angle (degrees); the image is rotated by −angle_deg.
    half: crop half-size h, px.
    rotated_points: n×2 (row, col) px, the holes in the rotated frame.
    boxes: n×4 int (row0, col0, row1, col1), the crops in the rotated image (clipped).
    vertices: n×4×2 (x, y) = (col, row) px, the unclipped crop boxes in the input frame.
    reason: why there are no holes, when there are none.
    """

    centroids: np.ndarray
    lattice: lattice.Lattice | None = None
    points: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    angle_deg: float | None = None
    half: int = 0
    rotated_shape: tuple[int, int] = (0, 0)
    rotated_points: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    boxes: np.ndarray = field(default_factory=lambda: np.empty((0, 4), np.int64))
    vertices: np.ndarray = field(default_factory=lambda: np.empty((0, 4, 2)))
    reason: str | None = None


def mask_centroids(mask: np.ndarray) -> np.ndarray:
    """Regions of a hole mask → the centres of mass of their convex hulls.

    Regions: 6×6 dilation, 8-connected, no area filter (docs/ALGORITHM.md#medmag-regions).

    Parameters
    ----------
    mask : numpy.ndarray
        bool [row, col].

    Returns
    -------
    numpy.ndarray
        float64 m×2 (row, col) px, pixel-corner coordinates, one per region (m×2 empty when
        the mask is empty).

    Examples
    --------
    Two 10×10 squares covering rows 10..19 / 50..59: centres at their pixel-corner middles:

    >>> m = np.zeros((100, 100), bool); m[10:20, 10:20] = True; m[50:60, 30:40] = True
    >>> mask_centroids(m).tolist()
    [[15.0, 15.0], [55.0, 35.0]]
    >>> mask_centroids(np.zeros((5, 5), bool)).shape
    (0, 2)
    """
    hulls = regions.region_runs(np.asarray(mask, dtype=bool), REGION_DILATE).hulls()  # no label image
    if not hulls:
        return np.empty((0, 2))
    return np.array([regions.polygon_centroid(h) for h in hulls], dtype=np.float64).reshape(-1, 2)


def inside_points(points: np.ndarray, shape: tuple[int, int], edge: float = EDGE_PX) -> np.ndarray:
    """Which points are at least `edge` px inside an image (pixel-corner coordinates).

    Parameters
    ----------
    points : array-like
        n×2 (row, col) px.
    shape : (int, int)
        (rows, cols) of the image.
    edge : float
        px; a point is inside when edge ≤ row ≤ rows − edge and edge ≤ col ≤ cols − edge.

    Returns
    -------
    numpy.ndarray
        bool, one per point.

    Examples
    --------
    >>> inside_points([[5, 50], [10, 10], [50, 90], [50, 91]], (100, 100)).tolist()
    [False, True, True, False]
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    h, w = shape
    return (p[:, 0] >= edge) & (p[:, 0] <= h - edge) & (p[:, 1] >= edge) & (p[:, 1] <= w - edge)


def published_frame_shift(angle_deg: float, in_shape, out_shape) -> np.ndarray:
    """(row, col) px to add to `geometry.rotate_points` output to get the published tool's
    rotated-frame position of a point.

    The published tool rotates points about the integer centres shape // 2 of both frames
    (`geometry` uses the exact centres shape / 2), i.e. p_pub = R (p − in//2) + out//2
    = p_exact + R (in/2 − in//2) − (out/2 − out//2): a constant shift of 0 or ±0.5 px per
    axis, which decides which pixel a crop starts on (found from the published scores: for
    the 1024×1440 example the rotated frame is 1765×1644, so rows shift by −0.5 px). The
    reported vertices are mapped back with the inverse of the same map, so they are exact.

    Parameters
    ----------
    angle_deg : float
        Rotation of the image, degrees (as given to `geometry.rotate_points`).
    in_shape, out_shape : (int, int)
        (rows, cols) of the input and the rotated frame.

    Returns
    -------
    numpy.ndarray
        float64 (row, col) shift, px.

    Examples
    --------
    Even input sides: only the odd sides of the rotated frame shift, by −0.5 px:

    >>> published_frame_shift(-30.0, (1024, 1440), (1607, 1759)).tolist()
    [-0.5, -0.5]
    >>> published_frame_shift(0.0, (5, 4), (5, 4)).tolist()
    [0.0, 0.0]
    """
    i = np.asarray(in_shape[:2], dtype=np.float64)
    o = np.asarray(out_shape[:2], dtype=np.float64)
    fi = i / 2.0 - np.floor_divide(i, 2.0)
    fo = o / 2.0 - np.floor_divide(o, 2.0)
    return geometry.rotate_points(fi, angle_deg, (0, 0), (0, 0)) - fo


def lattice_mode(models, compat: str | None = None) -> str:
    """The lattice search used when ``--lattice`` is not given: in the robust pipeline
    (``compat="robust"``) "oblique" for every model set (a tilted grid's lattice is oblique
    whatever the networks; the square lattice still wins ties); otherwise the one the model
    set declares (`modelspec.PipelineSpec.lattice`; ``--compat published`` keeps it).

    Parameters
    ----------
    models : models.ModelSet or None
        None: the default of the manifest declaration.
    compat : str or None
        "robust", "published" or None (the model set's declaration).

    Returns
    -------
    str
        "square" (the published search; the declared default) or "oblique" (square and
        oblique candidates).

    Examples
    --------
    >>> from ptolemy_rt.models import load_model_set
    >>> lattice_mode(None), lattice_mode(load_model_set("ptolemy-rt-synth-v1"))
    ('square', 'oblique')
    >>> lattice_mode(None, "robust"), lattice_mode(None, "published")
    ('oblique', 'square')
    """
    if compat is not None and compat != "published":
        return "oblique"
    return models.spec.pipeline.lattice if models is not None else default(PipelineSpec, "lattice")


def crop_half_size(d) -> int:
    """Crop half-size h = floor(|d| / 2) − 10 px for a lattice vector d.

    Parameters
    ----------
    d : sequence of 2 floats
        Lattice vector (row, col), px.

    Returns
    -------
    int
        h, px (crops are 2h × 2h).

    Examples
    --------
    >>> crop_half_size((200, 0)), crop_half_size((120.0, 160.0)), crop_half_size((-41, 0))
    (90, 90, 10)
    """
    return int(math.floor(math.hypot(float(d[0]), float(d[1])) / 2.0)) - CROP_SHRINK_PX


def layout_holes(mask: np.ndarray, timings: dict[str, float] | None = None, lattice_mode: str = "square",
                 compat: str = "robust", basis=None) -> HoleLayout:
    """Regions → centroids → lattice → holes → crop boxes, for the hole mask of an input image.

    Only the mask is read; the rotated frame is the one of
    `geometry.rotate_image(image, -angle_deg)`.

    Parameters
    ----------
    mask : numpy.ndarray
        bool [row, col] U-Net hole mask, the input image's shape.
    timings : dict or None
        The stages "regions" and "lattice" are added to it (seconds).
    lattice_mode : str
        "square" (published) or "oblique" (also oblique lattices: tilted collection;
        `lattice.find_lattice`).
    compat : str
        "robust" (rounded, clipped lattice boxes, 6 sorted neighbours) or "published" (the
        published tool's lattice search exactly, docs/ALGORITHM.md#published-box-rule).
    basis : array_like (2, 2) or None
        The scale stage's measured lattice in this mask's frame, two (row, col) px vectors:
        with the "oblique" mode (robust only) it is also a candidate of the lattice search
        (`lattice.find_lattice`); ignored otherwise.

    Returns
    -------
    HoleLayout
        With `reason` set (and no points) when no lattice or no hole fits.

    Raises
    ------
    ValueError
        Unknown `lattice_mode`.

    Examples
    --------
    A 4×4 lattice of discs of radius 15 px, pitch 60 px: 16 holes, crops of half-size
    60/2 − 10 = 20 px; the axis-aligned lattice has angle 90° (atan(d_col / d_row)):

    >>> rr, cc = np.mgrid[:240, :240]
    >>> m = np.zeros((240, 240), bool)
    >>> for r in range(30, 240, 60):
    ...     for c in range(30, 240, 60):
    ...         m |= (rr - r) ** 2 + (cc - c) ** 2 <= 15 ** 2
    >>> lay = layout_holes(m)
    >>> len(lay.centroids), lay.lattice.spacing_px, lay.angle_deg, lay.half, len(lay.points), lay.reason
    (16, 60.0, 90.0, 20, 16, None)
    >>> lay.boxes[0].tolist(), lay.rotated_shape  # (row0, col0, row1, col1) in the rotated frame
    ([10, 9, 50, 49], (240, 240))
    >>> layout_holes(m[:60, :60]).reason
    'fewer than 2 hole regions in the U-Net mask (1 found): no lattice'
    """
    sw = Stopwatch(timings)
    m = np.asarray(mask, dtype=bool)
    shape = (int(m.shape[0]), int(m.shape[1]))
    with sw.stage("regions"):
        cents = mask_centroids(m)
    with sw.stage("lattice"):
        return _layout(m, shape, cents, lattice_mode, compat, basis)


def _layout(m: np.ndarray, shape: tuple[int, int], cents: np.ndarray, lattice_mode: str = "square",
            compat: str = "robust", basis=None) -> HoleLayout:
    if lattice_mode not in LATTICE_MODES:
        raise ValueError(f"lattice mode must be one of {LATTICE_MODES}, got {lattice_mode!r}")
    if compat not in COMPAT_MODES:
        raise ValueError(f"compat mode must be one of {COMPAT_MODES}, got {compat!r}")
    if len(cents) < 2:
        return HoleLayout(cents, reason=f"fewer than 2 hole regions in the U-Net mask ({len(cents)} found): no lattice")
    oblique = lattice_mode == "oblique"
    lat = lattice.find_lattice(m, cents, oblique=oblique, published=compat == "published",
                               basis=basis if oblique and compat != "published" else None)
    if lat is None:
        return HoleLayout(cents, reason="no lattice candidate (coincident hole centroids)")
    if compat != "published":  # least squares on every centroid it explains (the search's winner: one difference)
        lat = lattice.refine_to_centroids(lat, cents, shape)
    pts = lat.points[inside_points(lat.points, shape)]
    angle = lat.angle_deg
    half = int(math.floor(lat.shortest_px / 2.0)) - CROP_SHRINK_PX  # = crop_half_size(d) when square
    out = HoleLayout(cents, lattice=lat, points=pts, angle_deg=angle, half=half)
    if half < 1:
        out.reason = f"lattice spacing {lat.spacing_px:.1f} px is too small for hole crops"
        out.points = np.empty((0, 2))
        return out
    if len(pts) == 0:
        out.reason = f"no lattice point at least {EDGE_PX:g} px inside the image"
        return out
    rshape = geometry.rotated_shape(shape, -angle)
    shift = published_frame_shift(-angle, shape, rshape)
    rp = geometry.rotate_points(pts, -angle, shape, rshape) + shift
    base = np.floor(rp).astype(np.int64)
    boxes = np.stack([base[:, 0] - half, base[:, 1] - half, base[:, 0] + half, base[:, 1] + half], axis=1)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, rshape[0])
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, rshape[1])
    offs = np.array([[-half, -half], [-half, half], [half, half], [half, -half]], dtype=np.float64)
    corners = rp[:, None, :] + offs[None, :, :]
    back = geometry.unrotate_points(corners - shift, -angle, shape, rshape)
    out.rotated_shape = rshape
    out.rotated_points = rp
    out.boxes = boxes
    out.vertices = back[..., ::-1].copy()  # (x, y) = (col, row)
    return out


def keep_points(layout: HoleLayout, keep: np.ndarray) -> HoleLayout:
    """The layout with only the holes where `keep` (bool, one per point) is True (points,
    rotated points, boxes and vertices alike); no hole left gives a reason
    (docs/ALGORITHM.md#medmag-film).

    Parameters
    ----------
    layout : HoleLayout
        From `layout_holes`.
    keep : numpy.ndarray
        bool, one per lattice point.

    Returns
    -------
    HoleLayout
        `layout` itself when every point is kept.

    Examples
    --------
    >>> rr, cc = np.mgrid[:240, :240]
    >>> m = np.zeros((240, 240), bool)
    >>> for r in range(30, 240, 60):
    ...     for c in range(30, 240, 60):
    ...         m |= (rr - r) ** 2 + (cc - c) ** 2 <= 15 ** 2
    >>> lay = layout_holes(m)
    >>> half = keep_points(lay, np.arange(16) < 8)
    >>> len(half.points), len(half.boxes), half.reason, keep_points(lay, np.ones(16, bool)) is lay
    (8, 8, None, True)
    >>> keep_points(lay, np.zeros(16, bool)).reason
    'every lattice point (16) is off the holey film'
    """
    from dataclasses import replace

    k = np.asarray(keep, dtype=bool)
    if k.all():
        return layout
    out = replace(layout, points=layout.points[k], rotated_points=layout.rotated_points[k], boxes=layout.boxes[k],
                  vertices=layout.vertices[k])
    if not k.any():
        out.reason = f"every lattice point ({len(k)}) is off the holey film"
    return out


def prepare_crop(crop: np.ndarray, norm: tuple[float, float] | None = None,
                 min_side: int = MIN_CROP_PX) -> np.ndarray:
    """Normalise one hole crop for the classifier.

    By its own mean and population std (norm None: the published pipeline), or by
    norm = (mean, std) of the whole image (`image_norm`, for model sets declaring
    crop_normalisation "image"). A side below min_side (only for tiny lattices) is padded
    symmetrically with zeros after normalising (= the crop or image mean) so the classifier
    can run.

    Parameters
    ----------
    crop : numpy.ndarray
        2-D [row, col], input units.
    norm : (float, float) or None
        (mean, std) to normalise with, input units; None: the crop's own.
    min_side : int
        px: the hole classifier's `min_input` (default MIN_CROP_PX = 63).

    Returns
    -------
    numpy.ndarray
        float32 [row, col], at least min_side × min_side.

    Examples
    --------
    >>> c = np.arange(4.0).reshape(2, 2)
    >>> prepare_crop(c, min_side=2).astype(float).round(4).tolist()
    [[-1.3416, -0.4472], [0.4472, 1.3416]]
    >>> prepare_crop(c, norm=(1.0, 2.0), min_side=2).tolist()
    [[-0.5, 0.0], [0.5, 1.0]]
    >>> p = prepare_crop(c, min_side=4)
    >>> p.shape, p[0].tolist(), p[1].astype(float).round(4).tolist()
    ((4, 4), [0.0, 0.0, 0.0, 0.0], [0.0, -1.3416, -0.4472, 0.0])
    """
    a = np.asarray(crop, dtype=np.float64)
    if norm is None:
        mean, std = mean_std(a) if a.size else (0.0, 0.0)
    else:
        mean, std = float(norm[0]), float(norm[1])
    a = a - mean
    if std > 0:
        a = a / std
    if a.shape[0] < min_side or a.shape[1] < min_side:
        ph, pw = max(0, min_side - a.shape[0]), max(0, min_side - a.shape[1])
        a = np.pad(a, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    return a.astype(np.float32)


def image_norm(pixels: np.ndarray) -> tuple[float, float]:
    """(mean, population std) of a whole image, computed in float64.

    Parameters
    ----------
    pixels : numpy.ndarray
        2-D [row, col], input units.

    Returns
    -------
    (float, float)
        (mean, std) in input units; (0.0, 0.0) for an empty array.

    Examples
    --------
    >>> image_norm(np.array([[1, 2], [3, 4]]))
    (2.5, 1.118033988749895)
    """
    a = np.asarray(pixels)
    return mean_std(a) if a.size else (0.0, 0.0)


def bn_batches(models) -> str:
    """How a model set's hole classifier groups an image's crops into BatchNorm batches in the
    published regime (`hole_classifier.architecture.bn_batches`).

    Parameters
    ----------
    models : models.ModelSet or None
        None: the manifest default.

    Returns
    -------
    str
        "published" (one batch when all crops share a shape, else each crop alone: the
        published tool; default) or "shape" (one batch per crop shape, as `export/train.py`
        trains).

    Examples
    --------
    >>> from ptolemy_rt.models import load_model_set
    >>> bn_batches(None), bn_batches(load_model_set("ptolemy-rt-synth-v1"))
    ('published', 'shape')
    """
    if models is None:
        return default(HoleClassifierArch, "bn_batches")
    return models.model(HOLE_KEY).architecture.bn_batches


def crop_normalisation(models) -> str:
    """How a model set's hole classifier wants its crops normalised
    (`hole_classifier.architecture.crop_normalisation`).

    Parameters
    ----------
    models : models.ModelSet

    Returns
    -------
    str
        "crop" (each crop by its own mean and std; the published pipeline and the default) or
        "image" (every crop by the whole image's mean and std, so the classifier sees how bright
        a hole is compared with the rest of the image: empty holes bright, thick ice dark).

    Examples
    --------
    >>> from ptolemy_rt.models import load_model_set
    >>> crop_normalisation(load_model_set("ptolemy-rt-synth-v1"))
    'image'
    """
    return models.model(HOLE_KEY).architecture.crop_normalisation


def score_fusion(models):
    """A model set's hole score fusion (`modelspec.ScoreFusionSpec`, ptolemy_rt/hole_features.py),
    or None: the score is the classifier's alone (published; every set without the declaration).

    Parameters
    ----------
    models : models.ModelSet or None

    Returns
    -------
    modelspec.ScoreFusionSpec or None

    Examples
    --------
    >>> from ptolemy_rt.models import load_model_set
    >>> score_fusion(None), score_fusion(load_model_set("ptolemy-rt-synth-v1"))
    (None, None)
    """
    return None if models is None else models.model(HOLE_KEY).score_fusion


def score_holes(models, rotated: np.ndarray, boxes: np.ndarray, batchnorm: str = "published",
                norm: tuple[float, float] | None = None, crops: dict | None = None) -> np.ndarray:
    """Hole classifier scores of the crops `boxes` of the rotated image.

    Published regime, as the published tool batches them (verified on the example: every
    crop there matches the published score only when scored alone): when all crops have the
    same shape they are scored in one batch (shared BatchNorm statistics); otherwise each crop
    is scored alone. A model set declaring `bn_batches` "shape" (`bn_batches`) gets one batch
    per crop shape instead, as it was trained. Running regime: crops are independent; equal
    shapes share a call. A set declaring a score fusion (`score_fusion`) scores
    sigmoid(`hole_features.fused_logits`) of the classifier's logits (either regime) and of
    hand features of the same prepared crops, each relative to all `boxes` of the call (one
    image), so in that case no score is independent of the other crops.

    Parameters
    ----------
    models : models.ModelSet or None
        The set whose "hole_classifier" scores (None only for its minimum crop size default).
    rotated : numpy.ndarray
        2-D [row, col], the image rotated so the lattice is axis-aligned.
    boxes : array-like
        n×4 int (row0, col0, row1, col1) px in `rotated`.
    batchnorm : str
        "published" or "running".
    norm : (float, float) or None
        The image's (mean, std) for "image" crop normalisation, None for per crop
        (`prepare_crop`).
    crops : dict or None
        Each prepared crop is added to it, by box index.

    Returns
    -------
    numpy.ndarray
        float64 scores in [0, 1], one per box.

    Examples
    --------
    Running statistics: a crop's score does not depend on the other crops; crops smaller than
    the classifier's 63 px minimum are padded to it:

    >>> from ptolemy_rt.models import load_model_set
    >>> ms = load_model_set("ptolemy-rt-synth-v1")
    >>> rr, cc = np.mgrid[:120, :120]
    >>> image = np.where((rr % 60 - 30) ** 2 + (cc % 60 - 30) ** 2 <= 225, 1.0, -1.0)
    >>> boxes = np.array([[10, 10, 50, 50], [70, 70, 110, 110], [0, 0, 30, 40]])
    >>> together = score_holes(ms, image, boxes, "running")
    >>> alone = [score_holes(ms, image, b[None], "running")[0] for b in boxes]
    >>> bool(np.array_equal(together, alone)), bool(((together > 0) & (together < 1)).all())
    (True, True)
    >>> crops = {}
    >>> _ = score_holes(ms, image, boxes, crops=crops)
    >>> sorted((k, v.shape) for k, v in crops.items())
    [(0, (63, 63)), (1, (63, 63)), (2, (63, 63))]
    """
    from .classifier import logits, score_crops, sigmoid
    from .hole_features import CROP_STATS, crop_stats, fused_logits

    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    scores = np.zeros(len(b), dtype=np.float64)
    min_side = MIN_CROP_PX if models is None else models.model(HOLE_KEY).architecture.min_input
    fusion = score_fusion(models)
    # with a score fusion: the classifier's logits, then the fused score over all crops
    stats = None if fusion is None else np.zeros((len(b), len(CROP_STATS)), dtype=np.float64)
    groups: dict[tuple[int, int], list[int]] = {}
    for k, (r0, c0, r1, c1) in enumerate(b):
        groups.setdefault((int(r1 - r0), int(c1 - c0)), []).append(k)
    if batchnorm == "published" and len(groups) > 1 and bn_batches(models) == "published":
        batches = [[k] for k in range(len(b))]
    else:
        batches = [groups[s] for s in sorted(groups)]
    for idx in batches:

        def get_crop(i: int, idx=idx) -> np.ndarray:
            r0, c0, r1, c1 = b[idx[i]]
            crop = prepare_crop(rotated[r0:r1, c0:c1], norm, min_side)
            if crops is not None:
                crops[idx[i]] = crop
            if stats is not None:
                stats[idx[i]] = crop_stats(crop)
            return crop

        if fusion is None:
            scores[idx] = score_crops(models, HOLE_KEY, len(idx), get_crop, batchnorm)
        else:
            scores[idx] = logits(models, HOLE_KEY, len(idx), get_crop, batchnorm)
    if fusion is not None and len(b):
        scores = sigmoid(fused_logits(fusion, scores, stats))
    return scores


#: Images above this many pixels (4096²) are not rotated whole for the hole crops: each crop
#: is cut from its own rotated window (`geometry.rotate_window`, equal to the whole-image
#: rotation up to float64 rounding, ≤ 1e-9 of the pixel values), so memory does not grow
#: with the rotated frame (up to twice the image) and its float64 spline prefilter.
ROTATE_WHOLE_MAX_PIXELS = 4096 * 4096


class _RotatedWindows:
    """Stands for `geometry.rotate_image(pixels, angle_deg)` where only blocks
    ``[r0:r1, c0:c1]`` (rotated frame, px) are read: each is rotated on its own."""

    def __init__(self, pixels: np.ndarray, angle_deg: float, fill: float = 0.0):
        self.angle_deg, self.fill = float(angle_deg), float(fill)
        # corners outside the input get `fill` (`rotation_fill`), as in `rotate_filled`: the
        # windows are rotated from the image minus fill (one float32 copy) and fill added back
        self.pixels = pixels if self.fill == 0.0 else np.asarray(pixels, dtype=np.float32) - np.float32(self.fill)

    def __getitem__(self, key) -> np.ndarray:
        rows, cols = key
        out = geometry.rotate_window(self.pixels, self.angle_deg, (rows.start, cols.start, rows.stop, cols.stop))
        if self.fill != 0.0:
            out += np.float32(self.fill)
        return out


def rotate_filled(pix: np.ndarray, angle_deg: float, robust: bool = True) -> np.ndarray:
    """`geometry.rotate_image` of a [row, col] image, the corners outside the input filled
    with `rotation_fill` (robust) or 0 (robust False: the published pipeline)
    (docs/ALGORITHM.md#medmag-intensity).

    >>> a = np.arange(12.0).reshape(3, 4) + 500.0
    >>> float(rotate_filled(a, 30.0, True).min()) >= 500.0 - 1e-3, float(rotate_filled(a, 30.0, False).min()) < 1.0
    (True, True)
    """
    fill = rotation_fill(pix) if robust else 0.0
    if fill == 0.0:
        return geometry.rotate_image(pix, angle_deg)
    out = geometry.rotate_image(np.asarray(pix, dtype=np.float32) - np.float32(fill), angle_deg)
    out += np.float32(fill)
    return out


def rotation_fill(pix: np.ndarray) -> float:
    """The value the robust pipeline fills the rotated frame's corners with: 0 (no electrons,
    as the published tool) when the data look like counts from 0 (0 ≤ minimum ≤ median −
    minimum: zero lies within the image's own dark range), otherwise the image's minimum (an
    offset, a camera bias, background-subtracted or negated data: the fill moves with any
    offset and positive gain, so the crops do not change). Input units.

    >>> rotation_fill(np.array([[26.0, 116.0, 140.0]])), rotation_fill(np.array([[10026.0, 10116.0, 10140.0]]))
    (0.0, 10026.0)
    """
    a = np.asarray(pix)
    if a.size == 0:
        return 0.0
    lo = float(np.min(a))
    med = float(np.median(a[::4, ::4] if a.ndim == 2 and a.size > 65536 else a))
    return 0.0 if 0.0 <= lo <= med - lo else lo


def _holes(layout: HoleLayout, scores: np.ndarray) -> list[Hole]:
    """The holes of a layout with their scores, best first (ties: row, then column of the
    lattice point); area (2h)² px²."""
    n = len(layout.points)
    order = np.lexsort((layout.points[:, 1], layout.points[:, 0], -np.asarray(scores, dtype=np.float64)[:n]))
    return targets_from_boxes(Hole, layout.vertices, order, area=np.full(n, float((2 * layout.half) ** 2)),
                              score=scores)


def holes_from_mask(image: np.ndarray, mask: np.ndarray, options: MedmagOptions | None = None, *, models=None,
                    timings: dict[str, float] | None = None, model_name: str = "",
                    intermediates: dict | None = None, basis=None, **keywords) -> HoleResult:
    """Everything after the U-Net: holes of `image` (2-D [row, col], raw pixels; negatives
    are set to 0) given its bool hole mask (same shape).

    Parameters
    ----------
    image, mask : numpy.ndarray
        The raw image and its bool U-Net hole mask, [row, col], same shape.
    options, **keywords : MedmagOptions and keywords replacing its fields, as `find_holes`
        (lattice None: `lattice_mode` of the model set and compat mode).
    models : models.ModelSet or None
        Scores the crops; None leaves every score at 0.0 (geometry only, for tests).
    timings : dict or None
        The stages regions, lattice, rotate, classify are added to it (s).
    model_name : str
        The result's `models`.
    intermediates : dict or None
        A dict to fill (and return as `HoleResult.intermediates`) with "mask", "centroids"
        (m×2 (row, col) px of the mask regions), "layout" (the `HoleLayout`: lattice, points,
        rotated frame), "boxes" (n×4 crop boxes, rotated frame) and "crops" ({hole index: the
        prepared float32 crop the classifier saw}; empty without models); None: keep nothing.
    basis : array_like (2, 2) or None
        The measured lattice in this image's frame ((row, col) px vectors; `layout_holes`).

    Returns
    -------
    HoleResult
        Holes sorted by score (ties: row, then column of the lattice point); centres and
        vertices (x, y) = (col, row) px, area px².

    Raises
    ------
    ValueError
        The mask's shape differs from the image's; OptionError (a ValueError) for a bad option.

    Examples
    --------
    A 4×4 lattice of discs, pitch 60 px, geometry only (no models): 16 holes at the lattice
    points, crops 2h = 40 px wide (area 1600 px²), in row-major order as all scores are 0:

    >>> rr, cc = np.mgrid[:240, :240]
    >>> mask = (rr % 60 - 30) ** 2 + (cc % 60 - 30) ** 2 <= 15 ** 2
    >>> res = holes_from_mask(np.where(mask, 100.0, 20.0), mask, intermediates={})
    >>> len(res.holes), res.lattice_spacing_px, [h.center for h in res.holes[:3]]
    (16, 60.0, [(30, 30), (90, 30), (150, 30)])
    >>> res.holes[0].area, res.holes[0].score, sorted(res.intermediates)
    (1600.0, 0.0, ['boxes', 'centroids', 'crops', 'film', 'layout', 'mask'])
    >>> holes_from_mask(np.zeros((240, 240)), mask[:100])
    Traceback (most recent call last):
    ...
    ValueError: mask shape (100, 240) differs from image shape (240, 240)
    """
    opts = pipeline_options("medmag", options, **keywords)
    sw = Stopwatch(timings)
    t = sw.timings
    robust = opts.compat != "published"
    pix = np.asarray(image, dtype=np.float32) if robust else clamp_negatives(image)
    m = np.asarray(mask, dtype=bool)
    if m.shape != pix.shape:
        raise ValueError(f"mask shape {m.shape} differs from image shape {pix.shape}")
    mode = opts.lattice or lattice_mode(models, opts.compat)
    layout = layout_holes(m, t, mode, opts.compat, basis)
    check = None
    if robust and layout.reason is None and len(layout.points):
        with sw.stage("film"):
            check = film.film_check(pix, m, layout.points, layout.lattice.shortest_px)
            layout = keep_points(layout, check.on_film)
    if intermediates is not None:
        intermediates.update(mask=m, centroids=layout.centroids, layout=layout, boxes=layout.boxes, crops={})
    res = HoleResult(holes=[], image_shape=tuple(pix.shape), batchnorm=opts.batchnorm, models=model_name,
                     timings_s=t, lattice_search=mode, intermediates=intermediates, compat=opts.compat)
    if layout.lattice is not None:
        res.lattice_angle_deg = layout.angle_deg
        res.lattice_spacing_px = layout.lattice.spacing_px
    if check is not None:
        res.film = check.as_dict()
        if intermediates is not None:
            intermediates["film"] = check
    if layout.reason is not None or len(layout.points) == 0:
        res.reason = layout.reason or "no holes"
        t.setdefault("rotate", 0.0)
        t.setdefault("classify", 0.0)
        return res
    if models is None:  # geometry only: no crops to cut
        t.setdefault("rotate", 0.0)
        with sw.stage("classify"):
            scores = np.zeros(len(layout.points))
    else:
        with sw.stage("rotate"):
            if pix.size > ROTATE_WHOLE_MAX_PIXELS:  # bounded memory: rotate each crop's window only
                rotated = _RotatedWindows(pix, -layout.angle_deg, rotation_fill(pix) if robust else 0.0)
            else:
                rotated = rotate_filled(pix, -layout.angle_deg, robust)
        with sw.stage("classify"):
            norm = image_norm(pix) if crop_normalisation(models) == "image" else None
            scores = score_holes(models, rotated, layout.boxes, opts.batchnorm, norm,
                                 crops=None if intermediates is None else intermediates["crops"])
        del rotated
    res.holes = _holes(layout, scores)
    return res


# ---------------------------------------------------------------------------------------
# the pipeline
# ---------------------------------------------------------------------------------------

def find_holes(image, options: MedmagOptions | None = None, *, models=None, intermediates: bool = False,
               pixel_size_nm: float | None = None, **keywords) -> HoleResult:
    """Holes of a medium-magnification image, sorted by score, best first (docs/ALGORITHM.md#medmag).

    Parameters
    ----------
    image : path of an MRC file, `io.LoadedImage`, or 2-D [row, col] array (any size; no
        2048 px limit).
    options : `options.MedmagOptions`, or None (the defaults: the published behaviour).
    models : a `models.ModelSet` or a set name (None: the default set).
    pixel_size_nm : nm/px for the scale stage's ``hole_pitch_um`` (None: the image's header
        pixel size, when `io` found a real one).
    intermediates : also return what the pipeline computed on the way, in
        `HoleResult.intermediates`: "logits" (float32 [row, col] U-Net logits, cut back to
        the image), "mask", "centroids", "layout", "boxes" and "crops" (see
        `holes_from_mask`). The hole index k of "crops" is that of `layout.points`; the
        reported holes are sorted by score.
    **keywords : fields of `MedmagOptions`, replacing those of `options`:
        batchnorm: "published" (as the published tool: BatchNorm on the statistics of all
        crops together when they all have one shape, else of each crop alone) or "running"
        (stored statistics, each crop alone).
        lattice: "square" (published), "oblique" (also fits the oblique lattice of a tilted
        grid) or None (`lattice_mode`: "oblique" when robust, the model set's choice when
        published).
        scale: "auto" (measure the hole lattice; resample the image to the model set's
        `pipeline.hole_pitch_px` when it is outside the set's tolerance; results come back in
        input pixels), "off" (the published pipeline) or None (the compat mode's: "auto"
        when robust, "off" when published). hole_pitch_um: the grid's hole pitch, µm (e.g.
        2.5 for R1.2/1.3); with a pixel size (``pixel_size_nm`` or the header) it sets the
        scale and the measured lattice cross-checks it.
        compat: "robust" (default: the pipeline for any facility's images) or "published"
        (the published tool exactly, its quirks included: no scale stage, the published
        lattice search with truncated, wrapping boxes and 5 argpartition neighbours;
        docs/ALGORITHM.md#compat-published). "published" refuses ``scale="auto"`` and
        ``hole_pitch_um``. The mode used is `HoleResult.compat`.

    Returns
    -------
    HoleResult; no lattice / no hole gives an empty list with `reason`.

    Raises
    ------
    OptionError (a ValueError) for a bad option value, TypeError for an unknown keyword,
    InputImageError (bad image), ModelSetError (model set missing or corrupt).

    Examples
    --------
    A synthetic R2/2 film at 20 nm/px: holes on a 200 px lattice, centres (x, y) px known
    exactly. The own set finds the 6 holes fully inside a 512×512 image (the other 3 touch
    the edge: no lattice point 10 px inside), each within 3 px of a true centre:

    >>> from ptolemy_rt import synthetic
    >>> image, truth = synthetic.medmag_image(0, (512, 512), pixel_nm=20.0, film="R2/2",
    ...                                       angle_deg=0.0, tilt_deg=0.0)
    >>> res = find_holes(image, models="ptolemy-rt-synth-v1", intermediates=True)
    >>> len(res.holes), round(res.lattice_spacing_px / 200.0, 1), res.reason
    (6, 1.0, None)
    >>> true_xy = np.array([h.center for h in truth])
    >>> max(float(np.hypot(*(true_xy - h.center).T).min()) for h in res.holes) < 3.0
    True
    >>> bool(all(0.0 < h.score < 1.0 for h in res.holes)), res.intermediates["logits"].shape
    (True, (512, 512))
    >>> find_holes(image, models="ptolemy-rt-synth-v1", lattice="hexagonal")
    Traceback (most recent call last):
    ...
    ptolemy_rt.options.OptionError: lattice 'hexagonal': must be one of 'square', 'oblique'

    The compat modes on a synthetic R1.2/1.3 film at 9 nm/px (hole pitch 2.5 µm = 278 px), default model set:

    >>> from ptolemy_rt import synthetic
    >>> image, truth = synthetic.medmag_image(3, (600, 800), pixel_nm=9.0, film="R1.2/1.3",
    ...                                       angle_deg=0.0, tilt_deg=0.0)
    >>> res = find_holes(image, compat="published")
    >>> len(res.holes), res.compat, res.scale is None
    (6, 'published', True)
    >>> res = find_holes(image, hole_pitch_um=2.5, pixel_size_nm=9.0)
    >>> len(res.holes), res.compat, res.scale["source"], res.scale["factor"]
    (6, 'robust', 'metadata', 1.0)
    """
    from .io import as_loaded_image
    from .models import ModelSet, load_model_set
    from .unet import unet_logits

    opts = pipeline_options("medmag", options, **keywords)
    sw = Stopwatch()
    loaded = as_loaded_image(image)
    ms = models if isinstance(models, ModelSet) else load_model_set(models)
    sw.lap("load")
    robust = opts.compat != "published"
    if robust:  # shifted so that the rotation fill is 0: float32 keeps the precision of any offset
        raw = np.asarray(loaded.pixels)
        ref = rotation_fill(raw)
        # the pixels are this call's own (read from a path, or a LoadedImage marked `scratch`
        # by the batch runner / CLI: nothing reads them afterwards): shifted in place, no
        # second whole-image float32 array (docs/BENCH.md#memory-budget); same values
        own = ((isinstance(image, (str, os.PathLike)) or (loaded is image and loaded.scratch))
               and raw.dtype == np.float32 and raw.flags.writeable and raw.flags.c_contiguous)
        if ref != 0.0:  # in float64 row strips: no whole-image float64 copy
            pix = raw if own else np.empty(raw.shape, np.float32)
            for sl in row_strips(*raw.shape):
                pix[sl] = raw[sl].astype(np.float64) - ref
        else:
            pix = raw.astype(np.float32, copy=False)
    else:
        pix = clamp_negatives(loaded.pixels)
    decision = scale_decision(pix, ms, opts, loaded.pixel_size_nm if pixel_size_nm is None else pixel_size_nm)
    in_shape, in_size = tuple(pix.shape), int(pix.size)
    # the input's pixels may be let go once resampled when they are this call's own (read from
    # a path, or a scratch LoadedImage, which then drops them too: `io.LoadedImage.release_pixels`),
    # never a caller's array
    releasable = robust and (isinstance(image, (str, os.PathLike)) or (loaded is image and loaded.scratch))
    raw = None
    if releasable and loaded is not image:  # read from a path here: no one else holds it
        loaded = replace(loaded, pixels=None)

    def at_scale(decision):
        """The pipeline from the scale stage's decision on: the result in input pixels."""
        nonlocal pix
        sw.lap("scale")
        polarity = None
        if robust:  # on the input pixels, before a resampling may overwrite and let them go
            measured = None if decision is None else decision.measured
            polarity = (film.hole_polarity(pix, measured.vectors_xy) if measured is not None and measured.confident
                        else film.Polarity(1, None, "no confident hole lattice: polarity not measured (holes taken as bright)"))
            sw.lap("polarity")
        if decision is None or decision.factor == 1.0:
            work, resampling = pix, None
        else:
            work, resampling = scale.resample(pix, decision.factor, overwrite=releasable)
            if releasable:  # the resampled copy replaces the input (−4 bytes/px, twice that while downsampling)
                pix = None
                loaded.release_pixels()
        sw.lap("scale")

        basis = None  # the measured lattice in the work frame: a lattice-search candidate
        if robust and decision is not None and decision.measured is not None and (
                decision.measured.confident or decision.source == scale.WEAK_SOURCE):
            fr, fc = (1.0, 1.0) if resampling is None else resampling.factors_rc
            basis = np.array([[y * fr, x * fc] for x, y in decision.measured.vectors_xy], dtype=np.float64)
        region = None
        if robust:
            period = None if decision is None or decision.source == "none" else decision.period_px * decision.factor
            region = film.film_region(work, period)
            sw.lap("film")

        def masked(img):
            """(logits cut to img or None, mask) of the U-Net on img; without intermediates the
            mask is made strip by strip (no whole-image logits; the same comparisons)."""
            where = None if region is None else region.mask
            if lazy:
                padded = _NormalisedPadded(img, clamp=not robust, where=where)  # bands normalised as the U-Net reads them
            else:
                padded = pad_for_unet(normalise(img, clamp=not robust, where=where))
            sw.lap("normalise")
            if intermediates:
                logits = unet_logits(ms, padded)
                del padded
                mask = mask_from_logits(logits, img.shape)
                logits = logits[: img.shape[0], : img.shape[1]]
            else:
                full = unet_logits(ms, padded, mask_threshold=_logit_threshold())
                del padded
                mask, logits = np.ascontiguousarray(full[: img.shape[0], : img.shape[1]]), None
                del full
            out = logits, drop_small_regions(mask, mask_min_region_px(ms))
            sw.lap("unet")
            return out

        lazy = work.size > LAZY_UNET_INPUT_PIXELS and not intermediates
        logits, mask = masked(work)
        if polarity is not None and polarity.sign < 0:  # confirm with the U-Net (docs/ALGORITHM.md#medmag-polarity)
            flipped = _Negated(work) if lazy else -work  # large: negated band by band as the U-Net reads it
            logits_f, mask_f = masked(flipped)
            n_as_is, n_flipped = lattice_holes_seen(mask, opts, ms, basis), lattice_holes_seen(mask_f, opts, ms, basis)
            if n_flipped > n_as_is:
                if lazy:  # the pipeline's own array (resampled, or its own input) is negated in place
                    # (a confident lattice: no weak-lattice retry reads the input again)
                    mine = (resampling is not None or releasable) and work.flags.writeable
                    flipped = np.negative(work, out=work) if mine else -work
                work, logits, mask = flipped, logits_f, mask_f
                note = f"; the U-Net confirms: {n_flipped} lattice holes negated vs {n_as_is} as is"
            else:
                polarity = film.Polarity(1, polarity.z, polarity.note.split(":")[0] + f", but the U-Net finds more lattice"
                                         f" holes as is ({n_as_is} vs {n_flipped} negated): not negated")
                note = ""
            polarity = film.Polarity(polarity.sign, polarity.z, polarity.note + note)
            del logits_f, mask_f, flipped
        kept = {"logits": logits} if intermediates else None
        del logits
        res = holes_from_mask(work, mask, opts, models=ms, timings=sw.timings, model_name=ms.name, intermediates=kept,
                              basis=basis)
        if kept is not None:
            kept.update(scale=decision, resampling=resampling, work=work)  # the other intermediates: resampled frame
        if resampling is not None:
            res = to_input_frame(res, resampling, in_shape)
            if res.film is not None:
                f = float(np.mean(resampling.factors_rc))
                res.film = dict(res.film, hole_radius_px=round(res.film["hole_radius_px"] / f, 2),
                                annulus_px=[round(v / f, 2) for v in res.film["annulus_px"]])
        res.scale = None if decision is None else decision.as_dict()
        res.polarity = None if polarity is None else polarity.as_dict()
        if region is not None and res.film is not None:
            res.film = dict(res.film, region=region.as_dict())
        return res

    res = at_scale(decision)
    weak = None if not robust or res.holes or decision is None else scale.weak_decision(
        decision, ms.spec.pipeline.hole_pitch_px, ms.spec.pipeline.hole_pitch_tolerance)
    if weak is not None:
        weak = capped_decision(weak, in_size)
    if weak is not None:  # the image as it is gave no holes: try the lattice measured weakly
        retry = at_scale(weak)
        if retry.holes:
            retry.scale = dict(retry.scale, note=retry.scale["note"] + f"; as is: {res.reason or 'no holes'}")
            res = retry
    return res


def lattice_holes_seen(mask: np.ndarray, opts: MedmagOptions, models, basis=None) -> int:
    """How many lattice points of the layout of a U-Net mask lie on a mask pixel (a hole the
    U-Net saw where the lattice puts one): the evidence that decides an image's polarity when
    the folded cell calls its holes dark (docs/ALGORITHM.md#medmag-polarity).

    Parameters
    ----------
    mask : numpy.ndarray
        bool [row, col] U-Net hole mask.
    opts : MedmagOptions
        Its `lattice` (None: the model set's).
    models : ModelSet
        For `lattice_mode`.
    basis : array_like (2, 2) or None
        The measured lattice in the mask's frame (`layout_holes`).

    Returns
    -------
    int
        Lattice points on mask pixels (0 when no lattice fits).

    Examples
    --------
    A 4×4 lattice of discs: every lattice point is on a hole; its negation has none:

    >>> from ptolemy_rt.models import load_model_set
    >>> rr, cc = np.mgrid[:240, :240]
    >>> m = np.zeros((240, 240), bool)
    >>> for r in range(30, 240, 60):
    ...     for c in range(30, 240, 60):
    ...         m |= (rr - r) ** 2 + (cc - c) ** 2 <= 15 ** 2
    >>> ms = load_model_set("ptolemy-rt-synth-v1")
    >>> lattice_holes_seen(m, MedmagOptions(lattice="square"), ms), lattice_holes_seen(~m, MedmagOptions(lattice="square"), ms)
    (16, 0)
    """
    layout = layout_holes(mask, None, opts.lattice or lattice_mode(models, opts.compat), basis=basis)
    if layout.reason is not None or len(layout.points) == 0:
        return 0
    p = np.floor(layout.points).astype(np.int64)
    return int(np.count_nonzero(np.asarray(mask, dtype=bool)[p[:, 0], p[:, 1]]))


#: Largest image (pixels) the scale stage UPsamples to: 64 Mpx (256 MB as float32; the U-Net
#: runs in strips). A larger upsampling factor is capped (never below 1: an image is never
#: downsampled below the model's scale to bound memory), and the note in `scale` says so.
MAX_RESAMPLED_PIXELS = 64_000_000


def scale_decision(pix: np.ndarray, models, opts: MedmagOptions, pixel_size_nm: float | None):
    """The scale stage's `scale.ScaleDecision` for an image (None when ``opts.scale_mode`` is
    "off").

    It uses the model set's declared hole pitch and tolerance (`modelspec.PipelineSpec`), the
    measured lattice, and ``opts.hole_pitch_um`` with the pixel size when both are known. An
    upsampling factor is capped by `capped_decision` (`MAX_RESAMPLED_PIXELS`).

    Parameters
    ----------
    pix : numpy.ndarray
        2-D [row, col], negatives already clamped.
    models : models.ModelSet
    opts : MedmagOptions
    pixel_size_nm : float or None
        nm/px (used only with ``opts.hole_pitch_um``).

    Returns
    -------
    scale.ScaleDecision or None

    Examples
    --------
    A synthetic R2/2 film at 20 nm/px (pitch 200 px) is within the own set's tolerance of its
    275 px: measured, factor 1; a hole pitch without a pixel size is ignored, and says so:

    >>> from ptolemy_rt import synthetic
    >>> from ptolemy_rt.models import load_model_set
    >>> from ptolemy_rt.options import MedmagOptions
    >>> ms = load_model_set("ptolemy-rt-synth-v1")
    >>> image, _ = synthetic.medmag_image(0, (512, 512), pixel_nm=20.0, film="R2/2", angle_deg=0.0, tilt_deg=0.0)
    >>> scale_decision(image, ms, MedmagOptions(scale="off"), None) is None
    True
    >>> d = scale_decision(image, ms, MedmagOptions(hole_pitch_um=4.0), None)
    >>> d.factor, d.source, round(d.period_px), d.note.endswith("--hole-pitch-um ignored: no pixel size (header or --pixel-size)")
    (1.0, 'measured', 200, True)
    """
    if opts.scale_mode == "off":
        return None
    p = models.spec.pipeline
    use_metadata = opts.hole_pitch_um is not None and pixel_size_nm is not None
    dec = scale.choose_scale(pix, p.hole_pitch_px, pixel_size_nm=pixel_size_nm if use_metadata else None,
                             hole_pitch_um=opts.hole_pitch_um if use_metadata else None,
                             tolerance=p.hole_pitch_tolerance)
    from dataclasses import replace

    if opts.hole_pitch_um is not None and not use_metadata:
        dec = replace(dec, note=dec.note + "; --hole-pitch-um ignored: no pixel size (header or --pixel-size)")
    return capped_decision(dec, pix.size)


def capped_decision(dec, n_pixels: int):
    """``dec`` (a `scale.ScaleDecision`) with an upsampling factor capped so that the
    resampled image has at most `MAX_RESAMPLED_PIXELS` (bounded memory; the note says so).

    Only upsampling is bounded: a factor ≤ 1 is kept as it is, whatever the image's size (a
    downsampled image is smaller than the input, and downsampling below the model's scale
    would lose holes), and a factor > 1 is capped at max(1, sqrt(MAX_RESAMPLED_PIXELS /
    n_pixels)), so an image already above the limit is not resampled at all.

    Parameters
    ----------
    dec : scale.ScaleDecision
    n_pixels : int
        Pixels of the input image.

    Returns
    -------
    scale.ScaleDecision

    Examples
    --------
    >>> d = capped_decision(scale.ScaleDecision(10.0, 20.0, "measured", None), 1_000_000)
    >>> d.factor, d.note
    (8.0, '; capped at x8 (64 Mpx)')

    A 16384² image (268 Mpx, above the limit) at the model's scale, or to be downsampled,
    keeps its factor; asked to be upsampled, it is left at factor 1:

    >>> capped_decision(scale.ScaleDecision(1.0, None, "none", None), 16384 ** 2).factor
    1.0
    >>> capped_decision(scale.ScaleDecision(0.5, 560.0, "measured", None), 16384 ** 2).factor
    0.5
    >>> d = capped_decision(scale.ScaleDecision(2.0, 140.0, "measured", None), 16384 ** 2)
    >>> d.factor, d.note
    (1.0, '; capped at x1 (64 Mpx)')
    """
    from dataclasses import replace

    if dec.factor <= 1.0:  # never downsample to bound memory: only upsampling is capped
        return dec
    cap = max(1.0, math.sqrt(MAX_RESAMPLED_PIXELS / max(1, n_pixels)))
    if dec.factor > cap:  # bounded memory: never upsample beyond MAX_RESAMPLED_PIXELS
        dec = replace(dec, factor=cap, note=dec.note + f"; capped at x{cap:.4g} ({MAX_RESAMPLED_PIXELS / 1e6:.0f} Mpx)")
    return dec


def to_input_frame(res: HoleResult, resampling, input_shape: tuple[int, int]) -> HoleResult:
    """A result found on a resampled image, in the input image's frame.

    Box corners are mapped back (pixel-corner coordinates, `scale.Resampling.to_input_xy`),
    centres and areas recomputed from them (px, px²), the lattice spacing divided by the mean
    zoom factor. The result is changed in place and returned.

    Parameters
    ----------
    res : HoleResult
        Found on the resampled image.
    resampling : scale.Resampling
    input_shape : (int, int)
        (rows, cols) of the input image.

    Returns
    -------
    HoleResult
        `res`, in the input frame.

    Examples
    --------
    Holes found on a 2× upsampled image come back at half the coordinates, a quarter of the
    area:

    >>> from ptolemy_rt.scale import Resampling
    >>> rr, cc = np.mgrid[:240, :240]
    >>> mask = (rr % 60 - 30) ** 2 + (cc % 60 - 30) ** 2 <= 15 ** 2
    >>> res = to_input_frame(holes_from_mask(mask * 1.0, mask), Resampling((120, 120), (240, 240)), (120, 120))
    >>> res.holes[0].center, res.holes[0].area, res.lattice_spacing_px, res.image_shape
    ((15, 15), 400.0, 30.0, (120, 120))
    """
    n = len(res.holes)
    if n:
        v = np.array([h.vertices for h in res.holes], dtype=np.float64).reshape(-1, 2)
        v = resampling.to_input_xy(v, corner=True).reshape(n, 4, 2)
        x, y = v[:, :, 0], v[:, :, 1]
        area = 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1))
        res.holes = targets_from_boxes(Hole, v, range(n), area=area, score=[h.score for h in res.holes])
    if res.lattice_spacing_px is not None:
        res.lattice_spacing_px = float(res.lattice_spacing_px) / float(np.mean(resampling.factors_rc))
    res.image_shape = tuple(int(d) for d in input_shape)
    return res


def warmup() -> None:
    """Compile (or load) the lattice kernels (the regions kernels warm up in `regions`).

    Returns
    -------
    None

    Examples
    --------
    >>> warmup()
    >>> m = np.zeros((120, 120), bool); m[15:25, 15:25] = m[15:25, 75:85] = m[75:85, 15:25] = m[75:85, 75:85] = True
    >>> layout_holes(m).lattice.spacing_px  # the kernels are ready
    60.0
    """
    lattice.warmup()
