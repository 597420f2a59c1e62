"""Peak-memory bench of the CLI on very large images (`python bench/run_bench.py --only memory`).

The images are written straight to an MRC file through a memory map (``mrcfile.new_mmap``),
strip by strip, never held in RAM: mode 6 (uint16), a background of 1000 counts plus
uniform noise 0..15 (seeded per strip: not constant, no periodic texture) and, in the
top-left 2048×2048 px only, bright 128×128 px blocks (+2000) on a square lattice of pitch
280 px (within both model sets' scale tolerance) and a few dozen squares / holes to
classify. On the 16384² image the lattice covers 1/64 of the image, so the scale stage's
measurement is not confident (quality ≈ 2.6: "not resampled", factor 1); on the 6000²
image likewise or within tolerance: the scale stage does not resample, and the U-Net runs on
the whole image at its own size (each medium-mag case prints the U-Net's input size from the
result's ``scale.factor``: "U-Net 16384×16384"). Before issue 14's fix of
`medmag.capped_decision` every image above 64 Mpx was shrunk to 64 Mpx (×0.488 at 16384²)
before the U-Net; this bench measured that smaller U-Net.

Per case: ``ptolemy lowmag|medmag IMG -f json -o TMP`` (medmag: ``-f json-full``, whose
``scale`` gives the U-Net's input size) in a child process, peak RSS from
``os.wait4`` (ru_maxrss), exit code, wall time and the last stderr line; the budget the
runtime keeps (docs/BENCH.md#memory-budget) is checked per case: a case passes when the run
succeeds and its peak RSS is within ``BUDGET_BASE_BYTES`` + ``BUDGET_BYTES_PER_PX`` per
pixel, or when the image is above the pixel budget (`ptolemy_rt.mrc.MAX_SECTION_PIXELS`) and
is refused with exit 3 and one ``ptolemy: error:`` line.

Time: the published set's medium-mag run on 16384² (a full-size 64-channel U-Net) takes
about 16.5 min on one thread of the 2-core development machine (the own set's ≈ 3 min);
each case has a timeout of ``CASE_TIMEOUT_S`` = 3600 s (this bench is not CI).

The files go to a temporary folder ($PTOLEMY_BENCH_TMP or /tmp) and are deleted after the
case. Sizes: 6000² (the size of the issue's report), 16384² (the largest accepted, 512 MiB as uint16) and 40000² (refused, 3.2 GB
sparse file: only the touched pages take disk space).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

MB = 1e6
BUDGET_BASE_BYTES = 1.5e9  # docs/BENCH.md#memory-budget: base + BUDGET_BYTES_PER_PX per pixel
BUDGET_BYTES_PER_PX = 4.0
PUBLISHED_SET = "ptolemy-2022"
#: Cases whose budget exceeds this are skipped (not run) unless MEMBENCH_ALL=1.
MAX_RUN_BYTES = 8e9
#: seconds per case before the child is killed (the published 16384² medmag run: ≈ 16.5 min)
CASE_TIMEOUT_S = 3600.0
SIDES = (6000, 16384, 40000)
MODES = ("lowmag", "medmag")
STRIP_ROWS = 1024
HOLE_PITCH = 280  # px
HOLE_PX = 128  # px
PATTERN_PX = 2048  # px: the lattice covers rows and cols below this


def write_big_mrc(path: str | os.PathLike, side: int, touch: bool = True) -> None:
    """Write a side×side uint16 (mode 6) MRC with the pattern of the module docstring
    through a memory map, STRIP_ROWS rows at a time (memory: one strip). ``touch`` False
    writes only the header (a sparse file whose pixels are all 0: for the refused sizes,
    which are rejected from their header)."""
    import mrcfile

    with mrcfile.new_mmap(str(path), shape=(side, side), mrc_mode=6, overwrite=True) as m:
        if not touch:
            return
        cols = np.arange(side, dtype=np.int64)
        for k, r0 in enumerate(range(0, side, STRIP_ROWS)):
            r1 = min(side, r0 + STRIP_ROWS)
            rows = np.arange(r0, r1, dtype=np.int64)
            strip = np.random.default_rng(k).integers(1000, 1016, size=(r1 - r0, side), dtype=np.uint16)
            on_r = ((rows % HOLE_PITCH) < HOLE_PX) & (rows < PATTERN_PX)
            on_c = ((cols % HOLE_PITCH) < HOLE_PX) & (cols < PATTERN_PX)
            strip[np.ix_(on_r, on_c)] += 2000
            m.data[r0:r1] = strip
            m.flush()
        m.update_header_stats()


def budget_bytes(side: int, mode: str = "lowmag", models: str | None = None) -> float:
    """The stated peak-RSS budget of one run on a side×side image, bytes (the same for both
    pipelines and both model sets since the published U-Net's core runs in strips)."""
    return BUDGET_BASE_BYTES + BUDGET_BYTES_PER_PX * side * side


def unet_side(out_json: Path, side: int) -> str | None:
    """"rows×cols" the U-Net ran on, from a medium-mag result's ``scale.factor`` (the image
    resampled by it, `scale.resampled_shape`), or None when the output has no scale."""
    import json

    from ptolemy_rt.scale import resampled_shape

    try:
        obj = json.loads(Path(out_json).read_text())
    except (OSError, ValueError):
        return None
    sc = obj.get("scale") if isinstance(obj, dict) else None  # -f json-full: a dict with "scale"
    if not sc:
        return None
    r, c = resampled_shape((side, side), float(sc["factor"]))
    return f"{r}×{c}"


def run_memory(run_child, cli, models: str | None, sides=SIDES, modes=MODES, timeout: float = CASE_TIMEOUT_S,
               log=print) -> list[dict]:
    """Run every (side, mode) case, one at a time; returns one record per case.

    run_child(cmd, env=None, timeout=...) -> dict with rss_mb, rc, err, wall_s (run_bench's);
    cli(mode, image, out_json) -> the command list. A mode "lowmag+plot" / "medmag+plot" runs
    that pipeline with ``--plot`` (an extra PNG output)."""
    from ptolemy_rt.mrc import MAX_SECTION_PIXELS

    base = os.environ.get("PTOLEMY_BENCH_TMP") or tempfile.gettempdir()
    rows = []
    for side in sides:
        d = Path(tempfile.mkdtemp(prefix="ptolemy-membench-", dir=base))
        img = d / f"big{side}.mrc"
        try:
            accepted = side * side <= MAX_SECTION_PIXELS
            # written by a separate process: a child forked from a process that mapped the
            # image would report that mapping in its own ru_maxrss
            import subprocess
            import sys

            subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "from memory_bench import write_big_mrc; "
                            "write_big_mrc(sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1')",
                            str(Path(__file__).resolve().parent), str(img), str(side), "1" if accepted else "0"],
                           check=True)
            for mode in modes:
                lim = budget_bytes(side, mode, models)
                if accepted and lim > MAX_RUN_BYTES and os.environ.get("MEMBENCH_ALL") != "1":
                    log(f"memory-{mode}-{side} ({models}): skipped, budget {lim / MB:.0f} MB (MEMBENCH_ALL=1 runs it)")
                    continue
                kind, _, extra = mode.partition("+")  # "lowmag+plot": with --plot (the picture's memory)
                cmd = cli(kind, img, d / "x.json") + (["--plot", str(d / "x.png")] if extra == "plot" else [])
                if kind == "medmag" and "-f" in cmd:  # json-full: the result's scale (the U-Net's input size)
                    cmd[cmd.index("-f") + 1] = "json-full"
                out_json = d / "x.json"
                if out_json.exists():
                    out_json.unlink()
                r = run_child(cmd, timeout=timeout)
                unet = unet_side(out_json, side) if kind == "medmag" and r["rc"] == 0 else None
                if accepted:
                    ok = r["rc"] == 0 and r["rss_mb"] * MB <= lim
                else:
                    ok = r["rc"] == 3 and r["err"].startswith("ptolemy: error:")
                rec = {"name": f"memory-{mode}-{side}" + (f" ({models})" if models else ""), "mode": mode, "side": side, "pixels": side * side,
                       "rss_mb": r["rss_mb"], "budget_mb": lim / MB, "wall_s": r["wall_s"], "rc": r["rc"],
                       "err": r["err"], "accepted": accepted, "ok": ok, "unet": unet}
                log(f"{rec['name']}: rc {r['rc']}  peak RSS {r['rss_mb']:.0f} MB (budget {lim / MB:.0f} MB)  "
                    f"{r['wall_s']:.1f} s  {'ok' if ok else 'OVER / FAILED'}  {r['err'] if r['rc'] else ''}"
                    + (f"  U-Net {unet}" if unet else ""))
                rows.append(rec)
        finally:
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
    return rows


def format_memory(rows: list[dict]) -> str:
    """A table of `run_memory`'s records."""
    lines = [f"{'case':38s} {'rc':>3s} {'peak RSS MB':>12s} {'budget MB':>10s} {'wall s':>8s} {'U-Net on':>12s}  verdict"]
    for r in rows:
        lines.append(f"{r['name']:38s} {r['rc']:>3d} {r['rss_mb']:>12.0f} {r['budget_mb']:>10.0f} "
                     f"{r['wall_s']:>8.1f} {r.get('unet') or '':>12s}  {'ok' if r['ok'] else 'OVER / FAILED'}"
                     + ("" if r["accepted"] else " (refused: above the pixel budget)"))
    return "\n".join(lines)


if __name__ == "__main__":  # standalone: python bench/memory_bench.py [side ...] (lowmag and medmag)
    # MEMBENCH_MODES=lowmag,lowmag+plot,medmag (default lowmag,medmag), MEMBENCH_MODELS=ptolemy-2022
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run_bench import BIN, run_child

    sides = tuple(int(s) for s in sys.argv[1:]) or SIDES
    modes = tuple(os.environ.get("MEMBENCH_MODES", ",".join(MODES)).split(","))
    models = os.environ.get("MEMBENCH_MODELS") or None

    def cli(mode, image, out):
        return [str(BIN / "ptolemy"), mode, str(image), "-f", "json", "-o", str(out)] + (
            ["--models", models] if models else [])

    print(format_memory(run_memory(run_child, cli, models, sides, modes)))
