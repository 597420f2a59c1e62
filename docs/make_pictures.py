"""Regenerate the README pictures (synthetic images only; nothing from ../shared).

    .venv/bin/python docs/make_pictures.py

Writes docs/img/gallery_atlas.png, docs/img/gallery_medmag.png (raw synthetic images,
robust contrast, 6 seeds each) and docs/img/demo_atlas.png, docs/img/demo_square.png
(`ptolemy demo` overlays with the default model set), all downscaled.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ptolemy_rt import synthetic

OUT = Path(__file__).resolve().parent / "img"
TILE = 320


def _to_u8(img: np.ndarray) -> Image.Image:
    lo, hi = np.percentile(img, [1, 99])
    u8 = np.clip((img - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    im = Image.fromarray(u8)
    im.thumbnail((TILE, TILE))
    return im


def _grid(tiles: list[Image.Image], cols: int = 3) -> Image.Image:
    rows = (len(tiles) + cols - 1) // cols
    w = max(t.width for t in tiles)
    h = max(t.height for t in tiles)
    sheet = Image.new("L", (cols * (w + 4), rows * (h + 4)), 255)
    for k, t in enumerate(tiles):
        sheet.paste(t, ((k % cols) * (w + 4), (k // cols) * (h + 4)))
    return sheet


def main() -> int:
    OUT.mkdir(exist_ok=True)
    _grid([_to_u8(synthetic.atlas(s, (1024, 1024))[0]) for s in range(6)]).save(OUT / "gallery_atlas.png", optimize=True)
    _grid([_to_u8(synthetic.medmag_image(s, (1024, 1440))[0]) for s in range(6)]).save(OUT / "gallery_medmag.png",
                                                                                      optimize=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "ptolemy_rt.cli", "demo", tmp], check=True, stdout=subprocess.DEVNULL)
        for src, dst in (("atlas.png", "demo_atlas.png"), ("square.png", "demo_square.png")):
            im = Image.open(Path(tmp) / src)
            im.thumbnail((640, 640))
            im.save(OUT / dst, optimize=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
