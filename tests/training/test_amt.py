"""The Affective Multimodal Transformer: training on window data whose labels follow a known rule,
checkpoints, causal mode, the data files' errors, and the `backscore amt` commands on
synthesized videos of known mood."""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from engines.affect import PROTOTYPES
from engines.amt import AmtAffectModel, AmtConfig, AmtModelError, AmtNet, Normaliser, chunk_plan
from engines.base import EMOTIONS
from pipelines.cli import main
from pipelines.errors import DataError
from pipelines.training.amt import TrainOptions, ccc, evaluate, train
from pipelines.training.amt_dataset import (
    VideoWindows,
    WindowData,
    labels_from_filenames,
    load_labels,
    load_windows,
    map_emotion,
    window_label,
    write_windows,
)

NAMES = ("brightness", "saturation", "motion", "cut_rate", "loudness_db", "centroid_hz", "noise_a", "noise_b")
_PROTOS = np.array([PROTOTYPES[e] for e in EMOTIONS])


def synthetic(n_videos: int, seed: int) -> WindowData:
    """Videos of 16-40 windows whose mood (valence, arousal) changes once; the features are the
    mood seen through noise (brightness/saturation/centroid for valence, motion/cuts/loudness for
    arousal, with a non-linear cut rate and a valence x arousal centroid), sound missing in a
    fifth of the videos; the labels are the mood and its nearest emotion prototype."""
    rng = np.random.default_rng(seed)
    videos = []
    for k in range(n_videos):
        t = int(rng.integers(16, 40))
        change = int(rng.integers(t // 3, 2 * t // 3))
        lat = np.where(np.arange(t)[:, None] < change, rng.uniform(-0.9, 0.9, 2), rng.uniform(-0.9, 0.9, 2))
        v, a = lat[:, 0], lat[:, 1]

        def noise(scale: float, t: int = t) -> np.ndarray:
            return rng.normal(0.0, scale, t)

        f = np.stack([0.45 + 0.2 * v + noise(0.1), 0.35 + 0.1 * v + 0.1 * a + noise(0.08),
                      np.maximum(0, 0.05 + 0.04 * a + noise(0.03)), np.maximum(0, 0.3 + 0.4 * a * (a > 0) + noise(0.2)),
                      -30 + 10 * a + noise(5), 1500 + 800 * v * a + noise(300), noise(1), noise(1)], axis=1)
        if rng.random() < 0.2:
            f[:, 4:6] = np.nan
        emo = np.argmin(((lat[:, None, :] - _PROTOS[None]) ** 2).sum(-1), axis=1)
        start = np.arange(t) * 0.5
        videos.append(VideoWindows(f"v{k}", start, start + 2.0, f, lat.astype(np.float64), emo.astype(np.int64)))
    return WindowData(NAMES, videos, "synthetic")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AmtAffectModel]:
    out = tmp_path_factory.mktemp("amt") / "model"
    report = train(synthetic(60, 0), out, TrainOptions(epochs=30, seed=0), AmtConfig(context=32))
    assert report.n_train == 48 and report.n_val == 12 and report.best_epoch > 1
    return out, AmtAffectModel.load(out)


def test_trained_model_beats_constant_on_held_out_videos(trained: tuple[Path, AmtAffectModel]) -> None:
    _, model = trained
    held_out = synthetic(20, 1)
    report = evaluate(model, held_out, tuple(model.info["constant"]))
    rows = dict(report.rows)
    amt, const, default = rows["AMT"], rows["constant (training mean)"], rows["default (feature terms)"]
    print("\n" + report.format_report())
    assert amt.mae_valence < 0.6 * const.mae_valence and amt.mae_arousal < 0.6 * const.mae_arousal
    assert amt.ccc_valence > 0.75 and amt.ccc_arousal > 0.75 and abs(const.ccc_valence) < 1e-9
    assert amt.emotion_accuracy > const.emotion_accuracy + 0.2
    assert amt.mae_valence < default.mae_valence and amt.mae_arousal < default.mae_arousal
    assert "AMT" in report.format_report() and "CCC V" in report.format_report()


def test_checkpoint_round_trip(trained: tuple[Path, AmtAffectModel], tmp_path: Path) -> None:
    path, model = trained
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.pt"]
    meta = json.loads((path / "config.json").read_text())
    assert meta["feature_names"] == list(NAMES) and meta["has_emotion"] and meta["config"]["context"] == 32
    video = synthetic(1, 7).videos[0]
    windows = video.windows(NAMES)
    first = model.predict(windows)
    model.save(tmp_path / "copy")  # over nothing, then over itself (atomic swap)
    model.save(tmp_path / "copy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]
    again = AmtAffectModel.load(tmp_path / "copy").predict(windows)
    assert first == again
    assert all(-1 <= e.valence <= 1 and e.emotion in EMOTIONS for e in first)
    # a missing feature is masked, not an error; the estimate changes
    fewer = model.predict([{k: v for k, v in w.items() if k != "loudness_db"} for w in windows])
    assert len(fewer) == len(first) and any(a.valence != b.valence for a, b in zip(fewer, first, strict=True))


def test_bad_checkpoints(trained: tuple[Path, AmtAffectModel], tmp_path: Path) -> None:
    path, _ = trained
    with pytest.raises(AmtModelError, match="not an AMT checkpoint"):
        AmtAffectModel.load(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((path / "config.json").read_text())
    (bad / "model.pt").write_bytes(b"not torch")
    with pytest.raises(AmtModelError, match="checksum"):
        AmtAffectModel.load(bad)


def _random_model(causal: bool, context: int = 16) -> AmtAffectModel:
    torch.manual_seed(0)
    data = synthetic(2, 3)
    norm = Normaliser.fit(np.concatenate([v.features for v in data.videos]))
    return AmtAffectModel(AmtNet(len(NAMES), AmtConfig(context=context, causal=causal)), NAMES, norm, True)


def test_causal_prefix_equals_full_sequence() -> None:
    model = _random_model(causal=True)
    x = synthetic(1, 11).videos[0].features
    x = np.concatenate([x, x, x])[:70]  # longer than several contexts
    va, probs = model.predict_arrays(x)
    for k in (1, 5, 16, 17, 25, 40, 69):
        va_k, probs_k = model.predict_arrays(x[:k])
        np.testing.assert_allclose(va_k, va[:k], atol=1e-5)
        np.testing.assert_allclose(probs_k, probs[:k], atol=1e-5)
    # without the causal mask later windows do change earlier outputs
    bidir = _random_model(causal=False)
    assert np.abs(bidir.predict_arrays(x[:30])[0] - bidir.predict_arrays(x)[0][:30]).max() > 1e-4


def test_chunk_plan_covers_every_window_once() -> None:
    for n in range(60):
        for context in (2, 4, 16):
            for causal in (False, True):
                plan = chunk_plan(n, context, causal)
                assert [i for _, _, lo, hi in plan for i in range(lo, hi)] == list(range(n))
                assert all(s <= lo <= hi <= e and e - s <= context for s, e, lo, hi in plan)
                if causal:  # every output has half a context of history, or starts the video
                    assert all(lo == 0 or lo - s >= context // 2 for s, _, lo, _ in plan)


def test_ccc() -> None:
    x = np.linspace(-1, 1, 50)
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(np.zeros(50), x) == 0.0
    assert ccc(x + 0.5, x) < ccc(x, x)


# --------------------------------------------------------------------------- data files


HEADER = "video_id,start_s,end_s,brightness,motion,valence,arousal,emotion\n"


def _csv(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    p = tmp_path / "w.csv"
    p.write_text(header + body)
    return p


def test_load_windows(tmp_path: Path) -> None:
    p = _csv(tmp_path, "b,0.5,2.5,0.4,,0.1,0.2,\na,0.5,2.5,0.3,0.02,-0.5,0.5,angry\na,0,2,0.2,0.01,,,sad\n")
    data = load_windows(p)
    assert data.feature_names == ("brightness", "motion") and [v.video_id for v in data.videos] == ["b", "a"]
    a = data.videos[1]
    assert list(a.start_s) == [0.0, 0.5] and math.isnan(a.va[0, 0]) and list(a.va[1]) == [-0.5, 0.5]
    assert list(a.emotion) == [EMOTIONS.index("sad"), EMOTIONS.index("tense")]  # angry -> tense
    assert math.isnan(data.videos[0].features[0, 1]) and data.videos[0].emotion[0] == -1
    assert data.videos[0].windows(data.feature_names) == [{"brightness": 0.4}]


@pytest.mark.parametrize(("header", "body", "match"), [
    ("video_id,start_s,brightness,valence\n", "a,0,0.1,0.2\n", r"w.csv line 1: missing column\(s\) end_s, arousal"),
    (HEADER, "a,0,2,0.4,fast,0.1,0.2,\n", r"w.csv line 2, column 'motion': 'fast' is not a number"),
    (HEADER, "a,0,2,0.4,0.1,0.1,0.2,\na,0.5,2.5,0.4,0.1,0.1,x,\n", r"line 3, column 'arousal': 'x' is not a number"),
    (HEADER, "a,0,2,0.4,0.1,0.1,0.2\n", r"line 2: 7 fields, the header has 8"),
    (HEADER, "a,0,2,0.4,0.1,3,0.2,\n", r"line 2, column 'valence': 3.0 is outside \[-1, 1\]"),
    (HEADER, "a,0,2,0.4,0.1,0.1,0.2,bored\n", r"line 2, column 'emotion': unknown emotion 'bored'"),
    (HEADER, "a,,2,0.4,0.1,0.1,0.2,\n", r"line 2, column 'start_s': empty"),
    (HEADER, "a,0,2,0.4,0.1,0.1,,\n", r"line 2: valence and arousal must both be given"),
    (HEADER, "a,0,2,0.4,inf,0.1,0.2,\n", r"line 2, column 'motion': 'inf' is not a finite number"),
    ("video_id,start_s,end_s,valence,arousal\n", "a,0,2,0.1,0.2\n", r"no feature columns"),
    ("video_id,start_s,end_s,x,x,valence,arousal\n", "a,0,2,1,1,0.1,0.2\n", r"duplicate column\(s\) x"),
    (HEADER, "", r"no rows after the header"),
])
def test_bad_csv(tmp_path: Path, header: str, body: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_windows(_csv(tmp_path, body, header))


def test_bad_csv_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _csv(tmp_path, "a,0,2,0.4,fast,0.1,0.2,\n")
    assert main(["amt", "train", str(p), "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "backscore: error: w.csv line 2, column 'motion': 'fast' is not a number"
    assert not (tmp_path / "m").exists()
    assert main(["amt", "train", str(tmp_path / "none.csv"), "-o", str(tmp_path / "m")]) == 2


def test_parquet_needs_pandas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    p = tmp_path / "w.parquet"
    p.write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"w.parquet: reading Parquet needs pandas and pyarrow"):
        load_windows(p)


def test_parquet_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    p = tmp_path / "w.parquet"
    write_windows(p, ["brightness", "motion"], [("a", 0.0, 2.0, {"brightness": 0.3}, 0.1, 0.2, "sad"),
                                                ("a", 0.5, 2.5, {"brightness": 0.4, "motion": 0.1}, 0.1, 0.2, None)])
    data = load_windows(p)
    assert data.feature_names == ("brightness", "motion") and len(data.videos[0]) == 2
    assert math.isnan(data.videos[0].features[0, 1]) and data.videos[0].emotion[1] == -1


def test_labels(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"")
    p = tmp_path / "labels.csv"
    p.write_text("video,valence,arousal,emotion,start_s,end_s\nclip.mp4,,,sad,,\nother.mp4,0.5,0.5,,0,1\n"
                 "other.mp4,-0.5,0.1,calm,1,3\n")
    labels = load_labels(p)
    assert labels[0].video == os.fspath(tmp_path / "clip.mp4") and labels[0].emotion == "sad"
    assert (labels[0].valence, labels[0].arousal) == PROTOTYPES["sad"]
    v, _, emo = window_label(labels[1:], 0.5, 2.5)  # 0.5 s of the first range, 1.5 s of the second
    assert v == pytest.approx(0.25 * 0.5 + 0.75 * -0.5) and emo == "relaxing"
    assert math.isnan(window_label(labels[1:], 5, 7)[0])
    p.write_text("video,valence\nclip.mp4,0.2\n")
    with pytest.raises(DataError, match="needs valence and arousal columns, or an emotion column"):
        load_labels(p)
    assert map_emotion("Surprised") == "exciting" and map_emotion("") is None


def test_labels_from_dataset_file_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = ["a/01-01-03-01-01-01-12.mp4", "a/03-01-05-01-01-01-12.wav", "a/02-01-02-02-01-02-01.mp4",
             "b/1001_DFA_ANG_XX.flv", "b/readme.txt"]
    assert labels_from_filenames(files, "ravdess") == [(files[0], "happy"), (files[2], "relaxing")]
    assert labels_from_filenames(files, "crema-d") == [(files[3], "tense")]
    for f in files:
        (tmp_path / f).parent.mkdir(exist_ok=True)
        (tmp_path / f).write_bytes(b"")
    out = tmp_path / "labels.csv"
    assert main(["amt", "labels", str(tmp_path / "b"), "--dataset", "crema-d", "-o", str(out)]) == 0
    assert out.read_text().splitlines() == ["video,valence,arousal,emotion", "b/1001_DFA_ANG_XX.flv,-0.35,0.5,tense"]
    assert load_labels(out)[0].video == os.fspath(tmp_path / "b" / "1001_DFA_ANG_XX.flv")
    assert main(["amt", "labels", str(tmp_path / "a"), "--dataset", "crema-d", "-o", str(out)]) == 2
    assert "no crema-d file names" in capsys.readouterr().err


# --------------------------------------------------------------------------- the commands, on videos


@pytest.fixture(scope="module")
def mood_videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, float, float]]]:
    """Six short synthesized clips whose pictures and sound express a known (valence, arousal)."""
    from pipelines.devtools.synth_video import write_video
    from pipelines.training.recommender_pairs import scene_for_mood

    d = tmp_path_factory.mktemp("mood")
    moods = [(-0.7, -0.6), (0.7, 0.6), (-0.5, 0.7), (0.6, -0.5), (0.0, 0.0), (0.8, 0.8)]
    out = []
    for k, (v, a) in enumerate(moods):
        name = f"clip{k}.mp4"
        write_video(os.fspath(d / name), [replace(scene_for_mood(v, a, 5.0), duration_s=5.0)], width=160, height=120,
                    fps=12, seed=k)
        out.append((name, v, a))
    return d, out


def test_amt_commands_end_to_end(mood_videos: tuple[Path, list[tuple[str, float, float]]], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                 caplog: pytest.LogCaptureFixture) -> None:
    d, moods = mood_videos
    labels = d / "labels.csv"
    labels.write_text("video,valence,arousal,emotion\n" + "".join(
        f"{n},{v},{a},{'sad' if v < -0.6 else ''}\n" for n, v, a in moods))
    windows = tmp_path / "windows.csv"
    assert main(["amt", "export-features", "--labels", str(labels), "-o", str(windows), "--no-faces"]) == 0
    assert "wrote" in capsys.readouterr().out
    data = load_windows(windows)
    assert len(data.videos) == 6 and data.n_windows == 6 * 7
    assert {"brightness", "motion", "loudness_db", "cut_rate"} <= set(data.feature_names)
    clip1 = next(v for v in data.videos if v.video_id.endswith("clip1.mp4"))
    assert np.allclose(clip1.va, [0.7, 0.6]) and np.all(clip1.emotion == -1)

    model_dir = tmp_path / "amt"
    assert main(["amt", "train", str(windows), "-o", str(model_dir), "--epochs", "3", "--context", "8"]) == 0
    assert "trained on 5 videos (1 for validation" in capsys.readouterr().out
    assert main(["amt", "eval", str(model_dir), str(windows)]) == 0
    out = capsys.readouterr().out
    assert "42 windows in 6 videos" in out and "AMT" in out and "default (feature terms)" in out

    # --affect-engine amt with the weights: the AMT's predictions are the timeline's
    video = str(d / "clip1.mp4")
    monkeypatch.delenv("BACKSCORE_AMT_WEIGHTS", raising=False)
    assert main(["analyze", video, "--no-faces", "--affect-engine", "amt", "--weights", f"amt={model_dir}"]) == 0
    tl = json.loads(capsys.readouterr().out)
    model = AmtAffectModel.load(model_dir)
    expect = model.predict([{k: v for k, v in w["features"].items() if v is not None} for w in tl["windows"]])
    assert [w["valence"] for w in tl["windows"]] == pytest.approx([e.valence for e in expect], abs=1e-3)
    # the environment variable works too; without weights: the default model and a warning
    monkeypatch.setenv("BACKSCORE_AMT_WEIGHTS", str(model_dir))
    assert main(["analyze", video, "--no-faces", "--affect-engine", "amt"]) == 0
    assert json.loads(capsys.readouterr().out)["windows"][0]["valence"] == tl["windows"][0]["valence"]
    monkeypatch.delenv("BACKSCORE_AMT_WEIGHTS")
    assert main(["analyze", video, "--no-faces", "--affect-engine", "amt"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert main(["analyze", video, "--no-faces"]) == 0
    assert json.loads(capsys.readouterr().out)["windows"] == default["windows"]
    assert any("no trained AMT weights" in r.getMessage() for r in caplog.records)


def test_export_needs_labels_for_every_video(mood_videos: tuple[Path, list[tuple[str, float, float]]],
                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d, moods = mood_videos
    labels = tmp_path / "labels.csv"
    labels.write_text(f"video,valence,arousal\n{d / moods[0][0]},0.1,0.1\n")
    assert main(["amt", "export-features", str(d / moods[1][0]), "--labels", str(labels), "-o",
                 str(tmp_path / "w.csv"), "--no-faces"]) == 2
    assert "no label for" in capsys.readouterr().err
    assert not (tmp_path / "w.csv").exists()
