"""Small numpy-level helpers the two pipelines share (one definition each).

- `clamp_negatives`: negative pixels → 0 (docs/ALGORITHM.md#lowmag-clamp, #medmag-normalise), without copying clean input;
- `mean_std`: mean and population standard deviation, streamed in row strips (float64),
  optionally over a mask;
- `Stopwatch`: per-stage wall-clock seconds, the `timings_s` of the results;
- `targets_from_boxes`: result targets (`results.Square` / `results.Hole`) from box corners.

Arrays are [row, col]; points are (x, y) = (col, row), px (see `results`).
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

import numpy as np

#: Pixels per strip in whole-image reductions (bounds the float64 temporaries to 16 MiB).
STRIP_PX = 1 << 21


def clamp_negatives(pixels, dtype=np.float32) -> np.ndarray:
    """`pixels` as `dtype` with negative values set to 0.

    Returns the input itself when it already has that dtype and no negative value (no
    copy); otherwise a new array: the caller's array is never modified.

    >>> a = np.array([[-1.5, 2.0]], np.float32)
    >>> clamp_negatives(a), float(a[0, 0])
    (array([[0., 2.]], dtype=float32), -1.5)
    >>> b = np.ones((2, 2), np.float32); clamp_negatives(b) is b
    True
    """
    a = np.asarray(pixels, dtype=dtype)
    if a.size and float(a.min()) < 0.0:
        a = np.maximum(a, 0)
    return a


def row_strips(rows: int, cols: int, strip_px: int = STRIP_PX) -> Iterator[slice]:
    """Row slices covering `rows` rows of `cols` columns, about `strip_px` pixels each.

    >>> list(row_strips(5, 2, strip_px=4))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    step = max(1, strip_px // max(1, cols))
    for r in range(0, rows, step):
        yield slice(r, min(rows, r + step))


def mean_std(values: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Mean and population standard deviation of `values` (2-D [row, col], input units), or
    of values[mask] for a bool mask of the same shape, in float64: two passes over row
    strips (`row_strips`), so no whole-image float64 copy is made.

    Returns (nan, nan) when there is no value.

    >>> mean_std(np.array([[1.0, 2.0], [3.0, 6.0]]))
    (3.0, 1.8708286933869707)
    >>> mean_std(np.array([[1.0, 2.0], [3.0, 6.0]]), np.array([[True, False], [True, False]]))
    (2.0, 1.0)
    """
    v2 = np.asarray(values)
    if v2.ndim != 2:
        v2 = v2.reshape(1, -1) if v2.ndim < 2 else v2.reshape(-1, v2.shape[-1])
        mask = None if mask is None else np.asarray(mask).reshape(v2.shape)
    return strip_mean_std(lambda sl: v2[sl], v2.shape, mask)


def strip_mean_std(rows, shape, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Mean and population std, float64, of an image given strip by strip: ``rows(sl)`` is
    rows sl (a `row_strips` slice) of the image (any real dtype, input units), `shape` its
    (rows, cols), `mask` None or a bool [row, col] image of the pixels that count. Two passes
    (the sum, then the squared deviations), so only one strip at a time is held; the result
    depends only on the strips' values, not on how `rows` makes them.

    Returns (nan, nan) when no pixel counts.

    >>> a = np.array([[1.0, 2.0], [3.0, 6.0]])
    >>> strip_mean_std(lambda sl: np.maximum(a[sl] - 2.0, 0.0), a.shape)
    (1.25, 1.6393596310755)
    """
    def pieces():
        for sl in row_strips(*shape):
            v = rows(sl)
            yield v.ravel() if mask is None else v[mask[sl]]

    total = 0.0
    count = 0
    for v in pieces():
        count += v.size
        total += float(v.sum(dtype=np.float64))
    if count == 0:
        return float("nan"), float("nan")
    mean = total / count
    ss = 0.0
    for v in pieces():
        d = v.astype(np.float64)
        d -= mean
        ss += float(np.dot(d, d))
    return mean, float(np.sqrt(ss / count))


class Stopwatch:
    """Wall-clock seconds per pipeline stage, added to a dict {stage: seconds}.

    `lap(name)` books the time since the previous lap (or the start) under `name`;
    ``with sw.stage(name):`` books the time of a block (and leaves the lap clock alone).
    Booking a stage twice adds the times.

    >>> sw = Stopwatch()
    >>> sw.lap("load") >= 0.0 and list(sw.timings)
    ['load']
    >>> with sw.stage("classify"):
    ...     pass
    >>> sorted(sw.timings)
    ['classify', 'load']
    """

    def __init__(self, timings: dict[str, float] | None = None):
        self.timings = {} if timings is None else timings
        self._last = time.perf_counter()

    def _book(self, name: str, seconds: float) -> float:
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        return seconds

    def lap(self, name: str) -> float:
        """Book the seconds since the previous lap (or the start) as stage `name`; returns them."""
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        return self._book(name, seconds)

    def restart(self) -> None:
        """Start the next lap now (time since the previous lap is not booked)."""
        self._last = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str):
        """Book the seconds the `with` block takes as stage `name` (even when it raises)."""
        t0 = time.perf_counter()
        try:
            yield self
        finally:
            self._book(name, time.perf_counter() - t0)


def targets_from_boxes(make: Callable, vertices: np.ndarray, order, **columns) -> list:
    """Result targets from boxes, in `order`.

    Parameters
    ----------
    make : the target class (`results.Square`, `results.Hole`), called with keywords.
    vertices : n×4×2 float, the 4 corners (x, y) = (col, row) px of each box, input frame.
    order : indices into the n boxes, in the order the targets are wanted (best first).
    **columns : further per-box values (arrays of n numbers: area, brightness, score),
        passed to `make` as floats.

    Returns
    -------
    list of targets: vertices as float tuples, centre = the mean of the vertices truncated
    to int (as the published tool: the array index of the pixel holding it).

    >>> from ptolemy_rt.results import Hole
    >>> v = np.array([[[0.0, 0.0], [3.0, 0.0], [3.0, 3.0], [0.0, 3.0]]])
    >>> targets_from_boxes(Hole, v, [0], area=[9.0], score=[0.5])[0].center
    (1, 1)
    """
    out = []
    for i in order:
        v = vertices[i]
        ctr = np.trunc(np.mean(v, axis=0))
        out.append(make(vertices=tuple((float(x), float(y)) for x, y in v), center=(int(ctr[0]), int(ctr[1])),
                        **{k: float(col[i]) for k, col in columns.items()}))
    return out
