"""Compiled kernel of `ptolemy_rt.geometry`: the grid-angle cost (summed bounding-box areas
of rotated polygons), evaluated once per step of the angle search.

Written for numba (`kernels.compiled`); callers use the wrapper in `ptolemy_rt.kernels`,
which loads the ahead-of-time build of this module or, failing that, jits it. `EXPORTS`
lists the exported kernel with its signature. Points are (row, col) float64, px.
"""
from __future__ import annotations

import math

import numpy as np

from .kernels import compiled


@compiled
def box_area_sum(pts, starts, theta_deg):
    """Summed areas of the polygons' axis-aligned bounding boxes after a rotation.

    The (row, col) points are rotated as `geometry.rotate_points` rotates them:
    q = R p with R = [[cos θ, −sin θ], [sin θ, cos θ]].

    Parameters
    ----------
    pts : ndarray, float64, (K, 2)
        All polygons' vertices stacked, (row, col), px.
    starts : ndarray, int64, (n,)
        Index of each polygon's first vertex, ascending (polygon p is
        pts[starts[p]:starts[p + 1]], the last one runs to the end).
    theta_deg : float
        Rotation angle θ, degrees.

    Returns
    -------
    float
        Σ over polygons of the bounding-box area, px² (empty polygons add 0).

    Examples
    --------
    A unit square: area 1 upright, 2 turned by 45°.

    >>> sq = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    >>> starts = np.array([0])
    >>> box_area_sum(sq, starts, 0.0), round(box_area_sum(sq, starts, 45.0), 12)
    (1.0, 2.0)
    """
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


#: Exported kernels: name -> (function name here, numba signature), C-contiguous arrays.
EXPORTS = {
    "box_area_sum": ("box_area_sum", "f8(f8[:, ::1], i8[::1], f8)"),
}
