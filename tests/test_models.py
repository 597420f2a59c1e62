"""Model-set loading: verification of every part, one-line errors naming the file and the
command that builds it, default set choice, cached sessions.

The set under test is the built published set (onnx_models/ptolemy-2022, from
`make models`) copied into a temporary PTOLEMY_MODELS_DIR; when it is not built, it is
built into the temporary folder with export.convert (needs torch and ../shared).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED, WEIGHTS
from ptolemy_rt.errors import ModelSetError
from ptolemy_rt.models import ModelSet, available_sets, load_model_set

BUILT = REPO / "onnx_models" / "ptolemy-2022"


def _complete(folder: Path) -> bool:
    try:
        doc = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return {"square_classifier", "hole_classifier"} <= set(doc.get("models", {}))


@pytest.fixture(scope="module")
def built_set(tmp_path_factory) -> Path:
    """A pristine copy source of the published set (built here if needed)."""
    if _complete(BUILT):
        return BUILT
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    if not WEIGHTS.is_dir():
        pytest.skip("no built model set and ../shared/ptolemy-2022 not present")
    from export.convert import ConvertError, convert

    out = tmp_path_factory.mktemp("built") / "ptolemy-2022"
    try:
        convert(WEIGHTS, SHARED / "NOTICE.md", out)
    except ConvertError:
        if not _complete(out):
            raise
    return out


@pytest.fixture
def root(tmp_path, built_set, monkeypatch) -> Path:
    r = tmp_path / "models"
    shutil.copytree(built_set, r / "ptolemy-2022")
    monkeypatch.setenv("PTOLEMY_MODELS_DIR", str(r))
    return r


def test_load_built_set(root):
    ms = load_model_set("ptolemy-2022")
    assert isinstance(ms, ModelSet) and ms.name == "ptolemy-2022" and ms.root == root / "ptolemy-2022"
    assert ms.spec.format_version == 1
    assert "CC BY-NC 4.0" in ms.spec.licence and "Ptolemy" in ms.spec.citation
    for key in ("square_classifier", "hole_classifier"):
        entry = ms.model(key)
        assert entry.source.file.endswith(".torchmodel") and len(entry.source.sha256) == 64
        for role, part in entry.parts.items():
            assert ms.part_path(key, role).is_file()
            if part.file.endswith(".onnx"):
                assert part.opset == 17
                sess = ms.session(key, role)
                assert [i.name for i in sess.get_inputs()] == [i.name for i in part.inputs]
                assert [o.name for o in sess.get_outputs()] == [o.name for o in part.outputs]
                assert sess.get_providers() == ["CPUExecutionProvider"]
    # sessions are cached per (key, role); the set itself is cached while files are unchanged
    assert ms.session("square_classifier", "full") is ms.session("square_classifier", "full")
    assert load_model_set("ptolemy-2022") is ms
    x = np.zeros((1, 1, 240, 240), np.float32)
    y = ms.session("square_classifier", "full").run(None, {"x": x})[0]
    assert y.shape == (1, 1) and np.isfinite(y).all()


def test_default_set(root):
    from ptolemy_rt.models import OWN_SET

    assert OWN_SET == "ptolemy-rt-synth-v2"
    assert load_model_set().name == "ptolemy-2022"
    shutil.copytree(root / "ptolemy-2022", root / "ptolemy-rt-synth-v1")
    assert load_model_set().name == "ptolemy-2022"  # the earlier own set: by name only
    shutil.copytree(root / "ptolemy-2022", root / OWN_SET)
    assert load_model_set().name == OWN_SET
    assert available_sets(root) == ["ptolemy-2022", "ptolemy-rt-synth-v1", OWN_SET]


def _a_part(root: Path, key="square_classifier", role="stage2") -> Path:
    doc = json.loads((root / "ptolemy-2022" / "manifest.json").read_text())
    return root / "ptolemy-2022" / doc["models"][key]["parts"][role]["file"]


def test_corrupt_part(root):
    load_model_set("ptolemy-2022")  # cached first: the cache must notice the change
    part = _a_part(root)
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    with pytest.raises(ModelSetError) as e:
        load_model_set("ptolemy-2022")
    msg = str(e.value)
    assert str(part) in msg and "corrupt" in msg and "make models" in msg and "\n" not in msg


def test_corrupt_npy_part(root):
    part = _a_part(root, "hole_classifier", "batchnorm")
    data = bytearray(part.read_bytes())
    data[-1] ^= 0x80
    part.write_bytes(bytes(data))
    with pytest.raises(ModelSetError, match="corrupt") as e:
        load_model_set("ptolemy-2022")
    assert str(part) in str(e.value)


def test_missing_part(root):
    part = _a_part(root, "hole_classifier", "head")
    part.unlink()
    with pytest.raises(ModelSetError) as e:
        load_model_set("ptolemy-2022")
    msg = str(e.value)
    assert str(part) in msg and "missing" in msg and "make models" in msg


def test_missing_or_bad_manifest(root):
    m = root / "ptolemy-2022" / "manifest.json"
    m.write_text("{not json")
    with pytest.raises(ModelSetError, match="manifest") as e:
        load_model_set("ptolemy-2022")
    assert str(m) in str(e.value)
    m.unlink()
    with pytest.raises(ModelSetError, match="make models"):
        load_model_set("ptolemy-2022")


def test_own_set_names_make_train(root):
    shutil.copytree(root / "ptolemy-2022", root / "ptolemy-rt-synth-v1")
    part = root / "ptolemy-rt-synth-v1" / _a_part(root).name
    part.unlink()
    with pytest.raises(ModelSetError) as e:
        load_model_set("ptolemy-rt-synth-v1")
    assert str(part) in str(e.value) and "make train" in str(e.value)


def test_unknown_set(root):
    with pytest.raises(ModelSetError) as e:
        load_model_set("no-such-set")
    msg = str(e.value)
    assert "no-such-set" in msg and "ptolemy-2022" in msg and "\n" not in msg
    with pytest.raises(ModelSetError):
        load_model_set("../ptolemy-2022")


def test_no_published_set_at_all(tmp_path, monkeypatch):
    monkeypatch.setenv("PTOLEMY_MODELS_DIR", str(tmp_path / "empty"))
    with pytest.raises(ModelSetError) as e:
        load_model_set()
    assert "ptolemy-2022" in str(e.value) and "make models" in str(e.value)


def test_unknown_model_key_and_role(root):
    ms = load_model_set("ptolemy-2022")
    with pytest.raises(ModelSetError, match="no model"):
        ms.model("nope")
    with pytest.raises(ModelSetError, match="no part"):
        ms.part_path("square_classifier", "nope")


def test_threads_from_env(monkeypatch):
    """PTOLEMY_THREADS (set by the batch runner) sets the intra-op threads; junk is ignored."""
    from ptolemy_rt import models as m

    monkeypatch.delenv("PTOLEMY_THREADS", raising=False)
    default = m._n_threads()
    assert default >= 1
    monkeypatch.setenv("PTOLEMY_THREADS", "3")
    assert m._n_threads() == 3
    for junk in ("0", "-2", "x", " "):
        monkeypatch.setenv("PTOLEMY_THREADS", junk)
        assert m._n_threads() == default


def test_sessions_share_env_arena(root):
    """Every session of a set runs on the one process-wide arena (where the build has it)
    and gives the same numbers as a plain session."""
    import onnxruntime as ort

    from ptolemy_rt import models as m

    ms = load_model_set("ptolemy-2022")
    s = ms.session("hole_unet", "encoder")
    assert m._ENV_ARENA
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 48)).astype(np.float32)
    plain = ort.InferenceSession(str(ms.part_path("hole_unet", "encoder")), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(s.run(None, {"image": x})[0], plain.run(None, {"image": x})[0])


def test_sets_are_searched_in_order(root, tmp_path, monkeypatch):
    """PTOLEMY_MODELS_DIR alone when set; else the package's own sets, then the per-user
    folder; a name found in both is taken from the package; the user folder's sets are
    listed and loaded."""
    import ptolemy_rt.models as M

    pkg, xdg = tmp_path / "pkg", tmp_path / "xdg"
    user = xdg / "ptolemy-rt" / "models"
    shutil.copytree(root / "ptolemy-2022", pkg / "ptolemy-2022")
    shutil.copytree(root / "ptolemy-2022", user / "user-set")
    monkeypatch.setattr(M, "package_models_dir", lambda: pkg)
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    monkeypatch.delenv("LOCALAPPDATA", raising=False)
    shutil.copytree(root / "ptolemy-2022", user / "ptolemy-2022")
    assert M.models_roots() == [root.resolve()]
    assert available_sets() == ["ptolemy-2022"]
    monkeypatch.delenv("PTOLEMY_MODELS_DIR")
    assert M.models_roots() == [pkg.resolve(), user]
    assert load_model_set("ptolemy-2022").root == pkg / "ptolemy-2022"
    assert load_model_set("user-set").root == user / "user-set"
    assert available_sets() == ["ptolemy-2022", "user-set"]
    with pytest.raises(M.ModelSetError, match="unknown model set 'nope'.*ptolemy models list"):
        load_model_set("nope")
