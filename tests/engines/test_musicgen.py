"""MusicGen engine with a tiny random-weight MusicGen (real transformers classes, nothing downloaded)."""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

import torch

from engines.base import EngineUnavailable, MoodControl, MusicStreamOptions
from engines.musicgen import (
    MODEL_ID,
    WEIGHTS_ENV,
    MusicGenEngine,
    MusicGenOptions,
    describe,
)
from engines.musicgen.debug_models import build_model

K = 4  # codebooks
def build_tiny(directory: Path) -> None:
    """Save a tiny random MusicGen (T5 text encoder, 32 kHz EnCodec, 4 codebooks) and its processor."""
    model, processor = build_model("tiny")
    assert model.config.audio_encoder.num_quantizers == model.config.decoder.num_codebooks == K
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


from tests.neural_tiny import isolated_onnx_cache  # noqa: E402, F401  (autouse fixture)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny_musicgen")
    build_tiny(d)
    return d


# decode_context_s 0.1 s < context 0.6 s: the tests exercise the partial re-decode of the prompt
GREEDY = MusicGenOptions(chunk_s=0.4, context_s=0.6, overlap_s=0.1, do_sample=False, guidance_scale=3.0,
                         decode_context_s=0.1)
SAD = MoodControl(valence=-0.7, arousal=-0.6, emotion="sad")
HAPPY = MoodControl(valence=0.7, arousal=0.6, emotion="happy")


@pytest.fixture(scope="module")
def engine(weights: Path) -> MusicGenEngine:
    return MusicGenEngine.from_pretrained(str(weights), options=GREEDY)


def test_describe_follows_mood() -> None:
    sad = describe(SAD, None)
    happy = describe(HAPPY, None)
    assert sad != happy
    assert "sad" in sad and "slow" in sad and "bpm" in sad
    assert "happy" in happy and "upbeat pop" in happy
    assert describe(SAD, "lofi").startswith("lofi hip hop, sad")
    with pytest.raises(ValueError):
        describe(MoodControl(0, 0, "bored"), None)


def test_chunks_shapes_rates_and_bars(engine: MusicGenEngine) -> None:
    stream = engine.open_stream(MusicStreamOptions(sample_rate=48_000, seed=1))
    c1 = stream.generate(SAD, 0.0)
    c2 = stream.generate(SAD, 0.0)
    c3 = stream.generate(HAPPY, 0.5)
    for c in (c1, c2, c3):
        assert c.sample_rate == 48_000 and c.audio.dtype == np.float32 and c.audio.shape[1] == 2
        assert np.array_equal(c.audio[:, 0], c.audio[:, 1]) and np.isfinite(c.audio).all()
    assert c1.audio.shape[0] == c2.audio.shape[0] == round(0.4 * 48_000)
    assert c3.duration_s == pytest.approx(0.5)
    assert c1.start_s == 0.0 and c2.start_s == pytest.approx(c1.end_s) and c3.start_s == pytest.approx(c2.end_s)
    b1, b2, b3 = (c.bars[0] for c in (c1, c2, c3))
    assert (b1.section, b2.section, b3.section) == (0, 0, 1)
    assert not (b1.transition or b2.transition or b3.transition)  # no transition bars: crossfade inside
    assert b1.emotion == "sad" and b3.emotion == "happy" and b3.style == "cheerful"
    assert b1.tempo_bpm < b3.tempo_bpm and b1.key == "?" and b1.mode == "unknown"
    assert b3.duration_s == pytest.approx(c3.duration_s)


def test_crossfade_is_equal_power_blend_and_joins_are_smooth(engine: MusicGenEngine) -> None:
    stream = engine.open_stream(MusicStreamOptions(sample_rate=32_000, seed=2))  # model rate: no resampling
    hop = engine.hop
    n_emit, n_ov = engine._frames(0.4) * hop, engine._frames(0.1) * hop
    c1 = stream.generate(SAD)
    raw1 = stream.last_generated
    c2 = stream.generate(SAD)
    raw2 = stream.last_generated
    assert len(raw1) == len(raw2) == n_emit + n_ov
    np.testing.assert_allclose(c1.audio[:, 0], raw1[:n_emit], atol=1e-6)
    theta = (np.arange(n_ov) + 0.5) / n_ov * np.pi / 2
    blend = raw1[n_emit:] * np.cos(theta) + raw2[:n_ov] * np.sin(theta)
    np.testing.assert_allclose(c2.audio[:n_ov, 0], blend, atol=1e-6)
    np.testing.assert_allclose(c2.audio[n_ov:, 0], raw2[n_ov:n_emit], atol=1e-6)
    # the step across the join is no bigger than the signal's own steps
    audio = np.concatenate([c1.audio[:, 0], c2.audio[:, 0]])
    steps = np.abs(np.diff(audio))
    join = steps[len(c1.audio) - 3 : len(c1.audio) + 2].max()
    assert join <= np.percentile(steps, 99.9) + 1e-6


def test_resampled_joins_are_smooth(engine: MusicGenEngine) -> None:
    stream = engine.open_stream(MusicStreamOptions(sample_rate=44_100, seed=3))
    chunks = [stream.generate(SAD) for _ in range(3)]
    audio = np.concatenate([c.audio[:, 0] for c in chunks])
    steps = np.abs(np.diff(audio))
    scale = np.percentile(steps, 99.9) + 1e-6
    pos = 0
    for c in chunks[:-1]:
        pos += len(c.audio)
        assert steps[pos - 3 : pos + 2].max() <= scale


def test_prompt_conditions_the_continuation(engine: MusicGenEngine) -> None:
    texts = [describe(SAD, None)]
    rng = np.random.default_rng(0)
    a = (0.3 * rng.standard_normal(engine.hop * 10)).astype(np.float32)
    b = (0.3 * np.sin(np.arange(engine.hop * 10) * 0.05)).astype(np.float32)
    gen = [torch.Generator().manual_seed(0)]
    with torch.inference_mode():
        out_a = engine._decode_batch(texts, [a], 8, gen)[0]
        out_a2 = engine._decode_batch(texts, [a], 8, gen)[0]
        out_b = engine._decode_batch(texts, [b], 8, gen)[0]
    np.testing.assert_array_equal(out_a, out_a2)
    assert not np.allclose(out_a, out_b)


def test_matches_transformers_generate(engine: MusicGenEngine) -> None:
    """The own decoding loop computes what ``generate(..., input_values=...)`` computes (greedy, CFG)."""
    full_decode = dataclasses.replace(GREEDY, decode_context_s=1.0)  # decode the whole prompt, as generate does
    engine = MusicGenEngine(engine.model, engine.processor, full_decode)
    text = describe(HAPPY, None)
    prompt = (0.2 * np.sin(np.arange(engine.hop * 6) * 0.03)).astype(np.float32)
    n_new = 6
    with torch.inference_mode():
        ours = engine._decode_batch([text], [prompt], n_new, [torch.Generator()])[0]
        inputs = engine.processor(text=[text], audio=prompt, sampling_rate=32000, return_tensors="pt")
        ref = engine.model.generate(**inputs, do_sample=False, guidance_scale=GREEDY.guidance_scale,
                                    max_new_tokens=n_new + K - 1)
    ref_new = ref[0, 0].numpy()[6 * engine.hop :]
    assert ref_new.shape == ours.shape
    np.testing.assert_allclose(ours, ref_new, atol=1e-5)


HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


@pytest.mark.skipif(not HAS_ORT, reason="onnx/onnxruntime not installed")
def test_backends_give_the_same_audio(weights: Path) -> None:
    """Text encoder + EnCodec decoder on ONNX Runtime CPU vs torch: same codes, audio within 1e-4."""
    def run(backend: str) -> tuple[MusicGenEngine, list[np.ndarray], list[np.ndarray]]:
        eng = MusicGenEngine.from_pretrained(str(weights), options=GREEDY, backend=backend)
        s = [eng.open_stream(MusicStreamOptions(sample_rate=48_000, seed=i)) for i in range(2)]
        audio, raw = [], []
        for control in (SAD, HAPPY):  # the second chunk continues from an audio prompt
            for c in eng.generate_batch([(s[0], control), (s[1], HAPPY)]):
                audio.append(c.audio)
            raw.extend(st.last_generated for st in s)
        s[0].generate(SAD)  # a lone stream after a batch: prompts of another length
        audio.append(s[0].last_generated)
        return eng, audio, raw

    ref_eng, ref, ref_raw = run("torch-cpu")
    eng, out, raw = run("ort-cpu")
    assert ref_eng.parts == dict.fromkeys(("text_encoder", "audio_decoder", "decoder", "audio_encoder"), "torch-cpu")
    assert eng.parts == {"text_encoder": "ort-cpu", "audio_decoder": "ort-cpu", "decoder": "torch-cpu",
                         "audio_encoder": "torch-cpu"} and eng.backend == "ort-cpu"
    worst = scale = 0.0
    for a, b in zip([*ref, *ref_raw], [*out, *raw], strict=True):
        assert a.shape == b.shape
        worst = max(worst, float(np.abs(a - b).max()))
        scale = max(scale, float(np.abs(a).max()))
    print(f"\nmusicgen ort-cpu vs torch-cpu: max abs error {worst:.2e} (max |audio| {scale:.2e})")
    assert scale > 1e-3 and worst <= 1e-4


def test_backend_choice_and_errors(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engines.backends import choose_backend
    from engines.registry import create_music_engine

    eng = create_music_engine("musicgen-chunked", str(weights), backend="auto")
    assert isinstance(eng, MusicGenEngine) and eng.backend == choose_backend().name
    assert eng.parts["decoder"] == "torch-cpu"  # the loop stays in torch whatever the backend
    monkeypatch.setenv("BACKSCORE_BACKEND", "torch-cpu")
    assert MusicGenEngine.from_pretrained(str(weights)).backend == "torch-cpu"
    monkeypatch.delenv("BACKSCORE_BACKEND")
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(EngineUnavailable, match=r"backend tensorrt \(argument\) cannot run here"):
            create_music_engine("musicgen-chunked", str(weights), backend="tensorrt")
    with pytest.raises(ValueError, match="unknown backend"):
        MusicGenEngine.from_pretrained(str(weights), backend="cuda")


def test_batch_equals_one_by_one(weights: Path) -> None:
    def run(batched: bool) -> list[list[np.ndarray]]:
        eng = MusicGenEngine.from_pretrained(str(weights), options=GREEDY)
        s = [eng.open_stream(MusicStreamOptions(sample_rate=32_000, seed=i)) for i in range(3)]
        # give the streams different histories -> different prompt lengths in the batch
        s[1].generate(SAD)
        s[2].generate(HAPPY)
        s[2].generate(HAPPY)
        reqs = [(s[0], HAPPY), (s[1], SAD), (s[2], MoodControl(0.0, 0.0, "neutral"))]
        outs: list[list[np.ndarray]] = [[] for _ in s]
        for _ in range(2):
            chunks = eng.generate_batch(reqs) if batched else [st.generate(c) for st, c in reqs]
            for i, c in enumerate(chunks):
                outs[i].append(c.audio)
        return outs

    one, many = run(False), run(True)
    for a, b in zip(one, many, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, atol=1e-4)


def test_sampling_is_seeded_per_stream(weights: Path) -> None:
    opts = MusicGenOptions(chunk_s=0.2, context_s=0.4, overlap_s=0.06, top_k=20, seed=5)
    eng = MusicGenEngine.from_pretrained(str(weights), options=opts)
    a = eng.open_stream(MusicStreamOptions(sample_rate=32_000, seed=1)).generate(SAD).audio
    b = eng.open_stream(MusicStreamOptions(sample_rate=32_000, seed=1)).generate(SAD).audio
    c = eng.open_stream(MusicStreamOptions(sample_rate=32_000, seed=2)).generate(SAD).audio
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_missing_weights_dir(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable) as err:
        MusicGenEngine.from_pretrained(str(tmp_path / "nope"))
    msg = str(err.value)
    assert MODEL_ID in msg and "--weights DIR" in msg and WEIGHTS_ENV in msg
    assert f"huggingface-cli download {MODEL_ID} --local-dir DIR" in msg


def test_no_env_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(EngineUnavailable, match="not found"):
        MusicGenEngine.from_pretrained(None)


def test_env_var_is_used(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(weights))
    eng = MusicGenEngine.from_pretrained(None, options=GREEDY)
    assert eng.num_codebooks == K and eng.model_rate == 32_000


def test_registry_reports_and_creates(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engines.composer.engine import ProceduralMusicEngine
    from engines.registry import create_music_engine, engine_statuses

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    by_name = {s.name: s for s in engine_statuses()}
    assert by_name["procedural"].available and by_name["feature-affect"].available
    assert not by_name["musicgen"].available and "--weights DIR" in by_name["musicgen"].detail
    assert by_name["tensorrt"].kind == "backend" and by_name["torch-cpu"].available
    import importlib.util

    has_ort = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
    assert by_name["onnxruntime"].available == has_ort
    ok = {s.name: s for s in engine_statuses({"musicgen": str(weights)})}["musicgen"]
    assert ok.available and str(weights) in ok.detail
    assert isinstance(create_music_engine("procedural"), ProceduralMusicEngine)
    assert isinstance(create_music_engine("musicgen-chunked", str(weights)), MusicGenEngine)
    with pytest.raises(EngineUnavailable):
        create_music_engine("musicgen", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="procedural, musicgen"):
        create_music_engine("jukebox")


def test_registry_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, engines.registry as r; r.engine_statuses(); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_score_with_musicgen_engine_end_to_end(weights: Path, tmp_path: Path) -> None:
    """`backscore score --engine musicgen --weights DIR` on a video whose mood changes."""
    import json
    import subprocess
    import sys

    from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, write_video
    from pipelines.media.decode import probe

    src = tmp_path / "in.mp4"
    write_video(str(src), [replace(CALM_DARK, duration_s=6.0), replace(BRIGHT_FAST, duration_s=6.0)],
                width=160, height=120, fps=12)
    out, tl = tmp_path / "out.mp4", tmp_path / "t.json"
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "score", str(src), "-o", str(out), "--engine",
                          "musicgen", "--weights", str(weights), "--timeline", str(tl), "--quiet", "--no-faces"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert probe(str(out)).duration_s == pytest.approx(12.0, abs=0.1)
    music = json.loads(tl.read_text())["music"]
    assert [m["emotion"] for m in music] == ["sad", "exciting"]
    assert abs(music[1]["start_s"] - 6.0) <= 1.0


def test_cli_engines_and_missing_weights(tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "engines", "--weights", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    lines = {ln.split()[0]: ln for ln in res.stdout.splitlines()}
    assert "yes" in lines["procedural"] and "no" in lines["musicgen"] and "facebook/musicgen-small" in res.stdout
    src = tmp_path / "v.mp4"
    from pipelines.devtools.synth_video import CALM_DARK, write_video

    write_video(str(src), [replace(CALM_DARK, duration_s=2.0)], width=160, height=120, fps=12)
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "score", str(src), "-o", str(tmp_path / "o.mp4"),
                          "--engine", "musicgen", "--weights", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "backscore: error:" in res.stderr and "musicgen" in res.stderr.lower()
    assert not (tmp_path / "o.mp4").exists()
