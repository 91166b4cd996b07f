"""What the async job API (``/v1/jobs``) accepts and answers: typed requests and responses, validated here.

A job is asked for with :class:`JobRequest`'s fields -- as query parameters of a multipart upload (the
video in the field ``file``, like ``/v1/score``), or as a JSON body (``from_job``: no upload, the video and
analysis of an earlier job are reused). A bad field is 422 ``ValidationError``; a bad value of an option
the whole service shares (style, seed, loudness, library, engine) the same 400 ``OptionError`` /
``LibraryError`` as everywhere (:mod:`pipelines.options`). Answers are :class:`JobStatus` (the job's state,
progress and result URLs) and :class:`JobThumbnails`; server-sent events carry :class:`JobStatus` too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.jobs import OUTPUTS, JobView
from pipelines.jobs.work import DEFAULT_OUTPUTS
from serve.http.errors import ApiError

JobKind = Literal["analyze", "recommend", "score"]
#: Options a job made ``from_job`` takes from its source when it does not give them itself.
INHERITED = ("style", "seed", "engine", "loudness", "library", "outputs", "top_k", "per_segment")


class JobRequest(BaseModel):
    """The fields of ``POST /v1/jobs`` (all optional; see the README's "Async jobs")."""

    model_config = ConfigDict(extra="forbid")
    kind: JobKind = "score"
    #: Reuse this job's upload and analysis: only the music, the mix and the outputs are made again.
    from_job: str | None = Field(default=None, min_length=1, max_length=64)
    style: str | None = None
    seed: int | None = None
    #: Music engine: ``procedural`` or the server's own (e.g. ``musicgen``).
    engine: str | None = None
    loudness: str | None = None
    #: A library track to put under the video instead of composing (score).
    track: int | None = Field(default=None, ge=1)
    library: str | None = None
    top_k: int | None = Field(default=None, ge=1, le=100)
    per_segment: bool | None = None
    faces: bool | None = None
    #: Score files to make: video, bgm, timeline, plot, midi, stems (default: the first four).
    outputs: list[str] | None = None
    #: Keyframe thumbnails along the video (default true).
    thumbnails: bool | None = None

    @field_validator("outputs", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("outputs")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            bad = [v for v in value if v not in OUTPUTS]
            if bad or not value:
                raise ValueError(f"choose some of {', '.join(OUTPUTS)} (got {', '.join(bad) or 'none'})")
            value = list(dict.fromkeys(value))
        return value

    def given(self) -> dict[str, Any]:
        """The fields the client set."""
        return self.model_dump(exclude_unset=True)

    def resolved(self, source: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every option of this job's kind: the client's, else (``from_job``) the source job's, else the default."""
        given = self.given()
        base = {k: v for k, v in (source or {}).items() if k in INHERITED}
        out: dict[str, Any] = {"faces": True, "thumbnails": True, "library": "catalog"}
        if self.kind == "score":
            out.update(style="auto", seed=0, engine=None, loudness=None, outputs=list(DEFAULT_OUTPUTS), track=None)
        if self.kind == "recommend":
            out.update(top_k=5, per_segment=False)
        for k in out:
            if k in given and given[k] is not None:
                out[k] = given[k]
            elif k in base and base[k] is not None:
                out[k] = base[k]
        return out


def parse_job_request(fields: dict[str, Any]) -> JobRequest:
    """A :class:`JobRequest` from query parameters and/or a JSON object (422 ``ValidationError`` if malformed)."""
    try:
        return JobRequest.model_validate(fields)
    except ValidationError as exc:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        raise ApiError(422, "ValidationError",
                       "; ".join(f"{'.'.join(map(str, d['loc'])) or 'body'}: {d['msg']}" for d in details)) from None


class JobResultFile(BaseModel):
    url: str
    media_type: str
    size: int


class JobError(BaseModel):
    type: str
    message: str


class JobStatus(BaseModel):
    """A job as ``GET /v1/jobs/{id}`` shows it (and each server-sent event carries it)."""

    id: str
    kind: str
    #: queued, running, done, failed or cancelled.
    state: str
    #: The stage in progress (or the last one): thumbnails, analyse, compose, mix, mux, library, rank, write.
    stage: str | None
    #: Overall progress 0..1; never goes down; 1 when done.
    fraction: float
    #: Seconds left, estimated from the time so far (None until 2 % is done).
    eta_s: float | None
    #: The stages this job ran, in order (a job made from another's analysis has no analyse stage).
    stages_run: list[str]
    error: JobError | None
    #: Wall-clock times (Unix seconds).
    created_at: float
    started_at: float | None
    finished_at: float | None
    #: When the job and its files are removed (a finished job; then 410).
    expires_at: float | None
    from_job: str | None
    filename: str
    options: dict[str, Any]
    #: Role (video, bgm, timeline, plot, midi, stem_<part>, recommendations) -> where to fetch it.
    results: dict[str, JobResultFile]
    #: A recommend job's answer; each recommendation has a ``preview_url``.
    result: dict[str, Any] | None
    url: str
    events_url: str
    thumbnails_url: str


class JobThumbnail(BaseModel):
    t: float
    url: str


class JobThumbnails(BaseModel):
    id: str
    state: str
    #: Keyframes along the video, in time order (empty until the thumbnails stage has run).
    thumbnails: list[JobThumbnail]


def job_urls(base: str, job_id: str) -> dict[str, str]:
    root = f"{base}/v1/jobs/{job_id}"
    return {"url": root, "events_url": f"{root}/events", "thumbnails_url": f"{root}/thumbnails"}


def job_status(view: JobView, base: str = "") -> dict[str, Any]:
    """The JSON of :class:`JobStatus` for ``view`` (``base``: the app's root path, for the URLs)."""
    urls = job_urls(base, view.id)
    result: dict[str, Any] | None = None
    if view.data is not None:
        result = dict(view.data)

        def with_preview(rec: dict[str, Any]) -> dict[str, Any]:
            return {**rec, "preview_url": f"{urls['url']}/previews/{rec['track_id']}.wav"}

        if "recommendations" in result:
            result["recommendations"] = [with_preview(r) for r in result["recommendations"]]
        if "segments" in result:
            result["segments"] = [{**s, "recommendations": [with_preview(r) for r in s["recommendations"]]}
                                  for s in result["segments"]]
    return {
        "id": view.id, "kind": view.kind, "state": view.state, "stage": view.stage, "fraction": view.fraction,
        "eta_s": view.eta_s, "stages_run": list(view.stages_run), "error": view.error,
        "created_at": view.created_at, "started_at": view.started_at, "finished_at": view.finished_at,
        "expires_at": view.expires_at, "from_job": view.from_job, "filename": view.filename,
        "options": view.options,
        "results": {role: {"url": f"{urls['url']}/results/{f.name}", "media_type": f.media_type, "size": f.size}
                    for role, f in view.results.items()},
        "result": result, **urls,
    }


def job_thumbnails(view: JobView, base: str = "") -> dict[str, Any]:
    root = job_urls(base, view.id)["url"]
    return {"id": view.id, "state": view.state,
            "thumbnails": [{"t": t, "url": f"{root}/results/{name}"} for t, name in view.thumbnails]}


#: OpenAPI description of ``POST /v1/jobs``'s two bodies.
JOB_BODY: dict[str, Any] = {"requestBody": {"required": False, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the video (options as query parameters)"}}}},
    "application/json": {"schema": JobRequest.model_json_schema()},
}}}
