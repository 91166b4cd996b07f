"""The gateway's HTTP API in-process (FastAPI TestClient over GatewayCore + InProcessModels), the Serve
application in local testing mode, and the batching helpers of the deployments against the engines.

The real multi-deployment application behind Ray's HTTP proxy is tested in serve/test_ray_app.py.
"""

from __future__ import annotations

import io
import os
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipelines.analysis.mood import MoodTracker, SegmentOptions
from pipelines.devtools.hostile_media import stamped_video
from pipelines.live.inference import affect_steps, analyze_faces_batched, encode_audio_window, encode_frames_batched
from pipelines.live.models import InProcessModels
from serve.core import GatewayCore
from serve.http.router import build_app
from tests.conftest import calm_then_bright


@pytest.fixture(scope="module")
def short_video(video_dir: Path) -> Path:
    """8 s: 4 s calm and dark, then 4 s bright and fast."""
    return calm_then_bright(video_dir, "serve_short.mp4", 4.0)


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-tmp")


@pytest.fixture(scope="module")
def core(tmp_root: Path) -> GatewayCore:
    c = GatewayCore(InProcessModels.default(faces=False), tmp_dir=os.fspath(tmp_root))
    yield c
    import asyncio

    asyncio.run(c.shutdown())


@pytest.fixture(scope="module")
def client(core: GatewayCore) -> TestClient:
    with TestClient(build_app(core)) as c:
        yield c


def _video(path: Path, ctype: str = "video/mp4") -> dict[str, tuple[str, bytes, str]]:
    return {"file": (path.name, path.read_bytes(), ctype)}


def _assert_clean(tmp_root: Path) -> None:
    assert list(tmp_root.iterdir()) == [], "temporary upload files left behind"


def test_healthz_metrics_docs(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["models"] == "local" and body["active_sessions"] == 0
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/analyze", "/v1/recommend", "/v1/score", "/healthz", "/metrics"} <= set(paths)
    assert "multipart/form-data" in paths["/v1/score"]["post"]["requestBody"]["content"]
    m = client.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    assert 'backscore_requests_total{code="200",endpoint="/healthz"}' in m.text


def test_analyze(client: TestClient, short_video: Path, tmp_root: Path) -> None:
    r = client.post("/v1/analyze", files=_video(short_video))
    assert r.status_code == 200, r.text
    data = r.json()
    assert abs(data["duration_s"] - 8.0) < 0.2
    assert len(data["windows"]) >= 10 and data["segments"]
    assert data["input"]["path"] is None
    _assert_clean(tmp_root)


def test_score_bgm_stream_is_a_wav_of_the_video_length(client: TestClient, short_video: Path, tmp_root: Path) -> None:
    with client.stream("POST", "/v1/score?output=bgm&stream=true&style=calm&seed=3", files=_video(short_video)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "audio/wav"
        body = b"".join(r.iter_bytes())
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE" and body[36:40] == b"data"
    pcm = np.frombuffer(body[44:], "<i2").reshape(-1, 2)
    assert abs(pcm.shape[0] / 48_000 - 8.0) < 0.05
    assert np.abs(pcm).max() > 1000  # music, not silence
    _assert_clean(tmp_root)


def test_score_bgm_file(client: TestClient, short_video: Path, tmp_root: Path) -> None:
    r = client.post("/v1/score?output=bgm", files=_video(short_video))
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(r.content)) as w:
        assert w.getframerate() == 48_000 and w.getnchannels() == 2
        assert abs(w.getnframes() / 48_000 - 8.0) < 0.1
    _assert_clean(tmp_root)


def test_score_video(client: TestClient, short_video: Path, tmp_root: Path) -> None:
    r = client.post("/v1/score", files=_video(short_video))
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert 'filename="serve_short.scored.mp4"' in r.headers["content-disposition"]
    with av.open(io.BytesIO(r.content)) as c:
        assert c.streams.video and c.streams.audio
        assert abs(float(c.duration or 0) / 1e6 - 8.0) < 0.2
    _assert_clean(tmp_root)


def test_bad_uploads(client: TestClient, short_video: Path, tmp_root: Path) -> None:
    r = client.post("/v1/analyze", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert r.status_code == 415 and r.json()["error"]["type"] == "UnsupportedMediaType"
    r = client.post("/v1/analyze", content=short_video.read_bytes(), headers={"content-type": "video/mp4"})
    assert r.status_code == 415  # not multipart
    r = client.post("/v1/analyze", files={"file": ("clip.mp4", b"this is not a video" * 100, "video/mp4")})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "InputError" and "clip.mp4" in err["message"]
    assert str(tmp_root) not in err["message"]  # no server paths in messages
    r = client.post("/v1/analyze", files={"video": ("clip.mp4", b"x", "video/mp4")})
    assert r.status_code == 422 and "file" in r.json()["error"]["message"]
    r = client.post("/v1/analyze", data={"file": "not a file"}, files={"other": ("a", b"b", "video/mp4")})
    assert r.status_code == 422
    r = client.post("/v1/score?style=nope", files=_video(short_video))
    assert r.status_code == 400 and r.json()["error"]["type"] == "OptionError"
    r = client.post("/v1/score?output=gif", files=_video(short_video))
    assert r.status_code == 422 and r.json()["error"]["type"] == "ValidationError"
    r = client.post("/v1/recommend?library=/etc/passwd", files=_video(short_video))
    assert r.status_code == 400 and r.json()["error"]["type"] == "LibraryError"
    _assert_clean(tmp_root)


def test_media_longer_than_the_service_allows_is_413(client: TestClient, tmp_path: Path, tmp_root: Path) -> None:
    hour = stamped_video(tmp_path / "hour.mkv", [0.0, 0.04, 1800.0, 3600.0])  # 3 KB that claims an hour
    for route in ("/v1/analyze", "/v1/recommend", "/v1/score?output=bgm", "/v1/score?output=bgm&stream=true"):
        r = client.post(route, files=_video(hour, "video/x-matroska"))
        assert r.status_code == 413, (route, r.status_code, r.text[:200])
        err = r.json()["error"]
        assert err["type"] == "PayloadTooLarge" and "hour.mkv has frames stamped at 30.0 min" in err["message"]
    _assert_clean(tmp_root)


def _multipart(path: Path, boundary: str = "bsqboundary") -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: video/mp4\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()


def test_upload_limit_declared_and_streamed(short_video: Path, tmp_root: Path) -> None:
    limit_mb = short_video.stat().st_size / 2 / 2**20
    small = GatewayCore(InProcessModels.default(faces=False, inline=True), tmp_dir=os.fspath(tmp_root),
                        max_upload_mb=limit_mb)
    with TestClient(build_app(small)) as c:
        r = c.post("/v1/analyze", files=_video(short_video))  # Content-Length says too much: refused unread
        assert r.status_code == 413 and r.json()["error"]["type"] == "PayloadTooLarge"
        body = _multipart(short_video)
        sent = []

        def chunks():  # no Content-Length: the limit is enforced while the body streams in
            for i in range(0, len(body), 16384):
                sent.append(i)
                yield body[i : i + 16384]

        ctype = "multipart/form-data; boundary=bsqboundary"
        r = c.post("/v1/analyze", content=chunks(), headers={"content-type": ctype})
        assert r.status_code == 413
    import asyncio

    asyncio.run(small.shutdown())
    _assert_clean(tmp_root)


def test_local_testing_mode_app() -> None:
    from ray import serve as ray_serve

    from serve.app import build_app

    args = {"backend": "local", "faces": "false", "warm_catalog": "false"}
    handle = ray_serve.run(build_app(args), name="bs-local-test",
                           route_prefix=None, _local_testing_mode=True)
    health = handle.healthz.remote().result()
    assert health["status"] == "ok" and health["backend"] == "local"
    args = {"models": "ray", "faces": False, "warm_catalog": False}
    handle = ray_serve.run(build_app(args), name="bs-ray-local-test",
                           route_prefix=None, _local_testing_mode=True)
    health = handle.healthz.remote().result()
    assert health["deployments"] == {"FrameEncoder": True, "AudioEncoder": True, "AffectFusion": True,
                                     "MusicGenerator": True}


# ----------------------------------------------------------------------------- batching helpers


def _frames(n: int, seed: int, shape: tuple[int, int] = (36, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape, 3), dtype=np.uint8)


def test_frame_batch_equals_separate_calls() -> None:
    from pipelines.analysis.engines import default_engines

    enc = default_engines(faces=False).frame
    a, b, c = _frames(4, 1), _frames(3, 2), _frames(2, 3, (40, 64))
    prev_a = _frames(1, 9)[0]
    items = [(a, prev_a), (b, None), (c, None), (a[:0], None), (b, c[0])]  # c[0]: wrong shape -> as None
    got = encode_frames_batched(enc, items)
    want = [enc.encode(a, prev_a), enc.encode(b, None), enc.encode(c, None), np.zeros((0, 8)), enc.encode(b, None)]
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_face_batch_equals_separate_calls() -> None:
    from engines.faces import FaceExpressionAnalyzer

    faces = FaceExpressionAnalyzer()
    rng = np.random.default_rng(0)
    items = [rng.integers(0, 256, (n, 96, 128), dtype=np.uint8) for n in (2, 1)] + [np.zeros((0, 96, 128), np.uint8)]
    got = analyze_faces_batched(faces, items)
    for g, x in zip(got, items, strict=True):
        want = faces.analyze(x) if len(x) else np.zeros((0, len(faces.feature_names)))
        np.testing.assert_allclose(g, want, atol=1e-5)


def test_affect_batch_of_two_sessions_equals_one_at_a_time() -> None:
    from pipelines.analysis.engines import default_engines

    e = default_engines(faces=False)
    rng = np.random.default_rng(0)
    rows = [{"brightness": float(rng.uniform()), "saturation": float(rng.uniform()),
             "motion": float(rng.uniform(0, 0.1)), "loudness_db": float(rng.uniform(-40, -5))} for _ in range(12)]
    one, two = MoodTracker(SegmentOptions(min_segment_s=4.0)), MoodTracker(SegmentOptions(min_segment_s=4.0))
    ref_one, ref_two = MoodTracker(SegmentOptions(min_segment_s=4.0)), MoodTracker(SegmentOptions(min_segment_s=4.0))
    for k in range(0, 12, 2):
        t = 1.0 + 0.5 * k
        steps = affect_steps(e.affect, [(rows[k], one, t), (rows[k + 1], two, t)])
        ref = [affect_steps(e.affect, [(rows[k], ref_one, t)])[0],
               affect_steps(e.affect, [(rows[k + 1], ref_two, t)])[0]]
        for s, r in zip(steps, ref, strict=True):
            assert s.estimate == r.estimate and s.change == r.change
        assert one.current == ref_one.current and two.current == ref_two.current


def test_audio_window_helper_matches() -> None:
    from pipelines.analysis.engines import default_engines

    enc = default_engines(faces=False).audio
    x = (0.1 * np.sin(np.arange(32000) * 2 * np.pi * 220 / 16000)).astype(np.float32)
    row, speech = encode_audio_window(enc, x)
    assert row.shape == (len(enc.feature_names),) and 0.0 <= speech <= 1.0


def test_gateway_warms_the_catalog_in_the_background(catalog_cache: Path, tmp_root: Path) -> None:
    """With warm_catalog the built-in catalog is loaded at start; /healthz says so, recommend finds it loaded."""
    import asyncio
    import time

    from pipelines.offline import jobs

    jobs._libraries.tracks.pop("catalog", None)  # as in a fresh gateway process
    gw = GatewayCore(InProcessModels.default(faces=False, inline=True), tmp_dir=os.fspath(tmp_root), warm_catalog=True)
    try:
        deadline = time.time() + 60
        while gw.catalog_state == "building" and time.time() < deadline:
            time.sleep(0.1)
        ok, health = asyncio.run(gw.health())
        assert ok and health["catalog"] == "ready"
        assert len(jobs._libraries.tracks["catalog"]) == 100
    finally:
        asyncio.run(gw.shutdown())


def test_healthz_is_503_with_retry_after_while_a_deployment_does_not_answer(tmp_root: Path) -> None:
    async def readiness() -> dict[str, bool]:
        return {"FrameEncoder": True, "MusicGenerator": False}  # e.g. a replica being replaced

    core = GatewayCore(InProcessModels.default(faces=False, inline=True), tmp_dir=os.fspath(tmp_root),
                       readiness=readiness)
    with TestClient(build_app(core)) as c:
        r = c.get("/healthz")
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["status"] == "degraded" and r.json()["deployments"]["MusicGenerator"] is False
    import asyncio

    asyncio.run(core.shutdown())
