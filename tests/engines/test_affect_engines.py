"""``--affect-engine clip+wav2vec2`` (and clip / wav2vec2 alone) end to end: tiny random-weight CLIP and
Wav2Vec2 models of the real transformers classes saved with ``save_pretrained``, loaded through the
real CLI path, run on a synthesized video; the fusion rules; the decoder's 224 px pictures."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

import torch

from engines.affect import PROTOTYPES, FeatureAffectModel
from engines.affect_engines import CombinedAudioEncoder, create_affect_engines, parse_weights
from engines.base import EMOTIONS, EngineUnavailable
from engines.fused_affect import FusedAffectModel, clip_affect
from pipelines.cli import main
from pipelines.media.decode import DecodeOptions, decode_video
from tests.neural_tiny import clip_tokenizer, save_tiny_wav2vec2

CLIP_ENV, W2V_ENV = "BACKSCORE_CLIP_WEIGHTS", "BACKSCORE_WAV2VEC2_WEIGHTS"
HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


from tests.neural_tiny import isolated_onnx_cache  # noqa: E402, F401  (autouse fixture)


def _save_clip(d: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = clip_tokenizer()
    torch.manual_seed(0)
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                num_attention_heads=4, max_position_embeddings=16, projection_dim=16,
                pad_token_id=0, bos_token_id=2, eos_token_id=2)
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                  image_size=32, patch_size=8, projection_dim=16)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    with torch.no_grad():
        model.logit_scale.fill_(np.log(20.0))
    model.save_pretrained(d)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(d)
    return d


def _save_w2v(d: Path) -> Path:
    return save_tiny_wav2vec2(d)


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with clip/ and wav2vec2/ (the plain --weights DIR layout for clip+wav2vec2)."""
    root = tmp_path_factory.mktemp("affect-weights")
    _save_clip(root / "clip")
    _save_w2v(root / "wav2vec2")
    return root


@pytest.fixture
def no_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No weights from the environment or the Hugging Face cache."""
    for var in (CLIP_ENV, W2V_ENV, "BACKSCORE_AMT_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))


W2V_COLUMNS = ("w2v_neu", "w2v_hap", "w2v_ang", "w2v_sad", "w2v_valence", "w2v_arousal")
CLIP_COLUMNS = tuple(f"clip_{e}" for e in EMOTIONS)


# --------------------------------------------------------------------------- CLI end to end


def test_analyze_clip_wav2vec2_cli(calm_to_exciting: Path, weights_root: Path, tmp_path: Path, no_env: None) -> None:
    out = tmp_path / "t.json"
    rc = main(["analyze", str(calm_to_exciting), "--no-faces", "--affect-engine", "clip+wav2vec2",
               "--weights", f"clip={weights_root / 'clip'}", "--weights", f"wav2vec2={weights_root / 'wav2vec2'}",
               "--timeline", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    windows = data["windows"]
    assert len(windows) > 20
    for w in windows:
        f = w["features"]
        for name in (*CLIP_COLUMNS, *W2V_COLUMNS, "motion", "brightness", "loudness_db", "cut_rate"):
            assert name in f and f[name] is not None and math.isfinite(f[name]), name
        assert sum(f[c] for c in CLIP_COLUMNS) == pytest.approx(1.0, abs=2e-3)
        assert sum(f[c] for c in W2V_COLUMNS[:4]) == pytest.approx(1.0, abs=2e-3)
        assert -1 <= w["valence"] <= 1 and -1 <= w["arousal"] <= 1 and w["emotion"] in EMOTIONS
    # the pictures differ over time (dark/still, then bright/cut), so CLIP's scores change with them
    first, last = windows[0]["features"], windows[-1]["features"]
    assert max(abs(first[c] - last[c]) for c in CLIP_COLUMNS) > 1e-3
    # the feature terms still count: the exciting half is more aroused than the calm half
    half = data["duration_s"] / 2
    a_calm = np.mean([w["arousal"] for w in windows if w["end_s"] <= half])
    a_exc = np.mean([w["arousal"] for w in windows if w["start_s"] >= half])
    assert a_exc > a_calm + 0.3


def test_plain_weights_dir_and_env_vars(calm_to_exciting: Path, weights_root: Path, tmp_path: Path, no_env: None,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # one folder holding clip/ and wav2vec2/
    parts = create_affect_engines("clip+wav2vec2", [str(weights_root)])
    assert parts.picture is not None and parts.picture.feature_names == CLIP_COLUMNS
    assert isinstance(parts.audio, CombinedAudioEncoder) and parts.audio.feature_names[-6:] == W2V_COLUMNS
    assert isinstance(parts.affect, FusedAffectModel) and parts.affect.sources == ("clip", "w2v")
    # single engines: a plain DIR is that model; the environment variable works as well
    assert create_affect_engines("clip", str(weights_root / "clip")).audio.feature_names[-1] == "silence"
    monkeypatch.setenv(W2V_ENV, str(weights_root / "wav2vec2"))
    w2v = create_affect_engines("wav2vec2")
    assert w2v.picture is None and w2v.audio.feature_names[-6:] == W2V_COLUMNS
    assert main(["analyze", str(calm_to_exciting), "--no-faces", "--affect-engine", "wav2vec2"]) == 0
    windows = json.loads(capsys.readouterr().out)["windows"]
    assert all("w2v_hap" in w["features"] and "clip_sad" not in w["features"] for w in windows)


def test_default_engine_unchanged(calm_to_exciting: Path) -> None:
    from pipelines.analysis.analyze import analyze
    from pipelines.analysis.engines import create_engines, default_engines

    a = analyze(str(calm_to_exciting), default_engines(faces=False))
    b = analyze(str(calm_to_exciting), create_engines("default", None, faces=False))
    assert [w.affect for w in a.windows] == [w.affect for w in b.windows]
    assert not any(k.startswith(("clip_", "w2v_")) for w in a.windows for k in w.features)


def test_missing_weights_is_one_clear_error(calm_to_exciting: Path, tmp_path: Path, no_env: None) -> None:
    env_cmd = [sys.executable, "-m", "pipelines.cli", "analyze", str(calm_to_exciting), "--affect-engine",
               "clip+wav2vec2"]
    import os

    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "empty-hub")}
    res = subprocess.run(env_cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 4
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("backscore: error: --affect-engine clip+wav2vec2:"), res.stderr
    for part in ("openai/clip-vit-base-patch32", "--weights clip=DIR", CLIP_ENV, "huggingface-cli download"):
        assert part in lines[0]
    assert res.stdout == ""


@pytest.mark.parametrize(("argv", "names"), [
    (["--affect-engine", "wav2vec2", "--weights", "/nonexistent/w2v"],
     ("superb/wav2vec2-base-superb-er", "/nonexistent/w2v", "--weights wav2vec2=DIR")),
    (["--affect-engine", "clip+wav2vec2", "--weights", "/nonexistent/both"],
     ("openai/clip-vit-base-patch32", "/nonexistent/both/clip")),
    (["--affect-engine", "amt", "--weights", "amt=/nonexistent/amt"], ("AMT weights", "/nonexistent/amt")),
])
def test_missing_weights_messages(calm_to_exciting: Path, no_env: None, capsys: pytest.CaptureFixture[str],
                                  argv: list[str], names: tuple[str, ...]) -> None:
    assert main(["analyze", str(calm_to_exciting), *argv]) == 4
    err = capsys.readouterr().err.strip()
    assert err.startswith("backscore: error:") and "\n" not in err
    for n in names:
        assert n in err


def test_score_and_recommend_take_affect_engine(calm_to_exciting: Path, no_env: None,
                                                capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # the weights are resolved before any long work (the catalog build, decoding, composing)
    assert main(["recommend", str(calm_to_exciting), "--affect-engine", "clip", "--weights", "/nope"]) == 4
    assert "openai/clip-vit-base-patch32" in capsys.readouterr().err
    out = tmp_path / "o.mp4"
    assert main(["score", str(calm_to_exciting), "-o", str(out), "--quiet", "--affect-engine", "clip",
                 "--weights", "clip=/nope"]) == 4
    assert "--weights clip=DIR" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        main(["analyze", str(calm_to_exciting), "--affect-engine", "bogus"])


def test_score_with_clip(calm_to_exciting: Path, weights_root: Path, tmp_path: Path, no_env: None) -> None:
    out, tl = tmp_path / "o.mp4", tmp_path / "t.json"
    assert main(["score", str(calm_to_exciting), "-o", str(out), "--timeline", str(tl), "--quiet", "--no-faces",
                 "--affect-engine", "clip", "--weights", str(weights_root / "clip")]) == 0
    data = json.loads(tl.read_text())
    assert out.stat().st_size > 0 and all("clip_tense" in w["features"] for w in data["windows"])


def test_parse_weights() -> None:
    assert parse_weights(["clip=/a", "/b", "wav2vec2=/c=d"]) == {"clip": "/a", "": "/b", "wav2vec2": "/c=d"}
    assert parse_weights(["/x=y"]) == {"": "/x=y"}  # not a model name: a path with '='
    with pytest.raises(ValueError, match="twice"):
        parse_weights(["/a", "/b"])
    with pytest.raises(ValueError, match="unknown affect engine"):
        create_affect_engines("bogus")


def test_registry_lists_affect_engines(weights_root: Path, no_env: None) -> None:
    from engines.registry import engine_statuses

    by_name = {s.name: s for s in engine_statuses()}
    assert by_name["clip+wav2vec2"].kind == "affect" and not by_name["clip+wav2vec2"].available
    assert by_name["amt"].kind == "affect" and not by_name["amt"].available
    by_name = {s.name: s for s in engine_statuses({"clip": str(weights_root / "clip"),
                                                   "wav2vec2": str(weights_root / "wav2vec2")})}
    assert by_name["clip+wav2vec2"].available


def test_engines_command_shows_them(capsys: pytest.CaptureFixture[str], weights_root: Path, no_env: None) -> None:
    assert main(["engines", "--weights", f"clip={weights_root / 'clip'}",
                 "--weights", f"wav2vec2={weights_root / 'wav2vec2'}"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert " yes " in lines["clip+wav2vec2"] and " no " in lines["amt"]


# --------------------------------------------------------------------------- fusion rules


BASE = {"brightness": 0.45, "saturation": 0.35, "motion": 0.05, "cut_rate": 0.3, "loudness_db": -30.0,
        "speech": 1.0, "silence": 0.0}


def _clip(emotion: str, p: float = 0.9) -> dict[str, float]:
    rest = (1 - p) / (len(EMOTIONS) - 1)
    return {f"clip_{e}": (p if e == emotion else rest) for e in EMOTIONS}


def test_fusion_without_neural_columns_is_the_default() -> None:
    fused, default = FusedAffectModel().predict_one(BASE), FeatureAffectModel().predict_one(BASE)
    assert fused.valence == pytest.approx(default.valence) and fused.arousal == pytest.approx(default.arousal)
    assert fused.confidence < default.confidence  # the neural sources it expected are missing


def test_fusion_moves_towards_clip_and_w2v() -> None:
    m = FusedAffectModel()
    sad = m.predict_one({**BASE, **_clip("sad")})
    happy = m.predict_one({**BASE, **_clip("happy")})
    assert sad.valence < -0.1 < 0.1 < happy.valence
    assert sad.prob("sad") > happy.prob("sad")
    v, a = clip_affect(_clip("sad", 1.0)) or (0.0, 0.0)
    assert (v, a) == pytest.approx(PROTOTYPES["sad"])
    # wav2vec2: weighted by speech; all-zero probabilities (a window too short) count as absent
    angry = {"w2v_neu": 0.0, "w2v_hap": 0.0, "w2v_ang": 1.0, "w2v_sad": 0.0, "w2v_valence": -0.6, "w2v_arousal": 0.8}
    speech = m.predict_one({**BASE, **angry})
    music = m.predict_one({**BASE, **angry, "speech": 0.0})
    assert speech.arousal > music.arousal > FeatureAffectModel().predict_one(BASE).arousal
    zeros = dict.fromkeys(angry, 0.0)
    assert m.predict_one({**BASE, **zeros}).arousal == pytest.approx(FeatureAffectModel().predict_one(BASE).arousal)
    # a model fusing only CLIP ignores the wav2vec2 columns
    only_clip = FusedAffectModel(("clip",))
    assert only_clip.predict_one({**BASE, **angry}).arousal == pytest.approx(
        FeatureAffectModel().predict_one(BASE).arousal)


# --------------------------------------------------------------------------- decoder pictures


def test_decoder_pictures_only_when_asked(calm_to_exciting: Path) -> None:
    _, frames, _ = decode_video(str(calm_to_exciting))
    assert all(f.picture is None for f in frames)
    _, frames, _ = decode_video(str(calm_to_exciting), DecodeOptions(picture_fps=2.0))
    pics = [f for f in frames if f.picture is not None]
    assert pics and all(f.picture is not None and f.picture.shape == (224, 298, 3) for f in pics)  # 320x240 source
    times = np.array([f.pts_s for f in pics])
    assert 28 <= len(pics) <= 34 and np.all(np.diff(times) > 0.4)
    assert pics[0].picture is not None and pics[0].picture.dtype == np.uint8
    # the thumbnails are unchanged by the option
    _, plain, _ = decode_video(str(calm_to_exciting))
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(plain, frames, strict=True))


def test_clip_sees_pictures_not_thumbnails(calm_to_exciting: Path, weights_root: Path) -> None:
    """The CLIP rows of a window are the mean over the window's 224 px pictures."""
    from engines.clip_encoder import ClipFrameEncoder
    from pipelines.analysis.analyze import analyze
    from pipelines.analysis.engines import create_engines

    eng = create_engines("clip", str(weights_root / "clip"), faces=False)
    analysis = analyze(str(calm_to_exciting), eng)
    _, frames, _ = decode_video(str(calm_to_exciting), DecodeOptions(picture_fps=2.0))
    pics = [f for f in frames if f.picture is not None]
    clip = ClipFrameEncoder.from_pretrained(str(weights_root / "clip"))
    rows = clip.encode(np.stack([f.picture for f in pics if f.picture is not None]))
    times = np.array([f.pts_s for f in pics])
    w = analysis.windows[3]
    sel = (times >= w.start_s) & (times < w.end_s)
    expect = rows[sel].mean(axis=0)
    got = np.array([w.features[c] for c in CLIP_COLUMNS])
    np.testing.assert_allclose(got, expect, atol=1e-4)


def test_unavailable_is_engine_error(no_env: None) -> None:
    with pytest.raises(EngineUnavailable, match="--affect-engine clip"):
        create_affect_engines("clip")


# --------------------------------------------------------------------------- --backend


@pytest.mark.skipif(not HAS_ORT, reason="onnx/onnxruntime not installed")
def test_analyze_on_onnxruntime_cpu_cli(calm_to_exciting: Path, weights_root: Path, tmp_path: Path, no_env: None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`analyze --affect-engine clip+wav2vec2 --backend onnxruntime-cpu` end to end: the CLIP image tower and
    wav2vec2 run as exported graphs on ONNX Runtime, and the timeline equals the torch-cpu one."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BACKSCORE_CACHE", str(cache))
    weights = ["--weights", f"clip={weights_root / 'clip'}", "--weights", f"wav2vec2={weights_root / 'wav2vec2'}"]
    data = {}
    for backend in ("onnxruntime-cpu", "torch-cpu"):
        out = tmp_path / f"{backend}.json"
        assert main(["analyze", str(calm_to_exciting), "--no-faces", "--affect-engine", "clip+wav2vec2", *weights,
                     "--backend", backend, "--timeline", str(out)]) == 0
        data[backend] = json.loads(out.read_text())["windows"]
        if backend == "onnxruntime-cpu":  # the graphs were exported for ONNX Runtime (none for torch)
            graphs = sorted(p.name.rsplit("-", 1)[0] for p in (cache / "onnx").iterdir())
            assert graphs == ["clip-image", "wav2vec2-logits"]
    ort, ref = data["onnxruntime-cpu"], data["torch-cpu"]
    assert len(ort) == len(ref) > 20
    worst = 0.0
    for a, b in zip(ort, ref, strict=True):
        for name in (*CLIP_COLUMNS, *W2V_COLUMNS):
            worst = max(worst, abs(a["features"][name] - b["features"][name]))
        assert a["valence"] == pytest.approx(b["valence"], abs=1.5e-4)
        assert a["arousal"] == pytest.approx(b["arousal"], abs=1.5e-4)
    # the timeline rounds to 4 decimals: one rounding step apart at most (unrounded rows: test_neural_encoders)
    print(f"\nanalyze clip+wav2vec2, onnxruntime-cpu vs torch-cpu: max abs difference of the neural columns "
          f"{worst:.2e} (timeline rounded to 1e-4)")
    assert worst <= 1.5e-4


def test_backend_option_reaches_the_encoders(weights_root: Path, no_env: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    parts = create_affect_engines("clip+wav2vec2", [str(weights_root)], backend="torch-cpu")
    assert parts.picture is not None and getattr(parts.picture, "backend", None) == "torch-cpu"
    assert isinstance(parts.audio, CombinedAudioEncoder) and parts.audio.encoders[1].backend == "torch-cpu"
    monkeypatch.setenv("BACKSCORE_BACKEND", "torch-cpu")  # the variable pins what auto means
    parts = create_affect_engines("clip", [str(weights_root / "clip")])
    assert getattr(parts.picture, "backend", None) == "torch-cpu"


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_unavailable_backend_is_one_clear_error(calm_to_exciting: Path, weights_root: Path, tmp_path: Path,
                                                no_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    cmd = [sys.executable, "-m", "pipelines.cli", "analyze", str(calm_to_exciting), "--affect-engine",
           "clip+wav2vec2", "--weights", str(weights_root), "--backend", "tensorrt"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 4 and res.stdout == ""
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("backscore: error: backend tensorrt (argument) cannot run here: package not installed")
    # score and recommend check it before any work, also when no neural model would run
    out = tmp_path / "o.mp4"
    assert main(["score", str(calm_to_exciting), "-o", str(out), "--quiet", "--backend", "tensorrt"]) == 4
    assert main(["recommend", str(calm_to_exciting), "--backend", "trt"]) == 4
    assert main(["analyze", str(calm_to_exciting), "--backend", "tensorrt"]) == 4
    errs = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(errs) == 3 and all(e.startswith("backscore: error: backend tensorrt (argument) cannot run here")
                                  for e in errs)
    assert not out.exists()
    assert main(["analyze", str(calm_to_exciting), "--backend", "gpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("backscore: error: --backend: unknown backend 'gpu'") and "ort-cpu" in err


def test_engines_command_shows_each_neural_backend(capsys: pytest.CaptureFixture[str], weights_root: Path,
                                                   no_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from engines.backends import choose_backend

    args = ["engines", "--weights", f"clip={weights_root / 'clip'}",
            "--weights", f"wav2vec2={weights_root / 'wav2vec2'}"]
    assert main(args) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    auto = choose_backend().name
    assert f"image tower on {auto} (auto choice)" in lines["clip"]
    assert f"classifier on {auto} (auto choice)" in lines["wav2vec2"]
    assert main([*args, "--backend", "torch-cpu"]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert "image tower on torch-cpu (argument)" in lines["clip"] and "[chosen by --backend]" in lines["torch-cpu"]
    monkeypatch.setenv("BACKSCORE_BACKEND", "torch-cpu")
    assert main(args) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert "classifier on torch-cpu ($BACKSCORE_BACKEND)" in lines["wav2vec2"]
    if not HAS_TRT:
        monkeypatch.delenv("BACKSCORE_BACKEND")
        assert main([*args, "--backend", "tensorrt"]) == 0  # a report, not an error
        lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
        assert "backend: tensorrt (argument) cannot run here" in lines["clip"]
