"""Access control of the HTTP API over the real gateway: API keys on every ``/v1/*`` route (checked before any of
the body is read), per-key quotas (requests a minute, jobs in flight, live minutes), sessions per key, browser
origins and CORS, and local mode.

The app is :func:`serve.http.router.build_app` over a real :class:`~serve.core.GatewayCore` (embedded default
engines) with an :class:`~serve.access.AccessPolicy` of real keys, on a wall clock the test moves; through
FastAPI's test client, a raw ASGI call where the body's reading matters, and uvicorn where the wire does.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiortc", reason="serve extras (aiortc) not installed: pip install -e '.[serve]'")

from fastapi.testclient import TestClient

from pipelines.access import KeyEntry, KeyQuotas, hash_key, new_key
from pipelines.live.models import InProcessModels
from serve.access import AccessPolicy, KeyStore, OriginPolicy
from serve.access.quotas import DAY_S
from serve.core import GatewayCore
from serve.http.router import build_app
from tests.conftest import calm_then_bright
from tests.serve.http_server import serving
from tests.serve.test_webrtc import Client

pytestmark = pytest.mark.hostile  # the hostile-input suite: pytest -m hostile

STUDIO = "https://studio.example.com"
#: 01:00 UTC on some day.
T0 = 20_000 * DAY_S + 3600.0
BIG = 10_000
QUOTAS = {
    "main": KeyQuotas(rpm=BIG, jobs=4, live_minutes=BIG),
    "other": KeyQuotas(rpm=BIG, jobs=4, live_minutes=BIG),
    "rpm3": KeyQuotas(rpm=3),
    "jobs1": KeyQuotas(rpm=BIG, jobs=1),
    "live1": KeyQuotas(rpm=BIG, live_minutes=1),
    "nolive": KeyQuotas(rpm=BIG, live_minutes=0),
}
KEYS = {name: new_key() for name in QUOTAS}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("access-tmp")


@pytest.fixture(scope="module")
def core(clock: Clock, tmp_root: Path) -> Iterator[GatewayCore]:
    entries = [KeyEntry(name, hash_key(KEYS[name]), q) for name, q in QUOTAS.items()]
    policy = AccessPolicy(KeyStore(entries), origins=OriginPolicy([STUDIO]), clock=clock)
    c = GatewayCore(InProcessModels.default(faces=False), tmp_dir=os.fspath(tmp_root), access=policy)
    yield c
    asyncio.run(c.shutdown())


@pytest.fixture(scope="module")
def http(core: GatewayCore) -> Iterator[TestClient]:
    with TestClient(build_app(core)) as c:
        yield c


@pytest.fixture(scope="module")
def sdp() -> str:
    """A real aiortc client's offer."""

    async def offer() -> str:
        c = Client(None)
        sdp = (await c.offer())["sdp"]
        await c.pc.close()
        return str(sdp)

    return asyncio.run(offer())


@pytest.fixture(scope="module")
def short_video(video_dir: Path) -> Path:
    return calm_then_bright(video_dir, "access_short.mp4", 3.0)


def until(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def offer(http: TestClient, sdp: str, who: str | None, **headers: str) -> Any:
    return http.post("/v1/webrtc/offer", json={"sdp": sdp, "type": "offer"},
                     headers={**(auth(who) if who else {}), **headers})


def hang_up(http: TestClient, who: str, sid: str) -> None:
    assert http.delete(f"/v1/webrtc/{sid}", headers=auth(who)).status_code == 200


def sessions(http: TestClient, who: str) -> list[str]:
    r = http.get("/v1/webrtc/sessions", headers=auth(who))
    assert r.status_code == 200, r.text
    return [s["session_id"] for s in r.json()["sessions"]]


def assert_error(r: Any, status: int, kind: str, words: str = "") -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == kind and words in err["message"], err


# ----------------------------------------------------------------------------- keys


ROUTES = [("POST", "/v1/analyze"), ("POST", "/v1/recommend"), ("POST", "/v1/score?output=bgm"),
          ("POST", "/v1/webrtc/offer"), ("DELETE", "/v1/webrtc/0123456789ab"), ("GET", "/v1/webrtc/sessions")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_v1_route_needs_a_valid_key(http: TestClient, tmp_root: Path, method: str, path: str) -> None:
    files = {"file": ("clip.mp4", b"\0" * 1000, "video/mp4")} if path.startswith("/v1/") and method == "POST" \
        and "webrtc" not in path else None
    for headers, words in (({}, "needs an API key"), ({"Authorization": "Bearer bsk_wrong"}, "not valid"),
                           ({"Authorization": f"Basic {KEYS['main']}"}, "malformed"),
                           ({"Authorization": KEYS["main"]}, "malformed")):
        r = http.request(method, path, headers=headers, files=files)
        assert_error(r, 401, "Unauthorized", words)
        assert r.headers["www-authenticate"] == 'Bearer realm="backscore"'
    assert list(tmp_root.iterdir()) == []  # no upload was received


def test_a_good_key_gets_through(http: TestClient, short_video: Path, tmp_root: Path) -> None:
    assert http.get("/v1/webrtc/sessions", headers=auth("main")).status_code == 200
    r = http.post("/v1/analyze", files={"file": (short_video.name, short_video.read_bytes(), "video/mp4")},
                  headers=auth("main"))
    assert r.status_code == 200, r.text
    assert abs(r.json()["duration_s"] - 6.0) < 0.2
    assert list(tmp_root.iterdir()) == []


def test_health_metrics_docs_and_the_demo_page_stay_open(http: TestClient) -> None:
    for path in ("/healthz", "/metrics", "/", "/static/app.js", "/docs", "/openapi.json"):
        assert http.get(path).status_code == 200, path
    assert 'backscore_requests_total{code="401"' in http.get("/metrics").text  # refusals are counted


async def test_a_request_without_a_key_is_refused_before_its_body_is_read(core: GatewayCore) -> None:
    """The raw ASGI call: the app never asks for the first chunk of a 200 MiB upload without a key."""
    app = build_app(core)
    asked: list[int] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        asked.append(1)
        return {"type": "http.request", "body": b"\0" * 65536, "more_body": True}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/score", "raw_path": b"/v1/score", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"content-type", b"multipart/form-data; boundary=x"),
                         (b"content-length", str(200 * 2**20).encode())],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    await app(scope, receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 401
    assert json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["error"]["type"] == "Unauthorized"
    assert asked == []


def _request(host: str, port: int, path: str, headers: dict[str, str], body: bytes = b"",
             length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {size}",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of one HTTP/1.1 response with a Content-Length."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection without an answer"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


MULTIPART = {"Content-Type": "multipart/form-data; boundary=bnd"}
PART_HEAD = (b'--bnd\r\nContent-Disposition: form-data; name="file"; filename="clip.mp4"\r\n'
             b"Content-Type: video/mp4\r\n\r\n")


def test_over_the_wire_a_huge_upload_without_a_key_is_answered_from_its_headers(core: GatewayCore) -> None:
    with serving(build_app(core)) as (host, port), socket.create_connection((host, port)) as s:
        s.sendall(_request(host, port, "/v1/analyze", MULTIPART, PART_HEAD, length=200 * 2**20))
        status, headers, body = _response(s)  # 200 MiB announced, a part header sent: answered at once
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert json.loads(body)["error"]["type"] == "Unauthorized"


# ----------------------------------------------------------------------------- quotas


def test_requests_a_minute(http: TestClient, clock: Clock) -> None:
    for _ in range(3):
        assert http.get("/v1/webrtc/sessions", headers=auth("rpm3")).status_code == 200
    r = http.get("/v1/webrtc/sessions", headers=auth("rpm3"))
    assert_error(r, 429, "TooManyRequests", "made its 3 requests a minute; retry in 20 s")
    assert r.headers["retry-after"] == "20"
    assert http.get("/v1/webrtc/sessions", headers=auth("main")).status_code == 200  # other keys are not affected
    clock.t += 20.0
    assert http.get("/v1/webrtc/sessions", headers=auth("rpm3")).status_code == 200  # refilled
    assert http.get("/v1/webrtc/sessions", headers=auth("rpm3")).status_code == 429


def test_jobs_in_flight(core: GatewayCore, tmp_root: Path) -> None:
    """One upload of a ``jobs: 1`` key still arriving: the next one is 429 until the first has gone."""
    key = {"Authorization": f"Bearer {KEYS['jobs1']}", **MULTIPART}
    small = PART_HEAD + b"not a video" + b"\r\n--bnd--\r\n"
    with serving(build_app(core)) as (host, port):
        with socket.create_connection((host, port)) as slow:
            slow.sendall(_request(host, port, "/v1/analyze", key, PART_HEAD + b"\0" * 1000, length=10**6))
            assert until(lambda: core.access.quotas.jobs.in_flight("jobs1") == 1)
            with socket.create_connection((host, port)) as s:
                s.sendall(_request(host, port, "/v1/recommend", key, small))
                status, headers, body = _response(s)
            assert status == 429 and headers["retry-after"] == "5"
            assert "has 1 jobs in flight" in json.loads(body)["error"]["message"]
        assert until(lambda: core.access.quotas.jobs.in_flight("jobs1") == 0)  # the client went away: released
        with socket.create_connection((host, port)) as s:
            s.sendall(_request(host, port, "/v1/analyze", key, small))
            status, _, body = _response(s, timeout=60)
        assert status == 400 and json.loads(body)["error"]["type"] == "InputError"  # in, and judged on its content
    assert until(lambda: list(tmp_root.iterdir()) == [])


def test_live_minutes(http: TestClient, clock: Clock, sdp: str) -> None:
    """A key with 1 live minute a day: its open session ends at the limit, new ones are 429 until midnight UTC."""
    r = offer(http, sdp, "live1")
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    assert sessions(http, "live1") == [sid]
    clock.t += 59.0
    time.sleep(0.5)
    assert sessions(http, "live1") == [sid]  # 59 s: still on
    clock.t += 1.0
    assert until(lambda: sessions(http, "live1") == [], 5.0)  # 60 s: ended by its watchdog
    r = offer(http, sdp, "live1")
    assert_error(r, 429, "TooManyRequests", "used its 1 live minutes for today (UTC)")
    assert int(r.headers["retry-after"]) == int(DAY_S - clock.t % DAY_S)
    assert offer(http, sdp, "main").status_code == 200  # other keys are not affected
    for s in sessions(http, "main"):
        hang_up(http, "main", s)
    assert_error(offer(http, sdp, "nolive"), 403, "Forbidden", "may not open live sessions")
    clock.t += DAY_S - clock.t % DAY_S  # a new UTC day
    r = offer(http, sdp, "live1")
    assert r.status_code == 200, r.text
    hang_up(http, "live1", r.json()["session_id"])


def test_a_key_sees_and_ends_only_its_own_sessions(http: TestClient, sdp: str) -> None:
    sid = offer(http, sdp, "main").json()["session_id"]
    assert sessions(http, "main") == [sid] and sessions(http, "other") == []
    assert_error(http.delete(f"/v1/webrtc/{sid}", headers=auth("other")), 404, "NotFound")
    assert sessions(http, "main") == [sid]
    hang_up(http, "main", sid)
    assert sessions(http, "main") == []


# ----------------------------------------------------------------------------- origins


def test_a_cross_origin_post_is_forbidden(http: TestClient, sdp: str) -> None:
    """The form a page on another site can send without a CORS preflight: text/plain, with or without a key."""
    body = json.dumps({"sdp": sdp, "type": "offer"})
    for headers in ({}, auth("main")):
        r = http.post("/v1/webrtc/offer", content=body,
                      headers={"Origin": "https://evil.example", "Content-Type": "text/plain", **headers})
        assert_error(r, 403, "Forbidden", "https://evil.example")
        assert "access-control-allow-origin" not in r.headers
    for origin in ("null", "http://testserver:8080", "http://testserver.evil.example", "http://evil.example/testserver"):
        r = http.post("/v1/analyze", headers={"Origin": origin, **auth("main")},
                      files={"file": ("a.mp4", b"x", "video/mp4")})
        assert_error(r, 403, "Forbidden")
    assert sessions(http, "main") == []


def test_same_origin_and_allowed_origins_pass(http: TestClient, sdp: str) -> None:
    r = offer(http, sdp, "main", Origin="http://testserver")  # the test client's Host: testserver
    assert r.status_code == 200, r.text
    assert "access-control-allow-origin" not in r.headers  # same origin: no CORS needed
    hang_up(http, "main", r.json()["session_id"])
    r = offer(http, sdp, "main", Origin=STUDIO)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == STUDIO and "Origin" in r.headers["vary"]
    hang_up(http, "main", r.json()["session_id"])
    r = http.get("/v1/webrtc/sessions", headers={"Origin": STUDIO})  # the page can read why it was refused
    assert_error(r, 401, "Unauthorized")
    assert r.headers["access-control-allow-origin"] == STUDIO
    assert "WWW-Authenticate" in r.headers["access-control-expose-headers"]


def test_preflight(http: TestClient) -> None:
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    r = http.options("/v1/webrtc/offer", headers={"Origin": STUDIO, **ask})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == STUDIO
    assert "POST" in r.headers["access-control-allow-methods"]
    assert {"authorization", "content-type"} <= {h.strip().lower() for h in
                                                 r.headers["access-control-allow-headers"].split(",")}
    r = http.options("/v1/webrtc/offer", headers={"Origin": "https://evil.example", **ask})
    assert_error(r, 403, "Forbidden")
    assert "access-control-allow-origin" not in r.headers


# ----------------------------------------------------------------------------- local mode


@pytest.fixture(scope="module")
def local_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    core = GatewayCore(InProcessModels.default(faces=False), tmp_dir=os.fspath(tmp_path_factory.mktemp("local")),
                       access=AccessPolicy())
    with TestClient(build_app(core)) as c:
        yield c
    asyncio.run(core.shutdown())


def test_local_mode_is_open_to_this_machine(local_http: TestClient, sdp: str) -> None:
    assert local_http.get("/v1/webrtc/sessions").status_code == 200  # no key asked for
    r = local_http.post("/v1/webrtc/offer", json={"sdp": sdp, "type": "offer"},
                        headers={"Origin": "http://127.0.0.1:8000", "Host": "127.0.0.1:8000"})
    assert r.status_code == 200, r.text
    assert local_http.delete(f"/v1/webrtc/{r.json()['session_id']}").status_code == 200
    for _ in range(80):  # no quota either
        assert local_http.get("/v1/webrtc/sessions").status_code == 200
    # a DNS-rebinding page: same origin by Host, but not served from this machine
    r = local_http.post("/v1/webrtc/offer", json={"sdp": sdp, "type": "offer"},
                        headers={"Origin": "http://rebound.example:8000", "Host": "rebound.example:8000"})
    assert_error(r, 403, "Forbidden", "only pages served from localhost")
    assert_error(local_http.get("/v1/webrtc/sessions", headers={"Origin": "https://evil.example"}), 403, "Forbidden")
