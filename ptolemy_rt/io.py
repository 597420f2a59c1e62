"""Reading and validating input images.

Images are returned as 2-D float32 arrays indexed [row, col] (row = first axis = y,
col = second axis = x), exactly as stored in the MRC data block (no flipping).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputImageError

MIN_SIDE = 64  # px; smaller images cannot hold a square or a hole crop


@dataclass(frozen=True)
class LoadedImage:
    """A validated 2-D image.

    pixels: float32 array [row, col], finite, not constant.
    pixel_size_nm: from the MRC header (voxel size, Å → nm) or None when the header has none.
    integer_valued: True when every stored value is an integer (int MRC modes, or float
        data holding whole numbers); the low-magnification mixture model uses it.
    section: which section of a 3-D stack was used (None for a 2-D file).
    """

    path: str
    pixels: np.ndarray
    pixel_size_nm: float | None
    integer_valued: bool
    section: int | None


def _fail(path: str | os.PathLike, problem: str) -> InputImageError:
    return InputImageError(f"{path}: {problem}")


def read_mrc(path: str | os.PathLike, section: int | None = None) -> LoadedImage:
    """Read one 2-D image from an MRC file and validate it.

    A 3-D stack needs `section` (0-based) unless it holds exactly one section.
    Raises InputImageError with a one-line message naming the file and the problem.
    """
    import mrcfile  # local import keeps CLI start-up light for --help

    p = Path(path)
    if not p.exists():
        raise _fail(path, "no such file")
    if p.is_dir():
        raise _fail(path, "is a directory, not an MRC file")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise _fail(path, f"cannot read ({e.strerror})") from None
    if size < 1024:
        raise _fail(path, f"not an MRC file (only {size} bytes; an MRC header alone is 1024)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(p, mode="r", permissive=False, header_only=False) as mrc:
                data = np.asarray(mrc.data)
                voxel = mrc.voxel_size
                px = float(voxel.x) if voxel is not None else 0.0
    except (ValueError, RuntimeWarning, UserWarning, OSError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        low = msg.lower()
        if "map id" in low or "machine stamp" in low or "mode" in low and "not" in low:
            raise _fail(path, f"not a valid MRC file ({msg})") from None
        if "data" in low and ("size" in low or "short" in low or "expected" in low):
            raise _fail(path, f"truncated or corrupt MRC file ({msg})") from None
        raise _fail(path, f"not a readable MRC file ({msg})") from None
    except Exception as e:  # mrcfile raises assorted errors on garbage
        raise _fail(path, f"not a readable MRC file ({type(e).__name__}: {e})") from None
    return validate_array(data, path, section=section, pixel_size_nm=(px / 10.0) if px > 0 else None)


def validate_array(
    data: np.ndarray,
    path: str | os.PathLike = "<array>",
    section: int | None = None,
    pixel_size_nm: float | None = None,
) -> LoadedImage:
    """Validate an in-memory image (2-D, or 3-D with a section) and return a LoadedImage."""
    arr = np.asarray(data)
    used_section = None
    if arr.ndim == 3:
        n = arr.shape[0]
        if section is None:
            if n == 1:
                section = 0
            else:
                raise _fail(path, f"is a stack of {n} sections; choose one with --section 0..{n - 1}")
        if not 0 <= section < n:
            raise _fail(path, f"has {n} sections; --section {section} is out of range 0..{n - 1}")
        arr = arr[section]
        used_section = section
    elif section not in (None, 0):
        raise _fail(path, f"is a single 2-D image; --section {section} does not exist")
    if arr.ndim != 2:
        raise _fail(path, f"expected a 2-D image, got an array of shape {arr.shape}")
    if arr.dtype.kind == "c":
        raise _fail(path, "holds complex (Fourier-space) data, not an image")
    if arr.dtype.kind not in "uif":
        raise _fail(path, f"holds unsupported data type {arr.dtype}")
    h, w = arr.shape
    if min(h, w) < MIN_SIDE:
        raise _fail(path, f"image is {h}×{w} px; at least {MIN_SIDE}×{MIN_SIDE} is needed")
    pix = arr.astype(np.float32, copy=True)
    finite = np.isfinite(pix)
    if not finite.all():
        bad = int(pix.size - np.count_nonzero(finite))
        raise _fail(path, f"contains {bad} NaN or Inf pixel value(s)")
    lo, hi = float(pix.min()), float(pix.max())
    if lo == hi:
        raise _fail(path, f"image is constant (every pixel is {lo:g}); nothing to find")
    integer_valued = arr.dtype.kind in "ui" or bool(np.all(pix == np.floor(pix)))
    return LoadedImage(str(path), pix, pixel_size_nm, integer_valued, used_section)


def as_loaded_image(image) -> LoadedImage:
    """Accept what the public API takes as an image: a path (read and validated as MRC), a
    LoadedImage (returned as is) or a 2-D [row, col] array (validated)."""
    if isinstance(image, LoadedImage):
        return image
    if isinstance(image, (str, os.PathLike)):
        return read_mrc(image)
    return validate_array(np.asarray(image))
