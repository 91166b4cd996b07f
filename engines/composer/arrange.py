"""Per-bar arrangement: note/controller events for drums, bass, pads, comping, lead, perc.

The :class:`Arranger` keeps the musical state that spans bars (current pad voicings and
held notes, last bass and melody notes, the current motif) and turns one bar's context into
a list of :data:`TimedEvent` with times in seconds from the bar start.

Channels: the parts of a section play on one of two channel banks; the next section uses the
other bank, so in a transition bar the outgoing parts can fade out (CC11 ramp down) while the
incoming ones fade in on their own channels (CC11 ramp up). Drums are on channel 9.

What the mood moves inside a style (the table is in :mod:`.styles`): each bar the arranger picks
the layers that play at the bar's energy (``PartSpec.enter``/``leave``, ``drums_from``, with a small
hysteresis so a layer does not flicker), the velocity and the CC11 expression (a swell over the
first half of the bar when it changes), the register shift from energy and valence, the articulation
(bass, comping and perc notes shortened above energy .5, :meth:`.styles.StylePreset.note_length`) and
the kit's level (CC7, :meth:`.styles.StylePreset.kit_cc7`, ramped over half a bar like the swell), and
plays the chords the engine hands it (one every two bars .. two a bar, :class:`.plan.HarmonicRhythm`).
A bar faster than its style's ``tempo_range`` (double time, a beat plan's for fast cuts) plays its drum,
bass, comping and perc rows without odd 16ths (:func:`.patterns.double_time`).

Humanisation: seeded Gaussian timing jitter (about 4 ms for pitched parts, 2 ms for drums,
never earlier than the bar start) and velocity jitter (about 4 steps).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import patterns as P
from .melody import Motif, new_motif, phrase_variant, realize
from .plan import SectionPlan
from .styles import PartSpec, StylePreset
from .synth import CC, DRUM_CHANNEL, NOTE_OFF, NOTE_ON, PROGRAM, SOUNDS_OFF
from .theory import Chord, pitches_in_range, voice_chord

#: (seconds from bar start, op, channel, a, b)
TimedEvent = tuple[float, int, int, int, int]

#: Two banks of 7 channels (channel 9 is the drums): a style has at most 7 parts.
BANKS: tuple[tuple[int, ...], tuple[int, ...]] = ((0, 1, 2, 3, 4, 5, 6), (7, 8, 10, 11, 12, 13, 14))


@dataclass(frozen=True)
class BarContext:
    section: SectionPlan
    bar_in_section: int
    chords: tuple[tuple[int, Chord], ...]  # (step, chord)
    next_root: int
    level: int
    energy: float
    tempo: float
    valence: float = 0.0
    #: Seconds of each of the bar's beats when they are uneven (a beat plan's tempo curve); None: even
    #: beats at ``tempo``.
    beats: tuple[float, ...] | None = None

    @property
    def bar_s(self) -> float:
        return 240.0 / self.tempo if self.beats is None else float(sum(self.beats))

    @property
    def double_time(self) -> bool:
        """Faster than the style's ``tempo_range`` (a high-arousal mood's double time): 16th rows play as
        8ths (:func:`.patterns.double_time`)."""
        return self.tempo > self.section.style.tempo_range[1] + 1e-6


class Arranger:
    def __init__(self) -> None:
        self.held: dict[int, list[int]] = {}
        self.voicing: dict[int, list[int]] = {}
        self.last_bass: int | None = None
        self.last_melody: int | None = None
        self.motif: Motif | None = None
        self.phrase_on = False
        #: Channels whose part played the last bar (layer hysteresis), whether the kit played it.
        self.playing: set[int] = set()
        self.drums_playing = False
        #: CC11 last sent per channel (absent: not yet set since the channel was set up).
        self.expr: dict[int, int] = {}
        #: The kit's CC7 last sent (None: the next bar sets it at once).
        self.kit_level: int | None = None
        #: Share of their written length pitched notes last this bar (:meth:`StylePreset.note_length`).
        self._length = 1.0
        self.ev: list[TimedEvent] = []
        self._rng = np.random.default_rng(0)
        self._tempo = 120.0
        self._swing = 0.0
        #: Start (s from the bar start) of each beat and the bar's end, when the beats are uneven.
        self._beat_at: tuple[float, ...] | None = None
        #: This bar is in double time (:attr:`BarContext.double_time`): no odd 16ths.
        self._double = False

    # ------------------------------------------------------------------ helpers
    def _t(self, step: float) -> float:
        """Seconds from bar start of 16th ``step`` (with swing on off-beat 8ths/16ths). Uneven beats:
        ``step`` maps linearly within its beat (swing included) onto that beat's own span."""
        s = step / 4.0
        if step % 4 == 2:
            s += self._swing / 2.0
        elif step % 2 == 1:
            s += self._swing / 4.0
        at = self._beat_at
        if at is None:
            return s * 60.0 / self._tempo
        k = min(max(int(s), 0), len(at) - 2)  # past the bar's end: the last beat's pace
        return at[k] + (s - k) * (at[k + 1] - at[k])

    def _begin_bar(self, ctx: BarContext, rng: np.random.Generator) -> float:
        """Per-bar timing state; returns the bar's length (s)."""
        self.ev, self._rng, self._tempo, self._double = [], rng, ctx.tempo, ctx.double_time
        self._beat_at = None if ctx.beats is None else tuple(np.concatenate([[0.0], np.cumsum(ctx.beats)]).tolist())
        return ctx.bar_s

    def _jit(self, t: float, sd: float) -> float:
        return max(0.0, t + float(np.clip(self._rng.normal(0.0, sd), -3 * sd, 3 * sd)))

    def _vel(self, base: float, scale: float, step: int) -> int:
        accent = 1.08 if step == 0 else 1.03 if step == 8 else 0.9 if step % 4 == 2 else 1.0
        v = base * scale * accent + self._rng.normal(0.0, 4.0)
        return int(np.clip(round(v), 1, 127))

    def _note(self, t_on: float, t_off: float, chan: int, key: int, vel: int, sd: float = 0.004) -> None:
        if chan != DRUM_CHANNEL and self._length < 1.0:
            t_off = t_on + (t_off - t_on) * self._length
        on = self._jit(t_on, sd)
        self.ev.append((on, NOTE_ON, chan, key, vel))
        self.ev.append((max(on + 0.02, t_off), NOTE_OFF, chan, key, 0))

    def _setup(self, t: float, chan: int, style: StylePreset, part: PartSpec, expression: int) -> None:
        self.ev.append((t, SOUNDS_OFF, chan, 0, 0))  # only ever on a silent (CC11 = 0) channel
        self.ev.append((t, PROGRAM, chan, 0, part.program))
        self.ev.append((t, CC, chan, 7, style.cc7(part.volume)))
        self.ev.append((t, CC, chan, 10, part.pan))
        self.ev.append((t, CC, chan, 11, expression))

    def _ramp(self, chan: int, start: int, stop: int, bar_s: float) -> None:
        for i in range(1, 17):
            x = i / 16.0
            val = start + (stop - start) * (x**0.5 if stop > start else x)
            self.ev.append((bar_s * (i - 0.5) / 16.0, CC, chan, 11, int(round(val))))
        self.expr[chan] = stop

    def _swell(self, chan: int, target: int, bar_s: float) -> None:
        """CC11 towards ``target``: at once on a fresh channel, else over the first half of the bar."""
        self.expr[chan] = self._glide(chan, 11, self.expr.get(chan), target, bar_s)

    def _glide(self, chan: int, cc: int, current: int | None, target: int, bar_s: float) -> int:
        """Controller ``cc`` from ``current`` to ``target`` (at once when ``current`` is None, else over
        the first half of the bar); returns ``target``."""
        if current is None:
            self.ev.append((0.0, CC, chan, cc, target))
        elif current != target:
            for i in range(1, 9):
                self.ev.append((bar_s * (i - 1) / 16.0, CC, chan, cc, int(round(current + (target - current) * i / 8))))
        return target

    def _active(self, chan: int, part: PartSpec, energy: float) -> bool:
        """Whether ``part`` on ``chan`` plays this bar (with hysteresis); a part that stops lets go
        of its held notes."""
        on = part.plays(energy, chan in self.playing)
        if on:
            self.playing.add(chan)
        elif chan in self.playing:
            self.playing.discard(chan)
            self._release(chan, 0.0)
        return on

    def _kit_on(self, style: StylePreset, energy: float) -> bool:
        margin = 0.04 if self.drums_playing else 0.0
        return style.drum_kit is not None and energy >= style.drums_from - margin

    def _release(self, chan: int, t: float) -> None:
        for key in self.held.pop(chan, []):
            self.ev.append((t, NOTE_OFF, chan, key, 0))

    # ------------------------------------------------------------------ public
    def begin(self, plan: SectionPlan) -> list[TimedEvent]:
        """Controller setup at the very start of the stream (first section)."""
        self.ev = []
        for i, part in enumerate(plan.style.parts):
            self._setup(0.0, BANKS[plan.bank][i], plan.style, part, 127)
        for chan in BANKS[1 - plan.bank]:
            self.ev.append((0.0, CC, chan, 11, 0))
        self._drum_setup(plan.style, 0.0, 0.0)
        self.expr.clear()  # the first bar sets the expression of its energy at once
        self.kit_level = None  # and the kit's level
        return self.ev

    def bar(self, ctx: BarContext, rng: np.random.Generator) -> list[TimedEvent]:
        """Events of one ordinary bar of ``ctx.section``."""
        bar_s = self._begin_bar(ctx, rng)
        style = ctx.section.style
        self._swing = style.swing
        if ctx.bar_in_section == 0 and ctx.section.number > 0:
            self._drum_setup(style, 0.0, ctx.energy)
        expression = style.expression(ctx.energy)
        kit = self._kit_on(style, ctx.energy)
        if kit:
            self._swell(DRUM_CHANNEL, expression, bar_s)
            entering = not self.drums_playing
            if entering:
                self.kit_level = None  # a kit coming in starts at its level
            self._kit_level(style, ctx.energy, bar_s)
            crash = ctx.bar_in_section == 0 or entering or (ctx.level == 2 and ctx.bar_in_section % 4 == 0)
            self._drums(style, ctx, 0, 16, crash)
        self.drums_playing = kit
        for i in range(len(style.parts)):
            self._swell(BANKS[ctx.section.bank][i], expression, bar_s)
        self._parts(ctx, style.velocity(ctx.energy), bar_s, lead=True)
        return self.ev

    def transition(self, old: SectionPlan, ctx: BarContext, rng: np.random.Generator) -> list[TimedEvent]:
        """The transition bar into ``ctx.section``: old parts hold the pivot chord and fade out,
        new parts fade in on the other bank over pivot -> V7, the drums play a fill."""
        bar_s = self._begin_bar(ctx, rng)
        new = ctx.section
        self._swing = 0.0
        # outgoing: sustained pivot chord, fading out; all its notes end with the bar
        pivot = ctx.chords[0][1]
        shift = self._shift(old.style, ctx)
        for i, part in enumerate(old.style.parts):
            chan = BANKS[old.bank][i]
            if part.role in ("pad", "comp") and chan in self.playing:
                self._pad(chan, self._moved(part, shift), pivot, 0.0, 0.55 * old.style.velocity_range[1])
            self._ramp(chan, self.expr.get(chan, 127), 0, bar_s)
            self._release(chan, bar_s)
            self.playing.discard(chan)
        # incoming
        expression = new.style.expression(ctx.energy)
        for i, part in enumerate(new.style.parts):
            chan = BANKS[new.bank][i]
            self._setup(0.0, chan, new.style, part, 0)
            self.playing.discard(chan)
            self._ramp(chan, 0, expression, bar_s)
        lo_v = new.style.velocity_range[0]
        base = lo_v + 0.8 * (new.style.velocity(ctx.energy) - lo_v)
        self._parts(ctx, base, bar_s, lead=False)
        # drums: first half of the old groove + a fill (or just the fill into a drummed section)
        old_kit = self.drums_playing and old.style.drum_kit is not None
        new_kit = self._kit_on(new.style, ctx.energy)
        if old_kit or new_kit:
            if old_kit:
                self._drums(old.style, ctx, 0, 8, False)
            else:
                self._drum_setup(new.style, 0.0, ctx.energy)
            self._swell(DRUM_CHANNEL, max(expression, self.expr.get(DRUM_CHANNEL, 0)), bar_s)
            for step, key, v in P.FILL:
                vel = int(np.clip(base * v * (1.0 + step / 32.0), 1, 127))
                self._note(self._t(step), self._t(step) + 0.25, DRUM_CHANNEL, key, vel, sd=0.002)
        self.last_melody = None
        self.motif = None
        return self.ev

    # ------------------------------------------------------------------ parts
    def _drum_setup(self, style: StylePreset, t: float, energy: float) -> None:
        if style.drum_kit is not None:
            self.kit_level = style.kit_cc7(energy)
            self.ev.append((t, PROGRAM, DRUM_CHANNEL, 128, style.drum_kit))
            self.ev.append((t, CC, DRUM_CHANNEL, 7, self.kit_level))

    def _kit_level(self, style: StylePreset, energy: float, bar_s: float) -> None:
        """The kit's CC7 towards its level at ``energy`` (:meth:`StylePreset.kit_cc7`), like :meth:`_swell`."""
        self.kit_level = self._glide(DRUM_CHANNEL, 7, self.kit_level, style.kit_cc7(energy), bar_s)

    def _drums(self, style: StylePreset, ctx: BarContext, first: int, stop: int, crash: bool) -> None:
        rows = P.DRUMS.get(style.name, P.DRUMS["cheerful"])[ctx.level]
        if self._double:
            rows = P.double_time_drums(rows)
        base = style.velocity(ctx.energy)
        bright = 1.0 + 0.4 * max(-1.0, min(1.0, ctx.valence))  # metal (hats, shakers) follows valence
        for key, steps, v in rows:
            if key in P.METAL:
                v *= bright
            for step in steps:
                if first <= step < stop:
                    t = self._t(step)
                    self._note(t, t + 0.3, DRUM_CHANNEL, key, self._vel(base * 1.1, v, step), sd=0.002)
        if crash:
            self._note(0.0, 1.5, DRUM_CHANNEL, P.CRASH, self._vel(base, 0.75, 0), sd=0.0)

    @staticmethod
    def _shift(style: StylePreset, ctx: BarContext) -> int:
        return style.register_shift(ctx.energy, ctx.valence)

    @staticmethod
    def _moved(part: PartSpec, shift: int) -> PartSpec:
        """``part`` with its register shifted by ``shift`` semitones (if it follows the mood)."""
        return replace(part, lo=part.lo + shift, hi=part.hi + shift) if part.moves and shift else part

    @staticmethod
    def _tilt(part: PartSpec, valence: float) -> float:
        """Velocity balance by valence: the moving (upper) parts louder and the bass softer when
        bright, the other way round when dark."""
        v = max(-1.0, min(1.0, valence))
        return 1.0 + 0.12 * v if part.moves else 1.0 - 0.12 * v

    def _parts(self, ctx: BarContext, base: float, bar_s: float, lead: bool) -> None:
        sec = ctx.section
        shift = self._shift(sec.style, ctx)
        detached = sec.style.note_length(ctx.energy)
        for i, spec in enumerate(sec.style.parts):
            chan = BANKS[sec.bank][i]
            if not self._active(chan, spec, ctx.energy):
                if spec.role == "lead":
                    self.last_melody = None
                continue
            part = self._moved(spec, shift)
            self._length = detached if part.role in ("bass", "comp", "perc") else 1.0
            vbase = base * part.velocity * self._tilt(part, ctx.valence)
            for j, (step, chord) in enumerate(ctx.chords):
                end = ctx.chords[j + 1][0] if j + 1 < len(ctx.chords) else 16
                nxt = ctx.chords[j + 1][1].root if j + 1 < len(ctx.chords) else ctx.next_root
                if part.role == "bass":
                    self._bass(chan, part, sec, chord, nxt, step, end, vbase, ctx.level)
                elif part.role == "pad":
                    self._pad(chan, part, chord, self._t(step), vbase)
                elif part.role == "comp":
                    self._comp(chan, part, chord, step, end, vbase, ctx.level)
                elif part.role == "perc":
                    for s in P.PERC_STEPS[ctx.level]:
                        if step <= s < end and not (self._double and s % 2):
                            key = pitches_in_range((chord.root,), part.lo, part.hi)[0]
                            self._note(self._t(s), self._t(s) + 0.8, chan, key, self._vel(vbase, 1.0, s))
            if part.role == "lead" and lead:
                self._lead(chan, part, ctx, vbase)
        self._length = 1.0

    def _bass(self, chan: int, part: PartSpec, sec: SectionPlan, chord: Chord, nxt: int,
              first: int, stop: int, vbase: float, level: int) -> None:
        root_pc = sec.tonic if sec.pedal else chord.root
        fifth_pc = (sec.tonic + 7) % 12 if sec.pedal else chord.fifth
        roots = pitches_in_range((root_pc,), part.lo, min(part.hi, part.lo + 14))
        root = roots[0] if self.last_bass is None else min(roots, key=lambda p: abs(p - (self.last_bass or p)))
        rows = P.BASS.get(sec.style.name, P.BASS["lofi"])[level]
        for step, length, what in rows:
            if not first <= step < stop or (self._double and step % 2):
                continue
            if what == "R":
                key = root
            elif what == "O":
                key = root + 12 if root + 12 <= part.hi else root
            elif what == "5":
                key = root + (fifth_pc - root_pc) % 12
                if key > part.hi:
                    key -= 12
            else:  # approach: a semitone below the next root
                key = pitches_in_range((nxt,), part.lo + 1, part.hi)[0] - 1
            end = min(step + length, stop)
            self._note(self._t(step), self._t(end) - 0.03, chan, key, self._vel(vbase, 1.0, step))
        self.last_bass = root

    def _pad(self, chan: int, part: PartSpec, chord: Chord, t0: float, vbase: float) -> None:
        """Sustained chord; notes shared with the held chord keep sounding (no re-attack)."""
        voicing = voice_chord(chord, self.voicing.get(chan, []), part.lo, part.hi, part.max_notes)
        held = self.held.get(chan, [])
        for key in held:
            if key not in voicing:
                self.ev.append((t0, NOTE_OFF, chan, key, 0))
        for key in voicing:
            if key not in held:
                self.ev.append((self._jit(t0, 0.004), NOTE_ON, chan, key, self._vel(vbase, 0.85, 4)))
        self.held[chan] = voicing
        self.voicing[chan] = voicing

    def _comp(self, chan: int, part: PartSpec, chord: Chord, first: int, stop: int, vbase: float,
              level: int) -> None:
        voicing = voice_chord(chord, self.voicing.get(chan, []), part.lo, part.hi, part.max_notes)
        self.voicing[chan] = voicing
        pattern = P.COMP[part.figure or "block"][level]
        rows = [(s, n) for s, n in (P.double_time_rows(pattern) if self._double else pattern) if first <= s < stop]
        if part.figure == "arp":
            tones = [*voicing, voicing[0] + 12]
            order = (0, 1, 2, 3, 2, 1, 2, 1) if len(tones) > 3 else (0, 1, 2, 1, 0, 1, 2, 1)
            for k, (s, n) in enumerate(rows):
                key = tones[order[k % len(order)] % len(tones)]
                self._note(self._t(s), self._t(min(s + 2 * n, 16)), chan, key, self._vel(vbase, 0.95, s))
        elif part.figure == "ostinato":
            # root - fifth - octave - third: a moving figure that also states the chord's mode
            root = voicing[0] - (voicing[0] - chord.root) % 12
            root = root if root >= part.lo else root + 12
            fifth = root + (chord.fifth - chord.root) % 12
            third = root + 12 + chord.intervals[1]
            figure = (root, fifth, root + 12, third if third <= part.hi + 7 else fifth)
            for k, (s, n) in enumerate(rows):
                accent = 1.0 if s % 4 == 0 else 0.8
                self._note(self._t(s), self._t(s + n) - 0.02, chan, figure[k % 4], self._vel(vbase, accent, s))
        else:  # block / strum
            strum = part.figure == "strum"
            for s, n in rows:
                up = strum and s % 4 == 2
                keys = voicing[::-1] if up else voicing
                for k, key in enumerate(keys):
                    t = self._t(s) + (0.009 * k if strum else 0.0)
                    vel = self._vel(vbase, 0.8 if up else 1.0, s)
                    self._note(t, self._t(s + n) - 0.02, chan, key, vel)

    def _lead(self, chan: int, part: PartSpec, ctx: BarContext, vbase: float) -> None:
        sec = ctx.section
        bar_in_phrase = ctx.bar_in_section % 4
        if bar_in_phrase == 0 or self.motif is None:
            self.phrase_on = bool(self._rng.random() < sec.style.lead_presence)
            self.motif = new_motif(self._rng, ctx.level)
        if not self.phrase_on:
            self.last_melody = None
            return
        motif = phrase_variant(self.motif, bar_in_phrase, self._rng)
        notes = realize(motif, ctx.chords, sec.tonic, sec.mode, part.lo, part.hi, self.last_melody, bar_in_phrase == 3)
        for step, length, key in notes:
            t0, t1 = self._t(step), self._t(min(step + length, 16))
            self._note(t0, t0 + 0.92 * (t1 - t0), chan, key, self._vel(vbase, 1.0, step))
        if notes:
            self.last_melody = notes[-1][2]
