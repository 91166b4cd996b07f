"""Progress reporting for long jobs: a one-line bar on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

log = logging.getLogger(__name__)


class Progress:
    """Weighted stages -> one overall fraction. ``stage(name)`` then ``update(fraction)``.

    ``listener(stage, overall)``, when given, is told every change (from the thread that reports it; the
    async job store, :mod:`pipelines.jobs`, turns it into job progress events).
    """

    def __init__(self, stages: dict[str, float], stream: TextIO | None = None, enabled: bool | None = None,
                 listener: Callable[[str | None, float], None] | None = None):
        total = sum(stages.values())
        self._weights = {k: v / total for k, v in stages.items()}
        self._order = list(stages)
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty() if enabled is None else enabled
        self._stage: str | None = None
        self._frac = 0.0
        self._last_draw = 0.0
        self._t0 = time.monotonic()
        self._listener = listener

    def stage(self, name: str) -> None:
        if self._stage is not None:
            self.update(1.0)
        self._stage = name
        self._frac = 0.0
        log.info("stage %s", name)
        self._draw(force=True)
        self._notify()

    def update(self, fraction: float) -> None:
        self._frac = max(0.0, min(1.0, fraction))
        self._draw()
        self._notify()

    def _notify(self) -> None:
        if self._listener is not None:
            self._listener(self._stage, self.overall)

    @property
    def current(self) -> str | None:
        """The stage in progress."""
        return self._stage

    @property
    def overall(self) -> float:
        if self._stage is None:
            return 0.0
        i = self._order.index(self._stage)
        done = sum(self._weights[k] for k in self._order[:i])
        return done + self._weights[self._stage] * self._frac

    def _draw(self, force: bool = False) -> None:
        if not self._tty:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        width = 30
        filled = int(round(self.overall * width))
        bar = "#" * filled + "-" * (width - filled)
        self._stream.write(f"\r[{bar}] {self.overall * 100:5.1f}%  {self._stage or '':<10} {now - self._t0:6.1f}s")
        self._stream.flush()

    def close(self) -> None:
        if self._tty:
            self._stage = self._order[-1]
            self._frac = 1.0
            self._draw(force=True)
            self._stream.write("\n")
            self._stream.flush()
