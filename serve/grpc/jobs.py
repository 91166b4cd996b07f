"""The async job methods of ``backscore.v1.Backscore``: ``StartJob``, ``WatchJob`` (server streaming), ``CancelJob``.

The gRPC face of HTTP's ``/v1/jobs`` (:mod:`serve.http.jobs_router`), on the same store and rules
(:class:`serve.job_front.JobFront`: the key's job slot, the store's bounds, ``from_job``):

* ``StartJob`` -- the video inline (``StartJobRequest.video``, at most ``max_upload_bytes``: RESOURCE_EXHAUSTED)
  or, in ``options_json``, a ``from_job``; the options are the JSON fields of ``POST /v1/jobs`` (a malformed
  or unknown field is INVALID_ARGUMENT). Answers the job's status at once.
* ``WatchJob`` -- the job's status now, then at every change (a slow reader gets the latest, never a
  backlog), until the job ends; a client that cancels the call only stops watching.
* ``CancelJob`` -- as ``DELETE /v1/jobs/{id}``: the work stops at its next check and the job is removed
  with its files (waits up to 10 s for the work to let go); answers the job's last status.

The files a job makes are fetched over HTTP, at the paths of ``JobStatus.results`` (role -> path): a scored
video can be far larger than a gRPC message should be, and HTTP serves byte ranges and caching. Status
codes come from the one error table (NOT_FOUND for an unknown or expired job, UNAVAILABLE with "retry" when
the store is full, RESOURCE_EXHAUSTED when the key's job slots are taken).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

from pipelines.errors import InputError, LimitError, OptionError
from pipelines.jobs import JobStore, JobView, JobWatch
from serve.access import AccessPolicy
from serve.grpc.calls import _Call
from serve.http.errors import ApiError
from serve.http.jobs_protocol import JobRequest, job_status, parse_job_request
from serve.job_front import DELETE_WAIT_S, JobFront
from serve.jobs import Workdirs
from serve.proto.backscore.v1 import backscore_pb2 as pb

if TYPE_CHECKING:
    from ray.serve.grpc_util import RayServegRPCContext

    from serve.core import GatewayCore

MiB = 1024 * 1024


def job_request(options_json: str) -> JobRequest:
    """``StartJobRequest.options_json`` as the fields of ``POST /v1/jobs`` (INVALID_ARGUMENT when malformed)."""
    fields: Any = {}
    if options_json.strip():
        try:
            fields = json.loads(options_json)
        except ValueError as exc:
            raise OptionError("options_json is not JSON") from exc
    if not isinstance(fields, dict):
        raise OptionError("options_json must be a JSON object of job options")
    try:
        return parse_job_request(fields)
    except ApiError as exc:  # HTTP's 422: a bad argument here
        raise OptionError(exc.message) from exc


def job_message(view: JobView) -> pb.JobStatus:
    status = job_status(view)
    msg = pb.JobStatus(id=view.id, kind=view.kind, state=view.state, stage=view.stage or "", fraction=view.fraction,
                       stages_run=list(view.stages_run), error_type=(view.error or {}).get("type", ""),
                       error_message=(view.error or {}).get("message", ""),
                       results={role: r["url"] for role, r in status["results"].items()}, seq=view.seq,
                       status_json=json.dumps(status, separators=(",", ":")))
    if view.eta_s is not None:
        msg.eta_s = view.eta_s
    return msg


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


class GrpcJobMethods:
    """The async job methods (see the module doc); a mixin of :class:`serve.grpc.servicer.GrpcMethods`, on the
    gateway core's attributes."""

    job_store: JobStore
    access: AccessPolicy
    workdirs: Workdirs
    max_upload_bytes: int

    def _owner(self, grpc_context: Any) -> str | None:
        who = self.access.admit_grpc(grpc_context)
        return who.name if who is not None else None

    async def StartJob(self, request: pb.StartJobRequest,
                       grpc_context: RayServegRPCContext | None = None) -> pb.JobStatus:
        async with _Call("StartJob", grpc_context) as call:
            who = self.access.admit_grpc(grpc_context)
            req = job_request(request.options_json)
            video, filename = request.video, os.path.basename(request.filename) or "video.mp4"
            if len(video) > self.max_upload_bytes:
                raise LimitError(f"video of {len(video) / MiB:.1f} MiB is larger than this server accepts "
                                 f"({self.max_upload_bytes / MiB:.0f} MiB)")

            async def receive(folder: str) -> tuple[str, str]:
                ext = os.path.splitext(filename)[1].lower()
                path = os.path.join(folder, "input" + (ext if ext[1:].isalnum() and len(ext) <= 6 else ".mp4"))
                call.replace[path] = filename
                await asyncio.to_thread(_write, path, video)
                return path, filename

            if not video and not req.from_job:
                raise InputError("no video: StartJobRequest.video is empty and options_json names no from_job")
            job = await JobFront(cast("GatewayCore", self)).start(req, who, receive if video else None)
            return job_message(job.view())

    async def WatchJob(self, request: pb.JobRef,
                       grpc_context: RayServegRPCContext | None = None) -> AsyncIterator[pb.JobStatus]:
        async with _Call("WatchJob", grpc_context):
            job = self.job_store.get(request.id, self._owner(grpc_context))
            watch = JobWatch(job)
            try:
                view: JobView | None = watch.latest
                while view is not None:
                    yield job_message(view)
                    if view.terminal:
                        return
                    view = await watch.next(view.seq)
            finally:
                watch.close()  # the job goes on whoever stops watching

    async def CancelJob(self, request: pb.JobRef,
                        grpc_context: RayServegRPCContext | None = None) -> pb.JobStatus:
        async with _Call("CancelJob", grpc_context):
            job = self.job_store.delete(request.id, self._owner(grpc_context))
            await asyncio.to_thread(job.freed.wait, DELETE_WAIT_S)
            return job_message(job.view())
