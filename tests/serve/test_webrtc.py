"""WebRTC transport: two aiortc peers in one process against the real WebRtcManager over InProcessModels."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

pytest.importorskip("aiortc", reason="serve extras (aiortc) not installed: pip install -e '.[serve]'")

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pipelines.clock import VirtualClock
from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, write_video
from pipelines.live.models import InProcessModels
from pipelines.live.options import LiveOptions
from pipelines.live.session import LiveSession
from serve.webrtc import BgmTrack, LocalDirectory, WebRtcManager, demo_router, webrtc_router

CHANGE_AT = 6.0
CALM = ("sad", "relaxing", "neutral", "tense", "fearful")
EXCITED = ("exciting", "happy")


@pytest.fixture(scope="module")
def calm_then_exciting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("webrtc") / "calm_exciting.mp4"
    write_video(os.fspath(path), [replace(CALM_DARK, duration_s=CHANGE_AT), replace(BRIGHT_FAST, duration_s=10.0)])
    return path


@pytest.fixture(scope="module")
def backend() -> Any:
    b = InProcessModels.default(faces=False)
    yield b
    b.shutdown()


class Client:
    """The browser's part: sends a file's video+audio, receives the BGM and the data-channel reports."""

    def __init__(self, player: MediaPlayer | None) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.player = player
        self.channel = self.pc.createDataChannel("mood")
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.frames: list[tuple[float, int, int, float]] = []  # (arrival, pts, samples, rms)
        self.frame_info: dict[str, Any] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.channel.on("message", lambda m: self.messages.append((time.perf_counter(), json.loads(m))))
        self.pc.on("track", self._on_track)
        if player is not None:
            assert player.video is not None and player.audio is not None
            self.pc.addTrack(player.video)
            self.pc.addTrack(player.audio)
        else:
            self.pc.addTransceiver("audio", direction="recvonly")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self.tasks.append(asyncio.create_task(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                f = await track.recv()
                assert isinstance(f, av.AudioFrame) and f.pts is not None
                pcm = f.to_ndarray().astype(np.float32) / 32768.0
                self.frame_info = {"rate": f.sample_rate, "layout": f.layout.name, "format": f.format.name,
                                   "time_base": f.time_base}
                self.frames.append((time.perf_counter(), int(f.pts), f.samples, float(np.sqrt(np.mean(pcm**2)))))
        except MediaStreamError:
            pass

    async def offer(self) -> dict[str, Any]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return {"sdp": self.pc.localDescription.sdp, "type": "offer"}

    async def connect(self, manager: WebRtcManager, **extra: Any) -> str:
        answer = await manager.offer({**(await self.offer()), **extra})
        assert answer["type"] == "answer" and answer["sdp"].startswith("v=0")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        return str(answer["session_id"])

    def reports(self) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.messages if m.get("type") == "mood"]

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.pc.close()


async def _until(cond: Any, timeout: float, step: float = 0.05) -> bool:
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if cond():
            return True
        await asyncio.sleep(step)
    return bool(cond())


async def test_bgm_and_mood_reports_follow_the_client_video(calm_then_exciting: Path, backend: InProcessModels) -> None:
    manager = WebRtcManager(backend, hooks=None, media_timeout_s=3.0)
    client = Client(MediaPlayer(os.fspath(calm_then_exciting)))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sid = await client.connect(manager, style="auto", seed=3)
    assert [s["session_id"] for s in manager.list()] == [sid]
    sess = manager.sessions[sid]
    assert await _until(lambda: sess.connected_at is not None, 10.0)
    t_connect = time.perf_counter()
    # the first report (and the pong) over the data channel
    await _until(lambda: client.channel.readyState == "open", 5.0)
    client.channel.send(json.dumps({"type": "ping", "t": 42}))
    # run until the reports show the new mood, for at most the video's length + 6 s
    late = lambda: [m for _, m in client.reports() if m["emotion"] in EXCITED and m["media_s"] > CHANGE_AT]  # noqa: E731
    assert await _until(lambda: bool(late()), CHANGE_AT + 10.0 + 6.0), [m["emotion"] for _, m in client.reports()]
    await asyncio.sleep(1.0)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    frames, info = list(client.frames), dict(client.frame_info)
    reports = client.reports()
    server_late = np.array(sess.bgm.lateness)
    await manager.hang_up(sid)
    assert len(manager) == 0
    await client.close()

    assert sess.live.error is None
    assert {"type": "pong", "t": 42} in [m for _, m in client.messages]
    assert {"type": "session", "session_id": sid} in [m for _, m in client.messages]
    # BGM: 20 ms, 48 kHz stereo frames, pts increasing by 960, ~50 frames per second of clock, audible
    assert info["rate"] == 48000 and info["layout"] == "stereo" and info["format"] == "s16"
    pts = np.array([p for _, p, _, _ in frames])
    assert np.all(np.diff(pts) > 0)
    assert np.median(np.diff(pts)) == 960 and {n for _, _, n, _ in frames} == {960}
    span = frames[-1][0] - frames[0][0]
    rate = (len(frames) - 1) / span
    assert 45 <= rate <= 55, rate
    assert (pts[-1] - pts[0]) / 48000 == pytest.approx(span, abs=0.5)  # pts advance with the clock
    assert max(r for *_, r in frames[-100:]) > 0.01  # audible once the music runs
    assert np.mean([r > 0.003 for *_, r in frames[len(frames) // 2:]]) > 0.9
    # server pacing: frames handed to the sender within a few ms of start + k * 20 ms
    jitter_p50, jitter_p99 = (float(np.percentile(server_late, q)) for q in (50, 99))
    assert jitter_p99 < 0.1, jitter_p99
    # mood: calm first, exciting after the change, reported about once a second
    early = [m for _, m in reports if 3.0 <= m["media_s"] <= CHANGE_AT]
    assert early and all(m["emotion"] in CALM for m in early), [m["emotion"] for m in early]
    assert late()[0]["arousal"] > max(m["arousal"] for m in early)
    times = np.array([t for t, _ in reports])
    assert 0.7 <= float(np.median(np.diff(times))) <= 1.3
    assert late()[-1]["music"] is not None
    # latency from the change reaching the server (media time) to the first report of the new mood
    change_wall = t_connect + CHANGE_AT  # media plays in real time from about the connection
    first_new = next(t for t, m in reports if m["emotion"] in EXCITED and m["media_s"] > CHANGE_AT)
    print(f"\nwebrtc: {len(frames)} BGM frames at {rate:.2f}/s, server pacing lateness p50 {1000 * jitter_p50:.2f} ms "
          f"p99 {1000 * jitter_p99:.2f} ms, skipped {sess.bgm.skipped}; {len(reports)} reports; "
          f"mood change reported {first_new - change_wall:.1f} s after the video changed; "
          f"music change latency {late()[-1]['last_change_latency_s']} s; "
          f"CPU {100 * cpu / wall:.0f}% of one core (client+server, {wall:.1f} s); "
          f"underruns {reports[-1][1]['underruns']}; dropped client frames {sum(p.dropped for p in sess.pumps)}")
    assert sess.state == "closed" and all(t.done() for t in sess.tasks)
    assert all(t.done() for p in sess.pumps for t in p.tasks)


async def _connected(manager: WebRtcManager, video: Path) -> tuple[Client, Any]:
    client = Client(MediaPlayer(os.fspath(video)))
    sid = await client.connect(manager)
    sess = manager.sessions[sid]
    assert await _until(lambda: sess.last_media_at is not None and client.frames != [], 10.0)
    return client, sess


async def test_client_closing_its_connection_ends_the_session(calm_then_exciting: Path,
                                                               backend: InProcessModels) -> None:
    manager = WebRtcManager(backend, hooks=None, media_timeout_s=2.0)
    client, sess = await _connected(manager, calm_then_exciting)
    t0 = time.perf_counter()
    await client.close()  # the peer goes away without DELETE
    assert await _until(lambda: len(manager) == 0, 8.0), manager.list()
    print(f"\nwebrtc: session gone {time.perf_counter() - t0:.2f} s after the client closed ({sess.end_reason})")
    await sess.wait_closed()
    assert sess.live.closed and sess.bgm.readyState == "ended"
    assert all(t.done() for t in sess.tasks) and all(t.done() for p in sess.pumps for t in p.tasks)


async def test_client_that_stops_sending_is_timed_out(calm_then_exciting: Path, backend: InProcessModels) -> None:
    manager = WebRtcManager(backend, hooks=None, media_timeout_s=1.5)
    client, sess = await _connected(manager, calm_then_exciting)
    t0 = time.perf_counter()
    for sender in client.pc.getSenders():  # the connection stays up, the media stops
        if sender.track is not None:
            sender.track.stop()
    assert await _until(lambda: len(manager) == 0, 8.0), manager.list()
    assert sess.end_reason in ("no media", "client tracks ended")
    print(f"\nwebrtc: silent client ended after {time.perf_counter() - t0:.2f} s ({sess.end_reason})")
    assert all(t.done() for t in sess.tasks) and all(t.done() for p in sess.pumps for t in p.tasks)
    await client.close()


async def test_hang_up_reaching_another_replica_ends_the_session(calm_then_exciting: Path,
                                                                 backend: InProcessModels) -> None:
    """Two managers = two gateway replicas sharing a session directory; the DELETE lands on the other one."""
    directory = LocalDirectory()
    a = WebRtcManager(backend, hooks=None, directory=directory, sync_interval_s=0.1)
    b = WebRtcManager(backend, hooks=None, directory=directory, sync_interval_s=0.1)
    app_b = FastAPI()
    app_b.include_router(webrtc_router(b))
    http = TestClient(app_b)  # runs b's app on its own thread and loop: off this loop, where a lives
    client, sess = await _connected(a, calm_then_exciting)
    assert directory.table.owners == {sess.id: a.owner}  # listed as soon as the offer was answered
    r = await asyncio.to_thread(http.delete, f"/v1/webrtc/{sess.id}")
    assert r.status_code == 202 and r.json() == {"session_id": sess.id, "state": "closing"}
    t0 = time.perf_counter()
    await asyncio.wait_for(sess.wait_closed(), 5.0)
    print(f"\nwebrtc: hang-up via the other replica took {time.perf_counter() - t0:.2f} s")
    assert sess.end_reason == "hang-up via another gateway replica" and len(a) == 0
    assert await _until(lambda: not directory.table.owners, 2.0)  # a's last sync took it out
    r = await asyncio.to_thread(http.delete, f"/v1/webrtc/{sess.id}")
    assert r.status_code == 404 and r.json()["error"]["type"] == "NotFound"
    await client.close()
    await a.close_all()
    await b.close_all()


async def test_close_all_and_connect_timeout(backend: InProcessModels) -> None:
    manager = WebRtcManager(backend, hooks=None, connect_timeout_s=0.6)
    a, b = Client(None), Client(None)
    sid_a = (await manager.offer(await a.offer()))["session_id"]  # never completes the handshake
    await b.connect(manager)
    assert len(manager) == 2
    assert await _until(lambda: sid_a not in manager.sessions, 5.0)
    assert len(manager) == 1
    await manager.close_all()
    assert len(manager) == 0
    await a.close()
    await b.close()


async def test_bgm_track_paces_on_the_injected_clock_without_drift(backend: InProcessModels) -> None:
    clock = VirtualClock()
    session = LiveSession(backend, LiveOptions(), clock=clock)
    track = BgmTrack(session, clock)
    got: list[tuple[float, Any]] = []

    async def read() -> None:
        while True:
            f = await track.recv()
            got.append((clock.now(), f))

    task = asyncio.create_task(read())
    await clock.advance(2.0, step=0.007)  # a step that does not divide 20 ms
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(got) == pytest.approx(101, abs=1)
    for k, (t, f) in enumerate(got):
        assert f.pts == 960 * k and f.samples == 960 and f.sample_rate == 48000
        assert f.format.name == "s16" and f.layout.name == "stereo" and f.time_base.denominator == 48000
        # never early, late by at most one clock step: no drift
        assert -1e-9 <= t - (got[0][0] + 0.02 * k) < 0.007 + 1e-9
    # a stalled loop: the missed frames are skipped, the pts follow the clock
    clock._now += 2.0
    f = await track.recv()
    assert f.pts is not None
    assert track.skipped > 0 and f.pts / 48000 == pytest.approx(clock.now() - got[0][0], abs=0.03)
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


class _SineSession:
    """What BgmTrack reads from a LiveSession: a 440 Hz tone, frame after frame."""

    session_id = "sine"
    closed = False
    options = LiveOptions()

    def __init__(self) -> None:
        self.n = 0

    def pull_frame(self, heard_in_s: float = 0.0) -> np.ndarray:
        k = np.arange(self.n, self.n + 960)
        self.n += 960
        tone = (0.3 * np.sin(2 * np.pi * 440 * k / 48000)).astype(np.float32)
        return np.stack([tone, tone], axis=1)


async def test_bgm_track_hands_out_opus_packets_that_decode_to_the_frames() -> None:
    clock = VirtualClock()
    track = BgmTrack(_SineSession(), clock, opus=True)  # type: ignore[arg-type]
    packets: list[av.Packet] = []

    async def read() -> None:
        while len(packets) < 100:
            packets.append(await track.recv())

    task = asyncio.create_task(read())
    while not task.done():
        await clock.advance(0.02)
    await task
    # one packet per 20 ms frame, stamped like the frames (what aiortc's sender turns into RTP timestamps)
    assert all(isinstance(p, av.Packet) for p in packets)
    assert [p.pts for p in packets] == [960 * k for k in range(100)]
    assert all(p.time_base == Fraction(1, 48000) for p in packets)
    assert track.frames == 100 and track.skipped == 0 and track.late_frames == 0

    decoder = av.CodecContext.create("opus", "r")
    frames = [f for p in packets for f in decoder.decode(p)]
    assert frames[0].format.name == "fltp" and frames[0].layout.nb_channels == 2
    left = np.concatenate([f.to_ndarray()[0] for f in frames])[4800:].astype(np.float64)  # past the start-up
    spectrum = np.abs(np.fft.rfft(left * np.hanning(left.size)))
    assert np.fft.rfftfreq(left.size, 1 / 48000)[spectrum.argmax()] == pytest.approx(440, abs=5)
    rms_db = 20 * np.log10(np.sqrt(np.mean(left**2)) / (0.3 / np.sqrt(2)))
    assert abs(rms_db) < 1.0, rms_db


# --------------------------------------------------------------------------- HTTP


def test_http_errors_and_demo_page(backend: InProcessModels) -> None:
    app = FastAPI()
    manager = WebRtcManager(backend, hooks=None, max_sessions=1)
    app.include_router(webrtc_router(manager))
    app.include_router(demo_router())

    async def real_offer() -> str:
        c = Client(None)
        sdp = (await c.offer())["sdp"]
        await c.pc.close()
        return str(sdp)

    sdp = asyncio.run(real_offer())
    with TestClient(app) as http:
        bad = [
            ("not json", None),
            ("[1]", None),
            (json.dumps({"type": "offer"}), "sdp"),
            (json.dumps({"sdp": sdp, "type": "answer"}), "offer"),
            (json.dumps({"sdp": "hello", "type": "offer"}), "v=0"),
            (json.dumps({"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "type": "offer"}), "offer"),
            (json.dumps({"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "type": "offer"}), "audio"),
            (json.dumps({"sdp": sdp, "type": "offer", "style": "polka"}), "style"),
            (json.dumps({"sdp": sdp, "type": "offer", "seed": "x"}), "seed"),
            (json.dumps({"sdp": sdp, "type": "offer", "mix_original": 1}), "mix_original"),
        ]
        for body, word in bad:
            r = http.post("/v1/webrtc/offer", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, (body, r.text)
            err = r.json()["error"]
            assert err["type"] == "OfferError" and (word is None or word in err["message"]), err
        assert manager.sessions == {}  # nothing left behind by the rejected offers
        manager.slots.acquire()  # the one slot is taken (by a session of any transport)
        r = http.post("/v1/webrtc/offer", json={"sdp": sdp, "type": "offer"})
        assert r.status_code == 503 and r.json()["error"]["type"] == "Busy" and r.headers["retry-after"]
        assert r.json()["error"]["max_sessions"] == 1 and manager.slots.in_use == 1
        manager.slots.release()
        assert http.delete("/v1/webrtc/nope").status_code == 404
        assert http.get("/v1/webrtc/sessions").json()["sessions"] == []
        page = http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "<script" in page.text
        for name in ("app.js", "style.css"):
            assert http.get(f"/static/{name}").status_code == 200
        assert http.get("/static/..%2Fwebrtc.py").status_code == 404
        assert http.get("/static/nothing.js").status_code == 404
