"""Async jobs, what the HTTP and gRPC front ends share: a client's options -> a job, under the service's rules.

:meth:`JobFront.start` takes the validated request (:class:`serve.http.jobs_protocol.JobRequest`, the same
fields on both transports), the caller (:class:`~serve.access.Principal`, None in local mode) and how to
receive the upload, and:

1. takes one of the caller's job slots (429 / RESOURCE_EXHAUSTED when all are taken), held until the job's
   work ends -- not only its request;
2. turns the options into a :class:`~pipelines.jobs.JobSpec` with this server's libraries and music engines
   (``OptionError`` / ``LibraryError`` as on every endpoint; a ``track`` the library lacks is refused here);
3. from an upload: checks for room first (503 / UNAVAILABLE before the video is read), receives it into a
   request folder, refuses what is not a video (or declares more than the limits) before any job exists,
   and moves it into the new job's folder; ``from_job``: the earlier job's video and analysis
   (:meth:`pipelines.jobs.JobStore.derive`). Error messages name the client's file, never server paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any

from pipelines.errors import BackscoreError, InputError, OptionError
from pipelines.jobs import Job, JobSpec
from pipelines.jobs.work import DEFAULT_OUTPUTS
from pipelines.library.sources import CATALOG
from pipelines.media.decode import probe
from pipelines.media.limits import MediaLimits
from pipelines.offline.jobs import check_track
from pipelines.options import JobOptions
from serve.access import Principal
from serve.core import GatewayCore
from serve.http.jobs_protocol import JobRequest
from serve.jobs import scrub

#: How long cancelling a job (HTTP ``DELETE``, gRPC ``CancelJob``) waits for its work to let go of its folder.
DELETE_WAIT_S = 10.0
#: ``receive(folder)`` -> ``(path, client's file name)``: the upload written into ``folder``.
Receive = Callable[[str], Awaitable[tuple[str, str]]]


class JobFront:
    """See the module doc."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.store = core.job_store

    def spec(self, req: JobRequest, source: dict[str, Any] | None) -> tuple[JobSpec, dict[str, Any]]:
        """The job ``req`` asks for, and its options as the client sees them (``source``: a from_job's options)."""
        if req.track is not None and req.kind != "score":
            raise OptionError("track (a library track to put under the video) is for score jobs")
        shown = req.resolved(source)
        core = self.core
        engine = shown.get("engine") or core.engine
        core.check_music_engine(engine)
        options = JobOptions(style=shown.get("style"), seed=shown.get("seed", 0), faces=shown["faces"],
                             top_k=shown.get("top_k", 5), per_segment=shown.get("per_segment", False),
                             library=core.library_spec(shown["library"]), engine=engine,
                             weights=core.weights if engine == core.engine else None, loudness=shown.get("loudness"))
        spec = JobSpec(req.kind, options, track=shown.get("track"),
                       outputs=tuple(shown.get("outputs") or DEFAULT_OUTPUTS), thumbnails=shown["thumbnails"])
        if req.kind == "score":
            shown.update(engine=engine, style=options.style or "auto", loudness=options.loudness)
        return spec, shown

    async def start(self, req: JobRequest, who: Principal | None, receive: Receive | None) -> Job:
        """A started job (see the module doc); ``receive`` None: no upload came (``from_job`` must say which)."""
        if receive is not None and req.from_job:
            raise OptionError("give either an upload or from_job, not both")
        owner = who.name if who is not None else None
        hold = contextlib.ExitStack()
        hold.enter_context(self.core.access.job(who))  # QuotaError when the key's job slots are taken
        try:
            if req.from_job:
                source = self.store.get(req.from_job, owner)
                spec, shown = self.spec(req, source.options)
                await self._check_track(spec, shown)
                return await asyncio.to_thread(self.store.derive, source.id, spec, options=shown, owner=owner,
                                               release=hold.close)
            if receive is None:
                raise InputError("send a video, or name an earlier job's (from_job)")
            spec, shown = self.spec(req, None)
            await self._check_track(spec, shown)
            return await self._from_upload(spec, shown, owner, receive, hold)
        except BaseException:
            hold.close()
            raise

    @staticmethod
    async def _check_track(spec: JobSpec, shown: dict[str, Any]) -> None:
        """A track the library does not have is refused now (400 / INVALID_ARGUMENT), not as a failed job."""
        if spec.track is not None:
            await asyncio.to_thread(check_track, spec.options.library, spec.track, shown.get("library") or CATALOG)

    async def _from_upload(self, spec: JobSpec, shown: dict[str, Any], owner: str | None, receive: Receive,
                           hold: contextlib.ExitStack) -> Job:
        self.store.check_room()  # busy: refused before the upload is read
        work = self.core.workdirs.create()
        try:
            path, filename = await receive(work)
            try:  # not a video, or over the limits the container declares: refused now, not a failed job later
                await asyncio.to_thread(probe, path, MediaLimits.for_service())
            except BackscoreError as exc:
                message = scrub(str(exc), {path: filename or "the upload", work + os.sep: ""})
                if message == str(exc):
                    raise
                raise type(exc)(message) from exc
            return await asyncio.to_thread(self.store.create, spec, path, filename, options=shown, owner=owner,
                                           release=hold.close)
        finally:
            await self.core.workdirs.remove(work)
