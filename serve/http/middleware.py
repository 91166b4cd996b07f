"""HTTP request metrics: latency to the response start and counts, by route template and status."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.metrics import REQUEST_SECONDS, REQUESTS_TOTAL


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
