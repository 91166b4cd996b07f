"""FeatureAudioEncoder: the soundtrack window's feature row (hand-crafted columns, 16 kHz mono in).

"Non-silent frames" below are frames above -80 dBFS. Columns of
:attr:`FeatureAudioEncoder.feature_names`:

``loudness_db``
    RMS level of the window in dBFS (floor -90 for silence). Loudness is the strongest
    audio cue of arousal in Hanjalic & Xu (2005), "Affective video content representation
    and modeling" (their arousal curve combines motion, cut rate and sound energy).
``loudness_lufs``
    Ungated ITU-R BS.1770 loudness of the window (K-weighted mean square, LUFS; floor -90),
    i.e. a 2 s "short-term" loudness. Closer to perceived loudness than RMS: bass counts
    less, presence region (2-5 kHz) more. Uses :func:`engines.loudness.k_weight`.
``dynamic_range_db``
    95th minus 10th percentile of the 20 ms frame levels (dB): punchy, intermittent sound
    (speech, percussion, action) has a large range, steady beds (drones, noise) a small one.
``centroid_hz``, ``bandwidth_hz``
    Magnitude-weighted mean frequency and spread around it, from the mean magnitude
    spectrum of the non-silent frames. Brightness (centroid) goes with positive valence
    and with arousal: Juslin & Laukka (2004), "Expression, perception, and induction of
    musical emotions", list bright timbre with happiness, dark/soft timbre with sadness
    and tenderness.
``rolloff_hz``
    Frequency under which 85 % of the spectral magnitude lies (same spectrum).
``flatness``
    Spectral flatness (geometric over arithmetic mean of the power spectrum, 60 Hz-8 kHz)
    averaged over non-silent frames: 0 for a pure tone, ~0.5-0.6 for white noise with a
    Hann window. Noise-like soundtracks (wind, crowd, distortion) read as harsher/less
    pleasant (Juslin & Laukka 2004: sharp, rough timbre with anger/fear).
``flux``
    Mean positive spectral flux, *normalised*: for each frame, the summed positive
    magnitude increase over the previous frame divided by the frame's summed magnitude,
    averaged over non-silent frames. Scale-independent; ~0 for steady tones, ~0.2-0.4 for
    stationary noise, larger for busy, changing sound (more arousing).
``onset_rate``
    Onsets per second, peak-picked from an onset-strength envelope (mean positive rise of
    24 log-spaced band levels in dB, 10 ms hop). Event density is an arousal cue (Hanjalic
    & Xu 2005; Juslin & Laukka 2004: fast tempo/many events -> high activity).
``tempo_bpm``, ``pulse_clarity``
    Autocorrelation of the onset envelope over lags 40-200 bpm, weighted by a log-normal
    prior around 110 bpm (one octave wide); ``pulse_clarity`` is the normalised
    autocorrelation at the chosen lag (0..1). ``tempo_bpm`` is 0 when the clarity is below
    :data:`~engines.audio_features.rhythm.MIN_PULSE_CLARITY` (no periodicity). Fast, clear pulse
    raises arousal, tempo also valence (Juslin & Laukka 2004).
``speech``
    Fraction of the window's 10 ms frames where :meth:`FeatureAudioEncoder.speech_activity`
    says speech. Used for ducking the BGM and to tell dialogue scenes from music/effects.
``silence``
    Fraction of 20 ms frames below -50 dBFS RMS.

The short-time analysis, the speech detector and the rhythm analysis behind these columns are
:mod:`engines.audio_features.frames`, :mod:`~engines.audio_features.speech` and
:mod:`~engines.audio_features.rhythm`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engines.base import AudioEncoder, EngineError
from engines.loudness import k_weight, running_power

from .frames import (
    _FREQS,
    FRAME_RATE,
    HOP,
    LEVEL_FLOOR_DB,
    SAMPLE_RATE,
    SPECTRUM_GATE_DBFS,
    FrameFeatures,
    frame_features,
)
from .rhythm import estimate_tempo, onset_envelope, pick_onsets
from .speech import speech_probability

SILENCE_DBFS = -50.0
SHORT_FRAME = 320  # 20 ms, for dynamic range and silence
ROLLOFF = 0.85

FEATURE_NAMES: tuple[str, ...] = (
    "loudness_db",
    "loudness_lufs",
    "dynamic_range_db",
    "centroid_hz",
    "rolloff_hz",
    "flatness",
    "bandwidth_hz",
    "flux",
    "onset_rate",
    "tempo_bpm",
    "pulse_clarity",
    "speech",
    "silence",
)


def _level_db(samples: np.ndarray) -> float:
    ms = float(np.mean(np.square(samples, dtype=np.float64))) if samples.size else 0.0
    return max(LEVEL_FLOOR_DB, 10.0 * np.log10(ms)) if ms > 0 else LEVEL_FLOOR_DB


def _short_frame_levels(samples: np.ndarray) -> np.ndarray:
    """RMS level (dBFS, floored) of non-overlapping 20 ms frames."""
    n = SHORT_FRAME
    m = max(1, samples.size // n)
    ms = np.zeros(m)
    block = 1 << 14  # frames at a time: no full-length float64 copy of a long track
    for i in range(0, m, block):
        j = min(m, i + block)
        x = np.zeros((j - i) * n)
        part = samples[i * n: j * n]
        x[: part.size] = part
        ms[i:j] = np.mean(np.square(x.reshape(j - i, n)), axis=1)
    return np.asarray(np.maximum(10.0 * np.log10(np.maximum(ms, 1e-30)), LEVEL_FLOOR_DB))


def _k_loudness(samples: np.ndarray) -> float:
    ms = float(np.mean(np.square(k_weight(samples, SAMPLE_RATE)))) if samples.size else 0.0
    return max(LEVEL_FLOOR_DB, -0.691 + 10.0 * np.log10(ms)) if ms > 0 else LEVEL_FLOOR_DB


def spectral_shape(f: FrameFeatures) -> tuple[float, float, float, float]:
    """``(centroid_hz, rolloff_hz, bandwidth_hz, flatness)`` of the non-silent frames (zeros if none)."""
    if f.n_gated == 0 or f.magnitude_sum.sum() <= 0:
        return 0.0, 0.0, 0.0, 0.0
    mag = f.magnitude_sum / f.magnitude_sum.sum()
    centroid = float(np.dot(_FREQS, mag))
    bandwidth = float(np.sqrt(np.dot((_FREQS - centroid) ** 2, mag)))
    rolloff = float(_FREQS[min(int(np.searchsorted(np.cumsum(mag), ROLLOFF)), _FREQS.size - 1)])
    gated = f.level_db > SPECTRUM_GATE_DBFS
    return centroid, rolloff, bandwidth, float(f.flatness[gated].mean())


class FeatureAudioEncoder(AudioEncoder):
    """Hand-crafted soundtrack features (see the module docstring), 16 kHz mono in."""

    feature_names: tuple[str, ...] = FEATURE_NAMES
    sample_rate: int = SAMPLE_RATE

    def encode(self, samples: np.ndarray) -> np.ndarray:
        x = _check(samples)
        f = frame_features(x)
        mean_square = float(np.mean(np.square(x)))
        k_mean_square = float(np.mean(np.square(k_weight(x, SAMPLE_RATE))))
        return self._row(f, x.size, mean_square, k_mean_square, _short_frame_levels(x), speech_probability(f))

    def encode_windows(
        self, samples: np.ndarray, bounds: Sequence[tuple[float, float]]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """All windows of one track plus its speech activity, from a single short-time analysis.

        Equivalent to :meth:`encode` on each window (frames are taken from the whole track
        instead of a reflected-padded excerpt, so the first/last frame of a window can differ
        slightly) at a fraction of the cost when windows overlap.
        """
        x = _check(samples)
        n_frames = max(1, -(-x.size // HOP))
        ranges = [(min(n_frames, max(0, round(s * FRAME_RATE))), min(n_frames, max(0, round(e * FRAME_RATE))))
                  for s, e in bounds]
        checkpoints = sorted({i for r in ranges for i in r})
        f = frame_features(x, checkpoints=checkpoints)
        speech = speech_probability(f)
        spans = [(min(x.size, max(0, round(s * SAMPLE_RATE))), min(x.size, max(0, round(e * SAMPLE_RATE))))
                 for s, e in bounds]
        # energy (plain and K-weighted) between window edges, without full-length copies of the track
        edges = np.unique(np.array([i for span in spans for i in span] or [0], dtype=np.int64))
        sq = running_power(x, edges, SAMPLE_RATE, k_weighted=False)
        kw = running_power(x, edges, SAMPLE_RATE)
        short = _short_frame_levels(x)
        rows = np.zeros((len(bounds), len(self.feature_names)), dtype=np.float32)
        for w, ((a, b), (i0, i1)) in enumerate(zip(spans, ranges, strict=True)):
            if i1 <= i0 or b <= a:
                continue
            fw = f.window(i0, i1, checkpoints)
            ia, ib = np.searchsorted(edges, a), np.searchsorted(edges, b)
            ms, kms = (sq[ib] - sq[ia]) / (b - a), (kw[ib] - kw[ia]) / (b - a)
            sh = short[a // SHORT_FRAME : max(a // SHORT_FRAME + 1, b // SHORT_FRAME)]
            rows[w] = self._row(fw, b - a, ms, kms, sh, speech[i0:i1])
        return rows, (f.times_s, speech.astype(np.float32))

    def _row(self, f: FrameFeatures, n_samples: int, mean_square: float, k_mean_square: float,
             short: np.ndarray, speech: np.ndarray) -> np.ndarray:
        centroid, rolloff, bandwidth, flatness = spectral_shape(f)
        gated = f.level_db > SPECTRUM_GATE_DBFS
        env = onset_envelope(f, n_samples)
        duration = max(n_samples / SAMPLE_RATE, 1.0 / FRAME_RATE)
        tempo, clarity = estimate_tempo(env)
        values = {
            "loudness_db": max(LEVEL_FLOOR_DB, 10.0 * np.log10(mean_square)) if mean_square > 0 else LEVEL_FLOOR_DB,
            "loudness_lufs": max(LEVEL_FLOOR_DB, -0.691 + 10.0 * np.log10(k_mean_square))
            if k_mean_square > 0 else LEVEL_FLOOR_DB,
            "dynamic_range_db": float(np.percentile(short, 95) - np.percentile(short, 10)),
            "centroid_hz": centroid,
            "rolloff_hz": rolloff,
            "flatness": flatness,
            "bandwidth_hz": bandwidth,
            "flux": float(f.flux[gated].mean()) if gated.any() else 0.0,
            "onset_rate": pick_onsets(env).size / duration,
            "tempo_bpm": tempo,
            "pulse_clarity": clarity,
            "speech": float(np.mean(speech >= 0.5)),
            "silence": float(np.mean(short < SILENCE_DBFS)),
        }
        return np.array([values[n] for n in self.feature_names], dtype=np.float32)

    def speech_activity(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(times_s, prob)`` every 10 ms (frame centres); ``prob >= 0.5`` means speech."""
        f = frame_features(_check(samples))
        return f.times_s, speech_probability(f).astype(np.float32)


def _check(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim != 1:
        raise EngineError(f"FeatureAudioEncoder expects mono samples of shape (n,), got {x.shape}")
    if x.size == 0:
        raise EngineError("FeatureAudioEncoder got an empty window")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise EngineError("audio samples contain NaN or infinity")
    return x
