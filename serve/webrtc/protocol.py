"""What a WebRTC offer request must contain, and what the client and the server agree on.

``POST /v1/webrtc/offer`` takes a JSON object ``{"sdp": ..., "type": "offer"}`` with optional
per-session fields ``style``, ``seed`` and ``mix_original`` (validated by the project's one parser,
:func:`pipelines.options.parse_session_fields`). The SDP must be a session description with an
audio section, which carries the BGM back. Anything wrong is an :class:`OfferError` (HTTP 400,
``type`` ``"OfferError"``), an invalid option included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from pipelines.errors import InputError, OptionError
from pipelines.live.options import LiveOptions
from pipelines.options import parse_session_fields

#: The ``transport`` label of the session metrics.
TRANSPORT = "webrtc"
#: The label of the data channel the client opens for mood reports and pings.
DATA_CHANNEL_LABEL = "mood"


class OfferError(InputError):
    """A bad offer request (HTTP 400)."""

    kind = "OfferError"


@dataclass(frozen=True)
class Offer:
    """A valid offer request: the client's SDP and the session's options."""

    sdp: str
    options: LiveOptions


def decode_body(raw: bytes) -> Any:
    """The request body as JSON (any value: :func:`parse_offer` checks its shape)."""
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise OfferError("the body is not JSON") from exc


def check_sdp(body: Any) -> str:
    """The offer's SDP, when ``body`` is ``{"sdp": <a description with an audio section>, "type": "offer"}``."""
    if not isinstance(body, dict):
        raise OfferError("the body must be a JSON object {\"sdp\": ..., \"type\": \"offer\"}")
    missing = [k for k in ("sdp", "type") if k not in body]
    if missing:
        raise OfferError(f"missing field(s): {', '.join(missing)}")
    if body["type"] != "offer":
        raise OfferError(f"'type' must be \"offer\", got {body['type']!r}")
    sdp = body["sdp"]
    if not isinstance(sdp, str) or not sdp.lstrip().startswith("v=0"):
        raise OfferError("'sdp' is not a session description (it must start with v=0)")
    media = [line.split()[0][2:] for line in sdp.splitlines() if line.startswith("m=") and line.split()]
    if "audio" not in media:
        raise OfferError("the offer has no audio section: add an audio transceiver (sendrecv, or recvonly "
                         "without a microphone) to receive the BGM")
    return sdp


def session_options(body: dict[str, Any], base: LiveOptions) -> LiveOptions:
    """``base`` with the offer's ``style``, ``seed`` and ``mix_original`` (absent or null: unchanged)."""
    try:
        return replace(base, **parse_session_fields(body))
    except OptionError as exc:
        raise OfferError(str(exc)) from exc


def parse_offer(body: Any, base: LiveOptions) -> Offer:
    """Check a decoded offer request; :class:`OfferError` when it is not one."""
    sdp = check_sdp(body)
    return Offer(sdp, session_options(body, base))
