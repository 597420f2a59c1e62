"""(Re)make the committed expected outputs of the own model set on synthetic images.

    python tests/make_expected.py            # writes tests/data/expected/

Inputs are small synthetic images from ``ptolemy_rt.synthetic`` (seeds below), stored as
int16 MRC files next to the expected outputs, so that the test reads the very same pixels on
every machine (numpy's vectorised transcendentals can differ by an ulp between CPUs). The
expected output of each case is the CLI's ``-f json-full`` for the own set with the case's
options, with the wall-clock fields and the input path removed (`comparable`).

Run it only when an output change is intended, and say so in the commit message.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ptolemy_rt.models import OWN_SET  # the default set

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "expected"

#: name -> (kind, generator, seed, shape (rows, cols), generator parameters)
INPUTS = {
    "atlas_s31": ("lowmag", "atlas", 31, (640, 640), {}),
    "medmag_s41": ("medmag", "medmag_image", 41, (768, 1024), {"film": "R1.2/1.3", "pixel_nm": 12.0}),
    "medmag_s42": ("medmag", "medmag_image", 42, (600, 800),
                   {"film": "R2/1", "pixel_nm": 15.0, "film_material": "gold"}),
}
CASES = {
    "atlas_s31.default": ("atlas_s31", []),
    "atlas_s31.square-grid.running": ("atlas_s31", ["--crop-grid", "square", "--batchnorm", "running"]),
    "medmag_s41.default": ("medmag_s41", []),
    "medmag_s41.square-lattice": ("medmag_s41", ["--lattice", "square"]),
    "medmag_s42.default.px": ("medmag_s42", ["--pixel-size", "12.5"]),
}
VOLATILE = ("timings_s", "image", "seconds")


def comparable(full_json: str) -> dict:
    """The json-full object without its wall-clock fields and input path."""
    doc = json.loads(full_json)
    for k in VOLATILE:
        doc.pop(k, None)
    return doc


def input_path(name: str) -> Path:
    return DATA / f"{name}.mrc"


def run_case(case: str) -> str:
    """json-full text of the CLI on one case (own set)."""
    name, opts = CASES[case]
    kind = INPUTS[name][0]
    cmd = [sys.executable, "-m", "ptolemy_rt.cli", kind, str(input_path(name)), "-f", "json-full",
           "--models", OWN_SET, *opts]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
    if r.returncode != 0:
        raise RuntimeError(f"{case}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def make_inputs() -> None:
    import mrcfile
    import numpy as np

    from ptolemy_rt import synthetic

    for name, (kind, gen, seed, shape, params) in INPUTS.items():
        if input_path(name).is_file():  # committed: keep its bytes (mrcfile's header label holds a date)
            continue
        img, _truth = getattr(synthetic, gen)(seed, shape, **params)
        img = np.asarray(img, dtype=np.float64)
        if kind == "medmag":  # float image: to int16 counts with a fixed affine map
            lo, hi = float(img.min()), float(img.max())
            img = (img - lo) / max(hi - lo, 1e-12) * 3000.0 + 100.0
        with mrcfile.new(input_path(name), overwrite=True) as m:
            m.set_data(np.rint(img).clip(-32768, 32767).astype(np.int16))


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    make_inputs()
    for case in CASES:
        doc = comparable(run_case(case))
        (DATA / f"{case}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(case, doc.get("count"), file=sys.stderr)


if __name__ == "__main__":
    main()
