"""Write a model set's ``manifest.json`` (format in docs/DEVELOPING.md, "Model sets").

``write_manifest`` fills, per part, the sha256 and, for ONNX files, the opset and the
input / output names and shapes read from the file (symbolic dims as strings, unknown as
null). Non-ONNX parts (e.g. ``.npy``) get the sha256 only. The JSON is written with sorted
keys, so the same inputs give the same bytes.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx

FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _dims(value_info) -> list:
    out = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def describe_part(path: Path) -> dict:
    """sha256 (+ opset, inputs, outputs for .onnx) of one part file."""
    path = Path(path)
    info: dict = {"file": path.name, "sha256": sha256_file(path)}
    if path.suffix == ".onnx":
        m = onnx.load(str(path), load_external_data=False)
        opsets = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")]
        info["opset"] = int(opsets[0]) if opsets else None
        inits = {i.name for i in m.graph.initializer}
        info["inputs"] = [{"name": v.name, "shape": _dims(v)} for v in m.graph.input if v.name not in inits]
        info["outputs"] = [{"name": v.name, "shape": _dims(v)} for v in m.graph.output]
    return info


def write_manifest(out_dir: Path, name: str, models: dict, licence: str, citation: str,
                   extra: dict | None = None) -> Path:
    """Write ``out_dir/manifest.json`` and return its path.

    models[key] = {"architecture": {...}, "source": {...}, "parts": {role: "file.onnx", ...}}
    (``source`` optional, e.g. {"file": "x.torchmodel", "sha256": "..."}). Part files must
    already exist in ``out_dir``. ``extra`` entries are added at the top level.
    """
    out_dir = Path(out_dir)
    doc: dict = {"format_version": FORMAT_VERSION, "name": name, "licence": licence, "citation": citation,
                 "models": {}}
    for key, spec in models.items():
        entry: dict = {"architecture": spec.get("architecture", {}), "parts": {}}
        if spec.get("source") is not None:
            entry["source"] = spec["source"]
        for role, fn in spec["parts"].items():
            path = out_dir / fn
            if not path.is_file():
                raise FileNotFoundError(f"{path}: part {key}/{role} not found")
            entry["parts"][role] = describe_part(path)
        doc["models"][key] = entry
    for k, v in (extra or {}).items():
        if k in doc:
            raise ValueError(f"extra key {k!r} clashes with a manifest field")
        doc[k] = v
    path = out_dir / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
