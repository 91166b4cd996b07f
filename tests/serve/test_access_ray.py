"""API keys through Ray Serve's own proxies. gRPC: the ``authorization`` metadata reaches the replica inside
Ray's ``RayServegRPCContext``, a refusal comes back UNAUTHENTICATED with its message (not INTERNAL), the health
check needs no key. HTTP: the real gateway (``models: local``) behind Ray's HTTP proxy answers an upload without
a key 401 from its headers. The replicas read their keys from ``BACKSCORE_API_KEYS`` in the runtime
environment, as a deployment does. One Ray instance for the module (free ports), shut down at the end."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pipelines.access import hash_key, new_key
from pipelines.devtools.synth_video import CALM_DARK
from serve.grpc.client import BackscoreClient
from tests.conftest import ROOT, make_video
from tests.serve.ray_cluster import start_local_ray

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")

KEY = new_key()


@pytest.fixture(scope="module")
def ray_ports() -> Iterator[tuple[str, tuple[str, int]]]:
    """``(gRPC target, (HTTP host, port))``: the gRPC test gateway and the real gateway, behind Ray's proxies."""
    from ray import serve as ray_serve
    from ray.serve.config import gRPCOptions

    from serve.grpc.servicer import GRPC_SERVICER_FUNCTIONS
    from tests.serve.test_grpc import APP, GrpcTestGateway, free_port, wait_healthy

    grpc_port, http_port = free_port(), free_port()
    env = {"PYTHONPATH": os.fspath(ROOT), "OMP_NUM_THREADS": "1", "BACKSCORE_API_KEYS": f"ray:{hash_key(KEY)}"}
    start_local_ray(2, env)
    try:
        ray_serve.start(http_options={"host": "127.0.0.1", "port": http_port},
                        grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS))
        ray_serve.run(GrpcTestGateway.bind({}), name=APP, route_prefix=f"/{APP}")  # type: ignore[attr-defined]
        from serve.gateway import Gateway

        ray_serve.run(Gateway.options(ray_actor_options={"num_cpus": 0}).bind(  # type: ignore[attr-defined]
            "local", faces=False, warm_catalog=False, max_live_sessions=1), name="http-gateway", route_prefix="/")
        addr = f"127.0.0.1:{grpc_port}"
        wait_healthy(addr)
        yield addr, ("127.0.0.1", http_port)
    finally:
        ray_serve.shutdown()
        ray.shutdown()


def test_keys_through_rays_grpc_proxy(ray_ports: tuple[str, tuple[str, int]], video_dir: Path) -> None:
    from tests.serve.test_grpc import APP

    target = ray_ports[0]
    video = make_video(video_dir, "access_ray.mp4", [dataclasses.replace(CALM_DARK, duration_s=2.0)],
                       width=160, height=120, fps=12)
    with BackscoreClient(target, application=APP, timeout_s=120) as anonymous:
        with pytest.raises(grpc.RpcError) as info:
            anonymous.analyze(os.fspath(video))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "needs an API key" in (info.value.details() or "")
        with pytest.raises(grpc.RpcError) as info:
            list(anonymous.score(os.fspath(video)))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert anonymous.check() == 1  # SERVING: the health check needs no key
    with BackscoreClient(target, application=APP, timeout_s=120, api_key="bsk_wrong") as wrong:
        with pytest.raises(grpc.RpcError) as info:
            wrong.analyze(os.fspath(video))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and "not valid" in (info.value.details() or "")
    with BackscoreClient(target, application=APP, timeout_s=120, api_key=KEY) as client:
        reply = client.analyze(os.fspath(video), faces=False)
        assert 1.5 < reply.duration_s < 2.5 and reply.windows


def test_keys_through_rays_http_proxy(ray_ports: tuple[str, tuple[str, int]]) -> None:
    from tests.serve.test_access import MULTIPART, PART_HEAD, _request, _response

    host, port = ray_ports[1]
    with socket.create_connection((host, port)) as s:
        s.sendall(_request(host, port, "/healthz", {}).replace(b"POST", b"GET", 1))
        status, _, _ = _response(s, timeout=60)
    assert status == 200
    t0 = time.monotonic()
    with socket.create_connection((host, port)) as s:  # 200 MiB announced, the head of the part sent: answered
        s.sendall(_request(host, port, "/v1/analyze", MULTIPART, PART_HEAD, length=200 * 2**20))
        status, headers, body = _response(s, timeout=30)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer") and time.monotonic() - t0 < 10
    assert json.loads(body)["error"]["type"] == "Unauthorized"
    with socket.create_connection((host, port)) as s:
        s.sendall(_request(host, port, "/v1/webrtc/sessions", {"Authorization": f"Bearer {KEY}"})
                  .replace(b"POST", b"GET", 1))
        status, _, body = _response(s, timeout=30)
    assert status == 200 and json.loads(body)["sessions"] == []
