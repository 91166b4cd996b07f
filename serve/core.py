"""The gateway's state, without Ray: what the HTTP, gRPC and WebRTC front ends of one replica share.

:class:`GatewayCore` holds the live models (:class:`~pipelines.live.models.LiveModels`: Serve
deployment handles, or the engines in this process), the job pool and per-request folders
(:mod:`serve.jobs`), the async job store (:mod:`pipelines.jobs`), the libraries this server offers,
the live-session defaults and limits, the WebRTC session manager, access control
(:class:`~serve.access.AccessPolicy`: API keys, quotas, origins), health, and the built-in catalog
warmed in the background. The Ray replica (:mod:`serve.gateway`) builds one; tests build one
directly and drive the FastAPI app :func:`serve.http.router.build_app` makes for it with a test client.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from engines.settings import settings
from pipelines.clock import Clock, SystemClock
from pipelines.errors import LibraryError
from pipelines.jobs import JobLimits, JobStore
from pipelines.live.models import InProcessModels, LiveModels
from pipelines.live.options import LiveOptions
from pipelines.live.pacing import FramePacer
from pipelines.live.session import LiveSession
from pipelines.options import JobOptions, check_music_engine
from serve.access import AccessPolicy
from serve.jobs import JobRunner, SessionSlots, Workdirs
from serve.loop_monitor import LoopMonitor
from serve.metrics import ACTIVE_SESSIONS, PrometheusHooks
from serve.webrtc import SessionDirectory, WebRtcManager
from serve.webrtc.worker_pool import LiveWorkerPool
from serve.webrtc.worker_process import HeadroomProbe, WorkerConfig

log = logging.getLogger(__name__)

CATALOG = "catalog"


def active_sessions() -> int:
    """Live sessions open in this process, all transports."""
    return int(sum(s.value for m in ACTIVE_SESSIONS.collect() for s in m.samples if s.name.endswith("sessions")))


class GatewayCore:
    """See the module doc. ``models_kind`` says where the models run (``"ray"`` or ``"local"``)."""

    def __init__(
        self,
        models: LiveModels,
        *,
        models_kind: str = "local",
        max_upload_mb: float | None = None,
        job_threads: int = 2,
        max_pending_jobs: int = 8,
        libraries: dict[str, str] | None = None,
        engine: str = "procedural",
        weights: str | None = None,
        live_options: LiveOptions | None = None,
        tmp_dir: str | None = None,
        readiness: Callable[[], Awaitable[dict[str, bool]]] | None = None,
        warm_catalog: bool = False,
        max_live_sessions: int = 8,
        max_uploads: int | None = None,
        session_directory: SessionDirectory | None = None,
        access: AccessPolicy | None = None,
        live_workers: int = 0,
        faces: bool = True,
        live_admission: Callable[[Clock], Any] | None = None,
        max_active_jobs: int = 4,
        max_stored_jobs: int = 32,
        job_ttl_s: float = 3600.0,
        job_clock: Callable[[], float] | None = None,
    ) -> None:
        self.models = models
        #: API keys, quotas and allowed origins (default: the ``BACKSCORE_*`` variables; none: local mode).
        self.access = access if access is not None else AccessPolicy.from_settings()
        if not self.access.enabled:
            log.info("no API keys configured: local mode (HTTP /v1/* and gRPC open; listen on loopback only)")
        self.models_kind = models_kind
        env = settings()
        if max_upload_mb is None:
            max_upload_mb = env.max_upload_mb
        #: The largest video a client may send (HTTP upload or gRPC message), bytes.
        self.max_upload_bytes = int(max_upload_mb * 2**20)
        self.live_options = live_options or LiveOptions()
        #: Library name -> spec (``"catalog"`` or an SQLite path on this server).
        self.libraries = {CATALOG: CATALOG, **(libraries or {})}
        self.engine, self.weights = engine, weights
        #: Music engines a live session may ask for: the server's and the procedural composer (which is
        #: also what a session gets when the server's engine is busy).
        self.music_engines = tuple(dict.fromkeys([engine, "procedural"]))
        self.workdirs = Workdirs(tmp_dir or env.tmpdir, max_age_s=env.request_timeout_s + env.upload_idle_s + 60)
        self.workdirs.start_sweeper()
        self.jobs = JobRunner(job_threads, max_pending_jobs, timeout_s=env.request_timeout_s)
        #: Async jobs (``/v1/jobs``): at most ``max_active_jobs`` queued or running and ``max_stored_jobs`` kept,
        #: results removed ``job_ttl_s`` after a job ends; their work runs on :attr:`jobs` with the blocking ones.
        self.job_store = JobStore(self.workdirs.root, self.jobs.submit,
                                  JobLimits(max_active_jobs, max_stored_jobs, job_ttl_s, env.request_timeout_s),
                                  clock=job_clock or time.time)
        self.job_store.start_sweeper()
        self._readiness = readiness
        #: Live sessions of this replica, WebRTC and gRPC together: at most ``max_live_sessions``.
        self.live_slots = SessionSlots(max_live_sessions)
        #: The admission policy of the live sessions this process runs itself (gRPC ``Stream`` calls), fed this
        #: process's headroom by :meth:`start` (None: the slot count alone); the live workers have their own.
        self.live_policy: Any = live_admission(SystemClock()) if live_admission is not None else None
        #: gRPC live sessions of this process and their output pacers (their late frames count in the headroom).
        self.grpc_live: dict[str, tuple[LiveSession, FramePacer]] = {}
        self._headroom_tasks: list[asyncio.Task[None]] = []
        self.loop_monitor: LoopMonitor | None = None
        #: HTTP uploads this replica receives at once (each ends by the idle / min-rate limits at worst).
        self.upload_slots = SessionSlots(max_uploads or env.max_uploads, "upload slots")
        #: WebRTC sessions: in this process, or (``live_workers`` > 0) in that many worker processes with the
        #: engines in process (:mod:`serve.webrtc.worker_pool`; started by :meth:`start`).
        self.webrtc: WebRtcManager | LiveWorkerPool
        if live_workers > 0:
            o = self.live_options
            config = WorkerConfig(faces=faces, engine=engine, weights=weights, style=o.style, seed=o.seed,
                                  mix_original=o.mix_original, max_sessions=max_live_sessions,
                                  music_engines=self.music_engines)
            self.webrtc = LiveWorkerPool(config, live_workers, options=o, slots=self.live_slots,
                                         directory=session_directory, admission=live_admission)
        else:
            self.webrtc = WebRtcManager(self.models, self.live_options, hooks=PrometheusHooks(),
                                        max_sessions=max_live_sessions, directory=session_directory,
                                        slots=self.live_slots, music_engines=self.music_engines)
        #: The built-in catalog is built on first use (~2 min on 2 cores): start that now, in the
        #: background, so the first recommend does not wait for it (``warm_catalog=False``: on demand).
        self.catalog_state = "on demand"
        if warm_catalog:
            self.catalog_state = "building"
            threading.Thread(target=self._warm_catalog, name="warm-catalog", daemon=True).start()

    # -- options
    def library_spec(self, name: str) -> str:
        """The spec of the library a client names (empty: the catalog); :class:`LibraryError` if unknown."""
        name = name.strip() or CATALOG
        if name not in self.libraries:
            raise LibraryError(f"unknown library {name!r}; this server has: {', '.join(sorted(self.libraries))}")
        return self.libraries[name]

    def check_music_engine(self, name: str | None) -> None:
        """A live session may only ask for an engine this server runs (:class:`OptionError` otherwise)."""
        check_music_engine(name, self.music_engines)

    def job_options(self, *, style: str | None = None, seed: int = 0, faces: bool = True, top_k: int = 5,
                    per_segment: bool = False, library: str = CATALOG) -> JobOptions:
        """A client's job options with this server's library and music engine (validated)."""
        return JobOptions(style=style, seed=seed, faces=faces, top_k=top_k, per_segment=per_segment,
                          library=self.library_spec(library), engine=self.engine, weights=self.weights)

    # -- health
    async def health(self) -> tuple[bool, dict[str, Any]]:
        deployments = await self._readiness() if self._readiness is not None else {"local": True}
        ok = all(deployments.values())
        return ok, {
            "status": "ok" if ok else "degraded",
            "models": self.models_kind,
            "backend": self.models_kind,  # the same, under its name before 0.2 (kept for existing clients)
            "deployments": deployments,
            "active_sessions": active_sessions(),
            "webrtc": True,
            "grpc": True,
            "catalog": self.catalog_state,
        }

    def _warm_catalog(self) -> None:
        from pipelines.offline import jobs

        try:
            jobs.load_library_cached(CATALOG)
            self.catalog_state = "ready"
        except Exception:
            self.catalog_state = "failed"
            log.exception("building the catalog failed; /v1/recommend will retry on demand")

    # -- lifecycle
    async def start(self) -> None:
        """What needs the event loop: the live worker processes, when there are any, the event loop's monitor, and
        the measuring of this process's headroom for its own live sessions' admission."""
        if isinstance(self.webrtc, LiveWorkerPool):
            await self.webrtc.start()
        probe = HeadroomProbe() if self.live_policy is not None else None
        #: The event loop's watch: its lag metric, stall log, and (with an admission policy) headroom.
        self.loop_monitor = LoopMonitor(on_lag=probe.record_lag if probe is not None else None)
        self.loop_monitor.start()
        if probe is not None:
            self._headroom_tasks = [asyncio.create_task(self._feed_live_policy(probe), name="gateway-headroom")]

    async def _feed_live_policy(self, probe: HeadroomProbe, interval_s: float = 0.5) -> None:
        """Every ``interval_s``: this process's headroom to :attr:`live_policy`, its degrade level to the sessions."""
        from pipelines.live.admission import Headroom

        while True:
            await asyncio.sleep(interval_s)
            h = probe.sample({sid: SimpleNamespace(bgm=pacer) for sid, (_, pacer) in self.grpc_live.items()})
            self.live_policy.observe(Headroom(
                at_s=self.live_policy.clock.now(), sessions=int(h["sessions"]), loop_lag_p95_s=h["loop_lag_p95_s"],
                late_ratio=h["late_ratio"], cpu_busy=h["cpu_busy"], process_cores=h["process_cores"]))
            for session, _ in self.grpc_live.values():
                session.set_degrade(self.live_policy.degrade_level)

    async def shutdown(self) -> None:
        if self.loop_monitor is not None:
            self.loop_monitor.stop()
        for t in self._headroom_tasks:
            t.cancel()
        try:
            await self.webrtc.close_all()
        except Exception:
            log.exception("closing the WebRTC sessions failed")
        if isinstance(self.models, InProcessModels):
            self.models.shutdown()
        self.job_store.shutdown()
        self.jobs.shutdown()
        self.workdirs.stop_sweeper()
