"""Command line: exit codes, one-line errors, pure JSON on stdout, no partial files.

Subprocess tests run the installed `ptolemy` on crafted bad files (these fail while reading,
before any model is needed); in-process tests replace the pipelines by a stand-in (see
test_cli_common.fake_pipeline) to check formats and conventions."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from test_cli_common import (assert_one_error_line, check_published_schema, fake, good_image,  # noqa: F401
                             run_cli, run_inproc, write_mrc)


# ------------------------------------------------------------- start-up, usage

def test_version():
    p = run_cli("--version")
    assert p.returncode == 0 and p.stdout.strip() == "ptolemy-rt 0.1.0" and p.stderr == ""


def test_help_is_light():
    """--help works and imports neither numpy nor onnxruntime nor numba."""
    code = ("import sys; from ptolemy_rt.cli import run; "
            "codes = [run(['--help']), run(['lowmag', '--help']), run(['medmag', '--help'])]; "
            "heavy = [m for m in ('numpy', 'onnxruntime', 'numba', 'scipy') if m in sys.modules]; "
            "sys.stderr.write(repr((codes, heavy)))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stderr.strip().endswith("([0, 0, 0], [])"), p.stderr
    assert "lowmag" in p.stdout and "--pixel-size" in p.stdout


#: modules neither pipeline needs: each costs 0.05-0.15 s of start-up per process
#: (docs/BENCH.md#startup). The grid angle's search and the lattice's neighbours are own code;
#: pydantic comes only with typer ≥ 0.29 (pyproject.toml pins below it).
UNUSED_MODULES = ("scipy.optimize", "scipy.spatial", "scipy.linalg", "scipy.sparse", "pydantic")
#: ... and what a low-mag run does without (rotations, dilation: own compiled kernels; ≈ 0.2 s of
#: imports, docs/BENCH.md#startup).
UNUSED_MODULES_LOWMAG = UNUSED_MODULES + ("scipy.ndimage", "scipy.special", "scipy.fft")


@pytest.mark.parametrize("mode", ["lowmag", "medmag"])
def test_pipelines_do_not_import_unused_modules(tmp_path, mode):
    """A whole run (synthetic image, default set) imports none of UNUSED_MODULES (low-mag: none
    of UNUSED_MODULES_LOWMAG)."""
    from ptolemy_rt import synthetic

    img = synthetic.atlas(5, (384, 512))[0] if mode == "lowmag" else synthetic.medmag_image(3, (512, 720))[0]
    write_mrc(tmp_path / "x.mrc", img.astype(np.float32))
    unused = UNUSED_MODULES_LOWMAG if mode == "lowmag" else UNUSED_MODULES
    code = ("import sys; from ptolemy_rt.cli import run; "
            f"rc = run([{mode!r}, {str(tmp_path / 'x.mrc')!r}, '-f', 'json', '-o', {str(tmp_path / 'o.json')!r}]); "
            f"sys.stderr.write(repr((rc, [m for m in {unused!r} if m in sys.modules])))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stderr.strip().endswith("(0, [])"), p.stderr[-2000:]
    assert json.loads((tmp_path / "o.json").read_text())


@pytest.mark.parametrize("full_exit", ["0", "1"])
def test_fast_exit_and_full_exit_give_the_same_result(tmp_path, full_exit):
    """lowmag ends with os._exit (cli.FAST_EXIT_COMMANDS) unless PTOLEMY_FULL_EXIT=1: the same
    stdout, exit code and output file either way; the committed output is complete."""
    from ptolemy_rt import synthetic

    img = write_mrc(tmp_path / "a.mrc", synthetic.atlas(5, (384, 512))[0])
    p = run_cli("lowmag", img, "-f", "json", env={"PTOLEMY_FULL_EXIT": full_exit})
    q = run_cli("lowmag", img, "-f", "json", "-o", tmp_path / "o.json", env={"PTOLEMY_FULL_EXIT": full_exit})
    assert p.returncode == 0 and q.returncode == 0 and p.stderr == "" and q.stdout == ""
    assert json.loads(p.stdout) == json.loads((tmp_path / "o.json").read_text())
    assert len(json.loads(p.stdout)) == 10


def test_closed_stdout_is_one_line_not_a_traceback(tmp_path):
    """Started with stdout closed (`>&-`), a run writing its result to stdout fails in one line,
    exit 1; with -o it succeeds: the fast exit skips a stream that is not there."""
    from ptolemy_rt import synthetic

    img = write_mrc(tmp_path / "a.mrc", synthetic.atlas(5, (384, 512))[0])
    cmd = [sys.executable, "-c", "import sys; from ptolemy_rt.cli import main; sys.argv[0] = 'ptolemy'; main()"]
    for extra, rc in (([], 1), (["-o", str(tmp_path / "o.json")], 0)):
        p = subprocess.run(cmd + ["lowmag", str(img), "-f", "json", *extra], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(1))
        assert p.returncode == rc, p.stderr
        assert "Traceback" not in p.stderr and len(p.stderr.splitlines()) == (1 if rc else 0), p.stderr
    assert json.loads((tmp_path / "o.json").read_text())


@pytest.mark.parametrize("args,words", [
    (["lowmag", "--bogus", "x.mrc"], ["no such option"]),
    (["medmag", "-f", "xml", "x.mrc"], ["format"]),
    (["lowmag", "--batchnorm", "eval", "x.mrc"], ["batchnorm"]),
    (["lowmag", "--crop-grid", "diagonal", "x.mrc"], ["crop-grid"]),
    (["medmag", "--crop-grid", "square", "x.mrc"], ["no such option"]),
    (["medmag", "--norm", "1,2", "x.mrc"], ["no such option"]),
    (["lowmag", "--section", "-1", "x.mrc"], ["section"]),
    (["lowmag", "-j", "0", "x.mrc"], ["jobs"]),
    (["plot", "r.json"], ["missing argument"]),
    (["frobnicate"], ["no such command"]),
])
def test_usage_errors_exit_2(args, words):
    p = run_cli(*args)
    assert p.returncode == 2 and p.stdout == ""
    assert_one_error_line(p.stderr, *words)


def test_bare_command_prints_help_exit_2():
    p = run_cli("lowmag")
    assert p.returncode == 2 and p.stdout == "" and "Usage:" in p.stderr


def test_several_inputs_need_output_folder(tmp_path):
    a = write_mrc(tmp_path / "a.mrc", good_image(1))
    b = write_mrc(tmp_path / "b.mrc", good_image(2))
    p = run_cli("lowmag", a, b)
    assert p.returncode == 2 and p.stdout == ""
    assert_one_error_line(p.stderr, "-o DIR")
    p = run_cli("lowmag", tmp_path)  # a folder, even of one file, is a batch
    assert p.returncode == 2


def test_pixel_size_must_be_positive(tmp_path):
    a = write_mrc(tmp_path / "a.mrc", good_image(1))
    p = run_cli("lowmag", "--pixel-size", "0", a)
    assert p.returncode == 2
    assert_one_error_line(p.stderr, "pixel-size")


# ----------------------------------------------------------- crafted bad files

def _bad_files(tmp_path):
    text = tmp_path / "text.mrc"
    text.write_text("this is a text file, not an image\n" * 100)
    trunc = write_mrc(tmp_path / "trunc.mrc", good_image(3, (256, 256)))
    data = trunc.read_bytes()
    trunc.write_bytes(data[: 1024 + len(data) // 3])
    nan = good_image(4)
    nan[5, 7] = np.nan
    nanf = write_mrc(tmp_path / "nan.mrc", nan)
    stack = write_mrc(tmp_path / "stack.mrc", np.stack([good_image(5), good_image(6)]))
    return {"text": (text, ["text.mrc", "mrc"]), "truncated": (trunc, ["trunc.mrc"]),
            "nan": (nanf, ["nan.mrc", "nan"]), "stack": (stack, ["stack.mrc", "--section"])}


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
@pytest.mark.parametrize("which", ["text", "truncated", "nan", "stack"])
@pytest.mark.parametrize("kind", ["lowmag", "medmag"])
def test_bad_input_exit_3_one_line_no_file(tmp_path, which, kind):
    path, words = _bad_files(tmp_path)[which]
    out = tmp_path / "out" / "res.json"
    out.parent.mkdir()
    p = run_cli(kind, "-f", "json", "-o", out, path)
    assert p.returncode == 3, p.stderr
    assert p.stdout == ""
    assert_one_error_line(p.stderr, *words)
    assert os.listdir(out.parent) == []  # no result, no temp file
    p = run_cli(kind, "-f", "json", path)  # to stdout: nothing on stdout
    assert p.returncode == 3 and p.stdout == ""
    assert_one_error_line(p.stderr, *words)


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_stack_section_out_of_range(tmp_path):
    stack = write_mrc(tmp_path / "stack.mrc", np.stack([good_image(5), good_image(6)]))
    p = run_cli("lowmag", "--section", "5", stack)
    assert p.returncode == 3
    assert_one_error_line(p.stderr, "out of range")


def test_output_folder_not_writable_exit_5(tmp_path):
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    p = run_cli("lowmag", "-o", blocker / "res.json", img)
    assert p.returncode == 5 and p.stdout == ""
    assert_one_error_line(p.stderr, "cannot write")
    p = run_cli("lowmag", "-o", tmp_path / "nowhere" / "res.json", img)
    assert p.returncode == 5
    assert_one_error_line(p.stderr, "does not exist")
    # batch: -o names a file, not a folder
    b = write_mrc(tmp_path / "b.mrc", good_image(2))
    p = run_cli("lowmag", "-o", blocker, img, b)
    assert p.returncode in (4, 5)  # 4 when no model set is built (checked first)
    assert_one_error_line(p.stderr)
    assert blocker.read_text() == "a file where a folder should be"


def test_output_equal_to_input_is_refused(tmp_path):
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    before = img.read_bytes()
    for args in (["-o", img], ["--plot", img], ["-o", tmp_path / "." / "a.mrc"]):
        p = run_cli("lowmag", *args, img)
        assert p.returncode == 5, p.stderr
        assert_one_error_line(p.stderr, "refusing to overwrite the input")
        assert img.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.mrc"]


def test_missing_model_set_exit_4(tmp_path):
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    p = run_cli("lowmag", "--models", "no-such-set", img)
    assert p.returncode == 4 and p.stdout == ""
    assert_one_error_line(p.stderr, "no-such-set")


# -------------------------------------------------------- formats (stand-in pipeline)

def test_json_stdout_is_pure_json(tmp_path, fake, capsys):
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    code, out, err = run_inproc(["lowmag", "-f", "json", img], capsys)
    assert code == 0 and err == ""
    data = json.loads(out)
    check_published_schema(data, "lowmag")
    assert [d["score"] for d in data] == [0.9, 0.5, 0.125]
    code, out, err = run_inproc(["medmag", img], capsys)  # json is the default
    check_published_schema(json.loads(out), "medmag")


def test_stray_prints_go_to_stderr(tmp_path, monkeypatch, capfd):
    """Anything printed while the pipeline runs (Python or C level) must not reach stdout."""
    from ptolemy_rt import batch
    from ptolemy_rt.cli import run
    from test_cli_common import fake_pipeline

    def noisy(*a):
        print("chatty library")
        os.write(1, b"C-level chatter\n")
        return fake_pipeline(*a)

    monkeypatch.setattr(batch, "run_pipeline", noisy)
    monkeypatch.setattr(batch, "model_set", lambda name: None)
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    code = run(["lowmag", str(img)])
    cap = capfd.readouterr()
    assert code == 0
    json.loads(cap.out)
    assert "chatty library" in cap.err and "C-level chatter" in cap.err


def test_csv_txt_and_json_full(tmp_path, fake, capsys):
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    code, out, _ = run_inproc(["lowmag", "-f", "csv", img], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["rank"] for r in rows] == ["1", "2", "3"] and float(rows[0]["score"]) == 0.9
    assert "center_x_um" not in rows[0]  # header has no plausible pixel size
    code, out, _ = run_inproc(["medmag", "-f", "txt", "--pixel-size", "25", img], capsys)
    assert code == 0 and "x_um" in out and "# pixel size 25 nm" in out
    code, out, _ = run_inproc(["medmag", "-f", "json-full", "--batchnorm", "running", img], capsys)
    full = json.loads(out)
    assert full["batchnorm"] == "running" and full["image"] == str(img) and full["shape"] == [128, 160]
    assert full["lattice_spacing_px"] == 45.0 and len(full["items"]) == 3


def test_crop_grid_reaches_the_pipeline(tmp_path, fake, capsys, monkeypatch):
    """--crop-grid goes to find_squares (one image and batches) and into json-full / txt
    metadata; the default changes nothing in -f json."""
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    seen = []

    def spy(kind, image, models, options):
        seen.append(getattr(options, "crop_grid", "image"))  # medmag options have no crop grid
        return fake(kind, image, models, options)

    from ptolemy_rt import batch

    monkeypatch.setattr(batch, "run_pipeline", spy)
    code, out, _ = run_inproc(["lowmag", "-f", "json-full", "--crop-grid", "square", img], capsys)
    assert code == 0 and json.loads(out)["crop_grid"] == "square"
    code, out, _ = run_inproc(["lowmag", "-f", "json-full", img], capsys)
    assert code == 0 and json.loads(out)["crop_grid"] == "image"
    code, txt, _ = run_inproc(["lowmag", "-f", "txt", "--crop-grid", "SQUARE", img], capsys)
    assert code == 0 and "crop grid square" in txt
    code, txt, _ = run_inproc(["lowmag", "-f", "txt", img], capsys)
    assert code == 0 and "crop grid" not in txt
    code, out, _ = run_inproc(["medmag", "-f", "json-full", img], capsys)
    assert code == 0 and "crop_grid" not in json.loads(out)
    b = write_mrc(tmp_path / "b.mrc", good_image(2))
    code, _, _ = run_inproc(["lowmag", img, b, "-o", tmp_path / "out", "-f", "json-full", "--crop-grid", "square"],
                            capsys)
    assert code == 0
    assert [json.loads((tmp_path / "out" / f"{n}.json").read_text())["crop_grid"] for n in "ab"] == ["square"] * 2
    assert seen == ["square", "image", "square", "image", "image", "square", "square"]


def test_norm_reaches_the_pipeline(tmp_path, fake, capsys, monkeypatch):
    """--norm MEAN,STD goes to find_squares as (mean, std) floats (one image and batches) and
    into json-full ("normalisation", source "given") and a txt note; never into -f json / csv."""
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    seen = []

    def spy(kind, image, models, options):
        seen.append(options.norm)
        return fake(kind, image, models, options)

    from ptolemy_rt import batch

    monkeypatch.setattr(batch, "run_pipeline", spy)
    code, out, _ = run_inproc(["lowmag", "-f", "json-full", "--norm", "160.83,27.64", img], capsys)
    assert code == 0 and json.loads(out)["normalisation"] == {"mean": 160.83, "std": 27.64, "source": "given"}
    code, out, _ = run_inproc(["lowmag", "-f", "json-full", img], capsys)
    assert code == 0 and json.loads(out)["normalisation"] == {"mean": 50.0, "std": 10.0, "source": "image"}
    code, txt, _ = run_inproc(["lowmag", "-f", "txt", "--norm=-1.5e1, 2", img], capsys)
    assert code == 0 and "# normalisation mean -15.0, std 2.0 (given)" in txt.splitlines()
    code, txt, _ = run_inproc(["lowmag", "-f", "txt", img], capsys)
    assert code == 0 and "# normalisation mean 50.0, std 10.0 (image)" in txt.splitlines()
    plain = {}
    for fmt in ("json", "csv"):
        code, plain[fmt], _ = run_inproc(["lowmag", "-f", fmt, img], capsys)
        code2, given, _ = run_inproc(["lowmag", "-f", fmt, "--norm", "1,2", img], capsys)
        assert code == code2 == 0 and given == plain[fmt] and "normalisation" not in given
    check_published_schema(json.loads(plain["json"]), "lowmag")
    b = write_mrc(tmp_path / "b.mrc", good_image(2))
    code, _, _ = run_inproc(["lowmag", img, b, "-o", tmp_path / "out", "-f", "json-full", "--norm", "7,3"], capsys)
    assert code == 0
    assert [json.loads((tmp_path / "out" / f"{n}.json").read_text())["normalisation"]["mean"] for n in "ab"] == [7.0] * 2
    assert seen[:4] == [(160.83, 27.64), None, (-15.0, 2.0), None] and seen[-2:] == [(7.0, 3.0)] * 2


@pytest.mark.parametrize("value,words", [
    ("5", ["expected MEAN,STD"]), ("a,b", ["must be numbers"]), ("1,2,3", ["expected MEAN,STD"]),
    ("1,0", ["STD must be > 0"]), ("1,-2", ["STD must be > 0"]), ("nan,1", ["finite"]), ("1,inf", ["finite"]),
])
def test_bad_norm_exit_2_one_line_no_file(tmp_path, fake, capsys, monkeypatch, value, words):
    """A bad --norm is a usage error: exit 2, one line naming the option and the problem, no
    traceback, no output file, the pipeline never runs."""
    from ptolemy_rt import batch

    def never(*a):
        raise AssertionError("the pipeline must not run with a bad --norm")

    monkeypatch.setattr(batch, "run_pipeline", never)
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    out = tmp_path / "res.json"
    code, so, err = run_inproc(["lowmag", "--norm", value, "-o", out, img], capsys)
    assert code == 2 and so == "" and not out.exists()
    assert_one_error_line(err, "--norm", value, *words)
    code, _, err = run_inproc(["lowmag", "--norm", value, img, img, "-o", tmp_path / "dir"], capsys)
    assert code == 2 and not (tmp_path / "dir").exists()
    assert_one_error_line(err, "--norm")


def test_format_from_output_suffix(tmp_path, fake, capsys):
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    out = tmp_path / "res.csv"
    code, so, _ = run_inproc(["lowmag", "-o", out, img], capsys)
    assert code == 0 and so == ""
    assert out.read_text().startswith("rank,center_x,center_y,area,brightness,score,")
    out2 = tmp_path / "res.json"
    run_inproc(["lowmag", "-o", out2, img], capsys)
    check_published_schema(json.loads(out2.read_text()), "lowmag")


def test_header_pixel_size_used_when_plausible(tmp_path, fake, capsys):
    img = write_mrc(tmp_path / "a.mrc", good_image(1), voxel_a=3000.0)  # 300 nm/px
    code, out, err = run_inproc(["lowmag", "-f", "csv", img], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert float(rows[0]["center_x_um"]) == pytest.approx(36 * 0.3)
    assert err == ""  # median 40 px squares at 300 nm = 12 µm: plausible
    img2 = write_mrc(tmp_path / "b.mrc", good_image(1), voxel_a=1.0)  # the unset-header default
    code, out, err = run_inproc(["lowmag", "-f", "csv", img2], capsys)
    assert "center_x_um" not in out and err == ""
    img3 = write_mrc(tmp_path / "c.mrc", good_image(1), voxel_a=3.0)  # 0.3 nm: not an atlas
    code, out, err = run_inproc(["lowmag", "-f", "csv", img3], capsys)
    assert "center_x_um" not in out
    assert "ignored" in err and err.startswith("ptolemy: warning:") and len(err.splitlines()) == 1


def test_implausible_pixel_size_warns(tmp_path, fake, capsys):
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    code, out, err = run_inproc(["lowmag", "-f", "json", "--pixel-size", "0.5", img], capsys)
    assert code == 0
    json.loads(out)
    assert len(err.splitlines()) == 1 and "looks wrong" in err


def test_empty_result_reason(tmp_path, fake, capsys):
    img = write_mrc(tmp_path / "dim.mrc", good_image(1) / 50.0)  # mean < 10: stand-in finds nothing
    code, out, err = run_inproc(["lowmag", "-f", "json", img], capsys)
    assert code == 0 and json.loads(out) == []
    assert "no bright squares" in err and err.startswith("ptolemy: note:")
    code, out, err = run_inproc(["medmag", "-f", "csv", img], capsys)
    assert out.splitlines()[0] == "# reason: fewer than 2 hole regions: no lattice"
    code, out, err = run_inproc(["medmag", "-f", "txt", img], capsys)
    assert "# reason: fewer than 2 hole regions" in out


def test_internal_error_one_line_traceback_on_request(tmp_path, monkeypatch, capsys):
    from ptolemy_rt import batch

    def broken(*a):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(batch, "run_pipeline", broken)
    monkeypatch.setattr(batch, "model_set", lambda name: None)
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    out = tmp_path / "res.json"
    code, so, err = run_inproc(["lowmag", "-o", out, img], capsys)
    assert code == 1 and so == ""
    assert_one_error_line(err, "internal error", "ZeroDivisionError", "boom", "PTOLEMY_DEBUG")
    assert not out.exists()
    monkeypatch.setenv("PTOLEMY_DEBUG", "1")
    code, so, err = run_inproc(["lowmag", img], capsys)
    assert code == 1 and "Traceback" in err and err.splitlines()[-1].startswith("ptolemy: error: internal error")


def test_plot_option_writes_png(tmp_path, fake, capsys):
    pytest.importorskip("PIL")
    from PIL import Image

    img = write_mrc(tmp_path / "a.mrc", good_image(1, (100, 180)))
    png = tmp_path / "overlay.png"
    code, out, err = run_inproc(["lowmag", "--plot", png, img], capsys)
    assert code == 0
    json.loads(out)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (180, 100)


def test_plot_without_pillow_fails_before_work(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    out = tmp_path / "res.json"
    code, so, err = run_inproc(["lowmag", "-o", out, "--plot", tmp_path / "o.png", img], capsys)
    assert code == 5 and so == ""
    assert_one_error_line(err, "Pillow", "pip install")
    assert not out.exists() and not (tmp_path / "o.png").exists()


# ------------------------------------------------------------ SerialEM navigator output

NAV = """AdocVersion = 2.00

[Item = 7]
Color = 2
StageXYZ = 100.0 -50.0 3.5
NumPts = 5
Regis = 1
Type = 2
MapID = 4242
MapWidthHeight = 320 256
MapScaleMat = 0.5 0 0 0.5
PtsX = 0 1 1 0 0
PtsY = 0 0 1 1 0
"""


def _nav(tmp_path):
    p = tmp_path / "grid.nav"
    p.write_text(NAV)
    return p


def test_nav_output(tmp_path, fake, capsys):
    from ptolemy_rt import navigator

    img = write_mrc(tmp_path / "map.mrc", good_image(1, (128, 160)))  # the map binned by 2
    nav = _nav(tmp_path)
    out = tmp_path / "targets.nav"
    code, so, err = run_inproc(["lowmag", img, "--nav-map", f"{nav}:7", "-o", out, "--nav-acquire", "1"], capsys)
    assert code == 0 and so == "" and err == "", err
    items = navigator.read_nav(out)
    assert [it["_label"] for it in items] == ["8", "9", "10"]
    assert items[0]["Note"].startswith("ptolemy rank 1 score 0.9000")
    assert [it["Acquire"] for it in items] == ["1", "0", "0"]
    assert all(it["DrawnID"] == "4242" for it in items)
    # centre of the best box (35.5, 45.25) px of the 160×128 image → map px (71, 256-90.5) → stage
    x, y, z = (float(v) for v in items[0]["StageXYZ"].split())
    assert (x, y, z) == pytest.approx((100.0 + (71.0 - 160) / 0.5, -50.0 + (165.5 - 128) / 0.5, 3.5))


def test_nav_errors(tmp_path, fake, monkeypatch, capsys):
    from ptolemy_rt import batch

    img = write_mrc(tmp_path / "map.mrc", good_image(1, (128, 160)))
    nav = _nav(tmp_path)
    before = nav.read_text()
    code, _, err = run_inproc(["lowmag", img, "-o", tmp_path / "t.nav"], capsys)  # .nav needs --nav-map
    assert code == 2 and "--nav-map" in err
    code, _, err = run_inproc(["lowmag", img, "--nav-map", f"{nav}:7"], capsys)  # not to stdout
    assert code == 2 and "-o" in err
    code, _, err = run_inproc(["lowmag", img, "-f", "csv", "--nav-map", f"{nav}:7", "-o", tmp_path / "x.csv"], capsys)
    assert code == 2
    code, _, err = run_inproc(["lowmag", img, img.parent, "--nav-map", f"{nav}:7", "-o", tmp_path / "d"], capsys)
    assert code == 2 and "one image" in err
    code, _, err = run_inproc(["lowmag", img, "--nav-map", f"{nav}:7", "-o", nav], capsys)
    assert code == 5 and "refusing" in err and nav.read_text() == before

    def never(*a):
        raise AssertionError("the pipeline must not run when the navigator is unusable")

    monkeypatch.setattr(batch, "run_pipeline", never)
    code, _, err = run_inproc(["lowmag", img, "--nav-map", f"{nav}:99", "-o", tmp_path / "t.nav"], capsys)
    assert code == 3 and len(err.splitlines()) == 1 and "no navigator item labelled '99'" in err
    code, _, err = run_inproc(["lowmag", img, "--nav-map", f"{tmp_path / 'missing.nav'}:7", "-o", tmp_path / "t.nav"], capsys)
    assert code == 3 and "no such navigator file" in err
    code, _, err = run_inproc(["lowmag", img, "--nav-map", "nolabel", "-o", tmp_path / "t.nav"], capsys)
    assert code == 2 and "NAVFILE:LABEL" in err
    assert not (tmp_path / "t.nav").exists()


def test_split_nav_map_windows_paths():
    from ptolemy_rt.options import parse_nav_map as split_nav_map

    assert split_nav_map(r"C:\data\grid1.nav:12") == (r"C:\data\grid1.nav", "12")
    assert split_nav_map("/d/s.nav:A-3") == ("/d/s.nav", "A-3")


def test_lattice_reaches_the_pipeline(tmp_path, fake, capsys, monkeypatch):
    """medmag --lattice square|oblique goes to find_holes (one image and batches); auto (the
    default) passes None = the model set's choice; a bad value is a usage error (exit 2)."""
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    seen = []

    def spy(kind, image, models, options):
        seen.append(options.lattice)
        return fake(kind, image, models, options)

    from ptolemy_rt import batch

    monkeypatch.setattr(batch, "run_pipeline", spy)
    assert run_inproc(["medmag", "-f", "json", "--lattice", "oblique", img], capsys)[0] == 0
    assert run_inproc(["medmag", "-f", "json", "--lattice", "SQUARE", img], capsys)[0] == 0
    assert run_inproc(["medmag", "-f", "json", img], capsys)[0] == 0
    b = write_mrc(tmp_path / "b.mrc", good_image(2))
    assert run_inproc(["medmag", img, b, "-o", tmp_path / "out", "--lattice", "oblique"], capsys)[0] == 0
    assert seen == ["oblique", "square", None, "oblique", "oblique"]
    code, out, err = run_inproc(["medmag", "--lattice", "hexagonal", img], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    code, out, err = run_inproc(["lowmag", "--lattice", "oblique", img], capsys)
    assert code == 2 and out == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (a device whose writes fail: disk full)")
def test_outputs_appear_together_or_not_at_all(tmp_path, fake, capsys):
    """-o result plus a --plot that cannot be written (disk full): exit 5, and the result file
    is not written either (before: out.json was left behind)."""
    pytest.importorskip("PIL")
    img = write_mrc(tmp_path / "a.mrc", good_image(1, (100, 180)))
    out = tmp_path / "res.json"
    code, so, err = run_inproc(["lowmag", "-o", out, "--plot", "/dev/full", img], capsys)
    assert code == 5 and so == ""
    assert_one_error_line(err, "/dev/full")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.mrc"]
