"""The live session core on a virtual clock: real engines, real synthesized media, fakes only around them."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engines.base import MoodControl
from engines.composer import ProceduralMusicEngine
from pipelines.clock import VirtualClock
from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, write_video
from pipelines.frames import AUDIO_RATE, AudioFrame
from pipelines.live.buffers import PlayoutBuffer
from pipelines.live.ingest import feed_file
from pipelines.live.models import InProcessModels, LiveModels
from pipelines.live.music import MusicContext, MusicRequest, StreamTable
from pipelines.live.options import LiveOptions
from pipelines.live.pacing import paced_frames
from pipelines.live.reports import MoodReport
from pipelines.live.session import LiveSession
from tests.fakes import FaultyModels, HooksRecorder, InjectedFailure

CHANGE_AT = 8.0


@pytest.fixture(scope="module")
def calm_then_exciting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("live") / "calm_exciting.mp4"
    write_video(os.fspath(path), [CALM_DARK, replace(BRIGHT_FAST, duration_s=10.0)])
    return path


# --------------------------------------------------------------------------- playout buffer


def test_playout_pull_counts_underruns_only_after_start() -> None:
    buf = PlayoutBuffer()
    assert buf.pull(960).shape == (960, 2)
    assert buf.underruns == 0  # nothing started yet: silence is not an underrun
    buf.append(np.ones((1500, 2), np.float32))
    assert np.all(buf.pull(960) == 1.0)
    part = buf.pull(960)
    assert np.all(part[:540] == 1.0) and np.all(part[540:] == 0.0)
    assert buf.underruns == 1
    assert buf.head == 3 * 960


def test_splice_crossfades_with_equal_power_and_drops_old_future() -> None:
    buf = PlayoutBuffer()
    buf.append(np.full((4800, 2), 0.5, np.float32))
    buf.pull(960)
    at = buf.splice(2000, np.full((3000, 2), -0.5, np.float32), fade=480)
    assert at == 2000 and buf.end == 5000
    out = np.concatenate([buf.pull(960) for _ in range(5)])[:, 0]
    before, fade, after = out[: 2000 - 960], out[2000 - 960 : 2000 - 960 + 480], out[2000 - 960 + 480 :]
    assert np.all(before == 0.5) and np.allclose(after[: 3000 - 480], -0.5)
    # equal power: old*cos + new*sin, monotonic from +0.5 towards -0.5 without a jump
    assert fade[0] > 0.45 and fade[-1] < -0.45 and np.all(np.diff(fade) < 0)
    assert np.max(np.abs(np.diff(out[: 2000 - 960 + 480]))) < 0.01


def test_splice_before_head_is_clamped_to_head() -> None:
    buf = PlayoutBuffer()
    buf.append(np.zeros((960 * 3, 2), np.float32))
    buf.pull(960)
    assert buf.splice(10, np.ones((960, 2), np.float32), fade=0) == 960


# --------------------------------------------------------------------------- music worker streams


def _control(emotion: str = "relaxing") -> MoodControl:
    return MoodControl(valence=0.4, arousal=-0.4, emotion=emotion)


def test_stream_table_continues_and_restores_a_lost_stream() -> None:
    engine = ProceduralMusicEngine()
    table = StreamTable(engine)
    ctx = MusicContext("s:0", seed=3)
    r1 = table.generate(MusicRequest(ctx, _control()))
    r2 = table.generate(MusicRequest(r1.context, _control()))
    assert not r1.restored and not r2.restored
    assert r2.context.generated == r1.audio.shape[0] + r2.audio.shape[0]
    assert r2.bars[0].start_s == pytest.approx(r1.audio.shape[0] / AUDIO_RATE, abs=1e-3)
    # a new replica (empty table) gets the context: it restores a stream at the same position
    other = StreamTable(engine)
    r3 = other.generate(MusicRequest(r2.context, _control()))
    assert r3.restored and r3.context.generation == 1
    assert r3.bars[0].start_s == pytest.approx(r2.context.generated / AUDIO_RATE, abs=1e-3)
    assert float(np.sqrt(np.mean(r3.audio**2))) > 1e-3
    # the restored stream then continues normally on that replica
    assert not other.generate(MusicRequest(r3.context, _control())).restored


def test_stream_table_evicts_idle_and_excess_streams() -> None:
    now = [0.0]
    table = StreamTable(ProceduralMusicEngine(), max_streams=2, idle_s=10.0, clock=lambda: now[0])
    for i in range(3):
        table.generate(MusicRequest(MusicContext(f"s:{i}"), _control()))
    assert len(table) == 2
    now[0] = 11.0
    table.generate(MusicRequest(MusicContext("s:9"), _control()))
    assert len(table) == 1


# --------------------------------------------------------------------------- sessions


Run = tuple[LiveSession, list[MoodReport], list[tuple[int, np.ndarray]], HooksRecorder]


async def _run_session(video: Path, models: LiveModels, seconds: float, options: LiveOptions | None = None) -> Run:
    clock = VirtualClock()
    hooks = HooksRecorder()
    reports: list[MoodReport] = []
    session = LiveSession(models, options, clock=clock, hooks=hooks, on_report=reports.append)
    session.start()
    frames: list[tuple[int, np.ndarray]] = []

    async def read() -> None:
        async for pts, frame in paced_frames(session):
            frames.append((pts, frame))

    tasks = [asyncio.create_task(feed_file(session, os.fspath(video), clock)), asyncio.create_task(read())]
    await clock.advance(seconds, step=0.02)
    await session.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return session, reports, frames, hooks


async def test_live_session_follows_mood_change_with_paced_bgm(calm_then_exciting: Path) -> None:
    session, reports, frames, hooks = await _run_session(calm_then_exciting, InProcessModels.default(inline=True), 17.5)
    assert session.error is None
    # output: one 20 ms frame per 20 ms of clock, pts advancing by 960 samples, never silent once music started
    pts = np.array([p for p, _ in frames])
    assert len(frames) == pytest.approx(17.5 * 50, abs=2)
    assert np.all(np.diff(pts) == 960)
    audio = np.concatenate([f for _, f in frames])
    started = int(4.0 * AUDIO_RATE)
    rms = np.sqrt(np.mean(audio[started:] ** 2))
    assert rms > 0.01
    assert hooks.underruns == 0 and session.playout.underruns == 0
    # mood: calm/sad first, exciting/happy after the change; the music follows
    early = [r for r in reports if 3.5 <= r.media_s <= CHANGE_AT]
    late = [r for r in reports if r.media_s >= CHANGE_AT + 5.0]
    assert early and late
    assert all(r.emotion in ("sad", "relaxing", "neutral", "tense", "fearful") for r in early)
    assert all(r.emotion in ("exciting", "happy") for r in late)
    assert all(r.arousal > e.arousal + 0.5 for r in late for e in early)
    assert late[-1].music is not None and early[-1].music is not None
    assert late[-1].music["emotion"] == late[-1].emotion
    assert late[-1].music["tempo_bpm"] > early[-1].music["tempo_bpm"] + 20
    # the change reached the play head within 1.5 s of being confirmed (beat-aligned splice)
    assert session.mood_changes >= 1 and hooks.latencies
    assert max(hooks.latencies) <= 1.5
    assert {"frame_encode", "audio_encode", "affect", "music"} <= set(hooks.stages)


async def test_live_session_survives_losing_the_music_worker(calm_then_exciting: Path) -> None:
    models = FaultyModels(InProcessModels.default(inline=True), lose_streams_at=2)  # the music replica is replaced
    session, _, frames, hooks = await _run_session(calm_then_exciting, models, 9.0)
    assert session.music_restores == 1
    assert hooks.underruns == 0
    audio = np.concatenate([f for _, f in frames])[int(4 * AUDIO_RATE) :]
    # no gap: every 100 ms of output after the start carries music
    blocks = audio[: len(audio) // 4800 * 4800].reshape(-1, 4800, 2)
    assert np.all(np.sqrt(np.mean(blocks**2, axis=(1, 2))) > 1e-3)


async def test_analysis_drops_oldest_windows_instead_of_falling_behind(calm_then_exciting: Path) -> None:
    clock = VirtualClock()
    models = FaultyModels(clock=clock, latency_s={"affect": 1.2})  # slower than the 0.5 s hop
    session = LiveSession(models, LiveOptions(max_lag_s=2.0), clock=clock)
    session.start()
    feed = asyncio.create_task(feed_file(session, os.fspath(calm_then_exciting), clock))
    await clock.advance(14.0, step=0.05)
    lag = session.analyzer.media_end() - session.analyzer.window(session.analyzer.next_window)[1]
    await session.close()
    feed.cancel()
    await asyncio.gather(feed, return_exceptions=True)
    assert session.windows_dropped > 0
    assert lag < 2.0 + 2 * 1.2  # bounded: at most the allowed lag plus the window in flight


async def test_failed_model_calls_are_retried_and_the_session_carries_on(calm_then_exciting: Path) -> None:
    """Replicas that fail calls now and then (killed, restarting): each failed call is retried, the
    session neither ends nor misses a beat, and the retries are counted."""
    models = FaultyModels(InProcessModels.default(faces=False, inline=True),
                          fail_calls={"affect": {8, 9, 10}, "encode_frames": {5}, "music": {2}})
    session, _, frames, hooks = await _run_session(calm_then_exciting, models, 6.0)
    assert session.error is None
    assert hooks.retries == {"affect": 3, "encode_frames": 1, "music": 1}
    assert models.calls["affect"] > 10 and session.windows_done >= 8  # analysis went on past the failures
    pts = np.array([p for p, _ in frames])
    assert np.all(np.diff(pts) == 960) and len(frames) == pytest.approx(6.0 * 50, abs=2)
    assert hooks.underruns == 0


async def test_a_model_that_keeps_failing_ends_the_session_after_the_retry_budget(calm_then_exciting: Path) -> None:
    """An affect replica that never comes back: retried for ``retry_budget_s``, then the error is surfaced
    (the transports end the session on it) while the BGM already generated keeps its pacing."""
    models = FaultyModels(InProcessModels.default(faces=False, inline=True),
                          fail_calls={"affect": set(range(8, 10_000))})
    session, _, frames, hooks = await _run_session(calm_then_exciting, models, 12.0,
                                                   LiveOptions(retry_budget_s=3.0))
    assert isinstance(session.error, InjectedFailure)
    assert 5 < hooks.retries["affect"] < 60  # backed off, not spinning
    pts = np.array([p for p, _ in frames])
    assert np.all(np.diff(pts) == 960) and len(frames) == pytest.approx(12.0 * 50, abs=2)


async def test_mix_original_returns_client_audio_under_the_bgm() -> None:
    clock = VirtualClock()
    session = LiveSession(InProcessModels.default(faces=False, inline=True), LiveOptions(mix_original=True),
                          clock=clock)
    tone = (0.25 * np.sin(2 * np.pi * 440 * np.arange(960) / AUDIO_RATE)).astype(np.float32)
    session.push_audio(AudioFrame(0.0, np.stack([tone, tone], axis=1), AUDIO_RATE))
    out = session.pull_frame()  # no BGM yet: exactly the client's audio
    assert np.allclose(out[:, 0], tone, atol=1e-6)
    with pytest.raises(ValueError, match="48000"):
        session.push_audio(AudioFrame(0.0, np.zeros((160, 2), np.float32), 16_000))
    await session.close()


def test_bad_live_options_are_rejected() -> None:
    from pipelines.errors import OptionError

    with pytest.raises(OptionError, match="unknown style"):
        LiveOptions(style="polka")
    with pytest.raises(OptionError, match="frame_ms"):
        LiveOptions(frame_ms=7)


def test_sample_ring_keeps_the_latest_samples_by_absolute_index() -> None:
    from pipelines.live.buffers import SampleRing

    ring = SampleRing(1000)
    data = np.arange(2500 * 2, dtype=np.float32).reshape(-1, 2)
    for i in range(0, 2500, 300):  # frames crossing the wrap point
        ring.write(data[i : i + 300])
    assert ring.end == 2500 and ring.start == 1500
    assert np.array_equal(ring.read(1400, 2600), data[1500:2500])
    assert np.array_equal(ring.read(1990, 2010), data[1990:2010])
    ring.write(np.ones((10, 2), np.float32), skip=5)  # 5 lost samples, then 10
    assert ring.end == 2515 and np.all(ring.read(2505, 2515) == 1.0)
    ring.write(data[:1500])  # more than the capacity at once: only the last 1000 are kept
    assert np.array_equal(ring.read(0, 10**6), data[500:1500])
