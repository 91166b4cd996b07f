"""BS.1770 loudness, normalisation, ducking, limiter and the BGM mix (pipelines/offline/mix.py)."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import signal

from engines.audio_features import FeatureAudioEncoder
from engines.loudness import k_weighting_sos
from pipelines.offline.mix import (
    MixOptions,
    duck_gain,
    integrated_loudness,
    limiter_gain,
    mix_bgm,
    normalize_loudness,
    short_term_loudness,
)
from tests.real_media import load_word, pink_noise

CEILING = 10.0 ** (-1.0 / 20.0)


def sine(freq: float, peak_dbfs: float, seconds: float, sr: int) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return 10.0 ** (peak_dbfs / 20.0) * np.sin(2.0 * np.pi * freq * t)


def pink(n: int, seed: int = 0) -> np.ndarray:
    """Pink noise peaking at 1.0."""
    x = pink_noise(n, seed)
    return x / np.abs(x).max()


# --------------------------------------------------------------------------- BS.1770


def test_k_weighting_matches_published_48k_coefficients() -> None:
    sos = k_weighting_sos(48000)
    shelf_b = [1.53512485958697, -2.69169618940638, 1.19839281085285]
    shelf_a = [1.0, -1.69065929318241, 0.73248077421585]
    hp_a = [1.0, -1.99004745483398, 0.99007225036621]
    np.testing.assert_allclose(sos[0, :3], shelf_b, atol=1e-8)
    np.testing.assert_allclose(sos[0, 3:], shelf_a, atol=1e-8)
    np.testing.assert_allclose(sos[1, :3], [1.0, -2.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(sos[1, 3:], hp_a, atol=1e-8)


@pytest.mark.parametrize("sr", [16000, 44100, 48000])
def test_997hz_sine_reference_levels(sr: int) -> None:
    tone = sine(997.0, -20.0, 5.0, sr)
    one_channel = np.stack([tone, np.zeros_like(tone)], axis=1)
    assert integrated_loudness(one_channel, sr) == pytest.approx(-23.01, abs=0.1)
    assert integrated_loudness(tone, sr) == pytest.approx(-23.01, abs=0.1)  # mono = one channel
    full = sine(997.0, 0.0, 5.0, sr)
    assert integrated_loudness(full, sr) == pytest.approx(-3.01, abs=0.1)
    both = np.stack([tone, tone], axis=1)
    gain = integrated_loudness(both, sr) - integrated_loudness(one_channel, sr)
    assert gain == pytest.approx(3.01, abs=0.02)


def test_k_weighting_shapes_the_spectrum() -> None:
    sr = 48000
    # +4 dB shelf at high frequencies (997 Hz already gets +0.69 dB of it: the -0.691 in the
    # LUFS formula), RLB high-pass cuts the deep bass
    ref = integrated_loudness(sine(997.0, -20.0, 3.0, sr), sr)
    assert integrated_loudness(sine(8000.0, -20.0, 3.0, sr), sr) - ref == pytest.approx(4.0 - 0.691, abs=0.3)
    assert integrated_loudness(sine(20.0, -20.0, 3.0, sr), sr) - ref < -10.0


def test_absolute_gate_ignores_silence() -> None:
    sr = 48000
    tone = sine(997.0, -20.0, 20.0, sr)
    padded = np.concatenate([np.zeros(10 * sr), tone, np.zeros(20 * sr)])
    # only the 6 blocks straddling the tone's edges differ (they pass the relative gate)
    assert integrated_loudness(padded, sr) == pytest.approx(integrated_loudness(tone, sr), abs=0.1)


def test_relative_gate_drops_quiet_passages() -> None:
    sr = 48000
    loud = sine(997.0, -20.0, 5.0, sr)
    quiet = sine(997.0, -40.0, 20.0, sr)  # 20 LU under: below the -10 LU relative gate
    both = np.concatenate([loud, quiet])
    assert integrated_loudness(both, sr) == pytest.approx(integrated_loudness(loud, sr), abs=0.2)
    # without the relative gate the average would be ~6.8 LU lower
    ungated = -0.691 + 10 * np.log10(np.mean(signal.sosfilt(k_weighting_sos(sr), both) ** 2))
    assert integrated_loudness(both, sr) - ungated > 5.0


def test_silence_measures_minus_infinity() -> None:
    assert integrated_loudness(np.zeros(48000 * 2), 48000) == -math.inf
    assert integrated_loudness(np.zeros((100, 2)), 48000) == -math.inf


@pytest.mark.parametrize("target", [-23.0, -16.0, -30.0])
def test_normalize_hits_target(target: float) -> None:
    sr = 44100
    x = 0.3 * pink(sr * 6, seed=1)
    stereo = np.stack([x, 0.5 * np.roll(x, 1000)], axis=1)
    for audio in (x, stereo):
        out = normalize_loudness(audio, sr, target)
        assert out.shape == audio.shape
        assert integrated_loudness(out, sr) == pytest.approx(target, abs=0.2)
        ratio = out[audio != 0] / audio[audio != 0]
        assert np.ptp(ratio) < 1e-9  # gain only


def test_short_term_loudness_of_steady_tone() -> None:
    sr = 16000
    times, lufs = short_term_loudness(sine(997.0, -20.0, 6.0, sr), sr)
    assert times.size > 10
    np.testing.assert_allclose(lufs, -23.01, atol=0.15)


# --------------------------------------------------------------------------- ducking


def _word_track(sr: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Two real words (different speakers) at 1.0 s and 4.0 s in 7 s of silence; returns spans."""
    track = np.zeros(7 * sr)
    spans = []
    for start, name in ((1.0, "female1/c5.ogg"), (4.0, "male2/pung.ogg")):
        w = load_word(name, sr)
        w = w * (0.3 / np.abs(w).max())
        i = round(start * sr)
        track[i : i + w.size] += w
        env = np.convolve(w**2, np.ones(sr // 100) / (sr // 100), mode="same")
        active = np.flatnonzero(10 * np.log10(env + 1e-20) > 10 * np.log10(env.max()) - 20)
        spans.append((start + active[0] / sr, start + active[-1] / sr))
    return track, spans


def _level_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x**2)))


def test_duck_under_real_speech() -> None:
    sr16, sr = 16000, 48000
    speech, spans = _word_track(sr16)
    times, prob = FeatureAudioEncoder().speech_activity(speech.astype(np.float32))
    bgm = 0.2 * pink(7 * sr, seed=3)
    gain = duck_gain(times, prob, bgm.size, sr, depth_db=-12.0)
    ducked = bgm * gain
    assert gain.shape == (bgm.size,) and gain.dtype == np.float32
    for s, e in spans:
        # the word's core (after the attack has settled), in the BGM
        a, b = round((s + 0.05) * sr), round((e - 0.05) * sr)
        drop = _level_db(ducked[a:b]) - _level_db(bgm[a:b])
        assert drop == pytest.approx(-12.0, abs=1.5), (s, e, drop)
    # well away from speech (before the first word, after the release) nothing changes
    quiet = [(0.0, spans[0][0] - 0.3), (spans[0][1] + 0.9, spans[1][0] - 0.3), (spans[1][1] + 0.9, 7.0)]
    for s, e in quiet:
        a, b = round(s * sr), round(e * sr)
        assert b - a > sr // 5
        assert _level_db(ducked[a:b]) - _level_db(bgm[a:b]) == pytest.approx(0.0, abs=0.1)
    # smooth: 12 dB over the 80 ms attack is ~4e-4 per sample at 48 kHz; a hard step would be 0.75
    assert np.abs(np.diff(gain)).max() < 1e-3


def test_duck_gain_ramps_and_lookahead() -> None:
    sr = 48000
    times = np.arange(0, 6, 0.01)
    prob = ((times >= 2.0) & (times < 3.0)).astype(np.float32)
    g_db = 20 * np.log10(duck_gain(times, prob, 6 * sr, sr, depth_db=-12.0, attack_s=0.08, release_s=0.5,
                                   lookahead_s=0.05))
    at = lambda t: float(g_db[round(t * sr)])  # noqa: E731
    assert at(1.5) == pytest.approx(0.0, abs=1e-6)
    assert at(1.95) == pytest.approx(-12.0, abs=0.01)  # fully down lookahead_s before the speech
    assert -12.0 < at(1.91) < 0.0  # on the attack ramp
    assert at(2.5) == pytest.approx(-12.0, abs=0.01)
    assert at(3.25) == pytest.approx(-6.0, abs=0.3)  # halfway up the 0.5 s release
    assert at(3.6) == pytest.approx(0.0, abs=1e-6)


def test_duck_gain_without_speech_is_unity() -> None:
    g = duck_gain(np.arange(0, 2, 0.01), np.zeros(200), 32000, 16000)
    np.testing.assert_allclose(g, 1.0)
    assert duck_gain(np.zeros(0), np.zeros(0), 100, 16000).min() == 1.0


# --------------------------------------------------------------------------- limiter and mix


def test_limiter_keeps_peaks_without_clipping() -> None:
    sr = 48000
    x = 1.8 * pink(4 * sr, seed=4)
    x = np.stack([x, -0.7 * x], axis=1)
    g = limiter_gain(x, sr, ceiling_dbfs=-1.0, attack_s=0.005)
    y = x * g[:, None]
    assert np.abs(y).max() <= CEILING
    # gain moves at most 1/L per sample (linear attack ramp over L = 240 samples): no hard clipping
    assert np.abs(np.diff(g)).max() <= 1.0 / 240 + 1e-9
    # and it recovers: most of the signal is not limited much
    assert np.median(g) > 0.5


def test_mix_hot_input_is_limited() -> None:
    sr = 48000
    original = 0.9 * pink(5 * sr, seed=5)
    bgm = np.stack([pink(5 * sr, seed=6), pink(5 * sr, seed=7)], axis=1)
    opts = MixOptions(bgm_max_lufs=-6.0, bgm_offset_lu=0.0)  # push the BGM up to make the sum hot
    r = mix_bgm(original, bgm, sr, None, opts)
    assert r.limiter_max_reduction_db > 1.0
    assert np.abs(r.mix).max() <= CEILING
    assert np.abs(r.bgm).max() <= CEILING


@pytest.mark.parametrize(
    ("orig_shape", "bgm_shape"),
    [((3 * 16000,), (5 * 16000, 2)), ((7 * 16000, 2), (5 * 16000,)), (None, (5 * 16000, 2))],
)
def test_mix_shapes(orig_shape: tuple[int, ...] | None, bgm_shape: tuple[int, ...]) -> None:
    sr = 16000
    rng = np.random.default_rng(0)
    original = None if orig_shape is None else 0.1 * rng.standard_normal(orig_shape)
    bgm = 0.1 * rng.standard_normal(bgm_shape)
    r = mix_bgm(original, bgm, sr, None, MixOptions())
    assert r.mix.shape == (bgm_shape[0], 2) and r.mix.dtype == np.float32
    assert r.bgm.shape == (bgm_shape[0], 2) and r.bgm.dtype == np.float32
    # fades: silent ends, full level in the middle
    assert np.abs(r.bgm[:10]).max() < 1e-3 and np.abs(r.bgm[-10:]).max() < 1e-3
    report = r.report()
    assert all(math.isfinite(v) for v in report.values())
    json.dumps(report)


@pytest.mark.parametrize("original", ["none", "zeros", "near-silent"])
def test_bgm_alone_hits_target(original: str) -> None:
    sr = 48000
    n = 10 * sr
    bgm = 0.05 * np.stack([pink(n, seed=8), pink(n, seed=9)], axis=1)
    orig = {"none": None, "zeros": np.zeros(n), "near-silent": 1e-4 * pink(n, seed=10)}[original]
    r = mix_bgm(orig, bgm, sr, None, MixOptions())
    assert r.bgm_target_lufs == -20.0
    assert integrated_loudness(r.bgm, sr) == pytest.approx(-20.0, abs=0.5)
    assert r.bgm_lufs_out == pytest.approx(-20.0, abs=0.5)
    assert integrated_loudness(r.mix, sr) == pytest.approx(-20.0, abs=0.5)


def test_bgm_sits_under_loud_original() -> None:
    sr = 48000
    n = 8 * sr
    # stereo: a mono original is played on both channels and measured that way (+3 LU)
    original = normalize_loudness(0.2 * np.stack([pink(n, seed=11), pink(n, seed=17)], axis=1), sr, -14.0)
    bgm = 0.5 * pink(n, seed=12)
    r = mix_bgm(original, bgm, sr, None, MixOptions())
    assert r.original_lufs == pytest.approx(-14.0, abs=0.1)
    assert r.bgm_target_lufs == pytest.approx(-20.0, abs=1e-6)
    assert integrated_loudness(r.bgm, sr) == pytest.approx(r.original_lufs - 6.0, abs=0.5)


def test_bgm_target_is_clamped() -> None:
    sr = 16000
    n = 6 * sr
    bgm = 0.1 * pink(n, seed=13)
    quiet = normalize_loudness(0.1 * pink(n, seed=14), sr, -42.0)
    assert mix_bgm(quiet, bgm, sr, None, MixOptions()).bgm_target_lufs == pytest.approx(-32.0)
    loud = normalize_loudness(0.1 * pink(n, seed=15), sr, -6.0)
    assert mix_bgm(loud, bgm, sr, None, MixOptions()).bgm_target_lufs == pytest.approx(-16.0)


def test_mix_ducks_under_speech_in_original() -> None:
    sr16, sr = 16000, 48000
    speech16, spans = _word_track(sr16)
    ratio = Fraction(sr, sr16)
    speech = signal.resample_poly(speech16, ratio.numerator, ratio.denominator)
    activity = FeatureAudioEncoder().speech_activity(speech16.astype(np.float32))
    bgm = 0.1 * pink(speech.size, seed=16)
    r = mix_bgm(speech, bgm, sr, activity, MixOptions())
    assert r.ducked_s > 0.5
    undocked_db = r.applied_gain_db  # the BGM's own gain, before ducking
    s, e = spans[1]
    core = slice(round((s + 0.05) * sr), round((e - 0.05) * sr))
    away = slice(round(2.6 * sr), round(3.6 * sr))
    assert _level_db(r.bgm[core, 0]) - _level_db(bgm[core]) - undocked_db == pytest.approx(-12.0, abs=1.5)
    assert _level_db(r.bgm[away, 0]) - _level_db(bgm[away]) - undocked_db == pytest.approx(0.0, abs=0.1)
