"""One parser for options and one error table: the same mistake gets the same answer on every front end.

The CLI (a subprocess), HTTP (FastAPI's test client over the real gateway core), gRPC (the real
servicer methods on the same core, with a recording context instead of Ray's proxy) and WebRTC
signalling all see the same bad seed, the same missing weights and the same unknown route.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fastapi.testclient import TestClient

import engines.base
import pipelines.errors as errors
from pipelines.errors import ERROR_TABLE, INTERNAL, error_kind, error_status
from pipelines.live.models import InProcessModels
from serve.grpc.servicer import GrpcError
from serve.http.router import build_app
from serve.proto.backscore.v1 import backscore_pb2 as pb
from tests.serve.inprocess import InProcessGateway, RecordingContext

ROOT = Path(__file__).resolve().parent.parent
SDP_WITH_AUDIO = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    gw = InProcessGateway(InProcessModels.default(faces=False, inline=True),
                          tmp_dir=os.fspath(tmp_path_factory.mktemp("gw")),
                          engine="musicgen", weights=None)  # MusicGen without weights: EngineUnavailable on score
    yield gw
    asyncio.run(gw.shutdown())


@pytest.fixture(scope="module")
def http(gateway: InProcessGateway) -> Iterator[TestClient]:
    with TestClient(build_app(gateway)) as c:
        yield c


def _grpc(coro_fn, *args) -> RecordingContext:  # type: ignore[no-untyped-def]
    ctx = RecordingContext()

    async def run() -> None:
        result = coro_fn(*args, grpc_context=ctx)
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result

    with pytest.raises(GrpcError):
        asyncio.run(run())
    return ctx


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_every_user_error_has_a_row_and_statuses_agree() -> None:
    kinds = [getattr(errors, n) for n in dir(errors)
             if isinstance(getattr(errors, n), type) and issubclass(getattr(errors, n), errors.BackscoreError)]
    for cls in kinds:
        assert cls in ERROR_TABLE, f"{cls.__name__} has no row in ERROR_TABLE"
        status = error_status(cls("x"))
        assert status.grpc_code in grpc.StatusCode.__members__
        assert status.user_error == (status.http_status < 500)
    assert error_status(engines.base.EngineUnavailable("x")).http_status == 503
    for cls, row in ERROR_TABLE.items():  # every 429 and 503 says when to try again
        if row.http_status in (429, 503):
            assert row.retry_after_s, f"{cls.__name__}: a {row.http_status} without Retry-After"
    assert error_status(KeyError("x")) is INTERNAL
    assert error_kind(errors.BusyError("x")) == "Busy" and error_kind(errors.OptionError("x")) == "OptionError"


def test_a_bad_seed_is_the_same_error_everywhere(http: TestClient, gateway: InProcessGateway, tmp_path: Path) -> None:
    message = "seed must be between 0 and 2147483647 (got -1)"
    res = _cli("score", os.fspath(tmp_path / "in.mp4"), "-o", os.fspath(tmp_path / "out.mp4"), "--seed", "-1")
    assert res.returncode == 2 and res.stderr.strip() == f"backscore: error: {message}"
    r = http.post("/v1/score?seed=-1", files={"file": ("a.mp4", b"x", "video/mp4")})
    assert r.status_code == 400 and r.json()["error"] == {"type": "OptionError", "message": message}
    request = pb.ScoreRequest(media=pb.MediaRequest(video=b"x", options=pb.JobOptions(seed=-1)))
    ctx = _grpc(gateway.Score, request)
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT and ctx.details == message
    r = http.post("/v1/webrtc/offer", json={"sdp": SDP_WITH_AUDIO, "type": "offer", "seed": -1})
    assert r.status_code == 400 and r.json()["error"] == {"type": "OfferError", "message": message}
    assert not list(Path(gateway.workdirs.root).iterdir())  # nothing left behind


def test_missing_engine_weights_are_unavailable_not_internal(http: TestClient, gateway: InProcessGateway,
                                                             calm_to_exciting: Path) -> None:
    video = calm_to_exciting.read_bytes()
    r = http.post("/v1/score?output=bgm", files={"file": ("clip.mp4", video, "video/mp4")})
    body = r.json()["error"]
    assert r.status_code == 503 and body["type"] == "EngineUnavailable" and r.headers["retry-after"] == "60"
    assert "MusicGen weights" in body["message"] and "--weights" in body["message"]
    ctx = _grpc(gateway.Score, pb.ScoreRequest(media=pb.MediaRequest(video=video, filename="clip.mp4")))
    assert ctx.code == grpc.StatusCode.UNAVAILABLE and "MusicGen weights" in ctx.details
    res = _cli("score", os.fspath(calm_to_exciting), "-o", "/tmp/never-written.mp4", "--engine", "musicgen",
               "--weights", "/nonexistent")
    assert res.returncode == 4 and "MusicGen weights" in res.stderr and not os.path.exists("/tmp/never-written.mp4")


def test_http_framework_errors_use_the_same_body(http: TestClient) -> None:
    r = http.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"]["type"] == "NotFound"
    r = http.delete("/v1/analyze")
    assert r.status_code == 405 and r.json()["error"]["type"] == "MethodNotAllowed"
    r = http.post("/v1/recommend?top_k=0", files={"file": ("a.mp4", b"x", "video/mp4")})
    assert r.status_code == 422 and r.json()["error"]["type"] == "ValidationError"
    r = http.post("/v1/recommend?library=nope", files={"file": ("a.mp4", b"x", "video/mp4")})
    assert r.status_code == 400 and r.json()["error"]["type"] == "LibraryError"
