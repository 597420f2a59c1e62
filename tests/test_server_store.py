"""Durable server state (ptolemy_rt/server_store.py): ids, parallel writers, SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from conftest import REPO
from ptolemy_rt.server_store import (DB_NAME, HoleRow, SquareRow, StateError, Store, UnknownIdError)


def _sq(i: float = 0.0, n_feat: int = 4) -> SquareRow:
    return SquareRow(center=(10 + i, 20 + i), vertices=((0, 0), (5, 0), (5, 5), (0, 5)), prior_score=0.5,
                     brightness=100.0 + i, area=25.0, features=np.arange(n_feat, dtype=float) + i)


def _hole(i: float = 0.0) -> HoleRow:
    return HoleRow(center=(3 + i, 4 + i), radius=7.5, prior_score=0.25, features=np.array([i, 2 * i]))


def test_rows_round_trip_and_ids_are_new_after_reopen(tmp_path):
    s = Store(tmp_path)
    ids = s.add_squares(11, 22, [_sq(0), _sq(1)])
    assert ids == sorted(ids) and len(set(ids)) == 2
    rows = s.lm_rows()
    assert [r["square_id"] for r in rows] == ids
    assert rows[1]["center_x"] == 11 and rows[1]["center_y"] == 21 and rows[1]["grid_id"] == 11
    assert rows[1]["tile_id"] == 22 and rows[1]["visited"] is False
    assert rows[1]["features"].tolist() == [1.0, 2.0, 3.0, 4.0]
    holes = s.add_holes(11, ids[0], 33, [_hole(0), _hole(1)])
    assert s.active_hole_ids() == holes
    s.visit_holes([holes[1]], [3.5], [40.0])
    mm = {r["hole_id"]: r for r in s.mm_rows()}
    assert mm[holes[1]]["visited"] and mm[holes[1]]["ctf"] == 3.5 and mm[holes[1]]["ice_thickness"] == 40.0
    assert not mm[holes[0]]["visited"] and mm[holes[0]]["ctf"] is None
    assert s.active_hole_ids() == [holes[0]]
    assert {r["square_id"]: r["visited"] for r in s.lm_rows()} == {ids[0]: True, ids[1]: False}
    s.close()
    # a new Store on the same folder (a restart) sees everything and never reuses an id
    s2 = Store(tmp_path)
    assert [r["square_id"] for r in s2.lm_rows()] == ids
    more = s2.add_squares(11, 23, [_sq(2)])
    assert more[0] > max(ids)
    # a new session empties the current tables but keeps ids unique and old rows readable
    s2.new_session()
    assert s2.lm_rows() == [] and s2.mm_rows() == [] and s2.active_hole_ids() == []
    assert s2.get_setting("noice_hole_intensity") == -1.0
    assert s2.add_squares(12, 1, [_sq(3)])[0] > more[0]
    assert s2.mm_rows([holes[1]])[0]["ctf"] == 3.5  # an old id keeps meaning the same hole


def test_unknown_ids_raise_and_write_nothing(tmp_path):
    s = Store(tmp_path)
    sq = s.add_squares(1, 1, [_sq()])
    h = s.add_holes(1, sq[0], 5, [_hole()])
    with pytest.raises(UnknownIdError, match="unknown square_id 999"):
        s.add_holes(1, 999, 5, [_hole()])
    with pytest.raises(UnknownIdError, match="unknown hole_id 12345"):
        s.visit_holes([h[0], 12345], [2.0, 3.0], [10.0, 20.0])
    assert s.mm_rows()[0]["visited"] is False  # the valid first id was rolled back too
    with pytest.raises(UnknownIdError, match="unknown square_id 77"):
        s.visit_square(77)
    with pytest.raises(ValueError, match="differ in length"):
        s.visit_holes([h[0]], [1.0, 2.0], [3.0])
    assert len(s.mm_rows()) == 1


def test_schema_version_mismatch_is_refused(tmp_path):
    s = Store(tmp_path)
    with s.transaction() as c:
        c.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    s.close()
    with pytest.raises(StateError, match="schema version 99"):
        Store(tmp_path)


def test_parallel_threads_give_distinct_ids_and_no_lost_rows(tmp_path):
    s = Store(tmp_path)
    out: dict[int, list[int]] = {}

    def push(tile: int) -> None:
        got = []
        for k in range(5):
            got += s.add_squares(1, tile, [_sq(k), _sq(k + 0.5), _sq(k + 0.25)])
        out[tile] = got

    threads = [threading.Thread(target=push, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for v in out.values() for i in v]
    assert len(all_ids) == 8 * 15 and len(set(all_ids)) == len(all_ids)
    rows = s.lm_rows()
    assert sorted(r["square_id"] for r in rows) == sorted(all_ids)
    for tile, ids in out.items():  # every id is stored with the tile that pushed it
        assert {r["tile_id"] for r in rows if r["square_id"] in set(ids)} == {tile}


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    sys.path.insert(0, {repo!r})
    from ptolemy_rt.server_store import Store, SquareRow
    s = Store(sys.argv[1]); tile = int(sys.argv[2]); n = int(sys.argv[3])
    for k in range(n):
        rows = [SquareRow((k, j), ((0, 0), (1, 0), (1, 1), (0, 1)), 0.5, 1.0, 1.0, np.zeros(4)) for j in range(3)]
        ids = s.add_squares(7, tile, rows)
        print(" ".join(map(str, ids)), flush=True)   # the acknowledgement: after the commit
    """
)


def _writer(tmp_path, tile: int, n: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER.format(repo=str(REPO)), str(tmp_path), str(tile), str(n)],
                            stdout=subprocess.PIPE, text=True)


def test_parallel_processes_give_distinct_ids(tmp_path):
    Store(tmp_path).close()
    procs = [_writer(tmp_path, t, 20) for t in range(4)]
    acked = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        acked += [int(v) for line in out.split() for v in [line]]
    assert len(acked) == 4 * 20 * 3 and len(set(acked)) == len(acked)
    assert sorted(r["square_id"] for r in Store(tmp_path).lm_rows()) == sorted(acked)


def test_sigkill_mid_stream_keeps_every_acknowledged_write(tmp_path):
    Store(tmp_path).close()
    p = _writer(tmp_path, 1, 100000)
    acked = []
    while len(acked) < 3 * 40:
        line = p.stdout.readline()
        assert line, "writer ended early"
        acked += [int(v) for v in line.split()]
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    s = Store(tmp_path)  # restart: recovery of the WAL happens here
    rows = s.lm_rows()
    have = {r["square_id"] for r in rows}
    assert set(acked) <= have
    # nothing half-written: every pushed tile holds exactly the 3 squares it announced
    with s.snapshot() as c:
        for image_id, n in c.execute("SELECT image_id, n_found FROM images"):
            assert c.execute("SELECT COUNT(*) FROM squares WHERE image_id=?", (image_id,)).fetchone()[0] == n == 3
    assert s.add_squares(7, 2, [_sq()])[0] > max(have)
    assert (tmp_path / DB_NAME).is_file()
