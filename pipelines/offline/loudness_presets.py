"""Loudness presets for the final mix (``--loudness``, HTTP/gRPC ``loudness``): where the scored video
will be published, as an integrated loudness (ITU-R BS.1770-4, LUFS) and a true-peak ceiling (dBTP).

=========  ===========  ==========  =============================================================
preset     integrated   true peak   source
=========  ===========  ==========  =============================================================
youtube    -14 LUFS     -1 dBTP     YouTube normalises playback to about -14 LUFS (no official
                                    figure; its "content loudness" in Stats for nerds is relative to
                                    it); -1 dBTP leaves room for the lossy re-encode (AES TD1004)
tiktok     -14 LUFS     -1 dBTP     no official figure; the common delivery target for short-video
                                    platforms, as for YouTube
broadcast  -23 LUFS     -1 dBTP     EBU R 128 (programme loudness -23.0 LUFS, max true peak -1 dBTP)
podcast    -16 LUFS     -1 dBTP     Apple Podcasts "Audio requirements" (-16 LUFS +-1 dB, true peak
                                    <= -1 dBFS)
=========  ===========  ==========  =============================================================

The mixer (:mod:`pipelines.offline.mix`, ``MixOptions.target_lufs``) reaches the target with a gain
and a true-peak limiter; ``backscore score`` then measures the file it wrote (decoded, a block at a
time: :func:`measure_file`) and, should the audio encoder have pushed a peak over the ceiling, lowers
the mix by the excess and writes it again. The timeline reports
``loudness: {preset, target_lufs, measured_lufs, target_true_peak_dbtp, measured_true_peak_dbtp}``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.loudness import LoudnessMeter, TruePeakMeter

if TYPE_CHECKING:  # the mixer (and scipy) load when a preset is used, not when the CLI starts
    from pipelines.offline.mix import MixOptions

CHUNK = 1 << 18


@dataclass(frozen=True)
class LoudnessPreset:
    name: str
    target_lufs: float
    true_peak_dbtp: float
    source: str


PRESETS: dict[str, LoudnessPreset] = {p.name: p for p in (
    LoudnessPreset("youtube", -14.0, -1.0, "YouTube playback normalisation (~-14 LUFS); AES TD1004 -1 dBTP"),
    LoudnessPreset("tiktok", -14.0, -1.0, "short-video delivery practice (-14 LUFS, -1 dBTP)"),
    LoudnessPreset("broadcast", -23.0, -1.0, "EBU R 128"),
    LoudnessPreset("podcast", -16.0, -1.0, "Apple Podcasts audio requirements"),
)}


def mix_options(preset: LoudnessPreset | None, base: MixOptions | None = None) -> MixOptions:
    """The mixer's options with ``preset``'s targets (``base`` unchanged without one)."""
    from pipelines.offline.mix import MixOptions

    base = base or MixOptions()
    if preset is None:
        return base
    return dataclasses.replace(base, target_lufs=preset.target_lufs, target_true_peak_dbtp=preset.true_peak_dbtp)


@dataclass(frozen=True)
class Measured:
    lufs: float
    true_peak_dbtp: float


def measure_array(audio: np.ndarray, sample_rate: int) -> Measured:
    """Integrated loudness and true peak of ``(n, channels)`` audio, a chunk at a time."""
    x = np.asarray(audio)
    loud, peak = LoudnessMeter(sample_rate, x.shape[1] if x.ndim == 2 else 1), TruePeakMeter()
    for c0 in range(0, x.shape[0], CHUNK):
        loud.add(x[c0:c0 + CHUNK])
        peak.add(x[c0:c0 + CHUNK])
    return Measured(loud.integrated(), peak.true_peak_dbtp())


def measure_file(path: str) -> Measured:
    """Integrated loudness and true peak of the first audio stream of ``path`` as a player decodes it
    (PyAV, a frame at a time: a 15-minute file needs no full-length copy)."""
    import av

    with av.open(path) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or 48000
        resampler = av.AudioResampler(format="flt", layout="stereo", rate=rate)
        loud, peak = LoudnessMeter(rate, 2), TruePeakMeter()
        for frame in itertools.chain(container.decode(stream), [None]):  # None: flush the resampler
            for out in resampler.resample(frame):
                block = out.to_ndarray().reshape(-1, 2)
                loud.add(block)
                peak.add(block)
    return Measured(loud.integrated(), peak.true_peak_dbtp())


def report(preset: LoudnessPreset, measured: Measured, measured_on: str) -> dict[str, Any]:
    """The timeline's ``loudness`` entry."""

    def num(v: float) -> float | None:
        return round(v, 2) if math.isfinite(v) else None

    return {
        "preset": preset.name,
        "target_lufs": preset.target_lufs,
        "measured_lufs": num(measured.lufs),
        "target_true_peak_dbtp": preset.true_peak_dbtp,
        "measured_true_peak_dbtp": num(measured.true_peak_dbtp),
        "measured_on": measured_on,
    }
