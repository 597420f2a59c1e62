"""Every file of the shared corpus of real files (../shared/real-files, ../shared/other-facilities)
gets a result or a one-line error with a documented exit code: one test per file.

The files are read in place (nothing of them is copied into the repo); the tests skip cleanly
when ../shared is absent. Expected outcomes are those of FACTS.md (writers, sizes, pixel sizes).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from ptolemy_rt.errors import EXIT_BAD_INPUT, EXIT_OK
from ptolemy_rt.io import read_image

from conftest import SHARED
from test_cli_common import assert_one_error_line, needs_models, run_inproc

ROOT = SHARED.parent
CORPUS_DIRS = [ROOT / "real-files", ROOT / "other-facilities"]
FILES = sorted(p for d in CORPUS_DIRS if d.is_dir() for p in d.rglob("*") if p.is_file())
IDS = [str(p.relative_to(ROOT)) for p in FILES]

OK, ERR = "ok", "error"
# file name -> (OK, shape [rows, cols], pixel size nm or None, integer valued)
#           or (ERR, words of the one-line message)
EXPECTED = {
    "08mar13e_00010gr_00004sq_v02.mrc": (OK, (512, 512), None, False),       # stamp 00 00 44 44, cella = nx
    "08mar13e_00010gr_00004sq_v02_00005hl.mrc": (OK, (512, 512), None, False),
    "26jun01b_00001hl.mrc": (OK, (1024, 1024), None, True),
    "26jun01b_00002hl.mrc": (OK, (1024, 1024), None, True),
    "26jun01b_00003hl.mrc": (OK, (1024, 1024), None, True),
    "eman2005_leginon_holetemplate.mrc": (OK, (200, 200), 0.466667, False),  # 4.667 Å/px
    "leginon2007_07jan05b_12gr_02en_00.dwn.mrc": (OK, (512, 512), None, False),
    "leginon_myamiweb_mymrc.mrc": (OK, (256, 256), None, False),             # nx 256, mx = cella = 512
    "pyami2013plus_numextension_binned_float32.mrc": (OK, (128, 128), None, False),
    "pyami2013plus_numextension_edge_int16.mrc": (OK, (512, 512), None, True),
    "pyami2013plus_numextension_radpow_1d.mrc": (ERR, ["1×256 px", "at least 64×64"]),
    "emdb_EMD-3001.map": (ERR, ["stack of 25 sections", "--section 0..24"]),
    "emdb_EMD-3197.map": (ERR, ["stack of 20 sections", "--section 0..19"]),
    "epu2.9_FEI2_HEADER_ONLY_truncated.mrc": (ERR, ["truncated", "33,554,432 bytes", "909,312-byte extended header"]),
    "fei_FEI1_HEADER_ONLY_truncated.mrc": (ERR, ["truncated", "28,477,960 bytes", "786,432-byte extended header"]),
    "pyserialem_nav.nav": (ERR, ["not an mrc file", "757 bytes"]),
}
JPEG_THUMBNAIL = (OK, (364, 512), None, True)  # EPU's 512×364 JPEG previews
TEXT = (ERR, ["not an mrc file but text"])      # .xml, .dm (not an atlas), .md
MDOC = (ERR, ["is a serialem .mdoc, not an image", "give the image stack it describes"])  # the stacks are not public
ATLAS_WITHOUT_IMAGES = (ERR, ["neither the stitched atlas", "is beside it"])  # EPU Atlas.dm: tiles not in the corpus


def expected(p, cli: bool = False):
    """What reading `p` gives: with the reader (`io.read_image`, cli False) or through the
    command line, which also reads SerialEM montages and EPU atlases (`sources`)."""
    if p.name in EXPECTED:
        return EXPECTED[p.name]
    if p.suffix == ".jpg":
        return JPEG_THUMBNAIL
    if cli and p.suffix == ".mdoc":
        return MDOC
    if cli and p.suffix == ".dm" and p.name.startswith("Atlas"):
        return ATLAS_WITHOUT_IMAGES
    if p.suffix in (".xml", ".dm", ".md"):
        return TEXT
    return None  # a file added to the corpus later: only the generic checks


needs_corpus = pytest.mark.skipif(not FILES, reason="../shared/real-files and ../shared/other-facilities not present")


@needs_corpus
@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_reader_on_every_real_file(path):
    from ptolemy_rt.errors import InputImageError

    want = expected(path)
    if want is not None and want[0] == OK and path.suffix == ".jpg":
        pytest.importorskip("PIL.Image")
    try:
        im = read_image(path)
    except InputImageError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(f"{path}: ") and "0..-1" not in msg
        assert want is None or want[0] == ERR, msg
        for w in (want[1] if want else []):
            assert w.lower() in msg.lower(), (w, msg)
        return
    assert want is None or want[0] == OK, f"expected an error, read {im.pixels.shape}"
    assert im.pixels.dtype == np.float32 and np.isfinite(im.pixels).all()
    if want:
        _, shape, px, integer = want
        assert im.pixels.shape == shape
        assert (im.pixel_size_nm is None) if px is None else im.pixel_size_nm == pytest.approx(px, rel=1e-5)
        assert im.integer_valued == integer


@needs_corpus
def test_leginon_2008_stamp_is_read_as_little_endian():
    """00 00 44 44 (Leginon 2007-2013) holds little-endian data: the values are those of the
    header's statistics (dmin 0, dmax 2506.598)."""
    p = ROOT / "other-facilities" / "08mar13e_00010gr_00004sq_v02.mrc"
    if not p.is_file():
        pytest.skip("Leginon 2008 file not present")
    from ptolemy_rt import mrc

    h = mrc.read_header(p)
    assert h.stamp == b"\x00\x00DD" and h.byte_order == "<" and h.pixel_size_nm is None
    im = read_image(p)
    assert float(im.pixels.min()) == 0.0 and float(im.pixels.max()) == pytest.approx(2506.598, abs=1e-3)


@needs_corpus
@needs_models
@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_cli_on_every_real_file(path, capsys):
    """`ptolemy medmag FILE -f json`: exit 0 with the published JSON list, or exit 3 with one
    error line; never 1, never a traceback."""
    want = expected(path, cli=True)
    if path.suffix == ".jpg":
        pytest.importorskip("PIL.Image")
    code, out, err = run_inproc(["medmag", path, "-f", "json"], capsys)
    assert "Traceback" not in err
    if want is not None:
        assert code == (EXIT_OK if want[0] == OK else EXIT_BAD_INPUT), err
    assert code in (EXIT_OK, EXIT_BAD_INPUT), err
    if code == EXIT_OK:
        assert isinstance(json.loads(out), list)
        assert all(line.startswith("ptolemy: ") for line in err.splitlines()), err
    else:
        assert out == ""
        assert_one_error_line(err, *(want[1] if want else []))


@needs_corpus
@pytest.mark.parametrize("path", [p for p in FILES if (expected(p) or (None,))[0] == OK and p.suffix == ".mrc"],
                         ids=lambda p: p.name)
def test_real_mrc_values_match_mrcfile_permissive(path):
    """An independent reading: mrcfile in permissive mode gives the same values."""
    import warnings

    import mrcfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.open(path, permissive=True) as m:
            ref = np.asarray(m.data, dtype=np.float32)
    assert np.array_equal(read_image(path).pixels, ref)


@needs_corpus
@pytest.mark.parametrize("name,kind,pixel_nm", [
    ("epu2.9_FEI2_HEADER_ONLY_truncated.mrc", b"FEI2", 2730.1943 / 4096 / 10),
    ("fei_FEI1_HEADER_ONLY_truncated.mrc", b"FEI1", 3167.507 / 3710 / 10),
])
def test_real_fei_headers_with_synthetic_pixels(tmp_path, name, kind, pixel_nm):
    """The real EPU headers (FEI1/FEI2 extended headers of 786,432 / 909,312 bytes) with the
    image shrunk to 128×96 and a data block appended here: pixels and pixel size exact."""
    from ptolemy_rt import mrc

    src = ROOT / "real-files" / "mrc" / name
    if not src.is_file():
        pytest.skip(f"{name} not present")
    raw = bytearray(src.read_bytes())
    assert raw[104:108] == kind
    raw[0:8] = np.array([128, 96], "<i4").tobytes()  # nx, ny (mx and cella untouched)
    truth = np.random.default_rng(0).integers(0, 65536, (96, 128)).astype(np.uint16)
    p = tmp_path / name
    p.write_bytes(bytes(raw) + truth.astype("<u2").tobytes())
    im = read_image(p)
    assert np.array_equal(im.pixels, truth.astype(np.float32)) and im.integer_valued
    assert im.pixel_size_nm == pytest.approx(pixel_nm, rel=1e-6)
    # the extended header holds the same pixel size, in metres
    ext = bytes(raw[1024:1024 + 200])
    assert mrc.fei_pixel_size_nm(ext) == pytest.approx(pixel_nm, rel=1e-4)
