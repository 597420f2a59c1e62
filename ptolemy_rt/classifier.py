"""Score crops with the square or hole classifier in bounded memory (numpy + ONNX Runtime).

Two BatchNorm regimes (docs/ALGORITHM.md#batchnorm-regimes; graph layout in export/onnx_classifiers.py):

- ``"published"``: every BatchNorm uses the statistics of the n crops scored together
  (mean and biased variance over crops × rows × cols, eps from the manifest), as the
  published tools do. The network is run stage by stage over all crops; per stage only
  the max-pooled tensors are kept (RAM up to a budget, the rest in a temporary file that
  is deleted afterwards; stage 1's, the largest, are not kept but made again from the
  crops in the stage-2 pass), and per-crop per-channel mean / centred sum of squares are
  combined exactly in float64 (Chan's parallel formula). The BN affine map
  a·z + b is applied as the next graph's ``scale`` / ``shift`` inputs.
- ``"running"``: the stored running statistics; each crop is independent (the ``full``
  graph, crops of equal shape run a few at a time).

Crops are 2-D float32 arrays [row, col], already prepared by the pipeline.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable

import numpy as np

from .models import ModelSet
from .modelspec import SquareClassifierArch, ClassifierArch
from .options import BATCHNORMS as REGIMES  # the BatchNorm regimes, defined once

#: RAM for the per-stage pooled tensors of all crops; beyond it they go to a temporary file.
POOLED_RAM_BUDGET_BYTES = 64 << 20
#: Largest pre-BN tensor (one stage, one ONNX run) in bytes; sets the crops per run (≥ 1).
#: Small on purpose: batching crops did not run faster on CPU, and ONNX Runtime's arena keeps
#: its peak (48 square crops, published: peak RSS ~300 MB at 2 MB, ~530 MB at 16 MB).
RUN_BUDGET_BYTES = 2 << 20
#: RAM for the crops kept between the stage-1 and stage-2 passes (published regime); beyond
#: it they go to a temporary file (reading back is cheaper than preparing a crop again).
CROP_RAM_BUDGET_BYTES = 16 << 20


class _PooledStore:
    """Per-crop float32 arrays, kept in RAM up to ``budget`` bytes, the rest spilled to a
    temporary file (plain writes, read back per crop, deleted on close)."""

    def __init__(self, budget: int):
        self.budget = int(budget)
        self.used = 0
        self.items: list = []  # ndarray (RAM) or (offset, shape) (file)
        self._file = None
        self._end = 0
        self.spilled = 0
        self._origin: dict[int, tuple[np.ndarray, int]] = {}  # item → (batch, row), `append_batch`

    def append(self, a: np.ndarray, owned: bool = False) -> None:
        """Keep `a` (copied, unless `owned`: an array nobody else writes, e.g. a slice of an
        ONNX Runtime output, kept as it is)."""
        a = np.ascontiguousarray(a, dtype=np.float32)
        if self.used + a.nbytes <= self.budget:
            self.items.append(a if owned else a.copy())
            self.used += a.nbytes
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="ptolemy_rt_pooled_")
        self._file.seek(self._end)
        self._file.write(a.tobytes())
        self.items.append((self._end, a.shape))
        self._end += a.nbytes
        self.spilled += 1

    def append_batch(self, batch: np.ndarray) -> None:
        """Keep each row of an owned batch (an ONNX Runtime output: nobody else writes it) as
        `append(row, owned=True)`; the rows kept in RAM are views of `batch`, remembered as
        (batch, row) so that `get_batch` can hand back a run of them without copying."""
        for r, row in enumerate(batch):
            self.append(row, owned=True)
            if isinstance(self.items[-1], np.ndarray) and np.shares_memory(self.items[-1], batch):
                self._origin[len(self.items) - 1] = (batch, r)

    def get_batch(self, idx: range) -> np.ndarray:
        """Items idx stacked (n × item shape): a view when they are consecutive rows of one
        batch kept by `append_batch`, else a copy."""
        origins = [self._origin.get(i) for i in idx]
        if origins and all(o is not None and o[0] is origins[0][0] and o[1] == origins[0][1] + k
                           for k, o in enumerate(origins)):
            batch, r0 = origins[0]
            return batch[r0:r0 + len(idx)]
        return np.stack([self.get(i) for i in idx])

    def get(self, i: int) -> np.ndarray:
        it = self.items[i]
        if isinstance(it, np.ndarray):
            return it
        off, shape = it
        nbytes = int(np.prod(shape)) * 4
        self._file.seek(off)
        buf = self._file.read(nbytes)
        if len(buf) != nbytes:
            raise OSError("temporary file for pooled activations was truncated")
        return np.frombuffer(buf, dtype=np.float32).reshape(shape)

    def close(self) -> None:
        self.items = []
        self._origin = {}
        if self._file is not None:
            self._file.close()
            self._file = None


def _conv_out(shape: tuple[int, int], k: int) -> tuple[int, int]:
    return shape[0] - k + 1, shape[1] - k + 1


def _pool_out(shape: tuple[int, int], pad: int) -> tuple[int, int]:
    return (shape[0] + 2 * pad - 3) // 2 + 1, (shape[1] + 2 * pad - 3) // 2 + 1


def _check_shape(arch, key: str, shape: tuple[int, int]) -> None:
    s = shape
    pad = arch.pool.padding
    for k in arch.kernels:
        s = _conv_out(s, k)
        if min(s) < 3 - 2 * pad:
            raise ValueError(f"{key}: crop of {shape[0]}×{shape[1]} px is too small for the network")
        s = _pool_out(s, pad)
    if isinstance(arch, SquareClassifierArch):
        if min(s) < arch.head_kernel:
            raise ValueError(f"{key}: crop of {shape[0]}×{shape[1]} px is too small for the network")


def _crop(get_crop: Callable[[int], np.ndarray], i: int) -> np.ndarray:
    c = np.asarray(get_crop(i))
    if c.ndim != 2:
        raise ValueError(f"crop {i}: expected a 2-D array, got shape {c.shape}")
    return np.ascontiguousarray(c, dtype=np.float32)


def _chunks(n: int, size: int):
    for s in range(0, n, size):
        yield range(s, min(n, s + size))


def _per_run(channels: int, zshape: tuple[int, int], budget: int) -> int:
    return max(1, int(budget // max(1, channels * zshape[0] * zshape[1] * 4)))


def logits(models: ModelSet, key: str, n: int, get_crop: Callable[[int], np.ndarray], batchnorm: str,
           *, pooled_ram_budget: int | None = None, run_budget: int | None = None) -> np.ndarray:
    """Float64 logits of crops 0..n-1 (shape (n,)); see ``score_crops``.

    Parameters
    ----------
    models
        The model set; its ``key`` entry's typed architecture (modelspec.ClassifierArch:
        kernels, pool, roles, bn_eps) says which parts to chain.
    key, n, get_crop, batchnorm, pooled_ram_budget, run_budget
        As for ``score_crops``.

    Returns
    -------
    numpy.ndarray
        float64 logits, shape (n,).

    Raises
    ------
    ValueError
        Unknown regime, ``key`` is not a classifier, a crop too small for the network or
        (published regime) crops of different shapes.

    Examples
    --------
    ``score_crops`` is the sigmoid of these logits:

    >>> from ptolemy_rt.models import load_model_set
    >>> ms = load_model_set("ptolemy-rt-synth-v1")
    >>> rng = np.random.default_rng(0)
    >>> crops = [rng.standard_normal((63, 63)).astype(np.float32) for _ in range(3)]
    >>> z = logits(ms, "hole_classifier", 3, crops.__getitem__, "running")
    >>> z.shape, z.dtype, bool(np.allclose(1 / (1 + np.exp(-z)), score_crops(ms, "hole_classifier", 3, crops.__getitem__, "running")))
    ((3,), dtype('float64'), True)
    >>> logits(ms, "hole_classifier", 2, lambda i: np.zeros((63 + i, 63), np.float32), "published")
    Traceback (most recent call last):
    ...
    ValueError: hole_classifier: batchnorm='published' needs crops of one shape; crop 1 is 64×63 px, crop 0 is 63×63 px
    >>> logits(ms, "hole_unet", 1, crops.__getitem__, "running")
    Traceback (most recent call last):
    ...
    ValueError: hole_unet: not a classifier (architecture family 'unet')
    """
    if batchnorm not in REGIMES:
        raise ValueError(f"batchnorm must be one of {REGIMES}, got {batchnorm!r}")
    n = int(n)
    if n <= 0:
        return np.zeros(0, dtype=np.float64)
    arch = models.model(key).architecture
    if not isinstance(arch, ClassifierArch):
        raise ValueError(f"{key}: not a classifier (architecture family {arch.family!r})")
    run_budget = RUN_BUDGET_BYTES if run_budget is None else int(run_budget)
    if batchnorm == "running":
        return _logits_running(models, key, arch, n, get_crop, run_budget)
    budget = POOLED_RAM_BUDGET_BYTES if pooled_ram_budget is None else int(pooled_ram_budget)
    return _logits_published(models, key, arch, n, get_crop, budget, run_budget)


def score_crops(models: ModelSet, key: str, n: int, get_crop: Callable[[int], np.ndarray], batchnorm: str,
                *, pooled_ram_budget: int | None = None, run_budget: int | None = None) -> np.ndarray:
    """Scores (float64 sigmoid of the logit), shape (n,), of crops ``get_crop(0..n-1)``.

    Memory is bounded: at most one stage's pooled tensors of all crops (beyond
    ``pooled_ram_budget`` bytes, default 64 MB, in a temporary file) plus one run of
    ≤ ``run_budget`` bytes of activations.

    Parameters
    ----------
    models : models.ModelSet
    key : str
        ``"square_classifier"`` or ``"hole_classifier"``.
    n : int
        Number of crops (0 gives an empty array).
    get_crop : callable
        get_crop(i) → 2-D float32 crop [row, col] (px), prepared by the caller (`lowmag.prepared_crop`,
        `medmag.prepare_crop`).
    batchnorm : str
        ``"published"`` (BN statistics of all n crops together; all crops must have one shape)
        or ``"running"`` (stored statistics, each crop alone; shapes may differ).
    pooled_ram_budget, run_budget : int or None
        Bytes; None: POOLED_RAM_BUDGET_BYTES, RUN_BUDGET_BYTES.

    Returns
    -------
    numpy.ndarray
        float64 scores in [0, 1], shape (n,).

    Raises
    ------
    ValueError
        As `logits`.

    Examples
    --------
    The 9 square crops of a synthetic atlas (`lowmag.locate_squares`): the own set ranks the
    4 squares fully inside the image (candidates 3, 4, 6, 7) above the 5 cut by the edge.
    Published BatchNorm statistics depend on the whole batch, running ones do not:

    >>> from ptolemy_rt import lowmag, synthetic
    >>> from ptolemy_rt.models import load_model_set
    >>> ms = load_model_set("ptolemy-rt-synth-v1")
    >>> image, truth = synthetic.atlas(0, (256, 256), pitch=100.0, angle_deg=0.0, side_fraction=0.6)
    >>> cand = lowmag.locate_squares(image)
    >>> crop = lambda i: lowmag.prepared_crop(cand, i)
    >>> s = score_crops(ms, "square_classifier", cand.n, crop, "published")
    >>> sorted(np.argsort(-s)[:4].tolist()), [t.visible_fraction == 1.0 for t in truth].count(True)
    ([3, 4, 6, 7], 4)
    >>> run = score_crops(ms, "square_classifier", cand.n, crop, "running")
    >>> bool(np.array_equal(score_crops(ms, "square_classifier", 3, crop, "running"), run[:3]))
    True
    >>> bool(np.array_equal(score_crops(ms, "square_classifier", 3, crop, "published"), s[:3]))
    False
    """
    z = logits(models, key, n, get_crop, batchnorm, pooled_ram_budget=pooled_ram_budget, run_budget=run_budget)
    return sigmoid(z)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^−z) in float64, without overflow: the score of a logit.

    Examples
    --------
    >>> sigmoid(np.array([0.0, 800.0, -800.0])).tolist()
    [0.5, 1.0, 0.0]
    """
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, dtype=np.float64)))


def _logits_running(models, key, arch, n, get_crop, run_budget) -> np.ndarray:
    sess = models.session(key, arch.running_role)
    c = arch.channels
    k0 = arch.kernels[0]
    out = np.empty(n, dtype=np.float64)
    i = 0
    nxt = _crop(get_crop, 0)
    while i < n:
        first = nxt
        _check_shape(arch, key, first.shape)
        per = _per_run(c, _conv_out(first.shape, k0), run_budget)
        batch = [first]
        nxt = None
        j = i + 1
        while j < n:
            nxt = _crop(get_crop, j)
            if nxt.shape != first.shape or len(batch) >= per:
                break
            batch.append(nxt)
            nxt = None
            j += 1
        y = sess.run(["logit"], {"x": np.stack(batch)[:, None]})[0]
        out[i:i + len(batch)] = _one_logit(y, key)
        i += len(batch)
    return out


def _one_logit(y: np.ndarray, key: str) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != 1:
        raise ValueError(f"{key}: network output has shape {y.shape}, expected (N, 1)")
    return y[:, 0]


def _affine_from_stats(table_k: np.ndarray, counts: np.ndarray, means: np.ndarray, m2s: np.ndarray,
                       eps: float) -> tuple[np.ndarray, np.ndarray]:
    """BN affine (a, b) (float32, 1×C×1×1) from per-crop counts (n,), means and centred sums
    of squares (n×C float64): batch mean and biased variance by Chan's formula."""
    total = counts.sum()
    w = counts[:, None]
    mean = (w * means).sum(axis=0) / total
    m2 = m2s.sum(axis=0) + (w * (means - mean) ** 2).sum(axis=0)
    var = m2 / total
    gamma, beta = table_k[0].astype(np.float64), table_k[1].astype(np.float64)
    a = gamma / np.sqrt(var + eps)
    b = beta - a * mean
    return (a.astype(np.float32).reshape(1, -1, 1, 1), b.astype(np.float32).reshape(1, -1, 1, 1))


def _logits_published(models, key, arch, n, get_crop, budget, run_budget) -> np.ndarray:
    table = np.load(models.part_path(key, arch.batchnorm_role), allow_pickle=False)
    eps = arch.bn_eps
    roles = arch.stage_roles
    kernels = list(arch.kernels)
    c = arch.channels
    pad = arch.pool.padding
    first = _crop(get_crop, 0)
    shape = first.shape
    _check_shape(arch, key, shape)
    # Stage 1's pooled output is the largest stored tensor (published set: ~3.6 MB per 240 px
    # crop) and the cheapest to make (1 input channel: ~6 % of its FLOPs): unless all crops'
    # fit in `budget` (the own sets' 16 channels: 0.9 MB per crop, a quarter of their FLOPs), it
    # is not stored but made again from the crops when stage 2 runs (the stats-free graph when
    # the set declares it, else the full stage-1 graph: the same numbers).
    pooled1 = _pool_out(_conv_out(shape, kernels[0]), pad)
    keep_stage1 = n * c * pooled1[0] * pooled1[1] * 4 <= budget
    crop_store = _PooledStore(min(CROP_RAM_BUDGET_BYTES, budget))

    def crops_of(idx: range) -> np.ndarray:
        """Crops idx (stage-1 pass: prepared, and kept unless stage 1's output is; stage-2 pass: read back)."""
        if idx.start < len(crop_store.items):
            return np.stack([crop_store.get(i) for i in idx])[:, None]
        crops = []
        for i in idx:
            cr = first if i == 0 else _crop(get_crop, i)
            if cr.shape != shape:
                raise ValueError(f"{key}: batchnorm='published' needs crops of one shape; crop {i} is "
                                 f"{cr.shape[0]}×{cr.shape[1]} px, crop 0 is {shape[0]}×{shape[1]} px")
            crops.append(cr)
            if not keep_stage1:
                crop_store.append(cr)
        return np.stack(crops)[:, None]

    per1 = _per_run(c, _conv_out(shape, kernels[0]), run_budget)
    prev: _PooledStore | None = None
    store: _PooledStore | None = None
    scale = shift = None
    in_shape = shape
    try:
        for k, role in enumerate(roles):
            sess = models.session(key, role)
            store = _PooledStore(budget) if k > 0 or keep_stage1 else None
            means = np.empty((n, c), dtype=np.float64)
            m2s = np.empty((n, c), dtype=np.float64)
            zshape = _conv_out(in_shape, kernels[k])
            per = _per_run(c, zshape, run_budget)
            # k == 1 without stage 1's output kept: made again from the crops; with it kept: read
            # in stage 1's own runs (`get_batch` hands them back without copying)
            sess1 = models.session(key, arch.stage1_pool_role or roles[0]) if k == 1 and prev is None else None
            if sess1 is not None:
                per = min(per, per1)
            elif k == 1:
                per = per1
            for idx in _chunks(n, per):
                if k == 0:
                    if keep_stage1:
                        mean, m2, pooled = sess.run(["mean", "m2", "pooled"], {"x": crops_of(idx)})
                    else:
                        mean, m2 = sess.run(["mean", "m2"], {"x": crops_of(idx)})
                        pooled = None
                else:
                    if sess1 is not None:
                        x = sess1.run(["pooled"], {"x": crops_of(idx)})[0]
                    else:
                        x = prev.get_batch(idx)
                    mean, m2, pooled = sess.run(["mean", "m2", "pooled"], {"x": x, "scale": scale, "shift": shift})
                    del x
                means[idx.start:idx.stop] = mean
                m2s[idx.start:idx.stop] = m2
                if pooled is not None:
                    store.append_batch(pooled)
                    del pooled
            counts = np.full(n, float(zshape[0] * zshape[1]))
            scale, shift = _affine_from_stats(table[k], counts, means, m2s, eps)
            if k == 1:
                first = None  # crops are not needed any more
                crop_store.close()
            if prev is not None:
                prev.close()
            prev, store = store, None
            in_shape = _pool_out(zshape, pad)
        if prev is None:  # head directly after stage 1, its output not kept: made again
            sess1 = models.session(key, arch.stage1_pool_role or roles[0])
            prev = _PooledStore(budget)
            for idx in _chunks(n, per1):
                prev.append_batch(sess1.run(["pooled"], {"x": crops_of(idx)})[0])
        head = models.session(key, arch.head_role)
        out = np.empty(n, dtype=np.float64)
        per = _per_run(c, in_shape, run_budget)
        for idx in _chunks(n, per):
            y = head.run(["logit"], {"x": prev.get_batch(idx), "scale": scale, "shift": shift})[0]
            out[idx.start:idx.stop] = _one_logit(y, key)
        return out
    finally:
        for st in (prev, store, crop_store):
            if st is not None:
                st.close()
