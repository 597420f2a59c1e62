"""Synthetic cryo-EM targeting images with exact ground truth (numpy/scipy only).

Two generators, both deterministic by `seed` (same seed and parameters -> identical
pixels and truth):

- `atlas(seed, shape=(1024, 1024), **params)`: a low-magnification grid atlas — dark grid
  bars (~10 counts) and bright rounded squares (~100-240 counts) on a rotated square
  lattice, montage tile seams, illumination gradient, Poisson counts (integer-valued
  float32, like the int16 atlases of the published tool). Each square carries the label
  it was drawn with: `good` (moderate ice), `thick` (dark), `dry` (thin/no ice, bright),
  `empty` (film gone: very bright, no holes), `broken` (cracked: bright patches / folds),
  `contaminated` (dark blobs), `edge` (cut by the image border).
- `medmag_image(seed, shape=(1024, 1440), **params)`: a medium-magnification image of a
  holey film — circular holes (ellipses when tilted) on a square lattice of any rotation,
  carbon (low contrast) or gold (dark) film, ice-thickness gradient, empty and
  over-thick holes, contamination, ice crystals, broken film, grid bars at the edges,
  illumination gradient, Fresnel fringes, optional contrast inversion, blur and
  dose-dependent Poisson noise. Each hole carries the label it was drawn with: `good`,
  `empty`, `thick`, `contaminated`, `crystalline`, `broken`, `edge` (cut by the image
  border or a grid bar).

Coordinates: images are float32 arrays indexed [row, col]. Every point in the truth is
(x, y) = (col, row) in px, the centre of pixel (r, c) being (c, r). Radii and sizes in px.

`atlas_with_ids` / `medmag_with_ids` also return the ID map (int32 [row, col]: the truth
`id` of the square/hole whose drawn area covers the pixel, 0 elsewhere) and the
parameters used; every id in the map has a truth entry and every truth entry has pixels
in the map. Large images (8192×8192) are drawn in row strips with vectorised numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

SQUARE_LABELS = ("good", "thick", "dry", "empty", "broken", "contaminated", "edge")
HOLE_LABELS = ("good", "empty", "thick", "contaminated", "crystalline", "broken", "edge")

# Hole diameter / spacing (edge to edge) of common holey films, µm (R<diameter>/<spacing>).
HOLE_FILMS = {"R1.2/1.3": (1.2, 1.3), "R2/1": (2.0, 1.0), "R2/2": (2.0, 2.0),
              "R1/1": (1.0, 1.0), "R2/4": (2.0, 4.0), "R3.5/1": (3.5, 1.0),
              "R0.6/1": (0.6, 1.0), "R1.2/1.3-gold": (1.2, 1.3)}

_STRIP = 1024  # rows drawn at a time


@dataclass(frozen=True)
class SquareTruth:
    """One grid square drawn in a synthetic atlas.

    id: its value in the ID map (1..n).
    center: (x, y) = (col, row) px of the square's centre (may lie outside the image for
        squares cut by the edge).
    polygon: 4 corners (x, y) px of the (unrounded) square, in order around it.
    side: side length, px. angle_deg: rotation of the grid, degrees.
    label: one of SQUARE_LABELS (how it was drawn). good: label == "good".
    visible_fraction: drawn pixels inside the image / pixels of the whole square.
    brightness: mean noiseless intensity (counts) over its visible pixels.
    """

    id: int
    center: tuple[float, float]
    polygon: tuple[tuple[float, float], ...]
    side: float
    angle_deg: float
    label: str
    good: bool
    visible_fraction: float
    brightness: float


@dataclass(frozen=True)
class HoleTruth:
    """One hole drawn in a synthetic medium-magnification image.

    id: its value in the ID map (1..n).
    center: (x, y) = (col, row) px (may lie outside the image for holes cut by the edge).
    radius: radius of the hole before tilt, px (the ellipse's major semi-axis).
    axes: (major, minor) semi-axes of the drawn ellipse, px (equal without tilt).
    axis_angle_deg: direction of the major axis, degrees from +x towards +y.
    label: one of HOLE_LABELS (how it was drawn). good: label == "good".
    visible_fraction: drawn pixels (inside the image, not under a bar) / ellipse area.
    ice_nm: ice thickness drawn in the hole, nm (0 = empty).
    """

    id: int
    center: tuple[float, float]
    radius: float
    axes: tuple[float, float]
    axis_angle_deg: float
    label: str
    good: bool
    visible_fraction: float
    ice_nm: float


# --------------------------------------------------------------------------- helpers

def _smooth_field(rng, shape, amp, n_terms=3):
    """Low-frequency multiplicative field 1 + amp*(...), as a function of (rows, cols)."""
    h, w = shape
    terms = []
    for _ in range(n_terms):
        terms.append((rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.2, 1.2),
                      rng.uniform(0, 2 * np.pi)))
    gx, gy = rng.uniform(-1, 1, 2)

    def f(rows, cols):
        y = rows / max(h, 1) - 0.5
        x = cols / max(w, 1) - 0.5
        out = 1.0 + amp * (gx * x + gy * y)
        for a, b, k, ph in terms:
            out = out + (amp / n_terms) * np.sin(2 * np.pi * k * (a * x + b * y) + ph)
        return out.astype(np.float32)

    return f


def _disc_stamp(img, ids_keep, cx, cy, rx, ry, ang, value, mode, soft=1.0):
    """Draw an ellipse (x=col, y=row centre, semi-axes rx, ry px, angle rad) in place.

    mode "mul": img *= 1 - (1-value)*w ; "set": img = img*(1-w) + value*w, w in [0,1] soft edge.
    Returns the bounding slices or None.
    """
    h, w = img.shape
    R = max(rx, ry) + 2 * soft + 1
    r0, r1 = max(int(cy - R), 0), min(int(cy + R) + 2, h)
    c0, c1 = max(int(cx - R), 0), min(int(cx + R) + 2, w)
    if r0 >= r1 or c0 >= c1:
        return None
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    ca, sa = math.cos(ang), math.sin(ang)
    u = (dx * ca + dy * sa) / max(rx, 1e-3)
    v = (-dx * sa + dy * ca) / max(ry, 1e-3)
    d = (np.sqrt(u * u + v * v) - 1.0) * min(rx, ry)
    wgt = np.clip(0.5 - d / (2 * soft), 0, 1).astype(np.float32)
    sub = img[r0:r1, c0:c1]
    if mode == "mul":
        sub *= 1.0 - (1.0 - value) * wgt
    else:
        sub[...] = sub * (1 - wgt) + value * wgt
    return (slice(r0, r1), slice(c0, c1)), wgt


def _poisson(rng, lam):
    lam = np.maximum(lam, 0)
    return rng.poisson(lam).astype(np.float32)


# --------------------------------------------------------------------------- atlas

_ATLAS_DEFAULTS = dict(
    pitch=None,          # px, square lattice pitch (default: random 110-190)
    side_fraction=None,  # square side / pitch (default: random 0.52-0.66)
    angle_deg=None,      # grid rotation, degrees (default: random 0-90)
    corner_fraction=None,  # rounded-corner radius / side (default 0.05-0.18)
    bar_level=None,      # counts on the bars (default 6-14)
    tiles=None,          # montage tiles per side (default 2-4)
    seam_gain=0.06,      # max relative gain step between montage tiles
    label_probs=None,    # dict label -> probability for full squares
    hole_dots=True,      # draw the holey-film dot pattern inside squares
)


def _atlas_params(rng, shape, params):
    p = dict(_ATLAS_DEFAULTS)
    unknown = set(params) - set(p)
    if unknown:
        raise TypeError(f"atlas: unknown parameter(s) {sorted(unknown)}")
    p.update({k: v for k, v in params.items() if v is not None})
    scale = min(shape) / 1024.0
    if p["pitch"] is None:
        p["pitch"] = float(rng.uniform(110, 190))
    if p["side_fraction"] is None:
        p["side_fraction"] = float(rng.uniform(0.52, 0.66))
    if p["angle_deg"] is None:
        p["angle_deg"] = float(rng.uniform(0, 90))
    if p["corner_fraction"] is None:
        p["corner_fraction"] = float(rng.uniform(0.05, 0.18))
    if p["bar_level"] is None:
        p["bar_level"] = float(rng.uniform(6, 14))
    if p["tiles"] is None:
        p["tiles"] = int(rng.integers(2, 5) * max(1, round(scale)))
    if p["label_probs"] is None:
        raw = {"good": rng.uniform(0.3, 0.65), "thick": rng.uniform(0.03, 0.2),
               "dry": rng.uniform(0.02, 0.12), "empty": rng.uniform(0.01, 0.08),
               "broken": rng.uniform(0.02, 0.12), "contaminated": rng.uniform(0.03, 0.15)}
        tot = sum(raw.values())
        p["label_probs"] = {k: v / tot for k, v in raw.items()}
    return p


def atlas(seed: int, shape=(1024, 1024), **params):
    """Synthetic low-magnification atlas.

    Parameters
    ----------
    seed : int
        Same seed and parameters: identical pixels and truth.
    shape : (int, int)
        (rows, cols) px.
    **params
        All optional, random from `seed` when omitted: pitch (px, centre to centre),
        side_fraction (square side / pitch), angle_deg (grid rotation, degrees),
        corner_fraction, bar_level (counts), tiles, seam_gain, label_probs (dict label ->
        probability), hole_dots.

    Returns
    -------
    image : numpy.ndarray of float32, shape `shape`
        [row, col], integer Poisson counts.
    truth : list of SquareTruth
        Every square that touches the image; centres (x, y) = (col, row) px.

    Examples
    --------
    An unrotated grid of pitch 100 px and squares of side 60 px: neighbouring centres
    are exactly one pitch apart along y (rows):

    >>> image, truth = atlas(0, (256, 256), pitch=100.0, angle_deg=0.0, side_fraction=0.6)
    >>> len(truth), truth[0].side, [round(abs(b - a), 6) for a, b in zip(truth[0].center, truth[1].center)]
    (9, 60.0, [0.0, 100.0])
    >>> bool((image == np.round(image)).all()), [t.label for t in truth if t.visible_fraction == 1.0]
    (True, ['good', 'good', 'good', 'good'])
    """
    img, truth, _, _ = atlas_with_ids(seed, shape, **params)
    return img, truth


def _square_cells(rows, cols, ox, oy, ct, st, pitch, half, rc, iu0, iv0, nv, ncell):
    """The square lattice of an atlas on a strip of pixels: rows (k, 1) and cols (w,) float32
    pixel indices; origin (ox, oy) px, cos/sin of the grid angle (ct, st), pitch, square
    half-side and corner radius (px); cells numbered (iu - iu0) * nv + (iv - iv0), clipped to
    0..ncell-1. Returns (lu, lv) px from the cell centre along the grid axes, inside (bool:
    within the rounded square) and cell (int64)."""
    X = cols[None, :] - np.float32(ox)
    Y = rows - np.float32(oy)
    U = X * ct + Y * st
    V = -X * st + Y * ct
    iu = np.floor(U / pitch + 0.5)
    iv = np.floor(V / pitch + 0.5)
    lu = U - iu * pitch
    lv = V - iv * pitch
    qx = np.maximum(np.abs(lu) - (half - rc), 0)
    qy = np.maximum(np.abs(lv) - (half - rc), 0)
    inside = (qx * qx + qy * qy <= rc * rc) & (np.abs(lu) <= half) & (np.abs(lv) <= half)
    cell = ((iu.astype(np.int64) - iu0) * nv + (iv.astype(np.int64) - iv0)).astype(np.int64)
    np.clip(cell, 0, ncell - 1, out=cell)
    return lu, lv, inside, cell


def atlas_with_ids(seed: int, shape=(1024, 1024), **params):
    """As `atlas`, plus the ID map and the parameters used.

    Parameters
    ----------
    seed, shape, **params
        As `atlas`.

    Returns
    -------
    image : numpy.ndarray of float32
        As `atlas`.
    truth : list of SquareTruth
        As `atlas`.
    ids : numpy.ndarray of int32, shape `shape`
        [row, col]: the `id` of the square drawn over the pixel, 0 elsewhere.
    params : dict
        Every parameter used (given or drawn from `seed`).

    Examples
    --------
    Each truth id has pixels in the map, e.g. under the centre (x, y) of square 2:

    >>> image, truth, ids, p = atlas_with_ids(0, (256, 256), pitch=100.0, angle_deg=0.0)
    >>> np.unique(ids).tolist(), p["pitch"], p["angle_deg"]
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 100.0, 0.0)
    >>> x, y = truth[1].center
    >>> int(ids[round(y), round(x)]), truth[1].id
    (2, 2)
    """
    rng = np.random.default_rng([int(seed), 1])
    h, w = int(shape[0]), int(shape[1])
    p = _atlas_params(rng, (h, w), params)
    pitch, side = p["pitch"], p["pitch"] * p["side_fraction"]
    half = side / 2.0
    rc = side * p["corner_fraction"]
    th = math.radians(p["angle_deg"])
    ct, st = math.cos(th), math.sin(th)
    ox, oy = rng.uniform(0, pitch, 2)  # lattice origin (x, y)

    # lattice cells that can touch the image
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], float) - [ox, oy]
    us = corners[:, 0] * ct + corners[:, 1] * st
    vs = -corners[:, 0] * st + corners[:, 1] * ct
    iu0, iu1 = int(np.floor(us.min() / pitch)) - 1, int(np.ceil(us.max() / pitch)) + 1
    iv0, iv1 = int(np.floor(vs.min() / pitch)) - 1, int(np.ceil(vs.max() / pitch)) + 1
    nu, nv = iu1 - iu0 + 1, iv1 - iv0 + 1
    ncell = nu * nv

    # per-cell appearance (index = (iu-iu0)*nv + (iv-iv0)); labels for full squares
    labs = list(p["label_probs"].keys())
    probs = np.array([p["label_probs"][k] for k in labs], float)
    probs = probs / probs.sum()
    cell_label = rng.choice(len(labs), size=ncell, p=probs)
    base = np.empty(ncell, np.float32)
    names = np.array(labs)[cell_label]
    ranges = {"good": (140, 182), "thick": (95, 135), "dry": (185, 205), "empty": (212, 240),
              "broken": (140, 185), "contaminated": (135, 180)}
    for k, (a, b) in ranges.items():
        sel = names == k
        base[sel] = rng.uniform(a, b, sel.sum())
    rim_amp = rng.uniform(0.05, 0.25, ncell).astype(np.float32)       # meniscus darkening
    rim_w = (side * rng.uniform(0.06, 0.15, ncell)).astype(np.float32)
    disc_amp = rng.uniform(0.0, 0.18, ncell).astype(np.float32)       # thicker centre disc
    disc_amp[names == "thick"] += 0.1
    disc_amp[rng.random(ncell) < 0.45] = 0
    disc_amp[names == "empty"] = 0
    disc_r = (half * rng.uniform(0.2, 0.55, ncell)).astype(np.float32)
    disc_x = (half * rng.uniform(-0.3, 0.3, ncell)).astype(np.float32)
    disc_y = (half * rng.uniform(-0.3, 0.3, ncell)).astype(np.float32)
    dots = np.full(ncell, 0.25 if p["hole_dots"] else 0.0, np.float32)
    dots[names == "empty"] = 0
    dots *= rng.uniform(0.5, 1.5, ncell).astype(np.float32)
    dot_pitch = float(rng.uniform(3.2, 6.0))

    tiles = max(1, int(p["tiles"]))
    tile_gain = (1 + p["seam_gain"] * rng.uniform(-1, 1, (tiles, tiles))).astype(np.float32)
    illum = _smooth_field(rng, (h, w), rng.uniform(0.02, 0.1))

    img = np.empty((h, w), np.float32)
    cellmap = np.zeros((h, w), np.int32)  # cell index + 1 inside a square
    cols = np.arange(w, dtype=np.float32)
    for r0 in range(0, h, _STRIP):
        r1 = min(h, r0 + _STRIP)
        rows = np.arange(r0, r1, dtype=np.float32)[:, None]
        lu, lv, inside, cell = _square_cells(rows, cols, ox, oy, ct, st, pitch, half, rc, iu0, iv0, nv, ncell)
        de = np.float32(half) - np.maximum(np.abs(lu), np.abs(lv))  # distance to edge, px
        b = base[cell]
        val = b * (1 - rim_amp[cell] * np.exp(-np.maximum(de, 0) / rim_w[cell]))
        dd = (lu - disc_x[cell]) ** 2 + (lv - disc_y[cell]) ** 2
        val *= 1 - disc_amp[cell] / (1 + np.exp((np.sqrt(dd) - disc_r[cell]) / 4.0))
        if p["hole_dots"]:
            cu = np.cos(np.float32(2 * np.pi / dot_pitch) * lu)
            cv = np.cos(np.float32(2 * np.pi / dot_pitch) * lv)
            val *= 1 + dots[cell] * (np.maximum(cu * cv, 0) ** 3 - 0.15)
        # soft outer edge: 1 px anti-aliasing into the bar
        bar = np.float32(p["bar_level"])
        img[r0:r1] = np.where(inside, val, bar)
        cellmap[r0:r1] = np.where(inside, cell + 1, 0)
        # tiles and illumination
        ti = np.minimum((rows[:, 0] * tiles / h).astype(int), tiles - 1)
        tj = np.minimum((cols * tiles / w).astype(int), tiles - 1)
        img[r0:r1] *= tile_gain[ti[:, None], tj[None, :]]
        img[r0:r1] *= illum(rows, cols[None, :])

    # per-square features drawn in local windows: contamination, cracks (broken)
    present = np.unique(cellmap)
    present = present[present > 0] - 1
    for c in present:
        lab = names[c]
        iu_c, iv_c = c // nv + iu0, c % nv + iv0
        cu_, cv_ = iu_c * pitch, iv_c * pitch
        cx = ox + cu_ * ct - cv_ * st
        cy = oy + cu_ * st + cv_ * ct
        n_spk = rng.integers(0, 3)
        for _ in range(n_spk):  # tiny specks everywhere (also on good squares)
            _disc_stamp(img, None, cx + rng.uniform(-half, half) * 0.8, cy + rng.uniform(-half, half) * 0.8,
                        rng.uniform(0.7, 1.6), rng.uniform(0.7, 1.6), 0.0, rng.uniform(0.5, 0.8), "mul")
        if lab == "contaminated":
            for _ in range(rng.integers(3, 9)):
                rr = rng.uniform(2.0, 0.16 * side)
                _disc_stamp(img, None, cx + rng.uniform(-0.75, 0.75) * half, cy + rng.uniform(-0.75, 0.75) * half,
                            rr, rr * rng.uniform(0.5, 1), rng.uniform(0, np.pi), rng.uniform(0.1, 0.45), "mul")
        elif lab == "broken":
            # a bright patch where the film is gone, with an irregular (polygonal) edge
            sl = (slice(max(int(cy - half - 3), 0), min(int(cy + half + 4), h)),
                  slice(max(int(cx - half - 3), 0), min(int(cx + half + 4), w)))
            if sl[0].start >= sl[0].stop or sl[1].start >= sl[1].stop:
                continue
            yy, xx = np.mgrid[sl].astype(np.float32)
            m = cellmap[sl] == c + 1
            kind = rng.random()
            a = rng.uniform(0, 2 * np.pi)
            if kind < 0.6:   # blob-shaped hole in the film
                rr = half * rng.uniform(0.3, 0.7)
                px_, py_ = cx + rng.uniform(-0.4, 0.4) * half, cy + rng.uniform(-0.4, 0.4) * half
                ang = np.arctan2(yy - py_, xx - px_)
                rad = rr * (1 + 0.25 * np.sin(3 * ang + a) + 0.15 * np.sin(5 * ang + 2 * a))
                patch = np.hypot(yy - py_, xx - px_) < rad
            else:            # crack along a line: one side gone
                off = rng.uniform(-0.5, 0.6) * half
                patch = (xx - cx) * math.cos(a) + (yy - cy) * math.sin(a) > off
            level = rng.uniform(215, 240)
            sub = img[sl]
            sub[m & patch] = level * float(tile_gain.mean())
            if rng.random() < 0.4:  # folded film: dark sliver beside the patch
                fold = ndi.binary_dilation(patch, iterations=3) & ~patch & m
                sub[fold] *= 0.35

    # Poisson counts, strips
    for r0 in range(0, h, _STRIP):
        r1 = min(h, r0 + _STRIP)
        img[r0:r1] = _poisson(rng, img[r0:r1])

    # truth: ids in order of first appearance (row-major), visible fractions from the map
    counts = np.bincount(cellmap.ravel(), minlength=ncell + 1)[1:]
    noiseless_sum = None
    ids_of_cell = np.zeros(ncell + 1, np.int32)
    order = [c for c in range(ncell) if counts[c] > 0]
    full_area = side * side - (4 - np.pi) * rc * rc
    truth = []
    sums = ndi.sum_labels(img, cellmap, index=np.arange(1, ncell + 1)) if order else []
    del noiseless_sum
    for k, c in enumerate(order, start=1):
        ids_of_cell[c + 1] = k
        iu_c, iv_c = c // nv + iu0, c % nv + iv0
        cu_, cv_ = iu_c * pitch, iv_c * pitch
        cx = ox + cu_ * ct - cv_ * st
        cy = oy + cu_ * st + cv_ * ct
        poly = []
        for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            u, v = cu_ + su * half, cv_ + sv * half
            poly.append((float(ox + u * ct - v * st), float(oy + u * st + v * ct)))
        vis = float(min(1.0, counts[c] / full_area))
        lab = str(names[c]) if vis >= 0.98 else "edge"
        truth.append(SquareTruth(k, (float(cx), float(cy)), tuple(poly), float(side),
                                 float(p["angle_deg"]), lab, lab == "good", vis,
                                 float(sums[c] / counts[c])))
    ids = ids_of_cell[cellmap]
    p = dict(p, origin=(float(ox), float(oy)), side=float(side), dot_pitch=dot_pitch)
    return img, truth, ids, p


# --------------------------------------------------------------------------- medium mag

_MEDMAG_DEFAULTS = dict(
    pixel_nm=None,        # nm/px (default: random around the published scale, 10-20)
    film=None,            # key of HOLE_FILMS (default random)
    film_material=None,   # "carbon" | "gold" (default: carbon 80 %)
    angle_deg=None,       # lattice rotation, degrees (default random 0-90)
    tilt_deg=None,        # stage tilt, degrees (default 0 or 5-40, oblique lattice)
    tilt_axis_deg=None,   # tilt axis direction, degrees
    invert=None,          # contrast inversion (default 10 %)
    dose=None,            # mean counts per pixel (default 8-200)
    scale=None,           # output gain (counts -> output units)
    offset=None,          # output offset
    blur_sigma=None,      # px (default 0.3-1.5)
    label_probs=None,     # dict label -> probability (good/empty/thick/contaminated/crystalline)
    broken=None,          # draw a broken-film region (default 15 %)
    bars=None,            # number of grid bars crossing edges (default 0-2 with p 25 %)
    lambda_nm=350.0,      # effective attenuation length, nm
)


def _medmag_params(rng, shape, params):
    p = dict(_MEDMAG_DEFAULTS)
    unknown = set(params) - set(p)
    if unknown:
        raise TypeError(f"medmag_image: unknown parameter(s) {sorted(unknown)}")
    p.update({k: v for k, v in params.items() if v is not None})
    if p["film"] is None:
        keys = ["R2/2", "R2/1", "R1.2/1.3", "R1/1", "R2/4", "R3.5/1", "R0.6/1"]
        p["film"] = keys[int(rng.choice(len(keys), p=[0.3, 0.2, 0.2, 0.1, 0.08, 0.07, 0.05]))]
    if p["film"] not in HOLE_FILMS:
        raise ValueError(f"medmag_image: unknown film {p['film']!r}; one of {sorted(HOLE_FILMS)}")
    if p["pixel_nm"] is None:
        # choose the scale so that the lattice pitch lands in a useful px range (180-420 px)
        d_um, s_um = HOLE_FILMS[p["film"]]
        target_pitch = rng.uniform(180, 420)
        p["pixel_nm"] = float(np.clip((d_um + s_um) * 1000 / target_pitch, 5, 120))
    if p["film_material"] is None:
        p["film_material"] = "gold" if rng.random() < 0.2 else "carbon"
    if p["angle_deg"] is None:
        p["angle_deg"] = float(rng.uniform(0, 90))
    if p["tilt_deg"] is None:
        p["tilt_deg"] = 0.0 if rng.random() < 0.7 else float(rng.uniform(5, 40))
    if p["tilt_axis_deg"] is None:
        p["tilt_axis_deg"] = float(rng.uniform(0, 180))
    if p["invert"] is None:
        p["invert"] = bool(rng.random() < 0.1)
    if p["dose"] is None:
        p["dose"] = float(np.exp(rng.uniform(np.log(8), np.log(200))))
    if p["scale"] is None:
        p["scale"] = float(np.exp(rng.uniform(np.log(0.2), np.log(20))))
    if p["offset"] is None:
        p["offset"] = float(rng.uniform(0, 50))
    if p["blur_sigma"] is None:
        p["blur_sigma"] = float(rng.uniform(0.3, 1.5))
    if p["label_probs"] is None:
        raw = {"good": rng.uniform(0.4, 0.8), "empty": rng.uniform(0.0, 0.2),
               "thick": rng.uniform(0.02, 0.25), "contaminated": rng.uniform(0.02, 0.12),
               "crystalline": rng.uniform(0.0, 0.1)}
        tot = sum(raw.values())
        p["label_probs"] = {k: v / tot for k, v in raw.items()}
    if p["broken"] is None:
        p["broken"] = bool(rng.random() < 0.15)
    if p["bars"] is None:
        p["bars"] = int(rng.integers(1, 3)) if rng.random() < 0.25 else 0
    return p


def medmag_image(seed: int, shape=(1024, 1440), **params):
    """Synthetic medium-magnification image of a holey film.

    Parameters
    ----------
    seed : int
        Same seed and parameters: identical pixels and truth.
    shape : (int, int)
        (rows, cols) px.
    **params
        Optional, random from `seed` when omitted: pixel_nm (nm/px), film (key of
        HOLE_FILMS, e.g. "R2/2": 2 µm holes 2 µm apart edge to edge), film_material
        ("carbon"|"gold"), angle_deg, tilt_deg, tilt_axis_deg (degrees), invert, dose
        (counts/px), scale, offset, blur_sigma (px), label_probs, broken, bars, lambda_nm.

    Returns
    -------
    image : numpy.ndarray of float32, shape `shape`
        [row, col].
    truth : list of HoleTruth
        Every hole that touches the image; centres (x, y) = (col, row) px.

    Examples
    --------
    R2/2 film at 20 nm/px, untilted, unrotated: holes of radius about 50 px on a lattice
    of pitch (2 + 2) µm / 20 nm = 200 px:

    >>> image, truth = medmag_image(0, (256, 256), pixel_nm=20.0, film="R2/2", angle_deg=0.0, tilt_deg=0.0)
    >>> len(truth), [round(abs(b - a), 6) for a, b in zip(truth[0].center, truth[1].center)]
    (4, [0.0, 200.0])
    >>> [round(h.radius) for h in truth], [h.label for h in truth]
    ([51, 50, 50, 51], ['edge', 'edge', 'edge', 'good'])
    """
    img, truth, _, _ = medmag_with_ids(seed, shape, **params)
    return img, truth


def medmag_with_ids(seed: int, shape=(1024, 1440), **params):
    """As `medmag_image`, plus the ID map and the parameters used.

    Parameters
    ----------
    seed, shape, **params
        As `medmag_image`.

    Returns
    -------
    image : numpy.ndarray of float32
        As `medmag_image`.
    truth : list of HoleTruth
        As `medmag_image`.
    ids : numpy.ndarray of int32, shape `shape`
        [row, col]: the `id` of the hole drawn over the pixel, 0 elsewhere.
    params : dict
        Every parameter used (given or drawn from `seed`).

    Examples
    --------
    The last hole's centre (x, y) lies in the image, on pixels of its own id:

    >>> image, truth, ids, p = medmag_with_ids(0, (256, 256), pixel_nm=20.0, film="R2/2",
    ...                                        angle_deg=0.0, tilt_deg=0.0)
    >>> np.unique(ids).tolist(), p["film"], p["pixel_nm"]
    ([0, 1, 2, 3, 4], 'R2/2', 20.0)
    >>> x, y = truth[-1].center
    >>> int(ids[round(y), round(x)]), truth[-1].id
    (4, 4)
    """
    rng = np.random.default_rng([int(seed), 2])
    h, w = int(shape[0]), int(shape[1])
    p = _medmag_params(rng, (h, w), params)
    d_um, s_um = HOLE_FILMS[p["film"]]
    pitch = (d_um + s_um) * 1000.0 / p["pixel_nm"]
    radius = d_um * 1000.0 / p["pixel_nm"] / 2.0
    lam = p["lambda_nm"]
    th = math.radians(p["angle_deg"])
    # image = T(world); T = R(phi) diag(1, cos tilt) R(-phi); lattice A = T R(th) * pitch
    phi = math.radians(p["tilt_axis_deg"])
    Rphi = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
    T = Rphi @ np.diag([1.0, math.cos(math.radians(p["tilt_deg"]))]) @ Rphi.T
    Rth = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    A = T @ Rth * pitch                   # columns: lattice vectors (x, y) px
    Ainv = np.linalg.inv(A)
    ox, oy = rng.uniform(0, pitch, 2)

    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], float) - [ox, oy]
    q = corners @ Ainv.T
    n10, n11 = int(np.floor(q[:, 0].min())) - 1, int(np.ceil(q[:, 0].max())) + 1
    n20, n21 = int(np.floor(q[:, 1].min())) - 1, int(np.ceil(q[:, 1].max())) + 1
    nv = n21 - n20 + 1
    ncell = (n11 - n10 + 1) * nv

    labs = list(p["label_probs"].keys())
    probs = np.array([p["label_probs"][k] for k in labs], float)
    names = np.array(labs)[rng.choice(len(labs), size=ncell, p=probs / probs.sum())]
    # ice thickness: smooth gradient over the image + per-hole variation
    g_dir = rng.uniform(0, 2 * np.pi)
    g_amp = rng.uniform(0, 30)  # nm across the image
    t_mean = rng.uniform(15, 60)  # typical ice in good holes, nm
    ice = np.empty(ncell, np.float32)
    ice[:] = t_mean * rng.uniform(0.7, 1.2, ncell)
    sel = names == "thick"
    ice[sel] = rng.uniform(2.0, 5.0, sel.sum()) * t_mean + 40
    sel = names == "empty"
    ice[sel] = 0.0
    radius_j = (radius * rng.uniform(0.97, 1.03, ncell)).astype(np.float32)
    fringe = float(rng.uniform(0.0, 0.08))
    fringe_w = float(rng.uniform(1.5, 4.0))
    carbon = p["film_material"] == "carbon"
    c_nm = rng.uniform(15, 45) if carbon else 0.0
    film_T_gold = rng.uniform(0.05, 0.35)
    film_ice = t_mean * rng.uniform(0.9, 1.2)  # ice over the film, nm
    illum = _smooth_field(rng, (h, w), rng.uniform(0.02, 0.15))

    # broken film: half-plane-bounded polygon where film and ice are missing
    broken_poly = None
    if p["broken"]:
        bx, by = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        br = rng.uniform(0.7, 1.8) * pitch
        nvert = int(rng.integers(5, 9))
        angs = np.sort(rng.uniform(0, 2 * np.pi, nvert))
        rads = br * rng.uniform(0.5, 1.2, nvert)
        broken_poly = np.stack([bx + rads * np.cos(angs), by + rads * np.sin(angs)], 1)
    bars = []
    for _ in range(p["bars"]):
        side_ = int(rng.integers(4))
        ang = rng.uniform(-0.35, 0.35) + side_ * np.pi / 2
        depth = rng.uniform(0.03, 0.2) * min(h, w)
        bars.append((side_, ang, depth))

    def bar_mask(rows, cols):
        m = np.zeros(np.broadcast_shapes(rows.shape, cols.shape), bool)
        for side_, ang, depth in bars:
            # normal pointing into the image from the chosen edge
            if side_ == 0:
                d = rows - depth - (cols - w / 2) * math.tan(ang)
            elif side_ == 2:
                d = (h - 1 - rows) - depth - (cols - w / 2) * math.tan(ang - np.pi)
            elif side_ == 1:
                d = (w - 1 - cols) - depth - (rows - h / 2) * math.tan(ang - np.pi / 2)
            else:
                d = cols - depth - (rows - h / 2) * math.tan(ang - 3 * np.pi / 2)
            m |= d < 0
        return m

    def in_poly(X, Y, poly):
        inside = np.zeros(np.broadcast_shapes(X.shape, Y.shape), bool)
        n = len(poly)
        for i in range(n):
            x1, y1 = poly[i]
            x2, y2 = poly[(i + 1) % n]
            cond = (y1 > Y) != (y2 > Y)
            xint = (x2 - x1) * (Y - y1) / ((y2 - y1) if y2 != y1 else 1e-9) + x1
            inside ^= cond & (X < xint)
        return inside

    img = np.empty((h, w), np.float32)
    cellmap = np.zeros((h, w), np.int32)
    brokenmap = np.zeros((h, w), np.int32)
    cols = np.arange(w, dtype=np.float32)[None, :]
    a00, a01, a10, a11 = (np.float32(v) for v in Ainv.ravel())
    for r0 in range(0, h, _STRIP):
        r1 = min(h, r0 + _STRIP)
        rows = np.arange(r0, r1, dtype=np.float32)[:, None]
        X = cols - np.float32(ox)
        Y = rows - np.float32(oy)
        q1 = a00 * X + a01 * Y
        q2 = a10 * X + a11 * Y
        n1 = np.floor(q1 + 0.5)
        n2 = np.floor(q2 + 0.5)
        d1 = (q1 - n1) * np.float32(pitch)
        d2 = (q2 - n2) * np.float32(pitch)
        dist = np.sqrt(d1 * d1 + d2 * d2)  # world px from hole centre
        cell = ((n1.astype(np.int64) - n10) * nv + (n2.astype(np.int64) - n20))
        np.clip(cell, 0, ncell - 1, out=cell)
        rj = radius_j[cell]
        inside = dist <= rj
        # thickness field
        xn = (cols / w - 0.5) * math.cos(g_dir) + (rows / h - 0.5) * math.sin(g_dir)
        grad = np.float32(g_amp) * xn
        t_hole = np.maximum(ice[cell] + grad, 0)
        t_hole = np.where(names[cell] == "empty", 0, t_hole)
        t_film = np.maximum(film_ice + grad * 0.5, 0)
        if carbon:
            T_film = np.exp(-(t_film + c_nm) / lam)
        else:
            T_film = film_T_gold * np.exp(-t_film / lam)
        T_hole = np.exp(-t_hole / lam)
        val = np.where(inside, T_hole, T_film).astype(np.float32)
        # Fresnel fringe: dark ring just inside/outside the hole edge
        if fringe > 0:
            val *= 1 - np.float32(fringe) * np.exp(-((dist - rj) / fringe_w) ** 2)
        visible = inside.copy()
        if broken_poly is not None:
            bp = in_poly(cols, rows, broken_poly)
            val = np.where(bp, 1.0, val)
            brokenmap[r0:r1] = np.where(inside & bp, cell + 1, 0)
            visible &= ~bp
        if bars:
            bm = bar_mask(rows, cols)
            val = np.where(bm, np.float32(0.01), val)
            visible &= ~bm
        img[r0:r1] = val * illum(rows, cols)
        cellmap[r0:r1] = np.where(visible, cell + 1, 0)

    present = np.unique(cellmap)
    present = present[present > 0] - 1

    def centre_of(c):
        i1, i2 = c // nv + n10, c % nv + n20
        v = A @ np.array([i1, i2], float)
        return ox + v[0], oy + v[1]

    # contamination (dark balls) and ice crystals drawn on top
    for c in present:
        lab = names[c]
        cx, cy = centre_of(c)
        r = float(radius_j[c])
        if lab == "contaminated":
            for _ in range(rng.integers(1, 4)):
                rr = rng.uniform(0.12, 0.45) * r
                a = rng.uniform(0, 2 * np.pi)
                dd = rng.uniform(0, 0.8) * r
                _disc_stamp(img, None, cx + dd * math.cos(a), cy + dd * math.sin(a), rr,
                            rr * rng.uniform(0.6, 1), rng.uniform(0, np.pi), rng.uniform(0.15, 0.6), "mul",
                            soft=1.5)
        elif lab == "crystalline":
            for _ in range(rng.integers(6, 25)):
                rr = rng.uniform(0.03, 0.1) * r
                a = rng.uniform(0, 2 * np.pi)
                dd = rng.uniform(0, 0.9) * r
                _disc_stamp(img, None, cx + dd * math.cos(a), cy + dd * math.sin(a), rr,
                            rr * rng.uniform(0.5, 1), rng.uniform(0, np.pi),
                            rng.uniform(0.55, 0.85) if rng.random() < 0.8 else 1.15, "mul", soft=0.7)
    # a few contamination balls anywhere (may land on film or holes, small)
    for _ in range(int(rng.integers(0, 4))):
        rr = rng.uniform(2, 8)
        _disc_stamp(img, None, rng.uniform(0, w), rng.uniform(0, h), rr, rr, 0.0,
                    rng.uniform(0.2, 0.6), "mul", soft=1.0)

    # dose, Poisson noise, blur (detector), gain, inversion
    for r0 in range(0, h, _STRIP):
        r1 = min(h, r0 + _STRIP)
        img[r0:r1] = _poisson(rng, img[r0:r1] * np.float32(p["dose"]))
    if p["blur_sigma"] > 0:
        ndi.gaussian_filter(img, p["blur_sigma"], output=img, truncate=3.0)
    mean = float(img.mean())
    if p["invert"]:
        img *= -1
        img += np.float32(2 * mean)
    img *= np.float32(p["scale"])
    img += np.float32(p["offset"])

    counts = np.bincount(cellmap.ravel(), minlength=ncell + 1)[1:]
    n_broken = np.bincount(brokenmap.ravel(), minlength=ncell + 1)[1:]
    del brokenmap
    ids_of_cell = np.zeros(ncell + 1, np.int32)
    tilt_c = math.cos(math.radians(p["tilt_deg"]))
    # ellipse axes in the image: T applied to a circle of radius r
    U_, S_, _ = np.linalg.svd(T)
    axis_ang = math.degrees(math.atan2(U_[1, 0], U_[0, 0]))
    truth = []
    k = 0
    for c in range(ncell):
        if counts[c] == 0:
            continue
        k += 1
        ids_of_cell[c + 1] = k
        cx, cy = centre_of(c)
        r = float(radius_j[c])
        area = math.pi * r * r * tilt_c
        vis = float(min(1.0, counts[c] / area))
        lab = str(names[c])
        if n_broken[c] > 0:
            lab = "broken"
        elif vis < 0.95:
            lab = "edge"
        truth.append(HoleTruth(k, (float(cx), float(cy)), r, (r * float(S_[0]), r * float(S_[1])),
                               axis_ang, lab, lab == "good", vis,
                               0.0 if lab in ("empty", "broken") else float(ice[c])))
    ids = ids_of_cell[cellmap]
    p = dict(p, pitch_px=float(pitch), radius_px=float(radius), origin=(float(ox), float(oy)),
             lattice=A.tolist())
    return img, truth, ids, p


# --------------------------------------------------------------------------- whole-grid atlas

_GRID_DEFAULTS = dict(
    pitch=None,            # px, square lattice pitch (default: random 48-80 × min(shape)/1024)
    side_fraction=None,    # square side / pitch (default: random 0.62-0.74)
    angle_deg=None,        # grid rotation, degrees (default: random 0-90)
    bar_level=None,        # counts on the bars (default 6-12)
    radius_fraction=None,  # mesh disc radius / (min(shape)/2) (default 0.78-0.9)
    rim_fraction=None,     # rim ring width / mesh radius (default 0.05-0.09)
    rim_level=None,        # counts on the (opaque) rim (default 2-6)
    background=None,       # off-grid area beyond the rim: "bright" | "dark" (default: random)
    background_level=None,  # counts there (default: bright 225-250, dark 1-5)
    dark_fraction=None,    # fraction of squares with thick (dark) ice (default 0.1-0.2)
    dark_level=None,       # (low, high) counts of dark squares (default (30, 55))
    bright_level=None,     # (low, high) counts of the other squares (default (120, 210))
    offset=0.0,            # added to every pixel after the Poisson counts (a camera bias)
    gain=1.0,              # pixels multiplied by this after the counts (before the offset)
)


def _grid_params(rng, shape, params):
    p = dict(_GRID_DEFAULTS)
    unknown = set(params) - set(p)
    if unknown:
        raise TypeError(f"grid_atlas: unknown parameter(s) {sorted(unknown)}")
    p.update({k: v for k, v in params.items() if v is not None})
    scale = min(shape) / 1024.0
    draws = dict(pitch=float(rng.uniform(48, 80) * scale), side_fraction=float(rng.uniform(0.62, 0.74)),
                 angle_deg=float(rng.uniform(0, 90)), bar_level=float(rng.uniform(6, 12)),
                 radius_fraction=float(rng.uniform(0.78, 0.9)), rim_fraction=float(rng.uniform(0.05, 0.09)),
                 rim_level=float(rng.uniform(2, 6)), background=("bright", "dark")[int(rng.integers(0, 2))],
                 dark_fraction=float(rng.uniform(0.1, 0.2)))
    for k, v in draws.items():  # every draw is made, given or not: a given value changes nothing else
        if p[k] is None:
            p[k] = v
    if p["background"] not in ("bright", "dark"):
        raise ValueError(f"grid_atlas: background must be 'bright' or 'dark', got {p['background']!r}")
    lvl = float(rng.uniform(225, 250)) if p["background"] == "bright" else float(rng.uniform(1, 5))
    if p["background_level"] is None:
        p["background_level"] = lvl
    if p["dark_level"] is None:
        p["dark_level"] = (30.0, 55.0)
    if p["bright_level"] is None:
        p["bright_level"] = (120.0, 210.0)
    return p


def grid_atlas(seed: int, shape=(1024, 1024), **params):
    """Synthetic whole-grid atlas: the mesh disc, the grid's rim, off-grid background.

    The grid's mesh (dark bars, a square lattice of squares) fills a disc of radius
    radius_fraction × min(shape)/2 around a point near the image centre; around it lies
    the opaque rim (a ring rim_fraction × radius wide, rim_level counts) and beyond it the
    off-grid background: "bright" (vacuum, 225-250 counts: brighter than every square) or
    "dark". Squares are bright (120-210 counts, label "good") or, a dark_fraction of them,
    thick-ice "dark" ones (30-55 counts, label "thick"); squares cut by the rim or the
    image border are labelled "edge". Meniscus darkening at the square edges, a smooth
    illumination field, Poisson counts; then ``pixels · gain + offset`` (defaults 1, 0:
    integer counts).

    Parameters
    ----------
    seed : int
        Same seed and parameters: identical pixels and truth.
    shape : (int, int)
        (rows, cols) px.
    **params
        All optional (random from `seed` when omitted): pitch (px), side_fraction,
        angle_deg, bar_level, radius_fraction, rim_fraction, rim_level, background
        ("bright" | "dark"), background_level, dark_fraction, dark_level and bright_level
        ((low, high) counts), offset, gain.

    Returns
    -------
    image : numpy.ndarray of float32, shape `shape`
        [row, col].
    truth : list of SquareTruth
        Every square with pixels in the image and on the mesh; centres (x, y) = (col, row),
        px; visible_fraction counts the pixels inside the image and the mesh disc.

    Examples
    --------
    A dark background; 11 of the 182 squares wholly on the mesh are dark (label "thick"):

    >>> image, truth = grid_atlas(3, (512, 512), background="dark", dark_fraction=0.05)
    >>> full = [t for t in truth if t.label != "edge"]
    >>> len(full), sum(t.label == "thick" for t in full), float(image.max()) < 260
    (182, 11, True)
    """
    img, truth, _, _ = grid_atlas_with_ids(seed, shape, **params)
    return img, truth


def grid_atlas_with_ids(seed: int, shape=(1024, 1024), **params):
    """As `grid_atlas`, plus the ID map and the parameters used.

    Parameters
    ----------
    seed, shape, **params
        As `grid_atlas`.

    Returns
    -------
    image, truth
        As `grid_atlas`.
    ids : numpy.ndarray of int32, shape `shape`
        [row, col]: the `id` of the square drawn over the pixel, 0 elsewhere.
    params : dict
        Every parameter used, plus "center" ((x, y) px of the mesh disc), "radius" (px),
        "rim_width" (px) and "side" (px).

    Examples
    --------
    No square pixel lies beyond the mesh disc:

    >>> image, truth, ids, p = grid_atlas_with_ids(1, (400, 400))
    >>> rows, cols = np.nonzero(ids)
    >>> bool((np.hypot(cols - p["center"][0], rows - p["center"][1]) < p["radius"] + 1).all())
    True
    """
    rng = np.random.default_rng([int(seed), 3])
    h, w = int(shape[0]), int(shape[1])
    p = _grid_params(rng, (h, w), params)
    pitch, side = float(p["pitch"]), float(p["pitch"]) * float(p["side_fraction"])
    half = side / 2.0
    rc = side * 0.08
    th = math.radians(p["angle_deg"])
    ct, st = math.cos(th), math.sin(th)
    ox, oy = rng.uniform(0, pitch, 2)
    gx, gy = w / 2.0 + rng.uniform(-0.04, 0.04) * w, h / 2.0 + rng.uniform(-0.04, 0.04) * h
    radius = float(p["radius_fraction"]) * min(h, w) / 2.0
    rim_w = float(p["rim_fraction"]) * radius

    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], float) - [ox, oy]
    us = corners[:, 0] * ct + corners[:, 1] * st
    vs = -corners[:, 0] * st + corners[:, 1] * ct
    iu0, iu1 = int(np.floor(us.min() / pitch)) - 1, int(np.ceil(us.max() / pitch)) + 1
    iv0, iv1 = int(np.floor(vs.min() / pitch)) - 1, int(np.ceil(vs.max() / pitch)) + 1
    nu, nv = iu1 - iu0 + 1, iv1 - iv0 + 1
    ncell = nu * nv
    dark = rng.random(ncell) < float(p["dark_fraction"])
    lo_b, hi_b = p["bright_level"]
    lo_d, hi_d = p["dark_level"]
    base = np.where(dark, rng.uniform(lo_d, hi_d, ncell), rng.uniform(lo_b, hi_b, ncell)).astype(np.float32)
    rim_amp = rng.uniform(0.05, 0.2, ncell).astype(np.float32)
    rim_wd = (side * rng.uniform(0.06, 0.12, ncell)).astype(np.float32)
    illum = _smooth_field(rng, (h, w), rng.uniform(0.02, 0.08))

    img = np.empty((h, w), np.float32)
    cellmap = np.zeros((h, w), np.int32)
    cols = np.arange(w, dtype=np.float32)
    for r0 in range(0, h, _STRIP):
        r1 = min(h, r0 + _STRIP)
        rows = np.arange(r0, r1, dtype=np.float32)[:, None]
        lu, lv, inside, cell = _square_cells(rows, cols, ox, oy, ct, st, pitch, half, rc, iu0, iv0, nv, ncell)
        rr = np.hypot(cols[None, :] + 0.5 - gx, rows + 0.5 - gy)
        inside &= rr < radius
        de = np.float32(half) - np.maximum(np.abs(lu), np.abs(lv))
        val = base[cell] * (1 - rim_amp[cell] * np.exp(-np.maximum(de, 0) / rim_wd[cell]))
        out = np.where(inside, val, np.float32(p["bar_level"]))
        out = np.where(rr >= radius, np.float32(p["rim_level"]), out)
        out = np.where(rr >= radius + rim_w, np.float32(p["background_level"]), out)
        img[r0:r1] = out * illum(rows, cols[None, :])
        cellmap[r0:r1] = np.where(inside, cell + 1, 0)
    for r0 in range(0, h, _STRIP):
        r1 = min(h, r0 + _STRIP)
        img[r0:r1] = _poisson(rng, img[r0:r1])

    counts = np.bincount(cellmap.ravel(), minlength=ncell + 1)[1:]
    order = [c for c in range(ncell) if counts[c] > 0]
    full_area = side * side - (4 - np.pi) * rc * rc
    sums = ndi.sum_labels(img, cellmap, index=np.arange(1, ncell + 1)) if order else []
    ids_of_cell = np.zeros(ncell + 1, np.int32)
    truth = []
    for k, c in enumerate(order, start=1):
        ids_of_cell[c + 1] = k
        cu_, cv_ = (c // nv + iu0) * pitch, (c % nv + iv0) * pitch
        cx, cy = ox + cu_ * ct - cv_ * st, oy + cu_ * st + cv_ * ct
        poly = tuple((float(ox + u * ct - v * st), float(oy + u * st + v * ct))
                     for u, v in ((cu_ - half, cv_ - half), (cu_ + half, cv_ - half),
                                  (cu_ + half, cv_ + half), (cu_ - half, cv_ + half)))
        vis = float(min(1.0, counts[c] / full_area))
        lab = ("thick" if dark[c] else "good") if vis >= 0.98 else "edge"
        truth.append(SquareTruth(k, (float(cx), float(cy)), poly, float(side), float(p["angle_deg"]), lab,
                                 lab == "good", vis, float(sums[c] / counts[c])))
    gain, offset = float(p["gain"]), float(p["offset"])
    if gain != 1.0 or offset != 0.0:
        img = (img.astype(np.float64) * gain + offset).astype(np.float32)
    ids = ids_of_cell[cellmap]
    p = dict(p, center=(float(gx), float(gy)), radius=radius, rim_width=rim_w, side=side,
             origin=(float(ox), float(oy)))
    return img, truth, ids, p
