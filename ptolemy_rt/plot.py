"""Overlay pictures of results (needs Pillow: ``pip install 'ptolemy-rt[plot]'``).

The picture has the input image's size (width = cols, height = rows), grey levels stretched
between the 1st and 99th percentiles of the pixels, each target's box drawn in a colour
given by its score (red = 0, yellow = 0.5, green = 1) and the ranks of the best ten written
at their centres. Points are (x, y) = (col, row) px, as in the results.
"""
from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

from .errors import EXIT_BAD_INPUT, OutputError, PtolemyError

N_LABELS = 10


class PlotUnavailableError(OutputError):
    """Pillow is not installed."""


class ResultFileError(PtolemyError):
    """A result file given to `ptolemy plot` cannot be read."""

    exit_code = EXIT_BAD_INPUT


def require_pillow() -> None:
    """Check that Pillow can be imported.

    Raises
    ------
    PlotUnavailableError
        (one line, exit code 5) Pillow is not installed; the message names the extra.

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("PIL")  # Pillow: the [plot] extra
    >>> require_pillow()
    """
    try:
        import PIL.Image  # noqa: F401
        import PIL.ImageDraw  # noqa: F401
    except ImportError:
        raise PlotUnavailableError(
            "plotting needs Pillow, which is not installed; install it with: pip install 'ptolemy-rt[plot]'"
        ) from None


def score_colour(score: float) -> tuple[int, int, int]:
    """RGB colour of a score in [0, 1]: red (0) → yellow (0.5) → green (1).

    Parameters
    ----------
    score : float
        Clipped to [0, 1]; NaN counts as 0.

    Returns
    -------
    (int, int, int)
        (red, green, blue), 0-255.

    Examples
    --------
    >>> [score_colour(s) for s in (0.0, 0.25, 0.5, 1.0, float("nan"))]
    [(230, 0, 0), (230, 115, 0), (230, 230, 0), (0, 230, 0), (230, 0, 0)]
    """
    s = min(max(float(score), 0.0), 1.0) if score == score else 0.0
    if s <= 0.5:
        return 230, int(round(230 * s / 0.5)), 0
    return int(round(230 * (1.0 - s) / 0.5)), 230, 0


class Grey:
    """Grey levels made in advance (`to_grey`), for `render` / `overlay_png`: the caller may
    then reuse or free the pixels (1 byte/px kept instead of the float image).

    Parameters
    ----------
    levels : numpy.ndarray
        uint8 [row, col].

    Examples
    --------
    >>> import numpy as np
    >>> Grey(to_grey(np.array([[0.0, 1.0]]))).levels.tolist()
    [[0, 255]]
    """

    def __init__(self, levels) -> None:
        self.levels = levels


def _percentiles_1_99(a):
    """`numpy.percentile(float64(a), [1, 99])` (method "linear") of a 2-D float32 array of
    finite values, bit for bit, from two order statistics each (`mixture.order_statistics_f32`:
    no whole-image copy)."""
    import numpy as np

    from .mixture import order_statistics_f32

    n = a.size
    virtual = [(n - 1) * q for q in np.true_divide([1.0, 99.0], 100)]  # numpy's "linear" index
    prev = [int(np.floor(v)) for v in virtual]
    ranks = sorted({k for p in prev for k in (p, min(p + 1, n - 1))})
    val = dict(zip(ranks, (np.float64(v) for v in order_statistics_f32(a, ranks))))
    out = []
    for v, p in zip(virtual, prev):
        lo, hi, t = val[p], val[min(p + 1, n - 1)], np.float64(v - p)
        d = hi - lo
        out.append(hi - d * (1 - t) if t >= 0.5 else lo + d * t)  # numpy's _lerp
    return out


def to_grey(pixels) -> "Any":
    """Grey levels of an image: pixels stretched between their 1st and 99th percentiles.

    A 2-D float32 image of finite values is done in row strips (the percentiles from order
    statistics, exactly numpy's): memory one strip besides the uint8 result; other inputs
    through one float64 copy. Same bytes either way.

    Parameters
    ----------
    pixels : array_like
        2-D image, [row, col]; non-finite pixels are shown as the 1st percentile.

    Returns
    -------
    numpy.ndarray
        uint8, same shape: 0 at or below the 1st percentile, 255 at or above the 99th
        (min/max when those coincide; all 0 for a constant or all-NaN image).

    Examples
    --------
    >>> import numpy as np
    >>> to_grey(np.array([[0.0, 1.0], [2.0, np.nan]])).tolist()
    [[0, 128], [255, 0]]
    >>> x = np.random.default_rng(0).normal(size=(50, 40)).astype(np.float32)
    >>> bool((to_grey(x) == to_grey(x.astype(np.float64))).all())
    True
    """
    import numpy as np

    from .core import row_strips

    a = np.asarray(pixels)
    if a.ndim == 2 and a.dtype == np.float32 and a.size >= 2 and bool(np.isfinite(a.min() + a.max())):
        lo, hi = _percentiles_1_99(a)
        if not hi > lo:
            lo, hi = float(a.min()), float(a.max())
        if not hi > lo:
            hi = lo + 1.0
        out = np.empty(a.shape, np.uint8)
        for sl in row_strips(*a.shape):
            g = (np.asarray(a[sl], np.float64) - lo) / (hi - lo)
            out[sl] = np.clip(g, 0.0, 1.0) * 255.0 + 0.5
        return out
    a = np.asarray(pixels, dtype=np.float64)
    finite = np.isfinite(a)
    vals = a[finite] if not finite.all() else a
    if vals.size == 0:
        return np.zeros(a.shape, dtype=np.uint8)
    lo, hi = np.percentile(vals, [1.0, 99.0])
    if not hi > lo:
        lo, hi = float(vals.min()), float(vals.max())
    if not hi > lo:
        hi = lo + 1.0
    g = (np.where(finite, a, lo) - lo) / (hi - lo)
    return (np.clip(g, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def render(pixels, items: list[dict], n_labels: int = N_LABELS):
    """PIL RGB image of `pixels` ([row, col]) with the targets' boxes and the best ranks.

    Parameters
    ----------
    pixels : array_like or Grey
        2-D image, [row, col] (grey levels by `to_grey`), or its grey levels made in advance.
    items : list of dict
        "vertices" (4 × [x, y] px), "center" ([x, y] px) and "score", sorted best first
        (rank = position + 1); boxes coloured by `score_colour`.
    n_labels : int
        How many of the best ranks are written at their centres.

    Returns
    -------
    PIL.Image.Image
        Mode "RGB", size (width, height) = (cols, rows).

    Raises
    ------
    PlotUnavailableError
        Pillow is not installed.

    Examples
    --------
    A box of score 1 (green) on a black image; pixels are addressed (x, y) = (col, row):

    >>> import pytest; _ = pytest.importorskip("PIL")  # Pillow: the [plot] extra
    >>> import numpy as np
    >>> box = {"vertices": [[1, 1], [6, 1], [6, 6], [1, 6]], "center": [3, 3], "score": 1.0}
    >>> img = render(np.zeros((8, 10)), [box], n_labels=0)
    >>> img.size, img.getpixel((1, 1)), img.getpixel((4, 4))
    ((10, 8), (0, 230, 0), (0, 0, 0))
    """
    require_pillow()
    from PIL import Image, ImageDraw

    grey = pixels.levels if isinstance(pixels, Grey) else to_grey(pixels)
    h, w = grey.shape
    img = Image.fromarray(grey).convert("RGB")  # uint8 2-D → mode "L"
    draw = ImageDraw.Draw(img)
    lw = max(1, int(round(max(h, w) / 400)))
    order = list(enumerate(items, start=1))
    for rank, d in reversed(order):  # best drawn last, on top
        pts = [(float(x), float(y)) for x, y in d["vertices"]]
        draw.line(pts + [pts[0]], fill=score_colour(d["score"]), width=lw, joint="curve")
    fsize = max(12, int(round(max(h, w) / 45)))
    font = _font(fsize)
    for rank, d in order[:n_labels]:
        cx, cy = float(d["center"][0]), float(d["center"][1])
        if not (-fsize <= cx <= w + fsize and -fsize <= cy <= h + fsize):
            continue  # a label there would not show (and Pillow cannot place text far off)
        text = str(rank)
        try:
            draw.text((cx, cy), text, fill=(255, 255, 255), font=font, anchor="mm",
                      stroke_width=max(1, fsize // 8), stroke_fill=(0, 0, 0))
        except (TypeError, ValueError):  # bitmap fonts support no anchor
            draw.text((cx, cy), text, fill=(255, 255, 255), font=font)
    return img


def png_bytes(img) -> bytes:
    """The PNG file of a PIL image (no optimisation pass: deterministic and fast).

    Parameters
    ----------
    img : PIL.Image.Image

    Returns
    -------
    bytes

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("PIL")  # Pillow: the [plot] extra
    >>> from PIL import Image
    >>> png_bytes(Image.new("RGB", (2, 2)))[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def overlay_png(pixels, items: list[dict]) -> bytes:
    """The overlay picture (see `render`) as PNG file bytes, for `files.commit_outputs`.

    Parameters
    ----------
    pixels : array_like or Grey
        The image, [row, col], or its grey levels made in advance (`Grey`).
    items : list of dict
        Targets as `render` takes them, best first.

    Returns
    -------
    bytes
        A PNG of the image's size (width = cols, height = rows).

    Raises
    ------
    PlotUnavailableError
        Pillow is not installed.

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("PIL")  # Pillow: the [plot] extra
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> Image.open(io.BytesIO(overlay_png(np.zeros((8, 10)), []))).size
    (10, 8)
    """
    return png_bytes(render(pixels, items))


def write_overlay(pixels, items: list[dict], out: str | os.PathLike, protect: Iterable[str | os.PathLike] = ()) -> None:
    """Render and write the overlay PNG atomically (`files.write_atomic`).

    Parameters
    ----------
    pixels : array_like
        2-D image, [row, col].
    items : list of dict
        Targets as `render` takes them, best first.
    out : str or os.PathLike
        The PNG path.
    protect : iterable of paths
        Files `out` must not be (the inputs).

    Raises
    ------
    OutputError
        `out` cannot be written or names a protected input; nothing is left behind.
    PlotUnavailableError
        Pillow is not installed.

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("PIL")  # Pillow: the [plot] extra
    >>> import os, shutil, tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> write_overlay(np.zeros((8, 10)), [], os.path.join(d, "o.png"))
    >>> open(os.path.join(d, "o.png"), "rb").read(4)
    b'\\x89PNG'
    >>> shutil.rmtree(d)
    """
    from .files import write_atomic

    write_atomic(out, overlay_png(pixels, items), protect=protect)


def read_items(path: str | os.PathLike) -> list[dict]:
    """Targets from a result file (`read_result` without the header).

    Parameters
    ----------
    path : str or os.PathLike
        The result file.

    Returns
    -------
    list of dict
        As `read_result`'s first value.

    Raises
    ------
    ResultFileError
        See `read_result`.

    Examples
    --------
    >>> import os, shutil, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "r.json"), "w") as f:
    ...     _ = f.write('[{"vertices": [[0, 0], [2, 0], [2, 2], [0, 2]], "center": [1, 1], "score": 0.2},'
    ...                 ' {"vertices": [[4, 4], [6, 4], [6, 6], [4, 6]], "center": [5, 5], "score": 0.8}]')
    >>> [(d_["center"], d_["score"]) for d_ in read_items(os.path.join(d, "r.json"))]
    [([5.0, 5.0], 0.8), ([1.0, 1.0], 0.2)]
    >>> shutil.rmtree(d)
    """
    return read_result(path)[0]


#: json-full keys `read_result` returns in its header: how the image was read.
HEADER_KEYS = ("command", "section", "shape", "source")


def read_result(path: str | os.PathLike) -> tuple[list[dict], dict]:
    """Targets from a result file, the published JSON list or a json-full object ("items"),
    and what a json-full file says about the image they belong to.

    Parameters
    ----------
    path : str or os.PathLike
        The result file.

    Returns
    -------
    items : list of dict
        "vertices" (≥ 3 × [x, y] float px), "center" ([x, y] float px), "score" (float), best
        score first.
    header : dict
        The json-full keys of `HEADER_KEYS` present in the file: "command" ("lowmag" |
        "medmag"), "section", "shape" ([rows, cols] of the image analysed, px) and "source"
        (how it was assembled: ``bin``, ``mdoc``...); {} for the published JSON list.

    Raises
    ------
    ResultFileError
        (one line, exit code 3) the file is missing, unreadable, not JSON, not a list of
        targets, or a target lacks vertices/center/score or holds a non-finite number (the
        JSON reader accepts NaN and Infinity).

    Examples
    --------
    >>> import os, shutil, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "r.json"), "w") as f:
    ...     _ = f.write('[{"vertices": [[0, 0], [2, 0], [2, 2], [0, 2]], "center": [1, 1], "score": 0.2},'
    ...                 ' {"vertices": [[4, 4], [6, 4], [6, 6], [4, 6]], "center": [5, 5], "score": 0.8}]')
    >>> items, header = read_result(os.path.join(d, "r.json"))
    >>> [(d_["center"], d_["score"]) for d_ in items], header
    ([([5.0, 5.0], 0.8), ([1.0, 1.0], 0.2)], {})
    >>> with open(os.path.join(d, "f.json"), "w") as f:
    ...     _ = f.write('{"command": "lowmag", "shape": [8, 10], "source": {"bin": 4}, "items": []}')
    >>> read_result(os.path.join(d, "f.json"))
    ([], {'command': 'lowmag', 'shape': [8, 10], 'source': {'bin': 4}})
    >>> shutil.rmtree(d)
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultFileError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ResultFileError(f"{p}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    except json.JSONDecodeError as e:
        raise ResultFileError(f"{p}: not a JSON result file ({e.msg} at line {e.lineno})") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer of > 4300 digits, nesting too deep
        raise ResultFileError(f"{p}: not a JSON result file ({type(e).__name__}: {e})") from None
    header: dict = {}
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        header = {k: data[k] for k in HEADER_KEYS if k in data}
        data = data["items"]
    if not isinstance(data, list):
        raise ResultFileError(f"{p}: not a ptolemy result (expected a JSON list of targets)")
    out = []
    for i, d in enumerate(data):
        try:
            verts = [[float(x), float(y)] for x, y in d["vertices"]]
            center = [float(d["center"][0]), float(d["center"][1])]
            score = float(d["score"])
            if len(verts) < 3:
                raise ValueError
        except (KeyError, TypeError, ValueError, IndexError, OverflowError):
            raise ResultFileError(f"{p}: target {i} lacks valid vertices/center/score") from None
        if not all(math.isfinite(v) for v in [score, *center, *(c for xy in verts for c in xy)]):
            raise ResultFileError(f"{p}: target {i} holds a non-finite number (NaN or Infinity) in vertices/center/score")
        out.append({"vertices": verts, "center": center, "score": score})
    out.sort(key=lambda d: -d["score"])
    return out, header
