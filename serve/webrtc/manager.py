"""All WebRTC sessions of one process: signalling, limits, the session directory, hang-up, metrics.

:meth:`WebRtcManager.offer` answers a client's SDP offer (no trickle ICE: both sides gather their
candidates before sending their description, as aiortc's server example does) and starts a
:class:`~serve.webrtc.session.WebRtcSession`. A session ends on hang-up (:meth:`~WebRtcManager.hang_up`
or the peer closing), ICE/DTLS failure, or one of the :class:`WebRtcLimits`: no media for
``media_timeout_s``, no connection within ``connect_timeout_s``, ``max_duration_s``.
:meth:`WebRtcManager.close_all` ends them all at shutdown. With a
:class:`~serve.webrtc.directory.SessionDirectory`, a hang-up that reaches another gateway replica
ends the session too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import scipy.signal  # noqa: F401  pipelines.live.session resamples on the loop and would import this lazily (~0.6 s stall)
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from pipelines.clock import Clock, SystemClock
from pipelines.errors import OptionError
from pipelines.live.models import LiveModels
from pipelines.live.options import LiveOptions
from pipelines.live.reports import LiveHooks
from pipelines.live.session import LiveSession
from pipelines.options import check_music_engine
from serve.jobs import SessionSlots
from serve.metrics import ACTIVE_SESSIONS, SESSIONS_TOTAL, PrometheusHooks
from serve.webrtc.directory import SessionDirectory, end_elsewhere, hang_ups
from serve.webrtc.protocol import TRANSPORT, OfferError, negotiation_error, parse_offer
from serve.webrtc.session import SessionLease, WebRtcLimits, WebRtcSession

log = logging.getLogger("serve.webrtc")  # one logger for the package (its name predates the split)


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
        slots: SessionSlots | None = None,
        music_engines: Sequence[str] = ("procedural",),
        on_session_closed: Callable[[str, str | None], None] | None = None,
    ) -> None:
        self.models = models
        self.options = options or LiveOptions()
        self.hooks: LiveHooks = hooks if hooks is not None else PrometheusHooks()
        self.limits = WebRtcLimits(max_sessions=max_sessions, media_timeout_s=media_timeout_s,
                                   connect_timeout_s=connect_timeout_s, max_duration_s=max_duration_s)
        #: The live-session slots this manager takes from: shared with the gRPC ``Stream`` call in the
        #: gateway (one ``max_live_sessions`` for both transports), its own otherwise.
        self.slots = slots or SessionSlots(max_sessions)
        #: The music engines an offer may ask for (what the models' music worker runs).
        self.music_engines = tuple(music_engines)
        self.clock: Clock = clock or SystemClock()
        # No STUN by default: aiortc's default (a public STUN server) is unreachable on closed networks
        # and would only delay gathering. Host candidates suffice on a LAN; pass STUN/TURN URLs otherwise.
        self.ice_servers = [RTCIceServer(urls=u) for u in ice_servers]
        self.sessions: dict[str, WebRtcSession] = {}
        #: Where the sessions of every replica are listed, so a hang-up reaching another replica ends
        #: them (:mod:`serve.webrtc.directory`); None: this manager is the only one.
        self.directory = directory
        self.owner = uuid.uuid4().hex
        self.sync_interval_s = sync_interval_s
        self._sync_task: asyncio.Task[None] | None = None
        #: Told ``(session_id, end_reason)`` when a session is gone (a live worker tells its gateway).
        self.on_session_closed = on_session_closed

    def __len__(self) -> int:
        return len(self.sessions)

    async def offer(self, body: Any, *, lease: SessionLease | None = None, tenant: str | None = None) -> dict[str, Any]:
        """Answer a client's offer: ``{"sdp", "type": "answer", "session_id"}``. Raises OfferError / BusyError.

        ``lease`` (its API key's live minutes) is the session's once it is answered: released when it ends
        (on an error here, the caller still holds it). ``tenant``: the key's name (:meth:`list`, :meth:`hang_up`).
        """
        offer = parse_offer(body, self.options)
        options = offer.options
        try:
            check_music_engine(options.engine, self.music_engines)
        except OptionError as exc:
            raise OfferError(str(exc)) from exc
        self.slots.acquire()  # BusyError when the replica is full (any transport)
        sid = uuid.uuid4().hex[:12]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self.ice_servers))
        live = LiveSession(self.models, options, clock=self.clock, hooks=self.hooks, session_id=sid)
        sess = WebRtcSession(pc, live, limits=self.limits, clock=self.clock, on_closed=self._forget, tenant=tenant)
        live.on_report = sess.on_report
        self.sessions[sid] = sess  # reserve the slot before awaiting
        pc.on("track", sess.on_track)
        pc.on("datachannel", sess.on_datachannel)
        pc.on("connectionstatechange", sess.on_connection_state)
        t0 = time.perf_counter()
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            pc.addTrack(sess.bgm)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:
            del self.sessions[sid]
            self.slots.release()
            sess.bgm.stop()
            for p in sess.pumps:
                for t in p.tasks:
                    t.cancel()
            with contextlib.suppress(Exception):
                await pc.close()
            log.info("session %s: offer rejected: %r", sid, exc)
            raise negotiation_error(exc) from exc  # the client sees a short reason, the log the exception
        sess.lease = lease  # from here on the session releases it (_forget)
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
        for sid in await hang_ups(self.directory, self.owner, list(self.sessions)):
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
            self.slots.release()
            ACTIVE_SESSIONS.labels(transport=TRANSPORT).dec()
            if sess.lease is not None:
                sess.lease.release()
            if self.on_session_closed is not None:
                self.on_session_closed(sess.id, sess.end_reason)

    async def hang_up(self, session_id: str, tenant: str | None = None) -> str | None:
        """End a session: ``"closed"`` (it was here), ``"closing"`` (another replica holds it and will end
        it within its sync interval) or None (no such session, or one another API key opened: with a
        ``tenant``, only that key's sessions are found here; through another replica a hang-up needs the
        session's id, which only the client that opened it got)."""
        sess = self.sessions.get(session_id)
        if sess is not None and tenant is not None and sess.tenant != tenant:
            return None
        if sess is not None:
            await sess.end("hang-up")
            return "closed"
        return await end_elsewhere(self.directory, session_id)

    def list(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """The sessions of this manager (with a ``tenant``: only those that API key opened)."""
        return [s.info() for s in self.sessions.values() if tenant is None or s.tenant == tenant]

    async def close_all(self) -> None:
        ends = [s.end("shutdown") for s in list(self.sessions.values())]
        if ends:
            await asyncio.gather(*ends, return_exceptions=True)
        if self._sync_task is not None:
            self._sync_task.cancel()
            await asyncio.gather(self._sync_task, return_exceptions=True)
        if self.directory is not None:
            await self._sync()
