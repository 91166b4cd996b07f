"""The small media an async job adds for a studio: keyframe thumbnails along the video, previews of library tracks.

* :func:`keyframe_thumbnails` -- up to ``max_count`` JPEGs (``height`` px high) spread evenly over the
  video, at least ``min_interval_s`` apart. For each target time the decoder seeks to the keyframe at or
  before it and decodes forward only until a frame within half an interval of the target (the keyframe
  itself when it is that close), reference frames only; so the cost is a GOP at worst per thumbnail, not a
  second full decode (the analysis keeps only 96 px thumbnails in memory and drops them when it ends).
  The frames are scaled by FFmpeg and encoded with its MJPEG encoder.
* :func:`track_preview` -- a :data:`PREVIEW_S`-second clip of a library track as a 16-bit 48 kHz WAV, from
  30 % into the track (past most intros), with short fades, so a listener hears what would play.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import av
import numpy as np

from pipelines.cancel import check_cancelled
from pipelines.errors import InputError
from pipelines.frames import AUDIO_RATE
from pipelines.library.tracks import TrackInfo
from pipelines.media.limits import MediaLimits
from pipelines.media.outputs import atomic_output, write_wav

#: Thumbnails of one job at most, their height (px) and the least time between two.
MAX_THUMBNAILS = 40
THUMB_HEIGHT = 90
MIN_THUMB_INTERVAL_S = 1.0
#: Length of a track preview (seconds), where it starts (share of the track) and its fades (seconds).
PREVIEW_S = 12.0
PREVIEW_AT = 0.3
PREVIEW_FADE_S = 0.3


def thumbnail_times(duration_s: float, max_count: int = MAX_THUMBNAILS,
                    min_interval_s: float = MIN_THUMB_INTERVAL_S) -> list[float]:
    """Target times: the middles of ``n`` equal parts of the video (``n`` at most ``max_count``, parts at least
    ``min_interval_s`` long, at least one)."""
    if duration_s <= 0:
        return [0.0]
    n = max(1, min(max_count, int(math.floor(duration_s / min_interval_s))))
    step = duration_s / n
    return [round((i + 0.5) * step, 3) for i in range(n)]


def _jpeg(frame: av.VideoFrame, height: int) -> bytes:
    width = max(2, int(round(frame.width * height / max(1, frame.height) / 2)) * 2)
    small = frame.reformat(width=width, height=height, format="yuvj420p", interpolation="AREA")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    codec.options = {"qscale": "4"}
    small.pts = 0
    data = b"".join(bytes(p) for p in codec.encode(small))
    data += b"".join(bytes(p) for p in codec.encode(None))
    return data


def keyframe_thumbnails(path: str, folder: str, *, max_count: int = MAX_THUMBNAILS, height: int = THUMB_HEIGHT,
                        min_interval_s: float = MIN_THUMB_INTERVAL_S,
                        prefix: str = "thumb-") -> list[tuple[float, str]]:
    """Write the thumbnails of ``path`` into ``folder`` (see the module doc); ``[(time_s, file name)]`` in time
    order (the time is the shown frame's, relative to the video's start)."""
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    out: list[tuple[float, str]] = []
    with container:
        if not container.streams.video:
            raise InputError(f"no video stream in {path}")
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONREF"
        tb = stream.time_base or Fraction(1, 90_000)
        start = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        if not duration and stream.duration:
            duration = float(stream.duration * tb)
        times = thumbnail_times(duration, max_count, min_interval_s)
        half = (times[1] - times[0]) / 2 if len(times) > 1 else max(duration, 1.0) / 2
        last_pts: int | None = None
        for target in times:
            check_cancelled()
            try:
                container.seek(int((start + target) / tb), stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError:
                break
            found: av.VideoFrame | None = None
            try:
                for packet in container.demux(stream):
                    for frame in packet.decode():
                        if frame.pts is None:
                            continue
                        t = float(frame.pts * tb) - start
                        if t >= target - half and (last_pts is None or frame.pts > last_pts):
                            found = frame
                            break
                    if found is not None:
                        break
            except av.error.FFmpegError as exc:
                raise InputError(f"corrupt or truncated video data in {path} ({exc.strerror or exc})") from exc
            if found is None or found.pts is None:
                continue
            last_pts = found.pts
            name = f"{prefix}{len(out):03d}.jpg"
            with atomic_output(os.path.join(folder, name)) as tmp, open(tmp, "wb") as f:
                f.write(_jpeg(found, height))
            out.append((round(float(found.pts * tb) - start, 3), name))
    return out


def track_preview(track: TrackInfo, out_path: str, seconds: float = PREVIEW_S,
                  limits: MediaLimits | None = None) -> float:
    """Write ``track``'s preview clip to ``out_path`` (atomically; see the module doc); its length in seconds."""
    from pipelines.media.decode import load_audio

    audio = load_audio(track.path, AUDIO_RATE, mono=False, limits=limits)
    if audio.shape[0] == 0:
        raise InputError(f"library track {track.id} has no audio")
    n = min(audio.shape[0], int(round(seconds * AUDIO_RATE)))
    first = int((audio.shape[0] - n) * PREVIEW_AT)
    clip = np.array(audio[first:first + n], dtype=np.float32)
    fade = min(n // 2, int(PREVIEW_FADE_S * AUDIO_RATE))
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)[:, None]
        clip[:fade] *= ramp
        clip[n - fade:] *= ramp[::-1]
    with atomic_output(out_path) as tmp:
        write_wav(tmp, clip, AUDIO_RATE)
    return n / AUDIO_RATE
