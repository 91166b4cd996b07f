"""Watches the gateway's event loop: every live session's audio is paced on it, so a stall is audible.

:class:`LoopMonitor` runs a small task on the loop that wakes every ``interval_s`` and records how
late it woke in ``backscore_event_loop_lag_seconds``. A watchdog thread notices a stall while it
is still going on (no heartbeat for ``stall_s``) and logs, once per stall, what the loop thread is
doing — its Python stack — and how busy this process and the machine were, so a stall can be
told apart from CPU starvation (the process got no CPU) or a long call holding the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from serve.metrics import LOOP_LAG_SECONDS, LOOP_STALLS_TOTAL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopMonitorOptions:
    interval_s: float = 0.05
    #: A heartbeat older than this is a stall: reported (with the loop thread's stack) once.
    stall_s: float = 0.25
    #: Frames of the loop thread's stack to log.
    stack_depth: int = 12


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:4])
    except OSError:
        return "?"


class LoopMonitor:
    """Start with :meth:`start` from the loop it watches; :meth:`stop` ends both the task and the thread."""

    def __init__(self, options: LoopMonitorOptions | None = None,
                 on_lag: Callable[[float], None] | None = None) -> None:
        self.options = options or LoopMonitorOptions()
        #: Told every lag measured (a :class:`~serve.webrtc.worker_process.HeadroomProbe`: admission reads it too).
        self.on_lag = on_lag
        self.stalls = 0
        self.max_lag_s = 0.0
        self._beat = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-monitor")
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        interval = self.options.interval_s
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(interval)
            now = time.monotonic()
            self._beat = now
            lag = max(0.0, now - t0 - interval)
            LOOP_LAG_SECONDS.observe(lag)
            self.max_lag_s = max(self.max_lag_s, lag)
            if self.on_lag is not None:
                self.on_lag(lag)

    def _watch(self) -> None:
        o = self.options
        reported_beat = 0.0
        cpu0, wall0 = _cpu_s(), time.monotonic()
        while not self._stop.wait(o.interval_s):
            now = time.monotonic()
            beat = self._beat
            if now - beat < o.stall_s:
                cpu0, wall0 = _cpu_s(), now  # this process's CPU use just before a stall starts
                continue
            if beat == reported_beat:
                continue
            reported_beat = beat
            self.stalls += 1
            LOOP_STALLS_TOTAL.inc()
            frame = sys._current_frames().get(self._loop_thread)
            stack = "".join(traceback.format_stack(frame, limit=o.stack_depth)) if frame is not None else "?"
            busy = (_cpu_s() - cpu0) / max(now - wall0, 1e-3)
            log.warning("event loop stalled %.0f ms (still going); process CPU %.0f%% of a core meanwhile, "
                        "load average %s; the loop thread is at:\n%s", 1000 * (now - beat), 100 * busy,
                        _loadavg(), stack)
