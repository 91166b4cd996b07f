"""The ingress: HTTP (FastAPI), WebRTC and gRPC in one Serve deployment, :class:`Gateway`.

HTTP API (OpenAPI at ``/docs``):

* ``GET /healthz`` -- ``{"status", "backend", "deployments": {name: ready}, "active_sessions", ...}``;
  503 when a deployment does not answer.
* ``GET /metrics`` -- Prometheus exposition of :mod:`serve.metrics` (this process).
* ``POST /v1/analyze`` / ``/v1/recommend`` / ``/v1/score`` -- a video as the multipart field
  ``file``; options as query parameters. ``/v1/score`` returns the scored MP4
  (``output=video``) or the BGM as WAV (``output=bgm``); ``output=bgm&stream=true`` streams
  the WAV as the music is generated (header first, then each chunk).

Uploads are streamed to a per-request temporary directory and refused as soon as they pass
the limit (``BACKSCORE_MAX_UPLOAD_MB``, default 200: 413) or when the file part is not
``video/*`` / ``application/octet-stream`` (415). Errors are JSON
``{"error": {"type", "message"}}``; user errors (:class:`~pipelines.errors.BackscoreError`)
are 400. The temporary directory is removed when the response is finished, also after an
error or a client disconnect. Blocking jobs run in a bounded thread pool
(:meth:`GatewayCore.run_job`), never on the event loop; when too many jobs wait, 503.

:class:`GatewayCore` is the plain-Python part (usable without Ray, e.g. with FastAPI's
TestClient); :class:`Gateway` is the Serve deployment around it, which builds the backend
(``backend="ray"``: handles to :mod:`serve.deployments`; ``"local"``: the engines in this
replica), and mixes in the gRPC methods (``serve.grpc_service.GrpcMethods``) and the WebRTC
routes (``serve.webrtc``) when those modules are installed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import gc
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from ray import serve as ray_serve
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipelines.errors import BackscoreError
from pipelines.live.models import InProcessModels, LiveModels
from pipelines.live.options import LiveOptions
from pipelines.offline import jobs
from serve.loop_monitor import LoopMonitor
from serve.metrics import ACTIVE_SESSIONS, QUEUE_DEPTH, REQUEST_SECONDS, REQUESTS_TOTAL, PrometheusHooks, exposition
from serve.session_directory import RayDirectory, SessionDirectory

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MAX_UPLOAD_MB = 200.0
_FIELD_LIMIT = 64 * 1024  # non-file form fields (ignored) may not be larger than this
_READ_CHUNK = 1 << 20


# ----------------------------------------------------------------------------- optional parts

def _optional(module: str, *names: str) -> tuple[Any, ...] | None:
    """Import ``names`` from ``module`` (another engineer's part); None, logged, when it is not there."""
    import importlib

    try:
        mod = importlib.import_module(module)
        return tuple(getattr(mod, n) for n in names)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            log.warning("%s not usable (missing %s): disabled", module, exc.name)
        return None
    except Exception:
        log.warning("%s failed to import: disabled", module, exc_info=True)
        return None


_webrtc = _optional("serve.webrtc", "WebRtcManager", "webrtc_router")
_demo = _optional("serve.webrtc", "demo_router")
_grpc = _optional("serve.grpc_service", "GrpcMethods")
GrpcMethods: type = _grpc[0] if _grpc is not None else object


# ----------------------------------------------------------------------------- errors

class ApiError(Exception):
    """An HTTP error with the JSON body ``{"error": {"type", "message"}}``."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def error_response(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status_code=status)


# ----------------------------------------------------------------------------- uploads

@dataclass
class Upload:
    path: str
    filename: str
    content_type: str
    size: int


_ALLOWED_TYPES = re.compile(r"^(video/[\w.+-]+|application/octet-stream)$", re.IGNORECASE)


def _safe_suffix(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"


async def receive_upload(request: Request, directory: str, limit: int, field: str = "file") -> Upload:
    """Stream the multipart field ``field`` of ``request`` into ``directory`` (see module doc)."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise ApiError(415, "UnsupportedMediaType",
                       f"send the video as multipart/form-data with a {field!r} file field")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _FIELD_LIMIT:
        raise ApiError(413, "PayloadTooLarge", f"upload larger than {limit / 2**20:.0f} MB")

    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "name": None, "size": 0}
    found: list[Upload] = []
    sink: list[Any] = []  # the open file of the current file part

    def on_part_begin() -> None:
        state.update(headers={}, name=None, size=0)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if name != field:
            return
        if found:
            raise ApiError(422, "ValidationError", f"more than one {field!r} field")
        if b"filename" not in disp:
            raise ApiError(422, "ValidationError", f"{field!r} must be a file upload")
        part_type = state["headers"].get(b"content-type", b"application/octet-stream").decode("latin-1").strip()
        part_type = part_type.split(";")[0].strip()
        if not _ALLOWED_TYPES.match(part_type):
            raise ApiError(415, "UnsupportedMediaType",
                           f"{field!r} has content type {part_type!r}; expected video/* or application/octet-stream")
        filename = os.path.basename(disp[b"filename"].decode("utf-8", "replace"))
        path = os.path.join(directory, "input" + _safe_suffix(filename))
        sink.append(open(path, "wb"))  # noqa: SIM115 - closed in the finally below
        found.append(Upload(path, filename, part_type, 0))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["size"] += end - start
        if state["name"] == field and sink:
            if state["size"] > limit:
                raise ApiError(413, "PayloadTooLarge", f"upload larger than {limit / 2**20:.0f} MB")
            sink[0].write(data[start:end])
        elif state["size"] > _FIELD_LIMIT:
            raise ApiError(413, "PayloadTooLarge", f"form field {state['name']!r} too large")

    def on_part_end() -> None:
        if state["name"] == field and sink:
            found[0].size = state["size"]
            sink.pop().close()

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
    })
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise ApiError(422, "ValidationError", f"malformed multipart body: {exc}") from exc
    finally:
        for f in sink:
            f.close()
    if not found or sink:
        raise ApiError(422, "ValidationError", f"field {field!r} (the video file) is required")
    return found[0]


# ----------------------------------------------------------------------------- responses with cleanup

Cleanup = Callable[[], Awaitable[None]]


class _CleanupAfterSend:
    """Runs ``cleanup`` once the response has been sent (or the client went away), shielded from cancellation."""

    _cleanup: Cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            with anyio.CancelScope(shield=True):
                await self._cleanup()


class _CleanupStreamingResponse(_CleanupAfterSend, StreamingResponse):
    def __init__(self, content: AsyncIterator[bytes], cleanup: Cleanup, **kw: Any) -> None:
        super().__init__(content, **kw)
        self._cleanup = cleanup


class _CleanupFileResponse(_CleanupAfterSend, FileResponse):
    def __init__(self, path: str, cleanup: Cleanup, **kw: Any) -> None:
        super().__init__(path, **kw)
        self._cleanup = cleanup


class _ThreadedIterator:
    """A blocking iterator pulled item by item through :meth:`GatewayCore.run_job`; closable from the loop."""

    def __init__(self, core: GatewayCore, it: Iterator[Any]) -> None:
        self._core, self._it = core, it
        self._inflight: concurrent.futures.Future[Any] | None = None

    async def next(self) -> Any:
        done = object()
        fut = self._core._submit(next, self._it, done)
        self._inflight = fut
        item = await asyncio.wrap_future(fut)
        self._inflight = None
        return None if item is done else item

    async def aclose(self) -> None:
        fut = self._inflight
        if fut is not None:  # a pull still runs in its thread: the generator cannot be closed before it ends
            with contextlib.suppress(BaseException):
                await asyncio.wrap_future(fut)
        close = getattr(self._it, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(close)


# ----------------------------------------------------------------------------- metrics middleware

class RequestMetrics:
    """REQUEST_SECONDS (to the response start) and REQUESTS_TOTAL by route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500, "seen": False}

        def record() -> None:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            code = str(status["code"])
            REQUEST_SECONDS.labels(endpoint=endpoint, code=code).observe(time.perf_counter() - t0)
            REQUESTS_TOTAL.labels(endpoint=endpoint, code=code).inc()

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start" and not status["seen"]:
                status["code"], status["seen"] = message["status"], True
                record()
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            if not status["seen"]:
                status["seen"] = True
                record()


# ----------------------------------------------------------------------------- the gateway

def _active_sessions() -> int:
    return int(sum(s.value for m in ACTIVE_SESSIONS.collect() for s in m.samples if s.name.endswith("sessions")))


class GatewayCore:
    """Everything the gateway does, without Ray (see module doc)."""

    def __init__(
        self,
        models: LiveModels,
        *,
        backend_kind: str = "local",
        max_upload_mb: float | None = None,
        job_threads: int = 2,
        max_pending_jobs: int = 8,
        libraries: dict[str, str] | None = None,
        engine: str = "procedural",
        weights: str | None = None,
        live_options: LiveOptions | None = None,
        tmp_dir: str | None = None,
        readiness: Callable[[], Awaitable[dict[str, bool]]] | None = None,
        warm_catalog: bool = False,
        max_live_sessions: int = 8,
        session_directory: SessionDirectory | None = None,
    ) -> None:
        self.models = models
        #: The built-in catalog is built on first use (~2 min on 2 cores): start that now, in the
        #: background, so the first /v1/recommend does not wait for it (``warm_catalog=False``: on demand).
        self.catalog_state = "on demand"
        if warm_catalog:
            self.catalog_state = "building"
            threading.Thread(target=self._warm_catalog, name="warm-catalog", daemon=True).start()
        self.backend_kind = backend_kind
        if max_upload_mb is None:
            max_upload_mb = float(os.environ.get("BACKSCORE_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB))
        self.max_upload_bytes = int(max_upload_mb * 2**20)
        self.live_options = live_options or LiveOptions()
        self.libraries = {"catalog": "catalog", **(libraries or {})}
        self.engine, self.weights = engine, weights
        self.tmp_dir = tmp_dir or os.environ.get("BACKSCORE_TMPDIR") or tempfile.gettempdir()
        os.makedirs(self.tmp_dir, exist_ok=True)
        self._jobs = concurrent.futures.ThreadPoolExecutor(max_workers=job_threads, thread_name_prefix="job")
        self._job_slots = threading_semaphore(job_threads + max_pending_jobs)
        self._readiness = readiness
        self.webrtc: Any = None
        if _webrtc is not None:
            self.webrtc = _webrtc[0](self.models, self.live_options, hooks=PrometheusHooks(),
                                     max_sessions=max_live_sessions, directory=session_directory)
        if libraries:  # the gRPC methods (when mixed in) offer the same libraries
            self.grpc_libraries = dict(libraries)

    # -- jobs
    def _submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        if not self._job_slots.acquire(blocking=False):
            raise ApiError(503, "Busy", "too many jobs waiting; retry later")
        try:
            fut = self._jobs.submit(fn, *args)
        except BaseException:
            self._job_slots.release()
            raise
        QUEUE_DEPTH.labels(queue="jobs").inc()

        def done(_: concurrent.futures.Future[T]) -> None:
            QUEUE_DEPTH.labels(queue="jobs").dec()
            self._job_slots.release()

        fut.add_done_callback(done)
        return fut

    async def run_job(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn(*args)`` in the bounded job pool (503 :class:`ApiError` when it is full)."""
        return await asyncio.wrap_future(self._submit(fn, *args))

    # -- health
    async def health(self) -> tuple[bool, dict[str, Any]]:
        deployments = await self._readiness() if self._readiness is not None else {"local": True}
        ok = all(deployments.values())
        return ok, {
            "status": "ok" if ok else "degraded",
            "backend": self.backend_kind,
            "deployments": deployments,
            "active_sessions": _active_sessions(),
            "webrtc": self.webrtc is not None,
            "grpc": _grpc is not None,
            "catalog": self.catalog_state,
        }

    def _warm_catalog(self) -> None:
        from pipelines.offline import jobs

        try:
            jobs.load_library_cached("catalog")
            self.catalog_state = "ready"
        except Exception:
            self.catalog_state = "failed"
            log.exception("building the catalog failed; /v1/recommend will retry on demand")

    # -- lifecycle
    async def shutdown(self) -> None:
        if self.webrtc is not None:
            try:
                await self.webrtc.close_all()
            except Exception:
                log.exception("closing the WebRTC sessions failed")
        if isinstance(self.models, InProcessModels):
            self.models.shutdown()
        self._jobs.shutdown(wait=False, cancel_futures=True)

    # -- request helpers
    def _workdir(self) -> str:
        return tempfile.mkdtemp(prefix="backscore-req-", dir=self.tmp_dir)

    @staticmethod
    async def _remove(path: str) -> None:
        await asyncio.to_thread(shutil.rmtree, path, True)

    def job_options(self, *, style: str | None = None, seed: int = 0, faces: bool = True, top_k: int = 5,
                    per_segment: bool = False, library: str = "catalog") -> jobs.JobOptions:
        from pipelines.offline.score import validate_style

        if library not in self.libraries:
            raise ApiError(400, "LibraryError",
                           f"unknown library {library!r}; this server has: {', '.join(sorted(self.libraries))}")
        return jobs.JobOptions(style=validate_style(style), seed=seed, faces=faces, top_k=top_k,
                                  per_segment=per_segment, library=self.libraries[library], engine=self.engine,
                                  weights=self.weights)

    @contextlib.asynccontextmanager
    async def _client_paths(self, work: str, upload: Upload) -> AsyncIterator[None]:
        """Errors name the client's file, never this server's temporary paths."""
        try:
            yield
        except BackscoreError as exc:
            message = str(exc).replace(upload.path, upload.filename or "the upload").replace(work + os.sep, "")
            if message == str(exc):
                raise
            raise type(exc)(message) from exc

    async def _json_job(self, request: Request, fn: Callable[[str, jobs.JobOptions], dict[str, Any]],
                        options: Callable[[], jobs.JobOptions]) -> dict[str, Any]:
        opts = options()
        work = self._workdir()
        try:
            upload = await receive_upload(request, work, self.max_upload_bytes)
            async with self._client_paths(work, upload):
                return await self.run_job(fn, upload.path, opts)
        finally:
            await self._remove(work)

    async def score(self, request: Request, opts: jobs.JobOptions, output: str, stream: bool) -> Response:
        work = self._workdir()

        async def cleanup() -> None:
            await self._remove(work)

        try:
            upload = await receive_upload(request, work, self.max_upload_bytes)
            if output == "bgm" and stream:
                chunks = _ThreadedIterator(self, jobs.bgm_chunks(upload.path, opts))
                try:
                    async with self._client_paths(work, upload):
                        first = await chunks.next()  # analysis errors surface here, as a 400
                except BaseException:
                    await chunks.aclose()
                    raise

                async def body() -> AsyncIterator[bytes]:
                    try:
                        yield jobs.wav_header()
                        chunk = first
                        while chunk is not None:
                            yield chunk.pcm
                            chunk = await chunks.next()
                    finally:
                        with anyio.CancelScope(shield=True):
                            await chunks.aclose()

                async def close_all() -> None:
                    await chunks.aclose()
                    await cleanup()

                return _CleanupStreamingResponse(body(), close_all, media_type="audio/wav",
                                                 headers={"Cache-Control": "no-store"})
            bgm_only = output == "bgm"
            out = os.path.join(work, "bgm.wav" if bgm_only else "scored.mp4")
            async with self._client_paths(work, upload):
                await self.run_job(functools.partial(jobs.score_file, bgm_only=bgm_only), upload.path, out, opts)
            stem = Path(upload.filename).stem or "video"
            name = f"{stem}.bgm.wav" if bgm_only else f"{stem}.scored.mp4"
            return _CleanupFileResponse(out, cleanup, media_type="audio/wav" if bgm_only else "video/mp4",
                                        filename=name)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await cleanup()
            raise

    # -- the ASGI app
    def build_asgi_app(self) -> FastAPI:
        core = self
        app = FastAPI(title="backscore", version="0.1.0",
                      description="Adaptive background music for video: mood timeline, recommendations, "
                                  "scored video or BGM, and live sessions (WebRTC, gRPC).")
        app.add_middleware(RequestMetrics)
        upload_body = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary", "description": "the video"}}}}}}}

        @app.exception_handler(ApiError)
        async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
            return error_response(exc.status, exc.kind, exc.message)

        @app.exception_handler(BackscoreError)
        async def _user_error(_: Request, exc: BackscoreError) -> JSONResponse:
            return error_response(400, type(exc).__name__, str(exc))

        @app.exception_handler(RequestValidationError)
        async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
            details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
            message = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details)
            return error_response(422, "ValidationError", message, details=details)

        @app.exception_handler(ClientDisconnect)
        async def _disconnect(_: Request, exc: ClientDisconnect) -> Response:
            return Response(status_code=499)

        @app.get("/healthz", summary="Liveness/readiness: deployments ready, active sessions")
        async def healthz() -> JSONResponse:
            ok, data = await core.health()
            return JSONResponse(data, status_code=200 if ok else 503)

        @app.get("/metrics", summary="Prometheus metrics of this process", response_class=Response)
        async def metrics() -> Response:
            body, ctype = exposition()
            return Response(body, media_type=ctype)

        @app.post("/v1/analyze", summary="Mood timeline of a video (timeline JSON)", openapi_extra=upload_body)
        async def analyze(request: Request, faces: bool = True) -> dict[str, Any]:
            return await core._json_job(request, jobs.analyze_file, lambda: core.job_options(faces=faces))

        @app.post("/v1/recommend", summary="Library tracks that fit the video", openapi_extra=upload_body)
        async def recommend(request: Request, top_k: int = Query(5, ge=1, le=100), per_segment: bool = False,
                            library: str = "catalog", faces: bool = True) -> dict[str, Any]:
            return await core._json_job(request, jobs.recommend_file, lambda: core.job_options(
                faces=faces, top_k=top_k, per_segment=per_segment, library=library))

        @app.post("/v1/score", summary="Score a video: MP4 with the BGM mixed in, or the BGM (WAV, optionally "
                                       "streamed as it is generated)", openapi_extra=upload_body,
                  response_class=Response,
                  responses={200: {"content": {"video/mp4": {}, "audio/wav": {}}}})
        async def score(request: Request, style: str | None = None, seed: int = 0, faces: bool = True,
                        output: str = Query("video", pattern="^(video|bgm)$"), stream: bool = False) -> Response:
            opts = core.job_options(style=style, seed=seed, faces=faces)
            if stream and output != "bgm":
                raise ApiError(400, "OptionError", "stream=true needs output=bgm")
            return await core.score(request, opts, output, stream)

        if self.webrtc is not None and _webrtc is not None:
            app.include_router(_webrtc[1](self.webrtc))
        if _demo is not None:
            app.include_router(_demo[0](), include_in_schema=False)
        return app


def threading_semaphore(n: int) -> Any:
    import threading

    return threading.BoundedSemaphore(n)


# ----------------------------------------------------------------------------- the deployment

class _GatewayReplica(GatewayCore, GrpcMethods):
    """The Serve replica: builds the backend, then :class:`GatewayCore`; the FastAPI app is built after."""

    async def __init__(  # type: ignore[misc]
        self,
        backend: str = "ray",
        frame: Any = None,
        audio: Any = None,
        affect: Any = None,
        music: Any = None,
        *,
        faces: bool = True,
        max_upload_mb: float | None = None,
        job_threads: int = 2,
        max_pending_jobs: int = 8,
        libraries: dict[str, str] | None = None,
        engine: str = "procedural",
        weights: str | None = None,
        style: str | None = None,
        seed: int = 0,
        mix_original: bool = False,
        tmp_dir: str | None = None,
        warm_catalog: bool = True,
        max_live_sessions: int = 8,
    ) -> None:
        live = LiveOptions(style=None if style in (None, "auto") else style, seed=seed, mix_original=mix_original)
        readiness: Callable[[], Awaitable[dict[str, bool]]] | None = None
        impl: LiveModels
        if backend == "ray":
            from serve.handles import DeploymentModels

            if None in (frame, audio, affect, music):
                raise ValueError('backend="ray" needs the four deployment handles (use serve.app.build_app)')
            ray_backend = await DeploymentModels.connect(frame, audio, affect, music)
            impl = ray_backend

            async def ping_all() -> dict[str, bool]:
                async def one(h: Any) -> bool:
                    try:
                        return bool(await asyncio.wait_for(h.ping.remote(), timeout=2.0) == "ok")
                    except Exception:
                        return False

                items = list(ray_backend.handles().items())
                states = await asyncio.gather(*(one(h) for _, h in items))
                return {name: s for (name, _), s in zip(items, states, strict=True)}

            readiness = ping_all
        elif backend == "local":
            from engines.registry import create_music_engine
            from pipelines.analysis.engines import default_engines

            e = default_engines(faces=faces)
            impl = InProcessModels(e.frame, e.audio, e.affect, create_music_engine(engine, weights), e.faces)
        else:
            raise ValueError(f'backend must be "ray" or "local", got {backend!r}')
        GatewayCore.__init__(self, impl, backend_kind=backend, max_upload_mb=max_upload_mb, job_threads=job_threads,
                             max_pending_jobs=max_pending_jobs, libraries=libraries, engine=engine, weights=weights,
                             live_options=live, tmp_dir=tmp_dir, readiness=readiness,
                             warm_catalog=warm_catalog, max_live_sessions=max_live_sessions,
                             session_directory=RayDirectory())  # a hang-up may reach another replica
        # Everything loaded so far (Ray, FastAPI, aiortc, numpy, ...) lives as long as the replica: move it out of
        # the garbage collector's sight, so a full collection (~0.1 s over these ~300k objects on the dev machine)
        # does not stall the loop that paces every session's audio (gc.freeze, as CPython's docs suggest).
        gc.collect()
        gc.freeze()
        self.loop_monitor = LoopMonitor()
        self.loop_monitor.start()
        log.info("gateway ready: backend=%s webrtc=%s grpc=%s", backend, self.webrtc is not None, _grpc is not None)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self.build_asgi_app()

    async def healthz(self) -> dict[str, Any]:
        """``GET /healthz``'s body, for handle calls (tests, other deployments)."""
        return (await self.health())[1]

    async def __del__(self) -> None:
        self.loop_monitor.stop()
        await self.shutdown()


Gateway = ray_serve.deployment(
    name="Gateway",
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
)(ray_serve.ingress()(_GatewayReplica))
