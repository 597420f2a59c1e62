"""Regenerate the README pictures (synthetic images only; nothing from ../shared).

    .venv/bin/python docs/make_pictures.py

Writes docs/img/gallery_atlas.png, docs/img/gallery_medmag.png (raw synthetic images,
robust contrast, 6 seeds each) and docs/img/demo_atlas.png, docs/img/demo_square.png
(`ptolemy demo` overlays with the default model set), all downscaled, and
docs/img/any_magnification.png: `ptolemy medmag` (default set, scale stage) on a synthetic
whole grid square at the scale of a Leginon square image (512², 62.5 nm/px, 1.2 µm holes at
2.5 µm pitch: ~19 px holes ~40 px apart, `ptolemy_rt.scenes`, seed 2).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ptolemy_rt import scenes, synthetic

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
    any_magnification()
    return 0


#: the README's "Any magnification" scene (docs/make_pictures.py and README)
ANY_MAG_SCENE = dict(seed=2, shape=(512, 512), kind="square", pixel_nm=62.5, hole_um=1.2, pitch_um=2.5,
                     square_um=24.0, tilt_deg=0.0)


def any_magnification() -> None:
    """docs/img/any_magnification.png: the synthetic square through `ptolemy medmag` with --plot."""
    import mrcfile

    kw = dict(ANY_MAG_SCENE)
    s = scenes.scene(kw.pop("seed"), kw.pop("shape"), **kw)
    with tempfile.TemporaryDirectory() as tmp:
        mrc = Path(tmp) / "square.mrc"
        with mrcfile.new(mrc) as m:
            m.set_data(np.asarray(s.image, np.float32))
        subprocess.run([sys.executable, "-m", "ptolemy_rt.cli", "medmag", str(mrc), "-o", str(Path(tmp) / "r.json"),
                        "--plot", str(Path(tmp) / "r.png")], check=True, stdout=subprocess.DEVNULL)
        Image.open(Path(tmp) / "r.png").save(OUT / "any_magnification.png", optimize=True)


if __name__ == "__main__":
    raise SystemExit(main())
