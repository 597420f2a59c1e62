"""Image loading: real MRCs load, crafted bad files give one-line InputImageError."""
from __future__ import annotations

import mrcfile
import numpy as np
import pytest

from ptolemy_rt.errors import InputImageError
from ptolemy_rt.io import read_mrc

from conftest import LOWMAG_MRC, MEDMAG_MRC, needs_shared


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
