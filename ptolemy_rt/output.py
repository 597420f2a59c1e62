"""Formatting and writing pipeline results (JSON, extended JSON, CSV, TXT).

Pure Python (no numpy) so that the command line starts fast.

Coordinates: every point written is (x, y) = (col, row) in pixels of the input image, as in
`results.py` and in the published tool's JSON. Optional physical units (when the pixel size
is known): centre in µm and area in µm², measured in the image frame from the image's
top-left corner (not stage coordinates). Stage coordinates (when the input's metadata give
them: a SerialEM montage's .mdoc, an EPU .xml or Atlas.dm; `sources.load_image`):
``stage_x_um``, ``stage_y_um`` of each target's box centre (the mean of its vertices, in
continuous pixel coordinates) through `Report.stage`, in json-full, csv and txt; without
them these outputs are unchanged, and ``json`` (the published schema) never has them.

Formats
-------
json       the published schema, byte for byte as the published tool's ``-f json``:
           ``json.dumps(list) + "\\n"``; a list of objects with keys in this order:
           ``vertices`` (4 × [x, y] floats, px), ``center`` ([x, y] ints, px), ``area`` (px²),
           ``brightness`` (squares only), ``score``; sorted by score, best first.
json-full  one object with metadata and the same items under ``items``.
csv        header row, one row per target (see `CSV_COLUMNS`); an empty result is a
           ``# reason: ...`` comment line followed by the header.
txt        a human-readable table with ``#`` comment lines on top.
nav        a SerialEM Navigator file (written by `navigator.write_targets_nav`, needs the map
           item: see batch.analyse and docs/SERIALEM.md).
Floats in json/csv are written with Python's shortest round-trip repr (deterministic).

The formatters know results only through `results.PipelineResult` (targets, per-target fields,
kind-specific metadata in output order), never by switching on the kind. Files are written by
`files.write_atomic` (re-exported here with `check_output_path`, `same_file` and
`commit_outputs`).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import EXIT_USAGE, PtolemyError
from .files import check_output_path, commit_outputs, same_file, write_atomic  # noqa: F401  (re-exported)
from .results import PipelineResult

FORMATS = ("json", "json-full", "csv", "txt", "nav")
EXTENSIONS = {"json": ".json", "json-full": ".json", "csv": ".csv", "txt": ".txt", "nav": ".nav"}

# Pixel sizes (nm/px) that an MRC header may plausibly hold for each magnification; a header
# value outside is ignored (the common "1 Å" default of unset headers is outside both).
HEADER_PIXEL_RANGE_NM = {"lowmag": (10.0, 10000.0), "medmag": (1.0, 1000.0)}
UNSET_HEADER_NM = 0.1  # 1 Å: what many writers put in the header when the size is unknown
# Physical target sizes that are plausible: grid-square side (µm) for lowmag (1000 mesh to
# 75 mesh), lattice spacing / hole pitch (µm) for medmag.
TARGET_SIZE_RANGE_UM = {"lowmag": (10.0, 350.0), "medmag": (0.5, 20.0)}


class PixelSizeError(PtolemyError):
    """The pixel size cannot give physical units: not a positive finite number of nm, or the
    units it gives overflow (exit code 2: a usage error, raised before anything is written)."""

    exit_code = EXIT_USAGE


@dataclass
class Report:
    """One pipeline result plus what the output formats need to describe it.

    kind: "lowmag" (squares) or "medmag" (holes): the command (``result.kind``).
    image: input path as given.
    result: a `results.PipelineResult` (`SquareResult` or `HoleResult`).
    pixel_size_nm: nm per pixel, or None when unknown; pixel_size_source: "option" | "header".
    section: section of a stack used, or None.
    seconds: wall time of the whole analysis (reading included), s.
    stage: image (x, y) px → stage (x, y) µm: an object with ``matrix`` (4 floats, row-major
    2×2, µm/px), ``offset`` (2 floats, µm), ``method``, ``rms_um``, ``n_points``
    (`montage.StageTransform`), or None when unknown.
    origin: what the image was made from (`io.LoadedImage.origin`), or None.
    """

    kind: str
    image: str
    result: PipelineResult
    pixel_size_nm: float | None = None
    pixel_size_source: str | None = None
    section: int | None = None
    seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    stage: Any = None
    origin: dict | None = None


# --------------------------------------------------------------------------- items


def targets(result: PipelineResult) -> list:
    """The result's targets (squares or holes), as a new list.

    Parameters
    ----------
    result : results.PipelineResult

    Returns
    -------
    list
        ``result.targets`` copied (the pipeline's order: best score first).

    Examples
    --------
    >>> from ptolemy_rt.results import Hole, HoleResult
    >>> box = ((0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0))
    >>> [t.score for t in targets(HoleResult([Hole(box, (1, 1), 4.0, 0.7)], (4, 4)))]
    [0.7]
    """
    return list(result.targets)


def items(result: PipelineResult) -> list[dict]:
    """Targets as dicts in the published schema and key order, sorted by score.

    Parameters
    ----------
    result : results.PipelineResult

    Returns
    -------
    list of dict
        Keys ``vertices`` (4 × [x, y] float, px), ``center`` ([x, y] int, px), ``area``
        (px²), the result's `target_fields` (``brightness`` for squares), ``score``; best
        score first, ties in the pipeline's order. Points are (x, y) = (col, row).

    Examples
    --------
    >>> from ptolemy_rt.results import Hole, HoleResult
    >>> box = ((0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0))
    >>> [d["score"] for d in items(HoleResult([Hole(box, (1, 1), 4.0, 0.2), Hole(box, (1, 1), 4.0, 0.9)], (4, 4)))]
    [0.9, 0.2]
    """
    out = []
    for t in result.targets:
        d: dict[str, Any] = {
            "vertices": [[float(x), float(y)] for x, y in t.vertices],
            "center": [int(t.center[0]), int(t.center[1])],
            "area": float(t.area),
        }
        for name in result.target_fields:
            d[name] = float(getattr(t, name))
        d["score"] = float(t.score)
        out.append(d)
    out.sort(key=lambda d: -d["score"])
    return out


def result_reason(report: Report) -> str | None:
    """Why the result is empty.

    Parameters
    ----------
    report : Report

    Returns
    -------
    str or None
        The result's `reason`, else "no <target_noun> found"; None when it has targets.

    Examples
    --------
    >>> from ptolemy_rt.results import SquareResult
    >>> result_reason(Report("lowmag", "a.mrc", SquareResult([], (4, 4))))
    'no squares found'
    """
    r = report.result
    if r.targets:
        return None
    return r.reason or f"no {r.target_noun} found"


# ------------------------------------------------------------------- pixel size


#: How the outputs name each pixel-size source (`Report.pixel_size_source`).
PIXEL_SIZE_SOURCES = {"option": "--pixel-size", "header": "MRC header", "mdoc": "SerialEM .mdoc",
                      "epu-xml": "EPU .xml", "epu-atlas": "EPU Atlas.dm tile positions"}


def resolve_pixel_size(kind: str, option_nm: float | None, header_nm: float | None,
                       header_source: str = "header") -> tuple[float | None, str | None, str | None]:
    """Pick the pixel size: the --pixel-size option, else the image's value (an MRC header's
    only when plausible; the microscope software's metadata as they are).

    Parameters
    ----------
    kind : str
        "lowmag" or "medmag" (the plausible header range, `HEADER_PIXEL_RANGE_NM`).
    option_nm : float or None
        The --pixel-size value, nm/px.
    header_nm : float or None
        The image's pixel size, nm/px (`io.LoadedImage.pixel_size_nm`).
    header_source : str
        Where `header_nm` comes from (`io.LoadedImage.pixel_size_source`): "header" (checked
        against `HEADER_PIXEL_RANGE_NM`) or a key of `PIXEL_SIZE_SOURCES` (used as it is).

    Returns
    -------
    (value, source, note)
        value in nm/px or None; source "option" / "header" / `header_source` / None; note
        explains an ignored header value (for stderr), else None.

    Raises
    ------
    PixelSizeError
        The option is not a positive finite number.

    Examples
    --------
    >>> resolve_pixel_size("lowmag", None, 250.0)
    (250.0, 'header', None)
    >>> resolve_pixel_size("medmag", None, 0.0666, "epu-xml")
    (0.0666, 'epu-xml', None)
    """
    if option_nm is not None:
        if not (math.isfinite(option_nm) and option_nm > 0):
            raise PixelSizeError(f"--pixel-size {option_nm:g}: must be a positive, finite number of nm")
        return float(option_nm), "option", None
    if header_nm is None or not (header_nm > 0) or not math.isfinite(header_nm):
        return None, None, None
    if header_source != "header":
        return float(header_nm), header_source, None
    if abs(header_nm - UNSET_HEADER_NM) < 1e-9:
        return None, None, None  # the usual placeholder of headers nobody filled in
    lo, hi = HEADER_PIXEL_RANGE_NM[kind]
    if lo <= header_nm <= hi:
        return float(header_nm), "header", None
    return None, None, (
        f"MRC header pixel size {header_nm:g} nm ignored (implausible for a {kind} image, "
        f"expected {lo:g}-{hi:g} nm); give --pixel-size NM for physical units"
    )


def pixel_size_warning(report: Report) -> str | None:
    """A warning when the pixel size makes the targets implausibly small or large.

    Parameters
    ----------
    report : Report
        The size compared is its result's `typical_size_px` (lowmag: median grid-square
        side sqrt(box area); medmag: lattice spacing, or the median hole box side without a
        lattice) times the pixel size, in µm, against `TARGET_SIZE_RANGE_UM` of the kind.

    Returns
    -------
    str or None
        One line for stderr; None when plausible, without a pixel size or without targets.

    Examples
    --------
    A 100 px square side at 500 nm/px is 50 µm (plausible); at 5000 nm/px it is 500 µm:

    >>> from ptolemy_rt.results import Square, SquareResult
    >>> sq = Square(((0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0)), (50, 50), 10000.0, 1.0, 0.9)
    >>> r = SquareResult([sq], (200, 200))
    >>> pixel_size_warning(Report("lowmag", "a.mrc", r, 500.0, "option")) is None
    True
    >>> pixel_size_warning(Report("lowmag", "a.mrc", r, 5000.0, "option"))
    'pixel size 5000 nm (from --pixel-size) looks wrong for a lowmag image: median square side would be 500 µm (expected 10-350 µm)'
    """
    px = report.pixel_size_nm
    r = report.result
    if px is None or not r.targets:
        return None
    size_px, what = r.typical_size_px()
    size_um = size_px * px / 1000.0
    lo, hi = TARGET_SIZE_RANGE_UM[r.kind]
    if lo <= size_um <= hi:
        return None
    src = _source_words(report.pixel_size_source)
    return (
        f"pixel size {px:g} nm (from {src}) looks wrong for a {r.kind} image: "
        f"median {what} would be {size_um:.3g} µm (expected {lo:g}-{hi:g} µm)"
    )


def _source_words(source: str | None) -> str:
    """"--pixel-size" or "the MRC header" / "the SerialEM .mdoc" ... for messages."""
    words = PIXEL_SIZE_SOURCES.get(source or "header", str(source))
    return words if source == "option" else "the " + words


def _um(v_px: float, px_nm: float) -> float:
    return v_px * px_nm / 1000.0


def physical_units(report: Report, d: dict, rank: int) -> tuple[float, float, float]:
    """(center_x_um, center_y_um, area_um2) of one item at the report's pixel size.

    Parameters
    ----------
    report : Report
        With a pixel size (nm/px).
    d : dict
        One of `items` (``center`` px, ``area`` px²).
    rank : int
        The item's rank (1 = best), for the message.

    Returns
    -------
    tuple of float
        Centre in µm from the image's top-left corner, area in µm².

    Raises
    ------
    PixelSizeError
        A value overflows (is not finite): the pixel size is absurd.

    Examples
    --------
    >>> from ptolemy_rt.results import HoleResult
    >>> rep = Report("medmag", "b.mrc", HoleResult([], (4, 4)), 10.0, "option")
    >>> physical_units(rep, {"center": [100, 50], "area": 400.0}, 1)
    (1.0, 0.5, 0.04)
    """
    px = report.pixel_size_nm
    try:
        vals = (_um(d["center"][0], px), _um(d["center"][1], px), d["area"] * (px / 1000.0) ** 2)
    except OverflowError:
        vals = (math.inf,)
    if not all(math.isfinite(v) for v in vals):
        src = "--pixel-size" if report.pixel_size_source == "option" else \
            f"{report.image}: {PIXEL_SIZE_SOURCES.get(report.pixel_size_source or 'header', 'MRC header')} pixel size"
        raise PixelSizeError(f"{src} {px:g} nm: the physical units of target {rank} overflow; "
                             "give the pixel size in nm")
    return vals


def stage_point(report: Report, d: dict) -> tuple[float, float] | None:
    """Stage (x, y) µm of one item's box centre (the mean of its ``vertices``), or None.

    Parameters
    ----------
    report : Report
        Its `stage` maps image (x, y) px to stage µm (None: unknown).
    d : dict
        One of `items`.

    Returns
    -------
    tuple of 2 float or None

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from ptolemy_rt.results import HoleResult
    >>> st = SimpleNamespace(matrix=(0.5, 0.0, 0.0, -0.5), offset=(100.0, 20.0))
    >>> rep = Report("medmag", "b.mrc", HoleResult([], (4, 4)), stage=st)
    >>> stage_point(rep, {"vertices": [[0.0, 0.0], [4.0, 0.0], [4.0, 2.0], [0.0, 2.0]]})
    (101.0, 19.5)
    """
    st = report.stage
    if st is None:
        return None
    vs = d["vertices"]
    x = sum(v[0] for v in vs) / len(vs)
    y = sum(v[1] for v in vs) / len(vs)
    a, b, c, e = (float(v) for v in st.matrix)
    return (a * x + b * y + float(st.offset[0]), c * x + e * y + float(st.offset[1]))


def _stage_dict(report: Report) -> dict:
    st = report.stage
    return {"matrix_um_per_px": [float(v) for v in st.matrix], "offset_um": [float(v) for v in st.offset],
            "method": str(st.method), "rms_um": float(st.rms_um), "n_points": int(st.n_points)}


def _items_with_units(report: Report) -> list[tuple[dict, tuple[float, float, float] | None]]:
    """`items` of the result, each with its physical units (None without a pixel size); all
    units are computed (and checked) before any text is made."""
    its = items(report.result)
    if report.pixel_size_nm is None:
        return [(d, None) for d in its]
    return [(d, physical_units(report, d, rank)) for rank, d in enumerate(its, start=1)]


# --------------------------------------------------------------------- formats


def format_json(report: Report) -> str:
    """The published schema: exactly what the published tool prints with ``-f json``.

    Parameters
    ----------
    report : Report

    Returns
    -------
    str
        ``json.dumps(items(result)) + "\\n"`` (no physical units, whatever the pixel size).

    Examples
    --------
    >>> from ptolemy_rt.results import SquareResult
    >>> format_json(Report("lowmag", "a.mrc", SquareResult([], (4, 4))))
    '[]\\n'
    """
    return json.dumps(items(report.result), allow_nan=False) + "\n"


def full_object(report: Report) -> dict:
    """The extended JSON object (``-f json-full``).

    Parameters
    ----------
    report : Report

    Returns
    -------
    dict
        Keys in order: ptolemy_rt_version, command, image, section, shape ([rows, cols]),
        models, batchnorm, the result's `metadata` keys (in its order), reason,
        pixel_size_nm, pixel_size_source, [source (`Report.origin`), stage (the pixel →
        stage map: matrix_um_per_px, offset_um, method, rms_um, n_points) when known],
        timings_s (s, with "total"), count, items (with ``center_um`` / ``area_um2`` when the
        pixel size is known, ``stage_x_um`` / ``stage_y_um`` when the stage map is).

    Raises
    ------
    PixelSizeError
        The physical units overflow.

    Examples
    --------
    >>> from ptolemy_rt.results import Hole, HoleResult
    >>> box = ((0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0))
    >>> obj = full_object(Report("medmag", "b.mrc", HoleResult([Hole(box, (1, 1), 4.0, 0.5)], (4, 6)), 10.0, "option"))
    >>> obj["shape"], obj["count"], obj["items"][0]["center_um"], obj["items"][0]["area_um2"]
    ([4, 6], 1, [0.01, 0.01], 0.0004)
    """
    r = report.result
    rows, cols = (int(v) for v in r.image_shape)
    its = _items_with_units(report)
    obj: dict[str, Any] = {
        "ptolemy_rt_version": _version(),
        "command": report.kind,
        "image": report.image,
        "section": report.section,
        "shape": [rows, cols],
        "models": r.models or None,
        "batchnorm": r.batchnorm,
    }
    for m in r.metadata():
        obj[m.key] = m.value
    obj["reason"] = result_reason(report)
    obj["pixel_size_nm"] = report.pixel_size_nm
    obj["pixel_size_source"] = report.pixel_size_source
    if report.origin is not None:
        obj["source"] = report.origin
    if report.stage is not None:
        obj["stage"] = _stage_dict(report)
    obj["timings_s"] = {str(k): float(v) for k, v in (r.timings_s or {}).items()}
    if report.seconds is not None:
        obj["timings_s"]["total"] = float(report.seconds)
    for d, units in its:
        if units is not None:
            d["center_um"] = [units[0], units[1]]
            d["area_um2"] = units[2]
        sp = stage_point(report, d)
        if sp is not None:
            d["stage_x_um"], d["stage_y_um"] = sp
    obj["count"] = len(its)
    obj["items"] = [d for d, _ in its]
    return obj


def format_json_full(report: Report) -> str:
    """`full_object` as indented JSON (non-ASCII kept, one space per level).

    Parameters
    ----------
    report : Report

    Returns
    -------
    str
        The JSON text and a final newline.

    Raises
    ------
    PixelSizeError
        The physical units overflow.

    Examples
    --------
    >>> from ptolemy_rt.results import SquareResult
    >>> import json
    >>> text = format_json_full(Report("lowmag", "a.mrc", SquareResult([], (4, 4))))
    >>> json.loads(text)["reason"], text.endswith("}\\n")
    ('no squares found', True)
    """
    return json.dumps(full_object(report), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def csv_columns(result: PipelineResult, with_um: bool, with_stage: bool = False) -> list[str]:
    """CSV header of a result.

    Parameters
    ----------
    result : results.PipelineResult
        Gives the per-target fields (``brightness`` for squares).
    with_um : bool
        Whether the physical-unit columns are written (the pixel size is known).
    with_stage : bool
        Whether the stage columns are written (the stage map is known).

    Returns
    -------
    list of str
        rank, center_x, center_y (px), area (px²), the target fields, score,
        [center_x_um, center_y_um, area_um2], [stage_x_um, stage_y_um], x0, y0 .. x3, y3 (px).

    Examples
    --------
    >>> from ptolemy_rt.results import HoleResult
    >>> csv_columns(HoleResult([], (4, 4)), False)[:5]
    ['rank', 'center_x', 'center_y', 'area', 'score']
    """
    cols = ["rank", "center_x", "center_y", "area", *result.target_fields, "score"]
    if with_um:
        cols += ["center_x_um", "center_y_um", "area_um2"]
    if with_stage:
        cols += ["stage_x_um", "stage_y_um"]
    for i in range(4):
        cols += [f"x{i}", f"y{i}"]
    return cols


def _rows(report: Report) -> Iterable[list[str]]:
    fields = report.result.target_fields
    for rank, (d, units) in enumerate(_items_with_units(report), start=1):
        row = [str(rank), str(d["center"][0]), str(d["center"][1]), repr(d["area"])]
        row += [repr(d[name]) for name in fields]
        row.append(repr(d["score"]))
        if units is not None:
            row += [repr(v) for v in units]
        sp = stage_point(report, d)
        if sp is not None:
            row += [repr(v) for v in sp]
        for x, y in d["vertices"]:
            row += [repr(x), repr(y)]
        yield row


def format_csv(report: Report) -> str:
    """CSV text of a report.

    Parameters
    ----------
    report : Report

    Returns
    -------
    str
        A ``# reason: ...`` line when the result is empty, the header (`csv_columns`), one
        row per target (best first; floats as shortest round-trip repr).

    Raises
    ------
    PixelSizeError
        The physical units overflow.

    Examples
    --------
    >>> from ptolemy_rt.results import Hole, HoleResult
    >>> box = ((0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0))
    >>> print(format_csv(Report("medmag", "b.mrc", HoleResult([Hole(box, (1, 1), 4.0, 0.5)], (4, 4)))), end="")
    rank,center_x,center_y,area,score,x0,y0,x1,y1,x2,y2,x3,y3
    1,1,1,4.0,0.5,0.0,0.0,2.0,0.0,2.0,2.0,0.0,2.0
    """
    rows = list(_rows(report))  # units checked before any text
    lines = []
    reason = result_reason(report)
    if reason is not None:
        lines.append("# reason: " + _one_line(reason))
    lines.append(",".join(csv_columns(report.result, report.pixel_size_nm is not None, report.stage is not None)))
    lines += [",".join(row) for row in rows]  # numbers only: no quoting needed
    return "\n".join(lines) + "\n"


# TXT column (width, number format) of each per-target field of a result
TXT_FIELD_FORMAT = {"brightness": (10, ".2f")}


def format_txt(report: Report) -> str:
    """A human-readable table of a report.

    Parameters
    ----------
    report : Report

    Returns
    -------
    str
        ``#`` lines (image and shape; target count, models, batchnorm and the result's
        metadata texts; metadata on their own lines; pixel size; reason), then a header and
        one row per target (best first).

    Raises
    ------
    PixelSizeError
        The physical units overflow.

    Examples
    --------
    >>> from ptolemy_rt.results import Hole, HoleResult
    >>> box = ((0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0))
    >>> r = HoleResult([Hole(box, (1, 1), 4.0, 0.5)], (4, 4), models="m")
    >>> print(format_txt(Report("medmag", "b.mrc", r)), end="")
    # ptolemy medmag: b.mrc (4 x 4 px)
    # 1 holes, models m, batchnorm published
    rank       x       y    area_px2   score
       1       1       1         4.0  0.5000
    """
    r = report.result
    rows, cols = (int(v) for v in r.image_shape)
    its = _items_with_units(report)
    sec = f", section {report.section}" if report.section is not None else ""
    out = [f"# ptolemy {report.kind}: {report.image}{sec} ({rows} x {cols} px)"]
    meta = [m for m in r.metadata() if m.text is not None]
    info = [f"{len(its)} {r.target_noun}", f"models {r.models or '?'}", f"batchnorm {r.batchnorm}"]
    info += [m.text for m in meta if not m.own_line]
    out.append("# " + ", ".join(info))
    out += ["# " + m.text for m in meta if m.own_line]
    px = report.pixel_size_nm
    if px is not None:
        out.append(f"# pixel size {px:g} nm ({PIXEL_SIZE_SOURCES.get(report.pixel_size_source or 'header', 'MRC header')})")
    st = report.stage
    if st is not None:
        out.append(f"# stage coordinates (µm): {st.method} from {_origin_words(report.origin)}, "
                   f"rms {float(st.rms_um):.3g} µm over {int(st.n_points)} points")
    reason = result_reason(report)
    if reason is not None:
        out.append("# reason: " + _one_line(reason))
    head = f"{'rank':>4} {'x':>7} {'y':>7} {'area_px2':>11}"
    for name in r.target_fields:
        head += f" {name:>{TXT_FIELD_FORMAT[name][0]}}"
    head += f" {'score':>7}"
    if px is not None:
        head += f" {'x_um':>9} {'y_um':>9} {'area_um2':>10}"
    if st is not None:
        head += f" {'stage_x_um':>11} {'stage_y_um':>11}"
    out.append(head)
    for rank, (d, units) in enumerate(its, start=1):
        line = f"{rank:>4} {d['center'][0]:>7d} {d['center'][1]:>7d} {d['area']:>11.1f}"
        for name in r.target_fields:
            width, spec = TXT_FIELD_FORMAT[name]
            line += f" {d[name]:>{width}{spec}}"
        line += f" {d['score']:>7.4f}"
        if units is not None:
            line += f" {units[0]:>9.2f} {units[1]:>9.2f} {units[2]:>10.3f}"
        sp = stage_point(report, d)
        if sp is not None:
            line += f" {sp[0]:>11.3f} {sp[1]:>11.3f}"
        out.append(line)
    return "\n".join(out) + "\n"


def format_report(report: Report, fmt: str) -> str:
    """Text of the report in one of `FORMATS`.

    Parameters
    ----------
    report : Report
    fmt : str
        "json", "json-full", "csv" or "txt" ("nav" is written by
        `navigator.write_targets_nav`).

    Returns
    -------
    str

    Raises
    ------
    ValueError
        Unknown format.
    PixelSizeError
        The physical units overflow (nothing should be written).

    Examples
    --------
    >>> from ptolemy_rt.results import HoleResult
    >>> print(format_report(Report("medmag", "b.mrc", HoleResult([], (4, 4))), "csv"), end="")
    # reason: no holes found
    rank,center_x,center_y,area,score,x0,y0,x1,y1,x2,y2,x3,y3
    """
    if fmt == "json":
        return format_json(report)
    if fmt == "json-full":
        return format_json_full(report)
    if fmt == "csv":
        return format_csv(report)
    if fmt == "txt":
        return format_txt(report)
    raise ValueError(f"unknown format {fmt!r}")


def format_from_suffix(path: str | os.PathLike | None) -> str:
    """Default format for an output path: .csv → csv, .txt → txt, .nav → nav, else json.

    Parameters
    ----------
    path : str, os.PathLike or None
        The output path (None: standard output). The suffix is compared case-insensitively.

    Returns
    -------
    str
        One of `FORMATS` ("json-full" is never guessed).

    Examples
    --------
    >>> [format_from_suffix(p) for p in ("out.CSV", "t.txt", "s.nav", "r.json", None)]
    ['csv', 'txt', 'nav', 'json', 'json']
    """
    if path is None:
        return "json"
    s = Path(path).suffix.lower()
    return {".csv": "csv", ".txt": "txt", ".nav": "nav"}.get(s, "json")


# ---------------------------------------------------------------------- helpers


def _origin_words(origin: dict | None) -> str:
    kind = (origin or {}).get("kind")
    return {"serialem-montage": "the .mdoc pieces' StagePosition", "epu-image": "the EPU .xml",
            "epu-atlas": "the Atlas.dm tiles' StagePosition"}.get(kind, "the image's metadata")


def _one_line(s: str) -> str:
    return " ".join(str(s).split())


def _version() -> str:
    from . import __version__

    return __version__
