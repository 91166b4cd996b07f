"""Melody/motif layer: a 4-bar phrase built from one short motif.

Phrase structure (bars within the phrase):

0. the motif (rhythm + contour),
1. a variation: same rhythm, contour either sequenced over the new chord or inverted,
2. the motif again (repetition is what makes a tune memorable),
3. a cadence: few, longer notes ending on the chord root.

Pitches: notes on strong steps (beats 1 and 3) snap to chord tones, the others move by
scale step (or a small leap) inside the chord scale of :func:`.theory.chord_scale`, so passing
tones never clash; in a bar with two chords each note fits the chord in force at its step. Rhythms
are at most 8th notes and leave rests, which keeps the lead from turning into dense repeated notes;
the rhythm pool follows the density level (sparse, medium, lively).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .theory import Chord, chord_scale, nearest, pitches_in_range

Note = tuple[int, int, int]  # (step, length in steps, MIDI key)

RHYTHMS: tuple[tuple[tuple[tuple[int, int], ...], ...], ...] = (
    (  # sparse
        ((0, 8), (8, 8)),
        ((0, 12), (12, 4)),
        ((0, 6), (6, 2), (8, 8)),
        ((0, 4), (4, 4), (8, 8)),
        ((2, 6), (8, 8)),
    ),
    (  # medium
        ((0, 4), (4, 2), (6, 2), (8, 8)),
        ((0, 3), (3, 3), (6, 2), (8, 4), (12, 4)),
        ((2, 2), (4, 4), (8, 6), (14, 2)),
        ((0, 6), (6, 2), (8, 4), (12, 4)),
    ),
    (  # lively
        ((0, 2), (2, 2), (4, 4), (8, 2), (10, 2), (12, 4)),
        ((0, 3), (3, 3), (6, 2), (8, 2), (10, 2), (12, 4)),
        ((0, 4), (4, 2), (6, 2), (8, 2), (10, 2), (12, 2), (14, 2)),
    ),
)
CADENCES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, 4), (4, 4), (8, 8)),
    ((0, 6), (6, 2), (8, 8)),
    ((0, 16),),
    ((0, 8), (8, 8)),
)
_STRONG = (0, 8)


@dataclass(frozen=True)
class Motif:
    rhythm: tuple[tuple[int, int], ...]
    moves: tuple[int, ...]  # chord-scale index moves between consecutive notes


def new_motif(rng: np.random.Generator, level: int) -> Motif:
    pool = RHYTHMS[max(0, min(level, 2))]
    rhythm = pool[int(rng.integers(len(pool)))]
    steps = np.array([-2, -1, 1, 2, 3, -3])
    probs = np.array([0.2, 0.3, 0.3, 0.12, 0.04, 0.04])
    moves = tuple(int(m) for m in rng.choice(steps, size=len(rhythm), p=probs))
    return Motif(rhythm, moves)


def phrase_variant(motif: Motif, bar_in_phrase: int, rng: np.random.Generator) -> Motif:
    """The motif as played in bar ``bar_in_phrase`` of a 4-bar phrase (see module doc)."""
    if bar_in_phrase == 1:
        if rng.random() < 0.5:
            return Motif(motif.rhythm, tuple(-m for m in motif.moves))
        return motif
    if bar_in_phrase == 3:
        rhythm = CADENCES[int(rng.integers(len(CADENCES)))]
        return Motif(rhythm, tuple([-1] * len(rhythm)))
    return motif


def _strong_tone(tones: list[int], pitch: int, third: int) -> int:
    best, best_cost = tones[0], 1e9
    for p in tones:
        cost = abs(p - pitch) - (1.5 if p % 12 == third else 0.0)
        if cost < best_cost:
            best, best_cost = p, cost
    return best


def _chord_at(chords: Sequence[tuple[int, Chord]], step: int) -> Chord:
    current = chords[0][1]
    for start, chord in chords:
        if start <= step:
            current = chord
    return current


def realize(
    motif: Motif,
    chords: Chord | Sequence[tuple[int, Chord]],
    tonic: int,
    mode: str,
    lo: int,
    hi: int,
    last: int | None,
    cadence: bool,
) -> list[Note]:
    """Turn a motif into notes over ``chords`` (one chord, or ``(step, chord)`` rows when the bar
    changes chord: each note fits the chord in force at its step); ``last`` is the previous melody
    note (or None)."""
    rows = ((0, chords),) if isinstance(chords, Chord) else tuple(chords)
    centre = (lo + hi) / 2.0
    notes: list[Note] = []
    pitch: int | None = None
    for i, (step, length) in enumerate(motif.rhythm):
        chord = _chord_at(rows, step)
        scale = pitches_in_range(chord_scale(chord, tonic, mode), lo, hi)
        tones = pitches_in_range(chord.pcs, lo, hi)
        if not scale or not tones:
            return []
        if pitch is None:
            start_target = centre if last is None else 0.6 * last + 0.4 * centre
            pitch = nearest(tones, start_target + motif.moves[0])
        else:
            idx = scale.index(nearest(scale, pitch)) + motif.moves[i]
            if idx < 0 or idx >= len(scale):  # reflect off the register edges
                idx = scale.index(nearest(scale, pitch)) - motif.moves[i]
            pitch = scale[max(0, min(len(scale) - 1, idx))]
        if step in _STRONG:  # chord tone, preferring the third (it carries major vs minor)
            pitch = _strong_tone(tones, pitch, chord.pcs[1])
        notes.append((step, length, pitch))
    if cadence and notes:
        step, length, pitch = notes[-1]
        chord = _chord_at(rows, step)
        roots = [p for p in pitches_in_range(chord.pcs, lo, hi) if p % 12 == chord.root]
        if roots:
            notes[-1] = (step, length, nearest(roots, pitch))
    return notes
