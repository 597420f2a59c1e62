"""The hot loops, written for numba: mixture EM, labelling and hulls, grid-angle cost, lattice
search (SPEC §4.1-4.5, §5.5).

Nothing here is imported on a normal run. `make install` compiles these functions ahead of
time (`ptolemy_rt.aot`, numba.pycc) into the extension `ptolemy_rt._kernels_aot`, which needs
only numpy at run time; `ptolemy_rt.kernels` loads that extension and falls back to this
module, jitted with an on-disk cache (`cache=True`), when the extension is missing or was
built from another version of this file. `EXPORTS` lists the exported kernels and their
signatures (the arrays the callers pass: C-contiguous, these dtypes).

Coordinates: images and masks are [row, col] arrays; polygons, points and vectors are
(row, col) float64 in pixel-corner coordinates (pixel (r, c) covers [r, r+1) × [c, c+1)).
"""
from __future__ import annotations

import math

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True)


# --- two-component Poisson mixture on the value histogram (mixture.py) --------------------

@jit
def scan_pixels(px):
    """(largest value with negatives as 0, every value a whole number) of a 2-D image."""
    h, w = px.shape
    vmax = 0.0
    whole = True
    for r in range(h):
        for c in range(w):
            v = np.float64(px[r, c])
            if v > vmax:
                vmax = v
            if whole and np.floor(v) != v:
                whole = False
    return vmax, whole


@jit
def _bin(v, scale, top):
    """trunc(min(max(v · scale, 0), top)) with v · scale in float64."""
    k = np.float64(v) * scale
    if k < 0.0:
        k = 0.0
    if k > top:
        k = top
    return np.int64(k)


@jit
def value_histogram(px, scale, nbins):
    """Counts (int64, nbins) of trunc(max(x, 0) · scale), capped at nbins − 1: one pass."""
    hist = np.zeros(nbins, np.int64)
    top = np.float64(nbins - 1)
    h, w = px.shape
    for r in range(h):
        for c in range(w):
            hist[_bin(px[r, c], scale, top)] += 1
    return hist


@jit
def _log_joint(k, pi, mu):
    # log(pi) + log Poisson(k | mu) without the −log k! term (cancels in posteriors and gains)
    return math.log(pi) + k * math.log(mu) - mu


@jit
def poisson_em(values, counts, max_iter, tol):
    """EM for a two-component Poisson mixture on a histogram: distinct values and their
    counts (float64). Deterministic start: responsibility of component a = 1 above the mean
    value, else 0. Stops when the log-likelihood (nats, without −Σ log k!) gains < tol or
    after max_iter iterations. Returns (pi_a, mu_a, mu_b, iterations, loglik)."""
    m = values.shape[0]
    n = 0.0
    sv = 0.0
    for i in range(m):
        n += counts[i]
        sv += counts[i] * values[i]
    mean = sv / n
    resp = np.empty(m, np.float64)
    for i in range(m):
        resp[i] = 1.0 if values[i] > mean else 0.0
    tiny = 1e-300
    pi = 0.5
    mu_a = 1.0
    mu_b = 1.0
    prev = -np.inf
    ll = -np.inf
    it = 0
    while it < max_iter:
        wa = 0.0
        sa = 0.0
        wb = 0.0
        sb = 0.0
        for i in range(m):  # M-step
            ca = counts[i] * resp[i]
            cb = counts[i] * (1.0 - resp[i])
            wa += ca
            sa += ca * values[i]
            wb += cb
            sb += cb * values[i]
        pi = min(max(wa / n, tiny), 1.0 - 1e-16)
        mu_a = max(sa / wa, 1e-12) if wa > 0 else 1e-12
        mu_b = max(sb / wb, 1e-12) if wb > 0 else 1e-12
        ll = 0.0
        for i in range(m):  # E-step and log-likelihood
            la = _log_joint(values[i], pi, mu_a)
            lb = _log_joint(values[i], 1.0 - pi, mu_b)
            hi = max(la, lb)
            lse = hi + math.log(math.exp(la - hi) + math.exp(lb - hi))
            resp[i] = math.exp(la - lse)
            ll += counts[i] * lse
        it += 1
        if ll - prev < tol:
            break
        prev = ll
    return pi, mu_a, mu_b, it, ll


@jit
def lut_mask(px, scale, lut):
    """mask[r, c] = lut[trunc(max(px[r, c], 0) · scale)] (bins capped like value_histogram)."""
    h, w = px.shape
    out = np.empty((h, w), np.bool_)
    top = np.float64(lut.shape[0] - 1)
    for r in range(h):
        for c in range(w):
            out[r, c] = lut[_bin(px[r, c], scale, top)]
    return out


# --- regions: labelling, per-row extremes, convex hulls (regions.py) ----------------------

@jit
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@jit
def label_components(grown, mask):
    """8-connected components of `grown` (bool [row, col]), numbered 1..n in the row-major
    order of their first pixel (as scipy.ndimage.label), written on the pixels of `mask` only.

    Works on runs: one pass finds each row's runs and joins those touching a run of the row
    above (8-connectivity: column ranges overlap or touch diagonally), union-find keeps the
    smallest run index as root. Returns (labels int32 [row, col], n)."""
    h, w = grown.shape
    nruns = 0
    for r in range(h):
        prev = False
        for c in range(w):
            v = grown[r, c]
            if v and not prev:
                nruns += 1
            prev = v
    rr = np.empty(nruns, np.int32)
    rs = np.empty(nruns, np.int32)
    re = np.empty(nruns, np.int32)  # inclusive end column
    parent = np.arange(nruns)
    k = 0
    prev_lo = 0
    prev_hi = 0
    for r in range(h):
        row_lo = k
        j0 = prev_lo
        c = 0
        while c < w:
            if not grown[r, c]:
                c += 1
                continue
            s = c
            while c < w and grown[r, c]:
                c += 1
            e = c - 1
            rr[k] = r
            rs[k] = s
            re[k] = e
            while j0 < prev_hi and re[j0] < s - 1:
                j0 += 1
            j = j0
            while j < prev_hi and rs[j] <= e + 1:
                a = _find(parent, k)
                b = _find(parent, j)
                if a < b:
                    parent[b] = a
                elif b < a:
                    parent[a] = b
                j += 1
            k += 1
        prev_lo = row_lo
        prev_hi = k
    labels = np.zeros((h, w), np.int32)
    lab = np.zeros(nruns, np.int32)
    n = 0
    for i in range(nruns):
        root = _find(parent, i)
        if lab[root] == 0:  # root = the component's first run, met first here
            n += 1
            lab[root] = n
        v = lab[root]
        r = rr[i]
        for c in range(rs[i], re[i] + 1):
            if mask[r, c]:
                labels[r, c] = v
    return labels, n


@jit
def row_extremes(labels, n):
    """Per (row, label) pair present in labels (int32 [row, col], 0 = none): the row and the
    first and last col, grouped by label 1..n, rows ascending. Returns (rows, cmin, cmax)
    int32 and starts int64 (n + 2): entries of label i are [starts[i], starts[i+1])."""
    h, w = labels.shape
    last = np.full(n + 1, -1, np.int64)
    cnt = np.zeros(n + 2, np.int64)
    for r in range(h):
        for c in range(w):
            v = labels[r, c]
            if v > 0 and last[v] != r:
                last[v] = r
                cnt[v + 1] += 1
    starts = np.zeros(n + 2, np.int64)
    for i in range(1, n + 2):
        starts[i] = starts[i - 1] + cnt[i]
    total = starts[n + 1]
    rows = np.empty(total, np.int32)
    cmin = np.empty(total, np.int32)
    cmax = np.empty(total, np.int32)
    pos = starts.copy()
    last[:] = -1
    for r in range(h):
        for c in range(w):
            v = labels[r, c]
            if v <= 0:
                continue
            if last[v] != r:
                last[v] = r
                p = pos[v]
                rows[p] = r
                cmin[p] = c
                cmax[p] = c
                pos[v] = p + 1
            else:
                cmax[pos[v] - 1] = c
    return rows, cmin, cmax, starts


@jit
def _hull_into(rows, cmin, cmax, a, b, out, t0):
    """Convex hull of the pixel corners of runs a..b−1 (row rows[i], cols cmin[i]..cmax[i],
    rows ascending), counter-clockwise in (row, col) axes, no collinear vertices, written to
    out[t0:]. Only each corner row's leftmost and rightmost corner can be a vertex; they come
    sorted by (row, col), so a monotone chain needs no sort. Returns the vertex count."""
    m = b - a
    ys = np.empty(2 * m, np.int64)
    lo = np.empty(2 * m, np.int64)
    hi = np.empty(2 * m, np.int64)
    k = 0
    for i in range(a, b):
        r = np.int64(rows[i])
        x0 = np.int64(cmin[i])
        x1 = np.int64(cmax[i]) + 1
        for d in range(2):
            y = r + d
            if k > 0 and ys[k - 1] == y:
                lo[k - 1] = min(lo[k - 1], x0)
                hi[k - 1] = max(hi[k - 1], x1)
            else:
                ys[k] = y
                lo[k] = x0
                hi[k] = x1
                k += 1
    npts = 2 * k
    sr = np.empty(npts, np.int64)
    sc = np.empty(npts, np.int64)
    for j in range(k):
        sr[2 * j] = ys[j]
        sc[2 * j] = lo[j]
        sr[2 * j + 1] = ys[j]
        sc[2 * j + 1] = hi[j]
    hr = np.empty(2 * npts + 1, np.int64)
    hc = np.empty(2 * npts + 1, np.int64)
    t = 0
    for j in range(npts):  # lower chain
        while t >= 2 and ((hr[t - 1] - hr[t - 2]) * (sc[j] - hc[t - 2])
                          - (hc[t - 1] - hc[t - 2]) * (sr[j] - hr[t - 2])) <= 0:
            t -= 1
        hr[t] = sr[j]
        hc[t] = sc[j]
        t += 1
    lower = t + 1
    for j in range(npts - 2, -1, -1):  # upper chain
        while t >= lower and ((hr[t - 1] - hr[t - 2]) * (sc[j] - hc[t - 2])
                              - (hc[t - 1] - hc[t - 2]) * (sr[j] - hr[t - 2])) <= 0:
            t -= 1
        hr[t] = sr[j]
        hc[t] = sc[j]
        t += 1
    t -= 1  # the last point repeats the first
    for j in range(t):
        out[t0 + j, 0] = hr[j]
        out[t0 + j, 1] = hc[j]
    return t


@jit
def hulls_of_rows(rows, cmin, cmax, starts):
    """Convex hulls of every label's pixel corners (entries as `row_extremes` returns them).
    Returns (vertices float64 K×2 (row, col), offsets int64 (n + 1)): label i's hull is
    vertices[offsets[i−1]:offsets[i]] (empty for a label without pixels)."""
    n = starts.shape[0] - 2
    out = np.empty((4 * rows.shape[0] + 1, 2), np.float64)
    offsets = np.zeros(n + 1, np.int64)
    t = 0
    for i in range(1, n + 1):
        a = starts[i]
        b = starts[i + 1]
        if b > a:
            t += _hull_into(rows, cmin, cmax, a, b, out, t)
        offsets[i] = t
    return out[:t].copy(), offsets


# --- grid angle (geometry.py) ------------------------------------------------------------

@jit
def box_area_sum(pts, starts, theta_deg):
    """Σ over polygons of the area (px²) of their axis-aligned bounding box after rotating the
    (row, col) points by theta_deg as geometry.rotate_points does (q = R p, R = [[cos, −sin],
    [sin, cos]]). pts: all polygons' vertices stacked; starts: first vertex of each."""
    t = theta_deg * (math.pi / 180.0)
    co = math.cos(t)
    si = math.sin(t)
    total = 0.0
    n = starts.shape[0]
    for p in range(n):
        a = starts[p]
        b = starts[p + 1] if p + 1 < n else pts.shape[0]
        lo0 = np.inf
        hi0 = -np.inf
        lo1 = np.inf
        hi1 = -np.inf
        for i in range(a, b):
            q0 = co * pts[i, 0] - si * pts[i, 1]
            q1 = si * pts[i, 0] + co * pts[i, 1]
            lo0 = min(lo0, q0)
            hi0 = max(hi0, q0)
            lo1 = min(lo1, q1)
            hi1 = max(hi1, q1)
        if b > a:
            total += (hi0 - lo0) * (hi1 - lo1)
    return total


# --- square-lattice search (lattice.py; its module docstring defines the cost) -------------

MISS_WEIGHT = 10  # cost of one mask pixel not covered; a covered pixel outside the mask costs 1


@jit
def _ab_range(c0, c1, u0, u1, v0, v1, lo0, hi0, lo1, hi1):
    """Integer ranges of a and b such that c + a·u + b·v can fall in [lo0, hi0] × [lo1, hi1]
    (u, v independent)."""
    det = u0 * v1 - u1 * v0
    amin = 1e300
    amax = -1e300
    bmin = 1e300
    bmax = -1e300
    for k in range(4):
        x0 = lo0 if k < 2 else hi0
        x1 = lo1 if k % 2 == 0 else hi1
        w0 = x0 - c0
        w1 = x1 - c1
        a = (w0 * v1 - w1 * v0) / det
        b = (u0 * w1 - u1 * w0) / det
        amin = min(amin, a)
        amax = max(amax, a)
        bmin = min(bmin, b)
        bmax = max(bmax, b)
    return (int(math.floor(amin)) - 1, int(math.ceil(amax)) + 1,
            int(math.floor(bmin)) - 1, int(math.ceil(bmax)) + 1)


@jit
def lattice_points2(c0, c1, u0, u1, v0, v1, h, w, margin):
    """All points c + a·u + b·v (u, v independent (row, col) vectors) with
    −margin ≤ row ≤ h + margin, −margin ≤ col ≤ w + margin, a-major then b, ascending.
    Returns n×2 float64 (row, col)."""
    lo0 = -margin
    hi0 = h + margin
    lo1 = -margin
    hi1 = w + margin
    a0, a1, b0, b1 = _ab_range(c0, c1, u0, u1, v0, v1, lo0, hi0, lo1, hi1)
    out = np.empty(((a1 - a0 + 1) * (b1 - b0 + 1), 2), np.float64)
    n = 0
    for a in range(a0, a1 + 1):
        for b in range(b0, b1 + 1):
            r = c0 + a * u0 + b * v0
            c = c1 + a * u1 + b * v1
            if r >= lo0 and r <= hi0 and c >= lo1 and c <= hi1:
                out[n, 0] = r
                out[n, 1] = c
                n += 1
    return out[:n].copy()


@jit
def lattice_points(c0, c1, d0, d1, h, w, margin):
    """The square lattice c + a·d + b·d⊥, d⊥ = (−d_col, d_row): `lattice_points2` with
    v = d⊥ (the same arithmetic: c + b·(−d1) equals c − b·d1 in IEEE)."""
    return lattice_points2(c0, c1, d0, d1, -d1, d0, h, w, margin)


@jit
def shortest_vector2(u0, u1, v0, v1):
    """Squared length of the shortest non-zero vector of the lattice spanned by u and v
    (Lagrange-Gauss reduction)."""
    a0, a1, b0, b1 = u0, u1, v0, v1
    na = a0 * a0 + a1 * a1
    nb = b0 * b0 + b1 * b1
    if na > nb:
        a0, a1, b0, b1, na, nb = b0, b1, a0, a1, nb, na
    for _ in range(64):
        if na == 0.0:
            return 0.0
        m = math.floor((a0 * b0 + a1 * b1) / na + 0.5)
        b0 -= m * a0
        b1 -= m * a1
        nb = b0 * b0 + b1 * b1
        if nb >= na:
            break
        a0, a1, b0, b1, na, nb = b0, b1, a0, a1, nb, na
    return na


@jit
def _box_bounds(pr, pc, box, h, w):
    """Pixel rows r0..r1−1, cols c0..c1−1 of the box×box box of lattice point (pr, pc) (rows
    floor(pr + 0.5) − box//2 … + box − 1, same for cols), clipped to the h×w image."""
    r0 = int(math.floor(pr + 0.5)) - box // 2
    c0 = int(math.floor(pc + 0.5)) - box // 2
    return max(r0, 0), max(c0, 0), min(r0 + box, h), min(c0 + box, w)


@jit
def _summed_area(mask):
    """SAT int64 [(H+1), (W+1)]: sat[r, c] = number of mask pixels in rows < r, cols < c."""
    h, w = mask.shape
    sat = np.zeros((h + 1, w + 1), np.int64)
    for r in range(h):
        run = 0
        for c in range(w):
            run += mask[r, c]
            sat[r + 1, c + 1] = sat[r, c + 1] + run
    return sat


@jit
def _cost_sat(points, sat, h, w, box, total):
    covered = 0
    inside = 0
    for k in range(points.shape[0]):
        r0, c0, r1, c1 = _box_bounds(points[k, 0], points[k, 1], box, h, w)
        if r1 <= r0 or c1 <= c0:
            continue
        covered += (r1 - r0) * (c1 - c0)
        inside += sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]
    return MISS_WEIGHT * (total - inside) + (covered - inside)


@jit
def _cost_paint(points, mask, stamp, tag, box, total):
    """Exact union cost by painting into `stamp` (int32 [H, W]); pixels equal to tag are
    already covered by this candidate, so the buffer never needs clearing."""
    h, w = mask.shape
    covered = 0
    inside = 0
    for k in range(points.shape[0]):
        r0, c0, r1, c1 = _box_bounds(points[k, 0], points[k, 1], box, h, w)
        for r in range(r0, r1):
            for c in range(c0, c1):
                if stamp[r, c] != tag:
                    stamp[r, c] = tag
                    covered += 1
                    inside += mask[r, c]
    return MISS_WEIGHT * (total - inside) + (covered - inside)


#: Oblique candidates are square lattices seen at up to ~45° stage tilt: basis lengths within
#: a factor OBLIQUE_MIN_RATIO (≈ cos 45°) of each other, angle between them 90° ± 25°.
OBLIQUE_MIN_RATIO = 0.7
OBLIQUE_MAX_COS = 0.42


@jit
def _tilted_square(nu, nv, dot):
    """Whether basis vectors with squared lengths nu, nv and dot product dot can be a square
    lattice imaged at a tilt up to ~45° (see OBLIQUE_MIN_RATIO, OBLIQUE_MAX_COS)."""
    r2 = OBLIQUE_MIN_RATIO * OBLIQUE_MIN_RATIO
    return nu >= r2 * nv and nv >= r2 * nu and dot * dot <= OBLIQUE_MAX_COS * OBLIQUE_MAX_COS * nu * nv


@jit
def _lattice_cost(pts, mask, sat, stamp, tag, box, total, short2):
    """Cost of one candidate's points: summed-area table when no two boxes can overlap
    (shortest lattice vector² short2 ≥ 2·box²), else exact painting into `stamp` (allocated
    [H, W] int32 on first use; tag advanced). Returns (cost, stamp, tag)."""
    h, w = mask.shape
    if short2 >= 2.0 * box * box:
        return _cost_sat(pts, sat, h, w, box, total), stamp, tag
    if stamp.shape[0] != h:
        stamp = np.zeros((h, w), np.int32)
    tag += 1
    return _cost_paint(pts, mask, stamp, tag, box, total), stamp, tag


@jit
def score_candidates(mask, centroids, neighbours, margin, box, oblique, min_len2, max_len2):
    """Costs of every candidate lattice (see lattice.py). Square candidates (i, s):
    d = c[neighbours[i, s]] − c[i] and d⊥. With oblique, also (i, p) for every pair p of
    neighbour slots s < t (pairs in row-major order): u = c[nb[i, s]] − c[i] and
    v = c[nb[i, t]] − c[i], when u and v can be a tilted square lattice (`_tilted_square`).
    Returns (costs n×k, counts n×k, oblique costs n×k(k−1)/2) int64: cost −1 where there is
    no candidate; count −1 where a square candidate covers the whole image and its points
    were not enumerated. Oblique candidates within the covering bound (shortest vector
    ≤ (box/2 − 1.5)·√2) are left out: the square candidate of the same neighbour has that cost.
    A candidate's cost uses the summed-area table when its shortest vector² ≥ 2·box² (no two
    boxes overlap), else exact painting."""
    h, w = mask.shape
    n, k = neighbours.shape
    costs = np.full((n, k), -1, np.int64)
    counts = np.zeros((n, k), np.int64)
    costs2 = np.full((n, k * (k - 1) // 2), -1, np.int64)
    total = 0
    for r in range(h):
        for c in range(w):
            total += mask[r, c]
    sat = _summed_area(mask)
    stamp = np.zeros((1, 1), np.int32)
    tag = 0
    cover_d2 = 2.0 * (box / 2.0 - 1.5) ** 2
    can_cover = margin >= box and box % 2 == 0
    for i in range(n):
        for s in range(k):
            j = neighbours[i, s]
            if j < 0:
                continue
            d0 = centroids[j, 0] - centroids[i, 0]
            d1 = centroids[j, 1] - centroids[i, 1]
            d2 = d0 * d0 + d1 * d1
            if d2 == 0.0:
                continue
            if d2 <= cover_d2 and can_cover:
                costs[i, s] = h * w - total
                counts[i, s] = -1
                continue
            pts = lattice_points(centroids[i, 0], centroids[i, 1], d0, d1, float(h), float(w), margin)
            counts[i, s] = pts.shape[0]
            costs[i, s], stamp, tag = _lattice_cost(pts, mask, sat, stamp, tag, box, total, d2)
        if not oblique:
            continue
        p = -1
        for s in range(k):
            for t in range(s + 1, k):
                p += 1
                js = neighbours[i, s]
                jt = neighbours[i, t]
                if js < 0 or jt < 0:
                    continue
                u0 = centroids[js, 0] - centroids[i, 0]
                u1 = centroids[js, 1] - centroids[i, 1]
                v0 = centroids[jt, 0] - centroids[i, 0]
                v1 = centroids[jt, 1] - centroids[i, 1]
                nu = u0 * u0 + u1 * u1
                nv = v0 * v0 + v1 * v1
                dot = u0 * v0 + u1 * v1
                if (nu < min_len2 or nv < min_len2 or nu > max_len2 or nv > max_len2 or nu == 0.0 or nv == 0.0
                        or not _tilted_square(nu, nv, dot)):
                    continue
                short2 = shortest_vector2(u0, u1, v0, v1)
                if short2 <= cover_d2:
                    continue
                pts = lattice_points2(centroids[i, 0], centroids[i, 1], u0, u1, v0, v1, float(h), float(w), margin)
                costs2[i, p], stamp, tag = _lattice_cost(pts, mask, sat, stamp, tag, box, total, short2)
    return costs, counts, costs2


#: Exported kernels: name -> (function name here, numba signature). Images come as float32
#: or float64 (one export each); masks as bool or uint8, all C-contiguous.
EXPORTS = {
    "scan_pixels_f4": ("scan_pixels", "Tuple((f8, b1))(f4[:, ::1])"),
    "scan_pixels_f8": ("scan_pixels", "Tuple((f8, b1))(f8[:, ::1])"),
    "value_histogram_f4": ("value_histogram", "i8[::1](f4[:, ::1], f8, i8)"),
    "value_histogram_f8": ("value_histogram", "i8[::1](f8[:, ::1], f8, i8)"),
    "lut_mask_f4": ("lut_mask", "b1[:, ::1](f4[:, ::1], f8, b1[::1])"),
    "lut_mask_f8": ("lut_mask", "b1[:, ::1](f8[:, ::1], f8, b1[::1])"),
    "poisson_em": ("poisson_em", "Tuple((f8, f8, f8, i8, f8))(f8[::1], f8[::1], i8, f8)"),
    "label_components": ("label_components", "Tuple((i4[:, ::1], i8))(b1[:, ::1], b1[:, ::1])"),
    "row_extremes": ("row_extremes", "Tuple((i4[::1], i4[::1], i4[::1], i8[::1]))(i4[:, ::1], i8)"),
    "hulls_of_rows": ("hulls_of_rows", "Tuple((f8[:, ::1], i8[::1]))(i4[::1], i4[::1], i4[::1], i8[::1])"),
    "box_area_sum": ("box_area_sum", "f8(f8[:, ::1], i8[::1], f8)"),
    "lattice_points": ("lattice_points", "f8[:, ::1](f8, f8, f8, f8, f8, f8, f8)"),
    "shortest_vector2": ("shortest_vector2", "f8(f8, f8, f8, f8)"),
    "lattice_points2": ("lattice_points2", "f8[:, ::1](f8, f8, f8, f8, f8, f8, f8, f8, f8)"),
    "score_candidates": ("score_candidates", "Tuple((i8[:, ::1], i8[:, ::1], i8[:, ::1]))"
                         "(u1[:, ::1], f8[:, ::1], i8[:, ::1], f8, i8, b1, f8, f8)"),
}
