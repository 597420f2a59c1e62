"""ptolemy-rt: torch-free runtime for Ptolemy cryo-EM targeting.

Public API (imported lazily so that `import ptolemy_rt` stays cheap):
    find_squares(image, ...) -> SquareResult   (low magnification, see lowmag.py)
    find_holes(image, ...)   -> HoleResult     (medium magnification, see medmag.py)
    read_mrc(path)           -> LoadedImage    (see io.py)
    read_image(path)         -> LoadedImage    (MRC, TIFF, PNG or JPEG; see io.py)
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["find_squares", "find_holes", "read_mrc", "read_image", "Square", "Hole", "SquareResult", "HoleResult"]


def __getattr__(name: str):
    if name == "find_squares":
        from .lowmag import find_squares

        return find_squares
    if name == "find_holes":
        from .medmag import find_holes

        return find_holes
    if name in ("read_mrc", "read_image"):
        from . import io

        return getattr(io, name)
    if name in ("Square", "Hole", "SquareResult", "HoleResult"):
        from . import results

        return getattr(results, name)
    raise AttributeError(name)
