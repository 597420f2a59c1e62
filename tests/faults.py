"""The fault corpus: crafted inputs, output paths, signals and model sets, run through the CLI.

Each `Case` makes its files in a fresh folder (`Case.make` returns the argv after
``ptolemy``), runs ``python -m ptolemy_rt.cli`` there in its own process group, and is judged
by `judge`:

- the exit code is the documented one for the case (`ptolemy_rt.errors`);
- a failing run prints exactly one ``ptolemy: error:`` line, no traceback, and nothing on
  stderr that is not the tool's own (``ptolemy: ...`` lines, batch progress);
- no partial or changed output: every file under the case folder (and any outside file the
  case names) is hashed before and after; a failed run leaves them all as they were, a
  successful one changes exactly the files the case declares, and no temporary
  (``.ptolemy-*``) is ever left;
- nothing is left running: no process of the run's process group remains.

Signals are sent at moments found from the child's own import log (``python -X
importtime``: a module finishing its import is a line on stderr), so "during start-up",
"during model load" and "during compute" are reproducible without test hooks in the runtime.

`cases(published=...)` lists every case; `tests/test_fault_corpus.py` runs them (two at a
time) and `tests/conftest.py` prints the summary line. Images are small (≤ 1024 px) so that
the whole corpus runs in about a minute. Nothing here is made from ../shared: the inputs are
crafted bytes and `ptolemy_rt.synthetic` images.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from conftest import REPO

from ptolemy_rt.errors import (DOCUMENTED_EXIT_CODES, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_MODEL,
                               EXIT_OK, EXIT_OUTPUT, EXIT_PARTIAL, EXIT_TERMINATED, EXIT_USAGE)

from ptolemy_rt.models import OWN_SET, PUBLISHED_SET  # noqa: E402
TIMEOUT_S = 120  # one case; a hang is a failure, not a stuck test run


# ------------------------------------------------------------------------ crafted MRC bytes

def mrc_header(nx: int, ny: int, nz: int, mode: int, *, nsymbt: int = 0, order: str = "<",
               map_word: bool = True, cella: float | None = None, exttyp: bytes = b"\0\0\0\0") -> bytes:
    """A 1024-byte MRC2014 header with these words (any values, also impossible ones)."""
    h = bytearray(1024)
    struct.pack_into(order + "4i", h, 0, nx, ny, nz, mode)
    struct.pack_into(order + "3i", h, 28, nx, ny, max(nz, 1))  # mx, my, mz
    c = float(nx if cella is None else cella)
    struct.pack_into(order + "3f", h, 40, c, float(ny), 1.0)
    struct.pack_into(order + "3i", h, 64, 1, 2, 3)  # mapc, mapr, maps
    struct.pack_into(order + "i", h, 92, nsymbt)
    h[104:108] = exttyp
    struct.pack_into(order + "i", h, 108, 20140)
    if map_word:
        h[208:212] = b"MAP "
    h[212:216] = b"DD\0\0" if order == "<" else b"\x11\x11\0\0"
    return bytes(h)


def mrc_file(data: np.ndarray, mode: int | None = None, **kw) -> bytes:
    """Header + data of a [row, col] or [section, row, col] array (mode from the dtype)."""
    a = np.asarray(data)
    if mode is None:
        mode = {np.dtype(np.int8): 0, np.dtype(np.int16): 1, np.dtype(np.float32): 2,
                np.dtype(np.uint16): 6, np.dtype(np.float16): 12}[a.dtype]
    nz, ny, nx = (1,) + a.shape if a.ndim == 2 else a.shape
    return mrc_header(nx, ny, nz, mode, **kw) + a.astype(a.dtype.newbyteorder("<")).tobytes()


def synthetic_mrc(kind: str, seed: int = 0, shape=None) -> bytes:
    """A float32 MRC of a synthetic atlas (lowmag) or square image (medmag), with exact content."""
    from ptolemy_rt import synthetic

    if kind == "lowmag":
        img, _ = synthetic.atlas(seed, shape=shape or (256, 256))
    else:
        img, _ = synthetic.medmag_image(seed, shape=shape or (256, 320))
    return mrc_file(np.ascontiguousarray(img, dtype=np.float32))


_CACHE: dict = {}


def cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def good(kind: str = "lowmag", big: bool = False) -> bytes:
    """The corpus's good input (cached): small, or big for the cases whose signal must land
    while the pipeline computes (about a second of work left after onnxruntime is imported,
    on one fast core; PTOLEMY_THREADS=1)."""
    if big:
        return cached((kind, "big"), lambda: synthetic_mrc(kind, 1, (2048, 2048) if kind == "lowmag" else (1536, 2048)))
    return cached((kind, "small"), lambda: synthetic_mrc(kind))


def ramp(ny=96, nx=96, dtype=np.float32) -> np.ndarray:
    return (np.arange(ny * nx).reshape(ny, nx) % 251).astype(dtype)


#: Every MRC header and data defect: name → file bytes (all exit 3).
def mrc_defects() -> dict[str, bytes]:
    r = ramp()
    ok = mrc_file(r)
    rng = np.random.default_rng(7)
    nan = r.copy()
    nan[5, 7] = np.nan
    inf = r.copy()
    inf[0, 0] = np.inf
    return {
        "empty-file": b"",
        "truncated-header": ok[:100],
        "header-only": ok[:1024],
        "truncated-data": ok[: 1024 + r.nbytes // 2],
        "one-byte-short": ok[:-1],
        "bad-mode-map": mrc_header(96, 96, 1, 7) + r.tobytes(),
        "bad-mode-nomap": mrc_header(96, 96, 1, 99, map_word=False) + r.tobytes(),
        "negative-mode": mrc_header(96, 96, 1, -2) + r.tobytes(),
        "negative-nx": mrc_header(-96, 96, 1, 2) + r.tobytes(),
        "negative-nz": mrc_header(96, 96, -1, 2) + r.tobytes(),
        "zero-nx": mrc_header(0, 96, 1, 2) + r.tobytes(),
        "zero-ny": mrc_header(96, 0, 1, 2) + r.tobytes(),
        "nz-zero": mrc_header(96, 96, 0, 2) + r.tobytes(),
        "huge-dims": mrc_header(60000, 60000, 1, 2) + r.tobytes(),
        "huge-nz": mrc_header(96, 96, 1 << 30, 2) + r.tobytes(),
        "wide-dims": mrc_header(2_000_000, 64, 1, 0) + r.tobytes(),
        "nan-pixel": mrc_file(nan),
        "inf-pixel": mrc_file(inf),
        "all-nan": mrc_file(np.full((96, 96), np.nan, np.float32)),
        "constant": mrc_file(np.full((96, 96), 7, np.int16)),
        "constant-zero-float": mrc_file(np.zeros((96, 96), np.float32)),
        "too-small": mrc_file(ramp(16, 16)),
        "ext-header-too-big": mrc_header(96, 96, 1, 2, nsymbt=1 << 20) + r.tobytes(),
        "ext-header-negative": mrc_header(96, 96, 1, 2, nsymbt=-4) + r.tobytes(),
        "ext-header-wrong-size": mrc_header(96, 96, 1, 2, nsymbt=131072 * 3) + bytes(1000) + r.tobytes(),
        "fei-ext-header-short": mrc_header(96, 96, 1, 2, nsymbt=12, exttyp=b"FEI1", cella=0.0) + r.tobytes(),
        "complex-mode-4": mrc_header(96, 96, 1, 4) + bytes(96 * 96 * 8),
        "packed-mode-101": mrc_header(96, 96, 1, 101) + bytes(96 * 48),
        "garbage": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "garbage-big": rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes(),
        "text": b"PixelSpacing = 5.4\nImageFile = a.mrc\n" * 40,
        "zeros-1024": bytes(1024),
        "zeros-4096": bytes(4096),
        "ones-ff": b"\xff" * 4096,
        "big-endian-truncated": mrc_header(96, 96, 1, 2, order=">", map_word=False) + r.tobytes()[:1000],
        "stack-needs-section": mrc_file(np.stack([r, r + 1, r + 2])),
        "rgb-truncated": mrc_header(96, 96, 1, 16) + bytes(96 * 96),
    }


# ------------------------------------------------------------------------ cases

@dataclass
class Case:
    """One run of the CLI.

    name: unique id. code: the documented exit code expected. make(d) → argv (after
    ``ptolemy``), run with cwd d. changes: files (relative to d) a successful run creates or
    rewrites (everything else must stay as it was; a failed run must change nothing).
    check(d, result): further checks (raise AssertionError). outside: paths outside d whose
    kind and content must be kept (devices). stdout: "pipe" (captured) or a path the shell
    would redirect stdout to ("/dev/full"). signal: (signum, trigger, delay_s): send it `delay_s`
    after the child's import log shows module `trigger` ("" = at once). env: extra
    environment. fsize: RLIMIT_FSIZE of the child (bytes; EFBIG beyond). program: run the
    installed ``ptolemy`` script instead of ``python -m ptolemy_rt.cli`` (when present)."""

    name: str
    code: int | tuple[int, ...]
    make: Callable[[Path], list]
    changes: tuple[str, ...] = ()
    check: Callable | None = None
    outside: tuple[str, ...] = ()
    stdout: str = "pipe"
    signal: tuple[int, str, float] | None = None
    env: dict = field(default_factory=dict)
    fsize: int | None = None
    program: bool = False
    models_dir: Callable[[Path], Path] | None = None  # → PTOLEMY_MODELS_DIR for the run
    parent_only: bool = False  # the signal goes to the parent process alone (else its group)
    result_out: bool = False  # stdout holds the whole result even when the exit says interrupted

    @property
    def codes(self) -> tuple[int, ...]:
        return self.code if isinstance(self.code, tuple) else (self.code,)


@dataclass
class Result:
    case: str
    code: int | None
    stdout: bytes
    stderr: str
    seconds: float
    left: list[int]  # pids of the run's process group still alive after it ended
    timed_out: bool = False


def _w(d: Path, name: str, data: bytes | str) -> str:
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return name


def _files(*pairs):
    """make() writing files [(name, bytes-or-callable)] and returning argv built from them."""
    def make(d: Path, argv):
        for name, data in pairs:
            _w(d, name, data() if callable(data) else data)
        return argv
    return make


def _json_check(name, kind=None):
    def check(d: Path, res: Result):
        data = json.loads((d / name).read_text())
        assert isinstance(data, (list, dict)), data
    return check


def _stdout_json(d: Path, res: Result):
    data = json.loads(res.stdout.decode())
    assert isinstance(data, list)


def _unreadable_path(d: Path) -> str | None:
    """A file this process cannot read: a 000 file for a normal user; for root (who reads
    anything), a write-only /proc/sys entry; None when neither exists."""
    p = d / "unreadable.mrc"
    p.write_bytes(good())
    p.chmod(0)
    try:
        with open(p, "rb"):
            pass
    except PermissionError:
        return p.name
    for q in ("/proc/sys/vm/compact_memory", "/proc/sys/vm/drop_caches"):
        try:
            with open(q, "rb"):
                pass
        except PermissionError:
            return q
        except OSError:
            continue
    return None


def _copy_set(src: Path, dst: Path, link: bool) -> None:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if link and f.suffix != ".json":
            os.symlink(f.resolve(), dst / f.name)
        else:
            (dst / f.name).write_bytes(f.read_bytes())


def corrupt_set(how: str, name: str = OWN_SET) -> Callable[[Path], Path]:
    """A models root (PTOLEMY_MODELS_DIR) holding set `name` damaged as `how`: "missing-onnx",
    "bad-manifest" (not JSON), "manifest-unknown-key", "digest-mismatch" (one byte of a part
    changed), "not-onnx" (a part replaced by garbage, its sha256 updated: onnxruntime refuses
    it), "empty-root" (no set at all)."""
    def make(d: Path) -> Path:
        root = d / ".models"
        root.mkdir()
        if how == "empty-root":
            return root
        src = REPO / "onnx_models" / name
        dst = root / name
        _copy_set(src, dst, link=(name == PUBLISHED_SET))
        manifest = dst / "manifest.json"
        parts = sorted(p.name for p in src.iterdir() if p.suffix == ".onnx")
        victim = dst / parts[0]
        if how == "missing-onnx":
            victim.unlink()
        elif how == "bad-manifest":
            manifest.write_text(manifest.read_text()[:200])
        elif how == "manifest-unknown-key":
            m = json.loads(manifest.read_text())
            m["no_such_key"] = 1
            manifest.write_text(json.dumps(m))
        elif how in ("digest-mismatch", "not-onnx"):
            raw = bytearray(victim.read_bytes())
            victim.unlink()
            if how == "digest-mismatch":
                raw[len(raw) // 2] ^= 0xFF
                victim.write_bytes(bytes(raw))
            else:  # every part garbage (whichever the run loads first), the digests updated
                victim.write_bytes(bytes(raw))
                text = manifest.read_text()
                junk = b"this is not an onnx model\n" * 100
                for part in parts:
                    f = dst / part
                    old = hashlib.sha256(f.read_bytes()).hexdigest()
                    assert old in text, "manifest lists parts by sha256"
                    f.unlink()
                    f.write_bytes(junk + part.encode())
                    text = text.replace(old, hashlib.sha256(junk + part.encode()).hexdigest())
                manifest.write_text(text)
        else:
            raise ValueError(how)
        return root
    return make


def _with_models(argv: list, models: str | None) -> list:
    return argv + (["--models", models] if models else [])


def _image_cases() -> list[Case]:
    out = []
    for name, raw in mrc_defects().items():
        kinds = ("lowmag", "medmag") if name in ("nan-pixel", "truncated-data", "nz-zero", "garbage") else ("lowmag",)
        for kind in kinds:
            # a pre-existing result must survive the failed run unchanged
            out.append(Case(f"mrc/{name}/{kind}", EXIT_BAD_INPUT,
                            lambda d, raw=raw, kind=kind: _files(("in.mrc", raw), ("res.json", "old\n"))(
                                d, [kind, "in.mrc", "-o", "res.json"])))
    out += [
        Case("input/directory", EXIT_BAD_INPUT, lambda d: (d / "dir.mrc").mkdir() or _w(d, "r.json", "[]") and
             ["plot", "r.json", "dir.mrc", "o.png"]),
        Case("input/directory-no-mrc", EXIT_USAGE, lambda d: (d / "empty").mkdir() or ["lowmag", "empty", "-o", "out/"]),
        Case("input/missing", EXIT_BAD_INPUT, lambda d: ["lowmag", "nope.mrc"]),
        Case("input/under-a-file", EXIT_BAD_INPUT, lambda d: _files(("a.mrc", good()))(d, ["lowmag", "a.mrc/b.mrc"])),
        Case("input/name-too-long", EXIT_BAD_INPUT, lambda d: ["medmag", "x" * 300 + ".mrc"]),
        Case("input/fake-png", EXIT_BAD_INPUT, lambda d: _files(("a.png", b"hello"))(d, ["lowmag", "a.png"])),
        Case("input/truncated-png", EXIT_BAD_INPUT, lambda d: _files(("a.png", _picture("PNG")[:300]))(d, ["lowmag", "a.png"])),
        Case("input/truncated-tiff", EXIT_BAD_INPUT, lambda d: _files(("a.tif", _picture("TIFF")[:400]))(d, ["medmag", "a.tif"])),
        Case("input/section-out-of-range", EXIT_BAD_INPUT,
             lambda d: _files(("s.mrc", mrc_file(np.stack([ramp(), ramp() + 1]))))(d, ["lowmag", "s.mrc", "--section", "5"])),
    ]
    out.append(Case("input/unreadable", EXIT_BAD_INPUT, lambda d: ["lowmag", _unreadable_path(d) or _skip("no unreadable file")]))
    return out


class Skip(Exception):
    """The case cannot be made on this machine (reason in the message)."""


def _skip(reason: str):
    raise Skip(reason)


def _picture(fmt: str) -> bytes:
    def make():
        import io as _io

        from PIL import Image

        buf = _io.BytesIO()
        Image.fromarray((ramp(96, 96) % 200).astype(np.uint8)).save(buf, format=fmt)
        return buf.getvalue()
    return cached(("pic", fmt), make)


def _fifo_case(fail: bool) -> Case:
    state = {}

    def make(d: Path):
        _w(d, "a.mrc", mrc_defects()["garbage"] if fail else good())
        os.mkfifo(d / "out.fifo")
        state["fd"] = os.open(d / "out.fifo", os.O_RDONLY | os.O_NONBLOCK)  # a reader, so the writer does not block
        return ["lowmag", "a.mrc", "-o", "out.fifo"]

    def check(d: Path, res: Result):
        chunks = []
        while True:
            try:
                b = os.read(state["fd"], 1 << 16)
            except BlockingIOError:
                break
            if not b:
                break
            chunks.append(b)
        os.close(state["fd"])
        assert stat.S_ISFIFO(os.lstat(d / "out.fifo").st_mode), "the FIFO was replaced"
        got = b"".join(chunks)
        if fail:
            assert got == b"", got[:80]
        else:
            assert isinstance(json.loads(got), list)

    return Case("output/fifo" + ("-failed-run" if fail else ""), EXIT_BAD_INPUT if fail else EXIT_OK, make, check=check)


def _symlink_case(fail: bool) -> Case:
    def make(d: Path):
        _w(d, "a.mrc", mrc_defects()["nan-pixel"] if fail else good())
        _w(d, "results/real.json", "old\n")
        os.symlink("results/real.json", d / "latest.json")
        return ["lowmag", "a.mrc", "-o", "latest.json"]

    def check(d: Path, res: Result):
        assert os.path.islink(d / "latest.json") and os.readlink(d / "latest.json") == "results/real.json"
        if not fail:
            assert isinstance(json.loads((d / "results/real.json").read_text()), list)

    return Case("output/symlink" + ("-failed-run" if fail else ""), EXIT_BAD_INPUT if fail else EXIT_OK, make,
                changes=() if fail else ("results/real.json",), check=check)


def device(d: Path, name: str) -> str:
    """A character device to write to: /dev/null or /dev/full for a normal user (who cannot
    replace them); for root, a private node of the same device made in the case folder, so
    that a regression of the writer (renaming over a device) cannot replace the system's.
    Skip when root cannot make device nodes (a container without CAP_MKNOD)."""
    minor = {"null": 3, "full": 7}[name]
    if os.geteuid() != 0:
        return f"/dev/{name}"
    node = d / f"dev-{name}"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        with open(node, "wb") as f:  # a node on a nodev mount cannot be opened
            if name == "null":
                f.write(b"x")
    except OSError as e:
        if e.errno == 28 and name == "full":  # ENOSPC: the node works
            return node.name
        raise Skip(f"root cannot make a private /dev/{name} node here ({e.strerror}); "
                   "the system's is not risked") from None
    return node.name


def _output_cases() -> list[Case]:
    g = lambda d: _w(d, "a.mrc", good())  # noqa: E731
    ro_dir = "/proc" if os.geteuid() == 0 else "ro"  # root writes into a 0555 folder; /proc refuses files

    def ro(d: Path):
        g(d)
        if ro_dir == "ro":
            (d / "ro").mkdir()
            _w(d, "ro/old.json", "old\n")
            (d / "ro").chmod(0o555)
        return ["lowmag", "a.mrc", "-o", f"{ro_dir}/ptolemy-fault-corpus.json"]

    def stdout_dev(d: Path, res: Result):
        _stdout_json(d, res)
        assert res.stderr == "", res.stderr

    cases = [
        Case("output/missing-folder", EXIT_OUTPUT, lambda d: g(d) and ["lowmag", "a.mrc", "-o", "no/such/r.json"]),
        Case("output/read-only-folder", EXIT_OUTPUT, ro),
        Case("output/dev-full", EXIT_OUTPUT, lambda d: g(d) and ["lowmag", "a.mrc", "-o", device(d, "full")]),
        Case("output/dev-full-csv", EXIT_OUTPUT, lambda d: g(d) and ["medmag", "a.mrc", "-f", "csv", "-o", device(d, "full")]),
        Case("output/stdout-dev-full", EXIT_OUTPUT, lambda d: g(d) and ["lowmag", "a.mrc"], stdout="/dev/full"),
        Case("output/plot-dev-full", EXIT_OUTPUT, lambda d: _w(d, "r.json", "old\n") and g(d) and
             ["lowmag", "a.mrc", "-o", "r.json", "--plot", device(d, "full")]),
        # file size limit (EFBIG), as a full disk: the small result fits, the picture does not:
        # neither may appear
        Case("output/fsize-limit-plot", EXIT_OUTPUT, lambda d: g(d) and ["lowmag", "a.mrc", "-o", "r.json", "--plot", "p.png"],
             fsize=4096),
        Case("output/fsize-limit-json", EXIT_OUTPUT, lambda d: _w(d, "r.json", "old\n") and g(d) and
             ["lowmag", "a.mrc", "-o", "r.json"], fsize=200),
        Case("output/dev-null", EXIT_OK, lambda d: g(d) and ["lowmag", "a.mrc", "-o", device(d, "null")]),
        Case("output/plot-to-stdout", EXIT_USAGE, lambda d: g(d) and ["lowmag", "a.mrc", "-o", "r.json", "--plot", "/dev/stdout"]),
        Case("output/dev-stdout", EXIT_OK, lambda d: g(d) and ["lowmag", "a.mrc", "-o", "/dev/stdout"], check=stdout_dev),
        _fifo_case(False), _fifo_case(True), _symlink_case(False), _symlink_case(True),
        Case("output/dangling-symlink", EXIT_OUTPUT,
             lambda d: g(d) and (os.symlink("gone/x.json", d / "l.json") or ["lowmag", "a.mrc", "-o", "l.json"])),
        Case("output/symlink-loop", EXIT_OUTPUT,
             lambda d: g(d) and (os.symlink("loop2", d / "loop1") or os.symlink("loop1", d / "loop2") or
                                 ["lowmag", "a.mrc", "-o", "loop1"])),
        Case("output/the-input", EXIT_OUTPUT, lambda d: g(d) and ["lowmag", "a.mrc", "-o", "a.mrc"]),
        Case("output/the-input-via-link", EXIT_OUTPUT,
             lambda d: g(d) and (os.symlink("a.mrc", d / "same.json") or ["lowmag", "a.mrc", "-o", "same.json"])),
        Case("output/plot-is-the-input", EXIT_OUTPUT, lambda d: g(d) and ["lowmag", "a.mrc", "--plot", "a.mrc"]),
        Case("output/plot-same-as-result", EXIT_USAGE, lambda d: g(d) and ["lowmag", "a.mrc", "-o", "x.png", "--plot", "x.png"]),
        Case("output/navigator-file", EXIT_OUTPUT, lambda d: g(d) and _w(d, "s.nav", "AdocVersion = 2.00\n") and
             ["lowmag", "a.mrc", "-f", "nav", "-o", "s.nav", "--nav-map", "s.nav:1"]),
        Case("output/is-a-folder-of-a-file", EXIT_OUTPUT, lambda d: g(d) and _w(d, "f", "x") and ["lowmag", "a.mrc", "-o", "f/r.json"]),
        Case("output/name-255", EXIT_OK, lambda d: g(d) and ["lowmag", "a.mrc", "-o", "r" * 250 + ".json"],
             changes=("r" * 250 + ".json",), check=_json_check("r" * 250 + ".json")),
        Case("output/name-too-long", EXIT_OUTPUT, lambda d: g(d) and ["lowmag", "a.mrc", "-o", "r" * 300 + ".json"]),
        Case("output/json-and-plot", EXIT_OK, lambda d: g(d) and _w(d, "r.json", "old\n") and
             ["lowmag", "a.mrc", "-o", "r.json", "--plot", "p.png"], changes=("r.json", "p.png"), check=_json_check("r.json")),
        Case("plot/nan-result", EXIT_BAD_INPUT, lambda d: g(d) and _w(d, "r.json", '[{"vertices": [[0,0],[1,0],[1,1],[0,1]], '
             '"center": [NaN, 1], "score": 0.5}]') and ["plot", "r.json", "a.mrc", "o.png"]),
        Case("plot/not-json", EXIT_BAD_INPUT, lambda d: g(d) and _w(d, "r.json", "{") and ["plot", "r.json", "a.mrc", "o.png"]),
        Case("plot/onto-the-result", EXIT_OUTPUT, lambda d: g(d) and _w(d, "r.json", "[]") and ["plot", "r.json", "a.mrc", "r.json"]),
        Case("plot/onto-the-image", EXIT_OUTPUT, lambda d: g(d) and _w(d, "r.json", "[]") and ["plot", "r.json", "a.mrc", "a.mrc"]),
    ]
    return cases


def _option_cases() -> list[Case]:
    g = lambda d: _w(d, "a.mrc", good())  # noqa: E731
    bad = [
        ("pixel-size-inf", ["lowmag", "a.mrc", "--pixel-size", "inf", "-f", "json-full"]),
        ("pixel-size-1e308", ["medmag", "a.mrc", "--pixel-size", "1e308", "-f", "csv"]),
        ("pixel-size-negative", ["lowmag", "a.mrc", "--pixel-size", "-1"]),
        ("pixel-size-text", ["lowmag", "a.mrc", "--pixel-size", "big"]),
        ("norm-zero-std", ["lowmag", "a.mrc", "--norm", "1,0"]),
        ("norm-nan", ["lowmag", "a.mrc", "--norm", "nan,1"]),
        ("section-negative", ["lowmag", "a.mrc", "--section", "-1"]),
        ("jobs-zero", ["lowmag", "a.mrc", "-j", "0"]),
        ("format-bogus", ["lowmag", "a.mrc", "-f", "xml"]),
        ("nav-without-map", ["lowmag", "a.mrc", "-f", "nav", "-o", "x.nav"]),
        ("nav-map-no-label", ["lowmag", "a.mrc", "-f", "nav", "-o", "x.nav", "--nav-map", "s.nav"]),
        ("hole-pitch-zero", ["medmag", "a.mrc", "--hole-pitch-um", "0"]),
        ("published-scale-auto", ["medmag", "a.mrc", "--compat", "published", "--scale", "auto"]),
        ("unknown-option", ["lowmag", "a.mrc", "--frobnicate"]),
        ("demo-negative-seed", ["demo", "d", "--seed", "-5"]),
        ("demo-seed-text", ["demo", "d", "--seed", "x"]),
        ("nav-acquire-negative", ["lowmag", "a.mrc", "--nav-acquire", "-3"]),
    ]
    return [Case(f"option/{n}", EXIT_USAGE, lambda d, a=a: g(d) and a) for n, a in bad]


def _batch_cases() -> list[Case]:
    def collide(d: Path):
        _w(d, "x/a.mrc", good())
        _w(d, "y/a.mrc", good())
        return ["lowmag", "x/a.mrc", "y/a.mrc", "-o", "new-out", "--plot", "new-plots"]

    def one_bad(d: Path):
        _w(d, "in/a.mrc", good())
        _w(d, "in/b.mrc", mrc_defects()["truncated-data"])
        return ["lowmag", "in", "-o", "out"]

    def check_one_bad(d: Path, res: Result):
        rows = (d / "out/summary.csv").read_text().splitlines()
        assert rows[1].split(",")[1] == "ok" and rows[2].split(",")[1] == "failed", rows

    return [
        Case("batch/colliding-names", EXIT_USAGE, collide),
        Case("batch/one-bad-input", EXIT_PARTIAL, one_bad, changes=("out", "out/a.json", "out/summary.csv"),
             check=check_one_bad),
        Case("batch/plot-folder-under-a-file", EXIT_OUTPUT,
             lambda d: _w(d, "in/a.mrc", good()) and _w(d, "f", "x") and ["lowmag", "in", "-o", "new/out", "--plot", "f/plots"]),
        Case("batch/output-is-a-file", EXIT_OUTPUT,
             lambda d: _w(d, "in/a.mrc", good()) and _w(d, "o", "x") and ["lowmag", "in", "-o", "o"]),
        Case("batch/no-output-folder", EXIT_USAGE,
             lambda d: _w(d, "a.mrc", good()) and _w(d, "b.mrc", good()) and ["lowmag", "a.mrc", "b.mrc"]),
        Case("batch/models-missing", EXIT_MODEL,
             lambda d: _w(d, "in/a.mrc", good()) and ["lowmag", "in", "-o", "out", "--models", "nope"]),
        Case("demo/models-missing", EXIT_MODEL, lambda d: ["demo", "new/demo", "--models", "nope"]),
        Case("demo/onto-a-file", EXIT_OUTPUT, lambda d: _w(d, "f", "x") and ["demo", "f"]),
    ]


def _model_cases(published: bool) -> list[Case]:
    hows = ("missing-onnx", "bad-manifest", "manifest-unknown-key", "digest-mismatch", "not-onnx", "empty-root")
    cases = []
    sets = [OWN_SET] + ([PUBLISHED_SET] if published else [])
    for name in sets:
        for i, how in enumerate(hows):
            if how == "empty-root" and name != OWN_SET:
                continue
            kind = ("lowmag", "medmag")[i % 2]
            # the own set is the default one: named only every other case
            models = None if (name == OWN_SET and i % 2 == 0) else name
            cases.append(Case(
                f"models/{name}/{how}", EXIT_MODEL,
                lambda d, kind=kind, models=models: _files(("a.mrc", good(kind)), ("r.json", "old\n"))(
                    d, _with_models([kind, "a.mrc", "-o", "r.json"], models)),
                models_dir=corrupt_set(how, name)))
    cases.append(Case("models/unknown-name", EXIT_MODEL,
                      lambda d: _files(("a.mrc", good()))(d, ["medmag", "a.mrc", "--models", "nope"])))
    return cases


#: Signal moments: trigger module in the import log, then a delay (s).
MOMENTS = {
    "start-up": ("typer.", 0.0),  # while the command line's own imports run
    "numpy-import": ("numpy._core._exceptions", 0.0),  # inside a C extension's import ("ImportError: initialization failed")
    "image-read": ("ptolemy_rt.mrc", 0.0),
    "model-load": ("onnxruntime", 0.0),  # onnxruntime imported: the sessions are being made
    "compute": ("onnxruntime", 0.1),  # the classifier (lowmag) or U-Net (medmag) at work
}


def _signal_cases(published: bool) -> list[Case]:
    cases = []
    sets = [None] + ([PUBLISHED_SET] if published else [])
    for models in sets:
        tag = models or "default"
        for sig in (signal.SIGINT, signal.SIGTERM):
            code = EXIT_INTERRUPTED if sig == signal.SIGINT else EXIT_TERMINATED
            for moment, (trigger, delay) in MOMENTS.items():
                if models and moment in ("image-read", "numpy-import"):
                    continue
                for kind in ("lowmag", "medmag") if moment in ("model-load", "compute") else ("lowmag",):
                    cases.append(Case(
                        f"signal/{tag}/{sig.name}/{moment}/{kind}", code,
                        lambda d, kind=kind, models=models, big=moment == "compute": _files(
                            ("a.mrc", good(kind, big=big)), ("r.json", "old\n"))(
                            d, _with_models([kind, "a.mrc", "-o", "r.json", "--plot", "p.png"], models)),
                        signal=(sig, trigger, delay)))
    # the installed console script (its own import path to the handlers)
    script = Path(sys.executable).parent / "ptolemy"
    if script.exists():
        for sig in (signal.SIGINT, signal.SIGTERM):
            code = EXIT_INTERRUPTED if sig == signal.SIGINT else EXIT_TERMINATED
            for moment in ("start-up", "compute"):
                trigger, delay = MOMENTS[moment]
                cases.append(Case(f"signal/script/{sig.name}/{moment}", code,
                                  lambda d: _files(("a.mrc", good("lowmag", big=True)))(
                                      d, ["lowmag", "a.mrc", "-o", "r.json", "--plot", "p.png"]),
                                  signal=(sig, trigger, delay), program=True))
    # a batch (one process; the worker-pool cases belong to the batch-interruption work)
    cases.append(Case("signal/batch/SIGINT/compute", EXIT_INTERRUPTED,
                      lambda d: _files(("in/a.mrc", good("lowmag", big=True)), ("in/b.mrc", good("lowmag", big=True)))(
                          d, ["lowmag", "in", "-o", "out"]),
                      signal=(signal.SIGINT, "onnxruntime", 0.1), changes=("out", "out/summary.csv", "out/a.json"),
                      check=_batch_interrupted))
    # a signal once the result is out (while the program ends): ignored, exit 0, result whole
    for sig in (signal.SIGINT, signal.SIGTERM):
        # (a signal landing while the last bytes are flushed may still say "interrupted")
        cases.append(Case(f"signal/default/{sig.name}/after-the-result",
                          (EXIT_OK, EXIT_INTERRUPTED if sig == signal.SIGINT else EXIT_TERMINATED),
                          lambda d: _files(("a.mrc", good()))(d, ["lowmag", "a.mrc"]),
                          signal=(sig, "<stdout>", 0.0), check=_stdout_json, result_out=True))
    # a batch on two worker processes: the workers go with the parent
    for sig in (signal.SIGINT, signal.SIGTERM):
        cases.append(Case(f"signal/batch-j2/{sig.name}/compute", EXIT_INTERRUPTED if sig == signal.SIGINT else EXIT_TERMINATED,
                          lambda d: _files(*[(f"in/{n}.mrc", good("lowmag", big=True)) for n in "abc"])(
                              d, ["lowmag", "in", "-o", "out", "-j", "2"]),
                          signal=(sig, "onnxruntime", 0.3),  # a worker loads its models
                          changes=("out", "out/summary.csv", "out/a.json", "out/b.json", "out/c.json"),
                          check=_batch_interrupted))
    cases.append(Case("signal/batch-j2/SIGTERM-parent-only/compute", EXIT_TERMINATED,
                      lambda d: _files(*[(f"in/{n}.mrc", good("lowmag", big=True)) for n in "abc"])(
                          d, ["lowmag", "in", "-o", "out", "-j", "2"]),
                      signal=(signal.SIGTERM, "onnxruntime", 0.3), parent_only=True,
                      changes=("out", "out/summary.csv", "out/a.json", "out/b.json", "out/c.json"),
                      check=_batch_interrupted))
    # Ctrl-C during the demo: no folder, no file
    cases.append(Case("signal/demo/SIGINT/compute", EXIT_INTERRUPTED, lambda d: ["demo", "new/demo"],
                      signal=(signal.SIGINT, "onnxruntime", 0.3)))
    return cases


def _batch_interrupted(d: Path, res: Result):
    """An interrupted batch may keep what finished (whole files) and nothing half-written."""
    out = d / "out"
    if out.exists():
        for f in out.iterdir():
            if f.suffix == ".json":
                json.loads(f.read_text())


def cases(published: bool = False) -> list[Case]:
    """Every case of the corpus (with the published model set's cases when `published`)."""
    all_ = (_image_cases() + _output_cases() + _option_cases() + _batch_cases() + _model_cases(published)
            + _signal_cases(published))
    names = [c.name for c in all_]
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    return all_


# ------------------------------------------------------------------------ running and judging

def snapshot(root: Path, outside=()) -> dict[str, tuple]:
    """Every entry under `root` (relative path → kind and content hash / link target /
    mode), and the kind of each `outside` path."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if rel.startswith(".models"):
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                snap[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                try:
                    snap[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(st.st_mode))
                except PermissionError:
                    snap[rel] = ("file", "unreadable", stat.S_IMODE(st.st_mode))
            elif stat.S_ISDIR(st.st_mode):
                snap[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                snap[rel] = ("special", stat.S_IFMT(st.st_mode))
    for o in outside:
        st = os.lstat(o)
        snap[o] = ("outside", stat.S_IFMT(st.st_mode), st.st_rdev)
    return snap


def _group_members(pgid: int) -> list[int]:
    alive = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat", "rb") as f:
                fields_ = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields_[2]) == pgid and fields_[0] != b"Z":  # fields after the name: state, ppid, pgrp
            alive.append(int(e))
    return alive


def run_case(case: Case, d: Path, argv: list, env_extra: dict | None = None) -> Result:
    """Run one case's command in folder `d` (its own process group); never raises on the
    run's behaviour."""
    env = dict(os.environ)
    for k in ("PTOLEMY_DEBUG", "PTOLEMY_MODELS_DIR"):
        env.pop(k, None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("PTOLEMY_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(case.env)
    env.update(env_extra or {})
    script = Path(sys.executable).parent / "ptolemy"
    head = [str(script)] if case.program else [sys.executable] + (["-X", "importtime"] if case.signal else []) + \
        ["-m", "ptolemy_rt.cli"]
    if case.program and case.signal:
        env["PYTHONPROFILEIMPORTTIME"] = "1"
    fsize = case.fsize

    def pre():
        if fsize is not None:
            import resource  # POSIX only, like the corpus

            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    stdout = subprocess.PIPE if case.stdout == "pipe" else open(case.stdout, "wb")  # noqa: SIM115
    t0 = time.monotonic()
    p = subprocess.Popen(head + [str(a) for a in argv], cwd=d, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                         stderr=subprocess.PIPE, start_new_session=True, preexec_fn=pre if fsize else None)
    if stdout is not subprocess.PIPE:
        stdout.close()
    err_lines: list[bytes] = []
    out_chunks: list[bytes] = []

    def read_err():
        sent = False
        for line in iter(p.stderr.readline, b""):
            err_lines.append(line)
            if case.signal and not sent:
                sig, trigger, delay = case.signal
                if line.startswith(b"import time:"):
                    mod = line.rsplit(b"|", 1)[-1].strip().decode(errors="replace")
                    if mod == trigger or (trigger.endswith(".") and mod.startswith(trigger)):
                        sent = True
                        threading.Timer(delay, _send, (p, sig)).start() if delay else _send(p, sig)

    def read_out():
        if p.stdout is not None:
            for chunk in iter(lambda: p.stdout.read1(1 << 16), b""):
                if not out_chunks and case.signal and case.signal[1] == "<stdout>":
                    _send(p, case.signal[0])  # the result has been written: the run is ending
                out_chunks.append(chunk)

    PARENT_ONLY[p.pid] = case.parent_only
    te, to = threading.Thread(target=read_err, daemon=True), threading.Thread(target=read_out, daemon=True)
    te.start()
    to.start()
    timed_out = False
    try:
        p.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    te.join(10)
    to.join(10)
    seconds = time.monotonic() - t0
    left = []
    for _ in range(20):  # a worker exiting right after its parent gets a moment
        left = _group_members(p.pid)
        if not left:
            break
        time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    err = b"".join(err_lines).decode(errors="replace")
    err = "".join(ln for ln in err.splitlines(keepends=True) if not ln.startswith("import time:"))
    return Result(case.name, p.returncode, b"".join(out_chunks), err, seconds, left, timed_out)


def _send(p: subprocess.Popen, sig: int) -> None:
    try:
        if PARENT_ONLY.get(p.pid):
            os.kill(p.pid, sig)  # `kill PID`: the parent alone must take its workers down
        else:
            os.killpg(p.pid, sig)  # as a terminal's Ctrl-C: the whole foreground group
    except OSError:
        pass


PARENT_ONLY: dict[int, bool] = {}


_TOOL_LINE = re.compile(r"^(ptolemy: (error|warning|note|info): |\[\d+/\d+\] )")


@dataclass
class Verdict:
    result: Result
    problems: list[str]
    traceback: bool
    partial: bool
    undocumented: bool

    @property
    def ok(self) -> bool:
        return not self.problems


def judge(case: Case, d: Path, before: dict, after: dict, res: Result) -> Verdict:
    """Everything wrong with one run (empty list: the case passes)."""
    problems = []
    tb = "Traceback" in res.stderr
    undocumented = res.code not in DOCUMENTED_EXIT_CODES or res.code == EXIT_INTERNAL
    if res.timed_out:
        problems.append(f"no exit within {TIMEOUT_S} s")
    if res.code not in case.codes:
        problems.append(f"exit {res.code}, expected {case.codes}")
    if tb:
        problems.append("traceback on stderr")
    lines = res.stderr.splitlines()
    errors = [ln for ln in lines if ln.startswith("ptolemy: error: ")]
    foreign = [ln for ln in lines if not _TOOL_LINE.match(ln) and not ln.startswith("ptolemy: ")]
    if res.code in (EXIT_OK,):
        if errors:
            problems.append(f"error line on success: {errors[0]}")
    elif res.code == EXIT_PARTIAL:
        if not errors:
            problems.append("no error line for the failed input")
    elif len(errors) != 1 and not (case.result_out and res.code in (EXIT_INTERRUPTED, EXIT_TERMINATED)):
        problems.append(f"{len(errors)} 'ptolemy: error:' lines: {lines[:4]}")
    if foreign:
        problems.append(f"stray stderr lines: {foreign[:3]}")
    if res.code not in (EXIT_OK,) and res.stdout and not case.result_out:
        problems.append(f"stdout not empty on failure: {res.stdout[:60]!r}")
    if res.left:
        problems.append(f"processes left: {res.left}")
    temps = [k for k in after if os.path.basename(k).startswith(".ptolemy-")]
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    allowed = set(case.changes) if res.code in (EXIT_OK, EXIT_PARTIAL) else set()
    if case.signal and res.code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        allowed = set(case.changes)  # an interrupted batch keeps what finished
    bad_changes = [k for k in changed if k not in allowed]
    if res.code == EXIT_OK and not case.signal:
        missing = [k for k in case.changes if k not in changed]
        if missing:
            problems.append(f"expected outputs not written: {missing}")
    partial = bool(temps or bad_changes)
    if temps:
        problems.append(f"temporary files left: {temps}")
    if bad_changes:
        problems.append(f"outputs created or changed: {bad_changes[:5]}")
    if case.check is not None and not res.timed_out:
        try:
            case.check(d, res)
        except AssertionError as e:
            problems.append(f"check: {e}")
        except Exception as e:  # noqa: BLE001
            problems.append(f"check: {type(e).__name__}: {e}")
    return Verdict(res, problems, tb, partial, undocumented)


def run_and_judge(case: Case, d: Path) -> Verdict:
    """Make the case's files in `d`, run it, judge it."""
    d.mkdir(parents=True, exist_ok=True)
    extra = {}
    if case.models_dir is not None:
        extra["PTOLEMY_MODELS_DIR"] = str(case.models_dir(d))
    argv = case.make(d)
    outside = case.outside
    before = snapshot(d, outside)
    res = run_case(case, d, argv, extra)
    after = snapshot(d, outside)
    try:
        return judge(case, d, before, after, res)
    finally:
        _restore_permissions(d)


def _restore_permissions(d: Path) -> None:
    """Let pytest's tmp_path clean-up remove what a case made unreadable or read-only."""
    for dirpath, dirnames, filenames in os.walk(d):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            try:
                if not p.is_symlink():
                    p.chmod(0o755 if p.is_dir() else 0o644)
            except OSError:
                pass
    for dirpath, dirnames, _ in os.walk(d):
        for n in dirnames:
            try:
                (Path(dirpath) / n).chmod(0o755)
            except OSError:
                pass


#: Totals of the cases run in this process (`record`), for the summary line.
STATS: dict[str, int] = {}


def record(v: Verdict) -> None:
    """Add one judged case to `STATS`."""
    for k, n in (("cases", 1), ("tracebacks", v.traceback), ("partial", v.partial),
                 ("left", bool(v.result.left)), ("undocumented", v.undocumented)):
        STATS[k] = STATS.get(k, 0) + int(n)
    STATS["failed"] = STATS.get("failed", 0) + int(not v.ok)


def summary_line() -> str:
    """``fault corpus: N cases, T tracebacks, P partial outputs, L processes left, U undocumented exit codes``."""
    s = STATS
    return (f"fault corpus: {s.get('cases', 0)} cases, {s.get('tracebacks', 0)} tracebacks, "
            f"{s.get('partial', 0)} partial outputs, {s.get('left', 0)} processes left, "
            f"{s.get('undocumented', 0)} undocumented exit codes"
            + (f" ({s['failed']} cases failed)" if s.get("failed") else ""))
