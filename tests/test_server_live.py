"""`ptolemy serve` on 127.0.0.1: a replay client that calls it as ptolemyhandler.py does
(str body, no Content-Type, csv.DictReader on r.json()), SIGKILL and restart."""
from __future__ import annotations

import csv
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from conftest import LOWMAG_MRC, MEDMAG_MRC, REPO, needs_shared
from ptolemy_rt import synthetic

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replay:
    """The calls of ptolemyhandler.py: requests.post(url, json.dumps(body)) sends the JSON text
    as the body with no Content-Type; replies are read with r.json() and csv.DictReader."""

    def __init__(self, port: int):
        self.port = port

    def _req(self, method: str, path: str, body: str | None = None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            c.putrequest(method, path)
            data = body.encode() if body is not None else b""
            c.putheader("Content-Length", str(len(data)))
            c.endheaders(data)
            r = c.getresponse()
            return r.status, json.loads(r.read() or b"null")
        finally:
            c.close()

    def post(self, path: str, body: dict):
        return self._req("POST", path, json.dumps(body))

    def get(self, path: str):
        return self._req("GET", path)

    @staticmethod
    def rows(text: str) -> list[dict]:
        return list(csv.DictReader(io.StringIO(text)))


def _start(state, port, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-m", "ptolemy_rt.cli", "serve", "--port", str(port), "--state", str(state),
                          *extra],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t_end = time.time() + 90
    while time.time() < t_end:
        if p.poll() is not None:
            raise AssertionError(f"server exited {p.returncode}: {p.stderr.read()}")
        try:
            st, h = Replay(port).get("/health")
            if st == 200:
                return p
        except OSError:
            time.sleep(0.2)
    p.kill()
    raise AssertionError("server did not start")


def _kill(p: subprocess.Popen) -> None:
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)


def test_replay_sigkill_restart(tmp_path):
    state, port = tmp_path / "state", _free_port()
    srv = _start(state, port)
    try:
        c = Replay(port)
        assert c.post("/initialize_new_session", {"historical_state_paths": []}) == (200, None)
        tiles = [synthetic.atlas(20 + k, shape=(384, 384))[0].astype(np.uint16) for k in range(4)]
        # parallel push_lm, one client per tile (Leginon: one process per tile)
        out = {}
        th = [threading.Thread(target=lambda k=k: out.setdefault(k, c.post("/push_lm", {
            "image": tiles[k].tolist(), "grid_id": 7, "tile_id": 100 + k}))) for k in range(4)]
        [t.start() for t in th]
        [t.join() for t in th]
        assert all(v == (200, None) for v in out.values())
        st, text = c.get("/current_lm_state")
        squares = c.rows(text)
        assert st == 200 and {int(r["tile_id"]) for r in squares} == {100, 101, 102, 103}
        ids = [int(r["square_id"]) for r in squares]
        assert len(ids) == len(set(ids))
        assert c.post("/set_noice_hole_intensity", {"value": 1000.0}) == (200, None)
        img, _ = synthetic.medmag_image(8, shape=(1024, 1440))
        st, text = c.post("/push_and_evaluate_mm", {"image": img.tolist(), "grid_id": 7, "tile_id": 100,
                                                    "square_id": ids[0], "mm_img_id": 5})
        holes = c.rows(text)
        assert st == 200 and len(holes) >= 4
        hids = [int(h["hole_id"]) for h in holes]
        # Appion looplearn: visits streamed one by one; SIGKILL in the middle of the stream
        acked: list[int] = []  # post numbers n acknowledged: hole hids[n % H] got ctf 1 + n / 1000
        died = []

        def visits():
            n = 0
            while True:
                h = hids[n % len(hids)]
                try:
                    st = c.post("/visit_holes", {"hole_ids": [h], "ctfs": [1 + n / 1000], "ice_thicknesses": [20.0 + n]})[0]
                except OSError:
                    died.append(n)
                    return
                assert st == 200
                acked.append(n)
                n += 1

        # and a push_lm in flight when the server dies
        inflight = threading.Thread(target=lambda: _quiet(c.post, "/push_lm", {
            "image": synthetic.atlas(99, shape=(1024, 1024))[0].tolist(), "grid_id": 7, "tile_id": 999}))
        # and a push_and_evaluate_mm in flight too
        img2, _ = synthetic.medmag_image(9, shape=(1024, 1440))
        inflight_mm = threading.Thread(target=lambda: _quiet(c.post, "/push_and_evaluate_mm", {
            "image": img2.tolist(), "grid_id": 7, "tile_id": 100, "square_id": ids[1], "mm_img_id": 6}))
        v = threading.Thread(target=visits)
        v.start()
        while len(acked) < 2:
            time.sleep(0.01)
        inflight.start()
        inflight_mm.start()
        time.sleep(0.4)
        _kill(srv)
        v.join()
        inflight.join()
        inflight_mm.join()
        before = c.rows(_sqlite_lm(state))  # nothing to read through HTTP now: read the file
        srv = _start(state, port)
        st, text = c.get("/current_mm_state")
        mm = {int(r["hole_id"]): r for r in c.rows(text)}
        assert died and len(acked) >= 2  # the stream was cut by the kill
        inflight_n = died[0]  # sent, maybe committed, never acknowledged
        for k, h in enumerate(hids):
            mine = [n for n in acked if n % len(hids) == k]
            allowed = ({mine[-1]} if mine else set()) | ({inflight_n} if inflight_n % len(hids) == k else set())
            if mm[h]["visited"] == "False":
                assert not mine and mm[h]["ctf"] == ""  # never acknowledged
                continue
            got = round((float(mm[h]["ctf"]) - 1) * 1000)
            assert got in allowed
            assert float(mm[h]["ice_thickness"]) == 20.0 + got
        st, text = c.get("/current_lm_state")
        after = c.rows(text)
        assert [r["square_id"] for r in after] == [r["square_id"] for r in before]
        assert set(ids) <= {int(r["square_id"]) for r in after}
        # tile 999: either all its squares or none (never half-written)
        n999 = sum(r["tile_id"] == "999" for r in after)
        assert n999 in (0, _n_found(state, 999))
        n6 = sum(r["mm_img_id"] == "6" for r in mm.values())  # all holes of the killed push or none
        assert n6 in (0, _n_found_mm(state, 6))
        # the replay continues: visits of every hole, then the next square; ids never repeat
        for h in hids:
            assert c.post("/visit_holes", {"hole_ids": [h], "ctfs": [4.0], "ice_thicknesses": [30.0]})[0] == 200
        st, text = c.post("/select_next_square", {"value": -1})
        nxt = c.rows(text)
        assert st == 200 and nxt and max(float(r["GP_probs"]) for r in nxt) == 1.0
        st, _ = c.post("/push_lm", {"image": tiles[0].tolist(), "grid_id": 8, "tile_id": 200})
        st, text = c.get("/current_lm_state")
        new = [int(r["square_id"]) for r in c.rows(text) if r["tile_id"] == "200"]
        assert new and min(new) > max(int(r["square_id"]) for r in after)
        st, h = c.get("/health")
        assert h["models"] and h["version"]
        assert c.post("/visit_holes", {"hole_ids": [10 ** 9], "ctfs": [1.0], "ice_thicknesses": [1.0]})[0] == 404
    finally:
        if srv.poll() is None:
            _kill(srv)


def _quiet(fn, *a):
    try:
        fn(*a)
    except OSError:
        pass


def _sqlite_lm(state) -> str:
    from ptolemy_rt.server import table_csv
    from ptolemy_rt.server_store import LM_COLUMNS, Store

    s = Store(state)
    try:
        return table_csv(s.lm_rows(), LM_COLUMNS)
    finally:
        s.close()


def _n_found(state, tile: int) -> int:
    from ptolemy_rt.server_store import Store

    s = Store(state)
    with s.snapshot() as c:
        row = c.execute("SELECT n_found FROM images WHERE tile_id=?", (tile,)).fetchone()
    return -1 if row is None else int(row[0])


def _n_found_mm(state, mm_img_id: int) -> int:
    from ptolemy_rt.server_store import Store

    s = Store(state)
    with s.snapshot() as c:
        row = c.execute("SELECT n_found FROM images WHERE mm_img_id=?", (mm_img_id,)).fetchone()
    return -1 if row is None else int(row[0])


def test_serve_errors_and_fast_help(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = textwrap.dedent(
        """
        import sys, time
        t = time.perf_counter()
        from ptolemy_rt import cli
        assert "starlette" not in sys.modules and "uvicorn" not in sys.modules
        print(time.perf_counter() - t)
        """)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "ptolemy_rt.cli", "serve", "--help"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "--state" in r.stdout and "--port" in r.stdout
    block = ("import importlib.abc, sys, runpy\n"
             "class B(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, n, p=None, t=None):\n"
             "        if n.split('.')[0] in ('starlette', 'uvicorn'): raise ImportError(n, name=n)\n"
             "sys.meta_path.insert(0, B())\n"
             "from ptolemy_rt.cli import run\n"
             "raise SystemExit(run(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", block, "serve", "--state", str(tmp_path / "s")], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "pip install 'ptolemy-rt[server]'" in r.stderr and r.stderr.startswith("ptolemy: error:")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "ptolemy_rt.cli", "serve", "--port", str(port), "--state",
                            str(tmp_path / "s")], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot listen" in r.stderr and r.stderr.count("\n") == 1
    r = subprocess.run([sys.executable, "-m", "ptolemy_rt.cli", "serve", "--models", "nope", "--port",
                        str(_free_port()), "--state", str(tmp_path / "s")], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 4 and "nope" in r.stderr


@pytest.fixture(scope="module")
def fitted_server(tmp_path_factory):
    """One `ptolemy serve --learning fitted` on loopback for the replay tests below."""
    port = _free_port()
    srv = _start(tmp_path_factory.mktemp("state"), port, "--learning", "fitted")
    yield Replay(port)
    if srv.poll() is None:
        _kill(srv)


def test_replay_a_whole_simulated_session(fitted_server):
    """The session simulator's operator over HTTP, as Leginon and Appion make the calls of
    LEGINON_PTOLEMY_SERVER.md §5: images as nested lists, one visit_holes per exposure, CSV
    replies read with csv.DictReader; the holes come from rendered med-mag images through the
    server's real pipelines."""
    from ptolemy_rt import session_sim as ss

    c = fitted_server
    calls = []

    def client(method, path, body=None):
        calls.append(path)
        if body is not None and isinstance(body.get("image"), np.ndarray):
            body = dict(body, image=body["image"].tolist())  # imagedata['image'].tolist()
        st, out = c.post(path, body) if method == "POST" else c.get(path)
        assert st == 200, (path, st, out)
        return out

    g = ss.make_grid(5, (768, 768))
    ctfs = ss.run_session(g, "ours", n_exposures=25, mode="render", client=client)
    assert len(ctfs) == 25
    n_mm = calls.count("/push_and_evaluate_mm")
    assert n_mm >= 2 and calls.count("/select_next_square") >= n_mm - 1
    assert calls.count("/visit_holes") == 25
    st, text = c.get("/current_mm_state")
    mm = c.rows(text)
    assert sum(r["visited"] == "True" for r in mm) == 25
    vis = [r for r in mm if r["visited"] == "True"]
    assert sorted(float(r["ctf"]) for r in vis) == pytest.approx(sorted(ctfs))
    st, h = c.get("/health")
    assert h["rule"] == "fitted" and h["visited_holes"] == 25


def _cli_json(mode: str, image) -> list:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "ptolemy_rt.cli", mode, str(image), "-f", "json", "-o", "-"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@needs_shared
def test_replay_real_images_give_the_cli_targets(fitted_server):
    """The published example images, sent as Leginon sends them (the MRC array's tolist()),
    give the same squares and holes (centres, scores) as the CLI on the same files."""
    import mrcfile

    c = fitted_server
    assert c.post("/initialize_new_session", {"historical_state_paths": []}) == (200, None)
    with mrcfile.open(LOWMAG_MRC, permissive=True) as m:
        lm_img = np.asarray(m.data).squeeze()
    with mrcfile.open(MEDMAG_MRC, permissive=True) as m:
        mm_img = np.asarray(m.data).squeeze()
    assert c.post("/push_lm", {"image": lm_img.tolist(), "grid_id": 1, "tile_id": 10}) == (200, None)
    st, text = c.get("/current_lm_state")
    squares = c.rows(text)
    cli = _cli_json("lowmag", LOWMAG_MRC)
    assert st == 200 and len(squares) == len(cli) > 10
    got = sorted((int(r["center_x"]), int(r["center_y"]), round(float(r["prior_score"]), 6)) for r in squares)
    want = sorted((s["center"][0], s["center"][1], round(s["score"], 6)) for s in cli)
    assert got == want
    sq = int(squares[0]["square_id"])
    assert c.post("/set_noice_hole_intensity", {"value": 1000.0}) == (200, None)
    st, text = c.post("/push_and_evaluate_mm", {"image": mm_img.tolist(), "grid_id": 1, "tile_id": 10,
                                                "square_id": sq, "mm_img_id": 20})
    holes = c.rows(text)
    cli = _cli_json("medmag", MEDMAG_MRC)
    assert st == 200 and len(holes) == len(cli) == 17
    got = sorted((int(r["center_x"]), int(r["center_y"]), round(float(r["prior_score"]), 6)) for r in holes)
    want = sorted((h["center"][0], h["center"][1], round(h["score"], 6)) for h in cli)
    assert got == want
    assert all(r["ctf_pred"] and r["ice_pred"] for r in holes)
    # the exposures' feedback, ×1e9 as Appion's looplearn posts ice: stored in nm
    h = int(holes[0]["hole_id"])
    assert c.post("/visit_holes", {"hole_ids": [h], "ctfs": [3.2], "ice_thicknesses": [42.0 * 1e9]}) == (200, None)
    st, text = c.get("/current_mm_state")
    row = [r for r in c.rows(text) if int(r["hole_id"]) == h][0]
    assert float(row["ice_thickness"]) == pytest.approx(42.0) and row["visited"] == "True"
