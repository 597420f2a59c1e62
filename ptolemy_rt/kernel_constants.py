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
