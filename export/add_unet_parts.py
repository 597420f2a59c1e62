"""Add the U-Net parts a model set lacks, rebuilt from the weights in its own ``whole`` graph.

``python -m export.add_unet_parts onnx_models/ptolemy-rt-synth-v1``

A set exported before `export.onnx_unet.build_graphs` made the three-pass core's parts
(``core_down`` / ``core_deep`` / ``core_up`` / ``core_up_x2``, depth > DEEP_LEVEL + 1) runs its
core on the whole quarter-resolution tensor: at 16384² px with 16 channels that is 1.07 GB
per tensor (docs/BENCH.md#memory-budget). This tool reads the weights (initialisers named
as the module's state dict) from the set's ``hole_unet`` ``whole`` part, runs `build_graphs`
on them, checks that every part the set already has is rebuilt byte for byte (so the same
exporter and the same weights made them), writes the missing parts and rewrites the
manifest with their entries (`export.manifest.describe_part`; every other field as read).
No torch, no training data: the networks do not change, only how they are cut.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from export.manifest import describe_part
from export.onnx_unet import build_graphs
from ptolemy_rt.modelspec import manifest_text, read_manifest

KEY = "hole_unet"
PREFIX = "hole_unet"


def weights_of(whole: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The state dict (float32 arrays) of a ``whole`` graph's initialisers: ``.weight`` /
    ``.bias`` as stored; an up block's ``weight_up`` / ``weight_skip`` (its conv weight split
    along the input channels by `_Graph.up_block`) joined back into its ``.weight``."""
    arrays = {i.name: numpy_helper.to_array(i) for i in whole.graph.initializer}
    out = {}
    for name, a in arrays.items():
        tail = name.rsplit(".", 1)[-1]
        if tail in ("weight", "bias"):
            out[name] = a.astype(np.float32, copy=False)
        elif tail == "weight_up":
            stem = name[: -len(".weight_up")]
            out[stem + ".weight"] = np.concatenate([a, arrays[stem + ".weight_skip"]], axis=1).astype(np.float32)
    return out


def add_parts(set_dir: Path) -> list[str]:
    """Write the missing U-Net parts of the set in ``set_dir`` and update its manifest.

    Returns
    -------
    list of str
        The roles added (empty when the set already has every part).

    Raises
    ------
    RuntimeError
        An existing part is not rebuilt byte for byte (another exporter or other weights).
    """
    set_dir = Path(set_dir)
    spec = read_manifest(set_dir / "manifest.json")
    entry = getattr(spec.models, KEY)
    arch = entry.architecture
    whole = onnx.load(str(set_dir / entry.parts["whole"].file))
    graphs = build_graphs(weights_of(whole), int(arch.channels), int(arch.depth))
    for role, part in entry.parts.items():
        if role not in graphs:
            continue
        if graphs[role].SerializeToString() != (set_dir / part.file).read_bytes():
            raise RuntimeError(f"{set_dir / part.file}: not rebuilt byte for byte from the whole graph's weights")
    added = [role for role in graphs if role not in entry.parts]
    if not added:
        return []
    parts = dict(entry.parts)
    for role in added:
        path = set_dir / f"{PREFIX}_{role}.onnx"
        onnx.save(graphs[role], str(path))
        parts[role] = describe_part(path)
    parts = dict(sorted(parts.items()))
    new = dataclasses.replace(spec, models=dataclasses.replace(
        spec.models, **{KEY: dataclasses.replace(entry, parts=parts)}))
    (set_dir / "manifest.json").write_text(manifest_text(new), encoding="utf-8")
    return added


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set_dir", type=Path)
    a = ap.parse_args(argv)
    added = add_parts(a.set_dir)
    print(f"{a.set_dir}: added {', '.join(added)}" if added else f"{a.set_dir}: nothing to add")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
