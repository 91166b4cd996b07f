"""Cut-synced beats on fast cuts: tempo steps on hit points and the mood's tempo band by its neighbours.

The beat plan may change the tempo more where a beat starts on a cut (``cut_beat_change``: a tempo change on
a hit point, the cut masking the step) than anywhere else (``max_beat_change``), and a mood's band reaches
further away from its neighbouring moods' tempi (``away_width``) than towards them (``toward_width`` or
``toward_share`` of the way). Checked on a synthetic fast-cut video with the real analysis and the real
composer (the hit rate rises far above the composer at its own tempo, every beat inside its band, the steps
on cuts, the composed bars and the rendered audio where the plan says), on random fast cuts over several
moods (more cuts on beats than the plan without these two rules, calm still slower than intense), and on
the band rules themselves for every style's calm and intense moods.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from engines.base import STYLES, MoodControl, MusicStreamOptions
from engines.composer import ProceduralMusicEngine
from engines.composer import patterns as P
from engines.composer.arrange import Arranger, BarContext
from engines.composer.plan import HarmonicRhythm, SectionPlan, density_level
from engines.composer.styles import FAST_AROUSAL, STYLE_PRESETS
from engines.composer.synth import DRUM_CHANNEL, NOTE_ON
from engines.composer.theory import Chord
from pipelines.analysis.analyze import Analysis, analyze
from pipelines.analysis.engines import default_engines
from pipelines.devtools.beat_sync import audio_onsets, inside_bands
from pipelines.devtools.synth_video import BRIGHT_FAST, Scene
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
    weigh_cuts,
)
from pipelines.offline.compose import ComposedMusic, beat_plan_for, compose, tempo_spans
from pipelines.offline.cut_times import refine_cuts
from pipelines.offline.score import pace_function
from tests.conftest import make_video

FPS = 24
#: The plan before steps on cuts and the neighbour-shaped band: ≤5 % a beat everywhere, own ±15 %, ≤10 %
#: towards a neighbour.
PREVIOUS = BeatOptions(cut_beat_change=0.05, away_width=None, toward_share=0.0)


def fast_scenes(seed: int, seconds: float = 24.0) -> list[Scene]:
    """One exciting mood, cut fast and irregularly: 3 s pieces, each cut every 0.5-1.5 s (as bench-beats)."""
    rng = np.random.default_rng(seed)
    return [replace(BRIGHT_FAST, duration_s=3.0, cut_every_s=float(rng.uniform(0.5, 1.5)),
                    hue=float(rng.uniform(0.0, 1.0))) for _ in range(int(seconds / 3.0))]


@dataclass
class Scored:
    analysis: Analysis
    cuts: list[float]
    before: ComposedMusic
    after: ComposedMusic


@pytest.fixture(scope="module")
def scored(video_dir: Path) -> Scored:
    path = os.fspath(make_video(video_dir, "beats_fast_cuts.mp4", fast_scenes(5), width=320, height=180, fps=FPS))
    an = analyze(path, default_engines(faces=False))
    cuts = refine_cuts(path, an.cuts, 1.0 / 6.0, changes=an.frame_changes)
    eng = ProceduralMusicEngine()
    before = compose(eng, an.segments, an.duration_s, pace_at=pace_function(an))
    after = compose(eng, an.segments, an.duration_s, pace_at=pace_function(an), cuts=cuts)
    return Scored(an, cuts, before, after)


def test_fast_cuts_land_on_the_composed_beats_inside_the_band(scored: Scored) -> None:
    assert len(scored.cuts) >= 15
    before, _ = beats_of_bars(scored.before.bars)
    after, _ = beats_of_bars(scored.after.bars)
    rate_before, rate_after = hit_rate(scored.cuts, before), hit_rate(scored.cuts, after)
    assert rate_before is not None and rate_after is not None
    assert rate_after >= 0.7 and rate_after >= rate_before + 0.35, (rate_before, rate_after)
    plan = scored.after.beat_plan
    assert plan is not None
    assert np.allclose(after, beats_of_plan(plan)[:len(after)], atol=1.5 / 48000)  # played as planned
    # at least as many as the plan without steps on cuts (the plan alone, same analysis)
    previous = beat_plan_for(ProceduralMusicEngine(), scored.analysis.segments, scored.analysis.duration_s,
                             scored.cuts, pace_at=pace_function(scored.analysis), options=PREVIOUS)
    assert previous is not None
    assert rate_after >= (hit_rate(scored.cuts, beats_of_plan(previous)) or 0.0)
    # every beat inside the style band and its mood's band
    assert inside_bands(scored.after.bars)
    spans = tempo_spans(ProceduralMusicEngine(), MusicStreamOptions(), scored.analysis.segments,
                        scored.analysis.duration_s, pace_at=pace_function(scored.analysis))
    assert spans is not None
    limits = mood_limits(spans, BeatOptions())
    tempi = beat_tempi_of_bars(scored.after.bars)
    for i, span in enumerate(plan.spans[:len(scored.after.bars)]):
        lo, hi = limits[span]
        assert all(lo - 1e-3 <= t <= hi + 1e-3 for t in tempi[4 * i:4 * i + 4]), (i, (lo, hi), tempi[4 * i:4 * i + 4])


def test_tempo_steps_fall_on_cuts_and_the_music_plays_them(scored: Scored) -> None:
    """Within a mood, beat-to-beat changes beyond ``max_beat_change`` happen only on a beat that starts on a
    cut, never beyond ``cut_beat_change``; the plan uses them here; and the rendered BGM attacks on those
    beats. (A mood change may change the tempo at once.)"""
    o = BeatOptions()
    bars = scored.after.bars
    plan = scored.after.beat_plan
    assert plan is not None
    starts = np.array([t for b in bars for t in b.beat_times()])
    tempi = np.array(beat_tempi_of_bars(bars))
    cuts = np.array(scored.cuts)
    steps = []
    for k in range(1, min(len(tempi), 4 * plan.n_bars)):
        if plan.spans[k // 4] != plan.spans[(k - 1) // 4]:
            continue
        change = abs(tempi[k] - tempi[k - 1]) / tempi[k - 1]
        on_cut = float(np.min(np.abs(cuts - starts[k]))) <= o.tolerance_s + 1e-3
        assert change <= (o.cut_beat_change if on_cut else o.max_beat_change) + 1e-6, (k, change, on_cut)
        if change > o.max_beat_change + 1e-6:
            steps.append(starts[k])
    assert steps  # fast irregular cuts need them
    onsets = audio_onsets(scored.after.audio, scored.after.sample_rate)
    assert (hit_rate(steps, onsets) or 0.0) >= 0.8, (steps, onsets)


def random_cuts(seed: int, seconds: float = 60.0) -> tuple[list[Cut], list[TempoSpan]]:
    """Fast random shots (0.5-1.6 s) over four moods (exciting, neutral, tense, sad: the composer's own
    tempi and style bands), each mood change snapped to a cut."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.uniform(0.5, 1.6, 120))
    times = times[times < seconds]
    bounds = [float(times[np.argmin(np.abs(times - k * seconds / 4 - rng.uniform(-2, 2)))]) for k in (1, 2, 3)]
    eng = ProceduralMusicEngine()
    moods = [MoodControl(0.5, 0.8, "exciting"), MoodControl(0.0, -0.1, "neutral"), MoodControl(-0.4, 0.6, "tense"),
             MoodControl(-0.6, -0.5, "sad")]
    edges = [0.0, *bounds, seconds]
    spans = [TempoSpan(edges[i], edges[i + 1], *eng.tempo_band(m, MusicStreamOptions())) for i, m in enumerate(moods)]
    return weigh_cuts(list(times), bounds), spans


def test_random_fast_cuts_over_moods_meet_more_beats_than_the_previous_plan() -> None:
    new, old, downs = [], [], []
    o = BeatOptions()
    for seed in range(6):
        cuts, spans = random_cuts(seed)
        plan = plan_beats(cuts, spans, 60.0)
        report = cut_report(cuts, beats_of_plan(plan), np.asarray(plan.bar_starts))
        new.append(report["beat_hit_rate"])
        downs.append(report["important_downbeat_rate"])
        old.append(cut_report(cuts, beats_of_plan(plan_beats(cuts, spans, 60.0, PREVIOUS)), None)["beat_hit_rate"])
        tempi = plan.beat_tempi()
        limits = mood_limits(spans, o)
        for i in range(plan.n_bars):  # every beat inside its mood's band
            lo, hi = limits[plan.spans[i]]
            assert all(lo - 1e-6 <= t <= hi + 1e-6 for t in tempi[4 * i:4 * i + 4])
        slow = [t for i in range(plan.n_bars) if spans[plan.spans[i]].target_bpm < 90 for t in tempi[4 * i:4 * i + 4]]
        fast = [t for i in range(plan.n_bars) if spans[plan.spans[i]].target_bpm > 100 for t in tempi[4 * i:4 * i + 4]]
        assert max(slow) < min(fast)  # the calm moods' beats all slower than the intense moods'
    assert np.mean(new) >= np.mean(old) + 0.03, (new, old)
    assert np.mean(downs) >= 0.6, downs  # most mood changes still start on a downbeat


@pytest.mark.parametrize("style", STYLES)
def test_the_band_keeps_calm_slower_than_intense_in_every_style(style: str) -> None:
    """calm - intense - calm in one style (the composer's own tempi): the calm band lies wholly below the
    intense one, each reaching further away from the other than towards it; alone, a mood's band is its own
    tempo ±``band_width``."""
    eng = ProceduralMusicEngine()
    options = MusicStreamOptions(style=style)
    calm = eng.tempo_band(MoodControl(-0.3, -0.6, "sad", style=style), options)
    intense = eng.tempo_band(MoodControl(0.4, 0.8, "exciting", style=style), options)
    spans = [TempoSpan(0.0, 12.0, *calm), TempoSpan(12.0, 24.0, *intense), TempoSpan(24.0, 36.0, *calm)]
    o = BeatOptions()
    (c_lo, c_hi), (i_lo, i_hi), _ = mood_limits(spans, o)
    own_c, own_i = calm[0], intense[0]
    assert own_c < own_i
    assert c_hi < i_lo, (style, (c_lo, c_hi), (i_lo, i_hi))
    assert c_hi <= own_c + max(o.toward_width or 0.0, 0.0) * own_c + o.toward_share * (own_i - own_c) + 1e-9
    assert c_lo == pytest.approx(max(calm[1], own_c * (1 - (o.away_width or 0.0))))  # away: further (or style edge)
    # the intense mood: double time where its style has it (arousal .8, band reaching fast_max), else away
    up = max(o.away_width or 0.0, (o.fast_width or 0.0) if intense[2] >= o.fast_from_bpm else 0.0)
    assert (intense[2] >= o.fast_from_bpm) == (STYLE_PRESETS[style].fast_max is not None)
    assert i_hi == pytest.approx(min(intense[2], own_i * (1 + up)))
    assert calm[2] == STYLE_PRESETS[style].tempo_range[1]  # a calm mood keeps its style band
    for span, (s_lo, s_hi) in zip(spans, mood_limits(spans, o), strict=True):
        assert span.lo_bpm <= s_lo <= span.target_bpm <= s_hi <= span.hi_bpm
    alone = span_limits(spans[0], o)
    assert alone == pytest.approx((max(calm[1], own_c * 0.85), min(calm[2], own_c * 1.15)))


def test_a_tempo_step_on_a_cut_meets_a_new_cut_rhythm_at_once() -> None:
    """Four cuts 0.5 s apart (120 bpm), four 0.62 s apart (97 bpm), and so on, in one mood (band 93.5-122):
    with steps on the cuts every cut is on a beat, and every step larger than ``max_beat_change`` starts on a
    cut; held to 5 % a beat everywhere the tempo needs beats to get from one rhythm to the other and misses
    cuts."""
    times, t = [], 0.0
    for j in range(40):
        t += 0.5 if (j // 4) % 2 == 0 else 0.62
        times.append(round(t, 3))
    end = times[-1] + 1.0
    cuts = [Cut(t) for t in times]
    span = [TempoSpan(0.0, end, 110.0, 84.0, 122.0)]
    plan = plan_beats(cuts, span, end)
    assert cut_report(cuts, beats_of_plan(plan), None)["beat_hit_rate"] == 1.0
    changes = [abs(b - a) / a for a, b in itertools.pairwise(plan.beat_tempi())]
    big = [k + 1 for k, c in enumerate(changes) if c > BeatOptions().max_beat_change + 1e-6]
    assert big and all(min(abs(plan.beats[k] - t) for t in times) <= 0.05 for k in big)
    assert max(changes) <= BeatOptions().cut_beat_change + 1e-6
    held = plan_beats(cuts, span, end, BeatOptions(cut_beat_change=0.05))
    assert cut_report(cuts, beats_of_plan(held), None)["beat_hit_rate"] <= 0.9


# ------------------------------------------------------------------------------------------------ double time

STEADY = [replace(BRIGHT_FAST, duration_s=8.0, cut_every_s=0.75, hue=h) for h in (0.1, 0.6)]


@pytest.fixture(scope="module")
def steady(video_dir: Path) -> tuple[Analysis, list[float], ComposedMusic]:
    path = os.fspath(make_video(video_dir, "beats_steady_075.mp4", STEADY, width=320, height=180, fps=FPS))
    an = analyze(path, default_engines(faces=False))
    cuts = refine_cuts(path, an.cuts, 1.0 / 6.0, changes=an.frame_changes)
    return an, cuts, compose(ProceduralMusicEngine(), an.segments, an.duration_s, pace_at=pace_function(an),
                             cuts=cuts)


def test_steady_fast_cuts_in_an_exciting_scene_play_double_time_on_the_beats(
        steady: tuple[Analysis, list[float], ComposedMusic]) -> None:
    """Cuts every 0.75 s (80 bpm) in an exciting scene: one beat a cut is below epic's band and two (160 bpm)
    above its ordinary band, so the high-arousal mood's double time meets them -- at least 80 % of all cuts on
    a beat, every beat inside the mood's (double-time) band, and the rendered audio attacks on the beats."""
    an, cuts, music = steady
    assert len(cuts) >= 15
    assert all(s.arousal >= FAST_AROUSAL for s in an.segments), [(s.emotion, s.arousal) for s in an.segments]
    beats, _ = beats_of_bars(music.bars)
    rate = hit_rate(cuts, beats)
    assert rate is not None and rate >= 0.8, rate
    plan = music.beat_plan
    assert plan is not None
    assert np.allclose(beats, beats_of_plan(plan)[:len(beats)], atol=1.5 / 48000)  # played as planned
    spans = tempo_spans(ProceduralMusicEngine(), MusicStreamOptions(), an.segments, an.duration_s,
                        pace_at=pace_function(an))
    assert spans is not None
    limits = mood_limits(spans, BeatOptions())
    tempi = beat_tempi_of_bars(music.bars)
    for i, span in enumerate(plan.spans[:len(music.bars)]):
        lo, hi = limits[span]
        assert all(lo - 1e-3 <= t <= hi + 1e-3 for t in tempi[4 * i:4 * i + 4]), (i, (lo, hi))
    assert inside_bands(music.bars)
    fast = [t for b, t in zip([b for b in music.bars for _ in range(4)], tempi, strict=False)
            if t > STYLE_PRESETS[b.style].tempo_range[1]]
    assert len(fast) >= len(tempi) // 2, tempi  # double time, not the ordinary band
    onsets = audio_onsets(music.audio, music.sample_rate)
    played = beats[beats < an.duration_s - 0.5]
    assert (hit_rate(list(played), onsets) or 0.0) >= 0.8  # an attack on (nearly) every planned beat


@pytest.mark.parametrize("style", ["epic", "tense", "cheerful", "calm"])
def test_double_time_plays_eighths_not_sixteenths(style: str) -> None:
    """The intense arrangement (density level 2) above the style's ordinary band: every drum, bass and
    comping note on an 8th (no 16th hats, shakers, arpeggios or ostinati), the kick on every beat and the
    backbeat kept; inside the band the same bar still has its 16ths (where the style has any)."""
    preset = STYLE_PRESETS[style]
    chords = (Chord(0, "maj"), Chord(5, "maj"), Chord(7, "maj"), Chord(9, "min"))
    sec = SectionPlan(0, preset, "exciting", preset.tempo_range[1], 0, "major", chords, 0, False)
    energy = 0.9

    def onsets(tempo: float) -> list[tuple[float, int, int]]:
        arr, harmony = Arranger(), HarmonicRhythm()
        arr.begin(sec)
        out = []
        for i in range(4):
            ch, nxt = harmony.bar(sec, energy)
            ctx = BarContext(sec, i + 1, ch, nxt, density_level(energy), energy, tempo, 0.3)
            sixteenth = 15.0 / tempo
            out += [(t / sixteenth, c, k) for t, op, c, k, _ in arr.bar(ctx, np.random.default_rng([0, i]))
                    if op == NOTE_ON]
        return out

    lead_chans = {i for i, p in enumerate(preset.parts) if p.role in ("lead", "pad")}

    def odd(notes: list[tuple[float, int, int]]) -> int:
        return sum(1 for s, c, _ in notes if c not in lead_chans and round(s) % 2 == 1 and abs(s - round(s)) < 0.3)

    fast_tempo = preset.tempo_range[1] * 1.3
    if style != "cheerful":  # cheerful's busiest rows are 8ths already
        assert odd(onsets(preset.tempo_range[1])) > 0  # 16ths in the ordinary band
    fast = onsets(fast_tempo)
    assert odd(fast) == 0
    kit = [(round(s) % 16, k) for s, c, k in fast if c == DRUM_CHANNEL]
    assert {s for s, k in kit if k == P.KICK} >= {0, 4, 8, 12}  # the kick on every beat
    backbeat = {s for s, k in kit if k in (P.SNARE, P.CLAP)}
    assert backbeat >= {4, 12} and not backbeat & {0, 8}  # the backbeat on 2 and 4 only
