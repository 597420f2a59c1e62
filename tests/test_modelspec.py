"""The model-set manifest schema (ptolemy_rt/modelspec.py): both real manifests parse and are
written back byte for byte; every unknown key and every bad value is a ModelSetError at
load naming the file and the key; an undeclared optional declaration gives the published
behaviour; the writer (export/manifest.py) emits from the same classes.

Manifests under test: the committed own set (onnx_models/ptolemy-rt-synth-v1, always there)
and the converted published set (onnx_models/ptolemy-2022, skipped when not built).
"""
from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import REPO, SHARED, WEIGHTS
from ptolemy_rt import medmag, modelspec
from ptolemy_rt.errors import ModelSetError
from ptolemy_rt.models import load_model_set
from ptolemy_rt.modelspec import (HoleClassifierArch, ModelSetSpec, PipelineSpec, SpecProblem, UnetArch, default,
                                  manifest_text, parse, read_manifest, to_json)

OWN = REPO / "onnx_models" / "ptolemy-rt-synth-v1"
PUBLISHED = REPO / "onnx_models" / "ptolemy-2022"
SETS = [pytest.param(OWN, id="own"),
        pytest.param(PUBLISHED, id="published",
                     marks=pytest.mark.skipif(not (PUBLISHED / "manifest.json").is_file(),
                                              reason="published set not built (make models)"))]


def _doc(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def _step(path: str) -> list:
    """'models.hole_unet.parts.encoder.inputs[0]' → ['models', 'hole_unet', ..., 'inputs', 0]."""
    out: list = []
    for part in path.split("."):
        m = re.fullmatch(r"([^\[]+)((?:\[\d+\])*)", part)
        out.append(m.group(1))
        out += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return out


def _edit(doc: dict, path: str, value=None, delete: bool = False) -> dict:
    doc = copy.deepcopy(doc)
    *head, last = _step(path)
    node = doc
    for k in head:
        node = node[k]
    if delete:
        del node[last]
    else:
        node[last] = value
    return doc


def _manifest_only_set(tmp_path: Path, monkeypatch, doc: dict, name: str = "ptolemy-rt-synth-v1") -> Path:
    """A set folder holding only a manifest (parsing fails before any part is opened)."""
    folder = tmp_path / "models" / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(doc), encoding="utf-8")
    monkeypatch.setenv("PTOLEMY_MODELS_DIR", str(tmp_path / "models"))
    return folder / "manifest.json"


def _load_error(tmp_path, monkeypatch, doc: dict) -> str:
    mpath = _manifest_only_set(tmp_path, monkeypatch, doc)
    with pytest.raises(ModelSetError) as e:
        load_model_set("ptolemy-rt-synth-v1")
    msg = str(e.value)
    assert str(mpath) in msg and "\n" not in msg and "make train" in msg, msg
    return msg


# --- the real manifests -------------------------------------------------------------

@pytest.mark.parametrize("folder", SETS)
def test_real_manifest_round_trips_byte_for_byte(folder):
    """parse → JSON → parse gives an equal spec, and the written text is the file itself."""
    text = (folder / "manifest.json").read_text(encoding="utf-8")
    spec = read_manifest(folder / "manifest.json")
    assert parse(ModelSetSpec, to_json(spec)) == spec
    assert manifest_text(spec) == text


def test_real_manifests_declare_what_the_runtime_uses():
    own = read_manifest(OWN / "manifest.json")
    assert own.pipeline.lattice == "oblique" and own.models.hole_unet.architecture.mask_min_region_px == 200
    hole = own.models.hole_classifier.architecture
    assert (hole.crop_normalisation, hole.bn_batches, hole.min_input) == ("image", "shape", 63)
    assert own.models.hole_unet.architecture.halo_rows == 8
    if (PUBLISHED / "manifest.json").is_file():
        pub = read_manifest(PUBLISHED / "manifest.json")
        assert pub.pipeline == PipelineSpec() and pub.exporter.tool == "export.convert"
        hole = pub.models.hole_classifier.architecture
        assert (hole.crop_normalisation, hole.bn_batches, hole.min_input, hole.channels) == ("crop", "published", 63, 128)
        assert pub.models.hole_unet.architecture.mask_min_region_px == 0


# --- unknown keys -------------------------------------------------------------------

def _object_paths(node, path: str = ""):
    """Dotted paths of every JSON object the schema types (not the free-form records, not
    the role → part maps, whose keys are names)."""
    if isinstance(node, dict):
        if path.split(".")[-1] in ("training", "metrics"):
            return
        if not path.endswith(".parts"):
            yield path
        for k, v in node.items():
            yield from _object_paths(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _object_paths(v, f"{path}[{i}]")


def _unknown_key_cases():
    docs = [("own", _doc(OWN))]
    if (PUBLISHED / "manifest.json").is_file():
        docs.append(("published", _doc(PUBLISHED)))
    for tag, doc in docs:
        paths = sorted(set(_object_paths(doc)))
        for p in paths:
            yield pytest.param(doc, p, id=f"{tag}:{p or '<top>'}")


@pytest.mark.parametrize("doc,path", list(_unknown_key_cases()))
def test_unknown_key_is_an_error_at_load(tmp_path, monkeypatch, doc, path):
    key = f"{path}.colour" if path else "colour"
    msg = _load_error(tmp_path, monkeypatch, _edit(doc, key, "blue"))
    assert f"{key}: unknown key" in msg


def test_unknown_model_key_is_an_error_at_load(tmp_path, monkeypatch):
    doc = _doc(OWN)
    msg = _load_error(tmp_path, monkeypatch, _edit(doc, "models.scale_net", {}))
    assert "models.scale_net: unknown key" in msg


# --- bad values, field by field ------------------------------------------------------

U = "models.hole_unet.architecture"
H = "models.hole_classifier.architecture"
S = "models.square_classifier.architecture"
P = "models.hole_unet.parts.encoder"
BAD_VALUES = [
    ("format_version", 2, "not one of 1"),
    ("format_version", "1", "expected an integer"),
    ("name", 5, "expected a string"),
    ("licence", None, "expected a string"),
    ("citation", ["x"], "expected a string"),
    ("models", [], "expected an object"),
    ("pipeline", "oblique", "expected an object"),
    ("pipeline.lattice", "hexagonal", "not one of 'square', 'oblique'"),
    ("trained_with.threads", 0, "below the minimum"),
    ("trained_with.torch", 2, "expected a string"),
    ("training", [], "expected an object"),
    ("metrics", "good", "expected an object"),
    (f"{U}.family", "cnn", "not one of 'unet'"),
    (f"{U}.channels", 0, "below the minimum"),
    (f"{U}.channels", 16.0, "expected an integer"),
    (f"{U}.depth", 2, "below the minimum"),
    (f"{U}.split_level", 3, "not one of 2"),
    (f"{U}.halo_rows", 6, "not a multiple of 4"),
    (f"{U}.halo_rows", -4, "below the minimum"),
    (f"{U}.halo_rows", "8", "expected an integer"),
    (f"{U}.halo_rows", True, "expected an integer"),
    (f"{U}.row_multiple", 6, "not a multiple of 4"),
    (f"{U}.row_multiple", 2, "below the minimum"),
    (f"{U}.upsample", "bilinear", "not one of"),
    (f"{U}.input", 3, "expected a string"),
    (f"{U}.output", None, "expected a string"),
    (f"{U}.mask_min_region_px", -1, "below the minimum"),
    (f"{U}.mask_min_region_px", "200", "expected an integer"),
    (f"{H}.family", "square_cnn", "is not 'hole_cnn'"),
    (f"{H}.channels", -1, "below the minimum"),
    (f"{H}.kernels", [], "empty"),
    (f"{H}.kernels", [5, 0, 3, 3], "below the minimum"),
    (f"{H}.kernels", "5333", "expected an array"),
    (f"{H}.kernels[1]", 3.5, "expected an integer"),
    (f"{H}.n_stages", 3, "differs from the 4 kernels"),
    (f"{H}.stage_roles", ["stage1"], "1 roles for 4 stages"),
    (f"{H}.stage_roles[3]", "stage9", "'stage9' names no part"),
    (f"{H}.stage1_pool_role", "pool1", "'pool1' names no part"),
    (f"{H}.head_role", "top", "'top' names no part"),
    (f"{H}.running_role", 1, "expected a string"),
    (f"{H}.batchnorm_role", "bn", "'bn' names no part"),
    (f"{H}.batchnorm_table", {}, "expected a string"),
    (f"{H}.bn_eps", 0, "not positive"),
    (f"{H}.bn_eps", "1e-5", "expected a number"),
    (f"{H}.stage_order", "conv_relu_bn_pool", "not one of 'conv_bn_relu_pool'"),
    (f"{H}.pool", [3, 2, 0], "expected an object"),
    (f"{H}.pool.kernel", 2, "not one of 3"),
    (f"{H}.pool.stride", 1, "not one of 2"),
    (f"{H}.pool.padding", 2, "not one of 0, 1"),
    (f"{H}.min_input", 40, "below the 63 px the kernels need"),
    (f"{H}.min_input", "63", "expected an integer"),
    (f"{H}.crop_normalisation", "median", "not one of 'crop', 'image'"),
    (f"{H}.bn_batches", "image", "not one of 'published', 'shape'"),
    (f"{S}.family", "hole_cnn", "is not 'square_cnn'"),
    (f"{S}.head_kernel", 0, "below the minimum"),
    (f"{S}.input", [1, 200, 200], "not one of [1, 240, 240]"),
    (f"{S}.stage_order", "conv_bn_relu_pool", "not one of 'conv_relu_bn_pool'"),
    (f"{P}.file", "../hole_unet_encoder.onnx", "not a plain file name"),
    (f"{P}.sha256", "abc", "not 64 lower-case hex digits"),
    (f"{P}.opset", "17", "expected an integer"),
    (f"{P}.inputs", {}, "expected an array"),
    (f"{P}.inputs[0].name", 0, "expected a string"),
    (f"{P}.inputs[0].shape[0]", 1.5, "not allowed here"),
    ("models.hole_unet.source.seed", "0", "expected an integer"),
    ("models.hole_unet.parts", [], "expected an object"),
    ("models.hole_unet.parts.encoder", "hole_unet_encoder.onnx", "expected an object"),
]


@pytest.mark.parametrize("key,value,problem", BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_value_is_an_error_at_load(tmp_path, monkeypatch, key, value, problem):
    msg = _load_error(tmp_path, monkeypatch, _edit(_doc(OWN), key, value))
    assert problem in msg and f"{key}: " in msg, msg


@pytest.mark.parametrize("key", ["format_version", "name", "licence", "citation", "models",
                                 f"{U}.channels", f"{U}.depth", f"{H}.kernels", f"{H}.channels",
                                 f"{P}.file", f"{P}.sha256", "models.hole_unet.parts", "models.hole_unet.architecture",
                                 "trained_with.torch"])
def test_missing_required_key_is_an_error_at_load(tmp_path, monkeypatch, key):
    msg = _load_error(tmp_path, monkeypatch, _edit(_doc(OWN), key, delete=True))
    assert f"{key}: missing" in msg


def test_unet_needs_its_strip_graphs(tmp_path, monkeypatch):
    msg = _load_error(tmp_path, monkeypatch, _edit(_doc(OWN), P, delete=True))
    assert "models.hole_unet.parts: no part 'encoder'" in msg


# --- defaults = published behaviour --------------------------------------------------

OPTIONAL = ["pipeline", f"{U}.mask_min_region_px", f"{U}.halo_rows", f"{U}.row_multiple", f"{U}.split_level",
            f"{H}.crop_normalisation", f"{H}.bn_batches", f"{H}.min_input", f"{H}.n_stages", f"{H}.stage_roles",
            f"{H}.bn_eps", f"{H}.pool", f"{H}.stage1_pool_role", f"{S}.head_kernel", f"{S}.input", f"{S}.pool"]


@pytest.fixture
def own_copy(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "models" / "ptolemy-rt-synth-v1"
    shutil.copytree(OWN, folder)
    monkeypatch.setenv("PTOLEMY_MODELS_DIR", str(tmp_path / "models"))
    return folder


def test_undeclared_optional_keys_give_the_published_behaviour(own_copy):
    doc = _doc(own_copy)
    for key in OPTIONAL:
        doc = _edit(doc, key, delete=True)
    (own_copy / "manifest.json").write_text(json.dumps(doc), encoding="utf-8")
    ms = load_model_set("ptolemy-rt-synth-v1")
    unet, hole = ms.model("hole_unet").architecture, ms.model("hole_classifier").architecture
    square = ms.model("square_classifier").architecture
    # the published pipeline: square lattice search, per-crop normalisation, published BN
    # batches, no speckle filter, 8 halo rows (the exporter's receptive field; was 12 in unet.py)
    assert medmag.lattice_mode(ms) == "square" and medmag.crop_normalisation(ms) == "crop"
    assert medmag.bn_batches(ms) == "published" and medmag.mask_min_region_px(ms) == 0
    assert (unet.halo_rows, unet.row_multiple, unet.split_level) == (8, 4, 2)
    assert hole.min_input == 63 == medmag.MIN_CROP_PX and hole.n_stages == 4 and hole.bn_eps == 1e-5
    assert hole.stage_roles == ("stage1", "stage2", "stage3", "stage4") and hole.pool.padding == 0
    assert hole.stage1_pool_role is None  # older sets: stage 1 made again by its full graph
    assert square.head_kernel == 6 and square.input == (1, 240, 240) and square.pool.padding == 1
    assert medmag.lattice_mode(None) == "square" and medmag.bn_batches(None) == "published"


def test_declared_min_input_is_the_crop_padding(monkeypatch):
    """score_holes pads crops to the set's min_input (was a hard-coded 63)."""
    from ptolemy_rt import classifier

    arch = parse(HoleClassifierArch, {"channels": 8, "kernels": [5, 3, 3, 3], "min_input": 71})
    models = SimpleNamespace(model=lambda key: SimpleNamespace(architecture=arch, score_fusion=None))
    seen = []

    def fake_scores(models, key, n, get_crop, batchnorm):
        seen.extend(get_crop(i).shape for i in range(n))
        return np.zeros(n)

    monkeypatch.setattr(classifier, "score_crops", fake_scores)
    rotated = np.random.default_rng(0).normal(size=(200, 200)).astype(np.float32)
    medmag.score_holes(models, rotated, np.array([[0, 0, 50, 50], [10, 10, 150, 150]]), "running")
    assert seen == [(71, 71), (140, 140)]


def test_defaults_and_declarations_are_one_definition():
    assert default(UnetArch, "halo_rows") == 8 and default(PipelineSpec, "lattice") == "square"
    keys = {k for k, _, _ in modelspec.declarations()}
    assert {"pipeline.lattice", f"{U}.halo_rows", f"{H}.min_input", f"{H}.bn_batches"} <= keys
    assert all(doc for k, _, doc in modelspec.declarations()), "every declaration says what it means"


def test_constructed_specs_validate_too():
    """The writer builds the same classes: a bad value fails when the exporter builds it."""
    with pytest.raises(SpecProblem, match="bn_batches"):
        HoleClassifierArch(channels=8, kernels=(5, 3, 3, 3), bn_batches="per-crop")
    with pytest.raises(SpecProblem, match="halo_rows"):
        UnetArch(channels=8, depth=5, halo_rows=5)


# --- the writer ----------------------------------------------------------------------

@pytest.mark.parametrize("folder", SETS)
def test_writer_reproduces_the_committed_manifest(tmp_path, folder):
    """export/manifest.py, given the parsed spec's declarations and the part files, writes
    the committed manifest byte for byte (sha256, opset and I/O read from the files again)."""
    pytest.importorskip("onnx")
    from export.manifest import write_manifest

    spec = read_manifest(folder / "manifest.json")
    out = tmp_path / folder.name
    out.mkdir()
    models = {}
    for key in modelspec.MODEL_KEYS:
        entry = getattr(spec.models, key)
        if entry is None:
            continue
        for part in entry.parts.values():
            shutil.copyfile(folder / part.file, out / part.file)
        models[key] = {"architecture": entry.architecture, "source": entry.source,
                       "parts": {role: p.file for role, p in entry.parts.items()}}
    path = write_manifest(out, spec.name, models, spec.licence, spec.citation, pipeline=spec.pipeline,
                          exporter=spec.exporter, trained_with=spec.trained_with, training=spec.training,
                          metrics=spec.metrics)
    assert path.read_bytes() == (folder / "manifest.json").read_bytes()


def test_exporters_build_the_committed_architectures():
    """export/onnx_*.py construct the spec classes; for the own set's widths they give its
    committed architecture blocks (train.py adds the hole classifier's and U-Net's
    declarations)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import dataclasses
    import tempfile

    from export.arch_classifiers import HoleClassifier, SquareClassifier
    from export.arch_unet import UNet
    from export.onnx_classifiers import export_hole_classifier, export_square_classifier
    from export.onnx_unet import export_unet
    from export.train import ARCH, UNET_MASK_MIN_REGION_PX

    own = read_manifest(OWN / "manifest.json").models
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        sq = export_square_classifier(SquareClassifier(16, (5, 3, 3, 3, 3), 6).eval(), Path(d), "s")["architecture"]
        ho = export_hole_classifier(HoleClassifier(16, 4).eval(), Path(d), "h")["architecture"]
        un = export_unet(UNet(16, 7).eval(), Path(d), "u")["architecture"]
    assert sq == own.square_classifier.architecture
    extra = {k: ARCH["hole_classifier"][k] for k in ("crop_normalisation", "bn_batches")}
    assert dataclasses.replace(ho, **extra) == own.hole_classifier.architecture
    assert dataclasses.replace(un, mask_min_region_px=UNET_MASK_MIN_REGION_PX) == own.hole_unet.architecture


@pytest.mark.skipif(not WEIGHTS.is_dir(), reason="../shared/ptolemy-2022 not present")
@pytest.mark.skipif(not (PUBLISHED / "manifest.json").is_file(), reason="published set not built")
def test_convert_writes_the_committed_published_manifest(tmp_path):
    """export.convert on the published checkpoints: the manifest equals the built one except
    the exporter's code checksum (which changes with the exporter's code)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from export.convert import code_sha256, convert

    out = tmp_path / "ptolemy-2022"
    convert(WEIGHTS, SHARED / "NOTICE.md", out, force=True)
    got, want = _doc(out), _doc(PUBLISHED)
    assert got["exporter"]["code_sha256"] == code_sha256()
    got["exporter"]["code_sha256"] = want["exporter"]["code_sha256"]
    assert got == want
