"""What the soundtrack says: features per window, speech over time, loudness.

The offline job analyses the whole soundtrack at once (:func:`analyze_sound`); the live session one
window at a time (:func:`encode_audio_window`). Both resample with :func:`to_mono16k`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engines.base import AudioEncoder
from pipelines.frames import AUDIO_RATE

#: Peak level below which a whole soundtrack counts as digital silence (-80 dBFS).
SILENT_TRACK_PEAK = 1e-4


@dataclass
class SoundAnalysis:
    """What the soundtrack says: features per window, speech over time, loudness."""

    audio: np.ndarray | None  # 48 kHz stereo, as decoded
    soundtrack: str  # "present" | "silent" | "none"
    windows: list[dict[str, float]] | None  # per window bound; None without usable sound
    speech: tuple[np.ndarray, np.ndarray] | None
    loudness_lufs: float  # integrated (BS.1770), -inf without sound


def analyze_sound(audio48k: np.ndarray | None, encoder: AudioEncoder,
                  bounds: Sequence[tuple[float, float]]) -> SoundAnalysis:
    from pipelines.offline.mix import integrated_loudness

    if audio48k is None:
        return SoundAnalysis(None, "none", None, None, -math.inf)
    # A digitally silent track (muted export) says nothing about the mood: treat it like a
    # video without sound rather than as "very quiet".
    if peak(audio48k) < SILENT_TRACK_PEAK:
        return SoundAnalysis(audio48k, "silent", None, None, -math.inf)
    audio16k = to_mono16k(audio48k, encoder.sample_rate)
    values, speech = encoder.encode_windows(audio16k, bounds)
    min_len = 0.25
    rows = [
        {n: float(v) for n, v in zip(encoder.feature_names, row, strict=True)} if e - s >= min_len else {}
        for (s, e), row in zip(bounds, values, strict=True)
    ]
    return SoundAnalysis(audio48k, "present", rows, speech, integrated_loudness(audio48k, AUDIO_RATE))


def peak(audio: np.ndarray, chunk: int = 1 << 20) -> float:
    """Largest absolute sample value (0 for empty audio), a chunk at a time (no full-length copy)."""
    x = np.asarray(audio)
    return max((float(np.max(np.abs(x[i:i + chunk]))) for i in range(0, x.shape[0], chunk)), default=0.0)


def to_mono16k(audio48k: np.ndarray, target_rate: int, source_rate: int = AUDIO_RATE,
               chunk_s: float = 30.0) -> np.ndarray:
    """Mono float32 at ``target_rate`` from ``source_rate`` (channels averaged; polyphase resampling,
    ``chunk_s`` of audio at a time with enough overlap that the result equals resampling it whole)."""
    x = np.asarray(audio48k)
    if target_rate == source_rate:
        return (_mono(x) if x.ndim == 2 else x).astype(np.float32)
    from math import gcd

    from scipy.signal import resample_poly  # lazily: imported in the sound thread

    g = gcd(source_rate, target_rate)
    up, down = target_rate // g, source_rate // g
    n = x.shape[0]
    n_out = -(-n * up // down)
    step = max(down, int(chunk_s * source_rate) // down * down)  # input chunks on output-sample boundaries
    pad = (10 * max(up, down) // up + 2) * down  # more than half of resample_poly's filter, in whole steps
    if n <= step + 2 * pad:
        mono = _mono(x) if x.ndim == 2 else x
        return np.asarray(resample_poly(mono, up, down), np.float32)
    out = np.empty(n_out, np.float32)
    for c0 in range(0, n, step):
        a, b = max(0, c0 - pad), min(n, c0 + step + pad)
        seg = _mono(x[a:b]) if x.ndim == 2 else x[a:b]
        y = resample_poly(seg, up, down)
        first = (c0 - a) * up // down
        count = min(n_out - c0 * up // down, step * up // down)
        out[c0 * up // down: c0 * up // down + count] = y[first: first + count]
    return out


def _mono(x: np.ndarray) -> np.ndarray:
    """The channels of ``(n, channels)`` audio averaged: ``x.mean(axis=1)``, for stereo as ``(left + right) / 2``
    (the same numbers, ~8x faster than numpy's reduction over rows of two)."""
    if x.shape[1] == 2 and x.dtype in (np.float32, np.float64):
        return np.asarray((x[:, 0] + x[:, 1]) / 2)
    return np.asarray(x.mean(axis=1))
