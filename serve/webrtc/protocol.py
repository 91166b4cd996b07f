"""What a WebRTC offer request must contain, and what the client and the server agree on.

``POST /v1/webrtc/offer`` takes a JSON object ``{"sdp": ..., "type": "offer"}`` with optional
per-session fields ``style``, ``seed`` and ``mix_original`` (validated by the project's one parser,
:func:`pipelines.options.parse_session_fields`). The SDP must be a session description with an
audio section, which carries the BGM back, and a DTLS fingerprint, within :data:`MAX_SDP_CHARS`,
:data:`MAX_MEDIA_SECTIONS` and :data:`MAX_CANDIDATES`. Anything wrong is an :class:`OfferError`
(HTTP 400, ``type`` ``"OfferError"``), an invalid option included, and so is an offer aiortc cannot
negotiate (:func:`negotiation_error`: a short reason, never aiortc's or Python's own message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from pipelines.errors import InputError, OptionError
from pipelines.live.options import LiveOptions
from pipelines.options import parse_session_fields

#: The ``transport`` label of the session metrics.
TRANSPORT = "webrtc"
#: The label of the data channel the client opens for mood reports and pings.
DATA_CHANNEL_LABEL = "mood"

#: Limits of an offer's SDP. A browser's offer (audio, video, a data channel, a few candidates each) is
#: a few KiB; a hostile one must not cost the server parsing, transceivers or connectivity checks to
#: every address it lists.
MAX_SDP_CHARS = 32 * 1024
MAX_MEDIA_SECTIONS = 8
MAX_CANDIDATES = 128


class OfferError(InputError):
    """A bad offer request (HTTP 400)."""

    kind = "OfferError"


@dataclass(frozen=True)
class Offer:
    """A valid offer request: the client's SDP and the session's options."""

    sdp: str
    options: LiveOptions


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
    if len(sdp) > MAX_SDP_CHARS:
        raise OfferError(f"the offer's SDP is too long ({len(sdp)} characters): at most {MAX_SDP_CHARS}")
    lines = sdp.splitlines()
    media = [line.split()[0][2:] for line in lines if line.startswith("m=") and line.split()]
    if len(media) > MAX_MEDIA_SECTIONS:
        raise OfferError(f"the offer has too many media sections ({len(media)}): at most {MAX_MEDIA_SECTIONS} "
                         "media sections")
    candidates = sum(line.startswith("a=candidate:") for line in lines)
    if candidates > MAX_CANDIDATES:
        raise OfferError(f"the offer has too many ICE candidates ({candidates}): at most {MAX_CANDIDATES}")
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


def check_transport(sdp: str) -> None:
    """An offer aiortc would accept but could never connect: no DTLS fingerprint to check the peer against."""
    if not any(line.startswith("a=fingerprint:") for line in sdp.splitlines()):
        raise OfferError("the offer has no DTLS fingerprint (a=fingerprint): WebRTC media must be encrypted")


def parse_offer(body: Any, base: LiveOptions) -> Offer:
    """Check a decoded offer request; :class:`OfferError` when it is not one."""
    sdp = check_sdp(body)
    options = session_options(body, base)
    check_transport(sdp)
    return Offer(sdp, options)


#: What aiortc says about an offer it refuses (a substring of its message), and the reason a client sees.
_AIORTC_REASONS = (
    ("ICE username fragment or password is missing", "the ICE credentials (a=ice-ufrag, a=ice-pwd) are missing"),
    ("RTCP mux is not enabled", "RTCP multiplexing (a=rtcp-mux) is required"),
)
_NO_COMMON_CODEC = re.compile(r"Failed to set remote (audio|video) description send parameters")


def negotiation_error(exc: BaseException) -> OfferError:
    """The :class:`OfferError` for what negotiating an offer raised: ``"the offer could not be negotiated:
    <reason>"``, a reason of our own words (aiortc's known refusals) or "the session description is
    malformed" -- never an exception's own text (a Python message, class name or path). The server's
    log has the exception."""
    text = str(exc)
    reason = next((r for needle, r in _AIORTC_REASONS if needle in text), None)
    if reason is None:
        codec = _NO_COMMON_CODEC.search(text)
        reason = (f"no codec in common for the {codec.group(1)} section" if codec
                  else "the session description is malformed")
    return OfferError(f"the offer could not be negotiated: {reason}")
