"""Model replicas killed under a live session, on a real Ray Serve application (own local cluster).

The application is the product's (:func:`serve.app.build_app`'s deployments, the gateway as
ingress) with two MusicGenerator replicas, as a deployment that must survive losing one would run.
A live session runs over deployment handles (:class:`serve.handles.DeploymentModels`) in this
process, streaming a synthesized video in real time, while the test kills -- with ``ray.kill``, as
a crashed or preempted node would -- each music replica in turn, then the one AffectFusion replica.

What must hold: the session never ends (no error), every 20 ms frame is sent on time, the music
carries on from the other replica (the stream restored from its context, so the loss costs at most
the chunk in flight), and the analysis resumes once Serve has replaced the affect replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK
from pipelines.frames import AUDIO_RATE
from tests.conftest import make_video
from tests.fakes import HooksRecorder
from tests.serve.http_server import free_port
from tests.serve.ray_cluster import start_local_ray

pytestmark = pytest.mark.slow

APP = "backscore-faults"


@pytest.fixture(scope="module")
def long_video(video_dir: Path) -> Path:
    scenes = [dataclasses.replace(CALM_DARK, duration_s=8.0), dataclasses.replace(BRIGHT_FAST, duration_s=8.0),
              dataclasses.replace(CALM_DARK, duration_s=8.0)]
    return make_video(video_dir, "faults_24s.mp4", scenes)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    import ray
    from ray import serve as ray_serve

    from serve import deployments as d
    from serve.gateway import Gateway

    start_local_ray(4, {"OMP_NUM_THREADS": "1"})
    ray_serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    frame = d.FrameEncoderDeployment.bind(faces=False, max_batch_size=16, batch_wait_timeout_s=0.005)
    audio = d.AudioEncoderDeployment.bind(max_batch_size=16, batch_wait_timeout_s=0.005)
    affect = d.AffectFusionDeployment.bind(max_batch_size=32, batch_wait_timeout_s=0.005)
    two = {"min_replicas": 2, "max_replicas": 2, "target_ongoing_requests": 4}
    music = d.MusicGeneratorDeployment.options(autoscaling_config=two).bind(engine="procedural")
    app = Gateway.bind("ray", frame, audio, affect, music, faces=False, warm_catalog=False)
    ray_serve.run(app, name=APP, route_prefix="/faults", blocking=False)
    deadline = time.time() + 180
    while len(_replicas("MusicGenerator")) < 2 or not _replicas("AffectFusion"):
        if time.time() > deadline:
            raise TimeoutError("the application's replicas did not start in 180 s")
        time.sleep(0.5)
    try:
        yield
    finally:
        ray_serve.shutdown()
        ray.shutdown()


def _replicas(deployment: str) -> list[str]:
    """Names of the live replica actors of ``deployment`` in :data:`APP`."""
    import ray

    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["name"].startswith("SERVE_REPLICA::") and f"{APP}#{deployment}#" in a["name"])


def _kill(name: str) -> None:
    import ray

    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)


async def _replaced(deployment: str, killed: str, n: int, timeout_s: float = 90.0) -> None:
    """Wait until ``deployment`` has ``n`` live replicas again, none of them ``killed``."""
    deadline = time.monotonic() + timeout_s
    while True:
        names = await asyncio.to_thread(_replicas, deployment)
        if killed not in names and len(names) >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{deployment} not replaced in {timeout_s:.0f} s: {names}")
        await asyncio.sleep(0.25)


async def test_killing_replicas_mid_session_loses_no_session_and_at_most_a_chunk(cluster: None,
                                                                                 long_video: Path) -> None:
    from pipelines.clock import SystemClock
    from pipelines.live.ingest import feed_file
    from pipelines.live.options import LiveOptions
    from pipelines.live.pacing import paced_frames
    from pipelines.live.reports import MoodReport
    from pipelines.live.session import LiveSession
    from serve.handles import DeploymentModels

    models = await DeploymentModels.for_app(APP)
    clock = SystemClock()
    hooks = HooksRecorder()
    reports: list[MoodReport] = []
    session = LiveSession(models, LiveOptions(seed=3), clock=clock, hooks=hooks, on_report=reports.append)
    session.start()
    frames: list[tuple[int, np.ndarray]] = []

    async def pull() -> None:
        async for pts, frame in paced_frames(session):
            frames.append((pts, frame))

    async def faults() -> list[str]:
        killed = []
        await asyncio.sleep(5.0)  # music playing
        changes_at_kills.append(session.player.mood_changes)
        for victim in await asyncio.to_thread(_replicas, "MusicGenerator"):
            await asyncio.to_thread(_kill, victim)
            killed.append(victim)
            await _replaced("MusicGenerator", victim, 2)
            await asyncio.sleep(1.0)
        changes_at_kills.append(session.player.mood_changes)
        windows_before = session.windows_done
        [affect] = await asyncio.to_thread(_replicas, "AffectFusion")
        await asyncio.to_thread(_kill, affect)
        killed.append(affect)
        await _replaced("AffectFusion", affect, 1)
        deadline = time.monotonic() + 30
        while session.windows_done <= windows_before + 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.25)  # the analysis resumes on the new replica
        return killed

    changes_at_kills: list[int] = []
    puller = asyncio.create_task(pull())
    feeder = asyncio.create_task(feed_file(session, os.fspath(long_video), clock, realtime=True, loop=True))
    t0 = time.monotonic()
    try:
        killed = await asyncio.wait_for(faults(), 300)
        await asyncio.sleep(3.0)  # and it plays on
        assert session.error is None, session.error
    finally:
        seconds = time.monotonic() - t0
        feeder.cancel()
        await session.close()
        puller.cancel()
        for t in (feeder, puller):
            with contextlib.suppress(asyncio.CancelledError):
                await t
    assert len(killed) == 3
    # every 20 ms frame was sent, in order
    pts = np.array([p for p, _ in frames])
    assert np.all(np.diff(pts) == 960) and len(frames) >= 0.9 * seconds * 50
    # the music went on through both music kills: one of them held the stream, so it was restored (from
    # its context, on the other replica: a request in flight is retried, the next one routed there) --
    # unless a mood change opened a new stream while the replicas were being killed
    if changes_at_kills[0] == changes_at_kills[1]:
        assert session.music_restores >= 1
    # at most the chunk in flight was lost: no more than one bar (~2 s) of frames went short
    assert hooks.underruns * 0.02 <= 2.0, hooks.underruns
    audio = np.concatenate([f for _, f in frames])[int(5 * AUDIO_RATE):]
    blocks = audio[: len(audio) // 48000 * 48000].reshape(-1, 48000, 2)
    silent_seconds = int(np.sum(np.sqrt(np.mean(blocks**2, axis=(1, 2))) < 1e-3))
    assert silent_seconds <= 2, silent_seconds
    # and the analysis resumed after the affect replica was replaced
    assert reports[-1].windows > 0
    print(f"\nfaults: killed {killed}; retries {hooks.retries}; restores {session.music_restores}; "
          f"underrun frames {hooks.underruns}; silent seconds {silent_seconds}; {seconds:.0f} s")
