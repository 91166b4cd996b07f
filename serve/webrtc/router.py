"""The WebRTC routes (signalling, hang-up, the session list) and the demo page's routes.

Errors are answered by the project's error table (:mod:`serve.http.errors`): a malformed offer
400 ``OfferError``, an offer body over ``BACKSCORE_MAX_JSON_KB`` 413 ``PayloadTooLarge`` (refused by
its ``Content-Length`` before it is read, or as soon as it passes the limit), no room for a session
503 ``Busy`` with ``Retry-After`` and ``max_sessions``, an unknown session or file 404 ``NotFound``, an
API key whose live minutes are used up 429 ``TooManyRequests`` with ``Retry-After``. Keys and origins
are checked before these routes, by the app's middleware (:mod:`serve.http.access`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from engines.settings import settings
from pipelines.errors import BusyError, ForbiddenError, LimitError, QuotaError
from serve.access import AccessPolicy
from serve.http.access import principal
from serve.http.bodies import read_json_body
from serve.http.errors import error_response, exception_response
from serve.webrtc.manager import WebRtcManager
from serve.webrtc.protocol import OfferError

if TYPE_CHECKING:  # the worker module must not be imported with the package (it runs as __main__)
    from serve.webrtc.worker_pool import LiveWorkerPool

#: The pages (live demo, studio) and their files (``serve/static``).
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}


def webrtc_router(manager: WebRtcManager | LiveWorkerPool, max_body_bytes: int | None = None,
                  access: AccessPolicy | None = None) -> APIRouter:
    """``POST /v1/webrtc/offer``, ``DELETE /v1/webrtc/{session_id}`` and ``GET /v1/webrtc/sessions``.

    An offer's body may be ``max_body_bytes`` long (default: ``BACKSCORE_MAX_JSON_KB``, read now).
    With ``access`` (the app's :class:`~serve.access.AccessPolicy`, whose middleware admitted the
    caller), an offer takes a lease on the caller's live minutes (429 when they are used up, before
    the body is read), and a caller sees and hangs up only the sessions its own key opened.
    """
    router = APIRouter()
    limit = max_body_bytes if max_body_bytes is not None else int(settings().max_json_kb * 1024)

    @router.post("/v1/webrtc/offer")
    async def offer(request: Request) -> Response:
        who = principal(request)
        try:
            lease = access.live_lease(who) if access is not None else None
        except (QuotaError, ForbiddenError) as exc:
            return exception_response(exc)
        try:
            body = await read_json_body(request, limit, invalid=OfferError)
            return JSONResponse(await manager.offer(body, lease=lease, tenant=who.name if who else None))
        except BaseException as exc:
            if lease is not None:
                lease.release()  # no session took it
            if isinstance(exc, OfferError | LimitError):
                return exception_response(exc)
            if isinstance(exc, BusyError):
                return exception_response(exc, max_sessions=manager.limits.max_sessions)
            raise

    @router.delete("/v1/webrtc/{session_id}")
    async def hang_up(session_id: str, request: Request) -> Response:
        who = principal(request)
        state = await manager.hang_up(session_id, tenant=who.name if who else None)
        if state is None:
            return error_response(404, "NotFound", f"no session {session_id!r}")
        # 202: another gateway replica holds the session and ends it within its sync interval
        return JSONResponse({"session_id": session_id, "state": state}, status_code=200 if state == "closed" else 202)

    @router.get("/v1/webrtc/sessions")
    async def sessions(request: Request) -> Response:
        who = principal(request)
        return JSONResponse({"sessions": manager.list(tenant=who.name if who else None),
                             "max_sessions": manager.limits.max_sessions})

    return router


def demo_router() -> APIRouter:
    """The pages: the live demo at ``/``, the creators' studio at ``/studio`` (on the async job API, which the
    gateway's app serves), and their files at ``/static/{name}`` (from ``serve/static``)."""
    router = APIRouter()

    def _file(name: str) -> Response:
        path = (STATIC_DIR / name).resolve()
        if path.parent != STATIC_DIR or path.suffix not in _STATIC_TYPES or not path.is_file():
            return error_response(404, "NotFound", f"no file {name!r}")
        return Response(path.read_bytes(), media_type=_STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": "no-cache"})

    @router.get("/")
    async def index() -> Response:
        return _file("index.html")

    @router.get("/studio")
    async def studio() -> Response:
        return _file("studio.html")

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        return _file(name)

    return router
