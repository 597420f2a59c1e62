"""The ``ptolemy`` command line.

    ptolemy lowmag IMAGE... [-f json|json-full|csv|txt] [-o OUT] [--models NAME]
                   [--batchnorm published|running] [--crop-grid image|square] [--norm MEAN,STD]
                   [--section N] [-j N] [--plot OUT.png] [--pixel-size NM] [--force]
    ptolemy medmag IMAGE... (the same options but --crop-grid, --norm)
    ptolemy plot RESULT.json IMAGE OUT.png [--section N]
    ptolemy demo OUTDIR [--seed N] [--models NAME]
    ptolemy --version

Conventions: with JSON on stdout, stdout holds nothing but the JSON (logs, progress and
warnings go to stderr; so does anything a library prints while the pipeline runs). Errors are
one line ``ptolemy: error: <message>`` on stderr with the exit codes of `errors.py`; a usage
error exits 2; a traceback only with PTOLEMY_DEBUG=1. Output files are written atomically,
never partially, and never over the input image. numpy / onnxruntime / numba are imported
inside the commands, so ``ptolemy --help`` starts fast.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, PtolemyError

PROG = "ptolemy"


def _click():
    """The click package typer uses (vendored as typer._click in recent typer versions)."""
    try:
        from typer import _click as c  # typer >= 0.2x vendors click

        return c
    except ImportError:  # pragma: no cover - older typer
        import click as c

        return c


class Format(str, Enum):
    json = "json"
    json_full = "json-full"
    csv = "csv"
    txt = "txt"
    nav = "nav"


class BatchNorm(str, Enum):
    published = "published"
    running = "running"


class CropGrid(str, Enum):
    image = "image"
    square = "square"


class LatticeSearch(str, Enum):
    auto = "auto"
    square = "square"
    oblique = "oblique"


app = typer.Typer(
    name=PROG,
    help="Ptolemy cryo-EM targeting: rank grid squares (lowmag) and holes (medmag) in MRC images.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"ptolemy-rt {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Ptolemy cryo-EM targeting (torch-free runtime)."""


# ------------------------------------------------------------------ helpers


def _err(msg: str) -> None:
    sys.stderr.write(f"{PROG}: error: {' '.join(str(msg).split())}\n")
    sys.stderr.flush()


def _say(kind: str, msg: str) -> None:
    sys.stderr.write(f"{PROG}: {kind}: {' '.join(str(msg).split())}\n")
    sys.stderr.flush()


@contextlib.contextmanager
def _stdout_to_stderr():
    """While the pipeline runs, send whatever is written to stdout to stderr, so that stdout
    holds only the result: Python-level writes (sys.stdout) and C-level writes (fd 1)."""
    old = sys.stdout
    with contextlib.suppress(Exception):
        old.flush()
    saved = None
    try:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
    except (AttributeError, OSError, ValueError):
        saved = None
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = old
        if saved is not None:
            with contextlib.suppress(OSError):
                sys.stderr.flush()
            os.dup2(saved, 1)
            os.close(saved)


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# Shared options of lowmag / medmag
_IMAGES = typer.Argument(..., metavar="IMAGE", help="MRC file(s), or folder(s) of *.mrc files.", show_default=False)
_FORMAT = typer.Option(None, "-f", "--format", case_sensitive=False,
                       help="Output format: json (the published schema), json-full (with metadata), csv, txt, "
                            "nav (SerialEM Navigator points; needs --nav-map and -o). "
                            "Default: from the -o file's extension, else json.")
_OUT = typer.Option(None, "-o", "--output", metavar="OUT",
                    help="Result file (one input; '-' = stdout, the default) or folder (several inputs: required).")
_MODELS = typer.Option(None, "--models", metavar="NAME", help="Model set in onnx_models/ (default: the default set).")
_BN = typer.Option(BatchNorm.published, "--batchnorm", case_sensitive=False,
                   help="published: BatchNorm statistics of each image's batch of crops, as the published tool; "
                        "running: stored running statistics, each crop alone.")
_CROP_GRID = typer.Option(CropGrid.image, "--crop-grid", case_sensitive=False,
                          help="image: crops cut from the whole rotated image, as the published tool (same scores); "
                               "square: each crop sampled on a grid anchored at its own box (crops independent of "
                               "image size and cut position: montages, cut or padded atlases).")
_LATTICE = typer.Option(LatticeSearch.auto, "--lattice", case_sensitive=False,
                        help="square: the published square-lattice search; oblique: also oblique lattices "
                             "(grids imaged at a stage tilt up to ~45°); auto: what the model set declares "
                             "(published set: square; own set: oblique).")
_NORM = typer.Option(None, "--norm", metavar="MEAN,STD",
                     help="Normalise crops with these constants (input units) instead of the image's square pixels; "
                          "use the full atlas's values (reported in -f json-full) to score tiles or cut-outs of one "
                          "atlas identically.")
_SECTION = typer.Option(None, "--section", min=0, metavar="N", help="Section (0-based) of an MRC stack.")
_JOBS = typer.Option(1, "-j", "--jobs", min=1, metavar="N", help="Worker processes for several inputs.")
_PLOT = typer.Option(None, "--plot", metavar="OUT.png",
                     help="Also write an overlay picture (several inputs: a folder for NAME.png files). Needs Pillow.")
_PIXEL = typer.Option(None, "--pixel-size", metavar="NM",
                      help="Pixel size in nm (default: the MRC header's, when plausible); adds µm columns to csv/txt.")
_FORCE = typer.Option(False, "--force", help="Several inputs: redo inputs whose result is newer than the input.")
_NAV_MAP = typer.Option(None, "--nav-map", metavar="NAVFILE:LABEL",
                        help="-f nav: the SerialEM Navigator (autodoc .nav) and the label of the map item the image is.")
_NAV_FLIP = typer.Option(True, "--nav-flip/--nav-no-flip",
                         help="-f nav: the MRC is stored bottom-up as SerialEM writes it (default); "
                              "--nav-no-flip for images stored top-down.")
_NAV_ACQUIRE = typer.Option(0, "--nav-acquire", min=0, metavar="N",
                            help="-f nav: mark the best N targets for acquisition.")


def _parse_norm(spec: str | None) -> tuple[float, float] | None:
    """--norm "MEAN,STD" → (mean, std), input pixel units (finite, std > 0); None when not given."""
    from .batch import UsageProblem

    if spec is None:
        return None
    parts = str(spec).split(",")
    if len(parts) != 2:
        raise UsageProblem(f"--norm {spec!r}: expected MEAN,STD (two numbers, e.g. 160.8,27.6)")
    try:
        mean, std = (float(p) for p in parts)
    except ValueError:
        raise UsageProblem(f"--norm {spec!r}: MEAN and STD must be numbers") from None
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise UsageProblem(f"--norm {spec!r}: MEAN and STD must be finite")
    if not std > 0:
        raise UsageProblem(f"--norm {spec!r}: STD must be > 0")
    return mean, std


def _analyse_command(kind, images, fmt, out, models, batchnorm, section, jobs, plot, pixel_size, force,
                     nav_map=None, nav_flip=True, nav_acquire=0, crop_grid="image", norm=None,
                     lattice="auto") -> int:
    from . import batch
    from .output import check_output_path, format_from_suffix

    norm = _parse_norm(norm)
    if pixel_size is not None and not pixel_size > 0:
        raise batch.UsageProblem(f"--pixel-size must be a positive number of nm, not {pixel_size:g}")
    if plot is not None:
        from .plot import require_pillow

        require_pillow()
    fmt_s = fmt.value if fmt is not None else format_from_suffix(None if out in (None, "-") else out)
    if fmt is None and nav_map is not None:
        fmt_s = "nav"
    if fmt_s == "nav" and nav_map is None:
        raise batch.UsageProblem("-f nav needs --nav-map NAVFILE:LABEL (the map item the image shows)")
    if fmt_s != "nav" and nav_map is not None:
        raise batch.UsageProblem(f"--nav-map goes with -f nav, not -f {fmt_s}")
    bn = batchnorm.value if isinstance(batchnorm, Enum) else str(batchnorm)
    grid = crop_grid.value if isinstance(crop_grid, Enum) else str(crop_grid)
    lat = lattice.value if isinstance(lattice, Enum) else str(lattice)
    lat = None if lat == "auto" else lat
    inputs, any_folder = batch.expand_inputs([str(p) for p in images])
    out_is_dir = out not in (None, "-") and (Path(out).is_dir() or str(out).endswith(("/", os.sep)))
    many = len(inputs) > 1 or any_folder or out_is_dir

    if many:
        if fmt_s == "nav":
            raise batch.UsageProblem("-f nav takes one image (the image of the --nav-map item)")
        if out in (None, "-"):
            raise batch.UsageProblem(f"{len(inputs)} inputs need an output folder: -o DIR")
        with _stdout_to_stderr():
            _check_models(models)
            return batch.run_batch(kind, inputs, str(out), fmt=fmt_s, plot_dir=plot, models=models,
                                   batchnorm=bn, section=section, pixel_size_nm=pixel_size, jobs=jobs,
                                   force=force, crop_grid=grid, norm=norm, lattice=lat)

    src = inputs[0]
    to_file = out not in (None, "-")
    if fmt_s == "nav":
        if not to_file:
            raise batch.UsageProblem("-f nav writes a file: give -o TARGETS.nav")
        check_output_path(out, protect=[src, batch.split_nav_map(nav_map)[0]])
        batch.check_nav_map(nav_map)
    elif to_file:
        check_output_path(out, protect=[src])
    if plot is not None:
        check_output_path(plot, protect=[src])
        if to_file and os.path.realpath(plot) == os.path.realpath(out):
            raise batch.UsageProblem("--plot and -o name the same file")
    job = batch.Job(kind, src, fmt_s, str(out) if to_file else None, str(plot) if plot else None,
                    models, bn, section, pixel_size, nav_map, nav_flip, nav_acquire, grid, norm, lat)
    with _stdout_to_stderr():
        outcome = batch.analyse(job)
    for n in outcome.notes:
        _say("warning", n)
    if outcome.reason:
        _say("note", f"{src}: {outcome.reason}")
    if outcome.text is not None:
        _write_stdout(outcome.text)
    return EXIT_OK


def _check_models(models: str | None) -> None:
    """Fail fast (exit 4) when the model set is missing or corrupt, before a batch starts."""
    from .batch import model_set

    model_set(models)


@app.command(no_args_is_help=True)
def lowmag(
    images: List[Path] = _IMAGES,
    fmt: Optional[Format] = _FORMAT,
    out: Optional[str] = _OUT,
    models: Optional[str] = _MODELS,
    batchnorm: BatchNorm = _BN,
    crop_grid: CropGrid = _CROP_GRID,
    norm: Optional[str] = _NORM,
    section: Optional[int] = _SECTION,
    jobs: int = _JOBS,
    plot: Optional[str] = _PLOT,
    pixel_size: Optional[float] = _PIXEL,
    force: bool = _FORCE,
    nav_map: Optional[str] = _NAV_MAP,
    nav_flip: bool = _NAV_FLIP,
    nav_acquire: int = _NAV_ACQUIRE,
) -> int:
    """Find and rank grid squares in low-magnification atlases."""
    return _analyse_command("lowmag", images, fmt, out, models, batchnorm, section, jobs, plot, pixel_size, force,
                            nav_map, nav_flip, nav_acquire, crop_grid, norm)


@app.command(no_args_is_help=True)
def medmag(
    images: List[Path] = _IMAGES,
    fmt: Optional[Format] = _FORMAT,
    out: Optional[str] = _OUT,
    models: Optional[str] = _MODELS,
    batchnorm: BatchNorm = _BN,
    lattice: LatticeSearch = _LATTICE,
    section: Optional[int] = _SECTION,
    jobs: int = _JOBS,
    plot: Optional[str] = _PLOT,
    pixel_size: Optional[float] = _PIXEL,
    force: bool = _FORCE,
    nav_map: Optional[str] = _NAV_MAP,
    nav_flip: bool = _NAV_FLIP,
    nav_acquire: int = _NAV_ACQUIRE,
) -> int:
    """Find and rank holes in medium-magnification (grid square) images."""
    return _analyse_command("medmag", images, fmt, out, models, batchnorm, section, jobs, plot, pixel_size, force,
                            nav_map, nav_flip, nav_acquire, lattice=lattice)


@app.command("plot", no_args_is_help=True)
def plot_cmd(
    result: Path = typer.Argument(..., metavar="RESULT.json", help="Result file (-f json or json-full).", show_default=False),
    image: Path = typer.Argument(..., metavar="IMAGE", help="The MRC image the result belongs to.", show_default=False),
    out: Path = typer.Argument(..., metavar="OUT.png", help="Picture to write.", show_default=False),
    section: Optional[int] = _SECTION,
) -> int:
    """Draw a result over its image (boxes coloured by score, ranks of the best ten)."""
    from .output import check_output_path
    from .plot import read_items, require_pillow, write_overlay

    require_pillow()
    check_output_path(out, protect=[image, result])
    its = read_items(result)
    with _stdout_to_stderr():
        from .io import read_mrc

        img = read_mrc(image, section=section)
        rows, cols = img.pixels.shape
        outside = sum(1 for d in its if not (-cols <= d["center"][0] <= 2 * cols and -rows <= d["center"][1] <= 2 * rows))
        if outside:
            _say("warning", f"{result}: {outside} target(s) lie far outside {image} ({rows} x {cols} px); wrong image?")
        write_overlay(img.pixels, its, out, protect=[image, result])
    return EXIT_OK


@app.command(no_args_is_help=True)
def demo(
    outdir: Path = typer.Argument(..., metavar="OUTDIR", help="Folder for the demo files (created).", show_default=False),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic images."),
    models: Optional[str] = _MODELS,
) -> int:
    """Make a synthetic atlas and square image, run both pipelines, write JSON and overlays."""
    from . import batch
    from .output import write_atomic

    try:
        from . import synthetic
    except ImportError:
        raise PtolemyError("demo needs ptolemy_rt.synthetic, which this installation lacks") from None
    batch._prepare_dir(str(outdir), "demo folder")
    written: list[str] = []
    have_pillow = True
    try:
        from .plot import require_pillow

        require_pillow()
    except PtolemyError as e:
        have_pillow = False
        _say("warning", f"{e}; writing no overlays")
    with _stdout_to_stderr():
        _check_models(models)
        for kind, name, make, shape in (
            ("lowmag", "atlas", synthetic.atlas, (1024, 1024)),
            ("medmag", "square", synthetic.medmag_image, (1024, 1440)),
        ):
            image, truth = make(seed, shape=shape)
            mrc = outdir / f"{name}.mrc"
            write_atomic(mrc, _mrc_bytes(image))
            truth_path = outdir / f"{name}.truth.json"
            write_atomic(truth_path, _truth_json(truth))
            job = batch.Job(kind, str(mrc), "json", str(outdir / f"{name}.json"),
                            str(outdir / f"{name}.png") if have_pillow else None, models, "published")
            o = batch.analyse(job)
            noun = "squares" if kind == "lowmag" else "holes"
            best = f", best score {o.best_score:.3f}" if o.best_score is not None else ""
            _say("info", f"{kind}: {o.n_targets} {noun}{best} in {o.seconds:.1f} s" + (f" ({o.reason})" if o.reason else ""))
            written += [str(mrc), str(truth_path), job.out] + ([job.plot] if job.plot else [])
    _write_stdout("".join(p + "\n" for p in written))
    return EXIT_OK


@app.command("evaluate", no_args_is_help=True)
def evaluate_cmd(
    data: Path = typer.Argument(..., metavar="DATA", help="Labelled folder (dataset.json), or a folder holding "
                                "lowmag/ and medmag/ labelled folders.", show_default=False),
    models: Optional[str] = _MODELS,
    out: Optional[str] = typer.Option(None, "-o", "--output", help="Also write the metrics as JSON here."),
) -> int:
    """Paper metrics (SPEC §7) of a model set on labelled data: a table on stdout."""
    import json

    from .output import write_atomic

    with _stdout_to_stderr():
        from .evaluate import evaluate, format_table

        _check_models(models)
        result = evaluate(models, data, log=lambda m: _say("info", m))
    if out:
        write_atomic(Path(out), json.dumps(result, indent=1, default=float) + "\n")
    _write_stdout(format_table(result))
    return EXIT_OK


@app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="TCP port (Leginon's ptolemy.cfg default)."),
    state: Path = typer.Option(Path("ptolemy-state"), "--state", help="Folder of the durable state (SQLite)."),
    models: Optional[str] = _MODELS,
    learning: str = typer.Option("published", "--learning", help="Active-learning rule: published | fitted."),
) -> int:
    """Serve the Ptolemy HTTP API for Smart Leginon and Appion (needs the [server] extra)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small GP solves: threads only contend
    from .server import serve

    if learning not in ("published", "fitted"):
        raise typer.BadParameter(f"{learning!r} is not one of 'published', 'fitted'", param_hint="--learning")
    serve(host, port, str(state), models, learning, log=lambda m: _say("info", m))
    return EXIT_OK


def _truth_json(truth) -> str:
    """The synthetic image's ground truth (list of dataclasses) as JSON; points (x, y) px."""
    import dataclasses
    import json

    def conv(v):
        if dataclasses.is_dataclass(v):
            return {k: conv(x) for k, x in dataclasses.asdict(v).items()}
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if hasattr(v, "item"):  # numpy scalars
            return v.item()
        return v

    return json.dumps([conv(t) for t in truth], indent=1) + "\n"


def _mrc_bytes(image) -> bytes:
    """An MRC file (float32, mode 2) holding a 2-D image [row, col]."""
    import tempfile

    import mrcfile
    import numpy as np

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.mrc")
        with mrcfile.new(p) as m:
            m.set_data(np.ascontiguousarray(image, dtype=np.float32))
        with open(p, "rb") as f:
            return f.read()


# ---------------------------------------------------------------------- entry


def run(argv: list[str] | None = None) -> int:
    """Run the command line with `argv` (default sys.argv[1:]); returns the exit code. Every
    error becomes one line on stderr."""
    click = _click()
    cmd = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = cmd.main(args=args, prog_name=PROG, standalone_mode=False)
        code = int(rv) if isinstance(rv, int) else EXIT_OK
        if code == 130:  # Ctrl-C, turned into an exit code by the command-line library
            _err("interrupted")
        return code
    except click.exceptions.UsageError as e:
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            sys.stderr.write(ctx.get_help() + "\n")  # bare command: its help, as a usage error
            return EXIT_USAGE
        where = ctx.command_path if ctx is not None else PROG
        _err(f"{e.format_message()} (see '{where} --help')")
        return EXIT_USAGE
    except typer.Abort:
        _err("interrupted")
        return 130
    except click.exceptions.ClickException as e:
        _err(e.format_message())
        return e.exit_code
    except PtolemyError as e:
        if os.environ.get("PTOLEMY_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        _err(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return EXIT_INTERNAL
    except Exception as e:  # a bug: one line, traceback on request
        if os.environ.get("PTOLEMY_DEBUG") == "1":
            import traceback

            traceback.print_exc()
            _err(f"internal error: {type(e).__name__}: {e}")
        else:
            _err(f"internal error: {type(e).__name__}: {e} (rerun with PTOLEMY_DEBUG=1 for a traceback)")
        return EXIT_INTERNAL


def main() -> int:
    """Console-script entry point (`ptolemy`)."""
    return run()


if __name__ == "__main__":
    raise SystemExit(main())
