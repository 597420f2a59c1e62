"""Model sets: folders ``onnx_models/<NAME>/`` holding ONNX parts and a ``manifest.json``
(the format is defined once, as typed classes, in ptolemy_rt/modelspec.py).

``load_model_set(name)`` parses and validates the manifest (every key, at load), verifies
the sha256 of every part and returns a ``ModelSet``: ``.spec`` is the typed manifest
(`modelspec.ModelSetSpec`), ``.model(key)`` one typed model entry, ``.session(key, role)``
a cached ONNX Runtime session (CPU). Problems raise ``ModelSetError`` with a one-line
message naming the file (and the manifest key) and the command that builds the set.

Where sets are found (`models_roots`, first folder holding ``<NAME>/`` wins): env
``PTOLEMY_MODELS_DIR`` when set, and then only there (an explicit override: tests, or a
facility that keeps every set in one folder); otherwise
1. the package's own sets: ``ptolemy_rt/model_sets/`` in an installed wheel, ``<repo>/onnx_models``
   in a checkout;
2. the per-user data folder (`user_models_dir`): ``$XDG_DATA_HOME/ptolemy-rt/models`` (default
   ``~/.local/share/ptolemy-rt/models``), on Windows ``%LOCALAPPDATA%\\ptolemy-rt\\models``;
   ``ptolemy models convert-published`` writes there.
Default set: ``ptolemy-rt-synth-v2`` when it is found, else ``ptolemy-2022``
(``ptolemy-rt-synth-v1``, the set v2 was made from, stays loadable by name).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import tempfile
import threading
from pathlib import Path

from .errors import ModelSetError
from .modelspec import MODEL_KEYS, ModelSetSpec, read_manifest

PUBLISHED_SET = "ptolemy-2022"
OWN_SET = "ptolemy-rt-synth-v2"

_CACHE: dict = {}
_LOCK = threading.Lock()


def package_models_dir() -> Path:
    """The package's own model sets: ``ptolemy_rt/model_sets`` in an installed wheel, else (a
    checkout) ``<repo>/onnx_models``.

    Returns
    -------
    pathlib.Path
        Absolute folder (it may not exist).

    Examples
    --------
    >>> root = package_models_dir()
    >>> root.name in ("model_sets", "onnx_models"), (root / OWN_SET / "manifest.json").is_file()
    (True, True)
    """
    here = Path(__file__).resolve().parent
    packaged = here / "model_sets"
    return packaged if packaged.is_dir() else here.parent / "onnx_models"


def user_models_dir() -> Path:
    r"""Per-user model-set folder: %LOCALAPPDATA%\ptolemy-rt\models on Windows, else
    $XDG_DATA_HOME/ptolemy-rt/models (XDG default ~/.local/share).

    Returns
    -------
    pathlib.Path
        The folder (not created here; ``ptolemy models convert-published`` writes there).

    Examples
    --------
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"XDG_DATA_HOME": "/data", "LOCALAPPDATA": "/data"}):
    ...     user_models_dir() == Path("/data") / "ptolemy-rt" / "models"
    True
    """
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base.expanduser() / "ptolemy-rt" / "models"


def models_roots() -> list[Path]:
    """The folders searched for model sets, in order (module docstring).

    Returns
    -------
    list of pathlib.Path
        [PTOLEMY_MODELS_DIR] when that variable is set; else [`package_models_dir`,
        `user_models_dir`].

    Examples
    --------
    >>> import tempfile
    >>> from unittest import mock
    >>> with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"PTOLEMY_MODELS_DIR": d}):
    ...     models_roots() == [Path(d).resolve()]
    True
    >>> with mock.patch.dict(os.environ):
    ...     _ = os.environ.pop("PTOLEMY_MODELS_DIR", None)
    ...     models_roots() == [package_models_dir().resolve(), user_models_dir()]
    True
    """
    env = os.environ.get("PTOLEMY_MODELS_DIR")
    if env:
        return [Path(env).expanduser().resolve()]
    return [package_models_dir().resolve(), user_models_dir()]


def models_root() -> Path:
    """The first folder searched (PTOLEMY_MODELS_DIR when set, else the package's own sets).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> models_root() == models_roots()[0]
    True
    """
    return models_roots()[0]


def in_checkout() -> bool:
    """True when running from a source checkout (a Makefile and export/ beside the package).

    Returns
    -------
    bool

    Examples
    --------
    A checkout keeps its sets in ``onnx_models``, an installed wheel in ``model_sets``:

    >>> in_checkout() == (package_models_dir().name == "onnx_models")
    True
    """
    repo = Path(__file__).resolve().parent.parent
    return (repo / "Makefile").is_file() and (repo / "export").is_dir()


def build_command(name: str) -> str:
    """The command that (re)builds model set ``name`` where the user is (checkout or install).

    Parameters
    ----------
    name : str
        A model-set name.

    Returns
    -------
    str
        A shell command: in a checkout the make target; in an installed package
        ``ptolemy models convert-published --weights DIR`` for the published set (it writes
        where the loader looks: the per-user folder, or PTOLEMY_MODELS_DIR when set) and, for
        the own set (which ships in the wheel), reinstalling the wheel with no network.

    Examples
    --------
    In a checkout (`in_checkout`):

    >>> build_command(PUBLISHED_SET), build_command(OWN_SET)
    ('make models', 'make train')

    In an installed wheel:

    >>> from unittest import mock
    >>> with mock.patch(__name__ + ".in_checkout", return_value=False):
    ...     print(build_command(PUBLISHED_SET)); print(build_command(OWN_SET))  # doctest: +ELLIPSIS
    ptolemy models convert-published --weights DIR
    pip install --force-reinstall --no-deps ptolemy_rt-...-*.whl
    """
    if in_checkout():
        return "make models" if name == PUBLISHED_SET else "make train"
    if name == PUBLISHED_SET:
        return "ptolemy models convert-published --weights DIR"
    from . import __version__

    return f"pip install --force-reinstall --no-deps ptolemy_rt-{__version__}-*.whl"


def available_sets(root: Path | None = None) -> list[str]:
    """Names of the model sets found, sorted: folders holding a manifest.json.

    Parameters
    ----------
    root : pathlib.Path or None
        The one folder to list; None: every folder of `models_roots`.

    Returns
    -------
    list of str

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for name in ("b-set", "a-set", "no-manifest"):
    ...         (Path(d) / name).mkdir()
    ...     _ = (Path(d) / "b-set" / "manifest.json").write_text("{}")
    ...     _ = (Path(d) / "a-set" / "manifest.json").write_text("{}")
    ...     available_sets(Path(d))
    ['a-set', 'b-set']
    >>> OWN_SET in available_sets(package_models_dir())
    True
    """
    roots = models_roots() if root is None else [Path(root)]
    names = set()
    for r in roots:
        if r.is_dir():
            names.update(p.name for p in r.iterdir() if (p / "manifest.json").is_file())
    return sorted(names)


def find_set_folder(name: str) -> Path | None:
    """The folder of model set ``name``: the first ``<root>/<name>`` of `models_roots` that is a
    folder, or None.

    Parameters
    ----------
    name : str

    Returns
    -------
    pathlib.Path or None

    Examples
    --------
    >>> import tempfile
    >>> from unittest import mock
    >>> with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"PTOLEMY_MODELS_DIR": d}):
    ...     (Path(d) / "mine").mkdir()
    ...     find_set_folder("mine") == Path(d).resolve() / "mine", find_set_folder("other")
    (True, None)
    """
    for r in models_roots():
        if (r / name).is_dir():
            return r / name
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ModelSet:
    """A verified model set.

    Attributes
    ----------
    name : str
        Set name (its folder's name).
    root : Path
        The set's folder.
    spec : modelspec.ModelSetSpec
        The parsed, validated manifest; ``model(key)`` is ``spec.models.<key>``.
    """

    def __init__(self, name: str, root: Path, spec: ModelSetSpec):
        self.name = name
        self.root = Path(root)
        self.spec = spec
        self._sessions: dict = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ModelSet({self.name!r}, root={str(self.root)!r})"

    def has(self, key: str) -> bool:
        """True when the set holds model ``key`` (one of MODEL_KEYS)."""
        return key in MODEL_KEYS and getattr(self.spec.models, key) is not None

    def model(self, key: str):
        """The typed entry of model ``key`` (``.architecture``, ``.parts``, ``.source``).

        Raises
        ------
        ModelSetError
            The set has no such model.
        """
        if not self.has(key):
            raise ModelSetError(
                f"{self.root / 'manifest.json'}: model set {self.name!r} has no model {key!r}; "
                f"rebuild it with `{build_command(self.name)}`")
        return getattr(self.spec.models, key)

    def part_path(self, key: str, role: str) -> Path:
        """File of part ``role`` of model ``key``.

        Raises
        ------
        ModelSetError
            No such model or part.
        """
        parts = self.model(key).parts
        if role not in parts:
            raise ModelSetError(
                f"{self.root / 'manifest.json'}: model {key!r} of set {self.name!r} has no part {role!r}; "
                f"rebuild it with `{build_command(self.name)}`")
        return self.root / parts[role].file

    def session(self, key: str, role: str):
        """onnxruntime.InferenceSession for one part (CPU, all cores, cached per (key, role))."""
        k = (key, role)
        with self._lock:
            s = self._sessions.get(k)
            if s is None:
                s = self._sessions[k] = _make_session(self.part_path(key, role), self.name)
            return s


def _parts(spec: ModelSetSpec):
    """(key, role, part) of every part of the set."""
    for key in MODEL_KEYS:
        entry = getattr(spec.models, key)
        if entry is not None:
            for role, part in entry.parts.items():
                yield key, role, part


def _n_threads() -> int:
    """Intra-op threads: env ``PTOLEMY_THREADS`` (set by the batch runner for its workers)
    when it is a positive integer, else os.cpu_count() capped by the CPUs this process may
    run on (containers, taskset)."""
    env = os.environ.get("PTOLEMY_THREADS", "").strip()
    if env:
        try:
            if int(env) >= 1:
                return int(env)
        except ValueError:
            pass
    n = os.cpu_count() or 1
    try:
        n = min(n, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        pass
    return max(1, n)


_ENV_ARENA = False
_ENV_ARENA_LOCK = threading.Lock()


def _env_arena(ort) -> bool:
    """Register one process-wide CPU arena (once) that every session shares
    (``session.use_env_allocators``): the peak is the largest single run's instead of the
    sum of every session's own peak. Growth is kSameAsRequested (no power-of-two
    over-allocation). False when this onnxruntime build cannot do it (sessions then use
    their own arenas)."""
    global _ENV_ARENA
    with _ENV_ARENA_LOCK:
        if _ENV_ARENA:
            return True
        try:
            mem = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                    ort.OrtMemType.DEFAULT)
            cfg = ort.OrtArenaCfg({"arena_extend_strategy": 1,  # kSameAsRequested
                                   "initial_chunk_size_bytes": 1 << 20,
                                   "max_dead_bytes_per_chunk": 1 << 20})
            ort.create_and_register_allocator(mem, cfg)
            _ENV_ARENA = True
        except Exception:  # noqa: BLE001 - older builds: per-session arenas
            _ENV_ARENA = False
        return _ENV_ARENA


_MALLOC_TUNED = False
#: Memory policy of this process: "bounded" (one-shot runs: buffers go back to the OS after
#: each stage, so the stage peaks do not add up) or "warm" (a long-lived server: buffers are
#: kept for the next request, no page faults on reuse). Set once by `keep_memory_warm`.
_MEMORY_POLICY = "bounded"
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc mallopt parameters


def _mallopt(settings) -> None:
    """glibc ``mallopt(param, value)`` for each pair; nothing on other C libraries."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        for param, value in settings:
            libc.mallopt(ctypes.c_int(param), ctypes.c_int(value))
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to tune
        pass


def _tune_malloc() -> None:
    """glibc only, once per process, for the "bounded" policy: allocations of ≥ 1 MiB always
    come from mmap, so a freed large buffer (an arena chunk released by arena shrinkage, a big
    numpy temporary) goes back to the OS at once. By default glibc raises that threshold up
    to 32 MiB after the first large free and then keeps such buffers in its heap, where the
    peak of one stage (the U-Net strips) stays resident under the next (classifier,
    regions). Env ``PTOLEMY_MALLOC_TUNE=0`` leaves malloc alone; the "warm" policy
    (`keep_memory_warm`) tunes it the other way."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED or os.environ.get("PTOLEMY_MALLOC_TUNE", "1") == "0":
        return
    _MALLOC_TUNED = True
    _mallopt([(_M_MMAP_THRESHOLD, 1 << 20)])


def keep_memory_warm() -> None:
    """Switch this process to the "warm" memory policy (`ptolemy serve`): a server runs the
    same pipeline on image after image, and returning every stage's buffers to the OS means
    page faults on every request (measured: ~80 000 minor faults, ~10 % of one 1024×1440
    medium-mag request with the own set). Under "warm", glibc keeps buffers below 32 MiB in
    its heap and trims only above 512 MiB of free top, and the U-Net no longer shrinks the
    onnxruntime arena after its runs (`memory_policy`): the process holds the peak of one
    request (a few hundred MB) between requests instead of faulting it in again.

    Examples
    --------
    A fresh process switched to it (switching this one would change the doctests after it):

    >>> import subprocess, sys
    >>> code = "from ptolemy_rt import models; models.keep_memory_warm(); print(models.memory_policy())"
    >>> subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    'warm'
    """
    global _MEMORY_POLICY, _MALLOC_TUNED
    _MEMORY_POLICY = "warm"
    _MALLOC_TUNED = True  # the bounded tuning must not run later
    if os.environ.get("PTOLEMY_MALLOC_TUNE", "1") != "0":
        _mallopt([(_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 512 << 20), (_M_TOP_PAD, 64 << 20)])


def memory_policy() -> str:
    """This process's memory policy: "bounded" (default) or "warm" (`keep_memory_warm`).

    Examples
    --------
    >>> memory_policy()
    'bounded'
    """
    return _MEMORY_POLICY


_ORT_LOG_LINE = re.compile(r"^(\x1b\[[0-9;]*m)?\d{4}-\d\d-\d\d [0-9:.]+ \[[VIWEF]:onnxruntime:")


@contextlib.contextmanager
def _native_warnings_dropped():
    """Drop onnxruntime's own log lines from stderr (fd 2) while onnxruntime is imported.

    Importing onnxruntime makes its environment, which logs some warnings before any
    severity setting can apply, e.g. the coloured "Failed to persist telemetry device ID" when
    the user's cache folder cannot be written. Its errors come as Python exceptions (reported
    in one line by `_make_session`), so its log lines are not needed; any other text written
    to fd 2 meanwhile is passed on. PTOLEMY_DEBUG=1 keeps everything."""
    if os.environ.get("PTOLEMY_DEBUG") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        tmp = tempfile.TemporaryFile()
        os.dup2(tmp.fileno(), 2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        try:
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
        finally:
            tmp.close()
        kept = [ln for ln in text.splitlines(keepends=True) if not _ORT_LOG_LINE.match(ln)]
        if kept:
            with contextlib.suppress(Exception):
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _make_session(path: Path, set_name: str):
    with _native_warnings_dropped():  # importing onnxruntime makes its environment, which may warn
        import onnxruntime as ort

    _tune_malloc()
    ort.set_default_logger_severity(3)  # onnxruntime's process-wide logger (not the session's)

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = _n_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    # no memory pattern: with it, the second run of a session allocates one new block for
    # all its tensors while the first run's chunks stay in the arena (peak RSS ×2)
    opts.enable_mem_pattern = os.environ.get("PTOLEMY_ORT_MEM_PATTERN", "0") == "1"
    # worker threads sleep instead of spinning between runs: on a shared (loaded) machine
    # spinning steals CPU from the thread doing the work
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if _env_arena(ort):
        opts.add_session_config_entry("session.use_env_allocators", "1")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - report as a model-set problem in one line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelSetError(f"{path}: cannot be loaded by onnxruntime ({msg}); "
                            f"rebuild the set with `{build_command(set_name)}`") from None


def _hidden_by_env(name: str) -> Path | None:
    """The folder of set `name` in the default search when PTOLEMY_MODELS_DIR (which replaces
    that search) is set, else None."""
    if not os.environ.get("PTOLEMY_MODELS_DIR"):
        return None
    for root in (package_models_dir(), user_models_dir()):
        if (root / name / "manifest.json").is_file():
            return root / name
    return None


def _stamp(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _verify(name: str, folder: Path) -> ModelSetSpec:
    cmd = build_command(name)
    mpath = folder / "manifest.json"
    missing_hint = f"; build the model set {name!r} with `{cmd}`"
    if not mpath.is_file():
        raise ModelSetError(f"{mpath}: missing{missing_hint}")
    spec = read_manifest(mpath, hint=f"; rebuild it with `{cmd}`")
    for key, role, part in _parts(spec):
        path = folder / part.file
        if not path.is_file():
            raise ModelSetError(f"{path}: missing (part {key}/{role} of model set {name!r}); "
                                f"rebuild it with `{cmd}`")
        if _sha256(path) != part.sha256:
            raise ModelSetError(f"{path}: corrupt (sha256 differs from the manifest; part {key}/{role} "
                                f"of model set {name!r}); rebuild it with `{cmd}`")
    return spec


def _stamps(folder: Path, spec: ModelSetSpec) -> tuple:
    files = [folder / "manifest.json"] + [folder / part.file for _, _, part in _parts(spec)]
    return tuple((str(f), _stamp(f)) for f in files)


def load_model_set(name: str | None = None) -> ModelSet:
    """Load and verify model set ``name`` (None: the default set, see module docstring).

    The manifest is parsed and validated here, once (`modelspec.read_manifest`): an unknown
    key or a bad value is an error now, not in the middle of a run. Every part's sha256 is
    checked. Loaded sets are cached while their files are unchanged (size, mtime, inode),
    so repeated calls reuse the sessions.

    Parameters
    ----------
    name
        Set name (a folder under one of `models_roots`), or None for the default set.

    Returns
    -------
    ModelSet

    Raises
    ------
    ModelSetError
        Unknown name; manifest missing, unreadable or invalid (the message names the file
        and the key); a part missing or corrupt.

    Examples
    --------
    >>> ms = load_model_set(OWN_SET)
    >>> ms.name, ms.spec.pipeline.lattice, load_model_set(OWN_SET) is ms  # cached
    ('ptolemy-rt-synth-v2', 'oblique', True)

    A folder with an invalid manifest, and a name that is not there:

    >>> import tempfile
    >>> from unittest import mock
    >>> with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"PTOLEMY_MODELS_DIR": d}):
    ...     (Path(d) / "broken").mkdir()
    ...     _ = (Path(d) / "broken" / "manifest.json").write_text("{}")
    ...     for name in ("broken", "absent"):
    ...         try:
    ...             load_model_set(name)
    ...         except ModelSetError as e:
    ...             print(str(e).replace(str(Path(d).resolve()), "DIR"))
    DIR/broken/manifest.json: format_version: missing; rebuild it with `make train`
    DIR/absent: unknown model set 'absent' (available: broken; searched DIR); check the name (`ptolemy models list`)

    PTOLEMY_MODELS_DIR replaces the search, so a set found only elsewhere is named:

    >>> with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"PTOLEMY_MODELS_DIR": d}):
    ...     try:
    ...         load_model_set(OWN_SET)
    ...     except ModelSetError as e:
    ...         print(str(e).split("); ")[1].split(";")[0].replace(str(package_models_dir()), "PKG"))
    it is in PKG/ptolemy-rt-synth-v2, which PTOLEMY_MODELS_DIR hides: unset PTOLEMY_MODELS_DIR or copy that folder into it
    """
    if name is None:
        name = OWN_SET if find_set_folder(OWN_SET) is not None else PUBLISHED_SET
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ModelSetError(f"{models_root()}: invalid model set name {name!r}")
    folder = find_set_folder(name)
    if folder is None:
        roots = models_roots()
        avail = available_sets()
        listing = ", ".join(avail) if avail else "none"
        hidden = _hidden_by_env(name)
        known = name in (PUBLISHED_SET, OWN_SET)
        hint = f"build it with `{build_command(name)}`" if known else "check the name (`ptolemy models list`)"
        if hidden is not None:  # PTOLEMY_MODELS_DIR replaces the search: the set is elsewhere
            hint = (f"it is in {hidden}, which PTOLEMY_MODELS_DIR hides: unset PTOLEMY_MODELS_DIR or copy that "
                    "folder into it" + (f"; or {hint}" if known else ""))
        raise ModelSetError(f"{roots[0] / name}: unknown model set {name!r} (available: {listing}; searched "
                            f"{os.pathsep.join(str(r) for r in roots)}); {hint}")
    with _LOCK:
        cached = _CACHE.get(str(folder))
        if cached is not None:
            ms, stamps = cached
            if _stamps(folder, ms.spec) == stamps:
                return ms
        spec = _verify(name, folder)
        ms = ModelSet(name, folder, spec)
        _CACHE[str(folder)] = (ms, _stamps(folder, spec))
        return ms
