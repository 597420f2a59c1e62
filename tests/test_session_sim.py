"""Session simulator (ptolemy_rt/session_sim.py): truth tied to the synthetic generator, the
operator's calls, and the active-learning target (ours >= the best published rule)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from ptolemy_rt import session_sim as ss

pytest.importorskip("starlette")


def test_square_truth_follows_the_drawn_atlas():
    g = ss.make_grid(2, (768, 768))
    assert len(g.squares) > 10
    from ptolemy_rt import synthetic

    _, truth, ids, _ = synthetic.atlas_with_ids(2, (768, 768))
    for s in g.squares:  # each detected square carries the label and ice of the drawn square under it
        x, y = int(s.row.center[0]), int(s.row.center[1])
        t = int(ids[y, x])
        if t:
            assert s.label == truth[t - 1].label
            assert s.ice_nm == pytest.approx(ss.square_ice_nm(truth[t - 1].brightness))
        else:
            assert s.label == "none"
    # darker squares (more ice) -> thicker ice, Beer-Lambert
    assert ss.square_ice_nm(120.0) > ss.square_ice_nm(150.0) > ss.square_ice_nm(180.0) > 0.0


def test_hole_truth_labels_ice_and_ctf():
    rng = np.random.default_rng(0)
    good = ss.SimSquare(None, "good", 45.0, 1.0, 11)
    thick = ss.SimSquare(None, "thick", 110.0, 1.0, 12)
    cont = ss.SimSquare(None, "contaminated", 45.0, 1.0, 13)
    empty = ss.SimSquare(None, "empty", 0.0, 1.0, 14)
    frac = {}
    for sq in (good, thick, cont, empty):  # 20 squares of each kind
        holes = [h for k in range(20) for h in ss.truth_holes(ss.SimSquare(None, sq.label, sq.ice_nm, 1.0, 100 * k))[1]]
        frac[sq.label] = np.mean([h.ctf_A < ss.CTF_GOOD_A for h in holes])
        for h in holes:
            assert (h.ice_nm == 0.0) == (h.label in ("empty", "broken"))
    assert frac["good"] > 0.7 and frac["thick"] < 0.3 and frac["contaminated"] < 0.5 and frac["empty"] == 0.0
    assert np.mean([ss.hole_truth(cont, lab, rng).label == "contaminated"
                    for lab in ss.draw_hole_labels(cont, 200, rng)]) > 0.45
    # CTF worsens with ice: the 5 Å cut falls near 78 nm
    c = [np.median([ss.hole_ctf_A("good", t, rng) for _ in range(200)]) for t in (30, 60, 77, 90, 120)]
    assert c == sorted(c) and c[2] < 5.0 < c[3]


def test_operator_calls_and_determinism(tmp_path):
    g = ss.make_grid(3, (768, 768))
    calls = []
    from ptolemy_rt.server import PtolemyService

    svc = PtolemyService(tmp_path / "s", rule="fitted")

    def client(method, path, body=None):  # in-process, recording every call
        calls.append(path)
        name = path.strip("/")
        if name == "push_lm":
            svc.store.add_squares(body["grid_id"], body["tile_id"], body["_rows"], "sim")
            return None
        if name == "push_and_evaluate_mm":
            return svc._evaluated(svc.store.add_holes(body["grid_id"], body["square_id"], body["mm_img_id"],
                                                      body["_rows"], "sim"))
        fn = getattr(svc, name)
        return fn(body) if body is not None else fn()

    ctfs = ss.run_session(g, "ours", n_exposures=40, client=client)
    assert len(ctfs) == 40
    assert calls[:4] == ["/initialize_new_session", "/push_lm", "/current_lm_state", "/set_noice_hole_intensity"]
    assert calls.count("/visit_holes") == 40  # one exposure per visit_holes, as Appion
    assert "/select_next_square" in calls
    counts = svc.store.counts()
    assert counts["visited_holes"] == 40
    assert ss.run_session(g, "ours", n_exposures=40) == ctfs  # same grid and rule: same session


def test_ours_against_the_published_rules_two_seeds():
    res = ss.benchmark([0, 1], n_exposures=100)
    good = {r: sum(v["good"][100]) for r, v in res["rules"].items()}
    assert good["ours"] >= max(good["gp"], good["prior_x_gp"]), good
    assert good["ours"] >= 0.97 * good["prior"], good


@pytest.mark.skipif(not os.environ.get("PTOLEMY_SLOW_TESTS"), reason="slow (set PTOLEMY_SLOW_TESTS=1)")
def test_active_learning_target_ten_seeds():
    """Issue 17 target: in the first 100 exposures, over 10 seeds, ours collects at least as
    many good exposures as the best published rule."""
    res = ss.benchmark(range(10), n_exposures=100)
    good = {r: sum(v["good"][100]) for r, v in res["rules"].items()}
    assert good["ours"] >= max(good["prior"], good["gp"], good["prior_x_gp"]), good
