"""SerialEM .mdoc parser: the real files of ../shared/real-files/serialem, crafted bad files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ptolemy_rt.errors import InputImageError
from ptolemy_rt.mdoc import find_mdoc, parse_mdoc_text, read_mdoc

REPO = Path(__file__).resolve().parent.parent
REAL = Path(os.environ.get("PTOLEMY_SHARED", REPO.parent / "shared")) / "real-files" / "serialem"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real-files/serialem not present")


@needs_real
def test_every_real_mdoc_parses():
    files = sorted(REAL.glob("*.mdoc"))
    assert len(files) >= 4
    for f in files:
        m = read_mdoc(f)
        assert m.images, f
        assert m.pixel_spacing_A and m.pixel_spacing_A > 0
        assert m.image_size and min(m.image_size) > 0
        zs = [s.index for s in m.images]
        assert len(set(zs)) == len(zs)


@needs_real
def test_real_montage_values():
    m = read_mdoc(REAL / "mdocfile_montage_section.mdoc")
    assert m.montage and m.image_size == (5064, 3976) and m.pixel_spacing_A == pytest.approx(656.139)
    assert len(m.images) == 62 and m.montage_numbers() == (0,)
    z0 = m.image(0)
    assert z0.piece_coordinates == (0, 0, 0)
    assert z0.aligned_piece_coords_vs == (38, -65, 0)
    assert z0.aligned_piece_coords is None
    assert z0.stage_position == (919.141, 849.945)
    assert z0.get("XedgeDxy") == "-46.5 -16.5"
    ms = m.mont_section(0)
    assert ms.full_mont_size == (31992, 31176) and ms.full_mont_num_frames == (7, 9) and ms.move_stage == 1
    assert m.titles[0].startswith("SerialEM: Titan Krios")

    multi = read_mdoc(REAL / "mdocfile_montage_section_multiple.mdoc")
    assert multi.montage_numbers() == tuple(range(10))
    assert len(multi.mont_sections) == 10 and len(multi.images) == 90
    assert multi.image(0).aligned_piece_coords == (25, 101, 0)
    assert multi.image(9).piece_coordinates == (0, 0, 1)

    tilt = read_mdoc(REAL / "mdocfile_tilt_series.mdoc")
    assert not tilt.montage and tilt.montage_numbers() == ()
    assert all(s.tilt_angle is not None for s in tilt.images)


def test_parse_header_sections_and_types():
    text = (
        "PixelSpacing = 12.5\nImageSize = 100 80\nMontage = 1\nDataMode = 1\nImageFile = a.mrc\n\n"
        "[T = SerialEM: x]\n\n"
        "# a comment\n"
        "[ZValue = 1]\nPieceCoordinates = 90 0 0\nStagePosition = -1 2.5\nBinning = 0.5\n"
        "AlignedPieceCoords = 91.6 -3 0\nDateTime = 05-Feb-20  14:42:35\nEmpty =\n"
        "[ZValue = 0]\r\nPieceCoordinates = 0 0 0\r\n"
        "[MontSection = 0]\nMoveStage = 1\nFullMontSize = 190 80\n"
    )
    m = parse_mdoc_text(text, "t.mdoc")
    assert (m.pixel_spacing_A, m.image_size, m.montage, m.data_mode, m.image_file) == (12.5, (100, 80), True, 1, "a.mrc")
    assert m.titles == ("SerialEM: x",)
    assert [s.index for s in m.images] == [1, 0]
    z1 = m.image(1)
    assert z1.aligned_piece_coords == (92, -3, 0)  # rounded to whole pixels
    assert z1.binning == 0.5 and z1.stage_position == (-1.0, 2.5)
    assert z1.get("DateTime") == "05-Feb-20  14:42:35" and z1.get("Empty") == ""
    assert m.mont_section(0).move_stage == 1 and m.mont_section(0).full_mont_size == (190, 80)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ImageSize = 10 10\n[ZValue = 0]\nPieceCoordinates = 0 zero 0\n", "line 3: PieceCoordinates is not numeric"),
        ("ImageSize = 10 10\n[ZValue = 0]\nStagePosition = 1\n", "line 3: StagePosition needs 2 number(s)"),
        ("[ZValue = 0]\nStagePosition = nan 1\n", "line 2: StagePosition is not finite"),
        ("[ZValue = 0]\n[ZValue = 0]\n", "line 2: [ZValue = 0] repeats the section of line 1"),
        ("[ZValue = x]\n", "line 1: [ZValue = x]: the number is not an integer"),
        ("PixelSpacing = 5\nthis is not a key\n", "line 2: not 'key = value'"),
        ("ImageSize = 10\n", "line 1: ImageSize needs 2 number(s)"),
        ("\n\n# nothing\n", "not a SerialEM .mdoc file"),
    ],
)
def test_bad_mdoc_one_line_error(tmp_path, text, expected):
    f = tmp_path / "bad.mdoc"
    f.write_text(text)
    with pytest.raises(InputImageError) as e:
        read_mdoc(f)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{f}: ") and expected in msg


def test_binary_missing_and_directory(tmp_path):
    b = tmp_path / "x.mdoc"
    b.write_bytes(b"MAP \0\0\0\x01" * 10)
    for path, problem in ((b, "binary data"), (tmp_path / "none.mdoc", "no such file"), (tmp_path, "is a directory")):
        with pytest.raises(InputImageError, match=problem) as e:
            read_mdoc(path)
        assert "\n" not in str(e.value)


def test_latin1_title_is_read(tmp_path):
    f = tmp_path / "w.mdoc"
    f.write_bytes("[T = Universit\u00e9]\n[ZValue = 0]\nTiltAngle = 1\n".encode("latin-1"))
    assert read_mdoc(f).titles == ("Universit\u00e9",)


def test_find_mdoc(tmp_path):
    mrc = tmp_path / "map.mrc"
    mrc.write_bytes(b"")
    assert find_mdoc(mrc) is None
    (tmp_path / "map.mdoc").write_text("A = 1\n")
    assert find_mdoc(mrc) == tmp_path / "map.mdoc"
    (tmp_path / "map.mrc.mdoc").write_text("A = 1\n")
    assert find_mdoc(mrc) == tmp_path / "map.mrc.mdoc"
