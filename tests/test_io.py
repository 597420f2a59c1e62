"""Image loading: real MRCs load; crafted MRC variants (stamps, byte orders, modes, extended
headers) read with exact values; crafted bad files and pictures give one-line InputImageErrors."""
from __future__ import annotations

import struct

import mrcfile
import numpy as np
import pytest

from ptolemy_rt import mrc
from ptolemy_rt.errors import InputImageError
from ptolemy_rt.io import read_image, read_mrc

from conftest import LOWMAG_MRC, MEDMAG_MRC, needs_shared
from test_cli_common import assert_one_error_line, run_inproc


def _write(path, data, voxel=None):
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data)
        if voxel is not None:
            m.voxel_size = voxel
    return path


@needs_shared
def test_reads_real_examples():
    low = read_mrc(LOWMAG_MRC)
    assert low.pixels.shape == (1024, 1024) and low.integer_valued
    med = read_mrc(MEDMAG_MRC)
    assert med.pixels.shape == (1024, 1440) and not med.integer_valued
    assert med.pixels.dtype == np.float32


def _assert_one_line(err, path, *words):
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    for w in words:
        assert w in msg.lower()


def test_not_an_mrc(tmp_path):
    p = tmp_path / "x.mrc"
    p.write_bytes(b"P5\n" + bytes(range(256)) * 20)
    with pytest.raises(InputImageError) as e:
        read_mrc(p)
    _assert_one_line(e, p, "mrc")


def test_tiny_file_and_missing(tmp_path):
    p = tmp_path / "tiny.mrc"
    p.write_bytes(b"abc")
    with pytest.raises(InputImageError) as e:
        read_mrc(p)
    _assert_one_line(e, p, "not an mrc")
    with pytest.raises(InputImageError) as e:
        read_mrc(tmp_path / "missing.mrc")
    _assert_one_line(e, tmp_path / "missing.mrc", "no such file")


def test_truncated(tmp_path):
    p = _write(tmp_path / "t.mrc", np.arange(256 * 256, dtype=np.float32).reshape(256, 256))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputImageError) as e:
        read_mrc(p)
    _assert_one_line(e, p)


def test_nan_inf_constant_small(tmp_path):
    img = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    img[3, 4] = np.nan
    img[5, 6] = np.inf
    p = _write(tmp_path / "nan.mrc", img)
    with pytest.raises(InputImageError) as e:
        read_mrc(p)
    _assert_one_line(e, p, "2 nan or inf")
    p = _write(tmp_path / "const.mrc", np.full((128, 128), 7, np.int16))
    with pytest.raises(InputImageError) as e:
        read_mrc(p)
    _assert_one_line(e, p, "constant")
    p = _write(tmp_path / "small.mrc", np.arange(32 * 32, dtype=np.int16).reshape(32, 32))
    with pytest.raises(InputImageError) as e:
        read_mrc(p)
    _assert_one_line(e, p, "32×32")


def test_stack_needs_section(tmp_path):
    stack = np.random.default_rng(1).integers(0, 100, (3, 96, 80)).astype(np.int16)
    p = _write(tmp_path / "stack.mrc", stack)
    with pytest.raises(InputImageError) as e:
        read_mrc(p)
    _assert_one_line(e, p, "3 sections", "--section")
    im = read_mrc(p, section=2)
    assert im.section == 2 and np.array_equal(im.pixels, stack[2].astype(np.float32))
    with pytest.raises(InputImageError):
        read_mrc(p, section=3)


def test_pixel_size_from_header(tmp_path):
    p = _write(tmp_path / "px.mrc", np.arange(100 * 100, dtype=np.int16).reshape(100, 100), voxel=25.0)
    assert read_mrc(p).pixel_size_nm == pytest.approx(2.5)


# --------------------------------------------------------------------------------------------
# Crafted MRC variants: headers built byte by byte here (not by mrcfile), with exact truth.

LE_STAMP = b"DD\x00\x00"


def craft_mrc(path, data, mode, order="<", stamp=LE_STAMP, map_word=b"MAP ", nversion=20140,
              cella=None, mx=None, nsymbt=0, ext=None, exttyp=b"\x00" * 4, dminmax=None,
              imod=None, dims=None, tail=b""):
    """Write an MRC whose 1024-byte header is packed here field by field.

    data: [row, col] or [section, row, col] array written as is in byte order `order` (mode 16:
    [.., row, col, 3] uint8). dims: (nx, ny, nz) to override what the header says.
    imod: (imodStamp, imodFlags) or None. Returns the path."""
    a = np.asarray(data)
    if mode == 16:
        a3 = a if a.ndim == 4 else a[None]
        nz, ny, nx = a3.shape[:3]
    else:
        a3 = a if a.ndim == 3 else a[None]
        nz, ny, nx = a3.shape
    nx, ny, nz = dims or (nx, ny, nz)
    i4, f4 = order + "i", order + "f"
    h = bytearray(1024)
    struct.pack_into(order + "4i", h, 0, nx, ny, nz, mode)
    m = mx if mx is not None else nx
    struct.pack_into(order + "3i", h, 28, m, ny, max(nz, 1))
    struct.pack_into(order + "3f", h, 40, *(cella if cella is not None else (0.0, 0.0, 0.0)))
    struct.pack_into(order + "3i", h, 64, 1, 2, 3)
    lo, hi = dminmax if dminmax is not None else ((float(a.min()), float(a.max())) if a.size else (0.0, 0.0))
    struct.pack_into(order + "3f", h, 76, lo, hi, 0.0)
    struct.pack_into(i4, h, 92, nsymbt)
    h[104:108] = exttyp
    struct.pack_into(i4, h, 108, nversion)
    if imod is not None:
        struct.pack_into(order + "2i", h, 152, *imod)
    h[208:212] = map_word
    h[212:216] = stamp
    struct.pack_into(f4, h, 216, -1.0)
    payload = a.astype(a.dtype.newbyteorder(order)).tobytes()
    ext = ext if ext is not None else bytes(nsymbt)
    path.write_bytes(bytes(h) + ext + payload + tail)
    return path


def _truth(seed=0, shape=(80, 96), dtype=np.float32, lo=0, hi=1000):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * (hi - lo) + lo).astype(dtype)


STAMPS = {
    "44 44 00 00 (MRC2014, SerialEM, EPU)": b"DD\x00\x00",
    "44 41 00 00 (CCP4, Leginon >= 2013)": b"DA\x00\x00",
    "44 00 00 00 (old IMOD / SerialEM)": b"D\x00\x00\x00",
    "00 00 44 44 (Leginon 2007-2013)": b"\x00\x00DD",
    "44 11 00 00 (some EMDB maps)": b"D\x11\x00\x00",
    "44 20 20 20 (an IMOD export)": b"D   ",
    "00 00 00 00 (cryoDRGN, original Ptolemy)": b"\x00" * 4,
    "11 11 00 00 (big-endian stamp on little-endian data)": b"\x11\x11\x00\x00",
    "random bytes": b"\xde\xad\xbe\xef",
}


@pytest.mark.parametrize("stamp", list(STAMPS.values()), ids=list(STAMPS))
@pytest.mark.parametrize("mode,dtype", [(1, np.int16), (2, np.float32), (6, np.uint16)])
def test_any_machine_stamp_on_little_endian_data(tmp_path, stamp, mode, dtype):
    truth = _truth(1, dtype=dtype)
    im = read_mrc(craft_mrc(tmp_path / "s.mrc", truth, mode, stamp=stamp))
    assert np.array_equal(im.pixels, truth.astype(np.float32))
    assert im.integer_valued == (mode != 2)


@pytest.mark.parametrize("stamp", [b"DA\x00\x00", b"\x11\x11\x00\x00", b"\x00" * 4], ids=["LE stamp", "BE stamp", "zero"])
@pytest.mark.parametrize("mode,dtype", [(1, np.int16), (2, np.float32), (6, np.uint16), (12, np.float16)])
def test_big_endian_data_under_any_stamp(tmp_path, stamp, mode, dtype):
    truth = _truth(2, dtype=dtype, hi=500)
    p = craft_mrc(tmp_path / "be.mrc", truth, mode, order=">", stamp=stamp)
    assert mrc.read_header(p).byte_order == ">"
    assert np.array_equal(read_mrc(p).pixels, truth.astype(np.float32))


def test_missing_map_and_old_style_header(tmp_path):
    truth = _truth(3, dtype=np.int16)
    p = craft_mrc(tmp_path / "nomap.mrc", truth, 1, map_word=b"\x00" * 4)
    assert np.array_equal(read_mrc(p).pixels, truth)
    # IMOD <= 2.6: no MAP; origin floats at 208..219 (over MAP and stamp), nversion spaces
    old = bytearray(craft_mrc(tmp_path / "old.mrc", truth, 1, stamp=b"\x00" * 4, nversion=0x20202020).read_bytes())
    struct.pack_into("<3f", old, 208, 12.5, -3.0, 7.0)
    old[104:108] = b"    "
    (tmp_path / "old.mrc").write_bytes(bytes(old))
    h = mrc.read_header(tmp_path / "old.mrc")
    assert not h.has_map and h.byte_order == "<"
    assert np.array_equal(read_mrc(tmp_path / "old.mrc").pixels, truth)


def test_mode0_unsigned_and_signed(tmp_path):
    u = _truth(4, dtype=np.uint8, hi=255)
    u[0, 0], u[0, 1] = 0, 255
    s = u.astype(np.int16) - 128
    s = s.astype(np.int8)
    # IMOD/SerialEM unsigned bytes: nversion 0, stats 0..255
    im = read_mrc(craft_mrc(tmp_path / "u.mrc", u, 0, nversion=0))
    assert im.pixels.max() == 255 and np.array_equal(im.pixels, u.astype(np.float32)) and im.integer_valued
    # MRC2014 signed bytes: stats -128..127
    im = read_mrc(craft_mrc(tmp_path / "s.mrc", s, 0))
    assert im.pixels.min() == -128 and np.array_equal(im.pixels, s.astype(np.float32))
    # unsigned data under nversion 20140 but honest stats: the stats decide
    im = read_mrc(craft_mrc(tmp_path / "u2.mrc", u, 0, nversion=20140))
    assert np.array_equal(im.pixels, u.astype(np.float32))
    # no usable stats: nversion decides (20140 signed, 0 unsigned)
    raw = u.view(np.int8)
    im = read_mrc(craft_mrc(tmp_path / "n1.mrc", raw, 0, nversion=20140, dminmax=(0.0, 0.0)))
    assert np.array_equal(im.pixels, raw.astype(np.float32))
    im = read_mrc(craft_mrc(tmp_path / "n0.mrc", raw, 0, nversion=0, dminmax=(0.0, 0.0)))
    assert np.array_equal(im.pixels, u.astype(np.float32))
    # IMOD stamp: imodFlags bit 1 decides, whatever the stats say
    im = read_mrc(craft_mrc(tmp_path / "i1.mrc", raw, 0, imod=(mrc.IMOD_STAMP, 1), dminmax=(0.0, 255.0)))
    assert np.array_equal(im.pixels, raw.astype(np.float32))
    im = read_mrc(craft_mrc(tmp_path / "i0.mrc", raw, 0, imod=(mrc.IMOD_STAMP, 0), dminmax=(-128.0, 127.0)))
    assert np.array_equal(im.pixels, u.astype(np.float32))


def test_mode6_uint16_full_range_and_mode12_float16(tmp_path):
    u = _truth(5, dtype=np.uint16, hi=65535)
    u[0, 0], u[1, 1] = 65535, 0
    im = read_mrc(craft_mrc(tmp_path / "u16.mrc", u, 6))
    assert im.pixels.max() == 65535 and np.array_equal(im.pixels, u.astype(np.float32)) and im.integer_valued
    f = (_truth(6, hi=4) - 2).astype(np.float16)
    im = read_mrc(craft_mrc(tmp_path / "f16.mrc", f, 12))
    assert np.array_equal(im.pixels, f.astype(np.float32)) and not im.integer_valued


def test_mode5_bytes_and_mode16_rgb(tmp_path):
    u = _truth(7, dtype=np.uint8, hi=255)
    assert np.array_equal(read_mrc(craft_mrc(tmp_path / "m5.mrc", u, 5)).pixels, u.astype(np.float32))
    rgb = np.stack([u, u, u], axis=-1)
    rgb[0, 0] = (255, 0, 0)
    im = read_mrc(craft_mrc(tmp_path / "m16.mrc", rgb, 16))
    want = u.astype(np.float32)
    want[0, 0] = np.float32(0.299) * 255
    assert np.allclose(im.pixels, want, atol=1e-3) and np.array_equal(im.pixels[1:], u[1:].astype(np.float32))


def _fei_ext(kind, pixel_m):
    rec = 768 if kind == b"FEI1" else 888
    ext = bytearray(1024 * rec)
    struct.pack_into("<ii", ext, 0, rec, 1 if kind == b"FEI1" else 2)
    ext[52:56] = b"EPU\x00"
    struct.pack_into("<dd", ext, 156, pixel_m, pixel_m)
    return bytes(ext)


@pytest.mark.parametrize("kind", [b"FEI1", b"FEI2"])
def test_fei_extended_header(tmp_path, kind):
    u = _truth(8, dtype=np.uint16, hi=9000)
    ext = _fei_ext(kind, 41.56e-9)
    # cella empty: the extended header's pixel size is used
    p = craft_mrc(tmp_path / "a.mrc", u, 6, exttyp=kind, nsymbt=len(ext), ext=ext)
    im = read_mrc(p)
    assert np.array_equal(im.pixels, u.astype(np.float32)) and im.pixel_size_nm == pytest.approx(41.56)
    # cella filled: the header's own pixel size wins
    p = craft_mrc(tmp_path / "b.mrc", u, 6, exttyp=kind, nsymbt=len(ext), ext=ext, cella=(96 * 400.0, 80 * 400.0, 0.0))
    assert read_mrc(p).pixel_size_nm == pytest.approx(40.0)


def test_ccp4_symmetry_records_skipped(tmp_path):
    truth = _truth(9)
    p = craft_mrc(tmp_path / "sym.mrc", truth, 2, nsymbt=160, ext=b"X" * 160, stamp=b"DA\x00\x00")
    assert np.array_equal(read_mrc(p).pixels, truth)


@pytest.mark.parametrize("cella,mx,want", [
    ((96.0, 80.0, 1.0), None, None),        # Leginon's placeholder: cella = nx (1 Å/px)
    ((192.0, 160.0, 1.0), 192, None),       # cella = mx, 1 Å/px, mx != nx (Leginon myamiweb)
    ((0.0, 0.0, 0.0), None, None),          # empty
    ((96 * 250.0, 80 * 250.0, 1.0), None, 25.0),
    ((96 * 6.6655, 1.0, 0.0), None, 0.66655),
    ((-5.0, 1.0, 1.0), None, None),
])
def test_header_pixel_size_only_when_real(tmp_path, cella, mx, want):
    p = craft_mrc(tmp_path / "px.mrc", _truth(10), 2, cella=cella, mx=mx)
    got = read_mrc(p).pixel_size_nm
    assert (got is None) if want is None else got == pytest.approx(want)


def test_only_the_chosen_section_is_needed(tmp_path):
    stack = np.stack([_truth(s, dtype=np.int16) for s in range(4)])
    p = craft_mrc(tmp_path / "st.mrc", stack, 1, order=">", stamp=b"DA\x00\x00")
    for k in range(4):
        im = read_mrc(p, section=k)
        assert im.section == k and np.array_equal(im.pixels, stack[k].astype(np.float32))
    with pytest.raises(InputImageError) as e:
        read_mrc(p)
    _assert_one_line(e, p, "stack of 4 sections", "--section 0..3")


def test_longer_file_than_needed_is_read(tmp_path):
    truth = _truth(11)
    assert np.array_equal(read_mrc(craft_mrc(tmp_path / "x.mrc", truth, 2, tail=b"\x00" * 100)).pixels, truth)


BAD_FILES = {
    # name: (craft kwargs, words of the message)
    "truncated data": (dict(data=_truth(12), mode=2, tail=b""), ["truncated", "30,720 bytes", "holds 15,360"]),
    "extended header past the end": (dict(data=_truth(12), mode=2, nsymbt=10 ** 7, ext=b""), ["truncated", "extended header"]),
    "negative nsymbt": (dict(data=_truth(12), mode=2, nsymbt=-8, ext=b""), ["nsymbt"]),
    "huge dims": (dict(data=_truth(12), mode=2, dims=(60000, 60000, 1)), ["larger than", "bin it"]),
    "huge dims, small enough to allow, truncated": (dict(data=_truth(12), mode=2, dims=(10000, 10000, 1)), ["truncated", "400,000,000 bytes"]),
    "nz = 0": (dict(data=_truth(12), mode=2, dims=(96, 80, 0)), ["nz = 0", "no image section"]),
    "nx = 0": (dict(data=_truth(12), mode=2, dims=(0, 80, 1)), ["0×80 px", "no pixels"]),
    "complex mode 4": (dict(data=_truth(12).astype(np.complex64), mode=4, dminmax=(0.0, 1.0)), ["complex", "fourier"]),
    "mode 101 frames": (dict(data=_truth(12, dtype=np.uint8, hi=255), mode=101), ["4-bit", "frames"]),
    "unknown mode 7": (dict(data=_truth(12), mode=7), ["unsupported mrc mode 7"]),
    "unknown mode 7, big-endian": (dict(data=_truth(12), mode=7, order=">"), ["unsupported mrc mode 7"]),
    "nonsense header": (dict(data=_truth(12), mode=2, dims=(-5, -7, 1)), ["not an mrc file"]),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_mrc_one_line_error(tmp_path, name, capsys):
    kw, words = BAD_FILES[name]
    kw = dict(kw)
    p = tmp_path / "bad.mrc"
    craft_mrc(p, kw.pop("data"), kw.pop("mode"), **kw)
    if name == "truncated data":
        p.write_bytes(p.read_bytes()[: 1024 + 15360])
    with pytest.raises(InputImageError) as e:
        read_image(p)
    _assert_one_line(e, p, *[w.lower() for w in words])
    assert "0..-1" not in str(e.value)
    code, out, err = run_inproc(["medmag", p, "-f", "json"], capsys)
    assert code == 3 and out == ""
    assert_one_error_line(err, *words)


# --------------------------------------------------------------------------------------------
# Pictures (TIFF, PNG, JPEG): Pillow when installed, a one-line error naming the extra when not.



def _pillow():
    return pytest.importorskip("PIL.Image")


def test_pictures_8_and_16_bit(tmp_path):
    Image = _pillow()
    g8 = _truth(13, dtype=np.uint8, hi=255)
    g16 = _truth(14, dtype=np.uint16, hi=65535)
    g16[0, 0] = 65535
    Image.fromarray(g8).save(tmp_path / "g8.png")
    Image.fromarray(g8).save(tmp_path / "g8.tif")
    Image.fromarray(g16).save(tmp_path / "g16.png")
    Image.fromarray(g16).save(tmp_path / "g16.tif")
    Image.fromarray(g16).save(tmp_path / "g16_lzw.tif", compression="tiff_lzw")
    for name, want in [("g8.png", g8), ("g8.tif", g8), ("g16.png", g16), ("g16.tif", g16), ("g16_lzw.tif", g16)]:
        im = read_image(tmp_path / name)
        assert np.array_equal(im.pixels, want.astype(np.float32)), name
        assert im.integer_valued and im.pixel_size_nm is None and im.section is None


def test_colour_picture_becomes_luminance_and_jpeg_reads(tmp_path):
    Image = _pillow()
    g = _truth(15, dtype=np.uint8, hi=255)
    rgb = np.stack([g, g, g], axis=-1)
    rgb[:10, :10] = (200, 40, 10)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    im = read_image(tmp_path / "c.png")
    want = g.astype(np.float32)
    want[:10, :10] = 0.299 * 200 + 0.587 * 40 + 0.114 * 10
    assert np.allclose(im.pixels, want, atol=1e-3)
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").pixels.shape == g.shape
    Image.fromarray(g).save(tmp_path / "g.jpg", quality=95)
    im = read_image(tmp_path / "g.jpg")
    assert im.pixels.shape == g.shape and np.abs(im.pixels - g).mean() < 3


def test_multipage_tiff_needs_section(tmp_path):
    Image = _pillow()
    pages = [_truth(20 + k, dtype=np.uint16, hi=4000) for k in range(3)]
    Image.fromarray(pages[0]).save(tmp_path / "m.tif", save_all=True, append_images=[Image.fromarray(p) for p in pages[1:]])
    with pytest.raises(InputImageError) as e:
        read_image(tmp_path / "m.tif")
    _assert_one_line(e, tmp_path / "m.tif", "3 frames", "--section 0..2")
    im = read_image(tmp_path / "m.tif", section=2)
    assert im.section == 2 and np.array_equal(im.pixels, pages[2].astype(np.float32))
    with pytest.raises(InputImageError):
        read_image(tmp_path / "m.tif", section=3)


def test_picture_recognised_by_content_not_name(tmp_path):
    Image = _pillow()
    g = _truth(16, dtype=np.uint8, hi=255)
    Image.fromarray(g).save(tmp_path / "x.png")
    (tmp_path / "named.mrc").write_bytes((tmp_path / "x.png").read_bytes())
    assert np.array_equal(read_image(tmp_path / "named.mrc").pixels, g.astype(np.float32))
    craft_mrc(tmp_path / "really_mrc.png", _truth(17), 2)
    with pytest.raises(InputImageError) as e:
        read_image(tmp_path / "really_mrc.png")
    _assert_one_line(e, tmp_path / "really_mrc.png", "named like a png")


def test_broken_pictures_one_line(tmp_path, capsys):
    Image = _pillow()
    g = _truth(18, dtype=np.uint8, hi=255)
    Image.fromarray(g).save(tmp_path / "t.png")
    Image.fromarray(g).save(tmp_path / "t.jpg")
    for name in ("t.png", "t.jpg"):
        p = tmp_path / ("cut_" + name)
        b = (tmp_path / name).read_bytes()
        p.write_bytes(b[: len(b) // 2])
        with pytest.raises(InputImageError) as e:
            read_image(p)
        _assert_one_line(e, p, "not a readable")
        code, out, err = run_inproc(["lowmag", p, "-f", "json"], capsys)
        assert code == 3 and out == ""
        assert_one_error_line(err, "not a readable")


def test_picture_without_pillow_names_the_extra(tmp_path, monkeypatch, capsys):
    import sys

    png = b"\x89PNG\r\n\x1a\n" + bytes(200)
    (tmp_path / "x.png").write_bytes(png)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(InputImageError) as e:
        read_image(tmp_path / "x.png")
    _assert_one_line(e, tmp_path / "x.png", "needs pillow", "pip install 'ptolemy-rt[plot]'")
    code, _, err = run_inproc(["medmag", tmp_path / "x.png"], capsys)
    assert code == 3
    assert_one_error_line(err, "ptolemy-rt[plot]")


def test_picture_too_large_is_refused_in_one_line(tmp_path):
    _pillow()
    import zlib

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    p = tmp_path / "huge.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    with pytest.raises(InputImageError) as e:
        read_image(p)
    _assert_one_line(e, p, "too large")
