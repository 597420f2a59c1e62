"""Low-magnification pipeline against the published output on the real atlas."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ptolemy_rt import io, lowmag
from conftest import LOWMAG_MRC, REFERENCE, needs_shared

PUB = REFERENCE / "lowmag_20may08a_16760340.published.json"
RUN = REFERENCE / "lowmag_20may08a_16760340.running-stats.json"


def _published_set_ready() -> bool:
    try:
        from ptolemy_rt.models import load_model_set

        ms = load_model_set("ptolemy-2022")
        return ms.has("square_classifier")
    except Exception:
        return False


needs_models = pytest.mark.skipif(
    not _published_set_ready(), reason="published model set not built (make models)"
)


@pytest.fixture(scope="module")
def atlas():
    return io.read_mrc(LOWMAG_MRC)


@pytest.fixture(scope="module")
def located(atlas):
    return lowmag.locate_squares(atlas)


def _match(centres_a, centres_b):
    """Index in b of the nearest centre for every centre of a (and the distance)."""
    a = np.asarray(centres_a, float)
    b = np.asarray(centres_b, float)
    d = np.linalg.norm(a[:, None] - b[None], axis=2)
    return d.argmin(axis=1), d.min(axis=1)


@needs_shared
def test_geometry_matches_published(located):
    pub = json.loads(PUB.read_text())
    ref = json.loads((REFERENCE / "intermediates.json").read_text())["lowmag_20may08a_16760340.mrc"]
    c = located
    assert c.n == len(pub) == 48
    assert c.angle_deg == pytest.approx(ref["grid_angle_deg"], abs=1e-4)
    assert c.rotated_shape == tuple(ref["rotated_shape"])
    centres = np.trunc(c.vertices.mean(axis=1))  # the published tool truncates
    idx, dist = _match([s["center"] for s in pub], centres)
    assert sorted(idx) == list(range(48)) and dist.max() == 0
    areas = (c.boxes[:, 2] - c.boxes[:, 0]) * (c.boxes[:, 3] - c.boxes[:, 1])
    for s, i in zip(pub, idx):
        # same vertices in the same order, (x, y) = (col, row)
        np.testing.assert_allclose(c.vertices[i], s["vertices"], atol=1e-3)
        assert c.brightness[i] == pytest.approx(s["brightness"], rel=1e-9)
        assert areas[i] == pytest.approx(s["area"], rel=1e-9)
    # crops are integer boxes inside the rotated image
    b = c.crop_bounds
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= c.rotated_shape[0]).all()
    assert (b[:, 1] >= 0).all() and (b[:, 3] <= c.rotated_shape[1]).all()
    assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()
    # normalisation constants: mean / std of the input pixels in the mask
    px = c.pixels[c.pixels >= 58].astype(np.float64)
    assert c.norm == pytest.approx((px.mean(), px.std()))


def test_fit_to_side():
    a = np.arange(6 * 9, dtype=np.float32).reshape(6, 9)
    out = lowmag.fit_to_side(a, 10)
    assert out.shape == (10, 10)
    np.testing.assert_array_equal(out[2:8, 1:10], a)  # odd margin: extra pixel before
    assert out.sum() == a.sum()
    big = np.arange(13 * 12, dtype=np.float32).reshape(13, 12)
    out = lowmag.fit_to_side(big, 10)
    np.testing.assert_array_equal(out, big[1:11, 1:11])
    mixed = np.ones((4, 15), np.float32)
    out = lowmag.fit_to_side(mixed, 10)
    assert out[3:7].all() and not out[:3].any() and not out[7:].any()


def _sub_located(atlas, rows, cols):
    sub = atlas.pixels[rows[0]:rows[1], cols[0]:cols[1]].copy()
    return sub, lowmag.locate_squares(sub, integer_valued=True)


def _inside(vertices, rows, cols, margin=8):
    v = vertices
    return (
        (v[:, 0] >= cols[0] + margin).all() and (v[:, 0] <= cols[1] - margin).all()
        and (v[:, 1] >= rows[0] + margin).all() and (v[:, 1] <= rows[1] - margin).all()
    )


@needs_shared
@pytest.mark.parametrize("rows,cols", [((0, 1024), (100, 900)), ((120, 1000), (0, 1024)), ((37, 1000), (5, 1011))])
def test_non_square_crop_gives_shifted_boxes(atlas, located, rows, cols):
    sub, c = _sub_located(atlas, rows, cols)
    assert c.rotated_shape != located.rotated_shape
    inside = [i for i in range(located.n) if _inside(located.vertices[i], rows, cols)]
    assert len(inside) >= 20
    for i in inside:
        want = located.vertices[i] - [cols[0], rows[0]]
        d = np.abs(c.vertices - want[None]).max(axis=(1, 2))
        assert d.min() < 1e-3  # the same box, shifted, in the sub-image's frame
        j = int(d.argmin())
        assert c.brightness[j] == pytest.approx(located.brightness[i], rel=1e-12)


@needs_shared
def test_float_unit_atlas_finds_the_same_squares(atlas, located):
    unit = atlas.pixels / atlas.pixels.max()
    c = lowmag.locate_squares(unit)
    assert c.n == located.n
    centres = np.round(c.vertices.mean(axis=1))
    idx, dist = _match(np.round(located.vertices.mean(axis=1)), centres)
    assert dist.max() <= 2.0


def test_no_squares_gradient_and_noise():
    r, c = np.indices((256, 300), dtype=np.float32)
    grad = 10.0 + 0.01 * r + 0.02 * c  # smooth, noise free: mask may cover a corner
    res = lowmag.locate_squares(grad)
    assert res.n == 0 and "valley" in res.reason
    noise = np.random.default_rng(0).poisson(20.0, (256, 256)).astype(np.float32)
    res = lowmag.locate_squares(noise)
    assert res.n == 0 and res.reason
    # a binary image without large regions
    dots = np.zeros((128, 128), np.float32)
    dots[::16, ::16] = 100.0
    res = lowmag.locate_squares(dots)
    assert res.n == 0 and "100" in res.reason


def test_negative_pixels_set_to_zero():
    img = np.zeros((200, 260), np.float32)
    img[40:100, 50:120] = 150.0
    img[120:180, 150:230] = 140.0
    neg = img.copy()
    neg[0:20, :] = -50.0
    a = lowmag.locate_squares(img)
    b = lowmag.locate_squares(neg)
    assert a.n == b.n == 2
    np.testing.assert_allclose(a.vertices, b.vertices)
    assert neg.min() == -50.0  # caller's array untouched
    # axis-aligned rectangles: angle 0 or 90, boxes are the rectangles
    boxes = sorted(tuple(np.round(v.min(0)).tolist() + np.round(v.max(0)).tolist()) for v in a.vertices)
    assert boxes == [(50, 40, 120, 100), (150, 120, 230, 180)]


@pytest.fixture(scope="module")
def running_full(atlas):
    return lowmag.find_squares(atlas, models="ptolemy-2022", batchnorm="running")


def _check_against_reference(res, want):
    assert res.reason is None and len(res.squares) == len(want) == 48
    assert res.image_shape == (1024, 1024)
    got_scores = [s.score for s in res.squares]
    assert got_scores == sorted(got_scores, reverse=True)
    idx, dist = _match([s["center"] for s in want], [s.center for s in res.squares])
    assert dist.max() == 0 and sorted(idx) == list(range(48))
    for w, i in zip(want, idx):
        g = res.squares[i]
        np.testing.assert_allclose(g.vertices, w["vertices"], atol=1e-3)
        assert g.brightness == pytest.approx(w["brightness"], rel=1e-9)
        assert g.area == pytest.approx(w["area"], rel=1e-9)
        assert g.score == pytest.approx(w["score"], abs=1e-4)
    for k in ("load", "mixture", "regions", "hulls", "angle", "rotate", "crops", "classify"):
        assert k in res.timings_s


@needs_shared
@needs_models
def test_full_pipeline_published_scores():
    res = lowmag.find_squares(LOWMAG_MRC, models="ptolemy-2022", batchnorm="published")
    assert res.batchnorm == "published" and res.models == "ptolemy-2022"
    _check_against_reference(res, json.loads(PUB.read_text()))


@needs_shared
@needs_models
def test_full_pipeline_running_scores(running_full):
    _check_against_reference(running_full, json.loads(RUN.read_text()))


@needs_shared
@needs_models
def test_non_square_padded_atlas_same_squares_and_scores(atlas, running_full):
    """1024×1224 image: the atlas with 100 columns of dark background (value 12, so the
    mixture threshold stays 58) on each side. Its rotated frame (1590²) differs from the
    atlas's (1448²) by a whole-pixel shift, so every crop inside the atlas is the same:
    same boxes shifted by 100 px, bit-identical scores. (The published centre (m//2, m//2)
    would misplace every box here by 100/√2 px.)"""
    big = np.pad(atlas.pixels, ((0, 0), (100, 100)), constant_values=12)
    part = lowmag.find_squares(io.validate_array(big), models="ptolemy-2022", batchnorm="running")
    assert part.image_shape == (1024, 1224) and len(part.squares) == 48
    inside = 0
    for s in running_full.squares:
        v = np.array(s.vertices)
        d = [np.abs(np.array(p.vertices) - (v + [100, 0])).max() for p in part.squares]
        j = int(np.argmin(d))
        assert d[j] < 1e-6
        assert part.squares[j].brightness == pytest.approx(s.brightness, rel=1e-12)
        if _inside(v, (0, 1024), (0, 1024), margin=0):
            # crops wholly inside the atlas (edge crops see fill 12 instead of 0 outside it)
            assert part.squares[j].score == pytest.approx(s.score, abs=1e-6)
            inside += 1
    assert inside >= 30


@needs_shared
@needs_models
def test_non_square_cut_out_same_boxes(atlas, running_full):
    """A 1024×800 cut-out: the same boxes for squares wholly inside. The cut-out's rotated
    frame is shifted by a fraction of a pixel against the atlas's, so the crops are
    resampled at other sub-pixel positions; the classifier's scores move by up to ~0.025
    (measured) for the same square."""
    rows, cols = (0, 1024), (100, 900)
    sub = atlas.pixels[rows[0]:rows[1], cols[0]:cols[1]].copy()
    part = lowmag.find_squares(io.validate_array(sub), models="ptolemy-2022", batchnorm="running")
    assert part.image_shape == (1024, 800)
    diffs = []
    for s in running_full.squares:
        v = np.array(s.vertices)
        if not _inside(v, rows, cols):
            continue
        want = v - [cols[0], rows[0]]
        d = [np.abs(np.array(p.vertices) - want).max() for p in part.squares]
        j = int(np.argmin(d))
        assert d[j] < 1e-3
        diffs.append(abs(part.squares[j].score - s.score))
    assert len(diffs) >= 20
    assert max(diffs) < 0.05 and float(np.mean(diffs)) < 0.02


def test_no_squares_result_without_crash():
    from ptolemy_rt.models import available_sets

    if not available_sets():
        pytest.skip("no model set built")
    noise = np.random.default_rng(1).poisson(20.0, (256, 256)).astype(np.float32)
    res = lowmag.find_squares(noise)
    assert res.squares == [] and res.reason and res.image_shape == (256, 256)


@needs_shared
def test_crop_blocks_equal_whole_image_rotation(atlas):
    """The pipeline rotates only the crop blocks; they hold the pixels of the whole rotated
    image (integer-valued atlas: rounded the same way)."""
    c = lowmag.locate_squares(atlas)
    blocks = [c.rotated_block(tuple(int(v) for v in c.crop_bounds[i])) for i in range(c.n)]
    whole = c.rotated  # computed on first access
    assert whole.dtype == np.float32 and whole.shape == c.rotated_shape
    for i, blk in enumerate(blocks):
        r0, c0, r1, c1 = c.crop_bounds[i]
        assert blk.dtype == np.float32
        np.testing.assert_allclose(blk, whole[r0:r1, c0:c1], rtol=0, atol=1e-3)
