"""Options objects (ptolemy_rt.options): validated on creation from API keywords or argv, one
declaration per option reused by the command line, carried by batch.Job to the pipeline."""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from ptolemy_rt import options as O
from test_cli_common import assert_one_error_line, fake, good_image, run_inproc, write_mrc  # noqa: F401


@pytest.mark.parametrize("make,words", [
    (lambda: O.LowmagOptions(batchnorm="eval"), "batchnorm 'eval': must be one of 'published', 'running'"),
    (lambda: O.LowmagOptions(crop_grid="diagonal"), "crop_grid 'diagonal'"),
    (lambda: O.LowmagOptions(norm=(1.0, 0.0)), "std must be > 0"),
    (lambda: O.LowmagOptions(norm="1,2"), "two numbers"),
    (lambda: O.MedmagOptions(lattice="hexagonal"), "lattice 'hexagonal': must be one of 'square', 'oblique'"),
    (lambda: O.MedmagOptions(batchnorm="running", lattice="auto"), "lattice 'auto'"),
    (lambda: O.OutputOptions(pixel_size_nm=0), "pixel_size_nm 0: must be a positive number"),
    (lambda: O.OutputOptions(pixel_size_nm=float("nan")), "pixel_size_nm"),
    (lambda: O.OutputOptions(fmt="xml"), "fmt 'xml'"),
    (lambda: O.OutputOptions(nav_acquire=-1), "nav_acquire -1"),
    (lambda: O.OutputOptions(fmt="nav"), "-f nav needs --nav-map"),
    (lambda: O.OutputOptions(nav_map="g.nav:7"), "--nav-map goes with -f nav, not -f json"),
    (lambda: O.OutputOptions(fmt="nav", nav_map="g.nav"), "NAVFILE:LABEL"),
])
def test_bad_values_raise_value_errors_naming_the_option(make, words):
    with pytest.raises(ValueError) as ei:
        make()
    assert isinstance(ei.value, O.UsageProblem) and ei.value.exit_code == 2
    assert words in str(ei.value) and "\n" not in str(ei.value)


def test_values_are_normalised_and_frozen():
    lo = O.LowmagOptions(norm=[160, 27])
    assert lo.norm == (160.0, 27.0) and isinstance(lo.norm[0], float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lo.norm = None
    out = O.OutputOptions(fmt="nav", nav_map=r"C:\d\grid.nav:12 ", pixel_size_nm=5)
    assert out.nav_map == (r"C:\d\grid.nav", "12") and out.pixel_size_nm == 5.0
    assert O.OutputOptions(fmt="nav", nav_map=("grid.nav", "12")).nav_map == ("grid.nav", "12")
    assert O.LowmagOptions() == O.LowmagOptions(batchnorm="published", crop_grid="image", norm=None)
    assert O.MedmagOptions().lattice is None


def test_pipeline_options_from_object_and_keywords():
    base = O.MedmagOptions(batchnorm="running")
    assert O.pipeline_options("medmag", base) is base
    assert O.pipeline_options("medmag", base, lattice="oblique") == O.MedmagOptions("running", "oblique")
    assert O.pipeline_options("lowmag", crop_grid="square") == O.LowmagOptions(crop_grid="square")
    with pytest.raises(TypeError):
        O.pipeline_options("lowmag", lattice="square")  # not a lowmag option
    with pytest.raises(TypeError):
        O.pipeline_options("lowmag", base)  # medmag options for lowmag


def test_api_rejects_bad_options_before_any_work():
    """find_squares / find_holes build their options first: a bad keyword fails before the
    image is read or a model set loaded (models=object() would fail otherwise)."""
    from ptolemy_rt.lowmag import find_squares
    from ptolemy_rt.medmag import find_holes, holes_from_mask

    img = np.zeros((64, 64), np.float32)
    with pytest.raises(ValueError, match="batchnorm"):
        find_squares(img, models=object(), batchnorm="eval")
    with pytest.raises(ValueError, match="lattice"):
        find_holes(img, models=object(), lattice="hexagonal")
    with pytest.raises(ValueError, match="lattice"):
        find_holes(img, O.MedmagOptions(), models=object(), lattice="hexagonal")
    with pytest.raises(TypeError):
        find_squares(img, models=object(), lattice="square")
    with pytest.raises(ValueError, match="batchnorm"):
        holes_from_mask(img, np.zeros((64, 64), bool), batchnorm="eval")


def test_every_declared_option_is_on_its_command():
    """The command line offers exactly the declared fields (declared once, in options.py)."""
    from ptolemy_rt import cli

    import typer

    cmd = typer.main.get_command(cli.app)
    for kind, cls in O.PIPELINE_OPTIONS.items():
        flags = {o for p in cmd.commands[kind].params for o in (*p.opts, *p.secondary_opts)}
        for c in (cls, O.OutputOptions):
            for f, spec in O.cli_fields(c):
                assert set(d for decl in spec.decls for d in decl.split("/")) <= flags, (kind, f.name)
    assert "--crop-grid" not in {o for p in cmd.commands["medmag"].params for o in p.opts}
    assert "--lattice" not in {o for p in cmd.commands["lowmag"].params for o in p.opts}


def test_job_carries_the_options_to_the_pipeline(tmp_path, fake, capsys, monkeypatch):
    from ptolemy_rt import batch

    seen = []

    def spy(kind, image, models, options):
        seen.append(options)
        return fake(kind, image, models, options)

    monkeypatch.setattr(batch, "run_pipeline", spy)
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    b = write_mrc(tmp_path / "b.mrc", good_image(2))
    assert run_inproc(["lowmag", "--crop-grid", "square", "--norm", "7,3", "--batchnorm", "RUNNING", img], capsys)[0] == 0
    assert run_inproc(["medmag", "--lattice", "auto", img, b, "-o", tmp_path / "out"], capsys)[0] == 0
    assert seen == [O.LowmagOptions("running", "square", (7.0, 3.0))] + [O.MedmagOptions()] * 2
    job = batch.Job("lowmag", str(img), options=seen[0], output=O.OutputOptions(fmt="csv", pixel_size_nm=2))
    assert pickle.loads(pickle.dumps(job)) == job  # worker processes get the same options
    assert batch.Job("medmag", "x.mrc").options == O.MedmagOptions()
    with pytest.raises(TypeError):
        batch.Job("medmag", "x.mrc", options=O.LowmagOptions())


@pytest.mark.parametrize("args,words", [
    (["lowmag", "--pixel-size", "-2"], ["--pixel-size -2", "positive"]),
    (["medmag", "--pixel-size", "nan"], ["--pixel-size nan"]),
    (["lowmag", "--norm", "1,0"], ["--norm '1,0'", "std must be > 0"]),
    (["medmag", "--nav-map", r"C:\data\grid1.nav", "-o", "t.nav"], ["--nav-map", "NAVFILE:LABEL"]),
    (["medmag", "--nav-map", "g.nav:", "-o", "t.nav"], ["--nav-map 'g.nav:'", "NAVFILE:LABEL"]),
    (["lowmag", "-f", "csv", "--nav-map", "g.nav:7"], ["--nav-map goes with -f nav"]),
])
def test_cli_bad_values_are_usage_errors(tmp_path, fake, capsys, monkeypatch, args, words):
    """A bad option value on the command line: exit 2, one line naming the flag, nothing run
    or written."""
    from ptolemy_rt import batch

    def never(*a):
        raise AssertionError("the pipeline must not run with a bad option")

    monkeypatch.setattr(batch, "run_pipeline", never)
    monkeypatch.chdir(tmp_path)
    img = write_mrc(tmp_path / "a.mrc", good_image(1))
    code, out, err = run_inproc([*args, img], capsys)
    assert code == 2 and out == ""
    assert_one_error_line(err, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mrc"]
