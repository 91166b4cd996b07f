"""gRPC live clients for the swarm: each plays a clip into ``backscore.v1.Backscore/Stream`` in real time
and reads the paced BGM back.

The clip is turned into ``LiveInput`` messages once (:func:`media_messages`: analysis thumbnails and
100 ms PCM chunks, as :func:`serve.grpc.client.file_inputs` makes them) and every client sends that
same list at the messages' media times: no decoding per client, as the aiortc clients send their
VP8/Opus packets as they are.

Each client records (:class:`Arrivals`), from the 11th music message on (after the start settled):

* **gaps** -- the server sends a ``MusicChunk`` of five 20 ms frames every 100 ms, so the frames of a
  message arrive together; the gap between the last frame of one message and the first of the next is
  the arrival gap minus the 80 ms the first message's other frames span. More than ``glitch_ms`` (60)
  counts, as between two WebRTC frames;
* **late frames** -- each message's arrival against a drift-free schedule anchored at the earliest
  (relative to its pts) arrival of the session: frames arriving more than 40 ms behind it;
* the server's **underruns**, mood changes and mood-change delays, from the ``MoodReport`` messages.

gRPC has no server-side count of late frames (the reports carry the WebRTC sender's only): the late
frames here are measured at the client, through Ray's gRPC proxy and this process's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from loadtest.results import SessionResult
from serve.grpc.client import CHANNEL_OPTIONS, file_inputs
from serve.proto.backscore.v1 import backscore_pb2 as pb
from serve.proto.backscore.v1 import backscore_pb2_grpc as pb_grpc

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
#: Music messages left out of the gap and lateness figures while the session starts.
SETTLE_MESSAGES = 10
#: Seconds before a refused ``Stream`` is tried again.
RETRY_S = 2.0


class Arrivals:
    """Arrival times of music messages: gaps between frames and frames late against a steady schedule."""

    def __init__(self, glitch_ms: float = 60.0, late_ms: float = 40.0, settle: int = SETTLE_MESSAGES,
                 sample_rate: int = SAMPLE_RATE, frame_samples: int = FRAME_SAMPLES) -> None:
        self.glitch_s, self.late_s, self.settle = glitch_ms / 1000, late_ms / 1000, settle
        self.rate, self.frame = sample_rate, frame_samples
        self.messages = 0
        self.frames = 0
        self.gaps = 0
        self.max_gap_s = 0.0
        self._prev: tuple[float, int] | None = None  # arrival, samples of the previous message
        self._offsets: list[tuple[float, int]] = []  # arrival - pts, frames, per message after settling

    def add(self, t: float, pts: int, samples: int) -> None:
        """A music message of ``samples`` samples starting at ``pts`` arrived at ``t`` (seconds)."""
        self.messages += 1
        self.frames += samples // self.frame
        if self.messages > self.settle:
            if self._prev is not None:
                prev_t, prev_n = self._prev
                gap = (t - prev_t) - (prev_n - self.frame) / self.rate
                self.max_gap_s = max(self.max_gap_s, gap)
                self.gaps += gap > self.glitch_s
            self._offsets.append((t - pts / self.rate, samples // self.frame))
        self._prev = (t, samples)

    def late_frames(self) -> tuple[int, float]:
        """Frames that arrived more than ``late_ms`` behind the schedule, and the latest (s)."""
        if not self._offsets:
            return 0, 0.0
        anchor = min(o for o, _ in self._offsets)
        late = sum(n for o, n in self._offsets if o - anchor > self.late_s)
        return late, max(o for o, _ in self._offsets) - anchor


_MESSAGES: dict[tuple[str, float | None], list[tuple[float, pb.LiveInput]]] = {}


async def media_messages(video: str, max_s: float | None = None) -> list[tuple[float, pb.LiveInput]]:
    """The clip's thumbnails and audio chunks as ``(media seconds, LiveInput)``, in sending order (made once
    per clip and length, then shared)."""
    if (video, max_s) in _MESSAGES:
        return _MESSAGES[video, max_s]
    out: list[tuple[float, pb.LiveInput]] = []
    async for msg in file_inputs(video, speed=0.0, max_s=max_s):
        kind = msg.WhichOneof("kind")
        if kind == "video":
            out.append((msg.video.pts_s, msg))
        elif kind == "audio":
            out.append((msg.audio.pts_s, msg))
    _MESSAGES[video, max_s] = out
    return out


def _on_mood(m: pb.MoodReport, res: SessionResult) -> None:
    res.reports += 1
    res.session_id = m.session_id
    res.underruns = int(m.underruns)
    res.degraded = int(getattr(m, "degraded", 0))  # not in every server's MoodReport
    res.late_frames = int(getattr(m, "sender_late_frames", 0))  # the server's pacer: frames handed out > 40 ms late
    res.max_late_ms = float(getattr(m, "sender_max_late_ms", 0.0))
    res.max_degraded = max(res.max_degraded, res.degraded)
    if not res.emotions or res.emotions[-1] != m.emotion:
        res.emotions.append(m.emotion)
    if m.mood_changes > res.mood_changes and m.HasField("last_change_latency_s"):
        res.latencies_s.append(m.last_change_latency_s)
        if m.HasField("last_change_detect_s"):
            res.detect_s.append(m.last_change_detect_s)
    res.mood_changes = int(m.mood_changes)


def _rpc_error(exc: grpc.RpcError) -> tuple[grpc.StatusCode | None, str]:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return code, f"{code.name if code is not None else '?'}: {details}"


async def _call(target: str, res: SessionResult, arrivals: Arrivals, messages: list[tuple[float, pb.LiveInput]],
                config: pb.StreamConfig, duration: float | None, ended: asyncio.Event) -> str | None:
    """One ``Stream`` call: ``duration`` s from the first message back (None: until ``ended``). Returns the
    refusal (UNAVAILABLE before anything came back), else None; other errors go to ``res.error``."""
    admitted = asyncio.Event()

    async def inputs() -> AsyncIterator[pb.LiveInput]:
        yield pb.LiveInput(config=config)
        start = time.monotonic()
        for t, msg in messages:
            if ended.is_set():
                return
            wait = start + t - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            yield msg
        await ended.wait()  # the clip ran out: stay connected, silent, until the end

    async def receive(call: Any) -> None:
        async for out in call:
            if not res.connected:
                res.connected, res.connected_at = True, time.perf_counter()
                admitted.set()
            if out.WhichOneof("kind") == "music":
                arrivals.add(time.perf_counter(), out.music.pts, len(out.music.pcm) // 4)
                res.frames = arrivals.frames
            else:
                _on_mood(out.mood, res)

    async def timer() -> None:
        await admitted.wait()
        await (asyncio.sleep(duration) if duration is not None else ended.wait())

    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        call = pb_grpc.BackscoreStub(channel).Stream(inputs())
        reader, clock = asyncio.ensure_future(receive(call)), asyncio.ensure_future(timer())
        try:
            done, _ = await asyncio.wait({reader, clock}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                reader.result()  # raises the call's error
                if not ended.is_set() and duration is not None:
                    res.error = "the server ended the stream early"
        except grpc.RpcError as exc:
            code, why = _rpc_error(exc)
            if code == grpc.StatusCode.UNAVAILABLE and not res.connected:
                return why
            res.error = f"RpcError {why}"
        except Exception as exc:  # reported per session; the swarm goes on
            res.error = f"{type(exc).__name__}: {exc}"
        finally:
            call.cancel()
            for t in (reader, clock):
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t
    return None


async def run_grpc_session(index: int, target: str, messages: list[tuple[float, pb.LiveInput]],
                           duration: float | None, glitch_ms: float = 60.0, style: str | None = None,
                           mix_original: bool = False, until: asyncio.Event | None = None,
                           res: SessionResult | None = None, admit_within_s: float = 0.0) -> SessionResult:
    """One gRPC live session for ``duration`` seconds from its first answer (None: until ``until`` is set),
    recording into ``res``. UNAVAILABLE before anything came back is the server's refusal: retried after
    :data:`RETRY_S` while within ``admit_within_s`` of the first call (gRPC has no Retry-After)."""
    res = SessionResult(index) if res is None else res
    res.kind = "grpc"
    arrivals = Arrivals(glitch_ms)
    config = pb.StreamConfig(style=style or "", mix_original=mix_original)
    ended = asyncio.Event() if until is None else until
    deadline = time.monotonic() + admit_within_s
    try:
        while (why := await _call(target, res, arrivals, messages, config, duration, ended)) is not None:
            res.refusals.append(why)
            if time.monotonic() + RETRY_S > deadline:
                res.refused, res.error = why, f"RpcError {why}"
                break
            await asyncio.sleep(RETRY_S)
    finally:
        if until is None:
            ended.set()
    res.glitches, res.max_gap_ms = arrivals.gaps, round(1000 * arrivals.max_gap_s, 1)
    late, latest = arrivals.late_frames()
    res.arrival_late_frames, res.max_arrival_late_ms = late, round(1000 * latest, 1)
    return res
