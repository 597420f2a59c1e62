#!/usr/bin/env python
"""`make bench`, scale-stage rows: what the medium-mag scale stage costs and what it saves.

Two measurements, each a ratio of times taken in this one process, one after the other (so
the ratio holds on a shared or a different machine; absolute seconds do not):

1. **scale share**: on the README medium-mag example (1024×1440; holes already at the model
   set's scale, nothing is resampled) the scale stage's time (``timings_s["scale"]`` of
   `medmag.find_holes`) over the whole pipeline's (the sum of its stage times). Target ≤ 5 %.
2. **4096² downsampled**: a synthetic 4096×4096 square image (`synthetic.medmag_image`, R2/2
   carbon film) drawn so that its hole pitch is 4× the model set's declared pitch
   (`pipeline.hole_pitch_px`): the pipeline's time with the scale stage (``scale="auto"``:
   the image is downsampled ×¼ first) over its time with it off (``scale="off"``: the U-Net
   and crops at full size). Target ≤ 0.3. Also reports the holes found both ways.

Each time is the median of ``--runs`` warm runs (after one warm-up) of `find_holes` on an
image already in memory. Model set: ``--models`` (default: ptolemy-2022 when built, the
targets are for the published networks; else the default set). Writes
bench/results/scale.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
RESULTS = HERE / "results"
EXAMPLE = REPO.parent / "shared" / "ptolemy-2022" / "images" / "medmag_readme_1024x1440.mrc"

SCALE_SHARE_MAX = 0.05
DOWNSAMPLED_RATIO_MAX = 0.30


def _timed_runs(fn, runs: int):
    """(median wall s, last result) of `runs` calls of fn() after one warm-up call."""
    res = fn()
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        res = fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), res


def scale_share(ms, runs: int) -> dict | None:
    """Row 1: the scale stage's share of the pipeline on the README medium-mag example."""
    from ptolemy_rt.io import read_image
    from ptolemy_rt.medmag import find_holes

    if not EXAMPLE.exists():
        print(f"skip scale share: {EXAMPLE} not found")
        return None
    img = read_image(EXAMPLE)
    find_holes(img, models=ms)  # warm-up
    shares, totals = [], []
    res = None
    for _ in range(runs):
        res = find_holes(img, models=ms)
        t = res.timings_s
        total = sum(float(v) for v in t.values())
        shares.append(float(t.get("scale", 0.0)) / total)
        totals.append(total)
    return {"name": "scale-share-1024x1440", "share": statistics.median(shares),
            "pipeline_s": statistics.median(totals), "holes": len(res.holes),
            "factor": (res.scale or {}).get("factor"), "target_max": SCALE_SHARE_MAX}


def downsampled_4096(ms, runs: int) -> dict:
    """Row 2: a 4096² image with holes at 4× the model's pitch, scale stage on vs off."""
    from ptolemy_rt.medmag import find_holes
    from ptolemy_rt.synthetic import medmag_image

    pitch_px = 4.0 * ms.spec.pipeline.hole_pitch_px
    # R2/2: 2 µm holes, 2 µm edge to edge → 4 µm = 4000 nm pitch
    image, truth = medmag_image(3, (4096, 4096), pixel_nm=4000.0 / pitch_px, film="R2/2", film_material="carbon",
                                angle_deg=12.0, tilt_deg=0.0, invert=False, bars=0, broken=False)
    t_auto, r_auto = _timed_runs(lambda: find_holes(image, models=ms, scale="auto"), runs)
    t_off, r_off = _timed_runs(lambda: find_holes(image, models=ms, scale="off"), max(1, runs - 1))
    return {"name": "medmag-4096-holes-4x", "hole_pitch_px": pitch_px, "truth_holes": len(truth),
            "auto_s": t_auto, "off_s": t_off, "ratio": t_auto / t_off,
            "holes_auto": len(r_auto.holes), "holes_off": len(r_off.holes),
            "factor": (r_auto.scale or {}).get("factor"), "target_max": DOWNSAMPLED_RATIO_MAX}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "scale.json"))
    a = ap.parse_args(argv)
    from ptolemy_rt.models import load_model_set

    name = a.models
    if name is None and (REPO / "onnx_models/ptolemy-2022/manifest.json").exists():
        name = "ptolemy-2022"
    ms = load_model_set(name)
    rows = [r for r in (scale_share(ms, a.runs), downsampled_4096(ms, a.runs)) if r]
    report = {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "models": ms.name, "rows": rows}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"scale stage ({ms.name}):")
    for r in rows:
        if "share" in r:
            ok = "ok" if r["share"] <= r["target_max"] else "MISSED"
            print(f"  {r['name']}: scale stage {100 * r['share']:.1f} % of {r['pipeline_s']:.2f} s "
                  f"(target ≤ {100 * r['target_max']:.0f} %: {ok}); factor {r['factor']}, {r['holes']} holes")
        else:
            ok = "ok" if r["ratio"] <= r["target_max"] else "MISSED"
            print(f"  {r['name']}: auto {r['auto_s']:.2f} s / off {r['off_s']:.2f} s = {r['ratio']:.2f} "
                  f"(target ≤ {r['target_max']:.2f}: {ok}); factor {r['factor']}; holes auto {r['holes_auto']}, "
                  f"off {r['holes_off']}, truth {r['truth_holes']}")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
