"""Fixed synthetic evaluation set, written on demand in the labelled-data format.

    python -m export.evalset [--out build/evalset-synth-v1] [--atlases 50] [--medmag 200]

writes OUT/lowmag and OUT/medmag (format: `ptolemy_rt.labels`, points mode "all": every
drawn square / hole whose centre lies inside the image, with its label, `good` flag and
radius). Seeds are EVAL_SEED_BASE + i, disjoint from the training seeds of
`export.train` (which stay below EVAL_SEED_BASE). The folder is a build product
(git-ignored `build/`), never committed. numpy/scipy/mrcfile only (no torch).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ptolemy_rt import synthetic
from ptolemy_rt.labels import write_dataset

EVAL_SEED_BASE = 9_000_000
DEFAULT_OUT = Path("build/evalset-synth-v1")
LOWMAG_SHAPE = (1024, 1024)
MEDMAG_SHAPE = (1024, 1440)


def atlas_points(truth, shape) -> list[dict]:
    """Point dicts (labels format) for the squares of a synthetic atlas whose centre is
    inside the image: (x, y) px, label, good, radius = half the side (px), polygon."""
    h, w = shape
    out = []
    for t in truth:
        x, y = t.center
        if 0 <= x < w and 0 <= y < h:
            out.append({"x": round(x, 3), "y": round(y, 3), "label": t.label, "good": bool(t.good),
                        "radius": round(t.side / 2, 3),
                        "polygon": [[round(a, 3), round(b, 3)] for a, b in t.polygon]})
    return out


def hole_points(truth, shape) -> list[dict]:
    """Point dicts for the holes of a synthetic medium-mag image whose centre is inside the
    image: (x, y) px, label, good, radius = the ellipse's minor semi-axis (px)."""
    h, w = shape
    out = []
    for t in truth:
        x, y = t.center
        if 0 <= x < w and 0 <= y < h:
            out.append({"x": round(x, 3), "y": round(y, 3), "label": t.label, "good": bool(t.good),
                        "radius": round(min(t.axes), 3)})
    return out


def write_evalset(out: Path = DEFAULT_OUT, n_atlases: int = 50, n_medmag: int = 200,
                  base: int = EVAL_SEED_BASE, log=print) -> Path:
    """Write the evaluation set (both kinds) under `out`; returns `out`."""
    out = Path(out)
    t0 = time.perf_counter()

    def atlases():
        for i in range(n_atlases):
            img, truth = synthetic.atlas(base + i, LOWMAG_SHAPE)
            yield f"atlas_{base + i}", img, atlas_points(truth, img.shape)

    write_dataset(out / "lowmag", "lowmag", atlases(), points="all", dtype=np.int16,
                  description=f"synthetic atlases, seeds {base}..{base + n_atlases - 1} (ptolemy_rt.synthetic.atlas)")
    log(f"lowmag: {n_atlases} atlases ({time.perf_counter() - t0:.1f} s)")

    def medmags():
        for i in range(n_medmag):
            img, truth = synthetic.medmag_image(base + i, MEDMAG_SHAPE)
            yield f"medmag_{base + i}", img, hole_points(truth, img.shape)

    write_dataset(out / "medmag", "medmag", medmags(), points="all", dtype=np.float16,
                  description=f"synthetic medium-mag images, seeds {base}..{base + n_medmag - 1} "
                              "(ptolemy_rt.synthetic.medmag_image)")
    log(f"medmag: {n_medmag} images ({time.perf_counter() - t0:.1f} s)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--atlases", type=int, default=50)
    ap.add_argument("--medmag", type=int, default=200)
    a = ap.parse_args(argv)
    write_evalset(a.out, a.atlases, a.medmag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
