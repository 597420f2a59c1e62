"""Active learning for ``ptolemy serve``, torch-free (numpy / scipy): Gaussian processes that
re-rank squares from the exposures' CTF and predict each hole's ice thickness and CTF.

Square level (published ``run_lm_gp``, LEGINON_PTOLEMY_SERVER.md §3.1): inputs are the
squares' feature vectors, the target of a visited square is the number of its visited holes
whose CTF resolution is below ``CTF_CUTOFF_A`` (5 Å). Published rule: constant mean 20, scaled
RBF (ARD) kernel with output scale 500, lengthscale per dimension = softplus(25th percentile
of the feature over the squares with prior_score > 0.2), Gaussian noise variance
softplus(15) + 1e-4, no fitting. Prediction includes the observation noise; the acquisition
is the upper confidence bound mean + κ·σ with κ = 2, and ``GP_probs`` is that value divided
by its maximum over the returned (unvisited) squares, so the best square has 1.0. The
published server estimated mean and σ from 10,000 joint samples; here they are exact (the
sample estimate converges to them), so the ranking is deterministic.

Fitted rule (``rule="fitted"``): the same model on z-scored features with mean, output scale,
ARD lengthscales and noise fitted to the session by maximising the log marginal likelihood
(L-BFGS-B in log space, under a wall-clock cap); with fewer than ``MIN_FIT_POINTS`` visited
squares it uses the published constants.

Hole level (published ``run_mm_gp``, §3.2): two targets in the order [ice_thickness, ctf]. With
at most one visited hole every hole gets the constants of ``HOLE_COLD``. Otherwise a GP is
conditioned on the visited holes: published = the intrinsic-coregionalisation multitask model
with the constants decoded from the published checkpoint (`PUBLISHED_HOLE_GP`, meant for the
published 256-d pooled features); fitted = one GP per target on z-scored features with fitted
hyper-parameters. Variances include the observation noise.
"""
from __future__ import annotations

import collections
import hashlib
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

CTF_CUTOFF_A = 5.0  # Å: a hole is "good" when its CTF fit resolution is below this
KAPPA = 2.0  # UCB mean + κ σ (published)
FITTED_KAPPA = 1.0  # κ of the fitted rule (ptolemy_rt.session_sim: chosen on seeds 0-9 among 0, 0.25, 0.5, 1; checked on 100-109)
SQUARE_MEAN = 20.0  # lm_gp_mean_constant
SQUARE_OUTPUTSCALE = 500.0  # lm_gp_outputscale
SQUARE_NOISE_RAW = 15.0  # lm_gp_noise_constant (raw; variance = softplus(raw) + 1e-4)
SQUARE_PRIOR_MIN = 0.2  # lengthscale percentile taken over squares with prior_score above this
NOISE_FLOOR = 1e-4  # gpytorch's GreaterThan(1e-4) noise constraint
MIN_FIT_POINTS = 3  # fewer training points: fitted rules use the published constants
FIT_MAX_EVALS = 40  # objective evaluations of one hyper-parameter fit (deterministic stop)
FIT_TIME_CAP_S = 1.0  # wall-clock safety cap of one fit, s (only hit on a very slow or loaded machine)
FIT_MAX_POINTS = 100  # hyper-parameters are fitted on at most this many (evenly spaced) points
MAX_TRAIN_POINTS = 500  # GPs are conditioned on at most the last this many points (cf. the published soft cap)
HOLE_COLD = {"ctf_pred": 2.0, "ice_pred": 50.0, "ctf_var": 1.0, "ice_var": 20.0}
RULES = ("published", "fitted")


def softplus(x):
    """log(1 + exp(x)), overflow-safe (gpytorch's positive constraint).

    >>> round(float(softplus(0.0)), 6)
    0.693147
    """
    x = np.asarray(x, dtype=np.float64)
    return np.logaddexp(0.0, x)


@dataclass(frozen=True)
class GPParams:
    """Hyper-parameters of a single-output GP with constant mean and scaled RBF kernel
    k(a, b) = outputscale · exp(−½ Σ_d ((a_d − b_d) / ℓ_d)²); noise = observation variance."""

    mean: float
    lengthscale: np.ndarray  # (D,) or scalar, in feature units
    outputscale: float
    noise: float


#: published multitask hole GP (decoded from the 2023 checkpoint, §3.3); task 0 = ice, 1 = ctf
PUBLISHED_HOLE_GP = {
    "mean": np.array([76.7207, 4.77042]),
    "lengthscale": float(softplus(2.71136)),
    "task_covar": np.array([[-4.96441, 8.61690], [-1.26159, -0.57384]]) @ np.array(
        [[-4.96441, 8.61690], [-1.26159, -0.57384]]).T + np.diag(softplus(np.array([4.24526, -0.59269]))),
    "noise": softplus(np.array([32.04007, -0.25143])) + NOISE_FLOOR + float(softplus(-2.37378)) + NOISE_FLOOR,
}


def rbf(a: np.ndarray, b: np.ndarray, lengthscale) -> np.ndarray:
    """RBF correlation exp(−½ ‖(a − b) / ℓ‖²) between the rows of a (N×D) and b (M×D).

    >>> rbf(np.zeros((1, 2)), np.array([[0.0, 0.0], [1.0, 0.0]]), 1.0).round(4).tolist()
    [[1.0, 0.6065]]
    """
    ls = np.asarray(lengthscale, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64) / ls
    b = np.asarray(b, dtype=np.float64) / ls
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.exp(-0.5 * np.maximum(d2, 0.0))


def _chol(k: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of k, adding jitter (1e-8 × mean diagonal, ×10 per try) if needed."""
    from scipy.linalg import cholesky

    jitter = 0.0
    for _ in range(8):
        try:
            return cholesky(k + jitter * np.eye(len(k)), lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            jitter = max(jitter * 10.0, 1e-8 * float(np.mean(np.diag(k))) or 1e-8)
    raise np.linalg.LinAlgError("covariance matrix not positive definite")


def _lsolve(lo: np.ndarray, b: np.ndarray) -> np.ndarray:
    """lo⁻¹ b for a lower-triangular lo."""
    from scipy.linalg import solve_triangular

    return solve_triangular(lo, b, lower=True, check_finite=False)


def _csolve(lo: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(lo loᵀ)⁻¹ b."""
    from scipy.linalg import cho_solve

    return cho_solve((lo, True), b, check_finite=False)


def gp_predict(x: np.ndarray, y: np.ndarray, xs: np.ndarray, p: GPParams, include_noise: bool = True):
    """Posterior mean and variance at xs of a GP conditioned on (x, y).

    Parameters
    ----------
    x : (N, D) array
        Training inputs. y : (N,) targets. xs : (M, D) query inputs.
    p : GPParams
    include_noise : bool
        Add the observation noise to the variance (as the published ``likelihood(model(x))``).

    Returns
    -------
    mean, var : (M,) arrays

    >>> m, v = gp_predict(np.zeros((1, 1)), np.array([3.0]), np.zeros((1, 1)), GPParams(0.0, 1.0, 1.0, 1.0), False)
    >>> round(float(m[0]), 9), round(float(v[0]), 9)
    (1.5, 0.5)
    """
    x = np.asarray(x, float)
    xs = np.asarray(xs, float)
    y = np.asarray(y, float)
    if len(x) == 0:
        var = np.full(len(xs), p.outputscale + (p.noise if include_noise else 0.0))
        return np.full(len(xs), p.mean), var
    k = p.outputscale * rbf(x, x, p.lengthscale) + p.noise * np.eye(len(x))
    ks = p.outputscale * rbf(xs, x, p.lengthscale)
    lo = _chol(k)
    alpha = _csolve(lo, y - p.mean)
    mean = p.mean + ks @ alpha
    v = _lsolve(lo, ks.T)
    var = np.maximum(p.outputscale - (v * v).sum(0), 0.0) + (p.noise if include_noise else 0.0)
    return mean, var


def neg_log_marginal_likelihood(x: np.ndarray, y: np.ndarray, p: GPParams) -> float:
    """−log p(y | x, p) of the GP (the quantity `fit_gp` minimises).

    Parameters
    ----------
    x : numpy.ndarray, shape (N, D)
        Training inputs (feature units).
    y : numpy.ndarray, shape (N,)
        Training targets.
    p : GPParams
        Hyper-parameters.

    Returns
    -------
    float
        Negative log marginal likelihood (nats).

    Examples
    --------
    >>> # one point at the mean, variance outputscale + noise = 2: ½ log(2π·2)
    >>> round(neg_log_marginal_likelihood(np.zeros((1, 1)), np.array([0.0]), GPParams(0.0, 1.0, 1.0, 1.0)), 6)
    1.265512
    """
    return _nlml_and_grad(np.asarray(x, float), np.asarray(y, float), _pack(p))[0]


def _pack(p: GPParams) -> np.ndarray:
    ls = np.broadcast_to(np.asarray(p.lengthscale, float), (1,)) if np.ndim(p.lengthscale) == 0 else p.lengthscale
    return np.concatenate([[p.mean, math.log(p.outputscale), math.log(p.noise)], np.log(np.asarray(ls, float))])


def _unpack(t: np.ndarray) -> GPParams:
    return GPParams(float(t[0]), np.exp(np.asarray(t[3:], float)), float(np.exp(t[1])), float(np.exp(t[2])))


def _nlml_and_grad(x: np.ndarray, y: np.ndarray, t: np.ndarray, diff2: np.ndarray | None = None):
    """NLML and its gradient in the packed parameters [mean, log s, log noise, log ℓ_1..D]
    (one shared ℓ when t has 4 entries); ``diff2``: the (n, n, d) squared differences of x,
    when the caller has them (they do not change during a fit)."""
    p = _unpack(t)
    n, d = x.shape
    ls = np.broadcast_to(p.lengthscale, (d,))
    if diff2 is None:
        diff2 = (x[:, None, :] - x[None, :, :]) ** 2  # (n, n, d)
    r = np.exp(-0.5 * (diff2 / ls ** 2).sum(-1))
    k = p.outputscale * r + p.noise * np.eye(n)
    lo = _chol(k)
    res = y - p.mean
    a = _csolve(lo, res)
    nll = float(0.5 * res @ a + np.log(np.diag(lo)).sum() + 0.5 * n * math.log(2 * math.pi))
    kinv = _csolve(lo, np.eye(n))
    w = kinv - np.outer(a, a)
    sr = p.outputscale * r
    g = [-a.sum(), 0.5 * float((w * sr).sum()), 0.5 * p.noise * float(np.trace(w))]
    gl = 0.5 * np.einsum("ij,ijd->d", w * sr, diff2) / ls ** 2
    g += list(gl) if len(t) - 3 == d else [float(gl.sum())]
    return nll, np.array(g)


def fit_gp(x: np.ndarray, y: np.ndarray, max_evals: int = FIT_MAX_EVALS, time_cap_s: float = FIT_TIME_CAP_S) -> GPParams:
    """Hyper-parameters maximising the marginal likelihood of (x, y), x already z-scored.

    Mean, output scale, ARD lengthscales and noise are fitted (scales in log space) with
    L-BFGS-B and the analytic gradient, from a data-driven start, for at most ``max_evals``
    evaluations (deterministic), on at most ``FIT_MAX_POINTS`` evenly spaced points;
    ``time_cap_s`` is a safety net only (when it cuts the search, the best point so far is
    returned). Bounds: lengthscales [0.05, 100] (z units),
    output scale [1e-3, 1e3]·var(y), noise [1e-4, 10]·var(y).

    Parameters
    ----------
    x : (N, D) array. y : (N,) array.
    max_evals : int
        Most objective evaluations. time_cap_s : float
        Wall-clock safety cap, seconds.

    Returns
    -------
    GPParams

    Examples
    --------
    A smooth function of the first input only: its lengthscale comes out far shorter than
    the second input's.

    >>> x = np.linspace(-2, 2, 30)[:, None] * np.ones((1, 2)); x[:, 1] = np.cos(7 * x[:, 1])
    >>> p = fit_gp(x, np.sin(x[:, 0]), time_cap_s=30)
    >>> bool(p.lengthscale[0] < p.lengthscale[1]), bool(p.noise < 0.01)
    (True, True)
    """
    from scipy.optimize import minimize

    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if len(y) > FIT_MAX_POINTS:
        keep = np.unique(np.linspace(0, len(y) - 1, FIT_MAX_POINTS).round().astype(int))
        x, y = x[keep], y[keep]
    n, d = x.shape
    key = _fit_key(x, y, max_evals)
    with _FIT_LOCK:
        hit = _FIT_CACHE.get(key)
        if hit is not None:
            _FIT_CACHE.move_to_end(key)
            return hit
    vy = float(np.var(y)) if n > 1 else 1.0
    vy = vy if vy > 1e-12 else 1.0
    start = np.concatenate([[float(np.mean(y)), math.log(vy), math.log(0.1 * vy)], np.zeros(d)])
    bounds = [(None, None), (math.log(1e-3 * vy), math.log(1e3 * vy)), (math.log(1e-4 * vy), math.log(10 * vy))]
    bounds += [(math.log(0.05), math.log(100.0))] * d
    best = [start, math.inf]
    t_end = time.perf_counter() + time_cap_s
    diff2 = (x[:, None, :] - x[None, :, :]) ** 2  # fixed during the fit

    class _Stop(Exception):
        pass

    def f(t):
        if time.perf_counter() > t_end and math.isfinite(best[1]):
            raise _Stop
        try:
            v, g = _nlml_and_grad(x, y, t, diff2)
        except np.linalg.LinAlgError:
            return 1e300, np.zeros_like(t)
        if v < best[1]:
            best[0], best[1] = np.array(t), v
        return v, g

    try:
        minimize(f, start, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxfun": max_evals})
    except _Stop:  # cut by the time cap: not remembered (another try may get further)
        return _unpack(best[0])
    out = _unpack(best[0])
    with _FIT_LOCK:
        _FIT_CACHE[key] = out
        while len(_FIT_CACHE) > FIT_CACHE_SIZE:
            _FIT_CACHE.popitem(last=False)
    return out


#: fits remembered by their exact inputs (a repeated query with unchanged training data,
#: e.g. select_next_square called again before a new exposure, skips the optimiser; the
#: answer is the one the fit gives, so the cache changes no result)
FIT_CACHE_SIZE = 32
_FIT_CACHE: "collections.OrderedDict[str, GPParams]" = collections.OrderedDict()
_FIT_LOCK = threading.Lock()


def _fit_key(x: np.ndarray, y: np.ndarray, max_evals: int) -> str:
    h = hashlib.sha256(f"{x.shape}{y.shape}{max_evals}".encode())
    h.update(np.ascontiguousarray(x, np.float64).tobytes())
    h.update(np.ascontiguousarray(y, np.float64).tobytes())
    return h.hexdigest()


def zscore(all_x: np.ndarray, *parts: np.ndarray):
    """Scale ``parts`` by the per-column mean / std of ``all_x`` (std 0 → 1).

    Parameters
    ----------
    all_x : numpy.ndarray, shape (N, D)
        Rows that define the per-column mean and (population) std.
    *parts : numpy.ndarray, shape (M, D)
        Arrays to scale.

    Returns
    -------
    list of numpy.ndarray
        One scaled float array per part, in order.

    Examples
    --------
    >>> zscore(np.array([[0.0, 5.0], [2.0, 5.0]]), np.array([[3.0, 6.0]]))[0].tolist()
    [[2.0, 1.0]]
    """
    all_x = np.asarray(all_x, float)
    mu = all_x.mean(0)
    sd = all_x.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return [(np.asarray(p, float) - mu) / sd for p in parts]


# ------------------------------------------------------------------------------ squares


def square_targets(square_ids, hole_square_ids, hole_ctfs, cutoff: float = CTF_CUTOFF_A) -> np.ndarray:
    """Per square: the number of its visited holes with ctf < cutoff (Å).

    >>> square_targets([1, 2], [1, 1, 2], [3.0, 6.0, 4.9]).tolist()
    [1.0, 1.0]
    """
    ctf = np.asarray(hole_ctfs, float)
    good = np.asarray(hole_square_ids)[ctf < cutoff] if len(ctf) else np.zeros(0, int)
    counts: dict = {}
    for s in good.tolist():
        counts[s] = counts.get(s, 0) + 1
    return np.array([float(counts.get(s, 0)) for s in square_ids])


def published_square_params(all_features: np.ndarray, all_prior: np.ndarray) -> GPParams:
    """The published fixed hyper-parameters of the square GP (LEGINON_PTOLEMY_SERVER.md §3.1).

    Parameters
    ----------
    all_features : numpy.ndarray, shape (N, D)
        Features of every square of the session (all grids, visited or not).
    all_prior : numpy.ndarray, shape (N,)
        Their prior scores.

    Returns
    -------
    GPParams
        mean 20, output scale 500, noise softplus(15) + 1e-4, lengthscale per dimension
        softplus(25th percentile) of the features of the squares with prior_score > 0.2
        (all squares when none is).

    Examples
    --------
    >>> p = published_square_params(np.array([[10.0], [20.0], [30.0], [1e6]]), [0.9, 0.5, 0.3, 0.1])
    >>> round(float(p.lengthscale[0]), 6), p.mean, p.outputscale, round(p.noise, 4)
    (15.0, 20.0, 500.0, 15.0001)
    """
    f = np.asarray(all_features, float)
    keep = np.asarray(all_prior, float) > SQUARE_PRIOR_MIN
    f = f[keep] if keep.any() else f
    ls = softplus(np.percentile(f, 25, axis=0))
    return GPParams(SQUARE_MEAN, ls, SQUARE_OUTPUTSCALE, float(softplus(SQUARE_NOISE_RAW)) + NOISE_FLOOR)


def ucb_probs(mean: np.ndarray, var: np.ndarray, kappa: float = KAPPA) -> np.ndarray:
    """mean + κ √var, divided by its maximum (the best square gets 1.0). A non-positive
    maximum (possible with fitted means) is handled by shifting so the minimum is 0 first;
    all-equal values give all 1.0.

    >>> ucb_probs(np.array([1.0, 3.0]), np.array([0.0, 0.0])).tolist()
    [0.3333333333333333, 1.0]
    """
    u = np.asarray(mean, float) + kappa * np.sqrt(np.maximum(var, 0.0))
    if len(u) == 0:
        return u
    top = float(u.max())
    if top <= 0.0:
        u = u - float(u.min())
        top = float(u.max())
        if top <= 0.0:
            return np.ones_like(u)
    return u / top


def rank_squares(train_x, train_y, cand_x, all_x, all_prior, cand_prior=None, train_prior=None,
                 rule: str = "published", time_cap_s: float = FIT_TIME_CAP_S) -> np.ndarray:
    """``GP_probs`` of the candidate (unvisited) squares.

    Parameters
    ----------
    train_x : (N, D) features of the visited squares; train_y : (N,) their targets
        (`square_targets`). cand_x : (M, D) features of the candidates. all_x, all_prior :
        features and prior scores of every square of the session (lengthscales, scaling).
    cand_prior, train_prior : (M,), (N,) prior scores of candidates and visited squares
        (the fitted rule uses them; default: all 1).
    rule : "published" or "fitted".

    Returns
    -------
    (M,) array, the best candidate 1.0 (`ucb_probs`).

    Notes
    -----
    published: the fixed-constant GP of the module docstring on the raw features; with no
    visited square every candidate gets 1/M (as published).

    fitted: the prior score carries the information before any exposure, so the mean
    function is proportional to it: m = c · prior, c = Σ y / Σ prior over the visited
    squares (good holes per unit of prior). A GP on the residual y − m, over the z-scored
    features plus the prior score, has hyper-parameters fitted to the session (`fit_gp`;
    below ``MIN_FIT_POINTS`` squares: ℓ = 1, output scale and noise from the targets' scale).
    UCB = m + GP mean + κ σ with κ = ``FITTED_KAPPA`` (1.0, chosen with `session_sim` on
    seeds 0-9 among 0, 0.25, 0.5 and 1, checked on seeds 100-109). With no visited square:
    the prior scores over their maximum.

    Raises
    ------
    ValueError
        ``rule`` is not one of ``RULES``.

    Examples
    --------
    >>> none = np.zeros((0, 1))  # no visited square yet
    >>> rank_squares(none, np.zeros(0), np.zeros((4, 1)), np.zeros((4, 1)), np.ones(4)).tolist()
    [0.25, 0.25, 0.25, 0.25]
    >>> prior = np.array([0.2, 0.8])
    >>> rank_squares(none, np.zeros(0), np.zeros((2, 1)), np.zeros((2, 1)), prior, cand_prior=prior,
    ...              rule="fitted").tolist()
    [0.25, 1.0]
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    cand_x = np.asarray(cand_x, float)
    m = len(cand_x)
    if m == 0:
        return np.zeros(0)
    train_x, train_y = np.asarray(train_x, float)[-MAX_TRAIN_POINTS:], np.asarray(train_y, float)[-MAX_TRAIN_POINTS:]
    if train_prior is not None:
        train_prior = np.asarray(train_prior, float)[-MAX_TRAIN_POINTS:]
    n = len(train_y)
    if rule == "published":
        if n == 0:
            return np.full(m, 1.0 / m)
        p = published_square_params(all_x, all_prior)
        mean, var = gp_predict(train_x, train_y, cand_x, p, include_noise=True)
        return ucb_probs(mean, var)
    cp = np.asarray(cand_prior if cand_prior is not None else np.ones(m), float)
    if n == 0:
        return ucb_probs(cp, np.zeros(m))
    tp = np.asarray(train_prior if train_prior is not None else np.ones(n), float)
    ap = np.asarray(all_prior, float)
    c = float(train_y.sum() / max(tp.sum(), 1e-9))
    resid = train_y - c * tp
    tx, cx = zscore(np.column_stack([all_x, ap]), np.column_stack([train_x, tp]), np.column_stack([cand_x, cp]))
    if n < MIN_FIT_POINTS:
        scale = max(float(np.var(train_y)), float(np.mean(train_y)), 1.0)
        p = GPParams(0.0, 1.0, scale, 0.5 * scale)
    else:
        p = fit_gp(tx, resid, time_cap_s=time_cap_s)
    mean, var = gp_predict(tx, resid, cx, p, include_noise=True)
    return ucb_probs(c * cp + mean, var, FITTED_KAPPA)


# ------------------------------------------------------------------------------ holes


def multitask_predict(x, y2, xs, mean2, lengthscale, task_covar, noise2):
    """Intrinsic-coregionalisation GP with 2 tasks: cov((x,i),(x',j)) = B_ij k(x, x'),
    observation noise per task. y2 is (N, 2) with every task observed at every x.

    Parameters
    ----------
    x : (N, D) training inputs; y2 : (N, 2) their values, column i = task i.
    xs : (M, D) inputs to predict. mean2 : (2,) constant mean per task.
    lengthscale : float or (D,) RBF lengthscale(s), feature units.
    task_covar : (2, 2) task covariance B. noise2 : (2,) observation noise variance per task.

    Returns
    -------
    mean (M, 2), var (M, 2): predictive, noise included.

    Examples
    --------
    >>> # one point observed as (2, 4), independent tasks of unit variance and unit noise:
    >>> # the prediction there halves the values; variance 1 − ½ + 1 noise
    >>> m, v = multitask_predict(np.zeros((1, 1)), np.array([[2.0, 4.0]]), np.zeros((1, 1)),
    ...                          [0.0, 0.0], 1.0, np.eye(2), [1.0, 1.0])
    >>> np.round(m, 9).tolist(), np.round(v, 9).tolist()
    ([[1.0, 2.0]], [[1.5, 1.5]])
    """
    x = np.asarray(x, float)
    xs = np.asarray(xs, float)
    y2 = np.asarray(y2, float)
    b = np.asarray(task_covar, float)
    kx = rbf(x, x, lengthscale)
    k = np.kron(b, kx) + np.diag(np.repeat(np.asarray(noise2, float), len(x)))
    ks = np.kron(b, rbf(xs, x, lengthscale))  # (2M, 2N), task-major
    lo = _chol(k)
    r = (y2 - np.asarray(mean2, float)).T.ravel()
    alpha = _csolve(lo, r)
    mean = (np.repeat(np.asarray(mean2, float), len(xs)) + ks @ alpha).reshape(2, -1).T
    v = _lsolve(lo, ks.T)
    prior = np.repeat(np.diag(b), len(xs))
    var = (np.maximum(prior - (v * v).sum(0), 0.0) + np.repeat(np.asarray(noise2, float), len(xs)))
    return mean, var.reshape(2, -1).T


def predict_holes(train_f, train_ice, train_ctf, cand_f, rule: str = "published",
                  time_cap_s: float = FIT_TIME_CAP_S) -> dict[str, np.ndarray]:
    """Predicted ice thickness and CTF (with variances) of candidate holes.

    Parameters
    ----------
    train_f : (N, D) features of visited holes; train_ice, train_ctf : (N,) their values.
    cand_f : (M, D) features of the holes to predict.
    rule : "published" (multitask GP, published constants) or "fitted" (one GP per target,
        z-scored features, fitted hyper-parameters; published constants below
        ``MIN_FIT_POINTS``).

    Returns
    -------
    dict with "ctf_pred", "ice_pred", "ctf_var", "ice_var": (M,) arrays. With at most one
    training hole, the constants of ``HOLE_COLD`` (as published). Only the last
    ``MAX_TRAIN_POINTS`` training holes are used (the published server drops the oldest
    points past its 5 s soft cap; a count keeps the answer deterministic).

    Raises
    ------
    ValueError
        ``rule`` is not one of ``RULES``.

    Examples
    --------
    >>> out = predict_holes(np.zeros((1, 5)), [80.0], [4.0], np.zeros((2, 5)))  # one hole: cold
    >>> out["ice_pred"].tolist(), out["ctf_pred"].tolist(), out["ice_var"].tolist()
    ([50.0, 50.0], [2.0, 2.0], [20.0, 20.0])
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    m = len(cand_f)
    n = len(train_ice)
    if n <= 1 or m == 0:
        return {k: np.full(m, v) for k, v in HOLE_COLD.items()}
    tf = np.asarray(train_f, float)[-MAX_TRAIN_POINTS:]
    cf = np.asarray(cand_f, float)
    y2 = np.column_stack([train_ice, train_ctf]).astype(float)[-MAX_TRAIN_POINTS:]
    if rule == "published" or n < MIN_FIT_POINTS:
        g = PUBLISHED_HOLE_GP
        mean, var = multitask_predict(tf, y2, cf, g["mean"], g["lengthscale"], g["task_covar"], g["noise"])
        return {"ice_pred": mean[:, 0], "ctf_pred": mean[:, 1], "ice_var": var[:, 0], "ctf_var": var[:, 1]}
    tz, cz = zscore(np.vstack([tf, cf]), tf, cf)
    out = {}
    for name, y in (("ice", y2[:, 0]), ("ctf", y2[:, 1])):
        p = fit_gp(tz, y, time_cap_s=time_cap_s / 2)
        mu, var = gp_predict(tz, y, cz, p, include_noise=True)
        out[f"{name}_pred"], out[f"{name}_var"] = mu, var
    return out
