"""Leginon wrapper scripts, run exactly as Leginon runs them: SCRIPT OUTNAME MRC_PATH GRID_DIR,
with the ptolemy-rt venv on PATH; OUTNAME must hold the published JSON schema."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import LOWMAG_MRC, MEDMAG_MRC, REPO, needs_shared
from test_cli_common import VENV_BIN, assert_one_error_line, check_published_schema, needs_models

SCRIPTS = REPO / "integrations" / "leginon"
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


def _leginon(script, outname, mrc, grid_dir, path, cwd, extra_env=None):
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    env.update(extra_env or {})
    return subprocess.run([str(SCRIPTS / script), str(outname), str(mrc), str(grid_dir)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_scripts_are_executable_posix_sh():
    for kind in ("lowmag", "medmag"):
        s = SCRIPTS / f"ptolemy_{kind}_score.sh"
        assert os.access(s, os.X_OK)
        assert s.read_text().startswith("#!/bin/sh")
        assert subprocess.run(["sh", "-n", str(s)]).returncode == 0
    assert (SCRIPTS / "README.md").exists()


@needs_shared
@needs_models
@pytest.mark.parametrize("kind,mrc", [("lowmag", LOWMAG_MRC), ("medmag", MEDMAG_MRC)])
def test_leginon_calls_script(tmp_path, kind, mrc):
    grid_dir = tmp_path / "grid01"
    grid_dir.mkdir()
    outname = tmp_path / f"{kind}_scores.json"
    p = _leginon(f"ptolemy_{kind}_score.sh", outname, mrc, grid_dir, f"{VENV_BIN}:{BASE_PATH}", tmp_path)
    assert p.returncode == 0, p.stderr
    data = json.loads(outname.read_text())
    check_published_schema(data, kind)
    assert len(data) > 0
    assert sorted(os.listdir(tmp_path)) == sorted(["grid01", outname.name])  # nothing else left behind


def test_bad_image_leaves_no_outname(tmp_path):
    bad = tmp_path / "bad.mrc"
    bad.write_text("junk\n" * 500)
    outname = tmp_path / "scores.json"
    p = _leginon("ptolemy_medmag_score.sh", outname, bad, tmp_path, f"{VENV_BIN}:{BASE_PATH}", tmp_path)
    assert p.returncode == 3
    assert_one_error_line(p.stderr, "bad.mrc")
    assert not outname.exists()


def test_finds_repo_venv_without_path(tmp_path):
    """With ptolemy not on PATH the script uses the .venv of its checkout."""
    bad = tmp_path / "bad.mrc"
    bad.write_text("junk\n" * 500)
    p = _leginon("ptolemy_lowmag_score.sh", tmp_path / "o.json", bad, tmp_path, BASE_PATH, tmp_path)
    if not (REPO / ".venv" / "bin" / "ptolemy").exists():
        pytest.skip("no .venv in the checkout")
    assert p.returncode == 3, p.stderr  # ptolemy ran (127 would mean not found)
    assert_one_error_line(p.stderr, "bad.mrc")


def test_usage():
    p = subprocess.run([str(SCRIPTS / "ptolemy_lowmag_score.sh"), "x"], capture_output=True, text=True)
    assert p.returncode == 2 and "usage" in p.stderr
