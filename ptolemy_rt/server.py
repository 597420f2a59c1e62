"""``ptolemy serve``: the HTTP server Smart Leginon and Appion talk to (Starlette + uvicorn).

Protocol: the published Ptolemy server (``server_dev``, 2023) as Leginon's ``ptolemyhandler.py``
and Appion's ``looplearn.py`` call it — same paths, bodies and replies:

- bodies are JSON whatever the Content-Type (Leginon sends none); an ``image`` is a nested
  list of numbers [row][col] (parsed while the body arrives, by a thread of its own and
  without building Python lists: `BodyReader`), a
  path of an MRC file on the server host (``"image": "/path.mrc"`` or ``"image_path"``), or
  the whole body is an MRC file (Content-Type application/octet-stream, or an MRC2014 header
  with map id "MAP "), the other fields then in the query string (``POST /push_lm?grid_id=1&tile_id=2``);
- state replies are the CSV text of the published tables (index column first, ``True`` /
  ``False``, empty cells for missing values) sent as one JSON string; others reply ``null``;
- coordinates: ``center_x`` = column, ``center_y`` = row, px, of the image sent.

Differences from the published server (its bugs, LEGINON_PTOLEMY_SERVER.md §3.5, fixed):
state is durable (`server_store`), ids come from SQLite AUTOINCREMENT and never repeat (they
start at 1), parallel pushes are serialised per transaction; an empty state gives a
header-only CSV, not a 500; historical states (``initialize_new_session``'s
``historical_state_paths``, ``load_historical_state``, ``append_multi_historical_states``)
are read and checked before anything changes and are stored durably as the session's extra
GP training data (saved states with another feature layout are ignored by the GPs); not
supported: ``new_state_path`` / ``overwrite_current_state`` / ``append_current_state``
(ids of a loaded state could not keep their meaning); an image with no hole returns no hole; unknown ids get a 404
naming the id and write nothing; ``visit_holes`` works before any medium-mag image; bad bodies
get a 422 with a one-line ``detail``; ``save_state`` works on empty tables; ice thicknesses
Appion posts 1e9 times too large are stored in nm (`ice_thickness_nm`).

Features (for the active learning, `active_learning`): a square's are the published four
[mean, max, variance, area] of the pixels inside its box (input image units, px²); a hole's
are computed from the radial profile around its centre: [ln(I0 / inner mean), inner std /
inner mean, inner mean / image median, radius / crop half-size, prior_score], I0 being the
no-ice intensity (``set_noice_hole_intensity``; unset: 1.2 × the image's 90th percentile, as
the published crop normalisation).
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io as _io
import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, active_learning as al
from .errors import EXIT_USAGE, InputImageError, ModelSetError, PtolemyError
from .server_store import LM_COLUMNS, MM_COLUMNS, SCHEMA_VERSION, HistoricalState, HoleRow, SquareRow, Store, UnknownIdError

PRED_COLUMNS = ("ctf_pred", "ice_pred", "ctf_var", "ice_var")
MRC_TYPES = ("application/octet-stream", "application/x-mrc", "image/x-mrc")
#: columns written as integers when the value is integral (pandas writes the id columns so)
_INT_COLUMNS = {"square_id", "tile_id", "grid_id", "hole_id", "mm_img_id", "center_x", "center_y"}


#: ice thicknesses above this (nm) cannot be real (1 mm): they are Appion's ×1e9 of a value already in nm
ICE_NM_LIMIT = 1e6


def ice_thickness_nm(value: float | None) -> float | None:
    """An ``ice_thicknesses`` value of ``visit_holes`` in nm.

    Appion's ``looplearn.py`` posts ``ObjIceThicknessData.thickness × 1e9`` (comment "#??? nm"),
    but Leginon computes that thickness as mean free path × ln(I0 / I) with the mean free path
    in nm (default 300 nm), so the value is already in nm and the post is 1e9 times too large
    (LEGINON_PTOLEMY_SERVER.md §4); a site that entered the mean free path in metres posts nm.
    The published server stores whatever arrives, and its hole GP (mean 76.7 nm) then sees
    10^10-nm ice. Here a value above ``ICE_NM_LIMIT`` (1 mm, impossible ice) is divided by
    1e9; anything else is kept as nm.

    Parameters
    ----------
    value : float or None
        As posted.

    Returns
    -------
    float or None
        Ice thickness, nm (None stays None).

    Examples
    --------
    >>> ice_thickness_nm(45.0), ice_thickness_nm(45.0 * 1e9), ice_thickness_nm(None)
    (45.0, 45.0, None)
    """
    if value is None:
        return None
    return value / 1e9 if abs(value) > ICE_NM_LIMIT else value


class BadRequest(ValueError):
    """The request body or a field is unusable (HTTP 422); the message says why."""


# ------------------------------------------------------------------------------ bodies


_PARSER = None
AMBIGUOUS_CAP = 4096  # numbers re-parsed exactly per image at most (more: the json fallback)
#: parser status codes (`_number_parser`)
_DONE, _NOT_PLAIN, _TOO_AMBIGUOUS, _MORE = 0, 1, 2, 3


def _number_parser():
    """The numba kernel of `_fast_image` and `BodyReader` (compiled on first use, cached on disk)."""
    global _PARSER
    if _PARSER is not None:
        return _PARSER
    import numba

    @numba.njit(cache=True, nogil=True)
    def parse_rows(b, i, n, phase, out, count, amb, namb, rows, cols):  # pragma: no cover - compiled
        """Scan b[i:n] of '[[n, n, ...], [...], ...]', resumable at row boundaries.

        phase -1: b[i] is the outer '['; 1: b[i] follows a row's ']'. Returns (status, i,
        phase, rows, cols, count, namb): status 0 = done (i = the offset after the outer
        ']'), 1 = not a plain rectangular list of numbers, 2 = too many ambiguous numbers,
        3 = b[:n] ends first (the state after the last whole row: call again from there
        with more bytes). out: float32 values; amb: (start, end, index) of the numbers whose
        float32 value the fast conversion cannot guarantee (re-parsed exactly by the caller).
        A failure at the end of the bytes (i >= n) is status 3, anywhere else status 1."""
        pow10 = np.empty(23, np.float64)
        pow10[0] = 1.0
        for k in range(1, 23):
            pow10[k] = pow10[k - 1] * 10.0
        s_i, s_phase, s_rows, s_cols, s_count, s_namb = i, phase, rows, cols, count, namb
        expect_row = False
        if phase == -1:
            if i >= n:
                return 3, s_i, s_phase, s_rows, s_cols, s_count, s_namb
            if b[i] != 91:  # '['
                return 1, i, phase, 0, 0, 0, 0
            i += 1
            expect_row = True
        while True:
            if not expect_row:  # after a row: ',' or the outer ']'
                while i < n and (b[i] == 32 or b[i] == 10 or b[i] == 13 or b[i] == 9):
                    i += 1
                if i >= n:
                    return 3, s_i, s_phase, s_rows, s_cols, s_count, s_namb
                if b[i] == 93:
                    return 0, i + 1, 1, rows, cols, count, namb
                if b[i] != 44:
                    return 1, i, phase, 0, 0, 0, 0
                i += 1
            expect_row = False
            while i < n and (b[i] == 32 or b[i] == 10 or b[i] == 13 or b[i] == 9):
                i += 1
            if i >= n:
                return 3, s_i, s_phase, s_rows, s_cols, s_count, s_namb
            if b[i] != 91:
                return 1, i, phase, 0, 0, 0, 0
            i += 1
            in_row = 0
            while True:  # numbers of one row
                while i < n and (b[i] == 32 or b[i] == 10 or b[i] == 13 or b[i] == 9):
                    i += 1
                s0 = i
                neg = False
                if i < n and b[i] == 45:  # '-'
                    neg = True
                    i += 1
                mant = np.uint64(0)
                nd = 0
                dropped = 0
                exp10 = 0
                seen = False
                # fast path, two digits a step (half the multiply chain): the same mantissa
                # and exponent as the loops below when there are at most 19 digits in all
                j = i
                fm = np.uint64(0)
                tot = 0
                fd = 0
                for part in range(2):  # integer digits, then (after a '.') fraction digits
                    k0 = j
                    while j + 1 < n:
                        d0 = np.int64(b[j]) - 48
                        d1 = np.int64(b[j + 1]) - 48
                        if d0 < 0 or d0 > 9 or d1 < 0 or d1 > 9:
                            break
                        fm = fm * np.uint64(100) + np.uint64(d0 * 10 + d1)
                        j += 2
                    if j < n and 48 <= b[j] <= 57:
                        fm = fm * np.uint64(10) + np.uint64(b[j] - 48)
                        j += 1
                    tot += j - k0
                    if part == 0:
                        if j < n and b[j] == 46:  # '.'
                            j += 1
                        else:
                            break
                    else:
                        fd = j - k0
                if tot <= 19:
                    mant = fm
                    exp10 = -fd
                    seen = tot > 0
                    i = j
                else:
                    while i < n and 48 <= b[i] <= 57:
                        seen = True
                        if nd < 19:
                            mant = mant * np.uint64(10) + np.uint64(b[i] - 48)
                            if mant != 0:
                                nd += 1
                        else:
                            dropped += 1
                        i += 1
                    exp10 += dropped
                    if i < n and b[i] == 46:  # '.'
                        i += 1
                        while i < n and 48 <= b[i] <= 57:
                            seen = True
                            if nd < 19:
                                mant = mant * np.uint64(10) + np.uint64(b[i] - 48)
                                if mant != 0:
                                    nd += 1
                                exp10 -= 1
                            i += 1
                if not seen:
                    if i >= n:
                        return 3, s_i, s_phase, s_rows, s_cols, s_count, s_namb
                    return 1, i, phase, 0, 0, 0, 0
                if i < n and (b[i] == 101 or b[i] == 69):  # 'e' 'E'
                    i += 1
                    eneg = False
                    if i < n and (b[i] == 43 or b[i] == 45):
                        eneg = b[i] == 45
                        i += 1
                    ev = 0
                    eseen = False
                    while i < n and 48 <= b[i] <= 57:
                        eseen = True
                        if ev < 100000:
                            ev = ev * 10 + (b[i] - 48)
                        i += 1
                    if not eseen:
                        if i >= n:
                            return 3, s_i, s_phase, s_rows, s_cols, s_count, s_namb
                        return 1, i, phase, 0, 0, 0, 0
                    exp10 += -ev if eneg else ev
                m = np.float64(mant)
                exact = mant < np.uint64(9007199254740992) and dropped == 0
                if mant == 0:
                    v = 0.0
                elif -22 <= exp10 <= 22:
                    v = m * pow10[exp10] if exp10 >= 0 else m / pow10[-exp10]
                else:
                    v = m * 10.0 ** exp10
                    exact = False
                if neg:
                    v = -v
                f = np.float32(v)
                if not exact:
                    # error of v < 3 ulp: unambiguous when ±8 ulp round to the same float32
                    ulp = np.spacing(abs(v)) if v != 0.0 else 5e-324
                    if (not np.isfinite(v)) or np.float32(v - 8 * ulp) != f or np.float32(v + 8 * ulp) != f:
                        if namb >= amb.shape[0]:
                            return 2, i, phase, 0, 0, 0, 0
                        amb[namb, 0] = s0
                        amb[namb, 1] = i
                        amb[namb, 2] = count
                        namb += 1
                if count >= out.size:
                    return 1, i, phase, 0, 0, 0, 0
                out[count] = f
                count += 1
                in_row += 1
                while i < n and (b[i] == 32 or b[i] == 10 or b[i] == 13 or b[i] == 9):
                    i += 1
                if i >= n:
                    return 3, s_i, s_phase, s_rows, s_cols, s_count, s_namb
                if b[i] == 44:  # ','
                    i += 1
                    continue
                if b[i] == 93:  # ']'
                    i += 1
                    break
                return 1, i, phase, 0, 0, 0, 0
            if cols < 0:
                cols = in_row
            elif in_row != cols:
                return 1, i, phase, 0, 0, 0, 0
            rows += 1
            phase = 1
            s_i, s_phase, s_rows, s_cols, s_count, s_namb = i, phase, rows, cols, count, namb

    _PARSER = parse_rows
    return _PARSER


class _ParsedPixels(np.ndarray):
    """float32 pixels made by the body parser and held by nobody else (`image_from_body` uses
    them without a copy)."""


def _finish_values(raw, out: np.ndarray, amb: np.ndarray, namb: int, rows: int, cols: int) -> np.ndarray:
    """Re-parse the ambiguous numbers exactly; the [row, col] view of the values."""
    for s0, e0, k in amb[:namb]:
        out[k] = np.float32(float(raw[s0:e0]))
    return out[:rows * cols].reshape(rows, cols).view(_ParsedPixels)


def _fast_image(raw, start: int) -> tuple[np.ndarray, int] | None:
    """Parse the 2-D list of numbers at raw[start] ('[') without Python lists.

    Returns (float32 array [row, col], end offset) or None when the text is not a plain
    rectangular list of lists of numbers (the caller then uses json). Every value equals
    float32(float(text)) exactly: numbers whose fast conversion could round otherwise are
    re-parsed by Python."""
    b = np.frombuffer(raw, dtype=np.uint8)
    out = np.empty((len(raw) - start) // 2 + 1, np.float32)  # untouched pages cost no memory
    amb = np.empty((AMBIGUOUS_CAP, 3), np.int64)
    status, end, _, rows, cols, _, namb = _number_parser()(b, start, len(raw), -1, out, 0, amb, 0, 0, -1)
    if status != _DONE or rows == 0 or cols == 0:
        return None
    return _finish_values(raw, out, amb, namb, rows, cols), int(end)


def _image_key_value(raw, key: int) -> int | None:
    """Offset of the value after the ``"image"`` at raw[key] when a ':' follows it (-1: the
    bytes end first; None: no ':', not the key)."""
    j = key + len(b'"image"')
    n = len(raw)
    while j < n and raw[j] in b" \t\r\n":
        j += 1
    if j >= n:
        return -1
    if raw[j] != 58:  # ':'
        return None
    j += 1
    while j < n and raw[j] in b" \t\r\n":
        j += 1
    return j if j < n else -1


def _with_image(raw, j: int, end: int, arr: np.ndarray) -> dict | None:
    """The body with raw[j:end] (the image text) replaced by ``arr``, when the rest is a JSON
    object whose ``image`` is that text; else None (the caller parses it all with json)."""
    try:
        d = json.loads(bytes(raw[:j]) + b"null" + bytes(raw[end:]))
    except ValueError:
        return None
    if isinstance(d, dict) and "image" in d and d["image"] is None:
        d["image"] = arr
        return d
    return None


def parse_json_body(raw: bytes, fast: bool = True) -> dict:
    """A request body → dict. JSON whatever the Content-Type; an ``"image"`` nested list of
    numbers is parsed by a fast path into a float32 numpy array [row, col], the values of
    ``np.float32(json.loads(...))`` exactly (the pipelines work in float32).

    Parameters
    ----------
    raw : bytes or bytearray
        The body.
    fast : bool
        Try the fast image path first (False: json only, for a body `BodyReader` already
        found unusual).

    Returns
    -------
    dict
        The JSON object; ``image`` a float32 array when the fast path read it.

    Raises
    ------
    BadRequest
        Not JSON, or not a JSON object.

    Examples
    --------
    >>> d = parse_json_body(b'{"image": [[1, 2], [3, 4.5]], "grid_id": 3}')
    >>> d["image"].tolist(), d["grid_id"]
    ([[1.0, 2.0], [3.0, 4.5]], 3)
    """
    if not raw or raw.isspace():
        return {}
    key = raw.find(b'"image"') if fast else -1
    while key >= 0:
        j = _image_key_value(raw, key)
        if j is not None:
            if j >= 0 and raw[j:j + 2] == b"[[":
                got = _fast_image(raw, j)
                if got is not None:
                    d = _with_image(raw, j, got[1], got[0])
                    if d is not None:
                        return d
            break
        key = raw.find(b'"image"', key + 1)
    try:
        d = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"body is not JSON ({e})") from None
    if not isinstance(d, dict):
        raise BadRequest(f"body must be a JSON object, got {type(d).__name__}")
    return d


class BodyReader:
    """A request body read chunk by chunk, its ``"image"`` nested list parsed by a thread of
    its own while the rest is still arriving (the parse of a 30 MB body then costs little
    time after the last byte, and the event loop only copies bytes).

    The result is that of `parse_json_body` on the whole body: the same dict, the image the
    same float32 values. Bodies that are not plain (no ``"image": [[``, another layout,
    too many numbers to re-parse exactly, no ``expected`` length, more bytes than announced)
    are parsed at the end by `parse_json_body`.

    Parameters
    ----------
    expected : int or None
        The Content-Length (bytes); None: unknown (no parsing while reading). The buffer
        for that many bytes is reserved, not written: memory is used as bytes arrive.

    Examples
    --------
    >>> text = b'{"grid_id": 1, "image": [[1, 2.5], [3, -4e2]]}'
    >>> r = BodyReader(len(text))
    >>> for k in range(0, len(text), 7):  # any chunking
    ...     r.feed(text[k:k + 7])
    >>> d = r.json()
    >>> d["image"].tolist(), d["grid_id"], r.parsed_early
    ([[1.0, 2.5], [3.0, -400.0]], 1, True)
    """

    #: new bytes (up to a row's end) that wake the parser thread: fewer wake-ups, each
    #: of which waits for a CPU on a loaded machine
    NOTIFY_STEP = 1 << 18

    def __init__(self, expected: int | None):
        self.fill = 0
        self._seen = 0  # bytes up to the last ']' received
        self.parsed_early = False
        self._head = bytearray()  # the bytes up to the image (searched for the key), then its start
        self._from = 0  # where the key search goes on
        self._arr = None
        self._extra = None  # bytearray of the whole body when there is no usable buffer
        self._thread = None
        self._cond = threading.Condition()
        self._limit = 0  # bytes the parser may read (up to the last ']' received)
        self._closed = False
        self._state = "later"  # search → parse → done | off (failed) | later (parse at the end)
        if expected is not None and expected > 0:
            try:
                self._arr = _take_buffer(expected)
                self._state = "search"
            except (MemoryError, ValueError):
                self._arr = None
        if self._arr is None:
            self._extra = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Append one chunk (from the event loop: a copy, a search of the chunk, a notify)."""
        if not chunk:
            return
        old, n = self.fill, len(chunk)
        if self._extra is not None:
            self._extra += chunk
            self.fill += n
            return
        if old + n > len(self._arr):  # more than announced: keep it all, parse at the end
            self._stop("later")
            self._extra = bytearray(self._arr[:old].tobytes())
            self._extra += chunk
            self._arr = None
            self.fill += n
            return
        self._arr[old:old + n] = np.frombuffer(chunk, np.uint8)
        self.fill += n
        if self._state == "search":
            self._head += chunk
            self._search()
        elif self._state == "parse":
            last = chunk.rfind(b"]")
            if last >= 0:
                self._seen = old + last + 1
                if self._seen - self._limit >= self.NOTIFY_STEP or self.fill == len(self._arr):
                    self._wake()

    def _wake(self) -> None:
        with self._cond:
            self._limit = self._seen
            self._cond.notify()

    def _search(self) -> None:
        head = self._head
        while True:
            key = head.find(b'"image"', self._from)
            if key < 0:
                self._from = max(0, len(head) - len(b'"image"'))
                return
            j = _image_key_value(head, key)
            if j is None:
                self._from = key + 1
                continue
            if j < 0 or j + 2 > len(head):
                self._from = key  # wait for more bytes
                return
            if head[j:j + 2] != b"[[":
                self._state = "off"
                return
            try:
                self._out = np.empty((len(self._arr) - j) // 2 + 1, np.float32)  # virtual until written
            except (MemoryError, ValueError):
                self._state = "off"
                return
            self._amb = np.empty((AMBIGUOUS_CAP, 3), np.int64)
            self._j, self._st = j, (j, -1, 0, -1, 0, 0)  # (i, phase, rows, cols, count, namb)
            self._head = head[:1024]  # enough for looks_like_mrc
            self._state = "parse"
            last = head.rfind(b"]")
            self._limit = self._seen = last + 1 if last >= j else 0
            self._thread = threading.Thread(target=self._run, name="ptolemy-body-parse", daemon=True)
            self._thread.start()
            return

    def _run(self) -> None:
        """The parser thread: parse whole rows as they arrive, until done, failed or closed."""
        kernel = _number_parser()
        i, phase, rows, cols, count, namb = self._st
        try:
            while True:
                with self._cond:
                    while self._limit <= i and not self._closed:
                        self._cond.wait()
                    limit, closed = self._limit, self._closed
                if limit > i:
                    st, i, phase, rows, cols, count, namb = (int(v) for v in kernel(
                        self._arr, i, limit, phase, self._out, count, self._amb, namb, rows, cols))
                    self._st = (i, phase, rows, cols, count, namb)
                    if st == _DONE:
                        self._state = "done" if rows > 0 and cols > 0 else "off"
                        return
                    if st != _MORE:
                        self._state = "off"
                        return
                elif closed:
                    self._state = "off"  # the bytes ended inside the image
                    return
        except Exception:  # noqa: BLE001 - any surprise: json parses the body instead
            self._state = "off"

    def _stop(self, state: str | None, wait: bool = True) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None and wait:
            self._thread.join()
            self._thread = None
        if state is not None and self._state != "done":
            self._state = state

    def close(self, wait: bool = True) -> None:
        """No more bytes will come: the parser thread parses what it was not woken for yet
        and ends (``wait``: once it has). Safe to call twice."""
        if self._state == "parse" and self._seen > self._limit:
            self._wake()
        self._stop(None, wait)

    def looks_like_mrc(self) -> bool:
        """`looks_like_mrc` of the body received."""
        return looks_like_mrc(bytes(self._extra[:1024]) if self._extra is not None else
                              bytes(self._arr[:min(self.fill, 1024)]))

    def bytes(self) -> bytes:
        """The whole body received (a copy)."""
        return bytes(self._extra) if self._extra is not None else self._arr[:self.fill].tobytes()

    def json(self) -> dict:
        """The whole body as `parse_json_body` gives it (after the last chunk; waits for the
        parser thread, so call it off the event loop).

        Raises
        ------
        BadRequest
            As `parse_json_body`.
        """
        self.close()
        if self._state == "done" and self._arr is not None:
            end, _, rows, cols, _, namb = self._st
            raw = self._arr[:self.fill]
            arr = _finish_values(_Bytes(raw), self._out, self._amb, namb, rows, cols)
            d = _with_image(_Bytes(raw), self._j, end, arr)  # copies what it keeps
            if d is not None:
                self.parsed_early = True
                self.release()
                return d
        text = self.bytes()
        self.release()
        return parse_json_body(text, fast=self._state != "off")

    def release(self) -> None:
        """Hand the receive buffer back for the next body (after the last `json` / `bytes`:
        nothing read from it is used afterwards, and the reader is finished)."""
        self.close()
        if self._arr is not None:
            _give_buffer(self._arr)
            self._arr, self._extra = None, bytearray()


#: the receive buffer kept for the next body (one; at most SPARE_BUFFER_MAX bytes): a
#: new buffer costs a page fault per 4 KiB as the body arrives (about 10 ms for 30 MB)
_SPARE = [None]
_SPARE_LOCK = threading.Lock()
SPARE_BUFFER_MAX = 160 * 10**6


def _take_buffer(n: int) -> np.ndarray:
    """A uint8 array of n bytes, the spare one when it is large enough (contents undefined)."""
    with _SPARE_LOCK:
        spare = _SPARE[0]
        if spare is not None and n <= len(spare):
            _SPARE[0] = None
            return spare[:n]
    return np.empty(n, np.uint8)


def _give_buffer(arr: np.ndarray) -> None:
    """Keep a finished receive buffer as the spare (the larger one wins)."""
    base = arr.base if isinstance(arr.base, np.ndarray) else arr
    if base.nbytes > SPARE_BUFFER_MAX:
        return
    with _SPARE_LOCK:
        if _SPARE[0] is None or len(_SPARE[0]) < len(base):
            _SPARE[0] = base


def warmup_kernels() -> None:
    """Compile (or load from the disk cache) the server's numba kernels: the number parser
    for both kinds of buffer (`parse_json_body`'s read-only bytes, `BodyReader`'s array) and
    the hole profile of `consensus_radius` and the order statistics of `median_p90`, so that
    no request waits for a compiler.

    Examples
    --------
    >>> warmup_kernels()
    """
    text = b'{"image": [[1, 2.5]]}'
    parse_json_body(text)
    r = BodyReader(len(text))
    r.feed(text)
    r.json()
    consensus_radius(np.zeros((16, 16), np.float32), [(8.0, 8.0)], 8)
    median_p90(np.arange(1024, dtype=np.float32))


class _Bytes:
    """Slices of a uint8 array as bytes (what `_finish_values` / `_with_image` read)."""

    def __init__(self, arr: np.ndarray):
        self.arr = arr

    def __getitem__(self, sl: slice) -> bytes:
        return self.arr[sl].tobytes()


def looks_like_mrc(raw: bytes) -> bool:
    """True for bytes with an MRC2014 header (map id "MAP " at byte 208).

    Parameters
    ----------
    raw : bytes
        A request body.

    Returns
    -------
    bool
        At least 1024 bytes (one header) and "MAP" at bytes 208-210.

    Examples
    --------
    >>> looks_like_mrc(bytes(208) + b"MAP " + bytes(812)), looks_like_mrc(bytes(1024))
    (True, False)
    """
    return len(raw) >= 1024 and raw[208:211] == b"MAP"


def mrc_bytes_to_array(data: bytes, name: str = "<MRC body>") -> np.ndarray:
    """Pixels [row, col] of an MRC file given as bytes (first section of a stack of one).

    Parameters
    ----------
    data : bytes
        The whole MRC file.
    name : str
        What to call it in the error message.

    Returns
    -------
    numpy.ndarray
        The pixels [row, col] in the file's dtype (a stack of one section is squeezed to 2-D).

    Raises
    ------
    InputImageError
        Naming ``name``, when the bytes are not a readable MRC.

    Examples
    --------
    >>> import shutil, tempfile, mrcfile
    >>> d = tempfile.mkdtemp()
    >>> with mrcfile.new(d + "/a.mrc") as m:
    ...     m.set_data(np.arange(6, dtype=np.float32).reshape(2, 3))
    >>> data = open(d + "/a.mrc", "rb").read(); shutil.rmtree(d)
    >>> mrc_bytes_to_array(data).tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    >>> mrc_bytes_to_array(b"not an mrc", "tile.mrc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ptolemy_rt.errors.InputImageError: tile.mrc: not a readable MRC file (...)
    """
    import warnings

    import mrcfile.mrcinterpreter

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = mrcfile.mrcinterpreter.MrcInterpreter(iostream=_io.BytesIO(data), permissive=False)
            arr = np.asarray(m.data).copy()
            m.close()
    except Exception as e:  # mrcfile raises assorted errors on garbage
        raise InputImageError(f"{name}: not a readable MRC file ({type(e).__name__}: {e})") from None
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def _int(d: dict, key: str, required: bool = True, endpoint: str = "") -> int | None:
    v = d.get(key)
    if v is None:
        if required:
            raise BadRequest(f"{endpoint}: missing field {key!r}")
        return None
    try:
        f = float(v)
        if isinstance(v, bool) or not math.isfinite(f) or f != int(f):
            raise ValueError
        return int(f)
    except (TypeError, ValueError):
        raise BadRequest(f"{endpoint}: field {key!r} must be an integer, got {v!r}") from None


def _float(v, what: str) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise BadRequest(f"{what} must be a number, got {v!r}") from None
    if isinstance(v, bool) or not math.isfinite(f):
        raise BadRequest(f"{what} must be a finite number, got {v!r}")
    return f


def _list(d: dict, key: str, endpoint: str) -> list:
    v = d.get(key)
    if not isinstance(v, list):
        raise BadRequest(f"{endpoint}: field {key!r} must be a list, got {type(v).__name__}")
    return v


def image_from_body(d: dict, raw_mrc: bytes | None, endpoint: str) -> np.ndarray:
    """The image of a push request as a validated float32 array [row, col] (see module doc).

    Parameters
    ----------
    d : dict
        The JSON body: ``image`` (2-D list of numbers, or an MRC path) or ``image_path``.
    raw_mrc : bytes or None
        An MRC request body (takes precedence over ``d``).
    endpoint : str
        Named in error messages.

    Returns
    -------
    numpy.ndarray
        float32 pixels [row, col], validated as the CLI's inputs are (at least 64×64 px).

    Raises
    ------
    BadRequest
        No image field, or one that is not a 2-D list of numbers.
    InputImageError
        An unusable image (too small, not finite, unreadable MRC).

    Examples
    --------
    >>> a = image_from_body({"image": np.eye(64).tolist()}, None, "push_lm")
    >>> str(a.dtype), a.shape, float(a.sum())
    ('float32', (64, 64), 64.0)
    >>> image_from_body({}, None, "push_lm")
    Traceback (most recent call last):
    ...
    ptolemy_rt.server.BadRequest: push_lm: missing field 'image'
    """
    return _loaded_from_body(d, raw_mrc, endpoint).pixels


def _loaded_from_body(d: dict, raw_mrc: bytes | None, endpoint: str):
    """`image_from_body` as the validated `io.LoadedImage` (what the pipelines take without
    validating and copying it again)."""
    from .io import _validate_2d, read_mrc, validate_array

    if raw_mrc is not None:
        return validate_array(mrc_bytes_to_array(raw_mrc), f"{endpoint} MRC body")
    img = d.get("image", d.get("image_path"))
    if img is None:
        raise BadRequest(f"{endpoint}: missing field 'image'")
    if isinstance(img, str):
        return read_mrc(img)
    if type(img) is _ParsedPixels:  # made by the body parser, held by nobody else: no copy
        return _validate_2d(img.view(np.ndarray), f"{endpoint} image", None, None, owned=True)
    if isinstance(img, np.ndarray):
        arr = img
    else:
        try:
            arr = np.asarray(img, dtype=np.float64)
        except (TypeError, ValueError):
            raise BadRequest(f"{endpoint}: field 'image' must be a 2-D list of numbers") from None
    return validate_array(arr, f"{endpoint} image")


def _pipeline_input(loaded):
    """What the pipelines get for the validated image of a push: the LoadedImage that
    validating its pixels again would make (no pixel size, no section: the server passes
    the pipelines pixels only), without validating and copying them again."""
    import dataclasses

    return dataclasses.replace(loaded, path="<array>", pixel_size_nm=None, section=None, pixel_size_source="header",
                               stage=None, origin=None, scratch=False)


def pixels_sha256(pix: np.ndarray) -> str:
    """Digest of an image's float32 pixels and shape (identifies a retried push).

    Parameters
    ----------
    pix : numpy.ndarray
        Image [row, col]; hashed as float32, so a float64 copy of the same values matches.

    Returns
    -------
    str
        64 hex digits of SHA-256 over the shape text and the pixel bytes.

    Examples
    --------
    >>> a = np.zeros((2, 2), np.float32)
    >>> pixels_sha256(a) == pixels_sha256(a.astype(np.float64)), pixels_sha256(a) == pixels_sha256(np.zeros((1, 4)))
    (True, False)
    """
    h = hashlib.sha256(str(pix.shape).encode())
    h.update(np.ascontiguousarray(pix, dtype=np.float32).ravel())  # the buffer itself: no bytes copy
    return h.hexdigest()


# ------------------------------------------------------------------------------ features


def polygon_pixel_mask(vertices, shape) -> tuple[slice, slice, np.ndarray]:
    """Pixels whose centres lie inside a convex polygon.

    Parameters
    ----------
    vertices : array-like, shape (N, 2)
        Corners as (x, y) = (col, row) in pixel-corner coordinates (pixel (r, c) has its
        centre at (c + 0.5, r + 0.5)), in order (either orientation).
    shape : tuple of int
        (rows, cols) of the image; the window is clipped to it.

    Returns
    -------
    tuple
        (row slice, col slice, bool mask [row, col] of that window); empty slices and a
        (0, 0) mask when the polygon lies outside the image.

    Examples
    --------
    >>> rs, cs, m = polygon_pixel_mask([(1, 1), (3, 1), (3, 3), (1, 3)], (5, 5))
    >>> (rs.start, rs.stop), (cs.start, cs.stop), m.tolist()
    ((1, 3), (1, 3), [[True, True], [True, True]])
    """
    v = np.asarray(vertices, float)
    h, w = shape
    r0 = max(int(math.floor(v[:, 1].min())), 0)
    r1 = min(int(math.ceil(v[:, 1].max())), h)
    c0 = max(int(math.floor(v[:, 0].min())), 0)
    c1 = min(int(math.ceil(v[:, 0].max())), w)
    if r1 <= r0 or c1 <= c0:
        return slice(0, 0), slice(0, 0), np.zeros((0, 0), bool)
    yy, xx = np.mgrid[r0:r1, c0:c1] + 0.5
    cross = []
    for k in range(len(v)):
        (x0, y0), (x1, y1) = v[k], v[(k + 1) % len(v)]
        cross.append((x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0))
    cross = np.array(cross)
    inside = np.all(cross >= 0, axis=0) | np.all(cross <= 0, axis=0)
    return slice(r0, r1), slice(c0, c1), inside


def square_features(pix: np.ndarray, vertices, area: float) -> np.ndarray:
    """The published four square features: [mean, max, variance, area] of the pixels inside
    the square's box (image units; area px²).

    Parameters
    ----------
    pix : numpy.ndarray
        Atlas image [row, col].
    vertices : array-like, shape (N, 2)
        The square's box corners, (x, y) = (col, row), as for `polygon_pixel_mask`.
    area : float
        The square's area, px² (passed through as the fourth feature).

    Returns
    -------
    numpy.ndarray, shape (4,)
        [mean, max, variance, area]; [0, 0, 0, area] when no pixel centre lies inside.

    Examples
    --------
    >>> pix = np.zeros((5, 5)); pix[1:3, 1:3] = [[1, 2], [3, 4]]
    >>> square_features(pix, [(1, 1), (3, 1), (3, 3), (1, 3)], 4.0).tolist()
    [2.5, 4.0, 1.25, 4.0]
    """
    rs, cs, m = polygon_pixel_mask(vertices, pix.shape)
    vals = pix[rs, cs][m]
    if vals.size == 0:
        return np.array([0.0, 0.0, 0.0, float(area)])
    return np.array([float(vals.mean()), float(vals.max()), float(vals.var()), float(area)])


def hole_profile(pix: np.ndarray, center_xy, half: int):
    """Radial mean profile (1 px bins, r < half) of the pixels around a hole centre.

    Parameters
    ----------
    pix : numpy.ndarray
        Image [row, col].
    center_xy : tuple of float
        Hole centre (x, y) = (col, row), px.
    half : int
        Half-size of the window, px; radii 0 .. half - 1 are binned.

    Returns
    -------
    tuple of numpy.ndarray
        (profile, counts), both of length ``half``, indexed by integer radius (px): the mean
        pixel value and the number of pixels in each bin (empty bins: mean 0).

    Examples
    --------
    >>> p, n = hole_profile(np.ones((9, 9)), (4, 4), 3)
    >>> p.tolist(), n.tolist()
    ([1.0, 1.0, 1.0], [1, 8, 16])
    """
    cx, cy = center_xy
    h, w = pix.shape
    r0, r1 = max(int(cy) - half, 0), min(int(cy) + half + 1, h)
    c0, c1 = max(int(cx) - half, 0), min(int(cx) + half + 1, w)
    win = pix[r0:r1, c0:c1].astype(np.float64)
    yy, xx = np.mgrid[r0:r1, c0:c1]
    r = np.hypot(yy + 0.5 - (cy + 0.5), xx + 0.5 - (cx + 0.5)).astype(int).ravel()
    keep = r < half
    cnt = np.bincount(r[keep], minlength=half)
    s = np.bincount(r[keep], weights=win.ravel()[keep], minlength=half)
    return s / np.maximum(cnt, 1), cnt


def hole_radius(profile: np.ndarray) -> float | None:
    """Hole edge radius (px) of a radial profile: the radius, in the outer 80 %, of the
    steepest change (3-px smoothed) from the centre level (mean of r < 0.2 n) towards the rim
    level (last 10 % of radii); None when the two levels are equal.

    >>> r = np.arange(100.0)
    >>> hole_radius(np.where(r < 60, 10.0, 2.0))  # the edge lies between r = 59 and 60
    59.0
    """
    n = len(profile)
    if n < 10:
        return None
    inner = float(profile[:max(int(0.2 * n), 1)].mean())
    rim = float(profile[int(0.9 * n):].mean())
    if abs(inner - rim) <= 1e-6 * max(abs(inner), abs(rim), 1.0):
        return None
    sm = np.convolve(profile, np.ones(3) / 3, mode="same")
    step = (sm[:-2] - sm[2:]) * np.sign(inner - rim)  # drop from r-1 to r+1, centred at r
    lo = max(int(0.2 * n), 1)
    k = int(np.argmax(step[lo - 1:n - 3])) + lo  # r in [lo, n-2)
    return float(k)


def hole_features(pix: np.ndarray, center_xy, radius: float | None, half: int, prior: float, i0: float,
                  median: float) -> np.ndarray:
    """Feature vector of one hole (module docstring; pixel units as ``pix``). ``radius``: the
    image's consensus hole radius, px (None: a third of ``half``). The inner level is the
    median of the pixels within 0.7 radius (robust to small contamination).

    Parameters
    ----------
    pix : numpy.ndarray
        Image [row, col].
    center_xy : tuple of float
        Hole centre (x, y) = (col, row), px (truncated to whole pixels).
    radius : float or None
        Consensus hole radius, px.
    half : int
        Profile half-size, px (the radius feature is radius / half).
    prior : float
        The hole's prior score in [0, 1].
    i0 : float
        Empty-hole intensity I0 (image units).
    median : float
        The image's median (image units).

    Returns
    -------
    numpy.ndarray, shape (5,)
        [log(i0 / inner), std / inner, inner / median, radius / half, prior].

    Examples
    --------
    >>> f = hole_features(np.full((20, 20), 4.0), (10, 10), 6.0, 12, 0.7, 8.0, 4.0)
    >>> np.round(f, 6).tolist()  # log(8 / 4) = 0.693147
    [0.693147, 0.0, 1.0, 0.5, 0.7]
    """
    cx, cy = int(center_xy[0]), int(center_xy[1])
    lim = max(int(0.7 * radius), 2) if radius else max(int(half) // 3, 2)
    h, w = pix.shape
    r0, r1, c0, c1 = max(cy - lim, 0), min(cy + lim + 1, h), max(cx - lim, 0), min(cx + lim + 1, w)
    yy, xx = np.mgrid[r0:r1, c0:c1]
    vals = pix[r0:r1, c0:c1][(yy - cy) ** 2 + (xx - cx) ** 2 <= lim * lim].astype(np.float64)
    inner = float(np.median(vals)) if vals.size else float(pix[min(cy, h - 1), min(cx, w - 1)])
    std = float(vals.std()) if vals.size else 0.0
    inner_pos = max(inner, 1e-6)
    return np.array([math.log(max(i0, 1e-6) / inner_pos), std / inner_pos, inner / max(median, 1e-6),
                     (radius or 0.0) / max(half, 1), float(prior)])


def median_p90(pix: np.ndarray) -> tuple[float, float]:
    """``np.median(pix)`` and ``np.percentile(pix, 90)``, exactly, without sorting the pixels.

    Both depend only on a few order statistics (the values at given ranks of the sorted
    pixels). For float32 pixels they are found by `_order_statistics` (two counting passes
    over the float32 bit patterns, no copy), and numpy's own `np.median` / `np.percentile`
    are then applied to a sorted stand-in array of the same length holding those values at
    those ranks, so the results are numpy's bit for bit (about a quarter of the time of the
    two calls). Other dtypes (and NaN / inf / zero order statistics): numpy on a copy
    partitioned once at those ranks.

    Parameters
    ----------
    pix : numpy.ndarray
        Image [row, col] (any real dtype; units as given).

    Returns
    -------
    tuple of float
        (median, 90th percentile), in the units of ``pix``.

    Examples
    --------
    >>> a = np.arange(11.0)[::-1].reshape(1, 11)
    >>> median_p90(a), median_p90(a.astype(np.float32))
    ((5.0, 9.0), (5.0, 9.0))
    """
    flat = np.ravel(pix)
    n = flat.size
    if n == 0:
        return float(np.median(flat)), float("nan")
    q = int(math.floor(0.9 * (n - 1)))
    # the ranks numpy reads (median: the middle one or two; 90th: floor and floor + 1 of
    # 0.9 (n - 1), numpy's own rounding of that index allowed one either side)
    ranks = sorted({(n - 1) // 2, n // 2} | {min(max(r, 0), n - 1) for r in range(q - 1, q + 3)})
    if flat.dtype == np.float32 and n >= 1024:
        vals = np.empty(len(ranks), np.float32)
        if _order_statistics()(flat.view(np.uint32), np.array(ranks, np.int64), vals.view(np.uint32)) == 0 \
                and np.all(vals != 0):  # a zero could be -0.0 in numpy's partition
            mid = [v for r, v in zip(ranks, vals) if r in ((n - 1) // 2, n // 2)]
            stand_in = np.empty(n, np.float32)  # sorted; stand_in[ranks] = vals
            lo = 0
            for r, v in zip(ranks, vals):
                stand_in[lo:r + 1] = v
                lo = r + 1
            stand_in[lo:] = vals[-1]
            # np.median: the mean of the middle value(s) of the partitioned data, a float32
            # array of 1 or 2 values (the same call on the same values here)
            return (float(np.median(np.array(mid, np.float32))),
                    float(np.percentile(stand_in, 90, overwrite_input=True)))
    part = np.partition(flat, ranks)
    return float(np.median(part)), float(np.percentile(part, 90))


_ORDER = None


def _order_statistics():
    """numba kernel: values at given ranks of float32 data, by counting (compiled on first
    use, cached on disk).

    kernel(bits, ranks, out) with ``bits`` the data viewed as uint32, ``ranks`` sorted int64,
    ``out`` uint32 (the float32 bits of the values); returns 0, or 1 when the data hold a NaN
    or an infinity (nothing written). Two passes: a count of the upper 16 bits of an
    order-preserving key (the bits with the sign flipped for positives, all flipped for
    negatives), then of the lower 16 bits within the bins the ranks fall in."""
    global _ORDER
    if _ORDER is None:
        import numba

        @numba.njit(cache=True, nogil=True)
        def order_stats(bits, ranks, out):  # pragma: no cover - compiled
            nr = ranks.size
            hist = np.zeros(65536, np.int64)
            for k in range(bits.size):
                u = np.int64(bits[k])
                hist[(u ^ (0x80000000 | ((u >> 31) * 0x7FFFFFFF))) >> 16] += 1
            # NaN and infinities: exponent bits all set (keys of the first and last 128 bins)
            if hist[:128].sum() + hist[65536 - 128:].sum() > 0:
                return 1
            hi = np.empty(nr, np.int64)
            within = np.empty(nr, np.int64)
            c, j = 0, 0
            for b in range(65536):
                while j < nr and ranks[j] < c + hist[b]:
                    hi[j] = b
                    within[j] = ranks[j] - c
                    j += 1
                c += hist[b]
            slot_of = np.full(65536, -1, np.int64)  # upper bin -> row of `low`
            nb = 0
            for t in range(nr):
                if slot_of[hi[t]] < 0:
                    slot_of[hi[t]] = nb
                    nb += 1
            low = np.zeros((nb, 65536), np.int64)
            for k in range(bits.size):
                u = np.int64(bits[k])
                key = u ^ (0x80000000 | ((u >> 31) * 0x7FFFFFFF))
                t = slot_of[key >> 16]
                if t >= 0:
                    low[t, key & 0xFFFF] += 1
            for t in range(nr):
                row = low[slot_of[hi[t]]]
                c = 0
                for b in range(65536):
                    c += row[b]
                    if within[t] < c:
                        key = (hi[t] << 16) | b
                        out[t] = np.uint32(key ^ (0x80000000 if key >= 0x80000000 else 0xFFFFFFFF))
                        break
            return 0

        _ORDER = order_stats
    return _ORDER


def consensus_radius(pix: np.ndarray, centers, half: int) -> float | None:
    """One hole radius (px) for the image, from the summed radial profiles of all its holes
    (as the published server takes one consensus radius); None when no edge is seen.

    Parameters
    ----------
    pix : numpy.ndarray
        Image [row, col].
    centers : sequence of (x, y)
        Hole centres, (col, row) px.
    half : int
        Profile half-size, px (as `hole_profile`); below 6, None.

    Returns
    -------
    float or None
        Edge radius, px, by `hole_radius` on the count-weighted mean profile.

    Examples
    --------
    >>> yy, xx = np.mgrid[:64, :64]
    >>> disk = np.where(np.hypot(yy - 32, xx - 32) < 10, 10.0, 2.0)  # bright disk of radius 10
    >>> consensus_radius(disk, [(32, 32)], 30)  # last bin fully inside
    9.0
    """
    if not len(centers) or half < 6:
        return None
    tot = np.zeros(half)
    cnt = np.zeros(half)
    s = np.zeros(half)
    n = np.zeros(half, np.int64)
    kernel = _profile_kernel()
    for cx, cy in centers:  # = hole_profile per hole (the same sums, in the same order)
        kernel(pix, float(cx), float(cy), int(half), s, n)
        tot += s / np.maximum(n, 1) * n
        cnt += n
    return hole_radius(tot / np.maximum(cnt, 1))


_PROFILE = None


def _profile_kernel():
    """numba kernel: the sums and counts of `hole_profile` (compiled on first use, cached)."""
    global _PROFILE
    if _PROFILE is None:
        import numba

        @numba.njit(cache=True, nogil=True)
        def profile_sums(pix, cx, cy, half, s, n):  # pragma: no cover - compiled
            s[:] = 0.0
            n[:] = 0
            h, w = pix.shape
            r0, r1 = max(int(cy) - half, 0), min(int(cy) + half + 1, h)
            c0, c1 = max(int(cx) - half, 0), min(int(cx) + half + 1, w)
            for y in range(r0, r1):
                dy = (y + 0.5) - (cy + 0.5)
                for x in range(c0, c1):
                    r = int(np.hypot(dy, (x + 0.5) - (cx + 0.5)))
                    if r < half:
                        s[r] += np.float64(pix[y, x])
                        n[r] += 1

        _PROFILE = profile_sums
    return _PROFILE


# ------------------------------------------------------------------------------ CSV


def _cell(col: str, v) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "True" if v else "False"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    f = float(v)
    if not math.isfinite(f):
        return ""
    if col in _INT_COLUMNS and f == int(f):
        return str(int(f))
    return repr(f)


def table_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    """CSV text of rows in the published layout (first column the index), '\\n' line ends.

    >>> table_csv([{"a": 1, "b": None, "visited": True}], ("a", "b", "visited"))
    'a,b,visited\\n1,,True\\n'
    """
    buf = _io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(columns)
    kinds = [(c, c in _INT_COLUMNS) for c in columns]
    inf = math.inf
    for r in rows:
        cells = []
        for c, integral in kinds:
            v = r.get(c)
            if type(v) is float:  # most cells: as `_cell`, without its general checks
                if v != v or v == inf or v == -inf:
                    cells.append("")
                elif integral and v.is_integer():
                    cells.append(str(int(v)))
                else:
                    cells.append(repr(v))
            else:
                cells.append(_cell(c, v))
        wr.writerow(cells)
    return buf.getvalue()


# ------------------------------------------------------------------------------ saved states


def read_saved_state(path) -> HistoricalState:
    """Training data of a saved-state folder (``lmstate.csv``, ``mmstate.csv``,
    ``lm_feats.npy``, ``mm_feats.npy``, as the published ``save_state`` and this server
    write; features matched to rows by position): visited squares with their count of
    visited holes with ctf < 5 Å, and visited holes with ctf and ice thickness.

    Parameters
    ----------
    path : str
        The saved-state folder.

    Returns
    -------
    HistoricalState

    Raises
    ------
    BadRequest
        Naming the folder and the problem (missing file, bad column, row/feature mismatch).

    Examples
    --------
    >>> read_saved_state("/nonexistent-ptolemy-state")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ptolemy_rt.server.BadRequest: /nonexistent-ptolemy-state: not a saved Ptolemy state (...)
    """
    if not isinstance(path, str) or not path:
        raise BadRequest(f"historical state path must be a folder path, got {path!r}")
    folder = Path(path)

    def rows(name):
        try:
            with open(folder / name, newline="") as f:
                return list(csv.DictReader(f))
        except OSError as e:
            raise BadRequest(f"{folder / name}: cannot read the saved state ({e.strerror})") from None

    def feats(name, n):
        try:
            a = np.load(folder / name, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise BadRequest(f"{folder / name}: cannot read the saved features ({e})") from None
        if n == 0:
            return np.zeros((0, 0))
        if a.ndim != 2 or a.shape[0] != n:
            raise BadRequest(f"{folder / name}: {a.shape[0] if a.ndim else 0} feature rows for {n} table rows")
        return a.astype(np.float64)

    def num(v):
        return None if v in (None, "") else float(v)

    try:
        lm = rows("lmstate.csv")
        mm = rows("mmstate.csv")
        lf = feats("lm_feats.npy", len(lm))
        mf = feats("mm_feats.npy", len(mm))
        good: dict = {}
        mm_f, mm_c, mm_i = [], [], []
        for k, r in enumerate(mm):
            if str(r.get("visited", "")).lower() != "true" or num(r.get("ctf")) is None:
                continue
            ctf = num(r["ctf"])
            sq = int(float(r["square_id"]))
            good[sq] = good.get(sq, 0) + (ctf < al.CTF_CUTOFF_A)
            if num(r.get("ice_thickness")) is not None:
                mm_f.append(mf[k])
                mm_c.append(ctf)
                mm_i.append(num(r["ice_thickness"]))
        lm_f, lm_t = [], []
        for k, r in enumerate(lm):
            if str(r.get("visited", "")).lower() == "true":
                lm_f.append(lf[k])
                lm_t.append(float(good.get(int(float(r["square_id"])), 0)))
    except (KeyError, ValueError, TypeError) as e:
        raise BadRequest(f"{folder}: not a saved Ptolemy state ({type(e).__name__}: {e})") from None
    return HistoricalState(str(folder), lm_f, lm_t, mm_f, mm_c, mm_i)


# ------------------------------------------------------------------------------ the service


class _Background:
    """fn() run by a thread of its own (numpy's sorts and copies release the GIL, so it
    overlaps the pipeline); `result` waits for it and returns its value or raises its error."""

    def __init__(self, fn):
        self._out: list = []
        self._thread = threading.Thread(target=self._run, args=(fn,), name="ptolemy-stats", daemon=True)
        self._thread.start()

    def _run(self, fn) -> None:
        try:
            self._out.append((True, fn()))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            self._out.append((False, e))

    def result(self):
        self._thread.join()
        ok, v = self._out[0]
        if not ok:
            raise v
        return v


class _JsonBody:
    """A request body to parse in the thread that runs the endpoint (`PtolemyService.timed`):
    ``parse()`` → the JSON object, the query-string fields added where the body has none."""

    def __init__(self, parse, query):
        self._parse, self._query = parse, query

    def parse(self) -> dict:
        body = self._parse()
        for k, v in self._query.items():
            body.setdefault(k, v)
        return body


class PtolemyService:
    """Endpoint logic, independent of the HTTP stack (every method takes the parsed body).

    Parameters
    ----------
    state_dir : path
        Folder of the durable state (`server_store.Store`).
    models : str, ModelSet or None
        Model set name (None: the default set) or a loaded set.
    rule : "published" or "fitted"
        Active-learning rule (`active_learning`).

    Examples
    --------
    >>> import shutil, tempfile
    >>> d = tempfile.mkdtemp()
    >>> svc = PtolemyService(d)
    >>> svc.visit_holes({"hole_ids": [], "ctfs": [], "ice_thicknesses": []})  # before any image: fine
    >>> svc.current_lm_state()
    'square_id,tile_id,grid_id,center_x,center_y,prior_score,visited,vert_1_x,vert_1_y,vert_2_x,vert_2_y,vert_3_x,vert_3_y,vert_4_x,vert_4_y,brightness,area\\n'
    >>> svc.store.close(); shutil.rmtree(d)
    """

    def __init__(self, state_dir, models: str | None = None, rule: str = "published",
                 compute_slots: int = 1):
        from .models import load_model_set

        if rule not in al.RULES:
            raise ValueError(f"rule must be one of {al.RULES}, got {rule!r}")
        self.store = Store(state_dir)
        self.models = models if models is not None and not isinstance(models, str) else load_model_set(models)
        self.rule = rule
        self._compute = threading.BoundedSemaphore(max(1, int(compute_slots)))
        self._tl = threading.local()

    @contextlib.contextmanager
    def _computing(self):
        """Hold a compute slot; adds the pipeline time (s, not the wait) to `last_compute_s`."""
        with self._compute:
            t0 = time.perf_counter()
            try:
                yield
            finally:
                self._tl.compute = getattr(self._tl, "compute", 0.0) + time.perf_counter() - t0

    def timed(self, fn, *args):
        """(fn(*args), pipeline seconds spent inside it in this thread, seconds spent parsing
        the body): a `_JsonBody` argument is parsed here first."""
        t0 = time.perf_counter()
        args = [a.parse() if isinstance(a, _JsonBody) else a for a in args]
        parse_s = time.perf_counter() - t0
        self._tl.compute = 0.0
        out = fn(*args)
        return out, self._tl.compute, parse_s

    # -- health
    def health(self) -> dict:
        return {"status": "ok", "version": __version__, "models": self.models.name, "rule": self.rule,
                "state": str(self.store.path), "schema_version": SCHEMA_VERSION, **self.store.counts()}

    # -- session
    def initialize_new_session(self, d: dict) -> None:
        """Start a new session; ``historical_state_paths`` (saved-state folders) become its
        extra GP training data; ``save_state_path`` saves the current state first.
        Everything is checked before anything is written."""
        if d.get("new_state_path"):
            raise BadRequest("initialize_new_session: new_state_path is not supported by this server "
                             "(its state is durable; start it with another --state folder)")
        hist = d.get("historical_state_paths") or []
        if not isinstance(hist, list):
            raise BadRequest("initialize_new_session: field 'historical_state_paths' must be a list")
        states = [read_saved_state(p) for p in hist]
        if d.get("save_state_path"):
            self.save_state({"path": d["save_state_path"]})
        self.store.new_session(states)

    def load_historical_state(self, d: dict) -> None:
        """Append one saved state's training data (``{"path": folder}``)."""
        self.store.add_historical([read_saved_state(d.get("path"))])

    def append_multi_historical_states(self, d: dict) -> None:
        """Append several saved states' training data (``{"paths": [folders]}``), all or none."""
        self.store.add_historical([read_saved_state(p) for p in _list(d, "paths", "append_multi_historical_states")])

    def set_noice_hole_intensity(self, d: dict) -> None:
        v = _float(d.get("value"), "set_noice_hole_intensity: field 'value'")
        if v is None:
            raise BadRequest("set_noice_hole_intensity: missing field 'value'")
        self.store.set_setting("noice_hole_intensity", v)

    # -- low mag
    def push_lm(self, d: dict, raw_mrc: bytes | None = None) -> None:
        """Find the squares of one atlas tile and store them (reply: null)."""
        self.push_lm_ids(d, raw_mrc)

    def push_lm_ids(self, d: dict, raw_mrc: bytes | None = None) -> dict:
        """`push_lm`, returning {"square_ids": [...] or None for a repeated push, "compute_s"}."""
        from .lowmag import find_squares

        grid = _int(d, "grid_id", True, "push_lm")
        tile = _int(d, "tile_id", False, "push_lm")
        loaded = _loaded_from_body(d, raw_mrc, "push_lm")
        pix = loaded.pixels
        sha = pixels_sha256(pix)
        if self.store.find_image("lm", sha, grid, tile) is not None:
            return {"square_ids": None, "repeated": True}
        t0 = time.perf_counter()
        with self._computing():
            res = find_squares(_pipeline_input(loaded), models=self.models)
            rows = [SquareRow(s.center, s.vertices, s.score, s.brightness, s.area,
                              square_features(pix, s.vertices, s.area)) for s in res.squares]
        t = time.perf_counter() - t0
        ids = self.store.add_squares(grid, tile, rows, sha)
        return {"square_ids": ids, "compute_s": t}

    def current_lm_state(self) -> str:
        return table_csv(self.store.lm_rows(), LM_COLUMNS)

    def select_next_square(self, d: dict) -> str:
        grid = _int(d, "value", False, "select_next_square")
        grid = -1 if grid is None else grid
        with self.store.snapshot() as c:
            every = self.store._lm_rows(c)
            n_holes = self.store.hole_count(c)
            th = self.store.visited_hole_ctfs(c)
            hist = self.store.historical("lm", c)
        cand = [r for r in every if not r["visited"] and (grid == -1 or r["grid_id"] == grid)]
        if cand:
            visited = [r for r in every if r["visited"]]
            y = al.square_targets([r["square_id"] for r in visited], [h[0] for h in th], [h[1] for h in th])
            nf = len(every[0]["features"])
            fx = lambda rs: np.array([r["features"] for r in rs], float).reshape(len(rs), nf)  # noqa: E731
            pr = lambda rs: [r["prior_score"] for r in rs]  # noqa: E731
            if not n_holes:  # published cold start: the MM table is empty
                visited, y = [], np.zeros(0)
            tx, tp = fx(visited), pr(visited)
            hist = [h for h in hist if len(h[0]) == nf]  # saved states of another feature layout: unusable
            if hist and (n_holes or self.rule == "published"):  # historical squares come first (older)
                tx = np.vstack([np.array([h[0] for h in hist]), tx])
                y = np.concatenate([[h[1] for h in hist], y])
                tp = [1.0] * len(hist) + list(tp)  # their prior scores are not saved with the features
            probs = al.rank_squares(tx, y, fx(cand), fx(every), pr(every), pr(cand), tp, rule=self.rule)
            for r, p in zip(cand, probs):
                r["GP_probs"] = float(p)
        return table_csv(cand, LM_COLUMNS + ("GP_probs",))

    def visit_square(self, d: dict) -> None:
        self.store.visit_square(_int(d, "square_id", True, "visit_square"))

    # -- medium mag
    def _holes_of(self, pix: np.ndarray, loaded=None) -> list[HoleRow]:
        """The hole rows of an image (pixels [row, col]; ``loaded``: the same image as the
        validated LoadedImage of `_loaded_from_body`, passed on to the pipeline)."""
        from .medmag import find_holes

        stats = _Background(lambda: median_p90(pix))  # during the pipeline
        try:
            res = find_holes(pix if loaded is None else _pipeline_input(loaded), models=self.models)
        finally:
            med, p90 = stats.result()
        i0 = self.store.get_setting("noice_hole_intensity", -1.0)
        if i0 is None or i0 <= 0:
            i0 = 1.2 * p90
        holes = sorted(res.holes, key=lambda h: (h.center[1], h.center[0]))  # reading order: rows, then cols
        if not holes:
            return []
        half = int(round(math.sqrt(holes[0].area) / 2))  # one crop size per image
        rad = consensus_radius(pix, [h.center for h in holes], half)
        return [HoleRow(h.center, rad, h.score, hole_features(pix, h.center, rad, half, h.score, i0, med))
                for h in holes]

    def _push_mm(self, d: dict, raw_mrc: bytes | None, endpoint: str, evaluate: bool):
        grid = _int(d, "grid_id", False, endpoint)
        square = _int(d, "square_id", True, endpoint)
        mm_img = _int(d, "mm_img_id", False, endpoint)
        if not self.store.square_exists(square):
            raise UnknownIdError(f"unknown square_id {square}")
        loaded = _loaded_from_body(d, raw_mrc, endpoint)
        pix = loaded.pixels
        digest, old = None, None
        if self.store.find_image("mm", None, grid, None, square, mm_img) is None:
            digest = _Background(lambda: pixels_sha256(pix))  # not a retry: hashed beside the pipeline
        else:
            sha = pixels_sha256(pix)
            old = self.store.find_image("mm", sha, grid, None, square, mm_img)
        if old is not None:  # a retried push: the same holes again, nothing added
            ids = self.store.hole_ids_of_image(old)
            if evaluate:
                self.store.set_active(ids)
        else:
            try:
                with self._computing():
                    rows = self._holes_of(pix, loaded)
            finally:
                if digest is not None:
                    sha = digest.result()
            ids = self.store.add_holes(grid, square, mm_img, rows, sha, set_active=evaluate)
        return ids

    def push_mm(self, d: dict, raw_mrc: bytes | None = None) -> None:
        self._push_mm(d, raw_mrc, "push_mm", evaluate=False)

    def push_and_evaluate_mm(self, d: dict, raw_mrc: bytes | None = None) -> str:
        ids = self._push_mm(d, raw_mrc, "push_and_evaluate_mm", evaluate=True)
        return self._evaluated(ids)

    def _evaluated(self, ids: list[int]) -> str:
        rows = self.store.mm_rows(ids) if ids else []
        if rows:
            with self.store.snapshot() as c:
                train = self.store.training_holes(c)
                hist = self.store.historical("mm", c)
            nf = len(rows[0]["features"])
            hist = [h for h in hist if len(h[0]) == nf]  # older first, as the published server
            feats = [h[0] for h in hist] + [r["features"] for r in train]
            tf = np.array(feats, float).reshape(len(feats), nf)
            cf = np.array([r["features"] for r in rows], float)
            pred = al.predict_holes(tf, [h[2] for h in hist] + [r["ice_thickness"] for r in train],
                                    [h[1] for h in hist] + [r["ctf"] for r in train], cf, rule=self.rule)
            for k, r in enumerate(rows):
                for c in PRED_COLUMNS:
                    r[c] = float(pred[c][k])
        return table_csv(rows, MM_COLUMNS + PRED_COLUMNS)

    def rerun_mm_on_active_holes(self) -> str:
        return self._evaluated(self.store.active_hole_ids())

    def rerun_mm_on_arbitrary_holes(self, d: dict) -> str:
        ids = [_int({"i": v}, "i", True, "rerun_mm_on_arbitrary_holes") for v in _list(d, "ints",
                                                                                          "rerun_mm_on_arbitrary_holes")]
        return self._evaluated(ids)

    def visit_holes(self, d: dict) -> None:
        ep = "visit_holes"
        ids = [_int({"i": v}, "i", True, ep + ": hole_ids") for v in _list(d, "hole_ids", ep)]
        ctfs = [_float(v, ep + ": ctfs") for v in _list(d, "ctfs", ep)]
        ices = [ice_thickness_nm(_float(v, ep + ": ice_thicknesses")) for v in _list(d, "ice_thicknesses", ep)]
        try:
            self.store.visit_holes(ids, ctfs, ices)
        except ValueError as e:
            if isinstance(e, UnknownIdError):
                raise
            raise BadRequest(f"{ep}: {e}") from None

    def current_mm_state(self) -> str:
        return table_csv(self.store.mm_rows(), MM_COLUMNS)

    def save_state(self, d: dict) -> None:
        """Write lmstate.csv, mmstate.csv, lm_feats.npy, mm_feats.npy into the folder ``path``
        (the published saved-state format; empty tables give header-only files)."""
        p = d.get("path")
        if not isinstance(p, str) or not p:
            raise BadRequest("save_state: field 'path' must be a folder path")
        out = Path(p)
        try:
            out.mkdir(parents=True, exist_ok=True)
            with self.store.snapshot() as c:
                lm = self.store._lm_rows(c)
                mm = self.store._mm_rows(c)
            for name, text in (("lmstate.csv", table_csv(lm, LM_COLUMNS)), ("mmstate.csv", table_csv(mm, MM_COLUMNS))):
                tmp = out / (name + ".tmp")
                tmp.write_text(text)
                os.replace(tmp, out / name)
            for name, rows in (("lm_feats.npy", lm), ("mm_feats.npy", mm)):
                nf = len(rows[0]["features"]) if rows else 0
                arr = np.array([r["features"] for r in rows], float).reshape(len(rows), nf)
                tmp = out / (name + ".tmp.npy")
                np.save(tmp, arr)
                os.replace(tmp, out / name)
        except OSError as e:
            raise BadRequest(f"save_state: {p}: cannot write ({e.strerror})") from None

    def process_stateless_lm(self, d: dict, raw_mrc: bytes | None = None) -> list:
        from .lowmag import find_squares

        loaded = _loaded_from_body(d, raw_mrc, "process_stateless_lm")
        pix = loaded.pixels
        with self._computing():
            res = find_squares(_pipeline_input(loaded), models=self.models)
        return [{"vertices": [list(v) for v in s.vertices], "center": list(s.center), "area": s.area,
                 "brightness": s.brightness, "score": s.score,
                 "features": square_features(pix, s.vertices, s.area).tolist()} for s in res.squares]

    def process_stateless_mm(self, d: dict, raw_mrc: bytes | None = None) -> list:
        loaded = _loaded_from_body(d, raw_mrc, "process_stateless_mm")
        with self._computing():
            rows = self._holes_of(loaded.pixels, loaded)
        return sorted([{"center": list(r.center), "score": r.prior_score, "radius": r.radius,
                        "features": r.features.tolist()} for r in rows], key=lambda h: -h["score"])


# ------------------------------------------------------------------------------ HTTP


def create_app(state_dir, models: str | None = None, rule: str = "published", service: PtolemyService | None = None):
    """The Starlette application serving `PtolemyService` (see the module docstring).

    Parameters
    ----------
    state_dir : path
        State folder. models : model set name (None: default). rule : AL rule.
    service : PtolemyService, optional
        Use this service instead of building one.

    Returns
    -------
    starlette.applications.Starlette

    Examples
    --------
    An empty state answers a header-only CSV inside a JSON string (the published server: a 500):

    >>> import shutil, tempfile
    >>> from starlette.testclient import TestClient
    >>> d = tempfile.mkdtemp()
    >>> c = TestClient(create_app(d))
    >>> r = c.post("/select_next_square", content='{"value": -1}')  # no Content-Type, as Leginon
    >>> r.status_code, r.json().splitlines()[0].split(",")[-1]
    (200, 'GP_probs')
    >>> c.post("/visit_holes", content='{"hole_ids": [7], "ctfs": [3.0], "ice_thicknesses": [40.0]}').json()
    {'detail': 'unknown hole_id 7'}
    >>> c.app.state.service.store.close(); shutil.rmtree(d)
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    svc = service or PtolemyService(state_dir, models=models, rule=rule)

    def err(status: int, msg: str) -> JSONResponse:
        return JSONResponse({"detail": " ".join(str(msg).split())}, status_code=status)

    def endpoint(fn, with_body: bool = True, image: bool = False):
        async def handler(request: Request):
            t0 = time.perf_counter()
            try:
                args = []
                if with_body:
                    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
                    reader, raw = None, None
                    if image and ctype not in MRC_TYPES:  # the image is parsed while it arrives
                        reader = BodyReader(_content_length(request.headers))
                        try:
                            async for chunk in request.stream():
                                reader.feed(chunk)
                        except BaseException:
                            reader.close(wait=False)
                            raise
                        is_mrc = reader.looks_like_mrc()
                    else:
                        raw = await request.body()
                        is_mrc = image and (ctype in MRC_TYPES or looks_like_mrc(raw))
                    if is_mrc:
                        if reader is not None:
                            raw = reader.bytes()
                            reader.release()
                        body = dict(request.query_params)
                        args = [body, raw]
                    else:  # parsed in the thread that runs the endpoint (one hand-off, not two)
                        args = [_JsonBody(reader.json if reader is not None else lambda: parse_json_body(raw),
                                          request.query_params)] + ([None] if image else [])
                t1 = time.perf_counter()
                result, compute_s, parse_s = await run_in_threadpool(svc.timed, fn, *args)
                t1 += parse_s
            except UnknownIdError as e:
                return err(404, e.args[0] if e.args else str(e))
            except (BadRequest, InputImageError) as e:
                return err(422, str(e))
            except ModelSetError as e:  # pragma: no cover - models are verified at start-up
                return err(500, str(e))
            except Exception as e:  # one line, never a traceback page
                return err(500, f"internal error: {type(e).__name__}: {e}")
            resp = result if isinstance(result, Response) else JSONResponse(result)
            # parse = reading and parsing the body; compute = the pipelines; total = the handler
            resp.headers["Server-Timing"] = (f"parse;dur={1e3 * (t1 - t0):.1f}, compute;dur={1e3 * compute_s:.1f}, "
                                             f"total;dur={1e3 * (time.perf_counter() - t0):.1f}")
            return resp
        return handler

    routes = [
        Route("/", endpoint(lambda: {"message": "Welcome"}, False), methods=["GET"]),
        Route("/health", endpoint(svc.health, False), methods=["GET"]),
        Route("/initialize_new_session", endpoint(svc.initialize_new_session), methods=["POST"]),
        Route("/initialize_new_session", endpoint(lambda: svc.initialize_new_session({}), False), methods=["GET"]),
        Route("/push_lm", endpoint(svc.push_lm, image=True), methods=["POST"]),
        Route("/current_lm_state", endpoint(svc.current_lm_state, False), methods=["GET"]),
        Route("/set_noice_hole_intensity", endpoint(svc.set_noice_hole_intensity), methods=["POST"]),
        Route("/push_mm", endpoint(svc.push_mm, image=True), methods=["POST"]),
        Route("/push_and_evaluate_mm", endpoint(svc.push_and_evaluate_mm, image=True), methods=["POST"]),
        Route("/select_next_square", endpoint(svc.select_next_square), methods=["POST"]),
        Route("/visit_holes", endpoint(svc.visit_holes), methods=["POST"]),
        Route("/visit_square", endpoint(svc.visit_square), methods=["POST"]),
        Route("/save_state", endpoint(svc.save_state), methods=["POST"]),
        Route("/current_mm_state", endpoint(svc.current_mm_state, False), methods=["GET"]),
        Route("/rerun_mm_on_active_holes", endpoint(svc.rerun_mm_on_active_holes, False), methods=["GET"]),
        Route("/rerun_mm_on_arbitrary_holes", endpoint(svc.rerun_mm_on_arbitrary_holes), methods=["POST"]),
        Route("/load_historical_state", endpoint(svc.load_historical_state), methods=["POST"]),
        Route("/append_multi_historical_states", endpoint(svc.append_multi_historical_states), methods=["POST"]),
        Route("/clear_historical_state", endpoint(lambda: svc.store.clear_historical(), False), methods=["GET"]),
        Route("/clear_current_state", endpoint(lambda: svc.store.new_session(keep_historical=True) and None, False), methods=["GET"]),
        Route("/process_stateless_lm", endpoint(svc.process_stateless_lm, image=True), methods=["POST"]),
        Route("/process_stateless_mm", endpoint(svc.process_stateless_mm, image=True), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.service = svc
    return app


def _content_length(headers) -> int | None:
    """The Content-Length header as an int (None: absent or not a number)."""
    try:
        return int(headers.get("content-length", ""))
    except ValueError:
        return None


SERVER_EXTRA_HINT = "pip install 'ptolemy-rt[server]'"


def require_server_extra() -> None:
    """Check that the ``[server]`` extra is installed.

    Raises
    ------
    PtolemyError
        Exit code 2 (usage), naming ``pip install 'ptolemy-rt[server]'``, when Starlette or
        uvicorn cannot be imported.

    Examples
    --------
    >>> require_server_extra()  # installed here: nothing happens
    """
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        err = PtolemyError(f"ptolemy serve needs the server extra ({e.name} is not installed): {SERVER_EXTRA_HINT}")
        err.exit_code = EXIT_USAGE
        raise err from None


def _check_listen(host: str, port: int) -> None:
    import socket

    if not 0 < int(port) < 65536:
        raise _usage(f"--port {port}: not a TCP port (1..65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise _usage(f"--host {host}: cannot resolve ({e.strerror or e})") from None
    fam, kind, proto, _, addr = infos[0]
    with socket.socket(fam, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise _usage(f"{host}:{port}: cannot listen ({e.strerror or e})") from None


def _usage(msg: str) -> PtolemyError:
    e = PtolemyError(msg)
    e.exit_code = EXIT_USAGE
    return e


def serve(host: str = "127.0.0.1", port: int = 8000, state_dir: str = "ptolemy-state",
          models: str | None = None, rule: str = "published", log=None) -> None:
    """Run the server until interrupted (uvicorn, one process; requests in its thread pool).

    Parameters
    ----------
    host, port : where to listen. state_dir : state folder. models : model set name.
    rule : active-learning rule ("published" | "fitted"). log : callable(str) for one
        start-up line (None: nothing).

    Raises
    ------
    PtolemyError
        Before listening: the extra is missing or the address is unusable (exit 2), the
        models (ModelSetError, 4) or the state folder (StateError, 5) cannot be used.

    Examples
    --------
    An unusable port is refused before anything starts:

    >>> serve(port=0)
    Traceback (most recent call last):
    ...
    ptolemy_rt.errors.PtolemyError: --port 0: not a TCP port (1..65535)
    """
    require_server_extra()
    _check_listen(host, port)
    import uvicorn

    from .medmag import warmup as mm_warmup
    from .models import keep_memory_warm

    keep_memory_warm()  # a warm server reuses its buffers request after request (no page faults)
    app = create_app(state_dir, models=models, rule=rule)
    mm_warmup()
    warmup_kernels()
    svc = app.state.service
    if log is not None:
        log(f"serving on http://{host}:{port} (models {svc.models.name}, state {svc.store.path})")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
