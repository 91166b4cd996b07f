"""The WebRTC BGM track encodes ahead, in batches, off the event loop (serve/webrtc/encode_ahead.py).

Real LiveSession + InProcessModels on the virtual clock, a real 3 s calm clip fed in so the composer plays,
real libopus both ways. Where the test waits for the encode thread it does so while the virtual clock
stands still (an encoder that is never late); the stalled thread is a real one blocked on an event.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

pytest.importorskip("aiortc", reason="serve extras (aiortc) not installed: pip install -e '.[serve]'")

from pipelines.clock import VirtualClock
from pipelines.devtools.synth_video import CALM_DARK, write_video
from pipelines.errors import OptionError
from pipelines.live.ingest import feed_file
from pipelines.live.models import InProcessModels
from pipelines.live.options import LiveOptions
from pipelines.live.session import LiveSession
from serve.webrtc.track import BgmTrack
from tests.fakes import HooksRecorder

STEP = 0.01  # the virtual clock's step: a frame is handed out at most this late


@pytest.fixture(scope="module")
def calm_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("encode_ahead") / "calm.mp4"
    write_video(os.fspath(path), [replace(CALM_DARK, duration_s=3.0)])
    return path


@pytest.fixture(scope="module")
def models() -> Any:
    m = InProcessModels.default(faces=False, inline=True)
    yield m
    m.shutdown()


class PullHooks(HooksRecorder):
    """Also notes, for each mood change, the clock time and the play head of the pull that passed the splice."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock
        self.session: LiveSession | None = None
        self.pulled_at: list[tuple[float, int]] = []

    def mood_change(self, latency_s: float) -> None:
        super().mood_change(latency_s)
        assert self.session is not None
        self.pulled_at.append((self.clock.now(), self.session.playout.head))


class RecordingSession(LiveSession):
    """A real LiveSession that also keeps each frame it makes (in the order made = the order sent)."""

    pulled: list[np.ndarray]

    def pull_frame(self, heard_in_s: float = 0.0) -> np.ndarray:
        frame = super().pull_frame(heard_in_s)
        self.pulled.append(frame)
        return frame


class CountingExecutor(Executor):
    """Runs on a real single worker thread and counts what is handed to it."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.submits = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submits += 1
        return self.pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.pool.shutdown(wait, cancel_futures=cancel_futures)


async def _music_session(models: InProcessModels, clip: Path, clock: VirtualClock) -> tuple[RecordingSession,
                                                                                             PullHooks]:
    """A session whose composer has music buffered (the clip's first window analysed), not yet pulled."""
    hooks = PullHooks(clock)
    session = RecordingSession(models, LiveOptions(), clock=clock, hooks=hooks)
    session.pulled = []
    hooks.session = session
    session.start()
    feed = asyncio.create_task(feed_file(session, os.fspath(clip), clock))
    await clock.advance(3.5, step=0.05)
    await asyncio.gather(feed, return_exceptions=True)
    assert session.error is None and session.player.music_emotion is not None
    assert session.playout.buffered_s >= 0.5 and session.playout.head == 0
    return session, hooks


class Reader:
    """aiortc's sender: recv() in a loop, noting when each packet was handed out."""

    def __init__(self, track: BgmTrack, clock: VirtualClock) -> None:
        self.track, self.clock = track, clock
        self.got: list[tuple[float, av.Packet]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            packet = await self.track.recv()
            assert isinstance(packet, av.Packet)
            self.got.append((self.clock.now(), packet))

    async def run(self, seconds: float, *, wait_for_encoder: bool) -> None:
        """Advance the clock step by step; with ``wait_for_encoder``, let each batch finish before time moves on."""
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
            await self.clock.advance(STEP, step=STEP)
            enc = self.track.encoder
            while wait_for_encoder and enc is not None and enc.in_flight:
                await asyncio.sleep(0.001)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def _decode(packets: list[av.Packet]) -> np.ndarray:
    decoder = av.CodecContext.create("opus", "r")
    frames = [f for p in packets for f in decoder.decode(p)]
    assert frames and frames[0].sample_rate == 48000 and frames[0].layout.nb_channels == 2
    return np.concatenate([f.to_ndarray() for f in frames], axis=1).T.astype(np.float64)  # (n, 2)


def _check_audio(decoded: np.ndarray, sent: np.ndarray) -> None:
    """The decoded packets are the frames sent, in order, at their level: one lag (the encoder's look-ahead)
    aligns the whole stream, and every 20 ms of it matches the frame sent there."""
    ref = sent[:, 0].astype(np.float64)
    out = decoded[:, 0]
    assert np.sqrt(np.mean(ref**2)) > 0.01  # music, not silence
    seg = slice(9600, 9600 + 24000)
    lags = range(0, 961)
    lag = max(lags, key=lambda d: float(np.dot(out[seg.start + d : seg.stop + d], ref[seg])))
    n = min(len(ref), len(out) - lag)
    a, b = out[lag : lag + n], ref[:n]
    rms_db = 20 * math.log10(np.sqrt(np.mean(a[4800:] ** 2)) / np.sqrt(np.mean(b[4800:] ** 2)))
    assert abs(rms_db) < 1.0, rms_db
    blocks = (n - 4800) // 960
    for k in range(blocks):  # past the decoder's start-up
        s = slice(4800 + k * 960, 4800 + (k + 1) * 960)
        energy = float(np.sum(b[s] ** 2))
        if energy > 1e-6:
            snr = 10 * math.log10(energy / max(float(np.sum((a[s] - b[s]) ** 2)), 1e-12))
            assert snr > 12.0, (k, snr)  # ~20 dB when right; a swapped or lost frame: below 6


async def test_packets_are_consecutive_batched_and_decode_to_the_bgm(models: InProcessModels,
                                                                     calm_clip: Path) -> None:
    clock = VirtualClock()
    session, _ = await _music_session(models, calm_clip, clock)
    executor = CountingExecutor()
    track = BgmTrack(session, clock, opus=True, executor=executor)
    enc = track.encoder
    assert enc is not None and enc.ahead_frames == 6 and enc.batch_frames == 3  # 0.12 s: 6 frames, 3 a batch
    reader = Reader(track, clock)
    await reader.run(3.0, wait_for_encoder=True)
    await reader.stop()
    packets = [p for _, p in reader.got]
    n = len(packets)
    assert n == pytest.approx(3.0 * 50, abs=2)
    assert all(isinstance(p, av.Packet) for p in packets)
    assert [p.pts for p in packets] == [960 * k for k in range(n)]
    assert all(p.time_base == Fraction(1, 48000) for p in packets)
    for k, (t, _) in enumerate(reader.got):  # on time: never early, never later than a clock step
        assert -1e-9 <= t - (reader.got[0][0] + 0.02 * k) <= STEP + 1e-9
    assert track.late_frames == 0 and track.skipped == 0
    # the first frame is encoded when it is due (nothing is ahead of it); every other one by the thread,
    # in batches: one hand-off per 3 frames, not one per frame
    assert enc.inline_frames == 1 and enc.fallback_frames == 0 and enc.encode_waits == 0
    assert executor.submits == enc.batches <= n // 3 + 2
    assert enc.thread_frames == len(session.pulled) - 1 and n - 1 <= enc.thread_frames <= n - 1 + 6
    # ahead: between 3 and 6 frames pulled but not sent (the play head leads what is heard)
    assert 3 <= len(session.pulled) - n <= 6
    _check_audio(_decode(packets), np.concatenate(session.pulled[:n]))
    executor.shutdown()
    await session.close()


async def test_a_stalled_encode_thread_does_not_make_frames_late(models: InProcessModels, calm_clip: Path) -> None:
    clock = VirtualClock()
    session, _ = await _music_session(models, calm_clip, clock)
    executor = ThreadPoolExecutor(max_workers=1)
    release = threading.Event()
    blocker = executor.submit(release.wait)  # the one encode thread is busy elsewhere (a stalled process)
    track = BgmTrack(session, clock, opus=True, executor=executor)
    enc = track.encoder
    assert enc is not None
    reader = Reader(track, clock)
    await reader.run(1.0, wait_for_encoder=False)
    stalled = len(reader.got)
    assert stalled == pytest.approx(51, abs=1)
    # every frame went out on time, encoded on the loop: first the batch's frames, then new ones;
    # no second batch while the first is still waiting for the thread
    assert track.late_frames == 0 and track.max_lateness_s <= STEP + 1e-9 and track.skipped == 0
    assert enc.fallback_frames == stalled - 1 and enc.inline_frames == stalled
    assert enc.batches == 1 and enc.in_flight and enc.thread_frames == 0
    release.set()
    await asyncio.wrap_future(blocker)
    while enc.in_flight:
        await asyncio.sleep(0.001)
    await reader.run(1.0, wait_for_encoder=True)  # the thread is back: batches again
    await reader.stop()
    # one more frame on the loop (due before the first new batch was pulled), then none
    assert enc.fallback_frames == stalled and enc.batches > 10 and enc.thread_frames >= 45
    packets = [p for _, p in reader.got]
    assert [p.pts for p in packets] == [960 * k for k in range(len(packets))]
    _check_audio(_decode(packets), np.concatenate(session.pulled[: len(packets)]))
    executor.shutdown()
    await session.close()


async def test_a_stall_mid_batch_keeps_the_frames_in_order(models: InProcessModels, calm_clip: Path) -> None:
    """The loop takes the first frames of a waiting batch, the thread encodes the rest when it is free."""
    clock = VirtualClock()
    session, _ = await _music_session(models, calm_clip, clock)
    executor = ThreadPoolExecutor(max_workers=1)
    track = BgmTrack(session, clock, opus=True, executor=executor)
    enc = track.encoder
    assert enc is not None
    reader = Reader(track, clock)
    await reader.run(0.5, wait_for_encoder=True)
    release = threading.Event()
    blocker = executor.submit(release.wait)
    # run until a batch is waiting behind the blocker and the loop has taken two of its frames
    while not (enc.in_flight and enc.fallback_frames == 2):
        await clock.advance(STEP, step=STEP)
    assert enc.queued > 0  # the rest of the batch is still waiting for the thread
    release.set()
    await asyncio.wrap_future(blocker)
    while enc.in_flight:
        await asyncio.sleep(0.001)
    await reader.run(0.5, wait_for_encoder=True)
    await reader.stop()
    assert enc.fallback_frames == 2 and track.late_frames == 0
    packets = [p for _, p in reader.got]
    assert [p.pts for p in packets] == [960 * k for k in range(len(packets))]
    _check_audio(_decode(packets), np.concatenate(session.pulled[: len(packets)]))
    executor.shutdown()
    await session.close()


async def test_mood_change_latency_counts_to_when_the_frame_goes_out(models: InProcessModels,
                                                                     calm_clip: Path) -> None:
    clock = VirtualClock()
    session, hooks = await _music_session(models, calm_clip, clock)
    executor = ThreadPoolExecutor(max_workers=1)
    track = BgmTrack(session, clock, opus=True, executor=executor)
    reader = Reader(track, clock)
    await reader.run(1.0, wait_for_encoder=True)
    new = "exciting" if session.player.music_emotion != "exciting" else "sad"
    confirmed = clock.now()
    session.player.change_mood(new, detect_s=0.5)
    await reader.run(2.5, wait_for_encoder=True)
    await reader.stop()
    assert session.mood_changes == 1 and len(hooks.pulled_at) == 1
    latency = session.latencies[0]
    pulled_at, head = hooks.pulled_at[0]
    # the frame that reached the splice point is the m-th made, and went out as the packet stamped m * 960
    m = head // 960 - 1
    sent_at = next(t for t, p in reader.got if p.pts == m * 960)
    assert latency == pytest.approx(sent_at - confirmed, abs=STEP + 1e-9)
    # it was made 3-6 frames before it went out; the latency counts that wait
    assert 0.06 - STEP <= sent_at - pulled_at <= 0.12 + 1e-9
    assert latency >= pulled_at - confirmed + 0.06 - STEP
    assert session.audible[0] == pytest.approx(0.5 + latency)
    executor.shutdown()
    await session.close()


async def test_no_encode_ahead_encodes_each_frame_when_due(models: InProcessModels) -> None:
    clock = VirtualClock()
    session = LiveSession(models, LiveOptions(encode_ahead_s=0.0), clock=clock)
    executor = CountingExecutor()
    track = BgmTrack(session, clock, opus=True, executor=executor)
    reader = Reader(track, clock)
    await reader.run(0.5, wait_for_encoder=False)
    await reader.stop()
    enc = track.encoder
    assert enc is not None and enc.ahead_frames == 0
    n = len(reader.got)
    assert [p.pts for _, p in reader.got] == [960 * k for k in range(n)]
    assert executor.submits == 0 and enc.inline_frames == n and enc.fallback_frames == 0 and enc.queued == 0
    executor.shutdown()
    await session.close()


def test_encode_ahead_option_is_validated() -> None:
    assert LiveOptions().encode_ahead_s == 0.12
    for bad in (-0.02, 1.5, float("nan")):
        with pytest.raises(OptionError, match="encode_ahead_s"):
            LiveOptions(encode_ahead_s=bad)
