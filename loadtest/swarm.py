"""A swarm of aiortc clients: N live sessions streaming a video, each receiving adaptive BGM.

Each client sends the video's pictures and sound over WebRTC (aiortc's MediaPlayer, real
time, looping), receives the BGM track and the ``mood`` data channel, and records:

* **receive glitches** -- gaps between consecutive BGM frames at the client of more than
  ``glitch_ms`` (a late or lost frame you would hear), and pts jumps; and the same for the BGM's
  RTP packets as they arrive, before the client's own jitter buffer and decoder thread (which
  share this process with every other client);
* **sender lateness** -- the server's count of BGM frames it sent more than 40 ms late, and the
  latest (from the reports);
* **underruns** -- the server's count of BGM frames it could not fill in time (from the reports);
* **mood-change latency** -- the server's confirmed-change -> music-change times (reports);
* how many mood changes were seen, and the received BGM level.

Usage (service running, e.g. ``serve run deploy/local.yaml``)::

    python -m loadtest.swarm --url http://127.0.0.1:8000 --sessions 8 --duration 120 --video clip.mp4 \\
        --json out/swarm.json

Exit status 0 when every session ran the whole time with zero underruns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger("swarm")


@dataclass
class SessionResult:
    index: int
    session_id: str = ""
    connected: bool = False
    frames: int = 0
    glitches: int = 0
    max_gap_ms: float = 0.0
    #: The same for BGM RTP packets as they arrive from the network (before the client's jitter
    #: buffer and its Opus decoder thread): gaps here come from the server or the network.
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
    emotions: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    detect_s: list[float] = field(default_factory=list)
    rms: float = 0.0
    error: str | None = None


async def _consume_audio(track: MediaStreamTrack, res: SessionResult, glitch_ms: float, stop: asyncio.Event) -> None:
    last_t: float | None = None
    last_pts: int | None = None
    sq, n = 0.0, 0
    while not stop.is_set():
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if not isinstance(frame, av.AudioFrame):
            continue
        now = time.perf_counter()
        if last_t is not None and res.frames > 50:  # after the jitter buffer settled
            gap = (now - last_t) * 1000
            res.max_gap_ms = max(res.max_gap_ms, gap)
            if gap > glitch_ms:
                res.glitches += 1
        pts = getattr(frame, "pts", None)
        if last_pts is not None and pts is not None and pts - last_pts != frame.samples and res.frames > 50:
            res.pts_jumps += 1
        last_t, last_pts = now, pts
        res.frames += 1
        a = frame.to_ndarray().astype(np.float32) / 32768.0
        sq += float(np.sum(a * a))
        n += a.size
    res.rms = (sq / n) ** 0.5 if n else 0.0


def _watch_packets(receiver: Any, res: SessionResult, glitch_ms: float) -> None:
    """Time the BGM's RTP packets as the client's transport hands them to ``receiver``."""
    handle = receiver._handle_rtp_packet  # aiortc's per-packet entry point (no public hook)
    last: list[float] = []

    async def timed(packet: Any, arrival_time_ms: int) -> None:
        now = time.perf_counter()
        if last and res.packets > 50:
            gap = (now - last[0]) * 1000
            res.max_packet_gap_ms = max(res.max_packet_gap_ms, gap)
            res.packet_gaps += gap > glitch_ms
        last[:] = [now]
        res.packets += 1
        await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = timed


class _Monotonic(MediaStreamTrack):
    """Re-stamps a looping MediaPlayer track so pts keep increasing across the loop point.

    (aiortc's MediaPlayer restarts pts at 0 when it loops; its VP8 encoder then fails.)
    """

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._offset = 0
        self._last = -1

    async def recv(self) -> Any:
        frame = await self._source.recv()
        if frame.pts is not None:
            if frame.pts + self._offset <= self._last:
                self._offset = self._last + 1 - frame.pts
            frame.pts += self._offset
            self._last = frame.pts
        return frame

    def stop(self) -> None:
        super().stop()
        self._source.stop()


async def run_session(index: int, url: str, video: str, duration: float, glitch_ms: float,
                      style: str | None) -> SessionResult:
    res = SessionResult(index)
    pc = RTCPeerConnection()
    # WebRTC-ready media (VP8/H.264 video, Opus audio) is sent without decoding and re-encoding
    player = MediaPlayer(video, loop=True, decode=not video.endswith(".webm"))
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        if player.video is not None:
            pc.addTrack(_Monotonic(player.video))
        if player.audio is not None:
            pc.addTrack(_Monotonic(player.audio))
        else:
            pc.addTransceiver("audio", direction="recvonly")
        channel = pc.createDataChannel("mood")
        last_change = [0]

        @channel.on("message")
        def _on_message(message: str | bytes) -> None:
            data = json.loads(message)
            if data.get("type") != "mood":
                return
            res.reports += 1
            res.underruns = int(data.get("underruns", 0))
            res.skipped = int(data.get("sender_skipped_frames", 0))
            res.late_frames = int(data.get("sender_late_frames", 0))
            res.max_late_ms = float(data.get("sender_max_late_ms", 0.0))
            if not res.emotions or res.emotions[-1] != data.get("emotion"):
                res.emotions.append(str(data.get("emotion")))
            changes = int(data.get("mood_changes", 0))
            if changes > last_change[0] and data.get("last_change_latency_s") is not None:
                res.latencies_s.append(float(data["last_change_latency_s"]))
                if data.get("last_change_detect_s") is not None:
                    res.detect_s.append(float(data["last_change_detect_s"]))
            last_change[0] = changes
            res.mood_changes = changes

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                for t in pc.getTransceivers():
                    if t.receiver.track is track:
                        _watch_packets(t.receiver, res, glitch_ms)
                tasks.append(asyncio.ensure_future(_consume_audio(track, res, glitch_ms, stop)))

        await pc.setLocalDescription(await pc.createOffer())
        body: dict[str, Any] = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
        if style:
            body["style"] = style
        async with aiohttp.ClientSession() as http, http.post(f"{url}/v1/webrtc/offer", json=body) as r:
            answer = await r.json()
            if r.status != 200:
                raise RuntimeError(f"offer rejected: {r.status} {answer}")
        res.session_id = answer.get("session_id", "")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        res.connected = True
        await asyncio.sleep(duration)
    except Exception as exc:  # reported per session; the swarm goes on
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await pc.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return res


def summarise(results: list[SessionResult], duration: float) -> dict[str, Any]:
    lat = sorted(x for r in results for x in r.latencies_s)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None
    det = sorted(x for r in results for x in r.detect_s)
    return {
        "sessions": len(results),
        "duration_s": duration,
        "connected": sum(r.connected for r in results),
        "errors": [r.error for r in results if r.error],
        "underruns_total": sum(r.underruns for r in results),
        "sessions_with_underruns": sum(r.underruns > 0 for r in results),
        "sender_skipped_frames": sum(r.skipped for r in results),
        "sender_late_frames": sum(r.late_frames for r in results),
        "sender_max_late_ms": max((r.max_late_ms for r in results), default=0.0),
        "glitches_total": sum(r.glitches for r in results),
        "max_gap_ms": max((r.max_gap_ms for r in results), default=0.0),
        "packet_gaps_total": sum(r.packet_gaps for r in results),
        "max_packet_gap_ms": max((r.max_packet_gap_ms for r in results), default=0.0),
        "frames_per_session_per_s": statistics.mean(r.frames / duration for r in results) if results else 0.0,
        "mood_changes": sum(r.mood_changes for r in results),
        "mood_change_latency_p50_s": statistics.median(lat) if lat else None,
        "mood_change_latency_p95_s": p95,
        "mood_change_latency_max_s": lat[-1] if lat else None,
        "mood_detect_p50_s": statistics.median(det) if det else None,
        "mood_detect_max_s": det[-1] if det else None,
        "per_session": [asdict(r) for r in results],
    }


def default_video(duration_s: float = 40.0) -> str:
    """A synthetic clip alternating calm and exciting scenes every 10 s, a little longer than ``duration_s``.

    (Long enough not to loop: aiortc's MediaPlayer passing WebM packets through stalls its client
    after a loop.)
    """
    from dataclasses import replace

    from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, write_video

    path = os.path.join(tempfile.mkdtemp(prefix="backscore-swarm-"), "calm_exciting.webm")
    calm, exciting = replace(CALM_DARK, duration_s=10.0), replace(BRIGHT_FAST, duration_s=10.0)
    # 256x192 at 15 fps: what a client needs to send (the analysis looks at 96 px thumbnails at 6 fps
    # and 256 px pictures for faces at 1 fps); the demo page asks cameras for about the same.
    # VP8 + Opus in WebM: the clients send the packets as they are (no encoding on the load machine).
    pairs = max(2, int(np.ceil((duration_s + 15.0) / 20.0)))
    write_video(path, [calm, exciting] * pairs, width=256, height=192, fps=15, video_codec="libvpx")
    return path


async def swarm(url: str, sessions: int, duration: float, video: str, glitch_ms: float = 60.0,
                stagger_s: float = 0.5, style: str | None = None) -> dict[str, Any]:
    async def one(i: int) -> SessionResult:
        await asyncio.sleep(i * stagger_s)
        return await run_session(i, url, video, duration, glitch_ms, style)

    results = await asyncio.gather(*(one(i) for i in range(sessions)))
    return summarise(list(results), duration)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.swarm", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--duration", type=float, default=120.0, help="seconds each session streams")
    p.add_argument("--video", help="video to stream (default: a synthetic calm->exciting clip, looped)")
    p.add_argument("--glitch-ms", type=float, default=60.0)
    p.add_argument("--style")
    p.add_argument("--json", help="write the full result here")
    args = p.parse_args(argv)
    if args.sessions < 1 or args.duration <= 0:
        p.error("--sessions must be >= 1 and --duration > 0")
    logging.basicConfig(level=logging.WARNING)
    video = args.video or default_video(args.duration)
    if not os.path.exists(video):
        p.error(f"video not found: {video}")
    out = asyncio.run(swarm(args.url, args.sessions, args.duration, video, args.glitch_ms, style=args.style))
    short = {k: v for k, v in out.items() if k != "per_session"}
    print(json.dumps(short, indent=1))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    ok = (out["connected"] == args.sessions and out["underruns_total"] == 0 and out["sender_skipped_frames"] == 0
          and not out["errors"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
