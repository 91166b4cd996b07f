"""A live worker process: WebRTC sessions with the engines in process, driven by its gateway over a socket.

``python -m serve.webrtc.worker_process FD CONFIG_JSON`` is started by
:class:`~serve.webrtc.worker_pool.LiveWorkerPool`; ``FD`` is its end of a socket pair, ``CONFIG_JSON``
a :class:`WorkerConfig`. It runs one :class:`~serve.webrtc.manager.WebRtcManager` on its own event
loop (its own GIL, its own aiortc decoder threads), with the models in process
(:class:`~pipelines.live.models.InProcessModels`), and talks JSON lines:

* requests from the gateway: ``{"id", "op": "offer", "body", "tenant"}``, ``{"id", "op": "hang_up",
  "session_id"}``, ``{"id", "op": "exhausted", "session_id", "reason"}`` (the session's API key ran out
  of live minutes: the session tells its page and ends), ``{"id", "op": "degrade", "level"}``,
  ``{"id", "op": "close_all"}``; each answered ``{"id", "ok": true, "result"}`` or ``{"id", "ok": false,
  "kind", "message"}`` (``kind``: the error class, re-raised by the gateway);
* events to the gateway: ``{"event": "ready"}`` once the models are loaded; ``{"event": "closed",
  "session_id", "reason"}`` when a session is gone; ``{"event": "stats", ...}`` every
  ``stats_interval_s``: the sessions (:meth:`WebRtcManager.list`), the process's headroom
  (:class:`HeadroomProbe`) and the metrics its sessions recorded since the last one
  (:class:`ForwardingHooks`), which the gateway adds to its own ``/metrics``.

When the gateway goes away (end of file on the socket) the worker ends its sessions and exits.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.errors import BackscoreError

log = logging.getLogger("serve.webrtc")  # one logger for the package (its name predates the split)

#: The longest JSON line either side sends (an offer's SDP is at most ``BACKSCORE_MAX_JSON_KB``).
LINE_LIMIT = 16 * 2**20


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker process needs to run sessions like the gateway would."""

    index: int = 0
    faces: bool = True
    engine: str = "procedural"
    weights: str | None = None
    style: str | None = None
    seed: int = 0
    mix_original: bool = False
    max_sessions: int = 16
    media_timeout_s: float = 10.0
    connect_timeout_s: float = 20.0
    max_duration_s: float = 3600.0
    ice_servers: tuple[str, ...] = ()
    music_engines: tuple[str, ...] = ("procedural",)
    stats_interval_s: float = 0.5

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        raw = json.loads(text)
        raw["ice_servers"] = tuple(raw.get("ice_servers", ()))
        raw["music_engines"] = tuple(raw.get("music_engines", ("procedural",)))
        return cls(**raw)


@dataclass
class ForwardingHooks:
    """:class:`~pipelines.live.reports.LiveHooks` that keep what the sessions record until :meth:`drain`."""

    stages: list[tuple[str, float]] = field(default_factory=list)
    underruns: int = 0
    mood_changes: list[float] = field(default_factory=list)
    dropped: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    degrades: list[tuple[int, int]] = field(default_factory=list)

    def stage(self, name: str, seconds: float) -> None:
        self.stages.append((name, seconds))

    def underrun(self) -> None:
        self.underruns += 1

    def mood_change(self, latency_s: float) -> None:
        self.mood_changes.append(latency_s)

    def windows_dropped(self, n: int) -> None:
        self.dropped += n

    def retry(self, call: str) -> None:
        self.retries[call] = self.retries.get(call, 0) + 1

    def degraded(self, level: int, previous: int) -> None:
        self.degrades.append((level, previous))

    def drain(self) -> dict[str, Any]:
        out = {"stages": self.stages, "underruns": self.underruns, "mood_changes": self.mood_changes,
               "windows_dropped": self.dropped, "retries": self.retries, "degrades": self.degrades}
        self.stages, self.underruns, self.mood_changes, self.dropped, self.retries = [], 0, [], 0, {}
        self.degrades = []
        return out


def replay_metrics(drained: dict[str, Any], hooks: Any) -> None:
    """Record a worker's drained metrics (:meth:`ForwardingHooks.drain`) with the gateway's ``hooks``."""
    for name, seconds in drained.get("stages", []):
        hooks.stage(str(name), float(seconds))
    for _ in range(int(drained.get("underruns", 0))):
        hooks.underrun()
    for latency in drained.get("mood_changes", []):
        hooks.mood_change(float(latency))
    if drained.get("windows_dropped"):
        hooks.windows_dropped(int(drained["windows_dropped"]))
    for call, n in dict(drained.get("retries", {})).items():
        for _ in range(int(n)):
            hooks.retry(str(call))
    for level, previous in drained.get("degrades", []):
        hooks.degraded(int(level), int(previous))


def _machine_cpu() -> tuple[float, float]:
    """``(busy, total)`` jiffies of the whole machine, from ``/proc/stat`` (zeros where there is none)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            parts = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0.0)
    return sum(parts) - idle, sum(parts)


class HeadroomProbe:
    """How much room this process has left, over the last ``window_s`` (the intervals between the latest
    :meth:`sample` calls that fit in it): its event loop's lag (a 50 ms timer, p95), the share of BGM frames
    sent more than 40 ms late, the machine's CPU use (``/proc/stat``) and this process's CPU time per wall
    second. A few seconds, not one interval: a single late wake-up in half a second is not a trend."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._lags: list[float] = []
        self._frames: dict[str, tuple[int, int]] = {}
        t = os.times()
        self._cpu = t.user + t.system
        self._wall = time.monotonic()
        self._machine = _machine_cpu()
        #: per interval: (wall s, lags, frames sent, late, process CPU s, machine busy, machine total)
        self._recent: deque[tuple[float, list[float], int, int, float, float, float]] = deque()

    def record_lag(self, lag_s: float) -> None:
        """One late wake-up of the process's event-loop timer (:class:`serve.loop_monitor.LoopMonitor` measures
        them: one timer for the lag metric, the stall log and admission)."""
        self._lags.append(lag_s)

    def sample(self, sessions: dict[str, Any]) -> dict[str, float]:
        """The measures over the last ``window_s``; ``sessions``: the manager's (their BGM tracks' counters)."""
        sent = late = 0
        frames: dict[str, tuple[int, int]] = {}
        for sid, sess in sessions.items():
            now = (sess.bgm.frames, sess.bgm.late_frames)
            before = self._frames.get(sid, (0, 0))
            sent += now[0] - before[0]
            late += now[1] - before[1]
            frames[sid] = now
        self._frames = frames
        t = os.times()
        cpu, wall = t.user + t.system, time.monotonic()
        busy, total = _machine_cpu()
        self._recent.append((wall - self._wall, self._lags, sent, late, cpu - self._cpu,
                             busy - self._machine[0], total - self._machine[1]))
        self._lags = []
        self._cpu, self._wall, self._machine = cpu, wall, (busy, total)
        while len(self._recent) > 1 and sum(r[0] for r in self._recent) - self._recent[0][0] >= self.window_s:
            self._recent.popleft()
        lags = sorted(x for r in self._recent for x in r[1])
        p95 = lags[min(len(lags) - 1, int(0.95 * len(lags)))] if lags else 0.0
        sent, late = sum(r[2] for r in self._recent), sum(r[3] for r in self._recent)
        span = sum(r[0] for r in self._recent)
        m_busy, m_total = sum(r[5] for r in self._recent), sum(r[6] for r in self._recent)
        return {"sessions": len(sessions), "loop_lag_p95_s": p95, "late_ratio": late / sent if sent else 0.0,
                "cpu_busy": m_busy / m_total if m_total > 0 else 0.0,
                "process_cores": sum(r[4] for r in self._recent) / max(span, 1e-3),
                "frames_sent": sent, "late_frames": late}


class _RemoteLease:
    """A session's API-key lease as seen in the worker: the gateway holds the real one and says when it ran out."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def exhausted(self) -> str | None:
        return self.reason

    def release(self) -> None:
        pass  # the gateway releases the real lease when it hears the session closed


class WorkerServer:
    """The worker's side of the socket (see the module doc)."""

    def __init__(self, config: WorkerConfig, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from engines.registry import create_music_engine
        from pipelines.live.models import InProcessModels
        from pipelines.live.options import LiveOptions
        from serve.webrtc.manager import WebRtcManager

        self.config = config
        self.reader, self.writer = reader, writer
        self.hooks = ForwardingHooks()
        self.models = InProcessModels.default(faces=config.faces,
                                              music=create_music_engine(config.engine, config.weights))
        options = LiveOptions(style=config.style, seed=config.seed, mix_original=config.mix_original)
        self.manager = WebRtcManager(
            self.models, options, hooks=self.hooks, max_sessions=config.max_sessions,
            media_timeout_s=config.media_timeout_s, connect_timeout_s=config.connect_timeout_s,
            max_duration_s=config.max_duration_s, ice_servers=config.ice_servers,
            music_engines=config.music_engines, on_session_closed=self._closed)
        self.leases: dict[str, _RemoteLease] = {}
        self.degrade = 0
        self.probe = HeadroomProbe()
        self._tasks: set[asyncio.Task[None]] = set()

    def _send(self, msg: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")

    def _closed(self, session_id: str, reason: str | None) -> None:
        self.leases.pop(session_id, None)
        self._send({"event": "closed", "session_id": session_id, "reason": reason})

    async def serve(self) -> None:
        self._send({"event": "ready", "pid": os.getpid(), "index": self.config.index})
        from serve.loop_monitor import LoopMonitor, LoopMonitorOptions

        # a stall is audible: log what the loop was doing; every lag also feeds the headroom
        monitor = LoopMonitor(LoopMonitorOptions(stall_s=0.1), on_lag=self.probe.record_lag)
        monitor.start()
        background = [asyncio.create_task(self._stats_loop(), name="worker-stats")]
        try:
            while line := await self.reader.readline():
                task = asyncio.create_task(self._handle(json.loads(line)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            monitor.stop()
            for t in background:
                t.cancel()
            await self.manager.close_all()
            self.models.shutdown()

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.stats_interval_s)
            self._send({"event": "stats", "sessions": self.manager.list(),
                        "headroom": self.probe.sample(self.manager.sessions), "metrics": self.hooks.drain(),
                        "degrade": self.degrade})
            await self.writer.drain()

    def _apply_degrade(self) -> None:
        for sess in self.manager.sessions.values():
            set_degrade = getattr(sess.live, "set_degrade", None)
            if set_degrade is not None:
                set_degrade(self.degrade)

    async def _handle(self, msg: dict[str, Any]) -> None:
        rid, op = msg.get("id"), msg.get("op")
        result: Any = None
        try:
            if op == "offer":
                lease = _RemoteLease()
                result = await self.manager.offer(msg["body"], lease=lease, tenant=msg.get("tenant"))
                self.leases[result["session_id"]] = lease
                self._apply_degrade()
            elif op == "hang_up":
                result = await self.manager.hang_up(str(msg["session_id"]))
            elif op == "exhausted":
                held = self.leases.get(str(msg["session_id"]))
                if held is not None:
                    held.reason = str(msg["reason"])
                result = held is not None
            elif op == "degrade":
                self.degrade = int(msg["level"])
                self._apply_degrade()
                result = self.degrade
            elif op == "close_all":
                await self.manager.close_all()
                result = True
            else:
                raise ValueError(f"unknown op {op!r}")
            reply: dict[str, Any] = {"id": rid, "ok": True, "result": result}
        except BackscoreError as exc:
            reply = {"id": rid, "ok": False, "kind": type(exc).__name__, "message": str(exc)}
        except Exception as exc:
            log.exception("live worker %d: %s failed", self.config.index, op)
            reply = {"id": rid, "ok": False, "kind": "InternalError", "message": f"{type(exc).__name__}"}
        self._send(reply)


async def _main(fd: int, config: WorkerConfig) -> None:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=LINE_LIMIT)
    server = WorkerServer(config, reader, writer)
    # what is loaded now lives as long as the worker: keep it out of the collector's way (see serve.gateway)
    gc.collect()
    gc.freeze()
    await server.serve()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m serve.webrtc.worker_process FD CONFIG_JSON", file=sys.stderr)
        return 2
    config = WorkerConfig.from_json(args[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s live-worker-{config.index} %(name)s: %(message)s")
    import scipy.signal  # noqa: F401  imported lazily on the loop by the sessions otherwise (~0.6 s stall)

    asyncio.run(_main(int(args[0]), config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
