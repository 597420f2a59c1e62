"""Synthetic scenes like real sessions show, with exact truth (numpy/scipy only; issue 16).

`scene(seed, shape=(1024, 1024), **params) -> Scene` draws one grid square of holey film
in world coordinates (nm) and images a window of it:

- ``kind="square"``: the whole square of film inside the dark grid bars (rounded corners,
  a wavy bar edge, torn film along it, a soft halo on the bars, the beam's fall-off), at
  the pixel size that puts the rotated square's bounding box on 55-92 % of the shorter
  side (~40-400 nm/px);
- ``kind="hole"``: a hole-level view at 10-200 nm/px anywhere in the square; one in five
  views lies near the square's edge, so grid bars and torn film come into the picture.

The film is carbon (film/hole intensity ~0.55-0.9) or gold (~0.05-0.35); holes 0.6-2 µm
across on a square lattice of pitch 1.2-4 µm (any rotation, often aligned with the bars);
stage tilt foreshortens everything across the tilt axis (oblique lattice, elliptical holes).
Ice thickness is a field across the square: a linear gradient, slow random undulation and a
meniscus (thicker ice towards the bars); per-hole jitter. Contamination is drawn in world
units at a density ``contamination`` (0 = clean, 1 = very dense): ethane blobs (dark soft
discs, scattered and in clusters), ice crystals (small dark or bright dots), needles (thin
lines), cracks (lines where the film is gone, bright with dark edges) and peeled / folded
film (doubled film covering holes, a dark fold line at its edge). Image formation:
transmission T = film · exp(-ice/λ) · exp(-contamination OD), Fresnel fringes outside the
hole edges, illumination (beam profile, gradient), optical blur, Poisson counts at ``dose``
counts/px for T = 1, detector gain and offset, a little detector blur.

Truth (`Scene`): every lattice point whose hole centre lies in the image, and every other
hole with pixels in it, as `SceneHole`: id (1..n; its value in `Scene.ids` where drawn),
centre (x, y) = (col, row) px, radius (px, before tilt), ellipse axes (px), on_film (the
film mask holds the centre pixel), label (`SCENE_HOLE_LABELS`), good, ice (nm), contrast
(noiseless mean hole intensity / film intensity around it; > 1: the hole is brighter),
visible fraction. `Scene.film` is the film mask (bool [row, col]: film present, i.e.
inside the bar opening and not torn away; holes are holes *in* the film, so they are
included); `Scene.ice_nm` the ice map (nm, 0 off the film). Images are float32 [row, col].

Deterministic by seed: the same seed and parameters give identical pixels and truth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

SCENE_KINDS = ("square", "hole")
SCENE_HOLE_LABELS = ("good", "empty", "thick", "contaminated", "crystalline", "broken", "edge", "off_film")
FILM_MATERIALS = ("carbon", "gold")

# Ranges of the drawn parameters (the tests check them).
HOLE_UM = (0.6, 2.0)      # hole diameter, µm
PITCH_UM = (1.2, 4.0)     # hole pitch, centre to centre, µm
HOLE_VIEW_NM = (10.0, 200.0)  # hole-level views, nm/px
SQUARE_UM = (25.0, 90.0)  # bar opening (grid square side), µm
EMPTY_ICE_NM = 8.0        # thinner ice in a hole: "empty"
THICK_ICE_NM = 110.0      # thicker: "thick"


@dataclass(frozen=True)
class SceneHole:
    """One hole (lattice point) of a scene; points (x, y) = (col, row) px.

    id: value in `Scene.ids` (0 never). center: (x, y) px. radius: px before tilt. axes:
    (major, minor) semi-axes px. on_film: the centre lies on film (`Scene.film`). label: one
    of SCENE_HOLE_LABELS. good: label == "good". ice_nm: ice in the hole, nm. contrast:
    noiseless hole / surrounding film intensity. visible_fraction: drawn hole pixels / area.
    """

    id: int
    center: tuple[float, float]
    radius: float
    axes: tuple[float, float]
    on_film: bool
    label: str
    good: bool
    ice_nm: float
    contrast: float
    visible_fraction: float


@dataclass
class Scene:
    """A drawn scene: image (float32 [row, col]), holes (list of SceneHole), film (bool
    [row, col]), ids (int32 [row, col], hole id of the visible hole pixels, 0 elsewhere),
    ice_nm (float32 [row, col]), square (dict: center (x, y) px, polygon of the 4 corners
    (x, y) px, side_px; the bar opening), params (every parameter used)."""

    image: np.ndarray
    holes: list
    film: np.ndarray
    ids: np.ndarray
    ice_nm: np.ndarray
    square: dict
    params: dict = field(default_factory=dict)


_DEFAULTS = dict(
    kind=None,            # "square" | "hole"
    pixel_nm=None,        # nm/px
    hole_um=None,         # hole diameter, µm
    pitch_um=None,        # hole pitch, µm
    square_um=None,       # bar opening side, µm
    film_material=None,   # "carbon" | "gold"
    film_T=None,          # film transmission (relative to an empty hole)
    square_angle_deg=None,  # rotation of the bars, degrees
    lattice_angle_deg=None,  # rotation of the hole lattice, degrees
    tilt_deg=None,        # stage tilt, degrees
    tilt_axis_deg=None,   # direction of the tilt axis in the image, degrees
    view_center_um=None,  # (x, y) µm of the view centre, square centre = (0, 0)
    ice_nm=None,          # typical ice in the holes, nm
    ice_gradient_nm=None,  # ice change across the square (or view), nm
    meniscus_nm=None,     # extra ice at the bars, nm
    contamination=None,   # 0..1
    tears=None,           # 0..1: how much film is torn off along the bars
    cracks=None,          # number of cracks in the square
    peel=None,            # draw a peeled/folded film region
    bar_level=None,       # bar transmission
    dose=None,            # counts/px at T = 1
    gain=None,            # output units per count
    offset=None,          # output offset
    blur_px=None,         # optical blur, px
    lambda_nm=300.0,      # attenuation length of ice, nm
)


def _params(rng, shape, params):
    p = dict(_DEFAULTS)
    unknown = set(params) - set(p)
    if unknown:
        raise TypeError(f"scene: unknown parameter(s) {sorted(unknown)}")
    p.update({k: v for k, v in params.items() if v is not None})
    side = min(shape)

    def pick(key, fn):
        if p[key] is None:
            p[key] = fn()

    pick("kind", lambda: "square" if rng.random() < 0.4 else "hole")
    if p["kind"] not in SCENE_KINDS:
        raise ValueError(f"scene: kind must be one of {SCENE_KINDS}, got {p['kind']!r}")
    std = [(0.6, 1.6), (1.0, 2.0), (1.2, 2.5), (2.0, 3.0), (2.0, 4.0), (1.0, 3.0)]
    if p["hole_um"] is None and p["pitch_um"] is None and rng.random() < 0.5:
        p["hole_um"], p["pitch_um"] = std[int(rng.integers(len(std)))]
    pick("hole_um", lambda: float(rng.uniform(*HOLE_UM)))
    pick("pitch_um", lambda: float(rng.uniform(max(PITCH_UM[0], p["hole_um"] * 1.3, p["hole_um"] + 0.4),
                                               PITCH_UM[1])))
    if p["pitch_um"] <= p["hole_um"]:
        raise ValueError(f"scene: pitch_um {p['pitch_um']} must exceed hole_um {p['hole_um']}")
    pick("square_um", lambda: float(rng.uniform(*SQUARE_UM)))
    pick("square_angle_deg", lambda: float(rng.uniform(0, 90)))
    if p["kind"] == "square":
        # the rotated square's bounding box spans 55-92 % of the shorter side
        t = math.radians(p["square_angle_deg"])
        box = abs(math.cos(t)) + abs(math.sin(t))
        pick("pixel_nm", lambda: p["square_um"] * box * 1000.0 / (side * rng.uniform(0.55, 0.92)))
    else:
        lo = max(HOLE_VIEW_NM[0], 2.2 * p["pitch_um"] * 1000.0 / side)
        hi = min(HOLE_VIEW_NM[1], p["hole_um"] * 1000.0 / 5.0, 0.8 * p["square_um"] * 1000.0 / side)
        hi = max(hi, lo)
        pick("pixel_nm", lambda: float(np.exp(rng.uniform(math.log(lo), math.log(hi)))))
    pick("film_material", lambda: "gold" if rng.random() < 0.25 else "carbon")
    if p["film_material"] not in FILM_MATERIALS:
        raise ValueError(f"scene: film_material must be one of {FILM_MATERIALS}")
    pick("film_T", lambda: float(rng.uniform(0.55, 0.9) if p["film_material"] == "carbon"
                                 else rng.uniform(0.05, 0.35)))
    pick("lattice_angle_deg", lambda: (p["square_angle_deg"] if rng.random() < 0.5
                                       else float(rng.uniform(0, 90))))
    pick("tilt_deg", lambda: 0.0 if rng.random() < 0.7 else float(rng.uniform(5, 40)))
    pick("tilt_axis_deg", lambda: float(rng.uniform(0, 180)))
    if p["view_center_um"] is None:
        half = p["square_um"] / 2
        if p["kind"] == "square":
            p["view_center_um"] = tuple(float(v) for v in rng.uniform(-0.02, 0.02, 2) * p["square_um"])
        else:
            view_um = side * p["pixel_nm"] / 1000.0
            if rng.random() < 0.2:   # near an edge: bars in the view
                a = rng.uniform(-half, half)
                b = half + rng.uniform(-0.45, 0.1) * view_um
                sx, sy = (a, b) if rng.random() < 0.5 else (b, a)
                p["view_center_um"] = (float(sx * rng.choice([-1, 1])), float(sy * rng.choice([-1, 1])))
            else:
                m = max(half - 0.5 * view_um, 0.0)
                p["view_center_um"] = tuple(float(v) for v in rng.uniform(-m, m, 2))
    pick("ice_nm", lambda: float(rng.uniform(15, 80)))
    pick("ice_gradient_nm", lambda: float(rng.uniform(0, 80)))
    pick("meniscus_nm", lambda: float(rng.uniform(0, 150)))
    pick("contamination", lambda: float(rng.uniform(0, 0.3) if rng.random() < 0.6 else rng.uniform(0.3, 1.0)))
    pick("tears", lambda: float(rng.uniform(0, 1) if rng.random() < 0.4 else 0.0))
    pick("cracks", lambda: int(rng.integers(0, 4)) if rng.random() < 0.4 else 0)
    pick("peel", lambda: bool(rng.random() < 0.3))
    pick("bar_level", lambda: float(rng.uniform(0.003, 0.02)))
    pick("dose", lambda: float(np.exp(rng.uniform(math.log(15), math.log(3000)))))
    pick("gain", lambda: float(np.exp(rng.uniform(math.log(0.5), math.log(8)))))
    pick("offset", lambda: float(rng.uniform(0, 200)))
    pick("blur_px", lambda: float(rng.uniform(0.4, 1.6)))
    return p


def _rot(deg):
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def _waves(rng, n, wl_um, amp):
    """Random plane waves (kx, ky cycles/µm, phase, amplitude) of wavelengths wl_um (lo, hi)."""
    wl = np.exp(rng.uniform(math.log(wl_um[0]), math.log(wl_um[1]), n))
    ang = rng.uniform(0, 2 * np.pi, n)
    a = amp * (wl / wl_um[1]) ** 0.7
    a = a / math.sqrt(max((a ** 2).sum(), 1e-12)) * amp
    return np.stack([np.cos(ang) / wl, np.sin(ang) / wl, rng.uniform(0, 2 * np.pi, n), a], 1)


def _eval_waves(waves, xu, yu):
    out = np.zeros(np.broadcast_shapes(xu.shape, yu.shape), np.float32)
    for kx, ky, ph, a in waves:
        out += np.float32(a) * np.sin(np.float32(2 * np.pi * kx) * xu + np.float32(2 * np.pi * ky) * yu + np.float32(ph))
    return out


def _coarse(fn, h, w, step):
    """fn(rows, cols) evaluated on every `step`-th pixel and interpolated (bilinear) to (h, w)."""
    rc = np.arange(0, h + step, step, dtype=np.float32)
    cc = np.arange(0, w + step, step, dtype=np.float32)
    small = np.broadcast_to(np.asarray(fn(rc[:, None], cc[None, :]), np.float32), (len(rc), len(cc)))
    big = ndi.zoom(np.ascontiguousarray(small), step, order=1, grid_mode=False)
    return np.ascontiguousarray(big[:h, :w])


def _stamp(layer, cx, cy, rx, ry, ang, value, soft=1.0, combine="add"):
    """Soft ellipse (centre (x, y) px, semi-axes px, angle rad) of `value` into `layer`."""
    h, w = layer.shape
    R = max(rx, ry) + 2 * soft + 1
    r0, r1 = max(int(cy - R), 0), min(int(cy + R) + 2, h)
    c0, c1 = max(int(cx - R), 0), min(int(cx + R) + 2, w)
    if r0 >= r1 or c0 >= c1:
        return
    yy, xx = np.ogrid[r0:r1, c0:c1]
    dx, dy = xx.astype(np.float32) - cx, yy.astype(np.float32) - cy
    ca, sa = math.cos(ang), math.sin(ang)
    u = (dx * ca + dy * sa) / max(rx, 0.3)
    v = (-dx * sa + dy * ca) / max(ry, 0.3)
    d = (np.sqrt(u * u + v * v) - 1.0) * max(min(rx, ry), 0.3)
    wgt = np.clip(0.5 - d / (2 * soft), 0, 1).astype(np.float32)
    if combine == "add":
        layer[r0:r1, c0:c1] += np.float32(value) * wgt
    else:
        np.maximum(layer[r0:r1, c0:c1], np.float32(value) * wgt, out=layer[r0:r1, c0:c1])


def _segment_dist(X, Y, x0, y0, x1, y1):
    dx, dy = x1 - x0, y1 - y0
    L2 = dx * dx + dy * dy + 1e-9
    t = np.clip(((X - x0) * dx + (Y - y0) * dy) / L2, 0, 1)
    return np.hypot(X - x0 - t * dx, Y - y0 - t * dy)


def _line(layer, pts, width, value, soft=0.7):
    """Polyline (x, y) px of half-width `width` px: value * soft coverage added to `layer`."""
    h, w = layer.shape
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        m = width + 2 * soft + 1
        r0, r1 = max(int(min(y0, y1) - m), 0), min(int(max(y0, y1) + m) + 2, h)
        c0, c1 = max(int(min(x0, x1) - m), 0), min(int(max(x0, x1) + m) + 2, w)
        if r0 >= r1 or c0 >= c1:
            continue
        yy, xx = np.ogrid[r0:r1, c0:c1]
        d = _segment_dist(xx.astype(np.float32), yy.astype(np.float32), x0, y0, x1, y1)
        wgt = np.clip(0.5 - (d - width) / (2 * soft), 0, 1).astype(np.float32)
        np.maximum(layer[r0:r1, c0:c1], np.float32(value) * wgt, out=layer[r0:r1, c0:c1])


def scene(seed: int, shape=(1024, 1024), **params) -> Scene:
    """Draw one synthetic scene (square-level or hole-level view) with exact truth.

    Parameters
    ----------
    seed : int
        Same seed and parameters: identical pixels and truth.
    shape : (int, int)
        (rows, cols) px.
    **params
        Optional, random from `seed` when omitted (see `_DEFAULTS`): kind ("square" |
        "hole"), pixel_nm (nm/px), hole_um, pitch_um, square_um (µm), film_material
        ("carbon" | "gold"), film_T, square_angle_deg, lattice_angle_deg, tilt_deg,
        tilt_axis_deg (degrees), view_center_um ((x, y) µm from the square centre), ice_nm,
        ice_gradient_nm, meniscus_nm (nm), contamination (0..1), tears (0..1), cracks (int),
        peel (bool), bar_level, dose (counts/px), gain, offset, blur_px (px), lambda_nm.

    Returns
    -------
    Scene
        image float32 [row, col]; holes with centres (x, y) = (col, row) px; film mask,
        ID map, ice map; the bar opening; the parameters used (plus pitch_px, radius_px).

    Raises
    ------
    TypeError
        An unknown parameter. ValueError: a bad kind, film material or pitch ≤ hole size.

    Examples
    --------
    A clean, untilted hole-level view at 20 nm/px of 1 µm holes at 2 µm pitch: the lattice
    pitch is 100 px and the radius 25 px; the holes are brighter than the carbon film:

    >>> s = scene(0, (256, 256), kind="hole", pixel_nm=20.0, hole_um=1.0, pitch_um=2.0,
    ...           tilt_deg=0.0, contamination=0.0, view_center_um=(0.0, 0.0))
    >>> s.params["pitch_px"], s.params["radius_px"], all(24 < h.radius < 26 for h in s.holes)
    (100.0, 25.0, True)
    >>> inside = [h for h in s.holes if h.label == "good"]
    >>> len(inside) > 0 and all(h.on_film and h.contrast > 1 for h in inside)
    True
    """
    rng = np.random.default_rng([int(seed), 16])
    h, w = int(shape[0]), int(shape[1])
    p = _params(rng, (h, w), params)
    pix = float(p["pixel_nm"]) / 1000.0           # µm per px
    # image (x, y) px -> world (µm): world = vc + Minv @ (p - pc) * pix; M foreshortens
    Rphi = _rot(p["tilt_axis_deg"])
    M = Rphi @ np.diag([1.0, math.cos(math.radians(p["tilt_deg"]))]) @ Rphi.T
    Minv = np.linalg.inv(M)
    pc = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    vc = np.array(p["view_center_um"], float)

    def to_img(wx, wy):
        """World (x, y) µm -> image (x, y) px."""
        return M @ np.array([wx - vc[0], wy - vc[1]]) / pix + pc

    m00, m01, m10, m11 = (float(v) * pix for v in Minv.ravel())

    def world(rows, cols):
        X = cols - np.float32(pc[0])
        Y = rows - np.float32(pc[1])
        return (np.float32(vc[0]) + np.float32(m00) * X + np.float32(m01) * Y,
                np.float32(vc[1]) + np.float32(m10) * X + np.float32(m11) * Y)

    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    WX, WY = world(rows, cols)

    # ---- the bar opening (rounded square) with a wavy edge, torn film
    S = p["square_um"]
    half = S / 2.0
    rc = S * rng.uniform(0.06, 0.16)
    ca, sa = math.cos(math.radians(p["square_angle_deg"])), math.sin(math.radians(p["square_angle_deg"]))
    edge_waves = _waves(rng, 8, (0.4 * S / 40, 6.0 * S / 40), rng.uniform(0.05, 0.25) * S / 40)
    tear_waves = _waves(rng, 16, (0.01 * S, 0.2 * S), 1.0)

    def sq_dist(X, Y):
        """Signed distance (µm) to the rounded bar opening (negative inside)."""
        U = np.abs(X * ca + Y * sa) - (half - rc)
        V = np.abs(-X * sa + Y * ca) - (half - rc)
        outside = np.hypot(np.maximum(U, 0), np.maximum(V, 0))
        return outside + np.minimum(np.maximum(U, V), 0) - rc

    dsq = sq_dist(WX, WY) + _coarse(lambda r, c: _eval_waves(edge_waves, *world(r, c)), h, w, 2)
    opening = dsq < 0
    tear_depth = p["tears"] * S * 0.05
    film = opening.copy()
    if tear_depth > 0:
        tn = _coarse(lambda r, c: _eval_waves(tear_waves, *world(r, c)), h, w, 2)  # ~N(0, 0.7)
        film &= ~(dsq > -tear_depth * np.clip(tn + 0.3, 0, None))
    # peeled / folded film: doubled film over a blob near the edge
    fold = np.zeros((h, w), bool)
    if p["peel"]:
        a = rng.uniform(0, 2 * np.pi)
        r_ = half * rng.uniform(0.55, 0.95)
        fx, fy = r_ * math.cos(a), r_ * math.sin(a)
        if p["kind"] == "hole":
            fx, fy = vc[0] + rng.uniform(-0.4, 0.4) * w * pix, vc[1] + rng.uniform(-0.4, 0.4) * h * pix
        fr = rng.uniform(0.06, 0.18) * S if p["kind"] == "square" else rng.uniform(0.15, 0.45) * w * pix
        ang = np.arctan2(WY - fy, WX - fx)
        k3, k5 = rng.uniform(0, 2 * np.pi, 2)
        rad = fr * (1 + 0.3 * np.sin(3 * ang + k3) + 0.15 * np.sin(5 * ang + k5))
        fold = (np.hypot(WX - fx, WY - fy) < rad) & film

    # ---- the hole lattice (world µm), per-pixel nearest lattice point
    d_um, pitch_um = float(p["hole_um"]), float(p["pitch_um"])
    Rl = _rot(p["lattice_angle_deg"]) * pitch_um
    Rl_inv = np.linalg.inv(Rl)
    origin = rng.uniform(0, pitch_um, 2)
    q1 = np.float32(Rl_inv[0, 0]) * (WX - np.float32(origin[0])) + np.float32(Rl_inv[0, 1]) * (WY - np.float32(origin[1]))
    q2 = np.float32(Rl_inv[1, 0]) * (WX - np.float32(origin[0])) + np.float32(Rl_inv[1, 1]) * (WY - np.float32(origin[1]))
    n1 = np.floor(q1 + 0.5)
    n2 = np.floor(q2 + 0.5)
    d1 = (q1 - n1) * np.float32(pitch_um)
    d2 = (q2 - n2) * np.float32(pitch_um)
    del q1, q2
    dist = np.sqrt(d1 * d1 + d2 * d2)          # µm from the nearest lattice point
    del d1, d2
    # lattice points covering the view (+1 ring)
    corners = np.array([world(np.float32(r), np.float32(c)) for r in (0, h - 1) for c in (0, w - 1)], float)
    qc = (corners - origin) @ Rl_inv.T
    i0, i1 = int(np.floor(qc[:, 0].min())) - 1, int(np.ceil(qc[:, 0].max())) + 1
    j0, j1 = int(np.floor(qc[:, 1].min())) - 1, int(np.ceil(qc[:, 1].max())) + 1
    nj = j1 - j0 + 1
    ncell = (i1 - i0 + 1) * nj
    cell = ((n1.astype(np.int64) - i0) * nj + (n2.astype(np.int64) - j0))
    np.clip(cell, 0, ncell - 1, out=cell)
    del n1, n2
    ii, jj = np.divmod(np.arange(ncell), nj)
    cw = origin[None, :] + np.stack([ii + i0, jj + j0], 1) @ Rl.T   # centres, world µm
    r_cell = (d_um / 2.0) * rng.uniform(0.97, 1.03, ncell)

    # ---- ice field (µm coordinates; nm values)
    g_dir = rng.uniform(0, 2 * np.pi)
    ice_waves = _waves(rng, 5, (3.0, 40.0), 0.25)
    men_w = rng.uniform(0.04, 0.15) * S
    span = S if p["kind"] == "square" else max(h, w) * pix

    def ice_at(X, Y, D):
        lin = (X * math.cos(g_dir) + Y * math.sin(g_dir)) / span
        t = p["ice_nm"] * (1 + _eval_waves(ice_waves, X, Y)) + p["ice_gradient_nm"] * lin
        t = t + p["meniscus_nm"] * np.exp(np.minimum(D, 0) / men_w)
        return np.maximum(t, 0)

    ice_cell = ice_at(cw[:, 0].astype(np.float32), cw[:, 1].astype(np.float32),
                      sq_dist(cw[:, 0], cw[:, 1]).astype(np.float32))
    ice_cell = ice_cell * rng.uniform(0.85, 1.15, ncell)
    ice_cell[rng.random(ncell) < 0.04] = 0.0               # a few empty holes
    thick_sel = rng.random(ncell) < 0.05
    ice_cell[thick_sel] += rng.uniform(100, 300, thick_sel.sum())
    step = 8
    ice_film = _coarse(lambda r, c: ice_at(*world(r, c), sq_dist(*world(r, c))), h, w, step)
    film_ice_frac = rng.uniform(0.4, 1.0)

    # ---- transmission
    inhole = (dist <= r_cell[cell].astype(np.float32)) & film & ~fold
    lam = float(p["lambda_nm"])
    T_film = np.float32(p["film_T"]) * np.exp(-ice_film * np.float32(film_ice_frac / lam))
    T_fold = T_film * np.float32(p["film_T"])
    T_hole = np.exp(-ice_cell.astype(np.float32) / np.float32(lam))[cell]
    T = np.where(inhole, T_hole, np.where(fold, T_fold, T_film)).astype(np.float32)
    del T_hole
    # Fresnel fringe just outside the hole edge (on film)
    fr_amp = rng.uniform(0.02, 0.15)
    fr_w_px = rng.uniform(1.0, 3.0)
    ds_px = (dist - r_cell[cell].astype(np.float32)) / np.float32(pix)
    fringe = np.float32(fr_amp) * np.exp(-((ds_px - np.float32(fr_w_px)) / np.float32(fr_w_px)) ** 2)
    T *= np.where(film & ~inhole, 1 - fringe, 1).astype(np.float32)
    del ds_px, fringe
    # mottle of the film and ice (grain ~ 4-16 px), a few per cent
    mstep = int(rng.integers(4, 17))
    small = ndi.gaussian_filter(rng.normal(0, 1, (h // mstep + 2, w // mstep + 2)).astype(np.float32), 1.0)
    mottle = ndi.zoom(small, mstep, order=1, grid_mode=False)[:h, :w]
    T *= 1 + np.float32(rng.uniform(0.0, 0.06) / max(float(small.std()), 1e-6)) * mottle
    del mottle
    T = np.where(film, T, np.float32(1.0))                      # vacuum where the film is torn away
    ice_map = np.where(inhole, ice_cell.astype(np.float32)[cell], ice_film * np.float32(film_ice_frac))
    ice_map = np.where(film, ice_map, 0).astype(np.float32)

    # ---- contamination (optical density layers, px)
    od_blob = np.zeros((h, w), np.float32)
    od_cryst = np.zeros((h, w), np.float32)
    crack = np.zeros((h, w), np.float32)
    area_um2 = h * w * pix * pix / max(abs(np.linalg.det(M)), 1e-6)
    cont = float(p["contamination"])
    view_area_on = max(float(opening.mean()), 0.05) * area_um2
    n_blobs = min(int(rng.poisson(cont * 0.08 * view_area_on + 0.3)), 3000)
    n_cryst = min(int(rng.poisson(cont * 0.15 * view_area_on + 0.5)), 4000)
    n_needle = min(int(rng.poisson(cont * 0.01 * view_area_on)), 400)

    def rand_pts(n):
        return rng.uniform(0, w, n), rng.uniform(0, h, n)

    # clustered ethane blobs: a few clusters holding a third of them
    n_cl = int(rng.integers(1, 4)) if cont > 0.2 else 0
    bx, by = rand_pts(n_blobs)
    ccx, ccy = rand_pts(max(n_cl, 1))
    if n_cl and n_blobs > 6:
        k = int(n_blobs * rng.uniform(0.3, 0.7))
        sel = rng.integers(0, n_cl, k)
        spread = rng.uniform(0.03, 0.12) * min(h, w)
        bx[:k] = ccx[sel] + rng.normal(0, spread, k)
        by[:k] = ccy[sel] + rng.normal(0, spread, k)
    # dense patches of small specks (like the top of a contaminated square)
    if n_cl and cont > 0.4:
        spread = rng.uniform(0.03, 0.1) * min(h, w)            # px
        n_sp = min(int(cont * 6 * n_cl * math.pi * (spread * pix) ** 2), 2500)  # ~6 specks / µm² at full density
        sel = rng.integers(0, n_cl, n_sp)
        for x, y in zip(ccx[sel] + rng.normal(0, spread, n_sp), ccy[sel] + rng.normal(0, spread, n_sp)):
            rr = max(rng.uniform(0.04, 0.3) / pix, 0.7)
            _stamp(od_blob, x, y, rr, rr * rng.uniform(0.6, 1.0), 0.0, rng.uniform(0.2, 1.0), soft=0.8,
                   combine="max")
    for x, y in zip(bx, by):
        rr = math.exp(rng.uniform(math.log(0.06), math.log(1.2))) / pix
        _stamp(od_blob, x, y, rr, rr * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi),
               rng.uniform(0.4, 2.5), soft=max(0.8, 0.15 * rr), combine="max")
    cx_, cy_ = rand_pts(n_cryst)
    for x, y in zip(cx_, cy_):
        rr = max(rng.uniform(0.03, 0.25) / pix, 0.6)
        sign = -0.6 if rng.random() < 0.25 else 1.0
        _stamp(od_cryst, x, y, rr, rr * rng.uniform(0.5, 1.0), rng.uniform(0, np.pi),
               sign * rng.uniform(0.2, 0.9), soft=0.7)
    for _ in range(n_needle):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        L = rng.uniform(0.5, 4.0) / pix
        a = rng.uniform(0, np.pi)
        _line(od_blob, [(x, y), (x + L * math.cos(a), y + L * math.sin(a))], rng.uniform(0.3, 1.0),
              rng.uniform(0.1, 0.35))
    # cracks: random-walk polylines across the square (film gone along them)
    n_cracks = int(p["cracks"]) if p["kind"] == "square" else int(rng.random() < 0.5 * min(1, p["cracks"]))
    for _ in range(n_cracks):
        x, y = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        a = rng.uniform(0, 2 * np.pi)
        seg = rng.uniform(0.03, 0.08) * min(h, w)
        pts = [(x, y)]
        for _ in range(int(rng.integers(4, 14))):
            a += rng.normal(0, 0.5)
            x, y = x + seg * math.cos(a), y + seg * math.sin(a)
            pts.append((x, y))
        _line(crack, pts, max(rng.uniform(0.05, 0.3) / pix, 0.6), 1.0)
    cracked = (crack > 0.5) & film
    od = np.where(opening, od_blob + od_cryst, 0)
    T = np.where(cracked, np.float32(1.0), T)
    edge_dark = ndi.maximum_filter(crack, size=3) > 0.1
    T = np.where(edge_dark & ~cracked & film, T * np.float32(0.6), T)
    if fold.any():
        fold_edge = fold ^ ndi.binary_erosion(fold, iterations=2)
        T = np.where(fold_edge, T * np.float32(0.5), T)
    T *= np.exp(-od)

    # ---- bars, illumination, counts
    halo_w = rng.uniform(0.5, 3.0) * S / 40
    bar = np.float32(p["bar_level"]) * (1 + rng.uniform(0, 4) * np.exp(-np.maximum(dsq, 0) / np.float32(halo_w)))
    T = np.where(opening, T, bar).astype(np.float32)
    beam_r = rng.uniform(0.6, 1.5) * max(h, w) if p["kind"] == "square" else rng.uniform(1.5, 6) * max(h, w)
    bcx, bcy = pc + rng.uniform(-0.1, 0.1, 2) * np.array([w, h])
    gx, gy = rng.uniform(-0.08, 0.08, 2)

    def illum_fn(r, c):
        return np.exp(-((c - bcx) ** 2 + (r - bcy) ** 2) / np.float32(beam_r ** 2)) * (
            1 + gx * (c / w - 0.5) + gy * (r / h - 0.5))

    T *= _coarse(illum_fn, h, w, 16)
    noiseless = T
    if p["blur_px"] > 0:
        noiseless = ndi.gaussian_filter(T, p["blur_px"], truncate=3.0)
    counts = rng.poisson(np.maximum(noiseless, 0) * np.float32(p["dose"])).astype(np.float32)
    ndi.gaussian_filter(counts, 0.5, output=counts, truncate=2.0)
    img = counts * np.float32(p["gain"]) + np.float32(p["offset"])

    # ---- truth
    vis_map = np.where(inhole & ~cracked, cell + 1, 0)
    n_vis = np.bincount(vis_map.ravel(), minlength=ncell + 1)[1:]
    n_cracked = np.bincount(np.where(inhole & cracked, cell + 1, 0).ravel(), minlength=ncell + 1)[1:]
    hole_map = np.where(inhole, cell + 1, 0).ravel()
    n_blob_px = np.bincount(hole_map, weights=(od_blob.ravel() > 0.2), minlength=ncell + 1)[1:]
    n_cryst_px = np.bincount(hole_map, weights=(np.abs(od_cryst.ravel()) > 0.1), minlength=ncell + 1)[1:]
    ring = film & ~inhole & (dist <= r_cell[cell].astype(np.float32) + 0.25 * (pitch_um - d_um))
    n_ring = np.bincount(np.where(ring, cell + 1, 0).ravel(), minlength=ncell + 1)[1:]
    t_ring = np.bincount(np.where(ring, cell + 1, 0).ravel(), weights=T_film.ravel() * ring.ravel(),
                         minlength=ncell + 1)[1:]
    del hole_map
    disc = (dist <= r_cell[cell].astype(np.float32)) & fold
    n_fold = np.bincount(np.where(disc, cell + 1, 0).ravel(), minlength=ncell + 1)[1:]
    del disc
    U_, Sv, _ = np.linalg.svd(M)
    holes = []
    ids_of_cell = np.zeros(ncell + 1, np.int32)
    k = 0
    for c in range(ncell):
        x, y = to_img(float(cw[c, 0]), float(cw[c, 1]))
        centre_in = 0 <= x <= w - 1 and 0 <= y <= h - 1
        if not centre_in and n_vis[c] == 0:
            continue
        if centre_in:
            on_film = bool(film[int(round(y)), int(round(x))])
        else:
            on_film = bool(n_vis[c] > 0)
        r_px = float(r_cell[c]) / pix
        area = math.pi * r_px * r_px * float(Sv[0] * Sv[1])
        vis = float(min(1.0, n_vis[c] / area))
        ice = float(ice_cell[c])
        Th = math.exp(-ice / lam)
        Tf = float(t_ring[c] / n_ring[c]) if n_ring[c] else float(p["film_T"])
        if not on_film:
            label = "off_film"
        elif n_cracked[c] > 0.02 * area or n_fold[c] > 0.1 * area:
            label = "broken"
        elif vis < 0.9:
            label = "edge"
        elif n_blob_px[c] > 0.02 * area:
            label = "contaminated"
        elif n_cryst_px[c] > 0.01 * area:
            label = "crystalline"
        elif ice < EMPTY_ICE_NM:
            label = "empty"
        elif ice > THICK_ICE_NM:
            label = "thick"
        else:
            label = "good"
        k += 1
        if n_vis[c] > 0:
            ids_of_cell[c + 1] = k
        holes.append(SceneHole(k, (float(x), float(y)), r_px, (r_px * float(Sv[0]), r_px * float(Sv[1])),
                               on_film, label, label == "good",
                               0.0 if label == "off_film" else ice, Th / Tf if Tf > 0 else float("inf"), vis))
    ids = ids_of_cell[vis_map]
    corners_img = []
    for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        u, v = su * half, sv * half
        corners_img.append(tuple(float(t) for t in to_img(u * ca - v * sa, u * sa + v * ca)))
    sq_c = tuple(float(t) for t in to_img(0.0, 0.0))
    square = {"center": sq_c, "polygon": tuple(corners_img), "side_px": S / pix}
    p = dict(p, pitch_px=pitch_um / pix, radius_px=d_um / 2 / pix, lattice_origin_um=tuple(float(v) for v in origin))
    return Scene(img.astype(np.float32), holes, film, ids, ice_map, square, p)
