"""The gRPC methods of the gateway replica (``backscore.v1.Backscore``, serve/proto/backscore/v1/backscore.proto).

:class:`GrpcMethods` is a mixin: the Ray Serve ingress class (:mod:`serve.gateway`) inherits it
next to :class:`~serve.core.GatewayCore`, whose attributes are all it uses:

* ``self.models`` -- the :class:`~pipelines.live.models.LiveModels` live sessions run on,
* ``self.live_options`` -- the :class:`~pipelines.live.options.LiveOptions` a session starts from,
* ``self.jobs`` -- the :class:`~serve.jobs.JobRunner` blocking work runs on (never the event loop),
* ``self.workdirs`` -- the :class:`~serve.jobs.Workdirs` an upload is written to,
* ``self.library_spec(name)`` -- the library a Recommend request names (``LibraryError`` if unknown),
* ``self.job_options(...)`` -- a client's options as a validated :class:`~pipelines.options.JobOptions`
  with the server's library and music engine (the same as HTTP's),
* ``self.max_upload_bytes`` -- the largest video a client may send (``BACKSCORE_MAX_UPLOAD_MB``,
  the same limit as HTTP uploads),
* ``self.live_slots`` -- the :class:`~serve.jobs.SessionSlots` a ``Stream`` takes one of, shared with
  the WebRTC sessions (``max_live_sessions`` for both transports),
* ``self.access`` -- the :class:`~serve.access.AccessPolicy`: each method first checks the call's
  ``authorization`` metadata (``Bearer <key>``) and its key's requests a minute, a job holds one of the
  key's job slots, a ``Stream`` a lease on its live minutes (ended RESOURCE_EXHAUSTED when they run
  out). In local mode (no keys) none of this applies. ``Check`` (health) is always open.

Ray Serve's gRPC proxy routes ``/backscore.v1.Backscore/Analyze`` to the ingress method named
``Analyze`` (and so on), passing the request message, and -- because the methods take a
``grpc_context`` argument -- a :class:`ray.serve.grpc_util.RayServegRPCContext`. Client
streaming (``Stream``) arrives as a :class:`ray.serve.grpc_util.gRPCInputStream`. Messages are
turned into the pipelines' types and back by :mod:`serve.grpc.protocol`.

Status codes: each call runs in a :class:`_Call`, which sets the code and details on
``grpc_context`` and raises :class:`GrpcError`; Serve then returns that code (not INTERNAL) with
the details. The code of a project error comes from the one table of :mod:`pipelines.errors`:

* UNAUTHENTICATED -- no ``authorization`` metadata, or not a key this server knows (keys configured).
* PERMISSION_DENIED -- the key may not do this at all (a quota of 0 jobs or live minutes).
* INVALID_ARGUMENT -- bad media (not a video, truncated, empty), bad options, an unknown library,
  malformed live messages; the details are the pipelines' one-line message (server paths removed).
* RESOURCE_EXHAUSTED -- an upload over ``max_upload_bytes``, a live frame or audio chunk over its
  limit (:data:`~serve.grpc.protocol.MAX_THUMB_SIDE`, ...), or a key's quota used up (the details say
  when to retry: gRPC has no ``Retry-After``).
* UNAVAILABLE -- the job queue is full (retry later), an engine cannot run here.
* INTERNAL -- an engine failed or an output could not be written (with its message), or a bug
  (``"internal error: <TypeName>"``, the traceback in the log).
* CANCELLED -- the client went away (recorded in the metrics; nobody is left to read it).

``grpc.health.v1.Health/Check`` is answered by :meth:`GrpcMethods.Check` when the deployment
registers ``grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server`` in
``grpc_servicer_functions`` (see :data:`GRPC_SERVICER_FUNCTIONS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from pipelines.aio import finish_even_if_cancelled
from pipelines.errors import InputError, LimitError, QuotaError
from pipelines.live.admission import admit
from pipelines.live.models import LiveModels
from pipelines.live.options import LiveOptions
from pipelines.live.pacing import FramePacer, paced_frames
from pipelines.live.session import LiveSession
from pipelines.offline.jobs import analyze_file, bgm_chunks, pcm16, recommend_file
from pipelines.options import JobOptions
from serve.access import AccessPolicy, LiveLease
from serve.grpc.calls import GrpcError, _Call
from serve.grpc.jobs import GrpcJobMethods
from serve.grpc.protocol import (
    analyze_reply,
    audio_frame,
    bgm_message,
    job_fields,
    live_options,
    mood_message,
    recommend_reply,
    video_frame,
)
from serve.jobs import JobRunner, SessionSlots, Workdirs
from serve.metrics import ACTIVE_SESSIONS, SESSIONS_TOTAL, PrometheusHooks
from serve.proto.backscore.v1 import backscore_pb2 as pb

if TYPE_CHECKING:
    from grpc_health.v1 import health_pb2
    from ray.serve.grpc_util import RayServegRPCContext

log = logging.getLogger(__name__)

#: ``gRPCOptions.grpc_servicer_functions`` for the proxy: our service (the generated registration with
#: requests that do not decode answered INVALID_ARGUMENT, :mod:`serve.grpc.server`) and the standard
#: health service.
GRPC_SERVICER_FUNCTIONS = [
    "serve.grpc.server.add_backscore_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]
SERVICE_NAME = "backscore.v1.Backscore"

MiB = 1024 * 1024
#: Music frames (``LiveOptions.frame_ms``, 20 ms) per MusicChunk message.
FRAMES_PER_MESSAGE = 5
#: Output messages kept for a slow reader before the oldest are dropped (~10 s of music).
OUT_QUEUE = 128


_SAFE_EXT = re.compile(r"^\.[A-Za-z0-9]{1,5}$")


def _suffix(filename: str) -> str:
    ext = os.path.splitext(os.path.basename(filename or ""))[1]
    return ext.lower() if _SAFE_EXT.match(ext) else ".mp4"


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


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


class GrpcMethods(GrpcJobMethods):
    """``backscore.v1.Backscore`` for the Ray Serve ingress deployment (see the module doc); the async job methods
    (``StartJob``, ``WatchJob``, ``CancelJob``) come from :class:`serve.grpc.jobs.GrpcJobMethods`."""

    # What the host provides (serve.core.GatewayCore).
    models: LiveModels
    live_options: LiveOptions
    jobs: JobRunner
    workdirs: Workdirs
    live_slots: SessionSlots
    max_upload_bytes: int
    access: AccessPolicy
    live_policy: Any  # pipelines.live.admission.AdmissionPolicy, or None
    grpc_live: dict[str, tuple[LiveSession, FramePacer]]

    if TYPE_CHECKING:
        def library_spec(self, name: str) -> str: ...

        def check_music_engine(self, name: str | None) -> None: ...

        def job_options(self, *, style: str | None = None, seed: int = 0, faces: bool = True, top_k: int = 5,
                        per_segment: bool = False, library: str = "catalog") -> JobOptions: ...

    # --------------------------------------------------------------- helpers
    @contextlib.asynccontextmanager
    async def _upload(self, media: pb.MediaRequest, call: _Call) -> AsyncIterator[str]:
        """The uploaded video in a private temporary folder, removed afterwards."""
        size = len(media.video)
        if size == 0:
            raise InputError("no video: MediaRequest.video is empty")
        if size > self.max_upload_bytes:
            raise LimitError(f"video of {size / MiB:.1f} MiB is larger than this server accepts "
                             f"({self.max_upload_bytes / MiB:.0f} MiB)")
        folder = self.workdirs.create("backscore-grpc-")
        path = os.path.join(folder, "upload" + _suffix(media.filename))
        call.replace[path] = os.path.basename(media.filename) or "the uploaded video"
        call.replace[folder] = "<upload>"
        try:
            await self.jobs.run(_write, path, media.video)
            yield path
        finally:
            await self.workdirs.remove(folder)

    # --------------------------------------------------------------- offline jobs
    async def Analyze(self, request: pb.MediaRequest,
                      grpc_context: RayServegRPCContext | None = None) -> pb.AnalyzeReply:
        async with _Call("Analyze", grpc_context) as call:
            who = self.access.admit_grpc(grpc_context)
            with self.access.job(who):
                options = self.job_options(**job_fields(request.options))
                async with self._upload(request, call) as path:
                    data = await self.jobs.run(analyze_file, path, options)
            return analyze_reply(data)

    async def Recommend(self, request: pb.RecommendRequest,
                        grpc_context: RayServegRPCContext | None = None) -> pb.RecommendReply:
        async with _Call("Recommend", grpc_context) as call:
            who = self.access.admit_grpc(grpc_context)
            with self.access.job(who):
                library = self.library_spec(request.library)
                options = self.job_options(**job_fields(request.media.options), top_k=int(request.top_k) or 5,
                                           per_segment=bool(request.per_segment), library=request.library)
                if library != "catalog":
                    call.replace[library] = request.library.strip()
                async with self._upload(request.media, call) as path:
                    data = await self.jobs.run(recommend_file, path, options)
            return recommend_reply(data)

    async def Score(self, request: pb.ScoreRequest,
                    grpc_context: RayServegRPCContext | None = None) -> AsyncIterator[pb.BgmChunk]:
        async with _Call("Score", grpc_context) as call:
            who = self.access.admit_grpc(grpc_context)
            with self.access.job(who):
                options = dataclasses.replace(self.job_options(**job_fields(request.media.options)),
                                              loudness=request.loudness or None)
                async with self._upload(request.media, call) as path:
                    chunks = self.jobs.iterate(bgm_chunks(path, options))
                    try:
                        while (chunk := await chunks.next()) is not None:
                            yield bgm_message(chunk)
                    finally:
                        # waits for a step still running in the pool (cancelled client), then closes the stream
                        await finish_even_if_cancelled(asyncio.ensure_future(chunks.aclose()))

    # --------------------------------------------------------------- live
    async def Stream(self, requests: AsyncIterator[pb.LiveInput],
                     grpc_context: RayServegRPCContext | None = None) -> AsyncIterator[pb.LiveOutput]:
        async with _Call("Stream", grpc_context):
            who = self.access.admit_grpc(grpc_context)
            try:
                first = await anext(requests)
            except StopAsyncIteration:
                raise InputError("empty stream: the first message must be a StreamConfig") from None
            if first.WhichOneof("kind") != "config":
                raise InputError("the first message of a Stream must be a StreamConfig")
            options = live_options(self.live_options, first.config)
            self.check_music_engine(options.engine)
            lease = self.access.live_lease(who)  # RESOURCE_EXHAUSTED when the key's live minutes are used up
            try:
                admit(self.live_policy)  # UNAVAILABLE when this process's measured headroom has no room for one more
                self.live_slots.acquire()  # UNAVAILABLE when the replica runs all the live sessions it may
            except BaseException:
                if lease is not None:
                    lease.release()
                raise
            out = _Outbox()
            paced: list[FramePacer] = []  # the output pacer, once the session exists (its late-frame count)
            session = LiveSession(self.models, options, hooks=PrometheusHooks(),
                                  on_report=lambda r: out.put(pb.LiveOutput(mood=mood_message(
                                      r, paced[0] if paced else None))))
            paced.append(FramePacer(session.clock, options.frame_samples))
            self.grpc_live[session.session_id] = (session, paced[0])
            if self.live_policy is not None:
                self.live_policy.admitted()
            ACTIVE_SESSIONS.labels(transport="grpc").inc()
            SESSIONS_TOTAL.labels(transport="grpc").inc()
            session.start()
            reader = asyncio.create_task(self._read_live(requests, session), name=f"grpc-in-{session.session_id}")
            pacer = asyncio.create_task(self._pace_live(session, out, paced[0]),
                                        name=f"grpc-out-{session.session_id}")
            # a session open when its key's live minutes run out ends there, RESOURCE_EXHAUSTED
            watch = asyncio.create_task(self._watch_lease(lease), name=f"grpc-quota-{session.session_id}") \
                if lease is not None else None
            getter: asyncio.Task[pb.LiveOutput] | None = None
            try:
                while True:
                    if getter is None:
                        getter = asyncio.create_task(out.queue.get())
                    waiting: set[asyncio.Task[Any]] = {getter, reader, pacer} | ({watch} if watch else set())
                    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if getter in done:
                        msg = getter.result()
                        getter = None
                        yield msg
                        continue
                    if watch is not None and watch in done:
                        watch.result()  # raises the QuotaError
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
                tasks = [t for t in (getter, reader, pacer, watch) if t is not None]
                await finish_even_if_cancelled(asyncio.create_task(
                    self._end_live(session, tasks, out, lease), name=f"grpc-end-{session.session_id}"))

    async def _watch_lease(self, lease: LiveLease) -> None:
        """Returns never; raises :class:`QuotaError` once ``lease``'s key has used up its live minutes."""
        while (why := lease.exhausted()) is None:
            await asyncio.sleep(self.access.live_check_s)
        raise QuotaError(why)

    async def _end_live(self, session: LiveSession, tasks: list[asyncio.Task[Any]], out: _Outbox,
                        lease: LiveLease | None = None) -> None:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await session.close()
        finally:
            ACTIVE_SESSIONS.labels(transport="grpc").dec()
            self.live_slots.release()
            if self.grpc_live.pop(session.session_id, None) is not None and self.live_policy is not None:
                self.live_policy.released()
            if lease is not None:
                lease.release()
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
                raise InputError("StreamConfig may only be the first message of a Stream")
            else:
                raise InputError("empty LiveInput message: set one of config, video, audio")

    @staticmethod
    async def _pace_live(session: LiveSession, out: _Outbox, pacer: FramePacer) -> None:
        frames: list[np.ndarray] = []
        first = 0
        async for pts, frame in paced_frames(session, pacer):
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
