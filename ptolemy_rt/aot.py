"""Compile the hot loops of `ptolemy_rt.jit` ahead of time (run by `make install`).

    python -m ptolemy_rt.aot [--out DIR]

numba.pycc turns every kernel of `jit.EXPORTS` into the extension module
`ptolemy_rt._kernels_aot` (needs a C compiler; built for this machine's CPU). At run time the
extension needs only numpy: no numba, no LLVM, no compilation (numba alone costs ≈0.5 s and
≈110 MB of memory per process). The module also exports `source_digest()`, the digest of the
jit.py it was built from; `ptolemy_rt.kernels` uses it only when it matches the jit.py beside
it and the file's sha256 matches the one written beside it at build time (a truncated or
damaged extension would crash the process when loaded), and otherwise jits jit.py (cached
on disk).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
import warnings
from pathlib import Path

MODULE = "_kernels_aot"
SIDECAR = "_kernels_aot.sha256"  # sha256 of the built extension: a damaged file is not loaded


def build(out_dir: Path) -> Path:
    """Compile the extension into out_dir; returns its path. Built in a temporary folder and
    moved into place (a process that has the old extension loaded keeps its copy)."""
    import os
    import tempfile

    from numba.pycc import CC

    from . import jit
    from .kernels import source_digest

    warnings.simplefilter("ignore")  # pycc's own deprecation notice
    digest = source_digest()

    def digest_fn():
        return digest

    cc = CC(MODULE)
    tmp = tempfile.mkdtemp(prefix="ptolemy-aot-", dir=out_dir)
    cc.output_dir = tmp
    cc.target_cpu = "host"  # built where it runs (make install): use its vector units
    cc.verbose = False
    for name, (fname, sig) in jit.EXPORTS.items():
        cc.export(name, sig)(getattr(jit, fname).py_func)
    cc.export("source_digest", "i8()")(digest_fn)
    try:
        cc.compile()
        name = Path(cc.output_file).name
        built = Path(tmp) / name
        side = Path(tmp) / SIDECAR
        side.write_text(hashlib.sha256(built.read_bytes()).hexdigest() + "\n")
        os.replace(built, Path(out_dir) / name)
        os.replace(side, Path(out_dir) / SIDECAR)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return Path(out_dir) / name


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ptolemy_rt.aot", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                    help="output folder (default: the ptolemy_rt package folder)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        path = build(args.out)
    except Exception as exc:  # no compiler, unsupported platform: the jit fallback still works
        print(f"ptolemy_rt.aot: ahead-of-time compilation failed ({type(exc).__name__}: {exc}); "
              "the kernels will be jitted (cached) at first use instead", file=sys.stderr)
        return 1
    print(f"compiled kernels: {path} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
