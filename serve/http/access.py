"""Access control of the HTTP API: a pure ASGI middleware in front of every route under ``/v1/``.

It decides from the request line and headers alone, before the app -- and so before any route
reads a byte of the body (an upload without a key is refused from its headers; the body is never
received):

1. ``Origin`` (:mod:`serve.access.origins`): a browser request from an origin that is neither this
   server's nor allowed is 403 ``Forbidden``. A CORS preflight (``OPTIONS`` with
   ``Access-Control-Request-Method``) from an acceptable origin is answered here, 204, before any
   key is asked for (browsers send none with it).
2. The API key (``Authorization: Bearer <key>``): missing or unknown is 401 ``Unauthorized`` with
   ``WWW-Authenticate: Bearer``; a key past its requests a minute 429 ``TooManyRequests`` with
   ``Retry-After``.
3. The job routes (``POST /v1/analyze|recommend|score``) hold one of the key's job slots until their
   answer is sent (429 when the key has all its jobs in flight).

The caller's :class:`~serve.access.policy.Principal` goes into the scope (:func:`principal`) for the
routes. ``/healthz``, ``/metrics``, ``/docs`` and the demo page are not under ``/v1/`` and stay open.
Responses to an allowed cross origin carry ``Access-Control-Allow-Origin`` (and ``Vary: Origin``).
"""

from __future__ import annotations

import contextlib

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipelines.errors import BackscoreError
from serve.access.policy import SCOPE_KEY, AccessPolicy, Principal
from serve.http.errors import exception_response

#: The routes access control guards.
PREFIX = "/v1/"
#: Routes that upload a video and run a job (one of the caller's job slots each).
JOB_ROUTES = frozenset({"/v1/analyze", "/v1/recommend", "/v1/score"})
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type"
#: Headers a page on an allowed origin may read from our answers.
EXPOSE_HEADERS = "Retry-After, WWW-Authenticate, Content-Disposition, Location"
PREFLIGHT_MAX_AGE_S = 600


def principal(request: Request) -> Principal | None:
    """The caller the middleware admitted (None in local mode, or when no middleware ran)."""
    value = request.scope.get(SCOPE_KEY)
    return value if isinstance(value, Principal) else None


def _path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and root != "/" and path.startswith(root):
        path = path[len(root):] or "/"
    return path


def _cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin", "Access-Control-Expose-Headers": EXPOSE_HEADERS}


class AccessControl:
    """See the module doc."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (_path(scope) + "/").startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        cors: str | None = None
        try:
            if origin is not None and self.policy.check_origin(origin, headers.get("host")):
                cors = origin
            if origin is not None and scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
                await self._preflight(origin, scope, receive, send)
                return
            who = self.policy.admit(headers.get("authorization"))
        except BackscoreError as exc:
            await self._refuse(exc, cors, scope, receive, send)
            return
        scope[SCOPE_KEY] = who
        out = send if cors is None else self._with_cors(send, cors)
        with contextlib.ExitStack() as held:
            if scope["method"] == "POST" and _path(scope) in JOB_ROUTES:
                try:
                    held.enter_context(self.policy.job(who))  # until the whole answer is sent
                except BackscoreError as exc:
                    await self._refuse(exc, cors, scope, receive, send)
                    return
            await self.app(scope, receive, out)

    @staticmethod
    def _with_cors(send: Send, origin: str) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                for k, v in _cors_headers(origin).items():
                    if k == "Vary":
                        h.add_vary_header("Origin")
                    else:
                        h[k] = v
            await send(message)

        return wrapped

    @staticmethod
    async def _refuse(exc: BackscoreError, cors: str | None, scope: Scope, receive: Receive, send: Send) -> None:
        response = exception_response(exc)
        if cors is not None:
            response.headers.update(_cors_headers(cors))
        await response(scope, receive, send)

    @staticmethod
    async def _preflight(origin: str, scope: Scope, receive: Receive, send: Send) -> None:
        response = Response(status_code=204, headers={
            "Access-Control-Allow-Origin": origin, "Vary": "Origin", "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS, "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S)})
        await response(scope, receive, send)
