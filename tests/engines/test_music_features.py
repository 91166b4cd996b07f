"""The music analyzer on music with known tempo, key and mood: renders of the project's composer."""

from __future__ import annotations

import time
from functools import cache

import numpy as np
import pytest

from engines.base import EMOTIONS, EngineError, MoodControl, MusicStreamOptions
from engines.composer import ProceduralMusicEngine
from engines.composer.theory import FLAT_NAMES, SHARP_NAMES, is_major_family
from engines.loudness import integrated_loudness
from engines.music_features import (
    KK_MAJOR,
    KK_MINOR,
    PITCH_CLASSES,
    SAMPLE_RATE,
    MusicAnalyzer,
    MusicDescriptor,
    estimate_key,
    excerpt_bounds,
    tempo_consensus,
)

#: style -> (emotion, valence, arousal) it is rendered with.
MOODS: dict[str, tuple[str, float, float]] = {
    "cheerful": ("happy", 0.7, 0.4),
    "epic": ("exciting", 0.6, 0.8),
    "lofi": ("neutral", 0.2, -0.1),
    "tense": ("tense", -0.4, 0.5),
    "sad": ("sad", -0.6, -0.5),
    "calm": ("relaxing", 0.5, -0.6),
    "cinematic": ("fearful", -0.7, 0.7),
}


@cache
def render(style: str, seed: int, seconds: float = 20.0) -> tuple[np.ndarray, str, str, float]:
    """Mono audio at 22.05 kHz plus the composer's (key, mode, tempo) of its first bar."""
    emotion, valence, arousal = MOODS[style]
    stream = ProceduralMusicEngine().open_stream(MusicStreamOptions(sample_rate=SAMPLE_RATE, seed=seed))
    chunk = stream.generate(MoodControl(valence=valence, arousal=arousal, emotion=emotion, style=style),
                            min_duration_s=seconds)
    assert len({(b.key, b.mode, b.tempo_bpm) for b in chunk.bars}) == 1  # one section, one key and tempo
    bar = chunk.bars[0]
    return chunk.audio.mean(axis=1).astype(np.float32), bar.key, bar.mode, bar.tempo_bpm


@cache
def describe(style: str, seed: int) -> MusicDescriptor:
    return MusicAnalyzer().analyze(render(style, seed)[0])


def pitch_class(name: str) -> int:
    return SHARP_NAMES.index(name) if name in SHARP_NAMES else FLAT_NAMES.index(name)


# --------------------------------------------------------------------------- key and mode


@pytest.mark.parametrize(("style", "seed"), [("cheerful", 2), ("lofi", 0), ("tense", 2), ("sad", 0), ("sad", 1),
                                             ("calm", 2)])
def test_key_and_mode_of_clear_major_and_minor_pieces(style: str, seed: int) -> None:
    _, key, mode, _ = render(style, seed)
    assert mode in ("major", "minor")
    d = describe(style, seed)
    assert (pitch_class(d.key), d.mode) == (pitch_class(key), mode)
    assert d.key in PITCH_CLASSES  # spelled with sharps
    assert d.key_confidence > 0.6


def test_mode_family_over_all_styles() -> None:
    """Lydian/mixolydian count as major, dorian/phrygian/harmonic minor as minor (>= 12 of 14 right)."""
    right, wrong = 0, []
    for style in MOODS:
        for seed in (0, 1):
            _, key, mode, _ = render(style, seed)
            family = "major" if is_major_family(mode) else "minor"
            d = describe(style, seed)
            if d.mode == family:
                right += 1
            else:
                wrong.append(f"{style}/{seed}: {key} {mode} read as {d.key} {d.mode}")
    assert right >= 12, wrong


def test_key_finding_on_the_profiles_themselves() -> None:
    for tonic in (0, 5, 11):
        k = estimate_key(np.roll(KK_MINOR, tonic))
        assert (k.tonic, k.mode) == (tonic, "minor") and k.clarity == pytest.approx(1.0)
        assert k.mode_strength < 0
        k = estimate_key(np.roll(KK_MAJOR, tonic))
        assert (k.tonic, k.mode) == (tonic, "major") and k.mode_strength > 0
    assert estimate_key(np.zeros(12)).clarity == 0.0


# --------------------------------------------------------------------------- tempo


@pytest.mark.parametrize("style", ["cheerful", "lofi", "epic", "tense"])
def test_tempo_of_drum_styles_within_6_percent(style: str) -> None:
    _, _, _, tempo = render(style, 0)
    d = describe(style, 0)
    assert d.tempo_bpm == pytest.approx(tempo, rel=0.06)
    assert d.features["tempo_agreement"] > 0.5


def test_tempo_consensus_votes_by_clarity() -> None:
    tempo, clarity, agreement = tempo_consensus([(120.0, 0.8), (121.0, 0.7), (60.0, 0.5), (0.0, 0.1)])
    assert tempo == pytest.approx(120.5, abs=0.3)
    assert clarity == pytest.approx(0.75)
    assert agreement == pytest.approx(1.5 / 2.1)
    assert tempo_consensus([(0.0, 0.2), (0.0, 0.1)])[0] == 0.0
    assert tempo_consensus([]) == (0.0, 0.0, 0.0)


# --------------------------------------------------------------------------- affect


def test_valence_happy_and_exciting_above_sad() -> None:
    sad = max(describe("sad", s).valence for s in (0, 1))
    for style in ("cheerful", "epic"):
        assert min(describe(style, s).valence for s in (0, 1)) > sad + 0.3
    assert describe("cheerful", 0).valence > 0.3 and describe("sad", 0).valence < -0.3


def test_arousal_energetic_above_calm() -> None:
    calm = max(describe(style, s).arousal for style in ("calm", "sad") for s in (0, 1))
    for style in ("cheerful", "epic", "tense"):
        assert min(describe(style, s).arousal for s in (0, 1)) > calm + 0.3
    assert describe("calm", 0).arousal < -0.3


def test_descriptor_fields() -> None:
    d = describe("cheerful", 0)
    assert -1 <= d.valence <= 1 and -1 <= d.arousal <= 1
    assert 1 <= len(d.emotions) <= 3 and set(d.emotions) <= set(EMOTIONS)
    assert d.emotions[0] in ("happy", "exciting") and d.emotion == d.emotions[0]
    assert d.embedding.shape == (32,) and d.embedding.dtype == np.float32
    assert float(np.linalg.norm(d.embedding)) == pytest.approx(1.0, abs=1e-5)
    assert d.mode in ("major", "minor") and 0.0 <= d.key_confidence <= 1.0
    x = render("cheerful", 0)[0]
    assert d.loudness_lufs == pytest.approx(integrated_loudness(x, SAMPLE_RATE), abs=0.1)
    assert all(np.isfinite(v) for v in d.features.values())
    for name in ("onset_rate", "flux", "centroid_hz", "flatness", "mode_strength", "pulse_clarity"):
        assert name in d.features


def test_gain_changes_loudness_only() -> None:
    x = render("lofi", 0)[0]
    a, b = MusicAnalyzer().analyze(x), MusicAnalyzer().analyze(x * 10 ** (-12 / 20))
    assert b.loudness_lufs == pytest.approx(a.loudness_lufs - 12.0, abs=0.05)
    assert (b.key, b.mode, b.tempo_bpm) == (a.key, a.mode, pytest.approx(a.tempo_bpm, rel=1e-3))
    assert float(a.embedding @ b.embedding) > 0.999
    assert b.arousal < a.arousal  # quieter reads as calmer


# --------------------------------------------------------------------------- embedding


def test_embedding_same_style_closer_than_different_styles() -> None:
    def cos(a: MusicDescriptor, b: MusicDescriptor) -> float:
        return float(a.embedding @ b.embedding)

    for style, other in (("cheerful", "calm"), ("calm", "epic"), ("lofi", "sad"), ("sad", "cheerful")):
        same = cos(describe(style, 0), describe(style, 1))
        assert same > cos(describe(style, 0), describe(other, 1)) + 0.2, (style, other)


# --------------------------------------------------------------------------- long, short, silent, bad input


def test_long_track_is_strided_and_fast() -> None:
    parts = [render(style, 0)[0] for style in ("cheerful", "epic", "lofi", "tense")]
    x = np.tile(np.concatenate(parts), 3)[: 180 * SAMPLE_RATE]  # 3 minutes
    t0 = time.perf_counter()
    d = MusicAnalyzer().analyze(x)
    elapsed = time.perf_counter() - t0
    assert d.features["analyzed_s"] == pytest.approx(60.0, abs=0.01)
    assert elapsed < 180 / 20  # ~400x real time measured; loose for a busy machine
    assert d.tempo_bpm > 0


def test_excerpt_bounds() -> None:
    sr = SAMPLE_RATE
    assert excerpt_bounds(30 * sr) == [(0, 30 * sr)]
    bounds = excerpt_bounds(600 * sr)
    assert len(bounds) == 4 and all(b - a == 15 * sr for a, b in bounds)
    assert bounds[0][0] > 100 * sr and bounds[-1][1] < 500 * sr
    assert all(0 <= a < b <= 61 * sr for a, b in excerpt_bounds(61 * sr))


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.zeros(20 * SAMPLE_RATE, np.float32), "silent"),
        (np.full(20 * SAMPLE_RATE, 1e-6, np.float32), "silent"),
        (np.zeros(SAMPLE_RATE // 2, np.float32), "too short"),
        (np.zeros(0, np.float32), "too short"),
        (np.zeros((5 * SAMPLE_RATE, 2), np.float32), "mono"),
        (np.full(5 * SAMPLE_RATE, np.nan, np.float32), "NaN"),
    ],
)
def test_bad_input_raises_engine_error(samples: np.ndarray, message: str) -> None:
    with pytest.raises(EngineError, match=message):
        MusicAnalyzer().analyze(samples)


def test_noise_is_analysed_without_pulse_or_clear_key() -> None:
    x = np.random.default_rng(0).normal(0.0, 0.05, 10 * SAMPLE_RATE).astype(np.float32)
    d = MusicAnalyzer().analyze(x)
    assert d.tempo_bpm == 0.0
    assert d.key_confidence < 0.6
    assert d.features["flatness"] > 0.2
