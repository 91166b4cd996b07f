"""The work behind the async job routes: a job made from an upload or an earlier job, its state, events, files.

* **Create**: options from the query string and/or a JSON body, the upload streamed from the multipart body
  (the same limits as every upload: 413, 415, 408, 503 when all upload slots are taken); the rest --
  the key's job slot, room in the store, ``from_job`` -- is :class:`serve.job_front.JobFront`'s, shared with
  gRPC. 202 with the job's status and ``Location``.
* **Events**: ``text/event-stream``; each event is the job's status (``event: progress``, then one
  ``done``, ``error`` or ``cancelled``, after which the stream ends), ``id:`` its sequence number, so a client
  that reconnects with ``Last-Event-ID`` gets only what is newer; a comment every :data:`HEARTBEAT_S` keeps
  proxies from closing an idle stream. A client that goes away only unsubscribes: the job goes on.
* **Files**: results and thumbnails by name from the job's folder; a recommend job's track previews are
  made on first request (on the job pool) and kept with the job.
* **Delete**: cancels the job (its work stops at its next check) and waits up to :data:`DELETE_WAIT_S` for
  its folder to be removed: 204, or 202 if the work has not let go yet (it is removed when it does).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from engines.settings import settings
from pipelines.errors import NotFoundError
from pipelines.jobs import CANCELLED, DONE, JobView, JobWatch
from pipelines.jobs.work import recommendation_ids
from pipelines.media.limits import MediaLimits
from serve.core import GatewayCore
from serve.http.access import principal
from serve.http.bodies import read_json_body
from serve.http.errors import ApiError
from serve.http.jobs_protocol import job_status, job_thumbnails, parse_job_request
from serve.http.uploads import receive_upload
from serve.job_front import DELETE_WAIT_S, JobFront

#: Seconds between keep-alive comments on an idle event stream.
HEARTBEAT_S = 15.0
#: What a browser's EventSource waits before reconnecting (ms; the stream's ``retry:`` field).
RECONNECT_MS = 2000


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _owner(request: Request) -> str | None:
    who = principal(request)
    return who.name if who is not None else None


def sse_event(view: JobView, base: str) -> bytes:
    """One server-sent event of ``view``'s status."""
    name = {DONE: "done", CANCELLED: "cancelled"}.get(view.state, "error") if view.terminal else "progress"
    data = json.dumps(job_status(view, base), separators=(",", ":"))
    return f"id: {view.seq}\nevent: {name}\ndata: {data}\n\n".encode()


class JobsServing:
    """The async jobs of one gateway (see the module doc)."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.store = core.job_store
        self.front = JobFront(core)

    # -- create
    async def _fields(self, request: Request) -> tuple[dict[str, Any], bool]:
        """The request's options (query parameters, and a JSON body's fields over them) and whether it uploads."""
        fields: dict[str, Any] = dict(request.query_params)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            return fields, True
        if ctype == "application/json":
            body = await read_json_body(request, int(settings().max_json_kb * 1024))
            if not isinstance(body, dict):
                raise ApiError(422, "ValidationError", "the JSON body must be an object of job options")
            fields.update(body)
        elif ctype:
            raise ApiError(415, "UnsupportedMediaType", "send the video as multipart/form-data (options as query "
                                                        "parameters), or job options as application/json")
        return fields, False

    async def create(self, request: Request) -> JSONResponse:
        fields, upload = await self._fields(request)
        req = parse_job_request(fields)

        async def receive(folder: str) -> tuple[str, str]:
            with self.core.upload_slots.slot():  # 503 at once when every upload slot is taken
                got = await receive_upload(request, folder, self.core.max_upload_bytes)
            return got.path, got.filename

        job = await self.front.start(req, principal(request), receive if upload else None)
        status = job_status(job.view(), _base(request))
        return JSONResponse(status, status_code=202, headers={"Location": status["url"]})

    # -- state
    def status(self, request: Request, job_id: str) -> dict[str, Any]:
        return job_status(self.store.get(job_id, _owner(request)).view(), _base(request))

    def listing(self, request: Request) -> dict[str, Any]:
        base = _base(request)
        return {"jobs": [job_status(j.view(), base) for j in self.store.jobs(_owner(request))]}

    def thumbnails(self, request: Request, job_id: str) -> dict[str, Any]:
        return job_thumbnails(self.store.get(job_id, _owner(request)).view(), _base(request))

    def events(self, request: Request, job_id: str) -> StreamingResponse:
        job = self.store.get(job_id, _owner(request))
        last = request.headers.get("last-event-id", "").strip()
        after = int(last) if last.isdigit() else 0
        base = _base(request)

        async def stream() -> AsyncIterator[bytes]:
            watch = JobWatch(job)
            try:
                yield f"retry: {RECONNECT_MS}\n\n".encode()
                seen = after
                while not (watch.latest.terminal and watch.latest.seq <= seen):
                    view = await watch.next(seen, HEARTBEAT_S)
                    if view is None:
                        yield b": keep-alive\n\n"
                        continue
                    seen = view.seq
                    yield sse_event(view, base)
            finally:
                watch.close()  # the client went away or the job ended: the job itself goes on

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # -- files
    def result(self, request: Request, job_id: str, name: str) -> FileResponse:
        job = self.store.get(job_id, _owner(request))
        f = job.file(name)
        if f is None:
            raise NotFoundError(f"job {job_id!r} has no file {name!r} (yet)")
        stem = os.path.splitext(job.filename)[0] or "video"
        return FileResponse(os.path.join(job.folder, f.name), media_type=f.media_type, filename=f"{stem}.{f.name}")

    async def preview(self, request: Request, job_id: str, track_id: int) -> FileResponse:
        from pipelines.jobs.media import track_preview
        from pipelines.library.sources import find_track
        from pipelines.offline.jobs import load_library_cached

        job = self.store.get(job_id, _owner(request))
        view = job.view()
        if view.kind != "recommend" or track_id not in recommendation_ids(view.data):
            raise NotFoundError(f"track {track_id} is not among job {job_id!r}'s recommendations")
        name = f"preview-{track_id}.wav"
        path = os.path.join(job.folder, name)
        if job.file(name) is None:
            spec = self.core.library_spec(str(view.options.get("library", "catalog")))

            def make() -> None:
                track = find_track(load_library_cached(spec), track_id, spec)
                track_preview(track, path, limits=MediaLimits.for_service())
                job.add_file(name, "audio/wav")

            try:
                await self.core.jobs.run(make)
            except FileNotFoundError as exc:  # the job was deleted or expired meanwhile
                raise NotFoundError(f"job {job_id!r} was removed") from exc
        return FileResponse(path, media_type="audio/wav", filename=f"track-{track_id}-preview.wav")

    # -- delete
    async def delete(self, request: Request, job_id: str) -> Response:
        job = self.store.delete(job_id, _owner(request))
        freed = await asyncio.to_thread(job.freed.wait, DELETE_WAIT_S)
        if freed:
            return Response(status_code=204)
        return JSONResponse({"id": job.id, "state": "cancelling"}, status_code=202)
