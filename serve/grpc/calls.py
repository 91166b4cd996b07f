"""One gRPC call's accounting and error mapping: :class:`_Call` times and counts it (``REQUESTS_TOTAL``,
``REQUEST_SECONDS``) and turns any exception into a :class:`GrpcError` by the project's one error table
(:mod:`pipelines.errors`), with details scrubbed of server paths; the code and details are set on Serve's
gRPC context too. Used by every method of :class:`serve.grpc.servicer.GrpcMethods`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Protocol

import grpc

from pipelines.errors import error_kind, error_status, is_reported
from serve.jobs import scrub
from serve.metrics import REQUEST_SECONDS, REQUESTS_TOTAL

log = logging.getLogger("serve.grpc.servicer")  # the servicer's logger: where its calls were always logged


class GrpcError(Exception):
    """Ends an RPC with ``code``; the code and details are also set on the Serve gRPC context.

    It must survive pickling: Ray carries it from the replica to the proxy (inside Serve's
    ``gRPCStatusError``), and an exception that cannot be rebuilt there turns into INTERNAL
    "Failed to deserialize exception".
    """

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code = code
        self.details = details

    def __str__(self) -> str:
        return self.details


class _Context(Protocol):
    def set_code(self, code: grpc.StatusCode) -> None: ...

    def set_details(self, details: str) -> None: ...


class _Call:
    """One RPC: maps exceptions to status codes on the context (see the module doc), records the request metrics."""

    def __init__(self, endpoint: str, context: _Context | None, replace: Mapping[str, str] | None = None) -> None:
        self.endpoint = endpoint
        self.context = context
        #: Substrings (server paths) to hide from error details, and what the client sees instead.
        self.replace: dict[str, str] = dict(replace or {})
        self._t0 = 0.0

    async def __aenter__(self) -> _Call:
        self._t0 = time.perf_counter()
        return self

    def _record(self, code: grpc.StatusCode) -> None:
        labels = {"endpoint": f"grpc.{self.endpoint}", "code": code.name}
        REQUESTS_TOTAL.labels(**labels).inc()
        REQUEST_SECONDS.labels(**labels).observe(time.perf_counter() - self._t0)

    def _set(self, code: grpc.StatusCode, details: str) -> None:
        if self.context is not None:
            self.context.set_code(code)
            self.context.set_details(details)

    def error(self, exc: BaseException) -> GrpcError:
        """The status ``exc`` ends this call with (by the error table of :mod:`pipelines.errors`)."""
        if isinstance(exc, GrpcError):
            return GrpcError(exc.code, scrub(exc.details, self.replace))
        if is_reported(exc):
            status = error_status(exc)
            if not status.user_error:
                log.warning("gRPC %s: %s: %s", self.endpoint, error_kind(exc), exc)
            return GrpcError(grpc.StatusCode[status.grpc_code], scrub(str(exc), self.replace))
        log.error("gRPC %s failed", self.endpoint, exc_info=exc)
        return GrpcError(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        """Never swallows: re-raises ``exc`` or the :class:`GrpcError` it maps to."""
        if exc is None:
            self._record(grpc.StatusCode.OK)
            return
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self._record(grpc.StatusCode.CANCELLED)
            self._set(grpc.StatusCode.CANCELLED, "client cancelled")
            return
        err = self.error(exc)
        self._record(err.code)
        self._set(err.code, err.details)
        if err is exc:
            return
        raise err from exc
