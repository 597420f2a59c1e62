#!/usr/bin/env python
"""The ``server`` row of ``make bench`` (``bench/run_bench.py --only server``): ``ptolemy serve``
on 127.0.0.1, driven as Leginon drives it (JSON text bodies, no Content-Type).

- latency, both model sets, warm server: ``push_and_evaluate_mm`` of a 1024×1440 synthetic
  image sent as a nested-list JSON body (client clock, from the first byte sent to the
  reply parsed: reading, parsing, pipeline, features, hole GP, SQLite, CSV) against
  ``find_holes`` on the same image in a warm worker process of its own (target ≤ 1.15×);
  both warmed with 2 runs, then ``--runs`` runs interleaved (one each, in turn, so both see
  the same machine load), medians; each push carries a new ``mm_img_id`` so the server
  recomputes;
- ``select_next_square`` with 500 squares and 300 visited holes (state written beforehand),
  both learning rules (target ≤ 0.1 s);
- soak: 20 grids × 40 squares × 30 holes, 10 visits per square, ``select_next_square``
  after every second square, over HTTP against a server whose image pipelines are replaced
  by the session simulator's rows (``--stub``, so the soak measures the server, not the
  networks): RSS of the server process after each grid (flat = memory does not grow
  with the state), its peak, p50 / p99 latency per endpoint;
- the session simulator's table (`ptolemy_rt.session_sim`, 10 seeds).

Writes bench/results/server.json and prints the figures.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
ENV = dict(os.environ, PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAST_TIMING = [""]  # the Server-Timing header of the last reply (parse, compute, total; ms)


def server_timing(text: str) -> dict:
    """'parse;dur=1.5, compute;dur=2' → {"parse": 0.0015, "compute": 0.002} (seconds)."""
    out = {}
    for part in text.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur) / 1e3
    return out


def request(port: int, method: str, path: str, data: bytes | None = None):
    """One call as requests.post(url, json_text) makes it: (status, reply JSON, seconds)."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        c.putrequest(method, path)
        data = data if data is not None else b""
        c.putheader("Content-Length", str(len(data)))
        c.endheaders(data)
        r = c.getresponse()
        out = json.loads(r.read() or b"null")
        LAST_TIMING[0] = r.getheader("Server-Timing") or ""
        return r.status, out, time.perf_counter() - t0
    finally:
        c.close()


def start_server(state: Path, port: int, models: str | None, rule: str = "published", stub: bool = False):
    if stub:
        cmd = [sys.executable, str(HERE / "server_bench.py"), "--_stub", str(state), str(port), rule]
    else:
        cmd = [sys.executable, "-m", "ptolemy_rt.cli", "serve", "--port", str(port), "--state", str(state),
               "--learning", rule] + (["--models", models] if models else [])
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t_end = time.time() + 300
    while time.time() < t_end:
        if p.poll() is not None:
            raise RuntimeError(f"server exited {p.returncode}: {p.stderr.read()}")
        try:
            if request(port, "GET", "/health")[0] == 200:
                return p
        except OSError:
            time.sleep(0.2)
    p.kill()
    raise RuntimeError("server did not start")


def stop(p) -> None:
    p.terminate()
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MB (10^6 bytes)."""
    got = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                got[k] = int(v.split()[0]) * 1024 / 1e6
    return got.get("VmRSS", float("nan")), got.get("VmHWM", float("nan"))


def pct(xs, q) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


# ----------------------------------------------------------------------------- latency
def inproc_holes_main(models: str, warm: int) -> int:
    """Child: a warm process running find_holes on the bench image once per line read from
    stdin, printing each compute time (s); ``warm`` runs first, untimed."""
    from ptolemy_rt import synthetic
    from ptolemy_rt.medmag import find_holes
    from ptolemy_rt.models import load_model_set

    ms = load_model_set(models)
    img, _ = synthetic.medmag_image(3, shape=(1024, 1440))
    for _ in range(warm):
        find_holes(img, models=ms)
    print("ready", flush=True)
    for _ in sys.stdin:
        t0 = time.perf_counter()
        find_holes(img, models=ms)
        print(time.perf_counter() - t0, flush=True)
    return 0


def latency(models: str, runs: int) -> dict:
    import numpy as np

    from ptolemy_rt import synthetic

    img, _ = synthetic.medmag_image(3, shape=(1024, 1440))
    nested = img.astype(np.int64).tolist() if np.all(img == np.round(img)) else img.tolist()
    with tempfile.TemporaryDirectory(prefix="ptolemy-srv-bench-") as d:
        port = free_port()
        srv = start_server(Path(d), port, models)
        worker = subprocess.Popen([sys.executable, str(HERE / "server_bench.py"), "--_inproc", models or "-", "2"],
                                  env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert worker.stdout.readline().strip() == "ready"
            atlas, _ = synthetic.atlas(3, shape=(512, 512))
            request(port, "POST", "/push_lm", json.dumps({"image": atlas.tolist(), "grid_id": 1, "tile_id": 1}).encode())
            st, text, _ = request(port, "GET", "/current_lm_state")
            sq = int(text.splitlines()[1].split(",")[0])
            body = lambda k: json.dumps({"image": nested, "grid_id": 1, "tile_id": 1, "square_id": sq,  # noqa: E731
                                         "mm_img_id": k})
            for k in range(2):  # warm-up (as the worker's 2 untimed runs)
                request(port, "POST", "/push_and_evaluate_mm", body(-1 - k).encode())
            http_s, inproc_s, timing = [], [], []
            for k in range(runs):  # interleaved with the in-process runs: same machine load
                data = body(k + 1).encode()  # the client's json.dumps is not timed; the transfer is
                st, _, t = request(port, "POST", "/push_and_evaluate_mm", data)
                assert st == 200, st
                http_s.append(t)
                timing.append(server_timing(LAST_TIMING[0]))
                worker.stdin.write("\n")
                worker.stdin.flush()
                inproc_s.append(float(worker.stdout.readline()))
            peaks = {"server": peak_rss_mb(srv.pid), "inproc": peak_rss_mb(worker.pid)}
        finally:
            stop(srv)
            worker.stdin.close()
            worker.wait(timeout=60)
    h, i = statistics.median(http_s), statistics.median(inproc_s)
    med = {k: statistics.median(t.get(k, float("nan")) for t in timing) for k in ("parse", "compute", "total")}
    return {"models": models, "body_mb": len(data) / 1e6, "http_s": http_s, "inproc_s": inproc_s,
            "http_median_s": h, "inproc_median_s": i, "ratio": h / i,
            # server side: parse = receiving and parsing the body, compute = pipeline + hole features
            "server_parse_median_s": med["parse"], "server_compute_median_s": med["compute"],
            "server_total_median_s": med["total"],
            # peak RSS (VmHWM) of the server process and of the in-process worker, MB
            "server_peak_rss_mb": peaks["server"], "inproc_peak_rss_mb": peaks["inproc"]}


def peak_rss_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of a live process, MB (Linux /proc; NaN elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def select_latency(rule: str, runs: int = 7) -> dict:
    """select_next_square with 500 squares and 300 visited holes (state written first).

    Each timed call follows one more exposure (a ``visit_holes`` of one hole, not timed), so
    the training data change and every call fits the GP anew, as in a session (the fit of
    unchanged data is remembered: ``repeat_*`` are calls with nothing new in between)."""
    import numpy as np

    from ptolemy_rt.server_store import HoleRow, SquareRow, Store

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="ptolemy-srv-bench-") as d:
        st = Store(d)
        rows = [SquareRow((float(x), float(y)), ((x - 5, y - 5), (x + 5, y - 5), (x + 5, y + 5), (x - 5, y + 5)),
                          float(rng.random()), 150.0, 100.0, rng.normal([150, 220, 400, 9000], [30, 30, 80, 900]))
                for x, y in rng.uniform(10, 1000, (500, 2))]
        sq = st.add_squares(1, 1, rows)
        spare = []
        for s in sq[:60]:  # 60 visited squares, 5 visited holes each (300 - runs - 1 before the timed calls)
            hs = st.add_holes(1, s, 1, [HoleRow((10.0 * k, 5.0), 50.0, 0.8, rng.normal(size=5)) for k in range(8)])
            n_now = 5 if len(spare) >= runs + 1 else 4
            st.visit_holes(hs[:n_now], list(rng.uniform(2.5, 9, n_now)), list(rng.uniform(20, 120, n_now)))
            spare += hs[n_now:5]
        st.close()
        port = free_port()
        srv = start_server(Path(d), port, None, rule=rule)
        try:
            ts, rep = [], []
            for k in range(runs + 1):  # the first (untimed) warms the process
                body = {"hole_ids": [spare[k]], "ctfs": [float(rng.uniform(2.5, 4.9))],  # < 5 Å: a target changes
                        "ice_thicknesses": [float(rng.uniform(20, 120))]}
                assert request(port, "POST", "/visit_holes", json.dumps(body).encode())[0] == 200
                code, text, t = request(port, "POST", "/select_next_square", b'{"value": -1}')
                assert code == 200 and len(text.splitlines()) == 441, (code, len(text.splitlines()))
                ts.append(t)
            for _ in range(3):
                rep.append(request(port, "POST", "/select_next_square", b'{"value": -1}')[2])
        finally:
            stop(srv)
    return {"rule": rule, "squares": 500, "visited_holes": 300, "median_s": statistics.median(ts[1:]),
            "max_s": max(ts[1:]), "repeat_median_s": statistics.median(rep)}


# ----------------------------------------------------------------------------- soak
def stub_main(state: str, port: int, rule: str) -> int:
    """Child: ``ptolemy serve`` with the image pipelines replaced by simulator rows: a pushed
    image's pixel [0, 0] is the seed of its rows (40 squares per tile, 30 holes per image)."""
    import numpy as np
    import uvicorn

    from ptolemy_rt.server import PtolemyService, create_app
    from ptolemy_rt.server_store import HoleRow, SquareRow

    class Stub(PtolemyService):
        def push_lm_ids(self, d, raw_mrc=None):
            from ptolemy_rt.server import _int, image_from_body

            pix = image_from_body(d, raw_mrc, "push_lm")
            rng = np.random.default_rng(int(pix[0, 0]))
            rows = []
            for k in range(40):
                x, y = 60.0 + 120 * (k % 8), 60.0 + 120 * (k // 8)
                b = float(rng.uniform(95, 230))
                rows.append(SquareRow((x, y), ((x - 40, y - 40), (x + 40, y - 40), (x + 40, y + 40), (x - 40, y + 40)),
                                      float(rng.random()), b, 6400.0, np.array([b, b + 40, rng.uniform(100, 900), 6400])))
            ids = self.store.add_squares(_int(d, "grid_id", True, "push_lm"), _int(d, "tile_id", False, "push_lm"),
                                         rows, "stub")
            return {"square_ids": ids}

        def _holes_of(self, pix, loaded=None):
            rng = np.random.default_rng(int(pix[0, 0]))
            return [HoleRow((120.0 + 200 * (k % 6), 110.0 + 200 * (k // 6)), 50.0, float(rng.random()),
                            rng.normal(size=5)) for k in range(30)]

    app = create_app(state, service=Stub(state, rule=rule))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    return 0


def soak(grids: int = 20, squares: int = 40, holes: int = 30, visits: int = 10, rule: str = "fitted") -> dict:
    import numpy as np

    lat: dict = {}
    rss = []
    with tempfile.TemporaryDirectory(prefix="ptolemy-srv-soak-") as d:
        port = free_port()
        srv = start_server(Path(d), port, None, rule=rule, stub=True)
        rng = np.random.default_rng(1)

        def call(method, path, body=None):
            code, out, t = request(port, method, path, None if body is None else json.dumps(body).encode())
            assert code == 200, (path, code, out)
            lat.setdefault(path, []).append(t)
            return out

        t_start = time.perf_counter()
        try:
            call("POST", "/initialize_new_session", {"historical_state_paths": []})
            img = np.zeros((64, 64))
            n_visits = 0
            for g in range(grids):
                img[0, 0] = g + 1
                call("POST", "/push_lm", {"image": img.tolist(), "grid_id": g + 1, "tile_id": 1})
                lm = call("GET", "/current_lm_state").splitlines()[1:]
                mine = [int(r.split(",")[0]) for r in lm if r.split(",")[2] == str(g + 1)]
                assert len(mine) == squares
                for k, s in enumerate(mine):
                    call("POST", "/set_noice_hole_intensity", {"value": 1000.0})
                    img[0, 0] = 10_000 + 100 * g + k
                    reply = call("POST", "/push_and_evaluate_mm", {"image": img.tolist(), "grid_id": g + 1,
                                                                   "tile_id": 1, "square_id": s, "mm_img_id": k})
                    hid = [int(r.split(",")[0]) for r in reply.splitlines()[1:]]
                    assert len(hid) == holes
                    for h in hid[:visits]:
                        call("POST", "/visit_holes", {"hole_ids": [h], "ctfs": [float(rng.uniform(2.5, 9))],
                                                      "ice_thicknesses": [float(rng.uniform(10, 150))]})
                        n_visits += 1
                    if k % 2 == 1:
                        call("POST", "/select_next_square", {"value": -1})
                rss.append(rss_mb(srv.pid))
                print(f"  soak grid {g + 1}/{grids}: RSS {rss[-1][0]:.0f} MB", flush=True)
            wall = time.perf_counter() - t_start
            health = call("GET", "/health")
        finally:
            stop(srv)
    return {"grids": grids, "squares_per_grid": squares, "holes_per_square": holes, "visits": n_visits,
            "rule": rule, "wall_s": wall, "rss_mb_after_each_grid": [r[0] for r in rss], "peak_rss_mb": rss[-1][1],
            "rss_growth_mb_grid2_to_last": rss[-1][0] - rss[1][0] if len(rss) > 1 else 0.0,
            "state_counts": health,
            "latency_ms": {p: {"n": len(v), "p50": 1e3 * pct(v, 50), "p99": 1e3 * pct(v, 99)} for p, v in lat.items()}}


# ----------------------------------------------------------------------------- main
def run(args) -> dict:
    rep: dict = {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "cpus": os.cpu_count(),
                 "load_avg_start": os.getloadavg()}
    sets = [s for s in ("ptolemy-rt-synth-v1", "ptolemy-2022") if (REPO / "onnx_models" / s / "manifest.json").exists()]
    if "latency" in args.parts:
        rep["latency"] = []
        for m in sets:
            r = latency(m, args.runs)
            rep["latency"].append(r)
            print(f"push_and_evaluate_mm 1024x1440 nested list ({r['body_mb']:.0f} MB JSON), {m}: "
                  f"HTTP {r['http_median_s']:.3f} s, in-process find_holes {r['inproc_median_s']:.3f} s, "
                  f"ratio {r['ratio']:.3f} (target <= 1.15); server: receive+parse {r['server_parse_median_s']:.3f} s, "
                  f"pipeline+features {r['server_compute_median_s']:.3f} s; peak RSS server "
                  f"{r['server_peak_rss_mb']:.0f} MB, in-process worker {r['inproc_peak_rss_mb']:.0f} MB", flush=True)
    if "select" in args.parts:
        rep["select"] = []
        for rule in ("published", "fitted"):
            r = select_latency(rule)
            rep["select"].append(r)
            print(f"select_next_square 500 squares / 300 visits, {rule}: median {r['median_s'] * 1e3:.1f} ms, "
                  f"max {r['max_s'] * 1e3:.1f} ms (target <= 100 ms; each after a new exposure; "
                  f"repeated with nothing new: {r['repeat_median_s'] * 1e3:.1f} ms)", flush=True)
    if "soak" in args.parts:
        r = soak(args.grids)
        rep["soak"] = r
        print(f"soak {r['grids']} grids x {r['squares_per_grid']} squares x {r['holes_per_square']} holes, "
              f"{r['visits']} visits, {r['wall_s']:.0f} s: peak RSS {r['peak_rss_mb']:.0f} MB, RSS after grid 2 -> "
              f"{r['grids']}: {r['rss_mb_after_each_grid'][1]:.0f} -> {r['rss_mb_after_each_grid'][-1]:.0f} MB")
        for p, v in r["latency_ms"].items():
            print(f"  {p:26s} n={v['n']:5d}  p50 {v['p50']:8.1f} ms  p99 {v['p99']:8.1f} ms")
    if "sim" in args.parts:
        r = subprocess.run([sys.executable, "-m", "ptolemy_rt.session_sim", "--seeds", str(args.seeds), "--json",
                            str(RESULTS / "session_sim.json")], env=ENV, capture_output=True, text=True)
        print(r.stdout[-2000:], r.stderr[-2000:])
        if r.returncode == 0:
            rep["session_sim"] = json.loads((RESULTS / "session_sim.json").read_text())
    rep["load_avg_end"] = os.getloadavg()
    return rep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="ptolemy serve benchmark (make bench, server row)")
    ap.add_argument("--parts", default="latency,select,soak,sim", help="comma-separated: latency,select,soak,sim")
    ap.add_argument("--runs", type=int, default=3, help="latency runs per model set (default 3)")
    ap.add_argument("--grids", type=int, default=20, help="soak grids (default 20)")
    ap.add_argument("--seeds", type=int, default=10, help="simulator seeds (default 10)")
    ap.add_argument("--out", default=str(RESULTS / "server.json"))
    ap.add_argument("--_stub", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--_inproc", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._stub:
        return stub_main(a._stub[0], int(a._stub[1]), a._stub[2])
    if a._inproc:
        return inproc_holes_main(None if a._inproc[0] == "-" else a._inproc[0], int(a._inproc[1]))
    a.parts = {p.strip() for p in a.parts.split(",")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    rep = run(a)
    Path(a.out).write_text(json.dumps(rep, indent=1, default=str))
    print(f"written {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
