"""Hole truth made at test time for real images without committed labels (issue 15 targets).

The holes of a holey film lie on a lattice, so the truth is built from that lattice alone,
classically and without any network:

1. the lattice basis from `scale.measure_hole_lattice` (tested against synthetic truth in
   tests/test_scale.py);
2. its phase: the offset within the unit cell (1/80-cell steps) that maximises the mean
   disc-minus-ring contrast (mean of a disc of the hole radius minus the mean of a ring
   just outside it) at the lattice points on the film: empty holes are brighter than film;
3. refinement: at each lattice point the contrast maximum within ±4 px, and a least-squares
   fit of origin and basis to those (points more than 3 px off the first fit dropped);
4. the film: the image smoothed (Gaussian, σ 4 px) above the midpoint of its 5th and 95th
   percentiles, the largest component with its holes filled; the whole image when that
   leaves less than a dark 5 % (no dark surround);
5. a lattice point is a truth hole when its disc (hole radius) lies inside the image and
   ≥ 90 % inside the film; "ambiguous" when 30-90 % inside (a hole cut by the square's
   edge: reporting it is neither required nor an error).

For the Leginon square image this gives 72 holes; the picture of them over the image was
checked by eye once (every visible on-film hole on the lattice circled, nothing on the dark
surround; not committed: pictures of shared images stay out of the repo).

Points are (x, y) = (col, row) px with pixel centres at integer indices.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ptolemy_rt import scale


def _disc(r: float) -> np.ndarray:
    n = int(np.ceil(r))
    y, x = np.mgrid[-n:n + 1, -n:n + 1]
    return (x * x + y * y <= r * r).astype(np.float64)


def _ring(r0: float, r1: float) -> np.ndarray:
    n = int(np.ceil(r1))
    y, x = np.mgrid[-n:n + 1, -n:n + 1]
    d2 = x * x + y * y
    return ((d2 > r0 * r0) & (d2 <= r1 * r1)).astype(np.float64)


def film_mask(a: np.ndarray) -> np.ndarray:
    """bool [row, col]: the film (step 4)."""
    sm = ndi.gaussian_filter(a, 4)
    lo, hi = np.percentile(sm, [5, 95])
    thr = 0.5 * (lo + hi)
    lab, n = ndi.label(sm > thr)
    if n == 0:
        return np.ones(a.shape, bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    film = ndi.binary_fill_holes(lab == sizes.argmax())
    if film.mean() > 0.95 or (hi - lo) < 0.5 * abs(hi):  # no dark area
        return np.ones(a.shape, bool)
    return film


def lattice_truth(image: np.ndarray, hole_radius_px: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(truth holes n×2, ambiguous holes m×2, lattice period px) of a real hole image."""
    a = np.asarray(image, dtype=np.float64)
    h, w = a.shape
    r = float(hole_radius_px)
    kd = _disc(r)
    kr = _ring(1.2 * r, 1.55 * r)
    resp = ndi.convolve(a, kd / kd.sum(), mode="nearest") - ndi.convolve(a, kr / kr.sum(), mode="nearest")
    film = film_mask(a)
    m = scale.measure_hole_lattice(a)
    assert m is not None and m.confident, m
    A = np.array(m.vectors_xy, dtype=np.float64).T  # columns a1, a2 as (x, y)
    span = int(np.ceil(np.hypot(h, w) / min(m.lengths_px))) + 2
    ij = np.arange(-span, span + 1)
    I, J = np.meshgrid(ij, ij)
    IJ = np.stack([I.ravel(), J.ravel()]).astype(np.float64)

    def points(o, basis):
        return (o[:, None] + basis @ IJ).T

    best = None
    for fx in np.arange(0, 1, 1 / 80):
        for fy in np.arange(0, 1, 1 / 80):
            o = A @ np.array([fx, fy])
            P = points(o, A)
            xi, yi = np.round(P[:, 0]).astype(int), np.round(P[:, 1]).astype(int)
            k = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            xi, yi = xi[k], yi[k]
            on = film[yi, xi]
            if on.sum() == 0:
                continue
            s = resp[yi[on], xi[on]].mean()
            if best is None or s > best[0]:
                best = (s, o)
    o = best[1]
    P = points(o, A)
    obs, rows = [], []
    for (x, y), i, j in zip(P, IJ[0], IJ[1]):
        xi, yi = int(round(x)), int(round(y))
        if 5 <= xi < w - 5 and 5 <= yi < h - 5 and film[yi, xi]:
            win = resp[yi - 4:yi + 5, xi - 4:xi + 5]
            q = np.unravel_index(np.argmax(win), win.shape)
            obs.append((xi + q[1] - 4, yi + q[0] - 4))
            rows.append((1.0, i, j))
    obs, M = np.array(obs, float), np.array(rows, float)
    coef, *_ = np.linalg.lstsq(M, obs, rcond=None)
    keep = np.hypot(*(obs - M @ coef).T) < 3
    coef, *_ = np.linalg.lstsq(M[keep], obs[keep], rcond=None)
    P = np.stack([np.ones(IJ.shape[1]), IJ[0], IJ[1]], 1) @ coef
    dd = _disc(r).astype(bool)
    n = dd.shape[0] // 2
    fp = np.pad(film, n + 1)
    truth, ambiguous = [], []
    for x, y in P:
        if not (-r <= x <= w - 1 + r and -r <= y <= h - 1 + r):
            continue
        xi, yi = int(round(x)), int(round(y))
        win = fp[yi + 1:yi + 2 * n + 2, xi + 1:xi + 2 * n + 2]
        if win.shape != dd.shape:
            continue
        frac = win[dd].mean()
        wholly_inside = r <= x <= w - 1 - r and r <= y <= h - 1 - r
        if frac >= 0.9 and wholly_inside:
            truth.append((x, y))
        elif frac >= 0.3:
            ambiguous.append((x, y))
    period = float(np.mean(np.hypot(coef[1:, 0], coef[1:, 1])))
    return np.array(truth).reshape(-1, 2), np.array(ambiguous).reshape(-1, 2), period


def match(found_xy: np.ndarray, truth_xy: np.ndarray, ambiguous_xy: np.ndarray, tol_px: float):
    """(truth holes found within tol_px, found holes matching neither a truth nor an
    ambiguous hole = extras)."""
    f = np.asarray(found_xy, float).reshape(-1, 2)
    t = np.asarray(truth_xy, float).reshape(-1, 2)
    both = np.vstack([t, np.asarray(ambiguous_xy, float).reshape(-1, 2)])
    if len(f) == 0:
        return 0, 0
    d_t = np.hypot(*(f[:, None, :] - t[None]).transpose(2, 0, 1)) if len(t) else np.full((len(f), 1), np.inf)
    d_b = np.hypot(*(f[:, None, :] - both[None]).transpose(2, 0, 1)) if len(both) else np.full((len(f), 1), np.inf)
    return int((d_t.min(0) < tol_px).sum()) if len(t) else 0, int((d_b.min(1) >= tol_px).sum())


def hole_centres(result) -> np.ndarray:
    """n×2 (x, y) px (pixel centres at integers) of a HoleResult's holes: the mean of each
    box's corners (pixel-corner coordinates) − 0.5."""
    return np.array([np.mean(h.vertices, axis=0) - 0.5 for h in result.holes]).reshape(-1, 2)
