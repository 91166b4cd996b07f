"""HTTP errors: every answer that is not a success is JSON ``{"error": {"type", "message", ...}}``.

The status comes from the project's one table (:data:`pipelines.errors.ERROR_TABLE`): user errors
4xx with their message (:class:`~pipelines.errors.AuthError` 401 with ``WWW-Authenticate: Bearer``,
:class:`~pipelines.errors.QuotaError` 429 with ``Retry-After``), :class:`~pipelines.errors.BusyError` 503
with ``Retry-After``, anything unexpected 500 with no detail (the traceback goes to the log).
:class:`ApiError` covers what only HTTP has (415 for a wrong content type, 422 for a malformed body, 404).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from engines.base import EngineError
from pipelines.errors import AuthError, BackscoreError, error_kind, error_status, is_reported, retry_after_s

log = logging.getLogger(__name__)

#: The ``realm`` of the ``WWW-Authenticate: Bearer`` challenge of a 401.
REALM = "backscore"
#: Status of a request whose client went away before the answer (nginx's convention; never sent).
CLIENT_CLOSED = 499


class ApiError(Exception):
    """An HTTP-only error (415, 422, 404, ...) with the JSON body ``{"error": {"type", "message"}}``."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def error_response(status: int, kind: str, message: str, *, retry_after_s: int | None = None,
                   headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    headers = dict(headers or {})
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status_code=status,
                        headers=headers or None)


def exception_response(exc: BaseException, **extra: Any) -> JSONResponse:
    """The answer for any exception, by the project's error table (401s say how to authenticate:
    ``WWW-Authenticate: Bearer``; 429s and 503s when to retry: ``Retry-After``)."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.kind, exc.message, **extra)
    status = error_status(exc)
    if not is_reported(exc):
        log.error("internal error", exc_info=exc)
        return error_response(500, "InternalError", "internal error")
    headers = {"WWW-Authenticate": f'Bearer realm="{REALM}"'} if isinstance(exc, AuthError) else None
    return error_response(status.http_status, error_kind(exc), str(exc), retry_after_s=retry_after_s(exc),
                          headers=headers, **extra)


def install_error_handlers(app: FastAPI) -> None:
    """Every error of ``app`` as ``{"error": {...}}`` (FastAPI's own ``{"detail": ...}`` included)."""

    async def _table(_: Request, exc: Exception) -> JSONResponse:
        return exception_response(exc)

    for kind in (ApiError, BackscoreError, EngineError):  # handled inside the app: the request ends normally
        app.add_exception_handler(kind, _table)
    # anything else is a bug: Starlette's outermost handler answers 500 (no detail) and logs it
    app.add_exception_handler(Exception, _table)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        message = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details)
        return error_response(422, "ValidationError", message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return error_response(exc.status_code, kind, str(exc.detail))

    @app.exception_handler(ClientDisconnect)
    async def _disconnect(_: Request, exc: ClientDisconnect) -> Response:
        return Response(status_code=CLIENT_CLOSED)
