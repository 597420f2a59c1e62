"""Reading what the microscope software writes as one image, with its pixel size and, when
the files tell it, the map from image pixels to stage coordinates.

`load_image` recognises, for one input path (docs/ALGORITHM.md#sources):

1. an EPU atlas: an ``Atlas.dm`` file, or a folder holding one. The stitched atlas image EPU
   writes beside it (``AtlasImageReference/BaseFileName``, e.g. ``Atlas_1.mrc``) is read when
   present; otherwise the tiles (``Tile_*.mrc``) are resampled to their ``AtlasPixelPosition``
   boxes and assembled (`montage.assemble_pieces`, nearest-centre seams). Stage: the affine
   fit of the tiles' ``StagePosition`` to their box centres (`epu.EpuAtlas.stage_transform`);
   pixel size: the scale of that fit.
2. a SerialEM montage: an MRC stack with its ``.mdoc`` (``MAP.mrc.mdoc`` beside it, or
   ``InputOptions.mdoc``) whose sections carry ``PieceCoordinates``: assembled in bounded
   memory, binned (`auto_bin`), by `montage.assemble_montage`; stage from the pieces'
   ``StagePosition`` (`montage.fit_stage_transform`), pixel size from ``PixelSpacing``.
   An ``.mdoc`` beside a file that is not a montage (a tilt series, a single frame) is
   ignored; one named with ``--mdoc`` must be a montage's.
3. an EPU image (``GridSquare_*.mrc``, ``FoilHole_*.mrc``, a ``.jpg``/``.tiff``) with its
   EPU ``.xml`` (root ``MicroscopeImage``) beside it: pixel size and stage from the XML
   (`epu.image_stage_transform`: centre of the full image = the XML's stage position). A
   thumbnail (EPU's JPEG is 512 px wide for a 2880 px image) is recognised by its size
   against the XML's ``ReadoutArea`` (same aspect ratio within 2 %): its pixel size and
   stage map are scaled by the ratio.
4. anything else: `io.read_image` (pixel size from the header, no stage).

Coordinates: images [row, col] as stored (a SerialEM montage bottom row first, like its
pieces; EPU images top row first); points (x, y) = (col, row), px, corner coordinates; stage
(x, y) µm in the microscope's stage frame. Memory: never more than the binned atlas (float32
plus float64 sums of its size) and one full-resolution piece or tile.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import epu, io
from .errors import InputImageError
from .options import InputOptions

#: Pixel size (nm) `auto_bin` bins a low-magnification montage towards (never coarser): grid
#: squares of 40-120 µm are then 40-120 px wide, the scale of the atlases the square
#: classifier was made for (the README atlas: median square side 87 px).
LOWMAG_ATLAS_NM = 1000.0
#: `auto_bin` also bins any assembled atlas to at most this many pixels (4096 × 4096).
MAX_AUTO_PIXELS = 4096 * 4096
ATLAS_DM = "Atlas.dm"


def auto_bin(shape: tuple[int, int], pixel_size_nm: float | None, kind: str) -> int:
    """The binning `load_image` uses for an assembled atlas when --montage-bin is "auto".

    Parameters
    ----------
    shape : tuple of 2 int
        (rows, cols) of the full-resolution atlas, px.
    pixel_size_nm : float or None
        Its pixel size, nm (None: unknown).
    kind : str
        "lowmag" or "medmag".

    Returns
    -------
    int
        b ≥ 1: the smallest b with ceil(rows/b)·ceil(cols/b) ≤ `MAX_AUTO_PIXELS`; for
        lowmag with a known pixel size at least floor(`LOWMAG_ATLAS_NM` / pixel size).

    Examples
    --------
    A 6×6 montage of 2048² pieces (11 264 px square) at 231 nm/px:

    >>> auto_bin((11264, 11264), 231.2, "lowmag"), auto_bin((11264, 11264), 231.2, "medmag")
    (4, 3)
    >>> auto_bin((1000, 1000), None, "lowmag")
    1
    """
    rows, cols = int(shape[0]), int(shape[1])
    b = 1
    while -(-rows // b) * -(-cols // b) > MAX_AUTO_PIXELS:
        b += 1
    if kind == "lowmag" and pixel_size_nm and pixel_size_nm > 0 and math.isfinite(pixel_size_nm):
        b = max(b, int(LOWMAG_ATLAS_NM // pixel_size_nm))
    return max(1, b)


def _xml_root_name(path: Path) -> str | None:
    """Local name of an XML file's root element, or None when it is not XML."""
    import xml.etree.ElementTree as ET

    try:
        for _, elem in ET.iterparse(path, events=("start",)):
            return elem.tag.rsplit("}", 1)[-1]
    except (ET.ParseError, OSError):
        return None
    return None


def epu_atlas_dm(path: str | os.PathLike) -> Path | None:
    """The EPU ``Atlas.dm`` an input names: the file itself (any ``*.dm`` whose root is
    ``AtlasSessionXml``) or ``FOLDER/Atlas.dm``; None otherwise.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    pathlib.Path or None

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "Atlas.dm").write_text("<AtlasSessionXml/>")
    >>> epu_atlas_dm(d).name, epu_atlas_dm(d / "Atlas.dm").name, epu_atlas_dm(d / "x.mrc")
    ('Atlas.dm', 'Atlas.dm', None)
    >>> (d / "Atlas.dm").unlink(); d.rmdir()
    """
    p = Path(path)
    if p.is_dir():
        cand = p / ATLAS_DM
        return cand if cand.is_file() else None
    if p.suffix.lower() == ".dm" and p.is_file() and _xml_root_name(p) == "AtlasSessionXml":
        return p
    return None


def load_image(path: str | os.PathLike, section: int | None = None, options: InputOptions | None = None,
               kind: str = "lowmag") -> io.LoadedImage:
    """Read one input as an image with pixel size and stage map (see the module doc).

    Parameters
    ----------
    path : str or PathLike
        An image file, a SerialEM montage stack, an EPU image, an ``Atlas.dm`` or its folder.
    section : int or None
        A stack's section; for a montage stack: the montage number (``PieceCoordinates`` Z).
    options : options.InputOptions or None
        ``mdoc``, ``montage_bin`` (None: the defaults).
    kind : str
        "lowmag" or "medmag" (for `auto_bin`).

    Returns
    -------
    io.LoadedImage
        With ``pixel_size_source`` ("header", "mdoc", "epu-xml", "epu-atlas"), ``stage``
        (`montage.StageTransform` or None) and ``origin`` (None for a plain image file).

    Raises
    ------
    InputImageError
        One line naming the file and the problem.

    Examples
    --------
    A plain MRC file has no stage map:

    >>> import tempfile, mrcfile
    >>> p = Path(tempfile.mkdtemp()) / "a.mrc"
    >>> with mrcfile.new(p) as m:
    ...     m.set_data(np.arange(64 * 64, dtype=np.float32).reshape(64, 64))
    >>> im = load_image(p)
    >>> im.pixels.shape, im.stage, im.origin, im.pixel_size_source
    ((64, 64), None, None, 'header')
    >>> p.unlink(); p.parent.rmdir()
    """
    opts = options or InputOptions()
    p = Path(path)
    try:
        os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        pass  # the reader says "no such file"
    except (OSError, ValueError) as e:  # name too long, a folder that cannot be searched, NUL byte
        raise InputImageError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    dm = epu_atlas_dm(p)
    if dm is not None:
        if opts.mdoc is not None:
            raise InputImageError(f"{path}: is an EPU atlas; --mdoc is for SerialEM montages")
        return load_epu_atlas(dm, opts.montage_bin, kind)
    mdoc_path = opts.mdoc
    if p.suffix.lower() == ".mdoc" and p.is_file():
        # the .mdoc itself was named: the montage is the stack it describes (MAP.mrc.mdoc → MAP.mrc)
        stack = p.with_suffix("")
        if stack.suffix == "" or not stack.is_file():
            raise InputImageError(f"{path}: is a SerialEM .mdoc, not an image; give the image stack it describes"
                                  + (f" ({stack.name}, not found beside it)" if stack.suffix else ""))
        mdoc_path, p = str(p) if mdoc_path is None else mdoc_path, stack
    if mdoc_path is None and p.is_file():
        from .mdoc import find_mdoc

        found = find_mdoc(p)
        mdoc_path = str(found) if found is not None else None
    if mdoc_path is not None:
        im = _load_montage(p, mdoc_path, section, opts, kind, explicit=opts.mdoc is not None)
        if im is not None:
            return im
    xml = epu.find_epu_xml(p) if p.is_file() else None
    if xml is not None and _xml_root_name(xml) == "MicroscopeImage":
        return load_epu_image(p, xml, section)
    return io.read_image(p, section=section)


def stored_bottom_up(image: io.LoadedImage) -> bool:
    """Whether an image `load_image` read is stored bottom row first, as SerialEM writes its
    files: the default of ``-f nav``'s y flip (`OutputOptions.nav_flip` None).

    Parameters
    ----------
    image : io.LoadedImage
        As `load_image` returns it.

    Returns
    -------
    bool
        False for an EPU image or atlas (EPU's pixel frame: top row first, FACTS §1.5) and
        for a montage whose stack is stored top row first (``origin["rows_top_down"]``, IMOD's
        header rule); True otherwise (a SerialEM montage or map, a plain image file).

    Examples
    --------
    >>> from ptolemy_rt.io import validate_array
    >>> plain = validate_array(np.arange(64 * 64, dtype=np.float32).reshape(64, 64))
    >>> stored_bottom_up(plain), stored_bottom_up(replace(plain, origin={"kind": "epu-image"}))
    (True, False)
    >>> stored_bottom_up(replace(plain, origin={"kind": "serialem-montage", "rows_top_down": True}))
    False
    """
    origin = image.origin or {}
    if origin.get("kind") in ("epu-image", "epu-atlas"):
        return False
    return not origin.get("rows_top_down", False)


def _stage_dict(st) -> dict | None:
    if st is None:
        return None
    return {"matrix_um_per_px": [float(v) for v in st.matrix], "offset_um": [float(v) for v in st.offset],
            "method": st.method, "rms_um": float(st.rms_um), "n_points": int(st.n_points)}


def _from_array(pixels: np.ndarray, path, integer: bool, **fields) -> io.LoadedImage:
    if integer:
        np.rint(pixels, out=pixels)
    im = io.validate_array(pixels, path)
    return replace(im, integer_valued=bool(integer) or im.integer_valued, **fields)


def _load_montage(p: Path, mdoc_path, section, opts: InputOptions, kind: str, explicit: bool):
    from .mdoc import read_mdoc
    from .montage import assemble_montage, montage_layout

    mdoc = read_mdoc(mdoc_path)
    if not any(s.piece_coordinates is not None for s in mdoc.images):
        if explicit:
            raise InputImageError(f"{mdoc_path}: is not a montage .mdoc (no ZValue section has PieceCoordinates)")
        return None  # a tilt series or single-frame .mdoc beside the file: read the file itself
    if not p.is_file():
        raise InputImageError(f"{p}: no such file" if not p.exists() else f"{p}: is not a file")
    b = opts.montage_bin
    if b is None:
        lay = montage_layout(mdoc, section)
        ps = lay.pixel_spacing_A
        b = auto_bin(lay.shape, ps / 10.0 if ps else None, kind)
    mont = assemble_montage(p, mdoc, section=section, bin_factor=b)
    with open(p, "rb") as f:  # assemble_montage read it: a valid little-endian header
        mode = int.from_bytes(f.read(16)[12:16], "little")
    integer = mode in (0, 1, 6)  # int8, int16, uint16 pieces: keep the atlas integer-valued
    lay = mont.layout
    origin = {
        "kind": "serialem-montage", "mdoc": str(mdoc.path), "montage_section": lay.section,
        "pieces": len(lay.pieces), "piece_shape": list(lay.piece_shape), "coords": lay.coords,
        "rows_top_down": lay.rows_top_down, "full_shape": list(lay.shape), "bin": mont.bin_factor,
        "uncovered_px": mont.uncovered_px,
    }
    return _from_array(mont.pixels, str(p), integer, section=section,
                       pixel_size_nm=mont.pixel_size_nm, pixel_size_source="mdoc" if mont.pixel_size_nm else "header",
                       stage=mont.stage, origin=origin)


def load_epu_image(path: str | os.PathLike, xml: str | os.PathLike, section: int | None = None) -> io.LoadedImage:
    """Read an EPU image with its ``.xml``: pixel size and stage map from the XML.

    Parameters
    ----------
    path : str or PathLike
        The image (MRC, TIFF, JPEG thumbnail...), read by `io.read_image` as stored.
    xml : str or PathLike
        Its EPU ``MicroscopeImage`` XML.
    section : int or None
        See `io.read_image`.

    Returns
    -------
    io.LoadedImage
        ``pixel_size_source`` "epu-xml"; ``stage`` maps (x, y) px of the image as read to
        stage µm (`epu.image_stage_transform`, scaled for a thumbnail), None when the XML has
        no stage position.

    Raises
    ------
    InputImageError
        A bad image or XML, or an image whose aspect ratio differs from the XML's
        ``ReadoutArea`` by more than 2 %.

    Examples
    --------
    A 64×100 image whose XML describes a 128×200 px image of 1 µm pixels centred on stage
    (10, 0) µm (so this copy, binned 2, has 2 µm pixels; axes as EPU's, x mirrored):

    >>> import tempfile, mrcfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with mrcfile.new(d / "g.mrc") as m:
    ...     m.set_data(np.arange(6400, dtype=np.float32).reshape(64, 100))
    >>> _ = (d / "g.xml").write_text(
    ...     "<MicroscopeImage><SpatialScale><pixelSize><x><numericValue>1e-6</numericValue></x>"
    ...     "<y><numericValue>1e-6</numericValue></y></pixelSize></SpatialScale><microscopeData>"
    ...     "<acquisition><camera><ReadoutArea><height>128</height><width>200</width></ReadoutArea>"
    ...     "</camera></acquisition><stage><Position><X>1e-5</X><Y>0</Y><Z>0</Z></Position></stage>"
    ...     "</microscopeData></MicroscopeImage>")
    >>> im = load_epu_image(d / "g.mrc", d / "g.xml")
    >>> im.pixel_size_nm, im.stage([[50.0, 32.0], [60.0, 32.0]]).tolist()
    (2000.0, [[10.0, 0.0], [-10.0, 0.0]])
    >>> for f in d.iterdir(): f.unlink()
    >>> d.rmdir()
    """
    from .montage import StageTransform

    image = io.read_image(path, section=section)
    meta = epu.read_epu_image_xml(xml)
    rows, cols = image.pixels.shape
    full_w, full_h = meta.readout_size or (cols, rows)
    fx, fy = full_w / cols, full_h / rows  # this image spans the full one: (x, y) → (fx·x, fy·y)
    if abs(fx - fy) > 0.02 * max(fx, fy):
        raise InputImageError(f"{path}: is {cols}×{rows} px but {xml} describes a {full_w}×{full_h} px image "
                              "(W×H); not the same field of view")
    factor = math.sqrt(fx * fy)
    st = epu.image_stage_transform(path, (full_h, full_w)) if meta.stage_m is not None else None
    if st is not None and (fx, fy) != (1.0, 1.0):
        a, b, c, d = st.matrix
        st = StageTransform((a * fx, b * fy, c * fx, d * fy), st.offset, st.method, st.rms_um, st.n_points)
    origin = {"kind": "epu-image", "xml": str(xml), "full_shape": [int(full_h), int(full_w)],
              "scale_to_full": [fx, fy]}
    return replace(image, pixel_size_nm=meta.pixel_size_nm * factor, pixel_size_source="epu-xml",
                   stage=st, origin=origin)


class _TileStack:
    """``stack[k]``: tile k of an EPU atlas, read and resampled to the atlas box size."""

    def __init__(self, atlas: epu.EpuAtlas, shape: tuple[int, int]):
        self.atlas, self.shape = atlas, shape
        self.folder = Path(atlas.path).parent

    def __len__(self) -> int:
        return len(self.atlas.tiles)

    def path(self, k: int) -> Path:
        t = self.atlas.tiles[k]
        return self.folder / f"{t.image_name}.mrc"

    def __getitem__(self, k: int) -> np.ndarray:
        from scipy import ndimage

        p = self.path(k)
        img = io.read_image(p).pixels
        h, w = self.shape
        fy, fx = img.shape[0] / h, img.shape[1] / w
        if abs(fx - fy) > 0.02 * max(fx, fy):
            raise InputImageError(f"{p}: is {img.shape[1]}×{img.shape[0]} px but its atlas box is {w}×{h} px "
                                  "(W×H); not the same field of view")
        k_int = max(1, int(min(fx, fy)))  # block mean first (area average), then linear to the box
        if k_int > 1:
            hh, ww = img.shape[0] // k_int, img.shape[1] // k_int
            img = img[:hh * k_int, :ww * k_int].reshape(hh, k_int, ww, k_int).mean(axis=(1, 3), dtype=np.float64)
        out = ndimage.zoom(img.astype(np.float32), (h / img.shape[0], w / img.shape[1]), order=1,
                           mode="nearest", grid_mode=True)
        fixed = np.empty((h, w), np.float32)  # zoom rounds the output size: pad/crop to the box
        fixed[...] = np.pad(out, ((0, max(0, h - out.shape[0])), (0, max(0, w - out.shape[1]))),
                            mode="edge")[:h, :w]
        return fixed


def load_epu_atlas(dm: str | os.PathLike, montage_bin: int | None = None, kind: str = "lowmag") -> io.LoadedImage:
    """Read an EPU atlas (``Atlas.dm``) as one image (see the module doc).

    Parameters
    ----------
    dm : str or PathLike
        The ``Atlas.dm``.
    montage_bin : int or None
        Binning of an atlas assembled from tiles (None: `auto_bin` without the low-mag pixel
        target: EPU's atlas scale is kept); a stitched atlas image is read as it is.
    kind : str
        "lowmag" or "medmag".

    Returns
    -------
    io.LoadedImage
        [row, col] top row first (EPU's pixel frame, y down); ``pixel_size_source``
        "epu-atlas", ``stage`` the tile fit (None with fewer than 3 tiles).

    Raises
    ------
    InputImageError
        A bad Atlas.dm, no stitched image and a tile image missing, or unreadable images.

    Examples
    --------
    An Atlas.dm listing one tile, with EPU's stitched ``Atlas_7.mrc`` beside it: the stitched
    image is read as it is (one tile gives no stage fit):

    >>> import tempfile, mrcfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "Atlas.dm").write_text(
    ...     "<AtlasSessionXml><Atlas><Id>7</Id><AtlasImageReference><BaseFileName>Atlas_7</BaseFileName>"
    ...     "<FileFormat>Mrc</FileFormat></AtlasImageReference><TilesEfficient><_items>"
    ...     "<TileXml><Id>1</Id><AtlasPixelPosition><x>0</x><y>0</y><width>96</width><height>80</height>"
    ...     "</AtlasPixelPosition><StagePosition><X>0</X><Y>0</Y><Z>0</Z></StagePosition>"
    ...     "<TileImageReference><BaseFileName>Tile_1_0_7</BaseFileName></TileImageReference></TileXml>"
    ...     "</_items></TilesEfficient></Atlas></AtlasSessionXml>")
    >>> with mrcfile.new(d / "Atlas_7.mrc") as m:
    ...     m.set_data(np.arange(80 * 96, dtype=np.int16).reshape(80, 96))
    >>> img = load_epu_atlas(d / "Atlas.dm")
    >>> img.pixels.shape, img.origin["kind"], img.origin["tiles"], img.stage is None
    ((80, 96), 'epu-atlas', 1, True)
    >>> for f in d.iterdir(): f.unlink()
    >>> d.rmdir()
    """
    from .montage import MontageLayout, Piece, StageTransform, assemble_pieces

    atlas = epu.read_atlas_dm(dm)
    st = atlas.stage_transform()
    px_nm = math.sqrt(abs(np.linalg.det(np.reshape(st.matrix, (2, 2))))) * 1000.0 if st is not None else None
    stitched = atlas.image_path()
    origin = {"kind": "epu-atlas", "atlas_dm": str(dm), "tiles": len(atlas.tiles)}
    if stitched is not None:
        image = io.read_image(stitched)
        if px_nm is None:
            xml = epu.find_epu_xml(stitched)
            px_nm = epu.read_epu_image_xml(xml).pixel_size_nm if xml is not None else None
        origin.update(image=str(stitched), bin=1)
        return replace(image, path=str(dm), pixel_size_nm=px_nm,
                       pixel_size_source="epu-atlas" if px_nm else "header", stage=st, origin=origin)
    if not atlas.tiles:
        raise InputImageError(f"{dm}: lists no atlas tiles with a position, and {atlas.image_name or 'the atlas image'}"
                              ".mrc is not beside it")
    x0, y0, w0, h0 = atlas.tiles[0].box_px
    shape = (int(round(h0)), int(round(w0)))
    stack = _TileStack(atlas, shape)
    for k in range(len(stack)):
        if not stack.path(k).is_file():
            raise InputImageError(f"{dm}: neither the stitched atlas {atlas.image_name}.mrc nor tile "
                                  f"{stack.path(k).name} is beside it")
    xs = [int(round(t.box_px[0])) for t in atlas.tiles]
    ys = [int(round(t.box_px[1])) for t in atlas.tiles]
    mx, my = min(xs), min(ys)
    pieces = tuple(Piece(k, x - mx, y - my, None) for k, (x, y) in enumerate(zip(xs, ys)))
    full = (max(ys) - my + shape[0], max(xs) - mx + shape[1])
    lay = MontageLayout(0, shape, full, pieces, "AtlasPixelPosition", False, None, True)
    b = montage_bin or auto_bin(full, None, kind)
    pixels, _, uncovered = assemble_pieces(lay, stack, path=dm, bin_factor=b)
    if st is not None:  # fitted on atlas px; our frame starts at (mx, my) and is binned b
        m = np.reshape(st.matrix, (2, 2))
        off = np.asarray(st.offset) + m @ np.array([mx, my], dtype=np.float64)
        st = StageTransform(tuple(float(v) * b for v in st.matrix), (float(off[0]), float(off[1])),
                            st.method, st.rms_um, st.n_points)
    origin.update(image=None, full_shape=list(full), bin=b, atlas_origin_px=[mx, my], uncovered_px=uncovered)
    return _from_array(pixels, str(dm), False, pixel_size_nm=px_nm * b if px_nm else None,
                       pixel_size_source="epu-atlas" if px_nm else "header", stage=st, origin=origin)
