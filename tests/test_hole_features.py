"""Hole score fusion (ptolemy_rt/hole_features.py, modelspec.ScoreFusionSpec,
medmag.score_holes): the declaration is validated; a set without it scores as before; with
it the runtime scores sigmoid(bias + Σ w·feature) over the crops of one call, in both
BatchNorm regimes; the features separate the synthetic hole classes they are meant for."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from conftest import REPO
from ptolemy_rt import classifier, hole_features, medmag, synthetic
from ptolemy_rt.errors import ModelSetError
from ptolemy_rt.models import ModelSet, load_model_set
from ptolemy_rt.modelspec import ModelSetSpec, ScoreFusionSpec, SpecProblem, manifest_text, parse, read_manifest, to_json

OWN = REPO / "onnx_models" / "ptolemy-rt-synth-v1"


def _with_fusion(fusion: ScoreFusionSpec | None) -> ModelSet:
    """The own set's files with a hole score fusion declared (no copy: same root)."""
    spec = read_manifest(OWN / "manifest.json")
    hc = dataclasses.replace(spec.models.hole_classifier, score_fusion=fusion)
    spec = dataclasses.replace(spec, models=dataclasses.replace(spec.models, hole_classifier=hc))
    return ModelSet(spec.name, OWN, spec)


def _scene(seed: int = 7_000_000):
    """A synthetic image's rotated frame, crop boxes and image norm (as find_holes cuts them)."""
    img, truth, ids, _ = synthetic.medmag_with_ids(seed)
    pix = np.asarray(img, np.float32)
    h, w = ids.shape
    rr, cc = np.mgrid[:h, :w]
    mask = np.zeros(pix.shape, bool)
    for t in truth:
        x, y = t.center
        if 0 <= x < w and 0 <= y < h and ids[int(y), int(x)] == t.id:
            mask |= (rr - y) ** 2 + (cc - x) ** 2 <= 100  # discs of 10 px at the visible centres
    kept: dict = {}
    medmag.holes_from_mask(pix, mask, lattice="oblique", scale="off", intermediates=kept)
    lay = kept["layout"]
    assert lay.reason is None and len(lay.boxes) >= 6
    return medmag.rotate_filled(pix, -lay.angle_deg, True), lay.boxes, medmag.image_norm(pix)


def test_fusion_declaration_is_validated():
    ok = ScoreFusionSpec(features=("cnn_logit", "level_dev"), weights=(1.0, -0.5), bias=0.0)
    assert to_json(ok) == {"features": ["cnn_logit", "level_dev"], "weights": [1.0, -0.5], "bias": 0.0}
    for kw, key in [(dict(features=("cnn_logit", "size"), weights=(1.0, 1.0)), "features[1]"),
                    (dict(features=("cnn_logit",), weights=(1.0, 2.0)), "weights"),
                    (dict(features=("cnn_logit", "cnn_logit"), weights=(1.0, 2.0)), "features"),
                    (dict(features=(), weights=()), "features"),
                    (dict(features=("cnn_logit",), weights=(float("nan"),)), "weights[0]")]:
        with pytest.raises(SpecProblem) as e:
            ScoreFusionSpec(bias=0.0, **kw)
        assert e.value.key == key
    doc = json.loads((OWN / "manifest.json").read_text(encoding="utf-8"))
    doc["models"]["hole_classifier"]["score_fusion"] = {"features": ["cnn_logit"], "weights": [1.0], "bias": "x"}
    with pytest.raises(ModelSetError, match=r"models\.hole_classifier\.score_fusion\.bias: expected a number"):
        parse(ModelSetSpec, doc, "m.json")
    doc["models"]["hole_classifier"]["score_fusion"] = to_json(ok)
    spec = parse(ModelSetSpec, doc, "m.json")
    assert spec.models.hole_classifier.score_fusion == ok
    assert json.loads(manifest_text(spec))["models"]["hole_classifier"]["score_fusion"] == to_json(ok)


def test_sets_without_the_declaration_have_no_fusion():
    ms = load_model_set("ptolemy-rt-synth-v1")
    assert ms.model("hole_classifier").score_fusion is None and medmag.score_fusion(ms) is None
    assert "score_fusion" not in (OWN / "manifest.json").read_text(encoding="utf-8")


@pytest.mark.parametrize("batchnorm", ["published", "running"])
def test_fused_scores_are_the_declared_formula(batchnorm):
    rotated, boxes, norm = _scene()
    plain = load_model_set("ptolemy-rt-synth-v1")
    crops: dict = {}
    base = medmag.score_holes(plain, rotated, boxes, batchnorm, norm, crops=crops)
    # weight 1 on the logit alone: the classifier's own scores
    ident = _with_fusion(ScoreFusionSpec(features=("cnn_logit",), weights=(1.0,), bias=0.0))
    assert np.allclose(medmag.score_holes(ident, rotated, boxes, batchnorm, norm), base, rtol=0, atol=1e-12)
    fusion = ScoreFusionSpec(features=("cnn_logit", "level_dev", "contrast_dev", "log_texture"),
                             weights=(0.7, -0.6, -0.6, -1.7), bias=3.0)
    got = medmag.score_holes(_with_fusion(fusion), rotated, boxes, batchnorm, norm)
    z = np.log(base) - np.log1p(-base)
    stats = np.stack([hole_features.crop_stats(crops[k]) for k in range(len(boxes))])
    f = hole_features.image_features(stats)
    want = classifier.sigmoid(3.0 + 0.7 * z - 0.6 * f["level_dev"] - 0.6 * f["contrast_dev"] - 1.7 * f["log_texture"])
    assert np.allclose(got, want, rtol=0, atol=1e-9)
    assert not np.allclose(got, base, atol=1e-3)
    # relative to the call's crops: scoring a subset changes the hand features
    sub = medmag.score_holes(_with_fusion(fusion), rotated, boxes[:3], batchnorm, norm)
    assert not np.allclose(sub, got[:3], atol=1e-6)


def _crop(level: float, film: float = -1.0, blobs: int = 0, side: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[:side, :side] - (side - 1) / 2
    c = np.where(rr ** 2 + cc ** 2 <= (0.3 * side) ** 2, level, film)
    for _ in range(blobs):
        r0, c0 = rng.uniform(-0.15, 0.15, 2) * side
        c = np.where((rr - r0) ** 2 + (cc - c0) ** 2 <= 16, level - 1.5, c)
    return (c + 0.05 * rng.standard_normal(c.shape)).astype(np.float32)


def test_features_single_out_empty_thick_and_contaminated_holes():
    crops = [_crop(1.0, seed=k) for k in range(6)] + [_crop(1.6), _crop(0.5), _crop(1.0, blobs=4)]
    f = hole_features.image_features(np.stack([hole_features.crop_stats(c) for c in crops]))
    good = slice(0, 6)
    for k in (6, 7):  # empty (bright), thick (dark): level and contrast far from the image's
        assert f["level_dev"][k] > 5 * f["level_dev"][good].max()
        assert f["contrast_dev"][k] > 5 * f["contrast_dev"][good].max()
    assert f["log_texture"][8] > 1.0 > np.abs(f["log_texture"][good]).max()  # dark blobs
