"""`ptolemy serve` (ptolemy_rt/server.py) in-process: the request and reply shapes Leginon's
ptolemyhandler.py and Appion's looplearn.py use, and the published server's bugs not
reproduced (LEGINON_PTOLEMY_SERVER.md §1.3-§1.6, §2.4, §3.5)."""
from __future__ import annotations

import csv
import io
import json
import threading

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

import warnings  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from conftest import LOWMAG_MRC, needs_shared  # noqa: E402
from ptolemy_rt import synthetic  # noqa: E402
from ptolemy_rt.server import PtolemyService, create_app, parse_json_body, table_csv  # noqa: E402
from ptolemy_rt.server_store import LM_COLUMNS, MM_COLUMNS, HoleRow, SquareRow  # noqa: E402

LM_HEADER = list(LM_COLUMNS)
MM_HEADER = list(MM_COLUMNS)
PRED = ["ctf_pred", "ice_pred", "ctf_var", "ice_var"]


def post(client, path, body):
    """As ptolemyhandler.py: requests.post(url, json.dumps(body)) — a str body, no Content-Type."""
    r = client.post(path, content=json.dumps(body))
    assert "content-type" not in {k.lower() for k in r.request.headers}
    return r


def rows_of(reply_json: str) -> tuple[list[str], list[dict]]:
    """As ptolemyhandler.py: r.json() is the CSV text, read with csv.DictReader."""
    assert isinstance(reply_json, str)
    rd = csv.DictReader(io.StringIO(reply_json))
    rows = list(rd)
    return rd.fieldnames, rows


@pytest.fixture(scope="module")
def atlas():
    img, truth = synthetic.atlas(11, shape=(512, 512))
    return img


@pytest.fixture(scope="module")
def medmag():
    img, truth = synthetic.medmag_image(5, shape=(1024, 1440))
    return img, truth


@pytest.fixture()
def client(tmp_path):
    app = create_app(tmp_path / "state")
    with TestClient(app) as c:
        yield c


def test_health_and_root(client):
    assert client.get("/").json() == {"message": "Welcome"}
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["models"] and h["version"] and h["schema_version"] == 1


def test_empty_state_gives_header_only_csv_not_500(client):
    for path in ("/current_lm_state", "/current_mm_state", "/rerun_mm_on_active_holes"):
        r = client.get(path)
        assert r.status_code == 200, path
        names, rows = rows_of(r.json())
        assert rows == [] and names == (LM_HEADER if "lm" in path else MM_HEADER + (PRED if "rerun" in path else []))
    r = post(client, "/select_next_square", {"value": -1})  # published: AssertionError → 500
    assert r.status_code == 200
    names, rows = rows_of(r.json())
    assert names == LM_HEADER + ["GP_probs"] and rows == []
    assert post(client, "/save_state", {"path": str(client.app.state.service.store.dir / "saved")}).status_code == 200


def test_session_replay_shapes(client, atlas, medmag, tmp_path):
    """The §5 call sequence for one grid, with Leginon's conversions of §1.6."""
    assert post(client, "/initialize_new_session", {"historical_state_paths": []}).json() is None
    assert client.get("/").status_code == 200
    r = post(client, "/push_lm", {"image": atlas.astype(np.uint16).tolist(), "grid_id": 3, "tile_id": 41})
    assert r.status_code == 200 and r.json() is None
    names, sq = rows_of(client.get("/current_lm_state").json())
    assert names == LM_HEADER and len(sq) > 3
    for row in sq:  # ptolemyhandler._read_csv_row: ints, floats, bool, centre
        assert int(float(row["grid_id"])) == 3 and int(float(row["tile_id"])) == 41
        assert row["visited"] == "False"
        assert 0.0 <= float(row["prior_score"]) <= 1.0
        assert 0 <= float(row["center_x"]) < 512 and 0 <= float(row["center_y"]) < 512
        assert float(row["area"]) > 0 and float(row["brightness"]) > 0
        [float(row[f"vert_{k}_{a}"]) for k in range(1, 5) for a in "xy"]
    ids = [int(r["square_id"]) for r in sq]
    assert len(set(ids)) == len(ids)
    assert post(client, "/set_noice_hole_intensity", {"value": 1000.0}).json() is None
    img, truth = medmag
    r = post(client, "/push_and_evaluate_mm", {"image": img.tolist(), "grid_id": 3, "tile_id": 41,
                                               "square_id": ids[0], "mm_img_id": 900})
    assert r.status_code == 200, r.text
    names, holes = rows_of(r.json())
    assert names == MM_HEADER + PRED and len(holes) >= 5
    hids = [int(h["hole_id"]) for h in holes]
    assert hids == sorted(hids)  # hole_id order, as published
    for h in holes:
        assert int(h["square_id"]) == ids[0] and int(h["mm_img_id"]) == 900 and h["visited"] == "False"
        assert h["ctf"] == "" and h["ice_thickness"] == ""  # empty cells → None in Leginon
        # ≤ 1 visited hole: the published constant predictions
        assert (float(h["ctf_pred"]), float(h["ice_pred"]), float(h["ctf_var"]), float(h["ice_var"])) == (2.0, 50.0, 1.0, 20.0)
    # every hole centre is near a drawn hole
    centres = np.array([t.center for t in truth])
    for h in holes:
        assert np.hypot(*(centres - [float(h["center_x"]), float(h["center_y"])]).T).min() < 15
    # looplearn: one hole per visit_holes
    for k, h in enumerate(hids[:4]):
        assert post(client, "/visit_holes", {"hole_ids": [h], "ctfs": [3.0 + 2 * k], "ice_thicknesses": [40.0]}).json() is None
    names, mm = rows_of(client.get("/current_mm_state").json())
    vis = {int(r["hole_id"]): r for r in mm if r["visited"] == "True"}
    assert sorted(vis) == hids[:4] and float(vis[hids[1]]["ctf"]) == 5.0
    names, active = rows_of(client.get("/rerun_mm_on_active_holes").json())
    assert [int(r["hole_id"]) for r in active] == hids[4:]
    assert float(active[0]["ctf_pred"]) != 2.0  # > 1 visited hole: the GP is used
    r = post(client, "/select_next_square", {"value": -1})
    names, nxt = rows_of(r.json())
    assert names == LM_HEADER + ["GP_probs"]
    assert ids[0] not in {int(r["square_id"]) for r in nxt}  # visited squares are excluded
    p = [float(r["GP_probs"]) for r in nxt]
    assert len(nxt) == len(sq) - 1 and max(p) == 1.0
    names, other = rows_of(post(client, "/select_next_square", {"value": 4}).json())
    assert other == []  # another grid
    assert post(client, "/visit_square", {"square_id": ids[1]}).status_code == 200
    assert len(rows_of(post(client, "/select_next_square", {"value": -1}).json())[1]) == len(sq) - 2
    out = tmp_path / "saved.state"
    assert post(client, "/save_state", {"path": str(out)}).status_code == 200
    assert (out / "lmstate.csv").read_text() == client.get("/current_lm_state").json()
    assert np.load(out / "mm_feats.npy").shape[0] == len(hids)
    # a retried identical push adds nothing
    post(client, "/push_lm", {"image": atlas.astype(np.uint16).tolist(), "grid_id": 3, "tile_id": 41})
    assert len(rows_of(client.get("/current_lm_state").json())[1]) == len(sq)


def test_unknown_ids_get_404_naming_the_id(client):
    svc: PtolemyService = client.app.state.service
    sid = svc.store.add_squares(1, 1, [SquareRow((5, 5), ((0, 0), (9, 0), (9, 9), (0, 9)), 0.5, 1.0, 81.0, np.ones(4))])[0]
    hid = svc.store.add_holes(1, sid, 2, [HoleRow((3, 3), 5.0, 0.5, np.ones(5))])[0]
    r = post(client, "/visit_holes", {"hole_ids": [hid, 987654], "ctfs": [3.0, 3.0], "ice_thicknesses": [1.0, 1.0]})
    assert r.status_code == 404 and "987654" in r.json()["detail"]
    assert svc.store.mm_rows()[0]["visited"] is False  # nothing written
    r = post(client, "/push_and_evaluate_mm", {"image": [[1, 2], [3, 4]], "grid_id": 1, "square_id": 55555})
    assert r.status_code == 404 and "55555" in r.json()["detail"]
    r = post(client, "/visit_square", {"square_id": 4242})
    assert r.status_code == 404 and "4242" in r.json()["detail"]
    r = post(client, "/rerun_mm_on_arbitrary_holes", {"ints": [hid, 31337]})
    assert r.status_code == 404 and "31337" in r.json()["detail"]


def test_visit_holes_before_any_medmag_image(tmp_path):
    """Published: AttributeError on active_holes after a restart (500). Here: 200."""
    state = tmp_path / "s"
    svc = PtolemyService(state)
    sid = svc.store.add_squares(1, 1, [SquareRow((5, 5), ((0, 0), (9, 0), (9, 9), (0, 9)), 0.5, 1.0, 81.0, np.ones(4))])[0]
    hid = svc.store.add_holes(1, sid, 2, [HoleRow((3, 3), 5.0, 0.5, np.ones(5))], set_active=False)[0]
    with TestClient(create_app(state, service=PtolemyService(state))) as c:  # a "restarted" server
        r = post(c, "/visit_holes", {"hole_ids": [hid], "ctfs": [4.0], "ice_thicknesses": [30.0]})
        assert r.status_code == 200 and r.json() is None
        assert rows_of(c.get("/current_mm_state").json())[1][0]["visited"] == "True"


def test_image_without_holes_returns_no_holes(client):
    """Published: an image with no hole returned every unvisited hole of the state."""
    svc: PtolemyService = client.app.state.service
    sid = svc.store.add_squares(1, 1, [SquareRow((5, 5), ((0, 0), (9, 0), (9, 9), (0, 9)), 0.5, 1.0, 81.0, np.ones(4))])[0]
    svc.store.add_holes(1, sid, 2, [HoleRow((3, 3), 5.0, 0.5, np.ones(5))])
    yy, xx = np.mgrid[0:256, 0:256]
    flat = (yy + xx + 100.0)  # a smooth ramp: no hole in the U-Net mask
    r = post(client, "/push_and_evaluate_mm", {"image": flat.tolist(), "grid_id": 1, "square_id": sid, "mm_img_id": 3})
    assert r.status_code == 200
    names, rows = rows_of(r.json())
    assert names == MM_HEADER + PRED and rows == []
    assert svc.store.active_hole_ids() == []


def test_bad_bodies_get_one_line_422(client):
    for body, word in ((b"not json", "not JSON"), (b"[1, 2]", "JSON object"),
                       (json.dumps({"image": [[1, 2], [3, 4]]}).encode(), "grid_id"),
                       (json.dumps({"image": [[7] * 80] * 80, "grid_id": 1}).encode(), "constant"),
                       (json.dumps({"image": [[1, 2], [3]], "grid_id": 1}).encode(), "image"),
                       (json.dumps({"image": "/no/such/file.mrc", "grid_id": 1}).encode(), "no such file"),
                       (json.dumps({"image": [[1.0] * 70] * 70, "grid_id": "x"}).encode(), "integer")):
        r = client.post("/push_lm", content=body)
        assert r.status_code == 422, (body[:40], r.text)
        detail = r.json()["detail"]
        assert word in detail and "\n" not in detail
    r = post(client, "/visit_holes", {"hole_ids": [1], "ctfs": [1.0, 2.0], "ice_thicknesses": [1.0]})
    assert r.status_code == 422 and "differ in length" in r.json()["detail"]
    r = client.post("/push_lm?grid_id=1", content=b"\x00" * 2000, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 422 and "MRC" in r.json()["detail"]


def test_fast_json_image_parse_equals_json():
    rng = np.random.default_rng(1)
    for arr in (rng.integers(0, 65535, (37, 53)).astype(np.uint16), rng.random((20, 31)).astype(np.float32),
                -rng.random((5, 7)) * 1e-30, rng.random((9, 9)) * 10.0 ** rng.integers(-30, 30, (9, 9)),
                rng.integers(-2 ** 62, 2 ** 62, (4, 4), dtype=np.int64), rng.normal(size=(64, 64))):
        text = json.dumps({"grid_id": 2, "image": arr.tolist(), "tile_id": 4, "x": {"image": 1}})
        d = parse_json_body(text.encode())
        assert isinstance(d["image"], np.ndarray) and d["grid_id"] == 2 and d["tile_id"] == 4 and d["x"] == {"image": 1}
        assert np.array_equal(d["image"], np.asarray(json.loads(text)["image"], dtype=np.float64).astype(np.float32))
    odd = b'{"image":[[1e3, -2.5E-2 ,0.0],\n [ -0, 7, 123456789012345678901234]]}'
    assert parse_json_body(odd)["image"].tolist() == np.float32([[1e3, -2.5e-2, 0], [0, 7, 1.2345678901234568e23]]).tolist()
    compact = json.dumps({"image": [[1, 2], [3, 4]]}, separators=(",", ":")).encode()
    assert parse_json_body(compact)["image"].tolist() == [[1, 2], [3, 4]]
    for not_plain in (b'{"image": [[1, 2], [3]]}', b'{"image": [[1, NaN]]}', b'{"image": [[1, "2"]]}',
                      b'{"image": [[[1]]]}'):
        assert isinstance(parse_json_body(not_plain)["image"], list)  # json's lists: validated later
    assert parse_json_body(b"") == {}


def _random_number_text(rng) -> str:
    """One JSON number of an assorted kind (the fast parser's paths: short ints, 16-17 digit
    floats, 19/20-digit boundaries, leading zeros, exponents)."""
    k = int(rng.integers(0, 7))
    if k == 0:
        return str(int(rng.integers(-10 ** 6, 10 ** 6)))
    if k == 1:
        return repr(float(rng.normal() * 10.0 ** int(rng.integers(-40, 40))))
    if k == 2:
        a = "".join(rng.choice(list("0123456789"), int(rng.integers(1, 25))))
        b = "".join(rng.choice(list("0123456789"), int(rng.integers(0, 25))))
        return ("-" if rng.random() < 0.3 else "") + (a.lstrip("0") or "0") + ("." + b if b else "")
    if k == 3:
        return "0.000" + "".join(rng.choice(list("0123456789"), int(rng.integers(1, 22))))
    if k == 4:
        return repr(float(np.float32(rng.random() * 100)))
    if k == 5:
        return f"{rng.random():.{int(rng.integers(1, 30))}e}"
    return "0"


def test_body_reader_any_chunking_equals_parse_json_body():
    """The image parsed while the body arrives (BodyReader, in its own thread, woken every
    NOTIFY_STEP bytes) gives the
    bytes of parse_json_body and of float32(json.loads) for any chunking, and the same
    fallback (json lists, the same error) for bodies that are not plain."""
    from ptolemy_rt.server import BadRequest, BodyReader

    rng = np.random.default_rng(5)
    texts = []
    for _ in range(150):
        r, c = int(rng.integers(1, 6)), int(rng.integers(1, 8))
        rows = ["[" + ", ".join(_random_number_text(rng) for _ in range(c)) + "]" for _ in range(r)]
        texts.append(('{"image": [' + ", ".join(rows) + '], "g": 1}').encode())
    odd = [b'{"image": [[1, 2], [3]]}', b'{"image": [[1, NaN]]}', b'{"image": [[1, "2"]]}', b'{"image": [[[1]]]}',
           b'{"a": 1}', b" ", b'{"image" : [[1,2]] , "b": [1]}', b'{"x": {"image": [[1]]}, "image": [[2, 3]]}',
           b'{"image": [[1, 2]]', b"[1]", b'{"image": "/some/file.mrc"}']
    for text in texts + odd:
        try:
            ref, ref_err = parse_json_body(text), None
        except BadRequest as e:
            ref, ref_err = None, str(e)
        if text in texts:
            with np.errstate(over="ignore"):
                want = np.asarray(json.loads(text)["image"], dtype=np.float64).astype(np.float32)
            assert isinstance(ref["image"], np.ndarray) and np.array_equal(ref["image"], want), text
        for trial in range(6):
            reader = BodyReader(None if trial == 5 else len(text))
            reader.NOTIFY_STEP = (1, 3, 17, BodyReader.NOTIFY_STEP, 1, 1)[trial]  # wake the parser at every ']', ..., at the end
            k = 0
            while k < len(text):
                step = int(rng.integers(1, 40))
                reader.feed(text[k:k + step])
                k += step
            try:
                got, got_err = reader.json(), None
            except BadRequest as e:
                got, got_err = None, str(e)
            assert got_err == ref_err, text
            if ref is None:
                continue
            assert got.keys() == ref.keys()
            for key, v in ref.items():
                if isinstance(v, np.ndarray):
                    assert isinstance(got[key], np.ndarray) and got[key].tobytes() == v.tobytes(), text
                else:
                    assert got[key] == v, text


def test_image_statistics_and_profile_kernels_equal_numpy():
    """median_p90 = (np.median, np.percentile 90) exactly; consensus_radius (numba sums) =
    the radius of the summed hole_profile of every hole."""
    from ptolemy_rt.server import consensus_radius, hole_profile, hole_radius, median_p90

    rng = np.random.default_rng(3)
    for t in range(60):
        x = (rng.normal(size=int(rng.integers(1, 3000))) * 10 ** rng.uniform(-3, 4)).astype(np.float32)
        x = np.round(x) if t % 3 == 0 else x
        assert median_p90(x) == (float(np.median(x)), float(np.percentile(x, 90)))
    # float32 from 1024 values: the counting kernel (ties, negatives, zeros, tiny and huge
    # magnitudes, the sizes where numpy's 90th-percentile index is near a whole number)
    for t, n in enumerate([1024, 1025, 1031, 2001, 10241, 65537, 100001, 1024 * 1440] + [0] * 40):
        n = n or int(rng.integers(1024, 60000))
        x = (rng.normal(size=n) * 10 ** rng.uniform(-30, 30)).astype(np.float32)
        x = [x, np.round(x), rng.integers(-2, 3, n).astype(np.float32), np.abs(x) + 1000][t % 4]
        assert median_p90(x) == (float(np.median(x)), float(np.percentile(x, 90))), (t, n)
    x[5] = -np.inf
    assert median_p90(x) == (float(np.median(x)), float(np.percentile(x, 90)))
    for t in range(20):
        pix = (rng.normal(size=(200, 260)) * 100).astype(np.float32)
        yy, xx = np.mgrid[:200, :260]
        pix += 300 * (np.hypot(yy - 100, xx - 130) < rng.uniform(10, 60))
        centers = [(float(rng.uniform(0, 260)), float(rng.uniform(0, 200))) for _ in range(int(rng.integers(1, 6)))]
        half = int(rng.integers(6, 90))
        tot, cnt = np.zeros(half), np.zeros(half)
        for c in centers:
            p, n = hole_profile(pix, c, half)
            tot += p * n
            cnt += n
        assert consensus_radius(pix, centers, half) == hole_radius(tot / np.maximum(cnt, 1))


def test_image_as_path_mrc_bytes_and_list_agree(tmp_path, client, atlas):
    import mrcfile

    p = tmp_path / "tile.mrc"
    with mrcfile.new(p) as m:
        m.set_data(atlas.astype(np.float32))
    svc: PtolemyService = client.app.state.service
    got = []
    for k, send in enumerate((lambda: post(client, "/push_lm", {"image": atlas.tolist(), "grid_id": 1, "tile_id": 1}),
                              lambda: post(client, "/push_lm", {"image": str(p), "grid_id": 1, "tile_id": 2}),
                              lambda: client.post("/push_lm?grid_id=1&tile_id=3", content=p.read_bytes()))):
        assert send().status_code == 200
        got.append([(r["center_x"], r["center_y"], r["prior_score"]) for r in svc.store.lm_rows() if r["tile_id"] == k + 1])
    assert got[0] and got[0] == got[1] == got[2]


def test_parallel_push_lm_distinct_ids_all_rows(tmp_path):
    svc = PtolemyService(tmp_path / "s")
    tiles = [synthetic.atlas(100 + k, shape=(384, 384))[0] for k in range(8)]
    ids: dict[int, list[int]] = {}

    def push(k):
        ids[k] = svc.push_lm_ids({"image": tiles[k], "grid_id": 9, "tile_id": k})["square_ids"]

    th = [threading.Thread(target=push, args=(k,)) for k in range(8)]
    [t.start() for t in th]
    [t.join() for t in th]
    allids = [i for v in ids.values() for i in v]
    assert len(ids) == 8 and len(allids) == len(set(allids)) > 8
    rows = svc.store.lm_rows()
    assert sorted(r["square_id"] for r in rows) == sorted(allids)
    assert all(r["tile_id"] == k for k, v in ids.items() for r in rows if r["square_id"] in v)


def test_csv_cells():
    text = table_csv([{"square_id": 3, "center_x": 10.0, "prior_score": 0.25, "visited": False, "area": float("nan")}],
                     ("square_id", "center_x", "prior_score", "visited", "area", "tile_id"))
    assert text == "square_id,center_x,prior_score,visited,area,tile_id\n3,10,0.25,False,,\n"


@needs_shared
def test_real_atlas_same_squares_as_the_pipeline(client):
    from ptolemy_rt.io import read_mrc
    from ptolemy_rt.lowmag import find_squares

    pix = read_mrc(LOWMAG_MRC).pixels
    r = post(client, "/push_lm", {"image": pix.astype(np.int64).tolist(), "grid_id": 1, "tile_id": 2})
    assert r.status_code == 200
    rows = rows_of(client.get("/current_lm_state").json())[1]
    ref = find_squares(LOWMAG_MRC, models=client.app.state.service.models)
    assert sorted((int(r["center_x"]), int(r["center_y"]), float(r["prior_score"])) for r in rows) == \
        sorted((s.center[0], s.center[1], s.score) for s in ref.squares)


@needs_shared
def test_real_medmag_same_holes_as_the_pipeline(client):
    from conftest import MEDMAG_MRC
    from ptolemy_rt.io import read_mrc
    from ptolemy_rt.medmag import find_holes

    svc: PtolemyService = client.app.state.service
    sid = svc.store.add_squares(1, 1, [SquareRow((5, 5), ((0, 0), (9, 0), (9, 9), (0, 9)), 0.5, 1.0, 81.0, np.ones(4))])[0]
    pix = read_mrc(MEDMAG_MRC).pixels
    r = post(client, "/push_and_evaluate_mm", {"image": pix.tolist(), "grid_id": 1, "tile_id": 1, "square_id": sid,
                                               "mm_img_id": 2})
    assert r.status_code == 200
    rows = rows_of(r.json())[1]
    ref = find_holes(MEDMAG_MRC, models=svc.models)
    assert len(ref.holes) > 5
    assert sorted((int(h["center_x"]), int(h["center_y"]), float(h["prior_score"])) for h in rows) == \
        sorted((h.center[0], h.center[1], h.score) for h in ref.holes)


def test_historical_states_train_the_gps(tmp_path):
    state = tmp_path / "s"
    svc = PtolemyService(state)
    rng = np.random.default_rng(3)

    def squares(n):
        return [SquareRow((i, i), ((0, 0), (9, 0), (9, 9), (0, 9)), 0.5, 1.0, 81.0, rng.normal(100, 10, 4)) for i in range(n)]

    sq = svc.store.add_squares(1, 1, squares(6))
    for s in sq[:3]:
        h = svc.store.add_holes(1, s, 1, [HoleRow((1, 1), 5.0, 0.5, rng.normal(size=5)) for _ in range(3)])
        svc.store.visit_holes(h, [3.0, 4.0, 8.0], [30.0, 40.0, 90.0])
    with TestClient(create_app(state, service=svc)) as c:
        saved = tmp_path / "first.state"
        assert post(c, "/save_state", {"path": str(saved)}).status_code == 200
        r = post(c, "/initialize_new_session", {"historical_state_paths": [str(tmp_path / "nope")]})
        assert r.status_code == 422 and "nope" in r.json()["detail"]
        assert svc.store.current_session() == 1  # nothing changed
        assert post(c, "/initialize_new_session", {"historical_state_paths": [str(saved)]}).status_code == 200
        assert svc.store.current_session() == 2 and svc.store.lm_rows() == []
        lm_hist = svc.store.historical("lm")
        assert [t for _, t in lm_hist] == [2.0, 2.0, 2.0]  # each visited square: 2 holes with ctf < 5 Å
        assert len(svc.store.historical("mm")) == 9
        new = svc.store.add_squares(2, 1, squares(4))
        hid = svc.store.add_holes(2, new[0], 1, [HoleRow((1, 1), 5.0, 0.5, rng.normal(size=5))])
        p = [float(r["GP_probs"]) for r in rows_of(post(c, "/select_next_square", {"value": -1}).json())[1]]
        assert len(p) == 4 and len(set(p)) > 1  # trained on the historical squares, not 1/N
        pred = rows_of(post(c, "/rerun_mm_on_arbitrary_holes", {"ints": hid}).json())[1][0]
        assert float(pred["ctf_pred"]) != 2.0  # > 1 historical hole: the GP, not the constants
        assert c.get("/clear_current_state").status_code == 200  # keeps the historical data
        assert svc.store.lm_rows() == [] and len(svc.store.historical("lm")) == 3
        new = svc.store.add_squares(2, 1, squares(4))
        svc.store.add_holes(2, new[0], 1, [HoleRow((1, 1), 5.0, 0.5, rng.normal(size=5))])
        assert c.get("/clear_historical_state").status_code == 200 and svc.store.historical("lm") == []
        p = [float(r["GP_probs"]) for r in rows_of(post(c, "/select_next_square", {"value": -1}).json())[1]]
        assert p == [0.25] * 4
        assert post(c, "/append_multi_historical_states", {"paths": [str(saved), str(saved)]}).status_code == 200
        assert len(svc.store.historical("lm")) == 6


def test_retried_mm_push_gives_the_same_holes_and_new_pixels_new_holes(tmp_path):
    """A push with new ids hashes its pixels beside the pipeline: the stored digest is the
    pixels' (a retry with the same ids and pixels returns the same holes, adds nothing),
    and the same ids with other pixels are a new image."""
    from ptolemy_rt.server import pixels_sha256
    from ptolemy_rt.server_store import HoleRow, SquareRow

    calls = []

    class Stub(PtolemyService):
        def _holes_of(self, pix, loaded=None):
            calls.append(pixels_sha256(pix))
            return [HoleRow((10.0 + k, 20.0), 5.0, 0.5, np.zeros(5)) for k in range(3)]

    svc = Stub(tmp_path / "state")
    sq = svc.store.add_squares(1, 1, [SquareRow((5.0, 5.0), ((0, 0), (9, 0), (9, 9), (0, 9)), 0.5, 1.0, 81.0,
                                                np.zeros(4))])[0]
    a = np.arange(64 * 80, dtype=np.float32).reshape(64, 80)
    body = lambda img: {"image": img.tolist(), "grid_id": 1, "square_id": sq, "mm_img_id": 7}  # noqa: E731
    first = rows_of(svc.push_and_evaluate_mm(body(a)))[1]
    with svc.store.snapshot() as c:
        assert [r[0] for r in c.execute("SELECT sha256 FROM images WHERE kind='mm'")] == [pixels_sha256(a)]
    again = rows_of(svc.push_and_evaluate_mm(body(a)))[1]
    assert [h["hole_id"] for h in again] == [h["hole_id"] for h in first] and len(calls) == 1
    other = rows_of(svc.push_and_evaluate_mm(body(a + 1)))[1]
    assert len(calls) == 2 and not {h["hole_id"] for h in other} & {h["hole_id"] for h in first}
    svc.store.close()
