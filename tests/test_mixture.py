"""Poisson mixture: published fixed point on the real atlas, known truth on synthetic data."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ptolemy_rt import mixture
from conftest import LOWMAG_MRC, REFERENCE, needs_shared


def _two_poisson(shape=(300, 400), mu=(40.0, 6.0), pi=0.3, seed=0):
    rng = np.random.default_rng(seed)
    hi = rng.random(shape) < pi
    img = np.where(hi, rng.poisson(mu[0], shape), rng.poisson(mu[1], shape))
    return img.astype(np.float32), hi


def _per_pixel_em(img, iters=100, tol=1e-3):
    """Textbook per-pixel EM (same deterministic start) as an independent reference."""
    x = np.floor(np.maximum(img, 0)).ravel().astype(np.float64)
    r = (x > x.mean()).astype(np.float64)
    prev = -np.inf
    for _ in range(iters):
        pi = r.mean()
        mu_a, mu_b = (r * x).sum() / r.sum(), ((1 - r) * x).sum() / (1 - r).sum()
        la = np.log(pi) + x * np.log(mu_a) - mu_a
        lb = np.log(1 - pi) + x * np.log(mu_b) - mu_b
        lse = np.logaddexp(la, lb)
        r = np.exp(la - lse)
        ll = lse.sum()
        if ll - prev < tol:
            break
        prev = ll
    return pi, mu_a, mu_b, (r > 0.5).reshape(img.shape)


@needs_shared
def test_atlas_matches_published_fit():
    from ptolemy_rt.io import read_mrc

    img = read_mrc(LOWMAG_MRC)
    ref = json.loads((REFERENCE / "intermediates.json").read_text())["lowmag_20may08a_16760340.mrc"]["mixture"]
    fit = mixture.fit_mixture(img.pixels, img.integer_valued)
    assert fit.scale == 1.0
    np.testing.assert_array_equal(fit.mask, img.pixels >= 58)
    assert fit.threshold == 58.0
    assert fit.mask.mean() == pytest.approx(ref["mask_fraction"], abs=1e-12)
    assert fit.mu_high == pytest.approx(ref["mu1"], rel=1e-5)
    assert fit.mu_low == pytest.approx(ref["mu2"], rel=1e-5)
    assert fit.weight_high == pytest.approx(ref["pi"], rel=1e-5)
    # deterministic
    again = mixture.fit_mixture(img.pixels, img.integer_valued)
    assert (again.mu_high, again.mu_low, again.weight_high) == (fit.mu_high, fit.mu_low, fit.weight_high)


@needs_shared
def test_atlas_as_float_unit_range():
    """A [0, 1] image (which the published truncation turns into zeros) still gives the squares."""
    from ptolemy_rt.io import read_mrc

    px = read_mrc(LOWMAG_MRC).pixels
    unit = (px / px.max()).astype(np.float32)
    fit = mixture.fit_mixture(unit, integer_valued=False)
    assert fit.scale == pytest.approx(4095.0)
    ref = px >= 58
    assert np.mean(fit.mask != ref) < 1e-3
    assert 0.9 * 58 / px.max() < fit.threshold < 1.1 * 58 / px.max()


def test_recovers_synthetic_parameters():
    img, truth = _two_poisson()
    fit = mixture.fit_mixture(img)
    assert fit.mu_high == pytest.approx(40.0, rel=0.01)
    assert fit.mu_low == pytest.approx(6.0, rel=0.01)
    assert fit.weight_high == pytest.approx(0.3, abs=0.005)
    assert np.mean(fit.mask == truth) > 0.99


def test_histogram_em_equals_per_pixel_em():
    img, _ = _two_poisson(shape=(120, 150), mu=(25.0, 9.0), pi=0.45, seed=3)
    pi, mu_a, mu_b, mask = _per_pixel_em(img)
    fit = mixture.fit_mixture(img)
    assert fit.mu_high == pytest.approx(mu_a, rel=1e-9)
    assert fit.mu_low == pytest.approx(mu_b, rel=1e-9)
    assert fit.weight_high == pytest.approx(pi, rel=1e-9)
    np.testing.assert_array_equal(fit.mask, mask)


def test_negative_pixels_count_as_zero_and_input_untouched():
    img, _ = _two_poisson(seed=5)
    neg = img.copy()
    neg[::7, ::5] = -30.0
    zero = np.maximum(neg, 0)
    before = neg.copy()
    a = mixture.fit_mixture(neg)
    b = mixture.fit_mixture(zero)
    np.testing.assert_array_equal(neg, before)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.mu_high == b.mu_high


def test_float_unit_synthetic_and_large_float():
    img, truth = _two_poisson(seed=1)
    unit = img / img.max()
    fit = mixture.fit_mixture(unit)
    assert fit.scale == pytest.approx(4095.0 / unit.max())
    assert np.mean(fit.mask == truth) > 0.98
    # whole numbers stored as float: published behaviour (no rescale)
    assert mixture.fit_mixture(img.astype(np.float64)).scale == 1.0
    # non-integer with a large range: truncated as published
    big = img * 100.0 + 0.25
    fb = mixture.fit_mixture(big)
    assert fb.scale == 1.0 and np.mean(fb.mask == truth) > 0.98
    # huge values: bounded histogram
    huge = img.astype(np.float64) * 1e6
    fh = mixture.fit_mixture(huge)
    assert fh.scale < 1.0 and np.mean(fh.mask == truth) > 0.98


def test_integer_dtypes():
    img, _ = _two_poisson(seed=2)
    f32 = mixture.fit_mixture(img)
    for dt in (np.int16, np.uint16, np.int32):
        f = mixture.fit_mixture(img.astype(dt))
        np.testing.assert_array_equal(f.mask, f32.mask)


def test_degenerate_images():
    zeros = np.zeros((20, 20), np.float32)
    zeros[3, 3] = 0.5  # truncates to a single value? no: rescaled, two values
    f = mixture.fit_mixture(zeros)
    assert f.mask.sum() >= 1
    const = np.full((20, 20), 7.0, np.float32)
    f = mixture.fit_mixture(const)
    assert not f.mask.any() and f.threshold is None
    two = np.zeros((30, 30), np.float32)
    two[10:20, 10:20] = 50.0
    f = mixture.fit_mixture(two)
    np.testing.assert_array_equal(f.mask, two > 0)


def test_warmup_runs():
    mixture.warmup()


def test_valley_ratio_separates_bimodal_from_unimodal():
    rng = np.random.default_rng(4)
    img, _ = _two_poisson(mu=(60.0, 8.0))
    assert mixture.fit_mixture(img).valley_ratio < 0.1
    noise = rng.poisson(20.0, (256, 256)).astype(np.float32)
    assert mixture.fit_mixture(noise).valley_ratio > 0.9
    r, c = np.indices((256, 300), dtype=np.float32)
    assert mixture.fit_mixture(10.0 + 0.01 * r + 0.02 * c).valley_ratio > 0.9  # flat histogram
    spikes = np.zeros((64, 64), np.float32)
    spikes[::8, ::8] = 100.0
    assert mixture.fit_mixture(spikes).valley_ratio == 0.0
    # the smoothing never lets a spike leak across the threshold
    h = np.zeros(101)
    h[0], h[100] = 1000.0, 10.0
    assert mixture.valley_ratio(h, 4, 100.0, 0.0) == 0.0
    assert mixture.valley_ratio(np.ones(50), 25, 40.0, 10.0) == 1.0


@needs_shared
def test_atlas_valley_is_deep():
    from ptolemy_rt.io import read_mrc

    img = read_mrc(LOWMAG_MRC)
    assert mixture.fit_mixture(img.pixels, img.integer_valued).valley_ratio < 0.1
