"""One live-session limit per gateway replica, whatever the transport: WebRTC offers and gRPC Streams share it.

The product's gateway core with the gRPC methods mixed in (as the Ray replica has them), no Ray: a
gRPC ``Stream`` holds the replica's only slot, so a WebRTC offer is refused (503 Busy) and so is a
second ``Stream`` (UNAVAILABLE); when the first ends, its slot is free again.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from pipelines.errors import BusyError
from pipelines.live.models import InProcessModels
from serve.grpc.client import file_inputs
from serve.grpc.servicer import GrpcError
from serve.proto.backscore.v1 import backscore_pb2 as pb
from tests.fakes import FaultyModels
from tests.serve.inprocess import InProcessGateway, RecordingContext

SDP_WITH_AUDIO = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
                  "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n")


async def still_connected(path: str) -> AsyncIterator[pb.LiveInput]:
    async for msg in file_inputs(path, speed=4.0):
        yield msg
    await asyncio.Event().wait()


async def test_webrtc_and_grpc_share_max_live_sessions(calm_to_exciting: Path, tmp_path: Path) -> None:
    gw = InProcessGateway(FaultyModels(InProcessModels.default(faces=False)), tmp_dir=os.fspath(tmp_path),
                          max_live_sessions=1)
    music = asyncio.Event()

    async def first_stream() -> None:
        async for out in gw.Stream(still_connected(os.fspath(calm_to_exciting))):
            if out.WhichOneof("kind") == "music":
                music.set()

    task = asyncio.create_task(first_stream())
    try:
        await asyncio.wait_for(music.wait(), 60)
        assert gw.live_slots.in_use == 1
        with pytest.raises(BusyError, match="all 1 live sessions are in use"):
            await gw.webrtc.offer({"sdp": SDP_WITH_AUDIO, "type": "offer"})
        assert gw.webrtc.sessions == {}
        ctx = RecordingContext()
        with pytest.raises(GrpcError):
            async for _ in gw.Stream(still_connected(os.fspath(calm_to_exciting)), grpc_context=ctx):
                pass
        assert ctx.code == grpc.StatusCode.UNAVAILABLE and "live sessions are in use" in ctx.details
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert gw.live_slots.in_use == 0  # the ended Stream gave its slot back
    await gw.shutdown()


async def test_grpc_streams_are_admitted_by_the_gateways_measured_headroom(calm_to_exciting: Path,
                                                                          tmp_path: Path) -> None:
    """With an admission policy the gateway measures its own headroom for its gRPC sessions: here one session
    per process at most and any measured pressure past the degrade thresholds, while the slots allow four."""
    from pipelines.live.admission import AdmissionOptions, AdmissionPolicy

    options = AdmissionOptions(max_sessions=1, fallback_sessions=1, degrade_at=(1e-6, 2e-6), recover_s=60.0)
    gw = InProcessGateway(FaultyModels(InProcessModels.default(faces=False)), tmp_dir=os.fspath(tmp_path),
                          max_live_sessions=4, live_admission=lambda clock: AdmissionPolicy(options, clock))
    await gw.start()
    reports: list[pb.MoodReport] = []
    music = asyncio.Event()

    async def first_stream() -> None:
        async for out in gw.Stream(still_connected(os.fspath(calm_to_exciting))):
            if out.WhichOneof("kind") == "music":
                music.set()
            else:
                reports.append(out.mood)

    task = asyncio.create_task(first_stream())
    try:
        await asyncio.wait_for(music.wait(), 60)
        ctx = RecordingContext()
        with pytest.raises(GrpcError):
            async for _ in gw.Stream(still_connected(os.fspath(calm_to_exciting)), grpc_context=ctx):
                pass
        assert ctx.code == grpc.StatusCode.UNAVAILABLE and "1 sessions open (max 1)" in ctx.details
        assert "retry in" in ctx.details and gw.live_slots.in_use == 1
        # the policy's degrade level reaches the gateway's own sessions: their reports say so
        for _ in range(100):
            if any(r.degraded == 2 for r in reports):
                break
            await asyncio.sleep(0.1)
        assert any(r.degraded == 2 for r in reports), [r.degraded for r in reports]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert gw.live_slots.in_use == 0 and gw.grpc_live == {}
    for _ in range(30):  # the next measurement shows the session gone: no longer refused for the count
        if gw.live_policy.sessions == 0:
            break
        await asyncio.sleep(0.1)
    assert gw.live_policy.sessions == 0 and "sessions open" not in gw.live_policy.decide().reason
    await gw.shutdown()
