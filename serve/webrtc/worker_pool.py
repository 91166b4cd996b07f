"""WebRTC sessions in live worker processes, so the gateway uses every core.

One Python process runs one event loop under one GIL: at 12 sessions on 2 cores the gateway's loop
thread was ~76 % busy (SRTP, Opus, aiortc's per-packet work, the analysis) and the BGM went out
late. :class:`LiveWorkerPool` starts ``workers`` processes (:mod:`serve.webrtc.worker_process`),
each with its own loop, its own aiortc and the engines in process, and places every new session on
the worker with the most room; the gateway keeps only the signalling, the limits and the accounts:

* an offer is validated here (400 before any worker is asked), takes one of the replica's live-session
  slots (shared with the gRPC ``Stream`` call), and goes to a worker, whose answer (SDP + session id)
  goes back to the client -- the client's media then flows to that worker's own UDP ports;
* hang-ups, the session list and API-key leases (live minutes) are kept here, by session id; a
  session's worker says when it ended (the slot and the lease are released then);
* every ``stats_interval_s`` each worker reports its sessions, its headroom (event-loop lag, BGM
  frames sent late, CPU) and the metrics its sessions recorded, which go to this process's ``/metrics``;
* a worker that dies takes its sessions with it (their slots and leases are released, the error is
  logged) and is started again.

Placement and admission: a new session goes to the ready worker with the fewest sessions (ties:
the least CPU used); with an ``admission`` factory, each worker's policy is fed its measurements and
must admit the session, else the offer is refused 503 Busy with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipelines.clock import Clock, SystemClock
from pipelines.errors import BackscoreError, BusyError, InputError, LimitError, OptionError
from pipelines.live.admission import Headroom
from pipelines.live.options import LiveOptions
from pipelines.live.reports import LiveHooks
from pipelines.options import check_music_engine
from serve.jobs import SessionSlots
from serve.metrics import ACTIVE_SESSIONS, SESSIONS_TOTAL, PrometheusHooks
from serve.webrtc.directory import SessionDirectory, end_elsewhere, hang_ups
from serve.webrtc.protocol import TRANSPORT, OfferError, parse_offer
from serve.webrtc.session import SessionLease, WebRtcLimits
from serve.webrtc.worker_process import LINE_LIMIT, WorkerConfig, replay_metrics

log = logging.getLogger("serve.webrtc")  # one logger for the package (its name predates the split)

#: Errors a worker may answer with, re-raised here by name (anything else: a RuntimeError, 500).
_ERRORS: dict[str, type[BackscoreError]] = {c.__name__: c for c in (OfferError, BusyError, LimitError, InputError,
                                                                    OptionError)}
#: The repository root (where ``serve`` is imported from): the worker processes import from it too.
_ROOT = str(Path(__file__).resolve().parents[2])


class WorkerError(RuntimeError):
    """A live worker process died or did not answer."""


class _Worker:
    """The gateway's handle on one worker process."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ready = asyncio.Event()
        self.alive = False
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}  # id -> the worker's info on it (last stats)
        self.headroom: dict[str, float] = {}
        self.placing = 0  # offers sent, not answered yet
        self.degrade = 0  # the analysis degrade level the worker was last told
        self.reader_task: asyncio.Task[None] | None = None


class LiveWorkerPool:
    """WebRTC sessions in worker processes, with the surface of :class:`~serve.webrtc.manager.WebRtcManager`
    the HTTP routes use (:meth:`offer`, :meth:`hang_up`, :meth:`list`, :meth:`close_all`, ``limits``)."""

    def __init__(
        self,
        config: WorkerConfig,
        workers: int = 2,
        *,
        options: LiveOptions | None = None,
        slots: SessionSlots | None = None,
        hooks: LiveHooks | None = None,
        directory: SessionDirectory | None = None,
        clock: Clock | None = None,
        sync_interval_s: float = 0.5,
        ready_timeout_s: float = 120.0,
        admission: Callable[[Clock], Any] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.config = config
        self.options = options or LiveOptions(style=config.style, seed=config.seed, mix_original=config.mix_original)
        self.slots = slots or SessionSlots(config.max_sessions)
        self.limits = WebRtcLimits(max_sessions=self.slots.capacity, media_timeout_s=config.media_timeout_s,
                                   connect_timeout_s=config.connect_timeout_s, max_duration_s=config.max_duration_s)
        self.music_engines = config.music_engines
        self.hooks: LiveHooks = hooks if hooks is not None else PrometheusHooks()
        self.directory = directory
        self.clock: Clock = clock or SystemClock()
        self.sync_interval_s = sync_interval_s
        self.ready_timeout_s = ready_timeout_s
        self.workers = [_Worker(i) for i in range(workers)]
        #: Per worker, the admission policy its measurements feed (None: place by session count alone).
        self.policies = [admission(self.clock) if admission is not None else None for _ in self.workers]
        self.owner = f"pool-{os.getpid()}-{id(self):x}"
        #: session id -> (worker, tenant, lease)
        self.owners: dict[str, tuple[_Worker, str | None, SessionLease | None]] = {}
        self._ids = itertools.count(1)
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    def __len__(self) -> int:
        return len(self.owners)

    # ------------------------------------------------------------------ processes
    async def start(self) -> None:
        """Start the worker processes (they load their models in the background; offers wait for one)."""
        for w in self.workers:
            await self._spawn(w)
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="live-workers"))

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Wait until every worker has loaded its models."""
        await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in self.workers)),
                               timeout_s or self.ready_timeout_s)

    async def _spawn(self, w: _Worker) -> None:
        parent, child = socket.socketpair()
        config = replace(self.config, index=w.index)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)}
        try:
            w.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "serve.webrtc.worker_process", str(child.fileno()), config.to_json(),
                pass_fds=(child.fileno(),), env=env, stdin=asyncio.subprocess.DEVNULL)
        finally:
            child.close()
        reader, w.writer = await asyncio.open_unix_connection(sock=parent, limit=LINE_LIMIT)
        w.alive = True
        w.ready.clear()
        w.reader_task = asyncio.create_task(self._read(w, reader), name=f"live-worker-{w.index}")
        log.info("live worker %d: started (pid %d)", w.index, w.proc.pid)

    async def _read(self, w: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                self._on_message(w, json.loads(line))
        except (ConnectionError, ValueError) as exc:
            log.warning("live worker %d: connection lost: %r", w.index, exc)
        finally:
            await self._lost(w)

    def _on_message(self, w: _Worker, msg: dict[str, Any]) -> None:
        event = msg.get("event")
        if event is None:
            fut = w.pending.pop(int(msg["id"]), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif event == "stats":
            w.sessions = {s["session_id"]: s for s in msg.get("sessions", [])}
            w.headroom = dict(msg.get("headroom", {}))
            replay_metrics(msg.get("metrics", {}), self.hooks)
            policy = self.policies[w.index]
            if policy is not None:
                policy.observe(self._headroom(w))
        elif event == "closed":
            self._release(str(msg["session_id"]), msg.get("reason"))
        elif event == "ready":
            w.ready.set()
            log.info("live worker %d: ready", w.index)

    def _headroom(self, w: _Worker) -> Headroom:
        h = w.headroom
        return Headroom(at_s=self.clock.now(), sessions=int(h.get("sessions", 0)),
                        loop_lag_p95_s=float(h.get("loop_lag_p95_s", 0.0)), late_ratio=float(h.get("late_ratio", 0.0)),
                        cpu_busy=float(h.get("cpu_busy", 0.0)), process_cores=float(h.get("process_cores", 0.0)))

    def _release(self, session_id: str, reason: str | None) -> None:
        held = self.owners.pop(session_id, None)
        if held is None:
            return
        w, _, lease = held
        w.sessions.pop(session_id, None)
        self.slots.release()
        ACTIVE_SESSIONS.labels(transport=TRANSPORT).dec()
        if lease is not None:
            lease.release()
        policy = self.policies[w.index]
        if policy is not None:
            policy.released()
        log.info("session %s: gone from live worker %d (%s)", session_id, w.index, reason)

    async def _lost(self, w: _Worker) -> None:
        w.alive = False
        w.ready.clear()
        for fut in w.pending.values():
            if not fut.done():
                fut.set_exception(WorkerError(f"live worker {w.index} went away"))
        w.pending.clear()
        for sid in [s for s, (o, _, _) in self.owners.items() if o is w]:
            self._release(sid, "live worker lost")
        if w.writer is not None:
            w.writer.close()
        if w.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()
            code = await w.proc.wait()
            if not self._closing:
                log.error("live worker %d exited (%s); starting it again", w.index, code)
        if not self._closing:
            await asyncio.sleep(1.0)
            if not self._closing:
                await self._spawn(w)

    async def _call(self, w: _Worker, op: str, timeout_s: float = 30.0, **args: Any) -> Any:
        if not w.alive or w.writer is None:
            raise WorkerError(f"live worker {w.index} is not running")
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        w.pending[rid] = fut
        w.writer.write(json.dumps({"id": rid, "op": op, **args}, separators=(",", ":")).encode() + b"\n")
        try:
            reply = await asyncio.wait_for(fut, timeout_s)
        finally:
            w.pending.pop(rid, None)
        if reply.get("ok"):
            return reply.get("result")
        kind, message = str(reply.get("kind")), str(reply.get("message"))
        raise _ERRORS.get(kind, WorkerError)(message)

    # ------------------------------------------------------------------ placement
    async def _choose(self) -> _Worker:
        ready = [w for w in self.workers if w.alive and w.ready.is_set()]
        if not ready:
            try:
                await asyncio.wait_for(self._first_ready(), self.ready_timeout_s)
            except TimeoutError:
                raise BusyError("the live workers are still starting; try again shortly") from None
            ready = [w for w in self.workers if w.alive and w.ready.is_set()]
        reasons: list[str] = []
        retry = []
        order = sorted(ready, key=lambda w: (len(self._held(w)) + w.placing, w.headroom.get("process_cores", 0.0)))
        for w in order:
            policy = self.policies[w.index]
            if policy is None:
                return w
            decision = policy.decide()
            if decision.admit:
                return w
            reasons.append(f"worker {w.index}: {decision.reason}")
            retry.append(decision.retry_after_s)
        log.info("live session refused: %s", "; ".join(reasons))
        err = BusyError(f"no room for another live session now ({'; '.join(reasons)}); try again later")
        err.retry_after_s = max(1, math.ceil(min(retry, default=1.0)))  # type: ignore[attr-defined]
        raise err

    async def _first_ready(self) -> None:
        waits = [asyncio.ensure_future(w.ready.wait()) for w in self.workers]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in waits:
                t.cancel()

    def _held(self, w: _Worker) -> list[str]:
        return [s for s, (o, _, _) in self.owners.items() if o is w]

    # ------------------------------------------------------------------ the manager's surface
    async def offer(self, body: Any, *, lease: SessionLease | None = None, tenant: str | None = None) -> dict[str, Any]:
        """Answer a client's offer from a worker: ``{"sdp", "type": "answer", "session_id"}``.
        Raises OfferError / BusyError like :meth:`WebRtcManager.offer`."""
        offer = parse_offer(body, self.options)
        try:
            check_music_engine(offer.options.engine, self.music_engines)
        except OptionError as exc:
            raise OfferError(str(exc)) from exc
        self.slots.acquire()  # BusyError when the replica is full (any transport)
        try:
            w = await self._choose()
            w.placing += 1
            try:
                answer: dict[str, Any] = await self._call(w, "offer", body=body, tenant=tenant)
            finally:
                w.placing -= 1
        except BaseException:
            self.slots.release()
            raise
        sid = str(answer["session_id"])
        self.owners[sid] = (w, tenant, lease)
        policy = self.policies[w.index]
        if policy is not None:
            policy.admitted()
        SESSIONS_TOTAL.labels(transport=TRANSPORT).inc()
        ACTIVE_SESSIONS.labels(transport=TRANSPORT).inc()
        log.info("session %s: placed on live worker %d; %d open", sid, w.index, len(self.owners))
        if self.directory is not None:
            await self._sync()
        return answer

    async def hang_up(self, session_id: str, tenant: str | None = None) -> str | None:
        """Like :meth:`WebRtcManager.hang_up`: ``"closed"``, ``"closing"`` (another replica's) or None."""
        held = self.owners.get(session_id)
        if held is not None and tenant is not None and held[1] != tenant:
            return None
        if held is not None:
            with contextlib.suppress(WorkerError, TimeoutError):
                await self._call(held[0], "hang_up", session_id=session_id)
            return "closed"
        return await end_elsewhere(self.directory, session_id)

    def list(self, tenant: str | None = None) -> list[dict[str, Any]]:
        out = []
        for sid, (w, who, _) in self.owners.items():
            if tenant is None or who == tenant:
                out.append({**w.sessions.get(sid, {"session_id": sid, "state": "new"}), "worker": w.index})
        return out

    async def close_all(self) -> None:
        """End every session and stop the workers."""
        self._closing = True
        for t in self._tasks:
            t.cancel()
        live = [w for w in self.workers if w.alive]
        await asyncio.gather(*(self._call(w, "close_all", timeout_s=15.0) for w in live), return_exceptions=True)
        for w in self.workers:
            if w.writer is not None:
                w.writer.close()  # end of file: the worker exits
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                try:
                    await asyncio.wait_for(w.proc.wait(), 10.0)
                except TimeoutError:
                    w.proc.kill()
                    await w.proc.wait()
        for w in self.workers:
            if w.reader_task is not None:
                w.reader_task.cancel()
                await asyncio.gather(w.reader_task, return_exceptions=True)
        for sid in list(self.owners):
            self._release(sid, "shutdown")
        if self.directory is not None:
            await self._sync()

    # ------------------------------------------------------------------ leases, degrading, the directory
    async def _housekeeping(self) -> None:
        while True:
            await self.clock.sleep(self.sync_interval_s)
            for sid, (w, _, lease) in list(self.owners.items()):
                reason = lease.exhausted() if lease is not None else None
                if reason is not None:
                    with contextlib.suppress(WorkerError, TimeoutError):
                        await self._call(w, "exhausted", session_id=sid, reason=reason)
            for w, policy in zip(self.workers, self.policies, strict=True):
                level = getattr(policy, "degrade_level", None)
                if level is not None and w.alive and w.ready.is_set() and level != w.degrade:
                    h = w.headroom
                    log.warning("live worker %d: analysis degrade level %d -> %d (loop lag p95 %.0f ms, %.2f %% late "
                             "frames, machine CPU %.0f %%, %d sessions)", w.index, w.degrade, level,
                             1000 * h.get("loop_lag_p95_s", 0.0), 100 * h.get("late_ratio", 0.0),
                             100 * h.get("cpu_busy", 0.0), h.get("sessions", 0))
                    with contextlib.suppress(WorkerError, TimeoutError):
                        await self._call(w, "degrade", level=level)
                        w.degrade = level
            if self.directory is not None and self.owners:
                await self._sync()

    async def _sync(self) -> None:
        assert self.directory is not None
        for sid in await hang_ups(self.directory, self.owner, list(self.owners)):
            held = self.owners.get(sid)
            if held is not None:
                with contextlib.suppress(WorkerError, TimeoutError):
                    await self._call(held[0], "hang_up", session_id=sid)
