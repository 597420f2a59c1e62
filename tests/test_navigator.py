"""SerialEM Navigator output: written files read back with pyserialem (an independent reader)
and checked against an analytic pixel → stage transform of a hand-made map item."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ptolemy_rt import navigator as nav
from ptolemy_rt.errors import InputImageError, OutputError
from ptolemy_rt.results import Hole, HoleResult, Square, SquareResult

try:  # test dependency ([test] extra; it also needs PyYAML at import time)
    import pyserialem
except ImportError:  # pragma: no cover - fall back to the independent reader below
    pyserialem = None

needs_pyserialem = pytest.mark.skipif(pyserialem is None, reason="pyserialem (and PyYAML) not installed")


class _Item:
    """Minimal independent .nav reader item (used only when pyserialem is missing)."""

    INTS = {"Type", "NumPts", "DrawnID", "Regis", "MapID", "GroupID", "Color", "Acquire"}
    FLOATS = {"StageXYZ", "PtsX", "PtsY"}

    def __init__(self, tag, d):
        self.tag = tag
        for k, v in d.items():
            if k in self.INTS:
                v = int(v)
            elif k in self.FLOATS:
                v = [float(t) for t in v.split()]
            setattr(self, k, v)
        self.kind = ("Marker", "Polygon", "Map")[self.Type]


def _independent_read(path):
    items, cur = [], None
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line.startswith("[Item"):
            cur = (line.split("=", 1)[1].rstrip("]").strip(), {})
            items.append(cur)
        elif "=" in line and cur is not None:
            k, v = line.split("=", 1)
            cur[1][k.strip()] = v.strip()
    return [_Item(t, d) for t, d in items]

# Hand-made map: 2048 × 1536 px (W × H) taken at binning 2, rotated by 30°, 0.25 px per µm
# (4 µm per map pixel), centred at stage (120.5, -340.25, 12.0) µm.
W, H = 2048, 1536
THETA = math.radians(30.0)
SCALE = 0.25  # map px per µm
M = SCALE * np.array([[math.cos(THETA), -math.sin(THETA)], [math.sin(THETA), math.cos(THETA)]])
CENTER = np.array([120.5, -340.25])
Z = 12.0
MAP_ID = 4242

NAV_TEXT = f"""AdocVersion = 2.00
LastSavedAs = C:\\data\\grid1.nav

[Item = 7]
Color = 2
StageXYZ = {CENTER[0]} {CENTER[1]} {Z}
NumPts = 5
Regis = 3
Type = 2
Note = atlas.mrc sec 0
MapFile = C:\\data\\atlas.mrc
MapID = {MAP_ID}
MapMontage = 0
MapSection = 0
MapBinning = 2
MapMagInd = 5
MapCamera = 0
MapScaleMat = {float(M[0, 0])!r} {float(M[0, 1])!r} {float(M[1, 0])!r} {float(M[1, 1])!r}
MapWidthHeight = {W} {H}
PtsX = -1 1 1 -1 -1
PtsY = -1 -1 1 1 -1

[Item = 9]
Color = 0
StageXYZ = 1 2 3
NumPts = 1
Regis = 3
Type = 0
MapID = 5000
DrawnID = {MAP_ID}
PtsX = 1
PtsY = 2
"""


def analytic_stage(x: float, y: float, image_w: float = W, image_h: float = H) -> np.ndarray:
    """Stage µm of image point (x, y) = (col, row) of the MRC as stored (bottom-up file)."""
    f = W / image_w
    px, py = x * f, (image_h - y) * f  # SerialEM's y runs top-down: flip the stored rows
    dx, dy = px - W / 2, py - H / 2
    # inverse of SCALE * rotation(θ): rotation(-θ) / SCALE
    c, s = math.cos(THETA), math.sin(THETA)
    return CENTER + np.array([c * dx + s * dy, -s * dx + c * dy]) / SCALE


def _square(cx: float, cy: float, score: float, half: float = 20.0) -> Square:
    v = ((cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half))
    return Square(vertices=v, center=(round(cx), round(cy)), area=4 * half * half, brightness=100.0, score=score)


POINTS = [(1024.0, 768.0, 0.30), (1124.0, 768.0, 0.95), (100.0, 1400.0, 0.60), (2000.0, 50.0, 0.10)]


@pytest.fixture()
def navfile(tmp_path):
    p = tmp_path / "grid1.nav"
    p.write_text(NAV_TEXT)
    return p


def _read_points(path):
    items = pyserialem.read_nav_file(str(path)) if pyserialem is not None else _independent_read(path)
    return [it for it in items if it.kind == "Marker"]


def test_analytic_transform_sanity():
    tr = nav.map_transform(nav.find_item(nav.parse_nav_text(NAV_TEXT), "7"))
    # map centre → StageXYZ; 100 px right of centre → 400 µm along the rotated x axis
    assert np.allclose(tr((W / 2, H / 2)), CENTER)
    expect = CENTER + 400.0 * np.array([math.cos(THETA), -math.sin(THETA)])
    assert np.allclose(tr((W / 2 + 100, H / 2)), expect)
    pts = np.array([[10.0, 20.0], [2000.0, 1500.0]])
    assert np.allclose(tr.inverse(tr(pts)), pts)


def test_squares_written_and_read_back_with_pyserialem(navfile, tmp_path):
    result = SquareResult(squares=[_square(x, y, s) for x, y, s in POINTS], image_shape=(H, W))
    out = tmp_path / "targets.nav"
    n = nav.write_targets_nav(out, result, navfile, "7")
    assert n == len(POINTS)
    pts = _read_points(out)
    assert len(pts) == len(POINTS)
    # labels continue after the nav's largest numeric label (9), sorted by score, best first
    assert [p.tag for p in pts] == ["10", "11", "12", "13"]
    ranked = sorted(POINTS, key=lambda t: -t[2])
    for p, (x, y, s) in zip(pts, ranked):
        assert p.Type == 0 and p.NumPts == 1
        assert p.DrawnID == MAP_ID and p.Regis == 3
        assert f"score {s:.4f}" in p.Note
        want = analytic_stage(x, y)
        assert np.allclose(p.StageXYZ[:2], want, atol=2e-3), (p.StageXYZ, want)
        assert np.allclose([p.PtsX[0], p.PtsY[0]], want, atol=2e-3)
        assert p.StageXYZ[2] == pytest.approx(Z)
    scores = [float(p.Note.split("score ")[1].split()[0]) for p in pts]
    assert scores == sorted(scores, reverse=True)
    # item IDs are new (not clashing with the nav's MapIDs 4242, 5000)
    ids = {p.MapID for p in pts}
    assert len(ids) == len(pts) and not ids & {MAP_ID, 5000}


@needs_pyserialem
def test_agrees_with_pyserialem_map_item(navfile, tmp_path):
    """pyserialem's own map-item maths (pixel (row, col) → stage) gives the same positions."""
    items = pyserialem.read_nav_file(str(navfile))
    map_item = next(it for it in items if it.kind == "Map")
    result = SquareResult(squares=[_square(x, y, s) for x, y, s in POINTS], image_shape=(H, W))
    out = tmp_path / "t.nav"
    nav.write_targets_nav(out, result, navfile, "7")
    for p in _read_points(out):
        x, y = map(float, p.Note.split(" px ")[1].split()[:2])
        marker = map_item.add_marker((y, x), kind="pixel")  # pyserialem takes (row, col)
        assert np.allclose(marker.StageXYZ[:2], p.StageXYZ[:2], atol=2e-3)


def test_binned_image_scales_to_map(navfile, tmp_path):
    """An image binned by 2 relative to the map gives the same stage positions."""
    result = HoleResult(
        holes=[Hole(vertices=((x / 2 - 5, y / 2 - 5), (x / 2 + 5, y / 2 - 5), (x / 2 + 5, y / 2 + 5), (x / 2 - 5, y / 2 + 5)),
                    center=(round(x / 2), round(y / 2)), area=100.0, score=s) for x, y, s in POINTS],
        image_shape=(H // 2, W // 2))
    out = tmp_path / "holes.nav"
    nav.write_targets_nav(out, result, navfile, "7")
    ranked = sorted(POINTS, key=lambda t: -t[2])
    for p, (x, y, _s) in zip(_read_points(out), ranked):
        assert np.allclose(p.StageXYZ[:2], analytic_stage(x, y), atol=2e-3)
        assert "hole" in p.Note


def test_empty_result_writes_valid_file(navfile, tmp_path):
    out = tmp_path / "none.nav"
    assert nav.write_targets_nav(out, SquareResult(squares=[], image_shape=(H, W)), navfile, "7") == 0
    assert out.read_text().startswith("AdocVersion = 2.00")
    assert nav.read_nav(out) == []


def test_errors(navfile, tmp_path):
    result = SquareResult(squares=[_square(100, 100, 0.5)], image_shape=(H, W))
    with pytest.raises(InputImageError, match="no such navigator file"):
        nav.write_targets_nav(tmp_path / "o.nav", result, tmp_path / "missing.nav", "7")
    with pytest.raises(InputImageError, match="no navigator item labelled 'X1'.*map items: 7"):
        nav.write_targets_nav(tmp_path / "o.nav", result, navfile, "X1")
    with pytest.raises(InputImageError, match="without a map transform"):
        nav.write_targets_nav(tmp_path / "o.nav", result, navfile, "9")
    wrong = SquareResult(squares=[_square(100, 100, 0.5)], image_shape=(1000, 1000))
    with pytest.raises(InputImageError, match="not the same field of view"):
        nav.write_targets_nav(tmp_path / "o.nav", wrong, navfile, "7")
    xml = tmp_path / "x.nav"
    xml.write_text('<?xml version="1.0"?><navigator/>')
    with pytest.raises(InputImageError, match="XML"):
        nav.read_nav(xml)
    with pytest.raises(OutputError, match="does not exist"):
        nav.write_targets_nav(tmp_path / "no" / "dir" / "o.nav", result, navfile, "7")
    for e in (InputImageError, OutputError):
        assert issubclass(e, Exception)


def test_error_messages_are_one_line(navfile, tmp_path):
    result = SquareResult(squares=[], image_shape=(H, W))
    for label in ("nope", "9"):
        with pytest.raises(InputImageError) as ei:
            nav.write_targets_nav(tmp_path / "o.nav", result, navfile, label)
        assert "\n" not in str(ei.value) and str(navfile) in str(ei.value)


def test_parse_nav_map():
    from ptolemy_rt.options import UsageProblem, parse_nav_map

    assert parse_nav_map("grid1.nav:7") == ("grid1.nav", "7")
    assert parse_nav_map(r"C:\data\grid1.nav:12-A") == (r"C:\data\grid1.nav", "12-A")
    for bad in ("grid1.nav", "grid1.nav:", ":7", r"C:\data\grid1.nav"):
        with pytest.raises(UsageProblem, match="NAVFILE:LABEL"):  # one parser: a usage error (exit 2)
            parse_nav_map(bad)


def test_nav_written_by_the_one_writer(navfile, tmp_path):
    """The .nav file goes through files.write_atomic: the usual file mode (not mkstemp's 0600),
    a symlinked output updated at its target, the text of targets_nav_text."""
    import os
    import stat

    result = SquareResult(squares=[_square(x, y, s) for x, y, s in POINTS], image_shape=(H, W))
    out = tmp_path / "t.nav"
    nav.write_targets_nav(out, result, navfile, "7")
    um = os.umask(0)
    os.umask(um)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o666 & ~um
    text, n = nav.targets_nav_text(result, navfile, "7", saved_as=out)
    assert n == len(POINTS) and out.read_text() == text
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "grid7.nav").write_text("old\n")
    link = tmp_path / "latest.nav"
    link.symlink_to(runs / "grid7.nav")
    nav.write_targets_nav(link, result, navfile, "7")
    assert link.is_symlink() and [it["_label"] for it in nav.read_nav(runs / "grid7.nav")] == ["10", "11", "12", "13"]
    assert sorted(os.listdir(runs)) == ["grid7.nav"]


def test_targets_from_result_uses_the_result_base():
    hole = Hole(vertices=((0.0, 0.0), (3.0, 0.0), (3.0, 2.0), (0.0, 2.0)), center=(1, 1), area=6.0, score=0.5)
    assert nav.targets_from_result(HoleResult(holes=[hole], image_shape=(4, 4))) == [
        nav.Target(1.5, 1.0, 0.5, "hole area 6 px2")]
    assert nav.targets_from_result(SquareResult(squares=[_square(10, 20, 0.25)], image_shape=(40, 40)))[0].note == \
        "square area 1600 px2"
    with pytest.raises(TypeError, match="SquareResult or HoleResult"):
        nav.targets_from_result({"squares": []})
