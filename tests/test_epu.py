"""EPU metadata: the real XML/.dm files of ../shared/real-files/epu, synthetic truth, bad files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ptolemy_rt.epu import (
    find_epu_xml,
    find_gridsquare_dm,
    parse_epu_image_xml,
    read_atlas_dm,
    read_epu_image_xml,
    read_gridsquare_dm,
)
from ptolemy_rt.errors import InputImageError

REPO = Path(__file__).resolve().parent.parent
REAL = Path(os.environ.get("PTOLEMY_SHARED", REPO.parent / "shared")) / "real-files" / "epu"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real-files/epu not present")

NS = ('xmlns="http://schemas.datacontract.org/2004/07/Fei.SharedObjects" '
      'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"')


def image_xml(px=2e-8, stage=(1e-5, -2e-5, 3e-6), matrix=None, extra=""):
    m = ""
    if matrix is not None:
        m = ('<ReferenceTransformation><matrix xmlns:a="http://schemas.datacontract.org/2004/07/System.Windows.Media">'
             + "".join(f"<a:_m{k}>{float(v)!r}</a:_m{k}>" for k, v in zip((11, 12, 21, 22), matrix))
             + "</matrix></ReferenceTransformation>")
    st = "" if stage is None else (
        f"<stage><Position><A>0</A><B>0.01</B><X>{stage[0]!r}</X><Y>{stage[1]!r}</Y><Z>{stage[2]!r}</Z></Position></stage>")
    return (f"<MicroscopeImage {NS}><name>x</name>{m}<SpatialScale><pixelSize>"
            f"<x><numericValue>{px!r}</numericValue></x><y><numericValue>{px!r}</numericValue></y>"
            f"</pixelSize></SpatialScale><microscopeData><acquisition><camera>"
            f'<Binning xmlns:a="http://schemas.datacontract.org/2004/07/System.Drawing"><a:x>2</a:x><a:y>2</a:y></Binning>'
            f"<Name>EF-CCD</Name></camera></acquisition>"
            f"<optics><TemMagnification><NominalMagnification>470</NominalMagnification></TemMagnification></optics>"
            f"{st}</microscopeData>{extra}</MicroscopeImage>")


@needs_real
def test_every_real_image_xml_parses():
    files = sorted(REAL.rglob("*.xml"))
    assert len(files) >= 7
    for f in files:
        m = read_epu_image_xml(f)
        assert 1e-11 < m.pixel_size_m[0] < 1e-5 and m.stage_m is not None
        assert m.reference_matrix is not None and m.magnification > 0


@needs_real
def test_real_values():
    atlas = read_epu_image_xml(REAL / "omero_gu_Atlas_1.xml")
    assert atlas.pixel_size_nm == pytest.approx(515.2, rel=1e-6)
    assert atlas.readout_size == (4096, 4096) and atlas.binning == (1, 1) and atlas.camera == "BM-Ceta"
    assert atlas.magnification == 155 and atlas.application == "TemAppCommon"
    gs = read_epu_image_xml(REAL / "smartem_epumocks" / "GridSquare_20240406_102420.xml")  # pretty-printed
    assert gs.pixel_size_nm == pytest.approx(41.5628, rel=1e-5) and gs.binning == (2, 2)
    assert gs.stage_um == pytest.approx((-44.1801755, -557.234008))
    assert gs.version == "3.7.0.6930"
    data = read_epu_image_xml(next((REAL / "smartem_epu-dir-example").rglob("FoilHole_*_Data_*.xml")))
    assert data.pixel_size_nm * 10 == pytest.approx(1.056, rel=1e-3)  # Å


@needs_real
def test_real_atlas_dm():
    a = read_atlas_dm(REAL / "smartem_epumocks" / "Atlas_3436163.dm")
    assert a.atlas_id == 3436163 and a.image_name == "Atlas_4590151" and a.image_format == "Mrc"
    assert len(a.tiles) == 8  # the other 29 TileXml are nil
    assert len(a.squares) == 47 and len({s.id for s in a.squares}) == 47
    st = a.stage_transform()
    assert st.method == "affine-fit" and st.rms_um < 0.5  # atlas px ≈ 0.47 µm
    sq = np.array([s.center_px for s in a.squares])
    truth = np.array([s.stage_m[:2] for s in a.squares]) * 1e6
    err = np.hypot(*(st(sq) - truth).T)
    assert err.max() < 3.0  # µm: EPU's square stage positions, from a fit to the tiles alone
    assert a.image_path() is None  # the stitched atlas image is not in the corpus


@needs_real
def test_real_gridsquare_holes_give_the_stage_convention():
    """EPU's own 570 hole targets: the XML-only model and the exact fit against them."""
    g = read_gridsquare_dm(REAL / "smartem_epumocks" / "Metadata_GridSquare_4590776.dm")
    assert g.square_id == 4590776 and g.image_name == "GridSquare_20240406_102420"
    assert len(g.holes) == 570 and sum(h.selected for h in g.holes) == 276
    meta = read_epu_image_xml(REAL / "smartem_epumocks" / "GridSquare_20240406_102420.xml")
    pts = np.array([h.center_px for h in g.holes])
    truth = np.array([h.stage_m[:2] for h in g.holes]) * 1e6
    shape = (2046, 2880)  # K3 binned 2
    pred = meta.pixel_to_stage_um(pts, shape)
    err = np.hypot(*(pred - truth).T)
    dist_um = np.hypot(*(pts - (1440, 1023)).T) * meta.pixel_size_nm * 1e-3
    assert err.max() < 2.5 and np.all(err <= 0.04 * dist_um + 0.01)
    # the opposite sign (or no scaling by binning) would be off by tens of µm
    wrong = 2 * np.asarray(meta.stage_um) - pred
    assert np.hypot(*(wrong - truth).T).max() > 50
    fit = g.stage_transform()
    assert fit.rms_um < 1e-5
    np.testing.assert_allclose(fit([[1440.0, 1023.0]])[0], meta.stage_um, atol=1e-4)


def test_synthetic_pixel_to_stage_matches_analytic():
    th = np.deg2rad(30.0)
    m = 1e-8 * np.array([np.cos(th), np.sin(th), np.sin(th), -np.cos(th)])  # a reflection, like EPU's
    meta = parse_epu_image_xml(image_xml(px=2e-8, matrix=tuple(m)))
    assert meta.stage_matrix()[1] == "reference-matrix"
    shape = (100, 200)
    pts = np.array([[100.0, 50.0], [0.0, 0.0], [200.0, 100.0], [130.0, 20.5]])
    mcol = np.array([[m[0], m[2]], [m[1], m[3]]]) * 1e6  # µm per camera px
    expect = (pts - (100, 50)) @ (-2.0 * mcol).T + (10.0, -20.0)  # scaled to the 0.02 µm pixel
    np.testing.assert_allclose(meta.pixel_to_stage_um(pts, shape), expect, atol=1e-9)
    no_m = parse_epu_image_xml(image_xml(px=2e-8))
    assert no_m.stage_matrix()[1] == "assumed"
    np.testing.assert_allclose(no_m.pixel_to_stage_um([[110.0, 60.0]], shape), [[10.0 - 0.2, -20.0 + 0.2]])
    no_stage = parse_epu_image_xml(image_xml(stage=None), "n.xml")
    with pytest.raises(InputImageError, match="n.xml: has no stage position"):
        no_stage.pixel_to_stage_um([[0, 0]], shape)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<MicroscopeImage><name>x", "not an EPU XML file (XML error"),
        ("<Other/>", "not an EPU MicroscopeImage file (its root element is <Other>)"),
        (f"<MicroscopeImage {NS}><name>x</name></MicroscopeImage>", "has no pixel size"),
        (image_xml(px=0.5), "implausible pixel size"),
        (image_xml().replace("<X>1e-05</X>", "<X>left</X>"), "stage X is not a number"),
        ("", "not an EPU XML file"),
    ],
)
def test_bad_image_xml_one_line_error(tmp_path, text, expected):
    f = tmp_path / "GridSquare_1.xml"
    f.write_text(text)
    with pytest.raises(InputImageError) as e:
        read_epu_image_xml(f)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{f}: ") and expected in msg, msg


def test_bad_dm_files(tmp_path):
    f = tmp_path / "Atlas.dm"
    f.write_text(f"<GridSquareXml {NS}/>")
    with pytest.raises(InputImageError, match="not an EPU AtlasSessionXml file"):
        read_atlas_dm(f)
    f.write_text(f"<AtlasSessionXml {NS}><Id>1</Id></AtlasSessionXml>")
    with pytest.raises(InputImageError, match="has no <Atlas> element"):
        read_atlas_dm(f)
    f.write_text(f"<AtlasSessionXml {NS}><Atlas><TilesEfficient><_items><TileXml><Id>5</Id></TileXml>"
                 "</_items></TilesEfficient></Atlas></AtlasSessionXml>")
    with pytest.raises(InputImageError, match="tile 5 has no AtlasPixelPosition/StagePosition"):
        read_atlas_dm(f)
    with pytest.raises(InputImageError, match="no such file"):
        read_gridsquare_dm(tmp_path / "none.dm")
    with pytest.raises(InputImageError, match="is a directory"):
        read_epu_image_xml(tmp_path)


def test_find_beside(tmp_path):
    sq = tmp_path / "Images-Disc1" / "GridSquare_42"
    sq.mkdir(parents=True)
    img = sq / "GridSquare_20250101_000000.mrc"
    img.write_bytes(b"")
    assert find_epu_xml(img) is None and find_gridsquare_dm(img) is None
    (sq / "GridSquare_20250101_000000.xml").write_text(image_xml())
    (tmp_path / "Metadata").mkdir()
    (tmp_path / "Metadata" / "GridSquare_42.dm").write_text("<GridSquareXml/>")
    assert find_epu_xml(img) == sq / "GridSquare_20250101_000000.xml"
    assert find_gridsquare_dm(img) == tmp_path / "Metadata" / "GridSquare_42.dm"
    assert read_gridsquare_dm(find_gridsquare_dm(img)).holes == ()


def test_image_stage_transform_prefers_epu_targets(tmp_path):
    from ptolemy_rt.epu import image_stage_transform

    sq = tmp_path / "Images-Disc1" / "GridSquare_42"
    sq.mkdir(parents=True)
    img = sq / "GridSquare_20250101_000000.mrc"
    img.write_bytes(b"")
    shape = (100, 200)
    assert image_stage_transform(img, shape) is None  # no .xml
    (sq / "GridSquare_20250101_000000.xml").write_text(image_xml(px=2e-8))
    st = image_stage_transform(img, shape)
    assert st.method == "assumed"
    np.testing.assert_allclose(st([[100.0, 50.0], [110.0, 60.0]]), [[10.0, -20.0], [9.8, -19.8]])
    # EPU's targets for this image: an exact affine, rotated 10°, 0.021 µm/px
    a = np.deg2rad(10.0)
    lin = 0.021 * np.array([[-np.cos(a), np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = np.array([[10.0, 20.0], [150.0, 30.0], [60.0, 90.0], [190.0, 80.0]])
    stage = (pts - (100, 50)) @ lin.T + (10.0, -20.0)
    holes = "".join(
        f"<KeyValuePairOfintTargetLocationXmlBpEWF4JT><key>{i}</key><value><Id>{i}</Id>"
        f"<PixelCenter><x>{p[0]}</x><y>{p[1]}</y></PixelCenter>"
        f"<StagePosition><X>{float(s[0]) * 1e-6!r}</X><Y>{float(s[1]) * 1e-6!r}</Y><Z>0</Z></StagePosition>"
        f"<Selected>true</Selected></value></KeyValuePairOfintTargetLocationXmlBpEWF4JT>"
        for i, (p, s) in enumerate(zip(pts, stage)))
    (tmp_path / "Metadata").mkdir()
    (tmp_path / "Metadata" / "GridSquare_42.dm").write_text(
        f"<GridSquareXml {NS}><Id>42</Id><Image><BaseFileName>GridSquare_20250101_000000</BaseFileName></Image>"
        f"<TargetLocations>{holes}</TargetLocations></GridSquareXml>")
    st = image_stage_transform(img, shape)
    assert st.method == "epu-targets-fit" and st.n_points == 4
    np.testing.assert_allclose(st([[0.0, 0.0]]), [(np.array([0.0, 0.0]) - (100, 50)) @ lin.T + (10.0, -20.0)],
                               atol=1e-9)
