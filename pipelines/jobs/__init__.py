"""Async jobs: an upload analysed, recommended or scored in the background, watched, fetched, cancelled, expired.

* :mod:`~pipelines.jobs.record` -- one job's record (state, stage, monotonic progress, ETA, stages run,
  files) and the immutable :class:`JobView` its listeners get.
* :mod:`~pipelines.jobs.store` -- :class:`JobStore`: per-job folders, bounds on jobs running and kept
  (:class:`JobsBusy`: 503), expiry after a TTL, the wall-time limit, cancel, owners (API keys), on an
  injected wall clock; the work runs on the pool it is given (the gateway's job runner).
* :mod:`~pipelines.jobs.work` -- what each kind does (analyze, recommend, score), keeping the analysis so
  a job made from another skips it.
* :mod:`~pipelines.jobs.media` -- keyframe thumbnails and library-track previews for a studio.
* :mod:`~pipelines.jobs.watch` -- :class:`JobWatch`: a job's latest view awaited on an event loop.

Plain Python (no FastAPI, no Ray): the HTTP layer is :mod:`serve.http.jobs_router`.
"""

from pipelines.jobs.record import CANCELLED, DONE, FAILED, QUEUED, RUNNING, TERMINAL, Job, JobFile, JobView
from pipelines.jobs.store import JobLimits, JobsBusy, JobStore
from pipelines.jobs.watch import JobWatch
from pipelines.jobs.work import KINDS, OUTPUTS, JobSpec, JobWork

__all__ = ["CANCELLED", "DONE", "FAILED", "KINDS", "OUTPUTS", "QUEUED", "RUNNING", "TERMINAL", "Job", "JobFile",
           "JobLimits", "JobSpec", "JobStore", "JobView", "JobWatch", "JobWork", "JobsBusy"]
