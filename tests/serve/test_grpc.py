"""The gRPC API through a real channel to Ray Serve's gRPC proxy.

A test-only ingress deployment is the gateway's host contract without the rest of the replica:
:class:`serve.core.GatewayCore` (engines in-process, ``InProcessModels.default()``) plus
:class:`serve.grpc.servicer.GrpcMethods`. One Ray instance per module (free ports, never 8000/9000),
shut down at the end.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
import numpy as np
import pytest

from pipelines.devtools.hostile_media import stamped_video
from serve.core import GatewayCore
from serve.grpc.client import BackscoreClient, file_inputs, stream_file
from serve.grpc.servicer import GRPC_SERVICER_FUNCTIONS, GrpcMethods
from serve.jobs import BlockingIterator, JobRunner
from serve.proto.backscore.v1 import backscore_pb2 as pb
from serve.proto.backscore.v1 import backscore_pb2_grpc as pb_grpc
from tests.conftest import ROOT, calm_then_bright
from tests.serve.libraries import write_small_library
from tests.serve.ray_cluster import start_local_ray

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")
from ray import serve as ray_serve  # noqa: E402

T = TypeVar("T")
APP = "backscore-grpc-test"
MAX_UPLOAD = 6 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TimedIterator(BlockingIterator[T]):
    """A Score job's chunks as the servicer pulls them, noting when each pull was ready."""

    def __init__(self, runner: JobRunner, it: Iterator[T], steps: list[float]) -> None:
        super().__init__(runner, it)
        self.steps = steps

    async def next(self) -> T | None:
        item = await super().next()
        self.steps.append(time.time())
        return item


class TimedJobs(JobRunner):
    """The gateway's job pool, whose iterated jobs (Score) note when each step was ready."""

    def __init__(self, threads: int, max_pending: int) -> None:
        super().__init__(threads, max_pending)
        self.steps: list[float] = []

    def iterate(self, it: Iterator[T]) -> BlockingIterator[T]:
        return TimedIterator(self, it, self.steps)


@ray_serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=32)
class GrpcTestGateway(GatewayCore, GrpcMethods):
    """The gateway's gRPC host: GatewayCore with the engines in this replica, plus GrpcMethods."""

    def __init__(self, libraries: dict[str, str]) -> None:
        from pipelines.live.models import InProcessModels

        super().__init__(InProcessModels.default(), libraries=libraries, max_upload_mb=MAX_UPLOAD / 2**20)
        self.jobs.shutdown()
        self.jobs = self.timed_jobs = TimedJobs(self.jobs.threads, self.jobs.max_pending)

    def take_score_steps(self) -> list[float]:
        steps = list(self.timed_jobs.steps)
        self.timed_jobs.steps.clear()
        return steps

    def active_grpc_sessions(self) -> float:
        from serve.metrics import ACTIVE_SESSIONS

        return sum(s.value for m in ACTIVE_SESSIONS.collect() for s in m.samples
                   if s.labels.get("transport") == "grpc")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def short_video(video_dir: Path) -> Path:
    """4 s calm -> 4 s exciting: enough for a timeline and several BGM chunks."""
    return calm_then_bright(video_dir, "grpc_short.mp4", 4.0)


@pytest.fixture(scope="module")
def small_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three composer renders indexed like `backscore library index DIR --db LIB.sqlite`."""
    return write_small_library(tmp_path_factory.mktemp("music"))


def wait_healthy(addr: str, timeout_s: float = 60.0) -> None:
    """The proxy answers Healthz UNAVAILABLE ("Route table is not populated yet") for a moment after serve.run."""
    deadline = time.monotonic() + timeout_s
    with BackscoreClient(addr, timeout_s=5) as c:
        while True:
            try:
                c.healthz()
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture(scope="module")
def target(small_library: Path) -> Iterator[str]:
    from ray.serve.config import gRPCOptions

    grpc_port, http_port = free_port(), free_port()
    env = {"PYTHONPATH": os.fspath(ROOT), "OMP_NUM_THREADS": "1"}
    if os.environ.get("BACKSCORE_CACHE"):
        env["BACKSCORE_CACHE"] = os.environ["BACKSCORE_CACHE"]
    start_local_ray(2, env)
    try:
        ray_serve.start(http_options={"host": "127.0.0.1", "port": http_port},
                        grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS))
        ray_serve.run(GrpcTestGateway.bind({"test": os.fspath(small_library)}),  # type: ignore[attr-defined]
                      name=APP, route_prefix=f"/{APP}")  # no prefix = no route: gRPC would not see the app
        addr = f"127.0.0.1:{grpc_port}"
        wait_healthy(addr)
        yield addr
    finally:
        ray_serve.shutdown()
        ray.shutdown()


@pytest.fixture()
def client(target: str) -> Iterator[BackscoreClient]:
    with BackscoreClient(target, timeout_s=180) as c:
        yield c


def rpc_error(fn: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value


# ----------------------------------------------------------------------------- health, discovery


def test_ray_health_and_routes(target: str, client: BackscoreClient) -> None:
    from ray.serve.generated import serve_pb2, serve_pb2_grpc

    assert client.healthz() == "success"
    with grpc.insecure_channel(target) as ch:
        request = serve_pb2.ListApplicationsRequest()  # type: ignore[attr-defined]
        apps = serve_pb2_grpc.RayServeAPIServiceStub(ch).ListApplications(request)
    assert APP in apps.application_names


def test_standard_health_check_through_a_replica(client: BackscoreClient) -> None:
    from grpc_health.v1 import health_pb2

    assert client.check() == health_pb2.HealthCheckResponse.SERVING
    assert client.check("backscore.v1.Backscore") == health_pb2.HealthCheckResponse.SERVING
    err = rpc_error(lambda: client.check("no.such.Service"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_service(target: str) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(target) as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        services = db.get_services()
        assert "backscore.v1.Backscore" in services
        desc = db.FindFileContainingSymbol("backscore.v1.Backscore")
        assert desc.package == "backscore.v1"


# ----------------------------------------------------------------------------- offline jobs


def test_analyze(client: BackscoreClient, short_video: Path) -> None:
    import json

    reply = client.analyze(os.fspath(short_video), faces=False)
    assert 7.5 < reply.duration_s < 8.5
    assert len(reply.windows) >= 10 and reply.segments
    for w in reply.windows:
        assert -1 <= w.valence <= 1 and -1 <= w.arousal <= 1 and w.emotion and 0 <= w.confidence <= 1
    data = json.loads(reply.timeline_json)
    assert len(data["windows"]) == len(reply.windows) and data["input"]["path"] is None
    assert "features" in data["windows"][0]
    assert reply.segments[0].start_s == 0
    # the calm half is calmer than the exciting half
    first = np.mean([w.arousal for w in reply.windows if w.end_s <= 4.0])
    last = np.mean([w.arousal for w in reply.windows if w.start_s >= 4.0])
    assert last > first


def test_recommend_from_a_named_library(client: BackscoreClient, short_video: Path) -> None:
    reply = client.recommend(os.fspath(short_video), top_k=2, library="test", faces=False)
    assert reply.library_size == 3 and len(reply.recommendations) == 2
    assert all(r.track_id in (1, 2, 3) and r.title and r.reason for r in reply.recommendations)
    assert reply.recommendations[0].score >= reply.recommendations[1].score
    assert reply.recommendations[0].components
    seg = client.recommend(os.fspath(short_video), top_k=1, per_segment=True, library="test", faces=False)
    assert seg.segments and all(len(s.recommendations) == 1 for s in seg.segments)


def test_score_streams_chunks_as_they_are_composed(client: BackscoreClient, calm_to_exciting: Path) -> None:
    ray_serve.get_app_handle(APP).take_score_steps.remote().result()
    arrivals: list[float] = []
    chunks: list[pb.BgmChunk] = []
    for ch in client.score(os.fspath(calm_to_exciting), style="lofi", faces=False):
        arrivals.append(time.time())
        chunks.append(ch)
    assert len(chunks) >= 5
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.sample_rate == 48_000 and c.channels == 2 and len(c.pcm) % 4 == 0 for c in chunks)
    assert all(c.bars and c.bars[0].style == "lofi" for c in chunks)
    starts = [c.start_s for c in chunks]
    assert starts == sorted(starts) and starts[0] == 0
    total = sum(len(c.pcm) for c in chunks) / (4 * 48_000)
    assert abs(total - 16.0) < 0.1
    pcm = np.frombuffer(b"".join(c.pcm for c in chunks), "<i2")
    assert np.abs(pcm).max() > 1000  # music, not silence
    # streamed: the first chunk reached the client before the server had composed the last one
    steps = ray_serve.get_app_handle(APP).take_score_steps.remote().result()
    assert len(steps) == len(chunks) + 1  # + the step that found the end
    assert arrivals[0] < steps[-2], (arrivals[0], steps)


# ----------------------------------------------------------------------------- errors


def test_bad_media_is_invalid_argument_without_server_paths(client: BackscoreClient, tmp_path: Path) -> None:
    junk = tmp_path / "holiday.mp4"
    junk.write_bytes(b"this is not a video at all" * 100)
    err = rpc_error(lambda: client.analyze(os.fspath(junk)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "holiday.mp4" in err.details() and "/tmp" not in err.details() and "backscore-grpc-" not in err.details()

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    err = rpc_error(lambda: client.analyze(os.fspath(empty)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty" in err.details()


def test_bad_options_are_invalid_argument(client: BackscoreClient, short_video: Path) -> None:
    err = rpc_error(lambda: client.analyze(os.fspath(short_video), style="disco"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown style 'disco'" in err.details()
    err = rpc_error(lambda: client.recommend(os.fspath(short_video), library="/etc/passwd"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown library" in err.details()
    err = rpc_error(lambda: client.recommend(os.fspath(short_video), top_k=500))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "top_k" in err.details()
    err = rpc_error(lambda: list(client.score(os.fspath(short_video), style="disco")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown style" in err.details()


def test_media_longer_than_the_service_allows_is_resource_exhausted(client: BackscoreClient, tmp_path: Path) -> None:
    hour = stamped_video(tmp_path / "hour.mkv", [0.0, 0.04, 1800.0, 3600.0])
    for call in (lambda: client.analyze(os.fspath(hour)), lambda: list(client.score(os.fspath(hour)))):
        err = rpc_error(call)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "hour.mkv has frames stamped at 30.0 min" in err.details() and "/tmp" not in err.details()


def test_too_large_upload_is_resource_exhausted(client: BackscoreClient, tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (MAX_UPLOAD + 1))
    err = rpc_error(lambda: client.analyze(os.fspath(big)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "MiB" in err.details()


async def _stream_error(target: str, messages: list[pb.LiveInput]) -> grpc.aio.AioRpcError:
    async def gen() -> Any:
        for m in messages:
            yield m
        await asyncio.sleep(5)  # keep the stream open: the error must come from the server

    async with grpc.aio.insecure_channel(target) as ch:
        call = pb_grpc.BackscoreStub(ch).Stream(gen())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
    return info.value


async def test_stream_bad_input(target: str) -> None:
    cfg = pb.LiveInput(config=pb.StreamConfig())
    frame = pb.LiveInput(video=pb.VideoFrame(pts_s=0.0, width=4, height=4, rgb=b"\0" * 48))

    err = await _stream_error(target, [frame])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "StreamConfig" in (err.details() or "")
    err = await _stream_error(target, [pb.LiveInput(config=pb.StreamConfig(style="disco"))])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown style" in (err.details() or "")
    bad = pb.LiveInput(video=pb.VideoFrame(pts_s=0.0, width=4, height=4, rgb=b"\0" * 47))
    err = await _stream_error(target, [cfg, bad])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "48 bytes" in (err.details() or "")
    huge = pb.LiveInput(video=pb.VideoFrame(pts_s=0.0, width=1920, height=1080, rgb=b"\0" * (1920 * 1080 * 3)))
    err = await _stream_error(target, [cfg, huge])
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "thumbnails" in (err.details() or "")
    odd = pb.LiveInput(audio=pb.AudioChunk(pts_s=0.0, pcm=b"\0" * 6))
    err = await _stream_error(target, [cfg, odd])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "s16le" in (err.details() or "")


# ----------------------------------------------------------------------------- live


def active_sessions() -> float:
    return float(ray_serve.get_app_handle(APP).active_grpc_sessions.remote().result())


async def test_live_stream_follows_the_mood(target: str, calm_to_exciting: Path) -> None:
    music: list[pb.MusicChunk] = []
    reports: list[pb.MoodReport] = []
    t0 = time.monotonic()
    async for out in stream_file(os.fspath(calm_to_exciting), target, style="cinematic", tail_s=2.5):
        if out.WhichOneof("kind") == "music":
            music.append(out.music)
        else:
            reports.append(out.mood)
    elapsed = time.monotonic() - t0
    assert 15.5 < elapsed < 30, elapsed  # real time: 16 s of media + the tail

    # ~100 ms music messages, pts increasing by exactly one message
    assert len(music) > 100
    assert all(len(m.pcm) == 4800 * 4 for m in music)
    pts = [m.pts for m in music]
    assert pts == list(range(0, 4800 * len(music), 4800))
    pcm = np.frombuffer(b"".join(m.pcm for m in music[-60:]), "<i2")
    assert np.abs(pcm).max() > 500  # music is playing by the end

    # about one report a second, mood calm-ish first, exciting-ish at the end
    assert 12 <= len(reports) <= 22, len(reports)
    assert len({r.session_id for r in reports}) == 1
    media = [r.media_s for r in reports]
    assert media == sorted(media)
    emotions = [r.emotion for r in reports if r.windows > 0]
    assert len(set(emotions)) >= 2, emotions
    early = [r for r in reports if 3.0 < r.media_s < 8.0]
    late = [r for r in reports if r.media_s > 13.0]
    assert early and late
    assert np.mean([r.arousal for r in late]) > np.mean([r.arousal for r in early])
    assert reports[-1].mood_changes >= 1
    assert reports[-1].urgent_changes <= reports[-1].mood_changes
    # a change heard carries its delays: detection (media s), latency (clock s), audible = their sum
    heard = [r for r in reports if r.HasField("last_change_audible_s")]
    assert heard, "no report says when the new mood was heard"
    for r in heard:
        assert r.HasField("last_change_detect_s") and r.HasField("last_change_latency_s")
        assert r.last_change_audible_s == pytest.approx(r.last_change_detect_s + r.last_change_latency_s, abs=2e-3)
    assert reports[-1].music.tempo_bpm > 0 and reports[-1].music.style == "cinematic"
    # the server's pacer counts frames it handed out late: a running count, never more than it sent
    late = [r.sender_late_frames for r in reports]
    assert late == sorted(late) and late[-1] <= len(music) * 5
    assert all(r.degraded == 0 for r in reports)  # one session: nothing shed
    await _wait_sessions_closed()


async def _wait_sessions_closed(timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        n = await asyncio.to_thread(active_sessions)
        if n == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert n == 0, f"{n} live sessions still open"


async def test_live_stream_cancel_closes_the_session(target: str, calm_to_exciting: Path) -> None:
    got = 0
    async with grpc.aio.insecure_channel(target) as ch:
        call = pb_grpc.BackscoreStub(ch).Stream(file_inputs(os.fspath(calm_to_exciting), speed=1.0))
        async for out in call:
            got += out.WhichOneof("kind") == "music"
            if got == 10:
                break
        assert await asyncio.to_thread(active_sessions) == 1
        call.cancel()
    assert got == 10
    await _wait_sessions_closed()
