"""SerialEM Navigator (.nav) output: targets as point items drawn on a map item.

A SerialEM Navigator file in autodoc format is plain text: global ``key = value`` lines
(``AdocVersion = 2.00``, ``LastSavedAs = ...``) followed by sections
``[Item = LABEL]``, each holding ``key = value`` lines. Values are strings of one or more
whitespace-separated numbers or free text. Item keys used here:

- ``Type``: 0 point, 1 polygon, 2 map.
- ``StageXYZ``: stage position, µm (for a map: the stage position at the map centre).
- ``NumPts``, ``PtsX``, ``PtsY``: the item's outline / point, stage µm.
- ``MapID``: unique integer ID of an item; ``DrawnID``: ID of the map an item was drawn on.
- ``Regis``: registration number (items of one registration share stage coordinates).
- ``MapScaleMat``: 4 floats ``a b c d``, the map's stage → image matrix, pixels per µm.
- ``MapWidthHeight``: the map image size, pixels; ``MapBinning`` / ``MontBinning``: binning
  at which the map / montage was taken.
- ``Color`` (0 red, 1 green, 2 blue, 3 yellow, 4 magenta, 5 black), ``Acquire``, ``GroupID``,
  ``Note`` (free text), ``Draw``.

Coordinate conventions and the pixel → stage transform (the assumption, stated once):

1. ptolemy's points are (x, y) = (col, row), px, in the MRC data block *as stored*
   (row 0 = first stored row; io.py never flips). Points are treated as continuous
   coordinates: the image spans [0, W] × [0, H], its centre is (W/2, H/2).
2. SerialEM keeps images top-down in memory (row 0 displayed at the top) and flips them
   when writing MRC files, so that the file follows the IMOD convention (first stored row =
   bottom of the displayed image). Hence SerialEM's image y of a ptolemy point is
   ``y_sem = H - y`` (``flip_y=True``, the default, for maps saved by SerialEM). For an
   image that is already top-down in the file (e.g. converted from a TIFF without the flip)
   use ``flip_y=False``. This is the same convention pyserialem uses
   (``py = MapWidthHeight[1] - row``).
3. ``MapScaleMat = a b c d`` maps a stage offset (dx, dy) µm from the map centre
   ``StageXYZ[:2]`` to an image offset in pixels of the map as SerialEM holds it, i.e. of
   an image of ``MapWidthHeight`` pixels (``MapBinning`` is already contained in the
   matrix; it is not applied a second time)::

        px - W_map/2 = a*dx + b*dy
        py - H_map/2 = c*dx + d*dy

   so stage = StageXYZ[:2] + inverse(M) @ (p - centre).
4. The image ptolemy analysed may be a binned copy of the map (a montage read back at a
   different binning, a map saved binned): its pixels are scaled to map pixels by
   ``MapWidthHeight / image size`` (the two must have the same aspect ratio within 2 %).
   When the image size is not known, ``MontBinning / MapBinning`` would be the only hint;
   we then assume the image has the map's own size (factor 1).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import InputImageError, OutputError
from .files import write_atomic
from .results import PipelineResult

ADOC_VERSION = "2.00"
_SECTION = re.compile(r"^\[\s*(\w+)\s*=\s*(.*?)\s*\]\s*$")
_KEYVAL = re.compile(r"^([^=\s][^=]*?)\s*=\s*(.*?)\s*$")
_LABEL_OK = re.compile(r"^[A-Za-z0-9_-]+$")


# --------------------------------------------------------------------------- reading
def read_nav(path: str | os.PathLike) -> list[dict]:
    """Read a SerialEM autodoc Navigator file.

    Returns one dict per ``[Item = LABEL]`` section, in file order: the item's keys with their
    raw string values, plus ``"_label"`` (the section name, str). Global lines before the
    first section are ignored.

    Parameters
    ----------
    path : str or os.PathLike
        The .nav file (autodoc text).

    Returns
    -------
    list of dict
        See `parse_nav_text`.

    Raises
    ------
    InputImageError
        (one line, naming the file) a missing/unreadable file or an XML navigator file.

    Examples
    --------
    >>> import os, shutil, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "g.nav"), "w") as f:
    ...     _ = f.write("AdocVersion = 2.00\\n[Item = 3]\\nType = 2\\n")
    >>> read_nav(os.path.join(d, "g.nav"))
    [{'_label': '3', 'Type': '2'}]
    >>> shutil.rmtree(d)
    """
    p = Path(path)
    if not p.exists():
        raise InputImageError(f"{path}: no such navigator file")
    if p.is_dir():
        raise InputImageError(f"{path}: is a directory, not a navigator file")
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputImageError(f"{path}: cannot read navigator file ({e.strerror})") from None
    if text.lstrip().startswith("<"):
        raise InputImageError(
            f"{path}: XML navigator files are not supported; save the navigator in autodoc format (.nav)")
    return parse_nav_text(text)


def parse_nav_text(text: str) -> list[dict]:
    """Parse autodoc Navigator text (see read_nav): one dict per [Item = LABEL] section.

    Parameters
    ----------
    text : str
        The file's text; blank and ``#`` lines, global lines and other sections are skipped.

    Returns
    -------
    list of dict
        Per item, in text order: ``"_label"`` and each ``key = value`` as strings.

    Examples
    --------
    >>> parse_nav_text("AdocVersion = 2.00\\n[Item = A1]\\nStageXYZ = 1.5 -2 0\\nNote = a = b\\n")
    [{'_label': 'A1', 'StageXYZ': '1.5 -2 0', 'Note': 'a = b'}]
    """
    items: list[dict] = []
    current: dict | None = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = _SECTION.match(s)
        if m:
            current = {"_label": m.group(2)} if m.group(1).lower() == "item" else None
            if current is not None:
                items.append(current)
            continue
        if current is None:
            continue
        kv = _KEYVAL.match(s)
        if kv:
            current[kv.group(1)] = kv.group(2)
    return items


def _floats(item: dict, key: str) -> list[float]:
    return [float(v) for v in str(item[key]).split()]


def find_item(items: Sequence[dict], label: str, nav_path: str | os.PathLike = "<nav>") -> dict:
    """The item with section label `label` (exact match, then case-insensitive).

    Parameters
    ----------
    items : sequence of dict
        From `read_nav` / `parse_nav_text`.
    label : str
    nav_path : str or os.PathLike
        The file, for the message.

    Returns
    -------
    dict

    Raises
    ------
    InputImageError
        No such label; the message lists the file's map items.

    Examples
    --------
    >>> items = parse_nav_text("[Item = Map-a]\\nType = 2\\n[Item = 2]\\nType = 0\\n")
    >>> find_item(items, "map-A")["_label"]
    'Map-a'
    >>> find_item(items, "9", "g.nav")
    Traceback (most recent call last):
    ...
    ptolemy_rt.errors.InputImageError: g.nav: no navigator item labelled '9'; map items: Map-a
    """
    for it in items:
        if it.get("_label") == label:
            return it
    for it in items:
        if str(it.get("_label", "")).lower() == str(label).lower():
            return it
    maps = [str(it.get("_label")) for it in items if str(it.get("Type", "")).strip() == "2"]
    hint = f"; map items: {', '.join(maps[:12])}" + (" ..." if len(maps) > 12 else "") if maps else "; it has no map items"
    raise InputImageError(f"{nav_path}: no navigator item labelled {label!r}{hint}")


# --------------------------------------------------------------------------- transform
@dataclass(frozen=True)
class MapTransform:
    """Affine map from ptolemy image points (x, y) = (col, row), px, to stage (x, y), µm.

    stage = stage_center + inv_scale @ (scale_px * [x, y_sem] - map_center), with
    y_sem = image_height - y when flip_y (see the module docstring).

    Examples
    --------
    The image centre maps to the map's stage position; ``inverse`` undoes it:

    >>> nav = ("AdocVersion = 2.00\\n[Item = 7]\\nType = 2\\nMapID = 40\\nStageXYZ = 10 20 0\\n"
    ...        "MapScaleMat = 1 0 0 1\\nMapWidthHeight = 100 80\\n")
    >>> tr = map_transform(parse_nav_text(nav)[0], (40, 50))  # image binned by 2
    >>> tr.scale_px, tr((25, 20)).tolist(), tr([[30, 15]]).tolist(), tr.inverse([20.0, 30.0]).tolist()
    (2.0, [10.0, 20.0], [[20.0, 30.0]], [30.0, 15.0])
    """

    scale_mat: np.ndarray  # 2×2, stage µm → map px (MapScaleMat)
    stage_center: np.ndarray  # (2,), µm
    stage_z: float  # µm
    map_size: tuple[float, float]  # (W, H) map px (MapWidthHeight)
    image_size: tuple[float, float]  # (W, H) px of the analysed image
    flip_y: bool = True

    @property
    def scale_px(self) -> float:
        """Map pixels per analysed-image pixel (map width / image width)."""
        return float(self.map_size[0]) / float(self.image_size[0])

    def __call__(self, points_xy) -> np.ndarray:
        """(N, 2) or (2,) image points (x, y) px → stage (x, y) µm, same leading shape."""
        pts = np.asarray(points_xy, dtype=np.float64)
        single = pts.ndim == 1
        pts = np.atleast_2d(pts)
        x = pts[:, 0]
        y = (float(self.image_size[1]) - pts[:, 1]) if self.flip_y else pts[:, 1]
        f = self.scale_px
        off = np.stack([x * f - self.map_size[0] / 2.0, y * f - self.map_size[1] / 2.0])
        stage = np.linalg.solve(self.scale_mat, off).T + self.stage_center
        return stage[0] if single else stage

    def inverse(self, stage_xy) -> np.ndarray:
        """(N, 2) stage (x, y) µm → image points (x, y) px (the exact inverse of __call__)."""
        st = np.atleast_2d(np.asarray(stage_xy, dtype=np.float64))
        off = (self.scale_mat @ (st - self.stage_center).T).T
        f = self.scale_px
        x = (off[:, 0] + self.map_size[0] / 2.0) / f
        ys = (off[:, 1] + self.map_size[1] / 2.0) / f
        y = (float(self.image_size[1]) - ys) if self.flip_y else ys
        out = np.stack([x, y], axis=1)
        return out[0] if np.ndim(stage_xy) == 1 else out


def map_transform(
    map_item: dict,
    image_shape: tuple[int, int] | None = None,
    flip_y: bool = True,
    nav_path: str | os.PathLike = "<nav>",
) -> MapTransform:
    """The pixel → stage transform of a map item (see the module docstring for conventions).

    Parameters
    ----------
    map_item : dict
        The map item (from `read_nav`).
    image_shape : (int, int) or None
        (rows, cols) of the image ptolemy analysed (None: the map's own size).
    flip_y : bool
        The image is stored bottom-up (SerialEM's MRC files).
    nav_path : str or os.PathLike
        The file, for messages.

    Returns
    -------
    MapTransform

    Raises
    ------
    InputImageError
        The item is not a map or lacks MapScaleMat / MapWidthHeight / StageXYZ, the matrix
        is singular, or the image's aspect ratio differs from the map's (> 2 %).

    Examples
    --------
    >>> nav = ("AdocVersion = 2.00\\n[Item = 7]\\nType = 2\\nMapID = 40\\nStageXYZ = 10 20 0\\n"
    ...        "MapScaleMat = 1 0 0 1\\nMapWidthHeight = 100 80\\n")
    >>> tr = map_transform(parse_nav_text(nav)[0])
    >>> tr.map_size, tr.image_size, tr.stage_center.tolist(), tr.stage_z
    ((100.0, 80.0), (100.0, 80.0), [10.0, 20.0], 0.0)
    >>> map_transform(parse_nav_text(nav)[0], (50, 50), nav_path="g.nav")
    Traceback (most recent call last):
    ...
    ptolemy_rt.errors.InputImageError: g.nav: item '7' is a 100×80 px map but the image is 50×50 px (W×H); not the same field of view
    """
    label = map_item.get("_label", "?")
    missing = [k for k in ("MapScaleMat", "MapWidthHeight", "StageXYZ") if k not in map_item]
    if missing:
        kind = {"0": "a point", "1": "a polygon", "2": "a map"}.get(str(map_item.get("Type", "")).strip(), "an item")
        raise InputImageError(
            f"{nav_path}: item {label!r} is {kind} without a map transform (missing {', '.join(missing)})")
    try:
        mat = np.array(_floats(map_item, "MapScaleMat"), dtype=np.float64)
        wh = _floats(map_item, "MapWidthHeight")
        sxyz = _floats(map_item, "StageXYZ")
    except ValueError:
        raise InputImageError(f"{nav_path}: item {label!r} has unreadable map transform values") from None
    if mat.size != 4 or len(wh) != 2 or len(sxyz) < 2:
        raise InputImageError(f"{nav_path}: item {label!r}: MapScaleMat needs 4 values, MapWidthHeight 2, StageXYZ 2-3")
    mat = mat.reshape(2, 2)
    if not np.all(np.isfinite(mat)) or abs(np.linalg.det(mat)) < 1e-12:
        raise InputImageError(f"{nav_path}: item {label!r} has a singular MapScaleMat ({' '.join(map(str, mat.ravel()))})")
    if wh[0] <= 0 or wh[1] <= 0:
        raise InputImageError(f"{nav_path}: item {label!r} has MapWidthHeight {wh[0]:g} {wh[1]:g}")
    if image_shape is None:
        img_wh = (float(wh[0]), float(wh[1]))
    else:
        img_wh = (float(image_shape[1]), float(image_shape[0]))
        ax, ay = wh[0] / img_wh[0], wh[1] / img_wh[1]
        if abs(ax - ay) > 0.02 * max(ax, ay):
            raise InputImageError(
                f"{nav_path}: item {label!r} is a {wh[0]:g}×{wh[1]:g} px map but the image is "
                f"{img_wh[0]:g}×{img_wh[1]:g} px (W×H); not the same field of view")
    z = float(sxyz[2]) if len(sxyz) > 2 else 0.0
    return MapTransform(mat, np.array(sxyz[:2], dtype=np.float64), z, (float(wh[0]), float(wh[1])), img_wh, flip_y)


# --------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class Target:
    """One target to write: (x, y) = (col, row) px in the analysed image, and its score."""

    x: float
    y: float
    score: float
    note: str = ""


def _fmt(v: float) -> str:
    return f"{v:.3f}"


def _int_ids(items: Iterable[dict], key: str) -> list[int]:
    out = []
    for it in items:
        try:
            out.append(int(str(it.get(key, "")).split()[0]))
        except (ValueError, IndexError):
            pass
    return out


def next_free_label(items: Sequence[dict]) -> int:
    """1 + the largest numeric item label in `items` (1 when there is none).

    Parameters
    ----------
    items : sequence of dict
        From `read_nav`.

    Returns
    -------
    int

    Examples
    --------
    >>> next_free_label([{"_label": "3"}, {"_label": "12"}, {"_label": "A-7"}]), next_free_label([])
    (13, 1)
    """
    nums = []
    for it in items:
        try:
            nums.append(int(str(it.get("_label", ""))))
        except ValueError:
            pass
    return max(nums, default=0) + 1


def nav_text(
    targets: Sequence[Target],
    transform: MapTransform,
    map_item: dict,
    start_label: int | str = 1,
    first_id: int = 1,
    color: int = 0,
    acquire_top: int = 0,
    saved_as: str = "",
) -> str:
    """The Navigator text: one point item per target, sorted by score (best first).

    Parameters
    ----------
    targets : sequence of Target
        Points (x, y) = (col, row) px of the analysed image.
    transform : MapTransform
        Image px → stage µm.
    map_item : dict
        The map the points are drawn on (its MapID becomes their DrawnID, its Regis theirs).
    start_label : int or str
        Labels start_label, start_label+1, ... (or "PREFIX-1", ... for a non-numeric string).
    first_id : int
        Item IDs (MapID) first_id, first_id+1, ...; GroupID first_id + len(targets) for all.
    color : int
        SerialEM colour index (0 red).
    acquire_top : int
        ``Acquire = 1`` on the best this many.
    saved_as : str
        The ``LastSavedAs`` line ("" for none).

    Returns
    -------
    str
        Autodoc text with "\\n" line ends; stage µm with 3 decimals.

    Examples
    --------
    >>> nav = ("AdocVersion = 2.00\\n[Item = 7]\\nType = 2\\nMapID = 40\\nStageXYZ = 10 20 0\\n"
    ...        "MapScaleMat = 1 0 0 1\\nMapWidthHeight = 100 80\\n")
    >>> m = parse_nav_text(nav)[0]
    >>> text = nav_text([Target(50, 40, 0.9)], map_transform(m), m, start_label=8, first_id=41)
    >>> print(text.splitlines()[2:5], text.splitlines()[-3:])
    ['[Item = 8]', 'Color = 0', 'StageXYZ = 10.000 20.000 0.000'] ['PtsX = 10.000', 'PtsY = 20.000', '']
    """
    order = sorted(range(len(targets)), key=lambda i: (-float(targets[i].score), i))
    drawn = str(map_item.get("MapID", "0")).split()[0] if map_item.get("MapID") else "0"
    regis = str(map_item.get("Regis", "1")).split()[0]
    group = first_id + len(targets)
    lines = [f"AdocVersion = {ADOC_VERSION}"]
    if saved_as:
        lines.append(f"LastSavedAs = {saved_as}")
    lines.append("")
    pts = np.array([[targets[i].x, targets[i].y] for i in order], dtype=np.float64).reshape(-1, 2)
    stage = transform(pts) if len(order) else np.zeros((0, 2))
    for rank, (i, (sx, sy)) in enumerate(zip(order, stage), start=1):
        t = targets[i]
        if isinstance(start_label, int) or str(start_label).isdigit():
            label = str(int(start_label) + rank - 1)
        else:
            label = f"{start_label}-{rank}"
        note = f"ptolemy rank {rank} score {float(t.score):.4f} px {t.x:.1f} {t.y:.1f}"
        if t.note:
            note += " " + t.note
        lines += [
            f"[Item = {label}]",
            f"Color = {color}",
            f"StageXYZ = {_fmt(sx)} {_fmt(sy)} {_fmt(transform.stage_z)}",
            "NumPts = 1",
            f"Regis = {regis}",
            "Type = 0",
            f"Note = {note}",
            f"GroupID = {group}",
            f"MapID = {first_id + rank - 1}",
            f"DrawnID = {drawn}",
            f"Acquire = {1 if rank <= acquire_top else 0}",
            f"PtsX = {_fmt(sx)}",
            f"PtsY = {_fmt(sy)}",
            "",
        ]
    return "\n".join(lines) + "\n"


def _native_newlines(text: str) -> str:
    """Text with the platform's line ends (SerialEM on Windows writes CRLF)."""
    return text.replace("\n", "\r\n") if os.name == "nt" else text


def write_nav(
    path: str | os.PathLike,
    targets: Sequence[Target],
    map_item: dict,
    transform: MapTransform | None = None,
    start_label: int | str = 1,
    first_id: int | None = None,
    acquire_top: int = 0,
    color: int = 0,
) -> None:
    """Write `targets` as point items drawn on `map_item` to a .nav file (`files.write_atomic`).

    Parameters
    ----------
    path : str or os.PathLike
        The output file (its ``LastSavedAs``).
    targets : sequence of Target
        Points (x, y) = (col, row) px of the analysed image, with scores.
    map_item : dict
        The map item (from `read_nav`) the points are drawn on.
    transform : MapTransform, optional
        Default ``map_transform(map_item)`` (an image of the map's own size, y flipped).
    start_label, first_id, acquire_top, color
        See `nav_text`; first_id defaults to the map's MapID + 1.

    Raises
    ------
    OutputError
        A label prefix with other characters than letters, digits, '_' and '-', or the file
        cannot be written (nothing is left behind).

    Examples
    --------
    >>> import os, shutil, tempfile
    >>> nav = ("AdocVersion = 2.00\\n[Item = 7]\\nType = 2\\nMapID = 40\\nStageXYZ = 10 20 0\\n"
    ...        "MapScaleMat = 1 0 0 1\\nMapWidthHeight = 100 80\\n")
    >>> d = tempfile.mkdtemp()
    >>> write_nav(os.path.join(d, "t.nav"), [Target(50, 40, 0.9)], parse_nav_text(nav)[0], acquire_top=1)
    >>> [(it["_label"], it["MapID"], it["DrawnID"], it["Acquire"], it["PtsX"]) for it in read_nav(os.path.join(d, "t.nav"))]
    [('1', '41', '40', '1', '10.000')]
    >>> shutil.rmtree(d)
    """
    if transform is None:
        transform = map_transform(map_item)
    if first_id is None:
        ids = _int_ids([map_item], "MapID")
        first_id = (ids[0] + 1) if ids else 1
    if not isinstance(start_label, int) and not _LABEL_OK.match(str(start_label)):
        raise OutputError(f"{path}: navigator label prefix {start_label!r} may hold only letters, digits, '_' and '-'")
    write_atomic(path, _native_newlines(nav_text(targets, transform, map_item, start_label, first_id, color,
                                                 acquire_top, saved_as=str(path))))


def targets_from_result(result: PipelineResult) -> list[Target]:
    """The targets of a pipeline result as navigator points.

    Parameters
    ----------
    result : results.PipelineResult
        A SquareResult or HoleResult.

    Returns
    -------
    list of Target
        One per square/hole in the result's order: (x, y) = (col, row) px, the mean of its
        box vertices (continuous coordinates, see the module docstring); its score; a note
        "<square|hole> area N px2".

    Raises
    ------
    TypeError
        `result` is not a PipelineResult.

    Examples
    --------
    >>> from ptolemy_rt.results import Hole, HoleResult
    >>> box = ((0.0, 0.0), (3.0, 0.0), (3.0, 2.0), (0.0, 2.0))
    >>> targets_from_result(HoleResult([Hole(box, (1, 1), 6.0, 0.5)], (4, 4)))
    [Target(x=1.5, y=1.0, score=0.5, note='hole area 6 px2')]
    """
    if not isinstance(result, PipelineResult):
        raise TypeError(f"expected a SquareResult or HoleResult, not {type(result).__name__}")
    out = []
    for e in result.targets:
        v = np.asarray(e.vertices, dtype=np.float64)
        cx, cy = (v.mean(axis=0) if v.size else np.asarray(e.center, dtype=np.float64))
        out.append(Target(float(cx), float(cy), float(e.score), f"{result.target_name} area {float(e.area):.0f} px2"))
    return out


def targets_nav_text(
    result: PipelineResult,
    nav_path: str | os.PathLike,
    item_label: str,
    flip_y: bool = True,
    acquire_top: int = 0,
    saved_as: str | os.PathLike = "",
) -> tuple[str, int]:
    """The Navigator text of a pipeline result's targets as point items on a map item.

    Parameters
    ----------
    result : results.PipelineResult
        The targets and ``image_shape`` (rows, cols) of the analysed image; the map item's
        transform is scaled to that size.
    nav_path : str or os.PathLike
        The navigator file holding the map item.
    item_label : str
        The map item's label.
    flip_y : bool
        Whether the image is stored bottom-up (SerialEM's MRC files; see the module docstring).
    acquire_top : int
        Mark the best this many items for acquisition.
    saved_as : str or os.PathLike
        The path the text will be written to (its ``LastSavedAs`` line; "" for none).

    Returns
    -------
    (text, n)
        The file's text (the platform's line ends, as SerialEM writes them) and the number of
        point items in it. Labels continue after
        the largest numeric label of `nav_path`, item IDs after its largest MapID/GroupID, so
        the file can be merged into that navigator (SerialEM: Navigator → Merge File).

    Raises
    ------
    InputImageError
        The nav file is missing or unreadable, the label is missing, the item has no map
        transform or another field of view.

    Examples
    --------
    A hole box centred on image pixel (25, 20) of a 40 × 50 image (the map binned by 2):

    >>> import os, shutil, tempfile
    >>> from ptolemy_rt.results import Hole, HoleResult
    >>> nav = ("AdocVersion = 2.00\\n[Item = 7]\\nType = 2\\nMapID = 40\\nStageXYZ = 10 20 0\\n"
    ...        "MapScaleMat = 1 0 0 1\\nMapWidthHeight = 100 80\\n")
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "g.nav"), "w") as f:
    ...     _ = f.write(nav)
    >>> box = ((24.0, 19.0), (26.0, 19.0), (26.0, 21.0), (24.0, 21.0))
    >>> text, n = targets_nav_text(HoleResult([Hole(box, (25, 20), 4.0, 0.5)], (40, 50)), os.path.join(d, "g.nav"), "7")
    >>> n, [it["StageXYZ"] for it in parse_nav_text(text)], parse_nav_text(text)[0]["_label"]
    (1, ['10.000 20.000 0.000'], '8')
    >>> shutil.rmtree(d)
    """
    items = read_nav(nav_path)
    item = find_item(items, item_label, nav_path)
    tr = map_transform(item, tuple(result.image_shape), flip_y=flip_y, nav_path=nav_path)
    targets = targets_from_result(result)
    ids = _int_ids(items, "MapID") + _int_ids(items, "GroupID")
    first_id = max(ids, default=0) + 1
    text = nav_text(targets, tr, item, start_label=next_free_label(items), first_id=first_id,
                    acquire_top=acquire_top, saved_as=str(saved_as))
    return _native_newlines(text), len(targets)


def write_targets_nav(
    out_path: str | os.PathLike,
    result: PipelineResult,
    nav_path: str | os.PathLike,
    item_label: str,
    flip_y: bool = True,
    acquire_top: int = 0,
) -> int:
    """Write `targets_nav_text` of a result to `out_path` (`files.write_atomic`).

    Parameters
    ----------
    out_path : str or os.PathLike
        The .nav file to write.
    result, nav_path, item_label, flip_y, acquire_top
        See `targets_nav_text`.

    Returns
    -------
    int
        The number of point items written.

    Raises
    ------
    InputImageError
        See `targets_nav_text`.
    OutputError
        The file cannot be written (nothing is left behind).

    Examples
    --------
    >>> import os, shutil, tempfile
    >>> from ptolemy_rt.results import Hole, HoleResult
    >>> nav = ("AdocVersion = 2.00\\n[Item = 7]\\nType = 2\\nMapID = 40\\nStageXYZ = 10 20 0\\n"
    ...        "MapScaleMat = 1 0 0 1\\nMapWidthHeight = 100 80\\n")
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "g.nav"), "w") as f:
    ...     _ = f.write(nav)
    >>> box = ((29.0, 14.0), (31.0, 14.0), (31.0, 16.0), (29.0, 16.0))
    >>> res = HoleResult([Hole(box, (30, 15), 4.0, 0.5)], (40, 50))
    >>> write_targets_nav(os.path.join(d, "out.nav"), res, os.path.join(d, "g.nav"), "7")
    1
    >>> read_nav(os.path.join(d, "out.nav"))[0]["StageXYZ"]
    '20.000 30.000 0.000'
    >>> shutil.rmtree(d)
    """
    text, n = targets_nav_text(result, nav_path, item_label, flip_y, acquire_top, saved_as=out_path)
    write_atomic(out_path, text)
    return n
