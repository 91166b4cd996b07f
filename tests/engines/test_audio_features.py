"""Soundtrack features and the speech detector (engines/audio_features/), on real kajongg speech."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import signal

from engines.audio_features import FeatureAudioEncoder, frame_features
from engines.base import EngineError
from tests.real_media import load_word, pink_noise

SR = 16000
#: A handful of words from five speakers (English and German recordings).
WORDS = ("female1/c5.ogg", "female2/s4.ogg", "male1/dangerousgame.ogg", "male2/pung.ogg",
         "de/male2/c1.ogg", "de/female1/b1.ogg")

ENC = FeatureAudioEncoder()


def feats(x: np.ndarray) -> dict[str, float]:
    row = ENC.encode(np.asarray(x, dtype=np.float32))
    return dict(zip(ENC.feature_names, row.tolist(), strict=True))


def rms_to(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * 10 ** (dbfs / 20) / np.sqrt(np.mean(x**2))


def harmonic(n: int, freqs: tuple[float, ...], n_harm: int = 8, rolloff: float = 1.0) -> np.ndarray:
    t = np.arange(n) / SR
    y = np.zeros(n)
    for f in freqs:
        for h in range(1, n_harm + 1):
            if f * h < SR / 2:
                y += np.sin(2 * np.pi * f * h * t + h) / h**rolloff
    return y


def click_track(seconds: float, bpm: float, offset_s: float = 0.1) -> np.ndarray:
    y = np.zeros(round(seconds * SR))
    t = np.arange(int(0.03 * SR)) / SR
    click = np.sin(2 * np.pi * 1000 * t) * np.exp(-t * 200)
    for s in np.arange(offset_s, seconds, 60.0 / bpm):
        i = round(s * SR)
        m = min(click.size, y.size - i)
        y[i : i + m] += click[:m]
    return 0.5 * y


def drum_loop(seconds: float, bpm: float, seed: int = 0) -> np.ndarray:
    """Kick on 1 and 3, snare on 2 and 4, closed hi-hat on eighths."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SR)
    y = np.zeros(n)
    t = np.arange(int(0.4 * SR)) / SR
    kick = np.sin(2 * np.pi * np.cumsum(50 + 100 * np.exp(-t * 30)) / SR) * np.exp(-t * 10)
    snare = (0.6 * rng.standard_normal(t.size) + np.sin(2 * np.pi * 180 * t)) * np.exp(-t * 20)
    b, a = signal.butter(2, 6000 / (SR / 2), "high")
    hat = 0.4 * signal.lfilter(b, a, rng.standard_normal(t.size)) * np.exp(-t * 60)
    tail = np.cos(0.5 * np.pi * t / t[-1]) ** 2  # no click where the samples end
    kick, snare, hat = kick * tail, snare * tail, hat * tail
    for k in range(int(seconds * bpm / 30) + 1):
        i = round((0.05 + k * 30.0 / bpm) * SR)
        if i >= n:
            break
        for hit, on in ((kick, k % 4 == 0), (snare, k % 4 == 2), (hat, True)):
            if on:
                m = min(hit.size, n - i)
                y[i : i + m] += hit[:m]
    return rms_to(y, -20)


# --------------------------------------------------------------------------- encode


def test_feature_row_shape_and_names() -> None:
    required = {"loudness_db", "loudness_lufs", "dynamic_range_db", "centroid_hz", "rolloff_hz", "flatness",
                "bandwidth_hz", "flux", "onset_rate", "tempo_bpm", "pulse_clarity", "speech", "silence"}
    assert required <= set(ENC.feature_names)
    assert ENC.sample_rate == 16000
    row = ENC.encode(np.zeros(2 * SR, dtype=np.float32))
    assert row.shape == (len(ENC.feature_names),) and row.dtype == np.float32
    with pytest.raises(EngineError):
        ENC.encode(np.zeros((2, SR), dtype=np.float32))


def test_silence() -> None:
    f = feats(np.zeros(2 * SR))
    assert f["loudness_db"] == -90.0 and f["loudness_lufs"] == -90.0
    assert f["silence"] == 1.0 and f["speech"] == 0.0
    assert f["tempo_bpm"] == 0.0 and f["onset_rate"] == 0.0 and f["centroid_hz"] == 0.0


def test_loudness_rises_with_gain() -> None:
    x = pink_noise(2 * SR, seed=1)
    rows = [feats(x * 10 ** (g / 20) * 0.01) for g in (-30, -20, -10, 0, 10, 20)]
    db = [r["loudness_db"] for r in rows]
    lufs = [r["loudness_lufs"] for r in rows]
    assert all(b > a for a, b in itertools.pairwise(db))
    assert all(b > a for a, b in itertools.pairwise(lufs))
    np.testing.assert_allclose(np.diff(db), 10.0, atol=0.01)
    assert db[3] == pytest.approx(-40.0, abs=0.1)  # RMS 0.01 = -40 dBFS
    # loudness-independent features stay put
    assert rows[0]["centroid_hz"] == pytest.approx(rows[-1]["centroid_hz"], rel=1e-3)
    assert rows[0]["flux"] == pytest.approx(rows[-1]["flux"], rel=1e-3)


def test_dynamic_range_and_silence_fraction() -> None:
    steady = feats(rms_to(harmonic(2 * SR, (220.0,)), -20))
    bursts = np.zeros(2 * SR)
    bursts[: SR // 2] = rms_to(pink_noise(SR // 2, seed=2), -20)
    f = feats(bursts)
    assert steady["dynamic_range_db"] < 3.0 and steady["silence"] == 0.0
    assert f["dynamic_range_db"] > 40.0 and f["silence"] == pytest.approx(0.75, abs=0.02)


@pytest.mark.parametrize("seconds", [2.0, 4.0])
def test_click_track_tempo_and_onsets(seconds: float) -> None:
    f = feats(click_track(seconds, 120.0))
    assert f["tempo_bpm"] == pytest.approx(120.0, abs=4.0)
    assert f["onset_rate"] == pytest.approx(2.0, abs=0.3)
    assert f["pulse_clarity"] > 0.5


@pytest.mark.parametrize("bpm", [90.0, 120.0, 150.0])
def test_drum_loop_tempo(bpm: float) -> None:
    f = feats(drum_loop(4.0, bpm))
    assert f["tempo_bpm"] == pytest.approx(bpm, abs=4.0)
    # at least every beat, at most every eighth note (hats right after the snare are masked by its tail)
    assert bpm / 60.0 <= f["onset_rate"] <= bpm / 30.0 + 0.25
    assert f["pulse_clarity"] > 0.5


def test_no_pulse_in_steady_sounds() -> None:
    for x in (rms_to(pink_noise(2 * SR, seed=3), -20), rms_to(harmonic(2 * SR, (220.0, 277.2, 329.6)), -20)):
        f = feats(x)
        assert f["tempo_bpm"] == 0.0
        assert f["onset_rate"] <= 0.5


def test_flatness_noise_vs_tone() -> None:
    noise = feats(rms_to(np.random.default_rng(4).standard_normal(2 * SR), -20))
    tone = feats(rms_to(harmonic(2 * SR, (220.0,)), -20))
    assert noise["flatness"] > 0.4
    assert tone["flatness"] < 0.05
    assert noise["flux"] > tone["flux"] + 0.1


def test_centroid_bright_vs_dark() -> None:
    dark = feats(rms_to(harmonic(2 * SR, (110.0,), n_harm=4, rolloff=2.0), -20))
    bright = feats(rms_to(harmonic(2 * SR, (880.0,), n_harm=8, rolloff=0.0), -20))
    assert bright["centroid_hz"] > dark["centroid_hz"] + 1000.0
    assert bright["rolloff_hz"] > dark["rolloff_hz"]
    assert bright["bandwidth_hz"] > dark["bandwidth_hz"]
    tone = feats(rms_to(harmonic(2 * SR, (1000.0,), n_harm=1), -20))
    assert tone["centroid_hz"] == pytest.approx(1000.0, rel=0.05)


# --------------------------------------------------------------------------- speech


def _embed(word: np.ndarray, seconds: float = 3.5, at_s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Word (peak frame at -20 dBFS) placed at ``at_s``; returns (signal, word-frame mask)."""
    level = frame_features(word).level_db
    word = word * 10 ** ((-20.0 - level.max()) / 20)
    x = np.zeros(round(seconds * SR))
    i = round(at_s * SR)
    x[i : i + word.size] = word[: x.size - i]
    clean = frame_features(x).level_db
    return x, clean >= clean.max() - 20.0  # the word's active frames


@pytest.mark.parametrize("background", ["silence", "pink", "white"])
def test_speech_detected_in_real_words(background: str) -> None:
    rng = np.random.default_rng(5)
    for name in WORDS:
        x, word = _embed(load_word(name, SR))
        if background == "pink":
            x = x + rms_to(pink_noise(x.size, seed=6), -40.0)  # 20 dB under the word's loudest frame
        elif background == "white":
            x = x + rms_to(rng.standard_normal(x.size), -40.0)
        times, prob = ENC.speech_activity(x.astype(np.float32))
        speech = prob >= 0.5
        assert speech[word].mean() >= 0.8, (name, background, speech[word].mean())
        far = np.abs(times - 1.0) > 0.5  # before the word, well clear of its onset
        far &= times < 1.0
        assert speech[far].mean() <= 0.1, (name, background)


def test_speech_activity_output() -> None:
    x, _ = _embed(load_word(WORDS[0], SR))
    times, prob = ENC.speech_activity(x.astype(np.float32))
    assert times.shape == prob.shape == (x.size // 160 + (x.size % 160 > 0),)
    np.testing.assert_allclose(np.diff(times), 0.01)
    assert prob.min() >= 0.0 and prob.max() <= 1.0


def test_speech_feature_of_a_window() -> None:
    x, word = _embed(load_word(WORDS[3], SR), seconds=2.0, at_s=0.5)
    f = feats(x)
    assert f["speech"] >= 0.8 * word.mean()
    assert feats(drum_loop(2.0, 120.0))["speech"] == 0.0


NEGATIVES = {
    "silence": lambda: np.zeros(4 * SR),
    "white noise": lambda: rms_to(np.random.default_rng(7).standard_normal(4 * SR), -25),
    "pink noise": lambda: rms_to(pink_noise(4 * SR, seed=8), -25),
    "quiet pink noise": lambda: rms_to(pink_noise(4 * SR, seed=9), -55),
    "sustained chord": lambda: rms_to(harmonic(4 * SR, (220.0, 277.2, 329.6)), -20),
    "low minor chord": lambda: rms_to(harmonic(4 * SR, (130.8, 155.6, 196.0, 261.6), n_harm=6), -20),
    "drum loop 120": lambda: drum_loop(4.0, 120.0, seed=10),
    "drum loop 95": lambda: drum_loop(4.0, 95.0, seed=11),
    "drums over pink": lambda: drum_loop(4.0, 110.0, seed=12) + rms_to(pink_noise(4 * SR, seed=13), -45),
}


@pytest.mark.parametrize("name", list(NEGATIVES))
def test_no_speech_in_non_speech(name: str) -> None:
    _, prob = ENC.speech_activity(NEGATIVES[name]().astype(np.float32))
    assert (prob >= 0.5).mean() <= 0.1


def test_encode_windows_matches_per_window_encode() -> None:
    """The shared-analysis path gives what encoding each window alone gives."""
    from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, render_audio

    enc = FeatureAudioEncoder()
    x48 = np.concatenate([render_audio(CALM_DARK, 4 * 48000, 0), render_audio(BRIGHT_FAST, 4 * 48000, 4 * 48000)])
    x = x48[::3].astype(np.float32)  # 16 kHz (the test material has nothing above 8 kHz that matters here)
    # (window edges off the 4.0 s step: a frame centred on a window's edge sees 20 ms past it
    # in the whole track, but reflected padding in an excerpt -- both fine, not equal)
    bounds = [(s, s + 2.0) for s in np.arange(0.25, 6.01, 0.5)]
    rows, (times, prob) = enc.encode_windows(x, bounds)
    assert rows.shape == (len(bounds), len(enc.feature_names))
    names = list(enc.feature_names)
    for i, (s, e) in enumerate(bounds):
        ref = enc.encode(x[int(s * 16000): int(e * 16000)])
        for n in ("loudness_db", "loudness_lufs", "centroid_hz", "flatness", "speech", "silence"):
            j = names.index(n)
            assert rows[i, j] == pytest.approx(ref[j], rel=0.05, abs=0.6 if n.endswith(("db", "lufs")) else 0.08), n
        j = names.index("tempo_bpm")
        assert abs(rows[i, j] - ref[j]) < 4.0 or min(rows[i, j], ref[j]) == 0.0
    # loudness rises at the change, tempo appears with the drums
    assert rows[-1, names.index("loudness_db")] > rows[0, names.index("loudness_db")] + 20
    assert abs(rows[-1, names.index("tempo_bpm")] - 128) < 4
    assert times.shape == prob.shape and len(times) == pytest.approx(8 * 100, abs=2)
