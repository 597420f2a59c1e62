"""Reading Thermo Fisher EPU metadata: per-image `.xml`, `Atlas.dm`, `Metadata/GridSquare_*.dm`.

All three are XML (.NET DataContract serialisation); elements are matched by local name,
so namespace prefixes and pretty-printing do not matter, and ``i:nil="true"`` elements
read as absent.

Units and conventions:

- EPU writes lengths in **metres** (pixel size, stage X/Y/Z) and stage tilts A/B in
  radians; the dataclasses keep metres and offer µm / nm properties.
- EPU pixel coordinates (``PixelCenter``, ``AtlasPixelPosition``, ``PositionOnTheAtlas``)
  are (x, y) = (col, row) with y **down** from the top-left corner of the full image,
  pixel-corner coordinates (the image centre is (W/2, H/2)). EPU MRC files are stored top
  row first (IMOD's FEI rule), so these equal ptolemy's (x, y) of the MRC as read.
- Image pixel → stage (`EpuImageMeta.stage_matrix`): ``stage = P + L·(p − c)``, P the
  image's stage position, c = (W/2, H/2), and L = −(pixel size / √|det M|)·M with M the
  ``ReferenceTransformation`` matrix read in System.Windows.Media's row-vector convention
  (x' = x·m11 + y·m21, y' = x·m12 + y·m22; the real matrices are symmetric, so this choice
  is not tested). The sign and the scaling by the XML pixel size (M is per unbinned camera
  pixel) were found on EPU's own 570 hole targets of a real GridSquare (its
  ``Metadata/GridSquare_*.dm``): EPU's hole stage positions are an exact affine function of
  their pixel centres, which this L reproduces to 3.5 % of the distance from the image
  centre (rms 1.2 µm, at most 2.1 µm at the edge of a 120 µm-wide square image): EPU's own
  stage calibration is not in the image XML. When that ``.dm`` is at hand,
  `EpuGridSquareTargets.stage_transform` (a fit to EPU's targets) is exact. Without a
  matrix, L = diag(−s, +s) (the orientation of both real Krios files) is *assumed*.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputImageError

if TYPE_CHECKING:  # the XML parser is imported where a file is parsed (≈ 10 ms a process otherwise)
    import xml.etree.ElementTree as ET

__all__ = [
    "EpuImageMeta",
    "EpuTile",
    "EpuAtlasSquare",
    "EpuAtlas",
    "EpuHoleTarget",
    "EpuGridSquareTargets",
    "read_epu_image_xml",
    "parse_epu_image_xml",
    "find_epu_xml",
    "read_atlas_dm",
    "read_gridsquare_dm",
    "find_gridsquare_dm",
    "image_stage_transform",
]

_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def _fail(path, problem: str) -> InputImageError:
    return InputImageError(f"{path}: {problem}")


def _local(e: ET.Element) -> str:
    return e.tag.rsplit("}", 1)[-1]


def _child(e: ET.Element | None, name: str) -> ET.Element | None:
    if e is None:
        return None
    for c in e:
        if _local(c) == name:
            return None if c.get(_NIL) == "true" else c
    return None


def _at(e: ET.Element | None, path: str) -> ET.Element | None:
    for name in path.split("/"):
        e = _child(e, name)
        if e is None:
            return None
    return e


def _num(e: ET.Element | None, path: str, where, what: str | None = None) -> float | None:
    node = _at(e, path)
    if node is None or node.text is None or not node.text.strip():
        return None
    try:
        v = float(node.text)
    except ValueError:
        raise _fail(where, f"{what or path} is not a number: {node.text.strip()[:40]!r}") from None
    if not math.isfinite(v):
        raise _fail(where, f"{what or path} is not finite")
    return v


def _text(e: ET.Element | None, path: str) -> str | None:
    node = _at(e, path)
    return node.text.strip() if node is not None and node.text else None


def _parse(source, path) -> ET.Element:
    import xml.etree.ElementTree as ET

    try:
        if isinstance(source, (bytes, str)):
            return ET.fromstring(source)
        return ET.parse(source).getroot()
    except ET.ParseError as e:
        raise _fail(path, f"not an EPU XML file (XML error: {e})") from None


def _read_root(path, expected: str) -> ET.Element:
    p = Path(path)
    if not p.exists():
        raise _fail(path, "no such file")
    if p.is_dir():
        raise _fail(path, "is a directory, not an EPU XML file")
    try:
        with open(p, "rb") as f:
            root = _parse(f, path)
    except OSError as e:
        raise _fail(path, f"cannot read ({e.strerror})") from None
    if _local(root) != expected:
        raise _fail(path, f"not an EPU {expected} file (its root element is <{_local(root)}>)")
    return root


@dataclass(frozen=True)
class EpuImageMeta:
    """The metadata EPU writes beside one image (``MicroscopeImage`` XML).

    Attributes
    ----------
    path : str
    pixel_size_m : tuple of 2 float
        (x, y) metres per pixel of the full MRC/TIFF image (not of the JPEG thumbnail).
    stage_m : tuple of 3 float or None
        Stage (X, Y, Z), metres.
    stage_ab_rad : tuple of 2 float or None
        Stage tilts (A, B), radians.
    reference_matrix : tuple of 4 float or None
        ``ReferenceTransformation`` (m11, m12, m21, m22), metres per camera pixel.
    binning : tuple of 2 int or None
        Camera binning (x, y).
    readout_size : tuple of 2 int or None
        Camera readout area (width, height), unbinned px.
    magnification : float or None
        Nominal magnification.
    application, version, camera, instrument, acquired : str or None
        As written.
    """

    path: str
    pixel_size_m: tuple[float, float]
    stage_m: tuple[float, float, float] | None
    stage_ab_rad: tuple[float, float] | None
    reference_matrix: tuple[float, float, float, float] | None
    binning: tuple[int, int] | None
    readout_size: tuple[int, int] | None
    magnification: float | None
    application: str | None
    version: str | None
    camera: str | None
    instrument: str | None
    acquired: str | None

    @property
    def pixel_size_nm(self) -> float:
        """Pixel size, nm (the mean of x and y)."""
        return (self.pixel_size_m[0] + self.pixel_size_m[1]) / 2 * 1e9

    @property
    def stage_um(self) -> tuple[float, float] | None:
        """Stage (X, Y), µm."""
        return None if self.stage_m is None else (self.stage_m[0] * 1e6, self.stage_m[1] * 1e6)

    def stage_matrix(self) -> tuple[np.ndarray, str]:
        """L (2×2, µm per px): stage offset = L · (pixel offset from the image centre).

        Returns
        -------
        tuple (numpy.ndarray, str)
            L and how it was obtained: "reference-matrix" or "assumed" (see the module doc).

        Examples
        --------
        >>> meta = parse_epu_image_xml(
        ...     "<MicroscopeImage><SpatialScale><pixelSize><x><numericValue>2e-9</numericValue></x>"
        ...     "</pixelSize></SpatialScale></MicroscopeImage>")
        >>> lin, how = meta.stage_matrix()
        >>> lin.tolist(), how
        ([[-0.002, 0.0], [0.0, 0.002]], 'assumed')
        """
        s_um = self.pixel_size_nm * 1e-3
        m = self.reference_matrix
        if m is not None:
            mc = np.array([[m[0], m[2]], [m[1], m[3]]], dtype=np.float64)
            det = abs(float(np.linalg.det(mc)))
            if det > 0 and math.isfinite(det):
                return -(s_um / math.sqrt(det)) * mc, "reference-matrix"
        return np.array([[-s_um, 0.0], [0.0, s_um]]), "assumed"

    def pixel_to_stage_um(self, points_xy, image_shape: tuple[int, int]) -> np.ndarray:
        """Stage (X, Y) µm of image points.

        Parameters
        ----------
        points_xy : array_like (..., 2)
            (x, y) = (col, row), px, corner coordinates, of the full image as read.
        image_shape : tuple of 2 int
            (rows, cols) of that image.

        Returns
        -------
        numpy.ndarray (..., 2)

        Raises
        ------
        InputImageError
            The XML has no stage position.

        Examples
        --------
        >>> meta = parse_epu_image_xml(
        ...     "<MicroscopeImage><SpatialScale><pixelSize><x><numericValue>1e-6</numericValue></x>"
        ...     "<y><numericValue>1e-6</numericValue></y></pixelSize></SpatialScale><microscopeData>"
        ...     "<stage><Position><X>1e-5</X><Y>0</Y><Z>0</Z></Position></stage></microscopeData>"
        ...     "</MicroscopeImage>")
        >>> meta.pixel_to_stage_um([[60.0, 40.0]], (80, 100)).tolist()
        [[0.0, 0.0]]
        """
        if self.stage_m is None:
            raise _fail(self.path, "has no stage position (microscopeData/stage/Position)")
        lin, _ = self.stage_matrix()
        p = np.asarray(points_xy, dtype=np.float64)
        c = np.array([image_shape[1] / 2.0, image_shape[0] / 2.0])
        return (p - c) @ lin.T + np.asarray(self.stage_um)


def parse_epu_image_xml(text: str | bytes, path: str | os.PathLike = "<xml>") -> EpuImageMeta:
    """Parse the text of an EPU image `.xml` (see `read_epu_image_xml`).

    Parameters
    ----------
    text : str or bytes
        The XML.
    path : str or PathLike
        Named in error messages.

    Returns
    -------
    EpuImageMeta

    Raises
    ------
    InputImageError
        As `read_epu_image_xml`.

    Examples
    --------
    >>> xml = ("<MicroscopeImage><SpatialScale><pixelSize><x><numericValue>4.156e-8</numericValue></x>"
    ...        "<y><numericValue>4.156e-8</numericValue></y></pixelSize></SpatialScale><microscopeData>"
    ...        "<stage><Position><X>-9.88e-5</X><Y>-1.647e-4</Y><Z>0</Z></Position></stage>"
    ...        "</microscopeData></MicroscopeImage>")
    >>> meta = parse_epu_image_xml(xml)
    >>> round(meta.pixel_size_nm, 6), [round(v, 6) for v in meta.stage_um]
    (41.56, [-98.8, -164.7])
    >>> parse_epu_image_xml("<EpuSessionXml/>", "s.xml")
    Traceback (most recent call last):
    ...
    ptolemy_rt.errors.InputImageError: s.xml: not an EPU image .xml (its root element is <EpuSessionXml>, not <MicroscopeImage>)
    """
    return _image_meta(_parse(text, path), path)


def _image_meta(root: ET.Element, path) -> EpuImageMeta:
    if _local(root) != "MicroscopeImage":
        raise _fail(path, f"not an EPU image .xml (its root element is <{_local(root)}>, not <MicroscopeImage>)")
    px = _num(root, "SpatialScale/pixelSize/x/numericValue", path, "pixel size x")
    py = _num(root, "SpatialScale/pixelSize/y/numericValue", path, "pixel size y")
    if px is None:
        raise _fail(path, "has no pixel size (SpatialScale/pixelSize/x/numericValue)")
    py = px if py is None else py
    if not (0 < px < 1e-3 and 0 < py < 1e-3):
        raise _fail(path, f"implausible pixel size {px:g} × {py:g} m")
    pos = _at(root, "microscopeData/stage/Position")
    stage = ab = None
    if pos is not None:
        xyz = [_num(pos, k, path, f"stage {k}") for k in ("X", "Y", "Z")]
        if xyz[0] is not None and xyz[1] is not None:
            stage = (xyz[0], xyz[1], xyz[2] or 0.0)
        a, b = _num(pos, "A", path, "stage A"), _num(pos, "B", path, "stage B")
        if a is not None or b is not None:
            ab = (a or 0.0, b or 0.0)
    mat = _at(root, "ReferenceTransformation/matrix")
    ref = None
    if mat is not None:
        vals = [_num(mat, k, path, f"ReferenceTransformation {k}") for k in ("_m11", "_m12", "_m21", "_m22")]
        if all(v is not None for v in vals):
            ref = tuple(vals)
    cam = _at(root, "microscopeData/acquisition/camera")
    bx, by = _num(cam, "Binning/x", path), _num(cam, "Binning/y", path)
    rw, rh = _num(cam, "ReadoutArea/width", path), _num(cam, "ReadoutArea/height", path)
    return EpuImageMeta(
        path=str(path),
        pixel_size_m=(px, py),
        stage_m=stage,
        stage_ab_rad=ab,
        reference_matrix=ref,
        binning=(int(bx), int(by or bx)) if bx else None,
        readout_size=(int(rw), int(rh)) if rw and rh else None,
        magnification=_num(root, "microscopeData/optics/TemMagnification/NominalMagnification", path),
        application=_text(root, "microscopeData/core/ApplicationSoftware"),
        version=_text(root, "microscopeData/core/ApplicationSoftwareVersion"),
        camera=_text(cam, "Name"),
        instrument=_text(root, "microscopeData/instrument/InstrumentModel"),
        acquired=_text(root, "microscopeData/acquisition/acquisitionDateTime"),
    )


def read_epu_image_xml(path: str | os.PathLike) -> EpuImageMeta:
    """Read the EPU `.xml` of one image.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    EpuImageMeta

    Raises
    ------
    InputImageError
        Missing/unreadable file, not XML, not a ``MicroscopeImage``, no or implausible
        pixel size, a non-numeric value.

    Examples
    --------
    >>> import tempfile
    >>> xml = ("<MicroscopeImage><SpatialScale><pixelSize><x><numericValue>4.156e-8</numericValue></x>"
    ...        "<y><numericValue>4.156e-8</numericValue></y></pixelSize></SpatialScale><microscopeData>"
    ...        "<stage><Position><X>-9.88e-5</X><Y>-1.647e-4</Y><Z>0</Z></Position></stage>"
    ...        "</microscopeData></MicroscopeImage>")
    >>> p = Path(tempfile.mkdtemp()) / "GridSquare_1.xml"
    >>> _ = p.write_text(xml)
    >>> round(read_epu_image_xml(p).pixel_size_nm, 6), read_epu_image_xml(p).reference_matrix
    (41.56, None)
    >>> p.unlink(); p.parent.rmdir()
    """
    return _image_meta(_read_root(path, "MicroscopeImage"), path)


def find_epu_xml(image_path: str | os.PathLike) -> Path | None:
    """The EPU `.xml` beside an image (same name, ``.xml``), or None.

    >>> find_epu_xml("/nonexistent/GridSquare_1.mrc") is None
    True
    """
    p = Path(image_path).with_suffix(".xml")
    return p if p.is_file() else None


@dataclass(frozen=True)
class EpuTile:
    """One atlas tile (``TileXml`` of Atlas.dm).

    Attributes
    ----------
    id : int
    box_px : tuple of 4 float
        (x, y, width, height) of the tile inside the atlas image, atlas px (y down).
    stage_m : tuple of 3 float
        Stage (X, Y, Z) of the tile, metres.
    image_name : str or None
        ``TileImageReference/BaseFileName`` (no extension).
    """

    id: int
    box_px: tuple[float, float, float, float]
    stage_m: tuple[float, float, float]
    image_name: str | None

    @property
    def center_px(self) -> tuple[float, float]:
        """(x, y) of the box centre, atlas px."""
        x, y, w, h = self.box_px
        return (x + w / 2.0, y + h / 2.0)


@dataclass(frozen=True)
class EpuAtlasSquare:
    """A grid square EPU found on the atlas (a ``NodeXml``).

    Attributes
    ----------
    id : int
    center_px : tuple of 2 float
        (x, y), atlas px (``PositionOnTheAtlas/Center``).
    size_px : tuple of 2 float or None
        (width, height), atlas px.
    stage_m : tuple of 3 float or None
        ``StagePosition`` (X, Y, Z), metres.
    tile_id : int
        The tile it was listed under (the first, when listed under several).
    """

    id: int
    center_px: tuple[float, float]
    size_px: tuple[float, float] | None
    stage_m: tuple[float, float, float] | None
    tile_id: int


@dataclass(frozen=True)
class EpuAtlas:
    """An EPU atlas (``AtlasSessionXml``, the Atlas.dm file).

    Attributes
    ----------
    path : str
    atlas_id : int or None
    image_name : str or None
        ``AtlasImageReference/BaseFileName`` (e.g. ``Atlas_4590151``), the stitched atlas
        EPU writes in the same folder.
    image_format : str or None
        ``Mrc`` or ``Tiff``.
    tiles : tuple of EpuTile
        Tiles with a position (EPU leaves the others ``nil``).
    squares : tuple of EpuAtlasSquare
    """

    path: str
    atlas_id: int | None
    image_name: str | None
    image_format: str | None
    tiles: tuple[EpuTile, ...]
    squares: tuple[EpuAtlasSquare, ...]

    def image_path(self) -> Path | None:
        """The stitched atlas image beside Atlas.dm (``<image_name>.mrc``/``.tiff``), if present."""
        if not self.image_name:
            return None
        ext = ".tiff" if (self.image_format or "").lower().startswith("tif") else ".mrc"
        p = Path(self.path).with_name(self.image_name + ext)
        return p if p.is_file() else None

    def stage_transform(self):
        """Atlas (x, y) px → stage µm, least squares over the tile centres.

        Returns
        -------
        ptolemy_rt.montage.StageTransform or None
            None with fewer than 3 non-collinear tiles.
        """
        return _fit_affine([t.center_px for t in self.tiles], [t.stage_m for t in self.tiles])


def _fit_affine(points_xy, stages_m):
    """Least-squares affine (x, y) px → stage µm; None with < 3 non-collinear points."""
    from .montage import StageTransform

    if len(points_xy) < 3:
        return None
    cen = np.asarray(points_xy, dtype=np.float64)
    st = np.array([(s[0] * 1e6, s[1] * 1e6) for s in stages_m])
    sv = np.linalg.svd(cen - cen.mean(axis=0), compute_uv=False)
    if sv[1] <= 1e-6 * sv[0]:
        return None
    a = np.c_[cen, np.ones(len(cen))]
    coef, *_ = np.linalg.lstsq(a, st, rcond=None)
    rms = float(np.sqrt(np.mean(np.sum((a @ coef - st) ** 2, axis=1))))
    lin = coef[:2].T
    return StageTransform(tuple(float(v) for v in lin.ravel()), (float(coef[2, 0]), float(coef[2, 1])),
                          "affine-fit", rms, len(cen))


def _xyz(e: ET.Element | None, path, what: str) -> tuple[float, float, float] | None:
    if e is None:
        return None
    x, y = _num(e, "X", path, f"{what} X"), _num(e, "Y", path, f"{what} Y")
    if x is None or y is None:
        return None
    return (x, y, _num(e, "Z", path, f"{what} Z") or 0.0)


def _int(e: ET.Element | None, name: str, path, what: str) -> int | None:
    v = _num(e, name, path, what)
    return None if v is None else int(v)


def read_atlas_dm(path: str | os.PathLike) -> EpuAtlas:
    """Read an EPU ``Atlas.dm``: its tiles, grid squares and stitched image name.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    EpuAtlas

    Raises
    ------
    InputImageError
        Missing/unreadable file, not XML, not an ``AtlasSessionXml``, a tile without
        position or stage, a non-numeric value.

    Examples
    --------
    One tile of 100×80 atlas px at stage (0, 0), in a temporary folder:

    >>> import tempfile
    >>> dm = ("<AtlasSessionXml><Atlas><Id>7</Id><AtlasImageReference><BaseFileName>Atlas_7</BaseFileName>"
    ...       "<FileFormat>Mrc</FileFormat></AtlasImageReference><TilesEfficient><_items>"
    ...       "<TileXml><Id>1</Id><AtlasPixelPosition><x>0</x><y>0</y><width>100</width><height>80</height>"
    ...       "</AtlasPixelPosition><StagePosition><X>0</X><Y>0</Y><Z>0</Z></StagePosition>"
    ...       "<TileImageReference><BaseFileName>Tile_1_0_7</BaseFileName></TileImageReference></TileXml>"
    ...       "</_items></TilesEfficient></Atlas></AtlasSessionXml>")
    >>> p = Path(tempfile.mkdtemp()) / "Atlas.dm"
    >>> _ = p.write_text(dm)
    >>> a = read_atlas_dm(p)
    >>> a.atlas_id, a.image_name, a.tiles[0].center_px, a.tiles[0].image_name, a.stage_transform()
    (7, 'Atlas_7', (50.0, 40.0), 'Tile_1_0_7', None)
    >>> p.unlink(); p.parent.rmdir()
    """
    root = _read_root(path, "AtlasSessionXml")
    atlas = _child(root, "Atlas")
    if atlas is None:
        raise _fail(path, "has no <Atlas> element")
    tiles: list[EpuTile] = []
    squares: dict[int, EpuAtlasSquare] = {}
    holder = _at(atlas, "TilesEfficient/_items")
    for t in holder if holder is not None else []:
        if _local(t) != "TileXml" or t.get(_NIL) == "true" or not len(t):
            continue
        tid = _int(t, "Id", path, "tile Id")
        box = _child(t, "AtlasPixelPosition")
        vals = [_num(box, k, path, f"tile {tid} AtlasPixelPosition {k}") for k in ("x", "y", "width", "height")]
        stage = _xyz(_child(t, "StagePosition"), path, f"tile {tid} StagePosition")
        if tid is None or any(v is None for v in vals) or stage is None:
            raise _fail(path, f"tile {tid} has no AtlasPixelPosition/StagePosition")
        tiles.append(EpuTile(tid, tuple(vals), stage, _text(t, "TileImageReference/BaseFileName")))
        kvs = _at(t, "Nodes/KeyValuePairs")
        for kv in kvs if kvs is not None else []:
            node = _child(kv, "value")
            pos = _child(node, "PositionOnTheAtlas")
            nid = _int(node, "Id", path, "node Id")
            cx = _num(pos, "Center/x", path, f"node {nid} Center x")
            cy = _num(pos, "Center/y", path, f"node {nid} Center y")
            if nid is None or cx is None or cy is None or nid in squares:
                continue
            w, h = _num(pos, "Size/width", path), _num(pos, "Size/height", path)
            squares[nid] = EpuAtlasSquare(nid, (cx, cy), (w, h) if w and h else None,
                                          _xyz(_child(node, "StagePosition"), path, f"node {nid} StagePosition"),
                                          tid)
    return EpuAtlas(
        path=str(path),
        atlas_id=_int(atlas, "Id", path, "Atlas Id"),
        image_name=_text(atlas, "AtlasImageReference/BaseFileName"),
        image_format=_text(atlas, "AtlasImageReference/FileFormat"),
        tiles=tuple(tiles),
        squares=tuple(squares.values()),
    )


@dataclass(frozen=True)
class EpuHoleTarget:
    """A foil hole EPU targeted on a GridSquare image (``TargetLocationXml``).

    Attributes
    ----------
    id : int
    center_px : tuple of 2 float
        ``PixelCenter`` (x, y) in the GridSquare image, px (y down).
    diameter_px : float or None
        ``PixelWidthHeight`` width.
    stage_m : tuple of 3 float or None
        ``StagePosition``, metres.
    selected : bool
    """

    id: int
    center_px: tuple[float, float]
    diameter_px: float | None
    stage_m: tuple[float, float, float] | None
    selected: bool


@dataclass(frozen=True)
class EpuGridSquareTargets:
    """EPU's ``Metadata/GridSquare_<id>.dm``: the square's image and its hole targets.

    Attributes
    ----------
    path : str
    square_id : int or None
    image_name : str or None
        ``Image/BaseFileName`` of the GridSquare image.
    holes : tuple of EpuHoleTarget
    """

    path: str
    square_id: int | None
    image_name: str | None
    holes: tuple[EpuHoleTarget, ...]

    def stage_transform(self):
        """GridSquare image (x, y) px → stage µm, fitted to EPU's own hole targets.

        Returns
        -------
        ptolemy_rt.montage.StageTransform or None
            None with fewer than 3 non-collinear holes with a (non-zero) stage position.
        """
        use = [h for h in self.holes if h.stage_m is not None and (h.stage_m[0] or h.stage_m[1])]
        return _fit_affine([h.center_px for h in use], [h.stage_m for h in use])


def find_gridsquare_dm(image_path: str | os.PathLike) -> Path | None:
    """EPU's ``<session>/Metadata/GridSquare_<id>.dm`` for an image in
    ``<session>/Images-Disc*/GridSquare_<id>/``, or None.

    >>> find_gridsquare_dm("/nonexistent/Images-Disc1/GridSquare_7/GridSquare_1.mrc") is None
    True
    """
    p = Path(image_path)
    folder = p.parent
    if not folder.name.startswith("GridSquare_"):
        return None
    cand = folder.parent.parent / "Metadata" / (folder.name + ".dm")
    return cand if cand.is_file() else None


def read_gridsquare_dm(path: str | os.PathLike) -> EpuGridSquareTargets:
    """Read EPU's ``Metadata/GridSquare_<id>.dm`` (hole targets; reference labels).

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    EpuGridSquareTargets

    Raises
    ------
    InputImageError
        Missing/unreadable file, not XML, not a ``GridSquareXml``, a non-numeric value.

    Examples
    --------
    >>> import tempfile
    >>> dm = ("<GridSquareXml><Id>5</Id><Image><BaseFileName>GridSquare_1</BaseFileName></Image>"
    ...       "<TargetLocations><KeyValuePairOfintTargetLocationXmlabc><key>9</key><value><Id>9</Id>"
    ...       "<PixelCenter><x>10</x><y>20</y></PixelCenter><PixelWidthHeight><width>4</width>"
    ...       "</PixelWidthHeight><Selected>true</Selected></value></KeyValuePairOfintTargetLocationXmlabc>"
    ...       "</TargetLocations></GridSquareXml>")
    >>> p = Path(tempfile.mkdtemp()) / "GridSquare_5.dm"
    >>> _ = p.write_text(dm)
    >>> t = read_gridsquare_dm(p)
    >>> t.square_id, t.image_name, [(h.id, h.center_px, h.diameter_px, h.selected) for h in t.holes]
    (5, 'GridSquare_1', [(9, (10.0, 20.0), 4.0, True)])
    >>> p.unlink(); p.parent.rmdir()
    """
    root = _read_root(path, "GridSquareXml")
    holes = []
    for kv in root.iter():
        if not _local(kv).startswith("KeyValuePairOfintTargetLocationXml"):
            continue
        v = _child(kv, "value")
        hid = _int(v, "Id", path, "target Id")
        x, y = _num(v, "PixelCenter/x", path, f"hole {hid} PixelCenter x"), _num(v, "PixelCenter/y", path)
        if hid is None or x is None or y is None:
            continue
        holes.append(EpuHoleTarget(hid, (x, y), _num(v, "PixelWidthHeight/width", path),
                                   _xyz(_child(v, "StagePosition"), path, f"hole {hid} StagePosition"),
                                   (_text(v, "Selected") or "").lower() == "true"))
    return EpuGridSquareTargets(str(path), _int(root, "Id", path, "Id"), _text(root, "Image/BaseFileName"),
                                tuple(holes))


def image_stage_transform(image_path: str | os.PathLike, image_shape: tuple[int, int]):
    """The best pixel → stage map EPU's files give for one image, or None.

    Parameters
    ----------
    image_path : str or PathLike
        The EPU image (``.mrc``/``.tiff``); its ``.xml`` is looked for beside it.
    image_shape : tuple of 2 int
        (rows, cols) of the image as read.

    Returns
    -------
    ptolemy_rt.montage.StageTransform or None
        Image (x, y) px → stage µm. Method "epu-targets-fit" when EPU's
        ``Metadata/GridSquare_<id>.dm`` for this very image is found (exact), else
        "reference-matrix" or "assumed" from the ``.xml`` (see the module doc); None without
        an ``.xml`` or without a stage position in it.

    Raises
    ------
    InputImageError
        The ``.xml`` or ``.dm`` exists but is unreadable or malformed.

    Examples
    --------
    A 100×80 px image of 1 µm pixels centred on stage (10, 0) µm; without a
    ReferenceTransformation the axes are the assumed EPU ones (x mirrored, y as is):

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "GridSquare_1.xml").write_text(
    ...     "<MicroscopeImage><SpatialScale><pixelSize><x><numericValue>1e-6</numericValue></x>"
    ...     "<y><numericValue>1e-6</numericValue></y></pixelSize></SpatialScale><microscopeData>"
    ...     "<stage><Position><X>1e-5</X><Y>0</Y><Z>0</Z></Position></stage></microscopeData>"
    ...     "</MicroscopeImage>")
    >>> st = image_stage_transform(d / "GridSquare_1.mrc", (80, 100))
    >>> st.method, st([[50.0, 40.0], [60.0, 50.0]]).tolist()
    ('assumed', [[10.0, 0.0], [0.0, 10.0]])
    >>> (d / "GridSquare_1.xml").unlink(); d.rmdir()
    """
    from .montage import StageTransform

    xml = find_epu_xml(image_path)
    if xml is None:
        return None
    meta = read_epu_image_xml(xml)
    if meta.stage_m is None:
        return None
    dm = find_gridsquare_dm(image_path)
    if dm is not None:
        targets = read_gridsquare_dm(dm)
        if targets.image_name == Path(image_path).stem:
            fit = targets.stage_transform()
            if fit is not None:
                return StageTransform(fit.matrix, fit.offset, "epu-targets-fit", fit.rms_um, fit.n_points)
    lin, method = meta.stage_matrix()
    c = np.array([image_shape[1] / 2.0, image_shape[0] / 2.0])
    off = np.asarray(meta.stage_um) - lin @ c
    return StageTransform(tuple(float(v) for v in lin.ravel()), (float(off[0]), float(off[1])), method, 0.0, 0)
