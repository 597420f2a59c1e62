"""docs/ALGORITHM.md#evaluation-metrics metrics on hand-made cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ptolemy_rt.evaluate import (accuracy, average_precision, classification_metrics, match_points_to_discs,
                                 points_in_polygon, roc_auc)


def test_roc_auc_hand_cases():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # one inversion among 2×2 pairs: 3/4
    assert roc_auc([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.75)
    # tie between one positive and one negative counts one half: (1 + 0.5) / 2
    assert roc_auc([0, 1, 1], [0.3, 0.3, 0.9]) == pytest.approx(0.75)
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_roc_auc_equals_pair_count_on_random_data():
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    s = np.round(rng.random(200), 1)  # many ties
    pos, neg = s[y], s[~y]
    ref = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert roc_auc(y, s) == pytest.approx(ref)


def test_average_precision_hand_cases():
    assert average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert average_precision([0, 1], [0.9, 0.1]) == pytest.approx(0.5)
    assert average_precision([1, 1, 0], [0.9, 0.8, 0.1]) == 1.0
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_accuracy_and_bundle():
    assert accuracy([1, 0, 1, 0], [0.9, 0.2, 0.4, 0.6]) == 0.5
    m = classification_metrics([1, 0], [0.7, 0.3])
    assert m == {"n": 2, "positives": 1, "roc_auc": 1.0, "ap": 1.0, "accuracy": 1.0}


def test_points_in_polygon():
    sq = [(0, 0), (10, 0), (10, 10), (0, 10)]
    p = points_in_polygon([(5, 5), (10, 5), (11, 5), (-0.1, 3)], sq)
    assert p.tolist() == [True, True, False, False]
    diamond = [(5, 0), (10, 5), (5, 10), (0, 5)]  # rotated 45°
    assert points_in_polygon([(5, 5), (1, 1), (9, 5)], diamond).tolist() == [True, False, True]


def test_hole_matching_rule():
    holes = [(0, 0), (100, 0), (200, 0), (300, 0)]
    # hole 0: one prediction (TP); hole 1: two (FN, both FP); hole 2: none (FN);
    # hole 3: one (TP); one prediction in no hole (FP)
    pred = [(1, 1), (99, 0), (102, 3), (301, -2), (150, 0)]
    r = match_points_to_discs(pred, holes, 10.0)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 3, 2)
    assert r["precision"] == pytest.approx(2 / 5) and r["recall"] == pytest.approx(2 / 4)
    assert r["f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert r["assign"].tolist() == [0, 1, 1, 3, -1]


def test_hole_matching_edge_cases():
    assert match_points_to_discs([], [], 5)["f1"] == 1.0          # nothing to find, nothing found
    r = match_points_to_discs([], [(0, 0)], 5)
    assert (r["tp"], r["fn"], r["recall"], r["f1"]) == (0, 1, 0.0, 0.0)
    r = match_points_to_discs([(0, 0)], [], 5)
    assert (r["fp"], r["precision"]) == (1, 0.0)
    # per-hole radii; a prediction within reach of two holes goes to the nearer one
    r = match_points_to_discs([(6, 0)], [(0, 0), (10, 0)], [8, 5])
    assert r["assign"].tolist() == [1] and r["tp"] == 1
    # predictions in ignored (unlabelled) holes are dropped, not counted as FP
    r = match_points_to_discs([(0, 0), (50, 0)], [(0, 0)], 5, ignore_xy=[(50, 0)], ignore_radii=5)
    assert (r["tp"], r["fp"]) == (1, 0)


def test_spearman_and_compare_centres():
    from ptolemy_rt.evaluate import compare_centres, spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    r = compare_centres([(0, 0), (100, 100), (3, 4), (500, 0)], [(1, 1), (104, 100), (300, 300)], tol_px=10)
    assert (r["matched"], r["missing"], r["extra"]) == (2, 1, 2)
    assert sorted(r["pairs"]) == [(0, 0), (1, 1)]


def test_evaluate_end_to_end_on_synthetic_folder(tmp_path):
    """evaluate() on a small labelled folder written from the generator: structure of the
    result and perfect square localisation (the mixture finds every full square)."""
    from export.evalset import atlas_points, hole_points
    from ptolemy_rt import synthetic
    from ptolemy_rt.evaluate import evaluate
    from ptolemy_rt.labels import write_dataset
    from ptolemy_rt.models import models_root

    if not (models_root() / "ptolemy-rt-synth-v1" / "manifest.json").is_file():
        pytest.skip("own model set not built")
    items = []
    for s in (9_000_000, 9_000_001):
        img, truth = synthetic.atlas(s)
        items.append((f"a{s}", img, atlas_points(truth, img.shape)))
    write_dataset(tmp_path / "lowmag", "lowmag", items, points="all", dtype=np.int16)
    img, truth = synthetic.medmag_image(9_000_013)
    write_dataset(tmp_path / "medmag", "medmag", [("m", img, hole_points(truth, img.shape))], points="all")
    r = evaluate("ptolemy-rt-synth-v1", tmp_path)
    low, med = r["lowmag"], r["medmag"]
    assert low["square_localisation"]["recall"] == 1.0
    assert low["square_classification"]["n"] > 50
    assert 0.5 < low["square_classification"]["roc_auc"] <= 1.0
    assert set(med["hole_localisation"]) == {"unet", "unet_lattice", "unet_lattice_threshold"}
    for v in med["hole_localisation"].values():
        assert 0.0 <= v["f1"] <= 1.0
