"""Uploads: a video streamed from a multipart body straight to a private folder, under the size limit.

The file part is written as it arrives (never held in memory) and refused as soon as it passes
the limit (:class:`~pipelines.errors.LimitError`: 413) or when its content type is not ``video/*``
or ``application/octet-stream`` (415). Other form fields are ignored but may not be large. A client
that stalls or sends too slowly is dropped (408, :mod:`serve.http.bodies`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request

from pipelines.errors import LimitError
from serve.http.bodies import BodyTimeouts, timed_body
from serve.http.errors import ApiError

#: Non-file form fields (ignored) may not be larger than this.
FIELD_LIMIT = 64 * 1024


@dataclass
class Upload:
    path: str
    filename: str
    content_type: str
    size: int


_ALLOWED_TYPES = re.compile(r"^(video/[\w.+-]+|application/octet-stream)$", re.IGNORECASE)


def _safe_suffix(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"


async def receive_upload(request: Request, directory: str, limit: int, field: str = "file",
                         timeouts: BodyTimeouts | None = None) -> Upload:
    """Stream the multipart field ``field`` of ``request`` into ``directory`` (see module doc); a client
    that stalls or trickles is dropped with 408 (:func:`serve.http.bodies.timed_body`)."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise ApiError(415, "UnsupportedMediaType",
                       f"send the video as multipart/form-data with a {field!r} file field")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + FIELD_LIMIT:
        raise LimitError(f"upload larger than {limit / 2**20:.0f} MB")

    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "name": None, "size": 0}
    found: list[Upload] = []
    sink: list[Any] = []  # the open file of the current file part

    def on_part_begin() -> None:
        state.update(headers={}, name=None, size=0)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if name != field:
            return
        if found:
            raise ApiError(422, "ValidationError", f"more than one {field!r} field")
        if b"filename" not in disp:
            raise ApiError(422, "ValidationError", f"{field!r} must be a file upload")
        part_type = state["headers"].get(b"content-type", b"application/octet-stream").decode("latin-1").strip()
        part_type = part_type.split(";")[0].strip()
        if not _ALLOWED_TYPES.match(part_type):
            raise ApiError(415, "UnsupportedMediaType",
                           f"{field!r} has content type {part_type!r}; expected video/* or application/octet-stream")
        filename = os.path.basename(disp[b"filename"].decode("utf-8", "replace"))
        path = os.path.join(directory, "input" + _safe_suffix(filename))
        sink.append(open(path, "wb"))  # noqa: SIM115 - closed in the finally below
        found.append(Upload(path, filename, part_type, 0))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["size"] += end - start
        if state["name"] == field and sink:
            if state["size"] > limit:
                raise LimitError(f"upload larger than {limit / 2**20:.0f} MB")
            sink[0].write(data[start:end])
        elif state["size"] > FIELD_LIMIT:
            raise LimitError(f"form field {state['name']!r} too large")

    def on_part_end() -> None:
        if state["name"] == field and sink:
            found[0].size = state["size"]
            sink.pop().close()

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
    })
    try:
        async for chunk in timed_body(request, timeouts or BodyTimeouts.from_settings()):
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise ApiError(422, "ValidationError", f"malformed multipart body: {exc}") from exc
    finally:
        for f in sink:
            f.close()
    if not found or sink:
        raise ApiError(422, "ValidationError", f"field {field!r} (the video file) is required")
    return found[0]
