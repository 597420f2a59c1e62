"""Bounded-memory code paths give the same numbers as the whole-image ones (issue 14):
strip-wise MRC reading, streamed checks, strip-wise medmag normalisation, the U-Net mask made
strip by strip, per-window crop rotation. Peak RSS itself is measured in bench/ (--only memory)."""
from __future__ import annotations

import numpy as np
import pytest

from ptolemy_rt import io, medmag, mrc
from test_cli_common import write_mrc


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint16, np.float32, np.float16])
def test_strip_reading_equals_whole_section(tmp_path, monkeypatch, dtype):
    rng = np.random.default_rng(1)
    a = (rng.random((3, 150, 70)) * 100).astype(dtype)
    p = write_mrc(tmp_path / "s.mrc", a)
    monkeypatch.setattr(mrc, "STRIP_BYTES", 7 * 70)  # several strips, the last one short
    h = mrc.read_header(p)
    for k in range(3):
        got = mrc.read_section_float32(p, h, k)
        assert got.dtype == np.float32 and np.array_equal(got, mrc.read_section(p, h, k).astype(np.float32))
    im = io.read_mrc(p, section=2)
    assert np.array_equal(im.pixels, a[2].astype(np.float32))
    assert im.integer_valued == (np.dtype(dtype).kind in "iu" or bool(np.all(a[2] == np.floor(a[2]))))


def test_streamed_checks_find_one_nan_and_constant_images(tmp_path, monkeypatch):
    from ptolemy_rt import core

    monkeypatch.setattr(core, "STRIP_PX", 500)  # many strips
    a = np.ones((200, 90), np.float32)
    with pytest.raises(io.InputImageError, match="constant"):
        io.read_mrc(write_mrc(tmp_path / "c.mrc", a))
    a[150, 3] = np.nan
    a[7, 80] = np.inf
    with pytest.raises(io.InputImageError, match="contains 2 NaN or Inf"):
        io.read_mrc(write_mrc(tmp_path / "n.mrc", a))
    b = np.full((200, 90), 4.0, np.float32)
    b[199, 89] = 4.5  # one non-integer value in the last strip
    assert io.validate_array(b).integer_valued is False
    b[199, 89] = 5.0
    assert io.validate_array(b).integer_valued is True


def test_strip_normalise_is_bit_identical_to_float64_whole(monkeypatch):
    from ptolemy_rt import core

    rng = np.random.default_rng(2)
    a = (rng.normal(50, 20, (301, 97))).astype(np.float32)  # negatives too
    ref64 = np.maximum(a.astype(np.float64), 0)
    for strip in (core.STRIP_PX, 1000):
        monkeypatch.setattr(core, "STRIP_PX", strip)
        mean, std = core.mean_std(ref64)
        ref = ((ref64 - mean) / std).astype(np.float32)
        assert np.array_equal(medmag.normalise(a), ref)


def test_unet_mask_strips_equal_thresholded_logits():
    from ptolemy_rt.models import load_model_set
    from ptolemy_rt.unet import unet_logits

    ms = load_model_set(None)
    img = np.random.default_rng(3).normal(0, 1, (1024, 1440)).astype(np.float32)
    thr = medmag._logit_threshold()
    logits = unet_logits(ms, img, strip_rows=256)
    mask = unet_logits(ms, img, strip_rows=256, mask_threshold=thr)
    assert mask.dtype == bool and np.array_equal(mask, logits > thr)


def test_rotated_windows_match_whole_rotation():
    from ptolemy_rt import geometry

    a = np.random.default_rng(4).random((120, 90)).astype(np.float32)
    whole = geometry.rotate_image(a, -23.0)
    win = medmag._RotatedWindows(a, -23.0)
    blk = win[slice(10, 60), slice(5, 70)]
    assert blk.shape == (50, 65) and np.abs(blk - whole[10:60, 5:70]).max() < 1e-5
