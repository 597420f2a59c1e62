"""Batch runs: folders and several files, one bad file, summary.csv, rerun skipping, progress.

The pipelines are replaced by the stand-in of test_cli_common (in this process, -j 1); real
multi-process runs are in test_cli_real.py."""
from __future__ import annotations

import csv
import io
import json
import os
import time

import pytest

from ptolemy_rt import batch
from test_cli_common import check_published_schema, fake, good_image, run_inproc, write_mrc  # noqa: F401


def _folder(tmp_path, bad=True):
    d = tmp_path / "in"
    d.mkdir()
    write_mrc(d / "c.mrc", good_image(3))
    write_mrc(d / "a.mrc", good_image(1))
    if bad:
        (d / "b.mrc").write_text("not an image\n" * 200)
    (d / "notes.txt").write_text("ignored: not .mrc")
    return d


def _summary(out):
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_folder_with_one_bad_file(tmp_path, fake, capsys):
    d = _folder(tmp_path)
    out = tmp_path / "out"
    code, so, err = run_inproc(["lowmag", d, "-o", out], capsys)
    assert code == 6 and so == ""
    assert sorted(os.listdir(out)) == ["a.json", "c.json", "summary.csv"]
    for n in ("a", "c"):
        check_published_schema(json.loads((out / f"{n}.json").read_text()), "lowmag")
    rows = _summary(out)
    assert [r["input"] for r in rows] == [str(d / "a.mrc"), str(d / "b.mrc"), str(d / "c.mrc")]
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert rows[0]["n_targets"] == "3" and float(rows[0]["best_score"]) == 0.9
    assert rows[1]["n_targets"] == "" and "b.mrc" in rows[1]["error"] and "mrc" in rows[1]["error"].lower()
    assert float(rows[0]["seconds"]) >= 0
    errors = [ln for ln in err.splitlines() if ln.startswith("ptolemy: error:")]
    assert len(errors) == 1 and "b.mrc" in errors[0]
    assert "Traceback" not in err
    # progress: one line per input (stderr is not a terminal here), then a summary line
    assert [ln.split("]")[0] for ln in err.splitlines() if ln.startswith("[")] == ["[1/3", "[2/3", "[3/3"]
    assert "2 done, 0 skipped, 1 failed" in err.splitlines()[-1]


def test_rerun_skips_up_to_date_results(tmp_path, fake, capsys):
    d = _folder(tmp_path, bad=False)
    out = tmp_path / "out"
    code, _, _ = run_inproc(["medmag", d, "-o", out, "-f", "csv"], capsys)
    assert code == 0
    first = (out / "a.csv").read_text()
    code, _, err = run_inproc(["medmag", d, "-o", out, "-f", "csv"], capsys)
    assert code == 0 and "0 done, 2 skipped, 0 failed" in err
    rows = _summary(out)
    assert [r["status"] for r in rows] == ["skipped", "skipped"]
    assert rows[0]["n_targets"] == "3" and float(rows[0]["best_score"]) == 0.9  # kept from before
    # a newer input is redone
    t = time.time() + 5
    os.utime(d / "c.mrc", (t, t))
    code, _, err = run_inproc(["medmag", d, "-o", out, "-f", "csv"], capsys)
    assert [r["status"] for r in _summary(out)] == ["skipped", "ok"]
    code, _, err = run_inproc(["medmag", d, "-o", out, "-f", "csv", "--force"], capsys)
    assert [r["status"] for r in _summary(out)] == ["ok", "ok"]
    assert (out / "a.csv").read_text() == first


def test_rerun_after_failure_retries_only_the_failed(tmp_path, fake, capsys):
    d = _folder(tmp_path)
    out = tmp_path / "out"
    run_inproc(["lowmag", d, "-o", out], capsys)
    write_mrc(d / "b.mrc", good_image(2))  # fixed
    code, _, err = run_inproc(["lowmag", d, "-o", out], capsys)
    assert code == 0
    assert [r["status"] for r in _summary(out)] == ["skipped", "ok", "skipped"]
    assert [r["n_targets"] for r in _summary(out)] == ["3", "3", "3"]


def test_several_files_and_plots(tmp_path, fake, capsys):
    pytest.importorskip("PIL")
    from PIL import Image

    a = write_mrc(tmp_path / "a.mrc", good_image(1, (100, 140)))
    b = write_mrc(tmp_path / "b.mrc", good_image(2, (90, 120)))
    out = tmp_path / "res"
    code, so, err = run_inproc(["lowmag", a, b, a, "-o", out, "--plot", tmp_path / "pics", "-f", "txt"], capsys)
    assert code == 0 and so == ""
    assert sorted(os.listdir(out)) == ["a.txt", "b.txt", "summary.csv"]
    assert len(_summary(out)) == 2  # the repeated input is processed once
    with Image.open(tmp_path / "pics" / "b.png") as im:
        assert im.size == (120, 90)


def test_single_input_into_existing_folder(tmp_path, fake, capsys):
    a = write_mrc(tmp_path / "a.mrc", good_image(1))
    out = tmp_path / "res"
    out.mkdir()
    code, so, _ = run_inproc(["lowmag", a, "-o", out, "-f", "json-full"], capsys)
    assert code == 0 and so == ""
    assert json.loads((out / "a.json").read_text())["count"] == 3
    assert (out / "summary.csv").exists()


def test_output_with_trailing_slash_is_a_folder(tmp_path, fake, capsys):
    a = write_mrc(tmp_path / "a.mrc", good_image(1))
    code, so, _ = run_inproc(["medmag", a, "-o", f"{tmp_path / 'new'}/"], capsys)
    assert code == 0 and so == ""
    assert sorted(os.listdir(tmp_path / "new")) == ["a.json", "summary.csv"]


def test_same_stems_refused(tmp_path, fake, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a = write_mrc(tmp_path / "x" / "s.mrc", good_image(1))
    b = write_mrc(tmp_path / "y" / "s.mrc", good_image(2))
    code, _, err = run_inproc(["lowmag", a, b, "-o", tmp_path / "out"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "s.json" in err


def test_empty_folder_is_usage_error(tmp_path, fake, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_inproc(["lowmag", tmp_path / "empty", "-o", tmp_path / "out"], capsys)
    assert code == 2 and "no .mrc files" in err


def test_output_folder_is_a_file(tmp_path, fake, capsys):
    d = _folder(tmp_path, bad=False)
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run_inproc(["lowmag", d, "-o", f], capsys)
    assert code == 5 and len(err.splitlines()) == 1 and "folder" in err
    assert f.read_text() == "x"


def test_all_inputs_missing(tmp_path, fake, capsys):
    out = tmp_path / "out"
    code, _, err = run_inproc(["lowmag", tmp_path / "nope1.mrc", tmp_path / "nope2.mrc", "-o", out], capsys)
    assert code == 6
    assert [r["status"] for r in _summary(out)] == ["failed", "failed"]
    assert sum(ln.startswith("ptolemy: error:") for ln in err.splitlines()) == 2


def test_progress_bar_on_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    s = Tty()
    p = batch.Progress(2, s)
    p.step(batch.Outcome("x.mrc", "ok", 3, 0.5, 1.0))
    p.message("ptolemy: error: y.mrc: bad")
    p.step(batch.Outcome("y.mrc", "failed", error="bad"))
    p.close()
    text = s.getvalue()
    assert "[###############...............] 1/2 x.mrc" in text
    assert "ptolemy: error: y.mrc: bad\n" in text and "2/2" in text and text.endswith("\n")


def test_summary_text_format():
    t = batch.summary_text([batch.Outcome("a,b.mrc", "failed", seconds=0.25, error='bad "x"'),
                            batch.Outcome("c.mrc", "ok", 2, 0.75, 1.0)])
    rows = list(csv.DictReader(io.StringIO(t)))
    assert rows[0] == {"input": "a,b.mrc", "status": "failed", "n_targets": "", "best_score": "",
                       "seconds": "0.250", "error": 'bad "x"', "settings": ""}
    assert rows[1]["best_score"] == "0.75"


def test_ctrl_c_is_one_line_exit_130(tmp_path):
    """Ctrl-C during a batch: exit 130, one error line, no traceback, no partial result,
    summary.csv with both inputs marked interrupted."""
    import signal
    import subprocess
    import sys

    a = write_mrc(tmp_path / "a.mrc", good_image(1))
    b = write_mrc(tmp_path / "b.mrc", good_image(2))
    code = (
        "import sys, time\n"
        "sys.path.insert(0, %r)\n"
        "from ptolemy_rt import batch, cli\n"
        "def slow(*a):\n"
        "    print('started', file=sys.stderr, flush=True)\n"
        "    time.sleep(60)\n"
        "batch.run_pipeline = slow\n"
        "batch.model_set = lambda name: None\n"
        "sys.exit(cli.run(%r))\n"
    ) % (str(os.path.dirname(__file__)), ["lowmag", str(a), str(b), "-o", str(tmp_path / "out")])
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    line = p.stderr.readline()
    assert line.strip() == "started"
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and out == ""
    lines = err.strip().splitlines()
    assert lines[-1] == "ptolemy: error: interrupted" and "Traceback" not in err
    assert sum(ln.startswith("ptolemy: error:") for ln in lines) == 1
    assert "0 done, 0 skipped, 0 failed, 2 interrupted" in lines[-2]
    assert not any(n.endswith(".json") for n in os.listdir(tmp_path / "out"))
    assert [(r["status"], r["error"]) for r in _summary(tmp_path / "out")] == [("interrupted", "interrupted by SIGINT")] * 2
