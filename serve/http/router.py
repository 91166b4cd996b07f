"""The HTTP routes of the gateway (OpenAPI at ``/docs``). Routes only: the work is in :mod:`serve.http.serving`.

* ``GET /healthz`` -- ``{"status", "models", "deployments": {name: ready}, "active_sessions", ...}``;
  503 when a deployment does not answer.
* ``GET /metrics`` -- Prometheus exposition of :mod:`serve.metrics` (this process).
* ``POST /v1/analyze`` / ``/v1/recommend`` / ``/v1/score`` -- a video as the multipart field
  ``file``; options as query parameters. ``/v1/score`` returns the scored MP4
  (``output=video``), the BGM as WAV (``output=bgm``), the score as MIDI (``output=midi``) or the
  BGM's stems (``output=stems``: a zip of WAVs + timeline JSON); ``output=bgm&stream=true`` streams
  the WAV as the music is generated (header first, then each chunk). ``loudness=youtube|tiktok|
  broadcast|podcast`` brings the mix to a loudness preset.
* the async job API, ``/v1/jobs`` (:mod:`serve.http.jobs_router`): start a job, watch it (JSON or server-sent
  events), fetch its files, cancel it.
* the WebRTC signalling routes (:func:`serve.webrtc.webrtc_router`) and the demo page at ``/``.

Every route under ``/v1/`` goes through access control first (:mod:`serve.http.access`: browser
origins, ``Authorization: Bearer <key>`` when the server has API keys, per-key quotas); the others
stay open. Errors are JSON ``{"error": {"type", "message"}}`` (:mod:`serve.http.errors`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from pipelines.offline import jobs
from serve.core import GatewayCore
from serve.http.access import AccessControl
from serve.http.errors import install_error_handlers
from serve.http.jobs_router import jobs_router
from serve.http.middleware import RequestMetrics
from serve.http.protocol import SCORE_RESPONSES, UPLOAD_BODY, ScoreOutput, check_score_output
from serve.http.serving import HttpServing
from serve.metrics import exposition
from serve.webrtc import demo_router, webrtc_router


def build_app(core: GatewayCore) -> FastAPI:
    serving = HttpServing(core)
    app = FastAPI(title="backscore", version="0.1.0",
                  description="Adaptive background music for video: mood timeline, recommendations, "
                              "scored video or BGM, and live sessions (WebRTC, gRPC).")
    app.add_middleware(AccessControl, policy=core.access)  # origins, API keys, quotas: before any route
    app.add_middleware(RequestMetrics)  # outermost: counts the requests access control refuses too
    install_error_handlers(app)

    @app.get("/healthz", summary="Liveness/readiness: deployments ready, active sessions")
    async def healthz() -> JSONResponse:
        ok, data = await core.health()
        # degraded: a deployment does not answer yet (starting, or being replaced): ask again shortly
        return JSONResponse(data, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})

    @app.get("/metrics", summary="Prometheus metrics of this process", response_class=Response)
    async def metrics() -> Response:
        body, ctype = exposition()
        return Response(body, media_type=ctype)

    @app.post("/v1/analyze", summary="Mood timeline of a video (timeline JSON)", openapi_extra=UPLOAD_BODY)
    async def analyze(request: Request, faces: bool = True) -> dict[str, Any]:
        return await serving.json_job(request, jobs.analyze_file, core.job_options(faces=faces))

    @app.post("/v1/recommend", summary="Library tracks that fit the video", openapi_extra=UPLOAD_BODY)
    async def recommend(request: Request, top_k: int = Query(5, ge=1, le=100), per_segment: bool = False,
                        library: str = "catalog", faces: bool = True) -> dict[str, Any]:
        options = core.job_options(faces=faces, top_k=top_k, per_segment=per_segment, library=library)
        return await serving.json_job(request, jobs.recommend_file, options)

    @app.post("/v1/score", summary="Score a video: MP4 with the BGM mixed in, or the BGM (WAV, optionally "
                                   "streamed as it is generated)", openapi_extra=UPLOAD_BODY,
              response_class=Response, responses=SCORE_RESPONSES)
    async def score(request: Request, style: str | None = None, seed: int = 0, faces: bool = True,
                    output: ScoreOutput = "video", stream: bool = False, loudness: str | None = None) -> Response:
        options = dataclasses.replace(core.job_options(style=style, seed=seed, faces=faces), loudness=loudness)
        check_score_output(output, stream, options.loudness)
        return await serving.score(request, options, output, stream)

    app.include_router(jobs_router(core))
    app.include_router(webrtc_router(core.webrtc, access=core.access))
    app.include_router(demo_router(), include_in_schema=False)
    return app
