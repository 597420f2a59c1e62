"""`make wheel` gives a wheel that works outside the checkout: installed into a bare folder it
finds its default model set without PTOLEMY_MODELS_DIR, gives the checkout's results, and its
messages name commands that work for an installed package (issue: one wheel for microscope PCs).

The wheel here is built without compiled kernels (`--kernels none`, the jit fallback) to keep
the test short; `make wheel` adds them (docs/INSTALL.md).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_expected as E  # noqa: E402


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(site folder with the wheel installed, wheel path)."""
    tmp = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, str(REPO / "packaging" / "build_wheel.py"), "--kernels", "none",
                        "--out", str(tmp / "dist")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = (tmp / "dist").glob("ptolemy_rt-*.whl")
    site = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                        str(site), str(whl)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return site, whl


def _run(site: Path, cwd: Path, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("PTOLEMY_MODELS_DIR", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), XDG_DATA_HOME=str(cwd / "xdg"))
    return subprocess.run([sys.executable, "-m", "ptolemy_rt.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


def test_wheel_holds_the_package_and_the_default_set_only(installed):
    _, whl = installed
    names = zipfile.ZipFile(whl).namelist()
    assert "ptolemy_rt/model_sets/ptolemy-rt-synth-v1/manifest.json" in names
    assert "ptolemy_rt/export/convert.py" in names
    assert not [n for n in names if n.startswith(("tests/", "ptolemy_rt/model_sets/ptolemy-2022"))]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_installed_wheel_finds_its_set_and_gives_the_checkouts_results(installed, tmp_path):
    site, _ = installed
    r = _run(site, tmp_path, "models", "list")
    assert r.returncode == 0, r.stderr
    row = [ln for ln in r.stdout.splitlines() if ln.startswith("ptolemy-rt-synth-v1\t")]
    assert row and row[0].endswith("\tverified") and str(site / "ptolemy_rt" / "model_sets") in row[0]
    case = "medmag_s41.default"
    name, opts = E.CASES[case]
    r = _run(site, tmp_path, "medmag", E.input_path(name), "-f", "json-full", *opts)
    assert r.returncode == 0, r.stderr
    got = E.comparable(r.stdout)
    assert got["models"] == "ptolemy-rt-synth-v1"
    want = json.loads((E.DATA / f"{case}.json").read_text())
    assert [h["center"] for h in got["items"]] == [h["center"] for h in want["items"]]


def test_installed_wheel_messages_name_commands_that_work_there(installed, tmp_path):
    site, _ = installed
    r = _run(site, tmp_path, "medmag", E.input_path("medmag_s41"), "--models", "ptolemy-2022")
    assert r.returncode == 4
    assert "ptolemy models convert-published --weights DIR" in r.stderr and "make " not in r.stderr
    r = _run(site, tmp_path, "models", "convert-published", "--weights", tmp_path / "nope")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such folder" in r.stderr
