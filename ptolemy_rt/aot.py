"""Compile the hot loops (the `*_kernels` modules) ahead of time (run by `make install`).

    python -m ptolemy_rt.aot [--out DIR]

numba.pycc turns every kernel of every kernel module's `EXPORTS` (`kernels.exports()`) into
one extension module, `ptolemy_rt._kernels_aot` (needs a C compiler; built for this
machine's CPU). At run time the extension needs only numpy: no numba, no LLVM, no
compilation (numba alone costs ≈0.5 s and ≈110 MB of memory per process). The module also
exports `source_digest()`, the digest of the kernel sources it was built from
(`kernels.SOURCES`); `ptolemy_rt.kernels` uses it only when it matches the sources beside
it and the file's sha256 matches the one written beside it at build time (a truncated or
damaged extension would crash the process when loaded), and otherwise jits the kernel
modules (cached on disk).

numba.pycc is pending deprecation (since numba 0.57) and warns so when imported. That one
warning is expected, and hidden, only for the numba versions `TESTED_NUMBA` covers (the pin
in pyproject.toml); any other warning, or that one under another numba version, is shown.
docs/DEVELOPING.md says what replaces pycc when it goes.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
import warnings
from pathlib import Path

MODULE = "_kernels_aot"
#: Written beside the extension: its sha256 (a damaged file is not loaded), then
#: "numpy X.Y.Z", the numpy it was built against (one built against numpy 1.x is not loaded
#: under numpy 2).
SIDECAR = "_kernels_aot.sha256"
#: numba versions (major, minor) this build was tested with: keep in step with the numba pin
#: of pyproject.toml (tests/test_kernels.py checks that they agree).
TESTED_NUMBA = ((0, 63), (0, 68))


def numba_tested(version: str) -> bool:
    """Whether a numba version is within the tested range `TESTED_NUMBA` (inclusive).

    Parameters
    ----------
    version : str
        numba.__version__, e.g. "0.68.1".

    Returns
    -------
    bool

    Examples
    --------
    >>> numba_tested("0.68.1"), numba_tested("0.69.0"), numba_tested("0.62.1")
    (True, False, False)
    """
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return TESTED_NUMBA[0] <= (major, minor) <= TESTED_NUMBA[1]


def _import_pycc():
    """numba.pycc.CC. Its pending-deprecation warning (Python hides pending deprecations by
    default) is ignored under a tested numba, where it is known and harmless, and shown under
    any other numba, where pycc may have changed or be on its way out."""
    import numba
    from numba.core.errors import NumbaPendingDeprecationWarning

    with warnings.catch_warnings():
        if numba_tested(numba.__version__):
            warnings.filterwarnings("ignore", message=r"The 'pycc' module is pending deprecation",
                                    category=NumbaPendingDeprecationWarning)
        else:
            warnings.simplefilter("default", NumbaPendingDeprecationWarning)
        from numba.pycc import CC
    return CC


def build(out_dir: Path) -> Path:
    """Compile every kernel into the extension `MODULE`, with `SIDECAR` beside it.

    Built in a temporary folder inside out_dir and moved into place (a process that has the
    old extension loaded keeps its copy), for this machine's CPU (``target_cpu = "host"``), or
    for the LLVM CPU model named by env ``PTOLEMY_AOT_CPU`` (``make wheel`` uses "haswell":
    AVX2/FMA/BMI2, so the extension runs on any x86-64 PC since 2013-2015).

    Parameters
    ----------
    out_dir : Path
        Destination folder (the ptolemy_rt package folder for the loader to find it).

    Returns
    -------
    Path
        The built extension.

    Raises
    ------
    Exception
        Whatever numba.pycc or the C compiler raise (no compiler, unsupported platform);
        `main` reports it in one line and the jit backend is used instead.
    """
    import os
    import tempfile

    import numpy

    from .kernels import exports, source_digest

    CC = _import_pycc()
    digest = source_digest()

    def digest_fn():
        return digest

    cc = CC(MODULE)
    tmp = tempfile.mkdtemp(prefix="ptolemy-aot-", dir=out_dir)
    cc.output_dir = tmp
    # built where it runs (make install): use its vector units; a wheel names its baseline
    cc.target_cpu = os.environ.get("PTOLEMY_AOT_CPU", "").strip() or "host"
    cc.verbose = False
    for name, (mod, fname, sig) in exports().items():
        cc.export(name, sig)(getattr(mod, fname).py_func)
    cc.export("source_digest", "i8()")(digest_fn)
    try:
        cc.compile()
        name = Path(cc.output_file).name
        built = Path(tmp) / name
        side = Path(tmp) / SIDECAR
        side.write_text(f"{hashlib.sha256(built.read_bytes()).hexdigest()}\nnumpy {numpy.__version__}\n")
        os.replace(built, Path(out_dir) / name)
        os.replace(side, Path(out_dir) / SIDECAR)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return Path(out_dir) / name


def main(argv=None) -> int:
    """``python -m ptolemy_rt.aot [--out DIR]``: build, report in one line on stderr.

    Returns
    -------
    int
        0 when built, 1 when the build failed (the kernels are then jitted at first use).
    """
    ap = argparse.ArgumentParser(prog="python -m ptolemy_rt.aot", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                    help="output folder (default: the ptolemy_rt package folder)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        import numba

        if not numba_tested(numba.__version__):
            lo, hi = (".".join(map(str, v)) for v in TESTED_NUMBA)
            print(f"ptolemy_rt.aot: note: numba {numba.__version__} is outside the tested range {lo}-{hi}",
                  file=sys.stderr)
        path = build(args.out)
    except Exception as exc:  # no compiler, unsupported platform: the jit fallback still works
        print(f"ptolemy_rt.aot: ahead-of-time compilation failed ({type(exc).__name__}: {exc}); "
              "the kernels will be jitted (cached) at first use instead", file=sys.stderr)
        return 1
    print(f"compiled kernels: {path} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
