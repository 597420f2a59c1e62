"""setuptools shim: the wheel carries compiled kernels (ptolemy_rt/_kernels_aot*.so) when they
were built, so it is tagged for this Python and platform instead of "py3-none-any".
Everything else is declared in pyproject.toml."""
from setuptools import setup
from setuptools.dist import Distribution


class _MaybeBinary(Distribution):
    def has_ext_modules(self):  # noqa: D102 - setuptools hook
        from pathlib import Path

        return any(Path(__file__).resolve().parent.joinpath("ptolemy_rt").glob("_kernels_aot*.so"))


setup(distclass=_MaybeBinary)
