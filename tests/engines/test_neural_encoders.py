"""CLIP frame encoder and wav2vec2 audio encoder with tiny random-weight models of the real
transformers classes, saved with ``save_pretrained`` and loaded through ``from_pretrained``
(nothing is downloaded)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

import torch

from engines.base import EMOTIONS, EngineUnavailable
from engines.clip_encoder import FEATURE_NAMES, TEMPLATES, ClipFrameEncoder
from engines.clip_encoder import MODEL_ID as CLIP_ID
from engines.clip_encoder import WEIGHTS_ENV as CLIP_ENV
from engines.wav2vec2_encoder import MODEL_ID as W2V_ID
from engines.wav2vec2_encoder import WEIGHTS_ENV as W2V_ENV
from engines.wav2vec2_encoder import Wav2Vec2AudioEncoder, feature_label

W2V_LABELS = {0: "neu", 1: "hap", 2: "ang", 3: "sad"}
HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
#: The CPU backends every test machine has (ONNX Runtime when installed).
CPU_BACKENDS = ["torch-cpu", *(["ort-cpu"] if HAS_ORT else [])]
#: Max abs difference between backends' rows (as tests/engines/test_onnx_export.py, whose TOL is 1e-4).
BACKEND_TOL = 1e-4


from tests.neural_tiny import (  # noqa: E402
    clip_tokenizer,
    isolated_onnx_cache,  # noqa: F401  (autouse fixture)
)


@pytest.fixture(scope="module")
def clip_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    d = tmp_path_factory.mktemp("clip")
    tok = clip_tokenizer()
    torch.manual_seed(0)
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                num_attention_heads=4, max_position_embeddings=16, projection_dim=16,
                pad_token_id=0, bos_token_id=2, eos_token_id=2)  # 2: the released config's legacy value
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                  image_size=32, patch_size=8, projection_dim=16)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    with torch.no_grad():
        model.logit_scale.fill_(np.log(20.0))  # sharper than the init (log 1/0.07) so classes differ
    model.save_pretrained(d)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def clip(clip_weights: Path) -> ClipFrameEncoder:
    return ClipFrameEncoder.from_pretrained(str(clip_weights), batch_size=3)


@pytest.fixture(scope="module")
def w2v_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.neural_tiny import save_tiny_wav2vec2

    return save_tiny_wav2vec2(tmp_path_factory.mktemp("w2v"))


@pytest.fixture(scope="module")
def w2v(w2v_weights: Path) -> Wav2Vec2AudioEncoder:
    return Wav2Vec2AudioEncoder.from_pretrained(str(w2v_weights), batch_size=2)


def _frames(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 40, 48, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- CLIP


def test_clip_probabilities(clip: ClipFrameEncoder) -> None:
    assert clip.feature_names == FEATURE_NAMES == tuple(f"clip_{e}" for e in EMOTIONS)
    out = clip.encode(_frames(5))
    assert out.shape == (5, len(EMOTIONS)) and out.dtype == np.float32
    assert np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(out[0], out[1])  # different frames, different probabilities
    assert clip.encode(np.zeros((0, 40, 48, 3), np.uint8)).shape == (0, len(EMOTIONS))


def test_clip_embed_and_batching(clip: ClipFrameEncoder) -> None:
    frames = _frames(5, seed=1)
    emb = clip.embed(frames)
    assert emb.shape == (5, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    one = np.concatenate([clip.encode(f[None]) for f in frames])
    np.testing.assert_allclose(clip.encode(frames, previous=frames[0]), one, atol=1e-5)
    np.testing.assert_allclose(clip.probabilities(emb), one, atol=1e-5)


def test_clip_text_embeddings_are_template_means(clip: ClipFrameEncoder) -> None:
    te = clip.text_embeddings
    assert tuple(te.shape) == (len(EMOTIONS), 16)
    sims = (te @ te.T).numpy()
    assert np.all(sims[~np.eye(len(EMOTIONS), dtype=bool)] < 0.999)  # the emotions' prompts differ
    ids = clip.processor.tokenizer("a sad scene")["input_ids"]
    assert ids[-1] == len(clip.processor.tokenizer) - 1  # ends with <|endoftext|>
    tok = clip.processor.tokenizer([t.format("sad") for t in TEMPLATES], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = clip.model.get_text_features(**tok)
    feats = out if isinstance(out, torch.Tensor) else out.pooler_output
    mean = torch.nn.functional.normalize(torch.nn.functional.normalize(feats, dim=-1).mean(0), dim=0)
    np.testing.assert_allclose(te[EMOTIONS.index("sad")].numpy(), mean.numpy(), atol=1e-5)


def test_clip_rejects_bad_frames(clip: ClipFrameEncoder) -> None:
    with pytest.raises(ValueError, match="uint8"):
        clip.encode(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        clip.encode(np.zeros((8, 8, 3), np.uint8))


# --------------------------------------------------------------------------- wav2vec2


def test_w2v_row(w2v: Wav2Vec2AudioEncoder) -> None:
    assert w2v.sample_rate == 16000
    assert w2v.feature_names == ("w2v_neu", "w2v_hap", "w2v_ang", "w2v_sad", "w2v_valence", "w2v_arousal")
    rng = np.random.default_rng(0)
    row = w2v.encode((0.1 * rng.standard_normal(16000)).astype(np.float32))
    assert row.shape == (6,) and row.dtype == np.float32
    np.testing.assert_allclose(row[:4].sum(), 1.0, atol=1e-5)
    p = row[:4]
    np.testing.assert_allclose(row[4], 0.8 * p[1] - 0.6 * p[2] - 0.7 * p[3], atol=1e-5)
    np.testing.assert_allclose(row[5], 0.5 * p[1] + 0.8 * p[2] - 0.5 * p[3], atol=1e-5)
    assert -1 <= row[4] <= 1 and -1 <= row[5] <= 1
    with pytest.raises(ValueError, match="mono"):
        w2v.encode(np.zeros((2, 16000), np.float32))


def test_w2v_windows_batch_equals_one_by_one(w2v: Wav2Vec2AudioEncoder) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(16000 * 4) / 16000
    audio = (0.2 * np.sin(2 * np.pi * 220 * t * (1 + t)) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    bounds = [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (2.0, 3.5), (3.9, 4.0)]  # last one too short -> zeros
    rows, (times, prob) = w2v.encode_windows(audio, bounds)
    assert rows.shape == (5, 6) and rows.dtype == np.float32
    for i, (s, e) in enumerate(bounds[:4]):
        np.testing.assert_allclose(rows[i], w2v.encode(audio[int(s * 16000) : int(e * 16000)]), atol=1e-5)
    assert not rows[4].any()
    assert times.shape == prob.shape and len(times) > 100


def test_feature_label() -> None:
    assert feature_label("Happy!") == "happy" and feature_label("neu") == "neu"
    assert feature_label("very sad / low") == "very_sad_low"


# --------------------------------------------------------------------------- weights & registry


def test_missing_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineUnavailable) as err:
        ClipFrameEncoder.from_pretrained(str(tmp_path / "nope"))
    msg = str(err.value)
    assert CLIP_ID in msg and CLIP_ENV in msg and f"huggingface-cli download {CLIP_ID}" in msg
    with pytest.raises(EngineUnavailable) as err:
        Wav2Vec2AudioEncoder.from_pretrained(str(tmp_path / "nope"))
    msg = str(err.value)
    assert W2V_ID in msg and W2V_ENV in msg and f"huggingface-cli download {W2V_ID}" in msg
    # no dir, no env var, empty HF cache
    monkeypatch.delenv(CLIP_ENV, raising=False)
    monkeypatch.delenv(W2V_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(EngineUnavailable, match="not in the Hugging Face cache"):
        ClipFrameEncoder.from_pretrained()
    with pytest.raises(EngineUnavailable, match="not in the Hugging Face cache"):
        Wav2Vec2AudioEncoder.from_pretrained()
    # a directory with a config.json but no usable weights
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(EngineUnavailable, match="not found"):
        Wav2Vec2AudioEncoder.from_pretrained(str(tmp_path / "broken"))


def test_env_vars_and_registry(clip_weights: Path, w2v_weights: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from engines.registry import engine_statuses

    monkeypatch.delenv(CLIP_ENV, raising=False)
    monkeypatch.delenv(W2V_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    by_name = {s.name: s for s in engine_statuses()}
    assert not by_name["clip"].available and CLIP_ENV in by_name["clip"].detail
    assert not by_name["wav2vec2"].available and W2V_ENV in by_name["wav2vec2"].detail
    assert by_name["clip"].kind == "frames" and by_name["wav2vec2"].kind == "audio"
    by_name = {s.name: s for s in engine_statuses({"clip": str(clip_weights), "wav2vec2": str(w2v_weights)})}
    assert by_name["clip"].available and str(clip_weights) in by_name["clip"].detail
    assert by_name["wav2vec2"].available and str(w2v_weights) in by_name["wav2vec2"].detail
    monkeypatch.setenv(CLIP_ENV, str(clip_weights))
    monkeypatch.setenv(W2V_ENV, str(w2v_weights))
    by_name = {s.name: s for s in engine_statuses()}
    assert by_name["clip"].available and by_name["wav2vec2"].available
    assert ClipFrameEncoder.from_pretrained().feature_names == FEATURE_NAMES
    assert Wav2Vec2AudioEncoder.from_pretrained().labels == tuple(W2V_LABELS.values())


def test_without_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import engines.registry as registry

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    for cls in (ClipFrameEncoder, Wav2Vec2AudioEncoder):
        with pytest.raises(EngineUnavailable, match=r"pip install 'backscore\[neural\]'"):
            cls.from_pretrained()
    monkeypatch.setattr(registry, "_has", lambda package: package not in ("transformers", "torch"))
    by_name = {s.name: s for s in registry.engine_statuses()}
    for name in ("clip", "wav2vec2"):
        assert not by_name[name].available and "backscore[neural]" in by_name[name].detail


def test_hf_cache_snapshot_is_found(clip_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CLIP_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snap = tmp_path / "hub" / ("models--" + CLIP_ID.replace("/", "--")) / "snapshots" / "0123abc"
    snap.parent.mkdir(parents=True)
    snap.symlink_to(clip_weights, target_is_directory=True)
    enc = ClipFrameEncoder.from_pretrained()
    assert enc.encode(_frames(1)).shape == (1, len(EMOTIONS))


# --------------------------------------------------------------------------- backends


def test_auto_backend_here(clip: ClipFrameEncoder, w2v: Wav2Vec2AudioEncoder) -> None:
    from engines.backends import choose_backend

    assert clip.backend == w2v.backend == choose_backend().name  # the encoders run where auto points
    if HAS_ORT and not torch.cuda.is_available():
        assert clip.backend == "ort-cpu"


def test_clip_backends_give_the_same_rows(clip_weights: Path) -> None:
    frames = _frames(7, seed=3)  # batches of 3: 3 + 3 + 1
    rows, embs = {}, {}
    for b in CPU_BACKENDS:
        enc = ClipFrameEncoder.from_pretrained(str(clip_weights), batch_size=3, backend=b)
        assert enc.backend == b and enc.image_runner.backend == b
        embs[b], rows[b] = enc.embed(frames), enc.encode(frames)
        assert rows[b].shape == (7, len(EMOTIONS)) and rows[b].dtype == np.float32
    for b in CPU_BACKENDS[1:]:
        err_e = float(np.abs(embs[b] - embs["torch-cpu"]).max())
        err_p = float(np.abs(rows[b] - rows["torch-cpu"]).max())
        print(f"\nclip {b} vs torch-cpu: max abs error embeddings {err_e:.2e}, probabilities {err_p:.2e}")
        assert err_e <= BACKEND_TOL and err_p <= BACKEND_TOL
    # torch-cpu is the model itself: get_image_features + normalise, as before backends existed
    enc = ClipFrameEncoder.from_pretrained(str(clip_weights), backend="torch-cpu")
    pix = enc.processor.image_processor(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        out = enc.model.get_image_features(pixel_values=pix)
        ref = torch.nn.functional.normalize(out if isinstance(out, torch.Tensor) else out.pooler_output, dim=-1)
    np.testing.assert_allclose(embs["torch-cpu"], ref.numpy(), atol=1e-6)


def test_w2v_backends_give_the_same_rows(w2v_weights: Path) -> None:
    rng = np.random.default_rng(2)
    audio = (0.2 * rng.standard_normal(16000 * 4)).astype(np.float32)
    bounds = [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5), (2.0, 3.5), (3.9, 4.0)]  # 3 x 1 s -> batches of 2
    rows, logits = {}, {}
    x = np.stack([audio[:16000], audio[16000:32000]])
    for b in CPU_BACKENDS:
        enc = Wav2Vec2AudioEncoder.from_pretrained(str(w2v_weights), batch_size=2, backend=b)
        assert enc.backend == b
        rows[b] = np.vstack([enc.window_rows(audio, bounds), enc.encode(audio[:8000])[None]])
        logits[b] = enc.runner(x)  # the random head's logits are small (~1e-3): compare them too
    for b in CPU_BACKENDS[1:]:
        err = float(np.abs(rows[b] - rows["torch-cpu"]).max())
        err_l = float(np.abs(logits[b] - logits["torch-cpu"]).max())
        scale = float(np.abs(logits["torch-cpu"]).max())
        print(f"\nwav2vec2 {b} vs torch-cpu: max abs error rows {err:.2e}, logits {err_l:.2e} "
              f"(max |logit| {scale:.1e})")
        assert err <= BACKEND_TOL and err_l <= BACKEND_TOL * max(scale, 1e-3)
    assert not rows["torch-cpu"][5].any()  # too short a window: zeros on every backend


def test_backend_env_var_and_bad_choices(clip_weights: Path, w2v_weights: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSCORE_BACKEND", "torch-cpu")
    assert ClipFrameEncoder.from_pretrained(str(clip_weights)).backend == "torch-cpu"
    assert Wav2Vec2AudioEncoder.from_pretrained(str(w2v_weights), backend="auto").backend == "torch-cpu"
    if HAS_ORT:  # an argument beats the variable; the onnxruntime-* spellings are aliases
        assert Wav2Vec2AudioEncoder.from_pretrained(str(w2v_weights), backend="onnxruntime-cpu").backend == "ort-cpu"
    monkeypatch.delenv("BACKSCORE_BACKEND")
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        ClipFrameEncoder.from_pretrained(str(clip_weights), backend="gpu")
    if importlib.util.find_spec("tensorrt") is None:
        for cls, w in ((ClipFrameEncoder, clip_weights), (Wav2Vec2AudioEncoder, w2v_weights)):
            with pytest.raises(EngineUnavailable, match=r"backend tensorrt \(argument\) cannot run here"):
                cls.from_pretrained(str(w), backend="tensorrt")
    with pytest.raises(ValueError, match="contradicts backend torch-cpu"):
        Wav2Vec2AudioEncoder.from_pretrained(str(w2v_weights), device="cuda", backend="torch-cpu")
