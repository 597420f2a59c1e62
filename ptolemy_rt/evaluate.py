"""Evaluation of a model set on a labelled folder (docs/ALGORITHM.md#evaluation-metrics metrics), numpy only.

Entry point for the CLI: `evaluate(models, data_dir) -> dict` (the folder format is
`ptolemy_rt.labels`; data_dir may also be a folder holding `lowmag/` and/or `medmag/`
labelled folders, as written by `python -m export.evalset`).

Metrics
- Square localisation recall (low mag): fraction of labelled squares whose point (x, y)
  lies inside the box (vertices) of a found square, pooled over images. In points mode
  "all" squares labelled "edge" are left out (an operator never selects them).
- Hole localisation (medium mag), per image then averaged over images: precision, recall,
  F1 with the paper's one-to-one rule: a labelled hole is a disc (centre, radius px); a
  prediction inside exactly one hole that holds no other prediction is a true positive; a
  labelled hole with zero or 2+ predictions is a false negative; a prediction in no hole,
  or sharing its hole, is a false positive. Three predictors: "unet" (centroids of the
  U-Net mask regions), "unet_lattice" (the lattice points the pipeline reports),
  "unet_lattice_threshold" (those lattice points whose U-Net probability, max over the
  lattice's 30×30 box around the point, is ≥ 0.5). Hole radius when a label has none:
  0.25 × the lattice spacing, else 20 px.
- Classification: ROC AUC, average precision (AP), accuracy at score 0.5 of the square
  classifier (found squares matched to a labelled point) and of the hole classifier
  (reported holes inside a labelled hole). Points mode "selected": a found square/hole
  with no labelled point is a negative; mode "all": it is left out.

Coordinates: points (x, y) = (col, row) px; arrays [row, col].
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

HOLE_PROB_THRESHOLD = 0.5
LATTICE_BOX_PX = 30


# ------------------------------------------------------------------------------ metrics

def roc_auc(y, s) -> float:
    """Area under the ROC curve of scores `s` for binary labels `y` (ties count one half).

    Parameters
    ----------
    y : array_like of bool
        True for a positive (any shape, flattened).
    s : array_like of float
        One score per label; higher means more likely positive.

    Returns
    -------
    float
        The probability that a random positive scores above a random negative (0..1);
        NaN when only one class is present.

    Examples
    --------
    One of the four positive/negative pairs is ranked the wrong way round:

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y = np.asarray(y, dtype=bool).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    ranks = np.empty(len(s), np.float64)
    # average ranks over ties (1-based)
    i = 0
    while i < len(ss):
        j = i
        while j + 1 < len(ss) and ss[j + 1] == ss[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))


def average_precision(y, s) -> float:
    """Average precision: mean over positives of the precision at their rank (scores
    sorted descending; tied scores are taken together).

    Parameters
    ----------
    y : array_like of bool
        True for a positive.
    s : array_like of float
        One score per label.

    Returns
    -------
    float
        0..1; NaN without positives.

    Examples
    --------
    Positives at ranks 1 and 3: (1/1 + 2/3) / 2:

    >>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.8333
    """
    y = np.asarray(y, dtype=bool).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    npos = int(y.sum())
    if npos == 0:
        return float("nan")
    uniq = np.unique(s)[::-1]
    tp = fp = 0
    ap = 0.0
    for u in uniq:
        sel = s == u
        dtp, dfp = int(y[sel].sum()), int((~y[sel]).sum())
        tp += dtp
        fp += dfp
        ap += dtp * tp / (tp + fp)
    return float(ap / npos)


def accuracy(y, s, threshold: float = 0.5) -> float:
    """Fraction of the items whose decision (s ≥ threshold) equals the label y.

    Parameters
    ----------
    y : array_like of bool
        True for a positive.
    s : array_like of float
        One score per label.
    threshold : float
        Scores at or above it are called positive.

    Returns
    -------
    float
        0..1; NaN when empty.

    Examples
    --------
    >>> accuracy([0, 0, 1, 1], [0.1, 0.5, 0.35, 0.8])
    0.5
    """
    y = np.asarray(y, dtype=bool).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    return float(((s >= threshold) == y).mean()) if len(y) else float("nan")


def classification_metrics(y, s) -> dict:
    """The classification metrics of scores `s` for labels `y`, as a dict.

    Parameters
    ----------
    y : array_like of bool
        True for a positive.
    s : array_like of float
        One score per label.

    Returns
    -------
    dict
        n (items), positives, roc_auc (`roc_auc`), ap (`average_precision`) and
        accuracy (`accuracy` at threshold 0.5).

    Examples
    --------
    >>> m = classification_metrics([0, 1, 1], [0.2, 0.9, 0.4])
    >>> m["n"], m["positives"], m["roc_auc"], m["ap"], round(m["accuracy"], 3)
    (3, 2, 1.0, 1.0, 0.667)
    """
    y = np.asarray(y, dtype=bool)
    return {"n": int(len(y)), "positives": int(y.sum()), "roc_auc": roc_auc(y, s),
            "ap": average_precision(y, s), "accuracy": accuracy(y, s)}


def points_in_polygon(points_xy, poly_xy) -> np.ndarray:
    """Which points lie inside (or on the edge of) a polygon.

    Even-odd rule plus an edge tolerance of 1e-9 px; the polygon may have any
    orientation, convex or not.

    Parameters
    ----------
    points_xy : array_like, shape (n, 2)
        Points (x, y) = (col, row), px.
    poly_xy : array_like, shape (k, 2)
        Vertices (x, y) px, in order around the polygon (not repeated at the end).

    Returns
    -------
    numpy.ndarray of bool, shape (n,)

    Examples
    --------
    A 10 px square: a point inside, one on its right edge, one outside:

    >>> square = [[0, 0], [10, 0], [10, 10], [0, 10]]
    >>> points_in_polygon([[5, 5], [10, 5], [15, 5]], square).tolist()
    [True, True, False]
    """
    p = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    v = np.asarray(poly_xy, dtype=np.float64).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    inside = np.zeros(len(p), bool)
    on_edge = np.zeros(len(p), bool)
    n = len(v)
    for i in range(n):
        x1, y1 = v[i]
        x2, y2 = v[(i + 1) % n]
        cond = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = (x2 - x1) * (y - y1) / (y2 - y1) + x1
        inside ^= cond & (x < xint)
        # edge test
        dx, dy = x2 - x1, y2 - y1
        L2 = dx * dx + dy * dy
        if L2 > 0:
            t = np.clip(((x - x1) * dx + (y - y1) * dy) / L2, 0, 1)
            d2 = (x1 + t * dx - x) ** 2 + (y1 + t * dy - y) ** 2
            on_edge |= d2 <= 1e-18
    return inside | on_edge


def match_points_to_discs(pred_xy, centres_xy, radii, ignore_xy=None, ignore_radii=None) -> dict:
    """docs/ALGORITHM.md#evaluation-metrics one-to-one rule for predictions (x, y) against labelled holes (discs).

    A prediction belongs to the nearest labelled disc containing it. Holes with exactly one
    prediction → TP; holes with 0 or 2+ → FN; predictions in no disc or sharing a disc → FP.
    Predictions inside an `ignore` disc (holes not labelled, e.g. centre outside the image)
    are dropped.

    Parameters
    ----------
    pred_xy : array_like, shape (n, 2)
        Predicted hole centres (x, y) = (col, row), px.
    centres_xy : array_like, shape (m, 2)
        Labelled hole centres (x, y) px.
    radii : float or array_like, shape (m,)
        Labelled hole radii, px.
    ignore_xy, ignore_radii : array_like or None
        Discs (x, y, radius px) whose predictions are dropped (unless they also lie
        within the largest labelled radius of a labelled centre).

    Returns
    -------
    dict
        tp, fp, fn (int), precision, recall, f1 (float; an empty image with no prediction
        scores 1.0) and `assign`: per kept prediction the index of its hole, or -1.

    Examples
    --------
    Three holes of radius 20 px: the first gets one prediction (TP), the second two
    (FN, and both predictions FP), the third none (FN); one prediction hits no hole (FP):

    >>> r = match_points_to_discs([[10, 10], [52, 50], [48, 50], [200, 200]],
    ...                           [[10, 10], [50, 50], [100, 100]], 20)
    >>> r["tp"], r["fp"], r["fn"], r["precision"], round(r["recall"], 3), r["assign"].tolist()
    (1, 3, 2, 0.25, 0.333, [0, 1, 1, -1])
    """
    pred = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    cen = np.asarray(centres_xy, dtype=np.float64).reshape(-1, 2)
    rad = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(cen),))
    if ignore_xy is not None and len(pred):
        ig = np.asarray(ignore_xy, dtype=np.float64).reshape(-1, 2)
        igr = np.broadcast_to(np.asarray(ignore_radii, dtype=np.float64), (len(ig),))
        if len(ig):
            d = np.hypot(pred[:, None, 0] - ig[None, :, 0], pred[:, None, 1] - ig[None, :, 1])
            dc = (np.hypot(pred[:, None, 0] - cen[None, :, 0], pred[:, None, 1] - cen[None, :, 1]).min(1)
                  if len(cen) else np.full(len(pred), np.inf))
            drop = (d <= igr[None, :]).any(1) & ~(dc <= (rad.max() if len(rad) else 0))
            pred = pred[~drop]
    assign = np.full(len(pred), -1, np.int64)
    if len(pred) and len(cen):
        d = np.hypot(pred[:, None, 0] - cen[None, :, 0], pred[:, None, 1] - cen[None, :, 1])
        d = np.where(d <= rad[None, :], d, np.inf)
        j = np.argmin(d, axis=1)
        ok = np.isfinite(d[np.arange(len(pred)), j])
        assign[ok] = j[ok]
    counts = np.bincount(assign[assign >= 0], minlength=len(cen)) if len(cen) else np.zeros(0, int)
    tp = int((counts == 1).sum())
    fn = int(len(cen) - tp)
    fp = int(len(pred) - tp)
    prec = tp / (tp + fp) if tp + fp else (1.0 if len(cen) == 0 else 0.0)
    rec = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": prec, "recall": rec, "f1": f1, "assign": assign}


def _mean(rows, key):
    vals = [r[key] for r in rows if not (isinstance(r[key], float) and math.isnan(r[key]))]
    return float(np.mean(vals)) if vals else float("nan")


# ------------------------------------------------------------------------------ evaluation

def _square_targets(item, mode):
    """(points, good, counted-for-localisation) of a lowmag labelled image."""
    use = np.ones(len(item.points), bool)
    if mode == "all":
        use = np.array([lab != "edge" for lab in item.labels], bool)
    return use


def evaluate_lowmag(models, ds, log=None) -> dict:
    """Square metrics of a model set on a lowmag labelled dataset.

    Runs `lowmag.find_squares` (the shipped pipeline) on every image.

    Parameters
    ----------
    models : ModelSet or str or None
        As `lowmag.find_squares` takes it.
    ds : labels.Dataset
        A dataset of kind "lowmag".
    log : callable or None
        Called with one line of text per image.

    Returns
    -------
    dict
        images, square_localisation {found, labelled, recall}, square_classification
        (`classification_metrics`), seconds.

    Examples
    --------
    A labelled synthetic atlas (100 px grid, squares of side 60 px): the 6 squares whose
    centres lie in the image are labelled, the 4 fully inside as good. Every one is found,
    and the own set ranks the good ones first (ROC AUC 1):

    >>> import shutil, tempfile
    >>> from ptolemy_rt import synthetic
    >>> from ptolemy_rt.labels import read_dataset, write_dataset
    >>> image, truth = synthetic.atlas(0, (256, 256), pitch=100.0, angle_deg=0.0, side_fraction=0.6)
    >>> points = [{"x": t.center[0], "y": t.center[1], "good": t.visible_fraction == 1.0}
    ...           for t in truth if 0 <= t.center[0] < 256 and 0 <= t.center[1] < 256]
    >>> folder = tempfile.mkdtemp()
    >>> ds = read_dataset(write_dataset(Path(folder) / "lowmag", "lowmag", [("atlas", image, points)], points="all"))
    >>> r = evaluate_lowmag("ptolemy-rt-synth-v1", ds)
    >>> r["images"], r["square_localisation"], r["square_classification"]["roc_auc"]
    (1, {'found': 6, 'labelled': 6, 'recall': 1.0}, 1.0)
    >>> shutil.rmtree(folder)
    """
    from .lowmag import find_squares

    found = total = 0
    ys, ss, per_image = [], [], []
    t0 = time.perf_counter()
    for item in ds.images:
        res = find_squares(item.load(), models=models)
        verts = [np.asarray(s.vertices) for s in res.squares]
        use = _square_targets(item, ds.points_mode)
        hit = np.zeros(len(item.points), bool)
        for k, v in enumerate(verts):
            inside = points_in_polygon(item.points, v)
            hit |= inside
            if inside.any():
                j = np.nonzero(inside)[0]
                # the labelled point nearest the box centre
                c = v.mean(0)
                jj = j[np.argmin(np.hypot(item.points[j, 0] - c[0], item.points[j, 1] - c[1]))]
                ys.append(bool(item.good[jj]))
                ss.append(res.squares[k].score)
            elif ds.points_mode == "selected":
                ys.append(False)
                ss.append(res.squares[k].score)
        found += int((hit & use).sum())
        total += int(use.sum())
        per_image.append({"name": item.name, "found": int((hit & use).sum()), "labelled": int(use.sum()),
                          "squares": len(res.squares)})
        if log:
            log(f"{item.name}: {per_image[-1]}")
    out = {"images": len(ds.images), "square_localisation": {"found": found, "labelled": total,
                                                            "recall": found / total if total else float("nan")},
           "square_classification": classification_metrics(ys, ss),
           "seconds": round(time.perf_counter() - t0, 1)}
    return out


def _hole_prob_at(prob, points_rc, box=LATTICE_BOX_PX) -> np.ndarray:
    h, w = prob.shape
    out = np.zeros(len(points_rc))
    half = box // 2
    for k, (r, c) in enumerate(points_rc):
        r0, c0 = max(int(math.floor(r)) - half, 0), max(int(math.floor(c)) - half, 0)
        r1, c1 = min(int(math.floor(r)) + half, h), min(int(math.floor(c)) + half, w)
        if r1 > r0 and c1 > c0:
            out[k] = float(prob[r0:r1, c0:c1].max())
    return out


def evaluate_medmag(models, ds, log=None) -> dict:
    """Hole metrics of a model set on a medmag labelled dataset, measured on what
    `medmag.find_holes` (default options) computes: its U-Net logits and mask-region
    centroids (`intermediates`) and its reported holes.

    Parameters
    ----------
    models : ModelSet or str or None
        A loaded model set, or a name for `models.load_model_set` (None: the default).
    ds : labels.Dataset
        A dataset of kind "medmag".
    log : callable or None
        Called with one line of text per image.

    Returns
    -------
    dict
        images, hole_localisation {unet, unet_lattice, unet_lattice_threshold: precision,
        recall, f1 (means over images), tp, fp, fn (sums)}, hole_classification
        (`classification_metrics`), seconds.

    Examples
    --------
    A labelled synthetic R2/2 image (20 nm/px, 512×512): the 6 holes whose centres lie in
    the image, with their true radii. The mask regions and the lattice points both match
    every hole, with no false positive:

    >>> import shutil, tempfile
    >>> from ptolemy_rt import synthetic
    >>> from ptolemy_rt.labels import read_dataset, write_dataset
    >>> image, truth = synthetic.medmag_image(0, (512, 512), pixel_nm=20.0, film="R2/2", angle_deg=0.0, tilt_deg=0.0)
    >>> points = [{"x": h.center[0], "y": h.center[1], "radius": h.radius, "good": h.label == "good"}
    ...           for h in truth if 0 <= h.center[0] < 512 and 0 <= h.center[1] < 512]
    >>> folder = tempfile.mkdtemp()
    >>> ds = read_dataset(write_dataset(Path(folder) / "medmag", "medmag", [("square", image, points)], points="all"))
    >>> loc = evaluate_medmag("ptolemy-rt-synth-v1", ds)["hole_localisation"]
    >>> [(k, loc[k]["tp"], loc[k]["fp"], loc[k]["fn"]) for k in ("unet", "unet_lattice")]
    [('unet', 6, 0, 0), ('unet_lattice', 6, 0, 0)]
    >>> shutil.rmtree(folder)
    """
    from .medmag import find_holes
    from .models import ModelSet, load_model_set

    ms = models if isinstance(models, ModelSet) else load_model_set(models)
    rows = {"unet": [], "unet_lattice": [], "unet_lattice_threshold": []}
    ys, ss = [], []
    t0 = time.perf_counter()
    for item in ds.images:
        res = find_holes(item.load(), models=ms, intermediates=True)  # the shipped pipeline
        logits = res.intermediates["logits"]
        spacing = res.lattice_spacing_px
        default_r = 0.25 * spacing if spacing else 20.0
        rad = np.where(np.isnan(item.radius), default_r, item.radius)
        cen = item.points
        cents = res.intermediates["centroids"][:, ::-1]  # the U-Net mask regions, (x, y)
        lat_xy = np.array([[(v[0][0] + v[2][0]) / 2, (v[0][1] + v[2][1]) / 2] for v in
                           (np.asarray(hh.vertices) for hh in res.holes)]).reshape(-1, 2)
        prob = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        pr = _hole_prob_at(prob, lat_xy[:, ::-1])
        thr_xy = lat_xy[pr >= HOLE_PROB_THRESHOLD]
        for key, pred in (("unet", cents), ("unet_lattice", lat_xy), ("unet_lattice_threshold", thr_xy)):
            r = match_points_to_discs(pred, cen, rad)
            rows[key].append({k: r[k] for k in ("tp", "fp", "fn", "precision", "recall", "f1")})
        m = match_points_to_discs(lat_xy, cen, rad)
        for k, hh in enumerate(res.holes):
            j = m["assign"][k]
            if j >= 0:
                ys.append(bool(item.good[j]))
                ss.append(hh.score)
            elif ds.points_mode == "selected":
                ys.append(False)
                ss.append(hh.score)
        if log:
            log(f"{item.name}: " + ", ".join(f"{k} F1 {v[-1]['f1']:.3f}" for k, v in rows.items()))
    loc = {k: {"precision": _mean(v, "precision"), "recall": _mean(v, "recall"), "f1": _mean(v, "f1"),
               "tp": int(sum(r["tp"] for r in v)), "fp": int(sum(r["fp"] for r in v)),
               "fn": int(sum(r["fn"] for r in v))} for k, v in rows.items()}
    return {"images": len(ds.images), "hole_localisation": loc, "hole_classification": classification_metrics(ys, ss),
            "seconds": round(time.perf_counter() - t0, 1)}


def evaluate(models, data_dir, log=None) -> dict:
    """docs/ALGORITHM.md#evaluation-metrics metrics of a model set on a labelled folder, or
    on a folder holding lowmag/ and medmag/ labelled folders.

    Parameters
    ----------
    models : ModelSet or str or None
        A loaded model set, or a name for `models.load_model_set` (None: the default).
    data_dir : str or PathLike
        A labelled folder (`labels`), or a folder holding lowmag/ and/or medmag/ ones.
    log : callable or None
        Called with one line of text per image.

    Returns
    -------
    dict
        {"models": name, "data": data_dir, "lowmag": {...}, "medmag": {...}} (keys
        present per kind; see `evaluate_lowmag`, `evaluate_medmag`).

    Raises
    ------
    labels.LabelDataError
        No dataset.json in data_dir or its lowmag/ or medmag/, or a malformed folder.

    Examples
    --------
    A folder holding a lowmag/ labelled folder (one synthetic atlas, its 4 full squares
    labelled good); the kinds found are the result's keys:

    >>> import shutil, tempfile
    >>> from ptolemy_rt import synthetic
    >>> from ptolemy_rt.labels import LabelDataError, write_dataset
    >>> image, truth = synthetic.atlas(0, (256, 256), pitch=100.0, angle_deg=0.0, side_fraction=0.6)
    >>> points = [{"x": t.center[0], "y": t.center[1], "good": True} for t in truth if t.visible_fraction == 1.0]
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_dataset(Path(folder) / "lowmag", "lowmag", [("atlas", image, points)])
    >>> r = evaluate("ptolemy-rt-synth-v1", folder)
    >>> sorted(r), r["models"], r["lowmag"]["square_localisation"]["recall"]
    (['data', 'lowmag', 'models'], 'ptolemy-rt-synth-v1', 1.0)
    >>> try:
    ...     evaluate("ptolemy-rt-synth-v1", Path(folder) / "lowmag" / "images")
    ... except LabelDataError as e:
    ...     print(str(e).replace(folder, "DIR"))
    DIR/lowmag/images: no dataset.json here or in lowmag/ or medmag/
    >>> shutil.rmtree(folder)
    """
    from .labels import read_dataset
    from .models import ModelSet, load_model_set

    ms = models if isinstance(models, ModelSet) else load_model_set(models)
    root = Path(data_dir)
    dirs = [root] if (root / "dataset.json").is_file() else [d for d in (root / "lowmag", root / "medmag")
                                                              if (d / "dataset.json").is_file()]
    if not dirs:
        from .labels import LabelDataError

        raise LabelDataError(f"{root}: no dataset.json here or in lowmag/ or medmag/")
    out: dict = {"models": ms.name, "data": str(root)}
    for d in dirs:
        ds = read_dataset(d)
        if ds.kind == "lowmag":
            out["lowmag"] = evaluate_lowmag(ms, ds, log)
        else:
            out["medmag"] = evaluate_medmag(ms, ds, log)
    return out


def format_table(result: dict) -> str:
    """The metrics of `evaluate` as a plain-text table (one metric a line).

    Parameters
    ----------
    result : dict
        As `evaluate` returns it (the "lowmag" and "medmag" parts are optional).

    Returns
    -------
    str
        Header line, blank line, column titles, one line per metric; ends with a newline.

    Examples
    --------
    >>> low = {"square_localisation": {"found": 9, "labelled": 10, "recall": 0.9},
    ...        "square_classification": {"roc_auc": 0.8, "ap": 0.75, "accuracy": 0.7}}
    >>> print(format_table({"models": "m", "data": "d", "lowmag": low}).splitlines()[-1])
    square classification ROC AUC / AP / accuracy        0.800 / 0.750 / 0.700
    """
    lines = [f"model set: {result.get('models')}   data: {result.get('data')}", ""]
    lines.append(f"{'metric':<52} {'value':>24}")
    low = result.get("lowmag")
    if low:
        loc = low["square_localisation"]
        lines.append(f"{'square localisation recall (found/labelled)':<52} "
                     f"{loc['recall']:>10.3f} ({loc['found']}/{loc['labelled']})")
        c = low["square_classification"]
        lines.append(f"{'square classification ROC AUC / AP / accuracy':<52} "
                     f"{c.get('roc_auc', float('nan')):.3f} / {c.get('ap', float('nan')):.3f} / "
                     f"{c.get('accuracy', float('nan')):.3f}")
    med = result.get("medmag")
    if med:
        names = {"unet": "U-Net centroids", "unet_lattice": "U-Net + lattice",
                 "unet_lattice_threshold": "U-Net + lattice + probability threshold"}
        for key, name in names.items():
            r = med["hole_localisation"][key]
            lines.append(f"{'hole localisation P/R/F1, ' + name:<52} "
                         f"{r['precision']:.3f} / {r['recall']:.3f} / {r['f1']:.3f}")
        c = med["hole_classification"]
        lines.append(f"{'hole classification ROC AUC / AP / accuracy':<52} "
                     f"{c.get('roc_auc', float('nan')):.3f} / {c.get('ap', float('nan')):.3f} / "
                     f"{c.get('accuracy', float('nan')):.3f}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ reference checks

def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties).

    Parameters
    ----------
    a, b : array_like of float
        Paired values, same length.

    Returns
    -------
    float
        -1..1; NaN for fewer than 2 pairs or when either side is constant.

    Examples
    --------
    Ranks (1, 2, 3, 4) against (1, 2, 4, 3):

    >>> round(spearman([1, 2, 3, 4], [10, 20, 40, 30]), 3)
    0.8
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if len(a) < 2:
        return float("nan")

    def ranks(v):
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        sv = v[order]
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and sv[j + 1] == sv[i]:
                j += 1
            r[order[i:j + 1]] = (i + j) / 2.0
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    den = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def compare_centres(found_xy, reference_xy, tol_px: float = 10.0) -> dict:
    """One-to-one comparison of found centres with reference centres: greedy nearest
    pairs within `tol_px`.

    Parameters
    ----------
    found_xy, reference_xy : array_like, shape (n, 2) and (m, 2)
        Centres (x, y) = (col, row), px.
    tol_px : float
        Largest distance of a pair, px.

    Returns
    -------
    dict
        matched, missing (reference unmatched), extra (found unmatched), reference (m),
        found (n) and pairs: list of (i_found, j_reference), nearest first.

    Examples
    --------
    >>> r = compare_centres([[0, 0], [100, 3], [300, 300]], [[2, 0], [100, 0], [200, 200]])
    >>> r["matched"], r["missing"], r["extra"], r["pairs"]
    (2, 1, 1, [(0, 0), (1, 1)])
    """
    f = np.asarray(found_xy, dtype=np.float64).reshape(-1, 2)
    r = np.asarray(reference_xy, dtype=np.float64).reshape(-1, 2)
    pairs = []
    if len(f) and len(r):
        d = np.hypot(f[:, None, 0] - r[None, :, 0], f[:, None, 1] - r[None, :, 1])
        for k in np.argsort(d, axis=None):
            i, j = divmod(int(k), len(r))
            if d[i, j] > tol_px:
                break
            if any(i == a or j == b for a, b in pairs):
                continue
            pairs.append((i, j))
    return {"matched": len(pairs), "missing": len(r) - len(pairs), "extra": len(f) - len(pairs),
            "reference": len(r), "found": len(f), "pairs": pairs}
