#!/usr/bin/env python
"""Speed of the default model set against the published one, in one run (part of `make bench`).

    python bench/sets_bench.py [--runs 7] [--models NAME] [--json OUT]

For each real example (``../shared/ptolemy-2022/images``: the low-mag atlas 1024², the
medium-mag image 1024×1440) the whole process ``ptolemy lowmag|medmag IMG -f json -o TMP``
is run with the default set (or ``--models``) and with ``ptolemy-2022``, alternately (one
run of each in turn, after one warm-up of each), so that both see the same machine load;
the ratio of the medians is compared with the targets of issue 16 (the default set's time
≤ 0.5× the published set's on the low-mag example, ≤ 0.35× on the medium-mag one). Peak RSS
(MB = 10^6 bytes) is the largest of the runs. Needs the published set (`make models`);
without it or without ../shared the script says so and exits 0.
Ratios measured in one run are comparable across machines; the seconds are not.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_bench import SHARED, cli_cmd, run_child  # noqa: E402

from ptolemy_rt.models import OWN_SET, PUBLISHED_SET, find_set_folder  # noqa: E402

#: example -> (mode, file under ../shared/ptolemy-2022/images, max ratio default / published)
CASES = {
    "lowmag-example": ("lowmag", "lowmag_20may08a_16760340.mrc", 0.5),
    "medmag-example": ("medmag", "medmag_readme_1024x1440.mrc", 0.35),
}


def compare(models: str, runs: int, log=print) -> list[dict]:
    """One row per example: medians (s), peak RSS (MB), ratio, target, ok."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="ptolemy-sets-bench-") as tmp:
        out = Path(tmp) / "x.json"
        for name, (mode, file, limit) in CASES.items():
            image = SHARED / "images" / file
            cmds = {m: cli_cmd(mode, image, out, m, True) for m in (models, PUBLISHED_SET)}
            for cmd in cmds.values():  # warm-up (file cache, kernels)
                r = run_child(cmd)
                if r["rc"] != 0:
                    raise SystemExit(f"{' '.join(cmd)}: exit {r['rc']}: {r['err']}")
            times = {m: [] for m in cmds}
            rss = {m: 0.0 for m in cmds}
            for _ in range(runs):
                for m, cmd in cmds.items():
                    r = run_child(cmd)
                    times[m].append(r["wall_s"])
                    rss[m] = max(rss[m], r["rss_mb"])
            med = {m: statistics.median(v) for m, v in times.items()}
            ratio = med[models] / med[PUBLISHED_SET]
            row = {"input": name, "models": models, "wall_s": round(med[models], 3),
                   "published_wall_s": round(med[PUBLISHED_SET], 3), "ratio": round(ratio, 3), "max_ratio": limit,
                   "ok": ratio <= limit, "rss_mb": round(rss[models], 1), "published_rss_mb": round(rss[PUBLISHED_SET], 1),
                   "runs": runs}
            log(f"{name}: {models} {row['wall_s']:.2f} s / {PUBLISHED_SET} {row['published_wall_s']:.2f} s = "
                f"{ratio:.3f} (target <= {limit}: {'ok' if row['ok'] else 'MISSED'}); peak RSS {row['rss_mb']:.0f} / "
                f"{row['published_rss_mb']:.0f} MB")
            rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="measured runs per set and example (default 7)")
    ap.add_argument("--models", default=OWN_SET, help=f"the set compared with {PUBLISHED_SET} (default {OWN_SET})")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    a = ap.parse_args(argv)
    if find_set_folder(PUBLISHED_SET) is None or not (SHARED / "images").is_dir():
        print(f"sets bench skipped: needs the {PUBLISHED_SET} set (make models) and {SHARED / 'images'}")
        return 0
    rows = compare(a.models, max(1, a.runs))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
