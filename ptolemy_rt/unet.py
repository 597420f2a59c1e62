"""Hole-localiser U-Net inference (docs/ALGORITHM.md#hole-unet, #medmag-mask) in row strips (and column tiles), bounded memory.

numpy + onnxruntime only. Arrays are [row, col] (row = first axis = y); sizes in px.

The model set's ``hole_unet`` entry has these ONNX parts (export/onnx_unet.py):
``encoder`` (full and half resolution levels on an image strip → quarter-resolution
``pooled``), ``core`` (whole quarter-resolution tensor → quarter-resolution ``up``),
``decoder`` (image strip + matching ``up`` rows → logits strip), ``whole`` (reference), and
the phase-decomposed ``core_x2`` / ``decoder_x2`` used when rows and cols are multiples of 8
(every padded input): each conv of a ×2 nearest-upsampled tensor runs as four 2×2 convs at
the lower resolution, ``up`` travels as its four phases (N×C×H/8×W/8 each) and the last up
block and ``last`` run per phase, so no full-resolution 64-channel tensor exists besides d0
(≈ 25 % fewer FLOPs than the plain graphs, equal up to float rounding, ≤ 2e-6 tested).

Strips: output rows [a, b) with a, b multiples of 4 (two 2×2 poolings; 8 for the x2 graphs),
computed on a window with at least ``halo`` = 8 px rows of context above and below (the
exact receptive field of the stripped levels, tested), cut away afterwards. At the true
image border the window stops at the border, where the graph's zero padding is the
network's own; all windows have the same height (border windows are shifted inwards) so
each session sees one input shape. Because every window starts at a multiple of 4, poolings
and the ×2 row upsamplings inside a window coincide with the whole image's, so strip-wise
logits equal whole-image logits up to float rounding (≤ 1e-4 tested).

Three-pass core (large images, sets with the parts ``core_down`` / ``core_deep`` /
``core_up``, e.g. the published set from exporter classifiers-2+unet-deep): when one C-channel
quarter-resolution tensor exceeds `DEFAULT_CORE_BUDGET_BYTES` (64 MiB: above ≈ 2048² with 64
channels), the core's levels 2..4 also run in row strips (windows of `core_halo` = 24 quarter
rows of context, starting on multiples of 8 quarter rows) and only levels 5.. (1/1024 of the
pixels per channel) run whole: (1) encoder + ``core_down`` per core band → ``pooled_deep``,
(2) ``core_deep`` whole → ``up_deep``, (3) encoder + ``core_up`` per core band → the ``up``
rows of its decoder windows. The graphs are the nodes of ``core`` / ``core_x2`` cut at block
outputs and every pooling / ×2 upsampling of a window coincides with the whole image's, so
the logits are bit-identical to the one-piece core (tested; the U-Net has no BatchNorm, so
the classifiers' BatchNorm regime does not enter). Cost: the encoder runs twice (≈ +5 % of
the U-Net time). Smaller images run the core in one piece as before.

Column tiles (wide images): rows per band never go below MIN_STRIP_ROWS = 64, so on a wide
image a full-width decoder window exceeds the strip budget (64 channels × 80 rows × 16384
cols × 4 B ≈ 335 MB per tensor, the decoder holding several). Then each decoder window runs
in column tiles (`plan_cols`: the budget's cols per tile, ≥ 8 cols of context left and right
except at the true image border, all tiles equally wide, starts on multiples of the row
alignment, so the poolings and the ``up`` phases coincide with the whole image's): the
logits are bit-identical to the untiled decoder (tests/test_unet.py). Only the decoder is
tiled (it was the peak); the encoder and ``core_down`` / ``core_up`` keep full-width row
windows (smaller: 48 rows, quarter resolution). Images up to ≈ 2450 cols (64 channels) or
≈ 9800 cols (16 channels) are not tiled (the same runs as before).

Memory: the sessions share one arena without memory patterns (ptolemy_rt/models.py), and
the last run of each stage shrinks it, so the stage peaks do not add up. Measured peak RSS
of the whole `ptolemy medmag` process (2 threads): 1024×1440 example ≈ 0.38-0.40 GB,
2048² ≈ 0.47 GB, 4096² ≈ 1.28 GB (before: 1.1-1.3, 1.6, 2.6 GB). `unet_logits` alone on a
1024×16384 float32 image, published set, 1 thread: peak RSS 0.68 GB of which 0.23 GB is the
process, the input and the logits (before the column tiles: 1.26 GB; the decoder runs took
+0.76 GB, now +0.06 GB). Images whose height is not a multiple of 4 run as one band (exact,
but unbounded memory).
"""
from __future__ import annotations

import math

import numpy as np

from .modelspec import UnetArch, default

UNET_KEY = "hole_unet"
DEFAULT_STRIP_BUDGET_BYTES = 48 * 2**20  # bytes of one C-channel full-resolution strip tensor
#: fewest rows per band from a budget (wide images): keeps the halo's recomputation ≤ 25 %
MIN_STRIP_ROWS = 64
#: bytes of one C-channel quarter-resolution tensor above which the core runs in three passes
DEFAULT_CORE_BUDGET_BYTES = 64 * 2**20
DEEP_PARTS = ("core_down", "core_deep", "core_up")


def plan_strips(height: int, width: int, channels: int, *, halo: int = default(UnetArch, "halo_rows"),
                multiple: int = default(UnetArch, "row_multiple"),
                strip_rows: int | None = None,
                budget_bytes: int = DEFAULT_STRIP_BUDGET_BYTES) -> list[tuple[int, int]]:
    """Row bands [(a, b), ...] (px rows, a < b) covering 0..height.

    Bands are balanced (equal heights up to rounding); a, b are multiples of ``multiple``
    except the final b = height. A height that is not a multiple of ``multiple`` gives a
    single band (the whole image), since only then do the poolings align.

    Parameters
    ----------
    height, width
        Image rows and cols, px.
    channels
        Channels of the full-resolution U-Net tensors.
    halo, multiple
        Context rows above / below a band and the row alignment, px (defaults: the model-set
        defaults `UnetArch.halo_rows` = 8 and `UnetArch.row_multiple` = 4).
    strip_rows
        Rows per band (rounded up to a multiple of ``multiple``); default: as many as keep
        one float32 tensor of ``channels`` × (rows + 2·halo) × width within budget_bytes,
        but at least MIN_STRIP_ROWS (wide images: bounded halo overhead over the budget).
    budget_bytes
        Memory bound of one strip tensor, bytes.

    Returns
    -------
    list of (int, int)
        Row bounds [a, b) of each band.

    Examples
    --------
    >>> plan_strips(100, 64, 8, strip_rows=40)
    [(0, 36), (36, 72), (72, 100)]
    >>> plan_strips(99, 64, 8)
    [(0, 99)]
    """
    if height % multiple != 0:
        return [(0, height)]
    if strip_rows is None:
        rows_fit = budget_bytes // max(1, 4 * channels * width)
        strip_rows = max(rows_fit - 2 * halo, MIN_STRIP_ROWS)
    strip_rows = max(multiple, int(strip_rows))
    n = max(1, math.ceil(height / strip_rows))
    rows = math.ceil(height / n / multiple) * multiple
    bands = []
    a = 0
    while a < height:
        b = min(height, a + rows)
        bands.append((a, b))
        a = b
    return bands


def _windows(bands, height: int, halo: int):
    """(a, b, lo, hi) per band: the band's rows [a, b) and its window [lo, hi) (px rows).

    Every window has the same height (the widest band + 2·halo, at most the image) so that
    onnxruntime sees one input shape and reuses one memory plan; windows at the image
    border are shifted inwards instead of shrunk (still ≥ halo rows of context on every
    side that is not the border). lo stays a multiple of 4 when height is one.
    """
    rows = min(height, max(b - a for a, b in bands) + 2 * halo)
    for a, b in bands:
        lo = min(max(0, a - halo), height - rows)
        yield a, b, lo, lo + rows


X2_MULTIPLE = 8  # px: rows and cols multiples of this allow the phase-decomposed graphs
X2_PHASES = ("up00", "up01", "up10", "up11")


def _use_x2(models, height: int, width: int) -> bool:
    """True when the phase-decomposed ``core_x2`` / ``decoder_x2`` graphs apply: the model
    set has them and rows and cols are multiples of 8 (every ×2 upsampling from the quarter
    resolution up is then exact, and strip windows start on a phase boundary)."""
    parts = models.model(UNET_KEY).parts
    return ("core_x2" in parts and "decoder_x2" in parts
            and height % X2_MULTIPLE == 0 and width % X2_MULTIPLE == 0)


def unet_logits(models, image: np.ndarray, *, strip_rows: int | None = None,
                budget_bytes: int = DEFAULT_STRIP_BUDGET_BYTES, mask_threshold=None,
                core_budget_bytes: int = DEFAULT_CORE_BUDGET_BYTES, strip_cols: int | None = None) -> np.ndarray:
    """U-Net logits, float32 [row, col], same shape as ``image`` (with ``mask_threshold``:
    the bool mask logits > mask_threshold instead, made strip by strip, so no whole-image
    logits are held).

    Parameters
    ----------
    models
        ptolemy_rt.models.ModelSet: its ``hole_unet`` architecture (channels, halo_rows,
        row_multiple) and parts encoder, core / core_x2, decoder / decoder_x2.
    image
        2-D [row, col], already normalised and padded by the caller (docs/ALGORITHM.md#medmag-normalise, #medmag-padding),
        or an object with ``shape`` (rows, cols) and ``rows(lo, hi)`` giving those float32 rows
        (each band is then made when the encoder or decoder reads it: no whole-image copy).
    strip_rows, budget_bytes
        See plan_strips (memory bound of the full-resolution strips).
    mask_threshold
        None: return the logits; a number (logit units): return the bool mask
        logits > mask_threshold (the same comparisons as on the whole logits).
    core_budget_bytes
        When the set has the parts ``core_down`` / ``core_deep`` / ``core_up`` and one
        C-channel quarter-resolution tensor of the image is larger than this (bytes), the
        core runs in three passes (`_core_in_strips`: bit-identical, memory bounded by the
        strips); otherwise the core runs on the whole quarter-resolution tensor.
    strip_cols
        Cols per decoder tile (rounded up to the row alignment): each decoder row window
        then runs in column tiles (`plan_cols`; bit-identical). Default: column tiles only
        when one C-channel full-resolution tensor of a full-width window exceeds
        budget_bytes (wide images, where MIN_STRIP_ROWS overrides the budget).

    Returns
    -------
    numpy.ndarray
        float32 logits [row, col].

    Raises
    ------
    ValueError
        ``image`` is not 2-D.

    Examples
    --------
    On a synthetic R2/2 image (holes of radius 50 px, `synthetic.medmag_with_ids` marks
    their pixels), the mask of the own set's logits lies inside the true holes and covers
    the centre of the hole at (x, y) = (215, 175); strips of 64 rows give the same logits:

    >>> from ptolemy_rt import synthetic
    >>> from ptolemy_rt.medmag import mask_from_logits, normalise
    >>> from ptolemy_rt.models import load_model_set
    >>> ms = load_model_set("ptolemy-rt-synth-v1")
    >>> image, truth, ids, _ = synthetic.medmag_with_ids(0, (256, 256), pixel_nm=20.0, film="R2/2",
    ...                                                  angle_deg=0.0, tilt_deg=0.0)
    >>> logits = unet_logits(ms, normalise(image))
    >>> mask = mask_from_logits(logits, image.shape)
    >>> logits.shape, logits.dtype, bool(mask.any()), bool((ids[mask] > 0).all()), bool(mask[175, 215])
    ((256, 256), dtype('float32'), True, True, True)
    >>> bool(np.array_equal(unet_logits(ms, normalise(image), strip_rows=64), logits))
    True
    >>> unet_logits(ms, np.zeros((2, 8, 8)))
    Traceback (most recent call last):
    ...
    ValueError: unet_logits expects a 2-D image [row, col], got shape (2, 8, 8)
    """
    arch = models.model(UNET_KEY).architecture
    if hasattr(image, "rows"):  # a lazy source: float32 row bands on request (medmag._NormalisedPadded)
        img = image
        height, width = (int(v) for v in img.shape)

        def rows(lo, hi):
            return np.ascontiguousarray(img.rows(lo, hi), dtype=np.float32)[None, None]
    else:
        img = np.ascontiguousarray(image, dtype=np.float32)
        if img.ndim != 2:
            raise ValueError(f"unet_logits expects a 2-D image [row, col], got shape {img.shape}")
        height, width = img.shape
        x = img[None, None]

        def rows(lo, hi):
            return x[:, :, lo:hi]
    c, halo, mult = arch.channels, arch.halo_rows, arch.row_multiple
    x2 = _use_x2(models, height, width)
    if x2:  # windows start on multiples of 8 (phase boundaries of ``up``)
        mult = max(mult, X2_MULTIPLE)
        halo = -(-halo // X2_MULTIPLE) * X2_MULTIPLE
    bands = plan_strips(height, width, c, halo=halo, multiple=mult,
                        strip_rows=strip_rows, budget_bytes=budget_bytes)
    enc = models.session(UNET_KEY, "encoder")
    dec = models.session(UNET_KEY, "decoder_x2" if x2 else "decoder")
    names = X2_PHASES if x2 else ("up",)
    step = X2_MULTIPLE if x2 else 4
    out = np.empty((height, width), dtype=np.float32 if mask_threshold is None else bool)
    if _use_deep(models, height, width, c, x2, core_budget_bytes):
        deep = 2 ** arch.deep_level
        bands = plan_strips(height, width, c, halo=halo, multiple=max(mult, deep),
                            strip_rows=strip_rows, budget_bytes=budget_bytes)
        wins = list(_windows(bands, height, halo))
        shrink = _shrink_options()  # arena chunks back after every run (see _core_in_strips)
        ups_of = _core_in_strips(models, arch, enc, rows, height, width, bands, wins, halo, x2, budget_bytes)
        cols = plan_cols(width, wins[0][3] - wins[0][2], c, halo=halo, multiple=mult,
                         strip_cols=strip_cols, budget_bytes=budget_bytes)
        for k, (a, b, lo, hi) in enumerate(wins):
            _decode(dec, rows(lo, hi), ups_of(k), names, step, cols, a, b, lo, out, mask_threshold, shrink)
        return out
    core = models.session(UNET_KEY, "core_x2" if x2 else "core")

    # encoder: quarter-resolution pooled tensor of the whole image, strip by strip
    pooled = None
    wins = list(_windows(bands, height, halo))
    for k, (a, b, lo, hi) in enumerate(wins):
        opts = _shrink_options() if k == len(wins) - 1 else None
        p = enc.run(None, {"image": rows(lo, hi)}, opts)[0]
        if pooled is None:
            pooled = np.empty((1, p.shape[1], height // 4, p.shape[3]), dtype=np.float32)
        if len(bands) == 1:
            pooled = p
        else:
            pooled[:, :, a // 4:b // 4] = p[:, :, (a - lo) // 4:(b - lo) // 4]
        del p

    ups = core.run(list(names), {"pooled": pooled}, _shrink_options())
    del pooled

    cols = plan_cols(width, wins[0][3] - wins[0][2], c, halo=halo, multiple=mult,
                     strip_cols=strip_cols, budget_bytes=budget_bytes)
    for k, (a, b, lo, hi) in enumerate(wins):
        q0, q1 = lo // step, (hi // step if len(bands) > 1 else ups[0].shape[2])
        opts = _shrink_options() if k == len(wins) - 1 else None
        _decode(dec, rows(lo, hi), [u[:, :, q0:q1] for u in ups], names, step, cols, a, b, lo, out,
                mask_threshold, opts)
    return out


def plan_cols(width: int, window_rows: int, channels: int, *, halo: int = default(UnetArch, "halo_rows"),
              multiple: int = default(UnetArch, "row_multiple"), strip_cols: int | None = None,
              budget_bytes: int = DEFAULT_STRIP_BUDGET_BYTES) -> list[tuple[int, int, int, int]]:
    """Column tiles of the decoder's row windows: [(c0, c1, lo, hi), ...] (px cols).

    Each tile computes the output cols [c0, c1) on the input cols [lo, hi): at least
    ``halo`` cols of context left and right except at the true image border (where the
    graph's zero padding is the network's own), all windows equally wide (border windows
    shifted inwards: one input shape), c0 and lo multiples of ``multiple`` (the poolings and
    the ``up`` phases coincide with the whole image's: bit-identical logits). One tile
    [(0, width, 0, width)] unless ``strip_cols`` is given or one float32 tensor of
    ``channels`` × window_rows × width exceeds budget_bytes (images so wide that
    MIN_STRIP_ROWS overrides the budget); then tiles as `plan_strips` plans rows, with cols
    and rows swapped.

    Parameters
    ----------
    width, window_rows
        Image cols and rows of one decoder window, px.
    channels
        Channels of the full-resolution U-Net tensors.
    halo, multiple
        Context cols on each side and the col alignment, px (as the rows').
    strip_cols
        Cols per tile (default: from budget_bytes).
    budget_bytes
        Memory bound of one C-channel full-resolution tensor of a window, bytes.

    Returns
    -------
    list of (int, int, int, int)
        Output cols [c0, c1) and window cols [lo, hi) of each tile.

    Examples
    --------
    >>> plan_cols(1536, 120, 64)  # within the budget: one tile
    [(0, 1536, 0, 1536)]
    >>> plan_cols(16384, 80, 64, multiple=8)[:2]  # 7 tiles of 2344 (+ 8 + 8) cols
    [(0, 2344, 0, 2360), (2344, 4688, 2336, 4696)]
    >>> plan_cols(100, 80, 8, strip_cols=40)
    [(0, 36, 0, 52), (36, 72, 28, 80), (72, 100, 48, 100)]
    """
    if strip_cols is None and 4 * channels * window_rows * width <= budget_bytes:
        return [(0, width, 0, width)]
    bands = plan_strips(width, window_rows, channels, halo=halo, multiple=multiple, strip_rows=strip_cols,
                        budget_bytes=budget_bytes)
    return list(_windows(bands, width, halo))


def _decode(dec, image, ups, names, step: int, cols, a: int, b: int, lo: int, out, mask_threshold, opts) -> None:
    """Decoder on one row window (``image`` N×1×rows×W, ``ups`` its ``up`` rows or phases at
    1/step resolution) in the column tiles ``cols`` (`plan_cols`); writes rows [a, b) of out."""
    for j, (c0, c1, clo, chi) in enumerate(cols):
        if len(cols) == 1:
            feeds = {"image": image}
            feeds.update(zip(names, ups))
        else:
            feeds = {"image": np.ascontiguousarray(image[:, :, :, clo:chi])}
            feeds.update((n, np.ascontiguousarray(u[:, :, :, clo // step:chi // step])) for n, u in zip(names, ups))
        y = dec.run(None, feeds, opts if j == len(cols) - 1 else None)[0]
        del feeds
        if mask_threshold is None:
            out[a:b, c0:c1] = y[0, 0, a - lo:b - lo, c0 - clo:c1 - clo]
        else:
            np.greater(y[0, 0, a - lo:b - lo, c0 - clo:c1 - clo], mask_threshold, out=out[a:b, c0:c1])
        del y


def _use_deep(models, height: int, width: int, channels: int, x2: bool, core_budget_bytes: int) -> bool:
    """True when the core runs in three passes (`_core_in_strips`): the set has the parts
    ``core_down`` / ``core_deep`` / ``core_up`` (``core_up_x2`` for the phase graphs), rows are
    a multiple of 2**deep_level px (every pooling down to the deep level aligns with strip
    bounds) and one C-channel quarter-resolution tensor exceeds core_budget_bytes."""
    entry = models.model(UNET_KEY)
    parts, arch = entry.parts, entry.architecture
    need = DEEP_PARTS[:2] + (("core_up_x2",) if x2 else ("core_up",))
    return (all(p in parts for p in need) and arch.depth - 1 > arch.deep_level
            and height % 2 ** arch.deep_level == 0
            and 4 * channels * (height // 4) * (width // 4) > core_budget_bytes)


def core_halo(split_level: int, deep_level: int) -> int:
    """Rows of ``pooled`` (the split level's resolution) on each side that one output row of
    ``core_up`` depends on, rounded up to a multiple of 2**(deep_level − split_level).

    Exact dependency intervals of the stripped levels: a 3×3 conv (padding 1) reads rows
    r−1..r+1, a 2×2 pooling rows 2r, 2r+1, and the nearest ×2 upsampling of the level below
    row ⌊r/2⌋ (⌊(r−1)/2⌋ for the legacy rule with an odd size: both are included); the
    ``up_deep`` input is an exact ×2ⁿ of the window and adds no context.

    Parameters
    ----------
    split_level, deep_level
        First stripped core level and the first level of ``core_deep`` (UnetArch).

    Returns
    -------
    int
        Halo, rows at the split level's resolution (4 px per row at split level 2).

    Examples
    --------
    >>> core_halo(2, 5)
    24
    >>> core_halo(2, 3)
    2
    """
    def down(j, a, b):  # rows of pooled needed by d_j rows [a, b]
        a, b = a - 1, b + 1
        while j > split_level:
            a, b, j = 2 * a, 2 * b + 1, j - 1
            a, b = a - 1, b + 1
        return a, b

    def up(j, a, b):  # rows of pooled needed by u_j rows [a, b], j < deep_level
        lo, hi = down(j, a - 1, b + 1)
        if j + 1 < deep_level:
            ua, ub = up(j + 1, (a - 2) // 2, (b + 1) // 2)
            lo, hi = min(lo, ua), max(hi, ub)
        return lo, hi

    scale = 2 ** (deep_level - split_level)
    need = 0
    for r in range(scale):
        lo, hi = up(split_level, r + 4 * scale, r + 4 * scale)
        need = max(need, r + 4 * scale - lo, hi - r - 4 * scale)
    return -(-need // scale) * scale


def _core_in_strips(models, arch, enc, rows, height: int, width: int, bands, wins, halo: int, x2: bool,
                    budget_bytes: int):
    """The core in three passes, memory bounded by strips.

    The decoder bands are grouped into core bands (consecutive bands whose quarter-resolution
    window, `core_halo` rows of context on each side and starting on a multiple of
    2**(deep_level − 2) rows, keeps one C-channel tensor within budget_bytes).
    (1) per core band, ``pooled`` (encoder) and ``core_down`` on its window give the band's
    rows of ``pooled_deep``; (2) ``core_deep`` runs on the whole ``pooled_deep``
    (1/4**deep_level of the image's pixels per channel); (3) returns ``ups_of(k)``: the ``up``
    rows (or phases) of decoder window k, from ``core_up`` on the window of its core band
    (computed once per core band). ``pooled`` rows are made by encoder runs of at most one
    band of px rows and kept between consecutive windows (the encoder runs about twice
    over the image; nothing at the quarter resolution is kept whole).

    Same nodes as ``core`` / ``core_x2`` cut at block outputs; with aligned windows every
    pooling and ×2 upsampling inside a window coincides with the whole image's, so the
    result is bit-identical to the whole core (tests/test_unet.py).
    """
    q = 4  # px per quarter-resolution row (split level 2)
    scale = 2 ** (arch.deep_level - arch.split_level)
    ch = core_halo(arch.split_level, arch.deep_level)
    h4, c = height // q, arch.channels
    ext = -(-halo // q)  # quarter rows of a decoder window beyond its band
    down = models.session(UNET_KEY, "core_down")
    deep = models.session(UNET_KEY, "core_deep")
    up = models.session(UNET_KEY, "core_up_x2" if x2 else "core_up")
    # px rows per encoder run: as the decoder's bands, or fewer on wide images (the encoder
    # is cheap; its runs happen while a core window is held)
    # every run hands its arena chunks back: the stages' tensors differ in size, and a kept
    # arena would hold the largest of each beside the windows held between runs
    shrink = _shrink_options()
    enc_rows = min(max(b - a for a, b in bands),
                   max(2 ** arch.deep_level, budget_bytes // max(1, 4 * c * width) // 32 * 32))

    # core bands: groups of consecutive decoder bands (quarter rows, multiples of scale)
    fit = budget_bytes // max(1, 4 * c * (width // q))
    group_rows = max(fit - 2 * (ch + scale), 2 * ch)
    groups, members = [], []
    for k, (a, b) in enumerate(bands):
        if members and (b - bands[members[0]][0]) // q > group_rows:
            groups.append(members)
            members = []
        members.append(k)
    groups.append(members)
    core_bands = [(bands[m[0]][0] // q, bands[m[-1]][1] // q) for m in groups]
    cache = {"lo": 0, "hi": 0, "p": None}

    def pooled(lo2, hi2):
        """``pooled`` rows [lo2, hi2) (quarter resolution); windows only move down, the rows
        of the previous window are reused."""
        c_lo, c_hi, prev = cache["lo"], cache["hi"], cache["p"]
        start = lo2
        if prev is not None and c_lo <= lo2 < c_hi:
            start = min(c_hi, hi2)
        sub = [(a, min(q * hi2, a + enc_rows)) for a in range(q * start, q * hi2, enc_rows)]
        cache.update(lo=0, hi=0, p=None)
        if start == lo2 and len(sub) == 1:
            del prev
            a, b = sub[0]
            lo, hi = max(0, a - halo), min(height, b + halo)
            out = enc.run(None, {"image": rows(lo, hi)}, shrink)[0][:, :, (a - lo) // q:(b - lo) // q]
        else:
            out = np.empty((1, c, hi2 - lo2, width // q), np.float32)
            if start > lo2:  # the rows of the previous window, then that window is let go
                out[:, :, :start - lo2] = prev[:, :, lo2 - c_lo:start - c_lo]
            del prev
            for a, b in sub:
                lo, hi = max(0, a - halo), min(height, b + halo)
                p = enc.run(None, {"image": rows(lo, hi)}, shrink)[0]
                out[:, :, a // q - lo2:b // q - lo2] = p[:, :, (a - lo) // q:(b - lo) // q]
                del p
        cache.update(lo=lo2, hi=hi2, p=out)
        return out

    # pass 1: pooled_deep, core band by core band
    pooled_deep = None
    for a2, b2, lo2, hi2 in _windows(core_bands, h4, ch):
        pd = down.run(None, {"pooled": pooled(lo2, hi2)}, shrink)[0]
        if pooled_deep is None:
            pooled_deep = np.empty((1, pd.shape[1], h4 // scale, pd.shape[3]), np.float32)
        pooled_deep[:, :, a2 // scale:b2 // scale] = pd[:, :, (a2 - lo2) // scale:(b2 - lo2) // scale]
        del pd
    cache.update(lo=0, hi=0, p=None)
    # pass 2: the deep levels on the whole image
    up_deep = deep.run(None, {"pooled_deep": pooled_deep}, _shrink_options())[0]
    del pooled_deep
    # pass 3: per core band (extended by the decoder windows' context), core_up once
    need = [(max(0, (a2 - ext) // scale * scale), min(h4, -(-(b2 + ext) // scale) * scale)) for a2, b2 in core_bands]
    cwins = [w[2:] for w in _windows(need, h4, ch)]
    names = list(X2_PHASES) if x2 else ["up"]
    step = 2 if x2 else 1  # quarter-resolution rows per row of the core_up outputs
    group_of = {k: g for g, m in enumerate(groups) for k in m}
    current = {"g": None, "ys": None}

    def ups_of(k):
        g = group_of[k]
        lo2, hi2 = cwins[g]
        if current["g"] != g:
            current["ys"] = None
            feeds = {"pooled": pooled(lo2, hi2), "up_deep": up_deep[:, :, lo2 // scale:hi2 // scale]}
            current.update(g=g, ys=up.run(names, feeds, shrink))
            del feeds
            if g == len(groups) - 1:
                cache.update(p=None)
        lo, hi = wins[k][2:]
        r0, r1 = (lo // q - lo2) // step, (hi // q - lo2) // step
        return [y[:, :, r0:r1] for y in current["ys"]]

    return ups_of


def _shrink_options():
    """RunOptions that hand the CPU arena's free chunks back at the end of the run (the
    U-Net's strip tensors are not needed by the later, smaller stages); None (keep them for
    the next request) under the "warm" memory policy of a server (`models.keep_memory_warm`)."""
    import onnxruntime as ort

    from .models import memory_policy

    if memory_policy() == "warm":
        return None
    ro = ort.RunOptions()
    ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return ro


def unet_logits_whole(models, image: np.ndarray) -> np.ndarray:
    """U-Net logits through the single ``whole`` graph (reference; memory grows with size).

    Parameters
    ----------
    models : models.ModelSet
        Its ``hole_unet`` part ``whole``.
    image : numpy.ndarray
        2-D [row, col] float32, normalised and padded (docs/ALGORITHM.md#medmag-normalise).

    Returns
    -------
    numpy.ndarray
        float32 logits [row, col], same shape as ``image``.

    Examples
    --------
    The strip-wise `unet_logits` computes the same logits (to float32 rounding):

    >>> from ptolemy_rt import synthetic
    >>> from ptolemy_rt.medmag import normalise
    >>> from ptolemy_rt.models import load_model_set
    >>> ms = load_model_set("ptolemy-rt-synth-v1")
    >>> image, _ = synthetic.medmag_image(0, (256, 256), pixel_nm=20.0, film="R2/2", angle_deg=0.0, tilt_deg=0.0)
    >>> whole = unet_logits_whole(ms, normalise(image))
    >>> whole.shape, whole.dtype, float(np.abs(whole - unet_logits(ms, normalise(image))).max()) < 1e-4
    ((256, 256), dtype('float32'), True)
    """
    img = np.ascontiguousarray(image, dtype=np.float32)
    y = models.session(UNET_KEY, "whole").run(None, {"image": img[None, None]})[0]
    return y[0, 0]


def logits_to_mask(logits: np.ndarray, threshold: float = 1e-4) -> np.ndarray:
    """Boolean mask sigmoid(logits) > threshold, computed as logits > logit(threshold).

    Parameters
    ----------
    logits : numpy.ndarray
        Float array, any shape (normally [row, col]).
    threshold : float
        Probability in (0, 1); default 1e-4 (logit ≈ −9.21), the pipeline's.

    Returns
    -------
    numpy.ndarray
        bool, same shape.

    Examples
    --------
    >>> logits_to_mask(np.array([-10.0, -9.0, 0.0], np.float32)).tolist()
    [False, True, True]
    >>> logits_to_mask(np.array([-1.0, 0.0, 1.0]), 0.5).tolist()
    [False, False, True]
    """
    return logits > np.float32(math.log(threshold / (1.0 - threshold)))
