"""The compiled hot loops: the ahead-of-time extension and the numba-jitted kernel modules
agree exactly, the loader picks the right backend (the digest covers every kernel source),
a run needs no numba when the extension is built, and the numba pin matches the tested range.

Run both ways: `pytest tests/test_kernels.py` and `PTOLEMY_KERNELS=jit pytest ...` (the
tests that need the extension in use skip under the second)."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi

from conftest import LOWMAG_MRC, MEDMAG_MRC, needs_shared
from ptolemy_rt import aot as aot_build
from ptolemy_rt import kernels, lattice

HAS_AOT = importlib.util.find_spec("ptolemy_rt._kernels_aot") is not None
needs_aot = pytest.mark.skipif(not HAS_AOT, reason="extension not built (make kernels)")
#: the extension is the backend in use (built, and the jit backend not forced)
aot_in_use = pytest.mark.skipif(not HAS_AOT or os.environ.get("PTOLEMY_KERNELS", "").lower() == "jit",
                                reason="extension not built, or PTOLEMY_KERNELS=jit")
PACKAGE = Path(kernels.__file__).resolve().parent
REPO = PACKAGE.parent


def _fresh_backend(monkeypatch, **env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(kernels, "_IMPL", None)
    monkeypatch.setattr(kernels, "_BACKEND", None)
    return kernels.backend()


@aot_in_use
def test_built_extension_is_used():
    """`make test` builds the extension first (make kernels): the loader must take it."""
    assert kernels.backend() == "aot"


@needs_aot
def test_stale_extension_falls_back_to_jit(monkeypatch):
    """An extension built from other kernel sources is ignored (its digest differs)."""
    monkeypatch.setattr(kernels, "source_digest", lambda: -1)
    assert _fresh_backend(monkeypatch) == "jit"


def test_env_forces_jit(monkeypatch):
    assert _fresh_backend(monkeypatch, PTOLEMY_KERNELS="jit") == "jit"


def _inputs():
    rng = np.random.default_rng(5)
    img4 = (rng.poisson(30, (97, 131)) + 200 * (rng.random((97, 131)) < 0.3)).astype(np.float32)
    img4[3, 4] = -7.0
    img8 = img4.astype(np.float64) / 17.0
    mask = rng.random((120, 150)) < 0.12
    grown = ndi.maximum_filter(mask.view(np.uint8), size=2).view(bool)
    return img4, img8, mask, grown


@needs_aot
def test_aot_and_jit_give_identical_results():
    import ptolemy_rt._kernels_aot as aot

    jit = kernels.jit_kernels()
    img4, img8, mask, grown = _inputs()
    for img, sfx in ((img4, "f4"), (img8, "f8")):
        assert getattr(aot, f"scan_pixels_{sfx}")(img) == jit.scan_pixels(img)
        h1 = getattr(aot, f"value_histogram_{sfx}")(img, 1.7, 400)
        np.testing.assert_array_equal(h1, jit.value_histogram(img, 1.7, 400))
        lut = np.arange(400) % 3 == 0
        np.testing.assert_array_equal(getattr(aot, f"lut_mask_{sfx}")(img, 1.7, lut), jit.lut_mask(img, 1.7, lut))
    vals = np.nonzero(h1)[0].astype(np.float64)
    cnts = h1[h1 > 0].astype(np.float64)
    assert aot.poisson_em(vals, cnts, 100, 1e-3) == jit.poisson_em(vals, cnts, 100, 1e-3)
    la, na = aot.label_components(grown, mask)
    lj, nj = jit.label_components(grown, mask)
    assert na == nj > 10
    np.testing.assert_array_equal(la, lj)
    ea = aot.row_extremes(la, na)
    ej = jit.row_extremes(lj, nj)
    for x, y in zip(ea, ej):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(aot.hulls_of_rows(*ea), jit.hulls_of_rows(*ej)):
        np.testing.assert_array_equal(x, y)
    pts = np.random.default_rng(1).normal(size=(40, 2)) * 30
    starts = np.array([0, 7, 19, 30], np.int64)
    assert aot.box_area_sum(pts, starts, 23.5) == jit.box_area_sum(pts, starts, 23.5)
    np.testing.assert_array_equal(aot.lattice_points(5.5, 7.25, 40.0, 11.0, 300.0, 250.0, 100.0),
                                  jit.lattice_points(5.5, 7.25, 40.0, 11.0, 300.0, 250.0, 100.0))
    args2 = (5.5, 7.25, 40.0, 11.0, -9.0, 37.0, 300.0, 250.0, 100.0)
    np.testing.assert_array_equal(aot.lattice_points2(*args2), jit.lattice_points2(*args2))
    assert aot.shortest_vector2(40.0, 11.0, 31.0, 48.0) == jit.shortest_vector2(40.0, 11.0, 31.0, 48.0)
    m8 = np.ascontiguousarray(mask.view(np.uint8))
    cents = np.random.default_rng(2).random((12, 2)) * 120
    nb = lattice.nearest_neighbours(cents)
    # both box rules; centroids a few px apart give dense lattices (the published rule's
    # difference-array path, and sub-pixel ones its covering shortcut)
    close = np.concatenate([cents, cents[:3] + [[0.4, 0.2], [3.0, -2.0], [9.0, 7.5]]])
    for c in (cents, close):
        for published in (False, True):
            nbs = lattice.published_neighbours(c) if published else lattice.nearest_neighbours(c)
            args = (m8, np.ascontiguousarray(c), nbs, 100.0, 30, True, 100.0, 1e6, published)
            for x, y in zip(aot.score_candidates(*args), jit.score_candidates(*args)):
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("case", ["empty", "full", "diagonal", "u_shape", "one_row", "one_col", "checker"])
def test_label_components_matches_scipy(case):
    """Numbering (row-major first pixel) and 8-connectivity equal scipy.ndimage.label's,
    including components that merge late (a U shape) and diagonal-only contacts."""
    m = np.zeros((9, 11), bool)
    if case == "full":
        m[:] = True
    elif case == "diagonal":
        m[np.arange(9), np.arange(9)] = True
        m[0, 10] = m[1, 9] = True
    elif case == "u_shape":
        m[1:8, 1] = m[1:8, 5] = m[1:8, 9] = True
        m[7, 1:6] = True
        m[0, 9] = True
    elif case == "one_row":
        m = np.array([[1, 1, 0, 1, 0, 0, 1, 1, 1]], bool)
    elif case == "one_col":
        m = np.array([[1], [0], [1], [1]], bool)
    elif case == "checker":
        m = (np.add.outer(np.arange(9), np.arange(11)) % 2).astype(bool)
        m[4, :] = False
    want, wn = ndi.label(m, structure=np.ones((3, 3), bool))
    got, n = kernels.label_components(m, m)
    assert n == wn
    np.testing.assert_array_equal(got, want)


def _numba_loaded_after(code: str) -> bool:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('numba' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1] == "True"


@aot_in_use
@needs_shared
def test_pipelines_do_not_load_numba():
    """With the extension built, neither pipeline imports numba (≈0.5 s, ≈110 MB saved)."""
    assert not _numba_loaded_after(
        f"from ptolemy_rt.lowmag import locate_squares\nc = locate_squares({str(LOWMAG_MRC)!r})\nassert c.n == 48")
    assert not _numba_loaded_after(
        "from ptolemy_rt.medmag import layout_holes, normalise\n"
        "from ptolemy_rt import io, lattice\nimport numpy as np\n"
        f"img = io.read_mrc({str(MEDMAG_MRC)!r}).pixels\n"
        "m = np.zeros(img.shape, bool)\nfor r in range(100, 900, 80):\n"
        "    for c in range(100, 1300, 80):\n        m[r:r+20, c:c+20] = True\n"
        "lay = layout_holes(m)\nassert lay.lattice is not None")


@needs_aot
def test_damaged_extension_is_not_loaded(tmp_path):
    """A truncated extension (e.g. a disk filled up while copying) would kill the process with
    SIGBUS when loaded; its sha256 no longer matches the build's, so the jit backend is used."""
    import shutil
    from pathlib import Path

    import ptolemy_rt

    pkg = Path(ptolemy_rt.__file__).parent
    dst = tmp_path / "ptolemy_rt"
    shutil.copytree(pkg, dst, ignore=shutil.ignore_patterns("__pycache__"))
    so = next(dst.glob("_kernels_aot*.so"))
    so.write_bytes(so.read_bytes()[:1000])
    out = subprocess.run([sys.executable, "-c", "from ptolemy_rt import kernels; print(kernels.backend())"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "jit"
    (dst / "_kernels_aot.sha256").unlink()  # no record of the build: not trusted either
    out = subprocess.run([sys.executable, "-c", "from ptolemy_rt import kernels; print(kernels.backend())"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "jit"


@needs_aot
def test_extension_exports_every_kernel():
    """The one extension holds every kernel module's exports (and the digest), no more."""
    import ptolemy_rt._kernels_aot as aot

    names = {n for n in dir(aot) if not n.startswith("_")}
    assert names == set(kernels.exports()) | {"source_digest"}


def test_every_kernel_module_is_listed():
    """A new `*_kernels.py` must be in KERNEL_MODULES (else it is neither built nor digested)
    and is picked up by the Makefile's wildcard; the constants file is in the digest and the
    Makefile too."""
    on_disk = {p.stem for p in PACKAGE.glob("*_kernels.py")}
    assert on_disk == set(kernels.KERNEL_MODULES)
    assert "kernel_constants.py" in kernels.SOURCES
    make = (REPO / "Makefile").read_text()
    line = next(ln for ln in make.splitlines() if ln.startswith("KERNEL_SOURCES"))
    assert "ptolemy_rt/*_kernels.py" in line and "ptolemy_rt/kernel_constants.py" in line


@pytest.mark.parametrize("changed", kernels.SOURCES)
def test_digest_covers_every_source(monkeypatch, tmp_path, changed):
    """Editing any kernel module or the constants changes the digest, so a stale extension
    is not loaded (the constants are frozen into the compiled code)."""
    for name in kernels.SOURCES:
        shutil.copy(PACKAGE / name, tmp_path / name)
    before = kernels.source_digest()
    monkeypatch.setattr(kernels, "_PACKAGE", tmp_path)
    assert kernels.source_digest() == before
    with open(tmp_path / changed, "a") as f:
        f.write("\n# edited\n")
    assert kernels.source_digest() != before


def test_constants_module_loads_no_numba():
    """Callers import the shared constants without numba (a run with the extension loads none)."""
    assert not _numba_loaded_after("import ptolemy_rt.kernel_constants, ptolemy_rt.lattice, ptolemy_rt.mixture")
    from ptolemy_rt import kernel_constants

    assert lattice.MISS_WEIGHT == kernel_constants.MISS_WEIGHT


def _pycc_import_stderr(tested_range: str) -> str:
    code = (f"import warnings\nimport ptolemy_rt.aot as a\na.TESTED_NUMBA = {tested_range}\n"
            "a._import_pycc()\n")
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": path})
    assert out.returncode == 0, out.stderr
    return out.stderr


def test_pycc_warning_hidden_only_under_tested_numba():
    """pycc's pending-deprecation warning is hidden under the tested numba versions and shown
    under any other (simulated by moving the tested range away from the installed numba)."""
    pytest.importorskip("numba.core.errors")
    import numba

    if not aot_build.numba_tested(numba.__version__):
        pytest.skip(f"numba {numba.__version__} is outside the tested range")
    assert "pycc" not in _pycc_import_stderr(repr(aot_build.TESTED_NUMBA))
    assert "'pycc' module is pending deprecation" in _pycc_import_stderr("((0, 1), (0, 2))")


def test_numba_pin_is_the_tested_range():
    """pyproject.toml pins numba to exactly the minor versions aot.TESTED_NUMBA names."""
    text = (REPO / "pyproject.toml").read_text()
    pins = re.findall(r'"numba([^"]*)"', text)
    (lo_major, lo_minor), (hi_major, hi_minor) = aot_build.TESTED_NUMBA
    assert pins == [f">={lo_major}.{lo_minor},<{hi_major}.{hi_minor + 1}"]


@needs_aot
@pytest.mark.skipif(int(np.__version__.split(".")[0]) < 2, reason="needs numpy 2")
def test_extension_built_against_numpy1_is_not_loaded_under_numpy2(tmp_path):
    """An extension built against numpy 1.x (then numpy upgraded) would fail to import with a
    screenful of numpy's warnings on stderr; the sidecar records the build's numpy, so the
    loader goes to the jit backend without a word."""
    dst = tmp_path / "ptolemy_rt"
    shutil.copytree(PACKAGE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    side = dst / "_kernels_aot.sha256"
    sha, numpy_line = side.read_text().splitlines()[:2]
    assert numpy_line == f"numpy {np.__version__}"  # written by the build
    code = "from ptolemy_rt import kernels; print(kernels.backend())"
    env = {k: v for k, v in os.environ.items() if k != "PTOLEMY_KERNELS"}
    run = dict(cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    out = subprocess.run([sys.executable, "-c", code], **run)
    assert out.returncode == 0 and out.stdout.strip() == "aot", out.stderr
    side.write_text(f"{sha}\nnumpy 1.26.4\n")
    out = subprocess.run([sys.executable, "-c", code], **run)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "jit" and out.stderr == ""
