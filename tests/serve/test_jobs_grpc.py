"""The async job methods over gRPC (``StartJob``, server-streaming ``WatchJob``, ``CancelJob``): a plain ``grpc.aio``
server (:func:`serve.grpc.server.start_server`, the registration production uses through Ray's proxy) over the
real gateway core, called through a real channel; the job's files fetched over HTTP from the same core.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from fastapi.testclient import TestClient

from pipelines.jobs import JobWork
from pipelines.live.models import InProcessModels
from serve.grpc.server import start_server
from serve.http.router import build_app
from serve.proto.backscore.v1 import backscore_pb2 as pb
from serve.proto.backscore.v1 import backscore_pb2_grpc as pb_grpc
from tests.conftest import calm_then_bright
from tests.serve.inprocess import InProcessGateway
from tests.serve.job_gate import WAIT_S, gate


@pytest.fixture(scope="module")
def clip(video_dir: Path) -> Path:
    return calm_then_bright(video_dir, "jobs_grpc.mp4", 1.5, width=160, height=120)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    gw = InProcessGateway(InProcessModels.default(faces=False, inline=True),
                          tmp_dir=os.fspath(tmp_path_factory.mktemp("gw")))
    yield gw
    asyncio.run(gw.shutdown())


@pytest.fixture()
async def stub(gateway: InProcessGateway) -> AsyncIterator[pb_grpc.BackscoreStub]:
    gateway.job_store.work = JobWork()
    server, port = await start_server(gateway)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield pb_grpc.BackscoreStub(ch)
    finally:
        await server.stop(None)


async def _watch(stub: pb_grpc.BackscoreStub, job_id: str) -> list[pb.JobStatus]:
    return [s async for s in stub.WatchJob(pb.JobRef(id=job_id))]


async def test_start_watch_and_fetch_over_http(stub: pb_grpc.BackscoreStub, gateway: InProcessGateway,
                                               clip: Path) -> None:
    first = await stub.StartJob(pb.StartJobRequest(video=clip.read_bytes(), filename="clip.mp4",
                                                   options_json=json.dumps({"style": "calm", "seed": 2})))
    assert first.kind == "score" and first.state in ("queued", "running") and first.id
    seen = await _watch(stub, first.id)
    assert seen[-1].state == "done" and all(s.state in ("queued", "running") for s in seen[:-1])
    fractions = [s.fraction for s in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [s.seq for s in seen] == sorted({s.seq for s in seen})
    done = seen[-1]
    assert list(done.stages_run) == ["thumbnails", "analyse", "compose", "mix", "mux"]
    assert set(done.results) == {"video", "bgm", "timeline", "plot"}
    assert json.loads(done.status_json)["options"]["style"] == "calm"
    with TestClient(build_app(gateway)) as http:
        bgm = http.get(done.results["bgm"])
        assert bgm.status_code == 200
        with wave.open(io.BytesIO(bgm.content)) as w:
            assert abs(w.getnframes() / w.getframerate() - 3.0) < 0.1
    # a re-render on the same analysis
    again = await stub.StartJob(pb.StartJobRequest(options_json=json.dumps({"from_job": first.id, "style": "tense"})))
    last = (await _watch(stub, again.id))[-1]
    assert last.state == "done" and list(last.stages_run) == ["compose", "mix", "mux"]
    # watching a finished job: its last status, then the end
    assert [s.seq for s in await _watch(stub, first.id)] == [done.seq]


async def test_cancel_stops_the_job_and_removes_it(stub: pb_grpc.BackscoreStub, gateway: InProcessGateway,
                                                   clip: Path) -> None:
    g = gate(gateway)
    try:
        started = await stub.StartJob(pb.StartJobRequest(video=clip.read_bytes(), filename="clip.mp4"))
        assert await asyncio.to_thread(g.entered.wait, WAIT_S)
        folder = gateway.job_store.get(started.id).folder
        watching = stub.WatchJob(pb.JobRef(id=started.id))
        assert (await anext(watching.__aiter__())).state == "running"
        watching.cancel()  # a watcher leaving does not stop the job
        assert gateway.job_store.get(started.id).view().state == "running"
        last = await stub.CancelJob(pb.JobRef(id=started.id))
        assert last.state == "cancelled" and last.error_type == "Cancelled" and not os.path.exists(folder)
        assert g.calls == 1
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _watch(stub, started.id)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        g.opened.set()


async def test_bad_requests_are_invalid_argument_or_not_found(stub: pb_grpc.BackscoreStub, clip: Path) -> None:
    for request, code in (
        (pb.StartJobRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.StartJobRequest(video=b"not a video" * 50, filename="x.mp4"), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.StartJobRequest(video=clip.read_bytes(), options_json="{not json"), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.StartJobRequest(video=clip.read_bytes(), options_json='{"kind": "remix"}'),
         grpc.StatusCode.INVALID_ARGUMENT),
        (pb.StartJobRequest(video=clip.read_bytes(), options_json='{"style": "nope"}'),
         grpc.StatusCode.INVALID_ARGUMENT),
        (pb.StartJobRequest(options_json='{"from_job": "nope"}'), grpc.StatusCode.NOT_FOUND),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.StartJob(request)
        assert info.value.code() == code, info.value.details()
        assert "/tmp" not in (info.value.details() or "")
    for call in (stub.CancelJob(pb.JobRef(id="nope")), _watch(stub, "nope")):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
