"""Request bodies read with bounds: on their size and on how slowly they may arrive.

* :func:`timed_body` yields a body's chunks like ``request.stream()`` and answers 408
  (``RequestTimeout``) when the client sends nothing for ``idle_s`` seconds, or when after the
  first ``idle_s`` seconds its average rate is below ``min_rate`` bytes a second (a client trickling
  a byte every few seconds): ``BACKSCORE_UPLOAD_IDLE_S`` / ``BACKSCORE_UPLOAD_MIN_KBPS``
  (:class:`BodyTimeouts`). Uploads and JSON bodies are read through it.
* :func:`read_body` / :func:`read_json_body` -- a small body (a WebRTC offer, ...) read only up to
  its limit. A body that declares more (``Content-Length``) is refused before any of it is read; one
  that does not (chunked) or declares less than it sends is counted as it arrives and refused as
  soon as it passes the limit. Either way the answer is :class:`~pipelines.errors.LimitError` (413
  ``PayloadTooLarge``), and no more than the limit (plus one network chunk) is ever held in memory.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from engines.settings import settings
from pipelines.errors import InputError, LimitError
from serve.http.errors import ApiError

try:
    from ray.exceptions import TaskCancelledError

    _CANCELLED: tuple[type[BaseException], ...] = (TaskCancelledError,)
except ImportError:  # the dev server without Ray
    _CANCELLED = ()


@dataclass(frozen=True)
class BodyTimeouts:
    #: Longest silence, seconds.
    idle_s: float = 15.0
    #: Slowest average rate after the first ``idle_s``, bytes a second (0: any).
    min_rate: float = 16 * 1024

    @classmethod
    def from_settings(cls) -> BodyTimeouts:
        s = settings()
        return cls(idle_s=s.upload_idle_s, min_rate=s.upload_min_kbps * 1024)


async def timed_body(request: Request, timeouts: BodyTimeouts,
                     clock: Callable[[], float] = time.monotonic) -> AsyncIterator[bytes]:
    """The chunks of ``request``'s body (see the module doc)."""
    chunks = request.stream().__aiter__()
    start = clock()
    received = 0
    while True:
        try:
            chunk = await asyncio.wait_for(anext(chunks), timeouts.idle_s)
        except StopAsyncIteration:
            return
        except _CANCELLED as exc:  # Ray's proxy lost the client mid-body and cancelled the replica's read
            raise ClientDisconnect() from exc
        except TimeoutError:
            raise ApiError(408, "RequestTimeout",
                           f"the client sent nothing for {timeouts.idle_s:g} s; the request was dropped") from None
        received += len(chunk)
        elapsed = clock() - start
        if timeouts.min_rate > 0 and elapsed > timeouts.idle_s and received < timeouts.min_rate * elapsed:
            raise ApiError(408, "RequestTimeout",
                           f"the upload is too slow ({received / max(elapsed, 1e-9) / 1024:.1f} KiB/s; at least "
                           f"{timeouts.min_rate / 1024:g} KiB/s is required)")
        yield chunk


def _too_large(limit_bytes: int) -> LimitError:
    return LimitError(f"request body larger than {limit_bytes / 1024:g} KiB")


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """The whole body of ``request``, or :class:`LimitError` once it is (or says it is) over ``limit_bytes``."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit_bytes:
        raise _too_large(limit_bytes)
    body = bytearray()
    async for chunk in timed_body(request, BodyTimeouts.from_settings()):
        body += chunk
        if len(body) > limit_bytes:
            raise _too_large(limit_bytes)  # stop reading: the rest is never received
    return bytes(body)


async def read_json_body(request: Request, limit_bytes: int, invalid: type[InputError] = InputError) -> Any:
    """The body of ``request`` parsed as JSON (any value: the caller checks its shape).

    :class:`LimitError` when it is over ``limit_bytes`` (see :func:`read_body`); ``invalid`` (an
    :class:`InputError`, 400) when it is not UTF-8 JSON or nests too deeply to parse.
    """
    raw = await read_body(request, limit_bytes)
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise invalid("the body is not JSON") from exc
    except RecursionError as exc:  # "[[[[...": valid-looking, but deeper than the parser goes
        raise invalid("the body is not JSON (nested too deeply)") from exc
