"""WebRTC transport for live sessions: signalling over HTTP, media and mood reports over one peer connection.

The browser (or any WebRTC peer) POSTs an SDP offer to ``/v1/webrtc/offer`` and gets the answer
back in the response, as aiortc's server example does (no trickle ICE: both sides gather their
candidates before sending their description). Per session:

* the client's **video** track -> :class:`~pipelines.live.ingest.VideoSampler` ->
  :meth:`LiveSession.push_video`, and its **audio** -> :class:`~pipelines.live.ingest.AudioIngest`
  -> :meth:`LiveSession.push_audio`. Each track is read by a small task into a bounded queue (the
  oldest frames are dropped when the consumer falls behind) and converted by a second task; the
  picture conversions run in a worker thread, so neither ever blocks the event loop.
* the server sends one audio track back, :class:`BgmTrack`: 20 ms, 48 kHz stereo ``s16`` frames
  from :meth:`LiveSession.pull_frame`, paced on the injected clock against ``start + k * frame``
  (no drift), ``pts`` in samples.
* a data channel opened by the client (label ``"mood"``): the server sends
  :meth:`MoodReport.to_json` as JSON text about once a second and answers ``{"type": "ping"}``
  with ``{"type": "pong"}`` (echoing ``"t"`` when given, for round-trip times).

A session ends on hang-up (``DELETE /v1/webrtc/{id}`` or the peer closing), ICE/DTLS failure, no
media for ``media_timeout_s``, no connection within ``connect_timeout_s``, or ``max_duration_s``;
:meth:`WebRtcManager.close_all` ends them all at shutdown.

``python -m serve.webrtc --port 8080`` runs a standalone dev server (no Ray) with the demo page at
``/`` over :meth:`InProcessModels.default`. The Ray Serve gateway mounts :func:`webrtc_router` and
:func:`demo_router` on its own app.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import scipy.signal  # noqa: F401  pipelines.live.session resamples on the loop and would import this lazily (~0.6 s stall)
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from engines.base import STYLES
from pipelines.clock import Clock, SystemClock
from pipelines.errors import OptionError
from pipelines.frames import AUDIO_RATE
from pipelines.live.ingest import AudioIngest, VideoSampler
from pipelines.live.models import LiveModels
from pipelines.live.options import LiveOptions
from pipelines.live.pacing import FramePacer
from pipelines.live.reports import LiveHooks, MoodReport
from pipelines.live.session import LiveSession
from serve.metrics import ACTIVE_SESSIONS, QUEUE_DEPTH, SESSIONS_TOTAL, PrometheusHooks
from serve.session_directory import SessionDirectory

log = logging.getLogger("serve.webrtc")  # not __main__ under python -m

TRANSPORT = "webrtc"
DATA_CHANNEL_LABEL = "mood"
STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}


class OfferError(ValueError):
    """A bad offer request (HTTP 400)."""


class ServerBusy(RuntimeError):
    """No room for another session (HTTP 503)."""


# --------------------------------------------------------------------------- the BGM track


class BgmTrack(MediaStreamTrack):
    """The session's BGM as a WebRTC audio track: 20 ms frames, 48 kHz stereo s16, paced on ``clock``.

    Paced by :class:`~pipelines.live.pacing.FramePacer`: frame ``k`` is due at ``start + k * frame``
    (``start`` = the first ``recv``), so the pacing does not drift; a late reader gets the overdue
    frames at once. When the reader is more than ``max_late_s`` behind (the loop stalled), the
    missed frames are skipped: the pts jump with the clock, as an RTP receiver expects, and the
    count is kept in :attr:`skipped`.

    With ``opus=True`` (what sessions use) :meth:`recv` returns each frame already Opus-encoded, as
    an ``av.Packet`` with the same pts, which aiortc's sender packetises as it is. aiortc would
    otherwise encode every 20 ms frame in the loop's default thread pool: ~0.15 ms of work, but
    a thread hop per frame per session, and with many sessions those hops queue behind each
    other for the GIL until the sender falls half a second behind (measured: 8 sessions on 2
    cores skipped 3% of frames that way with the event loop itself never late by 100 ms).
    Encoded here, on the loop, the cost is the encode alone. The encoder is tuned for music
    (``application=audio``), not speech as aiortc's is.
    """

    kind = "audio"

    def __init__(self, session: LiveSession, clock: Clock, *, max_late_s: float = 0.5, late_s: float = 0.04,
                 opus: bool = False, opus_bitrate: int = 96_000) -> None:
        super().__init__()
        self.session = session
        self.clock = clock
        self._opus: av.AudioCodecContext | None = None
        if opus:
            codec = av.CodecContext.create("libopus", "w")
            assert isinstance(codec, av.AudioCodecContext)
            codec.bit_rate = opus_bitrate
            codec.format = "s16"
            codec.layout = "stereo"
            codec.sample_rate = AUDIO_RATE
            codec.time_base = Fraction(1, AUDIO_RATE)
            codec.options = {"application": "audio"}
            self._opus = codec
        self._pending: deque[av.Packet] = deque()
        self.samples = session.options.frame_samples
        self.time_base = Fraction(1, AUDIO_RATE)
        #: The pacing and its statistics (frames, skipped, lateness, late_frames, max_lateness_s).
        self.pacer = FramePacer(clock, self.samples, max_late_s=max_late_s, late_s=late_s)

    @property
    def frames(self) -> int:
        return self.pacer.frames

    @property
    def skipped(self) -> int:
        return self.pacer.skipped

    @property
    def late_frames(self) -> int:
        return self.pacer.late_frames

    @property
    def max_lateness_s(self) -> float:
        return self.pacer.max_lateness_s

    @property
    def lateness(self) -> deque[float]:
        return self.pacer.lateness

    async def recv(self) -> av.AudioFrame | av.Packet:  # aiortc sends either
        if self.readyState != "live" or self.session.closed:
            raise MediaStreamError
        if self._opus is None:
            return await self._next_frame()
        while not self._pending:  # libopus gives one packet per 20 ms frame; never zero after the first
            frame = await self._next_frame()
            for packet in self._opus.encode(frame):
                packet.pts = frame.pts  # the encoder's own pts start at minus its look-ahead
                packet.time_base = self.time_base
                self._pending.append(packet)
        return self._pending.popleft()

    async def _next_frame(self) -> av.AudioFrame:
        skipped = self.pacer.skipped
        k = await self.pacer.next()
        if self.pacer.skipped != skipped:
            log.warning("session %s: BGM sender %.0f ms late, skipped %d frames", self.session.session_id,
                        1000 * (self.pacer.skipped - skipped) * self.pacer.frame_s, self.pacer.skipped - skipped)
        if self.readyState != "live" or self.session.closed:
            raise MediaStreamError
        pcm = self.session.pull_frame()
        data = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = k * self.samples
        frame.time_base = self.time_base
        return frame


# --------------------------------------------------------------------------- one session


@dataclass(frozen=True)
class WebRtcLimits:
    max_sessions: int = 8
    #: End the session when no client media has arrived for this long (after connecting).
    media_timeout_s: float = 10.0
    #: End the session when the peer connection is not up this long after the offer.
    connect_timeout_s: float = 20.0
    max_duration_s: float = 3600.0
    #: Client frames waiting for conversion per track; the oldest are dropped beyond this.
    video_queue: int = 8
    audio_queue: int = 50


class _Pump:
    """Reads a remote track into a bounded queue (drop oldest) and hands frames to ``handle`` in order."""

    def __init__(self, track: MediaStreamTrack, maxlen: int, handle: Callable[[Any], Awaitable[None]],
                 on_frame: Callable[[], None], name: str) -> None:
        self.track = track
        self.queue: deque[Any] = deque()
        self.maxlen = maxlen
        self.handle = handle
        self.on_frame = on_frame
        self.dropped = 0
        self.received = 0
        self._ready = asyncio.Event()
        self.ended = False
        self.tasks = [asyncio.create_task(self._read(), name=f"read-{name}"),
                      asyncio.create_task(self._consume(), name=f"consume-{name}")]

    async def _read(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                self.received += 1
                self.on_frame()
                if len(self.queue) >= self.maxlen:
                    self.queue.popleft()
                    self.dropped += 1
                    QUEUE_DEPTH.labels(queue="webrtc_client_frames").dec()
                self.queue.append(frame)
                QUEUE_DEPTH.labels(queue="webrtc_client_frames").inc()
                self._ready.set()
        except MediaStreamError:
            pass
        finally:
            self.ended = True
            self._ready.set()

    async def _consume(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self.queue:
                frame = self.queue.popleft()
                QUEUE_DEPTH.labels(queue="webrtc_client_frames").dec()
                await self.handle(frame)
            if self.ended:
                QUEUE_DEPTH.labels(queue="webrtc_client_frames").dec(len(self.queue))
                self.queue.clear()
                return


class WebRtcSession:
    """A peer connection and its live session. Created and ended by :class:`WebRtcManager`."""

    def __init__(self, manager: WebRtcManager, pc: RTCPeerConnection, live: LiveSession) -> None:
        self.manager = manager
        self.id = live.session_id
        self.pc = pc
        self.live = live
        self.clock = manager.clock
        self.created_at = self.clock.now()
        self.connected_at: float | None = None
        self.last_media_at: float | None = None
        self.state = "new"  # new -> connected -> closing -> closed
        self.end_reason: str | None = None
        self.bgm = BgmTrack(live, manager.clock, opus=True)
        self.channel: RTCDataChannel | None = None
        self.pumps: list[_Pump] = []
        self.reports_sent = 0
        self.tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()
        self._end_task: asyncio.Task[None] | None = None
        self._video = VideoSampler()
        self._audio = AudioIngest()
        self._track_offset: dict[str, tuple[float, float]] = {}  # kind -> (media offset, first pts s)

    def info(self) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "state": self.state,
            "connection_state": self.pc.connectionState,
            "age_s": round(self.clock.now() - self.created_at, 3),
            "media_s": self.live.report().media_s,
            "emotion": self.live.report().emotion,
            "bgm_frames": self.bgm.frames,
            "reports_sent": self.reports_sent,
            "dropped_frames": sum(p.dropped for p in self.pumps),
        }

    # ---------------------------------------------------------------- media in
    def _media_time(self, kind: str, pts: int | None, time_base: Any) -> float | None:
        """Session media seconds: the track's own timestamps, anchored at its first frame's arrival."""
        if pts is None or time_base is None:
            return None
        t = float(pts * time_base)
        if kind not in self._track_offset:
            self._track_offset[kind] = (max(0.0, self.clock.now() - (self.connected_at or self.created_at)), t)
        offset, t0 = self._track_offset[kind]
        return offset + t - t0

    def _seen(self) -> None:
        self.last_media_at = self.clock.now()

    async def _video_frame(self, frame: av.VideoFrame) -> None:
        t = self._media_time("video", frame.pts, frame.time_base)
        if t is None or self.live.closed:
            return
        if not self._video.wants(t):
            return  # most camera frames are not analysed: no thread hop for them
        vf = await asyncio.to_thread(self._video.offer, frame, t)
        if vf is not None and not self.live.closed:
            self.live.push_video(vf)

    async def _audio_frame(self, frame: av.AudioFrame) -> None:
        t = self._media_time("audio", frame.pts, frame.time_base)
        if t is None or self.live.closed:
            return
        for af in self._audio.convert(frame, t):
            self.live.push_audio(af)

    def on_track(self, track: MediaStreamTrack) -> None:
        limits = self.manager.limits
        log.info("session %s: client %s track %s", self.id, track.kind, track.id)
        if track.kind == "video":
            self.pumps.append(_Pump(track, limits.video_queue, self._video_frame, self._seen, f"video-{self.id}"))
        elif track.kind == "audio":
            self.pumps.append(_Pump(track, limits.audio_queue, self._audio_frame, self._seen, f"audio-{self.id}"))

    # ---------------------------------------------------------------- data channel
    def on_datachannel(self, channel: RTCDataChannel) -> None:
        log.info("session %s: data channel %r", self.id, channel.label)
        if channel.label == DATA_CHANNEL_LABEL:
            self.channel = channel
            self._send({"type": "session", "session_id": self.id})

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            try:
                msg = json.loads(message)
            except (ValueError, TypeError):
                return
            if isinstance(msg, dict) and msg.get("type") == "ping":
                reply: dict[str, Any] = {"type": "pong"}
                if "t" in msg:
                    reply["t"] = msg["t"]
                with contextlib.suppress(Exception):
                    channel.send(json.dumps(reply))

    def _send(self, msg: dict[str, Any]) -> bool:
        ch = self.channel
        if ch is None or ch.readyState != "open":
            return False
        try:
            ch.send(json.dumps(msg))
        except Exception:  # the transport went away under us; the watchdog ends the session
            return False
        return True

    def on_report(self, report: MoodReport) -> None:
        # frames the paced sender had to skip because the event loop stalled: audible like underruns
        if self._send({**report.to_json(), "sender_skipped_frames": self.bgm.skipped,
                       "sender_late_frames": self.bgm.late_frames,
                       "sender_max_late_ms": round(1000 * self.bgm.max_lateness_s, 1)}):
            self.reports_sent += 1

    # ---------------------------------------------------------------- lifecycle
    def on_connection_state(self) -> None:
        state = self.pc.connectionState
        log.info("session %s: connection %s", self.id, state)
        if state == "connected" and self.connected_at is None:
            self.connected_at = self.clock.now()
            self.state = "connected"
        elif state in ("failed", "closed"):
            self.end(f"connection {state}")

    async def watchdog(self) -> None:
        limits = self.manager.limits
        while True:
            await self.clock.sleep(0.2)
            now = self.clock.now()
            if now - self.created_at > limits.max_duration_s:
                self.end("max duration")
            elif self.connected_at is None:
                if now - self.created_at > limits.connect_timeout_s:
                    self.end("connect timeout")
            elif now - (self.last_media_at or self.connected_at) > limits.media_timeout_s:
                self.end("no media")
            elif self.pumps and all(p.ended for p in self.pumps):
                self.end("client tracks ended")
            elif self.live.error is not None:
                self.end(f"session error: {self.live.error!r}")

    def end(self, reason: str) -> asyncio.Task[None]:
        """Start ending the session (idempotent); the returned task finishes when it is gone."""
        if self._end_task is None:
            self.end_reason = reason
            self._end_task = asyncio.create_task(self._end(reason), name=f"end-{self.id}")
        return self._end_task

    async def _end(self, reason: str) -> None:
        self.state = "closing"
        log.info("session %s: ending (%s)", self.id, reason)
        current = asyncio.current_task()
        tasks = [t for p in self.pumps for t in p.tasks] + self.tasks
        for t in tasks:
            if t is not current:
                t.cancel()
        self.bgm.stop()
        for p in self.pumps:
            p.track.stop()
        try:
            await self.live.close()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), 5.0)
            for t in tasks:
                if t is not current:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
            self.state = "closed"
            self.manager._forget(self)
            self._closed.set()
            r = self.live.report()
            log.info("session %s: closed (%s): %.1f s media, %d BGM frames, %d reports, %d underruns, "
                     "%d dropped client frames", self.id, reason, r.media_s, self.bgm.frames, self.reports_sent,
                     r.underruns, sum(p.dropped for p in self.pumps))

    async def wait_closed(self) -> None:
        await self._closed.wait()


# --------------------------------------------------------------------------- the manager


class WebRtcManager:
    """All WebRTC sessions of one process: signalling, limits, cleanup, metrics."""

    def __init__(
        self,
        models: LiveModels,
        options: LiveOptions | None = None,
        *,
        hooks: LiveHooks | None = None,
        max_sessions: int = 8,
        media_timeout_s: float = 10.0,
        connect_timeout_s: float = 20.0,
        max_duration_s: float = 3600.0,
        clock: Clock | None = None,
        ice_servers: Sequence[str] = (),
        directory: SessionDirectory | None = None,
        sync_interval_s: float = 0.5,
    ) -> None:
        self.models = models
        self.options = options or LiveOptions()
        self.hooks: LiveHooks = hooks if hooks is not None else PrometheusHooks()
        self.limits = WebRtcLimits(max_sessions=max_sessions, media_timeout_s=media_timeout_s,
                                   connect_timeout_s=connect_timeout_s, max_duration_s=max_duration_s)
        self.clock: Clock = clock or SystemClock()
        # No STUN by default: aiortc's default (a public STUN server) is unreachable on closed networks
        # and would only delay gathering. Host candidates suffice on a LAN; pass STUN/TURN URLs otherwise.
        self.ice_servers = [RTCIceServer(urls=u) for u in ice_servers]
        self.sessions: dict[str, WebRtcSession] = {}
        #: Where the sessions of every replica are listed, so a hang-up reaching another replica ends
        #: them (:mod:`serve.session_directory`); None: this manager is the only one.
        self.directory = directory
        self.owner = uuid.uuid4().hex
        self.sync_interval_s = sync_interval_s
        self._sync_task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self.sessions)

    def _options(self, body: dict[str, Any]) -> LiveOptions:
        changes: dict[str, Any] = {}
        if "style" in body and body["style"] is not None:
            style = body["style"]
            if not isinstance(style, str):
                raise OfferError("'style' must be a string")
            if style != "auto" and style not in STYLES:
                raise OfferError(f"unknown style {style!r}; choose one of: auto, {', '.join(STYLES)}")
            changes["style"] = None if style == "auto" else style
        if "mix_original" in body and body["mix_original"] is not None:
            if not isinstance(body["mix_original"], bool):
                raise OfferError("'mix_original' must be true or false")
            changes["mix_original"] = body["mix_original"]
        if "seed" in body and body["seed"] is not None:
            seed = body["seed"]
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise OfferError("'seed' must be an integer")
            changes["seed"] = seed
        try:
            return replace(self.options, **changes)
        except OptionError as exc:
            raise OfferError(str(exc)) from exc

    @staticmethod
    def _check_offer(body: Any) -> str:
        if not isinstance(body, dict):
            raise OfferError("the body must be a JSON object {\"sdp\": ..., \"type\": \"offer\"}")
        missing = [k for k in ("sdp", "type") if k not in body]
        if missing:
            raise OfferError(f"missing field(s): {', '.join(missing)}")
        if body["type"] != "offer":
            raise OfferError(f"'type' must be \"offer\", got {body['type']!r}")
        sdp = body["sdp"]
        if not isinstance(sdp, str) or not sdp.lstrip().startswith("v=0"):
            raise OfferError("'sdp' is not a session description (it must start with v=0)")
        media = [line.split()[0][2:] for line in sdp.splitlines() if line.startswith("m=") and line.split()]
        if "audio" not in media:
            raise OfferError("the offer has no audio section: add an audio transceiver (sendrecv, or recvonly "
                             "without a microphone) to receive the BGM")
        return sdp

    async def offer(self, body: Any) -> dict[str, Any]:
        """Answer a client's offer: ``{"sdp", "type": "answer", "session_id"}``. Raises OfferError / ServerBusy."""
        sdp = self._check_offer(body)
        options = self._options(body)
        if len(self.sessions) >= self.limits.max_sessions:
            raise ServerBusy(f"all {self.limits.max_sessions} live sessions are in use; try again later")
        sid = uuid.uuid4().hex[:12]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self.ice_servers))
        live = LiveSession(self.models, options, clock=self.clock, hooks=self.hooks, session_id=sid)
        sess = WebRtcSession(self, pc, live)
        live.on_report = sess.on_report
        self.sessions[sid] = sess  # reserve the slot before awaiting
        pc.on("track", sess.on_track)
        pc.on("datachannel", sess.on_datachannel)
        pc.on("connectionstatechange", sess.on_connection_state)
        t0 = time.perf_counter()
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            pc.addTrack(sess.bgm)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:
            del self.sessions[sid]
            sess.bgm.stop()
            for p in sess.pumps:
                for t in p.tasks:
                    t.cancel()
            with contextlib.suppress(Exception):
                await pc.close()
            log.info("session %s: offer rejected: %r", sid, exc)
            raise OfferError(f"cannot use this offer: {exc}") from exc
        live.start()
        sess.tasks.append(asyncio.create_task(sess.watchdog(), name=f"watchdog-{sid}"))
        SESSIONS_TOTAL.labels(transport=TRANSPORT).inc()
        ACTIVE_SESSIONS.labels(transport=TRANSPORT).inc()
        log.info("session %s: answered in %.0f ms (style=%s, mix_original=%s, seed=%d); %d open", sid,
                 1000 * (time.perf_counter() - t0), options.style or "auto", options.mix_original, options.seed,
                 len(self.sessions))
        if self.directory is not None:
            await self._sync()  # listed before the client has the answer: a hang-up anywhere finds it
            if self._sync_task is None or self._sync_task.done():
                self._sync_task = asyncio.create_task(self._sync_loop(), name="webrtc-directory-sync")
        local = pc.localDescription
        return {"sdp": local.sdp, "type": local.type, "session_id": sid}

    async def _sync(self) -> None:
        """List this manager's sessions in the directory and end those hung up through another replica."""
        assert self.directory is not None
        try:
            ends = await self.directory.sync(self.owner, list(self.sessions))
        except Exception as exc:  # the directory is a convenience: sessions go on without it
            log.warning("session directory unavailable: %r", exc)
            return
        for sid in ends:
            sess = self.sessions.get(sid)
            if sess is not None:
                sess.end("hang-up via another gateway replica")

    async def _sync_loop(self) -> None:
        while True:
            await self.clock.sleep(self.sync_interval_s)
            await self._sync()
            if not self.sessions:
                return  # the last sync listed none: the directory has nothing of ours

    def _forget(self, sess: WebRtcSession) -> None:
        if self.sessions.get(sess.id) is sess:
            del self.sessions[sess.id]
            ACTIVE_SESSIONS.labels(transport=TRANSPORT).dec()

    async def hang_up(self, session_id: str) -> str | None:
        """End a session: ``"closed"`` (it was here), ``"closing"`` (another replica holds it and will end
        it within its sync interval) or None (no such session)."""
        sess = self.sessions.get(session_id)
        if sess is not None:
            await sess.end("hang-up")
            return "closed"
        if self.directory is not None:
            try:
                if await self.directory.request_end(session_id):
                    return "closing"
            except Exception as exc:
                log.warning("session directory unavailable: %r", exc)
        return None

    def list(self) -> list[dict[str, Any]]:
        return [s.info() for s in self.sessions.values()]

    async def close_all(self) -> None:
        ends = [s.end("shutdown") for s in list(self.sessions.values())]
        if ends:
            await asyncio.gather(*ends, return_exceptions=True)
        if self._sync_task is not None:
            self._sync_task.cancel()
            await asyncio.gather(self._sync_task, return_exceptions=True)
        if self.directory is not None:
            await self._sync()


# --------------------------------------------------------------------------- HTTP


def _error(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"Retry-After": "5"} if status == 503 else None
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status_code=status, headers=headers)


def webrtc_router(manager: WebRtcManager) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/webrtc/offer")
    async def offer(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "OfferError", "the body is not JSON")
        try:
            return JSONResponse(await manager.offer(body))
        except OfferError as exc:
            return _error(400, "OfferError", str(exc))
        except ServerBusy as exc:
            return _error(503, "Busy", str(exc), max_sessions=manager.limits.max_sessions)

    @router.delete("/v1/webrtc/{session_id}")
    async def hang_up(session_id: str) -> Response:
        state = await manager.hang_up(session_id)
        if state is None:
            return _error(404, "NotFound", f"no session {session_id!r}")
        # 202: another gateway replica holds the session and ends it within its sync interval
        return JSONResponse({"session_id": session_id, "state": state}, status_code=200 if state == "closed" else 202)

    @router.get("/v1/webrtc/sessions")
    async def sessions() -> Response:
        return JSONResponse({"sessions": manager.list(), "max_sessions": manager.limits.max_sessions})

    return router


def demo_router() -> APIRouter:
    """The demo page at ``/`` and its files at ``/static/{name}`` (from ``serve/static``)."""
    router = APIRouter()

    def _file(name: str) -> Response:
        path = (STATIC_DIR / name).resolve()
        if path.parent != STATIC_DIR or path.suffix not in _STATIC_TYPES or not path.is_file():
            return _error(404, "NotFound", f"no file {name!r}")
        return Response(path.read_bytes(), media_type=_STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": "no-cache"})

    @router.get("/")
    async def index() -> Response:
        return _file("index.html")

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        return _file(name)

    return router


def create_app(manager: WebRtcManager) -> Any:
    """A FastAPI app with the demo page and the WebRTC endpoints (no Ray); ends all sessions on shutdown."""
    from fastapi import FastAPI

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        await manager.close_all()

    app = FastAPI(title="backscore live (WebRTC dev server)", lifespan=lifespan)
    app.include_router(demo_router())
    app.include_router(webrtc_router(manager))
    return app


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m serve.webrtc", description="WebRTC dev server with the demo page")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-sessions", type=int, default=4)
    p.add_argument("--media-timeout", type=float, default=10.0)
    p.add_argument("--no-faces", action="store_true", help="skip the face-expression model (less CPU)")
    p.add_argument("--ice-server", action="append", default=[], help="STUN/TURN URL (repeatable); none by default")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from pipelines.live.models import InProcessModels

    models = InProcessModels.default(faces=not a.no_faces)
    manager = WebRtcManager(models, max_sessions=a.max_sessions, media_timeout_s=a.media_timeout,
                            ice_servers=a.ice_server)
    try:
        uvicorn.run(create_app(manager), host=a.host, port=a.port, log_level=a.log_level)
    finally:
        models.shutdown()


if __name__ == "__main__":
    main()
