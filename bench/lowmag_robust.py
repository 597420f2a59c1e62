#!/usr/bin/env python
"""Issue 15 items 4-5: the low-mag pipeline under intensity transforms and on whole-grid atlases.

    PYTHONPATH=. python bench/lowmag_robust.py [--sets ptolemy-2022,ptolemy-rt-synth-v1] [--quick]

Part 1 (needs ../shared): the README atlas raw, + 10000 (a camera bias), × 0.01 (float),
× 3.7 − 500 (float32, gain and negative offset) and minus its mean (background-subtracted),
robust mode: squares found, largest centre distance to the raw image's (px, nearest
square) and largest score change. Part 2: `synthetic.grid_atlas` (several seeds, sizes,
bright and dark off-grid background), both compat modes: truth squares (not cut by the rim
or border), found, dark truth / found, extra (found squares on no truth square),
background squares (centre beyond the rim's middle or box area > 4 side²), whether every
dark square is ranked below every bright one, and the wall time of `find_squares`.
Prints markdown tables. Timings are on whatever machine runs it (no assert).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ptolemy_rt import io, lowmag, synthetic
from ptolemy_rt.models import load_model_set

README_ATLAS = Path(__file__).resolve().parent.parent.parent / "shared" / "ptolemy-2022" / "images" / \
    "lowmag_20may08a_16760340.mrc"
GRID_CASES = [(0, (1024, 1024), {}), (1, (1024, 1024), {}), (2, (1024, 1024), {}), (3, (1024, 1024), {}),
              (7, (768, 1024), {"background": "bright"}), (8, (1536, 1536), {"background": "dark"}),
              (9, (2048, 2048), {"background": "bright"})]


def grid_score(res, truth, ids, p) -> dict:
    """found / truth / extra / background squares of a SquareResult against a grid_atlas truth."""
    rank: dict[int, int] = {}
    extra = bg = 0
    for k, s in enumerate(res.squares):
        x, y = s.center
        if np.hypot(x - p["center"][0], y - p["center"][1]) > p["radius"] + p["rim_width"] / 2 \
                or s.area > 4 * p["side"] ** 2:
            bg += 1
        win = ids[max(0, y - 3):y + 4, max(0, x - 3):x + 4]
        v = win[win > 0]
        if len(v):
            rank.setdefault(int(np.bincount(v).argmax()) - 1, k)
        else:
            extra += 1
    full = [j for j, t in enumerate(truth) if t.label != "edge"]
    dark = [j for j in full if truth[j].label == "thick"]
    br = [rank[j] for j in full if j in rank and truth[j].label != "thick"]
    dr = [rank[j] for j in dark if j in rank]
    return dict(truth=len(full), found=sum(j in rank for j in full), dark=len(dark),
                dark_found=sum(j in rank for j in dark), extra=extra, bg=bg, n=len(res.squares),
                dark_below=(min(dr) > max(br)) if dr and br else None)


def transforms(raw: np.ndarray) -> dict:
    r = raw.astype(np.float64)
    return {"raw": raw, "+10000": (r + 10000).astype(np.float32), "x0.01": (r * 0.01).astype(np.float32),
            "x3.7-500": (r * 3.7 - 500).astype(np.float32), "minus mean": (r - r.mean()).astype(np.float32),
            "x0.01+10000": (r * 0.01 + 10000).astype(np.float32)}


def part1(sets) -> None:
    if not README_ATLAS.is_file():
        print("README atlas not found; part 1 skipped")
        return
    raw = io.read_mrc(README_ATLAS).pixels
    print("| set | image | compat | squares | max centre Δ px | max score Δ | s |\n|---|---|---|---|---|---|---|")
    for name in sets:
        ms = load_model_set(name)
        ref = lowmag.find_squares(raw, models=ms)
        rc = np.array([s.center for s in ref.squares], float)
        rs = np.array([s.score for s in ref.squares])
        for label, img in transforms(raw).items():
            for compat in ("robust", "published"):
                if compat == "published" and label != "+10000":
                    continue
                t = time.perf_counter()
                res = lowmag.find_squares(img, models=ms, compat=compat)
                dt = time.perf_counter() - t
                if res.squares:
                    c = np.array([s.center for s in res.squares], float)
                    d = np.linalg.norm(c[:, None] - rc[None], axis=2)
                    j = d.argmin(axis=1)
                    sc = np.array([s.score for s in res.squares])
                    dc, ds = f"{d.min(axis=1).max():.2f}", f"{np.abs(sc - rs[j]).max():.4f}"
                else:
                    dc = ds = "-"
                print(f"| {name} | {label} | {compat} | {len(res.squares)} | {dc} | {ds} | {dt:.2f} |", flush=True)


def part2(sets, cases) -> None:
    print("| set | compat | seed | shape | background | truth | found | dark found | extra | background squares "
          "| dark ranked below | s |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in sets:
        ms = load_model_set(name)
        for seed, shape, kw in cases:
            img, truth, ids, p = synthetic.grid_atlas_with_ids(seed, shape, **kw)
            for compat in ("robust", "published"):
                t = time.perf_counter()
                res = lowmag.find_squares(img, models=ms, compat=compat)
                dt = time.perf_counter() - t
                m = grid_score(res, truth, ids, p)
                print(f"| {name} | {compat} | {seed} | {shape[0]}×{shape[1]} | {p['background']} | {m['truth']} | "
                      f"{m['found']} | {m['dark_found']}/{m['dark']} | {m['extra']} | {m['bg']} | {m['dark_below']} "
                      f"| {dt:.2f} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="ptolemy-2022,ptolemy-rt-synth-v1")
    ap.add_argument("--quick", action="store_true", help="the first three atlases only")
    ap.add_argument("--part", choices=("1", "2", "both"), default="both")
    a = ap.parse_args(argv)
    sets = a.sets.split(",")
    if a.part in ("1", "both"):
        part1(sets)
    if a.part in ("2", "both"):
        part2(sets, GRID_CASES[:3] if a.quick else GRID_CASES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
