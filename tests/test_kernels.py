"""The compiled hot loops: the ahead-of-time extension and the numba-jitted source agree
exactly, the loader picks the right backend, and a run needs no numba when the extension is
built."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage as ndi

from conftest import LOWMAG_MRC, MEDMAG_MRC, needs_shared
from ptolemy_rt import kernels, lattice

HAS_AOT = importlib.util.find_spec("ptolemy_rt._kernels_aot") is not None
needs_aot = pytest.mark.skipif(not HAS_AOT, reason="extension not built (make kernels)")


def _fresh_backend(monkeypatch, **env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(kernels, "_IMPL", None)
    monkeypatch.setattr(kernels, "_BACKEND", None)
    return kernels.backend()


@needs_aot
def test_built_extension_is_used():
    """`make test` builds the extension first (make kernels): the loader must take it."""
    assert kernels.backend() == "aot"


@needs_aot
def test_stale_extension_falls_back_to_jit(monkeypatch):
    """An extension built from another jit.py is ignored (its digest differs)."""
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
    from ptolemy_rt import jit

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
    m8 = np.ascontiguousarray(mask.view(np.uint8))
    cents = np.random.default_rng(2).random((12, 2)) * 120
    nb = lattice.nearest_neighbours(cents)
    args = (m8, cents, nb, 100.0, 30, True, 100.0, 1e6)
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


@needs_aot
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
