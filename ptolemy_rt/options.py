"""Options of the two pipelines and of the output: frozen dataclasses, validated on creation.

Every option is declared once, as a field of one of four classes:

- `LowmagOptions`: how `lowmag.find_squares` scores squares (batchnorm, crop_grid, norm);
- `MedmagOptions`: how `medmag.find_holes` finds and scores holes (batchnorm, lattice);
- `InputOptions`: how the command line reads what the microscope wrote (SerialEM montage
  .mdoc, montage binning; `sources.load_image`);
- `OutputOptions`: what the command line writes (format, pixel size, navigator output).

A field's `metadata` may hold a `CliSpec` (made by `cli_option`): the command line then
offers the field as an option of the matching command (``ptolemy lowmag`` / ``medmag``), with
that help text, and builds the object from argv with `from_cli`. The API builds the same
object from keywords (`LowmagOptions(crop_grid="square")`, or ``find_squares(image,
crop_grid="square")``). A bad value raises `OptionError` in both cases: a `ValueError` for
API callers, a usage error (exit 2) on the command line, where the message names the flag.
`batch.Job` carries the objects, so a new option reaches worker processes and the test
double without further plumbing.

This module imports only the standard library (``ptolemy --help`` builds its options from
it and must start fast).

Adding an option (touches three places):
1. a field here, with its default (the published behaviour), its check in `__post_init__`
   (raise `OptionError`) and, for the command line, ``metadata=cli_option(...)``;
2. the code that uses it (the pipeline reads ``options.<field>``; `output` reads
   `OutputOptions`);
3. a test (the API value and the command-line flag, and a bad value → exit 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

from .errors import EXIT_USAGE, PtolemyError
from .modelspec import LATTICE_MODES

#: BatchNorm regimes of the classifiers: "published" (the statistics of the image's batch of
#: crops, as the published tool) or "running" (the stored running statistics, each crop alone).
BATCHNORMS = ("published", "running")
#: Low-mag crop sampling lattices (see `lowmag`): "image" (published) or "square".
CROP_GRIDS = ("image", "square")
#: Medium-mag lattice searches (see `lattice.find_lattice`): "square" (published) or
#: "oblique" (also oblique lattices). The command line adds "auto" (= None: the model set's).
LATTICE_SEARCHES = LATTICE_MODES  # the model-set declaration's values (modelspec), one definition
#: Medium-mag scale stage (see `scale`): "auto" (measure the image's hole lattice and resample
#: it to the model set's pitch when it is off by more than the set's tolerance) or "off" (the
#: published pipeline: the image as it is).
SCALE_MODES = ("auto", "off")
#: Compatibility mode of both pipelines: "robust" (the default: the pipeline that works on any
#: facility's images, docs/ALGORITHM.md) or "published" (the published tool's algorithms
#: exactly, its quirks included: no scale stage, the Poisson mixture on raw counts, the
#: published lattice cost's box rule; docs/ALGORITHM.md#compat-published).
COMPAT_MODES = ("robust", "published")
_COMPAT_HELP = ("robust: the pipeline for any facility's images (default); published: the published "
                "Ptolemy tool's algorithms exactly, its quirks included (no scale stage).")
#: Output formats of the command line (see `output`).
FORMATS = ("json", "json-full", "csv", "txt", "nav")


class UsageProblem(PtolemyError, ValueError):
    """Options that cannot work: a usage error on the command line (exit 2), a `ValueError`
    for API callers. The message is one line naming the option and the problem."""

    exit_code = EXIT_USAGE


class OptionError(UsageProblem):
    """A bad value of one option: `name` is the option's field name, `value` the rejected
    value, `problem` what is wrong with it; the message is ``"<name> <value!r>: <problem>"``
    (the command line names the flag instead, `from_cli`)."""

    def __init__(self, name: str, value: Any, problem: str):
        self.name, self.value, self.problem = name, value, problem
        super().__init__(f"{name} {value!r}: {problem}")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise OptionError(name, value, "must be one of " + ", ".join(repr(a) for a in allowed))


# ------------------------------------------------------------------------ command-line declarations

@dataclass(frozen=True)
class CliSpec:
    """How a field is offered on the command line.

    decls: flag names ("--crop-grid"; "--nav-flip/--nav-no-flip" for a boolean pair).
    help: the help text. metavar: shown for the value. choices: allowed strings (case
    insensitive; the command line's default is the field's default, or `cli_default`).
    parse: str → field value, for fields given as text (raises OptionError).
    cli_default: the command line's default when it differs from the field's (e.g. "auto").
    extra: further typer.Option keywords (min=0, ...).
    """

    decls: tuple[str, ...]
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    parse: Callable[[Any], Any] | None = None
    cli_default: Any = None
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def flag(self) -> str:
        """The long flag ("--crop-grid"), for messages."""
        return self.decls[0].split("/")[0]


def cli_option(*decls: str, help: str, metavar: str | None = None, choices: tuple[str, ...] | None = None,
               parse: Callable[[Any], Any] | None = None, cli_default: Any = None, **extra: Any) -> dict:
    """Field metadata declaring a command-line option (see `CliSpec`); use as
    ``field(default=..., metadata=cli_option("--flag", help=...))``.

    Parameters
    ----------
    *decls : str
        Flag names.
    help, metavar, choices, parse, cli_default
        See `CliSpec`.
    **extra
        Further typer.Option keywords (kept sorted by name).

    Returns
    -------
    dict
        ``{"cli": CliSpec(...)}``.

    Examples
    --------
    >>> spec = cli_option("--nav-acquire", help="mark the best N", metavar="N", min=0)["cli"]
    >>> spec.flag, spec.metavar, spec.extra
    ('--nav-acquire', 'N', (('min', 0),))
    """
    return {"cli": CliSpec(tuple(decls), help, metavar, choices, parse, cli_default, tuple(sorted(extra.items())))}


def cli_fields(cls) -> list[tuple[Any, CliSpec]]:
    """(dataclass field, CliSpec) of each command-line option of an options class, in
    declaration order.

    Parameters
    ----------
    cls : type
        `LowmagOptions`, `MedmagOptions` or `OutputOptions`.

    Returns
    -------
    list of (dataclasses.Field, CliSpec)

    Examples
    --------
    >>> [(f.name, spec.flag) for f, spec in cli_fields(LowmagOptions)]
    [('batchnorm', '--batchnorm'), ('crop_grid', '--crop-grid'), ('norm', '--norm'), ('compat', '--compat')]
    """
    return [(f, f.metadata["cli"]) for f in fields(cls) if "cli" in f.metadata]


def from_cli(cls, values: dict[str, Any], **fixed: Any):
    """An options object of class `cls` from command-line values {field name: value as typer
    gives it (Enum members, text, numbers)}; the command-line fields of `cls` are taken from
    `values` (others there are ignored), `fixed` gives further fields as they are.

    Parameters
    ----------
    cls : type
        An options class.
    values : dict
        Command-line values by field name.
    **fixed
        Further fields, used as given.

    Returns
    -------
    object
        An instance of `cls`.

    Raises
    ------
    UsageProblem
        A bad value; the message names the flag.

    Examples
    --------
    >>> from_cli(MedmagOptions, {"lattice": "auto", "batchnorm": "running"})
    MedmagOptions(batchnorm='running', lattice=None, scale=None, hole_pitch_um=None, compat='robust')
    >>> from_cli(LowmagOptions, {"norm": "1,0"})
    Traceback (most recent call last):
    ...
    ptolemy_rt.options.UsageProblem: --norm '1,0': std must be > 0
    """
    kw = dict(fixed)
    specs = dict((f.name, s) for f, s in cli_fields(cls))
    for name, spec in specs.items():
        if name not in values:
            continue
        raw = values[name]
        raw = getattr(raw, "value", raw)  # typer Enum member → its string
        try:
            kw[name] = spec.parse(raw) if spec.parse is not None and raw is not None else raw
        except OptionError as e:
            raise _cli_error(spec, raw, e) from None
    try:
        return cls(**kw)
    except OptionError as e:  # a field's check: name the flag
        spec = specs.get(e.name)
        if spec is None:
            raise
        raise _cli_error(spec, values.get(e.name), e) from None


def _cli_error(spec: CliSpec, raw: Any, e: OptionError) -> UsageProblem:
    """The command line's form of a bad value: ``<flag> <value as typed>: <problem>``."""
    raw = getattr(raw, "value", raw)
    shown = repr(raw) if isinstance(raw, str) else f"{raw:g}" if isinstance(raw, float) else str(raw)
    return UsageProblem(f"{spec.flag} {shown}: {e.problem}")


# ---------------------------------------------------------------------------------- value checks

def check_norm(norm) -> tuple[float, float]:
    """Crop normalisation constants (mean, std), input pixel units: two finite numbers, std > 0.

    Parameters
    ----------
    norm : pair of numbers
        (mean, std), input pixel units.

    Returns
    -------
    (float, float)

    Raises
    ------
    OptionError
        (a ValueError) not two numbers, not finite, or std ≤ 0.

    Examples
    --------
    >>> check_norm((160, 27.5))
    (160.0, 27.5)
    """
    try:
        mean, std = (float(v) for v in norm)
    except (TypeError, ValueError):
        raise OptionError("norm", norm, "must be two numbers (mean, std)") from None
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise OptionError("norm", norm, "mean and std must be finite")
    if not std > 0:
        raise OptionError("norm", norm, "std must be > 0")
    return mean, std


def parse_norm(text: str) -> tuple[float, float]:
    """--norm "MEAN,STD" → (mean, std) floats (checked by `check_norm` when the options are built).

    Parameters
    ----------
    text : str
        "MEAN,STD", input pixel units.

    Returns
    -------
    (float, float)

    Raises
    ------
    OptionError
        The text is not two comma-separated numbers.

    Examples
    --------
    >>> parse_norm("160.8, 27.6")
    (160.8, 27.6)
    """
    parts = str(text).split(",")
    if len(parts) != 2:
        raise OptionError("norm", text, "expected MEAN,STD (two numbers, e.g. 160.8,27.6)")
    try:
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise OptionError("norm", text, "MEAN and STD must be numbers") from None


def parse_nav_map(spec) -> tuple[str, str]:
    """``NAVFILE:LABEL`` → (navigator file, map item label), split at the *last* colon
    (Windows drive letters keep theirs); the label holds no path separator. A (file, label)
    pair is checked the same way.

    Parameters
    ----------
    spec : str or (str, str)
        "NAVFILE:LABEL" or (file, label).

    Returns
    -------
    (str, str)
        (navigator file, label stripped of blanks).

    Raises
    ------
    OptionError
        (exit 2) no colon, an empty part, or a label holding a path separator.

    Examples
    --------
    >>> parse_nav_map(r"C:\\data\\grid1.nav:12-A")
    ('C:\\\\data\\\\grid1.nav', '12-A')
    """
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        path, label = (str(v) for v in spec)
        sep = ":"
    else:
        path, sep, label = str(spec).rpartition(":")
    if not sep or not path or not label.strip() or "\\" in label or "/" in label:
        raise OptionError("nav_map", spec, "expected NAVFILE:LABEL (the map item's label), e.g. session.nav:12")
    return path, label.strip()


# ------------------------------------------------------------------------------------- classes

_BATCHNORM_HELP = ("published: BatchNorm statistics of each image's batch of crops, as the published tool; "
                   "running: stored running statistics, each crop alone.")


@dataclass(frozen=True)
class LowmagOptions:
    """Options of `lowmag.find_squares`.

    batchnorm: "published" | "running" (`BATCHNORMS`).
    crop_grid: "image" (published) | "square" (`CROP_GRIDS`; see `lowmag`).
    norm: None (crops normalised by the image's square-mask pixels) or (mean, std) in input
    pixel units (finite, std > 0), e.g. a full atlas's `SquareResult.norm`.
    compat: "robust" (default) | "published" (`COMPAT_MODES`).

    >>> LowmagOptions(norm=(1, 2)).norm
    (1.0, 2.0)
    >>> LowmagOptions(crop_grid="diagonal")
    Traceback (most recent call last):
    ...
    ptolemy_rt.options.OptionError: crop_grid 'diagonal': must be one of 'image', 'square'
    """

    batchnorm: str = field(default="published", metadata=cli_option(
        "--batchnorm", choices=BATCHNORMS, help=_BATCHNORM_HELP))
    crop_grid: str = field(default="image", metadata=cli_option(
        "--crop-grid", choices=CROP_GRIDS,
        help="image: crops cut from the whole rotated image, as the published tool (same scores); "
             "square: each crop sampled on a grid anchored at its own box (crops independent of "
             "image size and cut position: montages, cut or padded atlases)."))
    norm: tuple[float, float] | None = field(default=None, metadata=cli_option(
        "--norm", metavar="MEAN,STD", parse=parse_norm,
        help="Normalise crops with these constants (input units) instead of the image's square pixels; "
             "use the full atlas's values (reported in -f json-full) to score tiles or cut-outs of one "
             "atlas identically."))
    compat: str = field(default="robust", metadata=cli_option("--compat", choices=COMPAT_MODES, help=_COMPAT_HELP))

    def __post_init__(self):
        _choice("batchnorm", self.batchnorm, BATCHNORMS)
        _choice("crop_grid", self.crop_grid, CROP_GRIDS)
        _choice("compat", self.compat, COMPAT_MODES)
        if self.norm is not None:
            object.__setattr__(self, "norm", check_norm(self.norm))


@dataclass(frozen=True)
class MedmagOptions:
    """Options of `medmag.find_holes`.

    batchnorm: "published" | "running" (`BATCHNORMS`).
    lattice: "square" (published) | "oblique" (also oblique lattices: grids imaged at a stage
    tilt) | None (`medmag.lattice_mode`: oblique when robust; with compat "published" what
    the model set declares).
    scale: "auto" | "off" (`SCALE_MODES`) | None (the compat mode's: "auto" when robust, "off"
    when published; `scale_mode` is the value in force). hole_pitch_um: the grid's hole pitch
    (µm, centre to centre, e.g. 2.5 for R1.2/1.3) or None; with a known pixel size it sets the
    scale, and the measured lattice only cross-checks it.
    compat: "robust" (default) | "published" (`COMPAT_MODES`): the published tool has no scale
    stage, so "published" refuses ``scale="auto"`` and ``hole_pitch_um``.

    >>> MedmagOptions(lattice="oblique").lattice
    'oblique'
    >>> MedmagOptions().scale_mode, MedmagOptions(compat="published").scale_mode
    ('auto', 'off')
    >>> MedmagOptions(compat="published", scale="auto")
    Traceback (most recent call last):
    ...
    ptolemy_rt.options.OptionError: scale 'auto': the published pipeline has no scale stage (leave it out or use 'off')
    """

    batchnorm: str = field(default="published", metadata=cli_option(
        "--batchnorm", choices=BATCHNORMS, help=_BATCHNORM_HELP))
    lattice: str | None = field(default=None, metadata=cli_option(
        "--lattice", choices=("auto",) + LATTICE_SEARCHES, cli_default="auto",
        parse=lambda v: None if v == "auto" else v,
        help="square: the published square-lattice search; oblique: also oblique lattices "
             "(grids imaged at a stage tilt up to ~45°); auto: oblique, and with --compat published "
             "what the model set declares (published set: square; own set: oblique)."))
    scale: str | None = field(default=None, metadata=cli_option(
        "--scale", choices=SCALE_MODES,
        help="auto: measure the hole lattice and resample the image to the model set's scale when "
             "it differs (any magnification; the default); off: the image as it is (the published "
             "pipeline; the default with --compat published)."))
    hole_pitch_um: float | None = field(default=None, metadata=cli_option(
        "--hole-pitch-um", metavar="UM",
        help="The grid's hole pitch in µm (e.g. 2.5 for R1.2/1.3): with the pixel size (header or "
             "--pixel-size) it sets the scale; the measured lattice cross-checks it."))
    compat: str = field(default="robust", metadata=cli_option("--compat", choices=COMPAT_MODES, help=_COMPAT_HELP))

    def __post_init__(self):
        _choice("batchnorm", self.batchnorm, BATCHNORMS)
        if self.lattice is not None:
            _choice("lattice", self.lattice, LATTICE_SEARCHES)
        _choice("compat", self.compat, COMPAT_MODES)
        if self.scale is not None:
            _choice("scale", self.scale, SCALE_MODES)
        if self.compat == "published" and self.scale == "auto":
            raise OptionError("scale", self.scale, "the published pipeline has no scale stage (leave it out or use 'off')")
        if self.compat == "published" and self.hole_pitch_um is not None:
            raise OptionError("hole_pitch_um", self.hole_pitch_um,
                              "the published pipeline has no scale stage (leave it out, or use --compat robust)")
        if self.hole_pitch_um is not None:
            try:
                um = float(self.hole_pitch_um)
            except (TypeError, ValueError):
                raise OptionError("hole_pitch_um", self.hole_pitch_um, "must be a number of µm") from None
            if not (math.isfinite(um) and 0.1 <= um <= 100.0):
                raise OptionError("hole_pitch_um", self.hole_pitch_um, "must be a hole pitch of 0.1-100 µm")
            object.__setattr__(self, "hole_pitch_um", um)

    @property
    def scale_mode(self) -> str:
        """The scale stage in force: `scale`, or when None the compat mode's ("auto" when
        robust, "off" when published)."""
        if self.scale is not None:
            return self.scale
        return "off" if self.compat == "published" else "auto"


@dataclass(frozen=True)
class OutputOptions:
    """What the command line writes for each input (see `output` and `navigator`).

    fmt: one of `FORMATS` ("nav" needs nav_map). pixel_size_nm: given pixel size (nm, > 0)
    or None (the MRC header's, when plausible). nav_map: (navigator file, map item label)
    for fmt "nav" (text "NAVFILE:LABEL" is parsed, `parse_nav_map`). nav_flip: True: the image
    is stored bottom-up as SerialEM writes it; False: top-down; None (default): from the source
    (`sources.stored_bottom_up`). nav_acquire: mark the best N targets for
    acquisition (≥ 0).

    >>> OutputOptions(fmt="nav", nav_map="grid.nav:7").nav_map
    ('grid.nav', '7')
    """

    fmt: str = "json"
    pixel_size_nm: float | None = field(default=None, metadata=cli_option(
        "--pixel-size", metavar="NM",
        help="Pixel size in nm (default: the MRC header's, when plausible); adds µm columns to csv/txt."))
    nav_map: tuple[str, str] | None = field(default=None, metadata=cli_option(
        "--nav-map", metavar="NAVFILE:LABEL", parse=parse_nav_map,
        help="-f nav: the SerialEM Navigator (autodoc .nav) and the label of the map item the image is."))
    nav_flip: bool | None = field(default=None, metadata=cli_option(
        "--nav-flip/--nav-no-flip",
        help="-f nav: the image is stored bottom-up as SerialEM writes it (--nav-flip) or top-down "
             "(--nav-no-flip). Default: from the source: top-down for EPU images and atlases, a "
             "montage as its stack's header says, bottom-up otherwise."))
    nav_acquire: int = field(default=0, metadata=cli_option(
        "--nav-acquire", metavar="N", min=0, help="-f nav: mark the best N targets for acquisition."))

    def __post_init__(self):
        _choice("fmt", self.fmt, FORMATS)
        if self.pixel_size_nm is not None:
            try:
                px = float(self.pixel_size_nm)
            except (TypeError, ValueError, OverflowError):
                raise OptionError("pixel_size_nm", self.pixel_size_nm, "must be a positive number of nm") from None
            if not (math.isfinite(px) and px > 0):
                raise OptionError("pixel_size_nm", self.pixel_size_nm, "must be a positive number of nm")
            object.__setattr__(self, "pixel_size_nm", px)
        if self.nav_map is not None:
            object.__setattr__(self, "nav_map", parse_nav_map(self.nav_map))
        if self.nav_flip is not None and not isinstance(self.nav_flip, bool):
            raise OptionError("nav_flip", self.nav_flip, "must be True, False or None (from the source)")
        if not (isinstance(self.nav_acquire, int) and self.nav_acquire >= 0):
            raise OptionError("nav_acquire", self.nav_acquire, "must be a whole number ≥ 0")
        if self.fmt == "nav" and self.nav_map is None:
            raise UsageProblem("-f nav needs --nav-map NAVFILE:LABEL (the map item the image shows)")
        if self.fmt != "nav" and self.nav_map is not None:
            raise UsageProblem(f"--nav-map goes with -f nav, not -f {self.fmt}")


def parse_montage_bin(value) -> int | None:
    """--montage-bin "auto" | N → None (auto) or the integer N ≥ 1.

    Parameters
    ----------
    value : str, int or None
        "auto" (or None) or a whole number ≥ 1.

    Returns
    -------
    int or None

    Raises
    ------
    OptionError
        Not "auto" nor a whole number ≥ 1.

    Examples
    --------
    >>> parse_montage_bin("auto"), parse_montage_bin("4")
    (None, 4)
    """
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        b = int(str(value).strip())
    except ValueError:
        raise OptionError("montage_bin", value, "must be 'auto' or a whole number >= 1") from None
    if b < 1:
        raise OptionError("montage_bin", value, "must be 'auto' or a whole number >= 1")
    return b


@dataclass(frozen=True)
class InputOptions:
    """How the command line reads an input (see `sources.load_image`).

    mdoc: the SerialEM ``.mdoc`` of a montage stack (None: ``IMAGE.mdoc`` beside the image
    when there is one). montage_bin: binning of an assembled montage (or an EPU atlas
    assembled from its tiles), an int ≥ 1, or None ("auto": `sources.auto_bin`).

    >>> InputOptions(mdoc="map.mrc.mdoc", montage_bin=2).montage_bin
    2
    >>> InputOptions(montage_bin=0)
    Traceback (most recent call last):
    ...
    ptolemy_rt.options.OptionError: montage_bin 0: must be 'auto' or a whole number >= 1
    """

    mdoc: str | None = field(default=None, metadata=cli_option(
        "--mdoc", metavar="PATH",
        help="The SerialEM .mdoc of a montage (default: IMAGE.mdoc beside the image, when present); "
             "the pieces are assembled into one atlas and targets get stage coordinates (µm)."))
    montage_bin: int | None = field(default=None, metadata=cli_option(
        "--montage-bin", metavar="auto|N", parse=parse_montage_bin, cli_default="auto",
        help="Binning of an assembled montage or EPU tile atlas (auto: lowmag to about 1 µm/px, "
             "and at most 4096×4096 px)."))

    def __post_init__(self):
        if self.mdoc is not None:
            object.__setattr__(self, "mdoc", str(self.mdoc))
        if self.montage_bin is not None:
            if isinstance(self.montage_bin, bool) or not isinstance(self.montage_bin, int) or self.montage_bin < 1:
                raise OptionError("montage_bin", self.montage_bin, "must be 'auto' or a whole number >= 1")


#: The pipeline options class of each command / `batch.Job.kind`.
PIPELINE_OPTIONS = {"lowmag": LowmagOptions, "medmag": MedmagOptions}


def pipeline_options(kind: str, options=None, **keywords):
    """The options object of pipeline `kind` ("lowmag" | "medmag"): `options` (None: the
    defaults) with `keywords` replaced.

    Parameters
    ----------
    kind : str
        "lowmag" or "medmag" (`PIPELINE_OPTIONS`).
    options : LowmagOptions, MedmagOptions or None
    **keywords
        Fields to replace.

    Returns
    -------
    LowmagOptions or MedmagOptions

    Raises
    ------
    TypeError
        `options` of the other kind, or a keyword the kind has no option of.
    OptionError
        A bad value.

    Examples
    --------
    >>> pipeline_options("medmag", MedmagOptions(batchnorm="running"), lattice="square")
    MedmagOptions(batchnorm='running', lattice='square', scale=None, hole_pitch_um=None, compat='robust')
    """
    cls = PIPELINE_OPTIONS[kind]
    if options is None:
        return cls(**keywords)
    if not isinstance(options, cls):
        raise TypeError(f"{kind} options must be a {cls.__name__}, not {type(options).__name__}")
    return replace(options, **keywords) if keywords else options
