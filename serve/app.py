"""The Serve application: ``serve run serve.app:build_app`` or ``import_path: serve.app:build_app`` in a config.

Arguments (``serve run serve.app:build_app models=local`` or the config's ``args:``):

* ``models`` -- where the live models run: ``"ray"`` (default): the gateway calls the model
  deployments of :mod:`serve.deployments` (each scaled on its own); ``"local"``: the engines run
  inside the gateway replica (the smallest setup: one replica, no other deployment). ``backend``
  is accepted as its old name.
* ``engine`` / ``weights`` -- the music engine (``procedural`` or ``musicgen``) and its weights
  directory (MusicGen also reads ``BACKSCORE_MUSICGEN_WEIGHTS``).
* ``faces`` -- run the face-expression model (default true).
* ``max_upload_mb``, ``max_uploads``, ``job_threads``, ``max_pending_jobs``, ``libraries`` (name -> SQLite
  path, besides ``catalog``), ``style``, ``seed``, ``mix_original``, ``tmp_dir`` -- gateway options.
* ``max_active_jobs``, ``max_stored_jobs``, ``job_ttl_s`` -- the async jobs (``/v1/jobs``): queued or
  running at once, kept (running or finished), and how long a finished job's results are kept (seconds).
* ``batch`` -- ``{"max_batch_size": n, "batch_wait_timeout_s": s}`` for the batched deployments.

Per-deployment resources and autoscaling come from the config's ``deployments:`` section
(``deploy/local.yaml``, ``deploy/gpu.yaml``), over the defaults in :mod:`serve.deployments`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from ray.serve import Application
from ray.serve.deployment import Deployment

from serve import deployments
from serve.gateway import Gateway


class BatchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.005


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Where the live models run (``backend``: the name before 0.2, still accepted).
    models: Literal["ray", "local"] = Field(default="ray", validation_alias=AliasChoices("models", "backend"))
    engine: str = "procedural"
    weights: str | None = None
    faces: bool = True
    max_upload_mb: float | None = None
    job_threads: int = 2
    max_pending_jobs: int = 8
    libraries: dict[str, str] | None = None
    style: str | None = None
    seed: int = 0
    mix_original: bool = False
    tmp_dir: str | None = None
    #: Build the built-in catalog in the background at start (else on the first recommend).
    warm_catalog: bool = True
    music_idle_s: float = 120.0
    #: Live streams one MusicGenerator replica of the streaming MusicGen engine holds (GPU memory is
    #: allocated for them up front; beyond them sessions get the procedural composer).
    music_streams: int = Field(default=64, ge=1)
    #: Live sessions per gateway replica, WebRTC and gRPC Stream together; more get 503 / UNAVAILABLE (a hard
    #: cap: with ``live_workers`` the workers' measured headroom usually refuses first; BENCHMARKS.md "Live serving").
    max_live_sessions: int = Field(default=8, ge=1)
    #: WebRTC sessions run in this many worker processes per gateway replica, each with the engines in
    #: process (0: in the gateway's own process, with the models where ``models`` says). On a 2-core
    #: machine 3 workers carry 12-15 sessions where the gateway alone carried 8 (BENCHMARKS.md "Live serving").
    live_workers: int = Field(default=0, ge=0, le=64)
    #: Admission of live sessions from measured headroom: each live worker's, and the gateway's own for its gRPC
    #: ``Stream`` calls (the fields of :class:`pipelines.live.admission.AdmissionOptions`; ``{}``: the defaults;
    #: unset: the defaults for live workers, the slot count alone for a gateway without them).
    live_admission: dict[str, Any] | None = None
    #: HTTP uploads per gateway replica at once (default ``BACKSCORE_MAX_UPLOADS``); more get 503 at once.
    max_uploads: int | None = Field(default=None, ge=1)
    #: Async jobs (``/v1/jobs``) per gateway replica: queued or running (more: 503), kept with their results (more:
    #: 503 until one expires or is deleted), and seconds a finished job's results are kept.
    max_active_jobs: int = Field(default=4, ge=1)
    max_stored_jobs: int = Field(default=32, ge=1)
    job_ttl_s: float = Field(default=3600.0, gt=0)
    batch: BatchArgs = BatchArgs()


def _deployment(obj: object) -> Deployment:
    assert isinstance(obj, Deployment), obj
    return obj


def _bool(v: Any) -> Any:
    """``serve run ... faces=false`` passes strings."""
    if isinstance(v, str) and v.lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.lower() in ("true", "1", "yes")
    return v


def build_app(args: dict[str, Any]) -> Application:
    a = AppArgs.model_validate({k: _bool(v) for k, v in (args or {}).items()})
    gateway_kw: dict[str, Any] = {
        "faces": a.faces, "max_upload_mb": a.max_upload_mb, "job_threads": a.job_threads,
        "max_pending_jobs": a.max_pending_jobs, "libraries": a.libraries, "engine": a.engine, "weights": a.weights,
        "style": a.style, "seed": a.seed, "mix_original": a.mix_original, "tmp_dir": a.tmp_dir,
        "warm_catalog": a.warm_catalog, "max_live_sessions": a.max_live_sessions,
        "max_uploads": a.max_uploads, "live_workers": a.live_workers,
        "live_admission": a.live_admission, "max_active_jobs": a.max_active_jobs,
        "max_stored_jobs": max(a.max_stored_jobs, a.max_active_jobs), "job_ttl_s": a.job_ttl_s,
    }
    if a.models == "local":
        return Gateway.bind("local", **gateway_kw)
    wait = a.batch.batch_wait_timeout_s
    size = a.batch.max_batch_size
    d = deployments
    frame = _deployment(d.FrameEncoderDeployment).bind(faces=a.faces, max_batch_size=size, batch_wait_timeout_s=wait)
    audio = _deployment(d.AudioEncoderDeployment).bind(max_batch_size=size, batch_wait_timeout_s=wait)
    affect = _deployment(d.AffectFusionDeployment).bind(max_batch_size=2 * size, batch_wait_timeout_s=wait)
    music = _deployment(d.MusicGeneratorDeployment).bind(engine=a.engine, weights=a.weights,
                                                         idle_s=a.music_idle_s, streams=a.music_streams)
    return Gateway.bind("ray", frame, audio, affect, music, **gateway_kw)
