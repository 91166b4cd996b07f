"""Prometheus metrics of the service (base units, ``_total`` / ``_seconds`` names).

All metrics live in one :data:`REGISTRY` that ``GET /metrics`` exposes. Ray Serve's own
metrics (request counts and latencies per deployment, replica queue lengths) are exported by
Ray on its metrics port and complement these; ``deploy/grafana-dashboard.json`` plots both.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

STAGE_SECONDS = Histogram(
    "backscore_stage_seconds", "Time spent per pipeline stage (live: per window or chunk).",
    ["stage"], registry=REGISTRY, buckets=_LATENCY_BUCKETS,
)
REQUEST_SECONDS = Histogram(
    "backscore_request_seconds", "HTTP/gRPC request latency by endpoint.", ["endpoint", "code"],
    registry=REGISTRY, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
REQUESTS_TOTAL = Counter("backscore_requests_total", "Requests by endpoint and status code.",
                         ["endpoint", "code"], registry=REGISTRY)
ACTIVE_SESSIONS = Gauge("backscore_active_sessions", "Live sessions now open.", ["transport"], registry=REGISTRY)
SESSIONS_TOTAL = Counter("backscore_sessions_total", "Live sessions started.", ["transport"], registry=REGISTRY)
UNDERRUNS_TOTAL = Counter("backscore_audio_underruns_total",
                          "Output audio frames that could not be filled with BGM in time.", registry=REGISTRY)
WINDOWS_DROPPED_TOTAL = Counter("backscore_windows_dropped_total",
                                "Analysis windows skipped because analysis fell behind the media.", registry=REGISTRY)
MOOD_CHANGE_SECONDS = Histogram(
    "backscore_mood_change_to_music_seconds",
    "From a confirmed mood change to the new music reaching the play head.",
    registry=REGISTRY, buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0),
)
QUEUE_DEPTH = Gauge("backscore_queue_depth", "Items waiting in a bounded queue.", ["queue"], registry=REGISTRY)
BATCH_SIZE = Histogram("backscore_batch_size", "Requests per batched model call.", ["deployment"],
                       registry=REGISTRY, buckets=(1, 2, 4, 8, 16, 32, 64))


MUSIC_STREAMS = Gauge("backscore_music_streams", "Music streams a music worker holds, by engine.", ["engine"],
                      registry=REGISTRY)
MUSIC_FALLBACKS_TOTAL = Counter("backscore_music_fallbacks_total",
                                "Streams given the fallback engine because the one asked for was busy.",
                                ["engine"], registry=REGISTRY)
MUSICGEN_STEP_SECONDS = Gauge("backscore_musicgen_step_seconds",
                              "Mean seconds per decoding step of the streaming MusicGen scheduler (last interval).",
                              registry=REGISTRY)
MUSICGEN_STREAMS_PER_STEP = Gauge("backscore_musicgen_streams_per_step",
                                  "Mean active streams per decoding step (last interval).", registry=REGISTRY)
MUSICGEN_MIN_REALTIME = Gauge("backscore_musicgen_min_realtime_factor",
                              "Audio made per second by the slowest active stream (below 1: it falls behind).",
                              registry=REGISTRY)
MUSICGEN_FIRST_AUDIO_SECONDS = Histogram(
    "backscore_musicgen_first_audio_seconds", "From a stream joining the scheduler to its first audio.",
    registry=REGISTRY, buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0))
MUSICGEN_MOOD_CHANGE_SECONDS = Histogram(
    "backscore_musicgen_mood_change_seconds",
    "From a stream's new text reaching the scheduler to the first audio made under it.",
    registry=REGISTRY, buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0))


MODEL_RETRIES_TOTAL = Counter(
    "backscore_live_model_retries_total",
    "Model calls of live sessions retried after a failure (a replica lost or restarted), by call.",
    ["call"], registry=REGISTRY)

ANALYSIS_DEGRADED = Gauge(
    "backscore_live_analysis_degraded",
    "Live sessions whose analysis is degraded under load, by level (1: half the frame rate; 2: faces skipped too).",
    ["level"], registry=REGISTRY)


class PrometheusHooks:
    """:class:`pipelines.live.session.LiveHooks` that feed the metrics above."""

    def stage(self, name: str, seconds: float) -> None:
        STAGE_SECONDS.labels(stage=name).observe(seconds)

    def underrun(self) -> None:
        UNDERRUNS_TOTAL.inc()

    def mood_change(self, latency_s: float) -> None:
        MOOD_CHANGE_SECONDS.observe(latency_s)

    def windows_dropped(self, n: int) -> None:
        WINDOWS_DROPPED_TOTAL.inc(n)

    def retry(self, call: str) -> None:
        MODEL_RETRIES_TOTAL.labels(call=call).inc()

    def degraded(self, level: int, previous: int) -> None:
        if previous > 0:
            ANALYSIS_DEGRADED.labels(level=str(previous)).dec()
        if level > 0:
            ANALYSIS_DEGRADED.labels(level=str(level)).inc()


def exposition() -> tuple[bytes, str]:
    """``(body, content_type)`` for ``GET /metrics``."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
LOOP_LAG_SECONDS = Histogram(
    "backscore_event_loop_lag_seconds", "How late the gateway's event loop woke a 50 ms timer (it paces live audio).",
    registry=REGISTRY, buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LOOP_STALLS_TOTAL = Counter("backscore_event_loop_stalls_total",
                            "Times the gateway's event loop went 250 ms or more without running.", registry=REGISTRY)
