"""Responses that clean up after themselves: the request's folder is removed once the answer is sent.

Also when the client went away mid-answer: the clean-up runs shielded from cancellation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from fastapi.responses import FileResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

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


class CleanupStreamingResponse(_CleanupAfterSend, StreamingResponse):
    def __init__(self, content: AsyncIterator[bytes], cleanup: Cleanup, **kw: Any) -> None:
        super().__init__(content, **kw)
        self._cleanup = cleanup


class CleanupFileResponse(_CleanupAfterSend, FileResponse):
    def __init__(self, path: str, cleanup: Cleanup, **kw: Any) -> None:
        super().__init__(path, **kw)
        self._cleanup = cleanup
