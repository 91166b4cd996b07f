"""Ray Serve deployments of the live models: one deployment per kind of model, each scaled on its own.

Thin: each runs the functions of :mod:`pipelines.live.inference` (which hold the logic and are
tested without Ray) on the engines, batched across sessions with ``@serve.batch``. The Python
classes end in ``Deployment`` so they are not mistaken for the engine interfaces they wrap; the
Serve deployment names (config files, metrics, dashboards) are ``FrameEncoder``, ``AudioEncoder``,
``AffectFusion`` and ``MusicGenerator``.

* ``FrameEncoder`` -- picture features (``encode_frames``) and face expressions (``analyze_faces``);
  several sessions' frames go through one encoder call
  (:func:`~pipelines.live.inference.encode_frames_batched`, which keeps each session's pairwise
  features to its own frames).
* ``AudioEncoder`` -- sound features and speech probability of one window
  (:func:`~pipelines.live.inference.encode_audio_window`); batched so a burst of windows costs
  one hop to the worker thread.
* ``AffectFusion`` -- the affect model over the fused window features, one ``predict`` across
  sessions, then each session's mood tracker, which travels with the request: the deployment is
  stateless (:func:`~pipelines.live.inference.affect_steps`).
* ``MusicGenerator`` -- the only stateful one: the music streams of a
  :class:`~pipelines.live.music.StreamTable`. Requests carry the stream id as Serve's
  *multiplexed model id* (``handle.options(multiplexed_model_id=stream_id)``, see
  :mod:`serve.handles`): the replica that opened a stream advertises its id and the router
  sends that stream's later chunks there. The affinity is best effort (Serve falls back to
  another replica when the holder is saturated, or after about a second without a match, or
  when the holder died); a replica that gets a stream it does not hold restores it from the
  request's :class:`~pipelines.live.music.MusicContext` and the session crossfades, so the
  worst case is an audible new piece in the same mood, never an error. Trade-offs: Ray
  reports each advertised stream id (``serve_registered_multiplexed_model_id`` gauge,
  tagged by id), and batching across streams is not possible (Serve splits batches by
  model id) -- fine for the composer, which renders one stream per call anyway.

Every deployment records :data:`serve.metrics.BATCH_SIZE` and :data:`serve.metrics.STAGE_SECONDS`
in its own process, and the same values as Ray metrics (``ray_backscore_*`` on Ray's metrics
export port, tagged with deployment and replica), which is how a cluster scrapes them: the
gateway's ``GET /metrics`` shows the gateway process's registry only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from ray import serve as ray_serve
from ray.serve import metrics as ray_metrics

from engines.settings import settings
from pipelines.analysis.mood import MoodTracker
from pipelines.live.inference import (
    AffectRequest,
    AffectStep,
    affect_steps,
    analyze_faces_batched,
    encode_audio_window,
    encode_frames_batched,
)
from pipelines.live.music import MusicReply, MusicRequest, StreamTable, worker_streams
from serve.autoscaling import music_load
from serve.metrics import (
    _LATENCY_BUCKETS,
    BATCH_SIZE,
    MUSIC_FALLBACKS_TOTAL,
    MUSIC_STREAMS,
    MUSICGEN_FIRST_AUDIO_SECONDS,
    MUSICGEN_MIN_REALTIME,
    MUSICGEN_MOOD_CHANGE_SECONDS,
    MUSICGEN_STEP_SECONDS,
    MUSICGEN_STREAMS_PER_STEP,
    STAGE_SECONDS,
)

log = logging.getLogger(__name__)

_BATCH_BUCKETS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]


#: Model replicas lower their own CPU priority by this much (``BACKSCORE_MODEL_NICENESS``, default 5): on
#: a shared node the gateway's event loop, which paces every session's audio, must win over analysis,
#: which can lag (the session drops the oldest windows) without anyone hearing it.
NICENESS_ENV = "BACKSCORE_MODEL_NICENESS"


def lower_priority() -> int:
    """Apply :data:`NICENESS_ENV` to this process (a Ray worker only); returns the increment applied."""
    import ray._private.worker as ray_worker

    if getattr(ray_worker.global_worker, "mode", None) != ray_worker.WORKER_MODE:
        return 0  # Serve's local testing mode runs deployments in the caller's process: leave it alone
    n = settings().model_niceness
    if n <= 0:
        return 0
    # Linux keeps a nice value per thread: renice every thread of the replica (Ray's and ours;
    # threads started later inherit it from the thread that starts them).
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    applied = 0
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + n))
            applied = n
        except OSError:  # gone, or not permitted: that thread keeps its priority
            continue
    return applied


class _Recorder:
    """Batch sizes and stage seconds into the process registry and Ray's metrics."""

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment
        self._batch = ray_metrics.Histogram("backscore_batch_size", "Requests per batched model call.",
                                            boundaries=_BATCH_BUCKETS)
        self._stage = ray_metrics.Histogram("backscore_stage_seconds", "Time spent per stage in a deployment.",
                                            boundaries=list(_LATENCY_BUCKETS), tag_keys=("stage",))

    def batch(self, n: int) -> None:
        BATCH_SIZE.labels(deployment=self.deployment).observe(n)
        self._batch.observe(n)

    def stage(self, name: str, seconds: float) -> None:
        STAGE_SECONDS.labels(stage=name).observe(seconds)
        self._stage.observe(seconds, tags={"stage": name})


def _configure_batch(method: Any, max_batch_size: int, batch_wait_timeout_s: float) -> None:
    """Set a ``@serve.batch`` method's parameters from deployment arguments."""
    method.set_max_batch_size(max_batch_size)
    method.set_batch_wait_timeout_s(batch_wait_timeout_s)


@ray_serve.deployment(
    name="FrameEncoder",
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=32,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
)
class FrameEncoderDeployment:
    """Picture features and face expressions (see module doc)."""

    def __init__(self, faces: bool = True, max_batch_size: int = 16, batch_wait_timeout_s: float = 0.005) -> None:
        lower_priority()
        from pipelines.analysis.engines import default_engines

        engines = default_engines(faces=faces)
        self._encoder, self._faces = engines.frame, engines.faces
        self._metrics = _Recorder("FrameEncoder")
        _configure_batch(self._encode_batch, max_batch_size, batch_wait_timeout_s)
        _configure_batch(self._faces_batch, max_batch_size, batch_wait_timeout_s)

    def feature_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(frame columns, face columns -- empty without a face analyzer)."""
        faces = tuple(self._faces.feature_names) if self._faces is not None else ()
        return tuple(self._encoder.feature_names), faces

    def ping(self) -> str:
        return "ok"

    async def encode_frames(self, rgb: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        result: np.ndarray = await self._encode_batch((rgb, previous))
        return result

    async def analyze_faces(self, gray: np.ndarray) -> np.ndarray:
        if self._faces is None:
            return np.zeros((len(gray), 0), np.float32)
        result: np.ndarray = await self._faces_batch(gray)
        return result

    @ray_serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _encode_batch(self, items: list[tuple[np.ndarray, np.ndarray | None]]) -> list[np.ndarray]:
        self._metrics.batch(len(items))
        t0 = time.perf_counter()
        out = await asyncio.to_thread(encode_frames_batched, self._encoder, items)
        self._metrics.stage("serve_frame_encode", time.perf_counter() - t0)
        return out

    @ray_serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _faces_batch(self, items: list[np.ndarray]) -> list[np.ndarray]:
        self._metrics.batch(len(items))
        t0 = time.perf_counter()
        assert self._faces is not None  # analyze_faces answers without a face analyzer
        out = await asyncio.to_thread(analyze_faces_batched, self._faces, items)
        self._metrics.stage("serve_faces", time.perf_counter() - t0)
        return out


@ray_serve.deployment(
    name="AudioEncoder",
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=32,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
)
class AudioEncoderDeployment:
    """Sound features and speech probability of one mono window at the encoder's rate."""

    def __init__(self, max_batch_size: int = 16, batch_wait_timeout_s: float = 0.005) -> None:
        lower_priority()
        from pipelines.analysis.engines import default_engines

        self._encoder = default_engines(faces=False).audio
        self._metrics = _Recorder("AudioEncoder")
        _configure_batch(self._batch, max_batch_size, batch_wait_timeout_s)

    def feature_names(self) -> tuple[tuple[str, ...], int]:
        return tuple(self._encoder.feature_names), int(self._encoder.sample_rate)

    def ping(self) -> str:
        return "ok"

    async def encode_audio(self, mono: np.ndarray) -> tuple[np.ndarray, float]:
        result: tuple[np.ndarray, float] = await self._batch(mono)
        return result

    def _encode_many(self, items: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        return [encode_audio_window(self._encoder, x) for x in items]

    @ray_serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _batch(self, items: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        self._metrics.batch(len(items))
        t0 = time.perf_counter()
        out = await asyncio.to_thread(self._encode_many, items)
        self._metrics.stage("serve_audio_encode", time.perf_counter() - t0)
        return out


@ray_serve.deployment(
    name="AffectFusion",
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
)
class AffectFusionDeployment:
    """Affect of fused window features plus the session's rolling mood (stateless; see module doc)."""

    def __init__(self, max_batch_size: int = 32, batch_wait_timeout_s: float = 0.005) -> None:
        lower_priority()
        from pipelines.analysis.engines import default_engines

        self._model = default_engines(faces=False).affect
        self._metrics = _Recorder("AffectFusion")
        _configure_batch(self._batch, max_batch_size, batch_wait_timeout_s)

    def ping(self) -> str:
        return "ok"

    async def affect(self, features: Mapping[str, float], tracker: MoodTracker, t_s: float) -> AffectStep:
        result: AffectStep = await self._batch((features, tracker, t_s))
        return result

    @ray_serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _batch(self, items: list[AffectRequest]) -> list[AffectStep]:
        self._metrics.batch(len(items))
        t0 = time.perf_counter()
        out = affect_steps(self._model, items)  # a few microseconds per window: not worth a thread hop
        self._metrics.stage("serve_affect", time.perf_counter() - t0)
        return out


class _StreamLease:
    """What the multiplexed loader returns: unloading it (Serve's LRU) closes the stream."""

    def __init__(self, table: StreamTable, stream_id: str) -> None:
        self._table, self.stream_id, self._open = table, stream_id, True

    def __del__(self) -> None:  # Serve calls it on LRU unload; the GC may call it again
        if self._open:
            self._open = False
            self._table.close(self.stream_id)


_MAX_STREAMS = 256


class _MusicRecorder:
    """The music worker's streams and, for the streaming MusicGen engine, its scheduler's figures
    (:meth:`~engines.musicgen.scheduler.MusicGenScheduler.drain_metrics`), at most once a second,
    into the process registry and Ray's metrics."""

    def __init__(self, table: StreamTable) -> None:
        self.table = table
        self._last = 0.0
        g, h = ray_metrics.Gauge, ray_metrics.Histogram
        self._streams = g("backscore_music_streams", "Music streams a worker holds.", tag_keys=("engine",))
        self._step = g("backscore_musicgen_step_seconds", "Mean seconds per decoding step.")
        self._per_step = g("backscore_musicgen_streams_per_step", "Mean streams per step.")
        self._rtf = g("backscore_musicgen_min_realtime_factor", "Slowest stream's real-time factor.")
        self._first = h("backscore_musicgen_first_audio_seconds", "Join to first audio.",
                        boundaries=[0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0])
        self._change = h("backscore_musicgen_mood_change_seconds", "New text to its audio.",
                         boundaries=[0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0])

    def fallback(self, engine: str) -> None:
        MUSIC_FALLBACKS_TOTAL.labels(engine=engine).inc()

    def maybe_record(self) -> None:
        now = time.monotonic()
        if now - self._last < 1.0:
            return
        self._last = now
        for name, n in self.table.counts().items():
            MUSIC_STREAMS.labels(engine=name).set(n)
            self._streams.set(n, tags={"engine": name})
        scheduler = getattr(self.table.engine, "scheduler", None)
        if scheduler is None:
            return
        m = scheduler.drain_metrics()
        if m["steps"]:
            MUSICGEN_STEP_SECONDS.set(m["step_seconds"])
            MUSICGEN_STREAMS_PER_STEP.set(m["streams_per_step"])
            self._step.set(m["step_seconds"])
            self._per_step.set(m["streams_per_step"])
        if m["min_realtime_factor"] is not None:
            MUSICGEN_MIN_REALTIME.set(m["min_realtime_factor"])
            self._rtf.set(m["min_realtime_factor"])
        for v in m["first_audio_s"]:
            MUSICGEN_FIRST_AUDIO_SECONDS.observe(v)
            self._first.observe(v)
        for v in m["mood_change_s"]:
            MUSICGEN_MOOD_CHANGE_SECONDS.observe(v)
            self._change.observe(v)


@ray_serve.deployment(
    name="MusicGenerator",
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=16,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 4},
)
class MusicGeneratorDeployment:
    """Music streams keyed by stream id (multiplexed: see module doc)."""

    def __init__(self, engine: str = "procedural", weights: str | None = None, idle_s: float = 120.0,
                 threads: int = 2, streams: int | None = None) -> None:
        lower_priority()
        from engines.registry import create_music_engine

        music = create_music_engine(engine, weights, streams=streams)
        self.streams = worker_streams(music, max_streams=max(_MAX_STREAMS, 2 * (streams or 0)), idle_s=idle_s)
        scheduler = getattr(music, "scheduler", None)
        if scheduler is not None:  # streaming MusicGen: each waiting stream holds a thread until its audio is made
            threads = max(threads, scheduler.capacity + 4)
        #: Streams this replica holds by design (:mod:`serve.autoscaling`).
        self.capacity = scheduler.capacity if scheduler is not None else (streams or _MAX_STREAMS)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="music")
        self._metrics = _Recorder("MusicGenerator")
        self._music_metrics = _MusicRecorder(self.streams)
        self.engine_name = engine

    def ping(self) -> str:
        return "ok"

    @ray_serve.multiplexed(max_num_models_per_replica=_MAX_STREAMS)
    async def _lease(self, stream_id: str) -> _StreamLease:
        return _StreamLease(self.streams, stream_id)

    async def music(self, request: MusicRequest) -> MusicReply:
        sid = request.context.stream_id
        routed = ray_serve.get_multiplexed_model_id()
        if routed and routed != sid:
            raise ValueError(f"request for stream {sid!r} routed as {routed!r}")
        await self._lease(sid)  # advertise the stream on this replica (affinity for its next chunks)
        self._metrics.batch(1)
        t0 = time.perf_counter()
        reply = await asyncio.get_running_loop().run_in_executor(self._pool, self.streams.generate, request)
        self._metrics.stage("serve_music", time.perf_counter() - t0)
        if reply.fallback and reply.restored is False and reply.context.generated == len(reply.audio):
            self._music_metrics.fallback(reply.engine)
        self._music_metrics.maybe_record()
        return reply

    async def close_music(self, stream_id: str) -> None:
        self.streams.close(stream_id)

    def open_streams(self) -> int:
        return len(self.streams)

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Ray Serve's custom autoscaling metrics: streams open here and the replica's capacity
        (:class:`serve.autoscaling.MusicStreamsPolicy` scales on them)."""
        return music_load(len(self.streams), self.capacity)

    def __del__(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
