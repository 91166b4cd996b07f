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
