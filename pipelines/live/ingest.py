"""Turning decoded media (PyAV frames from a file, a WebRTC track or a gRPC chunk) into live-session input.

* :class:`VideoSampler` -- keeps frames at the analysis rate and makes the small RGB
  thumbnail (and, about once a second, the grey picture for faces), like the offline decoder.
* :class:`AudioIngest` -- resamples any PyAV audio frame to 48 kHz stereo float32.
* :class:`TrackClock` -- per-track media time starting at 0 from the first frame's pts
  (WebRTC tracks start at random RTP timestamps).
* :func:`feed_file` -- plays a video file into a session at real time (or as fast as allowed),
  as a camera would: used by the gRPC/HTTP sample sources, the load test and the tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from fractions import Fraction

import av
import numpy as np

from pipelines.clock import Clock
from pipelines.errors import InputError
from pipelines.frames import AUDIO_RATE, AudioFrame, VideoFrame
from pipelines.live.session import LiveSession
from pipelines.media.decode import DecodeOptions
from pipelines.media.pictures import _even, thumbnail_rgb


class TrackClock:
    """Media seconds of a track's frames relative to its first frame."""

    def __init__(self) -> None:
        self._t0: float | None = None

    def __call__(self, pts: int | None, time_base: Fraction | None) -> float | None:
        if pts is None or time_base is None:
            return None
        t = float(pts * time_base)
        if self._t0 is None:
            self._t0 = t
        return t - self._t0


class VideoSampler:
    def __init__(self, options: DecodeOptions | None = None) -> None:
        self.options = o = options or DecodeOptions()
        self._next_t = 0.0
        self._next_face_t = 0.0
        self._step = 1.0 / o.analysis_fps
        self._face_step = 1.0 / o.face_fps if o.face_fps > 0 else float("inf")
        #: Make the grey pictures for faces (a session degraded to level 2 wants none).
        self.faces = True

    def follow(self, session: LiveSession) -> None:
        """Sample as ``session`` wants now: whether faces are wanted (not at degrade level 2). The rate stays:
        a degraded session analyses every other thumbnail and measures the motion of each one it analyses
        against the thumbnail just before (:class:`~pipelines.live.analyzer.LiveAnalyzer`); a thumbnail is
        cheap next to its analysis."""
        self.faces = session.analysis_faces

    def wants(self, t: float) -> bool:
        """Whether a frame at media time ``t`` would be sampled (cheap: lets callers skip a thread hop)."""
        return t + 1e-6 >= self._next_t

    def offer(self, frame: av.VideoFrame, t: float) -> VideoFrame | None:
        """The analysis frame for ``frame`` at media time ``t``, or None when it is not needed."""
        if not self.wants(t):
            return None
        o = self.options
        self._next_t = max(self._next_t + self._step, t + self._step / 2)
        aspect = frame.height / max(1, frame.width)
        tw, th = _even(o.thumb_width), _even(o.thumb_width * aspect)
        rgb = thumbnail_rgb(frame, tw, th)
        gray: np.ndarray | None = None
        if t + 1e-6 >= self._next_face_t:  # the schedule runs on while faces are off (no burst after)
            self._next_face_t = max(self._next_face_t + self._face_step, t + self._face_step / 2)
            if self.faces:
                fw = _even(min(o.face_width, frame.width))
                gray = frame.to_ndarray(width=fw, height=_even(fw * aspect), format="gray",
                                        interpolation="FAST_BILINEAR")
        return VideoFrame(pts_s=t, rgb=rgb, gray=gray)


class AudioIngest:
    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="flt", layout="stereo", rate=AUDIO_RATE)

    def convert(self, frame: av.AudioFrame, t: float) -> list[AudioFrame]:
        if frame.format.name == "s16" and frame.layout.name == "stereo" and frame.sample_rate == AUDIO_RATE:
            # what aiortc's Opus decoder gives: packed 16-bit stereo at 48 kHz, no resampling needed
            pcm = frame.to_ndarray().reshape(-1, 2)
            return [AudioFrame(pts_s=t, samples=pcm.astype(np.float32) * np.float32(1 / 32768),
                               sample_rate=AUDIO_RATE)]
        out: list[AudioFrame] = []
        for f in self._resampler.resample(frame):
            samples = f.to_ndarray().reshape(-1, 2).astype(np.float32)  # packed flt: (1, n*2)
            out.append(AudioFrame(pts_s=t, samples=samples, sample_rate=AUDIO_RATE))
            t += samples.shape[0] / AUDIO_RATE
        return out


def timed_frames(container: av.container.InputContainer) -> Iterator[tuple[float, av.VideoFrame | av.AudioFrame]]:
    """Decoded frames of the first video and audio streams, each with its track's media time (from 0)."""
    streams = container.streams.video[:1] + container.streams.audio[:1]
    vclock, aclock = TrackClock(), TrackClock()
    for packet in container.demux(*streams):
        for frame in packet.decode():
            if isinstance(frame, av.VideoFrame):
                t = vclock(frame.pts, frame.time_base)
            elif isinstance(frame, av.AudioFrame):
                t = aclock(frame.pts, frame.time_base)
            else:
                continue
            if t is not None:
                yield t, frame


async def feed_items(session: LiveSession, items: Sequence[tuple[float, VideoFrame | AudioFrame]],
                     clock: Clock) -> None:
    """Push media already decoded and sampled (``(media s, frame)`` in time order) into ``session``, each
    when its time comes on ``clock`` (media time = clock time from the clock's now)."""
    for t, item in items:
        if t > clock.now():
            await clock.sleep(t - clock.now())
        if isinstance(item, VideoFrame):
            session.push_video(item)
        else:
            session.push_audio(item)


async def feed_file(session: LiveSession, path: str, clock: Clock, *, realtime: bool = True,
                    loop: bool = False, speed: float = 1.0) -> float:
    """Decode ``path`` and push it into ``session`` as a live source would; returns media seconds fed.

    With ``realtime`` the frames are pushed when their time comes on ``clock`` (``speed`` x).
    """
    sampler = VideoSampler()
    offset = 0.0
    fed = 0.0
    start = clock.now()
    while True:
        try:
            container = av.open(path)
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"cannot open {path}: {exc}") from exc
        with container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream")
            audio = AudioIngest()
            last = 0.0
            for t, frame in timed_frames(container):
                last = max(last, t)
                if realtime:
                    wait = start + (offset + t) / speed - clock.now()
                    if wait > 0:
                        await clock.sleep(wait)
                else:
                    await asyncio.sleep(0)
                if session.closed:
                    return fed
                if isinstance(frame, av.VideoFrame):
                    sampler.follow(session)  # a degraded session wants fewer frames
                    vf = sampler.offer(frame, offset + t)
                    if vf is not None:
                        session.push_video(vf)
                else:
                    for af in audio.convert(frame, offset + t):
                        session.push_audio(af)
                fed = offset + last
        if not loop:
            return fed
        offset = fed + 0.04
