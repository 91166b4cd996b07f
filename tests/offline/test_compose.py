"""The offline music plan: one-bar look-ahead puts section changes on the bar nearest the mood change.

The music engine here is the scripted fake of tests/fakes.py (fixed tempo per emotion, a transition bar on
every change) so the scheduler's own logic is what is tested; the real composer is tested in
engines/test_composer.py and end to end in offline/test_score.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from engines.base import BarInfo
from pipelines.analysis.mood import MoodSegment
from pipelines.offline.compose import compose, sections_from_bars
from tests.fakes import SCRIPTED_TEMPO, InstantMusicEngine, ScriptedMusicEngine


def seg(a: float, b: float, emotion: str) -> MoodSegment:
    return MoodSegment(a, b, emotion, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("boundary", [7.0, 8.0, 9.3, 10.9])
def test_new_section_starts_on_the_bar_nearest_the_mood_change(boundary: float) -> None:
    eng = ScriptedMusicEngine()
    music = compose(eng, [seg(0, boundary, "sad"), seg(boundary, 20.0, "exciting")], 20.0, sample_rate=8000)
    assert music.audio.shape == (20 * 8000, 2)
    secs = music.sections
    assert [s.emotion for s in secs] == ["sad", "exciting"]
    sad_bar = 4 * 60 / SCRIPTED_TEMPO["sad"]
    assert abs(secs[1].start_s - boundary) <= sad_bar / 2 + 1e-6
    assert secs[1].transition_s == pytest.approx(secs[1].start_s - sad_bar, abs=1e-3)
    assert secs[0].end_s == secs[1].start_s and secs[1].end_s == 20.0
    # bars tile the time line without gaps
    starts = [b.start_s for b in music.bars]
    ends = [b.start_s + b.duration_s for b in music.bars]
    assert np.allclose(starts[1:], ends[:-1])


def test_controls_carry_style_and_pace() -> None:
    eng = ScriptedMusicEngine()
    compose(eng, [seg(0, 10, "relaxing")], 10.0, style="calm", sample_rate=8000, pace_at=lambda t: 0.25)
    ctl = eng.streams[0].controls
    assert ctl and all(c.style == "calm" and c.pace == 0.25 and c.emotion == "relaxing" for c in ctl)


def test_sections_from_bars_groups_by_identity() -> None:
    bars = [BarInfo(i * 2.0, 2.0, 120.0, "C", "major", "lofi", "happy", 0, False, "C") for i in range(3)]
    bars.append(BarInfo(6.0, 2.0, 120.0, "C", "major", "lofi", "happy", 1, True, "G7"))
    bars += [BarInfo(8.0 + i * 2.4, 2.4, 100.0, "A", "minor", "sad", "sad", 1, False, "Am") for i in range(3)]
    secs = sections_from_bars(bars, 15.0)
    assert [(s.start_s, s.end_s, s.key, s.transition_s) for s in secs] == [(0.0, 8.0, "C", None),
                                                                           (8.0, 15.0, "A", 6.0)]


@pytest.mark.parametrize("boundary", [6.9, 7.2, 8.0])
def test_engine_without_transition_switches_at_the_nearest_chunk(boundary: float) -> None:
    music = compose(InstantMusicEngine(), [seg(0, boundary, "sad"), seg(boundary, 16.0, "exciting")], 16.0,
                    sample_rate=8000)
    first_exciting = next(b.start_s for b in music.bars if b.emotion == "exciting")
    assert abs(first_exciting - boundary) <= 1.0 + 1e-6
