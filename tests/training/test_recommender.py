"""The trainable recommender (pipelines.library.recommender, pipelines.training.recommender*): data,
training, evaluation, model file."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engines.affect import emotion_probs
from engines.base import EMOTIONS
from pipelines.analysis.analyze import analyze
from pipelines.analysis.engines import default_engines
from pipelines.errors import DataError
from pipelines.library.profile import profile_from_analysis
from pipelines.library.ranking import TrackMatrix, rank
from pipelines.library.recommender import SOFT_EPSILON, RecommenderModel
from pipelines.library.tracks import TrackInfo
from pipelines.training.recommender import evaluate, train
from pipelines.training.recommender_data import load_pairs, load_records, soft_targets
from pipelines.training.recommender_pairs import best_track_for_mood, make_pairs, scene_for_mood

N_VIDEOS = 72
N_TRAIN = 54


def small_library(nv: int = 6, na: int = 4) -> list[TrackInfo]:
    """24 tracks on a valence x arousal grid, labels from the VA point, tempo from arousal."""
    out = []
    for i, v in enumerate(np.linspace(-0.85, 0.85, nv)):
        for j, a in enumerate(np.linspace(-0.85, 0.85, na)):
            p = emotion_probs(float(v), float(a))
            order = np.argsort(-p)
            tid = 1 + i * na + j
            out.append(TrackInfo(id=tid, title=f"T{tid}", path="", duration_s=90.0, valence=float(v),
                                 arousal=float(a), emotions=(EMOTIONS[order[0]], EMOTIONS[order[1]]),
                                 tempo_bpm=float(65 + 65 * (a + 1) / 2), key="C", mode="major"))
    return out


TRACKS = small_library()
IDS = [t.id for t in TRACKS]


@pytest.fixture(scope="module")
def analyze_fn():
    engines = default_engines(faces=False)
    return lambda path: analyze(path, engines)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """72 synthetic 4 s mood clips paired with the track of their generating mood."""
    out = tmp_path_factory.mktemp("pairs")
    return make_pairs(out, TRACKS, n=N_VIDEOS, seed=0, duration_s=4.0, size=(160, 120))


@pytest.fixture(scope="module")
def trained(dataset: Path, analyze_fn):
    pairs = load_pairs(dataset, IDS)
    model_path = dataset.parent / "model.pt"
    report = train(pairs[:N_TRAIN], TRACKS, model_path, analyze_fn=analyze_fn, seed=0)
    return pairs, report


def test_make_pairs_writes_a_loadable_synthetic_set(dataset: Path):
    pairs = load_pairs(dataset, IDS)
    assert len(pairs) == N_VIDEOS
    assert all(os.path.isfile(p.video) for p in pairs)
    assert "synthetic" in dataset.read_text()
    assert len({p.track_id for p in pairs}) >= 10  # the moods spread over the library


def test_trained_model_beats_affect_distance_baseline(trained, analyze_fn):
    pairs, report = trained
    assert report.n_train + report.n_val == N_TRAIN and report.n_val > 0
    assert report.model is not None
    held = evaluate(pairs[N_TRAIN:], report.model, TRACKS, analyze_fn=analyze_fn)
    text = held.format_report()
    assert "trained model" in text and "affect distance" in text
    assert held.n == N_VIDEOS - N_TRAIN
    assert held.model.mrr > held.baseline.mrr, text
    assert held.model.top5 >= held.baseline.top5, text
    assert held.model.accuracy > 1.0 / len(TRACKS), text


def test_save_load_round_trip_and_cache(trained, dataset: Path):
    pairs, report = trained
    loaded = RecommenderModel.load(report.model_path)
    assert loaded.track_ids == IDS
    cache = os.path.join(os.path.dirname(report.model_path), "recommender-cache")

    def refuse(path: str):
        raise AssertionError(f"{path} should come from the cache")

    records = load_records([p.video for p in pairs[:5]], refuse, cache)
    assert np.allclose(loaded.predict_records(records), report.model.predict_records(records), atol=1e-7)
    # Re-training reads every analysis from the cache.
    again = train(pairs[:N_TRAIN], TRACKS, dataset.parent / "model2.pt", analyze_fn=refuse, epochs=5)
    assert again.epochs <= 5


def test_model_blends_into_ranking(trained, analyze_fn):
    pairs, report = trained
    analysis = analyze_fn(pairs[-1].video)
    matrix = TrackMatrix(TRACKS)
    p = report.model.predict_proba(analysis, matrix)
    assert p.shape == (len(TRACKS),) and p.sum() == pytest.approx(1.0)
    recs = rank(profile_from_analysis(analysis), matrix, top_k=3, model_scores=p, model_weight=1.0)
    assert recs[0].track_id == IDS[int(np.argmax(p))]
    assert "model" in recs[0].components


def test_other_library_is_refused(trained, analyze_fn):
    pairs, report = trained
    other = [replace(t, valence=-t.valence) for t in TRACKS]
    with pytest.raises(DataError, match="retrain"):
        evaluate(pairs[N_TRAIN:], report.model, other, analyze_fn=analyze_fn)
    with pytest.raises(DataError):
        report.model.predict_proba(analyze_fn(pairs[0].video), TRACKS[:10])


def test_bad_model_file(tmp_path: Path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(DataError):
        RecommenderModel.load(bad)
    with pytest.raises(DataError, match="not found"):
        RecommenderModel.load(tmp_path / "missing.pt")


def _csv(tmp: Path, text: str) -> Path:
    (tmp / "clip1.mp4").write_bytes(b"x")
    path = tmp / "pairs.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("body", "message"), [
    ("video,track_id\nclip1.mp4,3\nclip7.mp4,2\n", "pairs.csv line 3: video clip7.mp4 not found"),
    ("video,track_id\nclip1.mp4,3\n\nclip1.mp4,150\n", "pairs.csv line 4: track id 150 is not in the library (1..24)"),
    ("video,track_id\nclip1.mp4\n", "pairs.csv line 2: expected video,track_id"),
    ("video,track_id\nclip1.mp4,three\n", "pairs.csv line 2: track id 'three' is not a whole number"),
    ("clip,track\nclip1.mp4,3\n", "pairs.csv line 1: expected the header video,track_id"),
    ("video,track_id\n", "pairs.csv: no pairs"),
])
def test_pairs_csv_errors_name_the_line(tmp_path: Path, body: str, message: str):
    with pytest.raises(DataError) as err:
        load_pairs(_csv(tmp_path, body), IDS)
    assert message in str(err.value)


def test_pairs_csv_paths(tmp_path: Path):
    path = _csv(tmp_path, f"video,track_id,note\nclip1.mp4,3,x\n{tmp_path / 'clip1.mp4'},4,y\n")
    pairs = load_pairs(path, IDS)
    assert [p.track_id for p in pairs] == [3, 4]
    assert pairs[0].video == pairs[1].video == os.fspath(tmp_path / "clip1.mp4")
    assert pairs[1].line == 3
    with pytest.raises(DataError, match="not found"):
        load_pairs(tmp_path / "nope.csv", IDS)


def test_soft_targets():
    m = TrackMatrix(TRACKS)
    y = soft_targets(m)
    assert y.shape == (len(TRACKS), len(TRACKS))
    assert np.allclose(y.sum(axis=1), 1.0)
    assert np.allclose(np.diag(y), 1.0 - SOFT_EPSILON)
    # the mass goes to neighbours: more to the nearest track in VA than to the farthest
    va = np.stack([m.valence, m.arousal], axis=1)
    d = np.linalg.norm(va - va[0], axis=1)
    d[0] = np.inf
    assert y[0, int(np.argmin(d))] > y[0, int(np.argmax(np.where(np.isfinite(d), d, -1)))]


def test_scene_for_mood_and_label_rule():
    calm, wild = scene_for_mood(-0.8, -0.8, 4.0), scene_for_mood(0.8, 0.8, 4.0)
    assert calm.brightness < wild.brightness and calm.speed < wild.speed
    assert calm.cut_every_s is None and wild.cut_every_s is not None
    assert calm.loudness_dbfs < wild.loudness_dbfs and wild.audio == "drums"
    happy = best_track_for_mood(TRACKS, 0.85, 0.3)
    assert happy.valence > 0.5 and happy.arousal > 0
    sad = best_track_for_mood(TRACKS, -0.85, -0.85)
    assert (sad.valence, sad.arousal) == (pytest.approx(-0.85), pytest.approx(-0.85))
