"""Both pipelines run with torch made unimportable (the runtime never needs it)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import LOWMAG_MRC, MEDMAG_MRC, REPO, needs_shared

BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
            return None

    sys.meta_path.insert(0, _NoTorch())
    """
)


def _published_set_built() -> bool:
    return (REPO / "onnx_models" / "ptolemy-2022" / "manifest.json").is_file()


@needs_shared
@pytest.mark.skipif(not _published_set_built(), reason="published model set not built (make models)")
def test_pipelines_run_without_torch():
    code = BLOCK_TORCH + textwrap.dedent(
        f"""
        import json
        try:
            import torch  # noqa: F401
            raise SystemExit("torch import was not blocked")
        except ImportError:
            pass
        from ptolemy_rt import find_squares, find_holes
        sq = find_squares({str(LOWMAG_MRC)!r}, models="ptolemy-2022")
        ho = find_holes({str(MEDMAG_MRC)!r}, models="ptolemy-2022")
        assert "torch" not in sys.modules
        print(json.dumps([len(sq.squares), len(ho.holes)]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n_squares, n_holes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert n_squares == 48
    assert n_holes == 17
