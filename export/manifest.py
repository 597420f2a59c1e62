"""Write a model set's ``manifest.json`` from the typed spec (ptolemy_rt/modelspec.py).

``write_manifest`` builds a `ModelSetSpec` from the exporters' architecture objects and
writes it with `modelspec.manifest_text` (sorted keys: the same inputs give the same bytes),
so the writer and the runtime's reader are the same classes. Per part it fills the sha256
and, for ONNX files, the opset and the input / output names and shapes read from the file
(symbolic dims as strings, unknown as null). Non-ONNX parts (e.g. ``.npy``) get the sha256
only.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import onnx

from ptolemy_rt.modelspec import (FORMAT_VERSION, MODEL_CLASSES, ExporterSpec, ModelSetSpec, ModelsSpec, PartSpec,
                                  PipelineSpec, SourceSpec, TensorSpec, TrainedWithSpec, manifest_text)


def sha256_file(path: Path) -> str:
    """Lower-case hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _dims(value_info) -> tuple:
    out = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def describe_part(path: Path) -> PartSpec:
    """The `PartSpec` of one part file: sha256 (+ opset, inputs, outputs for .onnx)."""
    path = Path(path)
    if path.suffix != ".onnx":
        return PartSpec(file=path.name, sha256=sha256_file(path))
    m = onnx.load(str(path), load_external_data=False)
    opsets = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")]
    inits = {i.name for i in m.graph.initializer}
    return PartSpec(file=path.name, sha256=sha256_file(path), opset=int(opsets[0]) if opsets else None,
                    inputs=tuple(TensorSpec(name=v.name, shape=_dims(v)) for v in m.graph.input
                                 if v.name not in inits),
                    outputs=tuple(TensorSpec(name=v.name, shape=_dims(v)) for v in m.graph.output))


def build_spec(out_dir: Path, name: str, models: dict, licence: str, citation: str, *,
               pipeline: PipelineSpec | None = None, exporter: ExporterSpec | None = None,
               trained_with: TrainedWithSpec | None = None, training: dict | None = None,
               metrics: dict | None = None) -> ModelSetSpec:
    """The `ModelSetSpec` of a set whose part files are in ``out_dir`` (see write_manifest)."""
    out_dir = Path(out_dir)
    entries = {}
    for key, m in models.items():
        parts = {}
        for role, fn in m["parts"].items():
            path = out_dir / fn
            if not path.is_file():
                raise FileNotFoundError(f"{path}: part {key}/{role} not found")
            parts[role] = describe_part(path)
        source = m.get("source")
        entries[key] = MODEL_CLASSES[key](architecture=m["architecture"], parts=parts,
                                          source=SourceSpec(**source) if isinstance(source, dict) else source)
    return ModelSetSpec(format_version=FORMAT_VERSION, name=name, licence=licence, citation=citation,
                        models=ModelsSpec(**entries), pipeline=pipeline or PipelineSpec(), exporter=exporter,
                        trained_with=trained_with, training=training, metrics=metrics)


def write_manifest(out_dir: Path, name: str, models: dict, licence: str, citation: str, **declarations) -> Path:
    """Write ``out_dir/manifest.json`` (atomically) and return its path.

    Parameters
    ----------
    out_dir
        The set's folder; the part files must already be there.
    name, licence, citation
        Set name, licence of the weights, what to cite.
    models
        ``models[key] = {"architecture": <modelspec architecture>, "parts": {role: file name},
        "source": SourceSpec | dict | None}`` for key in modelspec.MODEL_KEYS (the exporters
        in export/onnx_*.py return the first two).
    **declarations
        Top-level blocks of `ModelSetSpec`: ``pipeline`` (PipelineSpec), ``exporter``
        (ExporterSpec), ``trained_with`` (TrainedWithSpec), ``training`` and ``metrics``
        (free-form dicts).

    Returns
    -------
    Path

    Raises
    ------
    FileNotFoundError
        A part file is missing.
    ValueError
        A value the manifest schema does not allow (modelspec.SpecProblem).
    """
    out_dir = Path(out_dir)
    spec = build_spec(out_dir, name, models, licence, citation, **declarations)
    path = out_dir / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(manifest_text(spec), encoding="utf-8")
    tmp.replace(path)
    return path
