"""Watching a job from an event loop: the latest view, filled from any thread, awaited on the loop.

A :class:`JobWatch` keeps only the newest :class:`~pipelines.jobs.record.JobView` (progress is a state, not
a log: a slow consumer skips intermediate fractions, never the terminal view), so it never grows and a
consumer that stops reading costs the job nothing. Closing it (or its loop going away) unsubscribes it;
the job goes on.
"""

from __future__ import annotations

import asyncio
import contextlib

from pipelines.jobs.record import Job, JobView


class JobWatch:
    """See the module doc. Make it on the loop that will read it."""

    def __init__(self, job: Job) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._unsubscribe = job.subscribe(self._push)  # before the first view: no change falls in between
        self.latest: JobView = job.view()

    def _push(self, view: JobView) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody reads any more
            self._loop.call_soon_threadsafe(self._set, view)

    def _set(self, view: JobView) -> None:
        if view.seq > self.latest.seq:
            self.latest = view
            self._changed.set()

    async def next(self, after_seq: int, timeout_s: float | None = None) -> JobView | None:
        """The latest view once it is newer than ``after_seq`` (None if ``timeout_s`` passed first)."""
        while self.latest.seq <= after_seq:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout_s)
            except TimeoutError:
                return None
        return self.latest

    def close(self) -> None:
        self._unsubscribe()
