"""What the HTTP API accepts and answers, besides the video upload: the typed parts of its requests.

Job options arrive as query parameters and become a validated
:class:`~pipelines.options.JobOptions` through :meth:`serve.core.GatewayCore.job_options` (the
same parser the CLI, gRPC and WebRTC use). Answers are JSON (the timeline schema of
``backscore analyze``, recommendations) or media (MP4, WAV), errors ``{"error": {...}}``
(:mod:`serve.http.errors`).
"""

from __future__ import annotations

from typing import Any, Literal

from pipelines.errors import OptionError

#: What ``POST /v1/score`` returns: the scored video, the BGM alone as WAV, the score as MIDI, or the BGM's
#: stems (a zip of WAVs + the timeline JSON).
ScoreOutput = Literal["video", "bgm", "midi", "stems"]

#: The name of the multipart field that carries the video.
UPLOAD_FIELD = "file"

#: OpenAPI description of the upload body of every job endpoint (the body is parsed by hand, streamed).
UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [UPLOAD_FIELD],
    "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary", "description": "the video"}}}}}}}

SCORE_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {
    "video/mp4": {}, "audio/wav": {}, "audio/midi": {}, "application/zip": {}}}}


def check_score_output(output: ScoreOutput, stream: bool, loudness: str | None = None) -> None:
    """``stream=true`` streams the BGM as it is composed, so it needs ``output=bgm`` and no loudness preset
    (a preset is measured on the whole mix)."""
    if stream and output != "bgm":
        raise OptionError("stream=true needs output=bgm")
    if stream and loudness:
        raise OptionError("loudness presets apply to the whole mix: not with stream=true")
