"""Load the compiled kernels once (run by `make install`). With the ahead-of-time extension
(`ptolemy_rt.aot`) there is nothing to compile; with the jit fallback this compiles and
caches the kernels, so that the first real run does not pay the compilation time."""
from __future__ import annotations

import importlib
import sys
import time


def main() -> int:
    t0 = time.perf_counter()
    for mod in ("ptolemy_rt.mixture", "ptolemy_rt.regions", "ptolemy_rt.lattice"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        warm = getattr(m, "warmup", None)
        if warm is not None:
            warm()
    from . import kernels

    print(f"kernels ready ({kernels.backend()} backend) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
