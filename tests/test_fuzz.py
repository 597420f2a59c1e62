"""Property-based fuzzing (hypothesis): the readers and every option parser let no exception
escape but the documented ones.

- MRC reader (`mrc.read_header` / `read_section` through `io.read_mrc`, `io.read_image`):
  random header words, random bytes, truncations and byte flips of valid files → a
  `LoadedImage` or `InputImageError` (exit 3), nothing else;
- picture reader (`pictures.read_picture` through `io.read_image`): truncated and flipped
  PNG / TIFF / JPEG files → the same;
- option parsers: every command-line field of `options` (`from_cli`, the `parse` functions,
  the dataclasses from keywords) on random values → the object or `OptionError` /
  `UsageProblem`; the command line itself (`cli.run`, pipelines replaced by the test stand-in)
  on random values of every lowmag / medmag flag → exit 0, 2, 3 or 5 with one error line,
  never 1.

Profiles (tests/conftest.py): "ci" (200 examples per target, derandomised: `make test`) and
"fuzz" (10 000 per target: ``make fuzz``, HYPOTHESIS_PROFILE=fuzz).
"""
from __future__ import annotations

import contextlib
import io as _io
import math
import os
import shutil
import struct
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ptolemy_rt import mrc  # noqa: E402
from ptolemy_rt.errors import InputImageError  # noqa: E402
from ptolemy_rt.io import LoadedImage, read_image, read_mrc  # noqa: E402
from ptolemy_rt.options import (LowmagOptions, MedmagOptions, OptionError, OutputOptions, UsageProblem,  # noqa: E402
                                check_norm, cli_fields, from_cli, parse_nav_map, parse_norm)

from faults import mrc_file, mrc_header  # noqa: E402

WORK = Path(tempfile.mkdtemp(prefix="ptolemy-fuzz-"))  # one folder for the whole module (hypothesis
# re-runs the test body many times; function fixtures would not be reset between examples)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    shutil.rmtree(WORK, ignore_errors=True)


def _file(raw: bytes, name: str = "f.mrc") -> Path:
    p = WORK / name
    p.write_bytes(raw)
    return p


def _read_ok(path, section=None, reader=read_image):
    """Read; a LoadedImage must be valid, any error must be an InputImageError."""
    try:
        im = reader(path, section=section)
    except InputImageError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(str(path)), msg
        return None
    assert isinstance(im, LoadedImage)
    assert im.pixels.ndim == 2 and im.pixels.dtype == np.float32
    assert min(im.pixels.shape) >= 64 and np.isfinite(im.pixels).all()
    assert im.pixel_size_nm is None or (math.isfinite(im.pixel_size_nm) and im.pixel_size_nm > 0)
    return im


# ------------------------------------------------------------------ MRC reader

WORDS = st.one_of(st.integers(-(2**31), 2**31 - 1),
                  st.sampled_from([0, 1, 2, 3, 4, 5, 6, 12, 16, 101, -1, 64, 65, 65535, 65536, 1 << 20, 1 << 24]))
MODES = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 12, 16, 101]), st.integers(-(2**31), 2**31 - 1))
SIDES = st.one_of(st.integers(0, 130), st.sampled_from([64, 96, 65535, 1 << 20, 1 << 21, -1, -64]), WORDS)


@given(nx=SIDES, ny=SIDES, nz=st.one_of(st.integers(-2, 3), WORDS), mode=MODES,
       nsymbt=st.one_of(st.integers(-8, 400), st.sampled_from([0, 172, 1024, 131072, -(2**31)]), WORDS),
       order=st.sampled_from("<>"), map_word=st.booleans(), exttyp=st.sampled_from([b"\0\0\0\0", b"FEI1", b"FEI2", b"SERI"]),
       cella=st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.none()),
       tail=st.integers(0, 70000), section=st.one_of(st.none(), st.integers(-1, 4)))
def test_mrc_random_header(nx, ny, nz, mode, nsymbt, order, map_word, exttyp, cella, tail, section):
    raw = mrc_header(nx, ny, nz, mode, nsymbt=nsymbt, order=order, map_word=map_word, exttyp=exttyp, cella=cella)
    rng = np.random.default_rng(tail)
    body = rng.integers(0, 256, tail, dtype=np.uint8).tobytes()
    path = _file(raw + body)
    try:  # the low-level reader: an MrcHeader whose data block lies inside the file, or MrcFormatError
        h = mrc.read_header(path)
        assert h.nx > 0 and h.ny > 0 and h.nz > 0 and h.data_offset + h.section_bytes * h.nz <= h.file_bytes
    except mrc.MrcFormatError:
        pass
    _read_ok(path, section, reader=read_mrc)


@given(raw=st.binary(max_size=3000))
def test_mrc_random_bytes(raw):
    _read_ok(_file(raw))


def _valid_mrcs() -> list[bytes]:
    r = (np.arange(96 * 80).reshape(80, 96) % 251)
    out = [mrc_file(r.astype(np.float32)), mrc_file(r.astype(np.int16)), mrc_file(r.astype(np.uint16)),
           mrc_file(r.astype(np.float16)), mrc_file((r % 120).astype(np.int8)),
           mrc_file(np.stack([r, r + 1]).astype(np.float32)),
           mrc_header(96, 80, 1, 16) + np.repeat(r.astype(np.uint8)[..., None], 3, axis=2).tobytes(),
           mrc_header(96, 80, 1, 2, nsymbt=172, exttyp=b"FEI1", cella=0.0) + bytes(156) + struct.pack("<d", 1e-9)
           + bytes(8) + r.astype("<f4").tobytes(),
           mrc_header(96, 80, 1, 2, order=">", map_word=False) + r.astype(">f4").tobytes()]
    return out


VALID = _valid_mrcs()


@given(which=st.integers(0, len(VALID) - 1), cut=st.integers(0, 70000),
       flips=st.lists(st.tuples(st.integers(0, 1100), st.integers(1, 255)), max_size=6),
       section=st.one_of(st.none(), st.integers(0, 2)))
def test_mrc_truncated_and_flipped(which, cut, flips, section):
    raw = bytearray(VALID[which])
    for pos, x in flips:
        if pos < len(raw):
            raw[pos] ^= x
    _read_ok(_file(bytes(raw[: min(cut, len(raw))] if cut < len(raw) else raw)), section)


# ------------------------------------------------------------------ picture reader

def _pictures() -> dict[str, bytes]:
    try:
        from PIL import Image
    except ImportError:
        return {}
    r = (np.arange(96 * 80).reshape(80, 96) % 251).astype(np.uint8)
    out = {}
    for fmt, mode in (("PNG", "L"), ("PNG", "RGB"), ("PNG", "I;16"), ("TIFF", "L"), ("TIFF", "F"), ("JPEG", "L"),
                      ("TIFF", "RGB")):
        im = Image.fromarray(r)
        if mode == "RGB":
            im = im.convert("RGB")
        elif mode == "I;16":
            im = Image.fromarray(r.astype(np.uint16) * 200)
        elif mode == "F":
            im = Image.fromarray(r.astype(np.float32))
        buf = _io.BytesIO()
        im.save(buf, format=fmt)
        out[f"{fmt}-{mode}"] = buf.getvalue()
    buf = _io.BytesIO()  # a two-page TIFF
    Image.fromarray(r).save(buf, format="TIFF", save_all=True, append_images=[Image.fromarray(255 - r)])
    out["TIFF-pages"] = buf.getvalue()
    return out


PICTURES = _pictures()
SUFFIX = {"PNG": ".png", "TIFF": ".tif", "JPEG": ".jpg"}


@pytest.mark.skipif(not PICTURES, reason="Pillow not installed")
@given(which=st.sampled_from(sorted(PICTURES) or ["none"]), cut=st.integers(0, 40000),
       flips=st.lists(st.tuples(st.integers(0, 40000), st.integers(1, 255)), max_size=8),
       section=st.one_of(st.none(), st.integers(-1, 3)))
def test_picture_truncated_and_flipped(which, cut, flips, section):
    raw = bytearray(PICTURES[which])
    for pos, x in flips:
        if pos < len(raw):
            raw[pos] ^= x
    raw = raw[:cut] if cut < len(raw) else raw
    _read_ok(_file(bytes(raw), "p" + SUFFIX[which.split("-")[0]]), section if section is None or section >= 0 else None)


@given(head=st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"]),
       rest=st.binary(max_size=2000))
def test_picture_signature_then_garbage(head, rest):
    _read_ok(_file(head + rest, "g.dat"))


# ------------------------------------------------------------------ option parsers

TEXT = st.one_of(st.text(max_size=40),
                 st.sampled_from(["", "inf", "-inf", "nan", "1e308", "-1e308", "1e-320", "0", "-0", "1,2", "1,0",
                                  "nan,1", "1,inf", ",", "a:b", ":", "x.nav:", ":7", "C:\\x.nav:3", "x.nav:a/b",
                                  "  ", "\x00", "\u00b5m", "1" * 400]))
VALUES = st.one_of(TEXT, st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.floats(allow_nan=True, allow_infinity=True), st.tuples(TEXT, TEXT),
                   st.lists(st.floats(), max_size=3))


OPTION_CLASSES = st.sampled_from([LowmagOptions, MedmagOptions, OutputOptions])


@given(cls=OPTION_CLASSES, data=st.data())
def test_options_from_cli_random_values(cls, data):
    values = {f.name: data.draw(VALUES, label=f.name) for f, _ in cli_fields(cls)}
    try:
        from_cli(cls, values, **({"fmt": data.draw(st.sampled_from(["json", "csv", "nav", "txt", "x"]))}
                                 if cls is OutputOptions else {}))
    except UsageProblem as e:
        assert "\n" not in str(e)


@given(cls=OPTION_CLASSES, data=st.data())
def test_options_from_keywords_random_values(cls, data):
    """The API form: the dataclasses from keywords reject bad values with OptionError (a
    ValueError) or UsageProblem, never another exception."""
    kw = {f.name: data.draw(VALUES, label=f.name) for f, _ in cli_fields(cls)}
    if cls is OutputOptions:
        kw["fmt"] = data.draw(st.sampled_from(["json", "csv", "nav", "txt", "x", None]))
    try:
        cls(**kw)
    except UsageProblem:
        pass


@given(text=VALUES)
def test_parse_functions_random_values(text):
    for fn in (parse_norm, parse_nav_map, check_norm):
        try:
            fn(text)
        except OptionError:
            pass


# ------------------------------------------------------------------ the command line (in this process)

_IMG = WORK / "img.mrc"


def _cli_image() -> Path:
    if not _IMG.exists():
        _IMG.write_bytes(mrc_file((np.random.default_rng(0).random((96, 112)) * 100).astype(np.float32)))
    return _IMG


def _flags(kind: str) -> list[tuple[str, bool]]:
    """(flag, takes a value) of every option of `kind`, as declared (options) or in cli.py."""
    from ptolemy_rt.options import PIPELINE_OPTIONS

    out = []
    for cls in (PIPELINE_OPTIONS[kind], OutputOptions):
        for f, spec in cli_fields(cls):
            decl = spec.decls[0]
            out.append((decl.split("/")[0], "/" not in decl and f.type not in ("bool",)))
            if "/" in decl:
                out.append((decl.split("/")[1], False))
    out += [("-f", True), ("-o", True), ("--models", True), ("--section", True), ("-j", True), ("--plot", True),
            ("--force", False)]
    return out


CLI_VALUES = st.one_of(TEXT, st.integers(-5, 5).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                       st.sampled_from(["json", "json-full", "csv", "txt", "nav", "out.json", "out.csv", "-", "out/",
                                        "/dev/null", "img.mrc", "ptolemy-rt-synth-v1", "auto", "published", "oblique"]))


def _run_cli(argv):
    from test_cli_common import fake_pipeline

    from ptolemy_rt import batch, cli

    out, err = _io.StringIO(), _io.StringIO()
    with mock.patch.object(batch, "run_pipeline", fake_pipeline), mock.patch.object(batch, "model_set", lambda n: None), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _cwd(WORK / "cwd"):
        code = cli.run(argv)
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def _cwd(d: Path):
    d.mkdir(exist_ok=True)
    old = os.getcwd()
    os.chdir(d)
    try:
        yield
    finally:
        os.chdir(old)
        shutil.rmtree(d, ignore_errors=True)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["lowmag", "medmag"]), data=st.data())
def test_cli_random_option_values(kind, data):
    flags = _flags(kind)
    picked = data.draw(st.lists(st.sampled_from(flags), min_size=1, max_size=4, unique=True), label="flags")
    argv = [kind, str(_cli_image())]
    for flag, takes in picked:
        argv.append(flag)
        if takes:
            v = data.draw(CLI_VALUES, label=flag)
            assume("\x00" not in v)  # argv cannot hold NUL bytes
            argv.append(v)
    if not any(f == "-o" for f, _ in picked):
        argv += ["-o", "r.json"]
    code, out, err = _run_cli(argv)
    assert code in (0, 2, 3, 4, 5), (argv, code, err)
    lines = err.splitlines()
    errors = [ln for ln in lines if ln.startswith("ptolemy: error: ")]
    assert "Traceback" not in err, err
    if code == 0:
        assert not errors, (argv, err)
    else:
        assert len(errors) == 1, (argv, err)
