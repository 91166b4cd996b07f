"""``backscore.v1`` messages <-> the pipelines' types: nothing about calls, status codes or Ray.

* Requests in: :func:`job_fields` (``pb.JobOptions`` -> the fields of :class:`~pipelines.options.JobOptions`),
  :func:`live_options` (``pb.StreamConfig`` applied to the server's
  :class:`~pipelines.live.options.LiveOptions`), :func:`video_frame` / :func:`audio_frame` (one
  live input message -> the pipeline's frame, validated against the limits below).
* Replies out: :func:`analyze_reply`, :func:`recommend_reply`, :func:`bgm_message` (one chunk of
  a Score stream), :func:`mood_message` (a live mood report).

A bad value raises the project's errors, reported the same way on every transport
(:mod:`pipelines.errors`): :class:`~pipelines.errors.OptionError` (a bad option) and
:class:`~pipelines.errors.InputError` (a malformed message) are INVALID_ARGUMENT,
:class:`~pipelines.errors.LimitError` (over a limit below) RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.errors import InputError, LimitError
from pipelines.frames import AUDIO_RATE, AudioFrame, VideoFrame
from pipelines.live.options import LiveOptions
from pipelines.live.pacing import FramePacer
from pipelines.live.reports import MoodReport
from pipelines.offline.jobs import BgmChunk
from pipelines.options import parse_session_fields
from serve.proto.backscore.v1 import backscore_pb2 as pb

#: Live input limits (per message): analysis thumbnails, the optional grey picture for faces, audio.
MAX_THUMB_SIDE = 640
MAX_GRAY_SIDE = 1024
MAX_AUDIO_BYTES = AUDIO_RATE * 4  # 1 s of s16le stereo


# ----------------------------------------------------------------------------- options


def job_fields(o: pb.JobOptions) -> dict[str, Any]:
    """The job options a ``pb.JobOptions`` carries, for the host's ``job_options`` (which validates them
    with :mod:`pipelines.options` and adds the server's library and music engine)."""
    return {"style": o.style, "seed": int(o.seed), "faces": o.faces if o.HasField("faces") else True}


def live_options(base: LiveOptions, config: pb.StreamConfig) -> LiveOptions:
    """The server's live options with the client's StreamConfig applied (OptionError on a bad value)."""
    changes = parse_session_fields({"style": config.style, "seed": int(config.seed),
                                    "mix_original": bool(config.mix_original), "engine": config.engine})
    return dataclasses.replace(base, **changes)


# ----------------------------------------------------------------------------- replies


def analyze_reply(data: Mapping[str, Any]) -> pb.AnalyzeReply:
    def f(x: Any) -> float:
        return float(x) if x is not None else math.nan

    return pb.AnalyzeReply(
        duration_s=f(data.get("duration_s")),
        cuts_s=[f(c) for c in data.get("cuts_s", [])],
        windows=[pb.Window(start_s=f(w["start_s"]), end_s=f(w["end_s"]), valence=f(w["valence"]),
                           arousal=f(w["arousal"]), emotion=w["emotion"], confidence=f(w["confidence"]))
                 for w in data.get("windows", [])],
        segments=[pb.Segment(start_s=f(s["start_s"]), end_s=f(s["end_s"]), emotion=s["emotion"],
                             valence=f(s["valence"]), arousal=f(s["arousal"]), confidence=f(s["confidence"]))
                  for s in data.get("segments", [])],
        timeline_json=json.dumps(data, separators=(",", ":")),
    )


def _recommendation(r: Mapping[str, Any]) -> pb.Recommendation:
    return pb.Recommendation(track_id=int(r["track_id"]), title=str(r["title"]), score=float(r["score"]),
                             reason=str(r["reason"]),
                             components={k: float(v) for k, v in r.get("components", {}).items()})


def recommend_reply(data: Mapping[str, Any]) -> pb.RecommendReply:
    return pb.RecommendReply(
        duration_s=float(data["duration_s"]), mood=str(data.get("mood", "")),
        library_size=int(data.get("library_size", 0)),
        recommendations=[_recommendation(r) for r in data.get("recommendations", [])],
        segments=[pb.SegmentRecommendations(start_s=float(s["start_s"]), end_s=float(s["end_s"]),
                                            emotion=str(s["emotion"]),
                                            recommendations=[_recommendation(r) for r in s["recommendations"]])
                  for s in data.get("segments", [])],
    )


def bgm_message(chunk: BgmChunk) -> pb.BgmChunk:
    return pb.BgmChunk(
        index=chunk.index, start_s=chunk.start_s, duration_s=chunk.duration_s, pcm=chunk.pcm,
        sample_rate=AUDIO_RATE, channels=2,
        bars=[pb.Bar(start_s=b.start_s, duration_s=b.duration_s, tempo_bpm=b.tempo_bpm, key=b.key, mode=b.mode,
                     style=b.style, emotion=b.emotion, section=b.section, transition=b.transition, chord=b.chord,
                     instruments=list(b.instruments))
              for b in chunk.bars],
    )


def mood_message(r: MoodReport, pacer: FramePacer | None = None) -> pb.MoodReport:
    """The report as a message; with the session's output ``pacer``, its count of frames sent late."""
    m = pb.MoodReport(
        session_id=r.session_id, media_s=r.media_s, valence=r.valence, arousal=r.arousal, emotion=r.emotion,
        confidence=r.confidence, probs=r.probs, underruns=r.underruns, buffer_s=r.buffer_s, windows=r.windows,
        mood_changes=r.mood_changes, urgent_changes=r.urgent_changes, degraded=r.degraded,
    )
    if pacer is not None:
        m.sender_late_frames = pacer.late_frames
        m.sender_max_late_ms = round(1000 * pacer.max_lateness_s, 1)
    if r.music is not None:
        mu = r.music
        m.music.CopyFrom(pb.MusicInfo(
            tempo_bpm=float(mu.get("tempo_bpm", 0.0)), key=str(mu.get("key", "")), mode=str(mu.get("mode", "")),
            style=str(mu.get("style", "")), emotion=str(mu.get("emotion", "")), chord=str(mu.get("chord", "")),
            section=int(mu.get("section", 0)), transition=bool(mu.get("transition", False)),
        ))
    if r.last_change_latency_s is not None:
        m.last_change_latency_s = r.last_change_latency_s
    if r.last_change_detect_s is not None:
        m.last_change_detect_s = r.last_change_detect_s
    if r.last_change_audible_s is not None:
        m.last_change_audible_s = r.last_change_audible_s
    return m


# ----------------------------------------------------------------------------- live input


def _pts(x: float, what: str) -> float:
    if not math.isfinite(x) or x < 0:
        raise InputError(f"{what}.pts_s must be a finite number >= 0 (got {x})")
    return float(x)


def video_frame(m: pb.VideoFrame) -> VideoFrame:
    """Validate a live VideoFrame message and make the pipeline's frame."""
    t = _pts(m.pts_s, "video")
    w, h = int(m.width), int(m.height)
    if w <= 0 or h <= 0:
        raise InputError(f"video frame needs width and height (got {w}x{h})")
    if w > MAX_THUMB_SIDE or h > MAX_THUMB_SIDE:
        raise LimitError(f"video frame {w}x{h} is too large: send analysis thumbnails of at most "
                         f"{MAX_THUMB_SIDE}x{MAX_THUMB_SIDE} (96 px wide is enough)")
    if len(m.rgb) != w * h * 3:
        raise InputError(f"video frame {w}x{h}: rgb must hold {w * h * 3} bytes (RGB24), got {len(m.rgb)}")
    rgb = np.frombuffer(m.rgb, np.uint8).reshape(h, w, 3)
    gray: np.ndarray | None = None
    if m.gray:
        gw, gh = int(m.gray_width), int(m.gray_height)
        if gw <= 0 or gh <= 0:
            raise InputError(f"gray picture needs gray_width and gray_height (got {gw}x{gh})")
        if gw > MAX_GRAY_SIDE or gh > MAX_GRAY_SIDE:
            raise LimitError(f"gray picture {gw}x{gh} is too large (at most {MAX_GRAY_SIDE}x{MAX_GRAY_SIDE})")
        if len(m.gray) != gw * gh:
            raise InputError(f"gray picture {gw}x{gh} must hold {gw * gh} bytes, got {len(m.gray)}")
        gray = np.frombuffer(m.gray, np.uint8).reshape(gh, gw)
    return VideoFrame(pts_s=t, rgb=rgb, gray=gray)


def audio_frame(m: pb.AudioChunk) -> AudioFrame:
    """Validate a live AudioChunk (s16le 48 kHz stereo) and make the pipeline's float frame."""
    t = _pts(m.pts_s, "audio")
    n = len(m.pcm)
    if n % 4:
        raise InputError(f"audio pcm must be s16le stereo (4 bytes per sample frame); got {n} bytes")
    if n > MAX_AUDIO_BYTES:
        raise LimitError(f"audio chunk of {n / (4 * AUDIO_RATE):.2f} s is too large: send at most 1 s per message")
    samples = np.frombuffer(m.pcm, "<i2").astype(np.float32).reshape(-1, 2) / np.float32(32768.0)
    return AudioFrame(pts_s=t, samples=samples, sample_rate=AUDIO_RATE)
