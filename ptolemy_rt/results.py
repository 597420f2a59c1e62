"""Typed results of the two pipelines.

Coordinate convention of every result: points are (x, y) = (col, row) in pixels of the
*input* image, origin at the top-left corner of the top-left pixel's index (pixel (r, c)
spans [r, r+1) × [c, c+1) for the polygon maths; centres are array indices). This is the
convention of the published tool's JSON (`vertices` as [x, y]).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Square:
    """One grid square found in a low-magnification atlas.

    vertices: 4 corners (x, y) = (col, row), px, of the square's box in the input frame.
    center: mean of the vertices truncated to int (as the published tool), (x, y) px.
    area: box area, px².
    brightness: mean raw pixel value over the square's mask pixels (input units).
    score: classifier probability in [0, 1]; higher = better target.
    """

    vertices: tuple[tuple[float, float], ...]
    center: tuple[int, int]
    area: float
    brightness: float
    score: float


@dataclass(frozen=True)
class Hole:
    """One hole found in a medium-magnification image.

    vertices: 4 corners (x, y) = (col, row), px, of the hole's crop box in the input frame.
    center: mean of the vertices truncated to int (as the published tool), (x, y) px.
    area: box area, px².
    score: classifier probability in [0, 1]; higher = better target.
    """

    vertices: tuple[tuple[float, float], ...]
    center: tuple[int, int]
    area: float
    score: float


@dataclass
class SquareResult:
    """Everything `find_squares` returns: squares sorted by score, best first."""

    squares: list[Square]
    image_shape: tuple[int, int]  # (rows, cols)
    grid_angle_deg: float | None = None
    batchnorm: str = "published"
    models: str = ""
    reason: str | None = None  # why the list is empty, when it is
    timings_s: dict[str, float] = field(default_factory=dict)
    crop_grid: str = "image"  # crop sampling: "image" (published) or "square" (lowmag.find_squares)
    #: (mean, std) in input pixel units by which every crop was normalised (None: no crops)
    norm: tuple[float, float] | None = None
    norm_source: str = "image"  # "image": the image's square-mask pixels (SPEC §4.7); "given": by the caller
    #: what the pipeline computed on the way (find_squares(..., intermediates=True)), else None
    intermediates: dict | None = field(default=None, repr=False, compare=False)


@dataclass
class HoleResult:
    """Everything `find_holes` returns: holes sorted by score, best first."""

    holes: list[Hole]
    image_shape: tuple[int, int]  # (rows, cols)
    lattice_angle_deg: float | None = None
    lattice_spacing_px: float | None = None
    batchnorm: str = "published"
    models: str = ""
    reason: str | None = None  # why the list is empty, when it is
    timings_s: dict[str, float] = field(default_factory=dict)
    lattice_search: str = "square"  # "square" (published) or "oblique" (also tilted grids)
    #: what the pipeline computed on the way (find_holes(..., intermediates=True)), else None
    intermediates: dict | None = field(default=None, repr=False, compare=False)
