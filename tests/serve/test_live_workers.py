"""Live worker processes: real worker processes, real aiortc clients, the pool's signalling, accounts and recovery."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiortc", reason="serve extras (aiortc) not installed: pip install -e '.[serve]'")

from aiortc.contrib.media import MediaPlayer
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, write_video
from pipelines.errors import BusyError
from serve.jobs import SessionSlots
from serve.metrics import SESSIONS_TOTAL, STAGE_SECONDS
from serve.webrtc import webrtc_router
from serve.webrtc.protocol import OfferError
from serve.webrtc.worker_pool import LiveWorkerPool
from serve.webrtc.worker_process import WorkerConfig
from tests.serve.test_webrtc import EXCITED, Client, _until

CHANGE_AT = 5.0


@pytest.fixture(scope="module")
def calm_then_exciting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("workers") / "calm_exciting.mp4"
    write_video(os.fspath(path), [replace(CALM_DARK, duration_s=CHANGE_AT), replace(BRIGHT_FAST, duration_s=8.0)])
    return path


class _Lease:
    def __init__(self) -> None:
        self.reason: str | None = None
        self.released = 0

    def exhausted(self) -> str | None:
        return self.reason

    def release(self) -> None:
        self.released += 1


def _samples(counter: Any) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


def _stage_count(stage: str) -> float:
    return sum(s.value for m in STAGE_SECONDS.collect() for s in m.samples
               if s.name.endswith("_count") and s.labels.get("stage") == stage)


async def _pool(workers: int = 2, max_sessions: int = 4, **config: Any) -> LiveWorkerPool:
    pool = LiveWorkerPool(WorkerConfig(faces=False, max_sessions=max_sessions, media_timeout_s=4.0, **config),
                          workers, slots=SessionSlots(max_sessions), sync_interval_s=0.1)
    await pool.start()
    await pool.wait_ready(120.0)
    return pool


async def test_sessions_spread_over_worker_processes_and_follow_the_mood(calm_then_exciting: Path) -> None:
    pool = await _pool()
    started = _samples(SESSIONS_TOTAL)
    clients = [Client(MediaPlayer(os.fspath(calm_then_exciting))) for _ in range(2)]
    try:
        sids = [await c.connect(pool, style="auto", seed=i) for i, c in enumerate(clients)]
        # one session on each worker process (the one with fewer sessions takes the next)
        assert sorted(s["worker"] for s in pool.list()) == [0, 1]
        pids = {w.proc.pid for w in pool.workers if w.proc is not None}
        assert len(pids) == 2 and os.getpid() not in pids
        assert _samples(SESSIONS_TOTAL) - started == 2

        def excited(c: Client) -> bool:
            return any(m["emotion"] in EXCITED and m["media_s"] > CHANGE_AT for _, m in c.reports())

        assert await _until(lambda: all(excited(c) for c in clients), CHANGE_AT + 8.0 + 6.0), \
            [[m["emotion"] for _, m in c.reports()] for c in clients]
        for c in clients:  # BGM arrives from the worker: 20 ms frames, audible
            assert len(c.frames) > 200 and max(r for *_, r in c.frames[-100:]) > 0.01
        # the workers' stats reached the pool: the session list carries their counters
        assert await _until(lambda: all(s.get("bgm_frames", 0) > 100 for s in pool.list()), 3.0), pool.list()
        assert all(w.headroom.get("process_cores", 0.0) > 0.0 for w in pool.workers)
        assert await pool.hang_up(sids[0]) == "closed"
        assert await _until(lambda: len(pool) == 1, 5.0)
        assert pool.slots.in_use == 1
    finally:
        for c in clients:
            await c.close()
        await pool.close_all()
    assert len(pool) == 0 and pool.slots.in_use == 0
    assert all(w.proc is not None and w.proc.returncode is not None for w in pool.workers)


async def test_bad_offers_limits_and_leases(calm_then_exciting: Path) -> None:
    pool = await _pool(workers=1, max_sessions=1)
    try:
        with pytest.raises(OfferError):  # refused here, before any worker is asked
            await pool.offer({"sdp": "nonsense", "type": "offer"})
        bad = Client(None)
        offer = await bad.offer()  # valid to the gateway's checks; the worker's aiortc refuses it
        with pytest.raises(OfferError, match="could not be negotiated"):
            await pool.offer({**offer, "sdp": offer["sdp"].replace("a=setup:actpass", "a=setup:bogus")})
        await bad.close()
        assert pool.slots.in_use == 0 and len(pool) == 0
        lease = _Lease()
        a = Client(MediaPlayer(os.fspath(calm_then_exciting)))
        sid = (await pool.offer(await a.offer(), lease=lease, tenant="alice"))["session_id"]
        await a.pc.close()
        b = Client(None)
        with pytest.raises(BusyError):  # the replica's one slot is taken
            await pool.offer(await b.offer())
        # another key neither sees nor ends it
        assert pool.list(tenant="bob") == [] and await pool.hang_up(sid, tenant="bob") is None
        assert [s["session_id"] for s in pool.list(tenant="alice")] == [sid]
        # the key's live minutes run out: the worker ends the session, the pool releases lease and slot
        lease.reason = "live minutes used up"
        assert await _until(lambda: len(pool) == 0, 8.0)
        assert lease.released == 1 and pool.slots.in_use == 0
        await b.close()
        await a.close()
    finally:
        await pool.close_all()


async def test_a_worker_that_dies_is_replaced_and_its_sessions_released(calm_then_exciting: Path) -> None:
    pool = await _pool(workers=1, max_sessions=2)
    try:
        lease = _Lease()
        client = Client(MediaPlayer(os.fspath(calm_then_exciting)))
        await client.connect(pool)
        pool.owners[next(iter(pool.owners))] = (*pool.owners[next(iter(pool.owners))][:2], lease)
        old = pool.workers[0].proc
        assert old is not None
        os.kill(old.pid, signal.SIGKILL)
        assert await _until(lambda: len(pool) == 0, 5.0)
        assert lease.released == 1 and pool.slots.in_use == 0
        await asyncio.wait_for(pool.workers[0].ready.wait(), 120.0)  # started again
        assert pool.workers[0].proc is not None and pool.workers[0].proc.pid != old.pid
        await client.close()
        again = Client(MediaPlayer(os.fspath(calm_then_exciting)))
        await again.connect(pool)
        assert await _until(lambda: len(again.frames) > 50, 10.0)
        await again.close()
    finally:
        await pool.close_all()


async def test_http_routes_over_the_pool_and_metrics_from_the_workers(calm_then_exciting: Path) -> None:
    pool = await _pool(workers=1, max_sessions=2)
    music0 = _stage_count("music")
    try:
        app = FastAPI()
        app.include_router(webrtc_router(pool))
        client = Client(MediaPlayer(os.fspath(calm_then_exciting)))
        sid = await client.connect(pool)
        assert await _until(lambda: len(client.frames) > 100, 10.0)
        http = TestClient(app)
        # the routes run on the test client's own loop: only what needs no await of the pool's loop
        r = await asyncio.to_thread(http.get, "/v1/webrtc/sessions")
        assert r.status_code == 200 and [s["session_id"] for s in r.json()["sessions"]] == [sid]
        assert r.json()["max_sessions"] == 2
        r = await asyncio.to_thread(http.post, "/v1/webrtc/offer", json={"sdp": "x", "type": "offer"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "OfferError"
        # metrics recorded in the worker reach this process (the music stage is timed per chunk)
        assert await _until(lambda: _stage_count("music") > music0, 3.0)
        await client.close()
    finally:
        await pool.close_all()


async def test_admission_from_the_workers_headroom_refuses_and_degrades(calm_then_exciting: Path) -> None:
    """Each worker's policy is fed its measurements: here a bound every real measurement is over."""
    from pipelines.live.admission import AdmissionOptions, AdmissionPolicy

    # any measured pressure is far past the degrade thresholds; one session per worker at most
    options = AdmissionOptions(max_sessions=1, fallback_sessions=1, degrade_at=(1e-6, 2e-6), recover_s=60.0)
    pool = LiveWorkerPool(WorkerConfig(faces=False, max_sessions=4, media_timeout_s=4.0), 1,
                          slots=SessionSlots(4), sync_interval_s=0.1,
                          admission=lambda clock: AdmissionPolicy(options, clock))
    await pool.start()
    await pool.wait_ready(120.0)
    try:
        a = Client(MediaPlayer(os.fspath(calm_then_exciting)))
        await a.connect(pool)
        b = Client(None)
        with pytest.raises(BusyError, match="1 sessions open") as refused:
            await pool.offer(await b.offer())
        assert getattr(refused.value, "retry_after_s", 0) >= 1
        assert pool.slots.in_use == 1  # the refused offer's slot went back
        # the policy's degrade level reaches the worker's sessions: their reports say so
        assert await _until(lambda: any(m.get("degraded") == 2 for _, m in a.reports()), 8.0), a.reports()[-1:]
        await a.close()
        await b.close()
    finally:
        await pool.close_all()


def test_headroom_is_measured_over_a_window_of_intervals() -> None:
    """One late wake-up or a burst of late frames counts over the window, then ages out of it."""
    import time as _time
    from types import SimpleNamespace

    from serve.webrtc.worker_process import HeadroomProbe

    probe = HeadroomProbe(window_s=1.0)
    bgm = SimpleNamespace(frames=0, late_frames=0)
    sessions = {"s": SimpleNamespace(bgm=bgm)}
    probe._lags = [0.001] * 9 + [0.08]  # one stalled timer among ten
    bgm.frames, bgm.late_frames = 25, 5
    _time.sleep(0.3)
    first = probe.sample(sessions)
    assert first["loop_lag_p95_s"] == pytest.approx(0.08) and first["late_ratio"] == pytest.approx(0.2)
    for _ in range(4):  # quiet intervals: the stall and the late frames age out of the 1 s window
        probe._lags = [0.001] * 10
        bgm.frames += 25
        _time.sleep(0.3)
        last = probe.sample(sessions)
    assert last["loop_lag_p95_s"] == pytest.approx(0.001) and last["late_ratio"] == 0.0
    assert last["sessions"] == 1 and 0.0 <= last["cpu_busy"] <= 1.0 and last["frames_sent"] == 100
