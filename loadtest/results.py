"""What a load client records (:class:`SessionResult`), and the pure arithmetic on it: the summary of a
swarm (:func:`summarise`), its pass/fail line (:func:`verdict`) and which sessions are of which kind
(:func:`plan_kinds`). No network, no media: loadtest/swarm.py (WebRTC) and loadtest/grpc_swarm.py (gRPC)
fill the results, loadtest/bench_live.py and loadtest/ramp.py read them.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

#: The kinds of session a swarm runs: WebRTC, WebRTC with ``mix_original`` (the client's sound mixed
#: under the BGM), gRPC ``Stream``.
KINDS = ("webrtc", "webrtc_mix", "grpc")
#: The pass/fail line of a load step (issue 13): no underrun, and under this share of BGM frames sent
#: more than 40 ms late.
MAX_LATE_SHARE = 0.01


@dataclass
class SessionResult:
    index: int
    kind: str = "webrtc"
    session_id: str = ""
    connected: bool = False
    #: BGM frames received (WebRTC: decoded by the client; gRPC: 20 ms frames in the music messages).
    frames: int = 0
    #: Gaps of more than ``glitch_ms`` between received frames, and the longest (for gRPC see grpc_swarm).
    glitches: int = 0
    max_gap_ms: float = 0.0
    #: The same for BGM RTP packets as they arrive from the network (before the client's jitter
    #: buffer and its Opus decoder thread): gaps here come from the server or the network. One RTP
    #: packet per 20 ms frame: ``packets`` is also the count of frames the server sent.
    packets: int = 0
    packet_gaps: int = 0
    max_packet_gap_ms: float = 0.0
    pts_jumps: int = 0
    reports: int = 0
    underruns: int = 0
    skipped: int = 0
    #: BGM frames the server sent more than 40 ms after their due time, and the latest one (server clock).
    late_frames: int = 0
    max_late_ms: float = 0.0
    mood_changes: int = 0
    #: The analysis degrade level in the last report (0 full; the server sheds analysis under load), the highest.
    degraded: int = 0
    max_degraded: int = 0
    emotions: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    detect_s: list[float] = field(default_factory=list)
    rms: float = 0.0
    error: str | None = None
    #: The server's refusal of the session, when it was not admitted in the end (WebRTC: ``503 Busy,
    #: Retry-After 5``; gRPC: ``UNAVAILABLE: ...``); every refusal, retried or not.
    refused: str | None = None
    refusals: list[str] = field(default_factory=list)
    #: When the session was admitted (``time.perf_counter()`` of the client).
    connected_at: float | None = None
    #: gRPC only (measured at the client): frames arriving more than 40 ms behind a steady schedule.
    arrival_late_frames: int = 0
    max_arrival_late_ms: float = 0.0


def refusal(status: int, body: Any, retry_after: str | None) -> str:
    """How an offer's refusal is recorded: ``"503 Busy, Retry-After 5"``."""
    err = body.get("error") if isinstance(body, dict) else None
    kind = err.get("type") if isinstance(err, dict) else None
    text = f"{status} {kind}" if kind else str(status)
    return f"{text}, Retry-After {retry_after}" if retry_after else text


def plan_kinds(sessions: int, grpc: int = 0, mix_original: int = 0) -> list[str]:
    """The kind of each of ``sessions`` sessions: ``grpc`` gRPC and ``mix_original`` mixed WebRTC ones spread
    evenly among plain WebRTC ones (so the staggered start does not bunch one kind)."""
    if min(sessions, grpc, mix_original) < 0 or grpc + mix_original > sessions:
        raise ValueError(f"{grpc} gRPC + {mix_original} mix_original sessions do not fit in {sessions}")
    special = sorted([(i / grpc, "grpc") for i in range(grpc)]
                     + [((i + 0.5) / mix_original, "webrtc_mix") for i in range(mix_original)])
    kinds = ["webrtc"] * sessions
    for j, (_, kind) in enumerate(special):
        kinds[j * sessions // len(special)] = kind
    return kinds


def _p95(xs: list[float]) -> float | None:
    return xs[min(len(xs) - 1, int(0.95 * len(xs)))] if xs else None


def summarise(results: list[SessionResult], duration: float) -> dict[str, Any]:
    """Totals over ``results`` (any kinds). ``frames_sent`` and ``late_share``: every session's, as its server
    reports them (WebRTC: the RTP packets received; gRPC: the frames received, the server's pacer counting late)."""
    lat = sorted(x for r in results for x in r.latencies_s)
    det = sorted(x for r in results for x in r.detect_s)
    webrtc = [r for r in results if r.kind != "grpc"]
    grpc = [r for r in results if r.kind == "grpc"]
    sent = sum(r.packets for r in webrtc) + sum(r.frames for r in grpc)
    late = sum(r.late_frames for r in results)
    grpc_frames = sum(r.frames for r in grpc)
    return {
        "sessions": len(results),
        "duration_s": duration,
        "kinds": {k: sum(r.kind == k for r in results) for k in KINDS if any(r.kind == k for r in results)},
        "connected": sum(r.connected for r in results),
        "refused": sum(r.refused is not None for r in results),
        "refusals": sum(len(r.refusals) for r in results),
        "admitted_after_refusals": sum(r.connected and bool(r.refusals) for r in results),
        "errors": [r.error for r in results if r.error],
        "underruns_total": sum(r.underruns for r in results),
        "sessions_with_underruns": sum(r.underruns > 0 for r in results),
        "sender_skipped_frames": sum(r.skipped for r in results),
        "sender_late_frames": late,
        "sender_max_late_ms": max((r.max_late_ms for r in results), default=0.0),
        "frames_sent": sent,
        "late_share": late / sent if sent else None,
        "grpc_frames": grpc_frames,
        "grpc_late_arrivals": sum(r.arrival_late_frames for r in grpc),
        "grpc_late_share": sum(r.arrival_late_frames for r in grpc) / grpc_frames if grpc_frames else None,
        "grpc_max_late_ms": max((r.max_arrival_late_ms for r in grpc), default=0.0),
        "glitches_total": sum(r.glitches for r in results),
        "max_gap_ms": max((r.max_gap_ms for r in results), default=0.0),
        "packet_gaps_total": sum(r.packet_gaps for r in results),
        "max_packet_gap_ms": max((r.max_packet_gap_ms for r in results), default=0.0),
        "frames_per_session_per_s": statistics.mean(r.frames / duration for r in results) if results else 0.0,
        "mood_changes": sum(r.mood_changes for r in results),
        "mood_change_latency_p50_s": statistics.median(lat) if lat else None,
        "mood_change_latency_p95_s": _p95(lat),
        "mood_change_latency_max_s": lat[-1] if lat else None,
        "mood_detect_p50_s": statistics.median(det) if det else None,
        "mood_detect_max_s": det[-1] if det else None,
        "per_session": [asdict(r) for r in results],
    }


def verdict(underruns: int, late_frames: int, frames_sent: int, sessions: int | None = None,
            connected: int | None = None) -> dict[str, Any]:
    """PASS when the server had no underrun and sent under :data:`MAX_LATE_SHARE` of its BGM frames more than
    40 ms late (and, when given, every session connected); the reasons otherwise."""
    share = late_frames / frames_sent if frames_sent else None
    reasons = []
    if underruns:
        reasons.append(f"{underruns} underruns")
    if share is None:
        reasons.append("no frames sent")
    elif share >= MAX_LATE_SHARE:
        reasons.append(f"{100 * share:.1f} % of frames > 40 ms late")
    if sessions is not None and connected is not None and connected < sessions:
        reasons.append(f"{sessions - connected} of {sessions} sessions not connected")
    return {"pass": not reasons, "underruns": underruns, "late_frames": late_frames, "frames_sent": frames_sent,
            "late_share": share, "reasons": reasons}


def swarm_verdict(summary: dict[str, Any]) -> dict[str, Any]:
    """:func:`verdict` of a :func:`summarise` d swarm: underruns of every kind, late frames of the WebRTC ones."""
    return verdict(summary["underruns_total"], summary["sender_late_frames"], summary["frames_sent"],
                   summary["sessions"], summary["connected"])


def fmt_verdict(v: dict[str, Any]) -> str:
    """``PASS (0 underruns, 0.12 % late)`` or ``FAIL (3 underruns; ...)``."""
    share = "-" if v["late_share"] is None else f"{100 * v['late_share']:.2f} %"
    if v["pass"]:
        return f"PASS ({v['underruns']} underruns, {share} of frames > 40 ms late)"
    return f"FAIL ({'; '.join(v['reasons'])})"


def spread(values: list[float]) -> str:
    """``"min-max (mean)"`` of a repeated measurement."""
    if not values:
        return "-"
    lo, hi, mean = min(values), max(values), statistics.mean(values)
    return f"{lo:.3g}-{hi:.3g} (mean {mean:.3g})"
