"""A tolerant MRC reader: our own checks of what matters, nothing else.

Real MRC files break the MRC2014 rules in many harmless ways (machine stamps that are zero,
wrong or written in the wrong byte order; no ``MAP`` word; big-endian data under a
little-endian stamp; 8-bit data written unsigned; IMOD's pre-2000 header layout). None of
these stop this reader. What it checks is what decides whether the pixels can be read right:

* the 1024-byte header is there;
* the byte order, decided like IMOD does, from the header's own numbers (nx, ny, nz >= 0, not
  all three above 65535, a known mode) in either byte order, never from the machine stamp
  (used only to break a tie);
* the dimensions (no zero, no absurd size) and the mode (0, 1, 2, 5, 6, 12, 16 are images;
  3 and 4 are Fourier data; 101 is packed 4-bit camera frames);
* the extended header (``nsymbt`` bytes after the main header: FEI1/FEI2, SERI, CCP4
  symmetry records, ...) is skipped, and the data block is wholly inside the file.

Only the wanted section is read from disk (seek + read of that section's bytes), so a stack
or a large file costs the memory of one section; `read_section_float32` reads it in row
strips straight into the float32 array the pipelines use (no full-size copy in the stored
type).

Arrays are returned [row, col] exactly as stored (row 0 = the first row in the file; no
flipping, whatever the writer's convention), as 2-D numpy arrays of the file's own type
(int8 or uint8 for mode 0, int16, float32, uint16, float16; mode 16 RGB becomes float32
luminance).

Sources for the variants: ``../shared/real-files/FACTS.md`` §1 (mrcfile, IMOD mrcfiles.c,
Leginon pyami history); nothing is copied from those projects.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

HEADER_BYTES = 1024
IMOD_STAMP = 1146047817  # word 38 (byte 152) of files written by IMOD / SerialEM
IMOD_FLAG_SIGNED_BYTES = 1  # imodFlags bit: mode-0 bytes are signed
MAX_SECTION_PIXELS = 1 << 28  # 268 Mpx (e.g. 16384²): 1 GiB as float32
MAX_SIDE = 1 << 20  # px; no detector or montage is a million pixels wide

# mode -> (numpy type code without byte order, values per pixel); mode 0 is decided per file
IMAGE_MODES = {0: ("i1", 1), 1: ("i2", 1), 2: ("f4", 1), 5: ("u1", 1), 6: ("u2", 1), 12: ("f2", 1), 16: ("u1", 3)}
MODE_NAMES = {
    0: "8-bit integers", 1: "16-bit signed integers", 2: "32-bit floats", 3: "complex 16-bit integers",
    4: "complex 32-bit floats", 5: "unsigned bytes (Leginon)", 6: "16-bit unsigned integers",
    12: "16-bit floats", 16: "RGB bytes", 101: "4-bit packed integers",
}
KNOWN_MODES = frozenset(MODE_NAMES)
LUMINANCE_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, the weights of Pillow's "L" conversion


@dataclass(frozen=True)
class MrcHeader:
    """What this reader takes from a 1024-byte MRC header (numbers in the file's byte order,
    already decoded).

    nx, ny, nz: columns, rows and sections of the data block (px).
    mode: the MRC mode word. dtype: numpy type of one stored value (byte order included;
        for mode 0 signed or unsigned as decided by `mode0_is_signed`).
    byte_order: "<" or ">" as decided from the header's numbers.
    stamp: the four machine-stamp bytes (bytes 212-215) as written, e.g. b"DD\\x00\\x00".
    has_map: bytes 208-210 are "MAP" (False for IMOD's old-style headers and some writers).
    exttyp: bytes 104-107 (e.g. b"FEI1", b"SERI", b"MRCO"); nversion: word 27.
    data_offset: byte where the data block starts (1024 + nsymbt).
    section_bytes: bytes of one section; file_bytes: size of the file.
    pixel_size_nm: real pixel size along x from the header (nm/px), or None when the header
        holds none or the 1 Å placeholder (see `header_pixel_size_nm`).
    notes: harmless oddities seen (each a short phrase), for diagnostics.
    """

    nx: int
    ny: int
    nz: int
    mode: int
    dtype: np.dtype
    byte_order: str
    stamp: bytes
    has_map: bool
    exttyp: bytes
    nversion: int
    data_offset: int
    section_bytes: int
    file_bytes: int
    pixel_size_nm: float | None
    notes: tuple[str, ...] = ()


class MrcFormatError(ValueError):
    """The file cannot be read as an MRC image; the message is one line without the path."""


def _words(raw: bytes, order: str) -> tuple[np.ndarray, np.ndarray]:
    """The header as 256 int32 and 256 float32 words in byte order `order`."""
    return np.frombuffer(raw, order + "i4", 256), np.frombuffer(raw, order + "f4", 256)


def header_is_plausible(nx: int, ny: int, nz: int, mode: int) -> bool:
    """IMOD's sanity test of a header read in one byte order: sizes not negative, not all
    three above 65535, and a known mode.

    Parameters
    ----------
    nx, ny, nz : int
        Columns, rows and sections (px), words 1-3 of the header.
    mode : int
        Word 4 of the header.

    Returns
    -------
    bool

    Examples
    --------
    Mode 2 read in the wrong byte order is 33554432:

    >>> header_is_plausible(512, 512, 1, 2), header_is_plausible(512, 512, 1, 33554432)
    (True, False)
    """
    if min(nx, ny, nz) < 0 or min(nx, ny, nz) > 65535:
        return False
    return mode in KNOWN_MODES


def choose_byte_order(raw: bytes, file_bytes: int) -> str:
    """Decide the byte order of a header from its numbers, not from its machine stamp.

    The order in which (nx, ny, nz, mode) pass `header_is_plausible` wins. When both do
    (possible only for mode 0), the one whose data block fits the file wins, then the one
    the stamp names (0x11 = big-endian), then little-endian.

    Parameters
    ----------
    raw : bytes
        The first 1024 bytes of the file.
    file_bytes : int
        Size of the whole file (bytes).

    Returns
    -------
    str
        "<" (little-endian) or ">" (big-endian).

    Raises
    ------
    MrcFormatError
        When the header makes sense in neither byte order (an unknown mode in a header
        that has the MAP word and sane sizes is named as such).

    Examples
    --------
    A big-endian header of a 4×3 float32 image (no MAP word, no stamp): read
    little-endian its sizes would be 67108864, 50331648, 16777216:

    >>> import struct
    >>> choose_byte_order(struct.pack(">4i", 4, 3, 1, 2) + bytes(1008), 1024 + 4 * 3 * 4)
    '>'
    """
    fits = {}
    for order in "<>":
        i, _ = _words(raw, order)
        nx, ny, nz, mode = (int(v) for v in i[:4])
        if header_is_plausible(nx, ny, nz, mode):
            nsymbt = max(int(i[23]), 0)
            per = IMAGE_MODES.get(mode, ("i1", 1))
            need = HEADER_BYTES + nsymbt + nx * ny * nz * np.dtype(per[0]).itemsize * per[1]
            fits[order] = need <= file_bytes
    if not fits:
        modes = []
        for order in "<>":
            i, _ = _words(raw, order)
            sizes = [int(v) for v in i[:3]]
            if 0 <= min(sizes) and max(sizes) <= MAX_SIDE:
                modes.append(int(i[3]))
        if raw[208:211] == b"MAP" and modes:
            known = ", ".join(str(m) for m in sorted(IMAGE_MODES))
            mode = min(modes, key=abs)
            raise MrcFormatError(f"unsupported MRC mode {mode} (images are modes {known})")
        text = leading_text(raw[:64])
        if text is not None:
            raise MrcFormatError(f"not an MRC file but text (it starts with {text!r})")
        i, _ = _words(raw, "<")
        raise MrcFormatError(
            "not an MRC file (its header's nx, ny, nz, mode = "
            f"{int(i[0])}, {int(i[1])}, {int(i[2])}, {int(i[3])} describe no image in either byte order)"
        )
    if len(fits) == 1:
        return next(iter(fits))
    if fits["<"] != fits[">"]:
        return "<" if fits["<"] else ">"
    return ">" if raw[212] == 0x11 else "<"


def leading_text(start: bytes) -> str | None:
    """The first line (at most 40 characters) of `start` when it is UTF-8 text (an XML,
    .mdoc, .nav or notes file given instead of an image), else None.

    Parameters
    ----------
    start : bytes
        The first bytes of a file (a multi-byte character cut at the end is allowed).

    Returns
    -------
    str or None

    Examples
    --------
    >>> leading_text(b"PixelSpacing = 5.4\\nImageFile = a.mrc"), leading_text(bytes(range(64)))
    ('PixelSpacing = 5.4', None)
    """
    for cut in range(4):  # a multi-byte character may be cut at the end
        try:
            text = start[: len(start) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    text = text.lstrip("\ufeff")
    if not text or not all(c.isprintable() or c in "\t\r\n" for c in text):
        return None
    return text.split("\n")[0].strip()[:40]


def mode0_is_signed(nversion: int, imod_stamp: int, imod_flags: int, dmin: float, dmax: float) -> bool:
    """Whether mode-0 bytes are signed (MRC2014) or unsigned (IMOD, SerialEM, old writers).

    IMOD's rule: a file stamped by IMOD says so in imodFlags bit 1; otherwise the header's
    statistics decide when they can (dmin < 0 and dmax < 128: signed; dmin >= 0 and
    dmax >= 128: unsigned); otherwise an MRC2014 file (nversion 20140 or 20141) is signed and
    any other (IMOD and SerialEM write nversion 0 for unsigned bytes) is unsigned.

    Parameters
    ----------
    nversion : int
        Header word 28 (20140 or 20141 for MRC2014).
    imod_stamp, imod_flags : int
        Header words 39 and 40 (`IMOD_STAMP` when IMOD or SerialEM wrote the file).
    dmin, dmax : float
        The header's minimum and maximum value (words 20 and 21).

    Returns
    -------
    bool
        True: read the bytes as int8; False: as uint8.

    Examples
    --------
    >>> mode0_is_signed(0, 0, 0, 0.0, 255.0), mode0_is_signed(20140, 0, 0, -12.0, 100.0)
    (False, True)
    >>> mode0_is_signed(20140, 0, 0, 0.0, 0.0), mode0_is_signed(0, 0, 0, 0.0, 0.0)
    (True, False)
    """
    if imod_stamp == IMOD_STAMP:
        return bool(imod_flags & IMOD_FLAG_SIGNED_BYTES)
    if math.isfinite(dmin) and math.isfinite(dmax) and dmin <= dmax:
        if dmin < 0 and dmax < 128:
            return True
        if dmin >= 0 and dmax >= 128:
            return False
    return nversion in (20140, 20141)


def header_pixel_size_nm(nx: int, mx: int, cella_x: float) -> float | None:
    """The header's pixel size along x (nm/px) when it is real, else None.

    Pixel size = cella.x / mx (Å). None when mx or cella.x is zero, negative or not finite,
    and for the "unknown" placeholder of Leginon and many other writers: cella.x = nx (or
    = mx), i.e. exactly 1 Å/px, a size no low- or medium-magnification image has.

    Parameters
    ----------
    nx : int
        Columns of the image (px).
    mx : int
        Sampling along x (header word 8).
    cella_x : float
        Cell length along x, Å (header word 11).

    Returns
    -------
    float or None
        nm/px.

    Examples
    --------
    >>> header_pixel_size_nm(512, 512, 512.0) is None, header_pixel_size_nm(100, 100, 2500.0)
    (True, 2.5)
    >>> header_pixel_size_nm(4096, 4096, 0.0) is None
    True
    """
    if not (mx > 0 and math.isfinite(cella_x) and cella_x > 0):
        return None
    angstrom = cella_x / mx
    if cella_x == nx or cella_x == mx or abs(angstrom - 1.0) < 1e-6:
        return None
    return angstrom / 10.0


def fei_pixel_size_nm(ext: bytes) -> float | None:
    """Pixel size X (nm/px) from the first record of an FEI1/FEI2 extended header (float64,
    little-endian, metres, at byte 156 of the record), or None when absent or not positive.

    Parameters
    ----------
    ext : bytes
        The extended header (at least its first 164 bytes).

    Returns
    -------
    float or None
        nm/px, rounded to 9 decimals; None for values not in 0 < v < 1 mm.

    Examples
    --------
    >>> import struct
    >>> fei_pixel_size_nm(bytes(156) + struct.pack("<d", 6.6655e-11))
    0.066655
    """
    if len(ext) < 164:
        return None
    v = float(np.frombuffer(ext, "<f8", 1, 156)[0])
    return round(v * 1e9, 9) if math.isfinite(v) and 0 < v < 1e-3 else None


def read_header(path: str | os.PathLike) -> MrcHeader:
    """Read and check the header of an MRC file.

    Parameters
    ----------
    path : str or PathLike
        The file.

    Returns
    -------
    MrcHeader

    Raises
    ------
    MrcFormatError
        One-line reason (without the path): not an MRC file, no pixels, unsupported mode,
        extended header or data block not wholly in the file, image too large.
    OSError
        When the file cannot be opened or read.

    Examples
    --------
    An old-style big-endian 4×3 int16 file (no MAP word, zero machine stamp, no pixel
    size), written by hand in a temporary folder:

    >>> import os, struct, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "old.mrc")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(struct.pack(">4i", 4, 3, 1, 1) + bytes(1008) + np.arange(12, dtype=">i2").tobytes())
    >>> h = read_header(path)
    >>> h.nx, h.ny, h.nz, h.mode, h.byte_order, h.has_map, h.pixel_size_nm, h.data_offset
    (4, 3, 1, 1, '>', False, None, 1024)
    >>> os.remove(path); os.rmdir(os.path.dirname(path))
    """
    file_bytes = os.stat(path).st_size
    if file_bytes < HEADER_BYTES:
        raise MrcFormatError(f"not an MRC file (only {file_bytes} bytes; an MRC header alone is 1024)")
    with open(path, "rb") as f:
        raw = f.read(HEADER_BYTES)
        order = choose_byte_order(raw, file_bytes)
        i, fl = _words(raw, order)
        nx, ny, nz, mode = (int(v) for v in i[:4])
        mx = int(i[7])
        nsymbt = int(i[23])
        nversion = int(i[27])
        stamp = raw[212:216]
        has_map = raw[208:211] == b"MAP"
        exttyp = raw[104:108]
        notes = []
        if not has_map:
            notes.append("no MAP word (old-style or non-standard header)")
        stamp_order = {0x44: "<", 0x11: ">"}.get(stamp[0])
        if stamp_order != order:
            notes.append(f"machine stamp {stamp.hex(' ')} ignored; data read as {'little' if order == '<' else 'big'}-endian")
        if nx == 0 or ny == 0:
            raise MrcFormatError(f"the MRC header says the image is {nx}×{ny} px: it holds no pixels")
        if nz == 0:
            raise MrcFormatError("the MRC header says nz = 0: the file holds no image section")
        if max(nx, ny) > MAX_SIDE or nx * ny > MAX_SECTION_PIXELS:
            raise MrcFormatError(
                f"the MRC header says each image is {ny}×{nx} px, larger than this reader accepts "
                f"({MAX_SECTION_PIXELS:,} px); bin it first")
        if mode in (3, 4):
            raise MrcFormatError(f"holds complex (Fourier-space) data (MRC mode {mode}), not an image")
        if mode == 101:
            raise MrcFormatError("holds 4-bit packed camera frames (MRC mode 101), not an image to target; sum the frames first")
        code, per_px = IMAGE_MODES[mode]
        if mode == 0:
            signed = mode0_is_signed(nversion, int(i[38]), int(i[39]), float(fl[19]), float(fl[20]))
            code = "i1" if signed else "u1"
            notes.append(f"mode 0 read as {'signed' if signed else 'unsigned'} bytes")
        dtype = np.dtype(order + code)
        if nsymbt < 0:
            raise MrcFormatError(f"corrupt MRC header: extended header size (nsymbt) is {nsymbt}")
        data_offset = HEADER_BYTES + nsymbt
        if data_offset > file_bytes:
            raise MrcFormatError(
                f"truncated MRC file: the header announces a {nsymbt:,}-byte extended header, "
                f"the file holds {file_bytes - HEADER_BYTES:,} bytes after the 1024-byte header")
        section_bytes = nx * ny * per_px * dtype.itemsize
        need = data_offset + section_bytes * nz
        if file_bytes < need:
            have = max(file_bytes - data_offset, 0)
            ext = f" and {nsymbt:,}-byte extended header" if nsymbt else ""
            raise MrcFormatError(
                f"truncated MRC file: {nx}×{ny}×{nz} values of mode {mode} need {section_bytes * nz:,} bytes "
                f"after the 1024-byte header{ext}, the file holds {have:,}")
        pixel_nm = header_pixel_size_nm(nx, mx, float(fl[10]))
        if pixel_nm is None and exttyp in (b"FEI1", b"FEI2") and nsymbt >= 172:
            f.seek(HEADER_BYTES)
            pixel_nm = fei_pixel_size_nm(f.read(172))
    return MrcHeader(nx, ny, nz, mode, dtype, order, stamp, has_map, exttyp, nversion, data_offset,
                     section_bytes, file_bytes, pixel_nm, tuple(notes))


def rgb_to_luminance(rgb: np.ndarray) -> np.ndarray:
    """Luminance of an [row, col, 3] RGB array as float32 [row, col] (BT.601 weights); a grey
    pixel (R = G = B) keeps its grey value exactly.

    Parameters
    ----------
    rgb : numpy.ndarray, shape (rows, cols, 3)
        Any real type; channels R, G, B.

    Returns
    -------
    numpy.ndarray of float32, shape (rows, cols)

    Examples
    --------
    A grey pixel and a pure red one (0.299 × 255):

    >>> [round(float(v), 3) for v in rgb_to_luminance(np.array([[[10, 10, 10], [255, 0, 0]]], np.uint8))[0]]
    [10.0, 76.245]
    """
    r, g, b = (rgb[..., k].astype(np.float32) for k in range(3))
    lum = LUMINANCE_WEIGHTS[0] * r + LUMINANCE_WEIGHTS[1] * g + LUMINANCE_WEIGHTS[2] * b
    grey = (r == g) & (g == b)
    return np.where(grey, r, lum).astype(np.float32)


def read_section(path: str | os.PathLike, header: MrcHeader, k: int) -> np.ndarray:
    """Read section `k` (0-based) of an MRC file whose header `read_header` gave.

    Only that section's bytes are read. Returns a 2-D [row, col] array of the stored type in
    native byte order (mode 16: float32 luminance), rows as stored.

    Parameters
    ----------
    path : str or PathLike
    header : MrcHeader
    k : int
        0 <= k < header.nz.

    Returns
    -------
    numpy.ndarray, shape (ny, nx)
        Row 0 is the first row stored in the file.

    Raises
    ------
    MrcFormatError
        When the section cannot be read whole (the file changed since the header was read).
    IndexError
        When k is outside 0..nz - 1.

    Examples
    --------
    The big-endian int16 file of `read_header`, returned in native byte order, rows as
    stored:

    >>> import os, struct, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "old.mrc")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(struct.pack(">4i", 4, 3, 1, 1) + bytes(1008) + np.arange(12, dtype=">i2").tobytes())
    >>> read_section(path, read_header(path), 0).tolist()
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    >>> os.remove(path); os.rmdir(os.path.dirname(path))
    """
    if not 0 <= k < header.nz:
        raise IndexError(f"section {k} outside 0..{header.nz - 1}")
    per_px = IMAGE_MODES[header.mode][1]
    buf = np.empty(header.section_bytes, np.uint8)
    with open(path, "rb") as f:
        f.seek(header.data_offset + k * header.section_bytes)
        got = f.readinto(buf)
    if got != header.section_bytes:
        raise MrcFormatError(f"truncated MRC file: section {k} has only {got:,} of {header.section_bytes:,} bytes")
    arr = buf.view(header.dtype).astype(header.dtype.newbyteorder("="), copy=False)
    if per_px == 3:
        return rgb_to_luminance(arr.reshape(header.ny, header.nx, 3))
    return arr.reshape(header.ny, header.nx)


STRIP_BYTES = 32 << 20  # bytes read per strip by `read_section_float32`


def read_section_float32(path: str | os.PathLike, header: MrcHeader, k: int) -> np.ndarray:
    """Section `k` of an MRC file as float32 [row, col], read in row strips of about
    `STRIP_BYTES`: memory is the float32 result plus one strip (mode 16 RGB: as
    `read_section`, then converted). Values equal ``read_section(...).astype(np.float32)``.

    Parameters
    ----------
    path : str or PathLike
    header : MrcHeader
    k : int
        0 <= k < header.nz.

    Returns
    -------
    numpy.ndarray of float32, shape (ny, nx)

    Raises
    ------
    MrcFormatError
        When the section cannot be read whole.
    IndexError
        When k is outside 0..nz - 1.

    Examples
    --------
    >>> import os, struct, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "old.mrc")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(struct.pack(">4i", 4, 3, 1, 1) + bytes(1008) + np.arange(12, dtype=">i2").tobytes())
    >>> a = read_section_float32(path, read_header(path), 0)
    >>> a.dtype.name, a[2].tolist()
    ('float32', [8.0, 9.0, 10.0, 11.0])
    >>> os.remove(path); os.rmdir(os.path.dirname(path))
    """
    if not 0 <= k < header.nz:
        raise IndexError(f"section {k} outside 0..{header.nz - 1}")
    if IMAGE_MODES[header.mode][1] != 1:
        return np.asarray(read_section(path, header, k), dtype=np.float32)
    row_bytes = header.nx * header.dtype.itemsize
    rows = max(1, STRIP_BYTES // max(1, row_bytes))
    out = np.empty((header.ny, header.nx), np.float32)
    buf = np.empty(min(rows, header.ny) * row_bytes, np.uint8)
    with open(path, "rb") as f:
        f.seek(header.data_offset + k * header.section_bytes)
        for r0 in range(0, header.ny, rows):
            n = min(rows, header.ny - r0)
            view = memoryview(buf)[: n * row_bytes]
            got = f.readinto(view)
            if got != n * row_bytes:
                have = r0 * row_bytes + (got or 0)
                raise MrcFormatError(f"truncated MRC file: section {k} has only {have:,} of "
                                     f"{header.section_bytes:,} bytes")
            out[r0:r0 + n] = buf[: n * row_bytes].view(header.dtype).reshape(n, header.nx)
    return out
