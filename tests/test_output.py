"""Output formats: the published JSON byte for byte, CSV/TXT contents, pixel size handling,
atomic writes."""
from __future__ import annotations

import csv
import io
import json
import os
import stat
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from ptolemy_rt import output
from ptolemy_rt.errors import OutputError
from ptolemy_rt.output import Report
from ptolemy_rt.results import Hole, HoleResult, Metadatum, PipelineResult, Square, SquareResult

from conftest import REFERENCE, needs_shared
from test_cli_common import fake, good_image, run_inproc, write_mrc  # noqa: F401  (fake: a fixture)

LOW_REF = REFERENCE / "lowmag_20may08a_16760340.published.json"
MED_REF = REFERENCE / "medmag_readme_1024x1440.published.json"


def _squares_from(data):
    return [Square(tuple(tuple(v) for v in d["vertices"]), tuple(d["center"]), d["area"], d["brightness"], d["score"])
            for d in data]


def _holes_from(data):
    return [Hole(tuple(tuple(v) for v in d["vertices"]), tuple(d["center"]), d["area"], d["score"]) for d in data]


def _square_report(n=3, px=None, src=None):
    sq = [Square(((0.5, 1.25), (50.5, 1.25), (50.5, 51.25), (0.5, 51.25)), (26, 26), 2500.0, 100.0 + i, s)
          for i, s in enumerate([0.1, 0.7, 0.3][:n])]
    res = SquareResult(sq, (200, 300), 10.0, "published", "set-x", None if n else "no squares", {"mix": 0.5})
    return Report("lowmag", "a.mrc", res, px, src)


def _hole_report(n=2, spacing=100.0, px=None):
    ho = [Hole(((0.0, 0.0), (80.0, 0.0), (80.0, 80.0), (0.0, 80.0)), (40, 40), 6400.0, s) for s in [0.2, 0.8][:n]]
    res = HoleResult(ho, (100, 200), 5.0, spacing, "running", "set-y", None if n else "no lattice")
    return Report("medmag", "b.mrc", res, px, "option" if px else None)


@needs_shared
@pytest.mark.parametrize("ref,kind", [(LOW_REF, "lowmag"), (MED_REF, "medmag")])
def test_json_equals_published_bytes(ref, kind):
    """Results holding the published values print exactly the published tool's file."""
    text = ref.read_text()
    data = json.loads(text)
    if kind == "lowmag":
        res = SquareResult(_squares_from(data), (1024, 1024))
    else:
        res = HoleResult(_holes_from(data), (1024, 1440))
    assert output.format_json(Report(kind, "x.mrc", res)) == text


def test_items_sorted_and_typed():
    rep = _square_report()
    its = output.items(rep.result)
    assert [d["score"] for d in its] == [0.7, 0.3, 0.1]
    assert list(its[0]) == ["vertices", "center", "area", "brightness", "score"]
    assert its[0]["brightness"] == 101.0
    hits = output.items(_hole_report().result)
    assert list(hits[0]) == ["vertices", "center", "area", "score"]


def test_empty_json_is_empty_list_and_reason_in_csv_txt():
    rep = _square_report(0)
    assert output.format_json(rep) == "[]\n"
    c = output.format_csv(rep)
    assert c.splitlines()[0] == "# reason: no squares"
    assert c.splitlines()[1].startswith("rank,center_x")
    assert len(c.splitlines()) == 2
    t = output.format_txt(rep)
    assert "# reason: no squares" in t
    full = json.loads(output.format_json_full(rep))
    assert full["items"] == [] and full["reason"] == "no squares" and full["count"] == 0


def test_csv_rows_round_trip_exactly():
    rep = _square_report()
    rows = list(csv.DictReader(io.StringIO(output.format_csv(rep))))
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert [float(r["score"]) for r in rows] == [0.7, 0.3, 0.1]
    r = rows[0]
    assert (r["center_x"], r["center_y"]) == ("26", "26")
    assert float(r["area"]) == 2500.0 and float(r["brightness"]) == 101.0
    assert [float(r[k]) for k in ("x0", "y0", "x2", "y2")] == [0.5, 1.25, 50.5, 51.25]
    assert "center_x_um" not in r
    hrows = list(csv.DictReader(io.StringIO(output.format_csv(_hole_report()))))
    assert "brightness" not in hrows[0] and len(hrows) == 2


def test_physical_units_in_csv_txt_not_json():
    rep = _square_report(px=200.0, src="option")
    rows = list(csv.DictReader(io.StringIO(output.format_csv(rep))))
    assert float(rows[0]["center_x_um"]) == pytest.approx(26 * 0.2)
    assert float(rows[0]["area_um2"]) == pytest.approx(2500 * 0.04)
    txt = output.format_txt(rep)
    assert "x_um" in txt and "pixel size 200 nm (--pixel-size)" in txt
    assert "um" not in output.format_json(rep)
    full = json.loads(output.format_json_full(rep))
    assert full["pixel_size_nm"] == 200.0 and full["items"][0]["area_um2"] == pytest.approx(100.0)


def test_json_full_metadata():
    rep = _hole_report()
    rep.seconds = 1.5
    full = json.loads(output.format_json_full(rep))
    for k in ("image", "shape", "models", "batchnorm", "lattice_angle_deg", "lattice_spacing_px", "reason",
              "pixel_size_nm", "timings_s", "items"):
        assert k in full
    assert full["shape"] == [100, 200] and full["models"] == "set-y" and full["batchnorm"] == "running"
    assert full["timings_s"]["total"] == 1.5
    assert full["items"] == output.items(rep.result)


def test_txt_table():
    t = output.format_txt(_square_report())
    lines = t.splitlines()
    assert lines[0].startswith("# ptolemy lowmag: a.mrc")
    assert "3 squares" in lines[1] and "grid angle 10.00 deg" in lines[1]
    body = [ln for ln in lines if not ln.startswith("#")]
    assert body[0].split()[:2] == ["rank", "x"]
    assert body[1].split()[0] == "1" and body[1].split()[-1] == "0.7000"


def test_deterministic_formatting():
    a = _square_report()
    b = _square_report()
    for fmt in ("json", "csv", "txt"):
        assert output.format_report(a, fmt) == output.format_report(b, fmt)


def test_resolve_pixel_size():
    assert output.resolve_pixel_size("lowmag", 150.0, 0.1) == (150.0, "option", None)
    assert output.resolve_pixel_size("lowmag", None, 0.1) == (None, None, None)  # 1 Å: unset header
    v, s, note = output.resolve_pixel_size("lowmag", None, 0.5)
    assert v is None and "ignored" in note
    assert output.resolve_pixel_size("lowmag", None, 250.0)[:2] == (250.0, "header")
    assert output.resolve_pixel_size("medmag", None, 25.0)[:2] == (25.0, "header")
    assert output.resolve_pixel_size("medmag", None, None) == (None, None, None)


def test_pixel_size_warning():
    # square box 50 px: at 1000 nm/px → 50 µm (plausible); at 1 nm/px → 0.05 µm (not)
    assert output.pixel_size_warning(_square_report(px=1000.0, src="option")) is None
    w = output.pixel_size_warning(_square_report(px=1.0, src="header"))
    assert w and "looks wrong" in w and "MRC header" in w
    # hole spacing 100 px: 30 nm/px → 3 µm fine; 500 nm/px → 50 µm not
    assert output.pixel_size_warning(_hole_report(px=30.0)) is None
    assert "hole spacing" in output.pixel_size_warning(_hole_report(px=500.0))
    assert output.pixel_size_warning(_square_report()) is None


def test_format_from_suffix():
    assert output.format_from_suffix("x.CSV") == "csv"
    assert output.format_from_suffix("x.txt") == "txt"
    assert output.format_from_suffix("x.json") == "json"
    assert output.format_from_suffix(None) == "json"


def test_write_atomic(tmp_path):
    p = tmp_path / "out.json"
    output.write_atomic(p, "[]\n")
    assert p.read_text() == "[]\n"
    mode = stat.S_IMODE(os.stat(p).st_mode)
    um = os.umask(0)
    os.umask(um)
    assert mode == 0o666 & ~um
    output.write_atomic(p, b"x")
    assert p.read_bytes() == b"x"
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_write_atomic_failures_leave_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError) as e:
        output.write_atomic(blocker / "out.json", "[]")
    assert "\n" not in str(e.value) and "not a folder" in str(e.value)
    with pytest.raises(OutputError):
        output.write_atomic(tmp_path / "missing" / "out.json", "[]")
    img = tmp_path / "img.mrc"
    img.write_bytes(b"data")
    with pytest.raises(OutputError) as e:
        output.write_atomic(img, "[]", protect=[img])
    assert "input" in str(e.value)
    assert img.read_bytes() == b"data"
    with pytest.raises(OutputError):
        output.write_atomic(tmp_path, "[]")
    assert sorted(os.listdir(tmp_path)) == ["file", "img.mrc"]


# ----------------------------------------------------- the result base (no kind switch)

def test_json_full_key_order_per_kind():
    """The metadata of each kind comes in the published order of the extended JSON."""
    low = list(json.loads(output.format_json_full(_square_report())))
    assert low == ["ptolemy_rt_version", "command", "image", "section", "shape", "models", "batchnorm",
                   "compat", "crop_grid", "normalisation", "grid_angle_deg", "reason", "pixel_size_nm",
                   "pixel_size_source", "timings_s", "count", "items"]
    med = list(json.loads(output.format_json_full(_hole_report())))
    assert med[7:12] == ["compat", "lattice_angle_deg", "lattice_spacing_px", "lattice_search", "scale"]
    assert med[12] == "reason"


@pytest.mark.parametrize("kind", ["lowmag", "medmag"])
def test_json_full_and_txt_record_the_compat_mode(kind):
    """-f json-full always says which compatibility mode made the result; TXT names it only
    when it is "published"."""
    for compat in ("robust", "published"):
        if kind == "lowmag":
            res = SquareResult([], (100, 100), None, reason="none", compat=compat)
        else:
            res = HoleResult([], (100, 200), reason="none", compat=compat)
        rep = Report(kind, "a.mrc", res)
        assert json.loads(output.format_json_full(rep))["compat"] == compat
        assert ("compat published" in output.format_txt(rep).splitlines()[1]) == (compat == "published")


def test_lowmag_metadata_in_json_full_and_txt():
    sq = [Square(((0.0, 0.0), (50.0, 0.0), (50.0, 50.0), (0.0, 50.0)), (25, 25), 2500.0, 3.0, 0.5)]
    res = SquareResult(sq, (100, 100), None, "running", "", None, {}, "square", (160.75, 27.5), "given")
    rep = Report("lowmag", "a.mrc", res)
    full = json.loads(output.format_json_full(rep))
    assert full["crop_grid"] == "square" and full["grid_angle_deg"] is None and full["models"] is None
    assert full["normalisation"] == {"mean": 160.75, "std": 27.5, "source": "given"}
    lines = output.format_txt(rep).splitlines()
    assert lines[1] == "# 1 squares, models ?, batchnorm running, crop grid square"
    assert lines[2] == "# normalisation mean 160.75, std 27.5 (given)"


def test_medmag_metadata_in_txt():
    res = HoleResult([], (100, 200), 12.345, 98.76, "published", "m", "no lattice", {}, "oblique")
    lines = output.format_txt(Report("medmag", "b.mrc", res)).splitlines()
    assert lines[1] == "# 0 holes, models m, batchnorm published, lattice angle 12.35 deg, spacing 98.8 px, lattice search oblique"
    assert lines[2] == "# reason: no lattice"


def test_a_new_result_kind_needs_no_formatter_change():
    """A third PipelineResult (declaring its own per-target field and metadata) goes through
    every formatter: they know results only through the base."""
    @dataclass(frozen=True)
    class Foil:
        vertices: tuple
        center: tuple
        area: float
        brightness: float
        score: float

    @dataclass
    class FoilResult(PipelineResult):
        kind: ClassVar[str] = "medmag"
        target_noun: ClassVar[str] = "foils"
        target_name: ClassVar[str] = "foil"
        target_fields: ClassVar[tuple] = ("brightness",)
        foils: list
        image_shape: tuple
        batchnorm: str = "published"
        models: str = "f"
        reason: str | None = None
        timings_s: dict = field(default_factory=dict)

        @property
        def targets(self):
            return self.foils

        def metadata(self):
            return (Metadatum("ice_nm", 35.5, "ice 35.5 nm"), Metadatum("carbon", None, "carbon film", own_line=True))

    box = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))
    res = FoilResult([Foil(box, (5, 5), 100.0, 7.25, 0.25), Foil(box, (5, 5), 100.0, 8.5, 0.75)], (20, 20))
    rep = Report("medmag", "f.mrc", res, 100.0, "option")
    assert [d["brightness"] for d in output.items(res)] == [8.5, 7.25]
    full = json.loads(output.format_json_full(rep))
    assert list(full)[7:9] == ["ice_nm", "carbon"] and full["ice_nm"] == 35.5 and full["carbon"] is None
    assert output.format_csv(rep).splitlines()[0].split(",")[4:6] == ["brightness", "score"]
    txt = output.format_txt(rep).splitlines()
    assert txt[1] == "# 2 foils, models f, batchnorm published, ice 35.5 nm" and txt[2] == "# carbon film"
    assert output.result_reason(Report("medmag", "f.mrc", FoilResult([], (20, 20)))) == "no foils found"
    assert output.pixel_size_warning(rep) is None  # 10 px × 100 nm = 1 µm: a plausible medmag size


# ----------------------------------------------------------- absurd pixel sizes

@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1.0, 0.0])
def test_pixel_size_option_must_be_positive_finite(bad):
    with pytest.raises(output.PixelSizeError) as e:
        output.resolve_pixel_size("lowmag", bad, None)
    assert e.value.exit_code == 2 and "--pixel-size" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("fmt", ["json-full", "csv", "txt"])
@pytest.mark.parametrize("px", [1e308, 1e200])
def test_overflowing_units_are_a_usage_error(fmt, px):
    """--pixel-size 1e308 made OverflowError (csv) or non-JSON-compliant floats (json-full):
    the physical units cannot be written, so nothing is; json (no units) still works."""
    for rep in (_square_report(px=px, src="option"), _hole_report(px=px)):
        with pytest.raises(output.PixelSizeError) as e:
            output.format_report(rep, fmt)
        assert e.value.exit_code == 2 and "overflow" in str(e.value) and "\n" not in str(e.value)
        assert json.loads(output.format_report(rep, "json"))[0]["score"] == max(t.score for t in rep.result.targets)
    big = _square_report(px=1e100, src="option")  # huge but finite units are written as they are
    assert float(next(csv.DictReader(io.StringIO(output.format_csv(big))))["area_um2"]) == pytest.approx(2500 * 1e194)


def test_overflowing_pixel_size_cli_writes_nothing(tmp_path, fake, capsys):
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    for px, fmt in (("1e308", "json-full"), ("1e308", "csv"), ("inf", "json-full"), ("inf", "csv")):
        out = tmp_path / f"out.{fmt}"
        code, so, err = run_inproc(["lowmag", img, "-f", fmt, "--pixel-size", px, "-o", out], capsys)
        assert code == 2 and so == "", err
        errors = [ln for ln in err.splitlines() if ln.startswith("ptolemy: error:")]
        assert len(errors) == 1 and "--pixel-size" in errors[0] and "Traceback" not in err
        assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["a.mrc"]
