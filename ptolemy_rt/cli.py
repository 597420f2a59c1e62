"""The ``ptolemy`` command line.

    ptolemy lowmag IMAGE... [-f json|json-full|csv|txt] [-o OUT] [--models NAME]
                   [--batchnorm published|running] [--crop-grid image|square] [--norm MEAN,STD]
                   [--section N] [-j N] [--plot OUT.png] [--pixel-size NM] [--force]
    ptolemy medmag IMAGE... (the same options but --crop-grid, --norm)
    ptolemy plot RESULT.json IMAGE OUT.png [--section N] [--mdoc PATH] [--montage-bin auto|N]
    ptolemy demo OUTDIR [--seed N] [--models NAME]
    ptolemy --version

Conventions: with JSON on stdout, stdout holds nothing but the JSON (logs, progress and
warnings go to stderr; so does anything a library prints while the pipeline runs). Errors are
one line ``ptolemy: error: <message>`` on stderr with the exit codes of `errors.py`; a usage
error exits 2; a traceback only with PTOLEMY_DEBUG=1. Output files are written atomically,
never partially, and never over the input image. numpy / onnxruntime / numba are imported
inside the commands, so ``ptolemy --help`` starts fast.

The options of lowmag / medmag that change the analysis or the output are declared once, as
fields of `options.LowmagOptions`, `MedmagOptions` and `OutputOptions` (with their help
text); `_pipeline_command` turns them into typer options and the command builds the
objects with `options.from_cli`. Only the run's own options (images, -f, -o, --models,
--section, -j, --plot, --force) are declared here.
"""
from __future__ import annotations

import os
import signal
import sys

PROG = "ptolemy"

# ------------------------------------------------------------------ signals
#
# Ctrl-C (SIGINT), SIGTERM and SIGHUP at any moment give one line ``ptolemy: error:
# interrupted`` (``terminated``, ``hung up``) and exit 128 + the signal (130 / 143 / 129),
# never a traceback. Three phases:
#   "start": the command line's own imports (typer, options, ...): nothing is written yet,
#            so `_on_signal` prints the line and leaves at once;
#   "run":   inside `run`: `interrupt.install` makes each signal raise `interrupt.Interrupted`
#            (a KeyboardInterrupt), which unwinds the command (atomic writes remove their
#            temporaries; a batch stops its workers and writes summary.csv) to `run`'s
#            handlers; an exception a library made of the interruption (numpy's "ImportError:
#            initialization failed" when Ctrl-C lands inside its import) counts as one;
#   "done":  the exit code is decided; a late signal is ignored.
# The start phase is armed only when this module is the program (``ptolemy`` or
# ``python -m ptolemy_rt.cli``), never when a test or a library imports it.

from . import interrupt  # noqa: E402 - stdlib only, like errors.py
from .errors import EXIT_INTERRUPTED  # noqa: E402 - errors.py imports nothing
_PHASE = "start"


def _on_signal(signum, frame) -> None:
    if _PHASE == "done":
        return
    if _PHASE == "start":
        word = {getattr(signal, "SIGTERM", None): "terminated", getattr(signal, "SIGHUP", None): "hung up"}.get(
            signum, "interrupted")
        try:
            os.write(2, f"{PROG}: error: {word}\n".encode())
        finally:
            os._exit(128 + int(signum))
    raise interrupt.Interrupted(signum)  # "run", before `interrupt.install` took over


def _install_handlers() -> dict:
    """`_on_signal` for the stopping signals (`interrupt.install`'s rules); the previous handlers."""
    return interrupt.install(_on_signal)


def _is_program() -> bool:
    mp = sys.modules.get("multiprocessing")
    if mp is not None and getattr(mp, "parent_process", lambda: None)() is not None:
        return False  # a batch worker re-importing the program's main module: not the program
    if __name__ == "__main__":
        return True
    name = os.path.basename(sys.argv[0] if sys.argv else "").lower()
    return name in (PROG, PROG + ".exe", PROG + "-script.py")


if _is_program():
    _install_handlers()
else:
    _PHASE = "run"

import contextlib  # noqa: E402 - after the signal handlers: Ctrl-C while importing is handled
import inspect  # noqa: E402
import typing  # noqa: E402
from dataclasses import replace  # noqa: E402
from enum import Enum  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import List, Optional  # noqa: E402

import typer  # noqa: E402

from . import __version__  # noqa: E402
from .errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, OutputError, PtolemyError  # noqa: E402
from .options import FORMATS, PIPELINE_OPTIONS, InputOptions, OutputOptions, cli_fields, from_cli  # noqa: E402


def _click():
    """The click package typer uses (vendored as typer._click in recent typer versions)."""
    try:
        from typer import _click as c  # typer >= 0.2x vendors click

        return c
    except ImportError:  # pragma: no cover - older typer
        import click as c

        return c


def _choices_enum(name: str, choices: tuple[str, ...]) -> type[Enum]:
    """A str Enum of `choices` (member names with "-" → "_"), for typer's choice options."""
    return Enum(name, [(c.replace("-", "_"), c) for c in choices], type=str)


Format = _choices_enum("Format", FORMATS)


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
    """Write the result to stdout; a failed write (disk full, closed) is an OutputError (exit 5)
    and a broken pipe is left to `run` (the reader went away)."""
    global _PHASE
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
        if _PHASE == "run" and _is_program():
            _PHASE = "done"  # the command's last act: a signal now cannot undo the result
            _install_handlers()  # `_on_signal` again (it ignores signals once "done"), not `interrupt`'s
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as e:
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the unwritten rest must not be flushed at exit
        why = getattr(e, "strerror", None) or str(e)
        raise OutputError(f"stdout: cannot write the result ({why})") from None


# Shared options of lowmag / medmag
# readable=False on paths: the readers report an unreadable file themselves, as bad input
# (exit 3), not the option parser as a usage error (exit 2)
_IMAGES = typer.Argument(..., metavar="IMAGE", help="MRC file(s) (or TIFF, PNG, JPEG pictures), or folder(s) of *.mrc files; "
                         "a SerialEM montage stack with its .mdoc, an EPU image with its .xml, an EPU Atlas.dm "
                         "or its folder (docs/SERIALEM.md).", show_default=False, readable=False)
_FORMAT = typer.Option(None, "-f", "--format", case_sensitive=False,
                       help="Output format: json (the published schema), json-full (with metadata), csv, txt, "
                            "nav (SerialEM Navigator points; needs --nav-map and -o). "
                            "Default: from the -o file's extension, else json.")
_OUT = typer.Option(None, "-o", "--output", metavar="OUT",
                    help="Result file (one input; '-' = stdout, the default) or folder (several inputs: required).")
_MODELS = typer.Option(None, "--models", metavar="NAME", help="Model set name (`ptolemy models list`; default: the default set).")
_SECTION = typer.Option(None, "--section", min=0, metavar="N", help="Section (0-based) of an MRC stack.")
_JOBS = typer.Option(1, "-j", "--jobs", min=1, metavar="N", help="Worker processes for several inputs.")
_PLOT = typer.Option(None, "--plot", metavar="OUT.png",
                     help="Also write an overlay picture (several inputs: a folder for NAME.png files). Needs Pillow.")
_FORCE = typer.Option(False, "--force", help="Several inputs: redo inputs whose result is newer than the input.")


def _analyse_command(kind: str, images, fmt, out, models, section, jobs, plot, force, **values) -> int:
    """Run ``ptolemy lowmag|medmag``: `values` holds the typer values of the command-line
    fields of the kind's pipeline options and of `OutputOptions` (see `_typer_parameters`)."""
    from . import batch
    from .output import check_output_path, format_from_suffix

    options = from_cli(PIPELINE_OPTIONS[kind], values)
    fmt_s = fmt.value if fmt is not None else format_from_suffix(None if out in (None, "-") else out)
    if fmt is None and values.get("nav_map") is not None:
        fmt_s = "nav"
    output = from_cli(OutputOptions, values, fmt=fmt_s)
    reading = from_cli(InputOptions, values)
    if plot is not None:
        from .plot import require_pillow

        require_pillow()
    inputs, any_folder = batch.expand_inputs([str(p) for p in images])
    if out not in (None, "-") and _names_stdout(out):
        out = "-"  # -o /dev/stdout: the result goes to stdout itself (see `_names_stdout`)
    if plot is not None and _names_stdout(plot):
        raise batch.UsageProblem(f"--plot {plot}: the picture cannot go to stdout; name a file")
    out_is_dir = out not in (None, "-") and (os.path.isdir(out) or str(out).endswith(("/", os.sep)))
    many = len(inputs) > 1 or any_folder or out_is_dir
    job = batch.Job(kind, inputs[0], models=models, section=section, options=options, output=output,
                    reading=reading)

    if many:
        if reading.mdoc is not None:
            raise batch.UsageProblem("--mdoc takes one image (the montage stack it describes)")
        if fmt_s == "nav":
            raise batch.UsageProblem("-f nav takes one image (the image of the --nav-map item)")
        if out in (None, "-"):
            raise batch.UsageProblem(f"{len(inputs)} inputs need an output folder: -o DIR")
        with _stdout_to_stderr():
            _check_models(models)
            return batch.run_batch(job, inputs, str(out), plot_dir=plot, jobs=jobs, force=force)

    src = inputs[0]
    to_file = out not in (None, "-")
    if fmt_s == "nav":
        if not to_file:
            raise batch.UsageProblem("-f nav writes a file: give -o TARGETS.nav")
        check_output_path(out, protect=[src, output.nav_map[0]])
        batch.check_nav_map(output.nav_map)
    elif to_file:
        check_output_path(out, protect=[src])
    if plot is not None:
        check_output_path(plot, protect=[src])
        if to_file and os.path.realpath(plot) == os.path.realpath(out):
            raise batch.UsageProblem("--plot and -o name the same file")
    job = replace(job, out=str(out) if to_file else None, plot=str(plot) if plot else None)
    with _stdout_to_stderr():
        outcome = batch.analyse(job)
    for n in outcome.notes:
        _say("warning", n)
    if outcome.reason:
        _say("note", f"{src}: {outcome.reason}")
    if outcome.text is not None:
        _write_stdout(outcome.text)
    return EXIT_OK


def _names_stdout(path) -> bool:
    """True when `path` names the file stdout is (``/dev/stdout``, ``/dev/fd/1``, or the very
    file stdout is redirected to). Such an output is written through stdout: while the
    pipeline runs, fd 1 is pointed at stderr (`_stdout_to_stderr`), so opening the path then
    would write the result to stderr."""
    try:
        a, b = os.stat(path), os.fstat(1)
    except (OSError, ValueError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _check_models(models: str | None) -> None:
    """Fail fast (exit 4) when the model set is missing or corrupt, before a batch starts."""
    from .batch import model_set

    model_set(models)


def _typer_parameters(cls) -> list[inspect.Parameter]:
    """typer parameters of the command-line fields of an options class (`options.cli_option`):
    choices become case-insensitive Enum choices, parsed fields text, others their type."""
    hints = typing.get_type_hints(cls)
    params = []
    for f, spec in cli_fields(cls):
        default = f.default if spec.cli_default is None else spec.cli_default
        kw = dict(spec.extra)
        if spec.choices:
            ann = _choices_enum("".join(w.title() for w in f.name.split("_")), spec.choices)
            default = None if default is None else ann(default)
            if default is None:
                ann = Optional[ann]
            kw["case_sensitive"] = False
        elif spec.parse is not None:
            ann = Optional[str]
        else:
            ann = hints[f.name]
        opt = typer.Option(default, *spec.decls, help=spec.help, metavar=spec.metavar, **kw)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann))
    return params


def _pipeline_command(kind: str, doc: str) -> None:
    """Register ``ptolemy <kind>``: images and the run's options (-f, -o, --models, --section,
    -j, --plot, --force) declared here, then every command-line field of the kind's pipeline
    options, of `InputOptions` and of `OutputOptions` (declared in `options`)."""
    P = inspect.Parameter
    head = [P("images", P.KEYWORD_ONLY, default=_IMAGES, annotation=List[Path]),
            P("fmt", P.KEYWORD_ONLY, default=_FORMAT, annotation=Optional[Format]),
            P("out", P.KEYWORD_ONLY, default=_OUT, annotation=Optional[str]),
            P("models", P.KEYWORD_ONLY, default=_MODELS, annotation=Optional[str])]
    tail = [P("section", P.KEYWORD_ONLY, default=_SECTION, annotation=Optional[int]),
            P("jobs", P.KEYWORD_ONLY, default=_JOBS, annotation=int),
            P("plot", P.KEYWORD_ONLY, default=_PLOT, annotation=Optional[str]),
            P("force", P.KEYWORD_ONLY, default=_FORCE, annotation=bool)]
    params = (head + _typer_parameters(PIPELINE_OPTIONS[kind]) + tail + _typer_parameters(InputOptions)
              + _typer_parameters(OutputOptions))

    def command(**values) -> int:
        return _analyse_command(kind, **values)

    command.__name__ = command.__qualname__ = kind
    command.__doc__ = doc
    command.__signature__ = inspect.Signature(params, return_annotation=int)
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": int}
    app.command(kind, no_args_is_help=True)(command)


_pipeline_command("lowmag", "Find and rank grid squares in low-magnification atlases.")
_pipeline_command("medmag", "Find and rank holes in medium-magnification (grid square) images.")


_PLOT_RESULT = typer.Argument(..., metavar="RESULT.json", help="Result file (-f json or json-full).", show_default=False,
                              readable=False)
_PLOT_IMAGE = typer.Argument(..., metavar="IMAGE", help="The image the result belongs to, given as to lowmag/medmag "
                             "(an MRC file, a SerialEM montage stack, an EPU image, an Atlas.dm or its folder).",
                             show_default=False, readable=False)
_PLOT_OUT = typer.Argument(..., metavar="OUT.png", help="Picture to write.", show_default=False, readable=False)


def _plot_command(result: Path, image: Path, out: Path, section: int | None, **values) -> int:
    """Run ``ptolemy plot``: the image is read by `sources.load_image` as the analysis read it
    (`values`: the command-line fields of `InputOptions`). A json-full result names the
    command (the kind `auto_bin` bins for), the section and the binning it was made with;
    they are used unless given here."""
    from .options import PIPELINE_OPTIONS
    from .output import check_output_path
    from .plot import read_result, require_pillow, write_overlay
    from .sources import load_image

    require_pillow()
    check_output_path(out, protect=[image, result])
    reading = from_cli(InputOptions, values)
    its, header = read_result(result)
    kind = header.get("command") if header.get("command") in PIPELINE_OPTIONS else "lowmag"
    source = header.get("source") if isinstance(header.get("source"), dict) else {}
    if reading.montage_bin is None and isinstance(source.get("bin"), int) and not isinstance(source["bin"], bool) \
            and source["bin"] >= 1 and source.get("kind") in ("serialem-montage", "epu-atlas"):
        reading = replace(reading, montage_bin=source["bin"])  # the binning the result was made at
    if section is None and isinstance(header.get("section"), int) and not isinstance(header["section"], bool):
        section = header["section"] if header["section"] >= 0 else None
    with _stdout_to_stderr():
        img = load_image(image, section, reading, kind)
        rows, cols = img.pixels.shape
        shape = header.get("shape")
        if isinstance(shape, list) and len(shape) == 2 and list(shape) != [rows, cols]:
            _say("warning", f"{result}: made on a {shape[0]} x {shape[1]} px image, but {image} reads as "
                            f"{rows} x {cols} px; give the --section / --mdoc / --montage-bin of the analysis")
        outside = sum(1 for d in its if not (-cols <= d["center"][0] <= 2 * cols and -rows <= d["center"][1] <= 2 * rows))
        if outside:
            _say("warning", f"{result}: {outside} target(s) lie far outside {image} ({rows} x {cols} px); wrong image?")
        write_overlay(img.pixels, its, out, protect=[image, result])
    return EXIT_OK


def _register_plot() -> None:
    """Register ``ptolemy plot RESULT.json IMAGE OUT.png [--section N]`` plus the fields of
    `InputOptions` (--mdoc, --montage-bin), declared once in `options`."""
    P = inspect.Parameter
    params = [P("result", P.KEYWORD_ONLY, default=_PLOT_RESULT, annotation=Path),
              P("image", P.KEYWORD_ONLY, default=_PLOT_IMAGE, annotation=Path),
              P("out", P.KEYWORD_ONLY, default=_PLOT_OUT, annotation=Path),
              P("section", P.KEYWORD_ONLY, default=_SECTION, annotation=Optional[int])] + _typer_parameters(InputOptions)

    def plot(**values) -> int:
        return _plot_command(**values)

    plot.__doc__ = ("Draw a result over its image (boxes coloured by score, ranks of the best ten); the image is "
                    "read as lowmag/medmag read it (montage, EPU atlas), so the picture matches the result's pixels.")
    plot.__signature__ = inspect.Signature(params, return_annotation=int)
    plot.__annotations__ = {p.name: p.annotation for p in params} | {"return": int}
    app.command("plot", no_args_is_help=True)(plot)


_register_plot()


@app.command(no_args_is_help=True)
def demo(
    outdir: Path = typer.Argument(..., metavar="OUTDIR", help="Folder for the demo files (created).", show_default=False, readable=False),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the synthetic images (≥ 0)."),
    models: Optional[str] = _MODELS,
) -> int:
    """Make a synthetic atlas and square image, run both pipelines, write JSON and overlays.

    All or nothing: the files are made in a temporary folder inside OUTDIR and committed
    together (`files.commit_outputs`); a failed or interrupted demo leaves OUTDIR as it was
    (a folder it created is removed again)."""
    import shutil
    import tempfile

    from . import batch
    from .files import TEMP_PREFIX, commit_outputs

    try:
        from . import synthetic
    except ImportError:
        raise PtolemyError("demo needs ptolemy_rt.synthetic, which this installation lacks") from None
    have_pillow = True
    try:
        from .plot import require_pillow

        require_pillow()
    except PtolemyError as e:
        have_pillow = False
        _say("warning", f"{e}; writing no overlays")
    with _stdout_to_stderr():
        _check_models(models)  # before anything is created
    created = batch.missing_folders(outdir)
    stage = None
    try:
        batch._prepare_dir(str(outdir), "demo folder")
        try:
            stage = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=".demo", dir=outdir))
        except OSError as e:
            raise OutputError(f"{outdir}: cannot write ({e.strerror or e})") from None
        names: list[str] = []
        with _stdout_to_stderr():
            for kind, name, make, shape in (
                ("lowmag", "atlas", synthetic.atlas, (1024, 1024)),
                ("medmag", "square", synthetic.medmag_image, (1024, 1440)),
            ):
                image, truth = make(seed, shape=shape)
                (stage / f"{name}.mrc").write_bytes(_mrc_bytes(image))
                (stage / f"{name}.truth.json").write_text(_truth_json(truth), encoding="utf-8")
                job = batch.Job(kind, str(stage / f"{name}.mrc"), out=str(stage / f"{name}.json"),
                                plot=str(stage / f"{name}.png") if have_pillow else None, models=models)
                o = batch.analyse(job)
                noun = "squares" if kind == "lowmag" else "holes"
                best = f", best score {o.best_score:.3f}" if o.best_score is not None else ""
                _say("info", f"{kind}: {o.n_targets} {noun}{best} in {o.seconds:.1f} s" + (f" ({o.reason})" if o.reason else ""))
                names += [f"{name}.mrc", f"{name}.truth.json", f"{name}.json"] + ([f"{name}.png"] if have_pillow else [])
            commit_outputs([(outdir / n, (stage / n).read_bytes()) for n in names])
    except BaseException:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
            stage = None
        batch.remove_empty_folders(created)  # the folders this run made, when empty
        raise
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    _write_stdout("".join(str(outdir / n) + "\n" for n in names))
    return EXIT_OK


@app.command("evaluate", no_args_is_help=True)
def evaluate_cmd(
    data: Path = typer.Argument(..., metavar="DATA", help="Labelled folder (dataset.json), or a folder holding "
                                "lowmag/ and medmag/ labelled folders.", show_default=False, readable=False),
    models: Optional[str] = _MODELS,
    out: Optional[str] = typer.Option(None, "-o", "--output", help="Also write the metrics as JSON here."),
) -> int:
    """Paper metrics (docs/ALGORITHM.md#evaluation-metrics) of a model set on labelled data: a table on stdout."""
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


models_app = typer.Typer(help="List the model sets found, convert the published checkpoints.",
                         no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> int:
    """Every model set found: name, licence, folder, verified (every part's sha256) or why not."""
    from .errors import ModelSetError
    from .models import available_sets, find_set_folder, load_model_set, models_roots

    rows = []
    with _stdout_to_stderr():
        for name in available_sets():
            try:
                ms = load_model_set(name)
                rows.append((name, ms.spec.licence, str(ms.root), "verified"))
            except ModelSetError as e:
                rows.append((name, "?", str(find_set_folder(name)), f"NOT verified: {e}"))
    lines = [f"# searched: {os.pathsep.join(str(r) for r in models_roots())}", "name\tlicence\tfolder\tstatus"]
    lines += ["\t".join(r) for r in rows]
    _write_stdout("\n".join(lines) + "\n")
    return EXIT_OK


def _export_module(name: str):
    """export/<name>.py: packaged as ptolemy_rt.export in a wheel, export/ in a checkout."""
    import importlib

    try:
        return importlib.import_module(f"ptolemy_rt.export.{name}")
    except ModuleNotFoundError as e:
        if e.name not in ("ptolemy_rt.export", f"ptolemy_rt.export.{name}"):
            raise
    repo = Path(__file__).resolve().parent.parent
    if not (repo / "export" / f"{name}.py").is_file():
        raise PtolemyError(f"this installation has no converter (export/{name}.py); reinstall ptolemy-rt")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    return importlib.import_module(f"export.{name}")


@models_app.command("convert-published")
def models_convert_published(
    weights: Path = typer.Option(..., "--weights", metavar="DIR", show_default=False,
                                 help="Folder holding the published .torchmodel checkpoints."),
    notice: Optional[Path] = typer.Option(None, "--notice", metavar="NOTICE.md", show_default=False,
                                          help="The published material's NOTICE.md (licence, citation); "
                                               "default: DIR/NOTICE.md or DIR/../NOTICE.md."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", show_default=False,
                                       help="Where to write the set (default: ptolemy-2022 in the per-user folder, "
                                            "or in PTOLEMY_MODELS_DIR when that is set: where the loader looks)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when up to date."),
) -> int:
    """Convert the published Ptolemy checkpoints into the model set ptolemy-2022 (needs
    `pip install 'ptolemy-rt[export]'`: torch CPU and onnx)."""
    from .errors import ModelSetError
    from .models import PUBLISHED_SET, models_roots

    weights = Path(weights)
    if not weights.is_dir():
        raise _usage(f"--weights {weights}: no such folder")
    if notice is None:
        notice = next((p for p in (weights / "NOTICE.md", weights.parent / "NOTICE.md") if p.is_file()), None)
        if notice is None:
            raise _usage(f"--weights {weights}: no NOTICE.md beside the checkpoints; name it with --notice")
    dest = Path(out) if out is not None else models_roots()[-1] / PUBLISHED_SET  # the per-user folder or PTOLEMY_MODELS_DIR
    with _stdout_to_stderr():
        import importlib.util

        # the converter's own dependencies (the [export] extra): looked up, never imported here
        missing = [m for m in ("torch", "onnx") if importlib.util.find_spec(m) is None]
        if missing:
            raise ModelSetError(f"converting the published checkpoints needs {' and '.join(missing)}: "
                                "install it with `pip install 'ptolemy-rt[export]'`")
        try:
            convert = _export_module("convert")
        except ImportError as e:
            raise ModelSetError(f"converting the published checkpoints needs {e.name or 'torch and onnx'}: "
                                "install it with `pip install 'ptolemy-rt[export]'`") from None
        try:
            path, rebuilt = convert.convert(weights, notice, dest, force=force)
        except convert.ConvertError as e:
            raise ModelSetError(f"{weights}: {e}") from None
    _say("info", f"{'built' if rebuilt else 'up to date'}: {path}; use it with --models {PUBLISHED_SET}")
    _write_stdout(f"{path}\n")
    return EXIT_OK


def _usage(msg: str) -> PtolemyError:
    """A usage error (exit 2) with a one-line message."""
    from .options import UsageProblem

    return UsageProblem(msg)




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
    """An MRC file (float32, mode 2) holding a 2-D image [row, col]; its bytes depend on the
    image only (mrcfile's creation-time label is replaced by a fixed one)."""
    import tempfile

    import mrcfile
    import numpy as np

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.mrc")
        with mrcfile.new(p) as m:
            m.set_data(np.ascontiguousarray(image, dtype=np.float32))
            m.header.label[0] = b"ptolemy-rt demo (synthetic image)".ljust(80)
            m.header.nlabl = 1
        with open(p, "rb") as f:
            return f.read()


# ---------------------------------------------------------------------- entry


def run(argv: list[str] | None = None) -> int:
    """Run the command line with `argv` (default sys.argv[1:]); returns the exit code.

    Every error becomes one line ``ptolemy: error: ...`` on stderr, never a traceback
    (PTOLEMY_DEBUG=1 adds one for internal errors).

    Parameters
    ----------
    argv : list of str or None
        The arguments after the program name (None: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code (`errors`: 0 ok, 2 usage, 3 bad input, 4 model set, 5 output,
        6 partial batch, 130 / 143 / 129 interrupted by SIGINT / SIGTERM / SIGHUP,
        1 internal error).

    Examples
    --------
    >>> run(["lowmag", "--no-such-option", "a.mrc"])  # stderr: ptolemy: error: No such option ...
    2
    >>> run(["lowmag", "/nonexistent/atlas.mrc"])  # stderr: ptolemy: error: ...: no such file
    3
    """
    global _PHASE
    _PHASE = "run"
    interrupt.reset()
    # SIGINT / SIGTERM / SIGHUP raise `interrupt.Interrupted` (a KeyboardInterrupt) from here on
    previous = interrupt.install()
    try:
        code = _run(argv)
    except KeyboardInterrupt:  # raised outside the command's own handlers
        with contextlib.suppress(Exception, KeyboardInterrupt):
            code = _interrupted()
    finally:
        if previous.get(signal.SIGINT) is _on_signal:  # the program's own run: its code is decided
            _PHASE = "done"
        interrupt.restore(previous)
    return code


#: the line printed for each stopping signal (the exit code is 128 + the signal)
_SIGNAL_WORDS = {int(getattr(signal, n)): w for n, w in (("SIGINT", "interrupted"), ("SIGTERM", "terminated"),
                                                         ("SIGHUP", "hung up")) if hasattr(signal, n)}


def _interrupted(signum: int | None = None) -> int:
    """Report an interruption in one line; its exit code (130 SIGINT, 143 SIGTERM, 129 SIGHUP):
    the first stopping signal `interrupt` received, else `signum`, else SIGINT."""
    got = interrupt.received()
    signum = int(got if got is not None else signum if signum is not None else signal.SIGINT)
    _err(_SIGNAL_WORDS.get(signum, "interrupted"))
    return 128 + signum


def _caused_by_signal(e: BaseException) -> bool:
    """True when `e` comes from a stopping signal (an exception a library raised while the
    interruption unwound it, e.g. numpy's "ImportError: initialization failed")."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return interrupt.received() is not None


def _run(argv: list[str] | None) -> int:
    click = _click()
    cmd = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = cmd.main(args=args, prog_name=PROG, standalone_mode=False)
        code = int(rv) if isinstance(rv, int) else EXIT_OK
        if code == EXIT_INTERRUPTED:  # Ctrl-C, turned into an exit code by the command-line library
            return _interrupted(int(signal.SIGINT))
        return code
    except click.exceptions.UsageError as e:
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            sys.stderr.write(ctx.get_help() + "\n")  # bare command: its help, as a usage error
            return EXIT_USAGE
        where = ctx.command_path if ctx is not None else PROG
        _err(f"{e.format_message()} (see '{where} --help')")
        return EXIT_USAGE
    except typer.Abort:  # click turns KeyboardInterrupt (`interrupt.Interrupted`) into Abort
        return _interrupted(int(signal.SIGINT))
    except click.exceptions.ClickException as e:
        _err(e.format_message())
        return e.exit_code
    except PtolemyError as e:
        if _caused_by_signal(e):
            return _interrupted()
        if os.environ.get("PTOLEMY_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        _err(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        return _interrupted(int(signal.SIGINT))
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return EXIT_INTERNAL
    except Exception as e:  # a bug: one line, traceback on request
        if _caused_by_signal(e):  # e.g. "ImportError: initialization failed" after Ctrl-C
            return _interrupted()
        if os.environ.get("PTOLEMY_DEBUG") == "1":
            import traceback

            traceback.print_exc()
            _err(f"internal error: {type(e).__name__}: {e}")
        else:
            _err(f"internal error: {type(e).__name__}: {e} (rerun with PTOLEMY_DEBUG=1 for a traceback)")
        return EXIT_INTERNAL


#: Commands whose process ends as soon as their outputs are committed and stdout / stderr are
#: flushed, without the interpreter's shut-down (tearing down numpy, scipy and ONNX Runtime takes
#: 0.06-0.1 s, a tenth of a low-mag run; docs/BENCH.md#startup). PTOLEMY_FULL_EXIT=1 keeps the
#: normal shut-down (for coverage or profilers that write at exit). A process that used
#: multiprocessing (a batch with workers) always shuts down normally: its finalizers unregister the
#: pool's semaphores, else the resource tracker warns on stderr about "leaked" ones after the
#: result line (`_may_exit_fast`).
FAST_EXIT_COMMANDS = ("lowmag", "medmag")


def _may_exit_fast(argv: list[str], modules=sys.modules, environ=os.environ) -> bool:
    """Whether this process may end with `_exit_now`: a `FAST_EXIT_COMMANDS` command, no
    PTOLEMY_FULL_EXIT=1, and multiprocessing never imported (no pool whose resources need the
    interpreter's shut-down).

    >>> _may_exit_fast(["lowmag", "a.mrc"], modules={}, environ={})
    True
    >>> _may_exit_fast(["lowmag", "d/", "-j", "2"], modules={"multiprocessing": None}, environ={})
    False
    >>> _may_exit_fast(["medmag", "a.mrc"], modules={}, environ={"PTOLEMY_FULL_EXIT": "1"})
    False
    """
    return (_command_name(argv) in FAST_EXIT_COMMANDS and environ.get("PTOLEMY_FULL_EXIT") != "1"
            and "multiprocessing" not in modules)


def _command_name(argv: list[str]) -> str | None:
    """The sub-command of a command line (its first word not starting with "-"), or None.

    >>> _command_name(["medmag", "-f", "json", "a.mrc"]), _command_name(["--version"])
    ('medmag', None)
    """
    return next((a for a in argv if not a.startswith("-")), None)


def _exit_now(code: int) -> None:
    """Flush stdout and stderr and end the process with `code` at once (`os._exit`); a failed
    stdout flush (a closed pipe) turns a success into EXIT_INTERNAL, with one line on stderr.
    A stream that is not there (started with it closed: None) is skipped."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError) as e:
        if code == EXIT_OK:
            code = EXIT_INTERNAL
        with contextlib.suppress(Exception):
            _err(f"standard output: {e}")
    with contextlib.suppress(Exception):
        if sys.stderr is not None:
            sys.stderr.flush()
    os._exit(code)


def main() -> int:
    """Console-script entry point (`ptolemy`): `run`, then late signals are ignored (the
    exit code is decided); `FAST_EXIT_COMMANDS` end there when they may (`_may_exit_fast`)."""
    global _PHASE
    try:
        code = run()
    finally:
        _PHASE = "done"
        for s in interrupt.SIGNALS:  # ignored (not handled) through the interpreter's shut-down, which
            try:            # puts Python-level handlers back to the default (killed by the signal)
                signal.signal(s, signal.SIG_IGN)
            except (ValueError, OSError):
                pass
    if _may_exit_fast(sys.argv[1:]):
        _exit_now(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
