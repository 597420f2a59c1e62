"""Reading SerialEM `.mdoc` files (IMOD autodoc text beside an MRC stack or montage).

An `.mdoc` is a list of ``key = value`` lines. Lines before the first ``[type = name]``
section are global (``PixelSpacing``, ``ImageSize``, ``Montage``, ``DataMode``,
``ImageFile``...). ``[T = ...]`` lines are titles. ``[ZValue = N]`` describes section N of
the MRC stack (0-based); ``[MontSection = N]`` describes montage N as a whole (its pieces
carry ``PieceCoordinates = x y N``).

Units and conventions (SerialEM's, kept as written):

- ``PixelSpacing``: Å per pixel of the stored images (binning included).
- ``StagePosition``: stage X Y in µm (for a stage montage: where the stage was for that
  piece, i.e. the stage position of the piece's centre); ``StageZ`` µm.
- ``PieceCoordinates`` / ``AlignedPieceCoords`` / ``AlignedPieceCoordsVS``: X Y Z where X, Y
  are the pixel offsets of the piece's first stored pixel in the montage, in SerialEM's
  right-handed frame (x to the right, y *up*, origin at the bottom-left; the pieces are
  stored bottom row first), and Z the montage section. They are read as integers
  (rounded if written with decimals).
- ``ImageSize``: X Y = (columns, rows) of each image or piece.

Everything is parsed into frozen dataclasses; any malformed line raises a one-line
`InputImageError` ``"<file>: line N: <problem>"``.

>>> m = parse_mdoc_text("PixelSpacing = 25\\nImageSize = 4 3\\nMontage = 1\\n"
...                     "[ZValue = 0]\\nPieceCoordinates = 0 0 0\\nStagePosition = 1.5 -2\\n")
>>> m.pixel_spacing_A, m.image_size, m.images[0].piece_coordinates, m.images[0].stage_position
(25.0, (4, 3), (0, 0, 0), (1.5, -2.0))
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputImageError

__all__ = ["MdocSection", "Mdoc", "read_mdoc", "parse_mdoc_text", "find_mdoc"]

_SECTION_RE = re.compile(r"^\[\s*([A-Za-z_][\w]*)\s*=\s*(.*?)\s*\]$")
_KEY_RE = re.compile(r"^([A-Za-z_][\w.]*)\s*=\s*(.*)$")

# key -> (kind, number of values); kinds: "i" integer (rounded), "f" float
_TYPED = {
    "PieceCoordinates": ("i", 3),
    "AlignedPieceCoords": ("i", 3),
    "AlignedPieceCoordsVS": ("i", 3),
    "StagePosition": ("f", 2),
    "StageZ": ("f", 1),
    "ImageShift": ("f", 2),
    "PixelSpacing": ("f", 1),
    "Binning": ("f", 1),
    "Magnification": ("f", 1),
    "MagIndex": ("i", 1),
    "TiltAngle": ("f", 1),
    "RotationAngle": ("f", 1),
    "DividedBy2": ("i", 1),
    "MoveStage": ("i", 1),
    "FullMontSize": ("i", 2),
    "FullMontNumFrames": ("i", 2),
    "ImageSize": ("i", 2),
    "DataMode": ("i", 1),
    "Montage": ("i", 1),
}


@dataclass(frozen=True)
class MdocSection:
    """One ``[ZValue = N]`` or ``[MontSection = N]`` section.

    Attributes
    ----------
    kind : str
        ``"ZValue"`` or ``"MontSection"``.
    index : int
        N: the MRC section (ZValue, 0-based) or the montage number (MontSection).
    line : int
        1-based line of the section header in the file.
    fields : tuple of (str, str)
        Every ``key = value`` of the section, in file order, values as written.
    piece_coordinates, aligned_piece_coords, aligned_piece_coords_vs : tuple of 3 int or None
        (x, y, montage z) in px, SerialEM's frame (x right, y up), see the module doc.
    stage_position : tuple of 2 float or None
        Stage (x, y), µm.
    stage_z : float or None
        µm.
    image_shift : tuple of 2 float or None
        SerialEM image-shift units (not µm).
    pixel_spacing_A : float or None
        Å per stored pixel.
    binning, magnification, tilt_angle, rotation_angle : float or None
        Camera binning; nominal magnification; degrees; degrees.
    divided_by_2, move_stage : int or None
        Flags as written (MontSection: ``MoveStage = 1`` for a stage montage).
    full_mont_size, full_mont_num_frames : tuple of 2 int or None
        MontSection only: (X, Y) px of the full montage; pieces in X, Y.
    """

    kind: str
    index: int
    line: int
    fields: tuple[tuple[str, str], ...]
    piece_coordinates: tuple[int, int, int] | None = None
    aligned_piece_coords: tuple[int, int, int] | None = None
    aligned_piece_coords_vs: tuple[int, int, int] | None = None
    stage_position: tuple[float, float] | None = None
    stage_z: float | None = None
    image_shift: tuple[float, float] | None = None
    pixel_spacing_A: float | None = None
    binning: float | None = None
    magnification: float | None = None
    tilt_angle: float | None = None
    rotation_angle: float | None = None
    divided_by_2: int | None = None
    move_stage: int | None = None
    full_mont_size: tuple[int, int] | None = None
    full_mont_num_frames: tuple[int, int] | None = None

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of `key` as written (the last one if repeated), or `default`."""
        for k, v in reversed(self.fields):
            if k == key:
                return v
        return default


@dataclass(frozen=True)
class Mdoc:
    """A parsed `.mdoc` file.

    Attributes
    ----------
    path : str
        The file (for messages).
    header : tuple of (str, str)
        The global ``key = value`` lines, in order.
    titles : tuple of str
        The ``[T = ...]`` texts.
    pixel_spacing_A : float or None
        Global ``PixelSpacing``, Å per stored pixel.
    image_size : tuple of 2 int or None
        ``ImageSize`` = (columns, rows) of each image/piece.
    montage : bool
        ``Montage = 1``.
    data_mode : int or None
        MRC mode of the stack.
    image_file : str or None
        ``ImageFile`` (the stack's name when the mdoc was written).
    images : tuple of MdocSection
        The ZValue sections, in file order.
    mont_sections : tuple of MdocSection
        The MontSection sections, in file order.
    """

    path: str
    header: tuple[tuple[str, str], ...]
    titles: tuple[str, ...]
    pixel_spacing_A: float | None
    image_size: tuple[int, int] | None
    montage: bool
    data_mode: int | None
    image_file: str | None
    images: tuple[MdocSection, ...]
    mont_sections: tuple[MdocSection, ...]

    def image(self, z: int) -> MdocSection | None:
        """The ``[ZValue = z]`` section, or None."""
        for s in self.images:
            if s.index == z:
                return s
        return None

    def montage_numbers(self) -> tuple[int, ...]:
        """Sorted montage numbers (the Z of ``PieceCoordinates``) that have pieces."""
        return tuple(sorted({s.piece_coordinates[2] for s in self.images if s.piece_coordinates}))

    def mont_section(self, n: int) -> MdocSection | None:
        """The ``[MontSection = n]`` section, or None."""
        for s in self.mont_sections:
            if s.index == n:
                return s
        return None


def _fail(path, line: int | None, problem: str) -> InputImageError:
    where = f"{path}: line {line}: " if line is not None else f"{path}: "
    return InputImageError(where + problem)


def _typed_value(path, line: int, key: str, value: str):
    kind, n = _TYPED[key]
    parts = value.split()
    if len(parts) < n:
        raise _fail(path, line, f"{key} needs {n} number(s), got {value.strip()!r}")
    try:
        nums = [float(p) for p in parts[:n]]
    except ValueError:
        raise _fail(path, line, f"{key} is not numeric: {value.strip()!r}") from None
    if not all(math.isfinite(x) for x in nums):
        raise _fail(path, line, f"{key} is not finite: {value.strip()!r}")
    if kind == "i":
        nums = [int(round(x)) for x in nums]
    return nums[0] if n == 1 else tuple(nums)


_ATTR = {
    "PieceCoordinates": "piece_coordinates",
    "AlignedPieceCoords": "aligned_piece_coords",
    "AlignedPieceCoordsVS": "aligned_piece_coords_vs",
    "StagePosition": "stage_position",
    "StageZ": "stage_z",
    "ImageShift": "image_shift",
    "PixelSpacing": "pixel_spacing_A",
    "Binning": "binning",
    "Magnification": "magnification",
    "TiltAngle": "tilt_angle",
    "RotationAngle": "rotation_angle",
    "DividedBy2": "divided_by_2",
    "MoveStage": "move_stage",
    "FullMontSize": "full_mont_size",
    "FullMontNumFrames": "full_mont_num_frames",
}


def parse_mdoc_text(text: str, path: str | os.PathLike = "<mdoc>") -> Mdoc:
    """Parse the text of an `.mdoc` file.

    Parameters
    ----------
    text : str
        The whole file. Blank lines and ``#`` comments are ignored; keys of unknown
        section types are kept nowhere (SerialEM writes none).
    path : str or PathLike
        Named in error messages.

    Returns
    -------
    Mdoc

    Raises
    ------
    InputImageError
        A line that is neither ``key = value`` nor ``[type = name]``, a known numeric key
        with a bad value, a ZValue/MontSection number that is not an integer or repeats,
        or a file without any ``key = value`` line.

    Examples
    --------
    >>> parse_mdoc_text("[ZValue = 0]\\nbad line", "x.mdoc")
    Traceback (most recent call last):
    ...
    ptolemy_rt.errors.InputImageError: x.mdoc: line 2: not 'key = value' nor '[section = name]': 'bad line'
    """
    header: list[tuple[str, str]] = []
    titles: list[str] = []
    images: list[MdocSection] = []
    monts: list[MdocSection] = []
    seen: dict[tuple[str, int], int] = {}
    cur: dict | None = None  # the open ZValue/MontSection: kind, index, line, fields, typed
    in_other = False
    n_keys = 0
    gtyped: dict = {}  # typed values of the global keys

    def close():
        nonlocal cur
        if cur is not None:
            sec = MdocSection(cur["kind"], cur["index"], cur["line"], tuple(cur["fields"]), **cur["typed"])
            (images if sec.kind == "ZValue" else monts).append(sec)
        cur = None

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _SECTION_RE.match(line)
        if m:
            close()
            kind, name = m.group(1), m.group(2)
            if kind == "T":
                titles.append(name)
                in_other = True
                continue
            if kind in ("ZValue", "MontSection"):
                try:
                    idx = int(name)
                except ValueError:
                    raise _fail(path, lineno, f"[{kind} = {name}]: the number is not an integer") from None
                if idx < 0:
                    raise _fail(path, lineno, f"[{kind} = {name}]: negative number")
                if (kind, idx) in seen:
                    raise _fail(path, lineno, f"[{kind} = {idx}] repeats the section of line {seen[(kind, idx)]}")
                seen[(kind, idx)] = lineno
                cur = {"kind": kind, "index": idx, "line": lineno, "fields": [], "typed": {}}
                in_other = False
            else:
                in_other = True
            continue
        m = _KEY_RE.match(line)
        if not m:
            shown = line if len(line) <= 60 else line[:57] + "..."
            raise _fail(path, lineno, f"not 'key = value' nor '[section = name]': {shown!r}")
        key, value = m.group(1), m.group(2).strip()
        n_keys += 1
        if in_other:
            continue
        typed = _typed_value(path, lineno, key, value) if key in _TYPED else None
        if cur is None:
            header.append((key, value))
            if typed is not None:
                gtyped[key] = typed
        else:
            cur["fields"].append((key, value))
            if key in _ATTR:
                cur["typed"][_ATTR[key]] = typed
    close()
    if n_keys == 0:
        raise _fail(path, None, "not a SerialEM .mdoc file (no 'key = value' line)")
    g = gtyped
    data_mode = g.get("DataMode")
    image_file = None
    for k, v in header:
        if k == "ImageFile":
            image_file = v
    return Mdoc(
        path=str(path),
        header=tuple(header),
        titles=tuple(titles),
        pixel_spacing_A=g.get("PixelSpacing"),
        image_size=g.get("ImageSize"),
        montage=bool(g.get("Montage", 0)),
        data_mode=data_mode,
        image_file=image_file,
        images=tuple(images),
        mont_sections=tuple(monts),
    )


def read_mdoc(path: str | os.PathLike) -> Mdoc:
    """Read and parse an `.mdoc` file.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    Mdoc

    Raises
    ------
    InputImageError
        Missing or unreadable file, binary content, or any problem of `parse_mdoc_text`.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "map.mrc.mdoc"
    >>> _ = p.write_text("PixelSpacing = 2312\\nImageSize = 2048 2048\\nMontage = 1\\n\\n"
    ...                  "[ZValue = 0]\\nPieceCoordinates = 0 0 0\\nStagePosition = -310.5 22.25\\n")
    >>> m = read_mdoc(p)
    >>> m.montage, m.pixel_spacing_A, m.images[0].stage_position, m.montage_numbers()
    (True, 2312.0, (-310.5, 22.25), (0,))
    >>> read_mdoc(p.with_name("none.mdoc"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ptolemy_rt.errors.InputImageError: ...none.mdoc: no such file
    >>> p.unlink(); p.parent.rmdir()
    """
    p = Path(path)
    if not p.exists():
        raise _fail(path, None, "no such file")
    if p.is_dir():
        raise _fail(path, None, "is a directory, not an .mdoc file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise _fail(path, None, f"cannot read ({e.strerror})") from None
    if b"\0" in data:
        raise _fail(path, None, "not a SerialEM .mdoc file (binary data)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # SerialEM on Windows may write cp1252 titles
    return parse_mdoc_text(text, path)


def find_mdoc(image_path: str | os.PathLike) -> Path | None:
    """The `.mdoc` SerialEM writes beside `image_path` (``MAP.mrc.mdoc``), or None.

    Parameters
    ----------
    image_path : str or PathLike
        The MRC stack.

    Returns
    -------
    pathlib.Path or None
        ``image_path + ".mdoc"`` if it exists, else ``<stem>.mdoc`` if it exists, else None.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "map.mrc.mdoc").write_text("Montage = 1\\n")
    >>> find_mdoc(d / "map.mrc").name, find_mdoc(d / "other.mrc")
    ('map.mrc.mdoc', None)
    >>> (d / "map.mrc.mdoc").unlink(); d.rmdir()
    """
    p = Path(image_path)
    for cand in (p.with_name(p.name + ".mdoc"), p.with_suffix(".mdoc")):
        if cand.is_file() and cand != p:
            return cand
    return None
