"""Convert the published Ptolemy checkpoints into the ONNX model set ``ptolemy-2022``.

    python -m export.convert --weights DIR --notice NOTICE.md --out onnx_models/ptolemy-2022

(what ``make models`` runs). Loads the three checkpoints strictly, exports the square and
hole classifiers (export/onnx_classifiers.py) and the U-Net (export/onnx_unet.py), and
writes ``manifest.json`` with per model the source checkpoint name and sha256, per part
the sha256, opset and input / output names and shapes, the licence and the citation.

Idempotent: when the existing manifest lists the same source sha256s, exporter version
and exporter code sha256 and every part is intact, nothing is rebuilt. Output bytes are deterministic.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

from ptolemy_rt.errors import ModelSetError
from ptolemy_rt.modelspec import MODEL_KEYS, ExporterSpec, SourceSpec, read_manifest

from .manifest import sha256_file, write_manifest

SET_NAME = "ptolemy-2022"
#: bump when the exported graphs change, so that existing sets are rebuilt
EXPORTER_VERSION = "classifiers-2+unet-deep"

CHECKPOINTS = {
    "square_classifier": "211215_lowmag_64x5_defaultadam_tightw_e2.torchmodel",
    "hole_classifier": "211214_medmag_128x4_avgpool_e5.torchmodel",
    "hole_unet": "211026_unet_9x64_ep6.torchmodel",
}


class ConvertError(Exception):
    pass


EXPORT_CODE = ("arch_classifiers.py", "onnx_classifiers.py", "manifest.py", "convert.py", "arch_unet.py", "onnx_unet.py",
               "../ptolemy_rt/modelspec.py")


def code_sha256() -> str:
    """sha256 over the exporter source files, so that a code change triggers a rebuild."""
    import hashlib

    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for fn in EXPORT_CODE:
        p = here / fn
        h.update(fn.encode() + b"\0" + (p.read_bytes() if p.is_file() else b"<absent>") + b"\0")
    return h.hexdigest()


def read_notice(path: Path) -> tuple[str, str]:
    """(licence, citation) from the NOTICE.md of the published material."""
    text = Path(path).read_text(encoding="utf-8")
    flat = re.sub(r"\s+", " ", text)
    m = re.search(r"\((CC BY[^)]*)\)", flat)
    licence = m.group(1).strip() if m else "CC BY-NC 4.0"
    para = next((p for p in re.split(r"\n\s*\n", text) if "Cite:" in p), "")
    citation = re.sub(r"\s+", " ", para.split("Cite:", 1)[1]).strip() if para else ""
    if not citation:
        raise ConvertError(f"{path}: no 'Cite:' line found")
    return licence, citation


def _load_state(path: Path):
    import torch

    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ConvertError(f"{path}: cannot be read as a PyTorch state_dict ({type(e).__name__}: {e})") from None
    if not isinstance(sd, dict):
        raise ConvertError(f"{path}: not a state_dict (got {type(sd).__name__})")
    return sd


def _strict(module, sd, path: Path):
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ConvertError(f"{path}: does not match the architecture ({first})") from None
    return module.eval()


def up_to_date(out: Path, sources: dict[str, str]) -> bool:
    """True when out/manifest.json was built from these source sha256s by this exporter
    and every part file is present and intact."""
    try:
        spec = read_manifest(out / "manifest.json")
    except ModelSetError:
        return False
    exporter = spec.exporter
    if exporter is None or exporter.version != EXPORTER_VERSION or exporter.code_sha256 != code_sha256():
        return False
    entries = {k: getattr(spec.models, k) for k in MODEL_KEYS if getattr(spec.models, k) is not None}
    if set(entries) != set(sources):
        return False
    for key, sha in sources.items():
        entry = entries[key]
        if entry.source is None or entry.source.sha256 != sha:
            return False
        for part in entry.parts.values():
            p = out / part.file
            if not p.is_file() or sha256_file(p) != part.sha256:
                return False
    return True


def convert(weights: Path, notice: Path, out: Path, force: bool = False) -> tuple[Path, bool]:
    """Build the set; returns (manifest path, rebuilt?). Raises ConvertError."""
    weights, out = Path(weights), Path(out)
    paths = {k: weights / fn for k, fn in CHECKPOINTS.items()}
    for k, p in paths.items():
        if not p.is_file():
            raise ConvertError(f"{p}: checkpoint for {k} not found")
    sources = {k: sha256_file(p) for k, p in paths.items()}
    if not force and up_to_date(out, sources):
        return out / "manifest.json", False
    licence, citation = read_notice(notice)

    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    from .arch_classifiers import HoleClassifier, SquareClassifier
    from .onnx_classifiers import export_hole_classifier, export_square_classifier

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    stage.chmod(0o755)
    try:
        models: dict = {}
        sq = _strict(SquareClassifier(), _load_state(paths["square_classifier"]), paths["square_classifier"])
        models["square_classifier"] = export_square_classifier(sq, stage, "square_classifier")
        ho = _strict(HoleClassifier(), _load_state(paths["hole_classifier"]), paths["hole_classifier"])
        models["hole_classifier"] = export_hole_classifier(ho, stage, "hole_classifier")
        missing = None
        try:
            from .arch_unet import UNet
            from .onnx_unet import export_unet
        except ImportError as e:
            missing = f"U-Net exporter not available ({e}); the set holds the classifiers only"
        else:
            un = _strict(UNet(), _load_state(paths["hole_unet"]), paths["hole_unet"])
            models["hole_unet"] = export_unet(un, stage, "hole_unet")
        for k, spec in models.items():
            spec["source"] = SourceSpec(file=paths[k].name, sha256=sources[k])
        write_manifest(stage, SET_NAME, models, licence, citation,
                       exporter=ExporterSpec(version=EXPORTER_VERSION, code_sha256=code_sha256(),
                                             tool="export.convert"))
        # replace the old set only once the new one is written
        if out.exists():
            shutil.rmtree(out)
        stage.replace(out)
        if missing:
            raise ConvertError(missing)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return out / "manifest.json", True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.convert", description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, type=Path, help="folder with the published .torchmodel files")
    ap.add_argument("--notice", required=True, type=Path, help="NOTICE.md of the published material")
    ap.add_argument("--out", required=True, type=Path, help="output folder, e.g. onnx_models/ptolemy-2022")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    a = ap.parse_args(argv)
    try:
        path, rebuilt = convert(a.weights, a.notice, a.out, force=a.force)
    except ConvertError as e:
        print(f"export.convert: error: {e}", file=sys.stderr)
        return 1
    print(f"{'built' if rebuilt else 'up to date'}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
