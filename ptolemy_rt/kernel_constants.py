"""Constants shared by the compiled kernels and the Python code around them (no numba here).

The kernel modules (`*_kernels.py`) read these at compile time (numba freezes module
globals into the machine code, and the ahead-of-time extension has them built in), and the
callers import them from here instead of repeating the values. Changing one changes the
kernels' source digest (`ptolemy_rt.kernels.source_digest`), so a stale extension is not
loaded until `make kernels` has rebuilt it.
"""
from __future__ import annotations

#: Lattice cost (`lattice` module docstring): a mask pixel not covered by any box costs
#: MISS_WEIGHT, a covered pixel outside the mask costs 1.
MISS_WEIGHT = 10

#: Oblique lattice candidates are square lattices seen at up to ~45° stage tilt: the two
#: basis vectors' lengths are within a factor OBLIQUE_MIN_RATIO (≈ cos 45°) of each other
#: and |cos| of the angle between them is at most OBLIQUE_MAX_COS (90° ± 25°).
OBLIQUE_MIN_RATIO = 0.7
OBLIQUE_MAX_COS = 0.42

#: Cubic B-spline interpolation (`geometry_kernels.spline_prefilter` / `affine_cubic`): the
#: prefilter's pole z = √3 − 2 and the number of terms of its causal start on lines longer
#: than that (|z|^40 ≈ 1e-23 of a pixel value; shorter lines use the exact mirror sum).
SPLINE_POLE = -0.2679491924311228  # math.sqrt(3) - 2, to the last bit
SPLINE_INIT_TERMS = 40
#: Samples of `geometry_kernels.affine_cubic` within this distance (px) outside the input's first
#: or last sample count as on the edge (scipy.ndimage decides them by the last bit of its
#: coordinate arithmetic, e.g. −4e-16 vs 0 for a thin image turned by 45°).
SPLINE_EDGE_TOLERANCE_PX = 1e-9
