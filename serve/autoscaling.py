"""Autoscaling the MusicGenerator on music streams per replica: a Ray Serve custom autoscaling policy.

A music replica's load is the streams it holds, not the requests in flight: a stream of the streaming
MusicGen engine keeps a slot of GPU memory and a share of every decoding step whether or not a
request of its session is waiting right now. So each MusicGenerator replica reports two custom
autoscaling metrics (Ray Serve calls its ``record_autoscaling_stats``, see :func:`music_load`):

* ``music_streams`` -- streams open on the replica, those playing the fallback composer included
  (they are sessions the GPU could not take: load to scale for);
* ``music_capacity`` -- streams the replica holds by design: the streaming engine's slots, else the
  app's ``music_streams``.

:class:`MusicStreamsPolicy` asks for ``total streams / (target_fraction x capacity)`` replicas, so a
new replica starts when the replicas are ``target_fraction`` full, before sessions must fall back.
Ray Serve applies the deployment's ``min_replicas``/``max_replicas``, scaling factors and
``upscale_delay_s``/``downscale_delay_s`` around it. Until the replicas have reported, it is Ray's
default policy (ongoing requests). Set in the deployment's ``autoscaling_config``::

    policy: {policy_function: serve.autoscaling:MusicStreamsPolicy, policy_kwargs: {target_fraction: 0.75}}
"""

from __future__ import annotations

from typing import Any

STREAMS_METRIC = "music_streams"
CAPACITY_METRIC = "music_capacity"


def music_load(open_streams: int, capacity: int) -> dict[str, float]:
    """The custom autoscaling metrics of one music replica (see the module doc)."""
    return {STREAMS_METRIC: float(open_streams), CAPACITY_METRIC: float(capacity)}


class MusicStreamsPolicy:
    """Replicas for the music streams open across the deployment (see the module doc)."""

    def __init__(self, target_fraction: float = 0.75) -> None:
        if not 0.0 < target_fraction <= 1.0:
            raise ValueError(f"target_fraction must be in (0, 1], got {target_fraction}")
        self.target_fraction = target_fraction

    def desired(self, streams: dict[Any, float], capacity: dict[Any, float]) -> float | None:
        """Replicas wanted for these per-replica reports (None: no report yet)."""
        per_replica = [c for c in capacity.values() if c > 0]
        if not streams or not per_replica:
            return None
        return sum(streams.values()) / (self.target_fraction * (sum(per_replica) / len(per_replica)))

    def __call__(self, ctx: Any) -> tuple[float, dict[str, Any]]:
        """Ray Serve's policy call: ``ctx`` is a ``ray.serve.config.AutoscalingContext``."""
        metrics = ctx.aggregated_metrics or {}
        wanted = self.desired(metrics.get(STREAMS_METRIC) or {}, metrics.get(CAPACITY_METRIC) or {})
        if wanted is None:
            from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy

            return replica_queue_length_autoscaling_policy(ctx)
        # never below one replica while streams are open: they live in its memory (Ray rounds up)
        return (max(1.0, wanted) if wanted > 0 else 0.0), {}
