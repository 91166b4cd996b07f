"""The async job API (``/v1/jobs``) over the real gateway: real uploads of synthesized videos, real jobs.

The app is :func:`serve.http.router.build_app` over a real :class:`~serve.core.GatewayCore` (embedded default
engines, the composer), through FastAPI's test client, and through uvicorn where the wire matters (a client
that leaves an event stream). Time for expiry and the wall-time limit is a clock the test moves. Jobs that
must be caught mid-way run on the real composer behind a gate (:class:`tests.serve.job_gate.GatedComposer`): it
holds the first chunk until the job is cancelled or the test lets it go, so the test can act while the job is
composing.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import requests
from fastapi.testclient import TestClient

from pipelines.access import KeyEntry, KeyQuotas, hash_key, new_key
from pipelines.jobs import JobWork
from pipelines.live.models import InProcessModels
from serve.access import AccessPolicy, KeyStore
from serve.core import GatewayCore
from serve.http.router import build_app
from tests.conftest import calm_then_bright
from tests.serve.http_server import serving
from tests.serve.job_gate import WAIT_S, gate
from tests.serve.libraries import write_small_library

DURATION_S = 3.0


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def clip(video_dir: Path) -> Path:
    """3 s, 160x120: 1.5 s calm and dark, then 1.5 s bright and fast."""
    return calm_then_bright(video_dir, "jobs_api.mp4", 1.5, width=160, height=120)


@pytest.fixture(scope="module")
def small_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three composer renders indexed like `backscore library index DIR --db LIB.sqlite`."""
    return write_small_library(tmp_path_factory.mktemp("music"))


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jobs-api")


@pytest.fixture(scope="module")
def core(tmp_root: Path, small_library: Path) -> Iterator[GatewayCore]:
    c = GatewayCore(InProcessModels.default(faces=False, inline=True), tmp_dir=os.fspath(tmp_root),
                    libraries={"mini": os.fspath(small_library)}, max_active_jobs=4, max_stored_jobs=16)
    yield c
    asyncio.run(c.shutdown())


@pytest.fixture(scope="module")
def client(core: GatewayCore) -> Iterator[TestClient]:
    with TestClient(build_app(core)) as c:
        yield c


@pytest.fixture()
def composer(core: GatewayCore) -> Iterator[None]:
    """The real composer, ungated (what a test that gated it leaves behind is undone)."""
    core.job_store.work = JobWork()
    yield
    core.job_store.work = JobWork()


def _video(path: Path, name: str = "clip.mp4", ctype: str = "video/mp4") -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, path.read_bytes(), ctype)}


def _sse(lines: list[str]) -> list[tuple[int, str, dict[str, Any]]]:
    """``(id, event, data)`` of each event of a server-sent event stream."""
    events: list[tuple[int, str, dict[str, Any]]] = []
    block: dict[str, str] = {}
    for line in [*lines, ""]:
        if not line:
            if "data" in block:
                events.append((int(block["id"]), block["event"], json.loads(block["data"])))
            block = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            block[name] = value.lstrip(" ")
    return events


def _watch(client: TestClient, job_id: str, headers: dict[str, str] | None = None) -> list[tuple[int, str, Any]]:
    """Every event of a job until it ends (the test client returns once the stream has ended)."""
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return _sse(list(r.iter_lines()))


def _until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _pcm(data: bytes) -> tuple[int, np.ndarray]:
    with wave.open(io.BytesIO(data)) as w:
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())


def _error(r: Any, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == kind, err
    return str(err["message"])


@pytest.fixture(scope="module")
def lofi_job(client: TestClient, core: GatewayCore, clip: Path) -> dict[str, Any]:
    """A score job (lofi, seed 1) run to the end, with every event it sent."""
    core.job_store.work = JobWork()
    r = client.post("/v1/jobs?style=lofi&seed=1", files=_video(clip))
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == body["url"] == f"/v1/jobs/{body['id']}"
    assert body["state"] in ("queued", "running") and body["kind"] == "score"
    events = _watch(client, body["id"])
    return {"id": body["id"], "events": events, "status": client.get(body["url"]).json()}


# --------------------------------------------------------------------------- a job from upload to results


def test_progress_rises_monotonically_to_done_and_the_results_download(client: TestClient, lofi_job: dict[str, Any],
                                                                       clip: Path, tmp_root: Path) -> None:
    events = lofi_job["events"]
    names = [e for _, e, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"progress"} and len(events) >= 5
    fractions = [d["fraction"] for _, _, d in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [i for i, _, _ in events] == sorted({i for i, _, _ in events})  # ids grow: Last-Event-ID can resume
    stages = [d["stage"] for _, _, d in events if d["stage"]]
    assert stages == sorted(stages, key=["thumbnails", "analyse", "compose", "mix", "mux"].index)
    assert any(d["eta_s"] is not None for _, _, d in events[:-1])

    status = lofi_job["status"]
    assert status["state"] == "done" and status["error"] is None
    assert status["stages_run"] == ["thumbnails", "analyse", "compose", "mix", "mux"]
    assert status["options"]["style"] == "lofi" and status["options"]["seed"] == 1
    assert status["expires_at"] > status["finished_at"] >= status["started_at"] >= status["created_at"]
    results = status["results"]
    assert set(results) == {"video", "bgm", "timeline", "plot"}

    video = client.get(results["video"]["url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert len(video.content) == results["video"]["size"]
    with av.open(io.BytesIO(video.content), "r") as c:
        assert c.streams.video and c.streams.audio
        assert abs(float(c.duration or 0) / 1e6 - DURATION_S) < 0.2
    rate, pcm = _pcm(client.get(results["bgm"]["url"]).content)
    assert rate == 48_000 and abs(pcm.shape[0] / rate - DURATION_S) < 0.1 and np.abs(pcm).max() > 1000
    timeline = client.get(results["timeline"]["url"])
    text = timeline.text
    assert timeline.headers["content-type"].startswith("application/json") and str(tmp_root) not in text
    data = json.loads(text)
    assert abs(data["duration_s"] - DURATION_S) < 0.2 and data["style"] == "lofi" and data["input"]["path"] is None
    assert data["segments"] and data["music"]
    plot = client.get(results["plot"]["url"])
    assert plot.headers["content-type"] == "image/png" and plot.content[:8] == b"\x89PNG\r\n\x1a\n"

    thumbs = client.get(status["thumbnails_url"]).json()["thumbnails"]
    times = [t["t"] for t in thumbs]
    assert len(thumbs) == 3 and times == sorted(times) and times[-1] < DURATION_S
    jpeg = client.get(thumbs[-1]["url"])
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"

    # resuming the events after the last one seen: the stream ends at once, nothing is repeated
    assert _watch(client, lofi_job["id"], {"Last-Event-ID": str(events[-1][0])}) == []
    assert [j["id"] for j in client.get("/v1/jobs").json()["jobs"]].count(lofi_job["id"]) == 1


def test_a_new_style_reuses_the_analysis_and_renders_only_the_music(client: TestClient, lofi_job: dict[str, Any],
                                                                     composer: None) -> None:
    r = client.post("/v1/jobs", json={"from_job": lofi_job["id"], "style": "epic", "seed": 3})
    assert r.status_code == 202, r.text
    epic = r.json()
    assert epic["from_job"] == lofi_job["id"] and epic["filename"] == "clip.mp4"
    events = _watch(client, epic["id"])
    assert events[-1][1] == "done"
    fractions = [d["fraction"] for _, _, d in events]
    assert fractions == sorted(fractions)
    status = client.get(epic["url"]).json()
    assert status["stages_run"] == ["compose", "mix", "mux"]  # no thumbnails, no analyse
    assert status["options"]["style"] == "epic" and status["options"]["seed"] == 3
    # the same analysis under both: identical windows and segments
    a = client.get(lofi_job["status"]["results"]["timeline"]["url"]).json()
    b = client.get(status["results"]["timeline"]["url"]).json()
    assert a["windows"] == b["windows"] and a["segments"] == b["segments"] and b["style"] == "epic"
    assert {m["style"] for m in b["music"]} == {"epic"}
    # A/B: both versions are there at once, and they are different music of the same length
    _, lofi = _pcm(client.get(lofi_job["status"]["results"]["bgm"]["url"]).content)
    _, epic_pcm = _pcm(client.get(status["results"]["bgm"]["url"]).content)
    assert lofi.shape == epic_pcm.shape
    diff = np.abs(lofi.astype(np.float64) - epic_pcm).mean() / (np.abs(lofi.astype(np.float64)).mean() + 1e-9)
    assert diff > 0.3
    thumbs_a = client.get(lofi_job["status"]["thumbnails_url"]).json()["thumbnails"]
    thumbs_b = client.get(status["thumbnails_url"]).json()["thumbnails"]  # the source's, not made again
    assert [t["t"] for t in thumbs_a] == [t["t"] for t in thumbs_b]
    assert client.get(thumbs_a[0]["url"]).content == client.get(thumbs_b[0]["url"]).content
    # what is not given is the source's: another seed keeps the epic style
    again = client.post("/v1/jobs", json={"from_job": epic["id"], "seed": 4}).json()
    assert _watch(client, again["id"])[-1][1] == "done"
    assert client.get(again["url"]).json()["options"]["style"] == "epic"


def test_recommend_then_preview_then_score_with_the_chosen_track(client: TestClient, clip: Path,
                                                                 composer: None) -> None:
    r = client.post("/v1/jobs?kind=recommend&library=mini&top_k=2", files=_video(clip))
    assert r.status_code == 202, r.text
    rec = r.json()
    assert _watch(client, rec["id"])[-1][1] == "done"
    status = client.get(rec["url"]).json()
    assert status["stages_run"] == ["thumbnails", "analyse", "library", "rank"]
    recs = status["result"]["recommendations"]
    assert len(recs) == 2 and "recommendations" in status["results"]
    chosen = recs[0]["track_id"]
    preview = client.get(recs[0]["preview_url"])
    assert preview.status_code == 200 and preview.headers["content-type"] == "audio/wav"
    rate, pcm = _pcm(preview.content)
    assert rate == 48_000 and 5.5 < pcm.shape[0] / rate <= 12.0 and np.abs(pcm).max() > 1000
    assert client.get(recs[0]["preview_url"]).content == preview.content  # made once, kept with the job
    others = {1, 2, 3} - {x["track_id"] for x in recs}
    _error(client.get(f"{rec['url']}/previews/{others.pop()}.wav"), 404, "NotFound")

    r = client.post("/v1/jobs", json={"from_job": rec["id"], "kind": "score", "track": chosen})
    assert r.status_code == 202, r.text
    scored = r.json()
    assert scored["options"]["library"] == "mini" and scored["options"]["track"] == chosen
    assert _watch(client, scored["id"])[-1][1] == "done"
    status = client.get(scored["url"]).json()
    assert status["stages_run"] == ["compose", "mix", "mux"]
    timeline = client.get(status["results"]["timeline"]["url"]).json()
    assert timeline["track"] == {"id": chosen}
    assert len(timeline["music"]) == 1 and abs(timeline["music"][0]["end_s"] - DURATION_S) < 0.2  # one track, looped
    rate, pcm = _pcm(client.get(status["results"]["bgm"]["url"]).content)
    assert abs(pcm.shape[0] / rate - DURATION_S) < 0.1 and np.abs(pcm).max() > 1000


def test_a_track_the_library_lacks_is_refused_at_submission(client: TestClient, clip: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """400 LibraryError naming the library as the client calls it (never a server path), no job; the built-in
    catalog's numbers are checked without rendering it."""
    from pipelines.offline import jobs as offline_jobs

    monkeypatch.setattr(offline_jobs._libraries, "tracks", {})  # no library loaded yet in this process
    before = client.get("/v1/jobs").json()["jobs"]
    message = _error(client.post("/v1/jobs?kind=score&library=mini&track=7", files=_video(clip)), 400,
                     "LibraryError")
    assert message == "no track 7 in the mini library (ids 1..3)"
    message = _error(client.post("/v1/jobs?kind=score&track=101", files=_video(clip)), 400, "LibraryError")
    assert message == "no track 101 in the catalog library (ids 1..100)"
    assert "catalog" not in offline_jobs._libraries.tracks  # nothing rendered to find that out
    analysed = client.post("/v1/jobs?kind=analyze", files=_video(clip)).json()
    assert _watch(client, analysed["id"])[-1][1] == "done"
    _error(client.post("/v1/jobs", json={"from_job": analysed["id"], "kind": "score", "library": "mini", "track": 4}),
           400, "LibraryError")
    assert len(client.get("/v1/jobs").json()["jobs"]) == len(before) + 1  # only the analysis


# --------------------------------------------------------------------------- cancel, expiry, limits


def test_cancel_mid_job_stops_the_work_and_removes_its_files(client: TestClient, core: GatewayCore, clip: Path,
                                                             tmp_root: Path) -> None:
    g = gate(core)
    try:
        body = client.post("/v1/jobs?style=calm", files=_video(clip)).json()
        assert g.entered.wait(WAIT_S)
        job = core.job_store.get(body["id"])
        status = client.get(body["url"]).json()
        assert status["state"] == "running" and status["stage"] == "compose"
        assert os.path.isdir(job.folder) and os.listdir(job.folder)
        r = client.delete(body["url"])
        assert r.status_code == 204
        assert not os.path.exists(job.folder)
        assert g.calls == 1, "the composer was asked for more music after the cancel"
        v = job.view()
        assert v.state == "cancelled" and v.stages_run[-1] == "compose" and "mix" not in v.stages_run
        _error(client.get(body["url"]), 404, "NotFound")
        _error(client.get(f"{body['url']}/results/scored.mp4"), 404, "NotFound")
        _error(client.delete(body["url"]), 404, "NotFound")
        assert not [p for p in tmp_root.iterdir() if p.name.startswith("backscore-req-")]
    finally:
        g.opened.set()
        core.job_store.work = JobWork()


@pytest.fixture()
def small_core(tmp_path: Path) -> Iterator[tuple[GatewayCore, TestClient, Clock]]:
    """A gateway with room for one running job and two kept, results kept 100 s, uploads up to 1 MiB."""
    clock = Clock()
    c = GatewayCore(InProcessModels.default(faces=False, inline=True), tmp_dir=os.fspath(tmp_path / "gw"),
                    max_active_jobs=1, max_stored_jobs=2, job_ttl_s=100.0, job_clock=clock, max_upload_mb=1.0)
    try:
        with TestClient(build_app(c)) as http:
            yield c, http, clock
    finally:
        asyncio.run(c.shutdown())


def test_expired_results_are_gone(small_core: tuple[GatewayCore, TestClient, Clock], clip: Path) -> None:
    core, client, clock = small_core
    body = client.post("/v1/jobs?kind=analyze", files=_video(clip)).json()
    assert _watch(client, body["id"])[-1][1] == "done"
    status = client.get(body["url"]).json()
    assert status["stages_run"] == ["thumbnails", "analyse", "write"] and set(status["results"]) == {"timeline",
                                                                                                    "plot"}
    folder = core.job_store.get(body["id"]).folder
    clock.t = status["expires_at"] - 1.0
    assert client.get(status["results"]["timeline"]["url"]).status_code == 200
    clock.t = status["expires_at"]
    _error(client.get(body["url"]), 410, "Gone")
    _error(client.get(status["results"]["timeline"]["url"]), 410, "Gone")
    _error(client.get(f"{body['url']}/events"), 410, "Gone")
    _error(client.post("/v1/jobs", json={"from_job": body["id"]}), 410, "Gone")
    assert not os.path.exists(folder) and client.get("/v1/jobs").json()["jobs"] == []


def test_jobs_beyond_the_limits_get_503_with_retry_after(small_core: tuple[GatewayCore, TestClient, Clock],
                                                         clip: Path) -> None:
    core, client, clock = small_core
    g = gate(core)
    try:
        held = client.post("/v1/jobs", files=_video(clip)).json()
        assert g.entered.wait(WAIT_S)
        r = client.post("/v1/jobs", files=_video(clip))
        _error(r, 503, "Busy")
        assert int(r.headers["retry-after"]) >= 1
        r = client.post("/v1/jobs", json={"from_job": held["id"], "style": "sad"})
        _error(r, 503, "Busy")
        assert int(r.headers["retry-after"]) >= 1
        assert client.delete(held["url"]).status_code == 204
    finally:
        g.opened.set()
    core.job_store.work = JobWork()
    done = [client.post("/v1/jobs?kind=analyze&thumbnails=false", files=_video(clip)).json()]
    assert _watch(client, done[0]["id"])[-1][1] == "done"
    clock.t += 10.0
    done.append(client.post("/v1/jobs?kind=analyze&thumbnails=false", files=_video(clip)).json())
    assert _watch(client, done[1]["id"])[-1][1] == "done"
    clock.t += 10.0
    r = client.post("/v1/jobs?kind=analyze", files=_video(clip))  # two kept: full until the first expires
    _error(r, 503, "Busy")
    first = client.get(done[0]["url"]).json()
    assert int(r.headers["retry-after"]) == pytest.approx(first["expires_at"] - clock.t, abs=1)
    assert client.delete(done[0]["url"]).status_code == 204
    again = client.post("/v1/jobs?kind=analyze&thumbnails=false", files=_video(clip))
    assert again.status_code == 202
    assert _watch(client, again.json()["id"])[-1][1] == "done"


def test_a_job_past_the_wall_time_limit_fails_with_504s_error(small_core: tuple[GatewayCore, TestClient, Clock],
                                                               clip: Path) -> None:
    core, client, clock = small_core
    g = gate(core)
    try:
        body = client.post("/v1/jobs", files=_video(clip)).json()
        assert g.entered.wait(WAIT_S)
        clock.t += core.job_store.limits.timeout_s + 1.0  # type: ignore[operator]
        core.job_store.sweep()
        events = _watch(client, body["id"])
    finally:
        g.opened.set()
    assert events[-1][1] == "error"
    status = client.get(body["url"]).json()
    assert status["state"] == "failed" and status["error"]["type"] == "DeadlineExceeded"
    assert status["results"] == {} and g.calls == 1


def test_a_client_leaving_the_event_stream_does_not_cancel_the_job(tmp_path: Path, clip: Path) -> None:
    core = GatewayCore(InProcessModels.default(faces=False, inline=True), tmp_dir=os.fspath(tmp_path / "gw"))
    g = gate(core)
    try:
        with serving(build_app(core)) as (host, port):
            base = f"http://{host}:{port}"
            with open(clip, "rb") as f:
                body = requests.post(f"{base}/v1/jobs", files={"file": ("clip.mp4", f, "video/mp4")}, timeout=60).json()
            job = core.job_store.get(body["id"])
            stream = requests.get(f"{base}{body['events_url']}", stream=True, timeout=60)
            assert stream.status_code == 200
            lines = stream.iter_lines(decode_unicode=True)
            assert any(line == "event: progress" for line in lines)
            _until(lambda: job.listeners == 1, "the event stream to subscribe")
            assert g.entered.wait(WAIT_S)
            stream.close()  # the client goes away mid-job
            _until(lambda: job.listeners == 0, "the server to notice the client left")
            assert job.view().state == "running"
            g.opened.set()
            _until(lambda: requests.get(f"{base}{body['url']}", timeout=60).json()["state"] != "running",
                   "the job to end")
            status = requests.get(f"{base}{body['url']}", timeout=60).json()
            assert status["state"] == "done" and status["stages_run"][-1] == "mux"
            bgm = requests.get(f"{base}{status['results']['bgm']['url']}", timeout=60)
            assert bgm.status_code == 200 and abs(_pcm(bgm.content)[1].shape[0] / 48_000 - DURATION_S) < 0.1
    finally:
        g.opened.set()
        asyncio.run(core.shutdown())


# --------------------------------------------------------------------------- bad requests


def test_bad_input_gets_4xx_json_and_leaves_nothing(small_core: tuple[GatewayCore, TestClient, Clock], clip: Path,
                                                    tmp_path: Path) -> None:
    core, client, _ = small_core
    _error(client.post("/v1/jobs", files={"file": ("notes.txt", b"hello", "text/plain")}), 415,
           "UnsupportedMediaType")
    message = _error(client.post("/v1/jobs", files={"file": ("clip.mp4", b"not a video" * 100, "video/mp4")}), 400,
                     "InputError")
    assert "clip.mp4" in message and str(tmp_path) not in message
    _error(client.post("/v1/jobs", files={"file": ("big.mp4", b"\0" * (2 << 20), "video/mp4")}), 413,
           "PayloadTooLarge")
    for url in ("/v1/jobs/nope", "/v1/jobs/nope/events", "/v1/jobs/nope/thumbnails", "/v1/jobs/nope/results/x.wav",
                "/v1/jobs/nope/previews/1.wav"):
        _error(client.get(url), 404, "NotFound")
    _error(client.delete("/v1/jobs/nope"), 404, "NotFound")
    _error(client.post("/v1/jobs", json={"from_job": "nope"}), 404, "NotFound")
    for query in ("kind=remix", "top_k=0&kind=recommend", "outputs=video,gif", "seed=abc", "track=0"):
        _error(client.post(f"/v1/jobs?{query}", files=_video(clip)), 422, "ValidationError")
    _error(client.post("/v1/jobs", json={"from_job": "x", "colour": "red"}), 422, "ValidationError")
    _error(client.post("/v1/jobs", json=["from_job"]), 422, "ValidationError")
    _error(client.post("/v1/jobs"), 400, "InputError")
    _error(client.post("/v1/jobs", content=b"x", headers={"content-type": "text/plain"}), 415, "UnsupportedMediaType")
    for query, kind in (("style=nope", "OptionError"), ("seed=-1", "OptionError"), ("loudness=loud", "OptionError"),
                        ("engine=musicgen", "OptionError"), ("library=/etc/passwd", "LibraryError"),
                        ("track=2&outputs=midi", "OptionError"), ("kind=recommend&track=2", "OptionError"),
                        ("from_job=abc", "OptionError")):
        _error(client.post(f"/v1/jobs?{query}", files=_video(clip)), 400, kind)
    assert client.get("/v1/jobs").json()["jobs"] == []
    root = Path(core.workdirs.root)
    assert [p.name for p in root.iterdir()] == []


def test_api_keys_and_their_job_quota_apply_to_jobs(tmp_path: Path, clip: Path) -> None:
    keys = {name: new_key() for name in ("one", "other")}
    quotas = {"one": KeyQuotas(rpm=10_000, jobs=1), "other": KeyQuotas(rpm=10_000, jobs=4)}
    policy = AccessPolicy(KeyStore([KeyEntry(n, hash_key(k), quotas[n]) for n, k in keys.items()]))
    core = GatewayCore(InProcessModels.default(faces=False, inline=True), tmp_dir=os.fspath(tmp_path / "gw"),
                       access=policy)
    g = gate(core)

    def auth(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[name]}"}

    try:
        with TestClient(build_app(core)) as client:
            r = client.post("/v1/jobs", files=_video(clip))
            _error(r, 401, "Unauthorized")
            assert r.headers["www-authenticate"].startswith("Bearer")
            body = client.post("/v1/jobs", files=_video(clip), headers=auth("one")).json()
            assert g.entered.wait(WAIT_S)
            # the job holds the key's one job slot after its request ended, until its work does
            r = client.post("/v1/jobs", files=_video(clip), headers=auth("one"))
            _error(r, 429, "TooManyRequests")
            assert int(r.headers["retry-after"]) >= 1
            _error(client.get(body["url"], headers=auth("other")), 404, "NotFound")
            _error(client.delete(body["url"], headers=auth("other")), 404, "NotFound")
            assert client.get("/v1/jobs", headers=auth("other")).json()["jobs"] == []
            _error(client.get(body["url"]), 401, "Unauthorized")
            assert client.get(body["url"], headers=auth("one")).json()["state"] == "running"
            assert client.delete(body["url"], headers=auth("one")).status_code == 204
            g2 = gate(core)
            g2.opened.set()
            again = client.post("/v1/jobs?kind=analyze&thumbnails=false", files=_video(clip), headers=auth("one"))
            assert again.status_code == 202
            assert _watch(client, again.json()["id"], auth("one"))[-1][1] == "done"
    finally:
        g.opened.set()
        asyncio.run(core.shutdown())
