"""Model calls that survive a replica going away: :class:`RetryingModels`.

A live session calls its models many times a second for as long as it lasts; on a cluster each call
goes to a replica that may be killed, restarted or rescheduled meanwhile. :class:`RetryingModels`
wraps any :class:`~pipelines.live.models.LiveModels` and retries a failed call, after a short backoff
on the session's clock, until it succeeds or has failed for ``budget_s`` (then the error ends the
session, as any error of its loops does). Retrying is safe because every call is stateless on the
worker side (the mood tracker travels with each affect call; a music worker that lost a stream
restores it from the :class:`~pipelines.live.music.MusicContext` and says so, and the session
crossfades into it) -- so a replica lost mid-session costs at most the chunk of music in flight.

Not retried: errors the caller caused (:class:`~pipelines.errors.BackscoreError`), an engine that
cannot run at all (:class:`~engines.base.EngineUnavailable`), and cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from engines.base import EngineUnavailable
from pipelines.analysis.mood import MoodTracker
from pipelines.clock import Clock
from pipelines.errors import BackscoreError
from pipelines.live.inference import AffectStep
from pipelines.live.models import FeatureNames, LiveModels
from pipelines.live.music import MusicReply, MusicRequest
from pipelines.live.reports import LiveHooks

T = TypeVar("T")

#: Errors that no retry fixes.
PERMANENT: tuple[type[BaseException], ...] = (BackscoreError, EngineUnavailable)


@dataclass(frozen=True)
class RetryPolicy:
    #: Waits before the 1st, 2nd, ... retry (the last repeats).
    backoff_s: tuple[float, ...] = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
    #: A call that has failed for this long is given up (a replica restart takes a few seconds).
    budget_s: float = 30.0


class RetryingModels:
    """``inner`` with every call retried (see the module doc)."""

    def __init__(self, inner: LiveModels, clock: Clock, hooks: LiveHooks, log: logging.LoggerAdapter[Any],
                 policy: RetryPolicy | None = None) -> None:
        self.inner, self.clock, self.hooks, self.log = inner, clock, hooks, log
        self.policy = policy or RetryPolicy()
        self.names: FeatureNames = inner.names
        #: Retries so far, per call.
        self.retries: dict[str, int] = {}

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        start = self.clock.now()
        attempt = 0
        while True:
            try:
                return await call()
            except asyncio.CancelledError:
                raise
            except PERMANENT:
                raise
            except Exception as exc:
                failing_for = self.clock.now() - start
                if failing_for >= self.policy.budget_s:
                    self.log.error("%s failed for %.1f s (%d retries); giving up", what, failing_for, attempt)
                    raise
                wait = self.policy.backoff_s[min(attempt, len(self.policy.backoff_s) - 1)]
                attempt += 1
                self.retries[what] = self.retries.get(what, 0) + 1
                self.hooks.retry(what)
                self.log.warning("%s failed (%s: %s); retry %d in %.2f s", what, type(exc).__name__, exc,
                                 attempt, wait)
                await self.clock.sleep(wait)

    async def encode_frames(self, rgb: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        return await self._call("encode_frames", lambda: self.inner.encode_frames(rgb, previous))

    async def analyze_faces(self, gray: np.ndarray) -> np.ndarray:
        return await self._call("analyze_faces", lambda: self.inner.analyze_faces(gray))

    async def encode_audio(self, samples: np.ndarray) -> tuple[np.ndarray, float]:
        return await self._call("encode_audio", lambda: self.inner.encode_audio(samples))

    async def affect(self, features: Mapping[str, float], tracker: MoodTracker, t_s: float) -> AffectStep:
        return await self._call("affect", lambda: self.inner.affect(features, tracker, t_s))

    async def music(self, request: MusicRequest) -> MusicReply:
        return await self._call("music", lambda: self.inner.music(request))

    async def close_music(self, stream_id: str) -> None:
        await self.inner.close_music(stream_id)  # best effort: a lost stream needs no closing

    async def run_blocking(self, fn: Callable[..., T], *args: object) -> T:
        return await self.inner.run_blocking(fn, *args)
