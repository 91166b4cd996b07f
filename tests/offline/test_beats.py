"""Cut-synced beats: the beat plan puts shot cuts on the composer's beats, inside the mood's tempo band.

On synthetic fast-cut videos (known cut frames), with the real analysis and the real procedural composer:
the beat-hit rate measured from the composed bars (their beats as played, uneven when the plan bends the
tempo beat by beat) rises with the plan, every beat stays inside its band and within a few per cent of the
beat before, the music still changes within half a bar of the mood change, and the rendered audio has its
attacks where the bars say -- also when the beats of a bar are uneven.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from engines.audio_features.frames import FRAME_RATE, SAMPLE_RATE, frame_features
from engines.audio_features.rhythm import onset_envelope
from engines.base import MoodControl, MusicStreamOptions
from engines.composer import ProceduralMusicEngine
from engines.composer.styles import STYLE_PRESETS
from pipelines.analysis.analyze import Analysis, analyze
from pipelines.analysis.engines import default_engines
from pipelines.analysis.mood import MoodSegment
from pipelines.analysis.sound import to_mono16k
from pipelines.devtools.beat_sync import audio_onsets, inside_bands
from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, Scene
from pipelines.offline.beats import (
    BeatOptions,
    Cut,
    TempoSpan,
    beat_tempi_of_bars,
    beats_of_bars,
    beats_of_plan,
    cut_report,
    hit_rate,
    mood_limits,
    plan_beats,
    span_limits,
)
from pipelines.offline.compose import ComposedMusic, compose
from pipelines.offline.cut_times import refine_cuts
from pipelines.offline.score import ScoreRequest, pace_function, score
from pipelines.offline.timeline import beat_timeline
from tests.conftest import make_video
from tests.fakes import ScriptedMusicEngine

FPS = 24
#: Irregular fast cuts: 3 s pieces cut every 0.55..1.45 s (one mood), then a calm stretch (another mood).
FAST = [replace(BRIGHT_FAST, duration_s=3.0, cut_every_s=c, hue=h)
        for c, h in ((0.7, 0.1), (1.1, 0.5), (0.55, 0.8), (1.45, 0.3), (0.9, 0.6), (1.25, 0.0))]
SCENES = [*FAST, replace(CALM_DARK, duration_s=8.0, cut_every_s=1.6)]


def true_cuts(scenes: list[Scene], fps: int) -> list[float]:
    """The first frame of every new shot, as write_video draws them."""
    cuts, start = [], 0.0
    for i, sc in enumerate(scenes):
        if i:
            cuts.append(round(start * fps) / fps)
        k = 1
        while sc.cut_every_s and k * sc.cut_every_s < sc.duration_s - 1e-9:
            cuts.append((round(start * fps) + math.ceil(k * sc.cut_every_s * fps - 1e-6)) / fps)
            k += 1
        start += sc.duration_s
    return cuts


def allowed_change(beat_s: float, cuts: list[float]) -> float:
    """The largest tempo change from the beat before to a beat starting at ``beat_s``: ``cut_beat_change``
    on a cut (a tempo change on a hit point), ``max_beat_change`` elsewhere."""
    o = BeatOptions()
    on_cut = bool(cuts) and min(abs(c - beat_s) for c in cuts) <= o.tolerance_s + 1e-3
    return o.cut_beat_change if on_cut else o.max_beat_change


@dataclass
class Scored:
    path: Path
    analysis: Analysis
    cuts: list[float]
    before: ComposedMusic
    after: ComposedMusic


@pytest.fixture(scope="module")
def scored(video_dir: Path) -> Scored:
    path = make_video(video_dir, "beats_fast.mp4", SCENES, width=320, height=180, fps=FPS)
    an = analyze(os.fspath(path), default_engines(faces=False))
    cuts = refine_cuts(os.fspath(path), an.cuts, 1.0 / 6.0)
    eng = ProceduralMusicEngine()
    before = compose(eng, an.segments, an.duration_s, pace_at=pace_function(an))
    after = compose(eng, an.segments, an.duration_s, pace_at=pace_function(an), cuts=cuts)
    return Scored(path, an, cuts, before, after)


def test_cuts_are_timed_to_the_frame(scored: Scored) -> None:
    truth = np.array(true_cuts(SCENES, FPS))
    detected = np.array(scored.analysis.cuts)
    assert len(scored.cuts) == len(detected) >= 0.7 * len(truth)  # the dark calm shots differ little
    off_detected = [min(abs(truth - c)) for c in detected]
    off_refined = [min(abs(truth - c)) for c in scored.cuts]
    assert max(off_detected) > 0.05  # the analysis sees 6 frames a second: its cuts lie up to 1/6 s late
    assert max(off_refined) < 1e-3  # on the exact first frame of the new shot


def test_sparse_cuts_are_timed_to_the_frame_by_seeking(video_dir: Path) -> None:
    """Cuts 5 s apart (more than SEEK_GAP_S): each is found by seeking to the key frame before it."""
    scenes = [replace(BRIGHT_FAST if i % 2 else CALM_DARK, duration_s=5.0 + 0.37 * i, cut_every_s=None)
              for i in range(5)]
    path = make_video(video_dir, "beats_sparse.mp4", scenes, width=320, height=180, fps=FPS)
    an = analyze(os.fspath(path), default_engines(faces=False))
    truth = np.array(true_cuts(scenes, FPS))
    assert len(an.cuts) == len(truth)
    assert max(float(np.min(np.abs(truth - c))) for c in an.cuts) > 0.05
    refined = refine_cuts(os.fspath(path), an.cuts, 1.0 / 6.0)
    assert np.allclose(refined, truth, atol=1e-3), (refined, truth)


def test_plan_puts_cuts_on_the_composed_beats(scored: Scored) -> None:
    before, _ = beats_of_bars(scored.before.bars)
    after, _ = beats_of_bars(scored.after.bars)
    rate_before, rate_after = hit_rate(scored.cuts, before), hit_rate(scored.cuts, after)
    assert rate_before is not None and rate_after is not None
    assert rate_after >= 0.6 and rate_after >= rate_before + 0.3, (rate_before, rate_after)
    assert np.allclose(after, beats_of_plan(scored.after.beat_plan)[:len(after)], atol=1.5 / 48000)  # as planned
    truth = true_cuts(SCENES, FPS)
    assert (hit_rate(truth, after) or 0.0) >= (hit_rate(truth, before) or 0.0) + 0.15  # undetected cuts too


def test_tempi_stay_inside_the_style_bands_and_change_gently(scored: Scored) -> None:
    bars = scored.after.bars
    assert inside_bands(bars)
    uneven = [b for b in bars if b.beat_durations_s and max(b.beat_durations_s) - min(b.beat_durations_s) > 0.01]
    assert uneven  # it did bend the tempo within bars
    for a, b in itertools.pairwise(bars):  # a smooth tempo curve within a section (a larger step on a cut)
        if a.section == b.section and not a.transition and not b.transition:
            tempi = beat_tempi_of_bars([a, b])
            starts = [*a.beat_times(), *b.beat_times()]
            for k, (x, y) in enumerate(itertools.pairwise(tempi)):
                assert abs(y - x) <= allowed_change(starts[k + 1], scored.cuts) * x + 1e-6
    # the bars tile the time line without gaps, their beats add up to them and give their mean tempo
    for a, b in itertools.pairwise(bars):
        assert b.start_s == pytest.approx(a.start_s + a.duration_s, abs=1.5 / 48000)
        assert a.duration_s == pytest.approx(240.0 / a.tempo_bpm, abs=1.5 / 48000)
        if a.beat_durations_s:
            assert sum(a.beat_durations_s) == pytest.approx(a.duration_s, abs=1.5 / 48000)


def test_music_still_changes_near_the_mood_change(scored: Scored) -> None:
    segs = scored.analysis.segments
    assert len(segs) >= 2, [s.emotion for s in segs]
    secs = scored.after.sections
    assert [s.emotion for s in secs] == [s.emotion for s in segs]
    for seg, sec in zip(segs[1:], secs[1:], strict=True):
        first = next(b for b in scored.after.bars if b.start_s >= sec.start_s - 1e-9)
        assert abs(sec.start_s - seg.start_s) <= first.duration_s / 2 + 0.2  # the cut may be 1/6 s earlier


def onset_strength_at(music: ComposedMusic, times: np.ndarray, half_window_s: float = 0.03) -> float:
    """Mean of the BGM's onset envelope's peak within ``half_window_s`` of each time."""
    y = to_mono16k(music.audio, SAMPLE_RATE, music.sample_rate)
    env = onset_envelope(frame_features(y), y.size)
    w = int(round(half_window_s * FRAME_RATE))
    idx = np.round(np.asarray(times) * FRAME_RATE).astype(int)
    idx = idx[(idx >= w) & (idx < env.size - w)]
    return float(np.mean([env[i - w:i + w + 1].max() for i in idx]))


def test_rendered_audio_attacks_where_the_bars_say(scored: Scored) -> None:
    """The BGM's attacks (drums, bass, chords) are where its bars put the beats: its onset envelope is far
    stronger on its own beats than on the other piece's beats or a third of a beat off; and the cuts the
    bars put on a beat have an onset there."""
    end = min(scored.analysis.segments[0].end_s, scored.analysis.duration_s) - 2.5  # the drummed first mood
    grids = {}
    for name, music in (("before", scored.before), ("after", scored.after)):
        beats, _ = beats_of_bars(music.bars)
        grids[name] = beats[beats < end]
    for own, other, music in (("after", "before", scored.after), ("before", "after", scored.before)):
        beats = grids[own]
        at_beats = onset_strength_at(music, beats)
        assert at_beats > 1.5 * onset_strength_at(music, grids[other]), own
        assert at_beats > 2.0 * onset_strength_at(music, beats[:-1] + np.diff(beats) / 3), own
    onsets = audio_onsets(scored.after.audio, scored.after.sample_rate)
    on_before = hit_rate(scored.cuts, audio_onsets(scored.before.audio, scored.before.sample_rate))
    on_after = hit_rate(scored.cuts, onsets)
    assert on_before is not None and on_after is not None and on_after >= on_before + 0.1, (on_before, on_after)
    beats, _ = beats_of_bars(scored.after.bars)
    on_beat = [c for c in scored.cuts if hit_rate([c], beats) == 1.0]
    assert len(on_beat) >= 6 and (hit_rate(on_beat, onsets) or 0.0) >= 0.8, hit_rate(on_beat, onsets)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mood_change_cuts_land_on_downbeats(seed: int) -> None:
    """Fast random cuts over four moods, each change snapped to a cut (important): the new section's first
    downbeat is on that cut -- always when the plan may use the whole style band; with the mood's band
    (narrower) at least two of the three (a mood 8.6-10.4 s long whose bars cannot fill it whole inside its
    band keeps the cuts instead) -- and still more than half the cuts are on beats (chance: under 20 %)."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.uniform(0.5, 1.6, 60))
    times = times[times < 60.0]
    bounds: list[float] = []
    for t in times:
        if t - (bounds[-1] if bounds else 0.0) >= 8.0 + 4.0 * rng.random() and t < 55.0 and len(bounds) < 3:
            bounds.append(float(t))
    cuts = [Cut(float(t), 1.0, float(t) in bounds) for t in times]
    edges = [0.0, *bounds, 60.0]
    bands = [(110.0, 80.0, 118.0), (70.0, 56.0, 86.0), (120.0, 100.0, 132.0), (75.0, 62.0, 90.0)]
    spans = [TempoSpan(edges[i], edges[i + 1], *bands[i]) for i in range(len(edges) - 1)]
    wide = plan_beats(cuts, spans, 60.0, BeatOptions(band_width=None, toward_width=None))
    assert cut_report(cuts, beats_of_plan(wide), np.asarray(wide.bar_starts))["important_downbeat_rate"] == 1.0
    plan = plan_beats(cuts, spans, 60.0)
    report = cut_report(cuts, beats_of_plan(plan), np.asarray(plan.bar_starts))
    assert report["important_downbeat_rate"] >= 0.66
    assert report["beat_hit_rate"] >= 0.5
    o = BeatOptions()
    tempi = plan.beat_tempi()
    for i in range(plan.n_bars):  # every beat inside its span's band, its span the one holding the bar's anchor
        span = spans[plan.spans[i]]
        lo, hi = mood_limits(spans, o)[plan.spans[i]]
        assert all(lo - 1e-6 <= t <= hi + 1e-6 for t in tempi[4 * i:4 * i + 4])
        assert span.start_s <= plan.anchor(i) < span.end_s or i == plan.n_bars - 1
        # about its midpoint: two beats in, past the second beat and before the fourth
        assert plan.beats[4 * i + 1] < plan.anchor(i) < plan.beats[4 * i + 3]
    for k in range(len(tempi) - 1):  # smooth within a span (a larger step on a cut); a mood change may jump
        if plan.spans[k // 4] == plan.spans[(k + 1) // 4]:
            limit = allowed_change(plan.beats[k + 1], [c.time_s for c in cuts])
            assert abs(tempi[k + 1] - tempi[k]) <= limit * tempi[k] + 1e-6


@pytest.mark.parametrize("seed", [0, 1])
def test_uneven_beats_meet_more_cuts_than_a_steady_tempo(seed: int) -> None:
    """Irregular medium shots (1.2-3 s) in one mood: beats free to bend a few per cent each put clearly more
    cuts on a beat than the same plan held to a steady tempo (``max_beat_change`` ~0) -- and most of them."""
    rng = np.random.default_rng(10 + seed)
    times = np.cumsum(rng.uniform(1.2, 3.0, 40))
    cuts = [Cut(float(t)) for t in times[times < 60.0]]
    span = [TempoSpan(0.0, 60.0, 100.0, 84.0, 122.0)]
    free = plan_beats(cuts, span, 60.0)
    held = plan_beats(cuts, span, 60.0, BeatOptions(max_beat_change=0.001))
    rate_free = cut_report(cuts, beats_of_plan(free), None)["beat_hit_rate"]
    rate_held = cut_report(cuts, beats_of_plan(held), None)["beat_hit_rate"]
    assert rate_free >= 0.7 and rate_free >= rate_held + 0.2, (rate_held, rate_free)
    lo, hi = span_limits(span[0], BeatOptions())
    assert lo - 1e-6 <= free.beat_tempi().min() and free.beat_tempi().max() <= hi + 1e-6


def test_a_steady_cut_rhythm_inside_the_band_sets_the_tempo() -> None:
    """Cuts every 0.75 s: 80 bpm is inside the style band (80-118) though the mood's own tempo is 110 --
    taken when the plan's band is the whole style band, not with the default (own tempo ±15 %)."""
    cuts = [Cut(0.75 * k) for k in range(1, 40)]
    span = TempoSpan(0.0, 30.0, 110.0, 80.0, 118.0)
    plan = plan_beats(cuts, [span], 30.0, BeatOptions(band_width=None))
    assert {round(t, 1) for t in plan.beat_tempi()} == {80.0}
    assert cut_report(cuts, beats_of_plan(plan), None)["beat_hit_rate"] == 1.0
    for options in (BeatOptions(), BeatOptions(band_cost=math.inf)):  # own ±15 %; only ±8 %
        lo, hi = span_limits(span, options)
        assert lo == pytest.approx(max(80.0, 110 * (1 - (0.08 if options.band_cost == math.inf else 0.15))))
        plan = plan_beats(cuts, [span], 30.0, options)
        assert lo - 1e-6 <= plan.beat_tempi().min() and plan.beat_tempi().max() <= hi + 1e-6
    # a band of 84-110 leaves 80 bpm out whatever the options
    plan = plan_beats(cuts, [TempoSpan(0.0, 30.0, 100.0, 84.0, 110.0)], 30.0, BeatOptions(band_width=None))
    assert 84.0 - 1e-6 <= plan.beat_tempi().min() and plan.beat_tempi().max() <= 110.0 + 1e-6


def test_the_moods_band_keeps_calm_slower_than_intense() -> None:
    """The mood's tempo band: the own tempo ±15 % inside the style band, but at most 10 % towards a
    neighbouring mood's own tempo -- cheerful's calm (104 bpm) and intense (128) parts cannot meet at 120."""
    calm = TempoSpan(0.0, 12.0, 104.0, 104.0, 136.0)
    intense = TempoSpan(12.0, 24.0, 128.0, 104.0, 136.0)
    o = BeatOptions()
    assert span_limits(calm, o) == pytest.approx((104.0, 104 * 1.15))  # alone: ±15 % (floored by the style)
    assert span_limits(intense, o) == pytest.approx((128 * 0.85, 136.0))
    (c_lo, c_hi), (i_lo, i_hi), (c2_lo, c2_hi) = mood_limits([calm, intense, replace(calm, start_s=24.0)], o)
    assert (c_lo, c_hi) == pytest.approx((104.0, 104 * 1.10)) == (c2_lo, c2_hi)
    assert (i_lo, i_hi) == pytest.approx((128 * 0.90, 136.0)) and c_hi < i_lo
    # and the plan keeps to it: a cut rhythm of 120 bpm (0.5 s) throughout pulls neither across
    cuts = [Cut(0.5 * k) for k in range(1, 72)]
    plan = plan_beats(cuts, [calm, intense, replace(calm, start_s=24.0, end_s=36.0)], 36.0)
    tempi = plan.beat_tempi()
    for i in range(plan.n_bars):
        lo, hi = mood_limits([calm, intense, calm], o)[plan.spans[i]]
        assert all(lo - 1e-6 <= t <= hi + 1e-6 for t in tempi[4 * i:4 * i + 4])
    assert max(tempi[4 * i] for i in range(plan.n_bars) if plan.spans[i] != 1) < \
        min(tempi[4 * i] for i in range(plan.n_bars) if plan.spans[i] == 1)


def test_composer_honours_the_requested_tempo_inside_its_band() -> None:
    eng = ProceduralMusicEngine()
    band = STYLE_PRESETS["epic"].tempo_range
    own, lo, hi = eng.tempo_band(MoodControl(0.5, 0.6, "exciting"), MusicStreamOptions())
    assert (lo, hi) == band and lo <= own <= hi
    stream = eng.open_stream(MusicStreamOptions(sample_rate=16000))
    asked = [100.0, 1000.0, 10.0, None]
    got = [stream.generate(MoodControl(0.5, 0.6, "exciting", tempo_bpm=t)).bars[0] for t in asked]
    assert [b.tempo_bpm for b in got[:3]] == [100.0, band[1], band[0]]
    assert got[3].tempo_bpm == own  # None: the composer's own choice
    assert got[0].duration_s == pytest.approx(2.4, abs=1e-4)
    # without a tempo the audio is what it always was
    a = eng.open_stream(MusicStreamOptions(sample_rate=16000, seed=3))
    b = eng.open_stream(MusicStreamOptions(sample_rate=16000, seed=3))
    ctl = MoodControl(0.2, 0.1, "happy")
    assert np.array_equal(a.generate(ctl, 4.0).audio, b.generate(replace(ctl, tempo_bpm=None), 4.0).audio)


UNEVEN = (0.5, 0.55, 0.65, 0.7)  # s: 120, 109, 92, 86 bpm -- inside epic's 84-122


def test_composer_plays_uneven_beats_where_asked() -> None:
    """Four beats of different lengths a bar: the bar lasts their sum, reports them, and the rendered audio
    (drums, bass, chords of a drummed epic section) attacks on them, not on the even beats of the same bar."""
    sr = 48000
    stream = ProceduralMusicEngine().open_stream(MusicStreamOptions(sample_rate=sr, seed=1, style="epic"))
    ctl = MoodControl(0.5, 0.8, "exciting", beat_durations_s=UNEVEN)
    chunks = [stream.generate(ctl) for _ in range(8)]
    bars = [b for c in chunks for b in c.bars]
    audio = np.concatenate([c.audio for c in chunks])
    for a, b in itertools.pairwise(bars):
        assert a.beat_durations_s == UNEVEN and a.tempo_bpm == pytest.approx(240.0 / sum(UNEVEN))
        assert a.duration_s == pytest.approx(sum(UNEVEN), abs=1.5 / sr)
        assert b.start_s == pytest.approx(a.start_s + a.duration_s, abs=1.5 / sr)
        assert a.beat_times() == pytest.approx([a.start_s, a.start_s + 0.5, a.start_s + 1.05, a.start_s + 1.7])
    music = ComposedMusic(audio, sr, bars, [])
    real = np.array([t for b in bars[1:] for t in b.beat_times()[1:]])  # beats 2-4 (the downbeats agree)
    even = np.array([b.start_s + k * b.duration_s / 4 for b in bars[1:] for k in (1, 2, 3)])
    assert onset_strength_at(music, real) > 2.0 * onset_strength_at(music, even)
    onsets = audio_onsets(audio, sr)
    assert (hit_rate(list(real), onsets) or 0.0) >= 0.9
    # and without uneven beats: the same music at the mean tempo attacks on the even beats
    plain = ProceduralMusicEngine().open_stream(MusicStreamOptions(sample_rate=sr, seed=1, style="epic"))
    ctl_even = replace(ctl, beat_durations_s=None, tempo_bpm=240.0 / sum(UNEVEN))
    chunks = [plain.generate(ctl_even) for _ in range(8)]
    bars_even = [b for c in chunks for b in c.bars]
    assert all(b.beat_durations_s is None for b in bars_even)
    music_even = ComposedMusic(np.concatenate([c.audio for c in chunks]), sr, bars_even, [])
    assert onset_strength_at(music_even, even) > 2.0 * onset_strength_at(music_even, real)


def test_composer_clamps_uneven_beats_to_the_band() -> None:
    lo, hi = STYLE_PRESETS["epic"].tempo_range
    stream = ProceduralMusicEngine().open_stream(MusicStreamOptions(sample_rate=16000, style="epic"))
    asked = MoodControl(0.5, 0.6, "exciting", tempo_bpm=100.0, beat_durations_s=(0.3, 0.6, 0.6, 2.0))
    bar = stream.generate(asked).bars[0]
    assert bar.beat_durations_s == pytest.approx((60.0 / hi, 0.6, 0.6, 60.0 / lo))  # and tempo_bpm is overridden
    assert bar.tempo_bpm == pytest.approx(240.0 / sum(bar.beat_durations_s))
    for bad in ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5, float("nan")), (0.5, 0.5, 0.5, -0.5)):
        with pytest.raises(ValueError, match="beat_durations_s"):
            stream.generate(MoodControl(0.5, 0.6, "exciting", beat_durations_s=bad))


def test_engines_without_a_tempo_band_ignore_the_cuts() -> None:
    segs = [MoodSegment(0.0, 9.0, "sad", 0.0, 0.0, 1.0), MoodSegment(9.0, 20.0, "exciting", 0.0, 0.0, 1.0)]
    plain = compose(ScriptedMusicEngine(), segs, 20.0, sample_rate=8000)
    cut = compose(ScriptedMusicEngine(), segs, 20.0, sample_rate=8000, cuts=[1.0, 2.5, 9.0, 13.3])
    assert cut.beat_plan is None and not cut.bars_are_beats
    assert [(b.start_s, b.tempo_bpm) for b in cut.bars] == [(b.start_s, b.tempo_bpm) for b in plain.bars]


def test_without_cuts_the_composer_keeps_its_own_tempo() -> None:
    segs = [MoodSegment(0.0, 9.0, "sad", -0.5, -0.3, 1.0), MoodSegment(9.0, 16.0, "exciting", 0.5, 0.7, 1.0)]
    own = compose(ProceduralMusicEngine(), segs, 16.0, sample_rate=16000)
    none = compose(ProceduralMusicEngine(), segs, 16.0, sample_rate=16000, cuts=[0.0, 16.5])
    assert none.beat_plan is None and none.bars_are_beats
    assert none.bars == own.bars and np.array_equal(none.audio, own.audio)


def test_music_without_bars_is_beat_tracked_from_its_audio() -> None:
    """A library track or MusicGen: beats estimated from the audio (a 120 bpm kick pattern here)."""
    sr, dur = 48000, 20.0
    t = np.arange(int(sr * dur)) / sr
    audio = np.zeros_like(t)
    for beat in np.arange(0.25, dur, 0.5):
        i = int(beat * sr)
        n = min(len(t) - i, int(0.15 * sr))
        tt = np.arange(n) / sr
        audio[i:i + n] += np.sin(2 * np.pi * 60 * tt) * np.exp(-tt / 0.05) + 0.3 * np.sin(2 * np.pi * 2000 * tt) * \
            np.exp(-tt / 0.01)
    stereo = np.stack([audio, audio], axis=1).astype(np.float32) * 0.5
    music = ComposedMusic(stereo, sr, [], [])
    on = beat_timeline(music, [2.25, 5.75, 10.25, 14.75])
    off = beat_timeline(music, [2.0, 6.0, 10.0, 15.0])
    assert on["beats"]["source"] == "estimated" and on["beats"]["tempo_bpm"] == pytest.approx(120, abs=2)
    assert on["beat_hit_rate"] == 1.0 and off["beat_hit_rate"] == 0.0
    assert all(c["on_downbeat"] is None for c in on["cuts"])


def test_score_timeline_reports_the_beats(video_dir: Path, tmp_path: Path) -> None:
    path = make_video(video_dir, "beats_fast.mp4", SCENES, width=320, height=180, fps=FPS)
    timeline = tmp_path / "t.json"
    res = score(ScoreRequest(os.fspath(path), None, timeline_path=os.fspath(timeline), faces=False))
    tl = json.loads(timeline.read_text(encoding="utf-8"))
    assert tl["beats"]["source"] == "composer" and tl["beats"]["planned"] is True
    assert len(tl["cuts"]) == len(tl["cuts_s"]) == len(res.analysis.cuts) > 10
    for c in tl["cuts"]:
        assert c["on_beat"] == (abs(c["beat_offset_ms"]) <= 50.0)
        assert abs(c["time_s"] - c["detected_s"]) <= 0.25
    rate = sum(c["on_beat"] for c in tl["cuts"]) / len(tl["cuts"])
    assert tl["beat_hit_rate"] == pytest.approx(rate, abs=1e-4) and rate >= 0.5
    starts = [b["start_s"] for b in tl["beats"]["bars"]]
    assert starts == sorted(starts) and starts[0] == 0.0
    # each cut's offset is from the beats the timeline lists (uneven within a bar where the plan bent them)
    beats = np.array([t for b in tl["beats"]["bars"] for t in b["beats_s"]])
    assert all(len(b["beats_s"]) == 4 and b["beats_s"][0] == b["start_s"] for b in tl["beats"]["bars"])
    for c in (c for c in tl["cuts"] if c["time_s"] <= beats[-1]):  # (the last bar's end is not listed)
        assert abs(c["beat_offset_ms"]) == pytest.approx(1000 * np.min(np.abs(beats - c["time_s"])), abs=0.6)
    assert all(m["tempo_range_bpm"][0] <= m["tempo_bpm"] <= m["tempo_range_bpm"][1] for m in tl["music"])
