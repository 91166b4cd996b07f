"""One async job: its record (state, stage, progress, ETA, files) and the view of it clients see.

A :class:`Job` is changed by the thread that runs its work (progress, stages, results) and by the
store (state, expiry); every change happens under the job's lock and ends with a new
:class:`JobView` handed to the job's listeners (:meth:`Job.subscribe`) outside the lock. A view is
immutable and carries a sequence number ``seq`` that grows with every change, so a listener that
kept only the latest view has missed nothing that matters.

Progress is monotonic by construction: the overall fraction only ever grows (a stage's weights come
from :class:`~pipelines.progress.Progress`, which the work reports through), a terminal state never
changes again, and ``done`` sets the fraction to 1.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipelines.cancel import CancelToken
from pipelines.progress import Progress

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
#: States a job never leaves.
TERMINAL = frozenset({DONE, FAILED, CANCELLED})
#: ETA is reported once this share of the work is done (before it, a guess from nothing).
ETA_FROM = 0.02

WallClock = Callable[[], float]
Listener = Callable[["JobView"], None]


@dataclass(frozen=True)
class JobFile:
    """A file a job made, in its folder: ``name`` is also the last part of its URL."""

    name: str
    media_type: str
    size: int


@dataclass(frozen=True)
class JobView:
    """What a client sees of a job at one moment (see the module doc)."""

    id: str
    kind: str
    state: str
    stage: str | None
    fraction: float
    eta_s: float | None
    stages_run: tuple[str, ...]
    error: dict[str, str] | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    expires_at: float | None
    #: Role (``video``, ``bgm``, ``timeline``, ...) -> file.
    results: dict[str, JobFile]
    #: Keyframe thumbnails: ``(time_s, file name)``.
    thumbnails: tuple[tuple[float, str], ...]
    #: JSON-able answer of the job (a recommend job's recommendations), None until done.
    data: dict[str, Any] | None
    options: dict[str, Any]
    from_job: str | None
    filename: str
    seq: int

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


class Job:
    """The record of one job (see the module doc). Made by :class:`~pipelines.jobs.store.JobStore`."""

    _seqs = itertools.count(1)

    def __init__(self, job_id: str, kind: str, folder: str, input_path: str, *, clock: WallClock,
                 stages: dict[str, float], options: dict[str, Any], filename: str, owner: str | None = None,
                 from_job: str | None = None) -> None:
        self.id, self.kind, self.folder, self.input_path = job_id, kind, folder, input_path
        self.owner, self.from_job, self.filename, self.options = owner, from_job, filename, options
        self._clock = clock
        self._lock = threading.Lock()
        self.token = CancelToken()
        #: Set once the job's work has let go of its folder (finished, failed or stopped).
        self.work_done = threading.Event()
        #: Set once the job's folder is removed (deleted or expired).
        self.freed = threading.Event()
        self.state = QUEUED
        self.stage: str | None = None
        self.fraction = 0.0
        self.eta_s: float | None = None
        self.stages_run: list[str] = []
        self.error: dict[str, str] | None = None
        self.created_at = clock()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.expires_at: float | None = None
        self.results: dict[str, JobFile] = {}
        self.files: dict[str, JobFile] = {}
        self.thumbnails: list[tuple[float, str]] = []
        self.data: dict[str, Any] | None = None
        self._listeners: dict[int, Listener] = {}
        self._listener_ids = itertools.count()
        self._seq = next(self._seqs)
        self.progress = Progress(stages, enabled=False, listener=self._on_progress)

    # -- views and listeners
    def view(self) -> JobView:
        with self._lock:
            return self._view()

    def _view(self) -> JobView:
        return JobView(self.id, self.kind, self.state, self.stage, round(self.fraction, 4),
                       None if self.eta_s is None else round(self.eta_s, 1), tuple(self.stages_run),
                       dict(self.error) if self.error else None, self.created_at, self.started_at,
                       self.finished_at, self.expires_at, dict(self.results), tuple(self.thumbnails),
                       self.data, dict(self.options), self.from_job, self.filename, self._seq)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(view)`` on every change from now on (from whichever thread makes it); returns the
        unsubscribe function. A listener that raises is dropped; nothing it does affects the job."""
        with self._lock:
            key = next(self._listener_ids)
            self._listeners[key] = listener

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.pop(key, None)

        return unsubscribe

    def file(self, name: str) -> JobFile | None:
        """The job's file ``name`` (a result, a thumbnail, a preview), if it has been made."""
        with self._lock:
            return self.files.get(name)

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._listeners)

    def _changed(self) -> tuple[JobView, list[tuple[int, Listener]]]:
        """Under the lock: a new view and the listeners to tell."""
        self._seq = next(self._seqs)
        return self._view(), list(self._listeners.items())

    def _tell(self, view: JobView, listeners: list[tuple[int, Listener]]) -> None:
        for key, listener in listeners:
            try:
                listener(view)
            except Exception:
                log.exception("a listener of job %s failed; dropped", self.id)
                with self._lock:
                    self._listeners.pop(key, None)

    def _update(self, change: Callable[[], bool]) -> None:
        """Apply ``change`` under the lock (it returns whether anything changed), then tell the listeners."""
        with self._lock:
            if not change():
                return
            view, listeners = self._changed()
        self._tell(view, listeners)

    # -- what the work reports (from its thread)
    def _on_progress(self, stage: str | None, overall: float) -> None:
        def change() -> bool:
            if self.state in TERMINAL:
                return False
            moved = stage != self.stage or overall > self.fraction
            if stage is not None and stage not in self.stages_run:
                self.stages_run.append(stage)
            self.stage = stage
            self.fraction = max(self.fraction, min(1.0, overall))
            if self.started_at is not None and self.fraction >= ETA_FROM:
                elapsed = max(0.0, self._clock() - self.started_at)
                self.eta_s = elapsed * (1.0 - self.fraction) / self.fraction
            return moved

        self._update(change)

    def add_file(self, name: str, media_type: str, role: str | None = None) -> JobFile:
        """Register ``name`` (in the job's folder) as one of its files, a result under ``role`` if given."""
        f = JobFile(name, media_type, os.path.getsize(os.path.join(self.folder, name)))

        def change() -> bool:
            self.files[name] = f
            if role is not None:
                self.results[role] = f
            return True

        self._update(change)
        return f

    def set_thumbnails(self, thumbs: list[tuple[float, str]]) -> None:
        def change() -> bool:
            for _, name in thumbs:
                self.files[name] = JobFile(name, "image/jpeg", os.path.getsize(os.path.join(self.folder, name)))
            self.thumbnails = list(thumbs)
            return True

        self._update(change)

    def set_data(self, data: dict[str, Any]) -> None:
        def change() -> bool:
            self.data = data
            return True

        self._update(change)

    # -- what the store does
    def mark_running(self) -> bool:
        """The work starts; False when the job was stopped meanwhile (it must not run)."""
        started = False

        def change() -> bool:
            nonlocal started
            if self.state != QUEUED:
                return False
            self.state, self.started_at = RUNNING, self._clock()
            started = True
            return True

        self._update(change)
        return started

    def finish(self, state: str, ttl_s: float, error: dict[str, str] | None = None) -> bool:
        """Enter a terminal ``state`` (once: False if already in one); results are kept ``ttl_s`` from now."""
        finished = False

        def change() -> bool:
            nonlocal finished
            if self.state in TERMINAL:
                return False
            now = self._clock()
            self.state, self.finished_at, self.expires_at = state, now, now + ttl_s
            self.eta_s = 0.0 if state == DONE else None
            if state == DONE:
                self.fraction = 1.0
            self.error = error
            finished = True
            return True

        self._update(change)
        return finished

    def stopped_by(self) -> str | None:
        """Why the job's token was cancelled (None: it was not)."""
        return str(self.token.error) if self.token.cancelled else None

