"""Errors the CLI turns into one-line messages and documented exit codes.

Exit codes (also in README):
    0  success (an empty result is a success)
    1  unexpected internal error (reported in one line; rerun with PTOLEMY_DEBUG=1 for a traceback)
    2  command-line usage error (unknown option, missing argument)
    3  bad input image (not an MRC, truncated, NaN/Inf, constant, too small, ...)
    4  model set missing or corrupt
    5  output cannot be written
    6  batch run: some inputs failed (the others were processed)
  130  interrupted (Ctrl-C, SIGINT); nothing half-written is left
  143  terminated (SIGTERM); nothing half-written is left
  129  hung up (SIGHUP); the same (128 + the signal number: `interrupt`)
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_MODEL = 4
EXIT_OUTPUT = 5
EXIT_PARTIAL = 6
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_HANGUP = 129
#: Every exit code the command line documents (the fault corpus checks runs against it).
DOCUMENTED_EXIT_CODES = (EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_MODEL, EXIT_OUTPUT,
                         EXIT_PARTIAL, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_HANGUP)


class PtolemyError(Exception):
    """Base class: an error with a one-line message meant for the user."""

    exit_code = EXIT_INTERNAL


class InputImageError(PtolemyError):
    """The input image cannot be used; the message names the file and the problem."""

    exit_code = EXIT_BAD_INPUT


class ModelSetError(PtolemyError):
    """A model set is missing or corrupt; the message names the file and the fix."""

    exit_code = EXIT_MODEL


class OutputError(PtolemyError):
    """The output file cannot be written."""

    exit_code = EXIT_OUTPUT
