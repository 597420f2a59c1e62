"""Reading and validating input images.

Images are returned as 2-D float32 arrays indexed [row, col] (row = first axis = y,
col = second axis = x), exactly as stored in the file (no flipping): for MRC the data
block's order (`mrc.py`), for TIFF/PNG/JPEG the picture's (row 0 = top, `pictures.py`).

`read_image` takes any supported file (MRC by default; TIFF, PNG and JPEG recognised by
their first bytes). Problems give one-line `InputImageError`s naming the file (exit code 3).
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputImageError

MIN_SIDE = 64  # px; smaller images cannot hold a square or a hole crop


@dataclass(frozen=True)
class LoadedImage:
    """A validated 2-D image.

    pixels: float32 array [row, col], finite, not constant.
    pixel_size_nm: from the MRC header (cella / mx, Å → nm; or an FEI extended header) when
        it is real; None when the header has none, holds the 1 Å "unknown" placeholder
        (cella = nx, as Leginon writes), or the file is a picture.
    integer_valued: True when every stored value is an integer (int MRC modes, or float
        data holding whole numbers); the low-magnification mixture model uses it.
    section: which section of a 3-D stack was used (None for a 2-D file).
    pixel_size_source: where pixel_size_nm comes from: "header" (the file's header: checked
        for plausibility, `output.resolve_pixel_size`), or metadata the microscope software
        wrote beside the image, trusted as is: "mdoc" (SerialEM), "epu-xml" (EPU image .xml),
        "epu-atlas" (EPU Atlas.dm tile positions).
    stage: a `montage.StageTransform` mapping image points (x, y) = (col, row), px, corner
        coordinates, to stage (x, y) µm, or None when unknown (see `sources.load_image`).
    origin: what the image was made from (a JSON-able dict for ``-f json-full``: kind,
        files, binning, stage-mapping method), or None for a plain image file.
    """

    path: str
    pixels: np.ndarray
    pixel_size_nm: float | None
    integer_valued: bool
    section: int | None
    pixel_size_source: str = "header"
    stage: object | None = None
    origin: dict | None = None
    #: True when nothing reads the pixels after the pipeline (set by the batch runner when no
    #: plot is drawn): the pipelines may then overwrite them in place (zero level, clamp,
    #: shift) instead of making a second whole-image array, and the medium-mag pipeline drops
    #: them once it has resampled the image (`release_pixels`; docs/BENCH.md#memory-budget).
    scratch: bool = False

    def release_pixels(self) -> None:
        """Let go of the pixels of a `scratch` image: ``pixels`` becomes None, so no holder of
        this LoadedImage keeps the array alive (the medium-mag pipeline, once a resampled copy
        replaces it: −4 bytes/px). The other fields stay. A non-scratch image is left as is.

        Examples
        --------
        >>> from dataclasses import replace
        >>> im = as_loaded_image(np.arange(64 * 64, dtype=np.float32).reshape(64, 64))
        >>> im.release_pixels(); im.pixels.shape  # not scratch: kept
        (64, 64)
        >>> im = replace(im, scratch=True); im.release_pixels(); im.pixels is None, im.integer_valued
        (True, True)
        """
        if self.scratch:
            object.__setattr__(self, "pixels", None)  # frozen: the one field the protocol changes


def _fail(path: str | os.PathLike, problem: str) -> InputImageError:
    return InputImageError(f"{path}: {problem}")


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        raise _fail(path, "no such file") from None
    except (OSError, ValueError) as e:  # name too long, permission denied on a folder, NUL byte
        raise _fail(path, f"cannot read ({getattr(e, 'strerror', None) or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, "is a directory, not an image file")
    return p


def _head(p: Path, path) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(16)
    except OSError as e:
        raise _fail(path, f"cannot read ({e.strerror or e})") from None


def choose_section(path: str | os.PathLike, n: int, section: int | None) -> int:
    """The 0-based section to read from a file of `n` >= 1 sections.

    Parameters
    ----------
    path : str or PathLike
        For messages only.
    n : int
        Number of sections in the file (nz of an MRC).
    section : int or None
        What the user asked for (None: the only section of a single-section file).

    Returns
    -------
    int

    Raises
    ------
    InputImageError
        A stack without `section`, a section out of range, or a section other than 0 of a
        single image.

    Examples
    --------
    >>> choose_section("a.mrc", 3, 2), choose_section("a.mrc", 1, None)
    (2, 0)
    """
    if n == 1:
        if section not in (None, 0):
            raise _fail(path, f"is a single 2-D image; --section {section} does not exist")
        return 0
    if section is None:
        raise _fail(path, f"is a stack of {n} sections; choose one with --section 0..{n - 1}")
    if not 0 <= section < n:
        raise _fail(path, f"has {n} sections; --section {section} is out of range 0..{n - 1}")
    return section


def read_mrc(path: str | os.PathLike, section: int | None = None) -> LoadedImage:
    """Read one 2-D image from an MRC file, tolerantly, and validate it.

    Machine stamp, MAP word and nversion are not required to be right (see `mrc.py` for
    what is checked). A 3-D stack needs `section` (0-based) unless it holds one section;
    only that section is read. The pixel size is the header's when it is real (None for
    the 1 Å "unknown" placeholder, cella = nx; FEI1/FEI2 extended headers are used when
    cella is empty).

    Parameters
    ----------
    path : str or PathLike
    section : int or None

    Returns
    -------
    LoadedImage

    Raises
    ------
    InputImageError
        One line naming the file and the problem.

    Examples
    --------
    A 2-section int16 stack with 25 Å/px (= 2.5 nm/px) in its header, written in a
    temporary folder; section 1 has one bright pixel at row 10, col 20:

    >>> import os, tempfile, mrcfile
    >>> path = os.path.join(tempfile.mkdtemp(), "stack.mrc")
    >>> stack = np.zeros((2, 64, 64), np.int16); stack[1, 10, 20] = 7
    >>> with mrcfile.new(path) as m:
    ...     m.set_data(stack); m.voxel_size = 25.0
    >>> im = read_mrc(path, section=1)
    >>> im.pixels.shape, float(im.pixels[10, 20]), im.pixel_size_nm, im.integer_valued, im.section
    ((64, 64), 7.0, 2.5, True, 1)
    >>> read_mrc(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ptolemy_rt.errors.InputImageError: ...stack.mrc: is a stack of 2 sections; choose one with --section 0..1
    >>> os.remove(path); os.rmdir(os.path.dirname(path))
    """
    from . import mrc

    p = _check_file(path)
    try:
        header = mrc.read_header(p)
        k = choose_section(path, header.nz, section)
        data = mrc.read_section_float32(p, header, k)  # in row strips: no full-size native copy
    except mrc.MrcFormatError as e:
        raise _fail(path, str(e)) from None
    except OSError as e:
        raise _fail(path, f"cannot read ({e.strerror or e})") from None
    integer = header.dtype.kind in "bui" and mrc.IMAGE_MODES[header.mode][1] == 1  # RGB: luminance floats
    return _validate_2d(data, path, k if header.nz > 1 else None, header.pixel_size_nm, owned=True,
                        integer_source=integer)


def read_image(path: str | os.PathLike, section: int | None = None) -> LoadedImage:
    """Read one 2-D image from an MRC file or a TIFF, PNG or JPEG picture, and validate it.

    The format is recognised from the file's first bytes (an MRC has no signature: whatever
    is not a picture is read as MRC). Pictures need Pillow (the ``[plot]`` extra) and have no
    pixel size (None: give ``--pixel-size``); `section` picks a page of a multi-page TIFF.

    Parameters
    ----------
    path : str or PathLike
    section : int or None

    Returns
    -------
    LoadedImage

    Raises
    ------
    InputImageError
        One line naming the file and the problem (exit code 3).

    Examples
    --------
    An MRC file and a file named .png that holds no picture, in a temporary folder:

    >>> import os, tempfile, mrcfile
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "a.mrc")
    >>> image = np.zeros((64, 80), np.float32); image[3, 5] = 200.0
    >>> with mrcfile.new(path) as m:
    ...     m.set_data(image)
    >>> im = read_image(path)
    >>> im.pixels.shape, float(im.pixels[3, 5]), im.pixel_size_nm, im.section
    ((64, 80), 200.0, None, None)
    >>> fake = os.path.join(folder, "b.png")
    >>> with open(fake, "wb") as f:
    ...     _ = f.write(b"hello")
    >>> read_image(fake)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ptolemy_rt.errors.InputImageError: ...b.png: is named like a PNG picture but its content is not one
    >>> os.remove(path); os.remove(fake); os.rmdir(folder)
    """
    from . import pictures

    p = _check_file(path)
    fmt = pictures.picture_format(_head(p, path))
    if fmt is None:
        named = pictures.SUFFIXES.get(p.suffix.lower())
        if named is not None:
            raise _fail(path, f"is named like a {named} picture but its content is not one")
        return read_mrc(path, section)
    try:
        data, used = pictures.read_picture(p, section, fmt)
    except pictures.PictureError as e:
        raise _fail(path, str(e)) from None
    return _validate_2d(data, path, used, None)


def validate_array(
    data: np.ndarray,
    path: str | os.PathLike = "<array>",
    section: int | None = None,
    pixel_size_nm: float | None = None,
) -> LoadedImage:
    """Validate an in-memory image (2-D, or 3-D with a section) and return a LoadedImage.

    Parameters
    ----------
    data : array_like
        [row, col] image, or [section, row, col] stack.
    path : str or PathLike
        Name used in messages.
    section : int or None
        Section of a stack (0-based); not needed for a 1-section stack.
    pixel_size_nm : float or None
        Recorded as is.

    Returns
    -------
    LoadedImage

    Raises
    ------
    InputImageError
        Not 2-D, complex, too small, NaN/Inf or constant.

    Examples
    --------
    A 64×64 integer ramp becomes float32 [row, col] (pixel [1, 0] = 64):

    >>> im = validate_array(np.arange(64 * 64).reshape(64, 64))
    >>> im.pixels.dtype == np.float32, float(im.pixels[1, 0]), im.integer_valued, im.path
    (True, 64.0, True, '<array>')
    >>> validate_array(np.zeros((64, 64)))
    Traceback (most recent call last):
    ...
    ptolemy_rt.errors.InputImageError: <array>: image is constant (every pixel is 0); nothing to find
    """
    arr = np.asarray(data)
    used_section = None
    if arr.ndim == 3:
        k = choose_section(path, arr.shape[0], section)
        arr = arr[k]
        used_section = k
    elif section not in (None, 0):
        raise _fail(path, f"is a single 2-D image; --section {section} does not exist")
    return _validate_2d(arr, path, used_section, pixel_size_nm)


def _validate_2d(arr: np.ndarray, path, used_section: int | None, pixel_size_nm: float | None,
                 owned: bool = False, integer_source: bool | None = None) -> LoadedImage:
    """Check a 2-D image and return it as a LoadedImage (float32 pixels).

    The checks (NaN/Inf, constant, whole numbers) stream over row strips (`core.row_strips`):
    no whole-image temporaries besides the float32 pixels themselves. owned: `arr` is a
    float32 array nobody else holds (read from a file), used as the pixels without a copy;
    otherwise the pixels are a float32 copy. integer_source: the stored type was an integer
    type (None: `arr`'s dtype decides)."""
    from .core import row_strips

    if arr.ndim != 2:
        raise _fail(path, f"expected a 2-D image, got an array of shape {arr.shape}")
    if arr.dtype.kind == "c":
        raise _fail(path, "holds complex (Fourier-space) data, not an image")
    if arr.dtype.kind not in "buif":
        raise _fail(path, f"holds unsupported data type {arr.dtype}")
    h, w = arr.shape
    if min(h, w) < MIN_SIDE:
        raise _fail(path, f"image is {h}×{w} px; at least {MIN_SIDE}×{MIN_SIDE} is needed")
    if integer_source is None:
        integer_source = arr.dtype.kind in "bui"
    if owned and arr.dtype == np.float32 and arr.flags.c_contiguous:
        pix = arr
    else:
        pix = np.empty((h, w), np.float32)
        for sl in row_strips(h, w):
            pix[sl] = arr[sl]
    bad, lo, hi, whole = 0, np.inf, -np.inf, True
    for sl in row_strips(h, w):
        blk = pix[sl]
        finite = np.isfinite(blk)
        if not finite.all():
            bad += int(blk.size - np.count_nonzero(finite))
            continue
        if bad:
            continue
        lo, hi = min(lo, float(blk.min())), max(hi, float(blk.max()))
        if whole and not integer_source:
            whole = bool(np.all(blk == np.floor(blk)))
    if bad:
        raise _fail(path, f"contains {bad} NaN or Inf pixel value(s)")
    if lo == hi:
        raise _fail(path, f"image is constant (every pixel is {lo:g}); nothing to find")
    integer_valued = bool(integer_source) or whole
    return LoadedImage(str(path), pix, pixel_size_nm, integer_valued, used_section)


def as_loaded_image(image) -> LoadedImage:
    """Accept what the public API takes as an image: a path (read with `read_image`: MRC,
    TIFF, PNG or JPEG), a LoadedImage (returned as is) or a 2-D [row, col] array (validated).

    Parameters
    ----------
    image : str, PathLike, LoadedImage or array_like

    Returns
    -------
    LoadedImage

    Raises
    ------
    InputImageError
        As `read_image` or `validate_array`.

    Examples
    --------
    >>> a = np.zeros((64, 64), np.uint8); a[3, 5] = 200
    >>> im = as_loaded_image(a)
    >>> float(im.pixels[3, 5]), as_loaded_image(im) is im
    (200.0, True)
    """
    if isinstance(image, LoadedImage):
        return image
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    return validate_array(np.asarray(image))
