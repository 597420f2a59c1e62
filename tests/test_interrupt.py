"""Stopping runs by signal (issue 14): SIGINT / SIGTERM / SIGKILL to batches (-j 1, -j 2) and
to a single-image run, at several moments; exit codes, summary.csv, no partial output, no
process left, and a rerun that resumes.

The batches run the real command line in a subprocess (own process group) on small synthetic
atlases; processes are looked up in /proc (psutil when installed). Skipped where /proc or
os.killpg is missing."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_cli_common import fake, run_inproc, write_mrc, good_image  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
N_INPUTS = 10
SETTLE_S = 10.0  # s: generous bound for the process group to be empty (load on shared CI machines)

pytestmark = pytest.mark.skipif(not (os.path.isdir("/proc/self") and hasattr(os, "killpg")),
                                reason="needs /proc and process groups (Linux)")


# ----------------------------------------------------------------------------- helpers


def _group(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live (not zombie) processes of process group `pgid`."""
    try:
        import psutil
    except ImportError:
        psutil = None
    out = []
    if psutil is not None:
        for p in psutil.process_iter(["pid", "status", "cmdline"]):
            try:
                if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                    out.append((p.pid, " ".join(p.info["cmdline"] or [])))
            except (OSError, psutil.Error):
                pass
        return out
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if os.getpgid(pid) != pgid:
                continue
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                out.append((pid, f.read().replace(b"\0", b" ").decode(errors="replace")))
        except OSError:
            pass
    return out


def _workers(pgid: int) -> list[tuple[int, str]]:
    """The batch's worker processes (multiprocessing spawn children) still alive."""
    return [p for p in _group(pgid) if "spawn_main" in p[1]]


def _settles(pgid: int) -> list[tuple[int, str]]:
    """Wait up to SETTLE_S for the group to be empty (multiprocessing's resource tracker
    exits by itself once the parent is gone); returns what is left."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        left = _group(pgid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _handles_sigterm(pid: int) -> bool:
    """True once the process has installed a SIGTERM handler (/proc/PID/status SigCgt)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except OSError:
        pass
    return False


def _start(args, cwd) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PTOLEMY_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "ptolemy_rt.cli", *[str(a) for a in args]], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def _temps(*folders) -> list[str]:
    return [n for d in folders if Path(d).is_dir() for n in os.listdir(d) if n.startswith(".ptolemy-")]


@pytest.fixture(scope="module")
def atlases(tmp_path_factory):
    """N_INPUTS small synthetic atlases (768², ~25 squares each) in one folder."""
    from ptolemy_rt import synthetic

    d = tmp_path_factory.mktemp("atlases")
    for i in range(N_INPUTS):
        im, _ = synthetic.atlas(i, shape=(768, 768))
        write_mrc(d / f"a{i:02d}.mrc", np.asarray(im, np.float32))
    return d


def _interrupt_batch(atlases, tmp_path, sig, moment, jobs):
    """Run `ptolemy lowmag ATLASES -o OUT -j JOBS --plot PLOTS`, send `sig` to the parent at
    `moment` ("first": after the first result line; "workers": once the worker processes
    exist), check what must hold for every interruption; returns (rows, out, stderr)."""
    out, plots = tmp_path / "out", tmp_path / "plots"
    p = _start(["lowmag", atlases, "-o", out, "-j", jobs, "--plot", plots], tmp_path)
    try:
        if moment == "first":
            while True:
                line = p.stderr.readline()
                assert line, "the batch ended before its first result"
                if line.startswith("[1/"):
                    break
        else:  # "workers"
            deadline = time.monotonic() + 120
            while len(_workers(p.pid)) < jobs:
                assert p.poll() is None and time.monotonic() < deadline, "no workers started"
                time.sleep(0.02)
        os.kill(p.pid, sig)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    left_workers = _workers(p.pid)
    left = _settles(p.pid)
    assert p.returncode == 128 + sig, err
    assert left_workers == [], "worker processes outlived the batch"
    assert left == [], f"processes left: {left}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1] == ("ptolemy: error: terminated" if sig == signal.SIGTERM else "ptolemy: error: interrupted")
    assert sum(ln.startswith("ptolemy: error:") for ln in lines) == 1, err
    rows = _summary(out)
    assert [Path(r["input"]).name for r in rows] == [f"a{i:02d}.mrc" for i in range(N_INPUTS)]
    statuses = {r["status"] for r in rows}
    assert statuses <= {"ok", "interrupted"}, statuses
    assert "interrupted" in statuses
    name = signal.Signals(sig).name
    for r in rows:
        stem = Path(r["input"]).stem
        done = (out / f"{stem}.json").exists(), (plots / f"{stem}.png").exists()
        if r["status"] == "ok":
            assert done == (True, True) and r["settings"] and int(r["n_targets"]) > 0
        else:  # nothing partial: neither the result nor the picture (or, for a worker stopped
            # between committing its outputs and reporting them, both, complete)
            assert done in ((False, False), (True, True)) and r["error"] == f"interrupted by {name}"
            if done == (True, True):
                assert isinstance(json.loads((out / f"{stem}.json").read_text()), (list, dict))
    assert _temps(out, plots) == []
    n_ok = sum(r["status"] == "ok" for r in rows)
    assert f"{n_ok} done, 0 skipped, 0 failed, {N_INPUTS - n_ok} interrupted" in lines[-2]
    return rows, out, err


# ------------------------------------------------------------------------------- tests


def test_sigterm_two_workers_after_first_result_then_resume(atlases, tmp_path):
    rows, out, _ = _interrupt_batch(atlases, tmp_path, signal.SIGTERM, "first", 2)
    assert rows[0]["status"] == "ok" or rows[1]["status"] == "ok"
    before = {r["input"]: r["status"] for r in rows}
    kept = {n: (out / n).read_bytes() for n in os.listdir(out) if n.endswith(".json")}
    # rerun: the finished inputs are skipped, only the rest runs
    p = _start(["lowmag", atlases, "-o", out, "-j", 2, "--plot", tmp_path / "plots"], tmp_path)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    after = {r["input"]: r["status"] for r in _summary(out)}
    assert after == {k: ("skipped" if v == "ok" else "ok") for k, v in before.items()}
    assert all((out / n).read_bytes() == b for n, b in kept.items())
    assert sorted(n for n in os.listdir(out) if n.endswith(".json")) == [f"a{i:02d}.json" for i in range(N_INPUTS)]


def test_sigint_while_workers_start(atlases, tmp_path):
    _interrupt_batch(atlases, tmp_path, signal.SIGINT, "workers", 2)


def test_sigterm_one_process_after_first_result(atlases, tmp_path):
    rows, _, _ = _interrupt_batch(atlases, tmp_path, signal.SIGTERM, "first", 1)
    assert rows[0]["status"] == "ok"


def test_parent_killed_outright_takes_its_workers(atlases, tmp_path):
    """SIGKILL to the parent (no cleanup possible): the workers stop too (parent-death signal)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux only")
    p = _start(["lowmag", atlases, "-o", tmp_path / "out", "-j", 2], tmp_path)
    try:
        while not p.stderr.readline().startswith("[1/"):
            assert p.poll() is None
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
        assert _settles(p.pid) == []
    finally:
        if _group(p.pid):
            os.killpg(p.pid, signal.SIGKILL)


def test_single_image_sigterm_is_143_without_output(tmp_path):
    from ptolemy_rt import synthetic

    im, _ = synthetic.atlas(3, shape=(2048, 2048))
    src = write_mrc(tmp_path / "one.mrc", np.asarray(im, np.float32))
    res = tmp_path / "res"
    res.mkdir()
    p = _start(["lowmag", src, "-o", res / "one.json", "--plot", res / "one.png"], tmp_path)
    try:
        while not _handles_sigterm(p.pid):  # the command line is running (not starting up)
            assert p.poll() is None
            time.sleep(0.01)
        time.sleep(0.3)
        os.kill(p.pid, signal.SIGTERM)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert (p.returncode, out, err) == (143, "", "ptolemy: error: terminated\n")
    assert os.listdir(res) == []  # no result, no picture, no temporary file


def test_rerun_redoes_results_made_with_other_settings(tmp_path, fake, capsys):
    """A result is reused only when summary.csv says it was made with the same settings."""
    d = tmp_path / "in"
    d.mkdir()
    for i in (1, 2):
        write_mrc(d / f"a{i}.mrc", good_image(i))
    out = tmp_path / "out"
    assert run_inproc(["lowmag", d, "-o", out], capsys)[0] == 0
    first = [r["settings"] for r in _summary(out)]
    assert len(set(first)) == 1 and len(first[0]) == 16
    code, _, err = run_inproc(["lowmag", d, "-o", out], capsys)
    assert code == 0 and "0 done, 2 skipped" in err
    code, _, err = run_inproc(["lowmag", d, "-o", out, "--batchnorm", "running"], capsys)
    assert code == 0 and "2 done, 0 skipped" in err  # other option: redone
    assert {r["settings"] for r in _summary(out)} != set(first)
    code, _, err = run_inproc(["lowmag", d, "-o", out, "--batchnorm", "running"], capsys)
    assert "0 done, 2 skipped" in err
    code, _, err = run_inproc(["lowmag", d, "-o", out, "-f", "json-full"], capsys)
    assert "2 done, 0 skipped" in err  # other output options
    # a summary without the settings column (older runs): nothing is reused
    (out / "summary.csv").write_text("input,status,n_targets,best_score,seconds,error\n"
                                     + "".join(f"{d / f'a{i}.mrc'},ok,3,0.9,0.1,\n" for i in (1, 2)))
    code, _, err = run_inproc(["lowmag", d, "-o", out, "-f", "json-full"], capsys)
    assert "2 done, 0 skipped" in err


_IDLE_WORKER = """
import sys, time
from ptolemy_rt import interrupt
interrupt.worker_setup()
print("ready", flush=True)
if sys.argv[1] == "job":
    try:
        with interrupt.worker_job():
            time.sleep(60)
    except interrupt.WorkerStop:
        print("stopped in job", flush=True)
        sys.exit(7)
else:
    time.sleep(60)  # a worker waiting for its next job (or still starting)
"""


@pytest.mark.parametrize("where", ["idle", "job"])
def test_worker_sigterm_outside_a_job_exits_silently(where):
    """SIGTERM to a batch worker between jobs (start-up, waiting on the queue) exits at once
    with 143 and nothing on stderr (it used to raise WorkerStop there, which multiprocessing
    printed as a 'Process SpawnProcess-N: Traceback'); inside a job it raises WorkerStop so the
    job's cleanup runs."""
    p = subprocess.Popen([sys.executable, "-c", _IDLE_WORKER, where], cwd=REPO, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert p.stdout.readline() == "ready\n"
        time.sleep(0.2)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    if where == "idle":
        assert (p.returncode, out, err) == (143, "", "")
    else:
        assert (p.returncode, out, err) == (7, "stopped in job\n", "")
