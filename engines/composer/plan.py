"""Section planning: what a section of music is (tempo, key, mode, progression, style).

A section's tempo, key, mode and progression are fixed when it starts; within it the mood moves
the density, layers, dynamics, register and harmonic rhythm (:mod:`.styles` has the table,
:class:`HarmonicRhythm` walks the progression). Its identity is ``(emotion, style)``: a change of
identity starts a new section after a transition bar (see :mod:`.engine`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.base import MoodControl

from .styles import StylePreset
from .theory import (
    Chord,
    choose_key_change,
    choose_mode,
    choose_progression,
    colour_progression,
    is_major_family,
    key_name,
    uses_flats,
)

#: Starting keys that sit well in the presets' registers.
START_TONICS_MAJOR = (0, 2, 3, 5, 7, 9, 10)  # C D Eb F G A Bb
START_TONICS_MINOR = (9, 2, 4, 0, 7, 11, 5)  # A D E C G B F


@dataclass(frozen=True)
class SectionPlan:
    number: int
    style: StylePreset
    emotion: str
    tempo: float
    tonic: int
    mode: str
    progression: tuple[Chord, ...]
    bank: int  # which of the two channel banks the section's parts play on
    pedal: bool  # bass holds a tonic pedal (tense/fearful colour)
    #: The tempi (bpm) a requested tempo may take (:meth:`.styles.StylePreset.tempo_band` of the mood that
    #: started the section: double time for high arousal); ``None``: the style's ``tempo_range``.
    band: tuple[float, float] | None = None

    @property
    def tempo_band(self) -> tuple[float, float]:
        return self.band if self.band is not None else self.style.tempo_range

    @property
    def identity(self) -> tuple[str, str]:
        return (self.emotion, self.style.name)

    @property
    def key(self) -> str:
        return key_name(self.tonic, self.mode)

    @property
    def flats(self) -> bool:
        return uses_flats(self.tonic, self.mode)


def energy_of(control: MoodControl) -> float:
    """0..1 energy from arousal, nudged by the visual pace hint when present."""
    a01 = float(np.clip((control.arousal + 1.0) / 2.0, 0.0, 1.0))
    if control.pace is None:
        return a01
    return float(np.clip(0.75 * a01 + 0.25 * float(np.clip(control.pace, 0.0, 1.0)), 0.0, 1.0))


def density_level(energy: float) -> int:
    return 0 if energy < 0.35 else 1 if energy < 0.7 else 2


#: Tempo curve: ``lo + (hi - lo) * energy ** TEMPO_CURVE`` -- calm and medium moods stay in the
#: lower part of a style's band, the top is kept for the most intense ones.
TEMPO_CURVE = 1.5


def tempo_for(style: StylePreset, energy: float) -> float:
    lo, hi = style.tempo_range
    return float(round(lo + (hi - lo) * float(np.clip(energy, 0.0, 1.0)) ** TEMPO_CURVE))


def plan_section(
    number: int,
    style: StylePreset,
    control: MoodControl,
    prev: SectionPlan | None,
    seed: int,
) -> SectionPlan:
    """Plan section ``number``; the key stays close to ``prev``'s so a pivot chord exists."""
    rng = np.random.default_rng([seed, 7919, number])
    mode = choose_mode(control.emotion, control.valence, rng)
    if prev is None:
        pool = START_TONICS_MAJOR if is_major_family(mode) else START_TONICS_MINOR
        tonic = int(pool[int(rng.integers(len(pool)))])
    else:
        tonic = choose_key_change(prev.tonic, prev.mode, mode, rng)
    progression = colour_progression(choose_progression(control.emotion, mode, tonic, rng), control.valence)
    pedal = control.emotion in ("tense", "fearful") and bool(rng.random() < 0.5)
    return SectionPlan(
        number=number,
        style=style,
        emotion=control.emotion,
        tempo=tempo_for(style, energy_of(control)),
        tonic=tonic,
        mode=mode,
        progression=progression,
        bank=0 if prev is None else 1 - prev.bank,
        pedal=pedal,
        band=style.tempo_band(control.arousal),
    )


class HarmonicRhythm:
    """Walks a section's progression at the energy's harmonic rhythm (:meth:`StylePreset.chords_per_bar`).

    Calm: one chord every two bars; medium: one a bar; intense: two a bar (on beats 1 and 3).
    The position carries over between bars whatever the rate, and restarts with each section, so
    the chords depend only on the sequence of controls (not on how bars are grouped in chunks)."""

    def __init__(self) -> None:
        self._section = -1
        self._index = 0  # progression index of the next chord
        self._held = 0  # bars the current chord has already lasted (slow rate)

    def bar(self, section: SectionPlan, energy: float) -> tuple[tuple[tuple[int, Chord], ...], int]:
        """``((step, chord), ...)`` of the next bar of ``section`` and the root of the chord after it."""
        if section.number != self._section:
            self._section, self._index, self._held = section.number, 0, 0
        prog = section.progression
        rate = section.style.chords_per_bar(energy)
        i = self._index
        if rate >= 2.0:
            chords: tuple[tuple[int, Chord], ...] = ((0, prog[i % len(prog)]), (8, prog[(i + 1) % len(prog)]))
            self._index, self._held = i + 2, 0
        elif rate <= 0.5 and self._held == 0:
            chords = ((0, prog[i % len(prog)]),)
            self._held = 1  # the same chord again next bar
        else:
            chords = ((0, prog[i % len(prog)]),)
            self._index, self._held = i + 1, 0
        return chords, prog[self._index % len(prog)].root
