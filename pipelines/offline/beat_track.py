"""Beats of music whose bars are not known (MusicGen's audio, a library track), estimated from the audio.

The composer's beats are where its bars say; other music is only audio. For the timeline's beat-hit rate
it is beat-tracked here, numpy and scipy only (the project keeps librosa's numba start-up out of its
runtime): the soundtrack analysis' onset envelope (:mod:`engines.audio_features.rhythm`, 10 ms frames),
its tempo by autocorrelation, then Ellis' dynamic-programming beat tracker (2007): beats that fall on
strong onsets and lie about one beat period apart. Each music section is tracked on its own, since its
tempo may differ. Downbeats are not estimated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engines.audio_features.frames import FRAME_RATE, SAMPLE_RATE, frame_features
from engines.audio_features.rhythm import estimate_tempo, onset_envelope
from pipelines.analysis.sound import to_mono16k

#: How strongly beats keep to the period (Ellis' alpha, for a unit-variance envelope).
TIGHTNESS = 100.0
MIN_SPAN_S = 4.0


def track_beats(env: np.ndarray, period: float, tightness: float = TIGHTNESS) -> np.ndarray:
    """Frame indices of beats: Ellis' DP over an onset envelope with a beat ``period`` (frames)."""
    n = env.size
    if n == 0 or period < 2:
        return np.zeros(0, np.int64)
    sd = float(env.std())
    o = env / sd if sd > 0 else env
    score = o.astype(np.float64).copy()
    back = np.full(n, -1, np.int64)
    lo, hi = int(round(period / 2)), int(round(2 * period))
    lags = np.arange(lo, hi + 1)
    penalty = -tightness * np.log(lags / period) ** 2
    for t in range(lo, n):
        cand = t - lags
        ok = cand >= 0
        if not ok.any():
            continue
        vals = np.where(ok, score[np.maximum(cand, 0)] + penalty, -np.inf)
        k = int(np.argmax(vals))
        if vals[k] > 0:
            score[t] = o[t] + vals[k]
            back[t] = cand[k]
    last = n - 1 - int(np.argmax(score[::-1][: int(period) + 1])) if n > period else int(np.argmax(score))
    beats = [last]
    while back[beats[-1]] >= 0:
        beats.append(int(back[beats[-1]]))
    return np.asarray(beats[::-1], np.int64)


def estimate_beats(audio: np.ndarray, sample_rate: int, spans: Sequence[tuple[float, float]] = ()) -> np.ndarray:
    """Beat times (s) of ``audio`` ((n,) or (n, channels)); each ``(start_s, end_s)`` span is tracked with
    its own tempo (the whole audio when none). Spans without a clear pulse give no beats."""
    y = to_mono16k(np.asarray(audio, np.float32), SAMPLE_RATE, int(sample_rate))
    if y.size < SAMPLE_RATE:
        return np.zeros(0)
    env = onset_envelope(frame_features(y), y.size)
    duration = y.size / SAMPLE_RATE
    out: list[np.ndarray] = []
    for s, e in (spans or [(0.0, duration)]):
        i0, i1 = int(max(0.0, s) * FRAME_RATE), int(min(e, duration) * FRAME_RATE)
        if (i1 - i0) / FRAME_RATE < MIN_SPAN_S:
            continue
        part = env[i0:i1]
        tempo, _clarity = estimate_tempo(part)
        if tempo <= 0:
            continue
        out.append((i0 + track_beats(part, 60.0 * FRAME_RATE / tempo)) / FRAME_RATE)
    return np.sort(np.concatenate(out)) if out else np.zeros(0)
