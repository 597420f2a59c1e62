#!/usr/bin/env python
"""`make bench`: wall time, peak memory, stage times and throughput of the ptolemy CLI.

Per input (real examples from ../shared when present, synthetic images cached in
bench/inputs/):
- whole-process wall time of ``ptolemy lowmag|medmag IMG -f json -o TMP``: median of 5 warm
  runs after 1 warm-up (``--quick``: 1 run; inputs whose warm-up takes > 30 s: 2 runs);
- peak RSS of that CLI process (os.wait4 rusage of the child, MB = 10^6 bytes);
- per-stage times in-process (result.timings_s of find_squares/find_holes, one run in a
  separate child process), number of targets, squares/s (lowmag), achieved GFLOP/s of the
  classifier and U-Net (FLOPs counted from the model set's manifest architecture);
- start-up: ``ptolemy --version`` wall time and its share of the example's wall time;
- first run of each example in a fresh process with an empty numba cache (NUMBA_CACHE_DIR = a
  fresh temp dir), with the installed kernel backend (normally the ahead-of-time extension:
  nothing to compile) and with the jit fallback forced (PTOLEMY_KERNELS=jit: numba compiles).

Prints a table and writes bench/results/bench.json. Options: --quick, --models NAME,
--only lowmag|medmag|server|memory, --runs N, --skip-large. ``--only server`` runs the server row
alone (bench/server_bench.py: ``ptolemy serve`` latency, select_next_square, soak, session
simulator; its own options follow, e.g. ``--only server --parts soak --grids 5``). ``--only
memory``: peak RSS of both pipelines on a 6000², a 16384² and a 40000² image and the budget they keep
(bench/memory_bench.py, docs/BENCH.md#memory-budget).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
SHARED = Path(os.environ.get("PTOLEMY_SHARED", REPO.parent / "shared")) / "ptolemy-2022"
INPUTS = HERE / "inputs"
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

MB = 1e6
LARGE = ("lowmag-montage-8192", "medmag-4096", "lowmag-serialem-6x6")

# Targets from the issue: (max wall s, max RSS MB, extra)
TARGETS = {
    "lowmag-example": {"wall_s": 3.0, "rss_mb": 250},
    "lowmag-2048": {"wall_s": 15.0, "rss_mb": 400},
    "lowmag-montage-8192": {"squares_per_s": 35.0, "rss_mb": 1500},
    # issue 13: a SerialEM montage (MRC stack + .mdoc) of 6×6 pieces of 2048² px, assembled and run
    "lowmag-serialem-6x6": {"rss_mb": 2000},
    "medmag-example": {"wall_s": 6.0, "rss_mb": 400},
    "medmag-2048": {"wall_s": 15.0, "rss_mb": 700},
    "medmag-4096": {"wall_s": 60.0, "rss_mb": 1500},
    "first-run": {"wall_s": 10.0},
}


# ----------------------------------------------------------------------------- inputs
def bench_inputs(only: str | None, skip_large: bool, montage_pitch: float) -> list[dict]:
    specs = []
    if only in (None, "lowmag"):
        specs.append({"name": "lowmag-example", "mode": "lowmag", "path": SHARED / "images/lowmag_20may08a_16760340.mrc"})
        specs.append({"name": "lowmag-2048", "mode": "lowmag", "gen": ("lowmag", 2048, (2048, 2048),
                      {"pitch": 96.0, "angle_deg": 17.0}, {"pitch": 96.0, "angle_deg": 17.0})})
        if not skip_large:
            specs.append({"name": "lowmag-montage-8192", "mode": "lowmag", "gen": ("lowmag", 8192, (8192, 8192),
                          {"pitch": montage_pitch, "angle_deg": 8.0, "tiles": 4},
                          {"pitch": montage_pitch, "angle_deg": 8.0, "disk": True})})
            specs.append({"name": "lowmag-serialem-6x6", "mode": "lowmag", "serialem_montage": True})
    if only in (None, "medmag"):
        specs.append({"name": "medmag-example", "mode": "medmag", "path": SHARED / "images/medmag_readme_1024x1440.mrc"})
        med = {"film": "R2/2", "pixel_nm": 13.8, "film_material": "carbon", "tilt_deg": 0.0, "invert": False,
               "angle_deg": 33.0, "bars": 0, "broken": False}
        specs.append({"name": "medmag-2048", "mode": "medmag", "gen": ("medmag", 2048, (2048, 2048), med, {"spacing": 290.0})})
        if not skip_large:
            specs.append({"name": "medmag-4096", "mode": "medmag", "gen": ("medmag", 4096, (4096, 4096), med, {"spacing": 290.0})})
    out = []
    for s in specs:
        if s.pop("serialem_montage", False):
            # made in a child process: a forked CLI child inherits this process's peak RSS in
            # its rusage, so this process must stay small
            t0 = time.perf_counter()
            made = subprocess.run([sys.executable, str(HERE / "synth_inputs.py"), "serialem-montage", str(INPUTS),
                                   s["name"]], capture_output=True, text=True, check=True)
            s["path"] = Path(made.stdout.strip().splitlines()[-1])
            s["input"] = json.loads((s["path"].parent / "info.json").read_text())
            s["input"]["prepare_s"] = round(time.perf_counter() - t0, 2)
        elif "gen" in s:
            # also in a child process: generating an 8192² atlas here took this process to ≈ 2 GB,
            # which every later CLI child then reported as its own peak RSS
            kind, seed, shape, proj_kw, own_kw = s.pop("gen")
            t0 = time.perf_counter()
            made = subprocess.run([sys.executable, str(HERE / "synth_inputs.py"), "make-input", str(INPUTS),
                                   json.dumps([s["name"], kind, seed, list(shape), proj_kw, own_kw])],
                                  capture_output=True, text=True, check=True)
            s["path"] = Path(made.stdout.strip().splitlines()[-1])
            s["input"] = json.loads(s["path"].with_suffix(".json").read_text())
            s["input"]["prepare_s"] = round(time.perf_counter() - t0, 2)
        else:
            s["input"] = {"source": "published example", "shape": None}
        if not Path(s["path"]).exists():
            print(f"skip {s['name']}: {s['path']} not found")
            continue
        out.append(s)
    return out


# ----------------------------------------------------------------------------- processes
def run_child(cmd: list[str], env: dict | None = None, timeout: float = 900.0) -> dict:
    """Run cmd; wall seconds, peak RSS (MB) of that child, exit code, last stderr line."""
    t0 = time.perf_counter()
    timed_out = False
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                timed_out = True
                break
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        out.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()
        stdout = out.read().decode(errors="replace")
    msg = tail[-1] if tail else ""
    if timed_out:
        msg = f"killed after {timeout:.0f} s (--timeout)"
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss * 1024 / MB, "rc": p.returncode,
            "err": msg, "stdout": stdout, "timed_out": timed_out}


def cli_cmd(mode: str, image: Path, out_json: Path, models: str | None, cli_has_models: bool) -> list[str]:
    cmd = [str(BIN / "ptolemy"), mode, str(image), "-f", "json", "-o", str(out_json)]
    if models and cli_has_models:
        cmd += ["--models", models]
    return cmd


def cli_supports_models() -> bool:
    try:
        r = subprocess.run([str(BIN / "ptolemy"), "lowmag", "--help"], capture_output=True, text=True, timeout=60)
        return "--models" in (r.stdout + r.stderr)
    except (OSError, subprocess.TimeoutExpired):
        return False


# ----------------------------------------------------------------------------- FLOPs
def _conv_flops(cin, cout, k, h, w):
    return 2.0 * cin * cout * k * k * h * w


def square_cnn_flops(arch, h: int = 240, w: int = 240) -> float:
    """Multiply-adds × 2 of the square classifier (modelspec.SquareClassifierArch) on one h×w crop."""
    c, ks = arch.channels, arch.kernels
    pk, ps, pp = arch.pool.kernel, arch.pool.stride, arch.pool.padding
    total, cin = 0.0, 1
    for k in ks:
        h, w = h - k + 1, w - k + 1
        total += _conv_flops(cin, c, k, h, w)
        h, w = (h + 2 * pp - pk) // ps + 1, (w + 2 * pp - pk) // ps + 1
        cin = c
    hk = arch.head_kernel
    total += _conv_flops(c, 1, hk, max(h - hk + 1, 1), max(w - hk + 1, 1))
    return total


def hole_cnn_flops(arch, h: int, w: int) -> float:
    """FLOPs of the hole classifier (modelspec.HoleClassifierArch) on one h×w crop."""
    c, ks = arch.channels, arch.kernels
    pk, ps, pp = arch.pool.kernel, arch.pool.stride, arch.pool.padding
    total, cin = 0.0, 1
    for k in ks:
        h, w = h - k + 1, w - k + 1
        if h <= 0 or w <= 0:
            return total
        total += _conv_flops(cin, c, k, h, w)
        h, w = (h + 2 * pp - pk) // ps + 1, (w + 2 * pp - pk) // ps + 1
        cin = c
    return total + 2.0 * c


def unet_flops(arch, h: int, w: int) -> float:
    """FLOPs of the U-Net (modelspec.UnetArch) on an h×w (padded) image."""
    c, depth = arch.channels, arch.depth
    sizes, total = [], 0.0
    for i in range(depth):
        total += _conv_flops(1 if i == 0 else c, c, 3, h, w)
        sizes.append((h, w))
        if i < depth - 1:
            h, w = h // 2, w // 2
    for j in range(depth - 1):
        sh, sw = sizes[depth - 2 - j]
        total += _conv_flops(2 * c, c, 3, sh, sw)
    total += _conv_flops(c, 1, 3, *sizes[0])
    return total


def unet_padded_shape(h: int, w: int) -> tuple[int, int]:
    """docs/ALGORITHM.md#medmag-padding: < 1024 rows → 1024, < 1440 cols → 1440, else the next multiple of 512."""
    ph = 1024 if h < 1024 else int(math.ceil(h / 512) * 512)
    pw = 1440 if w < 1440 else int(math.ceil(w / 512) * 512)
    return ph, pw


# ----------------------------------------------------------------------------- in-process stage run
def inproc_main(mode: str, image: str, models: str | None) -> int:
    """Child entry: run the pipeline once in this process, print JSON (timings, counts, FLOPs)."""
    t0 = time.perf_counter()
    from ptolemy_rt.models import load_model_set

    ms = load_model_set(models)
    t_load = time.perf_counter() - t0
    out: dict = {"models": ms.name, "model_load_s": t_load}
    t1 = time.perf_counter()
    from ptolemy_rt.sources import load_image  # a SerialEM montage / EPU atlas as the CLI reads it

    image = load_image(image, kind=mode)
    if mode == "lowmag":
        from ptolemy_rt.lowmag import find_squares

        res = find_squares(image, models=ms)
        items = res.squares
    else:
        from ptolemy_rt.medmag import find_holes

        res = find_holes(image, models=ms)
        items = res.holes
    arch = ms.model("square_classifier" if mode == "lowmag" else "hole_classifier").architecture
    uarch = ms.model("hole_unet").architecture if mode == "medmag" else None
    out.update(flops_from_items(mode, [it.vertices for it in items], res.image_shape, arch, uarch))
    out["total_s"] = time.perf_counter() - t1
    out["timings_s"] = {k: float(v) for k, v in (res.timings_s or {}).items()}
    out["n_targets"] = len(items)
    out["image_shape"] = list(res.image_shape)
    out["reason"] = res.reason
    print(json.dumps(out))
    return 0


def flops_from_items(mode: str, vertices: list, image_shape, arch_cls, arch_unet) -> dict:
    """Classifier (and U-Net) GFLOP for one run, from the targets' vertices ((x, y) px);
    architectures as modelspec classes ({} when the classifier's is unknown)."""
    out = {}
    if arch_cls is None:
        return out
    if mode == "lowmag":
        out["classifier_gflop"] = square_cnn_flops(arch_cls) * len(vertices) / 1e9
    else:
        fl = 0.0
        for v in vertices:
            a, b = math.dist(v[0], v[1]), math.dist(v[1], v[2])
            fl += hole_cnn_flops(arch_cls, int(round(b)), int(round(a)))
        out["classifier_gflop"] = fl / 1e9
        if arch_unet is not None and image_shape:
            out["unet_gflop"] = unet_flops(arch_unet, *unet_padded_shape(*image_shape)) / 1e9
    return out


def manifest_archs(models: str | None) -> tuple:
    """(square, hole, unet) architectures (modelspec classes) of a model set's manifest,
    parsed without loading the set (None where unknown)."""
    from ptolemy_rt.errors import ModelSetError
    from ptolemy_rt.models import OWN_SET, PUBLISHED_SET, models_root
    from ptolemy_rt.modelspec import read_manifest

    try:
        root = models_root()
        name = models
        if name is None:
            name = OWN_SET if (root / OWN_SET / "manifest.json").exists() else PUBLISHED_SET
        spec = read_manifest(root / name / "manifest.json")
    except ModelSetError:
        return None, None, None
    return tuple(None if getattr(spec.models, k) is None else getattr(spec.models, k).architecture
                 for k in ("square_classifier", "hole_classifier", "hole_unet"))


def _stage_time(timings: dict, words: tuple[str, ...]) -> float | None:
    hits = [v for k, v in timings.items() if any(w in k.lower() for w in words)]
    return sum(hits) if hits else None


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 measured run per input")
    ap.add_argument("--models", default=None, help="model set (default: ptolemy-2022 when built)")
    ap.add_argument("--only", choices=["lowmag", "medmag", "server", "memory"], default=None,
                    help="one section (server: bench/server_bench.py, ptolemy serve latency / soak / simulator; "
                         "memory: peak RSS on 6000², 16384² and 40000² images, bench/memory_bench.py)")
    ap.add_argument("--runs", type=int, default=5, help="measured warm runs per input (default 5)")
    ap.add_argument("--inputs", default=None, help="comma-separated input names to run (default: all)")
    ap.add_argument("--quick-large", action="store_true",
                    help="the 8192 montage and the 4096 medmag image: 1 run, no warm-up")
    ap.add_argument("--skip-large", action="store_true", help="skip the 8192 montage and the 4096 medmag image")
    ap.add_argument("--montage-pitch", type=float, default=192.0, help="grid pitch of the 8192 montage, px")
    ap.add_argument("--stages", choices=["inproc", "cli"], default="inproc",
                    help="stage times from a separate in-process run (default) or from the last CLI run "
                         "(made with -f json-full; saves one pipeline run per input)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per process before it is killed")
    ap.add_argument("--out", default=str(RESULTS / "bench.json"))
    ap.add_argument("--_inproc", nargs=3, metavar=("MODE", "IMAGE", "MODELS"), help=argparse.SUPPRESS)
    a, rest = ap.parse_known_args(argv)
    if a.only == "server":  # the server row: options after --only server go to server_bench.py
        import server_bench

        return server_bench.main(rest)
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if a._inproc:
        mode, image, models = a._inproc
        return inproc_main(mode, image, None if models == "-" else models)

    models = a.models
    if models is None and (REPO / "onnx_models/ptolemy-2022/manifest.json").exists():
        models = "ptolemy-2022"
    if a.only == "memory" or a.only is None:
        import memory_bench

        def mem_cli(mode, image, out, m):
            return cli_cmd(mode, image, out, m, True)

        rows = []
        for m in dict.fromkeys([None, models]):  # the default set, and the published one when built
            rows += memory_bench.run_memory(run_child, lambda mode, image, out, m=m: mem_cli(mode, image, out, m),
                                            m, timeout=max(a.timeout, memory_bench.CASE_TIMEOUT_S))
        print(memory_bench.format_memory(rows))
        if a.only == "memory":
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            out = Path(a.out).with_name("memory.json")
            out.write_text(json.dumps({"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                                       "budget": {"base_bytes": memory_bench.BUDGET_BASE_BYTES, "bytes_per_px": memory_bench.BUDGET_BYTES_PER_PX}, "cases": rows}, indent=1))
            print(f"written {out}")
            return 0 if all(r["ok"] for r in rows) else 1
    has_models_opt = cli_supports_models()
    env_models = dict(os.environ)
    runs = 1 if a.quick else max(1, a.runs)
    inputs = bench_inputs(a.only, a.skip_large, a.montage_pitch)
    if a.inputs:
        wanted = {n.strip() for n in a.inputs.split(",") if n.strip()}
        inputs = [s for s in inputs if s["name"] in wanted]
    tmpdir = Path(tempfile.mkdtemp(prefix="ptolemy-bench-"))
    out_json = tmpdir / "x.json"
    report: dict = {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "models": models or "(default)",
                    "machine": {"platform": platform.platform(), "python": platform.python_version(),
                                "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()},
                    "runs": runs, "cli_has_models_option": has_models_opt, "inputs": [], "targets": TARGETS}

    # start-up cost
    ver = [run_child([str(BIN / "ptolemy"), "--version"]) for _ in range(3)]
    imp = [run_child([sys.executable, "-c", "import ptolemy_rt.cli"]) for _ in range(3)]
    report["startup"] = {"version_wall_s": statistics.median(r["wall_s"] for r in ver), "version_rc": ver[0]["rc"],
                         "import_cli_wall_s": statistics.median(r["wall_s"] for r in imp),
                         "version_rss_mb": max(r["rss_mb"] for r in ver)}
    print(f"start-up: ptolemy --version {report['startup']['version_wall_s']:.2f} s (rc {ver[0]['rc']}), "
          f"import ptolemy_rt.cli {report['startup']['import_cli_wall_s']:.2f} s")

    # first run with an empty numba cache (the examples): installed backend, then jit forced
    first = {}
    backend = subprocess.run([sys.executable, "-c", "from ptolemy_rt import kernels; print(kernels.backend())"],
                             capture_output=True, text=True).stdout.strip()
    report["kernel_backend"] = backend
    print(f"kernel backend: {backend}")
    for s in inputs:
        if s["name"] in ("lowmag-example", "medmag-example"):
            for label, extra in ((backend, {}), ("jit", {"PTOLEMY_KERNELS": "jit"})):
                if label == backend and extra:
                    continue
                with tempfile.TemporaryDirectory(prefix="numba-cold-") as cold:
                    env = dict(env_models, NUMBA_CACHE_DIR=cold, **extra)
                    r = run_child(cli_cmd(s["mode"], s["path"], out_json, models, has_models_opt), env=env,
                                  timeout=a.timeout)
                key = f"{s['name']} ({label})"
                first[key] = {"wall_s": r["wall_s"], "rss_mb": r["rss_mb"], "rc": r["rc"], "err": r["err"]}
                print(f"first run (cold numba cache) {key}: {r['wall_s']:.2f} s rc {r['rc']} "
                      f"{r['err'] if r['rc'] else ''}")
    report["first_run"] = first

    warmed = set()
    for s in inputs:
        name, mode, path = s["name"], s["mode"], s["path"]
        cmd = cli_cmd(mode, path, out_json, models, has_models_opt)
        rec = {"name": name, "mode": mode, "path": str(path), "input": s["input"]}
        n_runs = runs
        large = name in LARGE
        if large and a.quick_large:
            n_runs = 1
        if not (large and a.quick_large) and (not a.quick or mode not in warmed):
            w = run_child(cmd, env=env_models, timeout=a.timeout)
            rec["warmup_s"] = w["wall_s"]
            warmed.add(mode)
            if w["rc"] != 0:
                rec.update({"rc": w["rc"], "error": w["err"]})
                print(f"{name}: CLI failed (rc {w['rc']}): {w['err']}")
                report["inputs"].append(rec)
                continue
            if w["wall_s"] > 30 and n_runs > 2:
                n_runs = 2
        if a.stages == "cli":
            full_cmd = [("json-full" if c == "json" else c) for c in cmd]
            meas = [run_child(cmd, env=env_models, timeout=a.timeout) for _ in range(n_runs - 1)]
            meas.append(run_child(full_cmd, env=env_models, timeout=a.timeout))
        else:
            meas = [run_child(cmd, env=env_models, timeout=a.timeout) for _ in range(n_runs)]
        bad = [m for m in meas if m["rc"] != 0]
        if bad:
            rec.update({"rc": bad[0]["rc"], "error": bad[0]["err"]})
        walls = [m["wall_s"] for m in meas]
        rec.update({"runs": n_runs, "wall_s": statistics.median(walls), "wall_all_s": walls,
                    "cpu_s": statistics.median(m["cpu_s"] for m in meas),
                    "rss_mb": max(m["rss_mb"] for m in meas)})
        doc = None
        try:
            doc = json.loads(out_json.read_text())
            lst = doc.get("items", doc.get("squares", doc.get("holes"))) if isinstance(doc, dict) else doc
            rec["cli_targets"] = len(lst) if lst is not None else None
        except (OSError, ValueError):
            rec["cli_targets"] = None
        if a.stages == "cli":
            # stage times of the last CLI run (json-full), FLOPs from its targets
            if isinstance(doc, dict) and "timings_s" in doc:
                ac, ah, au = manifest_archs(models)
                verts = [it["vertices"] for it in doc.get("items", [])]
                st = {"timings_s": doc["timings_s"], "n_targets": len(verts), "image_shape": doc.get("shape"),
                      "source": "cli json-full", **flops_from_items(mode, verts, doc.get("shape"),
                                                                      ac if mode == "lowmag" else ah, au)}
                ip = {"rc": 0, "stdout": json.dumps(st)}
            else:
                ip = {"rc": 1, "err": "no json-full output"}
        else:
            # in-process stage times (separate child, so this process stays small)
            ip = run_child([sys.executable, str(Path(__file__)), "--_inproc", mode, str(path), models or "-"],
                           env=env_models, timeout=a.timeout)
        if ip["rc"] == 0:
            st = json.loads(ip["stdout"].strip().splitlines()[-1])
            rec["inproc"] = st
            rec["n_targets"] = st["n_targets"]
            cls_s = _stage_time(st["timings_s"], ("classif", "score", "cnn"))
            if cls_s and st.get("classifier_gflop"):
                rec["classifier_gflops_per_s"] = st["classifier_gflop"] / cls_s
            un_s = _stage_time(st["timings_s"], ("unet", "u-net", "localis", "localiz"))
            if un_s and st.get("unet_gflop"):
                rec["unet_gflops_per_s"] = st["unet_gflop"] / un_s
            if mode == "lowmag" and rec.get("wall_s"):
                rec["squares_per_s"] = st["n_targets"] / rec["wall_s"]
        else:
            rec["inproc_error"] = ip["err"]
        if name == "lowmag-example" and rec.get("wall_s"):
            rec["startup_share"] = report["startup"]["version_wall_s"] / rec["wall_s"]
        report["inputs"].append(rec)
        print(f"{name}: {rec.get('wall_s', float('nan')):.2f} s  {rec.get('rss_mb', float('nan')):.0f} MB  "
              f"targets {rec.get('n_targets')}  stages {rec.get('inproc', {}).get('timings_s')}")
    report["load_avg_end"] = os.getloadavg()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(a.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    tmp.replace(a.out)
    print()
    print(format_table(report))
    print(f"\nwritten {a.out}")
    for f in tmpdir.iterdir():
        f.unlink()
    tmpdir.rmdir()
    if a.only is None:  # make bench: the server row too
        import server_bench

        server_bench.main([])
    return 0


def _ok(value, limit, higher_is_better=False) -> str:
    if value is None or limit is None:
        return ""
    good = value >= limit if higher_is_better else value <= limit
    return "ok" if good else "MISS"


def format_table(report: dict) -> str:
    """Markdown table of the measurements beside the targets."""
    rows = ["| input | shape | targets | wall s (median) | target | CPU s | peak RSS MB | target | squares/s | "
            "classifier GFLOP/s | U-Net GFLOP/s | stage times s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["inputs"]:
        t = TARGETS.get(r["name"], {})
        shape = r.get("inproc", {}).get("image_shape") or r["input"].get("shape")
        shape_s = "×".join(map(str, shape)) if shape else ""
        if "error" in r and "wall_s" not in r:
            rows.append(f"| {r['name']} | {shape_s} | – | failed (rc {r.get('rc')}): {r['error']} | | | | | | | | |")
            continue
        wall, rss = r.get("wall_s"), r.get("rss_mb")
        sps = r.get("squares_per_s")
        wt = t.get("wall_s")
        wall_target = f"≤ {wt:g} {_ok(wall, wt)}" if wt else (
            f"≥ {t['squares_per_s']:g} sq/s {_ok(sps, t['squares_per_s'], True)}" if "squares_per_s" in t else "")
        rt = t.get("rss_mb")
        stages = r.get("inproc", {}).get("timings_s") or {}
        stage_s = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
        g1 = r.get("classifier_gflops_per_s")
        g2 = r.get("unet_gflops_per_s")
        rows.append(
            f"| {r['name']} | {shape_s} | {r.get('n_targets', r.get('cli_targets', ''))} | "
            f"{wall:.2f} ({r.get('runs')} runs) | {wall_target} | {r.get('cpu_s', float('nan')):.1f} | {rss:.0f} | {f'≤ {rt:g} ' + _ok(rss, rt) if rt else ''} | "
            f"{f'{sps:.1f}' if sps else ''} | {f'{g1:.1f}' if g1 else ''} | {f'{g2:.1f}' if g2 else ''} | {stage_s} |")
    st = report.get("startup", {})
    ex = next((r for r in report["inputs"] if r["name"] == "lowmag-example" and r.get("wall_s")), None)
    m = report.get("machine", {})
    la0, la1 = m.get("load_avg_start"), report.get("load_avg_end")
    lines = [f"{report.get('date_utc', '')} UTC, models {report.get('models')}, {m.get('cpus')} CPUs, "
             f"Python {m.get('python')}; load average at start {la0[0]:.1f}, at end {la1[0]:.1f}"
             if la0 and la1 else "", "", "\n".join(rows), ""]
    share = f" ({100 * st['version_wall_s'] / ex['wall_s']:.0f} % of the lowmag example)" if ex else ""
    lines.append(f"start-up: `ptolemy --version` {st.get('version_wall_s', float('nan')):.2f} s{share}; "
                 f"`import ptolemy_rt.cli` {st.get('import_cli_wall_s', float('nan')):.2f} s")
    for k, v in report.get("first_run", {}).items():
        lines.append(f"first run with an empty numba cache, {k} kernels: {v['wall_s']:.2f} s, {v['rss_mb']:.0f} MB "
                     f"(target ≤ 10 s {_ok(v['wall_s'], 10.0) if v['rc'] == 0 else 'failed rc ' + str(v['rc'])})")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
