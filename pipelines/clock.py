"""Injectable clocks for the live path.

Live sessions pace audio and measure latency against a :class:`Clock`. Production uses
:class:`SystemClock` (the event loop's monotonic time); tests use :class:`VirtualClock`, whose
time moves only when the test advances it, so pacing and latency logic is checked fast and
deterministically.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The running event loop's clock (``loop.time()``)."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """Time stands still until :meth:`advance`; sleepers wake in deadline order."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    async def advance(self, seconds: float, step: float = 0.01) -> None:
        """Move time forward by ``seconds`` in ``step``s, letting woken tasks run at each step."""
        end = self._now + seconds
        while self._now < end - 1e-12:
            self._now = min(end, self._now + step)
            while self._sleepers and self._sleepers[0][0] <= self._now + 1e-12:
                _, _, fut = heapq.heappop(self._sleepers)
                if not fut.done():
                    fut.set_result(None)
            # let the woken tasks (and what they await in turn) run
            for _ in range(5):
                await asyncio.sleep(0)
