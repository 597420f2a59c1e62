"""U-Net: ONNX graphs equal the PyTorch module, strips equal the whole image, and the
published model reproduces the published mask of the medium-mag example.

Arrays are [row, col]; sizes in px. Torch-dependent tests skip without torch; tests on the
published material skip without ../shared.
"""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import mrcfile
import numpy as np
import onnxruntime as ort
import pytest

from export.onnx_unet import HALO_ROWS, _Graph, build_graphs
from ptolemy_rt.modelspec import UnetArch, parse
from ptolemy_rt.unet import MIN_STRIP_ROWS, logits_to_mask, plan_cols, plan_strips, unet_logits, unet_logits_whole

from conftest import MEDMAG_MRC, REFERENCE, WEIGHTS, needs_shared

UNET_CKPT = WEIGHTS / "211026_unet_9x64_ep6.torchmodel"
TOL = 1e-4


class _Sessions:
    """Minimal stand-in for ptolemy_rt.models.ModelSet: .model(key) and cached .session(key, role)."""

    def __init__(self, root: Path, entry: dict) -> None:
        self.root, self.entry, self._cache = Path(root), entry, {}

    def model(self, key: str) -> SimpleNamespace:
        """As ModelSet.model: the typed architecture (parsed from the entry's dict) and the parts."""
        assert key == "hole_unet"
        arch = self.entry["architecture"]
        return SimpleNamespace(architecture=arch if isinstance(arch, UnetArch) else parse(UnetArch, arch),
                               parts=self.entry["parts"])

    def session(self, key: str, role: str) -> ort.InferenceSession:
        assert key == "hole_unet"
        if role not in self._cache:
            so = ort.SessionOptions()
            so.intra_op_num_threads = 2
            self._cache[role] = ort.InferenceSession(
                str(self.root / self.entry["parts"][role]), so, providers=["CPUExecutionProvider"])
        return self._cache[role]


def _random_weights(channels: int, depth: int, seed: int) -> dict[str, np.ndarray]:
    """He-scaled random U-Net weights (numpy), keys as the published checkpoint's."""
    rng = np.random.default_rng(seed)
    w = {}

    def conv(key, c_out, c_in):
        w[key + ".weight"] = (rng.standard_normal((c_out, c_in, 3, 3))
                              * math.sqrt(2.0 / (9 * c_in))).astype(np.float32)
        w[key + ".bias"] = (0.1 * rng.standard_normal(c_out)).astype(np.float32)

    for i in range(depth):
        conv(f"down_path.{i}.conv", channels, 1 if i == 0 else channels)
    for j in range(depth - 1):
        conv(f"up_path.{j}.conv", channels, 2 * channels)
    conv("last", 1, channels)
    return w


def _sessions_from_weights(tmp: Path, weights, channels: int, depth: int) -> _Sessions:
    import onnx

    parts = {}
    for role, m in build_graphs(weights, channels, depth).items():
        onnx.save(m, str(tmp / f"u_{role}.onnx"))
        parts[role] = f"u_{role}.onnx"
    arch = {"family": "unet", "channels": channels, "depth": depth, "halo_rows": HALO_ROWS,
            "row_multiple": 4}
    return _Sessions(tmp, {"architecture": arch, "parts": parts})


def _export_module(module, tmp: Path) -> _Sessions:
    from export.onnx_unet import export_unet

    entry = export_unet(module, tmp, "hole_unet")
    assert {"encoder", "core", "decoder", "whole"} <= set(entry["parts"])
    assert {"core_x2", "decoder_x2"} <= set(entry["parts"]) or module.depth <= 3
    return _Sessions(tmp, entry)


def _normalised_medmag(pad: bool) -> np.ndarray:
    """docs/ALGORITHM.md#medmag-normalise, #medmag-padding: negatives → 0, zero mean, unit population std; optional padding with
    the normalised mean at the bottom/right (height < 1024 → 1024, width < 1440 → 1440,
    otherwise the next multiple of 512: 1024×1440 → 1024×1536)."""
    img = mrcfile.read(MEDMAG_MRC).astype(np.float32)
    img = np.where(img < 0, 0, img)
    img = ((img - img.mean()) / img.std()).astype(np.float32)
    if not pad:
        return img
    h, w = img.shape
    ph = 1024 if h < 1024 else math.ceil(h / 512) * 512
    pw = 1440 if w < 1440 else math.ceil(w / 512) * 512
    out = np.full((ph, pw), img.mean(), dtype=np.float32)
    out[:h, :w] = img
    return out


# --- strip planning -------------------------------------------------------------------

@pytest.mark.parametrize("height,width,strip_rows", [
    (1024, 1440, None), (1024, 1536, None), (2048, 2048, None), (4096, 4096, None),
    (1024, 1440, 40), (100, 64, 8), (96, 30, 1000), (8, 8, 4), (36, 50, 12)])
def test_plan_strips_cover_aligned_and_bounded(height, width, strip_rows):
    budget = 64 * 2**20
    bands = plan_strips(height, width, 64, halo=HALO_ROWS, multiple=4, strip_rows=strip_rows,
                        budget_bytes=budget)
    assert bands[0][0] == 0 and bands[-1][1] == height
    for (a, b), (c, _) in zip(bands, bands[1:]):
        assert b == c
    for a, b in bands:
        assert a < b and a % 4 == 0 and (b % 4 == 0 or b == height)
        if strip_rows is None and len(bands) > 1:  # window of a band within the budget
            rows = max(b - a + 2 * HALO_ROWS - 4, MIN_STRIP_ROWS + 2 * HALO_ROWS)
            assert 4 * 64 * width * rows <= max(budget, 4 * 64 * width * (MIN_STRIP_ROWS + 2 * HALO_ROWS))
    if strip_rows is not None:
        assert max(b - a for a, b in bands) <= max(4, math.ceil(strip_rows / 4) * 4)


@pytest.mark.parametrize("width,rows,multiple,strip_cols", [
    (16384, 80, 8, None), (16384, 48, 8, None), (4096, 80, 8, None), (1536, 120, 8, None),
    (1000, 80, 4, 40), (1024, 80, 8, 64), (1020, 80, 8, 64), (64, 16, 8, 8)])
def test_plan_cols_cover_aligned_one_shape_bounded(width, rows, multiple, strip_cols):
    budget, halo = 48 * 2**20, 8
    tiles = plan_cols(width, rows, 64, halo=halo, multiple=multiple, strip_cols=strip_cols, budget_bytes=budget)
    if strip_cols is None and 4 * 64 * rows * width <= budget:
        assert tiles == [(0, width, 0, width)]
        return
    if width % multiple:  # unaligned: one tile (as plan_strips' rows)
        assert tiles == [(0, width, 0, width)]
        return
    assert tiles[0][0] == 0 and tiles[-1][1] == width and len(tiles) > 1
    assert len({hi - lo for _, _, lo, hi in tiles}) == 1  # one input shape
    for (c0, c1, lo, hi), (d0, _, _, _) in zip(tiles, tiles[1:]):
        assert c1 == d0
    for c0, c1, lo, hi in tiles:
        assert c0 % multiple == 0 and lo % multiple == 0 and 0 <= lo <= c0 < c1 <= hi <= width
        assert (lo == 0 or c0 - lo >= halo) and (hi == width or hi - c1 >= halo)  # context or the true border
        if strip_cols is None:  # a window's C-channel tensor within the budget
            assert 4 * 64 * rows * (hi - lo) <= budget


def test_plan_strips_unaligned_height_is_one_band():
    assert plan_strips(1026, 512, 64) == [(0, 1026)]


# --- upsampling rule ------------------------------------------------------------------

def test_upsample_equals_torch_legacy_nearest():
    """The Gather-based upsample reproduces F.interpolate(mode='nearest') index for index,
    for all size pairs up to 48 and the deep-level sizes of 1024, 1440, 1536, 2048 px."""
    torch = pytest.importorskip("torch")
    import onnx
    from onnx import TensorProto, helper

    g = _Graph({})
    y = g.upsample_like("x", "ref")
    g.nodes.append(helper.make_node("Identity", [y], ["y"], name="out_y"))
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", "C", "H", "W"])  # noqa: E731
    model = g.model([vi("x"), vi("ref")], [vi("y")], "up")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    pairs = {(i, o) for i in range(1, 49) for o in range(1, 49)}
    for n in (1024, 1440, 1536, 2048, 4096):
        sizes = [n]
        while sizes[-1] > 1:
            sizes.append(sizes[-1] // 2)
        pairs |= {(sizes[k + 1], sizes[k]) for k in range(len(sizes) - 1)}
    for n_in, n_out in sorted(pairs):
        x = np.arange(n_in * 3, dtype=np.float32).reshape(1, 1, n_in, 3)
        ref = np.zeros((1, 1, n_out, 5), np.float32)
        want = torch.nn.functional.interpolate(torch.from_numpy(x), size=(n_out, 5),
                                               mode="nearest").numpy()
        got = sess.run(None, {"x": x, "ref": ref})[0]
        assert np.array_equal(got, want), (n_in, n_out)
        # columns axis
        xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2))
        reft = np.zeros((1, 1, 5, n_out), np.float32)
        want = torch.nn.functional.interpolate(torch.from_numpy(xt), size=(5, n_out),
                                               mode="nearest").numpy()
        assert np.array_equal(sess.run(None, {"x": xt, "ref": reft})[0], want), (n_in, n_out)


# --- strips versus whole image (no torch needed) ----------------------------------------

@pytest.mark.parametrize("depth,shape,strip_rows", [
    (9, (512, 512), 40), (9, (1024, 1440), 100), (5, (200, 152), 12), (3, (68, 45), 4),
    (5, (130, 96), 8), (9, (258, 300), 64)])  # 258: not a multiple of 4 → one band
def test_strips_equal_whole_random_weights(tmp_path, depth, shape, strip_rows):
    models = _sessions_from_weights(tmp_path, _random_weights(8, depth, seed=depth), 8, depth)
    img = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    whole = unet_logits_whole(models, img)
    assert whole.shape == shape and whole.dtype == np.float32 and np.isfinite(whole).all()
    assert whole.std() > 1e-3  # a non-trivial network output
    for kw in ({"strip_rows": strip_rows}, {}):
        strips = unet_logits(models, img, **kw)
        assert strips.shape == shape and strips.dtype == np.float32
        err = float(np.abs(strips - whole).max())
        print(f"depth {depth} {shape} {kw}: max |strips - whole| = {err:.2e}")
        assert err <= TOL


def _without_x2(models: _Sessions) -> dict:
    """Hide the phase-decomposed parts (core_x2, decoder_x2); returns the full parts."""
    parts = models.entry["parts"]
    models.entry["parts"] = {k: v for k, v in parts.items() if not k.endswith("_x2")}
    return parts


@pytest.mark.parametrize("shape", [(96, 64), (200, 152), (64, 1440), (1024, 1536)])
def test_x2_graphs_equal_plain(tmp_path, shape):
    """The phase-decomposed core/decoder (rows and cols multiples of 8) equal the plain ones."""
    from ptolemy_rt.unet import _use_x2

    models = _sessions_from_weights(tmp_path, _random_weights(8, 5, seed=11), 8, 5)
    assert _use_x2(models, *shape)
    assert not _use_x2(models, shape[0], shape[1] + 4) and not _use_x2(models, shape[0] + 4, shape[1])
    img = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    x2 = unet_logits(models, img, strip_rows=24)
    parts = _without_x2(models)
    try:
        plain = unet_logits(models, img, strip_rows=24)
    finally:
        models.entry["parts"] = parts
    err = float(np.abs(x2 - plain).max())
    print(f"{shape}: max |x2 graphs - plain| = {err:.2e}")
    assert err <= TOL


def test_halo_margin(tmp_path):
    """Halo 8 px is already exact (the receptive field of the stripped levels), 4 px is not;
    the exported halo (HALO_ROWS) is a multiple of 4 and at least 8."""
    assert HALO_ROWS % 4 == 0 and HALO_ROWS >= 8
    models = _sessions_from_weights(tmp_path, _random_weights(8, 6, seed=7), 8, 6)
    _without_x2(models)  # the x2 graphs round the halo up to a multiple of 8
    img = np.random.default_rng(4).standard_normal((160, 96)).astype(np.float32)
    whole = unet_logits_whole(models, img)
    errs = {}
    for halo in (4, 8):
        models.entry["architecture"]["halo_rows"] = halo
        errs[halo] = float(np.abs(unet_logits(models, img, strip_rows=24) - whole).max())
    assert errs[8] <= TOL < errs[4]


# --- ONNX versus the PyTorch module -----------------------------------------------------

@pytest.mark.parametrize("depth,shape", [(9, (512, 512)), (9, (1024, 1440)), (5, (300, 212)),
                                         (3, (66, 90))])
def test_small_unet_onnx_equals_torch(tmp_path, depth, shape):
    torch = pytest.importorskip("torch")
    from export.arch_unet import UNet

    torch.manual_seed(depth)
    module = UNet(channels=8, depth=depth).eval()
    module.init_last_bias()
    models = _export_module(module, tmp_path)
    img = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(img)[None, None]).numpy()[0, 0]
    for name, got in (("whole", unet_logits_whole(models, img)),
                      ("strips", unet_logits(models, img, strip_rows=64))):
        err = float(np.abs(got - want).max())
        print(f"UNet(8, {depth}) {shape} {name}: max |onnx - torch| = {err:.2e}")
        assert err <= TOL


def test_unet_module_layout():
    torch = pytest.importorskip("torch")
    from export.arch_unet import UNet

    keys = set(UNet(16, 5).state_dict())
    assert "last.bias" in keys and "down_path.4.conv.weight" in keys and "up_path.3.conv.bias" in keys
    assert "down_path.5.conv.weight" not in keys and "up_path.4.conv.weight" not in keys
    m = UNet(16, 5)
    m.init_last_bias()
    assert float(m.last.bias.detach()[0]) == -10.0
    with pytest.raises(ValueError):
        UNet(8, 2)
    assert torch  # imported for the skip


# --- the published model ------------------------------------------------------------------

@pytest.fixture(scope="module")
def published(tmp_path_factory):
    torch = pytest.importorskip("torch")
    if not UNET_CKPT.is_file():
        pytest.skip("../shared/ptolemy-2022 not present")
    from export.arch_unet import load_published_unet

    module = load_published_unet(UNET_CKPT)
    assert set(module.state_dict()) == set(torch.load(UNET_CKPT, map_location="cpu"))
    return module, _export_module(module, tmp_path_factory.mktemp("unet_published"))


@needs_shared
def test_published_random_512(published):
    import torch

    module, models = published
    img = np.random.default_rng(3).standard_normal((512, 512)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(img)[None, None]).numpy()[0, 0]
    for name, got in (("whole", unet_logits_whole(models, img)),
                      ("strips", unet_logits(models, img, strip_rows=96))):
        err = float(np.abs(got - want).max())
        print(f"published U-Net random 512x512 {name}: max |onnx - torch| = {err:.2e}")
        assert err <= TOL


@needs_shared
def test_published_medmag_parity_unpadded(published):
    """Real image at its own 1024×1440 (deep levels 45 → 22 → 11 → 5 columns)."""
    import torch

    module, models = published
    img = _normalised_medmag(pad=False)
    assert img.shape == (1024, 1440)
    with torch.no_grad():
        want = module(torch.from_numpy(img)[None, None]).numpy()[0, 0]
    whole = unet_logits_whole(models, img)
    strips = unet_logits(models, img)
    small = unet_logits(models, img, strip_rows=48)
    for name, got in (("whole", whole), ("strips", strips), ("strips48", small)):
        err = float(np.abs(got - want).max())
        print(f"published U-Net medmag 1024x1440 {name}: max |onnx - torch| = {err:.2e}")
        assert err <= TOL
    assert float(np.abs(small - whole).max()) <= TOL


@needs_shared
def test_published_medmag_mask_equals_reference(published):
    """docs/ALGORITHM.md#medmag-padding, #medmag-mask: padded to 1024×1536, mask = sigmoid(logits) > 1e-4, cut back."""
    _, models = published
    img = _normalised_medmag(pad=True)
    assert img.shape == (1024, 1536)
    logits = unet_logits(models, img)
    whole = unet_logits_whole(models, img)
    err = float(np.abs(logits - whole).max())
    print(f"published U-Net medmag 1024x1536: max |strips - whole| = {err:.2e}")
    assert err <= TOL
    mask = logits_to_mask(logits)[:1024, :1440]
    ref = np.load(REFERENCE / "medmag_readme_1024x1440.unet_mask.npy").astype(bool)
    assert ref.shape == mask.shape
    differ = int((mask != ref).sum())
    print(f"mask pixels differing from the published mask: {differ} of {ref.size} "
          f"({100 * differ / ref.size:.4f} %); mask fraction {mask.mean():.5f}")
    assert differ <= 0.001 * ref.size


# --- the core in three passes (core_down / core_deep / core_up), bit-identical ----------------

def _core_in_strips_equals_whole(models, img, **kw):
    """unet_logits with the three-pass core (the test fails if the whole-core parts are used)
    equals the whole-core run bit for bit; returns the logits."""
    from ptolemy_rt.unet import _use_deep, _use_x2

    c = models.model("hole_unet").architecture.channels
    x2 = _use_x2(models, *img.shape)
    assert _use_deep(models, *img.shape, c, x2, 0)
    whole = unet_logits(models, img, core_budget_bytes=2**62)
    session = models.session

    def no_whole_core(key, role):
        assert role not in ("core", "core_x2"), "the whole-core part was used"
        return session(key, role)

    models.session = no_whole_core
    try:
        strips = unet_logits(models, img, core_budget_bytes=0, **kw)
    finally:
        models.session = session
    print(f"{img.shape} x2={x2} {kw}: max |three-pass core - whole core| = {float(np.abs(strips - whole).max()):.2e}")
    assert np.array_equal(strips, whole)
    return whole


@pytest.mark.parametrize("shape,strip_rows,budget", [
    ((1024, 512), 128, 1),  # 8 bands, one per core band (quarter-res windows of 32 + 2·24 rows)
    ((1024, 508), 128, 1),  # cols not a multiple of 8: the plain core_up / decoder
    ((768, 256), 256, 2**20),  # several decoder bands per core band
    ((512, 200), None, None)])  # one band
def test_core_in_strips_bit_identical_random_weights(tmp_path, shape, strip_rows, budget):
    from ptolemy_rt.unet import DEEP_PARTS

    models = _sessions_from_weights(tmp_path, _random_weights(8, 9, seed=9), 8, 9)
    assert set(DEEP_PARTS) | {"core_up_x2"} <= set(models.entry["parts"])
    img = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    kw = {} if budget is None else {"strip_rows": strip_rows, "budget_bytes": budget}
    whole = _core_in_strips_equals_whole(models, img, **kw)
    assert whole.std() > 1e-3


def test_core_halo_is_needed(tmp_path):
    """Without the core halo the three-pass core differs from the whole core (the windows'
    context is what makes it exact; `core_halo` is the analytic bound, 20 rows rounded up
    to 24)."""
    from ptolemy_rt import unet

    models = _sessions_from_weights(tmp_path, _random_weights(8, 9, seed=9), 8, 9)
    img = np.random.default_rng(2).standard_normal((1024, 512)).astype(np.float32)
    whole = unet_logits(models, img, core_budget_bytes=2**62)
    full = unet.core_halo
    try:
        unet.core_halo = lambda a, b: 0
        short = unet_logits(models, img, strip_rows=128, budget_bytes=1, core_budget_bytes=0)
    finally:
        unet.core_halo = full
    assert not np.array_equal(short, whole)


@needs_shared
def test_published_core_in_strips_bit_identical(published):
    """The published U-Net on the padded medium-mag example (1024×1536, x2 graphs) and on its
    1024×1532 crop (plain graphs): the three-pass core in several core bands equals the
    whole core bit for bit (no BatchNorm in the U-Net: the result does not depend on the
    classifiers' BatchNorm regime)."""
    _, models = published
    img = _normalised_medmag(pad=True)
    _core_in_strips_equals_whole(models, img, strip_rows=128, budget_bytes=1)
    _core_in_strips_equals_whole(models, np.ascontiguousarray(img[:, :1532]), strip_rows=256, budget_bytes=1)


def test_own_set_core_in_strips_bit_identical():
    """Issue 14: the own set (16 channels, depth 7) has the three-pass core's parts
    (export/add_unet_parts.py rebuilt them from its whole graph), so its core no longer runs
    on the whole quarter-resolution tensor of a large image (1.07 GB per tensor at 16384²);
    on a synthetic R2/2 image, with the x2 graphs (1024×512) and the plain ones (1024×508),
    the three-pass core equals the whole core bit for bit."""
    from ptolemy_rt import synthetic
    from ptolemy_rt.medmag import normalise
    from ptolemy_rt.models import OWN_SET, available_sets, load_model_set
    from ptolemy_rt.unet import DEEP_PARTS

    if OWN_SET not in available_sets():
        pytest.skip("own set not present")
    models = load_model_set(OWN_SET)
    assert set(DEEP_PARTS) | {"core_up_x2"} <= set(models.model("hole_unet").parts)
    image, _ = synthetic.medmag_image(4, (1024, 512), pixel_nm=14.0, film="R2/2", angle_deg=7.0, tilt_deg=0.0)
    img = normalise(image)
    whole = _core_in_strips_equals_whole(models, img, strip_rows=128, budget_bytes=1)
    _core_in_strips_equals_whole(models, np.ascontiguousarray(img[:, :508]), strip_rows=256, budget_bytes=1)
    mask = logits_to_mask(whole)
    assert 0.01 < mask.mean() < 0.9, mask.mean()  # holes found: the logits are the network's


# --- column tiles of the decoder, bit-identical ---------------------------------------------

def _col_tiles_equal_untiled(models, img, strip_cols, **kw):
    """unet_logits with decoder column tiles of strip_cols equals the untiled run bit for bit
    (logits and the strip-wise mask); returns the logits."""
    from ptolemy_rt import unet

    runs = []
    session = models.session

    def counting(key, role):
        s = session(key, role)
        if role.startswith("decoder"):
            return SimpleNamespace(run=lambda names, feeds, opts=None: runs.append(feeds["image"].shape) or s.run(names, feeds, opts))
        return s

    models.session = counting
    try:
        untiled = unet_logits(models, img, strip_cols=img.shape[1], **kw)  # one tile: the whole width
        assert {r[3] for r in runs} == {img.shape[1]}
        runs.clear()
        tiled = unet_logits(models, img, strip_cols=strip_cols, **kw)
        mask = unet_logits(models, img, strip_cols=strip_cols, mask_threshold=np.float32(-0.5), **kw)
    finally:
        models.session = session
    assert len({r[3] for r in runs}) == 1 and runs[0][3] < img.shape[1]  # tiles, one width
    print(f"{img.shape} {kw} strip_cols={strip_cols}: {len(runs) // 2} decoder runs of {runs[0][2:]}, "
          f"max |tiled - untiled| = {float(np.abs(tiled - untiled).max()):.2e}")
    assert np.array_equal(tiled, untiled)
    assert np.array_equal(mask, untiled > np.float32(-0.5))
    assert unet.MIN_STRIP_ROWS == 64
    return untiled


@pytest.mark.parametrize("depth,shape,strip_cols,kw", [
    (9, (256, 1024), 64, {}),  # x2 graphs, whole core
    (9, (256, 1020), 64, {}),  # cols a multiple of 4 only: plain core / decoder
    (9, (512, 768), 200, {"strip_rows": 64}),  # several row bands
    (9, (1024, 512), 96, {"strip_rows": 128, "budget_bytes": 1, "core_budget_bytes": 0}),  # three-pass core
    (9, (1024, 508), 64, {"strip_rows": 128, "budget_bytes": 1, "core_budget_bytes": 0}),  # ... plain graphs
    (5, (200, 152), 40, {"strip_rows": 12})])
def test_col_tiles_bit_identical_random_weights(tmp_path, depth, shape, strip_cols, kw):
    models = _sessions_from_weights(tmp_path, _random_weights(8, depth, seed=3 + depth), 8, depth)
    img = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    assert _col_tiles_equal_untiled(models, img, strip_cols, **kw).std() > 1e-3


def test_col_tiles_by_budget_bit_identical(tmp_path):
    """Without strip_cols a window over budget_bytes is tiled by the budget (as a wide image
    is by the default budget); same logits."""
    models = _sessions_from_weights(tmp_path, _random_weights(8, 9, seed=12), 8, 9)
    img = np.random.default_rng(7).standard_normal((256, 2048)).astype(np.float32)
    budget = 4 * 8 * 2048 * 40  # one 8-channel window of 40 rows × 2048 cols
    assert len(plan_cols(2048, 80, 8, multiple=8, budget_bytes=budget)) > 1
    whole = unet_logits(models, img, strip_rows=10**6)
    tiled = unet_logits(models, img, strip_rows=64, budget_bytes=budget)
    assert np.array_equal(tiled, whole)


@needs_shared
def test_published_col_tiles_bit_identical(published):
    """The published U-Net on the padded medium-mag example (x2 graphs) and its 1024×1532 crop
    (plain graphs), decoder in column tiles: bit-identical to the untiled decoder, with the
    core whole and in three passes."""
    _, models = published
    img = _normalised_medmag(pad=True)
    _col_tiles_equal_untiled(models, img, 320)
    _col_tiles_equal_untiled(models, img, 512, strip_rows=128, budget_bytes=1, core_budget_bytes=0)
    _col_tiles_equal_untiled(models, np.ascontiguousarray(img[:, :1532]), 400)
