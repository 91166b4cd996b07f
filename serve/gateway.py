"""The ingress deployment, :data:`Gateway`: one Ray Serve replica wiring HTTP, gRPC and WebRTC together.

The replica builds the live models -- ``models="ray"``: handles to the model deployments of
:mod:`serve.deployments` (:class:`~serve.handles.DeploymentModels`); ``"local"``: the engines in
this replica (:class:`~pipelines.live.models.InProcessModels`) -- then the transport-independent
:class:`~serve.core.GatewayCore` around them. Serve asks it for the FastAPI app
(:mod:`serve.http.router`, which mounts the WebRTC routes of :mod:`serve.webrtc`), and routes the
gRPC methods of ``backscore.v1.Backscore`` to the methods it inherits from
:class:`~serve.grpc.servicer.GrpcMethods`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from ray import serve as ray_serve

from pipelines.clock import Clock
from pipelines.live.admission import AdmissionOptions, AdmissionPolicy
from pipelines.live.models import InProcessModels, LiveModels
from pipelines.live.options import LiveOptions
from serve.core import GatewayCore
from serve.grpc.servicer import GrpcMethods
from serve.http.router import build_app
from serve.webrtc import RayDirectory

log = logging.getLogger(__name__)

#: Where the live models run: Serve deployments, or the engines inside the gateway replica.
MODEL_PLACEMENTS = ("ray", "local")


class _GatewayReplica(GatewayCore, GrpcMethods):
    """The Serve replica: builds the models, then :class:`GatewayCore`; Serve builds the FastAPI app after."""

    async def __init__(  # type: ignore[misc]
        self,
        models: str = "ray",
        frame: Any = None,
        audio: Any = None,
        affect: Any = None,
        music: Any = None,
        *,
        faces: bool = True,
        max_upload_mb: float | None = None,
        job_threads: int = 2,
        max_pending_jobs: int = 8,
        libraries: dict[str, str] | None = None,
        engine: str = "procedural",
        weights: str | None = None,
        style: str | None = None,
        seed: int = 0,
        mix_original: bool = False,
        tmp_dir: str | None = None,
        warm_catalog: bool = True,
        max_live_sessions: int = 8,
        max_uploads: int | None = None,
        live_workers: int = 0,
        live_admission: dict[str, Any] | None = None,
        max_active_jobs: int = 4,
        max_stored_jobs: int = 32,
        job_ttl_s: float = 3600.0,
    ) -> None:
        live = LiveOptions(style=style, seed=seed, mix_original=mix_original)
        readiness: Callable[[], Awaitable[dict[str, bool]]] | None = None
        impl: LiveModels
        if models == "ray":
            from serve.handles import DeploymentModels

            if None in (frame, audio, affect, music):
                raise ValueError('models="ray" needs the four deployment handles (use serve.app.build_app)')
            handles = await DeploymentModels.connect(frame, audio, affect, music)
            impl = handles

            async def ping_all() -> dict[str, bool]:
                async def one(h: Any) -> bool:
                    try:
                        return bool(await asyncio.wait_for(h.ping.remote(), timeout=2.0) == "ok")
                    except Exception:
                        return False

                items = list(handles.handles().items())
                states = await asyncio.gather(*(one(h) for _, h in items))
                return {name: s for (name, _), s in zip(items, states, strict=True)}

            readiness = ping_all
        elif models == "local":
            from engines.registry import create_music_engine

            impl = InProcessModels.default(faces=faces, music=create_music_engine(engine, weights))
        else:
            raise ValueError(f"models must be one of {', '.join(MODEL_PLACEMENTS)}, got {models!r}")
        GatewayCore.__init__(self, impl, models_kind=models, max_upload_mb=max_upload_mb, job_threads=job_threads,
                             max_pending_jobs=max_pending_jobs, libraries=libraries, engine=engine, weights=weights,
                             live_options=live, tmp_dir=tmp_dir, readiness=readiness,
                             warm_catalog=warm_catalog, max_live_sessions=max_live_sessions,
                             max_uploads=max_uploads,
                             session_directory=RayDirectory(),  # a hang-up may reach another replica
                             live_workers=live_workers, faces=faces,
                             # admission from measured headroom when asked for, and always for live workers
                             live_admission=admission_factory(live_admission, max_live_sessions)
                             if live_admission is not None or live_workers > 0 else None,
                             max_active_jobs=max_active_jobs, max_stored_jobs=max_stored_jobs, job_ttl_s=job_ttl_s)
        await self.start()  # the live worker processes, if any, and the event loop's monitor
        # Everything loaded so far (Ray, FastAPI, aiortc, numpy, ...) lives as long as the replica: move it out of
        # the garbage collector's sight, so a full collection (~0.1 s over these ~300k objects on the dev machine)
        # does not stall the loop that paces every session's audio (gc.freeze, as CPython's docs suggest).
        gc.collect()
        gc.freeze()
        log.info("gateway ready: models=%s", models)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_app(self)

    async def healthz(self) -> dict[str, Any]:
        """``GET /healthz``'s body, for handle calls (tests, other deployments)."""
        return (await self.health())[1]

    async def __del__(self) -> None:
        await self.shutdown()


def admission_factory(fields: dict[str, Any] | None, max_sessions: int) -> Callable[[Clock], AdmissionPolicy]:
    """Each live worker's :class:`AdmissionPolicy`: ``fields`` over the defaults, at most ``max_sessions``
    (an :class:`~pipelines.errors.OptionError` for a bad field, at start)."""
    defaults = {"max_sessions": max_sessions, "fallback_sessions": min(2, max_sessions)}
    options = AdmissionOptions(**{**defaults, **(fields or {})})
    return lambda clock: AdmissionPolicy(options, clock)


Gateway = ray_serve.deployment(
    name="Gateway",
    ray_actor_options={"num_cpus": 0.5},
    # Async and light: the bounds that matter are its own (job pool, upload slots, live sessions), so
    # health checks, metrics and signalling never queue behind uploads.
    max_ongoing_requests=128,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
)(ray_serve.ingress()(_GatewayReplica))
