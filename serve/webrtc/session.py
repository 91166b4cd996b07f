"""One WebRTC session: a peer connection, its live session, and the tasks between them.

Each client track is read by a :class:`_Pump` into a bounded queue (the oldest frames are dropped
when the consumer falls behind) and converted by a second task: video through
:class:`~pipelines.live.ingest.VideoSampler` (the picture conversion in a worker thread) into
:meth:`LiveSession.push_video`, audio through :class:`~pipelines.live.ingest.AudioIngest` into
:meth:`LiveSession.push_audio`. The BGM goes back on a :class:`~serve.webrtc.track.BgmTrack`; mood
reports and pongs on the client's ``"mood"`` data channel. A watchdog ends the session on its
:class:`WebRtcLimits` (the :class:`~serve.webrtc.manager.WebRtcManager`'s, which also counts the
sessions against ``max_sessions``), or when its :class:`SessionLease` (its API key's live minutes)
runs out -- after telling the page ``{"type": "end", "reason": ...}`` on the data channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import av
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel

from pipelines.clock import Clock
from pipelines.live.ingest import AudioIngest, VideoSampler
from pipelines.live.reports import MoodReport
from pipelines.live.session import LiveSession
from serve.metrics import QUEUE_DEPTH
from serve.webrtc.protocol import DATA_CHANNEL_LABEL
from serve.webrtc.track import BgmTrack

log = logging.getLogger("serve.webrtc")  # one logger for the package (its name predates the split)


class SessionLease(Protocol):
    """A session's claim on a quota (:class:`serve.access.LiveLease`: its API key's live minutes)."""

    def exhausted(self) -> str | None:
        """Why the session must end now, or None."""
        ...

    def release(self) -> None:
        """The session is gone (idempotent)."""
        ...


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
    """A peer connection and its live session. Created by :class:`~serve.webrtc.manager.WebRtcManager`,
    which ``on_closed`` tells when the session is gone."""

    def __init__(self, pc: RTCPeerConnection, live: LiveSession, *, limits: WebRtcLimits, clock: Clock,
                 on_closed: Callable[[WebRtcSession], None], lease: SessionLease | None = None,
                 tenant: str | None = None) -> None:
        self.id = live.session_id
        #: The name of the API key that opened the session (None in local mode): only it sees and ends it.
        self.tenant = tenant
        #: Its key's live minutes: the watchdog ends the session when they are used up.
        self.lease = lease
        self.pc = pc
        self.live = live
        self.limits = limits
        self.clock = clock
        self._on_closed = on_closed
        self.created_at = self.clock.now()
        self.connected_at: float | None = None
        self.last_media_at: float | None = None
        self.state = "new"  # new -> connected -> closing -> closed
        self.end_reason: str | None = None
        self.bgm = BgmTrack(live, clock, opus=True)
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
        self._video.follow(self.live)  # the session's analysis degrade level: frame rate, faces
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
        limits = self.limits
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
        limits = self.limits
        while True:
            await self.clock.sleep(0.2)
            now = self.clock.now()
            used_up = self.lease.exhausted() if self.lease is not None else None
            if used_up is not None:
                self._send({"type": "end", "reason": used_up})  # the page can tell the listener why
                self.end(used_up)
            elif now - self.created_at > limits.max_duration_s:
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
            self._on_closed(self)
            self._closed.set()
            r = self.live.report()
            log.info("session %s: closed (%s): %.1f s media, %d BGM frames, %d reports, %d underruns, "
                     "%d dropped client frames", self.id, reason, r.media_s, self.bgm.frames, self.reports_sent,
                     r.underruns, sum(p.dropped for p in self.pumps))

    async def wait_closed(self) -> None:
        await self._closed.wait()
