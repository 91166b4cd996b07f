"""Live mood following on the virtual clock: a cut into an action scene is heard within 2 s, steady content
never moves the music.

Real engines (feature encoders, affect model, the procedural composer) and real synthesized media: the
pictures and sound of :mod:`pipelines.devtools.synth_video` scenes, pushed into the session as a client
would send them (6 analysis frames a second, 20 ms of audio at a time) when their time comes on the clock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import numpy as np
import pytest

from pipelines.clock import VirtualClock
from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, Scene, render_audio, render_frame
from pipelines.frames import AUDIO_RATE, AudioFrame, VideoFrame
from pipelines.live.ingest import feed_items
from pipelines.live.models import InProcessModels
from pipelines.live.options import LiveOptions
from pipelines.live.pacing import paced_frames
from pipelines.live.session import LiveSession
from tests.fakes import ClockedHooks

FPS = 6.0  # the live analysis rate


@dataclass(frozen=True)
class Part:
    """A stretch of the clip: what it shows, what it sounds like, for how long; a new ``shot`` is a cut."""

    picture: Scene
    sound: Scene
    duration_s: float
    shot: int


def synth_media(parts: list[Part], audio_delay_s: float = 0.0) -> tuple[list[tuple[float, VideoFrame | AudioFrame]],
                                                                        float]:
    """The clip's analysis frames and 20 ms audio frames in arrival order (the sound ``audio_delay_s`` behind
    the picture, as a live client's tracks can be)."""
    items: list[tuple[float, VideoFrame | AudioFrame]] = []
    t0, sample = 0.0, 0
    for p in parts:
        for k in range(int(round(p.duration_s * FPS))):
            ts = k / FPS
            shot = p.shot * 1000 + (int(ts / p.picture.cut_every_s) if p.picture.cut_every_s else 0)
            items.append((t0 + ts, VideoFrame(pts_s=t0 + ts, rgb=render_frame(p.picture, ts, shot, 96, 72))))
        n = int(round((t0 + p.duration_s) * AUDIO_RATE)) - sample
        mono = render_audio(p.sound, n, sample, seed=p.shot)
        for i in range(0, n, 960):
            x = mono[i : i + 960]
            t = (sample + i) / AUDIO_RATE + audio_delay_s
            items.append((t, AudioFrame(t, np.stack([x, x], axis=1), AUDIO_RATE)))
        sample += n
        t0 += p.duration_s
    items.sort(key=lambda it: (it[0], isinstance(it[1], AudioFrame)))
    return items, t0


@dataclass
class Run:
    session: LiveSession
    hooks: ClockedHooks
    audio: np.ndarray
    #: The music's emotion at the play head, sampled every 0.1 s: (clock s, emotion or None).
    playing: list[tuple[float, str | None]]


async def run_live(parts: list[Part], options: LiveOptions | None = None, audio_delay_s: float = 0.0) -> Run:
    items, duration = synth_media(parts, audio_delay_s)
    clock = VirtualClock()
    hooks = ClockedHooks(clock)
    session = LiveSession(InProcessModels.default(faces=False, inline=True), options, clock=clock, hooks=hooks)
    session.start()
    frames: list[np.ndarray] = []
    playing: list[tuple[float, str | None]] = []

    async def read() -> None:
        async for _, frame in paced_frames(session):
            frames.append(frame)
            if len(frames) % 5 == 0:
                bar = session.playing_bar()
                playing.append((clock.now(), None if bar is None else bar.emotion))

    tasks = [asyncio.create_task(feed_items(session, items, clock)), asyncio.create_task(read())]
    await clock.advance(duration + 0.3, step=0.02)
    await session.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert session.error is None
    return Run(session, hooks, np.concatenate(frames), playing)


CALM = replace(CALM_DARK, duration_s=10.0)
ACTION = replace(BRIGHT_FAST, duration_s=10.0)
CHANGE_AT = 10.3  # off the 0.5 s window grid on purpose


# --------------------------------------------------------------------------- sessions


async def test_cut_into_an_action_scene_is_heard_within_two_seconds() -> None:
    """Dark, still, quiet -> a cut to bright, fast-cut, loud: the new music is heard <= 2 s after the cut,
    confirmed by the fast path (not the hysteresis), and it is the action scene's music."""
    run = await run_live([Part(CALM, CALM, CHANGE_AT, 0), Part(ACTION, ACTION, 8.0, 1)])
    s, hooks = run.session, run.hooks
    assert s.mood_changes == 1 and s.player.urgent_changes == 1 and s.analyzer.fast_changes == 1
    assert hooks.heard_at[0] - CHANGE_AT <= 2.0  # from the cut to the new music at the play head
    assert CHANGE_AT <= hooks.heard_at[0]
    # detection (media s from the onset to the confirmation) and audible delay as the session reports them
    assert s.detections[0] <= 1.0 + 1e-6 and s.audible[0] == pytest.approx(s.detections[0] + s.latencies[0])
    # the onset the change is dated to is the cut (one analysis frame)
    assert s.tracker.since_s == pytest.approx(CHANGE_AT, abs=1 / FPS + 1e-6)
    before = [e for t, e in run.playing if 4.0 <= t < CHANGE_AT]
    after = [e for t, e in run.playing if t >= CHANGE_AT + 2.0]
    assert before and set(before) <= {"sad", "relaxing", "fearful", "tense", "neutral"}
    assert after and set(after) == {"exciting"}
    report = s.report()
    assert report.urgent_changes == 1 and report.last_change_audible_s == pytest.approx(s.audible[0], abs=1e-3)
    assert hooks.underruns == 0


async def test_cut_back_to_calm_is_heard_within_two_seconds() -> None:
    change_at = 9.7
    run = await run_live([Part(ACTION, ACTION, change_at, 0), Part(CALM, CALM, 7.0, 1)])
    s = run.session
    assert s.mood_changes == 1 and s.player.urgent_changes == 1
    assert run.hooks.heard_at[0] - change_at <= 2.0
    after = [e for t, e in run.playing if t >= change_at + 2.0]
    assert after and set(after) <= {"sad", "relaxing"}


@pytest.mark.parametrize("delay", [0.3, -0.3], ids=["sound-late", "sound-early"])
async def test_cut_is_heard_within_two_seconds_when_sound_and_picture_are_apart(delay: float) -> None:
    """A live client's sound and picture arrive up to a few hundred ms apart: the short window takes the sound
    from the sound's own step (waiting one more window for it when it is late), not the old scene's."""
    change_at = 9.7
    run = await run_live([Part(ACTION, ACTION, change_at, 0), Part(CALM, CALM, 7.0, 1)], audio_delay_s=delay)
    s = run.session
    assert s.mood_changes == 1 and s.player.urgent_changes == 1
    assert run.hooks.heard_at[0] - change_at <= 2.0
    after = [e for t, e in run.playing if t >= change_at + 2.0]
    assert after and set(after) <= {"sad", "relaxing"}


@pytest.mark.parametrize("scene", [replace(CALM_DARK, duration_s=30.0), replace(BRIGHT_FAST, duration_s=30.0)],
                         ids=["calm", "fast-cut action"])
async def test_steady_content_does_not_move_the_music(scene: Scene) -> None:
    """30 s of one scene (the action one cuts every 0.75 s, each cut with a new colour cast and exposure):
    the fast path looks at its cuts and lets them be; the music never changes."""
    run = await run_live([Part(scene, scene, scene.duration_s, 0)])
    s = run.session
    assert s.mood_changes == 0 and s.analyzer.fast_changes == 0
    if scene.cut_every_s:
        assert s.analyzer.onsets > 0  # cuts with jumps were looked at, and found to be the same mood
    emotions = {e for t, e in run.playing if t >= 5.0}
    assert len(emotions) == 1


async def test_without_the_fast_path_the_hysteresis_decides_later() -> None:
    """The same cut with the fast path off: still one change, confirmed by the smoothing and hold -- seconds
    later (what the fast path saves)."""
    parts = [Part(CALM, CALM, CHANGE_AT, 0), Part(ACTION, ACTION, 8.0, 1)]
    slow = await run_live(parts, LiveOptions(fast_path=False))
    assert slow.session.mood_changes == 1 and slow.session.player.urgent_changes == 0
    assert slow.hooks.heard_at[0] - CHANGE_AT > 3.0


async def test_the_urgent_splice_is_click_free() -> None:
    """The queued music is cut at the next half beat with a 40 ms equal-power crossfade: around the splice the
    output moves no more from one sample to the next than the music does elsewhere (99.9th percentile; a
    hard cut from the old music into the new one's downbeat jumps about twice that)."""
    run = await run_live([Part(CALM, CALM, CHANGE_AT, 0), Part(ACTION, ACTION, 6.0, 1)])
    left = run.audio[:, 0].astype(np.float64)
    step = np.abs(np.diff(left))
    heard = int(round(run.hooks.heard_at[0] * AUDIO_RATE))  # the splice lies in the 20 ms frame before
    near = step[heard - 960 - 480 : heard + 480]
    elsewhere = np.concatenate([step[int(4 * AUDIO_RATE) : heard - 4800], step[heard + 4800 :]])
    assert near.max() <= np.percentile(elsewhere, 99.9)
    assert run.hooks.underruns == 0
