"""ProceduralMusicEngine: the embedded default music engine (no model weights needed).

A stream composes bar by bar and renders whole bars with one persistent soundfont synth:

* The first bar plans section 0 from the mood (tempo, key, mode, progression, style).
* While the mood's identity ``(emotion, style)`` stays the same, bars follow the section's
  4-chord progression; valence/arousal move density, layers, dynamics, register and harmonic
  rhythm within the style (the table is in :mod:`.styles`).
* When the identity changes (and the current section has played at least
  :data:`MIN_SECTION_BARS` bars), the next bar is a *transition bar* at the old tempo:
  a pivot chord common to both keys then the new key's V7, a drum fill, old parts fading
  out and new parts fading in. The new section starts on the following bar.
* A bar plays at the section's tempo, or at ``MoodControl.tempo_bpm`` when given (an offline
  beat plan, :mod:`pipelines.offline.beats`) clamped to the section's band (the style band, up to the
  style's double-time ``fast_max`` for a high-arousal mood); with
  ``MoodControl.beat_durations_s`` its four beats have those lengths (each clamped to the band), the
  arranger's 16ths mapped through them beat by beat (``BarInfo.beat_durations_s`` reports them).

Bar boundaries are computed from exact (float) times and rounded to samples independently,
so no rounding drift accumulates. Everything random comes from ``numpy`` Generators seeded
with ``(options.seed, bar index)`` or ``(options.seed, section number)``, so the audio depends
only on the seed and the sequence of controls -- not on how bars are grouped into chunks.
"""

from __future__ import annotations

import logging

import numpy as np

from engines.base import BarInfo, MoodControl, MusicChunk, MusicEngine, MusicStream, MusicStreamOptions

from .arrange import Arranger, BarContext, TimedEvent
from .plan import HarmonicRhythm, SectionPlan, density_level, energy_of, plan_section, tempo_for
from .styles import check_emotion, check_style, resolve_style
from .synth import MASTER_GAIN_DB, Renderer
from .theory import Chord, dominant_of, pivot_chord

log = logging.getLogger(__name__)

#: A section plays at least this many bars before another change of mood is honoured (the
#: mood segmenter upstream already enforces a minimum segment length in seconds).
MIN_SECTION_BARS = 1
BEATS_PER_BAR = 4


class ProceduralMusicStream(MusicStream):
    """One continuing piece; see the module doc."""

    def __init__(self, options: MusicStreamOptions, gain_db: float = MASTER_GAIN_DB) -> None:
        check_style(options.style)
        if options.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {options.sample_rate}")
        self.options = options
        self.sample_rate = options.sample_rate
        self._renderer = Renderer(options.sample_rate, gain_db)
        self._arranger = Arranger()
        self._harmony = HarmonicRhythm()
        self._section: SectionPlan | None = None
        self._pending: SectionPlan | None = None
        self._bar_index = 0
        self._bar_in_section = 0
        self._time_s = 0.0  # exact start time of the next bar
        #: Every section planned so far, in order (for timelines and debugging).
        self.sections: list[SectionPlan] = []

    # ------------------------------------------------------------------ API
    def generate(self, control: MoodControl, min_duration_s: float = 0.0) -> MusicChunk:
        check_emotion(control.emotion)
        style_name = resolve_style(self.options.style, control.style, control.emotion)
        start = self._renderer.position
        target = start + int(round(max(0.0, min_duration_s) * self.sample_rate))
        bars: list[BarInfo] = []
        end = start
        while not bars or end < target:
            info, end = self._compose_bar(control, style_name.name)
            bars.append(info)
        audio = self._renderer.render(end - start)
        return MusicChunk(audio=audio, sample_rate=self.sample_rate, start_s=start / self.sample_rate,
                          bars=tuple(bars))

    # ------------------------------------------------------------------ bars
    def _schedule(self, events: list[TimedEvent], bar_start_s: float) -> None:
        sr = self.sample_rate
        for t, op, chan, a, b in events:
            self._renderer.schedule(int(round((bar_start_s + t) * sr)), op, chan, a, b)

    def _new_section(self, control: MoodControl, style: str) -> SectionPlan:
        prev = self._section
        plan = plan_section(0 if prev is None else prev.number + 1,
                            resolve_style(None, style, control.emotion), control, prev, self.options.seed)
        self.sections.append(plan)
        log.debug("section %d: %s/%s %.0f bpm %s %s [%s]", plan.number, plan.style.name, plan.emotion, plan.tempo,
                  plan.key, plan.mode, " ".join(c.spelled(plan.flats) for c in plan.progression))
        return plan

    def _compose_bar(self, control: MoodControl, style: str) -> tuple[BarInfo, int]:
        energy = energy_of(control)
        level = density_level(energy)
        rng = np.random.default_rng([self.options.seed, self._bar_index])
        bar_start = self._time_s
        transition_from: SectionPlan | None = None
        if self._section is None:
            self._section = self._new_section(control, style)
            self._schedule(self._arranger.begin(self._section), bar_start)
        elif self._pending is not None:
            self._section, self._pending = self._pending, None
            self._bar_in_section = 0
        elif (control.emotion, style) != self._section.identity and self._bar_in_section >= MIN_SECTION_BARS:
            transition_from = self._section
            self._pending = self._new_section(control, style)
        sec = self._section
        beats = None if control.beat_durations_s is None else _clamp_beats(control.beat_durations_s, sec)
        if beats is not None:
            tempo = BEATS_PER_BAR * 60.0 / sum(beats)  # the bar's mean tempo
        else:
            tempo = sec.tempo if control.tempo_bpm is None else _clamp_tempo(control.tempo_bpm, sec)
        if transition_from is not None and self._pending is not None:
            new = self._pending
            pivot = pivot_chord(transition_from.tonic, transition_from.mode, new.tonic, new.mode)
            dom = dominant_of(new.tonic)
            chords: tuple[tuple[int, Chord], ...] = ((0, pivot), (8, dom)) if pivot else ((0, dom),)
            ctx = BarContext(new, 0, chords, new.tonic, level, energy, tempo, control.valence, beats)
            events = self._arranger.transition(transition_from, ctx, rng)
            shown = new
            instruments = tuple(dict.fromkeys(transition_from.style.instruments + new.style.instruments))
        else:
            bar_chords, nxt = self._harmony.bar(sec, energy)  # 1 chord per 2 bars .. 2 a bar, by energy
            ctx = BarContext(sec, self._bar_in_section, bar_chords, nxt, level, energy, tempo, control.valence,
                             beats)
            events = self._arranger.bar(ctx, rng)
            self._bar_in_section += 1
            shown = sec
            instruments = sec.style.instruments
        self._schedule(events, bar_start)
        bar_s = ctx.bar_s
        self._time_s = bar_start + bar_s
        self._bar_index += 1
        start_sample = int(round(bar_start * self.sample_rate))
        end_sample = int(round(self._time_s * self.sample_rate))
        info = BarInfo(
            start_s=start_sample / self.sample_rate,
            duration_s=(end_sample - start_sample) / self.sample_rate,
            tempo_bpm=tempo,
            key=shown.key,
            mode=shown.mode,
            style=shown.style.name,
            emotion=shown.emotion,
            section=shown.number,
            transition=transition_from is not None,
            chord=ctx.chords[0][1].spelled(shown.flats),
            instruments=instruments,
            beat_durations_s=beats,
        )
        return info, end_sample


def _clamp_tempo(bpm: float, section: SectionPlan) -> float:
    """A requested tempo (``MoodControl.tempo_bpm``) inside the section's band (double time for high arousal)."""
    lo, hi = section.tempo_band
    return float(np.clip(bpm, lo, hi)) if np.isfinite(bpm) else section.tempo


def _clamp_beats(durations: tuple[float, ...], section: SectionPlan) -> tuple[float, ...]:
    """Requested beat lengths (``MoodControl.beat_durations_s``), each inside the section's band (double time
    for high arousal); anything but :data:`BEATS_PER_BAR` finite positive lengths is an error."""
    if len(durations) != BEATS_PER_BAR or not all(np.isfinite(d) and d > 0 for d in durations):
        raise ValueError(f"beat_durations_s must be {BEATS_PER_BAR} positive lengths, got {durations!r}")
    lo, hi = section.tempo_band
    return tuple(float(np.clip(d, 60.0 / hi, 60.0 / lo)) for d in durations)


class ProceduralMusicEngine(MusicEngine):
    """Procedural composer rendered with the GM soundfont shipped in pretty_midi.

    ``gain_db``: tinysoundfont master gain (default keeps 4-5 parts below 0.9 peak; a
    stateless soft limiter guards the rest)."""

    change_latency_chunks = 1  # one transition bar before the new section

    name = "procedural"

    def __init__(self, gain_db: float = MASTER_GAIN_DB) -> None:
        self.gain_db = gain_db

    def open_stream(self, options: MusicStreamOptions) -> ProceduralMusicStream:
        return ProceduralMusicStream(options, self.gain_db)

    def tempo_band(self, control: MoodControl, options: MusicStreamOptions) -> tuple[float, float, float]:
        style = resolve_style(options.style, control.style, control.emotion)
        return tempo_for(style, energy_of(control)), *style.tempo_band(control.arousal)
