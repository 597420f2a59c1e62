"""bench/real_eval.py (issue 16): labels from the published set on a shared real image, then
`evaluate` of the own set on them (skipped without ../shared or the published set); the
off-film rule on a crafted image."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from conftest import REPO, needs_shared
from test_cli_common import _have_pipelines

needs_published = pytest.mark.skipif(not _have_pipelines("ptolemy-2022"),
                                     reason="published model set not built (make models)")


def _real_eval():
    spec = importlib.util.spec_from_file_location("real_eval", REPO / "bench" / "real_eval.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["real_eval"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_points_checked_by_eye_are_dropped_by_name_and_position():
    re = _real_eval()
    (x, y, _), = re.NOT_A_HOLE["leginon_hole"]
    pts = np.array([[x + 20, y - 10], [x + 150, y]])
    assert re.checked_by_eye("leginon_hole", pts, 294.0).tolist() == [True, False]
    assert re.checked_by_eye("readme_medmag", pts, 294.0).tolist() == [False, False]


def test_off_film_rule_drops_points_on_a_dark_bar_only():
    re = _real_eval()
    img = np.full((200, 300), 1000.0, np.float32)
    img[:, 200:] = 20.0                       # a grid bar on the right
    img[90:110, 40:60] = 600.0               # a dark (thick-ice) hole on the film: kept
    pts = np.array([[50.0, 100.0], [120.0, 50.0], [250.0, 100.0], [205.0, 20.0]])
    assert re.off_film(img, pts, 40.0).tolist() == [False, False, True, True]


@needs_shared
@needs_published
def test_real_eval_on_the_readme_image(tmp_path):
    re = _real_eval()
    records = re.build(tmp_path / "real", only=["readme_medmag"], log=lambda m: None)
    assert [r["name"] for r in records] == ["readme_medmag"]
    rec = records[0]
    # the published set's 17 holes of the README example, at its own scale (pitch ~290 px)
    assert rec["labelled"] == 17 and rec["dropped"] == [] and rec["pitch_px"] == pytest.approx(290, rel=0.05)
    assert (tmp_path / "real" / "all" / "medmag" / "dataset.json").is_file()
    rows = re.evaluate_sets(records, ["ptolemy-rt-synth-v1"], log=lambda m: None)
    (row,) = rows
    # the own set finds every published hole within 0.1 × pitch, nothing extra (issue 16 target at 1×)
    assert row["labelled"] == 17 and row["recall"] >= 0.9 and row["extra_frac"] <= 0.05
    assert "readme_medmag" in re.format_rows(rows)
