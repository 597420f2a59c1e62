"""Issue 14's smaller command-line defects, one test each (each failed before its fix).

The same behaviours run through the real command line in the fault corpus
(tests/test_fault_corpus.py: signal/*/start-up, output/stdout-dev-full, output/dev-stdout,
input/unreadable, option/demo-negative-seed, demo/models-missing, batch/colliding-names);
these tests pin each one down in this process, fast and deterministically.
"""
from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from test_cli_common import assert_one_error_line, fake, good_image, needs_models, run_inproc, write_mrc  # noqa: F401


def test_interrupt_turned_into_import_error_is_exit_130(tmp_path, fake, monkeypatch, capsys):
    """Ctrl-C landing inside a C extension's import makes it raise "ImportError:
    initialization failed" instead of KeyboardInterrupt: still an interruption (130), one line."""
    from ptolemy_rt import batch

    def analyse(job):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None

    monkeypatch.setattr(batch, "analyse", analyse)
    a = write_mrc(tmp_path / "a.mrc", good_image())
    code, out, err = run_inproc(["lowmag", a], capsys)
    assert (code, out) == (130, "")
    assert err == "ptolemy: error: interrupted\n"


def test_sigterm_is_one_line_exit_143(tmp_path, fake, monkeypatch, capsys):
    from ptolemy_rt import batch

    def analyse(job):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("not interrupted")

    monkeypatch.setattr(batch, "analyse", analyse)
    a = write_mrc(tmp_path / "a.mrc", good_image())
    code, out, err = run_inproc(["lowmag", a], capsys)
    assert (code, out, err) == (143, "", "ptolemy: error: terminated\n")
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)  # restored after the run


def test_ctrl_c_during_start_up_imports(tmp_path):
    """SIGINT while the command line's own modules are imported (before `run`): one line,
    exit 130, no traceback. The child stops itself inside `import typer` (a module that
    cli.py imports after arming its handler) by an import hook of this test."""
    hook = (
        "import os, signal, sys\n"
        "class Stop:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'typer':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Stop())\n"
        "sys.argv = ['ptolemy', 'lowmag', 'a.mrc']\n"
        "import runpy; runpy.run_module('ptolemy_rt.cli', run_name='__main__')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", hook], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert p.returncode == 130, p.stderr
    assert p.stderr == "ptolemy: error: interrupted\n"


def test_demo_negative_seed_is_usage_error(tmp_path, capsys):
    code, out, err = run_inproc(["demo", tmp_path / "d", "--seed", "-5"], capsys)
    assert code == 2 and out == ""
    assert_one_error_line(err, "--seed")
    assert not (tmp_path / "d").exists()


def test_demo_failing_leaves_no_folder(tmp_path, capsys):
    code, _, err = run_inproc(["demo", tmp_path / "new" / "demo", "--models", "nope"], capsys)
    assert code == 4
    assert_one_error_line(err, "nope")
    assert not (tmp_path / "new").exists()


class _FullStdout(io.StringIO):
    def flush(self):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_stdout_on_a_full_device_is_exit_5(tmp_path, fake, monkeypatch, capsys):
    a = write_mrc(tmp_path / "a.mrc", good_image())
    from ptolemy_rt import cli

    monkeypatch.setattr(cli, "_stdout_to_stderr", lambda: __import__("contextlib").nullcontext())
    monkeypatch.setattr(sys, "stdout", _FullStdout())
    code = cli.run(["lowmag", str(a)])
    err = capsys.readouterr().err
    assert code == 5
    assert_one_error_line(err, "stdout", "no space left")


def _unreadable(tmp_path):
    p = tmp_path / "u.mrc"
    write_mrc(p, good_image())
    p.chmod(0)
    try:
        open(p, "rb").close()
    except PermissionError:
        return p
    for q in ("/proc/sys/vm/compact_memory", "/proc/sys/vm/drop_caches"):
        try:
            open(q, "rb").close()
        except PermissionError:
            return q
        except OSError:
            pass
    pytest.skip("no file this user cannot read")


@pytest.mark.parametrize("command", ["lowmag", "medmag", "plot"])
def test_unreadable_input_is_bad_input_not_usage(tmp_path, command, capsys):
    u = _unreadable(tmp_path)
    argv = [command, u] if command != "plot" else ["plot", u, u, tmp_path / "o.png"]
    code, out, err = run_inproc(argv, capsys)
    assert code == 3, err
    assert_one_error_line(err, str(u), "cannot read")


def test_input_name_too_long_is_bad_input(tmp_path, capsys):
    code, _, err = run_inproc(["lowmag", tmp_path / ("x" * 300 + ".mrc")], capsys)
    assert code == 3
    assert_one_error_line(err, "too long")


def test_colliding_batch_names_create_no_folder(tmp_path, fake, capsys):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        write_mrc(tmp_path / sub / "a.mrc", good_image())
    code, _, err = run_inproc(["lowmag", tmp_path / "x/a.mrc", tmp_path / "y/a.mrc", "-o", tmp_path / "out",
                               "--plot", tmp_path / "plots"], capsys)
    assert code == 2
    assert_one_error_line(err, "a.json")
    assert not (tmp_path / "out").exists() and not (tmp_path / "plots").exists()


def test_dev_stdout_output_goes_to_stdout(tmp_path):
    """-o /dev/stdout: the result on stdout, nothing on stderr (fd 1 points at stderr while
    the pipeline runs, so opening the path then used to send the result to stderr)."""
    a = write_mrc(tmp_path / "a.mrc", good_image(1, (128, 160)))
    code = (
        "import sys\n"
        "sys.path.insert(0, %r)\n"
        "from test_cli_common import fake_pipeline\n"
        "from ptolemy_rt import batch, cli\n"
        "batch.run_pipeline = fake_pipeline\n"
        "batch.model_set = lambda name: None\n"
        "sys.exit(cli.run(%r))\n"
    ) % (str(REPO / "tests"), ["lowmag", str(a), "-o", "/dev/stdout", "-f", "csv"])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert p.stdout.startswith("rank,")


@needs_models
def test_onnxruntime_logger_is_silenced(tmp_path):
    """A user who cannot write onnxruntime's telemetry file (HOME not writable) gets no
    coloured warning from it on stderr."""
    from ptolemy_rt import synthetic
    from ptolemy_rt.cli import _mrc_bytes

    img, _ = synthetic.atlas(0, shape=(256, 256))
    (tmp_path / "a.mrc").write_bytes(_mrc_bytes(img))
    (tmp_path / "a-file").write_text("")  # HOME under a file: nothing can be created there, even by root
    env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(tmp_path / "a-file" / "home"), PTOLEMY_THREADS="1")
    env.pop("XDG_DATA_HOME", None)
    p = subprocess.run([sys.executable, "-m", "ptolemy_rt.cli", "lowmag", "a.mrc", "-o", "r.json"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "onnxruntime" not in p.stderr and "\x1b[" not in p.stderr, p.stderr
