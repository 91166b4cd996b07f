"""A live session whose analysis is degraded under load (issue 13): half the analysis frames at level 1,
no face analysis at level 2 -- and the mood still follows a calm -> action change.

Real engines (InProcessModels.default with faces), a real synthesized video fed as a camera would
(:func:`~pipelines.live.ingest.feed_file`), the virtual clock; the models are wrapped only to count
what the session asks of them.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from pipelines.clock import VirtualClock
from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, render_frame, write_video
from pipelines.frames import VideoFrame
from pipelines.live.ingest import VideoSampler, feed_file
from pipelines.live.models import InProcessModels
from pipelines.live.pacing import paced_frames
from pipelines.live.reports import MoodReport
from pipelines.live.session import LiveSession
from tests.fakes import FaultyModels, HooksRecorder

CHANGE_AT = 8.0
CALM_EMOTIONS = ("sad", "relaxing", "neutral", "tense", "fearful")


class CountingModels(FaultyModels):
    """The real models, counting the frames encoded and when faces were analysed (no latency, no faults)."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(InProcessModels.default(inline=True), clock=clock)
        self.vclock = clock
        self.frames = 0
        self.face_calls_at: list[float] = []

    async def encode_frames(self, rgb: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        self.frames += rgb.shape[0]
        return await super().encode_frames(rgb, previous)

    async def analyze_faces(self, gray: np.ndarray) -> np.ndarray:
        self.face_calls_at.append(self.vclock.now())
        return await super().analyze_faces(gray)


@pytest.fixture(scope="module")
def calm_then_exciting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("degrade") / "calm_exciting.mp4"
    write_video(os.fspath(path), [CALM_DARK, replace(BRIGHT_FAST, duration_s=10.0)])
    return path


async def run(video: Path, seconds: float, level: int, changes: dict[float, int] | None = None
              ) -> tuple[LiveSession, CountingModels, list[MoodReport], HooksRecorder]:
    """The session at degrade ``level`` from the start (and at ``changes``: clock s -> level)."""
    clock = VirtualClock()
    models = CountingModels(clock)
    hooks = HooksRecorder()
    reports: list[MoodReport] = []
    session = LiveSession(models, clock=clock, hooks=hooks, on_report=reports.append)
    session.set_degrade(level)
    session.start()

    async def read() -> None:
        async for _ in paced_frames(session):
            pass

    tasks = [asyncio.create_task(feed_file(session, os.fspath(video), clock)), asyncio.create_task(read())]
    t = 0.0
    for at, lv in sorted((changes or {}).items()):
        await clock.advance(at - t, step=0.02)
        session.set_degrade(lv)
        t = at
    await clock.advance(seconds - t, step=0.02)
    await session.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert session.error is None
    return session, models, reports, hooks


def assert_follows_the_change(reports: list[MoodReport]) -> None:
    early = [r for r in reports if 3.5 <= r.media_s <= CHANGE_AT]
    late = [r for r in reports if r.media_s >= CHANGE_AT + 5.0]
    assert early and late
    assert all(r.emotion in CALM_EMOTIONS for r in early)
    assert all(r.emotion in ("exciting", "happy") for r in late)
    assert all(r.arousal > e.arousal + 0.5 for r in late for e in early)
    assert late[-1].music is not None and late[-1].music["emotion"] == late[-1].emotion
    assert reports[-1].mood_changes >= 1


async def test_degraded_sessions_analyse_half_the_frames_then_skip_faces_and_still_follow_the_mood(
        calm_then_exciting: Path) -> None:
    full, full_models, full_reports, _ = await run(calm_then_exciting, 17.5, 0)
    half, half_models, half_reports, half_hooks = await run(calm_then_exciting, 17.5, 1)
    bare, bare_models, bare_reports, bare_hooks = await run(calm_then_exciting, 17.5, 2)
    # level 0: every analysis frame (6 a second) and faces on some of them
    last_end = full.analyzer.window(full.windows_done - 1)[1]
    assert full_models.frames == pytest.approx(6 * last_end, abs=2)  # the frames of every window analysed
    assert full_models.face_calls_at and all(r.degraded == 0 for r in full_reports)
    # level 1: about half the frames, faces still analysed
    assert 0.4 <= half_models.frames / full_models.frames <= 0.6
    assert half_models.face_calls_at
    # level 2: as few frames, and not one face analysis
    assert 0.4 <= bare_models.frames / full_models.frames <= 0.6
    assert bare_models.calls["analyze_faces"] == 0 and not bare_models.face_calls_at
    # every window was still analysed, and the reports carry the level
    for session, reports, level in ((half, half_reports, 1), (bare, bare_reports, 2)):
        assert session.windows_done >= full.windows_done - 1 and session.windows_dropped == 0
        assert reports and all(r.degraded == level for r in reports)
        assert reports[-1].to_json()["degraded"] == level
        assert_follows_the_change(reports)
        assert session.playout.underruns == 0
    assert_follows_the_change(full_reports)
    # the hooks heard the level set, and back to 0 at the close (a gauge by level returns to where it was)
    assert half_hooks.degrades == [(1, 0), (0, 1)] and bare_hooks.degrades == [(2, 0), (0, 2)]


async def test_level_changed_mid_session_stops_and_resumes_face_analysis(calm_then_exciting: Path) -> None:
    session, models, reports, hooks = await run(calm_then_exciting, 17.5, 0, {4.0: 2, 12.0: 0})
    calls = np.array(models.face_calls_at)
    assert np.any(calls < 4.0) and np.any(calls > 12.0)
    assert not np.any((calls > 4.0) & (calls < 12.0))
    levels = [r.degraded for r in reports]
    assert levels[:3] == [0, 0, 0] and levels[-1] == 0
    assert [lv for i, lv in enumerate(levels) if i == 0 or lv != levels[i - 1]] == [0, 2, 0]
    assert hooks.degrades == [(2, 0), (0, 2)]
    assert_follows_the_change(reports)
    assert session.windows_dropped == 0


async def test_a_client_that_keeps_sending_every_frame_is_thinned_by_the_session() -> None:
    """A transport whose sampler does not follow the level (a gRPC client samples on its side): the session
    analyses every other frame itself."""
    counts = {}
    for level in (0, 1):
        clock = VirtualClock()
        models = CountingModels(clock)
        session = LiveSession(models, clock=clock)
        session.set_degrade(level)
        session.start()
        for k in range(6 * 8):  # 8 s at 6 fps, pushed when their time comes
            t = k / 6
            await clock.advance(t - clock.now(), step=0.02)
            session.push_video(VideoFrame(pts_s=t, rgb=render_frame(CALM_DARK, t, 0, 96, 72)))
        await clock.advance(0.5, step=0.02)
        counts[level] = (models.frames, session.windows_done)
        await session.close()
    (full, windows_full), (half, windows_half) = counts[0], counts[1]
    assert full >= 40 and half == pytest.approx(full / 2, abs=1)
    assert windows_half == windows_full  # the windows still come every 0.5 s


def test_video_sampler_keeps_the_rate_and_follows_the_face_switch() -> None:
    """30 fps in: 6 analysis frames a second whatever the level (a degraded session thins them itself and
    measures motion against the ones it skips); grey pictures for faces once a second unless off."""
    sampler = VideoSampler()
    picture = av.VideoFrame.from_ndarray(np.zeros((72, 128, 3), np.uint8), format="rgb24")
    kept: dict[str, list[VideoFrame]] = {"faces": [], "no faces": [], "faces again": []}
    for k in range(3 * 30):
        t = k / 30
        part = "faces" if t < 1.0 else "no faces" if t < 2.0 else "faces again"
        sampler.faces = part != "no faces"
        vf = sampler.offer(picture, t)
        if vf is not None:
            kept[part].append(vf)
    assert [len(v) for v in kept.values()] == [6, 6, 6]
    assert sum(f.gray is not None for f in kept["faces"]) == 1
    assert all(f.gray is None for f in kept["no faces"])
    assert sum(f.gray is not None for f in kept["faces again"]) == 1


async def test_set_degrade_rejects_unknown_levels_and_reports_to_prometheus() -> None:
    from serve.metrics import REGISTRY, PrometheusHooks

    def gauge(level: int) -> float:
        return REGISTRY.get_sample_value("backscore_live_analysis_degraded", {"level": str(level)}) or 0.0

    before = gauge(1), gauge(2)
    clock = VirtualClock()
    session = LiveSession(FaultyModels(clock=clock), clock=clock, hooks=PrometheusHooks())
    with pytest.raises(ValueError, match="0, 1 or 2"):
        session.set_degrade(3)
    session.set_degrade(1)
    assert session.degrade_level == 1 and session.analysis_faces
    assert (gauge(1), gauge(2)) == (before[0] + 1, before[1])
    session.set_degrade(2)
    assert not session.analysis_faces
    assert (gauge(1), gauge(2)) == (before[0], before[1] + 1)
    await session.close()
    assert (gauge(1), gauge(2)) == before
