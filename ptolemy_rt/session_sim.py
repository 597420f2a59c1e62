"""Smart Leginon session simulator: synthetic grids whose every hole has a known CTF and ice
thickness, a simulated operator that collects holes in the server's order and posts
``visit_holes``, and the square-ordering rules compared side by side
(docs/ALGORITHM.md#session-simulator). Not used by ``ptolemy serve`` itself (a benchmark and
test tool); runnable as ``python -m ptolemy_rt.session_sim`` and as the ``server`` row of
``make bench``.

Grid truth, tied to what `synthetic.atlas` drew:

- each atlas square's ice thickness comes from its drawn brightness, Beer-Lambert:
  ``ice_nm = ATLAS_LAMBDA_NM · ln(VACUUM_COUNTS / brightness)`` (clipped at 0);
- the labels of its holes are drawn from a mixture set by the square's label
  (``HOLE_MIX``: a ``contaminated`` square has mostly contaminated holes, ``thick`` thick
  ones, ``dry`` / ``empty`` empty ones, ``broken`` broken ones), plus empty holes with
  probability exp(−ice / 15 nm) (no ice, no specimen); a detected square matching no drawn
  square has junk holes only;
- each hole's ice thickness is the square's × U(0.8, 1.15) (thick holes: U(2, 4) × the
  square's + 40 nm, as `synthetic.medmag_image` draws them; empty and broken holes: 0);
- its CTF-fit resolution (Å): good and thick holes ``2.5 + 1.5 (ice / 60 nm)²`` × a
  log-normal factor (σ 0.1), so holes above ~78 nm of ice fail the 5 Å cut; empty (no
  signal) U(10, 25), contaminated U(6, 15), crystalline U(4.5, 9), broken / junk U(10, 30).

Two ways to make the holes of a square:

- ``"truth"`` (the table, fast): the hole rows are drawn directly (centres on a square
  lattice in reading order of a notional 1024×1440 image, 18-30 holes, fewer on squares cut
  by the atlas edge), with a simulated hole classifier score ``expit(b[label] + N(0, 1))``
  (`HOLE_PRIOR_LOGIT`) and features of the server's layout; only the atlas goes through the
  real square pipeline (`lowmag.find_squares`), the rest through the server's store, GPs and
  CSV replies;
- ``"render"``: a `synthetic.medmag_image` is drawn for the square (hole labels from the
  square's mixture) and pushed through the server's real hole pipeline
  (``push_and_evaluate_mm``); each detected hole takes the truth of the nearest drawn hole
  (ice = drawn ice × square ice / 37.5 nm, the mean of the generator's typical ice; none
  within 0.5 radius: junk).

Operator (as Leginon + Appion drive the server, LEGINON_PTOLEMY_SERVER.md §5): the first
square is the best ``prior_score`` of ``current_lm_state``; at each square it pushes the
med-mag image, exposes the reply's holes whose ``prior_score`` ≥ ``threshold`` in the reply's
row order, one ``visit_holes`` per exposure (ctf Å, ice nm), then calls
``select_next_square`` and takes the best score among the squares it has not acquired
(ties to the later square, as Leginon's reverse sort). Rules (`RULES`): ``prior`` (score =
prior_score), ``gp`` (GP_probs of the published server, Leginon py3 / trunk), ``prior_x_gp``
(prior_score × GP_probs of the published server, Leginon active-learning branch), ``ours``
(GP_probs of ``ptolemy serve --learning fitted``).
"""
from __future__ import annotations

import csv
import io
import math
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

ATLAS_LAMBDA_NM = 150.0  # effective attenuation length at atlas magnification, nm
VACUUM_COUNTS = 225.0  # atlas brightness of a square with no ice (the generator's empty squares)
CTF_GOOD_A = 5.0
RULES = ("prior", "gp", "prior_x_gp", "ours")
RULE_NAMES = {"prior": "prior only", "gp": "GP only (published)", "prior_x_gp": "prior × GP (published)",
              "ours": "ours (fitted GP)"}
CHECKPOINTS = (50, 100, 200)
HOLE_LABELS = ("good", "thick", "empty", "contaminated", "crystalline", "broken")
#: hole-label mixture (good, thick, empty, contaminated, crystalline, broken) per square label
HOLE_MIX = {
    "good": (0.82, 0.08, 0.02, 0.04, 0.04, 0.0),
    "edge": (0.70, 0.12, 0.05, 0.06, 0.05, 0.02),
    "thick": (0.15, 0.75, 0.0, 0.05, 0.05, 0.0),
    "dry": (0.40, 0.0, 0.55, 0.0, 0.05, 0.0),
    "empty": (0.0, 0.0, 0.95, 0.0, 0.0, 0.05),
    "broken": (0.30, 0.0, 0.20, 0.0, 0.0, 0.50),
    "contaminated": (0.30, 0.10, 0.0, 0.60, 0.0, 0.0),
    "none": (0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
}
HOLE_PRIOR_LOGIT = {"good": 1.5, "thick": -1.0, "empty": -0.5, "contaminated": -1.5, "crystalline": 0.0,
                    "broken": -2.0}
HOLE_LAMBDA_NM = 350.0  # med-mag attenuation length (synthetic.medmag_image's lambda_nm)


def square_ice_nm(brightness: float) -> float:
    """Ice thickness (nm) of an atlas square from its drawn mean brightness (counts).

    Parameters
    ----------
    brightness : float
        `synthetic.SquareTruth.brightness`.

    Returns
    -------
    float
        ATLAS_LAMBDA_NM · ln(VACUUM_COUNTS / brightness), at least 0.

    Examples
    --------
    >>> round(square_ice_nm(150.0), 1), square_ice_nm(230.0)
    (60.8, 0.0)
    """
    return max(0.0, ATLAS_LAMBDA_NM * math.log(VACUUM_COUNTS / max(float(brightness), 1e-6)))


def hole_ctf_A(label: str, ice_nm: float, rng: np.random.Generator) -> float:
    """CTF-fit resolution (Å) of an exposure of a hole (module docstring).

    Parameters
    ----------
    label : str
        One of HOLE_LABELS, or "junk".
    ice_nm : float
        The hole's ice thickness, nm.
    rng : numpy.random.Generator

    Returns
    -------
    float

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> 3.0 < hole_ctf_A("good", 40.0, rng) < 4.5, hole_ctf_A("empty", 0.0, rng) > 9
    (True, True)
    """
    if label in ("good", "thick"):
        return float((2.5 + 1.5 * (ice_nm / 60.0) ** 2) * math.exp(0.1 * rng.standard_normal()))
    lo, hi = {"empty": (10.0, 25.0), "contaminated": (6.0, 15.0), "crystalline": (4.5, 9.0)}.get(label, (10.0, 30.0))
    return float(rng.uniform(lo, hi))


@dataclass(frozen=True)
class SimHole:
    """One hole's truth: label, ice thickness (nm), the CTF (Å) an exposure of it gives."""

    label: str
    ice_nm: float
    ctf_A: float


@dataclass
class SimSquare:
    """A detected square: its server row, the drawn square it matches (label, ice nm) and
    its holes (drawn lazily)."""

    row: object  # server_store.SquareRow
    label: str
    ice_nm: float
    visible: float
    seed: int
    holes: list = field(default_factory=list)


@dataclass
class SimGrid:
    """One synthetic grid: the atlas image, its detected squares with truth."""

    seed: int
    image: np.ndarray
    squares: list


def draw_hole_labels(sq: SimSquare, n: int, rng: np.random.Generator) -> list[str]:
    """Labels of ``n`` holes of a square (its HOLE_MIX plus empty holes with p = exp(−ice / 15 nm)).

    Examples
    --------
    >>> s = SimSquare(None, "empty", 0.0, 1.0, 0)
    >>> set(draw_hole_labels(s, 20, np.random.default_rng(0))) <= {"empty", "broken"}
    True
    """
    mix = np.asarray(HOLE_MIX.get(sq.label, HOLE_MIX["good"]), float)
    mix = mix / mix.sum()
    p_empty = math.exp(-sq.ice_nm / 15.0) if sq.label != "none" else 0.0
    out = []
    for _ in range(n):
        if rng.random() < p_empty:
            out.append("empty")
        else:
            out.append(HOLE_LABELS[int(rng.choice(len(HOLE_LABELS), p=mix))])
    return out


def hole_truth(sq: SimSquare, label: str, rng: np.random.Generator, drawn_ice_nm: float | None = None) -> SimHole:
    """Truth of one hole of ``sq`` with ``label`` (ice nm and CTF Å, module docstring).

    Examples
    --------
    >>> s = SimSquare(None, "good", 50.0, 1.0, 0)
    >>> h = hole_truth(s, "thick", np.random.default_rng(1))
    >>> h.ice_nm > 139, h.ctf_A > 10
    (True, True)
    """
    if label in ("empty", "broken"):
        ice = 0.0
    elif drawn_ice_nm is not None:
        ice = float(drawn_ice_nm) * sq.ice_nm / 37.5
    elif label == "thick":
        ice = sq.ice_nm * float(rng.uniform(2.0, 4.0)) + 40.0
    else:
        ice = sq.ice_nm * float(rng.uniform(0.8, 1.15))
    return SimHole(label, ice, hole_ctf_A(label, ice, rng))


def make_grid(seed: int, shape=(1536, 1536), models=None) -> SimGrid:
    """Draw an atlas (`synthetic.atlas_with_ids`), find its squares with the real pipeline and
    attach each detected square's truth (the drawn square under its centre; none: "none").

    Parameters
    ----------
    seed : int
        Grid seed (atlas seed; hole draws derive from it).
    shape : (int, int)
        Atlas size, px.
    models : ModelSet or str or None
        Model set for `lowmag.find_squares` (None: the default set).

    Returns
    -------
    SimGrid

    Examples
    --------
    >>> g = make_grid(1, (512, 512))
    >>> len(g.squares) > 5, {s.label for s in g.squares} <= set(HOLE_MIX)
    (True, True)
    """
    from . import synthetic
    from .lowmag import find_squares
    from .models import load_model_set
    from .server import square_features
    from .server_store import SquareRow

    ms = models if models is not None and not isinstance(models, str) else load_model_set(models)
    img, truth, ids, _ = synthetic.atlas_with_ids(seed, shape)
    res = find_squares(img, models=ms)
    squares = []
    for k, s in enumerate(res.squares):
        cx, cy = int(s.center[0]), int(s.center[1])
        tid = int(ids[min(max(cy, 0), shape[0] - 1), min(max(cx, 0), shape[1] - 1)])
        if tid > 0:
            t = truth[tid - 1]
            label, ice, vis = t.label, square_ice_nm(t.brightness), t.visible_fraction
        else:
            label, ice, vis = "none", 0.0, 1.0
        row = SquareRow(s.center, s.vertices, s.score, s.brightness, s.area, square_features(img, s.vertices, s.area))
        squares.append(SimSquare(row, label, ice, vis, seed * 1000 + k))
    return SimGrid(seed, img, squares)


def truth_holes(sq: SimSquare):
    """The holes of a square in ``"truth"`` mode: (server HoleRows in reading order, SimHoles).

    Examples
    --------
    >>> rows, holes = truth_holes(SimSquare(None, "good", 50.0, 1.0, 3))
    >>> 18 <= len(rows) <= 30, rows[0].center[1] <= rows[-1].center[1], len(holes) == len(rows)
    (True, True, True)
    """
    from .server_store import HoleRow

    rng = np.random.default_rng([sq.seed, 1])
    n = max(4, int(round(int(rng.integers(18, 31)) * min(1.0, sq.visible))))
    labels = draw_hole_labels(sq, n, rng)
    holes = [hole_truth(sq, lab, rng) for lab in labels]
    cols = 6
    rows, i0 = [], 1.0
    for k, h in enumerate(holes):
        cx, cy = 120.0 + 220.0 * (k % cols), 110.0 + 200.0 * (k // cols)
        z = HOLE_PRIOR_LOGIT[h.label] - (max(h.ice_nm - 70.0, 0.0) / 30.0 if h.label == "good" else 0.0)
        prior = float(1.0 / (1.0 + math.exp(-(z + rng.standard_normal()))))
        inner = i0 * math.exp(-h.ice_nm / HOLE_LAMBDA_NM) * (0.6 if h.label == "contaminated" else 1.0)
        f = np.array([math.log(i0 / inner) + 0.01 * rng.standard_normal(),
                      0.05 + (0.3 if h.label in ("contaminated", "crystalline") else 0.0) + 0.02 * rng.standard_normal(),
                      inner / math.exp(-sq.ice_nm / HOLE_LAMBDA_NM), 0.35, prior])
        rows.append(HoleRow((cx, cy), 50.0, prior, f))
    return rows, holes


def render_square(sq: SimSquare, shape=(1024, 1440)):
    """A med-mag image of the square (``"render"`` mode) and a function mapping a detected
    hole centre (x, y) px to its SimHole.

    Returns
    -------
    image : numpy.ndarray, float32 [row, col]
    truth_of : callable((x, y)) -> SimHole

    Examples
    --------
    >>> img, truth_of = render_square(SimSquare(None, "good", 50.0, 1.0, 4), (512, 512))
    >>> img.shape, truth_of((-1000.0, -1000.0)).label  # far from every drawn hole: junk
    ((512, 512), 'junk')
    """
    from . import synthetic

    mix = np.asarray(HOLE_MIX.get(sq.label, HOLE_MIX["good"]), float)
    probs = {k: float(v) + 1e-3 for k, v in zip(HOLE_LABELS[:5], mix[:5])}
    img, truth = synthetic.medmag_image(int(sq.seed) % (2 ** 31), shape, label_probs=probs,
                                        broken=bool(mix[5] > 0.2), bars=0)
    rng = np.random.default_rng([sq.seed, 2])
    tr = [(h, hole_truth(sq, h.label if h.label in HOLE_LABELS else "broken", rng, h.ice_nm)) for h in truth]
    centres = np.array([h.center for h, _ in tr], float).reshape(-1, 2)

    def truth_of(xy):
        if not len(centres):
            return SimHole("junk", 0.0, hole_ctf_A("junk", 0.0, rng))
        d = np.hypot(*(centres - np.asarray(xy, float)).T)
        k = int(d.argmin())
        if d[k] > 0.5 * tr[k][0].radius:
            return SimHole("junk", 0.0, hole_ctf_A("junk", 0.0, rng))
        return tr[k][1]

    return img, truth_of


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _best(rows: list[dict], score, done: set) -> dict | None:
    """Leginon's choice: highest score, ties to the later index (reverse sort of (score, i))."""
    cand = [(score(r), i, r) for i, r in enumerate(rows) if int(r["square_id"]) not in done]
    return max(cand, key=lambda t: (t[0], t[1]))[2] if cand else None


def run_session(grid: SimGrid, rule: str, n_exposures: int = 200, threshold: float = 0.5, mode: str = "truth",
                models=None, state_dir=None, client=None) -> list[float]:
    """Simulate one session on ``grid`` with square-ordering ``rule``; the CTFs (Å) of the
    exposures in acquisition order (at most ``n_exposures``).

    Parameters
    ----------
    grid : SimGrid
    rule : one of RULES
    n_exposures : int
        Stop after this many exposures (or when every square is acquired).
    threshold : float
        Holes with prior_score ≥ threshold are exposed.
    mode : "truth" or "render"
        How the holes of a square are made (module docstring).
    models : model set for the server (render mode pipelines), None: default.
    state_dir : str or None
        Server state folder (None: a temporary folder, removed after).
    client : callable(method, path, body dict or None) -> reply, optional
        Drive a running server over HTTP instead of an in-process `server.PtolemyService`
        (render mode only; the replay test uses this).

    Returns
    -------
    list of float

    Raises
    ------
    ValueError
        Unknown rule or mode.

    Examples
    --------
    >>> g = make_grid(1, (512, 512))
    >>> ctfs = run_session(g, "ours", n_exposures=20)
    >>> len(ctfs) <= 20, all(c > 0 for c in ctfs)
    (True, True)
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if mode not in ("truth", "render"):
        raise ValueError(f"mode must be 'truth' or 'render', got {mode!r}")
    tmp = None
    if client is None:
        from .server import PtolemyService

        if state_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="ptolemy-sim-")
            state_dir = tmp.name
        svc = PtolemyService(state_dir, models=models, rule="fitted" if rule == "ours" else "published")

        def client(method, path, body=None):  # noqa: F811 - the in-process equivalent of HTTP
            name = path.strip("/")
            if name == "push_lm" and isinstance(body, dict) and "_rows" in body:
                svc.store.add_squares(body["grid_id"], body["tile_id"], body["_rows"], "sim")
                return None
            if name == "push_and_evaluate_mm" and "_rows" in body:
                ids = svc.store.add_holes(body["grid_id"], body["square_id"], body["mm_img_id"], body["_rows"], "sim")
                return svc._evaluated(ids)
            fn = getattr(svc, name)
            return fn(body) if body is not None else fn()
    try:
        return _operate(grid, rule, n_exposures, threshold, mode, client)
    finally:
        if tmp is not None:
            svc.store.close()
            tmp.cleanup()


def _operate(grid, rule, n_exposures, threshold, mode, client) -> list[float]:
    client("POST", "/initialize_new_session", {"historical_state_paths": []})
    gid, tile = 1000 + grid.seed, 1
    if mode == "truth":
        client("POST", "/push_lm", {"grid_id": gid, "tile_id": tile, "_rows": [s.row for s in grid.squares]})
    else:
        client("POST", "/push_lm", {"grid_id": gid, "tile_id": tile, "image": grid.image})
    lm = _rows(client("GET", "/current_lm_state"))
    # server rows -> detected squares: the same squares in the same order as pushed
    if len(lm) != len(grid.squares) or any((float(r["center_x"]), float(r["center_y"])) != tuple(map(float, s.row.center))
                                           for r, s in zip(lm, grid.squares)):
        raise AssertionError("the server's squares differ from the simulator's detections")
    by_id = {int(r["square_id"]): s for r, s in zip(lm, grid.squares)}
    client("POST", "/set_noice_hole_intensity", {"value": -1.0 if mode == "render" else 1.0})
    done: set = set()
    ctfs: list[float] = []
    nxt = _best(lm, lambda r: float(r["prior_score"]), done)
    mm_img = 0
    while nxt is not None and len(ctfs) < n_exposures:
        sid = int(nxt["square_id"])
        done.add(sid)
        sq = by_id[sid]
        mm_img += 1
        body = {"grid_id": gid, "tile_id": tile, "square_id": sid, "mm_img_id": mm_img}
        if mode == "truth":
            rows, holes = truth_holes(sq)
            reply = _rows(client("POST", "/push_and_evaluate_mm", dict(body, _rows=rows)))
            truth_of = dict(zip([r["hole_id"] for r in reply], holes))  # same order as pushed
            get = lambda r: truth_of[r["hole_id"]]  # noqa: E731
        else:
            img, tf = render_square(sq)
            reply = _rows(client("POST", "/push_and_evaluate_mm", dict(body, image=img)))
            get = lambda r: tf((float(r["center_x"]), float(r["center_y"])))  # noqa: E731
        for r in reply:  # the server's order
            if float(r["prior_score"]) < threshold or len(ctfs) >= n_exposures:
                continue
            h = get(r)
            client("POST", "/visit_holes", {"hole_ids": [int(r["hole_id"])], "ctfs": [h.ctf_A],
                                            "ice_thicknesses": [h.ice_nm]})
            ctfs.append(h.ctf_A)
        if rule == "prior":
            nxt = _best(lm, lambda r: float(r["prior_score"]), done)
            continue
        cand = _rows(client("POST", "/select_next_square", {"value": -1}))
        if rule == "prior_x_gp":
            nxt = _best(cand, lambda r: float(r["prior_score"]) * float(r["GP_probs"]), done)
        else:
            nxt = _best(cand, lambda r: float(r["GP_probs"]), done)
        if nxt is None:  # every candidate was acquired already (only squares without exposures remain)
            nxt = _best(lm, lambda r: float(r["prior_score"]), done)
    return ctfs


def good_fractions(ctfs, checkpoints=CHECKPOINTS, cutoff: float = CTF_GOOD_A) -> dict[int, float]:
    """Fraction of exposures with CTF < cutoff among the first n, per checkpoint n (a session
    with fewer exposures counts its missing ones as not good).

    Examples
    --------
    >>> good_fractions([3.0, 6.0, 4.0, 2.0], (2, 4))
    {2: 0.5, 4: 0.75}
    """
    c = np.asarray(ctfs, float)
    return {n: float((c[:n] < cutoff).sum()) / n for n in checkpoints}


def benchmark(seeds=range(10), rules=RULES, n_exposures: int = 200, threshold: float = 0.5, shape=(1536, 1536),
              models=None, log=None) -> dict:
    """Run every rule on every seed's grid; mean (and per-seed) good fractions.

    Returns
    -------
    dict
        {"rules": {rule: {"mean": {n: fraction}, "good": {n: [count per seed]}}}, "seeds":
        [...], "grid_s": s, "session_s": {rule: s}, "squares": [per seed]}

    Examples
    --------
    >>> r = benchmark([1], ("prior", "gp"), n_exposures=20, shape=(512, 512))
    >>> sorted(r["rules"]), 0.0 <= r["rules"]["prior"]["mean"][50] <= 1.0
    (['gp', 'prior'], True)
    """
    from .models import load_model_set

    ms = load_model_set(models) if not (models is not None and not isinstance(models, str)) else models
    out = {"seeds": list(seeds), "rules": {}, "squares": [], "grid_s": 0.0, "session_s": {r: 0.0 for r in rules},
           "threshold": threshold, "shape": list(shape), "models": ms.name}
    per = {r: [] for r in rules}
    for s in seeds:
        t0 = time.perf_counter()
        g = make_grid(s, shape, ms)
        out["grid_s"] += time.perf_counter() - t0
        out["squares"].append(len(g.squares))
        for r in rules:
            t0 = time.perf_counter()
            per[r].append(run_session(g, r, n_exposures, threshold, models=ms))
            out["session_s"][r] += time.perf_counter() - t0
        if log:
            log(f"seed {s}: " + ", ".join(f"{r} {sum(c < CTF_GOOD_A for c in per[r][-1][:100])}" for r in rules))
    for r in rules:
        fr = [good_fractions(c) for c in per[r]]
        out["rules"][r] = {"mean": {n: float(np.mean([f[n] for f in fr])) for n in CHECKPOINTS},
                           "good": {n: [int(round(f[n] * n)) for f in fr] for n in CHECKPOINTS}}
    return out


def format_table(res: dict) -> str:
    """Markdown table of `benchmark` results (fractions of good exposures, mean over seeds).

    Examples
    --------
    >>> print(format_table({"rules": {"prior": {"mean": {50: 0.5, 100: 0.25, 200: 0.125}}}}))
    | rule | first 50 | first 100 | first 200 |
    | --- | --- | --- | --- |
    | prior only | 0.500 | 0.250 | 0.125 |
    """
    lines = ["| rule | first 50 | first 100 | first 200 |", "| --- | --- | --- | --- |"]
    for r, v in res["rules"].items():
        lines.append(f"| {RULE_NAMES[r]} | " + " | ".join(f"{v['mean'][n]:.3f}" for n in CHECKPOINTS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m ptolemy_rt.session_sim [--seeds N] [--models NAME] [--json FILE]``: print the
    per-seed counts and the table; returns the exit code (0)."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Smart Leginon session simulator: square-ordering rules compared")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--models", default=None)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args(argv)
    res = benchmark(range(a.seeds), models=a.models, threshold=a.threshold, log=print)
    print(format_table(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
