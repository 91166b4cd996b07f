"""The async job routes (``/v1/jobs``). Routes only: the work is in :mod:`serve.http.jobs_serving`, the shapes
in :mod:`serve.http.jobs_protocol`, the jobs themselves in :mod:`pipelines.jobs`.

* ``POST /v1/jobs`` -- a video (multipart field ``file``, options as query parameters) or, with ``from_job``,
  an earlier job's video and analysis (options as a JSON body or query parameters): 202 with the job's
  status and ``Location``; 429 / 503 with ``Retry-After`` when the key's or the server's job limits are reached.
* ``GET /v1/jobs`` -- the caller's jobs; ``GET /v1/jobs/{id}`` -- one job's state, progress (stage,
  fraction, ETA), stages run, error and result URLs.
* ``GET /v1/jobs/{id}/events`` -- the same as server-sent events until the job ends (``Last-Event-ID`` resumes).
* ``GET /v1/jobs/{id}/results/{name}`` -- a file the job made (scored.mp4, bgm.wav, timeline.json, plot.png,
  score.mid, stem_<part>.wav, recommendations.json, thumb-NNN.jpg).
* ``GET /v1/jobs/{id}/thumbnails`` -- keyframes along the video: ``[{t, url}]``.
* ``GET /v1/jobs/{id}/previews/{track_id}.wav`` -- a short clip of a track a recommend job proposed.
* ``DELETE /v1/jobs/{id}`` -- cancel the job and remove it with its files: 204 (202 while its work lets go).

An unknown id is 404 ``NotFound``, an expired one 410 ``Gone`` (every error ``{"error": {...}}``). They are
under ``/v1/``, so access control applies (API keys, origins; a job is seen only with the key that made it).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from serve.core import GatewayCore
from serve.http.jobs_protocol import JOB_BODY, JobStatus, JobThumbnails
from serve.http.jobs_serving import JobsServing

_EVENTS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "the job's status as server-sent events"}}


def jobs_router(core: GatewayCore) -> APIRouter:
    serving = JobsServing(core)
    router = APIRouter(tags=["jobs"])

    @router.post("/v1/jobs", summary="Start a job: analyze, recommend or score an upload (or an earlier job's)",
                 status_code=202, response_model=JobStatus, openapi_extra=JOB_BODY)
    async def create(request: Request) -> JSONResponse:
        return await serving.create(request)

    @router.get("/v1/jobs", summary="The caller's jobs")
    async def listing(request: Request) -> dict[str, Any]:
        return serving.listing(request)

    @router.get("/v1/jobs/{job_id}", summary="A job's state, progress and result URLs", response_model=JobStatus)
    async def status(request: Request, job_id: str) -> dict[str, Any]:
        return serving.status(request, job_id)

    @router.get("/v1/jobs/{job_id}/events", summary="A job's progress as server-sent events", responses=_EVENTS,
                response_class=StreamingResponse)
    async def events(request: Request, job_id: str) -> StreamingResponse:
        return serving.events(request, job_id)

    @router.get("/v1/jobs/{job_id}/thumbnails", summary="Keyframe thumbnails along the video",
                response_model=JobThumbnails)
    async def thumbnails(request: Request, job_id: str) -> dict[str, Any]:
        return serving.thumbnails(request, job_id)

    @router.get("/v1/jobs/{job_id}/results/{name}", summary="A file the job made", response_class=FileResponse)
    async def result(request: Request, job_id: str, name: str) -> FileResponse:
        return serving.result(request, job_id, name)

    @router.get("/v1/jobs/{job_id}/previews/{track_id}.wav", summary="A clip of a recommended library track",
                response_class=FileResponse)
    async def preview(request: Request, job_id: str, track_id: int) -> FileResponse:
        return await serving.preview(request, job_id, track_id)

    @router.delete("/v1/jobs/{job_id}", summary="Cancel a job and remove it with its files", status_code=204,
                   response_class=Response)
    async def delete(request: Request, job_id: str) -> Response:
        return await serving.delete(request, job_id)

    return router
