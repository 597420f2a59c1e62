"""Hand features of hole crops and their late fusion with the hole classifier's logit.

A model set may declare ``models.hole_classifier.score_fusion`` (`modelspec.ScoreFusionSpec`):
the hole score is then ``sigmoid(bias + Σ weights[k] · feature_k)`` over the features it names
(`FUSION_FEATURES`), where "cnn_logit" is the classifier's logit and the others are measured
on the same prepared crops (`medmag.prepare_crop`: image-normalised units, [row, col]) and made
relative to the image's other crops, so they do not depend on the film's brightness. Without
the declaration the score is the classifier's alone (published behaviour).
docs/OWN_MODELS.md "Gold film: late fusion of the hole score (session 10)" has the measurements.

Crop geometry: a crop is h × w px, its centre at ((h − 1) / 2, (w − 1) / 2) (row, col); the
normalised offsets of pixel (r, c) are u = (r − (h − 1) / 2) / h, v = (c − (w − 1) / 2) / w.
Crops are lattice cells centred on a hole (one lattice period a side, less 20 px), so the
disc u² + v² ≤ DISC_RADIUS² lies inside the hole for every film in `synthetic.HOLE_FILMS`,
and the middles of the four crop edges lie on the film between the hole and its neighbours.

This module is the one definition of the features: the runtime (`medmag.score_holes`) and the
training step that fits the weights (``export/train.py --only hole_fusion``) both call it.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .modelspec import FUSION_FEATURES

#: radius of the central disc, fraction of the crop side (u, v units)
DISC_RADIUS = 0.12
#: radius of the texture disc, fraction of the crop side
TEXTURE_RADIUS = 0.2
#: px: sigma of the Gaussian smoothing before the texture std (keeps blobs, drops shot noise)
TEXTURE_SIGMA_PX = 1.5
#: film bands: max(|u|, |v|) ≥ FILM_EDGE and min(|u|, |v|) ≤ FILM_HALF_WIDTH (edge middles)
FILM_EDGE = 0.42
FILM_HALF_WIDTH = 0.1
#: floor of the robust spread (image-normalised units), so an image of identical holes
#: does not divide by zero
MIN_SPREAD = 0.02
#: floor of a texture std before its logarithm (image-normalised units)
MIN_TEXTURE = 1e-6
#: per-crop statistics (`crop_stats` columns)
CROP_STATS = ("disc_mean", "film_level", "texture")
#: the hand features (`image_features`): every fusion feature but the classifier's logit
HAND_FEATURES = tuple(f for f in FUSION_FEATURES if f != "cnn_logit")


def _offsets(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = int(shape[0]), int(shape[1])
    u = ((np.arange(h) - (h - 1) / 2.0) / h)[:, None]
    v = ((np.arange(w) - (w - 1) / 2.0) / w)[None, :]
    return u, v


def crop_stats(crop: np.ndarray) -> np.ndarray:
    """The per-crop statistics `CROP_STATS` of one prepared hole crop.

    disc_mean: mean of the disc u² + v² ≤ DISC_RADIUS²; film_level: median of the film bands
    (module docstring); texture: population std, over the disc of radius TEXTURE_RADIUS, of
    the crop smoothed by a Gaussian of TEXTURE_SIGMA_PX px (scipy.ndimage, mode "reflect"):
    dark blobs and crystals raise it, shot noise hardly. All in the crop's units, float64.

    Parameters
    ----------
    crop : numpy.ndarray
        2-D [row, col], at least 3 × 3 px (the prepared crops are ≥ 63 px).

    Returns
    -------
    numpy.ndarray
        float64, shape (3,): disc_mean, film_level, texture.

    Examples
    --------
    A bright disc of radius 20 px on a dark film, 64 px crop: the disc mean is the disc's
    level, the film level the film's, and a flat disc has almost no texture:

    >>> rr, cc = np.mgrid[:64, :64]
    >>> crop = np.where((rr - 31.5) ** 2 + (cc - 31.5) ** 2 <= 400, 1.0, -2.0).astype(np.float32)
    >>> crop_stats(crop).round(3).tolist()
    [1.0, -2.0, 0.0]
    >>> crop_stats(np.zeros((2, 5)))
    Traceback (most recent call last):
    ...
    ValueError: crop_stats: crop of shape (2, 5) is smaller than 3 x 3 px
    """
    a = np.asarray(crop, dtype=np.float64)
    if a.ndim != 2 or min(a.shape) < 3:
        raise ValueError(f"crop_stats: crop of shape {a.shape} is smaller than 3 x 3 px")
    u, v = _offsets(a.shape)
    r2 = u * u + v * v
    disc = r2 <= DISC_RADIUS ** 2
    au, av = np.abs(u), np.abs(v)
    film = (np.maximum(au, av) >= FILM_EDGE) & (np.minimum(au, av) <= FILM_HALF_WIDTH)
    smooth = ndi.gaussian_filter(a, TEXTURE_SIGMA_PX, mode="reflect")
    return np.array([a[disc].mean(), float(np.median(a[film])), smooth[r2 <= TEXTURE_RADIUS ** 2].std()])


def robust_level(values: np.ndarray) -> tuple[float, float]:
    """(median, spread) of one image's values: spread = 1.4826 × the median absolute
    deviation (the std of a normal sample), at least MIN_SPREAD.

    Parameters
    ----------
    values : array-like
        1-D, at least one value.

    Returns
    -------
    (float, float)

    Examples
    --------
    >>> robust_level([0.0, 1.0, 2.0, 3.0, 100.0])
    (2.0, 1.4826)
    >>> robust_level([5.0, 5.0])
    (5.0, 0.02)
    """
    x = np.asarray(values, dtype=np.float64)
    m = float(np.median(x))
    return m, max(1.4826 * float(np.median(np.abs(x - m))), MIN_SPREAD)


def image_features(stats: np.ndarray) -> dict[str, np.ndarray]:
    """The crop features of one image's crops, each relative to the image's other crops.

    level_dev: |disc_mean − median| / spread over the image's crops (`robust_level`): a good
    hole has the image's usual ice, empty holes are brighter, thick ones darker (signs
    swapped on inverted images, hence the absolute value); contrast_dev: the same for
    disc_mean − film_level (the hole against its own film, which follows the illumination and
    ice gradients); log_texture: ln(texture / the image's median texture).

    Parameters
    ----------
    stats : numpy.ndarray
        n × 3 (`crop_stats` rows of all crops of one image, n ≥ 1).

    Returns
    -------
    dict
        {"level_dev", "contrast_dev", "log_texture": float64 arrays of shape (n,)}.

    Examples
    --------
    Five crops; the fourth is brighter than the others (an empty hole), the fifth textured:

    >>> s = np.array([[0.0, -1.0, 0.1], [0.1, -0.9, 0.1], [-0.1, -1.1, 0.1], [2.0, -1.0, 0.1], [0.0, -1.0, 0.4]])
    >>> f = image_features(s)
    >>> f["level_dev"].round(2).tolist(), f["log_texture"].round(2).tolist()
    ([0.0, 0.67, 0.67, 13.49, 0.0], [0.0, 0.0, 0.0, 0.0, 1.39])
    >>> image_features(np.zeros((0, 3)))["level_dev"].shape
    (0,)
    """
    s = np.asarray(stats, dtype=np.float64).reshape(-1, len(CROP_STATS))
    if len(s) == 0:
        return {k: np.zeros(0) for k in HAND_FEATURES}
    disc, film, tex = s[:, 0], s[:, 1], np.maximum(s[:, 2], MIN_TEXTURE)
    m, sp = robust_level(disc)
    contrast = disc - film
    mc, spc = robust_level(contrast)
    return {"level_dev": np.abs(disc - m) / sp, "contrast_dev": np.abs(contrast - mc) / spc,
            "log_texture": np.log(tex / float(np.median(tex)))}


def fusion_logits(fusion, features: dict) -> np.ndarray:
    """bias + Σ weights[k] · features[names[k]] (`ScoreFusionSpec` `fusion`): the fused logit;
    the hole score is its sigmoid.

    Parameters
    ----------
    fusion : modelspec.ScoreFusionSpec
        Feature names, weights, bias.
    features : dict
        {name: float array (n,)} holding at least the fusion's features ("cnn_logit": the
        classifier's logits; the others as `image_features` makes them).

    Returns
    -------
    numpy.ndarray
        float64 (n,).

    Examples
    --------
    >>> from ptolemy_rt.modelspec import ScoreFusionSpec
    >>> f = ScoreFusionSpec(features=("cnn_logit", "level_dev"), weights=(1.0, -0.5), bias=0.25)
    >>> fusion_logits(f, {"cnn_logit": np.array([2.0, -1.0]), "level_dev": np.array([0.0, 3.0])}).tolist()
    [2.25, -2.25]
    >>> fusion_logits(f, {"cnn_logit": np.zeros(2)})
    Traceback (most recent call last):
    ...
    ValueError: hole score fusion: no feature 'level_dev' (given: cnn_logit)
    """
    z = np.full(len(next(iter(features.values()))) if features else 0, float(fusion.bias))
    for name, w in zip(fusion.features, fusion.weights):
        if name not in features:
            raise ValueError(f"hole score fusion: no feature {name!r} (given: {', '.join(features)})")
        z = z + float(w) * np.asarray(features[name], dtype=np.float64)
    return z


def fused_logits(fusion, cnn_logits: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """The fused logits (`fusion_logits`) of one image's crops from the classifier's logits
    and the crops' `crop_stats`.

    Parameters
    ----------
    fusion : modelspec.ScoreFusionSpec
    cnn_logits : numpy.ndarray
        (n,) the classifier's logits.
    stats : numpy.ndarray
        n × 3 `crop_stats` rows of the same crops (all crops of one image).

    Returns
    -------
    numpy.ndarray
        float64 (n,).

    Examples
    --------
    The third crop is darker than the other two: its level deviation lowers its logit.

    >>> from ptolemy_rt.modelspec import ScoreFusionSpec
    >>> f = ScoreFusionSpec(features=("cnn_logit", "level_dev"), weights=(1.0, -0.5), bias=0.25)
    >>> s = np.array([[0.0, -1.0, 0.1], [0.1, -1.0, 0.1], [-1.0, -1.0, 0.1]])
    >>> fused_logits(f, np.array([2.0, -1.0, 0.5]), s).round(3).tolist()
    [2.25, -1.087, -2.622]
    """
    feats = image_features(stats)
    feats["cnn_logit"] = np.asarray(cnn_logits, dtype=np.float64).reshape(-1)
    return fusion_logits(fusion, feats)


def standardised_to_raw(weights, bias: float, mean, std) -> tuple[tuple[float, ...], float]:
    """Weights and bias of a model fitted on standardised features ((x − mean) / std) as
    weights and bias on the raw features (what `ScoreFusionSpec` holds).

    Examples
    --------
    >>> standardised_to_raw([2.0], 1.0, [3.0], [4.0])
    ((0.5,), -0.5)
    """
    w = np.asarray(weights, dtype=np.float64) / np.asarray(std, dtype=np.float64)
    b = float(bias) - float(np.dot(w, np.asarray(mean, dtype=np.float64)))
    return tuple(float(x) for x in w), b
