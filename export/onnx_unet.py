"""Export the U-Net (export/arch_unet.py) to ONNX graphs for strip-wise CPU inference.

The graphs are written directly with ``onnx.helper`` from the module's weights, so that
every operator is under control (in particular the upsampling, see below).

Parts (roles), all float32, arrays N×C×rows×cols, dynamic N, rows and cols:
- ``encoder``: ``image`` N×1×h×W → ``pooled`` N×C×(h//4)×(W//4).
  Down blocks 0 and 1 with their poolings (full and half resolution). Evaluated on row
  strips of the image with a halo; the halo's rows of ``pooled`` are cut away afterwards.
- ``core``: ``pooled`` N×C×(H//4)×(W//4) of the whole image → ``up`` N×C×(H//4)×(W//4):
  down blocks 2..depth-1 and the up blocks down to the one whose skip is d2 (quarter
  resolution). For depth 3 there is no such up block and ``up`` is the bottleneck d2.
- ``decoder``: ``image`` N×1×h×W and ``up`` rows of the same strip N×C×(h//4)×(W//4) →
  ``logits`` N×1×h×W. Recomputes d0 and d1 on the strip, runs the up blocks with skips
  d1 and d0 and ``last``.
- ``whole``: ``image`` N×1×H×W → ``logits`` N×1×H×W, the whole network in one graph
  (reference for tests; memory grows with the image).

Strip rules (see ptolemy_rt/unet.py): strip row bounds and the halo are multiples of 4 so
that both poolings align with the whole image's; at the true image border there is no halo
(the graph's zero padding is then exactly the network's). Up-sampling inside a strip is then
always an exact ×2 in rows, as in the whole image.

Upsampling: PyTorch legacy ``nearest`` (source index = min(floor(float32(dst) ×
float32(in)/float32(out)), in-1), per axis) is built from Shape/Range/Cast/Div/Mul/Floor/
Gather in float32, reproducing PyTorch's arithmetic bit for bit for any in/out sizes
(e.g. 45 → 22 → 11 → 5 columns at 1440 px).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
HALO_ROWS = 12  # px rows added above/below each strip (multiple of 4; 8 is the exact minimum)
ROW_MULTIPLE = 4  # strip bounds must be multiples of this (two 2×2 poolings)
SPLIT_LEVEL = 2  # levels 0..1 (full, half resolution) run in strips


class _Graph:
    """Small helper that accumulates nodes and initialisers with unique names."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list = []
        self.inits: dict[str, np.ndarray] = {}
        self.n = 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def node(self, op: str, inputs: list[str], base: str, **attrs) -> str:
        out = self.name(base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(self, base: str, value: np.ndarray) -> str:
        key = f"{base}"
        if key not in self.inits:
            self.inits[key] = np.asarray(value)
        return key

    def weight(self, key: str) -> str:
        if key not in self.inits:
            self.inits[key] = np.ascontiguousarray(self.weights[key], dtype=np.float32)
        return key

    # --- network pieces -------------------------------------------------------------
    def conv(self, x: str, prefix: str, relu: bool) -> str:
        y = self.node("Conv", [x, self.weight(prefix + ".weight"), self.weight(prefix + ".bias")],
                      prefix.replace(".", "_"), kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                      strides=[1, 1], dilations=[1, 1], group=1)
        return self.node("Relu", [y], prefix.replace(".", "_") + "_relu") if relu else y

    def pool(self, x: str) -> str:
        return self.node("MaxPool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=0)

    def upsample_like(self, x: str, ref: str) -> str:
        """PyTorch legacy nearest of x to ref's rows×cols (float32 index arithmetic)."""
        sx = self.node("Shape", [x], "shape_x")
        sr = self.node("Shape", [ref], "shape_ref")
        zero = self.const("c_zero_i64", np.array(0, dtype=np.int64))
        one = self.const("c_one_i64", np.array(1, dtype=np.int64))
        for axis in (2, 3):
            ax = self.const(f"c_axis{axis}", np.array(axis, dtype=np.int64))
            n_in = self.node("Gather", [sx, ax], "n_in", axis=0)
            n_out = self.node("Gather", [sr, ax], "n_out", axis=0)
            f_in = self.node("Cast", [n_in], "f_in", to=TensorProto.FLOAT)
            f_out = self.node("Cast", [n_out], "f_out", to=TensorProto.FLOAT)
            scale = self.node("Div", [f_in, f_out], "scale")
            dst = self.node("Range", [zero, n_out, one], "dst")
            f_dst = self.node("Cast", [dst], "f_dst", to=TensorProto.FLOAT)
            src_f = self.node("Floor", [self.node("Mul", [f_dst, scale], "src_f")], "src_floor")
            src = self.node("Cast", [src_f], "src", to=TensorProto.INT64)
            last = self.node("Sub", [n_in, one], "n_in_m1")
            src = self.node("Min", [src, last], "src_clip")
            x = self.node("Gather", [x, src], f"up_axis{axis}", axis=axis)
        return x

    def up_block(self, x: str, skip: str, j: int) -> str:
        u = self.upsample_like(x, skip)
        key = f"up_path.{j}.conv"
        # conv(concat[u, skip]) = conv(u; W[:, :C]) + conv(skip; W[:, C:]) + bias: no
        # 2C-channel concatenated copy (less memory); ORT fuses the Add into the conv.
        w, b = self.weights[key + ".weight"], self.weights[key + ".bias"]
        c = w.shape[1] // 2
        wu = self.const(f"{key}.weight_up", np.ascontiguousarray(w[:, :c], dtype=np.float32))
        ws = self.const(f"{key}.weight_skip", np.ascontiguousarray(w[:, c:], dtype=np.float32))
        bias = self.weight(key + ".bias")
        kw = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1)
        yu = self.node("Conv", [u, wu, bias], f"up{j}_conv_u", **kw)
        ys = self.node("Conv", [skip, ws], f"up{j}_conv_skip", **kw)
        y = self.node("Add", [yu, ys], f"up{j}_add")
        return self.node("Relu", [y], f"up{j}_relu")

    # --- assembling -----------------------------------------------------------------
    def model(self, inputs: list, outputs: list, graph_name: str) -> onnx.ModelProto:
        inits = [numpy_helper.from_array(v, name=k) for k, v in self.inits.items()]
        graph = helper.make_graph(self.nodes, graph_name, inputs, outputs, initializer=inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="ptolemy-rt export/onnx_unet.py")
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def _rename_output(g: _Graph, tensor: str, name: str) -> None:
    g.nodes.append(helper.make_node("Identity", [tensor], [name], name=f"out_{name}"))


def _vi(name: str, channels: int, rows: str, cols: str):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", channels, rows, cols])


def build_graphs(weights: dict[str, np.ndarray], channels: int, depth: int) -> dict[str, onnx.ModelProto]:
    """Build the four ONNX models {role: ModelProto} from a U-Net state dict (numpy arrays)."""
    c, k = channels, SPLIT_LEVEL
    img = _vi("image", 1, "H", "W")
    logits = _vi("logits", 1, "H", "W")
    pooled_vi = _vi("pooled", c, "H4", "W4")
    up_vi = _vi("up", c, "H4", "W4")
    out: dict[str, onnx.ModelProto] = {}

    # encoder: image strip -> pooled (quarter resolution)
    g = _Graph(weights)
    x = "image"
    for i in range(k):
        x = g.pool(g.conv(x, f"down_path.{i}.conv", relu=True))
    _rename_output(g, x, "pooled")
    out["encoder"] = g.model([img], [pooled_vi], "unet_encoder")

    # core: whole pooled -> up (quarter resolution)
    g = _Graph(weights)
    x, skips = "pooled", {}
    for i in range(k, depth):
        x = g.conv(x, f"down_path.{i}.conv", relu=True)
        if i < depth - 1:
            skips[i] = x
            x = g.pool(x)
    for j in range(depth - 1):
        level = depth - 2 - j
        if level < k:
            break
        x = g.up_block(x, skips[level], j)
    _rename_output(g, x, "up")
    out["core"] = g.model([pooled_vi], [up_vi], "unet_core")

    # decoder: image strip + up strip -> logits strip
    g = _Graph(weights)
    d, x = {}, "image"
    for i in range(k):
        x = g.conv(x, f"down_path.{i}.conv", relu=True)
        d[i] = x
        x = g.pool(x)
    x = "up"
    for level in range(k - 1, -1, -1):
        x = g.up_block(x, d[level], depth - 2 - level)
    _rename_output(g, g.conv(x, "last", relu=False), "logits")
    out["decoder"] = g.model([img, up_vi], [logits], "unet_decoder")

    # whole network
    g = _Graph(weights)
    x, skips = "image", {}
    for i in range(depth):
        x = g.conv(x, f"down_path.{i}.conv", relu=True)
        if i < depth - 1:
            skips[i] = x
            x = g.pool(x)
    for j in range(depth - 1):
        x = g.up_block(x, skips[depth - 2 - j], j)
    _rename_output(g, g.conv(x, "last", relu=False), "logits")
    out["whole"] = g.model([img], [logits], "unet_whole")
    return out


def export_unet(module, out_dir: Path, prefix: str) -> dict:
    """Write ``<prefix>_{encoder,core,decoder,whole}.onnx`` into out_dir.

    module: export.arch_unet.UNet (any channels/depth ≥ 3). Returns
    ``{"architecture": {...}, "parts": {role: filename}}`` for export/manifest.py.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    channels, depth = int(module.channels), int(module.depth)
    weights = {k: v.detach().cpu().numpy().astype(np.float32)
               for k, v in module.state_dict().items()}
    graphs = build_graphs(weights, channels, depth)
    parts = {}
    for role, m in graphs.items():
        fname = f"{prefix}_{role}.onnx"
        onnx.save(m, str(out_dir / fname))
        parts[role] = fname
    architecture = {
        "family": "unet",
        "channels": channels,
        "depth": depth,
        "split_level": SPLIT_LEVEL,
        "halo_rows": HALO_ROWS,
        "row_multiple": ROW_MULTIPLE,
        "upsample": "torch-legacy-nearest",
        "input": "image N×1×H×W float32, normalised (SPEC §5.1-5.2)",
        "output": "logits N×1×H×W float32; mask = sigmoid(logits) > 1e-4",
    }
    return {"architecture": architecture, "parts": parts}
