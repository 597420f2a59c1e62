"""The model-set manifest as typed, validated, frozen dataclasses (the one schema).

A model set is a folder ``onnx_models/<NAME>/`` with ONNX / ``.npy`` parts and a
``manifest.json``. This module is the single definition of that file: every key it may hold
is a field of one of the classes below, with its type, its default (the published Ptolemy
behaviour, so a manifest that does not declare something behaves as the published tool) and
its allowed values. The runtime parses a manifest once, in ``models.load_model_set``
(`read_manifest`), and from then on reads attributes (``ms.model("hole_unet").architecture
.halo_rows``), never the JSON dict; ``export/manifest.py`` builds the same classes and
writes them with `manifest_text`, so reader and writer cannot disagree.

Classes (JSON object → class)::

    ModelSetSpec            the whole manifest
      .models: ModelsSpec   one optional entry per model key (MODEL_KEYS)
        .square_classifier: SquareClassifierModel (.architecture: SquareClassifierArch)
        .hole_classifier:   HoleClassifierModel   (.architecture: HoleClassifierArch,
                                                   .score_fusion: ScoreFusionSpec | None)
        .hole_unet:         HoleUnetModel         (.architecture: UnetArch)
          .parts: {role: PartSpec}, .source: SourceSpec | None
      .pipeline: PipelineSpec   pipeline choices of the set (lattice search)
      .exporter / .trained_with / .training / .metrics   provenance (not used at run time)

Rules: an unknown key, a missing required key, a value of the wrong JSON type or outside the
allowed values raises ``ModelSetError`` naming the file and the dotted key
(``models.hole_classifier.architecture.bn_batches``). Fields marked ``omit_default`` are
declarations added after model sets existed: they are written only when they differ from
the default, so older manifests keep their bytes. ``training`` and ``metrics`` are opaque
JSON records of how the set was made (free-form, never interpreted).

Adding a declaration: (1) a field here with `decl` (default = published behaviour,
``omit_default=True``), (2) the exporter sets it (export/), (3) the runtime reads the
attribute. Nothing else parses or writes manifests.

numpy-free and import-light (stdlib + ptolemy_rt.errors).
"""
from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ModelSetError

FORMAT_VERSION = 1

#: lattice searches a set may ask for (`PipelineSpec.lattice`): the published square search,
#: or square and oblique candidates
LATTICE_MODES = ("square", "oblique")
#: BatchNorm batching of a hole classifier's crops (`HoleClassifierArch.bn_batches`)
BN_BATCHES = ("published", "shape")
#: normalisation of hole crops (`HoleClassifierArch.crop_normalisation`)
CROP_NORMALISATIONS = ("crop", "image")
#: features a hole score fusion may weigh (`ScoreFusionSpec`; defined in ptolemy_rt/hole_features.py):
#: the classifier's logit and three hand features of the crop relative to the image's crops
FUSION_FEATURES = ("cnn_logit", "level_dev", "contrast_dev", "log_texture")

_SHA256 = re.compile(r"[0-9a-f]{64}")


class SpecProblem(ValueError):
    """One problem with one key (dotted path relative to the object being checked)."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key, self.problem = key, problem


def decl(default: Any = MISSING, *, default_factory: Any = MISSING, choices: tuple | None = None,
         minimum: int | float | None = None, omit_default: bool = False, doc: str = "") -> Any:
    """A manifest declaration: a dataclass field carrying its validation rules.

    Parameters
    ----------
    default, default_factory
        As for `dataclasses.field`; leave both out for a required key.
    choices
        Allowed values (checked when parsed and when constructed).
    minimum
        Smallest allowed value of a number (or of every element of a tuple of numbers).
    omit_default
        Written to the manifest only when the value differs from the default (declarations
        that older model sets do not have).
    doc
        What the key means, with its unit.

    Returns
    -------
    dataclasses.Field

    Examples
    --------
    >>> f = decl(3, minimum=1, doc="tile size, px")
    >>> f.default, f.metadata["minimum"], f.metadata["doc"]
    (3, 1, 'tile size, px')
    """
    meta = {"choices": choices, "minimum": minimum, "omit_default": omit_default, "doc": doc}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def default(cls: type, name: str) -> Any:
    """The default value of field ``name`` of spec class ``cls``.

    Parameters
    ----------
    cls
        A spec dataclass, e.g. `UnetArch`.
    name
        Field name.

    Returns
    -------
    The default value.

    Raises
    ------
    KeyError
        The class has no such field, or the field has no default.

    Examples
    --------
    >>> default(UnetArch, "halo_rows")
    8
    >>> default(PipelineSpec, "lattice")
    'square'
    """
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
            break
    raise KeyError(f"{cls.__name__}.{name} has no default")


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(v), type(v).__name__)


@dataclass(frozen=True, kw_only=True)
class _Spec:
    """Base of every spec class: checks choices / minimum of each field, then ``_check``."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):  # built in code with a list where the manifest has an array
                v = tuple(v)
                self._set(f.name, v)
            choices, minimum = f.metadata.get("choices"), f.metadata.get("minimum")
            if v is None:
                continue
            if choices is not None and v not in choices:
                allowed = ", ".join(repr(list(c)) if isinstance(c, tuple) else repr(c) for c in choices)
                shown = list(v) if isinstance(v, tuple) else v
                raise SpecProblem(f.name, f"{shown!r} is not one of {allowed}")
            if minimum is not None:
                for x in (v if isinstance(v, tuple) else (v,)):
                    if x < minimum:
                        raise SpecProblem(f.name, f"{x!r} is below the minimum {minimum!r}")
        self._check()

    def _check(self) -> None:
        """Checks across fields (raise SpecProblem with the field name)."""

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)


# ---------------------------------------------------------------------------------------
# parts and provenance
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class TensorSpec(_Spec):
    """One input or output of an ONNX part: name and shape (ints, symbolic names, null)."""

    name: str = decl(doc="tensor name in the graph")
    shape: tuple[int | str | None, ...] = decl(doc="dims: fixed size, symbolic name or null (unknown)")


@dataclass(frozen=True, kw_only=True)
class PartSpec(_Spec):
    """One file of a model (an ONNX graph or a ``.npy`` table) and its checksum."""

    file: str = decl(doc="file name in the set's folder (no directories)")
    sha256: str = decl(doc="sha256 of the file, lower-case hex")
    opset: int | None = decl(None, doc="ONNX opset (ONNX parts)")
    inputs: tuple[TensorSpec, ...] | None = decl(None, doc="graph inputs (ONNX parts)")
    outputs: tuple[TensorSpec, ...] | None = decl(None, doc="graph outputs (ONNX parts)")

    def _check(self) -> None:
        if not self.file or Path(self.file).name != self.file or self.file in (".", ".."):
            raise SpecProblem("file", f"{self.file!r} is not a plain file name")
        if not _SHA256.fullmatch(self.sha256):
            raise SpecProblem("sha256", f"{self.sha256!r} is not 64 lower-case hex digits")


@dataclass(frozen=True, kw_only=True)
class SourceSpec(_Spec):
    """Where a model's weights come from: a published checkpoint or a training run."""

    file: str | None = decl(None, doc="checkpoint file name (converted sets)")
    sha256: str | None = decl(None, doc="sha256 of the checkpoint")
    training: str | None = decl(None, doc="script that trained the model (own sets)")
    seed: int | None = decl(None, doc="training seed")


@dataclass(frozen=True, kw_only=True)
class ExporterSpec(_Spec):
    """The converter that built a set (export/convert.py), for its up-to-date check."""

    tool: str = decl(doc="module that wrote the set")
    version: str = decl(doc="exporter version (bumped when the graphs change)")
    code_sha256: str = decl(doc="sha256 over the exporter's source files")


@dataclass(frozen=True, kw_only=True)
class TrainedWithSpec(_Spec):
    """Software a training run used (own sets)."""

    torch: str = decl(doc="torch version")
    threads: int = decl(minimum=1, doc="torch threads")


@dataclass(frozen=True, kw_only=True)
class PipelineSpec(_Spec):
    """Pipeline choices a set makes beyond its networks."""

    lattice: str = decl("square", choices=LATTICE_MODES, omit_default=True,
                        doc="medium-mag lattice search: 'square' (published) or 'oblique' (also oblique lattices)")
    hole_pitch_px: float = decl(290.0, minimum=8.0, omit_default=True,
                                doc="hole-lattice period (px) the U-Net was trained at; the scale stage "
                                    "resamples medium-mag images to it (published: the README image, 290 px)")
    hole_pitch_tolerance: float = decl(0.15, minimum=0.0, omit_default=True,
                                       doc="relative band around hole_pitch_px within which an image is "
                                           "not resampled (the range of pitches the U-Net saw in training)")


# ---------------------------------------------------------------------------------------
# architectures
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class PoolSpec(_Spec):
    """The max-pooling after every classifier stage (px)."""

    kernel: int = decl(3, choices=(3,), doc="window side, px")
    stride: int = decl(2, choices=(2,), doc="stride, px")
    padding: int = decl(choices=(0, 1), doc="padding on every side, px")


def hole_cnn_min_input(kernels: tuple[int, ...] | list[int]) -> int:
    """Smallest crop side (px) for which every stage of a hole CNN (valid convs of the given
    kernel sides, each followed by an unpadded 3×3 / stride-2 pooling) keeps ≥ 1 px.

    Parameters
    ----------
    kernels
        Conv kernel sides of the stages, px.

    Returns
    -------
    int
        Minimum input rows (= cols), px.

    Examples
    --------
    >>> hole_cnn_min_input((5, 3, 3, 3))
    63
    """
    size = 1
    for k in reversed(tuple(kernels)):
        size = (size - 1) * 2 + 3 + int(k) - 1
    return size


_BN_TABLE = "K x 5 x C float32: gamma, beta, running_mean, running_var, sign(gamma)"


@dataclass(frozen=True, kw_only=True)
class ClassifierArch(_Spec):
    """Fields shared by the two classifiers (graph roles in export/onnx_classifiers.py)."""

    FAMILY = ""

    family: str = decl(doc="network family")
    channels: int = decl(minimum=1, doc="channels of every conv")
    kernels: tuple[int, ...] = decl(minimum=1, doc="conv kernel side of each stage, px")
    n_stages: int | None = decl(None, doc="number of stages (default: len(kernels))")
    bn_eps: float = decl(1e-5, doc="BatchNorm epsilon")
    stage_roles: tuple[str, ...] | None = decl(None, doc="part of each stage (default stage1..stageK)")
    stage1_pool_role: str | None = decl(None, doc="stage 1 without statistics (optional part)")
    head_role: str = decl("head", doc="part of the head")
    running_role: str = decl("full", doc="whole network with running statistics")
    batchnorm_role: str = decl("batchnorm", doc="BatchNorm table part (.npy)")
    batchnorm_table: str = decl(_BN_TABLE, doc="layout of the BatchNorm table")

    def _check(self) -> None:
        if self.family != self.FAMILY:
            raise SpecProblem("family", f"{self.family!r} is not {self.FAMILY!r}")
        if not self.kernels:
            raise SpecProblem("kernels", "empty")
        if self.n_stages is None:
            self._set("n_stages", len(self.kernels))
        if self.n_stages != len(self.kernels):
            raise SpecProblem("n_stages", f"{self.n_stages} differs from the {len(self.kernels)} kernels")
        if self.stage_roles is None:
            self._set("stage_roles", tuple(f"stage{k + 1}" for k in range(self.n_stages)))
        if len(self.stage_roles) != self.n_stages:
            raise SpecProblem("stage_roles", f"{len(self.stage_roles)} roles for {self.n_stages} stages")
        if self.bn_eps <= 0:
            raise SpecProblem("bn_eps", f"{self.bn_eps!r} is not positive")

    def roles(self) -> dict[str, str]:
        """Every part role the runtime may open, by the key that names it
        (``stage_roles[k]``, ``head_role``, ...; stage1_pool_role when declared)."""
        out = {f"stage_roles[{k}]": r for k, r in enumerate(self.stage_roles)}
        if self.stage1_pool_role:
            out["stage1_pool_role"] = self.stage1_pool_role
        out.update(head_role=self.head_role, running_role=self.running_role, batchnorm_role=self.batchnorm_role)
        return out


@dataclass(frozen=True, kw_only=True)
class SquareClassifierArch(ClassifierArch):
    """Square classifier (low mag): conv → ReLU → BN → pool stages, conv head."""

    FAMILY = "square_cnn"

    family: str = decl("square_cnn", doc="network family")
    stage_order: str = decl("conv_relu_bn_pool", choices=("conv_relu_bn_pool",), doc="layer order of a stage")
    pool: PoolSpec = decl(default_factory=lambda: PoolSpec(padding=1), doc="pooling after each stage")
    head_kernel: int = decl(6, minimum=1, doc="side of the head conv, px")
    input: tuple[int, ...] = decl((1, 240, 240), choices=((1, 240, 240),),
                                  doc="crop channels × rows × cols (the pipeline's 240 px crops)")


@dataclass(frozen=True, kw_only=True)
class HoleClassifierArch(ClassifierArch):
    """Hole classifier (medium mag): conv → BN → ReLU → pool stages, mean + linear head."""

    FAMILY = "hole_cnn"

    family: str = decl("hole_cnn", doc="network family")
    stage_order: str = decl("conv_bn_relu_pool", choices=("conv_bn_relu_pool",), doc="layer order of a stage")
    pool: PoolSpec = decl(default_factory=lambda: PoolSpec(padding=0), doc="pooling after each stage")
    min_input: int | None = decl(None, doc="smallest crop side, px (default: what the kernels allow, "
                                           "63 for the published 4 stages); smaller crops are zero-padded")
    crop_normalisation: str = decl("crop", choices=CROP_NORMALISATIONS, omit_default=True,
                                   doc="'crop': each crop by its own mean/std (published); "
                                       "'image': by the whole image's")
    bn_batches: str = decl("published", choices=BN_BATCHES, omit_default=True,
                           doc="published-regime BatchNorm batches: 'published' (one batch when all crops "
                               "share a shape, else each crop alone) or 'shape' (one batch per crop shape)")

    def _check(self) -> None:
        super()._check()
        need = hole_cnn_min_input(self.kernels)
        if self.min_input is None:
            self._set("min_input", need)
        if self.min_input < need:
            raise SpecProblem("min_input", f"{self.min_input} is below the {need} px the kernels need")


@dataclass(frozen=True, kw_only=True)
class UnetArch(_Spec):
    """Hole U-Net (export/onnx_unet.py): strip-wise encoder / core / decoder graphs."""

    family: str = decl("unet", choices=("unet",), doc="network family")
    channels: int = decl(minimum=1, doc="channels of every conv")
    depth: int = decl(minimum=3, doc="levels (down blocks)")
    split_level: int = decl(2, choices=(2,), doc="levels run in strips (full and half resolution)")
    halo_rows: int = decl(8, minimum=0, doc="rows of context above / below each strip, px "
                                            "(8 = the exact receptive field of the stripped levels)")
    row_multiple: int = decl(4, minimum=4, doc="strip bounds are multiples of this, px (two 2×2 poolings)")
    deep_level: int = decl(5, choices=(5,), omit_default=True,
                           doc="parts core_down / core_up (when present) run levels split_level..deep_level-1 "
                               "in strips, core_deep the deeper levels on the whole image")
    upsample: str = decl("torch-legacy-nearest", choices=("torch-legacy-nearest",), doc="upsampling rule")
    input: str = decl("image N×1×H×W float32, normalised (docs/ALGORITHM.md#medmag-normalise, #medmag-padding)", doc="description of the input")
    output: str = decl("logits N×1×H×W float32; mask = sigmoid(logits) > 1e-4", doc="description of the output")
    mask_min_region_px: int = decl(0, minimum=0, omit_default=True,
                                   doc="mask components smaller than this are dropped, px² (0: none, published)")

    def _check(self) -> None:
        if self.row_multiple % 4:
            raise SpecProblem("row_multiple", f"{self.row_multiple} is not a multiple of 4")
        if self.halo_rows % 4:
            raise SpecProblem("halo_rows", f"{self.halo_rows} is not a multiple of 4")


# ---------------------------------------------------------------------------------------
# models and the set
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class _Model(_Spec):
    """One model: its architecture, its parts by role and where its weights come from."""

    REQUIRED_ROLES: typing.ClassVar[tuple[str, ...]] = ()

    parts: dict[str, PartSpec] = decl(doc="part files by role")
    source: SourceSpec | None = decl(None, doc="origin of the weights")

    def _check(self) -> None:
        arch = getattr(self, "architecture")
        if isinstance(arch, ClassifierArch):
            for key, role in arch.roles().items():
                if role not in self.parts:
                    raise SpecProblem(f"architecture.{key}", f"{role!r} names no part of this model")
        for role in self.REQUIRED_ROLES:
            if role not in self.parts:
                raise SpecProblem("parts", f"no part {role!r} (the runtime needs it)")


@dataclass(frozen=True, kw_only=True)
class SquareClassifierModel(_Model):
    architecture: SquareClassifierArch = decl(doc="network layout")


@dataclass(frozen=True, kw_only=True)
class ScoreFusionSpec(_Spec):
    """Late fusion of the hole classifier's logit with hand features of the same crops
    (ptolemy_rt/hole_features.py): score = sigmoid(bias + Σ weights[k] · features[k])."""

    features: tuple[str, ...] = decl(doc=f"feature names, each one of {', '.join(FUSION_FEATURES)}")
    weights: tuple[float, ...] = decl(doc="one weight per feature (per unit of the feature)")
    bias: float = decl(doc="added to the weighted sum (logit units)")

    def _check(self) -> None:
        if not self.features:
            raise SpecProblem("features", "empty")
        for i, f in enumerate(self.features):
            if f not in FUSION_FEATURES:
                raise SpecProblem(f"features[{i}]", f"{f!r} is not one of {', '.join(map(repr, FUSION_FEATURES))}")
        if len(set(self.features)) != len(self.features):
            raise SpecProblem("features", "a feature is named twice")
        if len(self.weights) != len(self.features):
            raise SpecProblem("weights", f"{len(self.weights)} weights for {len(self.features)} features")
        for i, w in enumerate(self.weights + (self.bias,)):
            if not -1e6 < w < 1e6:  # also refuses NaN
                raise SpecProblem("bias" if i == len(self.weights) else f"weights[{i}]", f"{w!r} is not a finite number")


@dataclass(frozen=True, kw_only=True)
class HoleClassifierModel(_Model):
    architecture: HoleClassifierArch = decl(doc="network layout")
    score_fusion: ScoreFusionSpec | None = decl(None, doc="hole score = the classifier's alone (null) or its "
                                                          "fusion with hand features of the crops")


@dataclass(frozen=True, kw_only=True)
class HoleUnetModel(_Model):
    REQUIRED_ROLES: typing.ClassVar[tuple[str, ...]] = ("encoder", "core", "decoder")

    architecture: UnetArch = decl(doc="network layout")


@dataclass(frozen=True, kw_only=True)
class ModelsSpec(_Spec):
    """The models of a set (each optional: a set may hold only some)."""

    square_classifier: SquareClassifierModel | None = decl(None, doc="low-mag square classifier")
    hole_classifier: HoleClassifierModel | None = decl(None, doc="medium-mag hole classifier")
    hole_unet: HoleUnetModel | None = decl(None, doc="medium-mag hole localiser")


#: the model keys of a set (``ModelsSpec``'s fields) and the class of each entry
MODEL_KEYS = tuple(f.name for f in fields(ModelsSpec))
MODEL_CLASSES = {f.name: next(a for a in typing.get_args(typing.get_type_hints(ModelsSpec)[f.name])
                              if a is not type(None)) for f in fields(ModelsSpec)}


@dataclass(frozen=True, kw_only=True)
class ModelSetSpec(_Spec):
    """A whole ``manifest.json``."""

    format_version: int = decl(choices=(FORMAT_VERSION,), doc="manifest format")
    name: str = decl(doc="set name")
    licence: str = decl(doc="licence of the weights")
    citation: str = decl(doc="what to cite")
    models: ModelsSpec = decl(doc="the models")
    pipeline: PipelineSpec = decl(default_factory=PipelineSpec, omit_default=True, doc="pipeline choices")
    exporter: ExporterSpec | None = decl(None, doc="converter that built the set (converted sets)")
    trained_with: TrainedWithSpec | None = decl(None, doc="training software (own sets)")
    training: dict[str, Any] | None = decl(None, doc="record of each training run (free-form, not interpreted)")
    metrics: dict[str, Any] | None = decl(None, doc="evaluation results (free-form, not interpreted)")


# ---------------------------------------------------------------------------------------
# JSON ↔ classes
# ---------------------------------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    h = _HINTS.get(cls)
    if h is None:
        h = _HINTS[cls] = typing.get_type_hints(cls)
    return h


def _join(key: str, sub: str) -> str:
    return f"{key}.{sub}" if key else sub


def _value(tp: Any, v: Any, key: str) -> Any:
    """JSON value ``v`` converted to type ``tp`` (raises SpecProblem naming ``key``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return v
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _value(options[0], v, key)
        for a in options:
            try:
                return _value(a, v, key)
            except SpecProblem:
                pass
        raise SpecProblem(key, f"{_json_type(v)} is not allowed here")
    if dataclasses.is_dataclass(tp):
        return _from_json(tp, v, key)
    if origin is tuple:
        if not isinstance(v, list):
            raise SpecProblem(key, f"expected an array, got {_json_type(v)}")
        return tuple(_value(args[0], x, f"{key}[{i}]") for i, x in enumerate(v))
    if origin is dict:
        if not isinstance(v, dict):
            raise SpecProblem(key, f"expected an object, got {_json_type(v)}")
        return {k: _value(args[1], x, _join(key, k)) for k, x in v.items()}
    if tp is bool:
        ok = isinstance(v, bool)
    elif tp is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif tp is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        v = float(v) if ok else v
    elif tp is str:
        ok = isinstance(v, str)
    elif tp is type(None):
        ok = v is None
    else:  # pragma: no cover - a field type this parser does not know
        raise TypeError(f"{key}: unsupported field type {tp!r}")
    if not ok:
        want = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
                type(None): "null"}[tp]
        raise SpecProblem(key, f"expected {want}, got {_json_type(v)}")
    return v


def _from_json(cls: type, data: Any, key: str = "") -> Any:
    if not isinstance(data, dict):
        raise SpecProblem(key, f"expected an object, got {_json_type(data)}")
    names = [f.name for f in fields(cls)]
    for k in data:
        if k not in names:
            raise SpecProblem(_join(key, str(k)), f"unknown key (known here: {', '.join(sorted(names))})")
    hints = _hints(cls)
    kw = {}
    for f in fields(cls):
        if f.name in data:
            kw[f.name] = _value(hints[f.name], data[f.name], _join(key, f.name))
        elif f.default is MISSING and f.default_factory is MISSING:
            raise SpecProblem(_join(key, f.name), "missing")
    try:
        return cls(**kw)
    except SpecProblem as e:
        raise SpecProblem(_join(key, e.key), e.problem) from None


def parse(cls: type, data: Any, source: str | Path = "<manifest>", hint: str = "") -> Any:
    """Parse and validate a JSON value (dicts / lists / scalars) as spec class ``cls``.

    Parameters
    ----------
    cls
        Spec class, e.g. `ModelSetSpec` for a whole manifest, `UnetArch` for one block.
    data
        The decoded JSON.
    source
        File named in error messages.
    hint
        Appended to error messages (e.g. "; rebuild it with `make models`").

    Returns
    -------
    An instance of ``cls`` (defaults filled in).

    Raises
    ------
    ModelSetError
        Unknown or missing key, wrong type, value not allowed; the message names ``source``
        and the dotted key.

    Examples
    --------
    >>> parse(PipelineSpec, {}).lattice
    'square'
    >>> parse(PipelineSpec, {"lattice": "hex"}, "m.json")
    Traceback (most recent call last):
    ...
    ptolemy_rt.errors.ModelSetError: m.json: lattice: 'hex' is not one of 'square', 'oblique'
    """
    try:
        return _from_json(cls, data)
    except SpecProblem as e:
        raise ModelSetError(f"{source}: {e}{hint}") from None


def to_json(obj: Any) -> Any:
    """The JSON value (dicts, lists, scalars) of a spec object, as the manifest holds it.

    Fields that are None and default to None are left out, and so are ``omit_default``
    fields equal to their default.

    Parameters
    ----------
    obj
        A spec object (or a tuple / dict / scalar inside one).

    Returns
    -------
    dict, list or scalar

    Examples
    --------
    >>> to_json(PoolSpec(padding=1))
    {'kernel': 3, 'stride': 2, 'padding': 1}
    >>> to_json(PipelineSpec())
    {}
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in fields(obj):
            v = getattr(obj, f.name)
            if v is None and f.default is None:
                continue
            if f.metadata.get("omit_default") and v == default(type(obj), f.name):
                continue
            out[f.name] = to_json(v)
        return out
    if isinstance(obj, (tuple, list)):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj


def manifest_text(spec: ModelSetSpec) -> str:
    r"""``manifest.json`` text of a set: JSON, indent 1, sorted keys, ASCII, final newline
    (same spec, same bytes).

    Parameters
    ----------
    spec : ModelSetSpec
        The set.

    Returns
    -------
    str

    Examples
    --------
    Reading the committed own set's manifest and writing it again gives the same bytes:

    >>> from ptolemy_rt.models import OWN_SET, package_models_dir
    >>> path = package_models_dir() / OWN_SET / "manifest.json"
    >>> text = manifest_text(read_manifest(path))
    >>> text == path.read_text(encoding="utf-8"), text.startswith('{\n "citation"'), text.endswith("}\n")
    (True, True, True)
    """
    return json.dumps(to_json(spec), indent=1, sort_keys=True) + "\n"


def read_manifest(path: str | Path, hint: str = "") -> ModelSetSpec:
    """Read and validate a ``manifest.json`` (no part files are opened).

    Parameters
    ----------
    path : str or pathlib.Path
        The manifest file.
    hint : str
        Appended to error messages (how to rebuild the set).

    Returns
    -------
    ModelSetSpec

    Raises
    ------
    ModelSetError
        Missing, unreadable, not JSON, not a manifest, or any key invalid; one line naming
        the file (and the key).

    Examples
    --------
    >>> import tempfile
    >>> from ptolemy_rt.models import OWN_SET, package_models_dir
    >>> spec = read_manifest(package_models_dir() / OWN_SET / "manifest.json")
    >>> spec.name, spec.pipeline.lattice, spec.models.hole_classifier.architecture.min_input
    ('ptolemy-rt-synth-v2', 'oblique', 63)

    A bad value is refused at load, naming the file and the key:

    >>> doc = json.loads(manifest_text(spec))
    >>> doc["pipeline"]["lattice"] = "hex"
    >>> with tempfile.TemporaryDirectory() as d:
    ...     bad = Path(d) / "manifest.json"
    ...     _ = bad.write_text(json.dumps(doc))
    ...     try:
    ...         read_manifest(bad, "; rebuild it")
    ...     except ModelSetError as e:
    ...         print(str(e).replace(d, "DIR"))
    DIR/manifest.json: pipeline.lattice: 'hex' is not one of 'square', 'oblique'; rebuild it
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelSetError(f"{path}: missing{hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelSetError(f"{path}: unreadable manifest ({type(e).__name__}){hint}") from None
    if not isinstance(doc, dict):
        raise ModelSetError(f"{path}: not a model-set manifest (not a JSON object){hint}")
    return parse(ModelSetSpec, doc, path, hint)


def declarations(cls: type = ModelSetSpec, prefix: str = "") -> list[tuple[str, str, str]]:
    """Every manifest key with its default and meaning: (dotted key, default, doc) rows.

    Parameters
    ----------
    cls
        Spec class to describe (default: the whole manifest).
    prefix
        Dotted path of ``cls`` in the manifest.

    Returns
    -------
    list of (key, default as text, doc)

    Examples
    --------
    >>> [r[:2] for r in declarations(PipelineSpec)]
    [('lattice', "'square'"), ('hole_pitch_px', '290.0'), ('hole_pitch_tolerance', '0.15')]
    """
    rows = []
    hints = _hints(cls)
    for f in fields(cls):
        key = _join(prefix, f.name)
        tp = hints[f.name]
        inner = [a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)]
        if f.default is not MISSING:
            d = repr(f.default)
        elif f.default_factory is not MISSING:
            d = json.dumps(to_json(f.default_factory()), sort_keys=True)
        else:
            d = "required"
        rows.append((key, d, f.metadata.get("doc", "")))
        for sub in inner:
            rows += declarations(sub, key if typing.get_origin(tp) is not dict else _join(key, "<role>"))
    return rows
