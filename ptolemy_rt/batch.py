"""Running a pipeline on one image or on many (folders, worker processes, summary.csv).

One image (`analyse`) raises `PtolemyError` subclasses for the command line to report. Many
images (`run_batch`) write one result file per input into an output folder, report a bad
input in one line and go on, and write `summary.csv` (input, status
ok/failed/skipped/interrupted, n_targets, best_score, seconds, error). Output order is the
input order whatever the number of worker processes.

Resuming: every output is written atomically (`files`), so an output file that exists is
complete. An input is skipped (status "skipped") when all its outputs exist, are newer than
the input, and were made with the same settings: the ``settings`` column of summary.csv
holds, per input, a hash of what made its result (`settings_id` of `run_fingerprint`:
runtime version, pipeline, model set name and manifest hash, section, every pipeline and
output option). A result whose row is missing, or made with other settings, is redone
(``--force`` redoes everything). summary.csv is written at the end or when interrupted; a
batch killed outright (SIGKILL, power loss) redoes its results next time.

Interruption (SIGINT / SIGTERM / SIGHUP, `interrupt`): the workers are stopped (SIGTERM, then
SIGKILL after `STOP_WAIT_S`), summary.csv lists what finished and marks the rest
"interrupted", and `interrupt.Interrupted` goes on to the command line (exit 128 + signal:
130, 143, 129). Rerunning the same command resumes: only the unfinished inputs run.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from .errors import EXIT_INTERNAL, EXIT_OK, EXIT_PARTIAL, OutputError, PtolemyError
from .options import (PIPELINE_OPTIONS, InputOptions, LowmagOptions, MedmagOptions, OutputOptions, UsageProblem,
                      pipeline_options)
from .output import EXTENSIONS, Report, format_report, items, pixel_size_warning, resolve_pixel_size, result_reason

SUMMARY_NAME = "summary.csv"
SUMMARY_COLUMNS = ["input", "status", "n_targets", "best_score", "seconds", "error", "settings"]
STOP_WAIT_S = 0.5  # s: interrupted workers get SIGTERM, then SIGKILL after this


@dataclass(frozen=True)
class Job:
    """What to do with one input image (picklable, for worker processes).

    kind: "lowmag" | "medmag"; input: the MRC path; out: result file path or None (text
    returned instead); plot: overlay PNG path or None; models: model-set name (None: the
    default set); section: MRC stack section or None; options: the kind's pipeline options
    (`options.LowmagOptions` / `MedmagOptions`; None: their defaults); output: what to write
    (`options.OutputOptions`); reading: how to read the input (`options.InputOptions`:
    SerialEM .mdoc, montage binning; `sources.load_image`)."""

    kind: str
    input: str
    out: str | None = None
    plot: str | None = None
    models: str | None = None
    section: int | None = None
    options: LowmagOptions | MedmagOptions | None = None
    output: OutputOptions = field(default_factory=OutputOptions)
    reading: InputOptions = field(default_factory=InputOptions)

    def __post_init__(self):
        if self.kind not in PIPELINE_OPTIONS:
            raise ValueError(f"job kind must be one of {tuple(PIPELINE_OPTIONS)}, got {self.kind!r}")
        if self.options is None:
            object.__setattr__(self, "options", pipeline_options(self.kind))
        elif not isinstance(self.options, PIPELINE_OPTIONS[self.kind]):
            raise TypeError(f"{self.kind} job with {type(self.options).__name__}")


def check_nav_map(nav_map: tuple[str, str]) -> None:
    """Fail before the pipeline runs when the navigator file or its map item is unusable.

    Parameters
    ----------
    nav_map : (str, str)
        (navigator file path, label of the map item the image is).

    Raises
    ------
    PtolemyError
        The file cannot be read or parsed, holds no item of that label, or the item cannot
        map image pixels to stage coordinates (the message names the file).

    Examples
    --------
    >>> import os, tempfile
    >>> missing = os.path.join(tempfile.mkdtemp(), "none.nav")
    >>> try:
    ...     check_nav_map((missing, "1"))
    ... except PtolemyError as e:
    ...     print(type(e).__name__, e.exit_code)
    InputImageError 3
    """
    from . import navigator

    nav, label = nav_map
    item = navigator.find_item(navigator.read_nav(nav), label, nav)
    navigator.map_transform(item, None, nav_path=nav)


@dataclass
class Outcome:
    """What happened to one input."""

    input: str
    status: str  # "ok" | "failed" | "skipped" | "interrupted"
    n_targets: int | None = None
    best_score: float | None = None
    seconds: float | None = None
    error: str = ""
    exit_code: int = EXIT_OK
    text: str | None = None  # formatted result when Job.out is None
    notes: list[str] = field(default_factory=list)  # warnings for stderr
    reason: str | None = None  # why the result is empty
    settings: str = ""  # `settings_id` of the job that made the result (ok / skipped)


# ------------------------------------------------------------------ one image

_MODEL_SETS: dict[str | None, Any] = {}


def model_set(name: str | None):
    """The model set `name` (None = default), loaded once per process.

    Parameters
    ----------
    name : str or None
        A model-set name of `models.load_model_set`; None: the default set.

    Returns
    -------
    models.ModelSet
        The same object on every call with that name in this process.

    Raises
    ------
    ModelSetError
        The set is missing or corrupt.

    Examples
    --------
    >>> ms = model_set("ptolemy-rt-synth-v1")
    >>> ms.name, model_set("ptolemy-rt-synth-v1") is ms
    ('ptolemy-rt-synth-v1', True)
    """
    if name not in _MODEL_SETS:
        from .models import load_model_set

        _MODEL_SETS[name] = load_model_set(name)
    return _MODEL_SETS[name]


def run_pipeline(kind: str, image, models: str | None, options):
    """Run find_squares (lowmag) or find_holes (medmag) on one image.

    Parameters
    ----------
    kind : str
        "lowmag" or "medmag".
    image : io.LoadedImage
        The input image.
    models : str or None
        Model-set name (None: the default set, see `model_set`).
    options : options.LowmagOptions or options.MedmagOptions
        The kind's pipeline options.

    Returns
    -------
    results.SquareResult or results.HoleResult
        Targets in input pixels, (x, y) = (col, row), best score first.

    Raises
    ------
    PtolemyError
        A bad image or model set.

    Examples
    --------
    A synthetic 512×512 atlas (grid pitch 150 px) through the own model set:

    >>> from ptolemy_rt import synthetic
    >>> from ptolemy_rt.io import validate_array
    >>> img, truth = synthetic.atlas(1, shape=(512, 512), pitch=150.0, angle_deg=5.0)
    >>> r = run_pipeline("lowmag", validate_array(img), "ptolemy-rt-synth-v1", LowmagOptions())
    >>> r.kind, r.image_shape, len(r.squares) > 0, r.squares[0].score >= r.squares[-1].score
    ('lowmag', (512, 512), True, True)
    """
    ms = model_set(models)
    if kind == "lowmag":
        from .lowmag import find_squares

        return find_squares(image, options, models=ms)
    from .medmag import find_holes

    return find_holes(image, options, models=ms)


def analyse(job: Job) -> Outcome:
    """Read, analyse and write one input; writes nothing unless everything succeeded.

    Parameters
    ----------
    job : Job

    Returns
    -------
    Outcome
        status "ok"; ``text`` holds the formatted result when ``job.out`` is None.

    Raises
    ------
    PtolemyError
        A subclass for a bad input, model set, option or output (anything else is a bug).
        `run_one` shows a failing input.

    Examples
    --------
    A synthetic atlas written as MRC in a temporary folder, its result as CSV text:

    >>> import tempfile, mrcfile
    >>> from ptolemy_rt import synthetic
    >>> d = Path(tempfile.mkdtemp())
    >>> img, _ = synthetic.atlas(1, shape=(512, 512), pitch=150.0, angle_deg=5.0)
    >>> with mrcfile.new(d / "atlas.mrc") as m:
    ...     m.set_data(img)
    >>> o = analyse(Job("lowmag", str(d / "atlas.mrc"), models="ptolemy-rt-synth-v1",
    ...                 output=OutputOptions(fmt="csv")))
    >>> o.status, o.n_targets > 0, o.text.splitlines()[0].split(",")[:4]
    ('ok', True, ['rank', 'center_x', 'center_y', 'area'])
    >>> (d / "atlas.mrc").unlink(); d.rmdir()
    """
    from .sources import load_image

    t0 = time.perf_counter()
    output = job.output
    image = load_image(job.input, job.section, job.reading, job.kind)
    px, src, note = resolve_pixel_size(job.kind, output.pixel_size_nm, image.pixel_size_nm,
                                       image.pixel_size_source)
    if px is not None and px != image.pixel_size_nm:  # the scale stage's --hole-pitch-um uses it
        image = replace(image, pixel_size_nm=px)
    grey = None
    if job.plot is not None:  # the picture's grey levels now (1 byte/px), so that the pipeline
        from .plot import Grey, to_grey  # may reuse the pixels (no second float32 copy)

        grey = Grey(to_grey(image.pixels))
    image = replace(image, scratch=True)  # nothing reads the pixels afterwards
    result = run_pipeline(job.kind, image, job.models, job.options)
    report = Report(job.kind, job.input, result, px, src, image.section, time.perf_counter() - t0,
                    stage=image.stage, origin=image.origin)
    notes = [f"{job.input}: {note}"] if note else []
    warn = pixel_size_warning(report)
    if warn:
        notes.append(f"{job.input}: {warn}")
    its = items(result)
    from .files import commit_outputs

    outs, text, protect = [], None, [job.input]  # one invocation's outputs: all or none
    if output.fmt == "nav":
        from . import navigator

        from .sources import stored_bottom_up

        nav, label = output.nav_map
        protect.append(nav)
        flip = output.nav_flip if output.nav_flip is not None else stored_bottom_up(image)
        outs.append((job.out, navigator.targets_nav_text(result, nav, label, flip,
                                                         output.nav_acquire, job.out)[0]))
    else:
        text = format_report(report, output.fmt)
        if job.out is not None:
            outs.append((job.out, text))
            text = None
    if job.plot is not None:
        from .plot import overlay_png

        outs.append((job.plot, overlay_png(grey, its)))
    commit_outputs(outs, protect=protect)
    return Outcome(
        input=job.input, status="ok", n_targets=len(its),
        best_score=its[0]["score"] if its else None,
        seconds=time.perf_counter() - t0, text=text, notes=notes, reason=result_reason(report),
    )


def run_one(job: Job) -> Outcome:
    """`analyse` for batches: never raises (worker-process entry point).

    Parameters
    ----------
    job : Job

    Returns
    -------
    Outcome
        `analyse`'s, or status "failed" with the one-line message and exit code.

    Examples
    --------
    >>> import os, tempfile
    >>> bad = os.path.join(tempfile.mkdtemp(), "bad.mrc")
    >>> with open(bad, "wb") as f:
    ...     _ = f.write(b"not an mrc")
    >>> o = run_one(Job("lowmag", bad))
    >>> o.status, o.exit_code, o.error.startswith(bad + ":")
    ('failed', 3, True)
    >>> os.remove(bad); os.rmdir(os.path.dirname(bad))
    """
    from .interrupt import WorkerStop, worker_job, worker_stopping

    t0 = time.perf_counter()
    try:
        with worker_job():
            return analyse(job)
    except WorkerStop:  # SIGTERM in a worker process: cleanup has run (no partial output)
        os._exit(128 + 15)
    except PtolemyError as e:
        if worker_stopping():  # an error a library made of the SIGTERM: the stop, not a failure
            os._exit(128 + 15)
        return Outcome(job.input, "failed", seconds=time.perf_counter() - t0,
                       error=_one_line(str(e)), exit_code=e.exit_code)
    except Exception as e:  # a bug: report it in one line, keep the batch going
        if worker_stopping():  # e.g. numpy's "ImportError: initialization failed" after SIGTERM
            os._exit(128 + 15)
        if os.environ.get("PTOLEMY_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        return Outcome(job.input, "failed", seconds=time.perf_counter() - t0,
                       error=_one_line(f"{job.input}: internal error: {type(e).__name__}: {e}"),
                       exit_code=EXIT_INTERNAL)


# --------------------------------------------------------------------- inputs


def expand_inputs(paths: list[str]) -> tuple[list[str], bool]:
    """Files as given, folders replaced by their *.mrc files (sorted by name, not recursive);
    a folder holding an EPU ``Atlas.dm`` is one input (the atlas).

    Parameters
    ----------
    paths : list of str
        Input files and folders, as given on the command line.

    Returns
    -------
    (inputs, any_folder) : (list of str, bool)
        The files in order, duplicates (same real path) dropped; whether a folder was given.

    Raises
    ------
    UsageProblem
        A folder holds no .mrc file.

    Examples
    --------
    >>> import os, shutil, tempfile
    >>> d = tempfile.mkdtemp()
    >>> for n in ("b.mrc", "a.MRC", "notes.txt"):
    ...     open(os.path.join(d, n), "w").close()
    >>> files, any_folder = expand_inputs([d, os.path.join(d, "b.mrc")])
    >>> [os.path.basename(f) for f in files], any_folder
    (['a.MRC', 'b.mrc'], True)
    >>> shutil.rmtree(d)
    """
    out: list[str] = []
    seen: set[str] = set()
    any_folder = False
    for p in paths:
        pp = Path(p)
        if os.path.isdir(pp) and (pp / "Atlas.dm").is_file():
            found = [str(p)]  # an EPU atlas folder is one input (sources.load_image)
        elif os.path.isdir(pp):  # False for a path that cannot be looked at: the reader says why
            any_folder = True
            try:
                found = sorted(str(c) for c in pp.iterdir() if c.suffix.lower() == ".mrc" and os.path.isfile(c))
            except OSError as e:
                from .errors import InputImageError

                raise InputImageError(f"{p}: cannot read the folder ({e.strerror or e})") from None
            if not found:
                raise UsageProblem(f"{p}: folder holds no .mrc files")
        else:
            found = [str(p)]
        for f in found:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out, any_folder


def result_path(out_dir: str, input_path: str, fmt: str) -> str:
    """The result file of one input in a batch: out_dir/STEM.EXT.

    Parameters
    ----------
    out_dir : str
    input_path : str
    fmt : str
        One of `output.FORMATS` (gives the extension, `output.EXTENSIONS`).

    Returns
    -------
    str

    Examples
    --------
    >>> result_path("out", "data/atlas_01.mrc", "json-full").replace(os.sep, "/")
    'out/atlas_01.json'
    """
    return str(Path(out_dir) / (Path(input_path).stem + EXTENSIONS[fmt]))


def plot_path(plot_dir: str, input_path: str) -> str:
    """The overlay PNG of one input in a batch: plot_dir/STEM.png.

    Parameters
    ----------
    plot_dir : str
    input_path : str

    Returns
    -------
    str

    Examples
    --------
    >>> plot_path("plots", "data/atlas_01.mrc").replace(os.sep, "/")
    'plots/atlas_01.png'
    """
    return str(Path(plot_dir) / (Path(input_path).stem + ".png"))


def run_fingerprint(job: Job) -> str:
    """What decides the bytes of a batch result, as one string (`run_batch` skips a result
    only when its recorded `settings_id` equals the current one).

    Parameters
    ----------
    job : Job
        The batch template (its input, out and plot paths are not part of it).

    Returns
    -------
    str
        Canonical JSON of: runtime version, kind, model set (name and the sha256 of its
        manifest.json, which lists every part's hash), section, the pipeline options and the
        output options.

    Examples
    --------
    >>> a = run_fingerprint(Job("lowmag", "a.mrc"))
    >>> a == run_fingerprint(Job("lowmag", "b.mrc", out="x.json")), a == run_fingerprint(Job("medmag", "a.mrc"))
    (True, False)
    """
    from dataclasses import asdict

    from . import __version__

    return json.dumps({"ptolemy_rt": __version__, "kind": job.kind, "models": _model_identity(job.models),
                       "section": job.section, "options": asdict(job.options), "output": asdict(job.output)},
                      sort_keys=True, default=repr, separators=(",", ":"))


def _model_identity(name: str | None) -> list:
    """[set name, sha256 of its manifest.json] of a model set that loads; the given name
    otherwise (the set is loaded, hence verified, before a batch runs)."""
    import hashlib

    try:
        ms = model_set(name)
        root = getattr(ms, "root", None)
        if root is None:
            return [name, None]
        return [ms.name, hashlib.sha256((Path(root) / "manifest.json").read_bytes()).hexdigest()]
    except (PtolemyError, OSError):
        return [name, None]


def settings_id(job: Job) -> str:
    """A short hash (16 hex digits) of `run_fingerprint`: the ``settings`` column of summary.csv.

    Parameters
    ----------
    job : Job

    Returns
    -------
    str

    Examples
    --------
    >>> a, b = settings_id(Job("lowmag", "a.mrc")), settings_id(Job("lowmag", "a.mrc", section=1))
    >>> len(a), a == b
    (16, False)
    """
    import hashlib

    return hashlib.sha256(run_fingerprint(job).encode("utf-8")).hexdigest()[:16]


def _up_to_date(outputs: list[str], input_path: str) -> bool:
    """True when every output exists and is newer than the input."""
    try:
        t_in = os.path.getmtime(input_path)
    except OSError:
        return False
    for o in outputs:
        try:
            if os.path.getmtime(o) <= t_in:
                return False
        except OSError:
            return False
    return True


def missing_folders(folder) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, outermost first (what
    ``mkdir -p`` would create), so that a failed run can remove the ones it made.

    Parameters
    ----------
    folder : str or os.PathLike

    Returns
    -------
    list of pathlib.Path

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> [p.name for p in missing_folders(os.path.join(d, "a", "b"))], missing_folders(d)
    (['a', 'b'], [])
    >>> os.rmdir(d)
    """
    missing = []
    p = Path(folder)
    while True:
        try:
            if p.exists():
                break
        except OSError:
            break
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    return missing[::-1]


def remove_empty_folders(folders) -> None:
    """Remove these folders (deepest first) where they are empty; errors are ignored.

    Parameters
    ----------
    folders : iterable of str or PathLike
        Folders in the order they were created (parents first).

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> made = [d / "a", d / "a" / "b", d / "c"]
    >>> for f in made: f.mkdir()
    >>> _ = (d / "c" / "keep.txt").write_text("x")
    >>> remove_empty_folders(made)
    >>> sorted(p.name for p in d.iterdir())  # a/b and a went; c holds a file
    ['c']
    >>> (d / "c" / "keep.txt").unlink(); (d / "c").rmdir(); d.rmdir()
    """
    for f in reversed(list(folders)):
        try:
            os.rmdir(f)
        except OSError:
            pass


def _prepare_dir(d: str, what: str) -> None:
    p = Path(d)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{d}: {what} must be a folder, but a file has that name") from None
    except OSError as e:
        raise OutputError(f"{d}: cannot create {what} ({e.strerror or e})") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise OutputError(f"{d}: {what} is not writable")


# ------------------------------------------------------------------- progress


class Progress:
    """Text progress on stderr: a redrawn bar on a terminal, one line per input otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None):
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self._drawn = False

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False

    def message(self, line: str) -> None:
        """A one-line message (error/warning) that does not collide with the bar."""
        self._clear()
        self.stream.write(line + "\n")
        self.stream.flush()
        self._draw_bar()

    def step(self, outcome: Outcome) -> None:
        self.done += 1
        if self.tty:
            self._clear()
            self._draw_bar(Path(outcome.input).name)
        else:
            self.stream.write(f"[{self.done}/{self.total}] {_describe(outcome)}\n")
            self.stream.flush()

    def _draw_bar(self, name: str = "") -> None:
        if not self.tty or self.total == 0:
            return
        width = 30
        fill = int(round(width * self.done / self.total))
        self.stream.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} {name}"[:200])
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _describe(o: Outcome) -> str:
    if o.status == "failed":
        return f"{o.input}: failed"
    if o.status == "skipped":
        return f"{o.input}: skipped (result is newer than the input and made with the same settings)"
    if o.status == "interrupted":
        return f"{o.input}: interrupted"
    best = f", best score {o.best_score:.3f}" if o.best_score is not None else ""
    return f"{o.input}: {o.n_targets} targets{best}, {o.seconds:.1f} s"


# ---------------------------------------------------------------------- batch


def _previous_summary(path: Path) -> dict[str, dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return {row["input"]: row for row in csv.DictReader(f) if row.get("input")}
    except (OSError, csv.Error, KeyError, UnicodeDecodeError):
        return {}


def _skipped_outcome(job: Job, previous: dict[str, dict]) -> Outcome:
    """An Outcome for an up-to-date input, with counts from the existing result (JSON) or
    the previous summary."""
    o = Outcome(job.input, "skipped")
    if job.output.fmt in ("json", "json-full") and job.out:
        try:
            data = json.loads(Path(job.out).read_text(encoding="utf-8"))
            its = data["items"] if isinstance(data, dict) else data
            o.n_targets = len(its)
            o.best_score = max((float(d["score"]) for d in its), default=None)
            return o
        except (OSError, ValueError, KeyError, TypeError):
            pass
    row = previous.get(job.input)
    if row and row.get("status") in ("ok", "skipped"):
        try:
            o.n_targets = int(row["n_targets"]) if row.get("n_targets") else None
            o.best_score = float(row["best_score"]) if row.get("best_score") else None
        except ValueError:
            pass
    return o


def summary_text(outcomes: list[Outcome]) -> str:
    """The text of summary.csv.

    Parameters
    ----------
    outcomes : list of Outcome
        In input order.

    Returns
    -------
    str
        A header (`SUMMARY_COLUMNS`) and one row per outcome: best_score as repr, seconds
        with 3 decimals, empty cells for unknown values; settings: `settings_id` of the
        run that made an ok or skipped result.

    Examples
    --------
    >>> print(summary_text([Outcome("a.mrc", "ok", 2, 0.75, 1.23456, settings="0123456789abcdef"),
    ...                     Outcome("b.mrc", "failed", error="b.mrc: not an MRC file")]), end="")
    input,status,n_targets,best_score,seconds,error,settings
    a.mrc,ok,2,0.75,1.235,,0123456789abcdef
    b.mrc,failed,,,,b.mrc: not an MRC file,
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_COLUMNS)
    for o in outcomes:
        w.writerow([
            o.input, o.status,
            "" if o.n_targets is None else o.n_targets,
            "" if o.best_score is None else repr(float(o.best_score)),
            "" if o.seconds is None else f"{o.seconds:.3f}",
            o.error, o.settings,
        ])
    return buf.getvalue()


def run_batch(job: Job, inputs: list[str], out_dir: str, *, plot_dir: str | None = None, jobs: int = 1,
              force: bool = False, stream: TextIO | None = None) -> int:
    """Process many inputs into `out_dir` and write its summary.csv.

    Each input runs as `job` with its input, result path (out_dir/STEM.EXT) and plot path
    (plot_dir/STEM.png) filled in, on `jobs` worker processes; inputs whose outputs are
    newer and were made with the same settings (summary.csv's settings column, see the
    module docstring) are skipped unless `force`. Progress and one-line errors go to `stream`.

    Parameters
    ----------
    job : Job
        The template (kind, models, options, output).
    inputs : list of str
        Input files (see `expand_inputs`); their stems must differ.
    out_dir : str
        Output folder, created when missing.
    plot_dir : str or None
        Overlay PNG folder, or None for no plots.
    jobs : int
        Worker processes (1: in this process).
    force : bool
        Rerun up-to-date inputs.
    stream : text stream or None
        Where progress goes (None: stderr).

    Returns
    -------
    int
        0 when every input is ok or skipped, 6 (`EXIT_PARTIAL`) when some failed.

    Raises
    ------
    KeyboardInterrupt
        (`interrupt.Interrupted`) after a stopping signal: the workers are stopped and
        summary.csv (unfinished inputs "interrupted") is written first.
    OutputError
        A folder cannot be created or written.
    UsageProblem
        Two inputs would write the same result file.

    Examples
    --------
    >>> import io, os, shutil, tempfile
    >>> d = tempfile.mkdtemp()
    >>> bad = os.path.join(d, "bad.mrc")
    >>> with open(bad, "wb") as f:
    ...     _ = f.write(b"not an mrc")
    >>> log = io.StringIO()
    >>> run_batch(Job("lowmag", bad), [bad], os.path.join(d, "out"), stream=log)
    6
    >>> log.getvalue().splitlines()[-1].split(";")[0]
    'ptolemy: 0 done, 0 skipped, 1 failed'
    >>> shutil.rmtree(d)
    """
    from .output import write_atomic

    fmt = job.output.fmt
    stream = stream or sys.stderr
    stems: dict[str, str] = {}
    for f in inputs:  # before any folder is made: a refused batch creates nothing
        s = Path(f).stem
        if s in stems:
            raise UsageProblem(f"{f} and {stems[s]} would both write {s}{EXTENSIONS[fmt]}; process them separately")
        stems[s] = f
    made = missing_folders(out_dir)
    _prepare_dir(out_dir, "output folder (-o)")
    if plot_dir is not None:
        try:
            _prepare_dir(plot_dir, "plot folder (--plot)")
        except OutputError:
            remove_empty_folders(made)  # a refused batch leaves no folder behind
            raise
    summary_path = Path(out_dir) / SUMMARY_NAME
    previous = _previous_summary(summary_path)
    made_with = {Path(k).stem: r.get("settings") for k, r in previous.items() if r.get("status") in ("ok", "skipped")}
    settings = settings_id(job)

    all_jobs = [replace(job, input=f, out=result_path(out_dir, f, fmt),
                        plot=plot_path(plot_dir, f) if plot_dir else None) for f in inputs]
    outcomes: list[Outcome | None] = [None] * len(all_jobs)
    todo: list[int] = []
    for i, job in enumerate(all_jobs):
        outs = [job.out] + ([job.plot] if job.plot else [])
        if not force and made_with.get(Path(job.input).stem) == settings and _up_to_date(outs, job.input):
            outcomes[i] = _skipped_outcome(job, previous)
        else:
            todo.append(i)

    progress = Progress(len(all_jobs), stream)

    def report(o: Outcome) -> None:
        for n in o.notes:
            progress.message(f"ptolemy: warning: {n}")
        if o.status == "failed":
            progress.message(f"ptolemy: error: {o.error}")
        elif o.reason:
            progress.message(f"ptolemy: note: {o.input}: {o.reason}")
        progress.step(o)

    stopped: KeyboardInterrupt | None = None
    try:
        for i, o in enumerate(outcomes):
            if o is not None:
                report(o)
        if todo and jobs > 1 and len(todo) > 1:
            _run_pool(all_jobs, todo, outcomes, min(jobs, len(todo)), report)
        else:
            for i in todo:
                outcomes[i] = run_one(all_jobs[i])
                report(outcomes[i])
    except KeyboardInterrupt as e:  # `interrupt.Interrupted` (or Ctrl-C): keep what finished
        stopped = e
    from .interrupt import received, signal_name

    why = f"interrupted by {signal_name(received())}" if received() is not None else "interrupted"
    final = [o if o is not None else Outcome(all_jobs[i].input, "interrupted", error=why)
             for i, o in enumerate(outcomes)]
    with contextlib.suppress(Exception):
        progress.close()
    for o in final:
        if o.status in ("ok", "skipped"):
            o.settings = settings
    # written even after a signal (a second one within interrupt.GRACE_S is only recorded)
    write_atomic(summary_path, summary_text(final))
    failed = sum(o.status == "failed" for o in final)
    ok = sum(o.status == "ok" for o in final)
    skipped = sum(o.status == "skipped" for o in final)
    unfinished = sum(o.status == "interrupted" for o in final)
    stop = f", {unfinished} interrupted" if stopped is not None else ""
    stream.write(f"ptolemy: {ok} done, {skipped} skipped, {failed} failed{stop}; summary in {summary_path}\n")
    stream.flush()
    if stopped is not None:
        raise stopped
    return EXIT_PARTIAL if failed else EXIT_OK


def _run_pool(all_jobs, todo, outcomes, n_workers, report) -> None:
    """Run the jobs in `todo` on `n_workers` processes (spawned: safe with threaded runtimes
    and identical on Windows); outcomes are stored by input index. Workers leave signals to
    the parent (`interrupt.worker_setup`); when the parent is interrupted (KeyboardInterrupt /
    `interrupt.Interrupted`) it cancels what has not started and stops the workers
    (`_stop_workers`) before the exception goes on."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from .interrupt import Interrupted, received

    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx,
                               initializer=_worker_init, initargs=(n_workers,))
    futs: dict = {}
    try:
        for i in todo:
            futs[pool.submit(run_one, all_jobs[i])] = i
        for fut in as_completed(futs):
            i = futs[fut]
            try:
                outcomes[i] = fut.result()
            except Exception as e:  # worker died (e.g. killed for memory, or by the same signal)
                if received() is not None:
                    raise Interrupted(received()) from None
                outcomes[i] = Outcome(all_jobs[i].input, "failed",
                                      error=_one_line(f"{all_jobs[i].input}: worker process failed: {type(e).__name__}: {e}"),
                                      exit_code=EXIT_INTERNAL)
            report(outcomes[i])
    except BaseException:
        _stop_workers(pool)
        # results that arrived while the loop was being interrupted still count
        for fut, i in futs.items():
            if outcomes[i] is None and fut.done() and not fut.cancelled() and fut.exception() is None:
                outcomes[i] = fut.result()
                report(outcomes[i])
        raise
    pool.shutdown(wait=True)


def _stop_workers(pool) -> None:
    """Cancel the pool's queued jobs, SIGTERM its workers (they remove their temporary files
    and exit), SIGKILL those still alive after STOP_WAIT_S, and wait for them: no worker
    outlives the batch."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    with contextlib.suppress(Exception):
        pool.shutdown(wait=False, cancel_futures=True)
    for pr in procs:
        with contextlib.suppress(Exception):
            pr.terminate()
    deadline = time.monotonic() + STOP_WAIT_S
    for pr in procs:
        with contextlib.suppress(Exception):
            pr.join(max(0.0, deadline - time.monotonic()))
    for pr in procs:
        with contextlib.suppress(Exception):
            if pr.is_alive():
                pr.kill()
                pr.join(2.0)


def _worker_init(n_workers: int) -> None:
    """Worker set-up: signals to the parent (`interrupt.worker_setup`: SIGINT ignored, SIGTERM
    stops the worker cleanly, SIGTERM when the parent dies), and share the CPU cores between
    the workers (numba / BLAS threads; PTOLEMY_THREADS for the ONNX Runtime sessions)."""
    from .interrupt import worker_setup

    worker_setup()
    per = max(1, (os.cpu_count() or 1) // n_workers)
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(per))
    os.environ.setdefault("PTOLEMY_THREADS", str(per))


def _one_line(s: str) -> str:
    return " ".join(str(s).split())
