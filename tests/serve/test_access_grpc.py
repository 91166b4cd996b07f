"""API keys and quotas over gRPC: a plain ``grpc.aio`` server (:func:`serve.grpc.server.start_server`, the
registration production uses through Ray Serve's proxy) over the real gateway core with keys configured,
called through a real channel: ``authorization`` metadata on every ``backscore.v1.Backscore`` method, the
health check open, requests a minute and live minutes per key."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pipelines.access import KeyEntry, KeyQuotas, hash_key, new_key
from pipelines.live.models import InProcessModels
from serve.access import AccessPolicy, KeyStore
from serve.access.quotas import DAY_S
from serve.grpc.server import start_server
from serve.proto.backscore.v1 import backscore_pb2 as pb
from serve.proto.backscore.v1 import backscore_pb2_grpc as pb_grpc
from tests.conftest import calm_then_bright
from tests.serve.inprocess import InProcessGateway

pytestmark = pytest.mark.hostile  # the hostile-input suite: pytest -m hostile

T0 = 20_000 * DAY_S + 3600.0
QUOTAS = {"main": KeyQuotas(rpm=10_000), "rpm2": KeyQuotas(rpm=2), "live1": KeyQuotas(rpm=10_000, live_minutes=1)}
KEYS = {name: new_key() for name in QUOTAS}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def md(name: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {KEYS[name]}")]


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, clock: Clock) -> Iterator[InProcessGateway]:
    entries = [KeyEntry(n, hash_key(KEYS[n]), q) for n, q in QUOTAS.items()]
    policy = AccessPolicy(KeyStore(entries), clock=clock, live_check_s=0.05)
    gw = InProcessGateway(InProcessModels.default(faces=False), tmp_dir=os.fspath(tmp_path_factory.mktemp("gw")),
                          access=policy)
    yield gw
    asyncio.run(gw.shutdown())


@pytest.fixture()
async def channel(gateway: InProcessGateway) -> AsyncIterator[grpc.aio.Channel]:
    server, port = await start_server(gateway, health=True)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch
    finally:
        await server.stop(None)


@pytest.fixture(scope="module")
def tiny_video(video_dir: Path) -> Path:
    return calm_then_bright(video_dir, "grpc_access.mp4", 2.0)


async def test_every_method_needs_a_key(channel: grpc.aio.Channel, tiny_video: Path) -> None:
    stub = pb_grpc.BackscoreStub(channel)
    media = pb.MediaRequest(video=tiny_video.read_bytes(), filename="clip.mp4")
    for metadata, words in ((None, "needs an API key"), ([("authorization", "Bearer bsk_wrong")], "not valid"),
                            ([("authorization", KEYS["main"])], "malformed")):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Analyze(media, metadata=metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and words in (info.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Recommend(pb.RecommendRequest(media=media), metadata=metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stub.Score(pb.ScoreRequest(media=media), metadata=metadata):
                pass
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

        async def config_only() -> AsyncIterator[pb.LiveInput]:
            yield pb.LiveInput(config=pb.StreamConfig())

        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stub.Stream(config_only(), metadata=metadata):
                pass
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # before anything else: even a request that would be INVALID_ARGUMENT is UNAUTHENTICATED without a key
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Analyze(pb.MediaRequest())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_good_key_works_and_health_needs_none(channel: grpc.aio.Channel, tiny_video: Path) -> None:
    stub = pb_grpc.BackscoreStub(channel)
    reply = await stub.Analyze(pb.MediaRequest(video=tiny_video.read_bytes(), filename="clip.mp4"), metadata=md("main"))
    assert abs(reply.duration_s - 4.0) < 0.2 and len(reply.windows) > 0
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "backscore.v1.Backscore"):
        r = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert r.status == health_pb2.HealthCheckResponse.SERVING


async def test_requests_a_minute(channel: grpc.aio.Channel, clock: Clock) -> None:
    stub = pb_grpc.BackscoreStub(channel)
    for _ in range(2):  # admitted, then judged on content
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Analyze(pb.MediaRequest(), metadata=md("rpm2"))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Analyze(pb.MediaRequest(), metadata=md("rpm2"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "made its 2 requests a minute; retry in 30 s" in (info.value.details() or "")
    clock.t += 30.0
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Analyze(pb.MediaRequest(), metadata=md("rpm2"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_stream_ends_when_its_keys_live_minutes_run_out(channel: grpc.aio.Channel, clock: Clock,
                                                                gateway: InProcessGateway) -> None:
    stub = pb_grpc.BackscoreStub(channel)
    hold = asyncio.Event()

    async def inputs() -> AsyncIterator[pb.LiveInput]:
        yield pb.LiveInput(config=pb.StreamConfig(style="calm"))
        await hold.wait()  # the client keeps its stream open

    call = stub.Stream(inputs(), metadata=md("live1"))
    got = 0
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            got += 1
            if got == 3:
                assert gateway.access.quotas.live.used_s("live1") == 0.0
                clock.t += 60.0  # the key's one minute, used up while the stream is open
    hold.set()
    assert got >= 3
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "live minutes of API key 'live1' for today (1) are used up" in (info.value.details() or "")
    await asyncio.sleep(0.2)
    assert gateway.live_slots.in_use == 0  # the session is gone

    async def config_only() -> AsyncIterator[pb.LiveInput]:
        yield pb.LiveInput(config=pb.StreamConfig())

    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.Stream(config_only(), metadata=md("live1")):
            pass
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "retry in" in (info.value.details() or "")
