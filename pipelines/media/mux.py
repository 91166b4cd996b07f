"""Put a new soundtrack under a video: copy the video stream's packets, encode the audio.

The video stream is copied packet for packet (no re-encode, no quality loss, fast) whenever
the output container can hold its codec; otherwise it is re-encoded (H.264, or VP9 for
WebM) and the result says so. The audio track is the mix, starting at the first video
frame and exactly as long as the video.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
import av.error
import numpy as np
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from pipelines.cancel import check_cancelled
from pipelines.errors import InputError, OutputError

log = logging.getLogger(__name__)

OUTPUT_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm")

#: Video codecs each output container takes as a stream copy.
_COPYABLE: dict[str, frozenset[str]] = {
    "mp4": frozenset({"h264", "hevc", "mpeg4", "av1", "vp9"}),
    "mov": frozenset({"h264", "hevc", "mpeg4", "mjpeg", "prores", "av1"}),
    "matroska": frozenset({"h264", "hevc", "mpeg4", "av1", "vp8", "vp9", "theora", "mpeg2video", "mjpeg",
                           "msmpeg4v3", "msmpeg4v2"}),
    "webm": frozenset({"vp8", "vp9", "av1"}),
}

AUDIO_BIT_RATE = 192_000

_FORMAT_BY_EXT = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}


@dataclass(frozen=True)
class MuxResult:
    video_copied: bool
    video_codec: str
    audio_codec: str
    duration_s: float


def _audio_codec(fmt: str) -> str:
    return "libopus" if fmt == "webm" else "aac"


def mux(input_path: str, output_path: str, audio: np.ndarray, sample_rate: int, duration_s: float) -> MuxResult:
    """Write ``output_path`` (a temporary path; the caller renames it) with ``audio`` as the sound."""
    ext = os.path.splitext(output_path)[1].lower()
    # atomic_output keeps the real extension last (".x.partial.mp4")
    fmt = _FORMAT_BY_EXT.get(ext)
    if fmt is None:
        raise OutputError(f"unsupported output extension {ext!r}; use one of {', '.join(OUTPUT_EXTENSIONS)}")
    try:
        inp = av.open(input_path, mode="r")
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot reopen input for muxing: {exc}") from exc
    try:
        return _mux(inp, output_path, fmt, audio, sample_rate, duration_s)
    finally:
        inp.close()


def _mux(inp: av.container.InputContainer, output_path: str, fmt: str, audio: np.ndarray, sample_rate: int,
         duration_s: float) -> MuxResult:
    in_v = inp.streams.video[0]
    codec = in_v.codec_context.name
    copy = codec in _COPYABLE.get(fmt, frozenset())
    acodec = _audio_codec(fmt)
    # faststart: the index goes before the media data, so players and upload services can
    # start on the file before it has fully arrived.
    options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
    with av.open(output_path, mode="w", format=fmt, options=options) as out:
        if copy:
            out_v = out.add_stream_from_template(in_v)
        else:
            vcodec = "libvpx-vp9" if fmt == "webm" else "libx264"
            rate = in_v.average_rate or in_v.guessed_rate or Fraction(25)
            out_v = cast(VideoStream, out.add_stream(vcodec, rate=rate))
            out_v.width = in_v.codec_context.width
            out_v.height = in_v.codec_context.height
            out_v.pix_fmt = "yuv420p"
            out_v.options = {"preset": "veryfast", "crf": "20"} if vcodec == "libx264" else {
                "deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"}
            log.info("video codec %s cannot be copied into %s: re-encoding with %s", codec, fmt, vcodec)
        out_a = cast(AudioStream, out.add_stream(acodec, rate=sample_rate))
        out_a.layout = "stereo"
        out_a.bit_rate = AUDIO_BIT_RATE
        if acodec == "aac":
            # FFmpeg's "fast" AAC coder: ~1.7x faster than the default two-loop search,
            # transparent at 192 kb/s for music under video.
            out_a.options = {"aac_coder": "fast"}
        start_s = _video_start(in_v)
        n_total = int(round(duration_s * sample_rate))
        audio_out = _AudioWriter(out, out_a, audio[:n_total], sample_rate, start_s)
        _write_video(inp, in_v, out, out_v, copy, audio_out)
        audio_out.finish()
        return MuxResult(video_copied=copy, video_codec=out_v.codec_context.name, audio_codec=acodec,
                         duration_s=duration_s)


def _video_start(stream: VideoStream) -> float:
    if stream.start_time is not None and stream.time_base is not None:
        return max(0.0, float(stream.start_time * stream.time_base))
    return 0.0


class _AudioWriter:
    """Encodes the new soundtrack a little ahead of the video, so the file is interleaved."""

    LEAD_S = 0.5

    def __init__(self, out: av.container.OutputContainer, stream: AudioStream, audio: np.ndarray,
                 sample_rate: int, start_s: float) -> None:
        self._out, self._stream, self._sr = out, stream, sample_rate
        self._audio = audio  # (n, 2); clipped and made planar a block at a time (no full-length copies)
        self._base = int(round(start_s * sample_rate))
        self._start_s = start_s
        self._pos = 0
        self._block = 960 * 10

    def until(self, t_s: float) -> None:
        """Encode audio up to video time ``t_s`` (+ a small lead)."""
        n = self._audio.shape[0]
        ahead_s = t_s - self._start_s + self.LEAD_S
        limit = n if ahead_s >= n / self._sr else int(ahead_s * self._sr)
        while self._pos < limit:
            block = np.clip(self._audio[self._pos : self._pos + self._block], -1.0, 1.0)
            chunk = np.ascontiguousarray(block.T, dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = self._sr
            frame.pts = self._base + self._pos
            frame.time_base = Fraction(1, self._sr)
            self._out.mux(self._stream.encode(frame))
            self._pos += chunk.shape[1]

    def finish(self) -> None:
        self.until(float("inf"))
        self._out.mux(self._stream.encode(None))


def _write_video(inp: av.container.InputContainer, in_v: VideoStream, out: av.container.OutputContainer,
                 out_v: VideoStream, copy: bool, audio: _AudioWriter) -> None:
    if copy:
        for packet in inp.demux(in_v):
            check_cancelled()
            if packet.dts is None:  # the demuxer's flush packet
                continue
            if packet.time_base is not None:
                audio.until(float(packet.dts * packet.time_base))
            packet.stream = out_v
            out.mux(packet)
        return
    in_v.thread_type = "AUTO"
    first = True
    try:
        for frame in inp.decode(in_v):
            check_cancelled()
            if first:
                first = False
                rotation = int(getattr(frame, "rotation", 0) or 0)
                if rotation:  # keep the display rotation of phone videos
                    out_v.set_display_rotation(rotation)
            if frame.pts is not None and frame.time_base is not None:
                audio.until(float(frame.pts * frame.time_base))
            frame.pict_type = av.video.frame.PictureType.NONE
            out.mux(out_v.encode(frame.reformat(format="yuv420p")))
    except av.error.FFmpegError as exc:
        raise InputError(f"corrupt video data while re-encoding: {exc}") from exc
    out.mux(out_v.encode(None))
