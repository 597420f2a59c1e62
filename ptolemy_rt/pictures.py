"""Reading pictures: 8/16-bit TIFF, PNG and JPEG (EPU's and Leginon's exported images).

Decoded with Pillow, an optional dependency (the ``[plot]`` extra): without it, a picture
gives a one-line error naming ``pip install 'ptolemy-rt[plot]'``. MRC files never need it.
(JPEG cannot be decoded without a real codec, and a second, home-made PNG/TIFF decoder
would be more untrusted-input parsing to keep safe for files Pillow already reads.)

Pictures carry no pixel size this runtime trusts (a JPEG thumbnail's pixels are not the
image's): give ``--pixel-size`` for physical units.

Values: grey pictures are returned as stored (8-bit 0-255, 16-bit 0-65535 kept as is, 32-bit
integer or float TIFFs as is); colour pictures become float32 luminance (BT.601, the
weights of Pillow's "L"; exact grey values when R = G = B); alpha is dropped; palette
pictures are expanded first. Rows are [row, col] with row 0 the top row of the picture.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from .mrc import MAX_SECTION_PIXELS, rgb_to_luminance

SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
)
SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
PILLOW_HINT = "install it with: pip install 'ptolemy-rt[plot]'"


class PictureError(ValueError):
    """A picture cannot be read; one-line message without the path."""


def picture_format(head: bytes) -> str | None:
    """"PNG", "JPEG" or "TIFF" when `head` (the first bytes of a file) starts with that
    format's signature, else None.

    Parameters
    ----------
    head : bytes
        The first bytes of a file (8 are enough).

    Returns
    -------
    str or None

    Examples
    --------
    >>> picture_format(b"\\x89PNG\\r\\n\\x1a\\n...."), picture_format(b"MAP ")
    ('PNG', None)
    """
    for sig, name in SIGNATURES:
        if head.startswith(sig):
            return name
    return None


def frame_to_array(im) -> np.ndarray:
    """One Pillow frame as a 2-D [row, col] array: grey modes as stored, colour → float32
    luminance, palette expanded, alpha dropped.

    Parameters
    ----------
    im : PIL.Image.Image
        An opened (loaded) frame.

    Returns
    -------
    numpy.ndarray
        2-D [row, col]: uint8, uint16, int32 or float32 as stored for grey modes; float32
        luminance (BT.601) for colour modes.

    Raises
    ------
    PictureError
        For a picture mode this reader does not handle.

    Examples
    --------
    A 1×2 pure red RGB picture (0.299 × 255 each) and a grey one kept as stored
    (needs Pillow, the ``[plot]`` extra):

    >>> import pytest; Image = pytest.importorskip("PIL.Image")
    >>> [round(v, 3) for v in frame_to_array(Image.new("RGB", (2, 1), (255, 0, 0)))[0].tolist()]
    [76.245, 76.245]
    >>> frame_to_array(Image.fromarray(np.array([[1, 2]], np.uint8))).tolist()
    [[1, 2]]
    """
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("L", "LA"):
        return np.asarray(im.getchannel(0) if mode == "LA" else im, dtype=np.uint8)
    if mode == "1":
        return np.asarray(im, dtype=np.uint8)
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    if mode in ("I", "F"):
        return np.asarray(im)
    if mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        rgb = np.asarray(im.convert("RGB") if mode != "RGB" else im, dtype=np.uint8)
        return rgb_to_luminance(rgb)
    raise PictureError(f"unsupported picture mode {mode!r}")


def read_picture(path: str | os.PathLike, section: int | None, fmt: str) -> tuple[np.ndarray, int | None]:
    """Read one frame of a TIFF, PNG or JPEG picture.

    Parameters
    ----------
    path : str or PathLike
    section : int or None
        Frame of a multi-page TIFF (0-based); None is allowed for single-frame pictures.
    fmt : str
        "PNG", "JPEG" or "TIFF" (from `picture_format`), used in messages.

    Returns
    -------
    (array, used_section)
        2-D [row, col] array (see the module docstring for values) and the frame used
        (None for a single-frame picture).

    Raises
    ------
    PictureError
        Pillow missing, undecodable or truncated file, frame out of range, unsupported mode.

    Examples
    --------
    A 64×64 8-bit PNG with one bright pixel at row 3, col 5, written in a temporary
    folder (needs Pillow, the ``[plot]`` extra):

    >>> import os, tempfile, pytest; Image = pytest.importorskip("PIL.Image")
    >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> a = np.zeros((64, 64), np.uint8); a[3, 5] = 200
    >>> Image.fromarray(a).save(path)
    >>> pixels, used = read_picture(path, None, "PNG")
    >>> pixels.shape, pixels.dtype == np.uint8, int(pixels[3, 5]), used
    ((64, 64), True, 200, None)
    >>> read_picture(path, 2, "PNG")
    Traceback (most recent call last):
    ...
    ptolemy_rt.pictures.PictureError: is a single PNG picture; --section 2 does not exist
    >>> os.remove(path); os.rmdir(os.path.dirname(path))
    """
    try:
        from PIL import Image
    except ImportError:
        raise PictureError(f"reading {fmt} pictures needs Pillow, which is not installed; {PILLOW_HINT}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's size warning: our own limit below
            return _read_frame(Image, path, section, fmt)
    except PictureError:
        raise
    except Image.DecompressionBombError as e:
        raise PictureError(f"{fmt} picture too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PictureError(f"not a readable {fmt} picture ({msg})") from None


def _read_frame(Image, path, section: int | None, fmt: str) -> tuple[np.ndarray, int | None]:
    """Open `path` with Pillow and return (array, frame used); see `read_picture`."""
    with Image.open(path) as im:
        w, h = im.size
        if w * h > MAX_SECTION_PIXELS:
            raise PictureError(
                f"picture is {h}×{w} px, larger than this reader accepts ({MAX_SECTION_PIXELS:,} px); bin it first")
        n = int(getattr(im, "n_frames", 1) or 1)
        used = None
        if n > 1:
            if section is None:
                raise PictureError(f"is a {fmt} of {n} frames; choose one with --section 0..{n - 1}")
            if not 0 <= section < n:
                raise PictureError(f"has {n} frames; --section {section} is out of range 0..{n - 1}")
            im.seek(section)
            used = section
        elif section not in (None, 0):
            raise PictureError(f"is a single {fmt} picture; --section {section} does not exist")
        im.load()
        return np.array(frame_to_array(im)), used
