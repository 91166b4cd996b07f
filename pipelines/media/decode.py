"""Decode a media file with PyAV into analysis frames and audio.

Only the frames that are analysed are converted, and only small: a ``thumb_width``-wide
RGB thumbnail at ``analysis_fps`` and, on every few of those, a ``face_width``-wide grey
picture for face detection. Converting full-size frames costs more than decoding them.
The soundtrack is resampled once to 48 kHz stereo float32.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import av.error
import numpy as np

from pipelines.cancel import check_cancelled
from pipelines.errors import InputError
from pipelines.frames import AUDIO_RATE, AudioFrame, MediaInfo, VideoFrame
from pipelines.media.limits import MediaLimits
from pipelines.media.pictures import _even, _upright, picture_dims, thumbnail_rgb

if TYPE_CHECKING:
    from pipelines.media.frame_changes import FrameChangeRecorder

log = logging.getLogger(__name__)


ProgressFn = Callable[[float], None]


@dataclass(frozen=True)
class DecodeOptions:
    analysis_fps: float = 6.0
    face_fps: float = 1.0
    thumb_width: int = 96
    face_width: int = 256
    #: RGB pictures for image models (CLIP) on this many analysed frames per second; 0 (the
    #: default) makes none, so the default path pays nothing for them.
    picture_fps: float = 0.0
    #: Shorter side of those pictures, px (CLIP's processor resizes to 224 and centre-crops).
    picture_size: int = 224
    #: Skip decoding of non-reference frames (B-frames) when the analysis rate is far below
    #: the video's frame rate: they are never looked at, and skipping them saves ~30% of decode.
    skip_nonref: bool = True
    #: Skip the in-loop deblocking filter (H.264/HEVC): ~20% less decode CPU. The pictures
    #: come out slightly blockier, which no feature computed on 96-256 px thumbnails notices.
    skip_loop_filter: bool = True
    #: What the file may ask for (duration, picture size, frame rate); checked before and while
    #: decoding. The defaults suit the command line; the service passes ``MediaLimits.for_service()``.
    limits: MediaLimits = field(default_factory=MediaLimits)


def _open(path: str, kind: str = "video") -> av.container.InputContainer:
    try:
        st = os.stat(path)  # follows links: a link to a video is a video
    except PermissionError as exc:
        raise InputError(f"cannot read input (permission denied): {path}") from exc
    except (OSError, ValueError):  # missing, a path through a file, a NUL in the name, ...
        raise InputError(f"input not found: {path}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"input is a directory, not a {kind} file: {path}")
    if not stat.S_ISREG(st.st_mode):
        # never opened: reading a FIFO or a socket may block forever, a device may never end (/dev/zero)
        what = next((name for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                                             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
                     if test(st.st_mode)), "an unusual kind of file")
        raise InputError(f"input is not a regular file ({what}): {path}")
    if st.st_size == 0:
        raise InputError(f"input is empty (0 bytes): {path}")
    try:
        return av.open(path, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise InputError(f"not a readable {kind} file: {path} ({exc.strerror or exc})") from exc
    except PermissionError as exc:
        raise InputError(f"cannot read input (permission denied): {path}") from exc


def probe(path: str, limits: MediaLimits | None = None) -> MediaInfo:
    """Read stream information without decoding. Raises :class:`InputError` for non-videos and
    :class:`~pipelines.errors.LimitError` for a video that declares more than ``limits`` allow."""
    with _open(path) as container:
        info = _info(path, container)
    _check_declared(info, limits or MediaLimits())
    return info


def _check_declared(info: MediaInfo, limits: MediaLimits) -> None:
    limits.check_declared(info.path, info.duration_s, info.width, info.height, info.fps)


def _info(path: str, container: av.container.InputContainer) -> MediaInfo:
    if not container.streams.video:
        raise InputError(f"no video stream in {path}")
    v = container.streams.video[0]
    a = container.streams.audio[0] if container.streams.audio else None
    duration = 0.0
    if v.duration is not None and v.time_base is not None:
        duration = float(v.duration * v.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    rate = v.average_rate or v.guessed_rate or Fraction(25)
    return MediaInfo(
        path=path,
        container=container.format.name,
        duration_s=duration,
        width=v.codec_context.width,
        height=v.codec_context.height,
        fps=float(rate),
        video_codec=v.codec_context.name,
        has_audio=a is not None,
        audio_codec=a.codec_context.name if a is not None else None,
        audio_sample_rate=a.codec_context.sample_rate if a is not None else None,
        audio_channels=a.codec_context.channels if a is not None else None,
    )


@dataclass
class DecodedMedia:
    info: MediaInfo
    frames: list[VideoFrame]
    #: Soundtrack at 48 kHz stereo float32 (n, 2), aligned so sample 0 is video time 0;
    #: ``None`` when the file has no audio stream.
    audio: np.ndarray | None
    #: Duration of the video stream as decoded (last frame end), seconds.
    duration_s: float


def iter_media(
    path: str,
    options: DecodeOptions | None = None,
    progress: ProgressFn | None = None,
    video: bool = True,
    audio: bool = True,
    changes: FrameChangeRecorder | None = None,
) -> Iterator[VideoFrame | AudioFrame | MediaInfo]:
    """Yield the :class:`MediaInfo` first, then analysis frames and audio frames in decode order.

    ``video=False`` or ``audio=False`` demux and decode only the other stream, so the two can
    run in separate threads (PyAV decodes with the GIL released). Audio times are on the
    video's clock (0 = the video stream's start). ``changes`` records every decoded video frame's
    change from the one before (:mod:`pipelines.media.frame_changes`), not only the analysed ones'.
    """
    opts = options or DecodeOptions()
    limits = opts.limits
    name = path  # the front ends swap server paths for the client's name
    with _open(path) as container:
        info = _info(path, container)
        _check_declared(info, limits)
        yield info
        vstream = container.streams.video[0]
        astream = container.streams.audio[0] if (audio and container.streams.audio) else None
        if video:
            vstream.thread_type = "AUTO"
            skip_nonref = opts.skip_nonref and info.fps >= 2.5 * opts.analysis_fps
            if skip_nonref:
                vstream.codec_context.skip_frame = "NONREF"
            if changes is not None:
                changes.start(info.fps, complete=not skip_nonref)
            if opts.skip_loop_filter:
                vstream.codec_context.options = {"skip_loop_filter": "all"}
        resampler = (
            av.AudioResampler(format="flt", layout="stereo", rate=AUDIO_RATE) if astream else None
        )
        aspect = info.height / max(1, info.width)
        tw, th = _even(opts.thumb_width), _even(opts.thumb_width * aspect)
        fw, fh = _even(min(opts.face_width, info.width)), _even(min(opts.face_width, info.width) * aspect)
        next_t = 0.0
        next_face_t = 0.0
        picture_step = 1.0 / opts.picture_fps if opts.picture_fps > 0 else float("inf")
        next_picture_t = 0.0 if opts.picture_fps > 0 else float("inf")
        pw, ph = picture_dims(info.width, info.height, opts.picture_size)
        step = 1.0 / opts.analysis_fps
        face_step = 1.0 / opts.face_fps if opts.face_fps > 0 else float("inf")
        t0: float | None = None if video else _stream_start(vstream)
        last_progress = -1.0
        n_video = 0
        n_audio = 0
        max_audio = limits.max_duration_s * AUDIO_RATE + AUDIO_RATE
        streams = ([vstream] if video else []) + ([astream] if astream is not None else [])
        if not streams:
            return
        try:
            for packet in container.demux(*streams):
                check_cancelled()
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        n_video += 1
                        limits.check_frames(name, n_video)
                        if frame.width * frame.height > limits.max_frame_pixels:  # a size change mid-stream
                            limits.check_declared(name, 0.0, frame.width, frame.height, 0.0)
                        if frame.pts is None or frame.time_base is None:
                            continue
                        t = float(frame.pts * frame.time_base)
                        if t0 is None:
                            t0 = t
                        t -= t0
                        limits.check_stamp(name, t)
                        if changes is not None:
                            changes.add(frame, t)
                        if t + 1e-6 < next_t:
                            continue
                        next_t = max(next_t + step, t + step / 2)
                        rgb = thumbnail_rgb(frame, tw, th)
                        gray: np.ndarray | None = None
                        if t + 1e-6 >= next_face_t:
                            next_face_t = max(next_face_t + face_step, t + face_step / 2)
                            gray = _upright(frame, frame.to_ndarray(width=fw, height=fh, format="gray",
                                                                    interpolation="FAST_BILINEAR"))
                        picture: np.ndarray | None = None
                        if t + 1e-6 >= next_picture_t:
                            next_picture_t = max(next_picture_t + picture_step, t + picture_step / 2)
                            picture = _upright(frame, frame.to_ndarray(width=pw, height=ph, format="rgb24",
                                                                       interpolation="BILINEAR"))
                        yield VideoFrame(pts_s=t, rgb=rgb, gray=gray, picture=picture)
                        if progress is not None and info.duration_s > 0 and t - last_progress >= 1.0:
                            last_progress = t
                            progress(min(1.0, t / info.duration_s))
                    elif isinstance(frame, av.AudioFrame) and resampler is not None:
                        base = (
                            float(frame.pts * frame.time_base)
                            if frame.pts is not None and frame.time_base is not None
                            else None
                        )
                        if base is not None:
                            limits.check_stamp(name, base - (t0 or 0.0))
                        for out in resampler.resample(frame):
                            n_audio += out.samples
                            if n_audio > max_audio:
                                limits.check_stamp(name, n_audio / AUDIO_RATE)
                            yield _audio_frame(out, base, t0)
                            base = None
            if resampler is not None:
                for out in resampler.resample(None):
                    yield _audio_frame(out, None, t0)
        except av.error.FFmpegError as exc:
            raise InputError(f"corrupt or truncated video data in {path} ({exc.strerror or exc})") from exc


def _stream_start(stream: av.video.stream.VideoStream) -> float:
    if stream.start_time is not None and stream.time_base is not None:
        return float(stream.start_time * stream.time_base)
    return 0.0


def _audio_frame(frame: av.AudioFrame, base: float | None, t0: float | None) -> AudioFrame:
    samples = frame.to_ndarray().reshape(-1, 2).astype(np.float32, copy=False)
    pts = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else base
    return AudioFrame(pts_s=(pts if pts is not None else -1.0) - (t0 or 0.0), samples=samples,
                      sample_rate=AUDIO_RATE)


def decode_video(
    path: str, options: DecodeOptions | None = None, progress: ProgressFn | None = None,
    on_frame: Callable[[VideoFrame], None] | None = None, changes: FrameChangeRecorder | None = None,
) -> tuple[MediaInfo, list[VideoFrame], float]:
    """Decode the analysis frames only: ``(info, frames, duration_s)``.

    ``on_frame`` sees each frame as soon as it is decoded (to start work on it early); the
    large RGB ``picture`` (``DecodeOptions.picture_fps``) is then handed over to it only and
    not kept in the returned frames.
    """
    info: MediaInfo | None = None
    frames: list[VideoFrame] = []
    for item in iter_media(path, options, progress, audio=False, changes=changes):
        if isinstance(item, MediaInfo):
            info = item
        elif isinstance(item, VideoFrame):
            if on_frame is not None:
                on_frame(item)
                if item.picture is not None:
                    item = replace(item, picture=None)
            frames.append(item)
    assert info is not None
    if not frames:
        raise InputError(f"no decodable video frames in {path}")
    step = 1.0 / info.fps if info.fps > 0 else 0.04
    decoded_end = frames[-1].pts_s + step
    # The analysis sampler skips frames, so the last decoded frame may lie after the last
    # analysed one; the container's duration is the authority when it is consistent.
    duration = info.duration_s if info.duration_s > 0 else decoded_end
    if info.duration_s > 0 and decoded_end < 0.8 * info.duration_s - 1.0:
        raise InputError(
            f"truncated video: {path} declares {info.duration_s:.1f} s but only "
            f"{decoded_end:.1f} s could be decoded"
        )
    return info, frames, duration


def decode_audio(path: str, duration_s: float, limits: MediaLimits | None = None) -> np.ndarray | None:
    """The soundtrack at 48 kHz stereo float32 on the video clock, ``duration_s`` long; None if absent.

    Each decoded frame is placed into the output as it arrives (no list of frames, no second copy)."""
    placer = _AudioPlacer(duration_s)
    has_audio = False
    options = DecodeOptions(limits=limits) if limits is not None else None
    for item in iter_media(path, options, video=False):
        if isinstance(item, MediaInfo):
            has_audio = item.has_audio
        elif isinstance(item, AudioFrame):
            placer.add(item)
    return placer.out if has_audio else None


def decode_media(
    path: str, options: DecodeOptions | None = None, progress: ProgressFn | None = None
) -> DecodedMedia:
    """Decode a whole file: analysis frames plus the full soundtrack (one after the other)."""
    info, frames, duration = decode_video(path, options, progress)
    limits = options.limits if options is not None else None
    return DecodedMedia(info=info, frames=frames, audio=decode_audio(path, duration, limits), duration_s=duration)


class _AudioPlacer:
    """Audio frames placed on the video clock (gaps padded with silence), trimmed to ``duration_s``."""

    def __init__(self, duration_s: float) -> None:
        self.out = np.zeros((int(round(duration_s * AUDIO_RATE)), 2), dtype=np.float32)
        self.cursor = 0

    def add(self, part: AudioFrame) -> None:
        n_total = self.out.shape[0]
        start = int(round(part.pts_s * AUDIO_RATE)) if part.pts_s >= 0 else self.cursor
        # Small jitter in audio pts is normal; only honour real gaps (> 20 ms).
        if abs(start - self.cursor) < AUDIO_RATE // 50:
            start = self.cursor
        start = max(start, 0)
        end = min(n_total, start + part.samples.shape[0])
        if end > start:
            self.out[start:end] = part.samples[: end - start]
        self.cursor = start + part.samples.shape[0]


def load_audio(path: str, sample_rate: int, mono: bool = True, limits: MediaLimits | None = None) -> np.ndarray:
    """Decode a whole audio file (any format FFmpeg reads) to float32 at ``sample_rate``.

    Mono ``(n,)`` (channels averaged) or stereo ``(n, 2)``. Raises :class:`InputError` for
    files that are missing, unreadable or have no audio stream, and
    :class:`~pipelines.errors.LimitError` for one longer than ``limits.max_track_s``.
    """
    lim = limits or MediaLimits()
    name = path
    channels = 1 if mono else 2
    with _open(path, "audio") as container:
        if not container.streams.audio:
            raise InputError(f"no audio stream in {path}")
        layout = "mono" if mono else "stereo"
        resampler = av.AudioResampler(format="flt", layout=layout, rate=sample_rate)
        parts: list[np.ndarray] = []
        try:
            n = 0
            for frame in container.decode(container.streams.audio[0]):
                check_cancelled()
                for f in resampler.resample(frame):
                    parts.append(f.to_ndarray().reshape(-1))
                    n += parts[-1].shape[0] // channels
                lim.check_track(name, n, sample_rate)
            parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except av.error.FFmpegError as exc:
            raise InputError(f"corrupt audio data in {path} ({exc.strerror or exc})") from exc
    data = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return data.astype(np.float32) if mono else data.reshape(-1, 2).astype(np.float32)
