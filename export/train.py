"""Train the own model set `ptolemy-rt-synth-v1` (square classifier, hole classifier,
hole U-Net) on synthetic data or a labelled folder, then export it to ONNX + manifest.

    python -m export.train --out onnx_models/ptolemy-rt-synth-v1        (make train)
    python -m export.train --out DIR --data LABELLED_DIR [--data DIR2]  (real sessions)
    python -m export.train --out DIR --only unet                        (one model; the
        others are taken from the cache of an earlier run, build/train-cache/)
    python -m export.train --only hole_fusion --fusion-base SET_DIR --out DIR
        (hole score fusion for SET_DIR's hole classifier: DIR = that set + score_fusion)

Recipes (docs/ALGORITHM.md#training, paper appendix B): Adam (default hyper-parameters), binary cross-entropy;
random 90° rotations for all models; U-Net: positive-class weight 100, bias of `last`
initialised at −10, Gaussian blur (learned sigma, initial e, Adam lr 0.1) of the output
before the loss, random inversion of the normalised pixels. Deviations, for a single-thread
CPU budget: small widths (16 channels), fewer steps (defaults: U-Net 500 steps of two
384×384 patches instead of 6000, hole CNN 3 passes instead of 5; `make train` runs the longer
recipe of docs/OWN_MODELS.md: U-Net 3900 steps, hole CNN 20 epochs with cosine decay
`--hole-schedule cosine`), and after training the
U-Net's `last` bias is shifted by a constant chosen on held-out synthetic images so that
the runtime's fixed mask threshold (sigmoid > 1e-4) gives the best hole-centroid F1.
Hole-classifier experiments (off by default; docs/OWN_MODELS.md "Gold film and the hole
classifier's head"): `--hole-pooling centre` (Gaussian-weighted pooling about the crop
centre, same ONNX contract) and `--hole-gold-extra F` (a fraction F of the training images
forced to gold film).

Training data are exactly what the runtime pipelines feed the networks: square crops from
`ptolemy_rt.lowmag.locate_squares` + `prepared_crop` (240×240, normalised by the in-mask
mean/std; one BatchNorm batch = all squares of one atlas, as the published regime), hole
crops from `ptolemy_rt.medmag.layout_holes` on a mask of the true hole centres (crops of
the lattice-aligned rotated image, normalised by the whole image's mean/std; one batch =
one image's crops of equal shape), U-Net patches of the whole-image-normalised image (`medmag.normalise`).
Synthetic seeds: training  seed·10⁶ + i (i < 10⁶; square atlases + 0, hole crops + 100 000, U-Net + 200 000, hole
score fusion + 300 000), calibration seed·10⁶ + 900 000 + i;
the evaluation set (`export.evalset`) uses seeds ≥ 9·10⁶, disjoint for seeds 0..8.
Reproducible from --seed (torch.manual_seed, numpy Generators, deterministic data).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from ptolemy_rt.hole_features import HAND_FEATURES

#: trained states between the steps of a recipe (PTOLEMY_TRAIN_CACHE: another folder, e.g. to
#: rerun a step for a reproduction check without touching the committed set's states)
CACHE = Path(os.environ.get("PTOLEMY_TRAIN_CACHE", "build/train-cache"))
SET_NAME = "ptolemy-rt-synth-v1"
LICENCE = "MIT (own work: trained only on synthetic images from ptolemy_rt.synthetic)"
CITATION = ("Architectures and training recipes after Kim, P. T. et al. (2023). Learning to automate "
            "cryo-electron microscopy data collection with Ptolemy. IUCrJ 10, 90-102.")

ARCH = {
    "square_classifier": {"channels": 16, "kernels": [5, 3, 3, 3, 3], "head_kernel": 6},
    # crops normalised by the whole image's mean/std (medmag.crop_normalisation): per-crop
    # normalisation hides how bright a hole is, the main sign of empty or thick ice
    # and one BatchNorm batch per crop shape (as trained), not the published "each crop alone
    # when shapes differ" (medmag.bn_batches)
    "hole_classifier": {"channels": 16, "n_stages": 4, "crop_normalisation": "image", "bn_batches": "shape"},
    "hole_unet": {"channels": 16, "depth": 7},
}
DEFAULTS = {
    "square_atlases": 100, "square_epochs": 2, "square_batch": 32,
    "hole_images": 100, "hole_epochs": 3, "hole_batch": 12,
    "unet_images": 60, "unet_steps": 500, "unet_patch": 384, "unet_batch": 2,
    "unet_target_fraction": 0.5, "unet_target_min": 6.0, "calib_images": 12, "unet_init": "",
    "unet_sigma_max": 6.0, "unet_lr": 1e-3, "hole_lr": 1e-3, "hole_init": "",
    "hole_channels": 16, "hole_schedule": "constant",
    "hole_pooling": "mean", "hole_centre_sigma": 0.15, "hole_gold_extra": 0.0,
    "fusion_images": 250,
}
#: hole classifier heads (arch_classifiers.HoleClassifier pooling): "mean" over the whole last
#: feature map (the shipped v1 set), or "centre" (Gaussian-weighted about the crop centre,
#: sigma hole_centre_sigma × the map side: mostly the hole's inside, docs/OWN_MODELS.md
#: "Gold film and the hole classifier's head (session 9)"). Both export to the same ONNX
#: roles and inputs/outputs; the runtime needs no change.
HOLE_POOLINGS = ("mean", "centre")
#: learning-rate schedules of the classifiers: constant, or cosine decay over all steps from
#: the rate to COSINE_FLOOR × the rate
SCHEDULES = ("constant", "cosine")
COSINE_FLOOR = 0.01
#: Pipeline choices written to the manifest (modelspec.PipelineSpec, medmag.lattice_mode):
#: tilted collection images have an oblique lattice, which the published square-only search
#: misses (synthetic eval set: lattice F1 0.97 untilted, 0.79 tilted with square candidates only).
#: hole_pitch_px / tolerance: the U-Net's training pitches, 180-420 px (synthetic.medmag_image's
#: default scale choice), as a geometric centre and band: sqrt(180*420) = 275, 420/275 = 1.53
PIPELINE = {"lattice": "oblique", "hole_pitch_px": 275.0, "hole_pitch_tolerance": 0.53}
#: hole score fusion (`--only hole_fusion`, ptolemy_rt/hole_features.py, docs/OWN_MODELS.md
#: "Gold film: late fusion of the hole score (session 10)"): the hand features next to the
#: classifier's logit (HAND_FEATURES, defined there), the L2 weight of the logistic fit (on standardised features) and the
#: held-out images its AUCs are measured on: (first seed, images, forced to gold film)
FUSION_L2 = 1e-3
#: the fusion is fitted on images the classifier never saw (seed·10⁶ + FUSION_OFFSET + i): on
#: its own training images the classifier's logit is over-confident (gold AUC 0.85 there
#: against 0.68 held out), so a fit there over-weights it
FUSION_OFFSET = 300_000
FUSION_EVAL = {"mix": (7_000_000, 150, False), "gold": (7_500_000, 40, True)}
UNET_POS_WEIGHT = 100.0
#: px²: mask components smaller than this are dropped at run time (own U-Net speckles; the
#: published set has no such filter). 50-500 all give 17/17 holes on the real example.
UNET_MASK_MIN_REGION_PX = 200
CALIB_F1_TOLERANCE = 0.01  # calibration: F1 within this of the best counts as a tie
UNET_CLIP = 1.0  # gradient-norm clipping of the U-Net weights (not of sigma)
SIGMA_MAX = 6.0  # px; the learned blur sigma is clamped to [0.5, 6] (unclamped it grew to 12 px and
                 # the network stopped localising)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------- data

def _match_squares(cand, truth, ids) -> np.ndarray:
    """Label per candidate square (1 good, 0 bad) from the synthetic truth: the truth id at
    the box centre, else the nearest truth centre."""
    h, w = ids.shape
    cen = cand.vertices.mean(axis=1)  # (x, y)
    out = np.zeros(len(cen), np.float32)
    tc = np.array([t.center for t in truth]) if truth else np.zeros((0, 2))
    for i, (x, y) in enumerate(cen):
        k = 0
        if 0 <= x < w and 0 <= y < h:
            k = int(ids[int(y), int(x)])
        if k == 0 and len(tc):
            k = int(np.argmin(((tc - (x, y)) ** 2).sum(1))) + 1
        out[i] = 1.0 if truth[k - 1].good else 0.0
    return out


def square_data_synthetic(seeds) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(crops float16 n×240×240, labels float32 n)] per atlas."""
    from ptolemy_rt import lowmag, synthetic

    out = []
    for s in seeds:
        img, truth, ids, _ = synthetic.atlas_with_ids(int(s))
        cand = lowmag.locate_squares(img, True)
        if cand.n == 0:
            continue
        crops = np.stack([lowmag.prepared_crop(cand, i) for i in range(cand.n)]).astype(np.float16)
        out.append((crops, _match_squares(cand, truth, ids)))
    return out


def square_data_labelled(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    """Square crops of a labelled lowmag folder: a candidate is positive when a good
    (selected) point lies in its box; in points mode "all" candidates with no point are
    dropped."""
    from ptolemy_rt import lowmag
    from ptolemy_rt.evaluate import points_in_polygon

    out = []
    for item in ds.images:
        cand = lowmag.locate_squares(item.load())
        if cand.n == 0:
            continue
        lab = np.zeros(cand.n, np.float32)
        keep = np.ones(cand.n, bool)
        for i in range(cand.n):
            inside = points_in_polygon(item.points, cand.vertices[i])
            if inside.any():
                lab[i] = float(item.good[inside].any())
            elif ds.points_mode == "all":
                keep[i] = False
        if keep.sum() == 0:
            continue
        crops = np.stack([lowmag.prepared_crop(cand, i) for i in np.nonzero(keep)[0]]).astype(np.float16)
        out.append((crops, lab[keep]))
    return out


def centre_mask(shape, centres_xy, radius) -> np.ndarray:
    """bool [row, col] mask of discs of `radius` px (one value or one per centre) at (x, y)
    centres."""
    h, w = shape
    m = np.zeros((h, w), bool)
    radii = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(centres_xy),))
    for (x, y), radius in zip(centres_xy, radii):
        r = int(math.ceil(radius))
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        cx, cy = int(round(x)), int(round(y))
        sel = (xx - (x - cx)) ** 2 + (yy - (y - cy)) ** 2 <= radius * radius
        rr, cc = yy[sel] + cy, xx[sel] + cx
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        m[rr[ok], cc[ok]] = True
    return m


def hole_groups(img: np.ndarray, centres_xy, label_of_points, models=None,
                features: list | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Hole-classifier training crops, cut by the shipped medium-mag pipeline.

    models None (the recipe): the hole mask is made from the known hole centres (discs of
    10 px, `centre_mask`) and `medmag.holes_from_mask` (everything find_holes does after its
    U-Net: regions, lattice, edge filter, rotated frame, crop boxes) lays the holes out; the
    crops are cut from its rotated frame and prepared as `medmag.score_holes` prepares them
    (`medmag.prepare_crop`, image normalisation when ARCH declares it). With a model set,
    `medmag.find_holes(..., intermediates=True)` runs the whole pipeline (its U-Net mask, the
    scale stage) and its "crops" are taken as the classifier saw them (the set's own crop
    normalisation); centres_xy is then unused.

    label_of_points(points n×2 (row, col) px of the input image) -> labels (float32, NaN =
    unknown, dropped). Boxes under 8 px a side are dropped. Returns [(crops float16 n×h×w,
    labels)] per crop shape, shapes in order of first appearance. features: when a list, the
    hand features of each returned group's crops (n × 3 float64: `HAND_FEATURES`, from the
    float32 crops, each relative to all the image's crops as `medmag.score_holes` makes them,
    ptolemy_rt/hole_features.py) are appended to it, one array per group.
    """
    from ptolemy_rt import geometry, medmag
    from ptolemy_rt.core import clamp_negatives

    pix = clamp_negatives(img)
    if models is None:
        kept: dict = {}
        medmag.holes_from_mask(pix, centre_mask(pix.shape, centres_xy, 10.0), lattice=PIPELINE["lattice"],
                               scale="off", intermediates=kept)
        lay, points = kept["layout"], kept["layout"].points
        crops = None
    else:
        kept = medmag.find_holes(img, models=models, intermediates=True).intermediates
        lay, crops = kept["layout"], kept["crops"]
        points = lay.points
        if kept.get("resampling") is not None and len(points):  # layout in the resampled frame
            points = kept["resampling"].to_input_xy(points[:, ::-1], corner=True)[:, ::-1]
    if lay.reason is not None or len(lay.points) == 0:
        return []
    lab = np.asarray(label_of_points(points), np.float32)
    groups: dict[tuple, list] = {}
    for k, (r0, c0, r1, c1) in enumerate(lay.boxes):
        if np.isnan(lab[k]) or r1 - r0 < 8 or c1 - c0 < 8:
            continue
        groups.setdefault((int(r1 - r0), int(c1 - c0)), []).append(k)
    if crops is None and groups:
        rot = geometry.rotate_image(pix, -lay.angle_deg)
        norm = medmag.image_norm(pix) if ARCH["hole_classifier"].get("crop_normalisation") == "image" else None
        every = range(len(lay.boxes)) if features is not None else [k for idx in groups.values() for k in idx]
        crops = {k: medmag.prepare_crop(rot[b[0]:b[2], b[1]:b[3]], norm) for k, b in zip(every, lay.boxes[every])}
    if features is not None and groups:  # over all the image's crops, as the runtime
        from ptolemy_rt import hole_features

        cols = hole_features.image_features(np.stack([hole_features.crop_stats(crops[k]) for k in range(len(lay.boxes))]))
        table = np.stack([cols[n] for n in HAND_FEATURES], axis=1)
        features += [table[idx] for idx in groups.values()]
    return [(np.stack([crops[k] for k in idx]).astype(np.float16), lab[idx]) for idx in groups.values()]


def gold_forced(seed: int, gold_extra: float) -> bool:
    """Whether training image `seed` is drawn on gold film by force (`--hole-gold-extra`):
    a fixed draw per seed, true for a fraction gold_extra of the seeds; the other images keep
    the generator's own film (20 % gold), so they equal the default recipe's images.

    >>> gold_forced(100_000, 0.0), gold_forced(100_000, 1.0)
    (False, True)
    >>> round(float(np.mean([gold_forced(s, 0.4) for s in range(1000)])), 1)
    0.4
    """
    return gold_extra > 0 and bool(np.random.default_rng([int(seed), 17]).random() < gold_extra)


def hole_data_synthetic(seeds, gold_extra: float = 0.0, films: list | None = None,
                        features: list | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Hole crops (`hole_groups`) of synthetic images `seeds`; gold_extra: see `gold_forced`
    (0: the generator's own film mix). films: when a list, the film material ("carbon" or
    "gold") of each returned group is appended to it; features: see `hole_groups`."""
    from ptolemy_rt import synthetic

    out = []
    for s in seeds:
        kw = {"film_material": "gold"} if gold_forced(s, gold_extra) else {}
        img, truth, ids, par = synthetic.medmag_with_ids(int(s), **kw)
        h, w = ids.shape
        cents = [t.center for t in truth if 0 <= t.center[0] < w and 0 <= t.center[1] < h
                 and ids[int(t.center[1]), int(t.center[0])] == t.id]

        def label_of(points, ids=ids, truth=truth):
            r = np.clip(np.floor(points[:, 0]).astype(int), 0, h - 1)
            c = np.clip(np.floor(points[:, 1]).astype(int), 0, w - 1)
            k = ids[r, c]
            return np.array([float(truth[i - 1].good) if i > 0 else 0.0 for i in k], np.float32)

        groups = hole_groups(img, cents, label_of, features=features)
        if films is not None:
            films += [par["film_material"]] * len(groups)
        out += groups
    return out


def hole_data_labelled(ds, features: list | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Hole crops of a labelled medmag folder; the mask is made from the labelled points.
    A lattice point is positive when it lies within a good point's radius (default: 1/4 of
    the lattice spacing ~ half a hole radius). features: see `hole_groups`."""
    out = []
    for item in ds.images:
        img = item.load().pixels
        pts = item.points

        def label_of(points, item=item):
            lab = np.full(len(points), 0.0 if ds.points_mode == "selected" else np.nan, np.float32)
            if len(item.points) == 0:
                return lab
            d = np.hypot(item.points[None, :, 0] - points[:, None, 1], item.points[None, :, 1] - points[:, None, 0])
            rad = np.where(np.isnan(item.radius), 40.0, item.radius)
            j = np.argmin(d, axis=1)
            hit = d[np.arange(len(points)), j] <= rad[j]
            lab[hit] = item.good[j[hit]].astype(np.float32)
            return lab

        out += hole_groups(img, [tuple(p) for p in pts], label_of, features=features)
    return out


def unet_pool_synthetic(seeds, frac: float, rmin: float):
    """[(normalised image float16 [row, col], target bool [row, col])]; targets are discs of
    radius max(rmin, frac × minor semi-axis) px at the centres of the holes whose centre
    is drawn (visible)."""
    from ptolemy_rt import medmag, synthetic

    pool = []
    for s in seeds:
        img, truth, ids, _ = synthetic.medmag_with_ids(int(s))
        h, w = ids.shape
        sel = [t for t in truth if 0 <= t.center[0] < w and 0 <= t.center[1] < h
               and ids[int(t.center[1]), int(t.center[0])] == t.id]
        rad = [max(rmin, frac * min(t.axes)) for t in sel]
        pool.append((medmag.normalise(img).astype(np.float16), centre_mask(img.shape, [t.center for t in sel], rad)))
    return pool


def unet_pool_labelled(ds, frac: float, rmin: float):
    """As unet_pool_synthetic for a labelled folder (radius from the labels, else rmin)."""
    from ptolemy_rt import medmag

    pool = []
    for item in ds.images:
        img = item.load().pixels
        rad = np.where(np.isnan(item.radius), rmin / max(frac, 1e-6), item.radius) * frac
        pool.append((medmag.normalise(img).astype(np.float16),
                     centre_mask(img.shape, [tuple(p) for p in item.points], np.maximum(rad, rmin))))
    return pool


# ------------------------------------------------------------------------------- metrics

def roc_auc(y, s) -> float:
    from ptolemy_rt.evaluate import roc_auc as f

    return f(np.asarray(y), np.asarray(s))


def auc_by_film(y, s, films) -> dict:
    """ROC AUC of scores s for labels y: {"carbon", "gold", "all"} (films: per-crop material;
    a film without both classes is left out)."""
    y, s, films = np.asarray(y), np.asarray(s), np.asarray(films)
    out = {}
    for name, m in (("carbon", films == "carbon"), ("gold", films == "gold"), ("all", np.ones(len(y), bool))):
        if m.any() and 0 < y[m].sum() < m.sum():
            out[name] = round(roc_auc(y[m], s[m]), 4)
    return out


# ------------------------------------------------------------------------------- score fusion

def set_logits(models, data, batchnorm: str = "published") -> np.ndarray:
    """The hole classifier logits of a model set (runtime ONNX path, `classifier.logits`) for
    every crop of `data` ([(crops, labels)] groups), one BatchNorm batch per group (one image's
    crops of one shape: what `medmag.score_holes` does for a set declaring bn_batches "shape")."""
    from ptolemy_rt import classifier, medmag

    if medmag.bn_batches(models) != "shape":
        raise SystemExit("hole_fusion: the base set's hole classifier must declare bn_batches 'shape'")
    return np.concatenate([classifier.logits(models, medmag.HOLE_KEY, len(lab),
                                             lambda i, c=crops: c[i].astype(np.float32), batchnorm)
                           for crops, lab in data]) if data else np.zeros(0)


def fit_fusion(x: np.ndarray, y: np.ndarray, l2: float = FUSION_L2) -> tuple[tuple[float, ...], float]:
    """L2-regularised logistic regression of labels y (0/1) on the columns of x (n × k), fitted
    on standardised columns (scipy L-BFGS, the bias not penalised); returns (weights, bias) on
    the raw columns (`hole_features.standardised_to_raw`)."""
    from scipy.optimize import minimize

    from ptolemy_rt.hole_features import standardised_to_raw

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    xa = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])

    def loss(w):
        t = xa @ w
        g = xa.T @ (np.exp(-np.logaddexp(0.0, -t)) - y) / len(y)
        return (np.logaddexp(0.0, t) - y * t).mean() + l2 * np.sum(w[:-1] ** 2), g + np.r_[2 * l2 * w[:-1], 0.0]

    w = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B").x
    return standardised_to_raw(w[:-1], w[-1], mu, sd)


def fusion_data(models, seeds, gold_extra: float = 0.0, datas=()):
    """(cnn logits published, cnn logits running, hand features n×3, labels, films) of the
    hole crops of synthetic images `seeds` (or of the labelled medmag folders `datas`)."""
    films, feats = [], []
    if datas:
        data = []
        for d in datas:
            data += hole_data_labelled(d, features=feats)
        films = ["labelled"] * len(data)
    else:
        data = hole_data_synthetic(seeds, gold_extra, films, features=feats)
    y = np.concatenate([lab for _, lab in data]) if data else np.zeros(0, np.float32)
    fl = np.concatenate([[f] * len(lab) for f, (_, lab) in zip(films, data)]) if data else np.zeros(0, str)
    return (set_logits(models, data), set_logits(models, data, "running"),
            np.concatenate(feats) if feats else np.zeros((0, len(HAND_FEATURES))), y, fl)


def run_hole_fusion(out: Path, base: Path, seed: int, cfg: dict, datas: list[Path]) -> Path:
    """`--only hole_fusion`: fit the hole score fusion (`fit_fusion` over "cnn_logit" and
    `HAND_FEATURES`) for the hole classifier of the exported set `base` on synthetic images
    the classifier did not see (seed·10⁶ + FUSION_OFFSET + i, i < fusion_images; or the
    labelled medmag folders), measure it on `FUSION_EVAL`, and write the set `out` (named
    after its folder): base's part files and manifest plus ``hole_classifier.score_fusion``
    and a training record ``hole_fusion``."""
    import shutil

    from ptolemy_rt.hole_features import fusion_logits
    from ptolemy_rt.labels import read_dataset
    from ptolemy_rt.models import ModelSet
    from ptolemy_rt.modelspec import ScoreFusionSpec, manifest_text, read_manifest, to_json

    from .manifest import sha256_file

    base, out = Path(base), Path(out)
    if base.resolve() == out.resolve():
        raise SystemExit(f"hole_fusion: --out {out} is the base set itself (--fusion-base)")
    spec = read_manifest(base / "manifest.json")
    models = ModelSet(spec.name, base, spec)
    hc = spec.models.hole_classifier
    if hc is None:
        raise SystemExit(f"hole_fusion: {base} has no hole classifier")
    for role, part in hc.parts.items():
        if sha256_file(base / part.file) != part.sha256:
            raise SystemExit(f"hole_fusion: {base / part.file}: sha256 differs from the manifest")
    med = [d for d in (read_dataset(d) for d in datas) if d.kind == "medmag"]
    names = ("cnn_logit",) + HAND_FEATURES
    t0 = time.perf_counter()
    if med:
        z, z_run, f, y, fl = fusion_data(models, [], datas=med)
        data_spec = {"source": "labelled", "folders": [str(d.root) for d in med]}
    else:
        z, z_run, f, y, fl = fusion_data(models, _seeds(seed, cfg["fusion_images"], FUSION_OFFSET),
                                         cfg["hole_gold_extra"])
        data_spec = {"source": "synthetic", "generator": "ptolemy_rt.synthetic.medmag_image", "shape": [1024, 1440],
                     "seeds": f"{seed}*10^6 + {FUSION_OFFSET} + 0..{cfg['fusion_images'] - 1}"}
        if cfg["hole_gold_extra"] > 0:
            data_spec["gold_extra"] = cfg["hole_gold_extra"]
    _log(f"hole_fusion data: {len(y)} crops, positives {y.mean():.2f} ({time.perf_counter() - t0:.0f} s)")
    weights, bias = fit_fusion(np.column_stack([z, f]), y)
    fusion = ScoreFusionSpec(features=names, weights=tuple(round(w, 6) for w in weights), bias=round(bias, 6))

    def scores(z_, f_):  # the runtime's formula on the hand features made per image
        return fusion_logits(fusion, {"cnn_logit": z_, **{n: f_[:, i] for i, n in enumerate(HAND_FEATURES)}})

    info = {"features": list(names), "l2": FUSION_L2, "fit": "logistic regression, standardised features, L-BFGS",
            "n_crops": int(len(y)), "positives": round(float(y.mean()), 3), "data": data_spec, "seed": seed,
            "base": {"name": spec.name, "hole_classifier_head_sha256": hc.parts[hc.architecture.head_role].sha256},
            "train_auc": {"cnn": auc_by_film(y, z, fl), "fused": auc_by_film(y, scores(z, f), fl)}}
    if cfg["fusion_eval"]:
        ev = {}
        for key, (first, n, gold) in FUSION_EVAL.items():
            ze, zr, fe, ye, fle = fusion_data(models, range(first, first + n), 1.0 if gold else 0.0)
            ev[key] = {"seeds": f"{first} + 0..{n - 1}" + (" (gold film)" if gold else ""), "n_crops": int(len(ye)),
                       "cnn": auc_by_film(ye, ze, fle), "fused": auc_by_film(ye, scores(ze, fe), fle),
                       "cnn_running_bn": auc_by_film(ye, zr, fle), "fused_running_bn": auc_by_film(ye, scores(zr, fe), fle)}
        info["heldout_auc"] = ev
    info["wall_seconds"] = round(time.perf_counter() - t0, 1)
    _log(f"hole_fusion: {json.dumps({'fusion': to_json(fusion), **info})}")
    out.mkdir(parents=True, exist_ok=True)
    files = {p.file for m in (spec.models.square_classifier, spec.models.hole_classifier, spec.models.hole_unet)
             if m is not None for p in m.parts.values()}
    for fn in sorted(files):
        shutil.copy2(base / fn, out / fn)
    training = dict(spec.training or {})
    training["hole_fusion"] = info
    metrics = out / "metrics.json"
    new = dataclasses.replace(spec, name=out.name, training=training,
                              metrics=json.loads(metrics.read_text()) if metrics.is_file() else None,
                              models=dataclasses.replace(spec.models, hole_classifier=dataclasses.replace(hc, score_fusion=fusion)))
    path = out / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(manifest_text(new), encoding="utf-8")
    tmp.replace(path)
    _log(f"wrote {path}")
    return path


# ------------------------------------------------------------------------------- training

def _torch():
    import torch

    torch.set_num_threads(1)
    return torch


def _rot90(torch, x, k):
    return torch.rot90(x, int(k), dims=(-2, -1)) if k else x


def train_classifier(key: str, data, epochs: int, seed: int, batch_max: int | None = None, val=None,
                     lr: float = 1e-3, init: str = "", schedule: str = "constant", arch: dict | None = None):
    """Adam (rate lr; schedule "constant" or "cosine" decay to COSINE_FLOOR × lr over all
    steps) + BCE on per-image batches (one BatchNorm batch = one image's crops of one shape),
    random 90° rotation per batch; init: fine-tune from a cached checkpoint; arch: the
    network's ARCH entry (default ARCH[key]). Returns (module, info)."""
    torch = _torch()
    from .arch_classifiers import HoleClassifier, SquareClassifier

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 11])
    a = arch or ARCH[key]
    net = (SquareClassifier(a["channels"], tuple(a["kernels"]), a["head_kernel"]) if key == "square_classifier"
           else HoleClassifier(a["channels"], a["n_stages"], a.get("pooling", "mean"), a.get("centre_sigma", 0.15)))
    if init:
        net.load_state_dict(torch.load(init, map_location="cpu")["state"])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    total = epochs * sum(1 for _, lab in data if len(lab) >= 2)
    lossf = torch.nn.BCEWithLogitsLoss()
    steps, t0, hist = 0, time.perf_counter(), []
    for ep in range(epochs):
        order = rng.permutation(len(data))
        net.train()
        for j in order:
            crops, lab = data[j]
            if len(lab) < 2:
                continue
            idx = np.arange(len(lab))
            if batch_max and len(idx) > batch_max:
                idx = rng.choice(idx, batch_max, replace=False)
            x = torch.from_numpy(crops[idx].astype(np.float32))[:, None]
            x = _rot90(torch, x, rng.integers(4))
            y = torch.from_numpy(lab[idx])[:, None]
            if schedule == "cosine":
                for g in opt.param_groups:
                    g["lr"] = lr * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * steps / total)))
            loss = lossf(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            hist.append(float(loss.detach()))
            steps += 1
            if steps % 25 == 0:
                _log(f"{key}: epoch {ep + 1}/{epochs} step {steps} loss {np.mean(hist[-25:]):.4f}")
    info = {"steps": steps, "epochs": epochs, "lr": lr, "schedule": schedule, "train_seconds": round(time.perf_counter() - t0, 1),
            "final_loss": round(float(np.mean(hist[-25:])), 4) if hist else None}
    if val:
        info.update(eval_classifier(net, val))
    net.eval()
    return net, info


def eval_classifier(net, data) -> dict:
    """Validation ROC AUC / accuracy, batch statistics per image (published regime) and
    running statistics."""
    torch = _torch()
    ys, s_pub, s_run = [], [], []
    with torch.no_grad():
        for crops, lab in data:
            x = torch.from_numpy(crops.astype(np.float32))[:, None]
            net.train()
            # batch statistics without touching the running estimates
            mom = [m.momentum for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.momentum = 0.0
            s_pub.append(torch.sigmoid(net(x))[:, 0].numpy())
            for m, v in zip([m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)], mom):
                m.momentum = v
            net.eval()
            s_run.append(torch.sigmoid(net(x))[:, 0].numpy())
            ys.append(lab)
    y = np.concatenate(ys)
    sp, sr = np.concatenate(s_pub), np.concatenate(s_run)
    return {"val_n": int(len(y)), "val_pos_fraction": round(float(y.mean()), 3),
            "val_roc_auc_published_bn": round(roc_auc(y, sp), 4), "val_roc_auc_running_bn": round(roc_auc(y, sr), 4),
            "val_accuracy_published_bn": round(float(((sp > 0.5) == (y > 0.5)).mean()), 4)}


def gaussian_blur(torch, x, sigma, radius: int = 12, sigma_max: float = SIGMA_MAX):
    """Separable Gaussian blur of N×1×H×W with a differentiable sigma (px), clamped to
    [0.5, sigma_max]."""
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    s = torch.clamp(sigma, min=0.5, max=sigma_max)
    k = torch.exp(-0.5 * (t / s) ** 2)
    k = k / k.sum()
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1), padding=(0, radius))
    return torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1), padding=(radius, 0))


def train_unet(pool, steps: int, patch: int, batch: int, seed: int, init: str = "",
               sigma_max: float = SIGMA_MAX, lr: float = 1e-3):
    """Adam + BCE (positive weight UNET_POS_WEIGHT) on the blurred logits of random
    patch×patch px crops (rot90 and contrast-inversion augmentation). init: fine-tune from
    a cached checkpoint. sigma_max: clamp of the learned output blur (px); a small clamp
    pins the blob positions (with 6 px the blur hides a 4-5 px offset of the blobs, which
    an under-trained net keeps in a fixed image direction). lr: Adam rate of the net."""
    torch = _torch()
    from .arch_unet import UNet

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 13])
    a = ARCH["hole_unet"]
    net = UNet(a["channels"], a["depth"])
    # He (Kaiming) initialisation of the ReLU convolutions: with PyTorch's default init the
    # signal fades through the 2·depth-1 layers and 500-1000 steps learn next to nothing
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.Conv2d) and not name.startswith("last"):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    net.init_last_bias(-10.0)
    if init:  # fine-tune from an earlier run (its calibration shift undone)
        ck = torch.load(init, map_location="cpu")
        net.load_state_dict(ck["state"])
        with torch.no_grad():
            net.last.bias -= ck["info"].get("calibration_bias_shift", 0.0)
    sigma = torch.nn.Parameter(torch.tensor(math.e))
    opt = torch.optim.Adam([{"params": net.parameters(), "lr": lr}, {"params": [sigma], "lr": 0.1}])
    pw = torch.tensor(UNET_POS_WEIGHT)
    t0, hist = time.perf_counter(), []
    net.train()
    for step in range(1, steps + 1):
        xs, ys = [], []
        for _ in range(batch):
            img, tgt = pool[rng.integers(len(pool))]
            h, w = img.shape
            r0 = rng.integers(0, max(1, h - patch + 1))
            c0 = rng.integers(0, max(1, w - patch + 1))
            x = img[r0:r0 + patch, c0:c0 + patch].astype(np.float32)
            y = tgt[r0:r0 + patch, c0:c0 + patch].astype(np.float32)
            k = rng.integers(4)
            x, y = np.rot90(x, k), np.rot90(y, k)
            if rng.random() < 0.5:
                x = -x
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        X = torch.from_numpy(np.stack(xs))[:, None]
        Y = torch.from_numpy(np.stack(ys))[:, None]
        out = gaussian_blur(torch, net(X), sigma, sigma_max=sigma_max)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out, Y, pos_weight=pw)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), UNET_CLIP)  # tames the weight-100 spikes
        opt.step()
        hist.append(float(loss.detach()))
        if step % 25 == 0:
            _log(f"hole_unet: step {step}/{steps} loss {np.mean(hist[-25:]):.4f} sigma {float(sigma):.3f}")
    net.eval()
    return net, {"steps": steps, "batch": batch, "patch_px": patch, "train_seconds": round(time.perf_counter() - t0, 1),
                 "final_loss": round(float(np.mean(hist[-25:])), 4), "blur_sigma_px": round(min(max(float(sigma), 0.5), sigma_max), 4),
                 "blur_sigma_max_px": sigma_max, "lr": lr}


def calibrate_unet(net, seeds) -> dict:
    """Shift `last.bias` so that sigmoid > 1e-4 gives the best U-Net + lattice hole F1 on
    held-out synthetic images (docs/ALGORITHM.md#evaluation-metrics matching), through the runtime's speckle filter and
    lattice search (UNET_MASK_MIN_REGION_PX, PIPELINE). Returns info with the chosen shift."""
    torch = _torch()
    from ptolemy_rt import medmag, synthetic
    from ptolemy_rt.evaluate import match_points_to_discs

    cases = []
    with torch.no_grad():
        for s in seeds:
            img, truth = synthetic.medmag_image(int(s))
            h, w = img.shape
            x = medmag.pad_for_unet(medmag.normalise(img))
            logit = net(torch.from_numpy(x)[None, None])[0, 0].numpy()[:h, :w]
            ins = [t for t in truth if 0 <= t.center[0] < w and 0 <= t.center[1] < h]
            cases.append((img, logit, np.array([t.center for t in ins]).reshape(-1, 2),
                          np.array([min(t.axes) for t in ins])))
    shifts = np.arange(-30.0, 10.01, 1.0)
    f1s = []
    for dlt in shifts:
        f = []
        for img, logit, cen, rad in cases:
            # the runtime's mask threshold and speckle filter, then its back half (holes_from_mask)
            m = medmag.drop_small_regions(medmag.mask_from_logits(logit + dlt, logit.shape), UNET_MASK_MIN_REGION_PX)
            if 0 < m.mean() < 0.6:
                kept: dict = {}
                res = medmag.holes_from_mask(img, m, lattice=PIPELINE["lattice"], intermediates=kept)
                pred = kept["layout"].points[:, ::-1] if res.reason is None else np.zeros((0, 2))
            else:
                pred = np.zeros((0, 2))
            r = match_points_to_discs(pred, cen, rad)
            f.append(r["f1"])
        f1s.append(float(np.mean(f)))
    # the most negative shift (highest threshold: the sparsest mask) whose F1 is within
    # CALIB_F1_TOLERANCE of the best: the curve is flat near its top, and the core of a
    # U-Net blob marks the hole centre better than its tails (real example: mean x-offset
    # from the published holes −5.6 px at −10 vs −10.8 px at −9, F1 0.944 vs 0.952)
    f1a = np.asarray(f1s)
    best = float(shifts[int(np.nonzero(f1a >= f1a.max() - CALIB_F1_TOLERANCE)[0][0])])
    with torch.no_grad():
        net.last.bias += best
    i0 = int(np.argmin(np.abs(shifts)))
    _log(f"hole_unet: calibration shift {best:+.1f} (lattice F1 {f1s[int(np.argmin(np.abs(shifts - best)))]:.3f}, "
         f"best {max(f1s):.3f}; at 0: {f1s[i0]:.3f})")
    near = {f"{v:+.0f}": round(f, 4) for v, f in zip(shifts, f1s) if abs(v - best) <= 3}
    _log(f"hole_unet: lattice F1 near the best shift: {near}")
    return {"calibration_bias_shift": best,
            "calibration_lattice_f1": round(float(f1a[int(np.argmin(np.abs(shifts - best)))]), 4),
            "calibration_f1_unshifted": round(f1s[i0], 4), "calibration_images": len(seeds),
            "calibration_f1_near_best": near}


# ------------------------------------------------------------------------------- main

def _seeds(seed: int, n: int, offset: int = 0):
    return [seed * 1_000_000 + offset + i for i in range(n)]


def _split(data, frac=0.1):
    n = max(1, int(round(len(data) * frac)))
    return data[n:], data[:n]


def run(out: Path, seed: int, only: list[str], datas: list[Path], cfg: dict) -> Path:
    torch = _torch()
    from ptolemy_rt.labels import read_dataset

    CACHE.mkdir(parents=True, exist_ok=True)
    dsets = [read_dataset(d) for d in datas]
    low = [d for d in dsets if d.kind == "lowmag"]
    med = [d for d in dsets if d.kind == "medmag"]
    for key in only:
        t0 = time.perf_counter()
        arch = ARCH.get(key)
        if key == "square_classifier":
            if low:
                data = sum((square_data_labelled(d) for d in low), [])
                spec = {"source": "labelled", "folders": [str(d.root) for d in low]}
            else:
                data = square_data_synthetic(_seeds(seed, cfg["square_atlases"]))
                spec = {"source": "synthetic", "generator": "ptolemy_rt.synthetic.atlas", "shape": [1024, 1024],
                        "seeds": f"{seed}*10^6 + 0..{cfg['square_atlases'] - 1}"}
            train, val = _split(data)
            _log(f"square data: {sum(len(l) for _, l in data)} crops from {len(data)} atlases "
                 f"({time.perf_counter() - t0:.0f} s), positives {np.mean(np.concatenate([l for _, l in data])):.2f}")
            net, info = train_classifier(key, train, cfg["square_epochs"], seed, batch_max=cfg["square_batch"], val=val)
        elif key == "hole_classifier":
            if med:
                data = sum((hole_data_labelled(d) for d in med), [])
                spec = {"source": "labelled", "folders": [str(d.root) for d in med]}
            else:
                data = hole_data_synthetic(_seeds(seed, cfg["hole_images"], 100_000), cfg["hole_gold_extra"])
                spec = {"source": "synthetic", "generator": "ptolemy_rt.synthetic.medmag_image", "shape": [1024, 1440],
                        "seeds": f"{seed}*10^6 + 100000 + 0..{cfg['hole_images'] - 1}"}
                if cfg["hole_gold_extra"] > 0:
                    spec["gold_extra"] = cfg["hole_gold_extra"]  # train.gold_forced
            train, val = _split(data)
            arch = {**ARCH[key], "channels": cfg["hole_channels"]}
            if cfg["hole_pooling"] != "mean":  # the v1 recipe's arch block stays as it was
                arch.update(pooling=cfg["hole_pooling"], centre_sigma=cfg["hole_centre_sigma"])
            _log(f"hole data: {sum(len(l) for _, l in data)} crops in {len(data)} groups "
                 f"({time.perf_counter() - t0:.0f} s), positives {np.mean(np.concatenate([l for _, l in data])):.2f}")
            net, info = train_classifier(key, train, cfg["hole_epochs"], seed, batch_max=cfg["hole_batch"], val=val,
                                         lr=cfg["hole_lr"], init=cfg["hole_init"], schedule=cfg["hole_schedule"],
                                         arch=arch)
            if cfg["hole_init"]:
                info["init"] = {"from": cfg["hole_init"], "info": torch.load(cfg["hole_init"])["info"]}
            if "pooling" in arch:  # recorded in the manifest's training block (the ONNX head carries it)
                info.update(pooling=arch["pooling"], centre_sigma=arch["centre_sigma"])
        elif key == "hole_unet":
            if med:
                pool = sum((unet_pool_labelled(d, cfg["unet_target_fraction"], cfg["unet_target_min"])
                            for d in med), [])
                spec = {"source": "labelled", "folders": [str(d.root) for d in med]}
            else:
                pool = unet_pool_synthetic(_seeds(seed, cfg["unet_images"], 200_000), cfg["unet_target_fraction"],
                                           cfg["unet_target_min"])
                spec = {"source": "synthetic", "generator": "ptolemy_rt.synthetic.medmag_image", "shape": [1024, 1440],
                        "seeds": f"{seed}*10^6 + 200000 + 0..{cfg['unet_images'] - 1}"}
            spec["target"] = (f"discs at hole centres, radius max({cfg['unet_target_min']} px, "
                              f"{cfg['unet_target_fraction']} x hole radius)")
            _log(f"unet data: {len(pool)} images ({time.perf_counter() - t0:.0f} s)")
            net, info = train_unet(pool, cfg["unet_steps"], cfg["unet_patch"], cfg["unet_batch"], seed,
                                   cfg["unet_init"], sigma_max=cfg["unet_sigma_max"], lr=cfg["unet_lr"])
            if cfg["unet_init"]:
                info["init"] = {"from": cfg["unet_init"], "info": torch.load(cfg["unet_init"])["info"]}
            del pool
            info.update(calibrate_unet(net, _seeds(seed, cfg["calib_images"], 900_000)))
        elif key == "recalibrate_unet":
            ck = torch.load(CACHE / "hole_unet.pt", map_location="cpu")
            from .arch_unet import UNet

            net = UNet(ck["arch"]["channels"], ck["arch"]["depth"])
            net.load_state_dict(ck["state"])
            net.eval()
            info = dict(ck["info"])
            with torch.no_grad():
                net.last.bias -= info.pop("calibration_bias_shift", 0.0)
            for k in [k for k in info if k.startswith("calibration")]:
                info.pop(k)
            info.update(calibrate_unet(net, _seeds(seed, cfg["calib_images"], 900_000)))
            info["data"] = ck["info"]["data"]
            key, arch = "hole_unet", ARCH["hole_unet"]
            spec = info["data"]
        else:
            raise SystemExit(f"unknown model {key!r}")
        info["data"] = spec
        info["seed"] = seed
        info["wall_seconds"] = round(time.perf_counter() - t0, 1)
        torch.save({"state": net.state_dict(), "info": info, "arch": arch}, CACHE / f"{key}.pt")
        _log(f"{key}: done {json.dumps(info)}")
    missing = [k for k in ("square_classifier", "hole_classifier", "hole_unet") if not (CACHE / f"{k}.pt").is_file()]
    if missing:  # a step of a multi-step recipe (make train): export once all three are trained
        _log(f"not exporting yet: {', '.join(missing)} not trained (build/train-cache)")
        return Path(out)
    return export(out)


def export(out: Path) -> Path:
    """ONNX + manifest from the cached trained states (all three must exist)."""
    torch = _torch()
    from ptolemy_rt.modelspec import PipelineSpec, SourceSpec, TrainedWithSpec

    from .arch_classifiers import HoleClassifier, SquareClassifier
    from .arch_unet import UNet
    from .manifest import write_manifest
    from .onnx_classifiers import export_hole_classifier, export_square_classifier
    from .onnx_unet import export_unet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    models, training = {}, {}
    for key in ("square_classifier", "hole_classifier", "hole_unet"):
        path = CACHE / f"{key}.pt"
        if not path.is_file():
            raise SystemExit(f"{path}: not trained yet (run python -m export.train --only {key})")
        ck = torch.load(path, map_location="cpu")
        a = ck["arch"]
        if key == "square_classifier":
            net = SquareClassifier(a["channels"], tuple(a["kernels"]), a["head_kernel"])
            fn = export_square_classifier
        elif key == "hole_classifier":
            net = HoleClassifier(a["channels"], a["n_stages"], a.get("pooling", "mean"), a.get("centre_sigma", 0.15))
            fn = export_hole_classifier
        else:
            net = UNet(a["channels"], a["depth"])
            fn = export_unet
        net.load_state_dict(ck["state"], strict=True)
        net.eval()
        spec = fn(net, out, key)
        arch = spec["architecture"]
        if key == "hole_classifier":  # runtime crop normalisation and BN batches it was trained with
            arch = dataclasses.replace(arch, **{k: a[k] for k in ("crop_normalisation", "bn_batches") if k in a})
        if key == "hole_unet":  # runtime speckle filter for this small U-Net (medmag.drop_small_regions)
            arch = dataclasses.replace(arch, mask_min_region_px=UNET_MASK_MIN_REGION_PX)
        models[key] = {"architecture": arch, "parts": spec["parts"],
                       "source": SourceSpec(training="export/train.py", seed=ck["info"]["seed"])}
        training[key] = ck["info"]
    for old in out.glob("*.onnx"):
        if not any(old.name in m["parts"].values() for m in models.values()):
            old.unlink()
    metrics = out / "metrics.json"
    path = write_manifest(out, SET_NAME, models, LICENCE, CITATION, pipeline=PipelineSpec(**PIPELINE),
                          training=training, trained_with=TrainedWithSpec(torch=torch.__version__, threads=1),
                          metrics=json.loads(metrics.read_text()) if metrics.is_file() else None)
    _log(f"wrote {path}")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train the own model set on synthetic data or labelled folders.")
    ap.add_argument("--out", type=Path, default=Path("onnx_models") / SET_NAME)
    ap.add_argument("--data", type=Path, action="append", default=[],
                    help="labelled folder (ptolemy_rt.labels format); repeat for several; "
                         "kinds without a folder train on synthetic data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="hole_unet,hole_classifier,square_classifier",
                    help="comma-separated models to train (others come from build/train-cache)")
    ap.add_argument("--export-only", action="store_true", help="only write ONNX + manifest from the cache")
    ap.add_argument("--fusion-base", type=Path, default=Path("onnx_models") / SET_NAME,
                    help="--only hole_fusion: the exported set whose hole classifier the fusion is fitted for "
                         "(its parts are copied to --out)")
    ap.add_argument("--no-fusion-eval", action="store_true",
                    help="--only hole_fusion: skip the held-out AUCs (FUSION_EVAL)")
    for k, v in DEFAULTS.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    a = ap.parse_args(argv)
    if a.export_only:
        export(a.out)
        return 0
    cfg = {k: getattr(a, k) for k in DEFAULTS}
    for k in ("unet_init", "hole_init"):
        if cfg[k] and not Path(cfg[k]).is_file():
            ap.error(f"--{k.replace('_', '-')} {cfg[k]}: no such checkpoint file")
    if cfg["hole_schedule"] not in SCHEDULES:
        ap.error(f"--hole-schedule must be one of {', '.join(SCHEDULES)}, got {cfg['hole_schedule']!r}")
    if cfg["hole_pooling"] not in HOLE_POOLINGS:
        ap.error(f"--hole-pooling must be one of {', '.join(HOLE_POOLINGS)}, got {cfg['hole_pooling']!r}")
    if not 0.0 <= cfg["hole_gold_extra"] <= 1.0:
        ap.error(f"--hole-gold-extra must be in [0, 1], got {cfg['hole_gold_extra']}")
    if not cfg["hole_centre_sigma"] > 0:
        ap.error(f"--hole-centre-sigma must be > 0, got {cfg['hole_centre_sigma']}")
    if cfg["hole_channels"] < 1:
        ap.error(f"--hole-channels must be >= 1, got {cfg['hole_channels']}")
    for k in ("unet_lr", "hole_lr", "unet_sigma_max"):
        if not cfg[k] > 0:
            ap.error(f"--{k.replace('_', '-')} must be > 0, got {cfg[k]}")
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    if "hole_fusion" in only:
        if only != ["hole_fusion"]:
            ap.error("--only hole_fusion is a step of its own (it reads an exported set, --fusion-base)")
        cfg["fusion_eval"] = not a.no_fusion_eval
        run_hole_fusion(a.out, a.fusion_base, a.seed, cfg, a.data)
        return 0
    run(a.out, a.seed, only, a.data, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
