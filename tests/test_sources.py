"""Reading what SerialEM and EPU write (`sources.load_image`) through the command line:
montages assembled from synthesised pieces (with real .mdoc layouts), stage coordinates
checked analytically, EPU image XML / Atlas.dm (real files) with synthetic pixels."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from conftest import REPO, needs_shared
from test_cli_common import fake  # noqa: F401  (fixture)
from test_montage import mdoc_text, scaled_real_montage, write_stack

from ptolemy_rt import cli, sources
from ptolemy_rt.errors import InputImageError
from ptolemy_rt.mdoc import read_mdoc

REAL = Path(os.environ.get("PTOLEMY_SHARED", REPO.parent / "shared")) / "real-files"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real-files not present")
OWN = "ptolemy-rt-synth-v1"
PUBLISHED = "ptolemy-2022"
needs_published = pytest.mark.skipif(not (REPO / "onnx_models" / PUBLISHED / "manifest.json").is_file(),
                                     reason="published model set not built")


def run_cli(args, capsys):
    code = cli.run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def stage_truth(angle_deg=20.0, scale=0.01, offset=(-120.0, 340.0)):
    """L (µm/px, piece frame: x right, y up) and t (µm): stage = L @ (x, y) + t."""
    a = math.radians(angle_deg)
    lin = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return lin, np.array(offset)


def make_montage(folder: Path, atlas: np.ndarray, piece: tuple[int, int], step: tuple[int, int],
                 pixel_spacing_a=100.0, lin=None, t=None, name="map.mrc"):
    """Cut `atlas` (stored orientation: row = piece-frame y) into pieces on a regular grid,
    in SerialEM's stack order (x outer, y inner); StagePosition = L @ piece centre + t."""
    ny, nx = piece
    h, w = atlas.shape
    offs = [(x, y) for x in range(0, w - nx + 1, step[0]) for y in range(0, h - ny + 1, step[1])]
    assert max(x for x, _ in offs) + nx == w and max(y for _, y in offs) + ny == h
    entries = []
    for z, (x, y) in enumerate(offs):
        e = {"z": z, "pc": (x, y)}
        if lin is not None:
            e["stage"] = tuple(lin @ np.array([x + nx / 2.0, y + ny / 2.0]) + t)
        entries.append(e)
    write_stack(folder / name, [atlas[y:y + ny, x:x + nx] for x, y in offs])
    (folder / (name + ".mdoc")).write_text(mdoc_text((ny, nx), entries, pixel_spacing=pixel_spacing_a))
    return folder / name, offs


def inside_convex(p, poly) -> bool:
    """Whether point p lies inside the convex polygon `poly` (either orientation)."""
    poly = np.asarray(poly, dtype=np.float64)
    e = np.roll(poly, -1, axis=0) - poly
    w = np.asarray(p, dtype=np.float64) - poly
    cross = e[:, 0] * w[:, 1] - e[:, 1] * w[:, 0]
    return bool(np.all(cross >= 0) or np.all(cross <= 0))


def box_centre(item):
    v = np.asarray(item["vertices"], dtype=np.float64)
    return v.mean(axis=0)


# --------------------------------------------------------------------------- SerialEM montages


@pytest.mark.parametrize("b", [1, 2])
def test_montage_stage_coordinates_analytic(tmp_path, capsys, fake, b):
    """A target at a known pixel of piece 0 gets the stage position that piece's StagePosition
    and the pixel spacing give (rotated piece frame, y up), at binning 1 and 2."""
    ny, nx = 100, 120
    atlas = (np.random.default_rng(1).integers(50, 3000, size=(190, 336))).astype(np.int16)
    lin, t = stage_truth()
    mrc, offs = make_montage(tmp_path, atlas, (ny, nx), (108, 90), 100.0, lin, t)
    code, out, _ = run_cli(["lowmag", mrc, "-f", "json-full", "--montage-bin", b], capsys)
    assert code == 0
    obj = json.loads(out)
    assert obj["shape"] == [-(-190 // b), -(-336 // b)]
    assert obj["pixel_size_nm"] == pytest.approx(10.0 * b) and obj["pixel_size_source"] == "mdoc"
    assert obj["source"]["kind"] == "serialem-montage" and obj["source"]["bin"] == b
    assert obj["stage"]["method"] == "affine-fit" and obj["stage"]["rms_um"] < 1e-9
    s0 = lin @ np.array([nx / 2.0, ny / 2.0]) + t  # piece 0 (x, y = 0, 0): its StagePosition
    for it in obj["items"]:
        x, y = box_centre(it) * b  # full-resolution atlas px = piece 0 px (it starts at 0, 0)
        # piece frame: stored row index counts up from the bottom, so no flip; offset from its centre
        expect = s0 + 0.01 * np.array([[math.cos(math.radians(20)), -math.sin(math.radians(20))],
                                       [math.sin(math.radians(20)), math.cos(math.radians(20))]]) @ \
            np.array([x - nx / 2.0, y - ny / 2.0])
        assert (it["stage_x_um"], it["stage_y_um"]) == pytest.approx(tuple(expect), abs=1e-9)
    code, out, _ = run_cli(["lowmag", mrc, "-f", "csv", "--montage-bin", b], capsys)
    head, first = out.splitlines()[0].split(","), out.splitlines()[1].split(",")
    assert head[head.index("score") + 1:head.index("x0")] == ["center_x_um", "center_y_um", "area_um2",
                                                              "stage_x_um", "stage_y_um"]
    assert float(first[head.index("stage_x_um")]) == obj["items"][0]["stage_x_um"]
    code, out, _ = run_cli(["lowmag", mrc, "-f", "txt", "--montage-bin", b], capsys)
    lines = out.splitlines()
    assert any(ln.startswith("# stage coordinates (µm): affine-fit from the .mdoc pieces") for ln in lines)
    assert "stage_x_um" in lines[[i for i, ln in enumerate(lines) if ln.startswith("rank")][0]]
    assert f"{obj['items'][0]['stage_x_um']:.3f}" in [ln for ln in lines if ln.strip().startswith("1 ")][0]


def test_naming_the_mdoc_runs_its_montage(tmp_path, capsys, fake):
    """`ptolemy lowmag MAP.mrc.mdoc` is the montage MAP.mrc (the .mdoc is never read as an
    image); without the stack beside it: one error line naming the missing stack, exit 3."""
    atlas = (np.random.default_rng(1).integers(50, 3000, size=(190, 336))).astype(np.int16)
    lin, t = stage_truth()
    mrc, _ = make_montage(tmp_path, atlas, (100, 120), (108, 90), 100.0, lin, t)
    code, by_stack, err = run_cli(["lowmag", mrc, "-f", "json-full", "--montage-bin", 1], capsys)
    assert code == 0, err
    code2, by_mdoc, _ = run_cli(["lowmag", str(mrc) + ".mdoc", "-f", "json-full", "--montage-bin", 1], capsys)
    assert code == code2 == 0
    a, b = json.loads(by_stack), json.loads(by_mdoc)
    assert a["items"] == b["items"] and b["source"]["kind"] == "serialem-montage"
    mrc.unlink()
    code, out, err = run_cli(["lowmag", str(mrc) + ".mdoc"], capsys)
    assert code == 3 and out == "" and len(err.strip().splitlines()) == 1
    assert "is a SerialEM .mdoc, not an image" in err and "map.mrc, not found beside it" in err


def test_plain_image_has_no_stage_columns(tmp_path, capsys, fake):
    p = tmp_path / "a.mrc"
    with mrcfile.new(p) as m:
        m.set_data(np.random.default_rng(0).integers(50, 3000, size=(128, 160)).astype(np.int16))
    code, out, _ = run_cli(["lowmag", p, "-f", "json-full"], capsys)
    obj = json.loads(out)
    assert "stage" not in obj and "source" not in obj and "stage_x_um" not in obj["items"][0]
    code, out, _ = run_cli(["lowmag", p, "-f", "csv"], capsys)
    assert "stage_x_um" not in out


@pytest.mark.parametrize("models", [OWN, pytest.param(PUBLISHED, marks=needs_published)])
def test_montage_runs_the_pipeline_like_the_atlas_and_finds_drawn_squares(tmp_path, capsys, models):
    """A synthetic atlas cut into 3×3 overlapping pieces: the assembled montage (bin 1) gives
    exactly the atlas's result, and every square's stage position is where the square was
    drawn (its truth centre through the pieces' stage mapping)."""
    from ptolemy_rt import synthetic

    img, truth = synthetic.atlas(3, shape=(1024, 1024), pitch=150.0, angle_deg=10.0)
    atlas = img.astype(np.int16)
    plain = tmp_path / "atlas.mrc"
    with mrcfile.new(plain) as m:
        m.set_data(atlas)
    lin, t = stage_truth(angle_deg=-35.0, scale=0.5)  # 5000 Å = 0.5 µm per px
    mrc, _ = make_montage(tmp_path, atlas, (400, 400), (312, 312), 5000.0, lin, t)
    code, ref, _ = run_cli(["lowmag", plain, "-f", "json", "--models", models], capsys)
    assert code == 0
    code, out, _ = run_cli(["lowmag", mrc, "-f", "json-full", "--models", models, "--montage-bin", "1"], capsys)
    assert code == 0
    obj = json.loads(out)
    ref_items = json.loads(ref)
    assert len(ref_items) >= 4
    assert [{k: v for k, v in it.items() if not k.startswith(("stage_", "center_um", "area_um2"))}
            for it in obj["items"]] == ref_items
    side_um = truth[0].side * 0.5
    truth_stage = np.array([lin @ np.array(tr.center) + t for tr in truth])
    found = np.array([[it["stage_x_um"], it["stage_y_um"]] for it in obj["items"]])
    for it, st in zip(obj["items"], found):
        assert st == pytest.approx(lin @ box_centre(it) + t, abs=1e-6)
        assert any(inside_convex(st, [lin @ np.array(v) + t for v in tr.polygon]) for tr in truth)  # on a square
    whole = [k for k, tr in enumerate(truth) if tr.visible_fraction == 1.0]
    near = [np.min(np.hypot(*(found - truth_stage[k]).T)) for k in whole]
    hits = sum(d < 0.1 * side_um for d in near)  # its centre, to a tenth of a side
    assert hits >= 0.8 * len(whole), (hits, len(whole), sorted(near))


def test_auto_bin_and_montage_errors(tmp_path, capsys, fake):
    ny, nx = 100, 120
    atlas = (np.random.default_rng(2).integers(50, 3000, size=(190, 336))).astype(np.int16)
    mrc, _ = make_montage(tmp_path, atlas, (ny, nx), (108, 90), 4000.0)  # 400 nm/px: auto bin 2 (lowmag)
    code, out, _ = run_cli(["lowmag", mrc, "-f", "json-full"], capsys)
    obj = json.loads(out)
    assert obj["source"]["bin"] == 2 and obj["shape"] == [95, 168] and "stage" not in obj
    code, out, _ = run_cli(["medmag", mrc, "-f", "json-full"], capsys)
    assert json.loads(out)["source"]["bin"] == 1
    # --mdoc names the file; a non-montage .mdoc named with --mdoc is an error, beside a file it is ignored
    other = tmp_path / "elsewhere.mdoc"
    shutil.copy(str(mrc) + ".mdoc", other)
    os.remove(str(mrc) + ".mdoc")
    code, _, err = run_cli(["lowmag", mrc, "-f", "json"], capsys)
    assert code == 3 and "stack of 6 sections" in err
    code, out, _ = run_cli(["lowmag", mrc, "--mdoc", other, "-f", "json-full"], capsys)
    assert code == 0 and json.loads(out)["source"]["mdoc"] == str(other)
    tilt = tmp_path / "tilt.mdoc"
    tilt.write_text("PixelSpacing = 3\nImageSize = 120 100\n[ZValue = 0]\nTiltAngle = 0\n")
    code, _, err = run_cli(["lowmag", mrc, "--mdoc", tilt], capsys)
    assert code == 3 and err.count("\n") == 1 and "is not a montage .mdoc" in err
    single = tmp_path / "single.mrc"
    with mrcfile.new(single) as m:
        m.set_data(atlas)
    (tmp_path / "single.mrc.mdoc").write_text(tilt.read_text())
    code, out, _ = run_cli(["lowmag", single, "-f", "json-full"], capsys)
    assert code == 0 and "source" not in json.loads(out)
    for bad in ("0", "x"):
        code, _, err = run_cli(["lowmag", mrc, "--mdoc", other, "--montage-bin", bad], capsys)
        assert code == 2 and "--montage-bin" in err and err.count("\n") == 1
    code, _, err = run_cli(["lowmag", mrc, single, "--mdoc", other, "-o", tmp_path / "o"], capsys)
    assert code == 2 and "--mdoc takes one image" in err


def test_montage_nav_points_on_the_map_item(tmp_path, capsys, fake):
    """-f nav on a montage map: SerialEM's map item describes the assembled overview (top-down,
    binned); a MapScaleMat consistent with the pieces' stage positions puts each point at the
    stage position json-full reports."""
    ny, nx = 100, 120
    atlas = (np.random.default_rng(4).integers(50, 3000, size=(190, 336))).astype(np.int16)
    lin, t = stage_truth(angle_deg=12.0, scale=0.2)
    mrc, _ = make_montage(tmp_path, atlas, (ny, nx), (108, 90), 2000.0, lin, t)
    h, w = atlas.shape
    map_bin = 2  # the overview SerialEM made: the montage binned 2, displayed top-down
    # displayed (x, y_sem) = (x, H - y) / map_bin; stage = L (x, y) + t  →  MapScaleMat = F L⁻¹ / map_bin
    f = np.diag([1.0, -1.0])
    msm = f @ np.linalg.inv(lin) / map_bin
    centre_stage = lin @ np.array([w / 2.0, h / 2.0]) + t
    nav = tmp_path / "session.nav"
    nav.write_text("AdocVersion = 2.00\n\n[Item = 5]\nType = 2\nMapID = 77\nMapMontage = 1\n"
                   f"StageXYZ = {float(centre_stage[0])!r} {float(centre_stage[1])!r} 3\n"
                   f"MapScaleMat = {' '.join(repr(float(v)) for v in msm.ravel())}\n"
                   f"MapWidthHeight = {w // map_bin} {h // map_bin}\nMapFile = {mrc}\n")
    code, out, _ = run_cli(["lowmag", mrc, "-f", "json-full", "--montage-bin", "1"], capsys)
    full = json.loads(out)
    out_nav = tmp_path / "targets.nav"
    code, _, err = run_cli(["lowmag", mrc, "-f", "nav", "--nav-map", f"{nav}:5", "-o", out_nav,
                            "--montage-bin", "1"], capsys)
    assert code == 0, err
    from ptolemy_rt.navigator import read_nav

    pts = read_nav(out_nav)
    assert len(pts) == len(full["items"]) and all(p["DrawnID"] == "77" for p in pts)
    for p, it in zip(pts, full["items"]):
        sx, sy, _ = (float(v) for v in p["StageXYZ"].split())
        assert (sx, sy) == pytest.approx((it["stage_x_um"], it["stage_y_um"]), abs=2e-3)


@needs_real
def test_real_mdoc_layout_with_synthesised_pieces_cli(tmp_path, capsys, fake):
    """pyserialem's real 5×5 montage (.mdoc at 1/16 scale: its aligned layout and real stage
    positions), pieces synthesised: targets land where piece 12's StagePosition and the
    fitted scale say, within the fit's residual."""
    m = read_mdoc(REAL / "serialem" / "pyserialem_gm.mrc.mdoc")
    fac = 16
    sh, (ny, nx), _ = scaled_real_montage(
        m, fac, tmp_path / "gm.mrc",
        lambda shape: np.random.default_rng(5).integers(50, 3000, size=shape).astype(np.int16))
    code, out, err = run_cli(["lowmag", tmp_path / "gm.mrc", "-f", "json-full"], capsys)
    assert code == 0, err
    obj = json.loads(out)
    assert obj["source"]["pieces"] == 25 and obj["source"]["coords"] == "AlignedPieceCoordsVS"
    b = obj["source"]["bin"]
    assert b == 1  # 3699 nm/px after the 1/16 scaling: no low-mag binning
    st = obj["stage"]
    px_um = m.pixel_spacing_A * fac * 1e-4
    k = 12  # the middle piece
    x0, y0 = sh[k]
    for it in obj["items"]:
        cx, cy = box_centre(it)
        # the fitted map's own linear part moves the point from piece k's centre
        lin = np.reshape(st["matrix_um_per_px"], (2, 2))
        expect = np.array(m.images[k].stage_position) + lin @ np.array([cx - (x0 + nx / 2), cy - (y0 + ny / 2)])
        assert np.hypot(*(np.array([it["stage_x_um"], it["stage_y_um"]]) - expect)) <= math.sqrt(25) * st["rms_um"] + 1e-6  # a point's residual ≤ √n · rms
        assert np.abs(np.linalg.norm(lin, axis=0) / px_um - 1).max() < 0.1  # the scale is the pixel spacing


# --------------------------------------------------------------------------------------- EPU


@needs_real
def test_epu_gridsquare_xml_gives_pixel_size_and_stage(tmp_path, capsys, fake):
    """The real GridSquare XML (K3 bin 2, 2880×2046 px, 41.56 nm/px) beside a synthetic image of
    the thumbnail's size (512×364): pixel size scaled 5.625×; the image centre is the XML's stage
    position; --pixel-size wins."""
    src = REAL / "epu" / "smartem_epu-dir-example" / "Images-Disc1" / "GridSquare_8999138"
    xml = src / "GridSquare_20250108_151151.xml"
    shutil.copy(xml, tmp_path / xml.name)
    img = tmp_path / "GridSquare_20250108_151151.mrc"
    with mrcfile.new(img) as mm:
        mm.set_data(np.random.default_rng(0).integers(50, 3000, size=(364, 512)).astype(np.int16))
    code, out, err = run_cli(["medmag", img, "-f", "json-full"], capsys)
    assert code == 0, err
    obj = json.loads(out)
    assert obj["pixel_size_source"] == "epu-xml"
    assert obj["pixel_size_nm"] == pytest.approx(41.56276034450457 * math.sqrt(2880 / 512 * 2046 / 364))
    from types import SimpleNamespace

    st = SimpleNamespace(matrix=obj["stage"]["matrix_um_per_px"], offset=obj["stage"]["offset_um"])
    a, b, c, d = st.matrix
    centre = (a * 256 + b * 182 + st.offset[0], c * 256 + d * 182 + st.offset[1])
    assert centre == pytest.approx((-98.80566470000008, -164.71620799999985), abs=1e-9)
    assert math.sqrt(abs(a * d - b * c)) == pytest.approx(obj["pixel_size_nm"] / 1000.0, rel=1e-3)
    assert obj["stage"]["method"] == "reference-matrix"
    code, out, _ = run_cli(["medmag", img, "-f", "json-full", "--pixel-size", "50"], capsys)
    assert json.loads(out)["pixel_size_nm"] == 50.0 and json.loads(out)["pixel_size_source"] == "option"
    code, out, _ = run_cli(["medmag", img, "-f", "txt"], capsys)
    assert "(EPU .xml)" in out and "stage_x_um" in out
    # another field of view than the XML's: one line, exit 3
    with mrcfile.new(img, overwrite=True) as mm:
        mm.set_data(np.random.default_rng(0).integers(50, 3000, size=(300, 512)).astype(np.int16))
    code, _, err = run_cli(["medmag", img], capsys)
    assert code == 3 and "not the same field of view" in err and err.count("\n") == 1


@needs_real
def test_epu_stage_map_matches_epus_own_hole_targets(tmp_path):
    """The real GridSquare (EPU 3.7) in its session layout, with EPU's Metadata/GridSquare_*.dm
    (570 hole targets with pixel centres and stage positions) and without it."""
    src = REAL / "epu" / "smartem_epumocks"
    sq = tmp_path / "Images-Disc1" / "GridSquare_4590776"
    sq.mkdir(parents=True)
    shutil.copy(src / "GridSquare_20240406_102420.xml", sq)
    img = sq / "GridSquare_20240406_102420.mrc"
    with mrcfile.new(img) as mm:
        mm.set_data(np.random.default_rng(0).integers(0, 200, size=(2046, 2880)).astype(np.uint8))
    from ptolemy_rt.epu import read_gridsquare_dm

    targets = read_gridsquare_dm(src / "Metadata_GridSquare_4590776.dm")
    holes = [h for h in targets.holes if h.stage_m and (h.stage_m[0] or h.stage_m[1])]
    pix = np.array([h.center_px for h in holes])
    stage = np.array([h.stage_m[:2] for h in holes]) * 1e6
    im = sources.load_image(img, kind="medmag")
    assert im.stage.method == "reference-matrix" and im.pixel_size_nm == pytest.approx(41.56276034450457)
    err = np.hypot(*(im.stage(pix) - stage).T)
    assert err.max() < 2.5, err.max()  # µm; the XML alone (docs: ≤ 2.1 µm at the square's edge)
    (tmp_path / "Metadata").mkdir()
    shutil.copy(src / "Metadata_GridSquare_4590776.dm", tmp_path / "Metadata" / "GridSquare_4590776.dm")
    im = sources.load_image(img, kind="medmag")
    assert im.stage.method == "epu-targets-fit"
    assert np.hypot(*(im.stage(pix) - stage).T).max() < 0.05


def _atlas_folder(tmp_path, stitched: bool, tile_scale: int = 2):
    """The real Atlas.dm (8 tiles of 833×592 atlas px) with synthetic tiles cut from one
    image at `tile_scale`× the atlas scale (pixels repeated), or with a stitched atlas image."""
    from ptolemy_rt.epu import read_atlas_dm

    dm = tmp_path / "Atlas.dm"
    shutil.copy(REAL / "epu" / "smartem_epumocks" / "Atlas_3436163.dm", dm)
    atlas = read_atlas_dm(dm)
    boxes = [tuple(int(round(v)) for v in t.box_px) for t in atlas.tiles]
    mx, my = min(b[0] for b in boxes), min(b[1] for b in boxes)
    h = max(b[1] + b[3] for b in boxes) - my
    w = max(b[0] + b[2] for b in boxes) - mx
    truth = np.random.default_rng(7).integers(100, 3000, size=(h, w)).astype(np.int16)
    if stitched:
        with mrcfile.new(tmp_path / f"{atlas.image_name}.mrc") as mm:
            mm.set_data(truth)
    else:
        for t, (x, y, bw, bh) in zip(atlas.tiles, boxes):
            tile = np.repeat(np.repeat(truth[y - my:y - my + bh, x - mx:x - mx + bw], tile_scale, 0), tile_scale, 1)
            with mrcfile.new(tmp_path / f"{t.image_name}.mrc") as mm:
                mm.set_data(tile)
    return dm, atlas, truth, (mx, my)


@needs_real
@pytest.mark.parametrize("stitched", [False, True])
def test_epu_atlas_folder_is_one_atlas(tmp_path, capsys, fake, stitched):
    dm, atlas, truth, (mx, my) = _atlas_folder(tmp_path, stitched)
    im = sources.load_image(tmp_path)
    assert im.pixel_size_source == "epu-atlas" and im.origin["kind"] == "epu-atlas"
    if stitched:
        np.testing.assert_array_equal(im.pixels, truth.astype(np.float32))
        ox, oy = 0, 0
    else:
        assert im.pixels.shape == truth.shape and im.origin["bin"] == 1
        covered = np.zeros(truth.shape, bool)
        for t in atlas.tiles:
            x, y, bw, bh = (int(round(v)) for v in t.box_px)
            covered[y - my:y - my + bh, x - mx:x - mx + bw] = True
        np.testing.assert_array_equal(im.pixels[covered], truth[covered].astype(np.float32))
        ox, oy = mx, my
    # each tile's box centre maps to its StagePosition (within the fit's residual, 0.16 µm)
    cen = np.array([t.center_px for t in atlas.tiles]) - [ox, oy]
    st = np.array([t.stage_m[:2] for t in atlas.tiles]) * 1e6
    assert np.hypot(*(im.stage(cen) - st).T).max() < 0.5
    assert im.pixel_size_nm == pytest.approx(1000 * math.sqrt(abs(np.linalg.det(np.reshape(im.stage.matrix, (2, 2))))))
    assert 400 < im.pixel_size_nm < 550
    for arg in (tmp_path, dm):
        code, out, err = run_cli(["lowmag", arg, "-f", "json-full"], capsys)
        assert code == 0, err
        obj = json.loads(out)
        assert obj["image"] == str(arg) and obj["source"]["tiles"] == 8 and "stage_x_um" in obj["items"][0]


@needs_real
def test_epu_atlas_missing_tile_one_line_error(tmp_path, capsys):
    dm, atlas, _, _ = _atlas_folder(tmp_path, stitched=False, tile_scale=1)
    (tmp_path / f"{atlas.tiles[3].image_name}.mrc").unlink()
    code, _, err = run_cli(["lowmag", tmp_path], capsys)
    assert code == 3 and err.count("\n") == 1 and atlas.tiles[3].image_name in err


def test_load_image_errors_name_the_file(tmp_path):
    (tmp_path / "Atlas.dm").write_text("<AtlasSessionXml><Atlas/></AtlasSessionXml>")
    with pytest.raises(InputImageError, match="lists no atlas tiles"):
        sources.load_image(tmp_path)
    with pytest.raises(InputImageError, match="--mdoc is for SerialEM montages"):
        from ptolemy_rt.options import InputOptions

        sources.load_image(tmp_path, options=InputOptions(mdoc="x.mdoc"))


# ------------------------------------------------------------------------ ptolemy plot on sources


def test_plot_draws_on_the_assembled_montage(tmp_path, capsys):
    """lowmag on a synthetic 3×3 montage (auto bin 2) → plain json → `ptolemy plot` of the stack:
    the picture is the assembled, binned atlas (its size, its grey levels) and the best box is
    drawn over a square drawn in the atlas. A json-full result made at another binning is drawn
    at that binning; a picture of another size than the result's image is warned about."""
    Image = pytest.importorskip("PIL.Image")  # Pillow: the [plot] extra

    from ptolemy_rt import synthetic
    from ptolemy_rt.options import InputOptions
    from ptolemy_rt.plot import score_colour, to_grey

    img, truth = synthetic.atlas(3, shape=(1024, 1024), pitch=150.0, angle_deg=10.0)
    lin, t = stage_truth(angle_deg=-35.0, scale=0.5)
    mrc, _ = make_montage(tmp_path, img.astype(np.int16), (400, 400), (312, 312), 5000.0, lin, t)
    res, png = tmp_path / "r.json", tmp_path / "r.png"
    code, _, err = run_cli(["lowmag", mrc, "-o", res, "--models", OWN], capsys)
    assert code == 0, err
    items = json.loads(res.read_text())
    assert len(items) >= 4
    code, out, err = run_cli(["plot", res, mrc, png], capsys)
    assert code == 0 and out == "" and "warning" not in err, err
    atlas = sources.load_image(mrc, options=InputOptions(), kind="lowmag")
    assert atlas.origin["bin"] == 2 and atlas.pixels.shape == (512, 512)
    with Image.open(png) as im:
        pic = np.asarray(im.convert("RGB"))
    assert pic.shape[:2] == atlas.pixels.shape
    grey = pic[..., 0] == pic[..., 1]
    grey &= pic[..., 1] == pic[..., 2]
    rr, cc = np.mgrid[:512, :512]
    for it in items[:10]:  # the rank labels (white text, black outline) at the best ten centres
        grey &= np.hypot(cc - it["center"][0], rr - it["center"][1]) > 30
    assert grey.mean() > 0.7  # away from boxes and labels the picture is the atlas's grey levels
    np.testing.assert_array_equal(pic[..., 0][grey], to_grey(atlas.pixels)[grey])
    best = items[0]
    v = np.asarray(best["vertices"])
    mid = (v[0] + v[1]) / 2.0  # the middle of the best box's first edge: drawn in its colour
    near = pic[int(mid[1]) - 1:int(mid[1]) + 2, int(mid[0]) - 1:int(mid[0]) + 2].reshape(-1, 3)
    assert any(tuple(p) == score_colour(best["score"]) for p in near)
    centre_full = np.asarray(best["center"], dtype=np.float64) * 2  # atlas px at bin 2 → drawn atlas px
    assert any(inside_convex(centre_full, tr.polygon) for tr in truth)
    # json-full at --montage-bin 1: plot reads the montage at the result's binning
    full = tmp_path / "f.json"
    code, _, err = run_cli(["lowmag", mrc, "-f", "json-full", "-o", full, "--montage-bin", "1", "--models", OWN], capsys)
    assert code == 0, err
    code, _, err = run_cli(["plot", full, mrc, png], capsys)
    assert code == 0 and "warning" not in err, err
    with Image.open(png) as im:
        assert im.size == (1024, 1024)
    code, _, err = run_cli(["plot", full, mrc, png, "--montage-bin", "4"], capsys)
    assert code == 0 and "made on a 1024 x 1024 px image" in err and "256 x 256 px" in err
    code, _, err = run_cli(["plot", full, mrc, png, "--montage-bin", "0"], capsys)
    assert code == 2 and "--montage-bin" in err and err.count("\n") == 1


@needs_real
def test_plot_draws_on_the_epu_atlas(tmp_path, capsys, fake):
    """An EPU atlas folder (real Atlas.dm, synthetic tiles): `ptolemy plot` draws on the atlas
    assembled from the tiles, the size of the result's image."""
    Image = pytest.importorskip("PIL.Image")  # Pillow: the [plot] extra

    (tmp_path / "atlas").mkdir()
    _, _, truth, _ = _atlas_folder(tmp_path / "atlas", stitched=False, tile_scale=1)
    res, png = tmp_path / "r.json", tmp_path / "r.png"
    code, _, err = run_cli(["lowmag", tmp_path / "atlas", "-f", "json-full", "-o", res], capsys)
    assert code == 0, err
    shape = json.loads(res.read_text())["shape"]
    assert shape == list(truth.shape)
    code, _, err = run_cli(["plot", res, tmp_path / "atlas", png], capsys)
    assert code == 0 and "warning" not in err, err
    with Image.open(png) as im:
        assert im.size == (shape[1], shape[0])


# ---------------------------------------------------------------------- -f nav orientation of EPU

EPU_XML = ("<MicroscopeImage><SpatialScale><pixelSize><x><numericValue>1e-6</numericValue></x>"
           "<y><numericValue>1e-6</numericValue></y></pixelSize></SpatialScale><microscopeData>"
           "<acquisition><camera><ReadoutArea><height>128</height><width>200</width></ReadoutArea>"
           "</camera></acquisition><stage><Position><X>1e-5</X><Y>-2e-5</Y><Z>0</Z></Position></stage>"
           "</microscopeData></MicroscopeImage>")


def test_epu_image_nav_is_top_down_by_default(tmp_path, capsys, fake):
    """-f nav on an EPU image (stored top row first): with no --nav-flip/--nav-no-flip the
    points are those of --nav-no-flip, and with a map item whose MapScaleMat matches the EPU
    stage map (SerialEM displays the image as EPU stores it) they are the stage positions
    json-full reports; --nav-flip given explicitly still flips; a plain MRC still flips."""
    from ptolemy_rt.navigator import read_nav

    img = tmp_path / "GridSquare_1.mrc"
    with mrcfile.new(img) as m:
        m.set_data(np.random.default_rng(3).integers(50, 3000, size=(128, 200)).astype(np.int16))
    (tmp_path / "GridSquare_1.xml").write_text(EPU_XML)
    code, out, err = run_cli(["medmag", img, "-f", "json-full"], capsys)
    assert code == 0, err
    full = json.loads(out)
    a = np.reshape(full["stage"]["matrix_um_per_px"], (2, 2))
    centre = a @ np.array([100.0, 64.0]) + full["stage"]["offset_um"]
    assert centre == pytest.approx((10.0, -20.0))
    msm = np.linalg.inv(a)  # displayed px offset = MapScaleMat · stage offset; displayed = stored (top-down)
    nav = tmp_path / "session.nav"
    nav.write_text("AdocVersion = 2.00\n\n[Item = 3]\nType = 2\nMapID = 55\n"
                   f"StageXYZ = {float(centre[0])!r} {float(centre[1])!r} 0\n"
                   f"MapScaleMat = {' '.join(repr(float(v)) for v in msm.ravel())}\n"
                   f"MapWidthHeight = 200 128\nMapFile = {img}\n")

    def nav_points(*extra, image=img):
        o = tmp_path / "t.nav"
        code, _, err = run_cli(["medmag", image, "-f", "nav", "--nav-map", f"{nav}:3", "-o", o, *extra], capsys)
        assert code == 0, err
        return [tuple(float(v) for v in p["StageXYZ"].split()[:2]) for p in read_nav(o)]

    auto, no_flip, flip = nav_points(), nav_points("--nav-no-flip"), nav_points("--nav-flip")
    assert auto == no_flip and auto != flip and len(auto) == len(full["items"]) == 3
    for p, it in zip(auto, full["items"]):
        assert p == pytest.approx((it["stage_x_um"], it["stage_y_um"]), abs=2e-3)
    (tmp_path / "GridSquare_1.xml").unlink()  # a plain MRC: bottom-up as SerialEM writes it
    assert nav_points() == flip


def test_nav_flip_option_values():
    from ptolemy_rt.options import OptionError, OutputOptions

    assert OutputOptions().nav_flip is None and OutputOptions(nav_flip=False).nav_flip is False
    with pytest.raises(OptionError, match="nav_flip"):
        OutputOptions(nav_flip="yes")
