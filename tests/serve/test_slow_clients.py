"""Slow, stalled and vanishing clients against a real HTTP server (uvicorn on a socket).

A client that stops sending is dropped after ``BACKSCORE_UPLOAD_IDLE_S`` (408), one that trickles
below ``BACKSCORE_UPLOAD_MIN_KBPS`` too; while 32 of them hang on, ``/healthz`` and a normal
request still answer; 40 clients that vanish mid-upload leave no request folder behind.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pipelines.live.models import InProcessModels
from serve.core import GatewayCore
from serve.http.router import build_app
from tests.conftest import calm_then_bright
from tests.serve.http_server import read_response, serving, upload_head

pytestmark = pytest.mark.hostile  # the hostile-input suite: pytest -m hostile

IDLE_S = 1.0


@pytest.fixture(scope="module")
def clip(video_dir: Path) -> Path:
    return calm_then_bright(video_dir, "slow_clients.mp4", 2.0)


@pytest.fixture()
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int, Path]]:
    monkeypatch.setenv("BACKSCORE_UPLOAD_IDLE_S", str(IDLE_S))
    monkeypatch.setenv("BACKSCORE_UPLOAD_MIN_KBPS", "8")
    tmp_root = tmp_path / "requests"
    core = GatewayCore(InProcessModels.default(faces=False, inline=True), tmp_dir=os.fspath(tmp_root))
    try:
        with serving(build_app(core)) as (host, port):
            yield host, port, tmp_root
    finally:
        import asyncio

        asyncio.run(core.shutdown())


def _leftovers(root: Path, wait_s: float = 5.0) -> list[str]:
    deadline = time.monotonic() + wait_s
    while True:
        left = [p.name for p in root.iterdir()]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def test_a_stalled_upload_is_dropped_with_408(server: tuple[str, int, Path]) -> None:
    host, port, root = server
    with socket.create_connection((host, port)) as s:
        s.sendall(upload_head(host, port, "/v1/analyze", 1_000_000) + b"\0" * 1000)
        t0 = time.monotonic()
        status, body = read_response(s)
        waited = time.monotonic() - t0
    assert status == 408 and json.loads(body)["error"]["type"] == "RequestTimeout"
    assert IDLE_S * 0.9 < waited < IDLE_S + 10
    assert _leftovers(root) == []


def test_a_trickling_upload_is_dropped_with_408(server: tuple[str, int, Path]) -> None:
    host, port, root = server
    with socket.create_connection((host, port)) as s:
        s.sendall(upload_head(host, port, "/v1/analyze", 1_000_000))
        s.settimeout(0.01)
        answer = b""
        for _ in range(200):  # a byte every 50 ms: never idle, but ~20 B/s
            try:
                s.sendall(b"\0")
            except OSError:
                break
            try:
                answer += s.recv(65536)
                break
            except TimeoutError:
                pass
            time.sleep(0.05)
        s.settimeout(10)
        rest = b""
        with _suppress_reset():
            rest = s.recv(65536)
        answer += rest
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"too slow" in answer
    assert _leftovers(root) == []


class _suppress_reset:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, (ConnectionResetError, TimeoutError))


def test_32_slow_uploads_do_not_starve_health_or_a_normal_request(server: tuple[str, int, Path], clip: Path) -> None:
    host, port, root = server
    loris = []
    for _ in range(32):
        s = socket.create_connection((host, port))
        s.sendall(upload_head(host, port, "/v1/analyze", 10_000_000) + b"\0" * 100)
        loris.append(s)
    try:
        base = f"http://{host}:{port}"
        for _ in range(3):
            t0 = time.monotonic()
            r = requests.get(f"{base}/healthz", timeout=10)
            assert r.status_code == 200 and time.monotonic() - t0 < 1.0
        r = requests.post(f"{base}/v1/analyze", params={"faces": "false"}, timeout=60,
                          files={"file": (clip.name, clip.read_bytes(), "video/mp4")})
        assert r.status_code == 200 and r.json()["windows"]
        # and the slow ones are dropped, each with its 408
        answers = [read_response(s)[0] for s in loris]
        assert answers == [408] * 32
    finally:
        for s in loris:
            s.close()
    assert _leftovers(root) == []


def test_40_clients_vanishing_mid_upload_leave_nothing_behind(server: tuple[str, int, Path], clip: Path) -> None:
    host, port, root = server
    data = clip.read_bytes()
    for i in range(40):
        s = socket.create_connection((host, port))
        s.sendall(upload_head(host, port, "/v1/score", len(data) * 2) + data[: len(data) // (1 + i % 4)])
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST, not FIN
        s.close()
    assert _leftovers(root, wait_s=10.0) == []
    assert requests.get(f"http://{host}:{port}/healthz", timeout=10).status_code == 200
