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
- ``decoder_x2``: as ``decoder``, for strips with rows and cols multiples of 4 (both
  upsamplings exact ×2): each up block's conv of the upsampled tensor is done as four 2×2
  convs at the lower resolution (one per output phase) interleaved by DepthToSpace
  (``_Graph.up_block_x2``), ≈ 25 % fewer U-Net FLOPs and no full-resolution upsampled copy.
- ``core_down`` / ``core_deep`` / ``core_up`` / ``core_up_x2`` (depth > DEEP_LEVEL + 1): the
  core cut at level DEEP_LEVEL = 5: ``pooled`` strip → ``pooled_deep`` (down blocks 2..4 and
  their poolings); whole ``pooled_deep`` → ``up_deep`` (down blocks 5.., up blocks down to
  skip d5); ``pooled`` strip + ``up_deep`` rows → ``up`` (or its phases, as ``core_x2``):
  recomputes d2..d4, runs the up blocks with skips d4..d2. Same nodes as ``core`` /
  ``core_x2``; the runtime's three-pass core (ptolemy_rt/unet.py) on large images.
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

from ptolemy_rt.modelspec import UnetArch, default

OPSET = 17
#: px rows added above/below each strip (multiple of 4; 8 = the exact receptive field, tested)
HALO_ROWS = default(UnetArch, "halo_rows")
ROW_MULTIPLE = default(UnetArch, "row_multiple")  # strip bounds must be multiples of this (two 2×2 poolings)
SPLIT_LEVEL = default(UnetArch, "split_level")  # levels 0..1 (full, half resolution) run in strips
#: core_down / core_up run levels SPLIT_LEVEL..DEEP_LEVEL-1 in strips, core_deep the rest whole
DEEP_LEVEL = default(UnetArch, "deep_level")


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
        w = self.weights[key + ".weight"]
        c = w.shape[1] // 2
        wu = self.const(f"{key}.weight_up", np.ascontiguousarray(w[:, :c], dtype=np.float32))
        ws = self.const(f"{key}.weight_skip", np.ascontiguousarray(w[:, c:], dtype=np.float32))
        bias = self.weight(key + ".bias")
        kw = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1)
        yu = self.node("Conv", [u, wu, bias], f"up{j}_conv_u", **kw)
        ys = self.node("Conv", [skip, ws], f"up{j}_conv_skip", **kw)
        y = self.node("Add", [yu, ys], f"up{j}_add")
        return self.node("Relu", [y], f"up{j}_relu")

    def up_block_x2(self, x: str, skip: str, j: int) -> str:
        """Up block j when the skip is exactly twice x's rows and cols (no Gather).

        conv3×3(nearest×2(u); W) at output pixel (2i+p, 2k+q) only reads u rows i−1+p, i+p
        and cols k−1+q, k+q, so it is a 2×2 conv of u at low resolution per phase (p, q)
        whose taps are sums of W's taps (rows/cols: phase 0 → [w0, w1+w2], phase 1 →
        [w0+w1, w2]); zero padding of the ×2 tensor is zero padding of u. The four phases
        (asymmetric pads) are interleaved by DepthToSpace (DCR). 16 instead of 36 tap-pixel
        products per output pixel for this half of the input channels, and no upsampled
        copy. Same sums in another order: equal up to float rounding.
        """
        key = f"up_path.{j}.conv"
        w = np.asarray(self.weights[key + ".weight"], dtype=np.float64)
        c = w.shape[1] // 2
        wu, ws = w[:, :c], w[:, c:]
        comb = (np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]), np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        phases = []
        for p in (0, 1):
            for q in (0, 1):
                k = np.einsum("ar,ocrs,bs->ocab", comb[p], wu, comb[q]).astype(np.float32)
                wk = self.const(f"{key}.weight_up_phase{p}{q}", np.ascontiguousarray(k))
                pads = [1 - p, 1 - q, p, q]  # [top, left, bottom, right]
                phases.append(self.node("Conv", [x, wk], f"up{j}_phase{p}{q}", kernel_shape=[2, 2],
                                        pads=pads, strides=[1, 1], dilations=[1, 1], group=1))
        cat = self.node("Concat", phases, f"up{j}_phases", axis=1)
        yu = self.node("DepthToSpace", [cat], f"up{j}_d2s", blocksize=2, mode="DCR")
        wsk = self.const(f"{key}.weight_skip", np.ascontiguousarray(ws, dtype=np.float32))
        bias = self.weight(key + ".bias")
        ys = self.node("Conv", [skip, wsk, bias], f"up{j}_conv_skip", kernel_shape=[3, 3],
                       pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1)
        y = self.node("Add", [yu, ys], f"up{j}_add")
        return self.node("Relu", [y], f"up{j}_relu")

    def up_block_phases(self, x: str, skip: str, j: int) -> dict:
        """Up block j (skip exactly twice x's rows and cols) in the phase domain: returns
        {(p, q): z_pq}, z_pq = the block's output at pixels (2i+p, 2k+q), at x's resolution.

        The conv of the ×2-upsampled x is a 2×2 conv of x per phase (as in
        ``up_block_x2``), the conv of the skip a stride-2 conv with phase pads; + bias →
        ReLU. No tensor at the skip's resolution other than the skip itself.
        """
        key = f"up_path.{j}.conv"
        w = np.asarray(self.weights[key + ".weight"], dtype=np.float64)
        c = w.shape[1] // 2
        wu, ws = w[:, :c], w[:, c:]
        comb = (np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]), np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        wsk = self.const(f"{key}.weight_skip", np.ascontiguousarray(ws, dtype=np.float32))
        bias = self.weight(key + ".bias")
        z = {}
        for p in (0, 1):
            for q in (0, 1):
                k = np.einsum("ar,ocrs,bs->ocab", comb[p], wu, comb[q]).astype(np.float32)
                wk = self.const(f"{key}.weight_up_phase{p}{q}", np.ascontiguousarray(k))
                pads = [1 - p, 1 - q, p, q]  # [top, left, bottom, right]
                yu = self.node("Conv", [x, wk], f"up{j}_phase{p}{q}", kernel_shape=[2, 2],
                               pads=pads, strides=[1, 1], dilations=[1, 1], group=1)
                ys = self.node("Conv", [skip, wsk, bias], f"up{j}_skip_phase{p}{q}", kernel_shape=[3, 3],
                               pads=pads, strides=[2, 2], dilations=[1, 1], group=1)
                z[p, q] = self.node("Relu", [self.node("Add", [yu, ys], f"up{j}_add{p}{q}")], f"up{j}_relu{p}{q}")
        return z

    def final_block_x2(self, x: str, skip: str, j: int) -> str:
        """Last up block j (skip d0, exactly twice x's rows and cols) and ``last`` in the
        phase domain: no full-resolution tensor other than d0 and the 1-channel logits.

        ``up_block_phases`` gives z_pq at x's resolution. ``last`` (3×3, 64→1) at phase
        (p, q) reads full rows 2i+p+dr, i.e. phase p' = (p+dr) mod 2 at low row
        i + (p+dr)//2: it is the sum over the four z_p'q' of 3×3 convs with 4 output
        channels (one per output phase; the unused taps are zero), interleaved by
        DepthToSpace. Same sums as the plain network in another order.
        """
        z = self.up_block_phases(x, skip, j)
        wl = np.asarray(self.weights["last.weight"], dtype=np.float64)  # 1×C×3×3
        acc = None
        for (pp, qq), zt in z.items():
            kl = np.zeros((4, wl.shape[1], 3, 3), dtype=np.float64)
            for p in (0, 1):
                for q in (0, 1):
                    for a in (-1, 0, 1):
                        dr = 2 * a + pp - p
                        if not -1 <= dr <= 1:
                            continue
                        for b in (-1, 0, 1):
                            dc = 2 * b + qq - q
                            if -1 <= dc <= 1:
                                kl[2 * p + q, :, a + 1, b + 1] = wl[0, :, dr + 1, dc + 1]
            kw = self.const(f"last.weight_phase{pp}{qq}", np.ascontiguousarray(kl, dtype=np.float32))
            y = self.node("Conv", [zt, kw], f"last_phase{pp}{qq}", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                          strides=[1, 1], dilations=[1, 1], group=1)
            acc = y if acc is None else self.node("Add", [acc, y], "last_sum")
        bl = self.const("last.bias_phases", np.repeat(np.asarray(self.weights["last.bias"], dtype=np.float32), 4)
                        .reshape(1, 4, 1, 1))
        acc = self.node("Add", [acc, bl], "last_bias")
        return self.node("DepthToSpace", [acc], "last_d2s", blocksize=2, mode="DCR")

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


def _levels_down_and_up(g: "_Graph", x: str, first: int, depth: int) -> str:
    """Add the U-Net's levels `first`..`depth`-1 to graph `g` from the tensor named `x` (the
    input of level `first`): each level's conv (pooled below, output kept as the skip), then
    the up blocks back to level `first`. Returns the name of the last up block's output."""
    skips = {}
    for i in range(first, depth):
        x = g.conv(x, f"down_path.{i}.conv", relu=True)
        if i < depth - 1:
            skips[i] = x
            x = g.pool(x)
    for j in range(depth - 1 - first):
        x = g.up_block(x, skips[depth - 2 - j], j)
    return x


def build_graphs(weights: dict[str, np.ndarray], channels: int, depth: int) -> dict[str, onnx.ModelProto]:
    """Build the ONNX models {role: ModelProto} from a U-Net state dict (numpy arrays): the
    roles of the module docstring that the depth allows."""
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
    x = _levels_down_and_up(g, "pooled", k, depth)
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

    # core_x2 / decoder_x2 (depth ≥ 4, image rows and cols multiples of 8: every ×2
    # upsampling from the quarter resolution up is exact): phase-decomposed up blocks,
    # fewer FLOPs, and ``up`` travels as its four phases up{p}{q} N×C×(H//8)×(W//8)
    if depth - 1 <= k:
        return out
    g = _Graph(weights)
    x, skips = "pooled", {}
    for i in range(k, depth):
        x = g.conv(x, f"down_path.{i}.conv", relu=True)
        if i < depth - 1:
            skips[i] = x
            x = g.pool(x)
    for j in range(depth - 1):
        level = depth - 2 - j
        if level == k:
            z = g.up_block_phases(x, skips[level], j)
            break
        x = g.up_block(x, skips[level], j)
    phase_names = [f"up{p}{q}" for p in (0, 1) for q in (0, 1)]
    for (p, q), name in zip(((0, 0), (0, 1), (1, 0), (1, 1)), phase_names):
        _rename_output(g, z[p, q], name)
    out["core_x2"] = g.model([pooled_vi], [_vi(n, c, "H8", "W8") for n in phase_names], "unet_core_x2")

    g = _Graph(weights)
    d, x = {}, "image"
    for i in range(k):
        x = g.conv(x, f"down_path.{i}.conv", relu=True)
        d[i] = x
        x = g.pool(x)
    cat = g.node("Concat", phase_names, "up_phases", axis=1)
    x = g.node("DepthToSpace", [cat], "up_d2s", blocksize=2, mode="DCR")
    for level in range(k - 1, 0, -1):
        x = g.up_block_x2(x, d[level], depth - 2 - level)
    _rename_output(g, g.final_block_x2(x, d[0], depth - 2), "logits")
    out["decoder_x2"] = g.model([img] + [_vi(n, c, "h8", "W8") for n in phase_names], [logits],
                                "unet_decoder_x2")

    # core_down / core_deep / core_up / core_up_x2 (depth > DEEP_LEVEL + 1): the core split
    # once more at level DEEP_LEVEL, so that levels split_level..DEEP_LEVEL-1 (the large
    # quarter- and eighth-resolution tensors) also run in row strips and only the deep
    # levels (≤ 1/1024 of the image's pixels per tensor) run on the whole image. Same nodes
    # as ``core`` / ``core_x2``, cut at block outputs (ptolemy_rt/unet.py, three passes).
    if depth - 1 <= DEEP_LEVEL:
        return out
    pooled_deep_vi = _vi("pooled_deep", c, "HD", "WD")
    up_deep_vi = _vi("up_deep", c, "HD", "WD")
    g = _Graph(weights)
    x = "pooled"
    for i in range(k, DEEP_LEVEL):
        x = g.pool(g.conv(x, f"down_path.{i}.conv", relu=True))
    _rename_output(g, x, "pooled_deep")
    out["core_down"] = g.model([pooled_vi], [pooled_deep_vi], "unet_core_down")

    g = _Graph(weights)
    x = _levels_down_and_up(g, "pooled_deep", DEEP_LEVEL, depth)
    _rename_output(g, x, "up_deep")
    out["core_deep"] = g.model([pooled_deep_vi], [up_deep_vi], "unet_core_deep")

    for role, phased in (("core_up", False), ("core_up_x2", True)):
        g = _Graph(weights)
        d, x = {}, "pooled"
        for i in range(k, DEEP_LEVEL):
            x = g.conv(x, f"down_path.{i}.conv", relu=True)
            d[i] = x
            x = g.pool(x)
        x = "up_deep"
        for level in range(DEEP_LEVEL - 1, k - 1, -1):
            j = depth - 2 - level
            if phased and level == k:
                z = g.up_block_phases(x, d[level], j)
                for (p, q), name in zip(((0, 0), (0, 1), (1, 0), (1, 1)), phase_names):
                    _rename_output(g, z[p, q], name)
                outs = [_vi(n, c, "h8", "W8") for n in phase_names]
            else:
                x = g.up_block(x, d[level], j)
        if not phased:
            _rename_output(g, x, "up")
            outs = [_vi("up", c, "h4", "W4")]
        out[role] = g.model([_vi("pooled", c, "h4", "W4"), _vi("up_deep", c, "hd", "WD")], outs, f"unet_{role}")

    return out


def export_unet(module, out_dir: Path, prefix: str) -> dict:
    """Write ``<prefix>_{role}.onnx`` for each role of `build_graphs` into out_dir.

    Parameters
    ----------
    module
        export.arch_unet.UNet (any channels / depth ≥ 3).
    out_dir
        Folder of the set.
    prefix
        File name prefix (the model key).

    Returns
    -------
    dict
        ``{"architecture": modelspec.UnetArch, "parts": {role: file name}}`` for
        export/manifest.py.
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
    # split level, halo, row multiple, upsampling: the graphs above are built for the
    # spec's defaults
    return {"architecture": UnetArch(channels=channels, depth=depth), "parts": parts}
