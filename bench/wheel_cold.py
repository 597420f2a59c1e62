#!/usr/bin/env python
"""Cold first run of `ptolemy lowmag` from the wheel, against the checkout (issue 13 target:
≤ 3 s for the low-mag example, no numba compilation on the AOT path, memory as from the
checkout).

    python bench/wheel_cold.py [--wheel WHEEL] [--image IMAGE] [--repeat N] [--json OUT]

Builds the wheel with the baseline kernels (`packaging/build_wheel.py`, unless --wheel),
installs it into a fresh venv outside the checkout (`packaging/fresh_venv.py`, no network),
then runs, alternately, the venv's ``ptolemy lowmag IMAGE`` and the checkout's
``python -m ptolemy_rt.cli lowmag IMAGE`` (PYTHONPATH = the checkout, its own kernels), each
in a new process with a new, empty NUMBA_CACHE_DIR (so any jit compilation would show, and
would leave files there), measured by /usr/bin/time (wall s, peak RSS). The first pair is
also cold for the venv's files; the machine's load (`uptime`) is printed before and after,
since the machine may be shared: compare the wheel with the checkout run right after it.
IMAGE defaults to the README low-mag example (../shared); the default model set is used.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "packaging"))
import fresh_venv  # noqa: E402

SHARED = Path(os.environ.get("PTOLEMY_SHARED", REPO.parent / "shared"))
LOWMAG = SHARED / "ptolemy-2022" / "images" / "lowmag_20may08a_16760340.mrc"
TIME = "/usr/bin/time"


def load() -> str:
    """The load averages (1, 5, 15 min) and CPU count."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def timed(cmd: list[str], env: dict, cwd: Path) -> dict:
    """Run cmd under /usr/bin/time; wall s, peak RSS MB, exit code, stdout."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        r = subprocess.run([TIME, "-o", t.name, "-f", "%e %M %U %S", *cmd], capture_output=True, text=True,
                           env=env, cwd=cwd, timeout=900)
        wall, rss_kb, user, sys_s = t.read().split()[-4:]
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr[-2000:]}")
    return {"wall_s": float(wall), "peak_rss_mb": int(rss_kb) / 1024.0, "user_s": float(user),
            "sys_s": float(sys_s), "stdout": r.stdout}


def run_once(which: str, script: Path, image: Path, work: Path, k: int) -> dict:
    cache = work / f"numba-cache-{which}-{k}"
    cache.mkdir()
    env = {k_: v for k_, v in os.environ.items() if k_ not in ("PTOLEMY_MODELS_DIR", "PYTHONPATH", "PTOLEMY_KERNELS")}
    env.update(NUMBA_CACHE_DIR=str(cache), XDG_DATA_HOME=str(work / "xdg"))
    if which == "wheel":
        cmd = [str(script), "lowmag", str(image)]
    else:
        env["PYTHONPATH"] = str(REPO)
        cmd = [sys.executable, "-m", "ptolemy_rt.cli", "lowmag", str(image)]
    out = timed(cmd, env, work)
    out["numba_cache_files"] = sum(1 for p in cache.rglob("*") if p.is_file())
    return out


def probe(py: str, env: dict, cwd: Path) -> str:
    """Which kernel backend a fresh process of this interpreter loads, and whether numba came with it."""
    code = ("import sys; from ptolemy_rt import kernels; b = kernels.backend(); "
            "print(b, 'numba imported' if 'numba' in sys.modules else 'numba not imported')")
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    return r.stdout.strip() or r.stderr.strip().splitlines()[-1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench/wheel_cold.py", description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help="an existing wheel (default: build one, baseline kernels)")
    ap.add_argument("--image", type=Path, default=LOWMAG)
    ap.add_argument("--repeat", type=int, default=2, help="wheel/checkout pairs (default 2)")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    a = ap.parse_args(argv)
    if not a.image.is_file():
        print(f"skipped: {a.image} not found")
        return 0
    work = Path(tempfile.mkdtemp(prefix="ptolemy-wheel-cold-"))
    try:
        whl = a.wheel
        if whl is None:
            r = subprocess.run([sys.executable, str(REPO / "packaging" / "build_wheel.py"), "--kernels", "baseline",
                                "--out", str(work / "dist")], capture_output=True, text=True, timeout=1800)
            if r.returncode != 0:
                raise SystemExit(r.stderr[-2000:])
            (whl,) = (work / "dist").glob("ptolemy_rt-*.whl")
        script = fresh_venv.make(whl, work / "venv")
        print(f"wheel: {whl.name}")
        print(f"before: {load()}")
        rows = []
        for k in range(a.repeat):  # the venv's first process ever is the first timed run
            for which in ("wheel", "checkout"):
                m = run_once(which, script, a.image, work, k)
                m.update(which=which, pair=k)
                rows.append(m)
        print(f"after: {load()}")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PTOLEMY_KERNELS")}
        env["NUMBA_CACHE_DIR"] = str(work / "numba-probe")
        backends = {"wheel": probe(str(fresh_venv.venv_python(work / "venv")), env, work),
                    "checkout": probe(sys.executable, dict(env, PYTHONPATH=str(REPO)), work)}
        print(f"kernels: wheel {backends['wheel']}; checkout {backends['checkout']}")
        same = len({r.pop("stdout") for r in rows}) == 1
        print(f"same result bytes from the wheel and the checkout: {same}")
        print("| run | wall s | user+sys s | peak RSS MB | numba cache files |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['which']} #{r['pair'] + 1} | {r['wall_s']:.2f} | {r['user_s'] + r['sys_s']:.2f} | "
                  f"{r['peak_rss_mb']:.0f} | {r['numba_cache_files']} |")
        for k in range(a.repeat):
            w, c = rows[2 * k], rows[2 * k + 1]
            print(f"pair {k + 1}: wheel/checkout wall {w['wall_s'] / c['wall_s']:.2f}, "
                  f"peak RSS {w['peak_rss_mb'] / c['peak_rss_mb']:.2f}")
        if a.json:
            a.json.write_text(json.dumps({"wheel": whl.name, "kernels": backends, "same_bytes": same, "runs": rows},
                                         indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
