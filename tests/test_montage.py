"""SerialEM montage assembly: synthetic montages with exact truth, stage mapping, memory, errors."""
from __future__ import annotations

import os
import struct
import tracemalloc
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from ptolemy_rt.errors import InputImageError
from ptolemy_rt.mdoc import parse_mdoc_text, read_mdoc
from ptolemy_rt.montage import (
    IMOD_STAMP,
    assemble_montage,
    assemble_pieces,
    fit_stage_transform,
    montage_layout,
    mrc_rows_top_down,
)

REPO = Path(__file__).resolve().parent.parent
REAL = Path(os.environ.get("PTOLEMY_SHARED", REPO.parent / "shared")) / "real-files" / "serialem"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real-files/serialem not present")

NY, NX = 40, 50  # piece rows, cols


def mdoc_text(piece_shape, entries, pixel_spacing=100.0, mont_sections=(0,), move_stage=1):
    """entries: list of dicts z, pc (x, y[, mz]), optional ali, ali_vs, stage."""
    ny, nx = piece_shape
    out = [f"PixelSpacing = {pixel_spacing}", f"ImageSize = {nx} {ny}", "Montage = 1", "DataMode = 1", "",
           "[T = SerialEM: synthetic]", ""]
    for e in entries:
        mz = e.get("mz", 0)
        out += [f"[ZValue = {e['z']}]", f"PieceCoordinates = {e['pc'][0]} {e['pc'][1]} {mz}"]
        if "stage" in e:
            out.append(f"StagePosition = {float(e['stage'][0])!r} {float(e['stage'][1])!r}")
        if "ali" in e:
            out.append(f"AlignedPieceCoords = {e['ali'][0]} {e['ali'][1]} {mz}")
        if "ali_vs" in e:
            out.append(f"AlignedPieceCoordsVS = {e['ali_vs'][0]} {e['ali_vs'][1]} {mz}")
        out.append(f"PixelSpacing = {pixel_spacing}")
        out.append("")
    for m in mont_sections:
        out += [f"[MontSection = {m}]", f"MoveStage = {move_stage}", ""]
    return "\n".join(out) + "\n"


def write_stack(path, pieces, top_down_header=False, imod_stamp=True):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(np.stack(pieces)).astype(np.int16))
        if top_down_header:
            mrc.header.exttyp = b"FEI1"
            mrc.header.nversion = 20140  # IMOD's rule: FEI and exactly 20140 (as EPU writes)
    raw = bytearray(Path(path).read_bytes())
    if imod_stamp and not top_down_header:
        raw[152:156] = struct.pack("<i", IMOD_STAMP)
    Path(path).write_bytes(bytes(raw))


def grid(nx_pieces, ny_pieces, step_x=42, step_y=33):
    """Regular piece-frame offsets in SerialEM's stack order (x outer, y inner)."""
    return [(ix * step_x, iy * step_y) for ix in range(nx_pieces) for iy in range(ny_pieces)]


def cut(truth, offsets, top_down=False):
    """Pieces of `truth` (an atlas in stored orientation) at piece-frame offsets (x, y)."""
    h = truth.shape[0]
    out = []
    for x, y in offsets:
        r = h - y - NY if top_down else y
        out.append(truth[r:r + NY, x:x + NX].copy())
    return out


def truth_image(shape, seed=0):
    return np.random.default_rng(seed).integers(-3000, 3000, size=shape).astype(np.int16)


def owner_brute_force(offsets_rc, zs, shape):
    """Per atlas pixel, the index of the covering piece whose centre is nearest (ties: lower z)."""
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]]
    best = np.full(shape, -1)
    best_d = np.full(shape, np.inf)
    best_z = np.full(shape, np.iinfo(np.int64).max)
    for k, ((r0, c0), z) in enumerate(zip(offsets_rc, zs)):
        cov = (rr >= r0) & (rr < r0 + NY) & (cc >= c0) & (cc < c0 + NX)
        d = (rr + 0.5 - (r0 + NY / 2)) ** 2 + (cc + 0.5 - (c0 + NX / 2)) ** 2
        better = cov & ((d < best_d) | ((d == best_d) & (z < best_z)))
        best[better], best_d[better], best_z[better] = k, d[better], z
    return best


@pytest.mark.parametrize("top_down", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_regular_montage_reassembled_exactly(tmp_path, top_down, shuffle):
    offs = grid(4, 3)
    h, w = 2 * 33 + NY, 3 * 42 + NX
    truth = truth_image((h, w))
    pieces = cut(truth, offs, top_down)
    order = list(range(len(offs)))
    if shuffle:  # stack order must not matter: placement is by coordinates
        order = list(np.random.default_rng(1).permutation(len(offs)))
    entries = [{"z": z, "pc": offs[k]} for z, k in enumerate(order)]
    write_stack(tmp_path / "m.mrc", [pieces[k] for k in order], top_down_header=top_down)
    (tmp_path / "m.mrc.mdoc").write_text(mdoc_text((NY, NX), entries))
    mont = assemble_montage(tmp_path / "m.mrc")  # row order detected from the header
    assert mont.layout.rows_top_down is top_down
    assert mont.pixels.dtype == np.float32 and mont.pixels.shape == (h, w)
    assert mont.uncovered_px == 0
    np.testing.assert_array_equal(mont.pixels, truth.astype(np.float32))
    assert mont.pixel_size_nm == pytest.approx(10.0)
    assert mont.layout.coords == "PieceCoordinates"


def test_row_order_detection():
    h = bytearray(1024)
    assert not mrc_rows_top_down(bytes(h))
    h[104:108] = b"FEI2"
    h[108:112] = struct.pack("<i", 20140)
    assert mrc_rows_top_down(bytes(h))
    h[152:156] = struct.pack("<i", IMOD_STAMP)  # IMOD/SerialEM stamp wins
    assert not mrc_rows_top_down(bytes(h))
    h = bytearray(1024)
    h[68:72] = struct.pack("<i", -2)
    assert mrc_rows_top_down(bytes(h))


@pytest.mark.parametrize("key", ["AlignedPieceCoords", "AlignedPieceCoordsVS"])
@pytest.mark.parametrize("top_down", [False, True])
def test_aligned_coordinates_used_when_present(tmp_path, key, top_down):
    nominal = grid(3, 3)
    rng = np.random.default_rng(5)
    true = [(x + int(rng.integers(-4, 5)), y + int(rng.integers(-4, 5))) for x, y in nominal]
    true[0] = (-3, -2)  # negative aligned coordinates are shifted to 0
    mn = np.min(true, axis=0)
    shifted = [(x - mn[0], y - mn[1]) for x, y in true]
    h = max(y for _, y in shifted) + NY
    w = max(x for x, _ in shifted) + NX
    truth = truth_image((h, w), seed=2)
    pieces = cut(truth, shifted, top_down)
    tag = "ali" if key == "AlignedPieceCoords" else "ali_vs"
    entries = [{"z": z, "pc": nominal[z], tag: true[z]} for z in range(len(nominal))]
    write_stack(tmp_path / "a.mrc", pieces, top_down_header=top_down)
    (tmp_path / "a.mrc.mdoc").write_text(mdoc_text((NY, NX), entries))
    mont = assemble_montage(tmp_path / "a.mrc")
    assert mont.layout.coords == key and mont.pixels.shape == (h, w)
    rows = [h - y - NY if top_down else y for _, y in shifted]
    owner = owner_brute_force(list(zip(rows, [x for x, _ in shifted])), list(range(9)), (h, w))
    covered = owner >= 0
    np.testing.assert_array_equal(mont.pixels[covered], truth[covered].astype(np.float32))
    assert mont.uncovered_px == int((~covered).sum()) > 0
    assert np.all(mont.pixels[~covered] == np.float32(mont.fill_value))
    assert mont.fill_value == pytest.approx(float(truth[covered].mean()), rel=1e-5)

    # the stage-piece coordinates can still be asked for: pieces go to the nominal grid
    nom = assemble_montage(tmp_path / "a.mrc", coords="PieceCoordinates")
    assert nom.layout.coords == "PieceCoordinates" and nom.pixels.shape == (2 * 33 + NY, 2 * 42 + NX)
    hn = nom.pixels.shape[0]
    r0 = hn - 33 - NY if top_down else 33  # piece 4 = (ix 1, iy 1) sits at nominal (42, 33)
    centre = nom.pixels[r0 + NY // 2 - 2:r0 + NY // 2 + 2, 42 + NX // 2 - 2:42 + NX // 2 + 2]
    np.testing.assert_array_equal(centre, pieces[4][NY // 2 - 2:NY // 2 + 2, NX // 2 - 2:NX // 2 + 2])


def test_overlap_rule_nearest_centre_then_lower_section():
    offs = [(0, 0), (30, 0), (0, 25), (30, 25), (15, 12)]  # heavy, irregular overlaps
    zs = [3, 0, 4, 1, 2]
    text = "ImageSize = 50 40\n" + "".join(
        f"[ZValue = {z}]\nPieceCoordinates = {x} {y} 0\n" for z, (x, y) in zip(zs, offs))
    lay = montage_layout(parse_mdoc_text(text))
    stack = np.zeros((5, NY, NX), np.int16)
    for k, z in enumerate(zs):
        stack[z] = 100 * (k + 1)  # every piece disagrees with every other
    atlas, fill, unc = assemble_pieces(lay, stack)
    owner = owner_brute_force([(y, x) for x, y in offs], zs, lay.shape)
    expect = np.where(owner >= 0, 100 * (owner + 1), fill).astype(np.float32)
    np.testing.assert_array_equal(atlas, expect)
    # determinism: same bytes again
    assert assemble_pieces(lay, stack)[0].tobytes() == atlas.tobytes()


def test_missing_piece_and_explicit_fill(tmp_path):
    offs = grid(2, 2)
    truth = truth_image((33 + NY, 42 + NX), seed=3)
    pieces = cut(truth, offs)
    keep = [0, 1, 3]  # piece 2 (ix 1, iy 0) was skipped
    entries = [{"z": z, "pc": offs[k]} for z, k in enumerate(keep)]
    write_stack(tmp_path / "s.mrc", [pieces[k] for k in keep])
    (tmp_path / "s.mdoc").write_text(mdoc_text((NY, NX), entries))
    mont = assemble_montage(tmp_path / "s.mrc", fill=-7.0)  # finds s.mdoc too
    assert mont.fill_value == -7.0
    # what only piece 2 covered: rows < 33 (not in the pieces at y = 33), cols >= 50 (not in x = 0)
    assert np.all(mont.pixels[:33, 50:] == -7.0) and mont.uncovered_px == 33 * 42
    covered = np.ones(truth.shape, bool)
    covered[:33, 50:] = False
    np.testing.assert_array_equal(mont.pixels[covered], truth[covered].astype(np.float32))


def _stage_truth(angle_deg=20.0, scale=0.05, offset=(-120.0, 340.0), reflect=False):
    a = np.deg2rad(angle_deg)
    lin = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    if reflect:
        lin = lin @ np.diag([1.0, -1.0])
    return lin, np.asarray(offset)


@pytest.mark.parametrize("top_down", [False, True])
def test_stage_transform_matches_analytic_truth(tmp_path, top_down):
    offs = grid(3, 2)
    lin, t = _stage_truth()
    entries = []
    for z, (x, y) in enumerate(offs):
        c = np.array([x + NX / 2, y + NY / 2])  # piece centre, piece frame (y up)
        entries.append({"z": z, "pc": (x, y), "stage": tuple(lin @ c + t)})
    truth = truth_image((33 + NY, 84 + NX), seed=4)
    write_stack(tmp_path / "t.mrc", cut(truth, offs, top_down), top_down_header=top_down)
    (tmp_path / "t.mrc.mdoc").write_text(mdoc_text((NY, NX), entries))
    mont = assemble_montage(tmp_path / "t.mrc")
    st = mont.stage
    assert st.method == "affine-fit" and st.n_points == 6 and st.rms_um < 1e-9
    h = mont.pixels.shape[0]
    pts_piece = np.array([[0.0, 0.0], [10.5, 3.25], [133.0, 72.0], [70.0, 40.0]])  # piece frame
    pts_atlas = pts_piece.copy()
    if top_down:
        pts_atlas[:, 1] = h - pts_piece[:, 1]
    np.testing.assert_allclose(st(pts_atlas), pts_piece @ lin.T + t, atol=1e-9)
    np.testing.assert_allclose(st.inverse(st(pts_atlas)), pts_atlas, atol=1e-9)


def test_stage_transform_single_row_and_image_shift_montage():
    lin, t = _stage_truth(angle_deg=-35.0, scale=0.2)
    offs = [(42 * i, 0) for i in range(4)]
    entries = [{"z": z, "pc": o, "stage": tuple(lin @ np.array([o[0] + NX / 2, o[1] + NY / 2]) + t)}
               for z, o in enumerate(offs)]
    lay = montage_layout(parse_mdoc_text(mdoc_text((NY, NX), entries)))
    st = fit_stage_transform(lay)
    assert st.method == "similarity-fit" and st.rms_um < 1e-9
    np.testing.assert_allclose(np.reshape(st.matrix, (2, 2)), lin, atol=1e-12)
    np.testing.assert_allclose(st.offset, t, atol=1e-9)

    same = [{"z": z, "pc": o, "stage": (5.0, -6.0)} for z, o in enumerate(grid(2, 2))]
    lay = montage_layout(parse_mdoc_text(mdoc_text((NY, NX), same, pixel_spacing=250.0, move_stage=0)))
    st = fit_stage_transform(lay)
    assert st.method == "assumed"
    np.testing.assert_allclose(st([[lay.shape[1] / 2, lay.shape[0] / 2]]), [[5.0, -6.0]])
    np.testing.assert_allclose(st.matrix, (0.025, 0.0, 0.0, 0.025))

    nostage = [{"z": z, "pc": o} for z, o in enumerate(grid(2, 2))]
    assert fit_stage_transform(montage_layout(parse_mdoc_text(mdoc_text((NY, NX), nostage)))) is None


@needs_real
def test_real_mdocs_layout_and_stage_fit():
    for name, full in (("mdocfile_montage_section.mdoc", (31992, 31176)),
                       ("pyserialem_gm.mrc.mdoc", None)):
        m = read_mdoc(REAL / name)
        lay = montage_layout(m, coords="PieceCoordinates")
        if full:
            assert (lay.shape[1], lay.shape[0]) == full  # FullMontSize = X Y
        ali = montage_layout(m)
        assert ali.coords == "AlignedPieceCoordsVS"
        st = fit_stage_transform(ali)
        assert st.method == "affine-fit" and st.n_points == len(ali.pieces)
        px_um = m.pixel_spacing_A * 1e-4
        scales = np.linalg.norm(np.reshape(st.matrix, (2, 2)), axis=0)
        assert np.all(np.abs(scales / px_um - 1) < 0.1), scales
        assert st.rms_um < 0.2 * px_um * 1000  # the pieces sit where their StagePosition says
        assert np.linalg.det(np.reshape(st.matrix, (2, 2))) > 0  # proper rotation, y up
    multi = read_mdoc(REAL / "mdocfile_montage_section_multiple.mdoc")
    with pytest.raises(InputImageError, match="holds 10 montages"):
        montage_layout(multi)
    lay = montage_layout(multi, section=3)
    assert lay.coords == "AlignedPieceCoords" and len(lay.pieces) == 9
    assert fit_stage_transform(lay).rms_um < 0.5  # µm; 20 px of 7.7 nm


def scaled_real_montage(m, factor: int, stack_path: Path, make_truth):
    """Write a montage laid out as the real .mdoc `m` says, scaled down by `factor`: the stack
    `stack_path` holds the pieces cut from ``make_truth((h, w))`` at the (aligned) piece
    positions, and ``stack_path + ".mdoc"`` the scaled .mdoc (PixelSpacing × factor, the real
    StagePositions). Returns (piece offsets (x, y) px from the top-left, (ny, nx), truth image)."""
    ny, nx = m.image_size[1] // factor, m.image_size[0] // factor
    lines = [f"PixelSpacing = {m.pixel_spacing_A * factor}", f"ImageSize = {nx} {ny}", "Montage = 1"]
    ali = []
    for s in m.images:
        x, y, _ = s.aligned_piece_coords_vs
        ali.append((round(x / factor), round(y / factor)))
        px, py, pz = s.piece_coordinates
        lines += [f"[ZValue = {s.index}]", f"PieceCoordinates = {round(px / factor)} {round(py / factor)} {pz}",
                  f"AlignedPieceCoordsVS = {ali[-1][0]} {ali[-1][1]} 0",
                  f"StagePosition = {s.stage_position[0]} {s.stage_position[1]}"]
    mn = np.min(ali, axis=0)
    sh = [(x - mn[0], y - mn[1]) for x, y in ali]
    h, w = max(y for _, y in sh) + ny, max(x for x, _ in sh) + nx
    truth = make_truth((h, w))
    write_stack(stack_path, [truth[y:y + ny, x:x + nx] for x, y in sh])
    Path(str(stack_path) + ".mdoc").write_text("\n".join(lines) + "\n")
    return sh, (ny, nx), truth


@needs_real
def test_real_mdoc_with_synthesised_pieces(tmp_path):
    """pyserialem's 5×5 montage at 1/16 scale: its (aligned) layout, pieces cut from a known image."""
    m = read_mdoc(REAL / "pyserialem_gm.mrc.mdoc")
    sh, (ny, nx), truth = scaled_real_montage(m, 16, tmp_path / "gm.mrc", lambda shape: truth_image(shape, seed=9))
    h, w = truth.shape
    mont = assemble_montage(tmp_path / "gm.mrc")
    assert mont.pixels.shape == (h, w) and len(mont.layout.pieces) == 25
    covered = np.zeros((h, w), bool)
    for x, y in sh:
        covered[y:y + ny, x:x + nx] = True
    np.testing.assert_array_equal(mont.pixels[covered], truth[covered].astype(np.float32))
    assert mont.stage.method == "affine-fit"
    # piece 0's StagePosition is where its centre lands, to within the fit's residual
    p0 = mont.layout.pieces[0]
    got = mont.stage([[p0.x + nx / 2, p0.y + ny / 2]])[0]
    assert np.hypot(*(got - m.images[0].stage_position)) < 3 * mont.stage.rms_um + 1e-6


def test_memory_bound_output_plus_one_piece(tmp_path):
    ny, nx = 200, 240
    offs = [(ix * 216, iy * 180) for ix in range(4) for iy in range(3)]
    h, w = 2 * 180 + ny, 3 * 216 + nx
    truth = truth_image((h, w), seed=6)
    write_stack(tmp_path / "big.mrc", [truth[y:y + ny, x:x + nx] for x, y in offs])
    entries = [{"z": z, "pc": o} for z, o in enumerate(offs)]
    (tmp_path / "big.mrc.mdoc").write_text(mdoc_text((ny, nx), entries))
    tracemalloc.start()
    try:
        mont = assemble_montage(tmp_path / "big.mrc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(mont.pixels, truth.astype(np.float32))
    piece_f32 = ny * nx * 4
    bound = mont.pixels.nbytes + 3 * piece_f32 + 256 * w * 4 + (1 << 20)
    assert peak <= bound, (peak, bound)
    assert peak < mont.pixels.nbytes + 12 * piece_f32 * 0.5  # far below "all pieces in memory too"


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_section", "the .mdoc names section 4 but the stack has 4 sections"),
        ("size", "pieces are 40×50 px but"),
        ("no_mdoc", "no .mdoc beside it"),
        ("not_montage", "is not a montage .mdoc"),
        ("truncated", "truncated or corrupt MRC stack"),
        ("bad_section", "has no montage section 2"),
        ("bad_coords", "unknown piece coordinates"),
        ("no_aligned", "ZValue 0 has no AlignedPieceCoords"),
    ],
)
def test_bad_montages_one_line_error(tmp_path, case, expected):
    offs = grid(2, 2)
    truth = truth_image((33 + NY, 42 + NX))
    write_stack(tmp_path / "b.mrc", cut(truth, offs))
    entries = [{"z": z, "pc": o} for z, o in enumerate(offs)]
    kw = {}
    if case == "missing_section":
        entries.append({"z": 4, "pc": (84, 0)})
    text = mdoc_text((NY, NX), entries)
    if case == "size":
        text = text.replace("ImageSize = 50 40", "ImageSize = 40 50")
    if case == "not_montage":
        text = "PixelSpacing = 3\n[ZValue = 0]\nTiltAngle = 0\n"
    if case == "truncated":
        raw = (tmp_path / "b.mrc").read_bytes()
        (tmp_path / "b.mrc").write_bytes(raw[:-1000])
    kw = {"bad_section": {"section": 2}, "bad_coords": {"coords": "Wrong"},
          "no_aligned": {"coords": "AlignedPieceCoords"}}.get(case, {})
    if case != "no_mdoc":
        (tmp_path / "b.mrc.mdoc").write_text(text)
    with pytest.raises(InputImageError) as e:
        assemble_montage(tmp_path / "b.mrc", **kw)
    msg = str(e.value)
    assert "\n" not in msg and expected in msg, msg


def test_nan_piece_is_rejected():
    lay = montage_layout(parse_mdoc_text("ImageSize = 2 2\n[ZValue = 0]\nPieceCoordinates = 0 0 0\n"))
    with pytest.raises(InputImageError, match="section 0 contains NaN"):
        assemble_pieces(lay, np.array([[[1.0, np.nan], [0.0, 1.0]]]), path="p.mrc")


@pytest.mark.parametrize("b", [2, 3, 7])
def test_binned_assembly_is_the_block_mean_of_the_full_atlas(tmp_path, b):
    offs = [(0, 0), (42, 3), (1, 33), (45, 31)]  # irregular, so blocks straddle seams
    truth = truth_image((31 + NY + 2, 45 + NX), seed=8)
    pieces = [p + 1000 * k for k, p in enumerate(cut(truth, offs))]  # pieces disagree
    lin, t = _stage_truth()
    entries = [{"z": z, "pc": o, "stage": tuple(lin @ np.array([o[0] + NX / 2, o[1] + NY / 2]) + t)}
               for z, o in enumerate(offs)]
    write_stack(tmp_path / "q.mrc", pieces)
    (tmp_path / "q.mrc.mdoc").write_text(mdoc_text((NY, NX), entries))
    full = assemble_montage(tmp_path / "q.mrc", fill=np.nan)
    binned = assemble_montage(tmp_path / "q.mrc", fill=-1.0, bin_factor=b)
    h, w = full.pixels.shape
    hb, wb = -(-h // b), -(-w // b)
    assert binned.pixels.shape == (hb, wb) and binned.bin_factor == b
    pad = np.full((hb * b, wb * b), np.nan)
    pad[:h, :w] = full.pixels
    blocks = pad.reshape(hb, b, wb, b)
    n = np.sum(~np.isnan(blocks), axis=(1, 3))
    with np.errstate(invalid="ignore"):
        expect = np.where(n > 0, np.nansum(blocks, axis=(1, 3)) / np.maximum(n, 1), -1.0)
    np.testing.assert_allclose(binned.pixels, expect.astype(np.float32), rtol=1e-6)
    assert binned.uncovered_px == int((n == 0).sum())
    assert binned.pixel_size_nm == pytest.approx(full.pixel_size_nm * b)
    pts = np.array([[3.0, 4.0], [10.5, 7.25]])
    np.testing.assert_allclose(binned.stage(pts), full.stage(pts * b), atol=1e-9)
