"""find_squares / find_holes(..., intermediates=True): what the pipeline computed on the way,
consistent with its result and with the building blocks (synthetic images, the own set that
ships with the repository)."""
from __future__ import annotations

import numpy as np
import pytest

from ptolemy_rt import geometry, lowmag, medmag, synthetic


@pytest.fixture(scope="module")
def own_set():
    from ptolemy_rt.errors import ModelSetError
    from ptolemy_rt.models import load_model_set

    try:
        return load_model_set("ptolemy-rt-synth-v1")
    except ModelSetError as e:
        pytest.skip(f"own model set not available: {e}")


def test_find_holes_intermediates(own_set):
    img, _ = synthetic.medmag_image(23, (600, 600))
    plain = medmag.find_holes(img, models=own_set)
    res = medmag.find_holes(img, models=own_set, intermediates=True)
    assert plain.intermediates is None
    assert res.holes == plain.holes and len(res.holes) > 3  # asking changes nothing
    it = res.intermediates
    assert it["logits"].shape == img.shape and it["logits"].dtype == np.float32
    mask = medmag.drop_small_regions(medmag.mask_from_logits(it["logits"], img.shape),
                                     medmag.mask_min_region_px(own_set))
    assert np.array_equal(it["mask"], mask)
    assert np.array_equal(it["centroids"], medmag.mask_centroids(mask))
    lay = it["layout"]
    assert len(lay.points) == len(res.holes) and np.array_equal(it["boxes"], lay.boxes)
    # the reported holes are the layout's boxes, in score order
    assert sorted(h.vertices for h in res.holes) == sorted(tuple(map(tuple, v)) for v in lay.vertices.tolist())
    # the crops are the classifier's inputs: the rotated image cut at the boxes, normalised
    work = it["work"]  # the image as the pipeline holds it (robust: shifted so the corner fill is 0)
    assert np.allclose(work, img - medmag.rotation_fill(img), atol=1e-3)
    rotated = medmag.rotate_filled(work, -lay.angle_deg)
    norm = medmag.image_norm(work) if medmag.crop_normalisation(own_set) == "image" else None
    assert sorted(it["crops"]) == list(range(len(lay.points)))
    for k, (r0, c0, r1, c1) in enumerate(lay.boxes):
        assert np.array_equal(it["crops"][k], medmag.prepare_crop(rotated[r0:r1, c0:c1], norm))


def test_holes_from_mask_intermediates_without_models():
    shape = (500, 600)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for r in range(60, 480, 120):
        for c in range(70, 580, 120):
            mask |= (yy - r) ** 2 + (xx - c) ** 2 <= 15 ** 2
    kept: dict = {}
    res = medmag.holes_from_mask(np.where(mask, 200.0, 80.0).astype(np.float32), mask, intermediates=kept)
    assert res.intermediates is kept and kept["crops"] == {}  # no models: geometry only
    assert len(kept["centroids"]) == mask_regions(mask) == 20
    assert len(kept["layout"].points) == len(res.holes) == 20
    assert kept["layout"].lattice.spacing_px == pytest.approx(120.0, abs=0.5)


def mask_regions(mask) -> int:
    import scipy.ndimage as ndi

    return int(ndi.label(mask)[1])


def test_find_squares_intermediates(own_set):
    atlas, _ = synthetic.atlas(11, (768, 768))
    plain = lowmag.find_squares(atlas, models=own_set)
    res = lowmag.find_squares(atlas, models=own_set, intermediates=True)
    assert plain.intermediates is None and res.squares == plain.squares and len(res.squares) > 5
    it = res.intermediates
    cand = it["candidates"]
    assert it["mask"] is cand.mask and it["mask"].shape == atlas.shape
    assert len(it["hulls"]) == cand.n and it["boxes"].shape == (cand.n, 4)
    assert sorted(it["crops"]) == list(range(cand.n))
    for i, c in it["crops"].items():
        assert c.shape == (lowmag.CROP_PX, lowmag.CROP_PX) and c.dtype == np.float32
        assert np.array_equal(c, lowmag.prepared_crop(cand, i))
    # rank k is candidate order[k]
    for sq, i in zip(res.squares, it["order"]):
        assert sq.vertices == tuple(map(tuple, it["vertices"][i].tolist()))
    assert [s.score for s in res.squares] == sorted((s.score for s in res.squares), reverse=True)


def test_no_squares_still_gives_intermediates(own_set):
    res = lowmag.find_squares(np.full((64, 64), 5.0, np.float32) + np.eye(64, dtype=np.float32), models=own_set,
                              intermediates=True)
    assert res.squares == [] and res.reason and res.intermediates["crops"] == {}
    assert res.intermediates["mask"].shape == (64, 64)


def test_evaluate_measures_the_shipped_pipeline(own_set, monkeypatch, tmp_path):
    """evaluate_medmag runs medmag.find_holes (not a copy of its front half): its hole
    predictions are the reported holes, its "unet" predictions the mask-region centroids."""
    from export.evalset import hole_points
    from ptolemy_rt import evaluate
    from ptolemy_rt.labels import read_dataset, write_dataset

    img, truth = synthetic.medmag_image(21, (700, 900))
    write_dataset(tmp_path, "medmag", [("m", img, hole_points(truth, img.shape))], points="all")
    calls = []
    real = medmag.find_holes

    def spy(image, *a, **kw):
        calls.append(kw.get("intermediates"))
        return real(image, *a, **kw)

    monkeypatch.setattr(medmag, "find_holes", spy)
    ds = read_dataset(tmp_path)
    loc = evaluate.evaluate_medmag(own_set, ds)["hole_localisation"]
    assert calls == [True]
    res = real(ds.images[0].load(), models=own_set, intermediates=True)
    assert len(res.holes) > 3 and loc["unet_lattice"]["tp"] + loc["unet_lattice"]["fp"] == len(res.holes)
    assert loc["unet"]["tp"] + loc["unet"]["fp"] == len(res.intermediates["centroids"])
