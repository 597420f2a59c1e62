#!/usr/bin/env python
"""Install a ptolemy-rt wheel into a fresh virtual environment outside the checkout, with no
network (used by tests/test_wheel.py and bench/wheel_cold.py).

    python packaging/fresh_venv.py WHEEL VENV [--deps SITE_PACKAGES]

``python -m venv VENV`` (its own pip), then ``pip install --no-index WHEEL``: pip resolves the
wheel's declared dependencies against what the venv sees and downloads nothing. On a microscope
PC those dependencies come from a wheelhouse (``--find-links``, docs/INSTALL.md); here, where
there is no wheelhouse and no network, they are the packages already installed in another
environment (``--deps``, default: this Python's site-packages), seen by the venv through one
path file pointing at a folder of links to them. The links leave out every ptolemy-rt file of
that environment (an editable install's finder and dist-info), so the venv's only ptolemy_rt
is the wheel's.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

#: Entries of the dependency environment that are never linked: ptolemy-rt itself (package,
#: editable finder, dist-info) and path files (they would run code from that environment).
SKIP_PREFIXES = ("ptolemy_rt", "__editable__", "_distutils_hack", "pip", "setuptools", "__pycache__")


def venv_python(venv: Path) -> Path:
    """The venv's interpreter (bin/python, or Scripts\\python.exe on Windows)."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_script(venv: Path, name: str) -> Path:
    """A console script of the venv (bin/NAME, Scripts\\NAME.exe)."""
    return venv / ("Scripts" if os.name == "nt" else "bin") / (name + (".exe" if os.name == "nt" else ""))


def link_deps(deps_site: Path, farm: Path) -> int:
    """Links in `farm` to every entry of `deps_site` but ptolemy-rt's and path files; returns
    how many."""
    farm.mkdir(parents=True, exist_ok=True)
    n = 0
    for entry in sorted(Path(deps_site).iterdir()):
        name = entry.name
        if name.startswith(SKIP_PREFIXES) or name.endswith(".pth"):
            continue
        (farm / name).symlink_to(entry, target_is_directory=entry.is_dir())
        n += 1
    return n


def make(wheel: Path, venv: Path, deps_site: Path | None = None, timeout: float = 600) -> Path:
    """Create `venv`, make the dependencies visible, install `wheel` offline; returns the venv's
    ``ptolemy`` script. Raises CalledProcessError (with pip's output) on failure."""
    venv = Path(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=timeout)
    py = venv_python(venv)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    deps = Path(deps_site) if deps_site is not None else Path(sysconfig.get_paths()["purelib"])
    farm = venv / "deps"
    link_deps(deps, farm)
    (site / "zz_ptolemy_deps.pth").write_text(str(farm) + "\n")  # appended after the venv's own site
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_FIND_LINKS", "PIP_INDEX_URL")}
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check",
                    str(wheel)], check=True, capture_output=True, text=True, env=env, timeout=timeout)
    return venv_script(venv, "ptolemy")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="packaging/fresh_venv.py", description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path)
    ap.add_argument("venv", type=Path)
    ap.add_argument("--deps", type=Path, default=None, help="site-packages holding the dependencies")
    a = ap.parse_args(argv)
    try:
        print(make(a.wheel, a.venv, a.deps))
    except subprocess.CalledProcessError as e:
        sys.stderr.write(f"{' '.join(map(str, e.cmd))}: exit {e.returncode}\n{e.stderr or ''}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
