"""Stopping a blocking job from outside its thread: a client that went away, a wall-time limit.

A job runs under a :class:`CancelToken` (:func:`cancel_scope`); the long loops it runs (the
decoder, once per frame; the composer, once per chunk; the stage boundaries of a score) call
:func:`check_cancelled`, which raises the token's error once someone has cancelled it. Threads a job
starts for its own work run under the same token (:func:`bind`). Outside any scope,
:func:`check_cancelled` does nothing, so the command line and library callers pay one attribute
lookup per check.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from pipelines.errors import BackscoreError, JobCancelled

P = ParamSpec("P")
T = TypeVar("T")


class CancelToken:
    """Set once, from any thread; :meth:`check` raises the error it was set with."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._error: BackscoreError = JobCancelled("the job was cancelled")

    def cancel(self, error: BackscoreError | None = None) -> None:
        if not self._event.is_set():
            if error is not None:
                self._error = error
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def error(self) -> BackscoreError:
        return self._error

    def check(self) -> None:
        if self._event.is_set():
            raise self._error


_local = threading.local()


def current_token() -> CancelToken | None:
    """The token of the job running in this thread, if any."""
    token: CancelToken | None = getattr(_local, "token", None)
    return token


@contextmanager
def cancel_scope(token: CancelToken | None) -> Iterator[None]:
    """Run the block under ``token`` (nested scopes restore the outer one)."""
    outer = current_token()
    _local.token = token
    try:
        yield
    finally:
        _local.token = outer


def check_cancelled() -> None:
    """Raise the current job's cancel error, if it was cancelled (else return at once)."""
    token: CancelToken | None = getattr(_local, "token", None)
    if token is not None and token._event.is_set():
        raise token.error


def bind(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn`` to run in another thread under this thread's token."""
    token = current_token()
    if token is None:
        return fn

    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        with cancel_scope(token):
            return fn(*args, **kwargs)

    return run
