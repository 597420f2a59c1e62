"""Durable state of ``ptolemy serve``: squares, holes, visits and settings in one SQLite file.

Layout: ``<state dir>/ptolemy_state.sqlite3`` (plus SQLite's ``-wal`` / ``-shm`` files while
open). Everything the server knows lives there; the process holds no state of its own, so a
server killed at any moment (SIGKILL included) and restarted answers exactly as before.

Durability: journal_mode=WAL with synchronous=FULL. Every request is one ``BEGIN IMMEDIATE``
transaction; when the server acknowledges a request its commit has been fsync'ed to the WAL,
so it survives a crash of the process *and* of the machine (power loss). synchronous=NORMAL
would also survive a process crash (the WAL is written before the commit returns) but may lose
the last commits on power loss; its saving, one fsync per write request (~1 ms on a local
disk), is nothing next to a request's image analysis (≥ 0.1 s), so FULL is used.

Identifiers: ``square_id`` and ``hole_id`` are INTEGER PRIMARY KEY AUTOINCREMENT, so SQLite
never hands out an id twice, not after deletes, restarts or a new session (the high-water
mark lives in ``sqlite_sequence`` inside the same transactions). Parallel writers (threads
of one server, or several processes) are serialised by ``BEGIN IMMEDIATE`` (the write lock is
taken at the start of the transaction), with a busy timeout instead of an error.

Sessions: ``initialize_new_session`` starts a new session number; the "current state" the
endpoints show is the rows of the current session. Rows of earlier sessions are kept, so an
id Leginon stored earlier keeps meaning the same square or hole (it is never reused).

Coordinates: as the published server's tables, ``center_x`` = column and ``center_y`` = row
of the image that was sent (px); vertices likewise (x = col, y = row). Units: ``ctf`` Å
(CTF-fit resolution), ``ice_thickness`` nm (the server converts Appion's ×1e9 values,
`server.ice_thickness_nm`).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .errors import EXIT_OUTPUT, PtolemyError

SCHEMA_VERSION = 1
DB_NAME = "ptolemy_state.sqlite3"
BUSY_TIMEOUT_S = 60.0

#: column names of the published server's CSV tables (Leginon reads them by name)
LM_COLUMNS = ("square_id", "tile_id", "grid_id", "center_x", "center_y", "prior_score", "visited",
              "vert_1_x", "vert_1_y", "vert_2_x", "vert_2_y", "vert_3_x", "vert_3_y", "vert_4_x", "vert_4_y",
              "brightness", "area")
MM_COLUMNS = ("hole_id", "mm_img_id", "square_id", "grid_id", "center_x", "center_y", "radius",
              "prior_score", "visited", "ctf", "ice_thickness")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    session_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_unix REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value REAL);
CREATE TABLE IF NOT EXISTS images (
    image_id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL,
    kind TEXT NOT NULL,                -- 'lm' | 'mm'
    grid_id INTEGER, tile_id INTEGER, square_id INTEGER, mm_img_id INTEGER,
    sha256 TEXT NOT NULL,
    n_found INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS images_key ON images (session_id, kind, sha256);
CREATE TABLE IF NOT EXISTS squares (
    square_id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL,
    image_id INTEGER NOT NULL,
    tile_id INTEGER, grid_id INTEGER NOT NULL,
    center_x REAL NOT NULL, center_y REAL NOT NULL,
    prior_score REAL, visited INTEGER NOT NULL DEFAULT 0,
    vert_1_x REAL, vert_1_y REAL, vert_2_x REAL, vert_2_y REAL,
    vert_3_x REAL, vert_3_y REAL, vert_4_x REAL, vert_4_y REAL,
    brightness REAL, area REAL,
    features BLOB
);
CREATE INDEX IF NOT EXISTS squares_session ON squares (session_id, grid_id);
CREATE TABLE IF NOT EXISTS holes (
    hole_id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL,
    image_id INTEGER NOT NULL,
    mm_img_id INTEGER, square_id INTEGER NOT NULL, grid_id INTEGER,
    center_x REAL NOT NULL, center_y REAL NOT NULL,
    radius REAL, prior_score REAL, visited INTEGER NOT NULL DEFAULT 0,
    ctf REAL, ice_thickness REAL,
    features BLOB
);
CREATE INDEX IF NOT EXISTS holes_session ON holes (session_id, square_id);
CREATE TABLE IF NOT EXISTS active_holes (hole_id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS historical (
    hist_id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL,
    kind TEXT NOT NULL,                -- 'lm' (target = good-hole count) or 'mm' (ctf, ice_thickness)
    source TEXT NOT NULL,
    features BLOB NOT NULL,
    target REAL, ctf REAL, ice_thickness REAL
);
CREATE INDEX IF NOT EXISTS historical_session ON historical (session_id, kind);
"""


class UnknownIdError(LookupError):
    """A request names a square or hole id the state does not hold (HTTP 404)."""


class StateError(PtolemyError):
    """The state folder cannot be used (wrong schema version, not writable, ...)."""

    exit_code = EXIT_OUTPUT


@dataclass(frozen=True)
class SquareRow:
    """One detected square to insert: centre and vertices (x = col, y = row) px, area px²,
    brightness in image units, prior_score in [0, 1], features a 1-D float vector."""

    center: tuple[float, float]
    vertices: tuple[tuple[float, float], ...]
    prior_score: float
    brightness: float
    area: float
    features: np.ndarray


@dataclass(frozen=True)
class HoleRow:
    """One detected hole to insert: centre (x = col, y = row) px, radius px, prior_score in
    [0, 1], features a 1-D float vector."""

    center: tuple[float, float]
    radius: float | None
    prior_score: float
    features: np.ndarray


@dataclass(frozen=True)
class HistoricalState:
    """Training data of a saved state (published ``save_state`` folder): its visited squares
    (features, target = count of good holes) and visited holes (features, ctf Å, ice)."""

    source: str
    lm_features: list
    lm_targets: list
    mm_features: list
    mm_ctfs: list
    mm_ices: list


def features_blob(v) -> bytes:
    """Feature vector → little-endian float64 bytes (stored in the ``features`` column).

    Parameters
    ----------
    v : array-like
        Feature values (flattened).

    Returns
    -------
    bytes
        8 bytes per value, little-endian float64; `blob_features` inverts it.

    Examples
    --------
    >>> features_blob([1.0]).hex()
    '000000000000f03f'
    """
    return np.ascontiguousarray(np.asarray(v, dtype="<f8").ravel()).tobytes()


def blob_features(b: bytes | None) -> np.ndarray | None:
    """Inverse of `features_blob` (None stays None).

    >>> blob_features(features_blob([1.0, 2.5])).tolist()
    [1.0, 2.5]
    """
    return None if b is None else np.frombuffer(b, dtype="<f8").copy()


class Store:
    """The state of one server: a SQLite database in ``state_dir``.

    Thread-safe: each thread uses its own connection. Safe across processes: writers are
    serialised by SQLite's lock (``BEGIN IMMEDIATE``). Every public method that writes is one
    transaction: it is either wholly applied and durable when the method returns, or not at
    all.

    Parameters
    ----------
    state_dir : str or Path
        Folder for the database (created if missing).

    Raises
    ------
    StateError
        The folder cannot be created / written, or holds a database of another schema.

    Examples
    --------
    >>> import shutil, tempfile
    >>> d = tempfile.mkdtemp()
    >>> st = Store(d)
    >>> box = ((0, 0), (10, 0), (10, 10), (0, 10))  # (x, y) = (col, row) px
    >>> ids = st.add_squares(1, 0, [SquareRow((5.0, 5.0), box, 0.9, 3.0, 100.0, np.zeros(4))])
    >>> st.visit_square(ids[0])
    >>> ids, st.lm_rows()[0]["visited"], st.counts()["squares"]
    ([1], True, 1)
    >>> st.close(); shutil.rmtree(d)
    """

    def __init__(self, state_dir: str | os.PathLike):
        self.dir = Path(state_dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StateError(f"{self.dir}: cannot create the state folder ({e.strerror})") from None
        self.path = self.dir / DB_NAME
        self._local = threading.local()
        try:
            with self.transaction() as c:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) != SCHEMA_VERSION:
                    raise StateError(f"{self.path}: state schema version {row[0]}, this server reads "
                                     f"version {SCHEMA_VERSION}; use another --state folder")
                if c.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0:
                    c.execute("INSERT INTO sessions (started_unix) VALUES (?)", (time.time(),))
        except sqlite3.Error as e:
            raise StateError(f"{self.path}: cannot open the state database ({e})") from None

    # ------------------------------------------------------------------ plumbing

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=FULL")
            c.execute("PRAGMA foreign_keys=ON")
            self._local.conn = c
        return c

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on error)."""
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every read inside sees the same committed state."""
        c = self._conn()
        c.execute("BEGIN")
        try:
            yield c
        finally:
            c.execute("COMMIT")

    @staticmethod
    def _session(c: sqlite3.Connection) -> int:
        return int(c.execute("SELECT MAX(session_id) FROM sessions").fetchone()[0])

    # ------------------------------------------------------------------ sessions / settings

    def current_session(self) -> int:
        """The current session number (1 for a fresh state)."""
        with self.snapshot() as c:
            return self._session(c)

    def new_session(self, historical: Sequence[HistoricalState] = (), keep_historical: bool = False) -> int:
        """Start a new session: the current tables become empty, the active holes are
        cleared and the no-ice intensity is reset to -1 (as the published server); the
        session's historical training data become ``historical`` (after the current session's,
        with ``keep_historical``, as ``clear_current_state`` keeps them). Rows of earlier sessions
        stay in the database, so their ids are never reused. One transaction.

        Returns
        -------
        int
            The new session number.
        """
        with self.transaction() as c:
            old = self._session(c)
            c.execute("INSERT INTO sessions (started_unix) VALUES (?)", (time.time(),))
            c.execute("DELETE FROM active_holes")
            c.execute("INSERT OR REPLACE INTO settings VALUES ('noice_hole_intensity', -1.0)")
            s = self._session(c)
            if keep_historical:  # copied in their order
                c.execute("INSERT INTO historical (session_id, kind, source, features, target, ctf, ice_thickness) "
                          "SELECT ?, kind, source, features, target, ctf, ice_thickness FROM historical "
                          "WHERE session_id=? ORDER BY hist_id", (s, old))
            for h in historical:
                self._add_historical(c, s, h)
            return s

    def _add_historical(self, c, s: int, h: HistoricalState) -> None:
        c.executemany("INSERT INTO historical (session_id, kind, source, features, target) VALUES (?, 'lm', ?, ?, ?)",
                      [(s, h.source, features_blob(f), float(t)) for f, t in zip(h.lm_features, h.lm_targets)])
        c.executemany("INSERT INTO historical (session_id, kind, source, features, ctf, ice_thickness) "
                      "VALUES (?, 'mm', ?, ?, ?, ?)",
                      [(s, h.source, features_blob(f), float(a), float(b))
                       for f, a, b in zip(h.mm_features, h.mm_ctfs, h.mm_ices)])

    def add_historical(self, states: Sequence[HistoricalState]) -> None:
        """Append historical training data to the current session (one transaction)."""
        with self.transaction() as c:
            s = self._session(c)
            for h in states:
                self._add_historical(c, s, h)

    def clear_historical(self) -> None:
        """Drop the current session's historical training data."""
        with self.transaction() as c:
            c.execute("DELETE FROM historical WHERE session_id=?", (self._session(c),))

    def historical(self, kind: str, c: sqlite3.Connection | None = None) -> list[tuple]:
        """The current session's historical rows of ``kind``: 'lm' → (features, target),
        'mm' → (features, ctf, ice_thickness), in insertion order."""
        if c is None:
            with self.snapshot() as c2:
                return self.historical(kind, c2)
        q = "features, target" if kind == "lm" else "features, ctf, ice_thickness"
        return [(blob_features(r[0]),) + tuple(r[1:]) for r in c.execute(
            f"SELECT {q} FROM historical WHERE session_id=? AND kind=? ORDER BY hist_id", (self._session(c), kind))]

    def set_setting(self, key: str, value: float) -> None:
        """Store one numeric setting (e.g. ``noice_hole_intensity``)."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, float(value)))

    def get_setting(self, key: str, default: float | None = None) -> float | None:
        """A stored setting, or ``default`` when it was never set."""
        with self.snapshot() as c:
            row = c.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return default if row is None or row[0] is None else float(row[0])

    # ------------------------------------------------------------------ images

    def find_image(self, kind: str, sha256: str, grid_id, tile_id=None, square_id=None,
                   mm_img_id=None) -> int | None:
        """The image_id of an identical earlier push in this session (same kind, pixels and
        client ids), or None. Lets a client retry a push without duplicating rows.
        ``sha256`` None: an earlier push with these client ids, whatever its pixels."""
        with self.snapshot() as c:
            row = c.execute(
                "SELECT image_id FROM images WHERE session_id=? AND kind=? AND (sha256=? OR ? IS NULL) "
                "AND grid_id IS ? AND tile_id IS ? AND square_id IS ? AND mm_img_id IS ? ORDER BY image_id LIMIT 1",
                (self._session(c), kind, sha256, sha256, grid_id, tile_id, square_id, mm_img_id)).fetchone()
        return None if row is None else int(row[0])

    # ------------------------------------------------------------------ squares

    def add_squares(self, grid_id: int, tile_id: int | None, rows: Sequence[SquareRow],
                    sha256: str = "") -> list[int]:
        """Insert the squares of one atlas tile (one transaction).

        Parameters
        ----------
        grid_id, tile_id : int
            The client's ids (opaque, echoed back).
        rows : sequence of SquareRow
        sha256 : str
            Digest of the tile's pixels (identifies a retried push, `find_image`).

        Returns
        -------
        list of int
            The new square ids, in the order of ``rows``.
        """
        with self.transaction() as c:
            s = self._session(c)
            cur = c.execute("INSERT INTO images (session_id, kind, grid_id, tile_id, sha256, n_found) "
                            "VALUES (?, 'lm', ?, ?, ?, ?)", (s, grid_id, tile_id, sha256, len(rows)))
            image_id = cur.lastrowid
            ids = []
            for r in rows:
                v = [float(t) for xy in r.vertices for t in xy]
                v = (v + [None] * 8)[:8]
                cur = c.execute(
                    "INSERT INTO squares (session_id, image_id, tile_id, grid_id, center_x, center_y, prior_score, "
                    "visited, vert_1_x, vert_1_y, vert_2_x, vert_2_y, vert_3_x, vert_3_y, vert_4_x, vert_4_y, "
                    "brightness, area, features) VALUES (?,?,?,?,?,?,?,0,?,?,?,?,?,?,?,?,?,?,?)",
                    (s, image_id, tile_id, grid_id, float(r.center[0]), float(r.center[1]), float(r.prior_score),
                     *v, float(r.brightness), float(r.area), features_blob(r.features)))
                ids.append(int(cur.lastrowid))
            return ids

    def visit_square(self, square_id: int) -> None:
        """Mark a square visited. Raises UnknownIdError for an unknown id."""
        with self.transaction() as c:
            if c.execute("UPDATE squares SET visited=1 WHERE square_id=?", (int(square_id),)).rowcount == 0:
                raise UnknownIdError(f"unknown square_id {int(square_id)}")

    def square_exists(self, square_id: int) -> bool:
        """True when ``square_id`` names a stored square (any session)."""
        with self.snapshot() as c:
            return c.execute("SELECT 1 FROM squares WHERE square_id=?", (int(square_id),)).fetchone() is not None

    def lm_rows(self, grid_id: int | None = None, unvisited_only: bool = False) -> list[dict]:
        """Squares of the current session in square_id order, as dicts with the LM columns
        plus ``features`` (numpy vector). ``grid_id`` None or -1: all grids."""
        with self.snapshot() as c:
            return self._lm_rows(c, grid_id, unvisited_only)

    def _lm_rows(self, c, grid_id=None, unvisited_only=False) -> list[dict]:
        q = "SELECT " + ", ".join(LM_COLUMNS) + ", features FROM squares WHERE session_id=?"
        args: list = [self._session(c)]
        if grid_id is not None and int(grid_id) != -1:
            q += " AND grid_id=?"
            args.append(int(grid_id))
        if unvisited_only:
            q += " AND visited=0"
        q += " ORDER BY square_id"
        out = []
        for row in c.execute(q, args):
            d = dict(zip(LM_COLUMNS + ("features",), row))
            d["visited"] = bool(d["visited"])
            d["features"] = blob_features(d["features"])
            out.append(d)
        return out

    # ------------------------------------------------------------------ holes

    def add_holes(self, grid_id: int | None, square_id: int, mm_img_id: int | None, rows: Sequence[HoleRow],
                  sha256: str = "", set_active: bool = True) -> list[int]:
        """Insert the holes of one medium-magnification image (one transaction); with
        ``set_active`` the active holes become exactly these.

        Returns
        -------
        list of int
            The new hole ids, in the order of ``rows``.

        Raises
        ------
        UnknownIdError
            ``square_id`` names no stored square (nothing is written).
        """
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM squares WHERE square_id=?", (int(square_id),)).fetchone() is None:
                raise UnknownIdError(f"unknown square_id {int(square_id)}")
            s = self._session(c)
            cur = c.execute("INSERT INTO images (session_id, kind, grid_id, square_id, mm_img_id, sha256, n_found) "
                            "VALUES (?, 'mm', ?, ?, ?, ?, ?)", (s, grid_id, square_id, mm_img_id, sha256, len(rows)))
            image_id = cur.lastrowid
            ids = []
            for r in rows:
                cur = c.execute(
                    "INSERT INTO holes (session_id, image_id, mm_img_id, square_id, grid_id, center_x, center_y, "
                    "radius, prior_score, visited, features) VALUES (?,?,?,?,?,?,?,?,?,0,?)",
                    (s, image_id, mm_img_id, int(square_id), grid_id, float(r.center[0]), float(r.center[1]),
                     None if r.radius is None else float(r.radius), float(r.prior_score),
                     features_blob(r.features)))
                ids.append(int(cur.lastrowid))
            if set_active:
                c.execute("DELETE FROM active_holes")
                c.executemany("INSERT INTO active_holes VALUES (?)", [(i,) for i in ids])
            return ids

    def hole_ids_of_image(self, image_id: int) -> list[int]:
        """Hole ids found in one stored image, in hole_id order."""
        with self.snapshot() as c:
            return [int(r[0]) for r in c.execute("SELECT hole_id FROM holes WHERE image_id=? ORDER BY hole_id",
                                                  (int(image_id),))]

    def set_active(self, hole_ids: Iterable[int]) -> None:
        """Make ``hole_ids`` the active holes."""
        with self.transaction() as c:
            c.execute("DELETE FROM active_holes")
            c.executemany("INSERT INTO active_holes VALUES (?)", [(int(i),) for i in hole_ids])

    def active_hole_ids(self) -> list[int]:
        """The active holes (those of the latest ``push_and_evaluate_mm`` not yet visited)."""
        with self.snapshot() as c:
            return [int(r[0]) for r in c.execute("SELECT hole_id FROM active_holes ORDER BY hole_id")]

    def visit_holes(self, hole_ids: Sequence[int], ctfs: Sequence, ices: Sequence) -> None:
        """Record exposures: each hole gets its ctf (Å) and ice thickness, is marked visited,
        its square is marked visited, and it leaves the active holes. All or nothing.

        Raises
        ------
        UnknownIdError
            Any id names no stored hole (nothing is written).
        ValueError
            The three lists differ in length.
        """
        if not (len(hole_ids) == len(ctfs) == len(ices)):
            raise ValueError(f"hole_ids, ctfs and ice_thicknesses differ in length "
                             f"({len(hole_ids)}, {len(ctfs)}, {len(ices)})")
        with self.transaction() as c:
            for h, ctf, ice in zip(hole_ids, ctfs, ices):
                h = int(h)
                row = c.execute("SELECT square_id FROM holes WHERE hole_id=?", (h,)).fetchone()
                if row is None:
                    raise UnknownIdError(f"unknown hole_id {h}")
                c.execute("UPDATE holes SET ctf=?, ice_thickness=?, visited=1 WHERE hole_id=?",
                          (None if ctf is None else float(ctf), None if ice is None else float(ice), h))
                c.execute("UPDATE squares SET visited=1 WHERE square_id=?", (int(row[0]),))
                c.execute("DELETE FROM active_holes WHERE hole_id=?", (h,))

    def mm_rows(self, hole_ids: Sequence[int] | None = None) -> list[dict]:
        """Holes as dicts with the MM columns plus ``features``, in hole_id order: those of
        ``hole_ids`` (any session; unknown ids raise UnknownIdError) or, with None, every
        hole of the current session."""
        with self.snapshot() as c:
            return self._mm_rows(c, hole_ids)

    def _mm_rows(self, c, hole_ids=None) -> list[dict]:
        cols = ", ".join(MM_COLUMNS) + ", features"
        if hole_ids is None:
            rows = c.execute(f"SELECT {cols} FROM holes WHERE session_id=? ORDER BY hole_id",
                             (self._session(c),)).fetchall()
        else:
            want = sorted({int(h) for h in hole_ids})
            rows = []
            for h in want:
                r = c.execute(f"SELECT {cols} FROM holes WHERE hole_id=?", (h,)).fetchone()
                if r is None:
                    raise UnknownIdError(f"unknown hole_id {h}")
                rows.append(r)
        out = []
        for row in rows:
            d = dict(zip(MM_COLUMNS + ("features",), row))
            d["visited"] = bool(d["visited"])
            d["features"] = blob_features(d["features"])
            out.append(d)
        return out

    def training_holes(self, c: sqlite3.Connection | None = None) -> list[dict]:
        """Visited holes of the current session with ctf, ice thickness and features (GP
        training), in hole_id order; ``c``: read inside that snapshot."""
        if c is None:
            with self.snapshot() as c2:
                return self.training_holes(c2)
        cols = ", ".join(MM_COLUMNS) + ", features"
        out = []
        for row in c.execute(f"SELECT {cols} FROM holes WHERE session_id=? AND visited=1 AND ctf IS NOT NULL "
                             "AND ice_thickness IS NOT NULL AND features IS NOT NULL ORDER BY hole_id",
                             (self._session(c),)):
            d = dict(zip(MM_COLUMNS + ("features",), row))
            d["visited"] = True
            d["features"] = blob_features(d["features"])
            out.append(d)
        return out

    def hole_count(self, c: sqlite3.Connection) -> int:
        """Holes of the current session (inside snapshot ``c``)."""
        return int(c.execute("SELECT COUNT(*) FROM holes WHERE session_id=?", (self._session(c),)).fetchone()[0])

    def visited_hole_ctfs(self, c: sqlite3.Connection) -> list[tuple[int, float]]:
        """(square_id, ctf) of the visited holes of the current session that have a ctf."""
        return [(int(a), float(b)) for a, b in c.execute(
            "SELECT square_id, ctf FROM holes WHERE session_id=? AND visited=1 AND ctf IS NOT NULL ORDER BY hole_id",
            (self._session(c),))]

    def counts(self) -> dict:
        """Row counts of the current session (for /health)."""
        with self.snapshot() as c:
            s = self._session(c)
            return {"session": s,
                    "squares": c.execute("SELECT COUNT(*) FROM squares WHERE session_id=?", (s,)).fetchone()[0],
                    "holes": c.execute("SELECT COUNT(*) FROM holes WHERE session_id=?", (s,)).fetchone()[0],
                    "visited_holes": c.execute("SELECT COUNT(*) FROM holes WHERE session_id=? AND visited=1",
                                               (s,)).fetchone()[0]}
