"""Blocking work off the event loop, and per-request working folders: what the HTTP and gRPC front ends share.

* :class:`JobRunner` -- decode, analysis and composition run in a bounded thread pool, never on
  the event loop that paces every live session's audio. At most ``threads`` jobs run and
  ``max_pending`` wait; one more is refused with :class:`~pipelines.errors.BusyError` (HTTP 503
  with ``Retry-After``, gRPC UNAVAILABLE).
* :class:`BlockingIterator` -- a blocking iterator (the streamed score job's chunks) pulled one
  item at a time on that pool and closable from the loop, also while a pull is still running.
* :class:`SessionSlots` -- the live sessions one gateway replica runs, WebRTC and gRPC ``Stream``
  together, are at most ``max_live_sessions``; one more is :class:`~pipelines.errors.BusyError`.
* :class:`Workdirs` -- a private temporary folder per request, removed when the response is done;
  :func:`scrub` takes the server's paths out of an error message before a client sees it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from pipelines.errors import BusyError
from serve.metrics import QUEUE_DEPTH

T = TypeVar("T")


class JobRunner:
    """A bounded pool for blocking jobs (see the module doc)."""

    def __init__(self, threads: int = 2, max_pending: int = 8) -> None:
        self.threads, self.max_pending = threads, max_pending
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="job")
        self._slots = threading.BoundedSemaphore(threads + max_pending)

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Queue ``fn(*args)``; :class:`BusyError` when ``threads + max_pending`` jobs are already in."""
        if not self._slots.acquire(blocking=False):
            raise BusyError("too many jobs waiting; retry later")
        try:
            fut = self._pool.submit(fn, *args)
        except BaseException:
            self._slots.release()
            raise
        QUEUE_DEPTH.labels(queue="jobs").inc()

        def done(_: concurrent.futures.Future[T]) -> None:
            QUEUE_DEPTH.labels(queue="jobs").dec()
            self._slots.release()

        fut.add_done_callback(done)
        return fut

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn(*args)`` in the pool and wait for it without blocking the loop."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def iterate(self, it: Iterator[T]) -> BlockingIterator[T]:
        return BlockingIterator(self, it)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class BlockingIterator(Generic[T]):
    """``it`` pulled item by item through a :class:`JobRunner`; :meth:`aclose` waits for a running pull."""

    def __init__(self, runner: JobRunner, it: Iterator[T]) -> None:
        self._runner, self._it = runner, it
        self._lock = threading.Lock()  # one step at a time; close waits for a step in its thread
        self._closed = False
        self._inflight: concurrent.futures.Future[T | None] | None = None

    def _step(self) -> T | None:
        with self._lock:
            return None if self._closed else next(self._it, None)

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            close = getattr(self._it, "close", None)
            if close is not None:
                close()

    async def next(self) -> T | None:
        """The next item, or None at the end (or once closed)."""
        fut = self._runner.submit(self._step)
        self._inflight = fut
        item = await asyncio.wrap_future(fut)
        self._inflight = None
        return item

    async def aclose(self) -> None:
        """Close the iterator (its ``finally`` runs in a thread), after a pull still running in the pool."""
        fut = self._inflight
        if fut is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wrap_future(fut)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._close)


class SessionSlots:
    """At most ``capacity`` live sessions at once, whatever their transport (see the module doc)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.in_use = 0

    def acquire(self) -> None:
        """Take a slot (on the event loop: no lock needed); :class:`BusyError` when all are taken."""
        if self.in_use >= self.capacity:
            raise BusyError(f"all {self.capacity} live sessions are in use; try again later")
        self.in_use += 1

    def release(self) -> None:
        self.in_use = max(0, self.in_use - 1)


class Workdirs:
    """Private per-request folders under ``root`` (``BACKSCORE_TMPDIR`` or the system's temp dir)."""

    def __init__(self, root: str | None = None) -> None:
        self.root = root or tempfile.gettempdir()
        os.makedirs(self.root, exist_ok=True)

    def create(self, prefix: str = "backscore-req-") -> str:
        return tempfile.mkdtemp(prefix=prefix, dir=self.root)

    @staticmethod
    async def remove(path: str) -> None:
        await asyncio.to_thread(shutil.rmtree, path, True)


def scrub(message: str, replace: Mapping[str, str]) -> str:
    """``message`` with each server path of ``replace`` (longest first) swapped for what the client knows."""
    for old, new in sorted(replace.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(old, new)
    return message
