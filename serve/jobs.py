"""Blocking work off the event loop, and per-request working folders: what the HTTP and gRPC front ends share.

* :class:`JobRunner` -- decode, analysis and composition run in a bounded thread pool, never on
  the event loop that paces every live session's audio. At most ``threads`` jobs run and
  ``max_pending`` wait; one more is refused with :class:`~pipelines.errors.BusyError` (HTTP 503
  with ``Retry-After``, gRPC UNAVAILABLE). Each job runs under a
  :class:`~pipelines.cancel.CancelToken`: when the request is cancelled (HTTP disconnect, gRPC
  cancel) or the job passes ``timeout_s`` (:class:`~pipelines.errors.DeadlineError`: 504 /
  DEADLINE_EXCEEDED), the job stops at its next check (a decoded packet, a composed chunk) and
  :meth:`JobRunner.run` returns only once its thread has let go, so the request's folder can go.
* :class:`BlockingIterator` -- a blocking iterator (the streamed score job's chunks) pulled one
  item at a time on that pool and closable from the loop, also while a pull is still running.
* :class:`SessionSlots` -- the live sessions one gateway replica runs, WebRTC and gRPC ``Stream``
  together, are at most ``max_live_sessions``; one more is :class:`~pipelines.errors.BusyError`.
* :class:`Workdirs` -- a private temporary folder per request, removed when the response is done
  (whatever happened to the request), and a sweeper for the orphans a killed process leaves;
  :func:`scrub` takes the server's paths out of an error message before a client sees it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from pipelines.cancel import CancelToken, cancel_scope
from pipelines.errors import BusyError, DeadlineError, JobCancelled
from serve.metrics import QUEUE_DEPTH

T = TypeVar("T")

log = logging.getLogger(__name__)


def _scoped(token: CancelToken | None, fn: Callable[..., T], *args: Any) -> T:
    with cancel_scope(token):
        if token is not None:
            token.check()  # cancelled while it waited in the queue
        return fn(*args)


class JobRunner:
    """A bounded pool for blocking jobs (see the module doc)."""

    def __init__(self, threads: int = 2, max_pending: int = 8, timeout_s: float | None = None) -> None:
        self.threads, self.max_pending, self.timeout_s = threads, max_pending, timeout_s
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="job")
        self._slots = threading.BoundedSemaphore(threads + max_pending)

    def submit(self, fn: Callable[..., T], *args: Any,
               token: CancelToken | None = None) -> concurrent.futures.Future[T]:
        """Queue ``fn(*args)`` (under ``token``); :class:`BusyError` when ``threads + max_pending`` jobs are
        already in."""
        if not self._slots.acquire(blocking=False):
            raise BusyError("too many jobs waiting; retry later")
        try:
            fut = self._pool.submit(_scoped, token, fn, *args)
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
        """Run blocking ``fn(*args)`` in the pool and wait for it without blocking the loop (see the module
        doc for cancellation and the wall-time limit)."""
        token = CancelToken()
        job = asyncio.wrap_future(self.submit(fn, *args, token=token))
        try:
            return await asyncio.wait_for(asyncio.shield(job), self.timeout_s)
        except TimeoutError:
            token.cancel(DeadlineError(f"the job ran longer than {self.timeout_s:.0f} s, this server's limit"))
            await _let_go(job)
            raise token.error from None
        except asyncio.CancelledError:
            token.cancel(JobCancelled("the client went away"))
            await _let_go(job)
            raise

    def iterate(self, it: Iterator[T]) -> BlockingIterator[T]:
        return BlockingIterator(self, it)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def _let_go(job: asyncio.Future[Any]) -> None:
    """Wait, shielded from cancellation, until a cancelled job's thread has stopped (its outcome is dropped)."""
    while not job.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({job})
    if not job.cancelled():
        job.exception()  # retrieved: the job's own error is not news once it was cancelled


class BlockingIterator(Generic[T]):
    """``it`` pulled item by item through a :class:`JobRunner`; :meth:`aclose` waits for a running pull."""

    def __init__(self, runner: JobRunner, it: Iterator[T]) -> None:
        self._runner, self._it = runner, it
        self._lock = threading.Lock()  # one step at a time; close waits for a step in its thread
        self._token = CancelToken()  # every step runs under it; aclose cancels a step in progress
        self._deadline: float | None = None
        self._closed = False
        self._inflight: asyncio.Future[T | None] | None = None

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
        """The next item, or None at the end (or once closed); :class:`DeadlineError` once the whole
        iteration has taken longer than the runner's ``timeout_s``."""
        loop = asyncio.get_running_loop()
        timeout = self._runner.timeout_s
        if timeout is not None and self._deadline is None:
            self._deadline = loop.time() + timeout
        step = asyncio.wrap_future(self._runner.submit(self._step, token=self._token))
        self._inflight = step
        remaining = None if self._deadline is None else max(0.0, self._deadline - loop.time())
        try:
            item = await asyncio.wait_for(asyncio.shield(step), remaining)
        except TimeoutError:
            self._token.cancel(DeadlineError(f"the job ran longer than {timeout:.0f} s, this server's limit"))
            await _let_go(step)
            raise self._token.error from None
        self._inflight = None
        return item

    async def aclose(self) -> None:
        """Close the iterator (its ``finally`` runs in a thread), after a pull still running in the pool."""
        step = self._inflight
        if step is not None:
            self._token.cancel(JobCancelled("the stream was closed"))
            await _let_go(step)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._close)


class SessionSlots:
    """At most ``capacity`` live sessions at once, whatever their transport (see the module doc); also
    used for other things a replica does at most so many of at once (``what``: uploads)."""

    def __init__(self, capacity: int, what: str = "live sessions") -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity, self.what = capacity, what
        self.in_use = 0

    def acquire(self) -> None:
        """Take a slot (on the event loop: no lock needed); :class:`BusyError` when all are taken."""
        if self.in_use >= self.capacity:
            raise BusyError(f"all {self.capacity} {self.what} are in use; try again later")
        self.in_use += 1

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """A slot for the block."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def release(self) -> None:
        self.in_use = max(0, self.in_use - 1)


class Workdirs:
    """Private per-request folders under ``root`` (``BACKSCORE_TMPDIR`` or the system's temp dir).

    :meth:`remove` cannot be interrupted: a cancelled request still removes its folder. Whatever
    escapes that (a process killed mid-request) the sweeper removes: a folder of :data:`PREFIXES`
    that this process is not using and in which nothing has changed for ``max_age_s`` (the job
    wall-time limit plus the upload idle limit, so no live request of another replica sharing
    ``root`` is touched) -- at start-up (:meth:`sweep`) and every ``interval_s`` after
    (:meth:`start_sweeper`).
    """

    #: Name prefixes of the request folders (HTTP, gRPC).
    PREFIXES = ("backscore-req-", "backscore-grpc-")

    def __init__(self, root: str | None = None, max_age_s: float = 900.0) -> None:
        self.root = root or tempfile.gettempdir()
        self.max_age_s = max_age_s
        os.makedirs(self.root, exist_ok=True)
        self._live: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def create(self, prefix: str = "backscore-req-") -> str:
        path = tempfile.mkdtemp(prefix=prefix, dir=self.root)
        with self._lock:
            self._live.add(path)
        return path

    async def remove(self, path: str) -> None:
        """Remove ``path`` (also when the awaiting task is cancelled meanwhile: the removal finishes first)."""
        task = asyncio.ensure_future(asyncio.to_thread(self._remove, path))
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    def _remove(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)
        with self._lock:
            self._live.discard(path)

    @property
    def live(self) -> int:
        """Request folders of this process not yet removed."""
        with self._lock:
            return len(self._live)

    def sweep(self, now: float | None = None) -> list[str]:
        """Remove orphaned request folders (see the class doc); the paths removed."""
        now = time.time() if now is None else now
        removed: list[str] = []
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return removed
        for entry in entries:
            if not entry.name.startswith(self.PREFIXES):
                continue
            with self._lock:
                if entry.path in self._live:
                    continue
            try:
                if not entry.is_dir(follow_symlinks=False) or now - _last_change(entry.path) < self.max_age_s:
                    continue
            except OSError:
                continue  # removed meanwhile
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
        if removed:
            log.warning("swept %d orphaned request folder(s) from %s", len(removed), self.root)
        return removed

    def start_sweeper(self, interval_s: float = 60.0) -> None:
        """Sweep now and then every ``interval_s`` in a daemon thread, until :meth:`stop_sweeper`."""
        self.sweep()
        if self._sweeper is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.sweep()
                except Exception:
                    log.exception("sweeping %s failed", self.root)

        self._sweeper = threading.Thread(target=loop, name="workdir-sweeper", daemon=True)
        self._sweeper.start()

    def stop_sweeper(self) -> None:
        self._stop.set()


def _last_change(path: str) -> float:
    """The newest modification time of a folder and its direct entries."""
    newest = os.stat(path).st_mtime
    with os.scandir(path) as it:
        for e in it:
            with contextlib.suppress(OSError):
                newest = max(newest, e.stat(follow_symlinks=False).st_mtime)
    return newest


def scrub(message: str, replace: Mapping[str, str]) -> str:
    """``message`` with each server path of ``replace`` (longest first) swapped for what the client knows."""
    for old, new in sorted(replace.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(old, new)
    return message
