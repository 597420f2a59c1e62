"""Stopping on SIGINT (Ctrl-C), SIGTERM and SIGHUP: one exception, the shell's exit codes.

The command line (`cli.run`) calls `install` once: from then on each of these signals raises
`Interrupted` (a KeyboardInterrupt, so every ``finally`` and every cleanup written for Ctrl-C
runs: temporary output files are removed, no partial output is left) in the main thread,
and the process exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM, 129 for
SIGHUP) after one ``ptolemy: error: interrupted`` line. A batch (`batch.run_batch`) first
stops its worker processes and writes summary.csv for what finished.

A second signal within `GRACE_S` seconds of the first is only recorded, so that the cleanup
(stopping workers, writing the summary: well under a second) is not itself interrupted;
later ones raise again.

Worker processes (`worker_setup`) ignore SIGINT (Ctrl-C in a terminal reaches the whole
process group; the parent decides), stop at SIGTERM after removing their temporary files
(`WorkerStop`), and on Linux get SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG), so no
worker outlives its batch.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

#: the signals that stop a run, by name (those the platform has)
SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
GRACE_S = 2.0  # s: repeated signals this soon after the first are only recorded

_received: int | None = None
_first_at = 0.0


class Interrupted(KeyboardInterrupt):
    """A stopping signal arrived; ``signum`` is its number, ``exit_code`` 128 + signum."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class WorkerStop(BaseException):
    """Raised in a worker process by SIGTERM: unwinds (cleanup runs), then the worker exits."""


def exit_code(default_signum: int = signal.SIGINT) -> int:
    """The exit code for an interrupted run: 128 + the first stopping signal received
    (`default_signum` when none was seen through `install`'s handler, e.g. a KeyboardInterrupt
    raised by Python's own SIGINT handler).

    Parameters
    ----------
    default_signum : int
        Signal to assume when none was recorded.

    Returns
    -------
    int
        130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP).

    Examples
    --------
    >>> reset(); exit_code()
    130
    """
    return 128 + (_received if _received is not None else int(default_signum))


def received() -> int | None:
    """The first stopping signal received since `install` / `reset`, or None.

    Returns
    -------
    int or None

    Examples
    --------
    >>> reset(); received() is None
    True
    """
    return _received


def signal_name(signum: int) -> str:
    """"SIGTERM" for 15, etc.

    Parameters
    ----------
    signum : int

    Returns
    -------
    str

    Examples
    --------
    >>> signal_name(15), signal_name(2)
    ('SIGTERM', 'SIGINT')
    """
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def reset() -> None:
    """Forget a received signal (for a new run in the same process, e.g. tests).

    Examples
    --------
    >>> reset(); received() is None
    True
    """
    global _received, _first_at
    _received, _first_at = None, 0.0


def _handler(signum, frame) -> None:
    global _received, _first_at
    now = time.monotonic()
    if _received is not None and now - _first_at < GRACE_S:
        return  # cleanup of the first one is running
    if _received is None:
        _received = int(signum)
    _first_at = now
    raise Interrupted(signum)


def install(handler=None) -> dict:
    """Make SIGINT, SIGTERM and SIGHUP raise `Interrupted` (main thread only; elsewhere, and
    for signals the parent process set to be ignored, e.g. SIGHUP under nohup, nothing changes).

    Parameters
    ----------
    handler : callable(signum, frame) or None
        Another handler for the same signals, under the same rules (the command line's
        start-up handler, `cli._on_signal`); None: `Interrupted` after forgetting any signal
        received before (`reset`).

    Returns
    -------
    dict
        {signal: previous handler} of the handlers replaced, for `restore`.

    Examples
    --------
    >>> import signal
    >>> before = signal.getsignal(signal.SIGTERM)
    >>> prev = install(); signal.getsignal(signal.SIGTERM) is _handler
    True
    >>> restore(prev); signal.getsignal(signal.SIGTERM) is before
    True
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    if handler is None:
        reset()
        handler = _handler
    prev = {}
    for s in SIGNALS:
        try:
            old = signal.getsignal(s)
            if s != signal.SIGINT and old == signal.SIG_IGN:
                continue  # nohup & co.: keep ignoring
            signal.signal(s, handler)
            prev[s] = old
        except (OSError, ValueError):
            pass
    return prev


def restore(prev: dict) -> None:
    """Put back the handlers `install` replaced.

    Parameters
    ----------
    prev : dict
        `install`'s return value.

    Examples
    --------
    >>> restore({})
    """
    for s, h in prev.items():
        try:
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        except (OSError, ValueError, TypeError):
            pass


_worker_stopping = False
_worker_in_job = False


def _worker_term(signum, frame) -> None:
    """SIGTERM in a worker: inside a job raise `WorkerStop` (its cleanup runs: temporary files
    are removed); outside one (start-up, waiting for the next job) there is nothing to clean up,
    so exit at once and silently (no multiprocessing traceback on stderr); repeats are ignored
    while the first unwinds."""
    global _worker_stopping
    if _worker_stopping:
        return
    _worker_stopping = True
    if not _worker_in_job:
        os._exit(128 + int(signum))
    raise WorkerStop(signum)


class worker_job:
    """Context manager marking the code of one batch job in a worker process: SIGTERM raises
    `WorkerStop` inside it and exits the worker at once outside it (`worker_setup`).

    Examples
    --------
    >>> with worker_job():
    ...     pass
    """

    def __enter__(self):
        global _worker_in_job
        _worker_in_job = True
        return self

    def __exit__(self, *exc) -> bool:
        global _worker_in_job
        _worker_in_job = False
        return False


def worker_stopping() -> bool:
    """True in a worker process once SIGTERM arrived (`worker_setup`): an exception a library
    made of the `WorkerStop` (numpy's "ImportError: initialization failed" when it lands in an
    import) is the stop, not a failure of the job.

    Returns
    -------
    bool

    Examples
    --------
    >>> worker_stopping()
    False
    """
    return _worker_stopping


def worker_setup() -> None:
    """Signal set-up of a batch worker process (see the module docstring): SIGINT ignored,
    SIGTERM raises `WorkerStop`, SIGHUP ignored, and (Linux) SIGTERM when the parent dies.

    Examples
    --------
    >>> callable(worker_setup)
    True
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _worker_term)
    parent = os.getppid()
    if _set_parent_death_signal(signal.SIGTERM) and os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)  # the parent died before prctl: stop now


def _set_parent_death_signal(signum: int) -> bool:
    """prctl(PR_SET_PDEATHSIG, signum) on Linux; False elsewhere or when it fails."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
