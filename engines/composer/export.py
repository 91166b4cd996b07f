"""Editable outputs of the procedural composer: the score as a Standard MIDI File, and stems.

A :class:`RecordingComposer` is the procedural engine with its renderer's :class:`~.synth.EventLog`
switched on: every note, controller and program change is written down with the sample it sounded
at, and which part (role) each channel played from when (the two channel banks alternate between
sections, so a channel's role changes over time; channel 9 is always the drums).

* :func:`write_midi` -- a type-1 SMF: a conductor track with the tempo map (a tempo event at each bar
  whose tempo differs from the one before, at each beat of a bar with uneven beats), 4/4 and one
  marker per music section ("section 2: tense / cinematic, D minor"), then one track per channel
  with its program changes (drum kit on channel 10), controllers and notes, placed on the tempo map
  so that they play at the seconds the audio has them.
* :func:`stem_chunks` -- the recorded events played again into one synth per stem (drums, bass,
  harmony, melody), cut exactly as the full render was (:func:`~.synth.replay_chunks`), so each
  voice is computed sample for sample as it was in the mix of all parts; the renderer's soft limiter
  (not linear) is applied as the gain it put on the full render, so the stems add up to the
  composer's output to float rounding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from engines.base import BarInfo, MoodControl, MusicStreamOptions

from .engine import ProceduralMusicEngine, ProceduralMusicStream
from .plan import SectionPlan
from .synth import (
    CC,
    DRUM_CHANNEL,
    KNEE,
    MASTER_GAIN_DB,
    NOTE_OFF,
    NOTE_ON,
    PROGRAM,
    SOUNDS_OFF,
    EventLog,
    load_synth,
    replay_chunks,
    soft_limit,
)

#: The stems, in order, and which part roles go to each (channel 9 is always drums).
STEMS: dict[str, tuple[str, ...]] = {
    "drums": ("drums", "perc"),
    "bass": ("bass",),
    "harmony": ("pad", "comp"),
    "melody": ("lead",),
}
#: Where a role not listed in :data:`STEMS` goes.
OTHER_STEM = "harmony"
TICKS_PER_BEAT = 960


def stem_of(role: str) -> str:
    for stem, roles in STEMS.items():
        if role in roles:
            return stem
    return OTHER_STEM


# ----------------------------------------------------------------------------- recording


class RecordingStream(ProceduralMusicStream):
    """A procedural stream that records what it plays (:attr:`recording`)."""

    def __init__(self, options: MusicStreamOptions, gain_db: float = MASTER_GAIN_DB) -> None:
        super().__init__(options, gain_db)
        self.recording = EventLog(options.sample_rate, gain_db)
        self._renderer.recording = self.recording
        self.recording.assign(0, DRUM_CHANNEL, "drums", 0)

    def _new_section(self, control: MoodControl, style: str) -> SectionPlan:
        from .arrange import BANKS

        plan = super()._new_section(control, style)
        # its parts are set up on its bank at the start of the bar being composed (its first bar, or
        # the transition bar into it), after the bank's previous notes have ended
        sample = int(round(self._time_s * self.sample_rate))
        bank = BANKS[plan.bank]
        for i, part in enumerate(plan.style.parts[:len(bank)]):
            self.recording.assign(sample, bank[i], part.role, part.program)
        if plan.style.drum_kit is not None:
            self.recording.assign(sample, DRUM_CHANNEL, "drums", plan.style.drum_kit)
        return plan


class RecordingComposer(ProceduralMusicEngine):
    """The procedural engine, recording its streams: :attr:`recording` is the last opened stream's."""

    name = "procedural"

    def __init__(self, gain_db: float = MASTER_GAIN_DB) -> None:
        super().__init__(gain_db)
        self.recording: EventLog | None = None

    def open_stream(self, options: MusicStreamOptions) -> RecordingStream:
        stream = RecordingStream(options, self.gain_db)
        self.recording = stream.recording
        return stream


# ----------------------------------------------------------------------------- MIDI


@dataclass(frozen=True)
class Marker:
    start_s: float
    text: str


class TempoMap:
    """Seconds <-> ticks along piecewise-constant tempos (microseconds a beat, as MIDI stores them)."""

    def __init__(self, changes: Sequence[tuple[float, float]]) -> None:
        """``changes``: ``(start_s, bpm)`` sorted by time, the first at 0."""
        self.starts_s: list[float] = []
        self.us_per_beat: list[int] = []
        self.starts_tick: list[int] = []
        for start, bpm in changes:
            us = int(round(60e6 / bpm))
            if self.us_per_beat and us == self.us_per_beat[-1]:
                continue
            tick = 0 if not self.starts_s else self.tick(start)
            self.starts_s.append(start if self.starts_s else 0.0)
            self.us_per_beat.append(us)
            self.starts_tick.append(tick)

    def tick(self, t: float) -> int:
        i = max(0, int(np.searchsorted(self.starts_s, t, side="right")) - 1)
        return self.starts_tick[i] + int(round((t - self.starts_s[i]) * 1e6 / self.us_per_beat[i] * TICKS_PER_BEAT))


def section_markers(sections: Sequence[object]) -> list[Marker]:
    """One marker per music section (:class:`pipelines.offline.compose.MusicSection`-like objects)."""
    return [Marker(float(s.start_s), f"section {i}: {s.emotion} / {s.style}, {s.key} {s.mode}")  # type: ignore[attr-defined]
            for i, s in enumerate(sections)]


def tempo_changes(bars: Sequence[BarInfo], duration_s: float) -> list[tuple[float, float]]:
    """``(start_s, bpm)`` at each bar (before ``duration_s``) whose tempo differs from the previous bar's;
    a bar with uneven beats (``BarInfo.beat_durations_s``, a beat plan) at each of its beats."""
    out: list[tuple[float, float]] = []
    for bar in bars:
        if bar.start_s >= duration_s and out:
            break
        if bar.beat_durations_s is None:
            beats = [(bar.start_s, bar.tempo_bpm)]
        else:
            beats = [(t, 60.0 / d) for t, d in zip(bar.beat_times(), bar.beat_durations_s, strict=True)]
        for t, bpm in beats:
            if out and t >= duration_s:
                break
            if not out or (bpm != out[-1][1] if bar.beat_durations_s is None else _us(bpm) != _us(out[-1][1])):
                out.append((0.0 if not out else t, bpm))
    return out or [(0.0, 120.0)]


def _us(bpm: float) -> int:
    """Microseconds a beat, as MIDI stores a tempo (uneven beats equal to it are one tempo)."""
    return int(round(60e6 / bpm))


def write_midi(path: str, log: EventLog, bars: Sequence[BarInfo], markers: Sequence[Marker],
               duration_s: float) -> dict[str, int]:
    """Write the recorded piece up to ``duration_s`` as a type-1 SMF; returns counts for the timeline."""
    import mido

    sr = log.sample_rate
    end = int(round(duration_s * sr))
    tempo = TempoMap(tempo_changes(bars, duration_s))
    role_at = log.role_at()
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    conductor: list[tuple[int, int, mido.MetaMessage]] = [
        (0, 0, mido.MetaMessage("track_name", name="backscore")),
        (0, 1, mido.MetaMessage("time_signature", numerator=4, denominator=4)),
    ]
    conductor += [(t, 2, mido.MetaMessage("set_tempo", tempo=us))
                  for t, us in zip(tempo.starts_tick, tempo.us_per_beat, strict=True)]
    conductor += [(tempo.tick(m.start_s), 3, mido.MetaMessage("marker", text=m.text)) for m in markers
                  if m.start_s < duration_s]
    mid.tracks.append(_track(conductor, tempo.tick(duration_s)))
    per_channel: dict[int, list[tuple[int, int, mido.Message]]] = {}
    names: dict[int, list[str]] = {}
    sounding: dict[tuple[int, int], int] = {}
    notes = 0
    for order, (sample, op, chan, a, b) in enumerate(log.events):
        if sample >= end:
            break
        tick = tempo.tick(sample / sr)
        msgs: list[mido.Message] = []
        if op == NOTE_ON:
            msgs.append(mido.Message("note_on", channel=chan, note=a, velocity=max(1, min(127, b))))
            sounding[(chan, a)] = sounding.get((chan, a), 0) + 1
            notes += 1
        elif op == NOTE_OFF:
            if sounding.get((chan, a), 0) <= 0:
                continue
            sounding[(chan, a)] -= 1
            msgs.append(mido.Message("note_off", channel=chan, note=a, velocity=0))
        elif op == CC:
            msgs.append(mido.Message("control_change", channel=chan, control=a, value=max(0, min(127, b))))
        elif op == PROGRAM:
            if chan != DRUM_CHANNEL and a:
                msgs.append(mido.Message("control_change", channel=chan, control=0, value=min(127, a)))
            msgs.append(mido.Message("program_change", channel=chan, program=max(0, min(127, b))))
            role = "drums" if chan == DRUM_CHANNEL else role_at(chan, sample)
            label = role or "part"
            if label not in names.setdefault(chan, []):
                names[chan].append(label)
        elif op == SOUNDS_OFF:
            msgs.append(mido.Message("control_change", channel=chan, control=120, value=0))
        for msg in msgs:
            per_channel.setdefault(chan, []).append((tick, order, msg))
    end_tick = tempo.tick(duration_s)
    for (chan, key), count in sounding.items():  # notes still sounding at the end of the video
        for _ in range(count):
            per_channel.setdefault(chan, []).append((end_tick, 1 << 40, mido.Message(
                "note_off", channel=chan, note=key, velocity=0)))
    for chan in sorted(per_channel):
        label = " / ".join(names.get(chan, ["part"]))
        name = mido.MetaMessage("track_name", name=f"ch{chan + 1} {label}")
        mid.tracks.append(_track([(0, -1, name), *per_channel[chan]], end_tick))
    mid.save(path)
    return {"tracks": len(mid.tracks), "notes": notes, "tempo_changes": len(tempo.us_per_beat),
            "markers": sum(1 for m in markers if m.start_s < duration_s)}


def _track(events: list[tuple[int, int, object]], end_tick: int) -> object:
    import mido

    track = mido.MidiTrack()
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))  # type: ignore[attr-defined]
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - now)))
    return track


# ----------------------------------------------------------------------------- stems


def stem_chunks(log: EventLog, n_samples: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """``(start, {stem: float32 (n, 2)})`` for the first ``n_samples`` of the recorded piece, chunk by
    chunk (the composer's own chunks: a bar each), adding up to what the composer rendered."""
    names = list(STEMS)
    index = {name: i for i, name in enumerate(names)}
    role_at = log.role_at()

    def keep(sample: int, chan: int, _key: int) -> int:
        return index["drums"] if chan == DRUM_CHANNEL else index[stem_of(role_at(chan, sample))]

    synths = [load_synth(log.sample_rate, log.gain_db) for _ in names]
    for start, parts in replay_chunks(log, synths, keep, n_samples):
        total = parts[0].copy()
        for p in parts[1:]:
            total += p
        # the renderer's soft limiter, as the gain it put on each sample of the full render
        ratio = np.ones_like(total)
        over = np.abs(total) > KNEE
        if over.any():
            ratio[over] = soft_limit(total)[over] / total[over]
        take = min(total.shape[0], n_samples - start)
        yield start, {name: (p * ratio)[:take] for name, p in zip(names, parts, strict=True)}
