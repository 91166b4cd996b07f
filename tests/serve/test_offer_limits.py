"""``POST /v1/webrtc/offer`` under hostile input: bodies over ``BACKSCORE_MAX_JSON_KB`` (declared or
streamed), SDPs with too many sections or candidates, and SDPs aiortc cannot parse -- all refused with
a short JSON error that shows nothing of the server's internals, and nothing left behind.

The app is the real router over the real :class:`~serve.webrtc.manager.WebRtcManager` (embedded default
engines), through FastAPI's test client and, where the wire matters (a body still arriving), uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("aiortc", reason="serve extras (aiortc) not installed: pip install -e '.[serve]'")

from fastapi import FastAPI
from fastapi.testclient import TestClient

from engines.settings import settings
from pipelines.live.models import InProcessModels
from serve.webrtc import WebRtcManager, webrtc_router
from serve.webrtc.protocol import MAX_CANDIDATES, MAX_MEDIA_SECTIONS, MAX_SDP_CHARS
from tests.serve.http_server import read_response, serving
from tests.serve.test_webrtc import Client

pytestmark = pytest.mark.hostile  # the hostile-input suite: pytest -m hostile

OFFER = "/v1/webrtc/offer"
#: What a message of ours must never contain: aiortc's or Python's own words.
INTERNALS = ("Traceback", "aiortc", ".py", "Error(", "invalid literal", "int()", "unpack", "File \"")


@pytest.fixture(scope="module")
def manager() -> Iterator[WebRtcManager]:
    models = InProcessModels.default(faces=False)
    yield WebRtcManager(models, hooks=None, max_sessions=2)
    models.shutdown()


@pytest.fixture(scope="module")
def app(manager: WebRtcManager) -> FastAPI:
    app = FastAPI()
    app.include_router(webrtc_router(manager))
    return app


@pytest.fixture(scope="module")
def http(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def real_sdp() -> str:
    """A real aiortc client's offer (audio sendrecv-capable, a data channel, host candidates)."""

    async def offer() -> str:
        c = Client(None)
        c.pc.createDataChannel("extra")
        sdp = (await c.offer())["sdp"]
        await c.pc.close()
        return str(sdp)

    return asyncio.run(offer())


def limit_bytes() -> int:
    return int(settings().max_json_kb * 1024)


def assert_refused(r: Any, status: int, kind: str, words: str) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == kind and words in err["message"], err
    for leak in INTERNALS:
        assert leak not in err["message"], err
    return str(err["message"])


def assert_nothing_left(manager: WebRtcManager) -> None:
    assert manager.sessions == {} and manager.slots.in_use == 0


# ----------------------------------------------------------------------------- the body's size


def test_the_default_limit_is_64_kib() -> None:
    assert limit_bytes() == 64 * 1024  # BACKSCORE_MAX_JSON_KB's default: the numbers below rely on it


def test_a_body_declared_over_the_limit_is_413(http: TestClient, manager: WebRtcManager) -> None:
    body = b" " * (limit_bytes() + 1)
    r = http.post(OFFER, content=body, headers={"content-type": "application/json"})
    assert r.request.headers["content-length"] == str(64 * 1024 + 1)
    assert_refused(r, 413, "PayloadTooLarge", "request body larger than 64 KiB")
    # exactly at the limit is read and judged on its content
    r = http.post(OFFER, content=b" " * (limit_bytes() - 2) + b"[]", headers={"content-type": "application/json"})
    assert_refused(r, 400, "OfferError", "must be a JSON object")
    assert_nothing_left(manager)


def test_a_chunked_body_over_the_limit_is_413(http: TestClient, manager: WebRtcManager) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 8192

    r = http.post(OFFER, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"
    assert_refused(r, 413, "PayloadTooLarge", "larger than 64 KiB")
    assert_nothing_left(manager)


def _send_head(sock: socket.socket, host: str, port: int, extra: str) -> None:
    sock.sendall(f"POST {OFFER} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                 f"{extra}\r\n".encode())


def test_over_the_wire_the_server_answers_before_the_body_ends(app: FastAPI) -> None:
    """A real socket: the server must answer 413 without waiting for (or reading) the rest of the body."""
    with serving(app) as (host, port):
        # declared too large: answered from the headers alone, not one body byte sent
        with socket.create_connection((host, port)) as s:
            _send_head(s, host, port, "Content-Length: 100000000\r\n")
            status, body = read_response(s, timeout=10)
        assert status == 413 and json.loads(body)["error"]["type"] == "PayloadTooLarge"
        # chunked, no length: 72 KiB sent and the body never finished -- a reader that wanted all of it
        # would wait here for good (and read_response time out)
        with socket.create_connection((host, port)) as s:
            _send_head(s, host, port, "Transfer-Encoding: chunked\r\n")
            for _ in range(9):
                s.sendall(b"2000\r\n" + b" " * 0x2000 + b"\r\n")
            status, body = read_response(s, timeout=10)
        assert status == 413 and json.loads(body)["error"]["type"] == "PayloadTooLarge"


def test_bodies_that_are_not_json(http: TestClient) -> None:
    for body in (b"\xff\xfe\x00garbage", b"[" * 50_000, b"{\"sdp\": "):
        r = http.post(OFFER, content=body, headers={"content-type": "application/json"})
        assert_refused(r, 400, "OfferError", "not JSON")


# ----------------------------------------------------------------------------- the SDP


def test_too_many_media_sections(http: TestClient, manager: WebRtcManager, real_sdp: str) -> None:
    assert MAX_MEDIA_SECTIONS == 8
    sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" * 300
    r = http.post(OFFER, json={"sdp": sdp, "type": "offer"})
    message = assert_refused(r, 400, "OfferError", "at most 8 media sections")
    assert "(300)" in message and len(message) < 120
    # a real offer grown to 9 sections: also refused before aiortc sees it
    start = real_sdp.index("m=audio")
    end = real_sdp.find("\r\nm=", start)
    audio = real_sdp[start:end + 2] if end >= 0 else real_sdp[start:]
    grown = real_sdp + audio * (MAX_MEDIA_SECTIONS + 1 - real_sdp.count("\r\nm="))
    assert grown.count("\r\nm=") == MAX_MEDIA_SECTIONS + 1
    assert_refused(http.post(OFFER, json={"sdp": grown, "type": "offer"}), 400, "OfferError", "at most 8 media")
    assert_nothing_left(manager)


def test_too_long_and_too_many_candidates(http: TestClient, manager: WebRtcManager, real_sdp: str) -> None:
    long_sdp = real_sdp + "a=x-pad:" + "p" * MAX_SDP_CHARS + "\r\n"
    assert len(json.dumps({"sdp": long_sdp, "type": "offer"})) < limit_bytes()  # under the body limit
    assert_refused(http.post(OFFER, json={"sdp": long_sdp, "type": "offer"}), 400, "OfferError", "too long")
    candidate = "a=candidate:1 1 udp 2130706431 198.51.100.{} 9 typ host\r\n"
    flood = real_sdp + "".join(candidate.format(i % 250) for i in range(MAX_CANDIDATES + 1))
    assert_refused(http.post(OFFER, json={"sdp": flood, "type": "offer"}), 400, "OfferError",
                   f"at most {MAX_CANDIDATES}")
    assert_nothing_left(manager)


def _break(sdp: str, how: str) -> str:
    if how == "rtpmap":
        return re.sub(r"a=rtpmap:\d+ ", "a=rtpmap:abc ", sdp, count=1)
    if how == "ssrc":
        return sdp.replace("a=rtcp-mux\r\n", "a=rtcp-mux\r\na=ssrc:abc cname:x\r\n", 1)
    if how == "extmap":
        return sdp.replace("a=rtcp-mux\r\n", "a=rtcp-mux\r\na=extmap:x/y/z urn:x\r\n", 1)
    if how == "setup":
        return re.sub(r"a=setup:\w+", "a=setup:bogus", sdp)
    if how == "version":
        return sdp.replace("v=0", "v=0\r\nv=x", 1)
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["rtpmap", "ssrc", "extmap", "setup", "version"])
def test_sdp_aiortc_cannot_parse_is_400_without_internals(http: TestClient, manager: WebRtcManager,
                                                          real_sdp: str, how: str) -> None:
    sdp = _break(real_sdp, how)
    assert sdp != real_sdp
    r = http.post(OFFER, json={"sdp": sdp, "type": "offer"})
    message = assert_refused(r, 400, "OfferError", "the offer could not be negotiated")
    assert message == "the offer could not be negotiated: the session description is malformed"
    assert_nothing_left(manager)


def test_known_refusals_name_the_problem(http: TestClient, manager: WebRtcManager, real_sdp: str) -> None:
    no_ice = re.sub(r"a=ice-(ufrag|pwd):.*\r\n", "", real_sdp)
    assert_refused(http.post(OFFER, json={"sdp": no_ice, "type": "offer"}), 400, "OfferError",
                   "the ICE credentials (a=ice-ufrag, a=ice-pwd) are missing")
    no_mux = real_sdp.replace("a=rtcp-mux\r\n", "")
    assert_refused(http.post(OFFER, json={"sdp": no_mux, "type": "offer"}), 400, "OfferError",
                   "RTCP multiplexing (a=rtcp-mux) is required")
    polka = re.sub(r"a=rtpmap:.*\r\n", "", re.sub(r"m=audio (\d+) (\S+) [\d ]+", r"m=audio \1 \2 96", real_sdp))
    polka = polka.replace("a=rtcp-mux\r\n", "a=rtcp-mux\r\na=rtpmap:96 polka/48000/2\r\n", 1)
    assert_refused(http.post(OFFER, json={"sdp": polka, "type": "offer"}), 400, "OfferError",
                   "no codec in common for the audio section")
    no_fingerprint = re.sub(r"a=fingerprint:.*\r\n", "", real_sdp)
    assert_refused(http.post(OFFER, json={"sdp": no_fingerprint, "type": "offer"}), 400, "OfferError",
                   "no DTLS fingerprint")
    assert_nothing_left(manager)


def test_the_real_offer_still_gets_an_answer(http: TestClient, manager: WebRtcManager, real_sdp: str) -> None:
    r = http.post(OFFER, json={"sdp": real_sdp, "type": "offer"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["type"] == "answer" and answer["sdp"].startswith("v=0")
    assert http.delete(f"/v1/webrtc/{answer['session_id']}").status_code == 200
    assert_nothing_left(manager)
