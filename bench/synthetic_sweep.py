"""Synthetic scale sweep (issue 15 target): hole F1 of `ptolemy medmag` (default robust
pipeline) on synthetic square images from 10 to 200 nm/px, for both model sets.

Cases (deterministic: fixed seeds and parameters, `ptolemy_rt.synthetic.medmag_with_ids`):
pixel sizes PIXEL_NM; hole films of `synthetic.HOLE_FILMS` with diameters 1-2 µm and pitches
2-4 µm; carbon and gold film; untilted and tilted 10-20°; no grid bar, no broken film (every
truth hole is on film). Four cases per pixel size: (carbon, 0°), (gold, 0°), (carbon, tilt),
(gold, tilt), the film cycling over the films; a dose of DOSE counts/px. The images are square, 8 lattice pitches
across (clipped to 192-1536 px), so that every scale costs about the same once resampled to
the model set's pitch.

Truth: the holes drawn wholly inside the image (centre ± major semi-axis within the pixel
area). A found hole (the mean of its box corners, pixel-corner coordinates, − 0.5: (x, y) px
of the input image, pixel centres at integers as the truth) matches a
truth hole within 0.1 × the lattice pitch (`evaluate.match_points_to_discs`: one to one);
found holes near a hole cut by the image edge are neither matches nor extras.

Usage: `python bench/synthetic_sweep.py [--quick] [--sets ptolemy-rt-synth-v1,ptolemy-2022]`
(`--quick`: one case per pixel size). Prints one row per case and a per-scale summary
(minimum F1 per pixel size and set). `make sweep` runs the full sweep.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ptolemy_rt import synthetic  # noqa: E402
from ptolemy_rt.evaluate import match_points_to_discs  # noqa: E402

PIXEL_NM = (10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 150.0, 200.0)
FILMS = tuple(k for k, (d, s) in synthetic.HOLE_FILMS.items() if 1.0 <= d <= 2.0 and 2.0 <= d + s <= 4.0)
VARIANTS = (("carbon", False), ("gold", False), ("carbon", True), ("gold", True))
SETS = ("ptolemy-rt-synth-v1", "ptolemy-2022")
PITCHES_ACROSS = 8
MATCH_FRACTION = 0.1  # of the pitch
DOSE = 100.0  # counts/px: the generator's default (8-200) leaves 5 px holes invisible in shot noise


def cases(quick: bool = False) -> list[dict]:
    """The sweep's generator parameters, in order (quick: one variant per pixel size)."""
    out = []
    for i, px in enumerate(PIXEL_NM):
        for k, (material, tilted) in enumerate(VARIANTS):
            if quick and k != i % len(VARIANTS):
                continue
            film = FILMS[(i + k) % len(FILMS)]
            pitch = sum(synthetic.HOLE_FILMS[film]) * 1000.0 / px
            side = int(min(1536, max(192, 16 * round(PITCHES_ACROSS * pitch / 16))))
            out.append(dict(seed=1500 + 10 * i + k, shape=(side, side), pixel_nm=px, film=film,
                            film_material=material, tilt_deg=(10.0 + 5.0 * ((i + k) % 3)) if tilted else 0.0,
                            bars=0, broken=False, dose=DOSE))
    return out


def truth_and_ignore(truth, shape, pitch):
    """(centres wholly inside, ignore discs (x, y, r) of the holes cut by the edge)."""
    h, w = shape
    inside, cut = [], []
    for t in truth:
        x, y = t.center
        r = t.radius
        (inside if (x - r >= -0.5 and y - r >= -0.5 and x + r <= w - 0.5 and y + r <= h - 0.5) else cut).append((x, y, r))
    return np.array(inside, float).reshape(-1, 3), np.array(cut, float).reshape(-1, 3)


def run_case(case: dict, set_name: str) -> dict:
    """One case through `medmag.find_holes` with one model set: counts, F1, scale factor."""
    from ptolemy_rt.medmag import find_holes

    p = dict(case)
    seed, shape = p.pop("seed"), p.pop("shape")
    img, truth, _, params = synthetic.medmag_with_ids(seed, shape, **p)
    pitch = float(params["pitch_px"])
    inside, cut = truth_and_ignore(truth, shape, pitch)
    t0 = time.perf_counter()
    res = find_holes(img, models=set_name)
    dt = time.perf_counter() - t0
    # box corners are pixel-corner coordinates: their mean − 0.5 is the centre in the truth's
    # pixel-centre convention
    found = np.array([np.mean(np.asarray(h.vertices, float), axis=0) - 0.5 for h in res.holes]).reshape(-1, 2)
    tol = MATCH_FRACTION * pitch
    m = match_points_to_discs(found, inside[:, :2], tol, ignore_xy=cut[:, :2],
                              ignore_radii=np.maximum(cut[:, 2], tol))
    sc = res.scale or {}
    meas = (sc.get("measured") or {}).get("period_px")
    return dict(truth=len(inside), found=len(found), tp=m["tp"], fp=m["fp"], fn=m["fn"], f1=m["f1"],
                factor=sc.get("factor"), measured_px=meas, pitch_px=pitch, seconds=dt,
                reason=res.reason or "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one case per pixel size")
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated model set names")
    ap.add_argument("--only", default="", help="comma-separated case indices to run")
    a = ap.parse_args(argv)
    sets = [s for s in a.sets.split(",") if s]
    todo = list(enumerate(cases(a.quick)))
    if a.only:
        keep = {int(v) for v in a.only.split(",")}
        todo = [(i, c) for i, c in todo if i in keep]
    print(f"{'#':>3} {'nm/px':>5} {'film':<13} {'mat':<6} {'tilt':>4} {'side':>5} {'pitch':>6} | "
          + " | ".join(f"{s[:14]:<14} {'truth':>5} {'tp':>3} {'fp':>3} {'F1':>5} {'meas':>6} {'factor':>6} {'s':>5}" for s in sets))
    worst: dict[tuple[float, str], float] = {}
    allf1: dict[str, list[float]] = {s: [] for s in sets}
    for i, c in todo:
        cells = []
        for s in sets:
            r = run_case(c, s)
            key = (c["pixel_nm"], s)
            worst[key] = min(worst.get(key, 1.0), r["f1"])
            allf1[s].append(r["f1"])
            meas = "-" if r["measured_px"] is None else f"{r['measured_px']:.1f}"
            fac = "-" if r["factor"] is None else f"{r['factor']:.3g}"
            cells.append(f"{'':<14} {r['truth']:>5} {r['tp']:>3} {r['fp']:>3} {r['f1']:>5.2f} {meas:>6} {fac:>6} {r['seconds']:>5.1f}")
        print(f"{i:>3} {c['pixel_nm']:>5.0f} {c['film']:<13} {c['film_material']:<6} {c['tilt_deg']:>4.0f} "
              f"{c['shape'][0]:>5} {sum(synthetic.HOLE_FILMS[c['film']]) * 1000 / c['pixel_nm']:>6.1f} | "
              + " | ".join(cells), flush=True)
    print("\nminimum F1 per pixel size:")
    print(f"{'nm/px':>5} " + " ".join(f"{s:>20}" for s in sets))
    for px in sorted({k[0] for k in worst}):
        print(f"{px:>5.0f} " + " ".join(f"{worst.get((px, s), math.nan):>20.2f}" for s in sets))
    print("all cases: " + ", ".join(f"{s} F1 {min(v):.2f}-{max(v):.2f} (mean {np.mean(v):.3f})" for s, v in allf1.items() if v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
