"""The async job store: jobs of one process, each in its own folder, run on a bounded pool, kept for a while.

* **Bounds** (:class:`JobLimits`): at most ``max_active`` jobs queued or running and ``max_stored`` kept
  (running or finished with their results); one more is :class:`JobsBusy` (a
  :class:`~pipelines.errors.BusyError`: 503 with ``Retry-After`` -- the soonest a running job should end, or
  a finished one expire). The work itself is queued on the pool ``submit`` gives (the gateway's
  :class:`serve.jobs.JobRunner`, shared with the blocking endpoints, so its bounds hold too).
* **Expiry**: a finished job (done, failed or cancelled) and its files are removed ``ttl_s`` after it ended,
  by :meth:`JobStore.sweep` (a sweeper thread calls it every ``sweep_s``; :meth:`JobStore.get` also expires a
  due job at once). An expired id answers :class:`~pipelines.errors.GoneError` (410) for a while after (the
  last ``remember_gone`` ids), an unknown one :class:`~pipelines.errors.NotFoundError` (404).
* **Wall time**: a job running longer than ``timeout_s`` is stopped with a
  :class:`~pipelines.errors.DeadlineError` at its next check (the sweep looks).
* **Cancel** (:meth:`JobStore.delete`): the job's :class:`~pipelines.cancel.CancelToken` is set, so its work
  stops at its next check (a decoded packet, a composed chunk, a stage boundary); the job leaves the store at
  once and its folder is removed as soon as the work has let go (:attr:`Job.freed` then set).
* **Owners**: a job made with an API key is seen only with that key (others get 404, as if it did not exist).
* **Time** comes from one injected wall clock (``time.time``; tests move their own), so expiry and
  deadlines are tested without waiting.

Plain Python: no FastAPI, no Ray, no event loop (listeners are plain callables; :mod:`pipelines.jobs.watch`
adapts them to asyncio).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import math
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engines.base import EngineError
from pipelines.errors import (
    BackscoreError,
    BusyError,
    DeadlineError,
    GoneError,
    JobCancelled,
    NotFoundError,
    error_kind,
)
from pipelines.jobs.record import CANCELLED, DONE, FAILED, TERMINAL, Job, WallClock
from pipelines.jobs.work import ANALYSIS_FILE, JobSpec, JobWork

log = logging.getLogger(__name__)

#: ``submit(fn, *args, token=...)`` -> a future (:meth:`serve.jobs.JobRunner.submit`'s signature): runs ``fn`` under
#: ``token`` (:func:`pipelines.cancel.cancel_scope`).
Submit = Callable[..., "concurrent.futures.Future[Any]"]
#: ``work(job, spec, reuse)``: a job's work (:class:`~pipelines.jobs.work.JobWork`).
Work = Callable[[Job, JobSpec, bool], None]


@dataclass(frozen=True)
class JobLimits:
    """The bounds of one store (see the module doc)."""

    max_active: int = 4
    max_stored: int = 32
    ttl_s: float = 3600.0
    timeout_s: float | None = 600.0
    remember_gone: int = 4096
    #: Retry-After when nothing better is known (seconds).
    retry_s: int = 5

    def __post_init__(self) -> None:
        if self.max_active < 1 or self.max_stored < self.max_active:
            raise ValueError(f"need 1 <= max_active <= max_stored, got {self.max_active}, {self.max_stored}")
        if not self.ttl_s > 0:
            raise ValueError(f"ttl_s must be positive, got {self.ttl_s}")


class JobsBusy(BusyError):
    """No room for another job now; ``retry_after_s`` says when there should be."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type[JobsBusy], tuple[str, int]]:
        return type(self), (str(self), self.retry_after_s)


def _scrub(message: str, job: Job) -> str:
    """The message with the job's server paths swapped for what the client knows."""
    for old, new in ((job.input_path, job.filename or "the upload"), (job.folder + os.sep, ""), (job.folder, "")):
        message = message.replace(old, new)
    return message


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class JobStore:
    """See the module doc. ``root``: where job folders go (``backscore-job-*``)."""

    PREFIX = "backscore-job-"

    def __init__(self, root: str | None, submit: Submit, limits: JobLimits | None = None, *,
                 clock: WallClock = time.time, work: Work | None = None, sweep_s: float = 1.0) -> None:
        self.root = root or tempfile.gettempdir()
        os.makedirs(self.root, exist_ok=True)
        self.submit = submit
        self.limits = limits or JobLimits()
        self.clock = clock
        #: What the jobs do (tests give it a music engine with a gate).
        self.work: Work = work or JobWork()
        self.sweep_s = sweep_s
        self._jobs: dict[str, Job] = {}
        self._futures: dict[str, concurrent.futures.Future[Any]] = {}
        self._gone: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # -- room
    def _active(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.state not in TERMINAL]

    def check_room(self) -> None:
        """:class:`JobsBusy` when one more job would pass a bound (ask before receiving an upload)."""
        self.sweep()
        with self._lock:
            active = self._active()
            if len(active) >= self.limits.max_active:
                etas = [j.eta_s for j in active if j.eta_s is not None]
                retry = math.ceil(min(etas)) if etas else self.limits.retry_s
                raise JobsBusy(f"{len(active)} jobs are queued or running, this server's limit; retry later",
                               max(1, min(retry, 600)))
            if len(self._jobs) >= self.limits.max_stored:
                now = self.clock()
                ends = [j.expires_at for j in self._jobs.values() if j.expires_at is not None]
                retry = math.ceil(min(ends) - now) if ends else self.limits.retry_s
                raise JobsBusy(f"{len(self._jobs)} jobs are kept, this server's limit; delete finished ones "
                               "(DELETE /v1/jobs/ID) or retry later", max(1, retry))

    # -- making jobs
    def _new(self, spec: JobSpec, options: dict[str, Any], filename: str, suffix: str, owner: str | None,
             from_job: str | None, reuse: bool) -> Job:
        folder = tempfile.mkdtemp(prefix=self.PREFIX, dir=self.root)
        job_id = secrets.token_urlsafe(12)
        return Job(job_id, spec.kind, folder, os.path.join(folder, "input" + suffix), clock=self.clock,
                   stages=spec.stages(reuse), options=options, filename=filename, owner=owner,
                   from_job=from_job)

    def create(self, spec: JobSpec, upload_path: str, filename: str, *, options: dict[str, Any] | None = None,
               owner: str | None = None, release: Callable[[], None] | None = None) -> Job:
        """A job of ``spec`` on the file at ``upload_path`` (moved into the job's folder), started at once.
        ``options``: the job's options as its client sees them (shown in its views); ``release`` is called once
        when the job's work has let go (an API key's job slot)."""
        self.check_room()
        job = self._new(spec, options or {}, filename, os.path.splitext(upload_path)[1], owner, None, reuse=False)
        shutil.move(upload_path, job.input_path)
        return self._start(job, spec, reuse=False, release=release)

    def derive(self, source_id: str, spec: JobSpec, *, options: dict[str, Any] | None = None,
               owner: str | None = None, release: Callable[[], None] | None = None) -> Job:
        """A job of ``spec`` on the upload and analysis of job ``source_id`` (linked into the new job's folder, so
        either may go first): only the stages after the analysis run (:mod:`pipelines.jobs.work`)."""
        from pipelines.jobs.work import load_analysis

        source = self.get(source_id, owner)
        load_analysis(source.folder)  # ConflictError while it has none yet
        self.check_room()
        job = self._new(spec, options or {}, source.filename, os.path.splitext(source.input_path)[1], owner,
                        source.id, reuse=True)
        try:
            _link(source.input_path, job.input_path)
            _link(os.path.join(source.folder, ANALYSIS_FILE), os.path.join(job.folder, ANALYSIS_FILE))
            thumbs = source.view().thumbnails
            for _, name in thumbs:
                _link(os.path.join(source.folder, name), os.path.join(job.folder, name))
            job.set_thumbnails(list(thumbs))
        except FileNotFoundError as exc:  # the source was deleted meanwhile
            shutil.rmtree(job.folder, ignore_errors=True)
            raise NotFoundError(f"job {source_id!r} was removed") from exc
        except BaseException:
            shutil.rmtree(job.folder, ignore_errors=True)
            raise
        return self._start(job, spec, reuse=True, release=release)

    def _start(self, job: Job, spec: JobSpec, reuse: bool, release: Callable[[], None] | None) -> Job:
        with self._lock:
            self._jobs[job.id] = job
        try:
            fut = self.submit(self._run, job, spec, reuse, token=job.token)
        except BaseException:
            with self._lock:
                self._jobs.pop(job.id, None)
            shutil.rmtree(job.folder, ignore_errors=True)
            raise
        with self._lock:
            self._futures[job.id] = fut

        def let_go(_: concurrent.futures.Future[Any]) -> None:
            job.finish(CANCELLED, self.limits.ttl_s, {"type": "Cancelled", "message": "the job was cancelled"})
            job.work_done.set()
            with self._lock:
                self._futures.pop(job.id, None)
                gone = job.id not in self._jobs
            if release is not None:
                release()
            if gone:
                self._remove(job)

        fut.add_done_callback(let_go)
        return job

    def _run(self, job: Job, spec: JobSpec, reuse: bool) -> None:
        """The work of one job, on the pool (under its token: :meth:`submit` puts it there)."""
        if not job.mark_running():
            return
        try:
            self.work(job, spec, reuse)
        except JobCancelled as exc:
            job.finish(CANCELLED, self.limits.ttl_s, {"type": error_kind(exc), "message": str(exc)})
        except (BackscoreError, EngineError) as exc:  # DeadlineError included: failed, it says why
            job.finish(FAILED, self.limits.ttl_s, {"type": error_kind(exc), "message": _scrub(str(exc), job)})
        except Exception:
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.finish(FAILED, self.limits.ttl_s, {"type": "InternalError", "message": "internal error"})
        else:
            if job.token.cancelled:  # stopped after its last check: what it made is not wanted
                job.finish(CANCELLED, self.limits.ttl_s, {"type": "Cancelled", "message": str(job.token.error)})
            else:
                job.finish(DONE, self.limits.ttl_s)

    # -- finding, cancelling, expiring
    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job ``job_id`` (:class:`NotFoundError`, or :class:`GoneError` once expired)."""
        self._expire_due(only=job_id)
        with self._lock:
            job = self._jobs.get(job_id)
            gone = job_id in self._gone
        if job is None or (job.owner is not None and job.owner != owner):
            if gone:
                raise GoneError(f"job {job_id!r} expired: its results were removed "
                                f"{self.limits.ttl_s:g} s after it ended")
            raise NotFoundError(f"no job {job_id!r} here")
        return job

    def jobs(self, owner: str | None = None) -> list[Job]:
        """The jobs ``owner`` may see, oldest first."""
        self._expire_due()
        with self._lock:
            return [j for j in self._jobs.values() if j.owner is None or j.owner == owner]

    def delete(self, job_id: str, owner: str | None = None) -> Job:
        """Cancel the job if it has not ended and remove it with its files (see the module doc)."""
        job = self.get(job_id, owner)
        with self._lock:
            self._jobs.pop(job.id, None)
            running = job.id in self._futures
        job.token.cancel(JobCancelled("the job was cancelled (DELETE)"))
        job.finish(CANCELLED, self.limits.ttl_s, {"type": "Cancelled", "message": "the job was cancelled"})
        if not running:
            self._remove(job)  # else the pool's done callback removes it once the work lets go
        return job

    def _remove(self, job: Job) -> None:
        shutil.rmtree(job.folder, ignore_errors=True)
        job.freed.set()

    def _expire_due(self, only: str | None = None) -> list[str]:
        now = self.clock()
        with self._lock:
            due = [j for j in self._jobs.values() if (only is None or j.id == only)
                   and j.expires_at is not None and now >= j.expires_at and j.id not in self._futures]
            for j in due:
                del self._jobs[j.id]
                self._gone[j.id] = None
            while len(self._gone) > self.limits.remember_gone:
                self._gone.popitem(last=False)
        for j in due:
            self._remove(j)
        return [j.id for j in due]

    def sweep(self) -> list[str]:
        """Expire what is due and stop jobs past the wall-time limit; the ids expired."""
        timeout = self.limits.timeout_s
        if timeout is not None:
            now = self.clock()
            with self._lock:
                late = [j for j in self._active() if j.started_at is not None and now - j.started_at > timeout]
            for j in late:
                j.token.cancel(DeadlineError(f"the job ran longer than {timeout:.0f} s, this server's limit"))
        return self._expire_due()

    def sweep_orphans(self, max_age_s: float | None = None) -> list[str]:
        """Remove job folders no store of this process knows and in which nothing changed for ``max_age_s`` (what a
        killed process left; default: the TTL plus the wall-time limit plus an hour). Wall time, not the clock."""
        age = max_age_s if max_age_s is not None else self.limits.ttl_s + (self.limits.timeout_s or 0) + 3600
        with self._lock:
            known = {j.folder for j in self._jobs.values()}
        removed = []
        with contextlib.suppress(OSError), os.scandir(self.root) as it:
            for entry in it:
                if not entry.name.startswith(self.PREFIX) or entry.path in known:
                    continue
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False) and time.time() - entry.stat().st_mtime > age:
                        shutil.rmtree(entry.path, ignore_errors=True)
                        removed.append(entry.path)
        return removed

    # -- lifecycle
    def start_sweeper(self) -> None:
        """:meth:`sweep` every ``sweep_s`` (and :meth:`sweep_orphans` every few minutes) in a daemon thread."""
        if self._sweeper is not None:
            return
        self.sweep_orphans()

        def loop() -> None:
            n = 0
            while not self._stop.wait(self.sweep_s):
                n += 1
                try:
                    self.sweep()
                    if n % max(1, int(300 / self.sweep_s)) == 0:
                        self.sweep_orphans()
                except Exception:
                    log.exception("sweeping the jobs failed")

        self._sweeper = threading.Thread(target=loop, name="job-sweeper", daemon=True)
        self._sweeper.start()

    def shutdown(self) -> None:
        """Stop the sweeper, cancel every job and remove every job folder (the store lives in this process)."""
        self._stop.set()
        with self._lock:
            jobs = list(self._jobs.values())
        for j in jobs:
            with contextlib.suppress(BackscoreError):
                self.delete(j.id, j.owner)
