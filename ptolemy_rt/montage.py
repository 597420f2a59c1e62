"""Assembling a SerialEM montage (MRC stack of pieces + `.mdoc`) into one atlas.

Conventions
-----------
- SerialEM's piece coordinates (``PieceCoordinates``, ``AlignedPieceCoords(VS)``, see
  `ptolemy_rt.mdoc`) are in a right-handed *piece frame*: x to the right, y **up**, the
  offset of the piece's first stored pixel; SerialEM stores images bottom row first.
- The atlas keeps the project's rule "as stored in the file" (docs/CONVENTIONS.md): it is
  the array a single MRC file of the whole montage, written the way the pieces are written,
  would hold. For a SerialEM stack (rows stored bottom-up) a piece at piece coordinates
  (x, y) is copied unflipped to ``atlas[y:y+ny, x:x+nx]`` (so atlas row = piece-frame y,
  and SerialEM's on-screen view is ``atlas[::-1]``). For a stack stored top row first
  (`rows_top_down`, e.g. FEI-style headers) it goes to ``atlas[H-y-ny:H-y, x:x+nx]``.
  Aligned coordinates are shifted so that their minimum is 0 on each axis.
- Atlas points are ``(x, y) = (col, row)`` in pixel-corner coordinates; stage coordinates
  are µm, SerialEM's stage frame.

Overlaps: each atlas pixel comes from the piece, among those covering it, whose centre is
nearest to the pixel's centre (ties: the lower stack section). The seams thus lie in the
middle of the overlaps, away from the piece edges where distortion and vignetting are
worst; exact integer arithmetic makes it deterministic. Pixels covered by no piece get
`fill` (default: the mean of the covered pixels, like IMOD's blendmont).

Memory: the output float32 atlas plus one piece (as float32) plus a bool mask of one
piece and overlap-sized temporaries; the stack is memory-mapped.
"""
from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputImageError
from .mdoc import Mdoc, MdocSection, find_mdoc, read_mdoc

__all__ = [
    "Piece",
    "MontageLayout",
    "StageTransform",
    "Montage",
    "montage_layout",
    "fit_stage_transform",
    "assemble_pieces",
    "assemble_montage",
    "mrc_rows_top_down",
]

IMOD_STAMP = 1146047817
COORD_KEYS = ("AlignedPieceCoordsVS", "AlignedPieceCoords", "PieceCoordinates")
_ATTR = {
    "AlignedPieceCoordsVS": "aligned_piece_coords_vs",
    "AlignedPieceCoords": "aligned_piece_coords",
    "PieceCoordinates": "piece_coordinates",
}


@dataclass(frozen=True)
class Piece:
    """One piece of a montage.

    Attributes
    ----------
    z : int
        Its section in the MRC stack (the ``[ZValue = z]``).
    x, y : int
        Offset of its first stored pixel in the piece frame (x right, y up), px, shifted so
        that the smallest offset of the montage is 0.
    stage_xy_um : tuple of 2 float or None
        ``StagePosition`` (µm).
    """

    z: int
    x: int
    y: int
    stage_xy_um: tuple[float, float] | None


@dataclass(frozen=True)
class MontageLayout:
    """Where every piece goes.

    Attributes
    ----------
    section : int
        The montage number (Z of the piece coordinates).
    piece_shape : tuple of 2 int
        (rows, cols) of each piece.
    shape : tuple of 2 int
        (rows, cols) of the atlas.
    pieces : tuple of Piece
        In stack order.
    coords : str
        Which key placed the pieces: "AlignedPieceCoordsVS", "AlignedPieceCoords" or
        "PieceCoordinates".
    rows_top_down : bool
        Whether the stack (and so the atlas) is stored top row first.
    pixel_spacing_A : float or None
        Å per atlas pixel.
    move_stage : bool or None
        ``MoveStage`` of the MontSection (True: stage montage).
    """

    section: int
    piece_shape: tuple[int, int]
    shape: tuple[int, int]
    pieces: tuple[Piece, ...]
    coords: str
    rows_top_down: bool
    pixel_spacing_A: float | None
    move_stage: bool | None

    def origin_rc(self, piece: Piece) -> tuple[int, int]:
        """(row, col) of the atlas where `piece`'s first stored pixel goes."""
        ny = self.piece_shape[0]
        row = self.shape[0] - piece.y - ny if self.rows_top_down else piece.y
        return row, piece.x


@dataclass(frozen=True)
class StageTransform:
    """Affine map from atlas points (x, y) = (col, row), px, corner coordinates, to stage µm.

    ``stage = matrix @ (x, y) + offset``.

    Attributes
    ----------
    matrix : tuple of 4 float
        Row-major 2×2, µm per px.
    offset : tuple of 2 float
        µm.
    method : str
        "affine-fit" (least squares over ≥ 3 non-collinear piece centres),
        "similarity-fit" (pieces on one line: rotation + scale, handedness assumed as in
        every real SerialEM montage seen: a proper rotation in the piece frame),
        "assumed" (all pieces at one stage position, e.g. an image-shift montage: scale from
        PixelSpacing, piece-frame axes assumed parallel to the stage axes, montage centre at
        the common stage position; unreliable for rotation).
    rms_um : float
        RMS distance between the pieces' StagePosition and the transform of their centres.
    n_points : int
        Pieces used.
    """

    matrix: tuple[float, float, float, float]
    offset: tuple[float, float]
    method: str
    rms_um: float
    n_points: int

    def __call__(self, points_xy) -> np.ndarray:
        """Stage (x, y) µm of atlas points (..., 2) (x, y) px.

        >>> t = StageTransform((2.0, 0.0, 0.0, 2.0), (10.0, 0.0), "affine-fit", 0.0, 3)
        >>> t([[1.0, 1.0]]).tolist()
        [[12.0, 2.0]]
        """
        p = np.asarray(points_xy, dtype=np.float64)
        m = np.asarray(self.matrix, dtype=np.float64).reshape(2, 2)
        return p @ m.T + np.asarray(self.offset)

    def inverse(self, stage_xy) -> np.ndarray:
        """Atlas points (x, y) px of stage points (..., 2) µm."""
        s = np.asarray(stage_xy, dtype=np.float64)
        m = np.asarray(self.matrix, dtype=np.float64).reshape(2, 2)
        return (s - np.asarray(self.offset)) @ np.linalg.inv(m).T


@dataclass(frozen=True)
class Montage:
    """An assembled montage.

    Attributes
    ----------
    pixels : numpy.ndarray
        float32 [row, col], the atlas (see the module doc for its orientation).
    layout : MontageLayout
    stage : StageTransform or None
        None when no piece has a StagePosition.
    pixel_size_nm : float or None
        From ``PixelSpacing`` (Å / 10).
    fill_value : float
        Value given to pixels no piece covers.
    uncovered_px : int
        How many such pixels.
    mrc_path, mdoc_path : str
    bin_factor : int
        The atlas is binned by this factor relative to the pieces (`layout` stays in
        full-resolution pixels).
    """

    pixels: np.ndarray
    layout: MontageLayout
    stage: StageTransform | None
    pixel_size_nm: float | None
    fill_value: float
    uncovered_px: int
    mrc_path: str
    mdoc_path: str
    bin_factor: int = 1


def _fail(path, problem: str) -> InputImageError:
    return InputImageError(f"{path}: {problem}")


def montage_layout(
    mdoc: Mdoc,
    section: int | None = None,
    coords: str = "auto",
    rows_top_down: bool = False,
    piece_shape: tuple[int, int] | None = None,
) -> MontageLayout:
    """Place the pieces of one montage of an `.mdoc`.

    Parameters
    ----------
    mdoc : Mdoc
    section : int or None
        Montage number (``PieceCoordinates`` Z). None: the only one (error if several).
    coords : str
        "auto" (AlignedPieceCoordsVS if every piece has it, else AlignedPieceCoords if every
        piece has it, else PieceCoordinates) or one of those key names.
    rows_top_down : bool
        The stack stores rows top first (see the module doc). SerialEM: False.
    piece_shape : tuple of 2 int or None
        (rows, cols) of a piece; default from ``ImageSize``.

    Returns
    -------
    MontageLayout

    Raises
    ------
    InputImageError
        Not a montage, no/several montage sections, unknown `coords`, a piece lacking the
        requested coordinates, or no piece size.

    Examples
    --------
    >>> from ptolemy_rt.mdoc import parse_mdoc_text
    >>> m = parse_mdoc_text("ImageSize = 4 3\\n[ZValue = 0]\\nPieceCoordinates = 0 0 0\\n"
    ...                     "[ZValue = 1]\\nPieceCoordinates = 3 0 0\\n")
    >>> lay = montage_layout(m)
    >>> lay.shape, [lay.origin_rc(p) for p in lay.pieces]
    ((3, 7), [(0, 0), (0, 3)])
    """
    path = mdoc.path
    with_pc = [s for s in mdoc.images if s.piece_coordinates is not None]
    if not with_pc:
        raise _fail(path, "is not a montage .mdoc (no ZValue section has PieceCoordinates)")
    numbers = mdoc.montage_numbers()
    if section is None:
        if len(numbers) > 1:
            raise _fail(path, f"holds {len(numbers)} montages (sections {numbers[0]}..{numbers[-1]}); "
                        "choose one with --section")
        section = numbers[0]
    elif section not in numbers:
        raise _fail(path, f"has no montage section {section} (it has {', '.join(map(str, numbers))})")
    secs: list[MdocSection] = [s for s in with_pc if s.piece_coordinates[2] == section]
    if coords == "auto":
        key = next(k for k in COORD_KEYS if k == "PieceCoordinates"
                   or all(getattr(s, _ATTR[k]) is not None for s in secs))
    elif coords in _ATTR:
        key = coords
        missing = [s.index for s in secs if getattr(s, _ATTR[key]) is None]
        if missing:
            raise _fail(path, f"ZValue {missing[0]} has no {key}")
    else:
        raise _fail(path, f"unknown piece coordinates {coords!r} (auto, {', '.join(COORD_KEYS)})")
    if piece_shape is None:
        if mdoc.image_size is None:
            raise _fail(path, "has no ImageSize (the size of a piece)")
        piece_shape = (mdoc.image_size[1], mdoc.image_size[0])
    ny, nx = int(piece_shape[0]), int(piece_shape[1])
    xy = np.array([getattr(s, _ATTR[key])[:2] for s in secs], dtype=np.int64)
    xy -= xy.min(axis=0)
    pieces = tuple(
        Piece(s.index, int(x), int(y), s.stage_position) for s, (x, y) in zip(secs, xy)
    )
    shape = (int(xy[:, 1].max()) + ny, int(xy[:, 0].max()) + nx)
    ms = mdoc.mont_section(section)
    ps = next((s.pixel_spacing_A for s in secs if s.pixel_spacing_A), None) or mdoc.pixel_spacing_A
    move = None if ms is None or ms.move_stage is None else bool(ms.move_stage)
    return MontageLayout(section, (ny, nx), shape, pieces, key, bool(rows_top_down), ps, move)


def _piece_frame_centres(layout: MontageLayout) -> np.ndarray:
    ny, nx = layout.piece_shape
    return np.array([(p.x + nx / 2.0, p.y + ny / 2.0) for p in layout.pieces], dtype=np.float64)


def fit_stage_transform(layout: MontageLayout) -> StageTransform | None:
    """Atlas (x, y) px → stage µm, from the pieces' StagePosition and centres.

    Parameters
    ----------
    layout : MontageLayout

    Returns
    -------
    StageTransform or None
        None when no piece has a StagePosition. See `StageTransform.method` for the three
        cases. The fit is made in the piece frame (y up) and composed with the atlas
        orientation, so both row orders give the same stage for the same specimen point.

    Examples
    --------
    Three 10×10 px pieces whose StagePosition is 0.5 µm/px × their centre, plus (100, 0) µm:

    >>> from ptolemy_rt.mdoc import parse_mdoc_text
    >>> m = parse_mdoc_text("ImageSize = 10 10\\n"
    ...     "[ZValue = 0]\\nPieceCoordinates = 0 0 0\\nStagePosition = 102.5 2.5\\n"
    ...     "[ZValue = 1]\\nPieceCoordinates = 8 0 0\\nStagePosition = 106.5 2.5\\n"
    ...     "[ZValue = 2]\\nPieceCoordinates = 0 8 0\\nStagePosition = 102.5 6.5\\n")
    >>> st = fit_stage_transform(montage_layout(m))
    >>> st.method, [round(v, 9) + 0.0 for v in st.matrix], [round(v, 9) + 0.0 for v in st.offset]
    ('affine-fit', [0.5, 0.0, 0.0, 0.5], [100.0, 0.0])
    """
    use = [(i, p) for i, p in enumerate(layout.pieces) if p.stage_xy_um is not None]
    if not use:
        return None
    cen = _piece_frame_centres(layout)[[i for i, _ in use]]
    st = np.array([p.stage_xy_um for _, p in use], dtype=np.float64)
    n = len(use)
    spread_stage = float(np.ptp(st, axis=0).max()) if n > 1 else 0.0
    dc = cen - cen.mean(axis=0)
    sv = np.linalg.svd(dc, compute_uv=False) if n > 1 else np.zeros(2)
    if spread_stage < 1e-3 or layout.move_stage is False or sv[0] < 1e-9:
        method = "assumed"
        s = (layout.pixel_spacing_A or 1.0) * 1e-4  # Å → µm
        lin = np.array([[s, 0.0], [0.0, s]])
        centre = np.array([layout.shape[1] / 2.0, layout.shape[0] / 2.0])  # piece frame: same
        off = st.mean(axis=0) - lin @ centre
    elif sv[1] <= 1e-6 * sv[0] or n < 3:
        method = "similarity-fit"
        pc = cen[:, 0] + 1j * cen[:, 1]
        sc = st[:, 0] + 1j * st[:, 1]
        a_mat = np.stack([pc, np.ones_like(pc)], axis=1)
        (a, b), *_ = np.linalg.lstsq(a_mat, sc, rcond=None)
        lin = np.array([[a.real, -a.imag], [a.imag, a.real]])
        off = np.array([b.real, b.imag])
    else:
        method = "affine-fit"
        a_mat = np.c_[cen, np.ones(n)]
        coef, *_ = np.linalg.lstsq(a_mat, st, rcond=None)
        lin = coef[:2].T
        off = coef[2]
    rms = float(np.sqrt(np.mean(np.sum((cen @ lin.T + off - st) ** 2, axis=1))))
    if layout.rows_top_down:  # piece frame y = H - atlas y
        h = float(layout.shape[0])
        flip = np.array([[1.0, 0.0], [0.0, -1.0]])
        off = off + lin @ np.array([0.0, h])
        lin = lin @ flip
    return StageTransform(tuple(float(v) for v in lin.ravel()), (float(off[0]), float(off[1])),
                          method, rms, n)


def _owner_mask(layout: MontageLayout, k: int, rects: np.ndarray) -> np.ndarray:
    """Bool [rows, cols] of piece k: True where piece k is the nearest covering piece."""
    ny, nx = layout.piece_shape
    r0, c0 = rects[k]
    mask = np.ones((ny, nx), dtype=bool)
    ai_r, ai_c = 2 * r0 + ny, 2 * c0 + nx  # doubled centre (exact integers)
    for j in range(len(rects)):
        if j == k:
            continue
        rj, cj = rects[j]
        lo_r, hi_r = max(r0, rj), min(r0 + ny, rj + ny)
        lo_c, hi_c = max(c0, cj), min(c0 + nx, cj + nx)
        if lo_r >= hi_r or lo_c >= hi_c:
            continue
        bj_r, bj_c = 2 * rj + ny, 2 * cj + nx
        u = (2 * np.arange(lo_r, hi_r, dtype=np.int64) + 1)[:, None]  # doubled pixel centres
        v = (2 * np.arange(lo_c, hi_c, dtype=np.int64) + 1)[None, :]
        # d_k² − d_j² (doubled coordinates): (b−a)(2u−a−b) summed over both axes
        diff = (bj_r - ai_r) * (2 * u - ai_r - bj_r) + (bj_c - ai_c) * (2 * v - ai_c - bj_c)
        j_wins = diff >= 0 if layout.pieces[j].z < layout.pieces[k].z else diff > 0
        mask[lo_r - r0:hi_r - r0, lo_c - c0:hi_c - c0] &= ~j_wins
    return mask


def _read_piece(layout: MontageLayout, stack, z: int, path) -> np.ndarray:
    ny, nx = layout.piece_shape
    nz = len(stack)
    if not 0 <= z < nz:
        raise _fail(path, f"the .mdoc names section {z} but the stack has {nz} sections (0..{nz - 1})")
    piece = np.asarray(stack[z], dtype=np.float32)
    if piece.shape != (ny, nx):
        raise _fail(path, f"section {z} is {piece.shape[0]}×{piece.shape[1]} px, the .mdoc says "
                    f"{ny}×{nx} (rows×cols)")
    if not np.isfinite(piece).all():
        raise _fail(path, f"section {z} contains NaN or Inf pixel values")
    return piece


def _assemble_binned(layout: MontageLayout, stack, fill, path, b: int, rects: np.ndarray):
    ny, nx = layout.piece_shape
    rows, cols = layout.shape
    rb, cb = -(-rows // b), -(-cols // b)
    sums = np.zeros((rb, cb), dtype=np.float64)
    counts = np.zeros((rb, cb), dtype=np.int32)
    for k, p in enumerate(layout.pieces):
        piece = _read_piece(layout, stack, p.z, path)
        mask = _owner_mask(layout, k, rects)
        r0, c0 = (int(v) for v in rects[k])
        br0, bc0 = r0 // b, c0 // b
        br1, bc1 = -(-(r0 + ny) // b), -(-(c0 + nx) // b)
        buf = np.zeros(((br1 - br0) * b, (bc1 - bc0) * b), dtype=np.float32)
        sub = (slice(r0 - br0 * b, r0 - br0 * b + ny), slice(c0 - bc0 * b, c0 - bc0 * b + nx))
        np.copyto(buf[sub], piece, where=mask)
        del piece
        sums[br0:br1, bc0:bc1] += buf.reshape(br1 - br0, b, bc1 - bc0, b).sum(axis=(1, 3), dtype=np.float64)
        buf[...] = 0
        buf[sub] = mask
        counts[br0:br1, bc0:bc1] += buf.reshape(br1 - br0, b, bc1 - bc0, b).sum(axis=(1, 3)).astype(np.int32)
        del buf, mask
    n = int(counts.sum())
    if fill is None:
        fill = float(sums.sum()) / n if n else 0.0
    fill = float(np.float32(fill))
    covered = counts > 0
    out = np.full((rb, cb), fill, dtype=np.float32)
    out[covered] = (sums[covered] / counts[covered]).astype(np.float32)
    return out, fill, int(rb * cb - np.count_nonzero(covered))


def assemble_pieces(layout: MontageLayout, stack, fill: float | None = None,
                    path: str | os.PathLike = "<stack>", band_rows: int = 256, bin_factor: int = 1):
    """Assemble pieces from an indexable stack (``stack[z]`` → 2-D array) per `layout`.

    Parameters
    ----------
    layout : MontageLayout
    stack : sequence of 2-D arrays (e.g. a memory-mapped MRC data block)
        ``stack[z]`` is read once per piece.
    fill : float or None
        Value for uncovered pixels; None: the mean of the covered ones.
    path : str or PathLike
        Named in error messages.
    band_rows : int
        Rows per band when computing the fill (bounds temporaries).
    bin_factor : int
        b ≥ 1: return the atlas binned b×b: each output pixel is the mean of the covered
        pixels of its b×b block of the full-resolution atlas (blocks from (0, 0); the last
        row/column of blocks may be partial), `fill` where none is covered. Memory: the
        binned output plus float64 sums and int32 counts of that size, plus one piece.

    Returns
    -------
    tuple (numpy.ndarray, float, int)
        The float32 atlas [row, col] (shape ``ceil(shape / b)``), the fill value used, the
        number of (output) pixels no piece covers.

    Raises
    ------
    InputImageError
        A piece outside the stack, of the wrong shape, or with NaN/Inf values.

    Examples
    --------
    >>> from ptolemy_rt.mdoc import parse_mdoc_text
    >>> m = parse_mdoc_text("ImageSize = 2 1\\n[ZValue = 0]\\nPieceCoordinates = 0 0 0\\n"
    ...                     "[ZValue = 1]\\nPieceCoordinates = 1 0 0\\n")
    >>> # the middle pixel is equally near both centres: the lower section wins
    >>> atlas, fill, n = assemble_pieces(montage_layout(m), np.array([[[1, 2]], [[3, 4]]]))
    >>> atlas.tolist(), n
    ([[1.0, 2.0, 4.0]], 0)
    """
    ny, nx = layout.piece_shape
    rows, cols = layout.shape
    b = int(bin_factor)
    if b < 1:
        raise ValueError(f"bin_factor must be >= 1, got {bin_factor}")
    rects = np.array([layout.origin_rc(p) for p in layout.pieces], dtype=np.int64)
    if b > 1:
        return _assemble_binned(layout, stack, fill, path, b, rects)
    out = np.full((rows, cols), np.nan, dtype=np.float32)
    for k, p in enumerate(layout.pieces):
        piece = _read_piece(layout, stack, p.z, path)
        mask = _owner_mask(layout, k, rects)
        r0, c0 = rects[k]
        np.copyto(out[r0:r0 + ny, c0:c0 + nx], piece, where=mask)
        del piece, mask
    total, count = 0.0, 0
    for r in range(0, rows, band_rows):
        band = out[r:r + band_rows]
        ok = ~np.isnan(band)
        count += int(np.count_nonzero(ok))
        total += float(band.sum(where=ok, dtype=np.float64))
    uncovered = rows * cols - count
    if fill is None:
        fill = total / count if count else 0.0
    fill = float(np.float32(fill))
    if uncovered:
        for r in range(0, rows, band_rows):
            band = out[r:r + band_rows]
            band[np.isnan(band)] = fill
    return out, fill, uncovered


def mrc_rows_top_down(header_bytes: bytes) -> bool:
    """Whether an MRC file stores its rows top first, by IMOD's rule (FACTS §1.5).

    True when the IMOD stamp (word 38) is absent and either the extended-header type is
    FEI1/FEI2 with nversion 20140, or mapr (word 17) is −2. SerialEM files carry the IMOD
    stamp: False.

    Parameters
    ----------
    header_bytes : bytes
        At least the first 160 bytes of the file (little-endian header assumed).

    Returns
    -------
    bool

    >>> mrc_rows_top_down(bytes(1024))
    False
    """
    h = header_bytes
    if len(h) < 160:
        return False
    mapr = struct.unpack_from("<i", h, 68)[0]
    exttyp = h[104:108]
    nversion = struct.unpack_from("<i", h, 108)[0]
    stamp = struct.unpack_from("<i", h, 152)[0]
    if stamp == IMOD_STAMP:
        return False
    return (exttyp in (b"FEI1", b"FEI2") and nversion == 20140) or mapr == -2


def assemble_montage(
    mrc_path: str | os.PathLike,
    mdoc: Mdoc | str | os.PathLike | None = None,
    section: int | None = None,
    coords: str = "auto",
    rows_top_down: bool | None = None,
    fill: float | None = None,
    bin_factor: int = 1,
) -> Montage:
    """Read a SerialEM montage (MRC stack + `.mdoc`) as one atlas, in bounded memory.

    Parameters
    ----------
    mrc_path : str or PathLike
        The MRC stack of pieces (memory-mapped, read permissively).
    mdoc : Mdoc, path or None
        The `.mdoc`; None: ``mrc_path + ".mdoc"`` (see `ptolemy_rt.mdoc.find_mdoc`).
    section : int or None
        Montage number (see `montage_layout`).
    coords : str
        See `montage_layout`.
    rows_top_down : bool or None
        None: from the MRC header (`mrc_rows_top_down`).
    fill : float or None
        See `assemble_pieces`.
    bin_factor : int
        Return the atlas binned b×b (see `assemble_pieces`); its pixel size and stage
        transform are scaled to match.

    Returns
    -------
    Montage

    Raises
    ------
    InputImageError
        Missing/unreadable MRC or `.mdoc`, or any problem of `montage_layout` /
        `assemble_pieces`.

    Examples
    --------
    Two 4×6 px pieces side by side (2 px overlap), 25 Å/px, in a temporary folder:

    >>> import tempfile, mrcfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with mrcfile.new(d / "map.mrc") as m:
    ...     m.set_data(np.stack([np.full((4, 6), 1, np.int16), np.full((4, 6), 3, np.int16)]))
    >>> _ = (d / "map.mrc.mdoc").write_text(
    ...     "PixelSpacing = 25\\nImageSize = 6 4\\nMontage = 1\\n[ZValue = 0]\\nPieceCoordinates = 0 0 0\\n"
    ...     "[ZValue = 1]\\nPieceCoordinates = 4 0 0\\n")
    >>> mont = assemble_montage(d / "map.mrc")
    >>> mont.pixels.tolist()[0], mont.pixel_size_nm, mont.stage
    ([1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0, 3.0], 2.5, None)
    >>> for f in d.iterdir(): f.unlink()
    >>> d.rmdir()
    """
    import mrcfile

    p = Path(mrc_path)
    if not p.is_file():
        raise _fail(mrc_path, "no such file" if not p.exists() else "is not a file")
    if mdoc is None:
        found = find_mdoc(p)
        if found is None:
            raise _fail(mrc_path, f"no .mdoc beside it ({p.name}.mdoc); name it with --mdoc")
        mdoc = found
    if not isinstance(mdoc, Mdoc):
        mdoc = read_mdoc(mdoc)
    try:
        with open(p, "rb") as f:
            head = f.read(1024)
    except OSError as e:
        raise _fail(mrc_path, f"cannot read ({e.strerror})") from None
    if len(head) < 1024:
        raise _fail(mrc_path, f"not an MRC file (only {len(head)} bytes; an MRC header alone is 1024)")
    if rows_top_down is None:
        rows_top_down = mrc_rows_top_down(head)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mrc = mrcfile.mmap(p, mode="r", permissive=True)
    except Exception as e:  # mrcfile raises assorted errors on garbage
        raise _fail(mrc_path, f"not a readable MRC file ({type(e).__name__}: {e})") from None
    try:
        data = mrc.data
        if data is None:
            raise _fail(mrc_path, "truncated or corrupt MRC stack (no readable data block)")
        if data.dtype.kind not in "uif":
            raise _fail(mrc_path, f"holds unsupported data type {data.dtype}")
        stack = data if data.ndim == 3 else data[None]
        piece_shape = tuple(int(v) for v in stack.shape[1:])
        if mdoc.image_size is not None and (mdoc.image_size[1], mdoc.image_size[0]) != piece_shape:
            raise _fail(mrc_path, f"pieces are {piece_shape[0]}×{piece_shape[1]} px but {mdoc.path} says "
                        f"ImageSize {mdoc.image_size[0]} {mdoc.image_size[1]} (cols rows)")
        layout = montage_layout(mdoc, section, coords, rows_top_down, piece_shape)
        pixels, fill_used, uncovered = assemble_pieces(layout, stack, fill, mrc_path, bin_factor=bin_factor)
    finally:
        mrc.close()
    b = int(bin_factor)
    ps = layout.pixel_spacing_A
    stage = fit_stage_transform(layout)
    if stage is not None and b > 1:  # binned corner (x, y) = full-resolution (b·x, b·y)
        stage = StageTransform(tuple(v * b for v in stage.matrix), stage.offset, stage.method,
                               stage.rms_um, stage.n_points)
    return Montage(pixels, layout, stage, ps * b / 10.0 if ps else None,
                   fill_used, uncovered, str(mrc_path), mdoc.path, b)
