"""Cancelling a gRPC live Stream ends its session even if the cancellation is repeated mid-cleanup.

Ray re-sends a request's cancellation every few seconds while the replica is still running it, so
the clean-up after the first cancellation can itself be cancelled. These tests drive
:meth:`GrpcMethods.Stream` directly (no Ray), with models whose ``close_music`` is slow (tests/fakes.py).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipelines.aio import finish_even_if_cancelled
from pipelines.live.models import InProcessModels
from serve.grpc.client import file_inputs
from serve.metrics import ACTIVE_SESSIONS
from serve.proto.backscore.v1 import backscore_pb2 as pb
from tests.fakes import FaultyModels
from tests.serve.inprocess import InProcessGateway


def active() -> float:
    return sum(s.value for m in ACTIVE_SESSIONS.collect() for s in m.samples if s.labels.get("transport") == "grpc")


async def still_connected(path: str) -> AsyncIterator[pb.LiveInput]:
    """A client that sends its media, then keeps the stream open without half-closing."""
    async for msg in file_inputs(path, speed=4.0):
        yield msg
    await asyncio.Event().wait()


@pytest.mark.parametrize("cancels", [1, 3])
async def test_repeated_cancellation_still_closes_the_session(calm_to_exciting: Path, cancels: int) -> None:
    models = FaultyModels(InProcessModels.default(faces=False), latency_s={"close_music": 0.4})  # a slow close
    before = active()
    music = 0
    first_music = asyncio.Event()

    host = InProcessGateway(models)

    async def consume() -> None:
        nonlocal music
        async for out in host.Stream(still_connected(os.fspath(calm_to_exciting))):
            if out.WhichOneof("kind") == "music":
                music += 1
            elif out.mood.music.tempo_bpm > 0:  # the session has a music stream open
                first_music.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_music.wait(), 60)
    assert active() == before + 1
    for _ in range(cancels):  # like Ray's cancellation retries, all while close_music is still sleeping
        task.cancel()
        await asyncio.sleep(0.05)
    assert not task.done()  # still cleaning up
    with pytest.raises(asyncio.CancelledError):
        await task
    assert active() == before
    assert music > 0
    assert len(models.closed_streams) == 1  # the music stream was closed, not abandoned
    await host.shutdown()


async def test_finish_even_if_cancelled_returns_or_reraises() -> None:
    steps: list[str] = []

    async def cleanup() -> int:
        await asyncio.sleep(0.1)
        steps.append("done")
        return 7

    assert await finish_even_if_cancelled(asyncio.create_task(cleanup())) == 7

    async def caller() -> int:
        return await finish_even_if_cancelled(asyncio.create_task(cleanup()))

    t = asyncio.create_task(caller())
    await asyncio.sleep(0.02)
    t.cancel()
    await asyncio.sleep(0.02)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert steps == ["done", "done"]

    async def failing() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await finish_even_if_cancelled(asyncio.create_task(failing()))
