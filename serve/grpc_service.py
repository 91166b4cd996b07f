"""The gRPC methods of the ingress deployment (``backscore.v1.Backscore``, serve/proto/backscore/v1/backscore.proto).

:class:`GrpcMethods` is a mixin: the Ray Serve ingress class inherits it and provides

* ``self.models`` -- a :class:`~pipelines.live.models.LiveModels` for live sessions,
* ``async self.run_job(fn, *args)`` -- runs blocking work in a bounded thread pool,
* ``self.live_options`` -- the :class:`~pipelines.live.session.LiveOptions` a session starts from.

Ray Serve's gRPC proxy routes ``/backscore.v1.Backscore/Analyze`` to the ingress method named
``Analyze`` (and so on), passing the request message, and -- because the methods take a
``grpc_context`` argument -- a :class:`ray.serve.grpc_util.RayServegRPCContext`. Client
streaming (``Stream``) arrives as a :class:`ray.serve.grpc_util.gRPCInputStream`.

Status codes: the methods set the code and details on ``grpc_context`` and raise
:class:`GrpcError`; Serve then returns that code (not INTERNAL) with the details.

* INVALID_ARGUMENT -- bad media (not a video, truncated, empty), bad options, malformed live
  messages; the details are the pipelines' one-line message (server temp paths removed).
* RESOURCE_EXHAUSTED -- an upload over :attr:`GrpcMethods.grpc_max_upload_bytes`
  (``BACKSCORE_GRPC_MAX_UPLOAD_MB``, default 256), a live frame or audio chunk over its limit.
* CANCELLED -- the client went away (recorded in the metrics; nobody is left to read it).

``grpc.health.v1.Health/Check`` is answered by :meth:`GrpcMethods.Check` when the deployment
registers ``grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server`` in
``grpc_servicer_functions`` (see :data:`GRPC_SERVICER_FUNCTIONS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import grpc
import numpy as np

from pipelines.aio import finish_even_if_cancelled
from pipelines.errors import BackscoreError, OutputError
from pipelines.frames import AUDIO_RATE, AudioFrame, VideoFrame
from pipelines.live.models import LiveModels
from pipelines.live.options import LiveOptions
from pipelines.live.pacing import paced_frames
from pipelines.live.reports import MoodReport
from pipelines.live.session import LiveSession
from pipelines.offline.jobs import BgmChunk, JobOptions, analyze_file, bgm_chunks, pcm16, recommend_file
from serve.metrics import ACTIVE_SESSIONS, REQUEST_SECONDS, REQUESTS_TOTAL, SESSIONS_TOTAL, PrometheusHooks
from serve.proto.backscore.v1 import backscore_pb2 as pb

if TYPE_CHECKING:
    from grpc_health.v1 import health_pb2
    from ray.serve.grpc_util import RayServegRPCContext

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``gRPCOptions.grpc_servicer_functions`` for the proxy: our service and the standard health service.
GRPC_SERVICER_FUNCTIONS = [
    "serve.proto.backscore.v1.backscore_pb2_grpc.add_BackscoreServicer_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]
SERVICE_NAME = "backscore.v1.Backscore"

MiB = 1024 * 1024
#: Live input limits (per message).
MAX_THUMB_SIDE = 640
MAX_GRAY_SIDE = 1024
MAX_AUDIO_BYTES = AUDIO_RATE * 4  # 1 s of s16le stereo
#: Music frames (``LiveOptions.frame_ms``, 20 ms) per MusicChunk message.
FRAMES_PER_MESSAGE = 5
#: Output messages kept for a slow reader before the oldest are dropped (~10 s of music).
OUT_QUEUE = 128


def _env_upload_bytes() -> int:
    return int(float(os.environ.get("BACKSCORE_GRPC_MAX_UPLOAD_MB", "256")) * MiB)


def _env_libraries() -> dict[str, str]:
    """``BACKSCORE_GRPC_LIBRARIES=name=/path/a.sqlite,other=/path/b.sqlite``."""
    out: dict[str, str] = {}
    for item in os.environ.get("BACKSCORE_GRPC_LIBRARIES", "").split(","):
        name, sep, path = item.strip().partition("=")
        if sep and name and path:
            out[name.strip()] = path.strip()
    return out


class GrpcError(Exception):
    """Ends an RPC with ``code``; the code and details are also set on the Serve gRPC context.

    It must survive pickling: Ray carries it from the replica to the proxy (inside Serve's
    ``gRPCStatusError``), and an exception that cannot be rebuilt there turns into INTERNAL
    "Failed to deserialize exception".
    """

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code = code
        self.details = details

    def __str__(self) -> str:
        return self.details


class _Context(Protocol):
    def set_code(self, code: grpc.StatusCode) -> None: ...

    def set_details(self, details: str) -> None: ...


def _bad(details: str) -> GrpcError:
    return GrpcError(grpc.StatusCode.INVALID_ARGUMENT, details)


def _too_large(details: str) -> GrpcError:
    return GrpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, details)


class _Call:
    """One RPC: maps exceptions to status codes on the context, records the request metrics."""

    def __init__(self, endpoint: str, context: _Context | None, replace: Mapping[str, str] | None = None) -> None:
        self.endpoint = endpoint
        self.context = context
        #: Substrings (server paths) to hide from error details.
        self.replace: dict[str, str] = dict(replace or {})
        self._t0 = 0.0

    async def __aenter__(self) -> _Call:
        self._t0 = time.perf_counter()
        return self

    def _record(self, code: grpc.StatusCode) -> None:
        labels = {"endpoint": f"grpc.{self.endpoint}", "code": code.name}
        REQUESTS_TOTAL.labels(**labels).inc()
        REQUEST_SECONDS.labels(**labels).observe(time.perf_counter() - self._t0)

    def _clean(self, text: str) -> str:
        for old, new in sorted(self.replace.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(old, new)
        return text

    def _set(self, code: grpc.StatusCode, details: str) -> None:
        if self.context is not None:
            self.context.set_code(code)
            self.context.set_details(details)

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        """Never swallows: re-raises ``exc`` or the :class:`GrpcError` it maps to."""
        if exc is None:
            self._record(grpc.StatusCode.OK)
            return
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self._record(grpc.StatusCode.CANCELLED)
            self._set(grpc.StatusCode.CANCELLED, "client cancelled")
            return
        if isinstance(exc, GrpcError):
            err = GrpcError(exc.code, self._clean(exc.details))
        elif isinstance(exc, BackscoreError) and not isinstance(exc, OutputError):
            err = _bad(self._clean(str(exc)))
        else:
            log.exception("gRPC %s failed", self.endpoint)
            err = GrpcError(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")
        self._record(err.code)
        self._set(err.code, err.details)
        if err is exc:
            return
        raise err from exc


class _LockedIterator:
    """A blocking iterator driven from a thread pool one step at a time; ``close`` waits for a running step."""

    def __init__(self, it: Iterator[Any]) -> None:
        self._it = it
        self._lock = threading.Lock()
        self._closed = False

    def next_or_none(self) -> Any:
        with self._lock:
            if self._closed:
                return None
            return next(self._it, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            close = getattr(self._it, "close", None)
            if close is not None:
                close()


_SAFE_EXT = re.compile(r"^\.[A-Za-z0-9]{1,5}$")


def _suffix(filename: str) -> str:
    ext = os.path.splitext(os.path.basename(filename or ""))[1]
    return ext.lower() if _SAFE_EXT.match(ext) else ".mp4"


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def job_options(o: pb.JobOptions, **kw: Any) -> JobOptions:
    """Proto options -> :class:`~pipelines.offline.jobs.JobOptions` (raises OptionError on bad values)."""
    style = o.style.strip().lower() or None
    if style == "auto":
        style = None
    faces = o.faces if o.HasField("faces") else True
    return JobOptions(style=style, seed=int(o.seed), faces=faces, **kw)


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


def mood_message(r: MoodReport) -> pb.MoodReport:
    m = pb.MoodReport(
        session_id=r.session_id, media_s=r.media_s, valence=r.valence, arousal=r.arousal, emotion=r.emotion,
        confidence=r.confidence, probs=r.probs, underruns=r.underruns, buffer_s=r.buffer_s, windows=r.windows,
        mood_changes=r.mood_changes,
    )
    if r.music is not None:
        mu = r.music
        m.music.CopyFrom(pb.MusicInfo(
            tempo_bpm=float(mu.get("tempo_bpm", 0.0)), key=str(mu.get("key", "")), mode=str(mu.get("mode", "")),
            style=str(mu.get("style", "")), emotion=str(mu.get("emotion", "")), chord=str(mu.get("chord", "")),
            section=int(mu.get("section", 0)), transition=bool(mu.get("transition", False)),
        ))
    if r.last_change_latency_s is not None:
        m.last_change_latency_s = r.last_change_latency_s
    return m


# ----------------------------------------------------------------------------- live input


def _pts(x: float, what: str) -> float:
    if not math.isfinite(x) or x < 0:
        raise _bad(f"{what}.pts_s must be a finite number >= 0 (got {x})")
    return float(x)


def video_frame(m: pb.VideoFrame) -> VideoFrame:
    """Validate a live VideoFrame message and make the pipeline's frame."""
    t = _pts(m.pts_s, "video")
    w, h = int(m.width), int(m.height)
    if w <= 0 or h <= 0:
        raise _bad(f"video frame needs width and height (got {w}x{h})")
    if w > MAX_THUMB_SIDE or h > MAX_THUMB_SIDE:
        raise _too_large(f"video frame {w}x{h} is too large: send analysis thumbnails of at most "
                         f"{MAX_THUMB_SIDE}x{MAX_THUMB_SIDE} (96 px wide is enough)")
    if len(m.rgb) != w * h * 3:
        raise _bad(f"video frame {w}x{h}: rgb must hold {w * h * 3} bytes (RGB24), got {len(m.rgb)}")
    rgb = np.frombuffer(m.rgb, np.uint8).reshape(h, w, 3)
    gray: np.ndarray | None = None
    if m.gray:
        gw, gh = int(m.gray_width), int(m.gray_height)
        if gw <= 0 or gh <= 0:
            raise _bad(f"gray picture needs gray_width and gray_height (got {gw}x{gh})")
        if gw > MAX_GRAY_SIDE or gh > MAX_GRAY_SIDE:
            raise _too_large(f"gray picture {gw}x{gh} is too large (at most {MAX_GRAY_SIDE}x{MAX_GRAY_SIDE})")
        if len(m.gray) != gw * gh:
            raise _bad(f"gray picture {gw}x{gh} must hold {gw * gh} bytes, got {len(m.gray)}")
        gray = np.frombuffer(m.gray, np.uint8).reshape(gh, gw)
    return VideoFrame(pts_s=t, rgb=rgb, gray=gray)


def audio_frame(m: pb.AudioChunk) -> AudioFrame:
    """Validate a live AudioChunk (s16le 48 kHz stereo) and make the pipeline's float frame."""
    t = _pts(m.pts_s, "audio")
    n = len(m.pcm)
    if n % 4:
        raise _bad(f"audio pcm must be s16le stereo (4 bytes per sample frame); got {n} bytes")
    if n > MAX_AUDIO_BYTES:
        raise _too_large(f"audio chunk of {n / (4 * AUDIO_RATE):.2f} s is too large: send at most 1 s per message")
    samples = np.frombuffer(m.pcm, "<i2").astype(np.float32).reshape(-1, 2) / np.float32(32768.0)
    return AudioFrame(pts_s=t, samples=samples, sample_rate=AUDIO_RATE)


def live_options(base: LiveOptions, config: pb.StreamConfig) -> LiveOptions:
    """The deployment's live options with the client's StreamConfig applied (raises OptionError)."""
    style = config.style.strip().lower() or None
    if style == "auto":
        style = None
    return dataclasses.replace(base, style=style, seed=int(config.seed), mix_original=bool(config.mix_original))


class _Outbox:
    """Bounded output queue; a slow reader loses the oldest messages, never blocks the session."""

    def __init__(self, maxsize: int = OUT_QUEUE) -> None:
        self.queue: asyncio.Queue[pb.LiveOutput] = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, msg: pb.LiveOutput) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(msg)


# ----------------------------------------------------------------------------- the methods


class GrpcMethods:
    """``backscore.v1.Backscore`` for the Ray Serve ingress deployment (see the module doc)."""

    models: LiveModels
    live_options: LiveOptions
    #: Uploads larger than this are refused with RESOURCE_EXHAUSTED.
    grpc_max_upload_bytes: int = _env_upload_bytes()
    #: Library names a Recommend request may use besides "catalog" (name -> server path).
    grpc_libraries: Mapping[str, str] = _env_libraries()

    if TYPE_CHECKING:
        async def run_job(self, fn: Callable[..., T], *args: Any) -> T: ...

    # --------------------------------------------------------------- helpers
    @contextlib.asynccontextmanager
    async def _upload(self, media: pb.MediaRequest, call: _Call) -> AsyncIterator[str]:
        """The uploaded video in a private temporary file, removed afterwards."""
        size = len(media.video)
        if size == 0:
            raise _bad("no video: MediaRequest.video is empty")
        if size > self.grpc_max_upload_bytes:
            raise _too_large(f"video of {size / MiB:.1f} MiB is larger than this server accepts "
                             f"({self.grpc_max_upload_bytes / MiB:.0f} MiB)")
        folder = tempfile.mkdtemp(prefix="backscore-grpc-")
        path = os.path.join(folder, "upload" + _suffix(media.filename))
        call.replace[path] = os.path.basename(media.filename) or "the uploaded video"
        call.replace[folder] = "<upload>"
        try:
            await self.run_job(_write, path, media.video)
            yield path
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _library(self, name: str) -> str:
        name = name.strip() or "catalog"
        if name == "catalog":
            return name
        if name in self.grpc_libraries:
            return self.grpc_libraries[name]
        known = ", ".join(["catalog", *sorted(self.grpc_libraries)])
        raise _bad(f"unknown library {name!r}; this server has: {known}")

    # --------------------------------------------------------------- offline jobs
    async def Analyze(self, request: pb.MediaRequest,
                      grpc_context: RayServegRPCContext | None = None) -> pb.AnalyzeReply:
        async with _Call("Analyze", grpc_context) as call:
            options = job_options(request.options)
            async with self._upload(request, call) as path:
                data = await self.run_job(analyze_file, path, options)
            return analyze_reply(data)

    async def Recommend(self, request: pb.RecommendRequest,
                        grpc_context: RayServegRPCContext | None = None) -> pb.RecommendReply:
        async with _Call("Recommend", grpc_context) as call:
            library = self._library(request.library)
            options = job_options(request.media.options, top_k=int(request.top_k) or 5,
                                  per_segment=bool(request.per_segment), library=library)
            if library != "catalog":
                call.replace[library] = request.library
            async with self._upload(request.media, call) as path:
                data = await self.run_job(recommend_file, path, options)
            return recommend_reply(data)

    async def Score(self, request: pb.ScoreRequest,
                    grpc_context: RayServegRPCContext | None = None) -> AsyncIterator[pb.BgmChunk]:
        async with _Call("Score", grpc_context) as call:
            options = job_options(request.media.options)
            async with self._upload(request.media, call) as path:
                chunks = _LockedIterator(bgm_chunks(path, options))
                try:
                    while True:
                        chunk: BgmChunk | None = await self.run_job(chunks.next_or_none)
                        if chunk is None:
                            break
                        yield bgm_message(chunk)
                finally:
                    # waits for a step still running in the pool (cancelled client), then closes the stream
                    await finish_even_if_cancelled(asyncio.ensure_future(self.run_job(chunks.close)))

    # --------------------------------------------------------------- live
    async def Stream(self, requests: AsyncIterator[pb.LiveInput],
                     grpc_context: RayServegRPCContext | None = None) -> AsyncIterator[pb.LiveOutput]:
        async with _Call("Stream", grpc_context):
            try:
                first = await anext(requests)
            except StopAsyncIteration:
                raise _bad("empty stream: the first message must be a StreamConfig") from None
            if first.WhichOneof("kind") != "config":
                raise _bad("the first message of a Stream must be a StreamConfig")
            options = live_options(self.live_options, first.config)
            out = _Outbox()
            session = LiveSession(self.models, options, hooks=PrometheusHooks(),
                                  on_report=lambda r: out.put(pb.LiveOutput(mood=mood_message(r))))
            ACTIVE_SESSIONS.labels(transport="grpc").inc()
            SESSIONS_TOTAL.labels(transport="grpc").inc()
            session.start()
            reader = asyncio.create_task(self._read_live(requests, session), name=f"grpc-in-{session.session_id}")
            pacer = asyncio.create_task(self._pace_live(session, out), name=f"grpc-out-{session.session_id}")
            getter: asyncio.Task[pb.LiveOutput] | None = None
            try:
                while True:
                    if getter is None:
                        getter = asyncio.create_task(out.queue.get())
                    done, _ = await asyncio.wait({getter, reader, pacer}, return_when=asyncio.FIRST_COMPLETED)
                    if getter in done:
                        msg = getter.result()
                        getter = None
                        yield msg
                        continue
                    if pacer in done:
                        pacer.result()  # raises what stopped it
                        break
                    reader.result()  # raises a bad message
                    if getattr(requests, "is_cancelled", lambda: False)():
                        raise asyncio.CancelledError("client cancelled")
                    break  # the client half-closed: end the session
                if session.error is not None:
                    raise session.error
            finally:
                # Ray re-sends a cancellation every few seconds while the request is still running: the
                # ending runs in its own task so a second one can't cut it short and leak the session.
                tasks = [t for t in (getter, reader, pacer) if t is not None]
                await finish_even_if_cancelled(asyncio.create_task(
                    self._end_live(session, tasks, out), name=f"grpc-end-{session.session_id}"))

    @staticmethod
    async def _end_live(session: LiveSession, tasks: list[asyncio.Task[Any]], out: _Outbox) -> None:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await session.close()
        finally:
            ACTIVE_SESSIONS.labels(transport="grpc").dec()
        if out.dropped:
            log.warning("gRPC stream %s: %d output messages dropped (slow reader)", session.session_id, out.dropped)

    @staticmethod
    async def _read_live(requests: AsyncIterator[pb.LiveInput], session: LiveSession) -> None:
        async for msg in requests:
            kind = msg.WhichOneof("kind")
            if kind == "video":
                session.push_video(video_frame(msg.video))
            elif kind == "audio":
                session.push_audio(audio_frame(msg.audio))
            elif kind == "config":
                raise _bad("StreamConfig may only be the first message of a Stream")
            else:
                raise _bad("empty LiveInput message: set one of config, video, audio")

    @staticmethod
    async def _pace_live(session: LiveSession, out: _Outbox) -> None:
        frames: list[np.ndarray] = []
        first = 0
        async for pts, frame in paced_frames(session):
            if not frames:
                first = pts
            frames.append(frame)
            if len(frames) == FRAMES_PER_MESSAGE:
                out.put(pb.LiveOutput(music=pb.MusicChunk(pts=first, pcm=pcm16(np.concatenate(frames)))))
                frames = []

    # --------------------------------------------------------------- health
    async def Check(self, request: health_pb2.HealthCheckRequest,
                    grpc_context: RayServegRPCContext | None = None) -> health_pb2.HealthCheckResponse:
        """``grpc.health.v1.Health/Check``: SERVING for "" and "backscore.v1.Backscore" (answered by a replica)."""
        from grpc_health.v1 import health_pb2

        if request.service not in ("", SERVICE_NAME):
            if grpc_context is not None:
                grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
                grpc_context.set_details(f"unknown service {request.service!r}")
            raise GrpcError(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

