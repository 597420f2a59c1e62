"""Parity of the exported classifiers (ONNX Runtime through ptolemy_rt.classifier) with the
PyTorch modules, in both BatchNorm regimes, on random and real inputs.

published: module.train() under torch.no_grad() on the whole batch (BN batch statistics);
running: module.eval(). Max |Δ logit| must stay ≤ 1e-4.
"""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from conftest import LOWMAG_MRC, MEDMAG_MRC, WEIGHTS, needs_shared  # noqa: E402

from export.arch_classifiers import HoleClassifier, SquareClassifier, min_hole_input  # noqa: E402
from export.manifest import write_manifest  # noqa: E402
from export.onnx_classifiers import export_hole_classifier, export_square_classifier  # noqa: E402
from ptolemy_rt import classifier  # noqa: E402
from ptolemy_rt.classifier import logits, score_crops  # noqa: E402
from ptolemy_rt.models import load_model_set  # noqa: E402

torch.set_num_threads(1)
TOL = 1e-4
SQUARE_CKPT = "211215_lowmag_64x5_defaultadam_tightw_e2.torchmodel"
HOLE_CKPT = "211214_medmag_128x4_avgpool_e5.torchmodel"


def _randomise_bn(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BN parameters with some negative gammas (exercises min-pooling)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                sign = torch.where(torch.rand(c, generator=g) < 0.3, -1.0, 1.0)
                m.weight.copy_(sign * (0.5 + torch.rand(c, generator=g)))
                m.bias.copy_(0.3 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    return module


def _torch_logits(module: torch.nn.Module, x: np.ndarray, regime: str) -> np.ndarray:
    m = copy.deepcopy(module)  # train() forward would update the running statistics
    m.train(regime == "published")
    with torch.no_grad():
        return m(torch.from_numpy(np.ascontiguousarray(x[:, None], dtype=np.float32))).numpy()[:, 0].astype(np.float64)


def _ort_logits(ms, key: str, x: np.ndarray, regime: str, **kw) -> np.ndarray:
    return logits(ms, key, len(x), lambda i: x[i], regime, **kw)


def _norm(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return ((a - a.mean()) / a.std()).astype(np.float32)


def _read_mrc(path) -> np.ndarray:
    import mrcfile

    with mrcfile.open(path, permissive=True) as f:
        return np.asarray(f.data, dtype=np.float32)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Model sets exported into a temporary PTOLEMY_MODELS_DIR: 'published' (the released
    checkpoints, when ../shared is present) and 'small' (random widths 16 / 32)."""
    root = tmp_path_factory.mktemp("models")
    mods = {}
    if WEIGHTS.is_dir():
        sq = SquareClassifier()
        sq.load_state_dict(torch.load(WEIGHTS / SQUARE_CKPT, map_location="cpu", weights_only=True), strict=True)
        ho = HoleClassifier()
        ho.load_state_dict(torch.load(WEIGHTS / HOLE_CKPT, map_location="cpu", weights_only=True), strict=True)
        mods["published"] = {"square_classifier": sq.eval(), "hole_classifier": ho.eval()}
    torch.manual_seed(0)
    mods["small"] = {"square_classifier": _randomise_bn(SquareClassifier(channels=16), 1).eval(),
                     "hole_classifier": _randomise_bn(HoleClassifier(channels=32), 2).eval()}
    for name, m in mods.items():
        d = root / name
        spec = {"square_classifier": export_square_classifier(m["square_classifier"], d, "square_classifier"),
                "hole_classifier": export_hole_classifier(m["hole_classifier"], d, "hole_classifier")}
        write_manifest(d, name, spec, "test", "test")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PTOLEMY_MODELS_DIR", str(root))
        yield {name: (load_model_set(name), m) for name, m in mods.items()}


def _check(tag: str, got: np.ndarray, ref: np.ndarray) -> float:
    d = float(np.max(np.abs(got - ref)))
    print(f"{tag}: n={len(ref)} max|Δ logit| = {d:.2e}")
    assert np.all(np.isfinite(got))
    assert d <= TOL, f"{tag}: max |Δ logit| {d:.3e} > {TOL}"
    return d


@needs_shared
def test_published_checkpoints_load_strictly():
    sd = torch.load(WEIGHTS / SQUARE_CKPT, map_location="cpu", weights_only=True)
    m = SquareClassifier()
    m.load_state_dict(sd, strict=True)
    assert set(m.state_dict()) == set(sd)
    sd = torch.load(WEIGHTS / HOLE_CKPT, map_location="cpu", weights_only=True)
    m = HoleClassifier()
    m.load_state_dict(sd, strict=True)
    assert set(m.state_dict()) == set(sd)


def test_architecture_sizes():
    x = torch.zeros(2, 1, 240, 240)
    assert SquareClassifier(channels=8).eval()(x).shape == (2, 1)
    n = min_hole_input(4)
    assert HoleClassifier(channels=8).eval()(torch.zeros(1, 1, n, n)).shape == (1, 1)
    with pytest.raises(RuntimeError):
        HoleClassifier(channels=8).eval()(torch.zeros(1, 1, n - 1, n - 1))


@pytest.mark.parametrize("regime", ["published", "running"])
@pytest.mark.parametrize("which", ["published", "small"])
def test_parity_random_inputs(sets, which, regime):
    if which not in sets:
        pytest.skip("../shared/ptolemy-2022 not present")
    ms, mods = sets[which]
    rng = np.random.default_rng(7)
    for key, shape, n in (("square_classifier", (240, 240), 5), ("hole_classifier", (270, 202), 3)):
        x = rng.standard_normal((n,) + shape).astype(np.float32)
        _check(f"{which}/{key}/{regime}/random", _ort_logits(ms, key, x, regime), _torch_logits(mods[key], x, regime))


def _atlas_windows() -> np.ndarray:
    a = np.maximum(_read_mrc(LOWMAG_MRC), 0)
    mask = a >= 58  # the square mask of this image (reference intermediates)
    a = ((a - a[mask].mean()) / a[mask].std()).astype(np.float32)
    corners = [(r, c) for r in (60, 330, 610) for c in (120, 470, 760)]
    return np.stack([a[r:r + 240, c:c + 240] for r, c in corners])


def _medmag_crops() -> dict[tuple[int, int], np.ndarray]:
    m = np.maximum(_read_mrc(MEDMAG_MRC), 0)
    groups = {(270, 270): [(40, 60), (380, 560), (700, 1100)], (270, 202): [(120, 900), (600, 300)],
              (270, 261): [(500, 1000)]}
    return {s: np.stack([_norm(m[r:r + s[0], c:c + s[1]]) for r, c in pos]) for s, pos in groups.items()}


@needs_shared
@pytest.mark.parametrize("regime", ["published", "running"])
def test_parity_real_atlas_windows(sets, regime):
    ms, mods = sets["published"]
    x = _atlas_windows()
    _check(f"square_classifier/{regime}/atlas", _ort_logits(ms, "square_classifier", x, regime),
           _torch_logits(mods["square_classifier"], x, regime))


@needs_shared
@pytest.mark.parametrize("regime", ["published", "running"])
def test_parity_real_hole_crops(sets, regime):
    ms, mods = sets["published"]
    for shape, x in _medmag_crops().items():
        _check(f"hole_classifier/{regime}/medmag {shape[0]}x{shape[1]}",
               _ort_logits(ms, "hole_classifier", x, regime), _torch_logits(mods["hole_classifier"], x, regime))


@needs_shared
def test_running_mixed_shapes_one_call(sets):
    """Running statistics: crops of different shapes in one call, each scored alone."""
    ms, mods = sets["published"]
    groups = list(_medmag_crops().values())
    crops = [c for g in groups for c in g]
    order = [0, 3, 1, 5, 2, 4]
    crops = [crops[i] for i in order]
    got = logits(ms, "hole_classifier", len(crops), lambda i: crops[i], "running")
    ref = np.array([_torch_logits(mods["hole_classifier"], c[None], "running")[0] for c in crops])
    _check("hole_classifier/running/mixed shapes", got, ref)


def test_spill_to_disk(sets, monkeypatch):
    """A RAM budget far below one stage's pooled tensors forces the temporary-file path;
    results equal the all-in-RAM run bit for bit and match torch."""
    which = "published" if "published" in sets else "small"
    ms, mods = sets[which]
    stores = []

    class Recording(classifier._PooledStore):
        def __init__(self, budget):
            super().__init__(budget)
            stores.append(self)

    monkeypatch.setattr(classifier, "_PooledStore", Recording)
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((12, 240, 240)) + np.linspace(-1, 1, 240)[None, None, :]).astype(np.float32)
    low = _ort_logits(ms, "square_classifier", x, "published", pooled_ram_budget=4 << 20, run_budget=8 << 20)
    spilled = [s.spilled for s in stores]  # [crops, stage 2, stage 3, ...] (stage 1 is not stored)
    assert spilled[1] > 0, "the first stored stage should have spilled to the temporary file"
    assert all(s._file is None for s in stores), "temporary files must be closed (deleted)"
    stores.clear()
    high = _ort_logits(ms, "square_classifier", x, "published", pooled_ram_budget=1 << 30, run_budget=1 << 30)
    assert sum(s.spilled for s in stores) == 0
    print(f"spilled crops per stage: {spilled}")
    np.testing.assert_array_equal(low, high)
    _check(f"{which}/square_classifier/published/spill", low, _torch_logits(mods["square_classifier"], x, "published"))


def test_kept_stage1_output_equals_the_recomputed_one(sets, monkeypatch):
    """When all crops' stage-1 output fits the pooled budget it is kept (not made again from
    the crops), and stage 2 reads it in stage 1's runs as views: the logits are bit for bit
    those of the recomputing path (a budget below it), which made stage 1 twice."""
    ms, _ = sets["small"]
    views = []

    class Recording(classifier._PooledStore):
        def get_batch(self, idx):
            out = super().get_batch(idx)
            views.append(out.base is not None)
            return out

    monkeypatch.setattr(classifier, "_PooledStore", Recording)
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((6, 240, 240)) + np.linspace(-1, 1, 240)[None, None, :]).astype(np.float32)
    kept = _ort_logits(ms, "square_classifier", x, "published", pooled_ram_budget=1 << 30, run_budget=4 << 20)
    assert views and views[0], "stage 2 should read stage 1's kept output as views"
    views.clear()
    made_again = _ort_logits(ms, "square_classifier", x, "published", pooled_ram_budget=1 << 20, run_budget=4 << 20)
    np.testing.assert_array_equal(kept, made_again)


def test_pooled_store_hands_back_batch_views_and_spilled_copies():
    batch = np.arange(2 * 4 * 3, dtype=np.float32).reshape(4, 2, 3)
    ram = classifier._PooledStore(1 << 20)
    ram.append_batch(batch)
    assert np.shares_memory(ram.get_batch(range(1, 3)), batch)
    np.testing.assert_array_equal(ram.get_batch(range(1, 3)), batch[1:3])
    part = classifier._PooledStore(2 * batch[0].nbytes)  # two rows in RAM, two in the file
    part.append_batch(batch)
    np.testing.assert_array_equal(part.get_batch(range(0, 4)), batch)
    assert not np.shares_memory(part.get_batch(range(1, 3)), batch) and part.spilled == 2
    part.close()


def test_chunking_does_not_change_results(sets):
    ms, _ = sets["small"]
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 100, 90)).astype(np.float32)
    for regime in ("published", "running"):
        a = _ort_logits(ms, "hole_classifier", x, regime, run_budget=1)
        b = _ort_logits(ms, "hole_classifier", x, regime, run_budget=1 << 30)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_scores_are_sigmoid_float64(sets):
    ms, _ = sets["small"]
    x = np.random.default_rng(1).standard_normal((3, 240, 240)).astype(np.float32)
    z = _ort_logits(ms, "square_classifier", x, "running")
    s = score_crops(ms, "square_classifier", 3, lambda i: x[i], "running")
    assert s.dtype == np.float64 and s.shape == (3,)
    np.testing.assert_allclose(s, 1 / (1 + np.exp(-z)), rtol=1e-12)
    assert score_crops(ms, "square_classifier", 0, lambda i: x[i], "published").shape == (0,)


def test_bad_calls(sets):
    ms, _ = sets["small"]
    x = [np.zeros((240, 240), np.float32), np.zeros((240, 200), np.float32)]
    with pytest.raises(ValueError, match="one shape"):
        score_crops(ms, "square_classifier", 2, lambda i: x[i], "published")
    with pytest.raises(ValueError, match="batchnorm"):
        score_crops(ms, "square_classifier", 1, lambda i: x[i], "eval")
    with pytest.raises(ValueError, match="too small"):
        score_crops(ms, "hole_classifier", 1, lambda i: np.zeros((40, 40), np.float32), "running")


def test_export_is_deterministic(tmp_path):
    torch.manual_seed(0)
    sq = _randomise_bn(SquareClassifier(channels=8), 4)
    ho = _randomise_bn(HoleClassifier(channels=8), 5)
    for sub in ("a", "b"):
        export_square_classifier(sq, tmp_path / sub, "square_classifier")
        export_hole_classifier(ho, tmp_path / sub, "hole_classifier")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n


@pytest.mark.parametrize("regime", ["published", "running"])
def test_centre_pooled_hole_head_exports_with_the_same_contract(tmp_path, monkeypatch, regime):
    """pooling="centre" (Gaussian-weighted mean about the map centre) exports to the same
    roles, inputs and outputs; the runtime's scores match torch for several crop shapes, and
    the head reads the centre: changing only a crop's border moves its logit less than with
    the mean head."""
    torch.manual_seed(1)
    heads = {p: _randomise_bn(HoleClassifier(channels=8, pooling=p), 6).eval() for p in ("mean", "centre")}
    heads["centre"].load_state_dict(heads["mean"].state_dict())
    for p, m in heads.items():
        d = tmp_path / p
        spec = {"hole_classifier": export_hole_classifier(m, d, "hole_classifier")}
        write_manifest(d, p, spec, "test", "test")
    monkeypatch.setenv("PTOLEMY_MODELS_DIR", str(tmp_path))
    sets = {p: load_model_set(p) for p in heads}
    spec_of = {p: ms.spec.models.hole_classifier for p, ms in sets.items()}
    assert spec_of["mean"].architecture == spec_of["centre"].architecture
    assert {r: (q.inputs, q.outputs) for r, q in spec_of["mean"].parts.items()} == \
        {r: (q.inputs, q.outputs) for r, q in spec_of["centre"].parts.items()}
    rng = np.random.default_rng(3)
    for shape in ((63, 63), (150, 210), (256, 256)):
        x = rng.standard_normal((4,) + shape).astype(np.float32)
        _check(f"centre/{regime}/{shape}", _ort_logits(sets["centre"], "hole_classifier", x, regime),
               _torch_logits(heads["centre"], x, regime))
    x = rng.standard_normal((4, 256, 256)).astype(np.float32)
    y = x.copy()
    y[:, :48], y[:, -48:], y[:, :, :48], y[:, :, -48:] = 3.0, 3.0, 3.0, 3.0
    moved = {p: float(np.abs(_torch_logits(m, y, regime) - _torch_logits(m, x, regime)).mean())
             for p, m in heads.items()}
    assert moved["centre"] < 0.5 * moved["mean"], moved


def test_runtime_does_not_import_torch():
    import ast
    from pathlib import Path

    for fn in ("models.py", "classifier.py"):
        tree = ast.parse((Path(classifier.__file__).parent / fn).read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & {"torch", "onnx"}, fn


@needs_shared
def test_convert_builds_verified_set_idempotently(tmp_path):
    """export.convert: strict loads, manifest with sources / licence / citation / per-part
    sha256, opset and I/O; a second run is a no-op; a forced rebuild gives the same bytes."""
    import json

    from conftest import SHARED
    from export.convert import ConvertError, convert

    out = tmp_path / "ptolemy-2022"
    try:
        _, rebuilt = convert(WEIGHTS, SHARED / "NOTICE.md", out)
        unet = True
    except ConvertError as e:  # U-Net exporter not there yet: the classifiers must still be built
        assert "U-Net" in str(e)
        rebuilt, unet = True, False
    assert rebuilt
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["name"] == "ptolemy-2022" and doc["licence"] == "CC BY-NC 4.0"
    assert doc["citation"].startswith("Kim, P. T.") and "IUCrJ" in doc["citation"]
    assert doc["models"]["square_classifier"]["source"]["file"] == SQUARE_CKPT
    assert doc["models"]["hole_classifier"]["source"]["file"] == HOLE_CKPT
    if unet:
        assert "hole_unet" in doc["models"]
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        assert convert(WEIGHTS, SHARED / "NOTICE.md", out)[1] is False
        assert convert(WEIGHTS, SHARED / "NOTICE.md", out, force=True)[1] is True
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    stage1 = doc["models"]["square_classifier"]["parts"]["stage1"]
    assert stage1["opset"] == 17 and stage1["inputs"] == [{"name": "x", "shape": ["N", 1, "H", "W"]}]
    assert [o["name"] for o in stage1["outputs"]] == ["mean", "m2", "pooled"]
    assert set(doc["models"]["hole_classifier"]["parts"]["batchnorm"]) == {"file", "sha256"}
