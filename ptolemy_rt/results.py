"""Typed results of the two pipelines.

Coordinate convention of every result: points are (x, y) = (col, row) in pixels of the
*input* image, origin at the top-left corner of the top-left pixel's index (pixel (r, c)
spans [r, r+1) × [c, c+1) for the polygon maths; centres are array indices). This is the
convention of the published tool's JSON (`vertices` as [x, y]).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Metadatum:
    """One kind-specific metadata entry of a result, as the output formats show it.

    key: its key in the extended JSON (``-f json-full``); value: its JSON value (None, a
    number, a string or a dict of those); text: its words in the TXT summary, or None when
    TXT does not show it; own_line: TXT shows it on its own ``#`` line (else in the summary
    line after the target count, models and batchnorm).
    """

    key: str
    value: Any
    text: str | None = None
    own_line: bool = False


class PipelineResult:
    """What every pipeline result offers the output formats and the navigator writer.

    A subclass is a dataclass with the fields ``image_shape`` ((rows, cols) px),
    ``batchnorm``, ``models``, ``reason`` (why the target list is empty, or None) and
    ``timings_s`` (stage wall times, s), and sets the class attributes below. Nothing that
    formats a result needs to know which pipeline made it.

    kind: the command that makes it ("lowmag", "medmag"). target_noun / target_name: plural
    and singular word for its targets ("squares" / "square"). target_fields: the per-target
    values written between ``area`` and ``score`` (attribute names of the targets, floats).
    """

    kind: ClassVar[str]
    target_noun: ClassVar[str]
    target_name: ClassVar[str]
    target_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def targets(self) -> list:
        """The targets (`Square` or `Hole`), sorted by score, best first."""
        raise NotImplementedError

    def metadata(self) -> tuple[Metadatum, ...]:
        """The kind-specific metadata, in output order (see `Metadatum`)."""
        raise NotImplementedError

    def typical_size_px(self) -> tuple[float, str]:
        """(size in px, what it is) of the targets, for the pixel-size plausibility check.

        The default is the median box side, sqrt(median box area). Needs at least one target.
        """
        areas = sorted(float(t.area) for t in self.targets)
        return math.sqrt(max(areas[len(areas) // 2], 0.0)), f"{self.target_name} box side"


def _opt_float(v: float | None) -> float | None:
    return None if v is None else float(v)


def _compat_metadatum(compat: str) -> Metadatum:
    """The compatibility mode a result was made in (TXT names it only when "published")."""
    return Metadatum("compat", compat, "compat published" if compat == "published" else None)


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
class SquareResult(PipelineResult):
    """Everything `find_squares` returns: squares sorted by score, best first.

    Examples
    --------
    >>> r = SquareResult([Square(((0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)), (2, 2), 16.0, 9.5, 0.75)], (8, 8))
    >>> r.kind, r.targets[0].score, [m.key for m in r.metadata()]
    ('lowmag', 0.75, ['compat', 'crop_grid', 'normalisation', 'grid_angle_deg'])
    >>> r.typical_size_px()
    (4.0, 'square side')
    """

    kind: ClassVar[str] = "lowmag"
    target_noun: ClassVar[str] = "squares"
    target_name: ClassVar[str] = "square"
    target_fields: ClassVar[tuple[str, ...]] = ("brightness",)

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
    norm_source: str = "image"  # "image": the image's square-mask pixels (docs/ALGORITHM.md#lowmag-crops); "given": by the caller
    #: what the pipeline computed on the way (find_squares(..., intermediates=True)), else None
    intermediates: dict | None = field(default=None, repr=False, compare=False)
    #: compatibility mode that made it: "robust" or "published" (`options.COMPAT_MODES`)
    compat: str = "robust"
    #: robust mode's region account (docs/ALGORITHM.md#lowmag-screen): zero_level (input
    #: units), bright / dark candidate counts (the dark ones are the last items),
    #: dark_threshold (input units or None), dark_valley_ratio, rejected ([{region, bbox
    #: [x0, y0, x1, y1] px, area px², reason}]); None with ``compat="published"``
    regions: dict | None = None

    @property
    def targets(self) -> list[Square]:
        """The squares, sorted by score, best first."""
        return self.squares

    def metadata(self) -> tuple[Metadatum, ...]:
        """Compatibility mode, crop grid, crop normalisation constants (input pixel units,
        None without crops) and grid angle (deg, None when unknown); TXT shows the mode only
        when it is "published", the crop grid only when it is not "image" and the
        normalisation on its own line."""
        norm = None if self.norm is None else {"mean": float(self.norm[0]), "std": float(self.norm[1]),
                                               "source": self.norm_source}
        angle = _opt_float(self.grid_angle_deg)
        return (
            _compat_metadatum(self.compat),
            Metadatum("crop_grid", self.crop_grid, None if self.crop_grid == "image" else f"crop grid {self.crop_grid}"),
            Metadatum("normalisation", norm, None if norm is None else
                      f"normalisation mean {norm['mean']!r}, std {norm['std']!r} ({norm['source']})", own_line=True),
            Metadatum("grid_angle_deg", angle, None if angle is None else f"grid angle {angle:.2f} deg"),
        ) + (() if self.regions is None else (Metadatum("regions", self.regions, None),))

    def typical_size_px(self) -> tuple[float, str]:
        """The median square side, sqrt(median box area), px."""
        return super().typical_size_px()[0], "square side"


@dataclass
class HoleResult(PipelineResult):
    """Everything `find_holes` returns: holes sorted by score, best first.

    Examples
    --------
    >>> r = HoleResult([Hole(((0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)), (2, 2), 16.0, 0.5)], (8, 8))
    >>> r.kind, [m.key for m in r.metadata()], r.typical_size_px()
    ('medmag', ['compat', 'lattice_angle_deg', 'lattice_spacing_px', 'lattice_search', 'scale'], (4.0, 'hole box side'))
    >>> HoleResult([], (8, 8), lattice_spacing_px=6.0).typical_size_px()
    (6.0, 'hole spacing')
    """

    kind: ClassVar[str] = "medmag"
    target_noun: ClassVar[str] = "holes"
    target_name: ClassVar[str] = "hole"

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
    #: the scale stage's decision (`scale.ScaleDecision.as_dict`: factor, measured period px,
    #: source, note) or None when it did not run (``scale="off"``)
    scale: dict | None = None
    #: compatibility mode that made it: "robust" or "published" (`options.COMPAT_MODES`)
    compat: str = "robust"
    #: robust mode: the film check (`film.FilmCheck.as_dict`: lattice points, off_film counts,
    #: levels, the rule) and the hole/film polarity (`film.Polarity.as_dict`); None in
    #: ``compat="published"`` (not shown then)
    film: dict | None = None
    polarity: dict | None = None

    @property
    def targets(self) -> list[Hole]:
        """The holes, sorted by score, best first."""
        return self.holes

    def metadata(self) -> tuple[Metadatum, ...]:
        """Compatibility mode, lattice angle (deg) and spacing (px) of the fitted lattice
        (None without one), the lattice search mode and the scale decision; TXT shows the
        mode only when it is "published" and the search only when it is not "square"."""
        angle, spacing = _opt_float(self.lattice_angle_deg), _opt_float(self.lattice_spacing_px)
        return (
            _compat_metadatum(self.compat),
            Metadatum("lattice_angle_deg", angle, None if angle is None else f"lattice angle {angle:.2f} deg"),
            Metadatum("lattice_spacing_px", spacing, None if spacing is None else f"spacing {spacing:.1f} px"),
            Metadatum("lattice_search", self.lattice_search,
                      None if self.lattice_search == "square" else f"lattice search {self.lattice_search}"),
            Metadatum("scale", self.scale, None if not self.scale or self.scale.get("factor") == 1.0 else
                      f"scale: image resampled x{self.scale['factor']:.4g} to the model set's hole pitch "
                      f"({self.scale['note']})", own_line=True),
        ) + self._robust_metadata()

    def _robust_metadata(self) -> tuple[Metadatum, ...]:
        """"film" and "polarity" when the robust pipeline made them (absent otherwise, so the
        published mode's output is unchanged)."""
        out = []
        if self.film is not None:
            out.append(Metadatum("film", self.film, None if not self.film.get("off_film") else
                                 f"film: {self.film['off_film']} of {self.film['lattice_points']} lattice points off "
                                 "the holey film, not reported", own_line=True))
        if self.polarity is not None:
            out.append(Metadatum("polarity", self.polarity, None if self.polarity.get("sign", 1) > 0 else
                                 f"polarity: {self.polarity['note']}", own_line=True))
        return tuple(out)

    def typical_size_px(self) -> tuple[float, str]:
        """The lattice spacing ("hole spacing", px) when a lattice was fitted, else the
        median hole box side."""
        if self.lattice_spacing_px:
            return float(self.lattice_spacing_px), "hole spacing"
        return super().typical_size_px()
