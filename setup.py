"""setuptools shim: the package list, found from the tree (never hand-listed), and a wheel
tagged for this Python and platform when it carries compiled kernels
(ptolemy_rt/_kernels_aot*.so) instead of "py3-none-any". Everything else is declared in
pyproject.toml (package-dir: ptolemy_rt.model_sets = onnx_models, ptolemy_rt.export = export).

Packages: ptolemy_rt and every subpackage under it, ptolemy_rt.export and every subpackage
under export/, and ptolemy_rt.model_sets (data only: the default model set). A module added
to any of them ships with no edit here (tests/test_wheel.py checks every tracked module is in
the wheel).
"""
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent


class _MaybeBinary(Distribution):
    def has_ext_modules(self):  # noqa: D102 - setuptools hook
        return any(HERE.joinpath("ptolemy_rt").glob("_kernels_aot*.so"))


def packages() -> list[str]:
    """ptolemy_rt[.*], ptolemy_rt.export[.*] (from export/), ptolemy_rt.model_sets."""
    found = ["ptolemy_rt"] + [f"ptolemy_rt.{p}" for p in find_packages(str(HERE / "ptolemy_rt"))]
    if (HERE / "export" / "__init__.py").is_file():
        found += ["ptolemy_rt.export"] + [f"ptolemy_rt.export.{p}" for p in find_packages(str(HERE / "export"))]
    if (HERE / "onnx_models").is_dir():
        found.append("ptolemy_rt.model_sets")
    return found


setup(distclass=_MaybeBinary, packages=packages())
