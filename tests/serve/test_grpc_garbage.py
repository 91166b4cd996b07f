"""Bytes that are not the method's protobuf message answer INVALID_ARGUMENT with a short message, not
UNKNOWN "Unexpected <class 'google.protobuf.message.DecodeError'>".

A plain ``grpc.aio`` server (:func:`serve.grpc.server.start_server`, the registration production uses
through Ray Serve's proxy) over the real gateway core with :class:`~serve.grpc.servicer.GrpcMethods`,
called through a real channel with raw bytes. The Ray proxy path -- our deserializer in the proxy, the
:class:`~serve.grpc.server.Undecodable` carried pickled to the replica's method -- is checked without
Ray here (a pickle round trip into the method) and through a real Ray proxy in the slow test at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.protobuf.message import DecodeError

from pipelines.devtools.synth_video import CALM_DARK
from pipelines.errors import InputError
from pipelines.live.models import InProcessModels
from serve.grpc.server import Undecodable, start_server
from serve.grpc.servicer import GrpcError
from serve.proto.backscore.v1 import backscore_pb2 as pb
from tests.conftest import make_video
from tests.serve.inprocess import InProcessGateway, RecordingContext
from tests.serve.ray_cluster import start_local_ray

pytestmark = pytest.mark.hostile  # the hostile-input suite: pytest -m hostile

GARBAGE = b"\xff\xff\xff"
#: What a status message must not show: grpcio's wording for an exception it did not expect.
INTERNALS = ("Unexpected", "<class", "DecodeError", "google.protobuf", "Traceback")
METHODS = {  # method -> (request message, response streaming)
    "Analyze": ("backscore.v1.MediaRequest", False),
    "Recommend": ("backscore.v1.RecommendRequest", False),
    "Score": ("backscore.v1.ScoreRequest", True),
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    gw = InProcessGateway(InProcessModels.default(faces=False), tmp_dir=os.fspath(tmp_path_factory.mktemp("gw")))
    yield gw
    asyncio.run(gw.shutdown())


@pytest.fixture()
async def channel(gateway: InProcessGateway) -> AsyncIterator[grpc.aio.Channel]:
    server, port = await start_server(gateway)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch
    finally:
        await server.stop(None)


def assert_clean(err: grpc.aio.AioRpcError, code: grpc.StatusCode, words: str) -> None:
    assert err.code() == code, (err.code(), err.details())
    details = err.details() or ""
    assert words in details and len(details) < 200, details
    for leak in INTERNALS:
        assert leak not in details, details


def test_the_payload_really_is_not_a_message() -> None:
    for cls in (pb.MediaRequest, pb.RecommendRequest, pb.ScoreRequest, pb.LiveInput):
        with pytest.raises(DecodeError):
            cls.FromString(GARBAGE)


@pytest.mark.parametrize("method", sorted(METHODS))
async def test_garbage_is_invalid_argument(channel: grpc.aio.Channel, method: str) -> None:
    message_type, streaming = METHODS[method]
    path = f"/backscore.v1.Backscore/{method}"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        if streaming:
            async for _ in channel.unary_stream(path)(GARBAGE, timeout=30):
                pass
        else:
            await channel.unary_unary(path)(GARBAGE, timeout=30)
    assert_clean(info.value, grpc.StatusCode.INVALID_ARGUMENT, f"not a valid {message_type} message")


async def test_garbage_in_a_live_stream_is_invalid_argument(channel: grpc.aio.Channel,
                                                            gateway: InProcessGateway) -> None:
    call = channel.stream_stream("/backscore.v1.Backscore/Stream")(iter([GARBAGE]), timeout=30)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert_clean(info.value, grpc.StatusCode.INVALID_ARGUMENT, "not a valid backscore.v1.LiveInput message")
    assert gateway.live_slots.in_use == 0
    # a good first message, then garbage: the session that started ends INVALID_ARGUMENT and frees its slot
    config = pb.LiveInput(config=pb.StreamConfig(style="calm")).SerializeToString()
    call = channel.stream_stream("/backscore.v1.Backscore/Stream")(iter([config, GARBAGE]), timeout=30)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert_clean(info.value, grpc.StatusCode.INVALID_ARGUMENT, "not a valid backscore.v1.LiveInput message")
    for _ in range(100):
        if gateway.live_slots.in_use == 0:
            break
        await asyncio.sleep(0.05)
    assert gateway.live_slots.in_use == 0


async def test_good_messages_still_reach_the_servicer(channel: grpc.aio.Channel, video_dir: Path) -> None:
    video = make_video(video_dir, "grpc_garbage_ok.mp4", [dataclasses.replace(CALM_DARK, duration_s=2.0)],
                       width=160, height=120, fps=12)
    analyze = channel.unary_unary("/backscore.v1.Backscore/Analyze",
                                  request_serializer=pb.MediaRequest.SerializeToString,
                                  response_deserializer=pb.AnalyzeReply.FromString)
    request = pb.MediaRequest(video=video.read_bytes(), filename="ok.mp4", options=pb.JobOptions(faces=False))
    reply = await analyze(request, timeout=120)
    assert 1.5 < reply.duration_s < 2.5 and reply.windows
    # a project error from a well-formed message keeps its code and its own message
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await analyze(pb.MediaRequest(), timeout=30)
    assert_clean(info.value, grpc.StatusCode.INVALID_ARGUMENT, "no video: MediaRequest.video is empty")


async def test_the_undecodable_request_survives_rays_pickling_into_the_method(gateway: InProcessGateway) -> None:
    request = pickle.loads(pickle.dumps(Undecodable("backscore.v1.ScoreRequest")))
    assert isinstance(request, Undecodable) and not hasattr(request, "__getnewargs_ex__")
    with pytest.raises(InputError, match=r"not a valid backscore\.v1\.ScoreRequest message"):
        _ = request.media
    ctx = RecordingContext()
    with pytest.raises(GrpcError):
        async for _ in gateway.Score(request, grpc_context=ctx):  # type: ignore[arg-type]
            pass
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT
    assert ctx.details == "the request is not a valid backscore.v1.ScoreRequest message (it does not decode)"


# ----------------------------------------------------------------------------- through Ray Serve's proxy


@pytest.mark.slow
def test_garbage_through_the_ray_proxy(ray_target: str) -> None:
    from tests.serve.test_grpc import APP

    metadata = (("application", APP),)
    with grpc.insecure_channel(ray_target) as ch:
        calls = {
            "MediaRequest": lambda: ch.unary_unary("/backscore.v1.Backscore/Analyze")(
                GARBAGE, metadata=metadata, timeout=60),
            "ScoreRequest": lambda: list(ch.unary_stream("/backscore.v1.Backscore/Score")(
                GARBAGE, metadata=metadata, timeout=60)),
            "LiveInput": lambda: list(ch.stream_stream("/backscore.v1.Backscore/Stream")(
                iter([GARBAGE]), metadata=metadata, timeout=60)),
        }
        for message, call in calls.items():
            with pytest.raises(grpc.RpcError) as info:
                call()
            err = info.value
            code, details = err.code(), err.details()
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (message, code, details)
            assert f"not a valid backscore.v1.{message} message" in details
            for leak in INTERNALS:
                assert leak not in details, details


@pytest.fixture(scope="module")
def ray_target() -> Iterator[str]:
    """A Ray instance with test_grpc.py's test gateway behind the proxy, registered by the production
    GRPC_SERVICER_FUNCTIONS (free ports, shut down at the end)."""
    pytest.importorskip("ray")
    import ray
    from ray import serve as ray_serve
    from ray.serve.config import gRPCOptions

    from serve.grpc.servicer import GRPC_SERVICER_FUNCTIONS
    from tests.conftest import ROOT
    from tests.serve.test_grpc import APP, GrpcTestGateway, free_port, wait_healthy

    grpc_port, http_port = free_port(), free_port()
    env = {"PYTHONPATH": os.fspath(ROOT), "OMP_NUM_THREADS": "1"}
    start_local_ray(2, env)
    try:
        ray_serve.start(http_options={"host": "127.0.0.1", "port": http_port},
                        grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS))
        ray_serve.run(GrpcTestGateway.bind({}), name=APP, route_prefix=f"/{APP}")  # type: ignore[attr-defined]
        addr = f"127.0.0.1:{grpc_port}"
        wait_healthy(addr)
        yield addr
    finally:
        ray_serve.shutdown()
        ray.shutdown()
