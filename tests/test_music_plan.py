"""The offline music plan: one-bar look-ahead puts section changes on the bar nearest the mood change.

The music engine here is a small scripted fake (fixed tempo per emotion, a transition bar on
every change) so the scheduler's own logic is what is tested; the real composer is tested in
test_composer.py and end to end in test_score_e2e.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from engines.base import BarInfo, MoodControl, MusicChunk, MusicEngine, MusicStream, MusicStreamOptions
from pipelines.analysis.segments import MoodSegment
from pipelines.offline.compose import compose, sections_from_bars

TEMPO = {"sad": 70.0, "exciting": 128.0, "relaxing": 80.0}


class ScriptedStream(MusicStream):
    def __init__(self, sr: int) -> None:
        self.sr = sr
        self.t = 0.0
        self.section = -1
        self.emotion: str | None = None
        self.controls: list[MoodControl] = []

    def generate(self, control: MoodControl, min_duration_s: float = 0.0) -> MusicChunk:
        self.controls.append(control)
        transition = self.emotion is not None and control.emotion != self.emotion
        if self.emotion is None or transition:
            self.section += 1
        tempo = TEMPO[self.emotion if transition and self.emotion else control.emotion]
        prev = self.emotion
        self.emotion = control.emotion
        dur = 4 * 60 / tempo
        n = int(round(dur * self.sr))
        emotion = (prev or "") if transition else control.emotion
        bar = BarInfo(self.t, n / self.sr, tempo, "C", "major", "lofi", emotion, self.section, transition, "C")
        chunk = MusicChunk(np.zeros((n, 2), np.float32), self.sr, self.t, (bar,))
        self.t += n / self.sr
        return chunk


class ScriptedEngine(MusicEngine):
    name = "scripted"
    change_latency_chunks = 1  # it plays a transition bar, like the procedural composer

    def __init__(self) -> None:
        self.streams: list[ScriptedStream] = []

    def open_stream(self, options: MusicStreamOptions) -> MusicStream:
        s = ScriptedStream(options.sample_rate)
        self.streams.append(s)
        return s


def seg(a: float, b: float, emotion: str) -> MoodSegment:
    return MoodSegment(a, b, emotion, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("boundary", [7.0, 8.0, 9.3, 10.9])
def test_new_section_starts_on_the_bar_nearest_the_mood_change(boundary: float) -> None:
    eng = ScriptedEngine()
    music = compose(eng, [seg(0, boundary, "sad"), seg(boundary, 20.0, "exciting")], 20.0, sample_rate=8000)
    assert music.audio.shape == (20 * 8000, 2)
    secs = music.sections
    assert [s.emotion for s in secs] == ["sad", "exciting"]
    sad_bar = 4 * 60 / TEMPO["sad"]
    assert abs(secs[1].start_s - boundary) <= sad_bar / 2 + 1e-6
    assert secs[1].transition_s == pytest.approx(secs[1].start_s - sad_bar, abs=1e-3)
    assert secs[0].end_s == secs[1].start_s and secs[1].end_s == 20.0
    # bars tile the time line without gaps
    starts = [b.start_s for b in music.bars]
    ends = [b.start_s + b.duration_s for b in music.bars]
    assert np.allclose(starts[1:], ends[:-1])


def test_controls_carry_style_and_pace() -> None:
    eng = ScriptedEngine()
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


class InstantStream(MusicStream):
    """Switches at the next chunk, no transition (like MusicGen); 2 s chunks."""

    def __init__(self) -> None:
        self.t = 0.0

    def generate(self, control: MoodControl, min_duration_s: float = 0.0) -> MusicChunk:
        bar = BarInfo(self.t, 2.0, 100.0, "?", "unknown", "lofi", control.emotion, 0, False, "?")
        chunk = MusicChunk(np.zeros((16000, 2), np.float32), 8000, self.t, (bar,))
        self.t += 2.0
        return chunk


class InstantEngine(MusicEngine):
    name = "instant"

    def open_stream(self, options: MusicStreamOptions) -> MusicStream:
        return InstantStream()


@pytest.mark.parametrize("boundary", [6.9, 7.2, 8.0])
def test_engine_without_transition_switches_at_the_nearest_chunk(boundary: float) -> None:
    music = compose(InstantEngine(), [seg(0, boundary, "sad"), seg(boundary, 16.0, "exciting")], 16.0,
                    sample_rate=8000)
    first_exciting = next(b.start_s for b in music.bars if b.emotion == "exciting")
    assert abs(first_exciting - boundary) <= 1.0 + 1e-6
