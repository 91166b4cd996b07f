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
    if float(np.max(np.abs(audio48k), initial=0.0)) < SILENT_TRACK_PEAK:
        return SoundAnalysis(audio48k, "silent", None, None, -math.inf)
    audio16k = to_mono16k(audio48k, encoder.sample_rate)
    values, speech = encoder.encode_windows(audio16k, bounds)
    min_len = 0.25
    rows = [
        {n: float(v) for n, v in zip(encoder.feature_names, row, strict=True)} if e - s >= min_len else {}
        for (s, e), row in zip(bounds, values, strict=True)
    ]
    return SoundAnalysis(audio48k, "present", rows, speech, integrated_loudness(audio48k, AUDIO_RATE))


def to_mono16k(audio48k: np.ndarray, target_rate: int) -> np.ndarray:
    mono = audio48k.mean(axis=1) if audio48k.ndim == 2 else audio48k
    if target_rate == AUDIO_RATE:
        return mono.astype(np.float32)
    from math import gcd

    from scipy.signal import resample_poly  # lazily: imported in the sound thread

    g = gcd(AUDIO_RATE, target_rate)
    return resample_poly(mono, target_rate // g, AUDIO_RATE // g).astype(np.float32)
