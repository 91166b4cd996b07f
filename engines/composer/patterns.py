"""Groove data: drum and bass patterns per style and density level, on a 16-step (16th) grid.

Density levels 0/1/2 come from arousal (and the optional visual ``pace``): each level adds notes
(bass motion, comp rhythm, 16th arpeggios, timpani hits) and drum voices; below a style's
``drums_from`` energy the kit does not play at all (:mod:`.styles`). Cymbals (crash, ride)
are the most expensive sounds of the soundfont by far (long multi-layer samples that ignore
note-off), so the patterns keep time with hi-hats and crash only on section/phrase starts.
Patterns keep the
quarter-note pulse unambiguous (kick/snare on beats, hats on 8ths at most, 16ths only as
ghosts softer than the 8ths around them: ghost hats and snares, the shaker or cabasa figure
some styles add at level 2) so the beat is clear to listeners and to beat trackers, and never
get dense enough to turn into machine-gun repeated notes.

Double time (a bar faster than its style's ``tempo_range``: a high-arousal mood's beat plan speeding up for
fast cuts, :mod:`.styles`): the rows are played through :func:`double_time` -- every note on an odd 16th
dropped and single 16ths held for an 8th, so 16th hats, shakers, cabasa, arpeggios and ostinati become
8ths (driving, not frantic: 8ths at 160 bpm are as many notes a second as 16ths at 80); the kick plays
every beat, the backbeat stays on 2 and 4.
"""

from __future__ import annotations

# GM drum keys
KICK, RIM, SNARE, CLAP, HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 39, 42, 44, 46
CRASH, RIDE, TAMB, CABASA, SHAKER = 49, 51, 54, 69, 70
TOM_HI, TOM_MID, TOM_LOW, TOM_FLOOR = 50, 47, 45, 41

#: The bright, high-frequency drum sounds, played softer at low valence (darker) and louder at high.
METAL = frozenset({HAT, PEDAL_HAT, OPEN_HAT, TAMB, CABASA, SHAKER, RIDE})

#: (drum key, steps, velocity 0..1) rows
DrumRow = tuple[int, tuple[int, ...], float]

_Q = (0, 4, 8, 12)
_E = (0, 2, 4, 6, 8, 10, 12, 14)
_BACK = (4, 12)
_OFF16 = (1, 3, 5, 7, 9, 11, 13, 15)

DRUMS: dict[str, tuple[tuple[DrumRow, ...], ...]] = {
    "lofi": (
        ((KICK, (0, 10), 0.8), (RIM, _BACK, 0.55)),
        ((KICK, (0, 7, 10), 0.9), (SNARE, _BACK, 0.75), (HAT, _E, 0.45)),
        ((KICK, (0, 7, 10), 0.95), (SNARE, _BACK, 0.85), (CLAP, _BACK, 0.4), (HAT, _E, 0.55),
         (HAT, (3, 7, 11, 15), 0.25), (SNARE, (6, 15), 0.35), (OPEN_HAT, (14,), 0.35), (CABASA, _E, 0.7),
         (CABASA, _OFF16, 0.4)),
    ),
    "cheerful": (
        ((KICK, (0, 8), 0.9), (SNARE, _BACK, 0.75), (HAT, _E, 0.5)),
        ((KICK, (0, 8, 10), 0.95), (SNARE, _BACK, 0.8), (CLAP, _BACK, 0.5), (HAT, _E, 0.55)),
        ((KICK, (0, 6, 8, 10), 1.0), (SNARE, _BACK, 0.85), (CLAP, _BACK, 0.55), (HAT, _E, 0.6),
         (TAMB, (2, 6, 10, 14), 0.45)),
    ),
    "epic": (
        ((KICK, (0, 8), 1.0), (SNARE, _BACK, 0.8), (HAT, _Q, 0.45)),
        ((KICK, (0, 8, 10), 1.0), (SNARE, _BACK, 0.9), (HAT, _E, 0.5), (TOM_LOW, (14,), 0.6)),
        ((KICK, (0, 3, 8, 10), 1.0), (SNARE, _BACK, 0.95), (HAT, _E, 0.5), (TOM_LOW, (6, 14), 0.7),
         (TOM_FLOOR, (15,), 0.6)),
    ),
    "tense": (
        ((KICK, _Q, 0.85), (HAT, (2, 6, 10, 14), 0.35)),
        ((KICK, _Q, 0.9), (RIM, _BACK, 0.6), (HAT, _E, 0.4)),
        ((KICK, _Q, 0.95), (CLAP, _BACK, 0.7), (HAT, _E, 0.45), (HAT, (3, 7, 11, 15), 0.2), (CABASA, _E, 0.45),
         (CABASA, _OFF16, 0.3)),
    ),
    "cinematic": (
        ((KICK, (0, 8), 0.8), (SNARE, _BACK, 0.35)),
        ((KICK, (0, 8), 0.9), (SNARE, _BACK, 0.5), (PEDAL_HAT, _Q, 0.4)),
        ((KICK, (0, 8, 10), 1.0), (SNARE, _BACK, 0.7), (SNARE, _OFF16, 0.3), (HAT, _E, 0.45), (TOM_LOW, (6, 14), 0.7),
         (TOM_FLOOR, (15,), 0.6)),
    ),
    # sad: no groove, only an orchestral bass drum and low toms when the energy is high
    "sad": (
        ((KICK, (0,), 0.7),),
        ((KICK, (0, 8), 0.75), (TOM_LOW, (14,), 0.5)),
        ((KICK, (0, 8, 10), 0.85), (TOM_LOW, (6, 14), 0.6), (TOM_FLOOR, (15,), 0.55)),
    ),
    # calm: a soft brush pulse when the energy is high
    "calm": (
        ((KICK, (0, 8), 0.55), (HAT, _Q, 0.3)),
        ((KICK, (0, 8), 0.6), (SNARE, _BACK, 0.4), (HAT, _E, 0.35)),
        ((KICK, (0, 8, 10), 0.7), (SNARE, _BACK, 0.5), (HAT, _E, 0.4), (SHAKER, (2, 6, 10, 14), 0.35),
         (SHAKER, _OFF16, 0.3)),
    ),
}

#: Fill for the second half of a transition bar: (step, key, velocity 0..1)
FILL: tuple[tuple[int, int, float], ...] = (
    (8, SNARE, 0.55), (10, SNARE, 0.6), (12, TOM_HI, 0.7), (13, TOM_HI, 0.65),
    (14, TOM_MID, 0.8), (15, TOM_LOW, 0.85),
)

#: Bass rows: (step, length in steps, what) with what in R (root), 5 (fifth), O (octave up),
#: A (approach note to the next chord root), T (tonic pedal).
BassRow = tuple[int, int, str]

BASS: dict[str, tuple[tuple[BassRow, ...], ...]] = {
    "lofi": (
        ((0, 14, "R"),),
        ((0, 7, "R"), (10, 5, "5")),
        ((0, 6, "R"), (6, 2, "R"), (8, 6, "5"), (14, 2, "A")),
    ),
    "cheerful": (
        ((0, 7, "R"), (8, 7, "5")),
        ((0, 3, "R"), (4, 3, "R"), (8, 3, "5"), (12, 3, "R")),
        ((0, 2, "R"), (4, 2, "O"), (6, 2, "R"), (8, 2, "5"), (10, 2, "R"), (12, 2, "O"), (14, 2, "A")),
    ),
    "sad": (
        ((0, 16, "R"),),
        ((0, 8, "R"), (8, 8, "5")),
        ((0, 4, "R"), (4, 4, "R"), (8, 4, "5"), (12, 2, "5"), (14, 2, "A")),
    ),
    "epic": (
        ((0, 8, "R"), (8, 8, "R")),
        ((0, 3, "R"), (3, 3, "R"), (6, 2, "R"), (8, 4, "R"), (12, 4, "5")),
        ((0, 2, "R"), (2, 2, "R"), (4, 2, "O"), (6, 2, "R"), (8, 2, "R"), (10, 2, "R"), (12, 2, "5"),
         (14, 2, "5")),
    ),
    "calm": (
        ((0, 16, "R"),),
        ((0, 8, "R"), (8, 8, "5")),
        ((0, 6, "R"), (6, 2, "R"), (8, 6, "5"), (14, 2, "A")),
    ),
    "tense": (
        ((0, 3, "R"), (4, 3, "R"), (8, 3, "R"), (12, 3, "R")),
        ((0, 2, "R"), (2, 2, "R"), (4, 2, "R"), (6, 2, "R"), (8, 2, "R"), (10, 2, "R"), (12, 2, "R"),
         (14, 2, "R")),
        ((0, 2, "R"), (2, 2, "R"), (4, 2, "O"), (6, 2, "R"), (8, 2, "R"), (10, 2, "R"), (12, 2, "O"),
         (14, 2, "5")),
    ),
    "cinematic": (
        ((0, 16, "R"),),
        ((0, 8, "R"), (8, 8, "5")),
        ((0, 3, "R"), (3, 3, "R"), (6, 2, "R"), (8, 3, "5"), (11, 3, "5"), (14, 2, "A")),
    ),
}

#: Comp rhythms per figure and level: (step, length in steps)
CompRow = tuple[int, int]
COMP: dict[str, tuple[tuple[CompRow, ...], ...]] = {
    "block": (
        ((0, 14),),
        ((0, 6), (6, 2), (10, 6)),
        ((0, 2), (3, 1), (6, 2), (8, 2), (11, 1), (14, 2)),  # syncopated stabs
    ),
    "strum": (
        ((0, 4), (4, 4), (8, 4), (12, 4)),
        ((0, 3), (4, 2), (6, 2), (8, 3), (12, 2), (14, 2)),
        ((0, 2), (2, 2), (4, 2), (6, 2), (8, 2), (10, 2), (12, 2), (14, 2)),
    ),
    # arp and ostinato: one note per row
    "arp": (
        ((0, 4), (4, 4), (8, 4), (12, 4)),
        ((0, 2), (2, 2), (4, 2), (6, 2), (8, 2), (10, 2), (12, 2), (14, 2)),
        tuple((s, 1) for s in range(16)),
    ),
    "ostinato": (
        ((0, 4), (4, 4), (8, 4), (12, 4)),
        ((0, 2), (2, 2), (4, 2), (6, 2), (8, 2), (10, 2), (12, 2), (14, 2)),
        tuple((s, 1) for s in range(16)),
    ),
}


def double_time(steps: tuple[int, ...]) -> tuple[int, ...]:
    """``steps`` without the odd 16ths (see the module doc)."""
    return tuple(s for s in steps if s % 2 == 0)


def double_time_drums(rows: tuple[DrumRow, ...]) -> tuple[DrumRow, ...]:
    """Drum rows in double time: odd 16ths dropped, rows left empty removed, and the kick on every beat
    (a driving four-on-the-floor under the backbeat, which stays on 2 and 4)."""
    out = [(key, double_time(steps), v) for key, steps, v in rows if double_time(steps)]
    kicks = [(k, (*sorted(set(steps) | set(_Q)),), v) for k, steps, v in out if k == KICK]
    return tuple(kicks[0] if k == KICK else (k, steps, v) for k, steps, v in out) if kicks else tuple(out)


def double_time_rows(rows: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """Comp rows ``(step, length)`` in double time: odd 16ths dropped, the rest at least an 8th long."""
    return tuple((s, max(n, 2)) for s, n in rows if s % 2 == 0)


#: Timpani-style root hits (the "perc" role) per level: steps
PERC_STEPS: tuple[tuple[int, ...], ...] = ((0,), (0, 8), (0, 8, 12, 14))
