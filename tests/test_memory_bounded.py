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


@pytest.mark.parametrize("dilate", [0, 3, 6])
def test_region_runs_equal_label_image(monkeypatch, dilate):
    """Row runs (no int32 label image): the same labels strip by strip, hulls and count."""
    from ptolemy_rt import core, regions

    monkeypatch.setattr(core, "STRIP_PX", 97)  # many strips, cut mid-region
    rng = np.random.default_rng(5)
    for t in range(25):
        h, w = (int(v) for v in rng.integers(1, 80, 2))
        m = rng.random((h, w)) < (0.02, 0.1, 0.4)[t % 3]
        labels, n = regions.label_regions(m, dilate)
        runs = regions.region_runs(m, dilate)
        assert runs.n == n
        assert np.array_equal(np.concatenate([lab for _, lab in runs.strips()]), labels)
        got, want = runs.hulls(), regions.region_hulls(labels, n)
        assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))
        table = rng.random(n + 1) < 0.5
        assert np.array_equal(runs.lookup(table), table[labels])


def test_drop_small_regions_by_runs_equals_scipy_labels():
    import scipy.ndimage as ndi

    rng = np.random.default_rng(6)
    m = ndi.binary_dilation(rng.random((300, 211)) < 0.01, iterations=2)
    m[::7, ::5] = True  # speckles
    labels, n = ndi.label(m, structure=np.ones((3, 3), bool))
    for min_px in (2, 10, 40):
        keep = np.bincount(labels.ravel(), minlength=n + 1) >= min_px
        keep[0] = False
        assert np.array_equal(medmag.drop_small_regions(m, min_px), keep[labels])


def test_order_statistics_and_zero_level_stream_equal_partition(monkeypatch):
    from ptolemy_rt import lowmag, mixture
    from ptolemy_rt.core import clamp_negatives

    rng = np.random.default_rng(7)
    for k, x in enumerate([rng.normal(0, 1e3, (311, 170)), rng.integers(1000, 1016, (200, 333)),
                           rng.random((97, 410)) - 0.3, rng.normal(-40, 9, (250, 250))]):
        x = x.astype(np.float32)
        x.flat[k * 17] = -0.0
        ks = sorted({0, 5, x.size // 3, x.size - 1})
        part = np.partition(x.ravel(), ks)
        assert mixture.order_statistics_f32(x, ks) == [part[i] for i in ks]
        monkeypatch.setattr(mixture, "STREAM_MIN_PX", 1 << 40)
        whole = mixture.zero_level(x)
        monkeypatch.setattr(mixture, "STREAM_MIN_PX", 0)
        assert mixture.zero_level(x) == whole
        z = float(part[5])
        assert lowmag._minus_zero(x, z).tobytes() == clamp_negatives(np.asarray(x, np.float64) - z).tobytes()


@pytest.mark.parametrize("shape", [(301, 97), (1030, 1500), (2048, 1536), (5, 2000)])
def test_normalised_padded_bands_equal_whole_arrays(monkeypatch, shape):
    """The lazy U-Net input of large images: every band, the fill included, bit for bit."""
    from ptolemy_rt import core

    monkeypatch.setattr(core, "STRIP_PX", 50_000)  # strips that do not divide numpy's buffers
    a = np.random.default_rng(8).gamma(2.0, 30.0, shape).astype(np.float32)
    whole = medmag.pad_for_unet(medmag.normalise(a))
    lazy = medmag._NormalisedPadded(a)
    assert lazy.shape == whole.shape
    h = whole.shape[0]
    for lo, hi in [(0, h), (0, 3), (h // 3, h // 2 + 5), (max(0, shape[0] - 2), h)]:
        assert lazy.rows(lo, hi).tobytes() == whole[lo:hi].tobytes()


def test_unet_reads_a_lazy_source_like_its_array():
    from ptolemy_rt.models import load_model_set
    from ptolemy_rt.unet import unet_logits

    ms = load_model_set(None)
    a = np.random.default_rng(9).gamma(2.0, 30.0, (1000, 1400)).astype(np.float32)
    whole = medmag.pad_for_unet(medmag.normalise(a))
    thr = medmag._logit_threshold()
    want = unet_logits(ms, whole, strip_rows=256, mask_threshold=thr)
    got = unet_logits(ms, medmag._NormalisedPadded(a), strip_rows=256, mask_threshold=thr)
    assert np.array_equal(got, want)


def test_lowmag_in_place_only_on_scratch_images():
    """The zero level is subtracted in place only from pixels nobody else reads
    (`io.LoadedImage.scratch`); the squares are the same either way."""
    from dataclasses import replace

    from ptolemy_rt import lowmag, synthetic

    atlas, _ = synthetic.atlas(5, (384, 512))
    im = io.validate_array(atlas.astype(np.float32) + 500.0)  # an offset: zero level ≠ 0
    keep = im.pixels.copy()
    a = lowmag.locate_squares(im)
    assert np.array_equal(im.pixels, keep)  # a caller's image is not modified
    scratch = replace(im, pixels=im.pixels.copy(), scratch=True)
    b = lowmag.locate_squares(scratch)
    assert a.zero == b.zero != 0.0 and b.pixels is scratch.pixels
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.boxes, b.boxes)


def test_plot_keeps_no_float_copy_of_the_image(tmp_path):
    """`ptolemy lowmag X --plot P` on an image with an offset: the picture's grey levels are made
    before the pipeline, which then reuses the pixels in place (no second float32 copy) and
    `plot.to_grey` streams (no float64 copy): the traced peak with --plot stays within
    1.5 bytes/px of the peak without it (before: ≈ 4 + 8 bytes/px more); same picture bytes
    as the whole-image float64 grey levels."""
    import tracemalloc

    from ptolemy_rt import plot, synthetic
    from ptolemy_rt.batch import Job, analyse

    pytest.importorskip("PIL")
    atlas, _ = synthetic.atlas(5, (1536, 1536), pitch=150.0, angle_deg=5.0)
    src = tmp_path / "a.mrc"
    write_mrc(src, (atlas + 500.0).astype(np.float32))  # an offset: zero level ≠ 0
    peaks = {}
    for name, p in (("plain", None), ("plot", str(tmp_path / "a.png"))):
        analyse(Job("lowmag", str(src), plot=p, models="ptolemy-rt-synth-v1"))  # warm (imports, sessions)
        tracemalloc.start()
        analyse(Job("lowmag", str(src), plot=p, models="ptolemy-rt-synth-v1"))
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    extra = (peaks["plot"] - peaks["plain"]) / atlas.size
    print(f"traced peak: {peaks}, --plot adds {extra:.2f} bytes/px")
    assert extra <= 1.5
    x = (atlas + 500.0).astype(np.float32)
    assert np.array_equal(plot.to_grey(x), plot.to_grey(x.astype(np.float64)))


_FAULTS_SCRIPT = r"""
import resource, sys, threading
from ptolemy_rt import synthetic
from ptolemy_rt.medmag import find_holes
from ptolemy_rt.models import keep_memory_warm, load_model_set
if sys.argv[1] == "warm":
    keep_memory_warm()
ms = load_model_set("ptolemy-rt-synth-v1")
img, _ = synthetic.medmag_image(3, shape=(512, 720))
out = []
def work():  # as a server runs requests: in a worker thread
    for _ in range(4):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        res = find_holes(img, models=ms)
        out.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0, len(res.holes)))
t = threading.Thread(target=work)
t.start(); t.join()
print(" ".join(f"{f}:{n}" for f, n in out))
"""


def test_warm_memory_policy_reuses_buffers_request_after_request():
    """`ptolemy serve`'s "warm" policy (models.keep_memory_warm): after two requests the
    pipeline reuses its buffers (few page faults), where the one-shot "bounded" policy hands
    them back to the OS after every stage and faults them in again; same holes either way."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), PTOLEMY_THREADS="1")
    env.pop("PTOLEMY_MALLOC_TUNE", None)
    runs = {}
    for policy in ("bounded", "warm"):
        r = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, policy], env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        runs[policy] = [tuple(int(v) for v in cell.split(":")) for cell in r.stdout.split()]
    holes = {n for p in runs.values() for _, n in p}
    assert len(holes) == 1 and holes.pop() > 0
    warm_faults = max(f for f, _ in runs["warm"][2:])
    bounded_faults = min(f for f, _ in runs["bounded"][2:])
    assert warm_faults * 5 < bounded_faults, runs


def test_medmag_shift_in_place_on_scratch_pixels():
    """The robust medium-mag pipeline shifts a `scratch` image's own float32 pixels by the
    rotation fill in place (no second whole-image array) and gives the same result as on
    a caller's array, which it leaves unchanged."""
    from dataclasses import replace

    from ptolemy_rt import synthetic

    image, _ = synthetic.medmag_image(3, (600, 800), pixel_nm=9.0, film="R1.2/1.3", angle_deg=0.0, tilt_deg=0.0)
    arr = (np.asarray(image, np.float32) + np.float32(5000.0))  # an offset: rotation fill ≠ 0
    keep = arr.copy()
    ref = medmag.rotation_fill(arr)
    assert ref != 0.0
    want = medmag.find_holes(arr)
    assert np.array_equal(arr, keep)  # the caller's array is never modified
    loaded = replace(io.as_loaded_image(arr.copy()), scratch=True)
    got = medmag.find_holes(loaded)
    assert len(got.holes) > 0 and repr(got.holes) == repr(want.holes)  # the same holes and scores
    expect = np.empty_like(keep)
    expect[:] = keep.astype(np.float64) - ref
    assert np.array_equal(loaded.pixels, expect)  # shifted in place: the pipeline's own pixels


def test_film_check_makes_no_whole_image_labels_or_float64_copy():
    """Issue 14: `film.film_check` at 16384² took +3.2 GB (an int32 label image for the hole
    radius, its int64 copy in np.bincount, a float64 copy of the image for the hole level).
    The hole radius now comes from row runs (the same components: equal to the label-image
    radius) and the hole level from the disc pixels only (float32, partitioned in place):
    traced peak ≤ 4 bytes/px of the image (the bool disc and exclusion masks, 1 byte/px
    each, and the disc pixels: 4 bytes × the mask fraction 0.31), before 12.3."""
    import tracemalloc

    import scipy.ndimage as ndi

    from ptolemy_rt import film

    n = 1536
    rr, cc = np.mgrid[:n, :n]
    mask = (rr % 96 - 48) ** 2 + (cc % 96 - 48) ** 2 <= 30 ** 2
    mask[:, 700:760] = False  # split some holes: components of several sizes
    img = np.where(mask, 200.0, 100.0).astype(np.float32) + np.random.default_rng(0).random((n, n), np.float32)
    pts = np.array([[r + 48.0, c + 48.0] for r in range(0, n, 96) for c in range(0, n, 96)])
    labels, k = ndi.label(mask, structure=np.ones((3, 3), bool))  # the whole-image reference radius
    ids = np.unique(labels[pts[:, 0].astype(int), pts[:, 1].astype(int)])
    ref = float(min(max(np.sqrt(np.median(np.bincount(labels.ravel())[ids[ids > 0]]) / np.pi), 0.15 * 96), 0.45 * 96))
    assert film.hole_radius_px(mask, pts, 96.0) == ref
    film.film_check(img, mask, pts, 96.0)  # warm
    tracemalloc.start()
    check = film.film_check(img, mask, pts, 96.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"film_check traced peak {peak / img.size:.2f} bytes/px")
    assert check.hole_level is not None and check.on_film.all()
    assert peak <= 4.0 * img.size


def test_medmag_lets_the_input_go_once_resampled(monkeypatch):
    """Issue 14: when the scale stage resamples, the input's pixels are let go before the
    U-Net (−4 bytes/px of the input) when they are the pipeline's own (a `scratch`
    LoadedImage: its ``pixels`` become None), never a caller's array; the same holes either
    way."""
    import weakref
    from dataclasses import replace

    from ptolemy_rt import synthetic, unet
    from ptolemy_rt.models import OWN_SET, available_sets

    if OWN_SET not in available_sets():
        pytest.skip("own set not present")
    img, _ = synthetic.medmag_image(3, (384, 448), film="R1.2/1.3", pixel_nm=40.0, tilt_deg=0.0, broken=False, bars=0)
    arr = np.asarray(img, np.float32)
    alive = {}
    logits = unet.unet_logits

    def spy(models, image, **kw):  # when the U-Net runs: is the input array still referenced?
        alive.setdefault("at_unet", ref() is not None)
        return logits(models, image, **kw)

    monkeypatch.setattr(unet, "unet_logits", spy)
    keep = arr.copy()
    ref = weakref.ref(arr)
    want = medmag.find_holes(arr, models=OWN_SET)  # a caller's array: kept, unchanged
    assert want.scale["factor"] > 3.0 and len(want.holes) > 0
    assert alive.pop("at_unet") and np.array_equal(arr, keep)
    loaded = replace(io.as_loaded_image(arr.copy()), scratch=True)
    ref = weakref.ref(loaded.pixels)
    got = medmag.find_holes(loaded, models=OWN_SET)
    assert alive.pop("at_unet") is False and loaded.pixels is None  # let go before the U-Net
    assert repr(got.holes) == repr(want.holes) and got.image_shape == want.image_shape


def test_medmag_polarity_check_negates_band_by_band(monkeypatch):
    """Issue 14: on a large image with dark holes the polarity check ran the U-Net on a whole
    negated copy (−work: +4 bytes/px). Above `medmag.LAZY_UNET_INPUT_PIXELS` (lowered here)
    the U-Net reads the negation band by band (`_Negated`), and when the negated image wins
    the pipeline's own array is negated in place: the same holes, polarity and scores as the
    whole-array path."""
    from dataclasses import replace

    from ptolemy_rt import synthetic, unet
    from ptolemy_rt.models import OWN_SET, available_sets

    if OWN_SET not in available_sets():
        pytest.skip("own set not present")
    img, _ = synthetic.medmag_image(21, (512, 720), pixel_nm=40.0, film="R2/2", tilt_deg=0.0, bars=0,
                                    broken=False, invert=False, offset=0.0)  # as tests/test_film.py's small_film
    dark = np.float32(2 * float(np.max(img))) - np.asarray(img, np.float32)  # inverted: dark holes
    want = medmag.find_holes(dark, models=OWN_SET)
    assert want.polarity["sign"] == -1 and "confirms" in want.polarity["note"] and len(want.holes) > 0
    seen = []
    logits = unet.unet_logits

    def spy(models, image, **kw):
        seen.append(isinstance(getattr(image, "pixels", None), medmag._Negated))
        return logits(models, image, **kw)

    monkeypatch.setattr(unet, "unet_logits", spy)
    monkeypatch.setattr(medmag, "LAZY_UNET_INPUT_PIXELS", 1000)
    loaded = replace(io.as_loaded_image(dark.copy()), scratch=True)
    got = medmag.find_holes(loaded, models=OWN_SET)
    assert seen == [False, True]  # as is, then the negation read band by band
    assert repr(got.holes) == repr(want.holes) and got.polarity == want.polarity
    assert loaded.pixels is None  # resampled (×2.75): the input was let go


@pytest.mark.parametrize("shape", [(128, 128), (64, 200), (1, 1), (65, 64), (130, 191), (63, 5)])
def test_blocked_summed_area_table_equals_int32_table(shape):
    """Issue 14: the lattice search's summed-area table of a large mask is `lattice.BlockedSAT`
    (uint16 in-block counts + int32 block boundaries, ≈ 2.1 bytes/px instead of 4: −0.5 GB at
    16384²): the same integers at every (r, c), block-aligned sizes and edges included."""
    from ptolemy_rt import lattice

    m = np.random.default_rng(sum(shape)).random(shape) < 0.6
    r, c = np.meshgrid(np.arange(shape[0] + 1), np.arange(shape[1] + 1), indexing="ij")
    assert np.array_equal(lattice.BlockedSAT(m).at(r, c), lattice._SAT(m).at(r, c))
    full = np.ones((200, 130), bool)  # the largest in-block count, 64² = 4096, fits uint16
    assert int(lattice.BlockedSAT(full).at(200, 130)) == 200 * 130


def test_lattice_costs_with_the_blocked_table_are_the_same(monkeypatch):
    from ptolemy_rt import lattice

    rr, cc = np.mgrid[:400, :380]
    m = (rr % 60 - 30) ** 2 + (cc % 60 - 30) ** 2 <= 14 ** 2
    cents = np.array([[30.0 + 60 * i, 30.0 + 60 * j] for i in range(6) for j in range(6)])
    want = lattice.basis_costs(m, cents, (60.0, 0.0), (0.0, 60.0))
    monkeypatch.setattr(lattice, "BLOCKED_SAT_MIN_PIXELS", 0)
    got = lattice.basis_costs(m, cents, (60.0, 0.0), (0.0, 60.0))
    assert np.array_equal(got, want) and (want >= 0).all()


def test_lattice_kernel_blocked_table_gives_the_painted_costs():
    """Issue 14: the lattice kernel's summed-area table (`lattice_kernels._summed_area`) is
    blocked (uint16 in-block counts + int32 block boundaries; it was int32: +1.07 GB at
    16384²). Its square-candidate costs equal `lattice.basis_costs` (Python int32 table) on a
    mask whose sides are not multiples of the 64 px block."""
    from ptolemy_rt import kernels, lattice

    rr, cc = np.mgrid[:331, :297]
    m = ((rr % 50 - 25) ** 2 + (cc % 50 - 25) ** 2 <= 11 ** 2) & ~((rr > 140) & (rr < 160))
    cents = np.array([[25.0 + 50 * i, 25.0 + 50 * j] for i in range(6) for j in range(5) if not 2 < 25 + 50 * i - 150 < 10])
    nb = np.array([[k + 1 if k + 1 < len(cents) else k - 1] for k in range(len(cents))], np.int64)  # the next along the row
    costs, counts, _ = kernels.score_candidates(m.view(np.uint8), cents, nb, 100.0, 30, False, 0.0, 1e9)
    d = cents[nb[:, 0]] - cents
    for i in range(len(cents)):
        u = d[i]
        want = lattice.basis_costs(m, cents[i:i + 1], (u[0], u[1]), (-u[1], u[0]), margin=100.0, box=30)
        assert costs[i, 0] == want[0] and want[0] >= 0, (i, costs[i, 0], want[0])
