"""Slow and stalled backends never starve playout (issue 13, item 5), on the virtual clock.

A real live session (embedded engines, the procedural composer, a synthesized calm -> action video fed
as a camera would) whose model calls are delayed on the clock by a wrapper around the real models. The
output side is paced by :class:`~pipelines.live.pacing.FramePacer`, the pacer of the WebRTC BGM track and
the gRPC stream. What the design guarantees, and these tests check frame by frame:

* every 20 ms frame is handed out on time, whatever the models do (their calls are awaited, never
  waited for by the pacer);
* a frame is silence (an underrun) exactly when the music buffer is truly empty: never while only the
  analysis stalls, nor while the music calls are slower than the lead kept ahead (``lead_s``); a music
  stall longer than what is buffered empties it, and the silence is counted;
* once the backend is back, the music resumes and the mood change the stall held up is heard.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.clock import VirtualClock
from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, write_video
from pipelines.live.ingest import feed_file
from pipelines.live.models import InProcessModels
from pipelines.live.options import LiveOptions
from pipelines.live.pacing import FramePacer
from pipelines.live.reports import MoodReport
from pipelines.live.session import LiveSession
from tests.fakes import ClockedHooks, FaultyModels

CHANGE_AT = 8.0
SECONDS = 17.5
FRAME = 960  # 20 ms at 48 kHz
ANALYSIS_CALLS = ("encode_frames", "analyze_faces", "encode_audio", "affect")


class StallingModels(FaultyModels):
    """The real models; a call of a method in ``stalls`` made while its backend is down (``[from_s, until_s)``
    on the clock) returns only once it is back up, at ``until_s``. Per-call latency as :class:`FaultyModels`."""

    def __init__(self, clock: VirtualClock, stalls: Mapping[str, tuple[float, float]] | None = None,
                 latency_s: Mapping[str, float] | None = None) -> None:
        super().__init__(InProcessModels.default(inline=True), clock=clock, latency_s=latency_s)
        self.vclock = clock
        self.stalls = dict(stalls or {})
        self.stalled: Counter[str] = Counter()

    async def _call(self, method: str, run: Callable[[], Any]) -> Any:
        down = self.stalls.get(method)
        now = self.vclock.now()
        if down is not None and down[0] <= now < down[1]:
            self.stalled[method] += 1
            await self.vclock.sleep(down[1] - now)
        return await super()._call(method, run)


@dataclass
class Played:
    """One output frame: when it was handed out, when it was due, the BGM buffered before it, an underrun?"""

    at: float
    due: float
    buffered: int
    underrun: bool
    rms: float


@dataclass
class Run:
    session: LiveSession
    models: StallingModels
    hooks: ClockedHooks
    pacer: FramePacer
    played: list[Played]
    reports: list[MoodReport]


@pytest.fixture(scope="module")
def calm_then_exciting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stalls") / "calm_exciting.mp4"
    write_video(os.fspath(path), [CALM_DARK, replace(BRIGHT_FAST, duration_s=10.0)])
    return path


async def run(video: Path, stalls: Mapping[str, tuple[float, float]] | None = None,
              latency_s: Mapping[str, float] | None = None) -> Run:
    clock = VirtualClock()
    models = StallingModels(clock, stalls, latency_s)
    hooks = ClockedHooks(clock)
    reports: list[MoodReport] = []
    session = LiveSession(models, LiveOptions(), clock=clock, hooks=hooks, on_report=reports.append)
    session.start()
    pacer = FramePacer(clock, FRAME)
    played: list[Played] = []

    async def read() -> None:  # what the WebRTC BGM track does each frame, less the encoding
        start = clock.now()  # frame k is due at start + k * 20 ms
        while not session.closed:
            k = await pacer.next()
            buffered = session.playout.end - session.playout.head
            before = session.playout.underruns
            frame = session.pull_frame()
            played.append(Played(clock.now(), start + k * pacer.frame_s, buffered,
                                 session.playout.underruns > before, float(np.sqrt(np.mean(frame**2)))))

    tasks = [asyncio.create_task(feed_file(session, os.fspath(video), clock)), asyncio.create_task(read())]
    await clock.advance(SECONDS, step=0.02)
    await session.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert session.error is None
    return Run(session, models, hooks, pacer, played, reports)


def assert_paced(r: Run) -> None:
    """Every frame handed out at its due time on the clock, none skipped, one every 20 ms."""
    assert len(r.played) == pytest.approx(SECONDS * 50, abs=2) and r.pacer.frames == len(r.played)
    assert max(p.at - p.due for p in r.played) < 1e-9
    assert r.pacer.late_frames == 0 and r.pacer.skipped == 0
    assert np.allclose(np.diff([p.due for p in r.played]), 0.02)


def assert_underruns_only_when_dry(r: Run) -> None:
    """A frame is an underrun exactly when the buffer held less than a frame (once the music had started)."""
    started = next(i for i, p in enumerate(r.played) if p.buffered >= FRAME)
    for p in r.played[started:]:
        assert p.underrun == (p.buffered < FRAME), p
    assert sum(p.underrun for p in r.played) == r.session.playout.underruns == r.hooks.underruns


def assert_change_heard(r: Run, not_before: float) -> None:
    late = [x for x in r.reports if x.media_s >= CHANGE_AT + 5.0]
    assert late and all(x.emotion in ("exciting", "happy") for x in late)
    assert late[-1].music is not None and late[-1].music["emotion"] == late[-1].emotion
    assert r.hooks.heard_at and not_before <= r.hooks.heard_at[0] <= not_before + 3.0


@pytest.mark.parametrize("calls", [("affect",), ANALYSIS_CALLS], ids=["affect", "all analysis"])
async def test_an_analysis_stall_never_starves_playout(calm_then_exciting: Path, calls: tuple[str, ...]) -> None:
    """The affect backend (or every analysis backend) down for 3 s across the cut: the music carries on in
    the old mood without a single underrun, and the change is heard once analysis is back."""
    down = (7.0, 10.0)
    r = await run(calm_then_exciting, stalls={m: down for m in calls})
    assert r.models.stalled[calls[0]] >= 1  # the analysis loop waited on it (the later calls queue behind)
    assert_paced(r)
    assert r.session.playout.underruns == 0 and r.hooks.underruns == 0
    assert_underruns_only_when_dry(r)
    assert all(p.rms > 1e-3 for p in r.played if p.at >= 4.0)  # music all through the stall
    assert_change_heard(r, not_before=down[1])


async def test_a_music_stall_longer_than_the_lead_is_silence_counted_not_lost_time(calm_then_exciting: Path) -> None:
    """The music backend down from 5.5 s to 9 s (its call made at ~5.9 s waits ~3 s, far more than the
    0.6 s lead): the buffer runs dry and the silence is counted frame by frame, while the pacer keeps
    handing out every frame on time; music resumes when the backend does, in the new mood soon after."""
    down = (5.5, 9.0)
    r = await run(calm_then_exciting, stalls={"music": down})
    assert r.models.stalled["music"] >= 1
    assert_paced(r)
    assert_underruns_only_when_dry(r)
    dry = [p for p in r.played if p.underrun]
    assert dry, "the stall outlasted the buffered music"
    assert all(down[0] < p.at <= down[1] for p in dry)  # silence only while the backend was down
    assert len(dry) <= (down[1] - down[0]) * 50
    assert all(p.rms > 1e-3 for p in r.played if p.at > down[1] + 0.02)  # music from the next frame on
    assert_change_heard(r, not_before=down[1])


@pytest.mark.parametrize("call", ["music", "affect"])
async def test_backends_slower_than_usual_but_within_the_lead_cause_no_underrun(calm_then_exciting: Path,
                                                                                call: str) -> None:
    """Every call of the music (or affect) backend takes 0.3 s, half the lead: no frame late, no underrun,
    the mood still followed."""
    r = await run(calm_then_exciting, latency_s={call: 0.3})
    assert r.models.calls[call] > 3
    assert_paced(r)
    assert r.session.playout.underruns == 0
    assert_underruns_only_when_dry(r)
    late = [x for x in r.reports if x.media_s >= CHANGE_AT + 5.0]
    assert late and all(x.emotion in ("exciting", "happy") for x in late)
