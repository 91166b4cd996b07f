"""Rhythm of a soundtrack window: onset-strength envelope, onsets, tempo and pulse clarity.

From the 24 band levels of the short-time analysis (:mod:`engines.audio_features.frames`):
:func:`onset_envelope` (mean positive rise, dB), :func:`pick_onsets` (peak picking) and
:func:`estimate_tempo` (autocorrelation of the envelope over 40-200 bpm with a log-normal prior
around 110 bpm). The music analyzer (:mod:`engines.music_features`) reuses them on longer windows.
"""

from __future__ import annotations

import numpy as np

from .frames import FRAME, FRAME_RATE, HOP, FrameFeatures

MIN_PULSE_CLARITY = 0.4
TEMPO_RANGE_BPM = (40.0, 200.0)
TEMPO_PRIOR_BPM = 110.0
TEMPO_PRIOR_OCTAVES = 1.0
ONSET_DELTA_DB = 2.0


def onset_envelope(f: FrameFeatures, n_samples: int) -> np.ndarray:
    """Onset strength per frame: mean positive rise (dB) of the 24 band levels over the previous frame.

    Band levels are floored 80 dB under the window's loudest band level, so the envelope
    does not depend on the overall gain and digital silence contributes nothing. Frames
    that reach past the end of the signal (into the reflected padding) get 0.
    """
    bands = f.onset_bands_db
    if bands.shape[0] < 2:
        return np.zeros(bands.shape[0])
    bands = np.maximum(bands, bands.max() - 80.0)
    rise = np.concatenate(([0.0], np.maximum(np.diff(bands, axis=0), 0.0).mean(axis=1)))
    rise[np.arange(rise.size) * HOP + FRAME // 2 > n_samples] = 0.0
    return rise


def pick_onsets(env: np.ndarray, delta: float = ONSET_DELTA_DB, wait_s: float = 0.05) -> np.ndarray:
    """Frame indices of onsets: local maxima (+-30 ms) at least ``delta`` above the +-100 ms mean."""
    from scipy import ndimage  # lazily: keeps start-up fast
    if env.size < 3:
        return np.zeros(0, dtype=np.int64)
    local_max = ndimage.maximum_filter1d(env, 7, mode="nearest")
    local_mean = ndimage.uniform_filter1d(env, 21, mode="nearest")
    cand = np.flatnonzero((env >= local_max) & (env >= local_mean + delta) & (env > 0))
    wait = round(wait_s * FRAME_RATE)
    kept: list[int] = []
    for i in cand:
        if not kept or i - kept[-1] > wait:
            kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)


def _tempo_prior(bpm: np.ndarray) -> np.ndarray:
    return np.asarray(np.exp(-0.5 * (np.log2(bpm / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2))


def lag_correlation(env: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Autocorrelation of the mean-removed envelope at ``lags``, normalised by lag 0 (biased estimate).

    The biased estimate (sums over the overlap divided by the full-length energy) needs the
    pattern to repeat across the window: two events that happen to be ``lag`` apart in an
    otherwise quiet window score low, a steady beat scores ``(N - lag) / N`` or more.
    """
    a = env - env.mean()
    energy = float(np.dot(a, a))
    if energy <= 1e-12:
        return np.zeros(lags.size)
    return np.array([np.dot(a[: a.size - lag], a[lag:]) / energy for lag in lags])


def estimate_tempo(env: np.ndarray) -> tuple[float, float]:
    """``(tempo_bpm, pulse_clarity)`` from the onset envelope; tempo 0 without a clear pulse."""
    from scipy import ndimage  # lazily: keeps start-up fast
    lo = int(np.floor(60.0 * FRAME_RATE / TEMPO_RANGE_BPM[1]))
    hi = int(np.ceil(60.0 * FRAME_RATE / TEMPO_RANGE_BPM[0]))
    hi = min(hi, env.size // 2)  # at least half the window overlaps at every lag
    if hi <= lo + 2 or pick_onsets(env).size < 2:
        return 0.0, 0.0
    smooth = ndimage.uniform_filter1d(env, 3, mode="nearest")
    lags = np.arange(lo, hi + 1)
    corr = lag_correlation(smooth, lags)
    score = np.maximum(corr, 0.0) * _tempo_prior(60.0 * FRAME_RATE / lags)
    k = int(np.argmax(score))
    clarity = float(np.clip(corr[k], 0.0, 1.0))
    if clarity < MIN_PULSE_CLARITY:
        return 0.0, clarity
    shift = 0.0
    if 0 < k < lags.size - 1:
        y0, y1, y2 = score[k - 1], score[k], score[k + 1]
        den = y0 - 2.0 * y1 + y2
        shift = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5)) if den < 0 else 0.0
    return float(60.0 * FRAME_RATE / (lags[k] + shift)), clarity
