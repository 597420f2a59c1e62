"""Writing output files: the one writer for every file the tool writes.

Pure Python (no numpy) so that the command line starts fast.

What a write does, by what the output path names:

- a new file or an existing regular file: the data goes to a short-named temporary file in
  the same folder (``.ptolemy-XXXXXXXX.tmp``, so that a legal 255-byte output name still
  works), is flushed and fsynced, gets the existing file's permission bits (a new file:
  ``0666 & ~umask``, as ``open`` would give), and is renamed over the path: readers see the
  old file or the new one, never a part, and a failure leaves nothing behind;
- a symbolic link: the same on the link's resolved target (the link stays a link);
- a character or block device (``/dev/null``, a terminal) or a FIFO, also through a link
  (``/dev/stdout`` when it is a pipe or a terminal): written directly, like a shell
  redirection (a FIFO blocks until it has a reader); such a write cannot be atomic;
- a directory, a socket, an input the caller protects: refused with `OutputError`.

`commit_outputs` writes several files "together or none": every temporary first, then all
the renames; a failure before the renames leaves no output, and a rename that fails rolls
back the ones already made.

Every failure is an `OutputError` whose message is one line naming the path.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

from .errors import OutputError

PathLike = Union[str, os.PathLike]
Data = Union[str, bytes]

TEMP_PREFIX = ".ptolemy-"
TEMP_SUFFIX = ".tmp"


# --------------------------------------------------------------------------- checks


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when two paths name the same file, existing or not (symlinks followed).

    Parameters
    ----------
    a, b : str or os.PathLike
        The two paths.

    Returns
    -------
    bool
        Same inode when both exist, else the same resolved path.

    Examples
    --------
    >>> same_file("x/../y.json", "y.json")
    True
    """
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


@dataclass(frozen=True)
class _Target:
    """Where and how an output path is written.

    given: the path as the caller named it (for messages); target: the file written (the
    resolved target of a symlink, else `given`); direct: written in place (device, FIFO);
    st: the target's os.stat result, None when it does not exist yet."""

    given: Path
    target: Path
    direct: bool
    st: os.stat_result | None


def _parent(p: Path) -> Path:
    return p.parent if str(p.parent) else Path(".")


def _resolve(path: PathLike, protect: Iterable[PathLike] = ()) -> _Target:
    """Check `path` (see check_output_path) and say how it is written."""
    p = Path(path)
    for q in protect:
        if same_file(p, q):
            raise OutputError(f"{p}: refusing to overwrite the input file {q}; choose another output name")
    try:
        st = os.stat(p)  # what the path finally names (symlinks followed)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OutputError(f"{p}: cannot write (symbolic link loop)") from None
        raise OutputError(f"{p}: cannot write ({e.strerror or e})") from None
    if st is not None:
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            raise OutputError(f"{p}: is a directory; give a file name")
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            if not os.access(p, os.W_OK):
                raise OutputError(f"{p}: cannot write (permission denied)")
            return _Target(p, p, True, st)  # opened through the link: /dev/stdout works too
        if not stat.S_ISREG(mode):
            raise OutputError(f"{p}: cannot write (not a regular file, device or FIFO)")
    target = p
    if os.path.islink(p):
        target = Path(os.path.realpath(p))
    parent = _parent(target)
    if not parent.exists():
        raise OutputError(f"{p}: cannot write (folder {parent} does not exist)")
    if not parent.is_dir():
        raise OutputError(f"{p}: cannot write ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: cannot write (folder {parent} is not writable)")
    return _Target(p, target, False, st)


def check_output_path(path: PathLike, protect: Iterable[PathLike] = ()) -> None:
    """Fail early when `path` cannot be written (what `write_atomic` would refuse).

    Parameters
    ----------
    path : str or os.PathLike
        The output path: a new or regular file, a symlink (its target is checked), a device
        or a FIFO.
    protect : iterable of paths
        Inputs that must not be overwritten (the image, the navigator file, the result file).

    Raises
    ------
    OutputError
        `path` names a protected input, a directory or a socket; its folder is missing, not
        a folder or not writable; a device or FIFO is not writable.

    Examples
    --------
    >>> check_output_path("x.json", protect=["x.json"])
    Traceback (most recent call last):
    ...
    ptolemy_rt.errors.OutputError: x.json: refusing to overwrite the input file x.json; choose another output name
    """
    _resolve(path, protect)


# --------------------------------------------------------------------------- writing


def _as_bytes(data: Data) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _default_mode() -> int:
    """0o666 less the process umask (the mode `open` gives a new file).

    The umask is read from /proc/self/status where Linux offers it (setting it to read it,
    the fallback, is not safe while other threads create files)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    um = os.umask(0)
    os.umask(um)
    return 0o666 & ~um


def _write_fd(fd: int, raw: bytes) -> None:
    view = memoryview(raw)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _write_temp(t: _Target, raw: bytes) -> str:
    """Write `raw` to a new temporary file beside t.target (fsynced, final mode); its path."""
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=_parent(t.target))
    try:
        try:
            _write_fd(fd, raw)
            os.fsync(fd)
        finally:
            os.close(fd)
        if os.name == "posix":
            os.chmod(tmp, stat.S_IMODE(t.st.st_mode) if t.st is not None else _default_mode())
            if t.st is not None and (t.st.st_uid, t.st.st_gid) != (os.geteuid(), os.getegid()):
                try:  # keep the owner of a file root (or a group member) rewrites
                    os.chown(tmp, t.st.st_uid, t.st.st_gid)
                except OSError:
                    pass
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _write_direct(t: _Target, raw: bytes) -> None:
    """Write `raw` into a device or FIFO in place (no temporary, no rename)."""
    fd = os.open(t.target, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
    try:
        _write_fd(fd, raw)
    finally:
        os.close(fd)


def _link_backup(target: Path) -> str | None:
    """Hard-link an existing target under a free temporary name (None where links fail)."""
    import secrets  # here, not at the top: ≈ 8 ms of imports for every process otherwise

    for _ in range(16):
        name = str(_parent(target) / f"{TEMP_PREFIX}{secrets.token_hex(4)}.bak")
        try:
            os.link(target, name)
            return name
        except FileExistsError:
            continue
        except OSError:
            return None
    return None


def _unlink(path: str | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


def _fsync_dir(folder: Path) -> None:
    """Make renames in `folder` durable (best effort: not every system can fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _error(path: Path, e: OSError) -> OutputError:
    return OutputError(f"{path}: cannot write ({e.strerror or e})")


def commit_outputs(outputs: Sequence[tuple[PathLike, Data]], protect: Iterable[PathLike] = ()) -> None:
    """Write several output files together or not at all.

    Every path is checked first, then every regular output is written to a temporary file
    beside it, devices and FIFOs are written, and last all temporaries are renamed over
    their paths. A failure before the renames leaves no output written or changed (devices
    and FIFOs aside); a rename that fails undoes the renames already made (the replaced
    files come back where the file system allows hard links). See the module docstring for
    how each kind of path is written.

    Parameters
    ----------
    outputs : sequence of (path, data)
        Output paths and their contents; str data is written as UTF-8.
    protect : iterable of paths
        Inputs that none of the outputs may overwrite.

    Raises
    ------
    OutputError
        A path cannot be written (see `check_output_path`), two outputs name the same file,
        or a write fails (disk full, read-only, I/O error); one line, naming the path.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> commit_outputs([(os.path.join(d, "a.json"), "[]\\n"), (os.path.join(d, "b.csv"), b"rank\\n")])
    >>> sorted(os.listdir(d))
    ['a.json', 'b.csv']
    """
    protect = list(protect)
    plans = [(_resolve(path, protect), _as_bytes(data)) for path, data in outputs]
    seen: dict[str, Path] = {}
    for t, _ in plans:
        if t.direct:
            continue
        key = os.path.realpath(t.target)
        if key in seen:
            raise OutputError(f"{t.given}: named twice among the outputs (also as {seen[key]})")
        seen[key] = t.given
    temps: list[tuple[_Target, str]] = []
    done: list[tuple[_Target, str | None]] = []  # renamed: (target, backup of the file it replaced)
    backups: list[str] = []
    try:
        for t, raw in plans:
            if not t.direct:
                try:
                    temps.append((t, _write_temp(t, raw)))
                except OSError as e:
                    raise _error(t.given, e) from None
        for t, raw in plans:
            if t.direct:
                try:
                    _write_direct(t, raw)
                except OSError as e:
                    raise _error(t.given, e) from None
        several = len(temps) > 1
        while temps:
            t, tmp = temps[0]
            backup = _link_backup(t.target) if several and t.st is not None else None
            if backup is not None:
                backups.append(backup)
            try:
                os.replace(tmp, t.target)
            except OSError as e:
                raise _error(t.given, e) from None
            temps.pop(0)
            done.append((t, backup))
    except BaseException:
        for t, backup in reversed(done):
            if backup is not None:
                try:
                    os.replace(backup, t.target)
                    backups.remove(backup)
                except OSError:
                    pass
            elif t.st is None:
                _unlink(str(t.target))
        for _, tmp in temps:
            _unlink(tmp)
        for b in backups:
            _unlink(b)
        raise
    for b in backups:
        _unlink(b)
    for folder in {_parent(t.target) for t, _ in done}:
        _fsync_dir(folder)


def write_atomic(path: PathLike, data: Data, protect: Iterable[PathLike] = ()) -> None:
    """Write one output file atomically (see the module docstring; `commit_outputs` of one).

    Parameters
    ----------
    path : str or os.PathLike
        The output path.
    data : str or bytes
        The contents; str is written as UTF-8.
    protect : iterable of paths
        Inputs that must not be overwritten.

    Raises
    ------
    OutputError
        The path cannot be written or the write fails; nothing is left behind.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "out.json")
    >>> write_atomic(p, "[]\\n")
    >>> open(p).read()
    '[]\\n'
    """
    commit_outputs([(path, data)], protect)


__all__ = ["same_file", "check_output_path", "write_atomic", "commit_outputs", "TEMP_PREFIX", "TEMP_SUFFIX"]
