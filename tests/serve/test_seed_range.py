"""A seed out of range (-1, 2**63) or not a number ("abc") is a clear client error on every front end:
HTTP ``/v1/score``, gRPC ``Score``, the CLI's ``score`` and a WebRTC offer -- never a 500, INTERNAL,
a traceback or a job that runs.

HTTP and WebRTC through FastAPI's test client over the real gateway core, gRPC through a real channel to
a plain ``grpc.aio`` server with the real servicer (:func:`serve.grpc.server.start_server`), the CLI as
a subprocess.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from fastapi.testclient import TestClient

from pipelines.live.models import InProcessModels
from pipelines.options import MAX_SEED
from serve.grpc.server import start_server
from serve.http.router import build_app
from serve.proto.backscore.v1 import backscore_pb2 as pb
from tests.serve.inprocess import InProcessGateway

pytestmark = pytest.mark.hostile  # the hostile-input suite: pytest -m hostile

ROOT = Path(__file__).resolve().parents[2]
SDP_WITH_AUDIO = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
OUT_OF_RANGE = [-1, 2**63]
RANGE = f"seed must be between 0 and {MAX_SEED}"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    gw = InProcessGateway(InProcessModels.default(faces=False), tmp_dir=os.fspath(tmp_path_factory.mktemp("gw")))
    yield gw
    asyncio.run(gw.shutdown())


@pytest.fixture(scope="module")
def http(gateway: InProcessGateway) -> Iterator[TestClient]:
    with TestClient(build_app(gateway)) as c:
        yield c


@pytest.fixture()
async def score(gateway: InProcessGateway) -> AsyncIterator[grpc.aio.UnaryStreamMultiCallable]:
    server, port = await start_server(gateway)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch.unary_stream("/backscore.v1.Backscore/Score")  # raw bytes in, raw bytes out
    finally:
        await server.stop(None)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _score_request(seed: int) -> bytes:
    """A ScoreRequest with ``video=b"x"`` and ``options.seed=seed`` on the wire -- any 64-bit pattern, so a
    client's uint64 2**63 arrives as what the server's int64 field makes of it."""
    options = b"\x10" + _varint(seed & (2**64 - 1))  # JobOptions.seed: field 2, varint
    media = b"\x0a\x01x" + b"\x1a" + _varint(len(options)) + options  # video (1), options (3)
    request = b"\x0a" + _varint(len(media)) + media  # ScoreRequest.media (1)
    assert pb.ScoreRequest.FromString(request).media.options.seed in (seed, seed - 2**64)
    return request


@pytest.mark.parametrize("seed", [*OUT_OF_RANGE, "abc"])
def test_http_score(http: TestClient, gateway: InProcessGateway, seed: object) -> None:
    r = http.post(f"/v1/score?seed={seed}", files={"file": ("a.mp4", b"x", "video/mp4")})
    err = r.json()["error"]
    if seed == "abc":  # not an integer at all: the framework's validation, as for every query parameter
        assert r.status_code == 422 and err["type"] == "ValidationError" and "seed" in err["message"], err
    else:
        assert r.status_code == 400, r.text
        assert err == {"type": "OptionError", "message": f"{RANGE} (got {seed})"}
    assert not list(Path(gateway.workdirs.root).iterdir())  # nothing left behind


@pytest.mark.parametrize("seed", OUT_OF_RANGE)
async def test_grpc_score(score: grpc.aio.UnaryStreamMultiCallable, seed: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in score(_score_request(seed), timeout=30):
            pass
    as_int64 = seed - 2**64 if seed >= 2**63 else seed
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert info.value.details() == f"{RANGE} (got {as_int64})"


def test_grpc_cannot_carry_a_text_seed() -> None:
    """``seed=abc`` has no gRPC form: the field is an int64, and the client library refuses text."""
    with pytest.raises(TypeError):
        pb.JobOptions(seed="abc")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [*OUT_OF_RANGE, "abc"])
def test_webrtc_offer(http: TestClient, gateway: InProcessGateway, seed: object) -> None:
    r = http.post("/v1/webrtc/offer", json={"sdp": SDP_WITH_AUDIO, "type": "offer", "seed": seed})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "OfferError"
    expected = f"{RANGE} (got {seed})" if seed != "abc" else "seed must be an integer (got 'abc')"
    assert err["message"] == expected
    assert gateway.webrtc.sessions == {}


@pytest.mark.parametrize("seed", [*OUT_OF_RANGE, "abc"])
def test_cli_score(tmp_path: Path, seed: object) -> None:
    out = tmp_path / "out.mp4"
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "score", os.fspath(tmp_path / "in.mp4"), "-o",
                          os.fspath(out), "--seed", str(seed)], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    if seed == "abc":  # argparse's own refusal: the usage line, then the error
        assert "argument --seed: invalid int value: 'abc'" in res.stderr
    else:
        assert res.stderr.strip() == f"backscore: error: {RANGE} (got {seed})"
    assert list(tmp_path.iterdir()) == []
