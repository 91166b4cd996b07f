"""The WebRTC routes (signalling, hang-up, the session list) and the demo page's routes.

Errors are answered by the project's error table (:mod:`serve.http.errors`): a malformed offer
400 ``OfferError``, no room for a session 503 ``Busy`` with ``Retry-After`` and ``max_sessions``,
an unknown session or file 404 ``NotFound``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pipelines.errors import BusyError
from serve.http.errors import error_response, exception_response
from serve.webrtc.manager import WebRtcManager
from serve.webrtc.protocol import OfferError, decode_body

#: The demo page and its files (``serve/static``).
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}


def webrtc_router(manager: WebRtcManager) -> APIRouter:
    """``POST /v1/webrtc/offer``, ``DELETE /v1/webrtc/{session_id}`` and ``GET /v1/webrtc/sessions``."""
    router = APIRouter()

    @router.post("/v1/webrtc/offer")
    async def offer(request: Request) -> Response:
        try:
            return JSONResponse(await manager.offer(decode_body(await request.body())))
        except OfferError as exc:
            return exception_response(exc)
        except BusyError as exc:
            return exception_response(exc, max_sessions=manager.limits.max_sessions)

    @router.delete("/v1/webrtc/{session_id}")
    async def hang_up(session_id: str) -> Response:
        state = await manager.hang_up(session_id)
        if state is None:
            return error_response(404, "NotFound", f"no session {session_id!r}")
        # 202: another gateway replica holds the session and ends it within its sync interval
        return JSONResponse({"session_id": session_id, "state": state}, status_code=200 if state == "closed" else 202)

    @router.get("/v1/webrtc/sessions")
    async def sessions() -> Response:
        return JSONResponse({"sessions": manager.list(), "max_sessions": manager.limits.max_sessions})

    return router


def demo_router() -> APIRouter:
    """The demo page at ``/`` and its files at ``/static/{name}`` (from ``serve/static``)."""
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

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        return _file(name)

    return router
