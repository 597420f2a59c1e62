#!/usr/bin/env python
"""`make wheel`: build dist/ptolemy_rt-<version>-<python>-<platform>.whl for microscope PCs.

    python packaging/build_wheel.py [--kernels baseline|host|none] [--out dist]

The wheel holds the runtime package, the default model set (as package data under
ptolemy_rt/model_sets/, found by the loader without PTOLEMY_MODELS_DIR) and, unless
``--kernels none``, the hot loops compiled ahead of time. ``baseline`` (the default) compiles
them for the x86-64 "haswell" CPU model (AVX2, FMA, BMI2: every x86-64 PC since 2013-2015),
so that the extension runs on any such PC, not only on the build machine; ``host`` for the
build machine's own CPU. Where the extension cannot load (another OS, CPU or Python),
ptolemy_rt.kernels falls back to the numba jit of the same loops.

The package is staged in a temporary folder from the working tree (never the git-ignored
converted published set, never tests; export/ goes in as ptolemy_rt.export, for `ptolemy
models convert-published`, importing torch only when run), so the checkout's own compiled
kernels (built for its host) are not what ships.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: the own sets shipped in the wheel: the default first, then the earlier set it was made from
SHIPPED_SETS = ("ptolemy-rt-synth-v2", "ptolemy-rt-synth-v1")
DEFAULT_SET = SHIPPED_SETS[0]
BASELINE_CPU = "haswell"
TOP_FILES = ("pyproject.toml", "setup.py", "README.md")


def stage(dst: Path) -> None:
    """Copy what the wheel is built from into dst (no caches, no compiled kernels)."""
    for name in TOP_FILES:
        shutil.copy2(REPO / name, dst / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_kernels_aot*")
    shutil.copytree(REPO / "ptolemy_rt", dst / "ptolemy_rt", ignore=ignore)
    for name in SHIPPED_SETS:
        shutil.copytree(REPO / "onnx_models" / name, dst / "onnx_models" / name)
    shutil.copytree(REPO / "export", dst / "export", ignore=ignore)  # -> ptolemy_rt.export


def compile_kernels(pkg: Path, cpu: str) -> None:
    """Ahead-of-time kernels for CPU model `cpu` into the staged package folder."""
    env = dict(os.environ, PTOLEMY_AOT_CPU=cpu, PYTHONPATH=str(pkg.parent))
    subprocess.run([sys.executable, "-m", "ptolemy_rt.aot", "--out", str(pkg)], check=True, env=env,
                   cwd=pkg.parent)


def _isolation() -> list[str]:
    """``--no-build-isolation`` when this Python has setuptools >= 77 (no download, faster),
    else nothing (pip fetches the build backend)."""
    try:
        import setuptools

        return ["--no-build-isolation"] if int(setuptools.__version__.split(".")[0]) >= 77 else []
    except (ImportError, ValueError):
        return []


def source_date_epoch() -> str:
    """Timestamp for the wheel's entries: the last commit's time (1980-01-01 outside git)."""
    r = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip().isdigit() else "315532800"


def build(out: Path, kernels: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ptolemy-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        stage(src)
        if kernels != "none":
            compile_kernels(src / "ptolemy_rt", BASELINE_CPU if kernels == "baseline" else "host")
        wdir = Path(tmp) / "wheel"
        env = dict(os.environ, SOURCE_DATE_EPOCH=source_date_epoch())  # same tree, same wheel bytes
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *_isolation(),
                        "-w", str(wdir), str(src)], check=True, env=env)
        (whl,) = wdir.glob("*.whl")
        dest = out / whl.name
        shutil.move(str(whl), dest)
    check(dest, kernels != "none")
    return dest


def check(whl: Path, with_kernels: bool) -> None:
    """The wheel holds the package, the default set and (if asked) the kernels; nothing else."""
    names = zipfile.ZipFile(whl).namelist()
    want = ["ptolemy_rt/cli.py", f"ptolemy_rt/model_sets/{DEFAULT_SET}/manifest.json", "ptolemy_rt/export/convert.py"]
    if with_kernels:
        want += ["ptolemy_rt/_kernels_aot.sha256"]
    missing = [w for w in want if w not in names]
    stray = [n for n in names if n.startswith(("tests/", "export/", "ptolemy_rt/model_sets/ptolemy-2022"))]
    if missing or stray:
        raise SystemExit(f"{whl}: bad wheel (missing {missing}, stray {stray[:3]})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="packaging/build_wheel.py", description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", choices=("baseline", "host", "none"), default="baseline")
    ap.add_argument("--out", type=Path, default=REPO / "dist")
    args = ap.parse_args(argv)
    whl = build(args.out, args.kernels)
    print(whl)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
