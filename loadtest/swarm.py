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

Mixed load: ``--mix-original N`` of the sessions send ``mix_original: true`` in their offer (the server
mixes their own sound under the BGM), ``--grpc N`` are gRPC ``Stream`` calls instead
(loadtest/grpc_swarm.py); the figures are also given per kind. ``--server-pid`` (the ``serve run``
process) adds the CPU cost per session (loadtest/procstat.py). PASS/FAIL (loadtest/results.py): no
underrun, and under 1 % of the BGM frames sent more than 40 ms late.

Usage (service running, e.g. ``serve run deploy/local.yaml``)::

    python -m loadtest.swarm --url http://127.0.0.1:8000 --sessions 8 --duration 120 --video clip.mp4 \\
        --grpc 2 --mix-original 2 --server-pid "$(pgrep -f 'serve run')" --json out/swarm.json

Exit status 0 when every session ran the whole time with zero underruns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from loadtest.procstat import CostProbe, cost_between, fmt_cost
from loadtest.results import KINDS, SessionResult, fmt_verdict, plan_kinds, refusal, summarise, swarm_verdict

__all__ = ["KINDS", "SessionResult", "default_video", "main", "run_session", "summarise", "swarm"]

log = logging.getLogger("swarm")


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


def retry_after_s(header: str | None, default: float = 2.0) -> float:
    """Seconds to wait from a Retry-After header (seconds form; at least 0.5)."""
    try:
        return max(0.5, float(header)) if header is not None else default
    except ValueError:
        return default


async def _post_offer(url: str, body: dict[str, Any], res: SessionResult, admit_within_s: float) -> dict[str, Any]:
    """The server's answer to the offer; each 503 is recorded in ``res.refusals`` and retried while allowed."""
    deadline = time.monotonic() + admit_within_s
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.post(f"{url}/v1/webrtc/offer", json=body) as r:
                answer = await r.json(content_type=None)
                status, header = r.status, r.headers.get("Retry-After")
            if status == 200:
                return dict(answer)
            if status == 503:
                why = refusal(status, answer, header)
                res.refusals.append(why)
                wait = retry_after_s(header)
                if time.monotonic() + wait <= deadline:
                    await asyncio.sleep(wait)
                    continue
                res.refused = why
            raise RuntimeError(f"offer rejected: {status} {answer}")


async def run_session(index: int, url: str, video: str, duration: float | None, glitch_ms: float,
                      style: str | None, mix_original: bool = False,
                      until: asyncio.Event | None = None, res: SessionResult | None = None,
                      admit_within_s: float = 0.0) -> SessionResult:
    """One WebRTC client for ``duration`` seconds from its admission (None: until ``until`` is set),
    recording into ``res`` (a new result when None; the swarm and the ramp pass their own to read the
    counters while the session runs). A 503 is retried after its Retry-After while that is within
    ``admit_within_s`` of the first offer, as a browser would."""
    res = SessionResult(index) if res is None else res
    res.kind = "webrtc_mix" if mix_original else "webrtc"
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
            res.degraded = int(data.get("degraded", 0))
            res.max_degraded = max(res.max_degraded, res.degraded)
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
        if mix_original:
            body["mix_original"] = True
        answer = await _post_offer(url, body, res, admit_within_s)
        res.session_id = answer.get("session_id", "")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        res.connected, res.connected_at = True, time.perf_counter()
        if duration is not None:
            await asyncio.sleep(duration)
        else:
            assert until is not None
            await until.wait()
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


def measure_window(connected_at: list[float], duration: float, settle_s: float = 10.0) -> tuple[float, float] | None:
    """The steady part of a swarm for the CPU snapshots, as ``perf_counter`` times: from ``settle_s`` after the
    last session was admitted (at most halfway to the end) to a second before the first admitted one ends;
    None when no session was admitted or the sessions hardly overlapped."""
    if not connected_at:
        return None
    last, end = max(connected_at), min(connected_at) + duration - 1.0
    start = last + min(settle_s, max(0.0, (end - last) / 2))
    return (start, end) if end - start >= 1.0 else None


async def _probe(probe: CostProbe, results: list[SessionResult], duration: float,
                 admit_within_s: float) -> dict[str, Any] | None:
    t0 = time.perf_counter()
    deadline = t0 + admit_within_s + 0.5 * len(results) + 10.0
    while any(not (r.connected or r.error) for r in results) and time.perf_counter() < deadline:
        await asyncio.sleep(0.25)
    admitted = [r.connected_at for r in results if r.connected_at is not None]
    window = measure_window(admitted, duration)
    if window is None:
        return None
    await asyncio.sleep(max(0.0, window[0] - time.perf_counter()))
    a = probe.snapshot()
    await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
    return cost_between(a, probe.snapshot(), len(admitted))


async def swarm(url: str, sessions: int, duration: float, video: str, glitch_ms: float = 60.0,
                stagger_s: float = 0.5, style: str | None = None, *, grpc: int = 0, mix_original: int = 0,
                grpc_target: str = "127.0.0.1:9000", probe: CostProbe | None = None,
                admit_within_s: float = 30.0) -> dict[str, Any]:
    """``sessions`` clients for ``duration`` s each from its admission, offered ``stagger_s`` apart (a refusal
    is retried after its Retry-After for up to ``admit_within_s``): ``grpc`` of them gRPC ``Stream`` calls,
    ``mix_original`` WebRTC with ``mix_original: true``, the rest plain WebRTC. The summary of all
    (:func:`loadtest.results.summarise`), with ``by_kind`` (the same per kind), ``verdict`` and, with a
    ``probe``, ``cpu`` (cores from all sessions admitted + 10 s to the first one's end)."""
    kinds = plan_kinds(sessions, grpc, mix_original)
    messages: list[Any] = []
    if grpc:
        from loadtest.grpc_swarm import media_messages, run_grpc_session

        messages = await media_messages(video, max_s=duration + admit_within_s + 5.0)
    results = [SessionResult(i, kind=k) for i, k in enumerate(kinds)]

    async def one(res: SessionResult) -> SessionResult:
        await asyncio.sleep(res.index * stagger_s)
        if res.kind == "grpc":
            return await run_grpc_session(res.index, grpc_target, messages, duration, glitch_ms, style, res=res,
                                          admit_within_s=admit_within_s)
        return await run_session(res.index, url, video, duration, glitch_ms, style,
                                 mix_original=res.kind == "webrtc_mix", res=res, admit_within_s=admit_within_s)

    cpu = asyncio.ensure_future(_probe(probe, results, duration, admit_within_s)) if probe is not None else None
    await asyncio.gather(*(one(r) for r in results))
    out = summarise(results, duration)
    out["by_kind"] = {k: {key: v for key, v in summarise([r for r in results if r.kind == k], duration).items()
                          if key != "per_session"} for k in KINDS if k in kinds}
    out["verdict"] = swarm_verdict(out)
    out["cpu"] = await cpu if cpu is not None else None
    return out


def report(out: dict[str, Any]) -> str:
    """A few lines: per kind, the CPU cost, PASS/FAIL."""
    lines = []
    for kind, k in out["by_kind"].items():
        late = ("-" if k["late_share"] is None else
                f"{k['sender_late_frames']} of {k['frames_sent']} sent ({100 * k['late_share']:.2f} %), "
                f"max {k['sender_max_late_ms']:.0f} ms")
        if kind == "grpc":
            late = (f"{k['grpc_late_arrivals']} of {k['grpc_frames']} received > 40 ms behind schedule, max "
                    f"{k['grpc_max_late_ms']:.0f} ms (client-side)")
        lines.append(f"  {kind:10s} {k['connected']}/{k['sessions']} connected, underruns {k['underruns_total']}, "
                     f"late frames: {late}, gaps > 60 ms {k['glitches_total']} (max {k['max_gap_ms']:.0f} ms), "
                     f"mood changes {k['mood_changes']}")
    lines.append("  " + fmt_cost(out.get("cpu")))
    lines.append("  " + fmt_verdict(out["verdict"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.swarm", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--sessions", type=int, default=8, help="sessions in all (gRPC and mix_original included)")
    p.add_argument("--grpc", type=int, default=0, help="how many of them are gRPC Stream calls")
    p.add_argument("--mix-original", type=int, default=0, help="how many are WebRTC with mix_original: true")
    p.add_argument("--grpc-target", default="127.0.0.1:9000")
    p.add_argument("--duration", type=float, default=120.0, help="seconds each session streams")
    p.add_argument("--video", help="video to stream (default: a synthetic calm->exciting clip, looped)")
    p.add_argument("--glitch-ms", type=float, default=60.0)
    p.add_argument("--style")
    p.add_argument("--server-pid", type=int, help="the `serve run` process: measure the CPU of its process tree")
    p.add_argument("--admit-within", type=float, default=30.0,
                   help="seconds a refused session (503 / UNAVAILABLE) keeps retrying after its Retry-After")
    p.add_argument("--json", help="write the full result here")
    args = p.parse_args(argv)
    if args.sessions < 1 or args.duration <= 0:
        p.error("--sessions must be >= 1 and --duration > 0")
    if args.grpc < 0 or args.mix_original < 0 or args.grpc + args.mix_original > args.sessions:
        p.error("--grpc and --mix-original must be >= 0 and together at most --sessions")
    logging.basicConfig(level=logging.WARNING)
    video = args.video or default_video(args.duration + args.admit_within + 0.5 * args.sessions)
    if not os.path.exists(video):
        p.error(f"video not found: {video}")
    probe = CostProbe(args.server_pid) if args.server_pid else None
    out = asyncio.run(swarm(args.url, args.sessions, args.duration, video, args.glitch_ms, style=args.style,
                            grpc=args.grpc, mix_original=args.mix_original, grpc_target=args.grpc_target,
                            probe=probe, admit_within_s=args.admit_within))
    short = {k: v for k, v in out.items() if k != "per_session"}
    print(json.dumps(short, indent=1))
    print(report(out))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    ok = (out["connected"] == args.sessions and out["underruns_total"] == 0 and out["sender_skipped_frames"] == 0
          and not out["errors"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
