"""The MusicGenerator scales on music streams per replica (serve/autoscaling.py), not on requests in flight.

The policy's arithmetic on Ray's own ``AutoscalingContext``, and a real Ray Serve deployment: a
MusicGenerator whose replicas hold 2 streams each, with a request target so high that Ray's default
policy would never add a replica. Opening 3 streams (each request over in a moment, the streams staying
open on the replica) must bring a second replica; closing them lets it go again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from engines.base import MoodControl
from serve.autoscaling import CAPACITY_METRIC, STREAMS_METRIC, MusicStreamsPolicy, music_load
from tests.serve.ray_cluster import start_local_ray

pytest.importorskip("ray")


def _context(metrics: dict[str, dict[str, float]] | None, *, replicas: int = 1, requests: float = 0.0) -> Any:
    from ray.serve._private.common import DeploymentID
    from ray.serve.config import AutoscalingConfig, AutoscalingContext

    return AutoscalingContext(
        deployment_id=DeploymentID(name="MusicGenerator", app_name="app"), deployment_name="MusicGenerator",
        app_name="app", current_num_replicas=replicas, target_num_replicas=replicas,
        running_replicas=[], total_num_requests=requests, total_queued_requests=0.0,
        aggregated_metrics=metrics, raw_metrics=None, capacity_adjusted_min_replicas=1,
        capacity_adjusted_max_replicas=8, policy_state={}, last_scale_up_time=None, last_scale_down_time=None,
        current_time=time.time(), config=AutoscalingConfig(min_replicas=1, max_replicas=8,
                                                          target_ongoing_requests=4))


def test_the_policy_wants_replicas_for_the_streams_open() -> None:
    policy = MusicStreamsPolicy(target_fraction=0.75)
    both = {"r1": music_load(192, 256), "r2": music_load(100, 256)}
    metrics = {name: {r: load[name] for r, load in both.items()} for name in (STREAMS_METRIC, CAPACITY_METRIC)}
    wanted, _ = policy(_context(metrics, replicas=2, requests=3.0))
    assert wanted == pytest.approx(292 / 192)  # 292 streams at 3/4 of 256 per replica
    idle = {STREAMS_METRIC: {"r1": 0.0}, CAPACITY_METRIC: {"r1": 256.0}}
    assert policy(_context(idle))[0] == 0.0
    few = {STREAMS_METRIC: {"r1": 3.0}, CAPACITY_METRIC: {"r1": 256.0}}
    assert policy(_context(few))[0] == 1.0  # open streams keep their replica
    # before any replica reports: Ray's default policy on ongoing requests (8 requests / 4 per replica)
    assert policy(_context(None, replicas=1, requests=8.0))[0] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="target_fraction"):
        MusicStreamsPolicy(target_fraction=0.0)


@pytest.fixture(scope="module")
def music_app() -> Iterator[Any]:
    import ray
    from ray import serve as ray_serve

    from serve import deployments as d

    start_local_ray(4, {"OMP_NUM_THREADS": "1"})
    ray_serve.start(http_options={"host": "127.0.0.1", "port": 0})
    scaling = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1000, "metrics_interval_s": 0.5,
               "look_back_period_s": 1.0, "upscale_delay_s": 0.0, "downscale_delay_s": 1.0,
               "policy": {"policy_function": "serve.autoscaling:MusicStreamsPolicy",
                          "policy_kwargs": {"target_fraction": 1.0}}}
    app = d.MusicGeneratorDeployment.options(autoscaling_config=scaling).bind(engine="procedural", streams=2)
    handle = ray_serve.run(app, name="music-scaling", route_prefix=None)
    try:
        yield handle
    finally:
        ray_serve.shutdown()
        ray.shutdown()


def _running_replicas() -> int:
    from ray import serve as ray_serve

    status = ray_serve.status().applications["music-scaling"].deployments["MusicGenerator"]
    return int(status.replica_states.get("RUNNING", 0))


def _wait_for(replicas: int, timeout_s: float = 90.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if _running_replicas() == replicas:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise AssertionError(f"still {_running_replicas()} MusicGenerator replicas, not {replicas}, after {timeout_s} s")


@pytest.mark.slow
def test_a_replica_is_added_when_streams_fill_the_first_and_removed_when_they_close(music_app: Any) -> None:
    from pipelines.live.music import MusicContext, MusicRequest

    calm = MoodControl(valence=0.3, arousal=-0.4, emotion="relaxing")
    assert _running_replicas() == 1
    sids = [f"scale-{i}" for i in range(3)]
    for sid in sids:  # three streams on a replica that holds two; every request is over in a moment
        reply = music_app.options(multiplexed_model_id=sid).music.remote(
            MusicRequest(MusicContext(stream_id=sid, seed=1), calm, 0.5)).result(timeout_s=60)
        assert reply.audio.shape[0] > 0
    first = music_app.options(multiplexed_model_id=sids[0])
    assert first.open_streams.remote().result(timeout_s=30) == 3
    assert first.record_autoscaling_stats.remote().result(timeout_s=30) == {STREAMS_METRIC: 3.0,
                                                                           CAPACITY_METRIC: 2.0}
    _wait_for(2)
    for sid in sids:
        music_app.options(multiplexed_model_id=sid).close_music.remote(sid).result(timeout_s=30)
    _wait_for(1)
