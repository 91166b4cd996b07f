"""The small typed vocabulary that flows through the pipelines.

Every item carries its presentation time in seconds (``pts_s``) on the media's own clock,
so a stage never has to know whether frames came from a file or a live WebRTC track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The rate of every audio buffer that passes between stages: decoded soundtracks, the mix, the
#: BGM, live audio in and out (48 kHz: Opus's and WebRTC's rate). Engines resample to their own.
AUDIO_RATE = 48_000


@dataclass(frozen=True)
class VideoFrame:
    """A frame selected for analysis, already converted small.

    ``rgb``: ``uint8`` (h, w, 3) thumbnail for colour/motion/cut features.
    ``gray``: optional larger ``uint8`` (H, W) picture for face detection (only on the
    frames picked for face analysis).
    ``picture``: optional ``uint8`` (H, W, 3) RGB picture whose shorter side is
    ``DecodeOptions.picture_size`` (224 px) for image models such as CLIP (only on the frames
    picked at ``DecodeOptions.picture_fps``; never made on the default path).
    """

    pts_s: float
    rgb: np.ndarray
    gray: np.ndarray | None = None
    picture: np.ndarray | None = None


@dataclass(frozen=True)
class AudioFrame:
    """Decoded audio: ``samples`` ``float32`` (n, 2) at ``sample_rate`` (:data:`AUDIO_RATE` after decoding)."""

    pts_s: float
    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate


@dataclass(frozen=True)
class MediaInfo:
    path: str
    container: str
    duration_s: float
    width: int
    height: int
    fps: float
    video_codec: str
    has_audio: bool
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None
