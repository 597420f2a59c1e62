"""Formatting and writing pipeline results (JSON, extended JSON, CSV, TXT).

Pure Python (no numpy) so that the command line starts fast.

Coordinates: every point written is (x, y) = (col, row) in pixels of the input image, as in
`results.py` and in the published tool's JSON. Optional physical units (when the pixel size
is known): centre in µm and area in µm², measured in the image frame from the image's
top-left corner (not stage coordinates).

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
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import OutputError

FORMATS = ("json", "json-full", "csv", "txt", "nav")
EXTENSIONS = {"json": ".json", "json-full": ".json", "csv": ".csv", "txt": ".txt", "nav": ".nav"}

KIND_NOUN = {"lowmag": "squares", "medmag": "holes"}

# Pixel sizes (nm/px) that an MRC header may plausibly hold for each magnification; a header
# value outside is ignored (the common "1 Å" default of unset headers is outside both).
HEADER_PIXEL_RANGE_NM = {"lowmag": (10.0, 10000.0), "medmag": (1.0, 1000.0)}
UNSET_HEADER_NM = 0.1  # 1 Å: what many writers put in the header when the size is unknown
# Physical target sizes that are plausible: grid-square side (µm) for lowmag (1000 mesh to
# 75 mesh), lattice spacing / hole pitch (µm) for medmag.
TARGET_SIZE_RANGE_UM = {"lowmag": (10.0, 350.0), "medmag": (0.5, 20.0)}


@dataclass
class Report:
    """One pipeline result plus what the output formats need to describe it.

    kind: "lowmag" (squares) or "medmag" (holes).
    image: input path as given.
    result: `results.SquareResult` or `results.HoleResult`.
    pixel_size_nm: nm per pixel, or None when unknown; pixel_size_source: "option" | "header".
    section: section of a stack used, or None.
    seconds: wall time of the whole analysis (reading included), s.
    """

    kind: str
    image: str
    result: Any
    pixel_size_nm: float | None = None
    pixel_size_source: str | None = None
    section: int | None = None
    seconds: float | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- items


def targets(result: Any) -> list:
    """The result's targets (squares or holes)."""
    if hasattr(result, "squares"):
        return list(result.squares)
    return list(result.holes)


def items(result: Any) -> list[dict]:
    """Targets as dicts in the published schema and key order, sorted by score (best first;
    ties keep the pipeline's order). Points (x, y) = (col, row), px; area px²."""
    out = []
    for t in targets(result):
        d: dict[str, Any] = {
            "vertices": [[float(x), float(y)] for x, y in t.vertices],
            "center": [int(t.center[0]), int(t.center[1])],
            "area": float(t.area),
        }
        if hasattr(t, "brightness"):
            d["brightness"] = float(t.brightness)
        d["score"] = float(t.score)
        out.append(d)
    out.sort(key=lambda d: -d["score"])
    return out


def result_reason(report: Report) -> str | None:
    """Why the result is empty (None when it is not empty)."""
    if targets(report.result):
        return None
    reason = getattr(report.result, "reason", None)
    return reason or f"no {KIND_NOUN.get(report.kind, 'targets')} found"


# ------------------------------------------------------------------- pixel size


def resolve_pixel_size(kind: str, option_nm: float | None, header_nm: float | None) -> tuple[float | None, str | None, str | None]:
    """Pick the pixel size (nm/px): the --pixel-size option, else the header's value when it is
    plausible for the magnification. Returns (value, source, note); note explains an ignored
    header value (for stderr) or is None."""
    if option_nm is not None:
        return float(option_nm), "option", None
    if header_nm is None or not (header_nm > 0) or not math.isfinite(header_nm):
        return None, None, None
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
    """A warning when the pixel size makes the targets implausibly small or large, else None.

    lowmag: median grid-square side √(box area) in µm; medmag: lattice spacing in µm (or the
    median hole box side when the spacing is unknown)."""
    px = report.pixel_size_nm
    ts = targets(report.result)
    if px is None or not ts:
        return None
    if report.kind == "medmag" and getattr(report.result, "lattice_spacing_px", None):
        size_px = float(report.result.lattice_spacing_px)
        what = "hole spacing"
    else:
        areas = sorted(float(t.area) for t in ts)
        size_px = math.sqrt(max(areas[len(areas) // 2], 0.0))
        what = "square side" if report.kind == "lowmag" else "hole box side"
    size_um = size_px * px / 1000.0
    lo, hi = TARGET_SIZE_RANGE_UM[report.kind]
    if lo <= size_um <= hi:
        return None
    src = "--pixel-size" if report.pixel_size_source == "option" else "the MRC header"
    return (
        f"pixel size {px:g} nm (from {src}) looks wrong for a {report.kind} image: "
        f"median {what} would be {size_um:.3g} µm (expected {lo:g}-{hi:g} µm)"
    )


def _um(v_px: float, px_nm: float) -> float:
    return v_px * px_nm / 1000.0


# --------------------------------------------------------------------- formats


def format_json(report: Report) -> str:
    """The published schema: exactly what the published tool prints with ``-f json``."""
    return json.dumps(items(report.result), allow_nan=False) + "\n"


def full_object(report: Report) -> dict:
    """The extended JSON object (``-f json-full``)."""
    r = report.result
    rows, cols = (int(v) for v in r.image_shape)
    obj: dict[str, Any] = {
        "ptolemy_rt_version": _version(),
        "command": report.kind,
        "image": report.image,
        "section": report.section,
        "shape": [rows, cols],
        "models": getattr(r, "models", "") or None,
        "batchnorm": getattr(r, "batchnorm", None),
    }
    if report.kind == "lowmag":
        obj["crop_grid"] = getattr(r, "crop_grid", "image")
        obj["normalisation"] = _normalisation(r)
        obj["grid_angle_deg"] = _opt_float(getattr(r, "grid_angle_deg", None))
    else:
        obj["lattice_angle_deg"] = _opt_float(getattr(r, "lattice_angle_deg", None))
        obj["lattice_spacing_px"] = _opt_float(getattr(r, "lattice_spacing_px", None))
        obj["lattice_search"] = getattr(r, "lattice_search", "square")
    obj["reason"] = result_reason(report)
    obj["pixel_size_nm"] = report.pixel_size_nm
    obj["pixel_size_source"] = report.pixel_size_source
    obj["timings_s"] = {str(k): float(v) for k, v in (getattr(r, "timings_s", None) or {}).items()}
    if report.seconds is not None:
        obj["timings_s"]["total"] = float(report.seconds)
    its = items(r)
    if report.pixel_size_nm is not None:
        for d in its:
            d["center_um"] = [_um(d["center"][0], report.pixel_size_nm), _um(d["center"][1], report.pixel_size_nm)]
            d["area_um2"] = d["area"] * (report.pixel_size_nm / 1000.0) ** 2
    obj["count"] = len(its)
    obj["items"] = its
    return obj


def _normalisation(r) -> dict | None:
    """Lowmag crop normalisation constants of a result: {"mean", "std"} (input pixel units),
    "source" ("image": its square-mask pixels; "given": by the caller); None without crops."""
    norm = getattr(r, "norm", None)
    if norm is None:
        return None
    return {"mean": float(norm[0]), "std": float(norm[1]), "source": getattr(r, "norm_source", "image")}


def format_json_full(report: Report) -> str:
    return json.dumps(full_object(report), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def csv_columns(kind: str, with_um: bool) -> list[str]:
    """CSV header: rank, center_x, center_y (px), area (px²), brightness (lowmag only), score,
    [center_x_um, center_y_um, area_um2 when the pixel size is known], x0, y0 .. x3, y3 (px)."""
    cols = ["rank", "center_x", "center_y", "area"]
    if kind == "lowmag":
        cols.append("brightness")
    cols.append("score")
    if with_um:
        cols += ["center_x_um", "center_y_um", "area_um2"]
    for i in range(4):
        cols += [f"x{i}", f"y{i}"]
    return cols


def _rows(report: Report) -> Iterable[tuple[int, dict, list[str]]]:
    px = report.pixel_size_nm
    for rank, d in enumerate(items(report.result), start=1):
        row = [str(rank), str(d["center"][0]), str(d["center"][1]), repr(d["area"])]
        if report.kind == "lowmag":
            row.append(repr(d["brightness"]))
        row.append(repr(d["score"]))
        if px is not None:
            row += [repr(_um(d["center"][0], px)), repr(_um(d["center"][1], px)),
                    repr(d["area"] * (px / 1000.0) ** 2)]
        for x, y in d["vertices"]:
            row += [repr(x), repr(y)]
        yield rank, d, row


def format_csv(report: Report) -> str:
    lines = []
    reason = result_reason(report)
    if reason is not None:
        lines.append("# reason: " + _one_line(reason))
    lines.append(",".join(csv_columns(report.kind, report.pixel_size_nm is not None)))
    for _, _, row in _rows(report):
        lines.append(",".join(row))  # numbers only: no quoting needed
    return "\n".join(lines) + "\n"


def format_txt(report: Report) -> str:
    r = report.result
    noun = KIND_NOUN[report.kind]
    rows, cols = (int(v) for v in r.image_shape)
    its = items(r)
    sec = f", section {report.section}" if report.section is not None else ""
    out = [f"# ptolemy {report.kind}: {report.image}{sec} ({rows} x {cols} px)"]
    info = [f"{len(its)} {noun}", f"models {getattr(r, 'models', '') or '?'}",
            f"batchnorm {getattr(r, 'batchnorm', '?')}"]
    if report.kind == "lowmag" and getattr(r, "crop_grid", "image") != "image":
        info.append(f"crop grid {r.crop_grid}")
    if report.kind == "lowmag" and getattr(r, "grid_angle_deg", None) is not None:
        info.append(f"grid angle {float(r.grid_angle_deg):.2f} deg")
    if report.kind == "medmag" and getattr(r, "lattice_angle_deg", None) is not None:
        info.append(f"lattice angle {float(r.lattice_angle_deg):.2f} deg")
    if report.kind == "medmag" and getattr(r, "lattice_spacing_px", None) is not None:
        info.append(f"spacing {float(r.lattice_spacing_px):.1f} px")
    if report.kind == "medmag" and getattr(r, "lattice_search", "square") != "square":
        info.append(f"lattice search {r.lattice_search}")
    out.append("# " + ", ".join(info))
    norm = _normalisation(r) if report.kind == "lowmag" else None
    if norm is not None:  # crop normalisation constants, input pixel units
        out.append(f"# normalisation mean {norm['mean']!r}, std {norm['std']!r} ({norm['source']})")
    px = report.pixel_size_nm
    if px is not None:
        out.append(f"# pixel size {px:g} nm ({'--pixel-size' if report.pixel_size_source == 'option' else 'MRC header'})")
    reason = result_reason(report)
    if reason is not None:
        out.append("# reason: " + _one_line(reason))
    head = f"{'rank':>4} {'x':>7} {'y':>7} {'area_px2':>11}"
    if report.kind == "lowmag":
        head += f" {'brightness':>10}"
    head += f" {'score':>7}"
    if px is not None:
        head += f" {'x_um':>9} {'y_um':>9} {'area_um2':>10}"
    out.append(head)
    for rank, d in enumerate(its, start=1):
        line = f"{rank:>4} {d['center'][0]:>7d} {d['center'][1]:>7d} {d['area']:>11.1f}"
        if report.kind == "lowmag":
            line += f" {d['brightness']:>10.2f}"
        line += f" {d['score']:>7.4f}"
        if px is not None:
            line += (f" {_um(d['center'][0], px):>9.2f} {_um(d['center'][1], px):>9.2f}"
                     f" {d['area'] * (px / 1000.0) ** 2:>10.3f}")
        out.append(line)
    return "\n".join(out) + "\n"


def format_report(report: Report, fmt: str) -> str:
    """Text of the report in one of `FORMATS`."""
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
    """Default format for an output path: .csv → csv, .txt → txt, .nav → nav, else json."""
    if path is None:
        return "json"
    s = Path(path).suffix.lower()
    return {".csv": "csv", ".txt": "txt", ".nav": "nav"}.get(s, "json")


# ---------------------------------------------------------------------- writing


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two paths name the same file (existing or not)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output_path(path: str | os.PathLike, protect: Iterable[str | os.PathLike] = ()) -> None:
    """Fail early (OutputError) when `path` cannot be written: it names a protected input, is
    a directory, or its folder is missing / not a folder / not writable."""
    p = Path(path)
    for q in protect:
        if same_file(p, q):
            raise OutputError(f"{p}: refusing to overwrite the input image; choose another -o")
    if p.is_dir():
        raise OutputError(f"{p}: is a directory; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"{p}: cannot write (folder {parent} does not exist)")
    if not parent.is_dir():
        raise OutputError(f"{p}: cannot write ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: cannot write (folder {parent} is not writable)")


def write_atomic(path: str | os.PathLike, data: str | bytes, protect: Iterable[str | os.PathLike] = ()) -> None:
    """Write `data` to `path` atomically: a temporary file in the same folder, then
    os.replace. On failure nothing is left behind and OutputError is raised (one line).
    Refuses to write over any path in `protect` (the input images)."""
    p = Path(path)
    check_output_path(p, protect)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    parent = p.parent if str(p.parent) else Path(".")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        _set_default_mode(tmp)
        os.replace(tmp, p)
        tmp = None
    except OSError as e:
        raise OutputError(f"{p}: cannot write ({e.strerror or e})") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _set_default_mode(path: str) -> None:
    """mkstemp creates 0600 files; give the result the usual umask-based mode."""
    if os.name != "posix":
        return
    um = os.umask(0)
    os.umask(um)
    os.chmod(path, 0o666 & ~um)


# ---------------------------------------------------------------------- helpers


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _one_line(s: str) -> str:
    return " ".join(str(s).split())


def _version() -> str:
    from . import __version__

    return __version__
