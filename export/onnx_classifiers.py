"""Export the two classifiers to ONNX graphs that express both BatchNorm regimes.

BatchNorm with any statistics is a per-channel affine map y = a·z + b, with
a = gamma / sqrt(var + eps) and b = beta − a·mean, so sign(a) = sign(gamma) = s (s = +1
where gamma = 0). Max-pooling commutes with it: maxpool(a·z + b) = a·pool_s(z) + b, where
pool_s(z) = s·maxpool(s·z) (max-pool where s > 0, min-pool where s < 0; padding never wins
in either). For the hole net ReLU after BN is monotone, so the same holds for
maxpool(relu(a·z + b)) = relu(a·pool_s(z) + b).

Hence each network is exported as one graph per stage plus a head graph (roles
``stage1``..``stageK``, ``head``), which the runtime (ptolemy_rt/classifier.py) chains:

- ``stage1``: input ``x`` N×1×H×W (the crops).
  ``stage{k}`` (k > 1): inputs ``x`` (the previous stage's ``pooled``), ``scale`` and
  ``shift`` (1×C×1×1 float32: the previous BN as a·x + b; for the hole net followed by ReLU).
  Then conv (+ ReLU for the square net) → z, the tensor BatchNorm k normalises.
  Outputs: ``mean`` N×C (per-crop per-channel mean of z), ``m2`` N×C (per-crop per-channel
  centred sum of squares of z; crops are combined exactly with Chan's parallel formula),
  ``pooled`` N×C×h×w = pool_s(z).
- ``stage1_pool``: ``stage1`` without the statistics (output ``pooled`` only): the runtime
  computes stage 1's statistics in one pass and makes its pooled tensors again, more
  cheaply, in the stage-2 pass instead of storing them (they are the largest).
- ``head``: inputs ``x`` (last ``pooled``), ``scale``, ``shift`` → ``logit`` N×1.
- ``full`` (running statistics only): the whole network with the stored running statistics
  folded in, input ``x`` N×1×H×W → ``logit`` N×1.
- ``batchnorm`` (``.npy``, float32 K×5×C): per stage gamma, beta, running_mean,
  running_var, s. eps is in the architecture block.

Graphs are built directly with ``onnx.helper`` (opset 17), so the bytes are deterministic.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from ptolemy_rt.modelspec import HoleClassifierArch, SquareClassifierArch, default

OPSET = 17
IR_VERSION = 8  # opset 17 needs IR ≥ 8; keep it low for older onnxruntime builds
PRODUCER = "ptolemy-rt export.onnx_classifiers"
BN_EPS = default(SquareClassifierArch, "bn_eps")
#: the stats-free stage-1 graph (`_export_stages`); the other roles are the spec's defaults
STAGE1_POOL_ROLE = "stage1_pool"


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def _vi(name: str, dims) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


class _Graph:
    """Tiny builder: named nodes and initializers in insertion order (deterministic)."""

    def __init__(self, name: str):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._n = 0

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        self._n += 1
        out = out or f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n{self._n}_{op_type}", **attrs))
        return out

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name=PRODUCER, ir_version=IR_VERSION)
        onnx.checker.check_model(m, full_check=True)
        return m


def _sign(gamma: np.ndarray) -> np.ndarray:
    return np.where(gamma < 0, -1.0, 1.0).astype(np.float32)


def _pool_s(g: _Graph, z: str, s: np.ndarray, tag: str, pads: int, out: str) -> str:
    """pool_s(z) = s·maxpool(s·z), per channel (plain max-pool when every s is +1)."""
    kw = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[pads] * 4)
    if np.all(s > 0):
        return g.op("MaxPool", [z], out, **kw)
    sc = g.const(f"{tag}_sign", s.reshape(1, -1, 1, 1))
    zs = g.op("Mul", [z, sc])
    p = g.op("MaxPool", [zs], **kw)
    return g.op("Mul", [p, sc], out)


def _affine(g: _Graph, x: str, scale: str, shift: str, relu: bool) -> str:
    t = g.op("Add", [g.op("Mul", [x, scale]), shift])
    return g.op("Relu", [t]) if relu else t


def _stage_graph(name: str, weight: np.ndarray, sign: np.ndarray, first: bool, relu_before_bn: bool,
                 relu_after_affine: bool, pool_pad: int, cin: int, stats: bool = True) -> onnx.ModelProto:
    g = _Graph(name)
    c = weight.shape[0]
    g.inputs.append(_vi("x", ["N", cin, "H", "W"]))
    x = "x"
    if not first:
        g.inputs.append(_vi("scale", [1, cin, 1, 1]))
        g.inputs.append(_vi("shift", [1, cin, 1, 1]))
        x = _affine(g, x, "scale", "shift", relu_after_affine)
    w = g.const("conv_weight", _f32(weight))
    z = g.op("Conv", [x, w], kernel_shape=list(weight.shape[2:]), pads=[0, 0, 0, 0], strides=[1, 1])
    if relu_before_bn:
        z = g.op("Relu", [z])
    if stats:
        _stats(g, z)
        g.outputs += [_vi("mean", ["N", c]), _vi("m2", ["N", c])]
    _pool_s(g, z, sign, "pool", pool_pad, "pooled")
    g.outputs.append(_vi("pooled", ["N", c, "h", "w"]))
    return g.model()


def _stats(g: _Graph, z: str) -> None:
    """Outputs ``mean`` (N×C) and ``m2`` (N×C, centred sum of squares) of z over rows × cols.

    Sums run over cols first, then rows: float32 sums of a few hundred terms each instead
    of one of ~10⁵ terms (a flat float32 sum lost ~1e-4 in the square net's logit)."""
    mean_r = g.op("ReduceMean", [z], axes=[3], keepdims=1)
    mean4 = g.op("ReduceMean", [mean_r], axes=[2], keepdims=1)
    g.op("Flatten", [mean4], "mean", axis=1)
    d = g.op("Sub", [z, mean4])
    ax_w = g.const("axes_cols", np.array([3], dtype=np.int64))
    ax_hw = g.const("axes_rows_cols", np.array([2, 3], dtype=np.int64))
    ss_r = g.op("ReduceSum", [g.op("Mul", [d, d]), ax_w], keepdims=1)  # (ReduceSumSquare was less exact)
    g.op("ReduceSum", [ss_r, ax_hw], "m2", keepdims=0)


def _bn_table(bns) -> np.ndarray:
    """K×5×C float32: gamma, beta, running_mean, running_var, sign(gamma)."""
    rows = []
    for bn in bns:
        if abs(float(bn.eps) - BN_EPS) > 1e-12:
            raise ValueError(f"BatchNorm eps {bn.eps} != {BN_EPS}")
        gamma = _np(bn.weight)
        rows.append(np.stack([gamma, _np(bn.bias), _np(bn.running_mean), _np(bn.running_var), _sign(gamma)]))
    return _f32(np.stack(rows))


def running_affine(table: np.ndarray, eps: float = BN_EPS) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) per stage (K×C float64) for the stored running statistics."""
    t = table.astype(np.float64)
    a = t[:, 0] / np.sqrt(t[:, 3] + eps)
    return a, t[:, 1] - a * t[:, 2]


def _save(model: onnx.ModelProto, path: Path) -> None:
    path.write_bytes(model.SerializeToString(deterministic=True))


def _save_npy(array: np.ndarray, path: Path) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _export_stages(prefix: str, convs: list, table: np.ndarray, out_dir: Path, *, relu_before_bn: bool,
                   pool_pad: int) -> tuple[dict[str, str], int]:
    """Write the per-stage graphs (``stage1..K`` and ``stage1_pool``) of a classifier.
    relu_before_bn: square net (conv → ReLU → BN → pool); else hole net (conv → BN → ReLU →
    pool, so the ReLU follows the next graph's affine). Returns (parts, channels of the last stage)."""
    parts: dict[str, str] = {}
    relu_after_affine = not relu_before_bn
    cin = 1
    for k, w in enumerate(convs):
        m = _stage_graph(f"{prefix}_stage{k + 1}", w, table[k, 4], k == 0, relu_before_bn, relu_after_affine,
                         pool_pad, cin)
        parts[f"stage{k + 1}"] = fn = f"{prefix}.stage{k + 1}.onnx"
        _save(m, out_dir / fn)
        if k == 0:
            m = _stage_graph(f"{prefix}_stage1_pool", w, table[k, 4], True, relu_before_bn, relu_after_affine,
                             pool_pad, cin, stats=False)
            parts[STAGE1_POOL_ROLE] = fn = f"{prefix}.stage1_pool.onnx"
            _save(m, out_dir / fn)
        cin = w.shape[0]
    return parts, cin


def export_square_classifier(module: torch.nn.Module, out_dir: Path, prefix: str) -> dict:
    """Export an export.arch_classifiers.SquareClassifier (any width) to ``out_dir``.

    Returns ``{"architecture": modelspec.SquareClassifierArch, "parts": {role: filename}}``
    (see module docstring).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kernels = list(module.kernels)
    n = len(kernels)
    convs = [_np(getattr(module, f"layer{k}").weight) for k in range(1, n + 1)]
    table = _bn_table([getattr(module, f"bn{k}") for k in range(1, n + 1)])
    head_w, head_b = _np(module.linear.weight), _np(module.linear.bias)
    parts, cin = _export_stages(prefix, convs, table, out_dir, relu_before_bn=True,
                                  pool_pad=default(SquareClassifierArch, "pool").padding)
    # head: affine of the last BN, then the head conv
    g = _Graph(f"{prefix}_head")
    g.inputs += [_vi("x", ["N", cin, "h", "w"]), _vi("scale", [1, cin, 1, 1]), _vi("shift", [1, cin, 1, 1])]
    t = _affine(g, "x", "scale", "shift", False)
    y = g.op("Conv", [t, g.const("head_weight", head_w), g.const("head_bias", head_b)],
             kernel_shape=list(head_w.shape[2:]), pads=[0, 0, 0, 0])
    g.op("Flatten", [y], "logit", axis=1)
    g.outputs.append(_vi("logit", ["N", 1]))
    parts["head"] = fn = f"{prefix}.head.onnx"
    _save(g.model(), out_dir / fn)
    # full graph with the running statistics
    a, b = running_affine(table)
    g = _Graph(f"{prefix}_full_running")
    g.inputs.append(_vi("x", ["N", 1, "H", "W"]))
    x = "x"
    for k in range(n):
        w = g.const(f"conv{k + 1}_weight", convs[k])
        z = g.op("Relu", [g.op("Conv", [x, w], kernel_shape=list(convs[k].shape[2:]), pads=[0, 0, 0, 0])])
        sc = g.const(f"bn{k + 1}_scale", _f32(a[k].reshape(1, -1, 1, 1)))
        sh = g.const(f"bn{k + 1}_shift", _f32(b[k].reshape(1, -1, 1, 1)))
        x = g.op("MaxPool", [_affine(g, z, sc, sh, False)], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    y = g.op("Conv", [x, g.const("head_weight", head_w), g.const("head_bias", head_b)],
             kernel_shape=list(head_w.shape[2:]), pads=[0, 0, 0, 0])
    g.op("Flatten", [y], "logit", axis=1)
    g.outputs.append(_vi("logit", ["N", 1]))
    parts["full"] = fn = f"{prefix}.full_running.onnx"
    _save(g.model(), out_dir / fn)
    parts["batchnorm"] = fn = f"{prefix}.batchnorm.npy"
    _save_npy(table, out_dir / fn)
    # stage order, pooling (padding 1), input, roles, eps: the spec's defaults, as built above
    arch = SquareClassifierArch(channels=int(module.channels), kernels=tuple(int(k) for k in kernels),
                                head_kernel=int(module.head_kernel), stage1_pool_role=STAGE1_POOL_ROLE)
    return {"architecture": arch, "parts": parts}


def _centre_pool(g: _Graph, x: str, sigma: float) -> str:
    """N×C: the mean of x (N×C×h×w) weighted by the Gaussian of
    export.arch_classifiers.centre_weights, built in the graph from x's shape (any h, w)."""
    shape = g.op("Cast", [g.op("Shape", [x])], to=TensorProto.FLOAT)
    half = g.const("half", np.array([0.5], np.float32))

    def coords(axis: int) -> str:  # (k + 0.5) / n − 0.5, k = 0..n−1
        n = g.op("Gather", [shape, g.const(f"axis{axis}", np.array([axis], np.int64))], axis=0)
        k = g.op("Range", [g.const(f"zero{axis}", np.array(0.0, np.float32)), g.op("Squeeze", [n]),
                           g.const(f"one{axis}", np.array(1.0, np.float32))])
        return g.op("Sub", [g.op("Div", [g.op("Add", [k, half]), n]), half])

    u, v = coords(2), coords(3)
    u2 = g.op("Unsqueeze", [g.op("Mul", [u, u]), g.const("ax_last", np.array([1], np.int64))])  # h×1
    d2 = g.op("Add", [u2, g.op("Mul", [v, v])])  # h×w
    e = g.op("Exp", [g.op("Mul", [d2, g.const("neg_inv_2s2", np.array(-0.5 / (sigma * sigma), np.float32))])])
    wts = g.op("Div", [e, g.op("ReduceSum", [e], keepdims=1)])
    ax_hw = g.const("axes_hw", np.array([2, 3], np.int64))
    return g.op("ReduceSum", [g.op("Mul", [x, wts]), ax_hw], keepdims=0)


def export_hole_classifier(module: torch.nn.Module, out_dir: Path, prefix: str) -> dict:
    """Export an export.arch_classifiers.HoleClassifier (any width / depth) to ``out_dir``.

    Returns ``{"architecture": modelspec.HoleClassifierArch, "parts": {role: filename}}``
    (see module docstring).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kernels = list(module.kernels)
    n = len(kernels)
    convs = [_np(c.weight) for c in module.convs]
    table = _bn_table(list(module.bns))
    fw, fb = _np(module.final.weight), _np(module.final.bias)  # 1×C, 1
    parts, cin = _export_stages(prefix, convs, table, out_dir, relu_before_bn=False,
                                  pool_pad=default(HoleClassifierArch, "pool").padding)

    def head(g: _Graph, x: str) -> None:
        if getattr(module, "pooling", "mean") == "centre":
            m = _centre_pool(g, x, module.centre_sigma)
        else:
            m = g.op("ReduceMean", [x], axes=[2, 3], keepdims=0)
        g.op("Gemm", [m, g.const("final_weight", fw), g.const("final_bias", fb)], "logit", transB=1)
        g.outputs.append(_vi("logit", ["N", 1]))

    g = _Graph(f"{prefix}_head")
    g.inputs += [_vi("x", ["N", cin, "h", "w"]), _vi("scale", [1, cin, 1, 1]), _vi("shift", [1, cin, 1, 1])]
    head(g, _affine(g, "x", "scale", "shift", True))
    parts["head"] = fn = f"{prefix}.head.onnx"
    _save(g.model(), out_dir / fn)
    # full graph with the running statistics folded into the convs (BN directly follows conv)
    a, b = running_affine(table)
    g = _Graph(f"{prefix}_full_running")
    g.inputs.append(_vi("x", ["N", 1, "H", "W"]))
    x = "x"
    for k in range(n):
        w = g.const(f"conv{k + 1}_weight", _f32(convs[k].astype(np.float64) * a[k][:, None, None, None]))
        bias = g.const(f"conv{k + 1}_bias", _f32(b[k]))
        z = g.op("Relu", [g.op("Conv", [x, w, bias], kernel_shape=list(convs[k].shape[2:]), pads=[0, 0, 0, 0])])
        x = g.op("MaxPool", [z], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 0, 0])
    head(g, x)
    parts["full"] = fn = f"{prefix}.full_running.onnx"
    _save(g.model(), out_dir / fn)
    parts["batchnorm"] = fn = f"{prefix}.batchnorm.npy"
    _save_npy(table, out_dir / fn)
    # stage order, pooling (padding 0), min_input (from the kernels), roles, eps: the spec's
    # defaults, as built above
    arch = HoleClassifierArch(channels=int(module.channels), kernels=tuple(int(k) for k in kernels),
                              stage1_pool_role=STAGE1_POOL_ROLE)
    return {"architecture": arch, "parts": parts}
