"""Music theory for the procedural composer: pitch names, modes, chords, progressions, keys.

Everything here is pure and cheap (small tuples, no numpy), so the composer can call it per
bar. Pitch classes are integers 0..11 (C = 0); MIDI notes are integers (60 = middle C).

Music choices, briefly:

* Modes follow valence: happy/exciting/relaxing use major-family modes (major, lydian,
  mixolydian), sad/tense/fearful minor-family ones (minor, dorian, phrygian, harmonic minor).
* Chord qualities per emotion follow Video2Music's emotion -> chord-quality constraints
  (exciting: maj, sus4, 7; fearful: dim, m7, dim7, m7b5; tense: dim, sus4, m7, 7;
  sad: m7, m, sus2; relaxing: maj, 6, maj7), written as roman-numeral progressions that
  start on the tonic so the key is clearly audible.
* Valence colours the chords within a progression (:func:`colour_chord`): bright (high valence)
  softens minor triads to minor 7ths (in a major key the 7th is the key's tonic or dominant, so the
  key reads more clearly major), dark (low valence) strips the bright extensions (maj7, 6, add9).
* Key changes prefer close keys (same tonic, relative, fifth/fourth) so that a pivot chord
  common to both keys exists for the transition bar.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NOTE_NAMES: tuple[str, ...] = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
SHARP_NAMES: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FLAT_NAMES: tuple[str, ...] = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
#: Semitones from a mode's tonic to the major key with the same key signature.
_RELATIVE_MAJOR = {"major": 0, "lydian": 7, "mixolydian": 5, "minor": 3, "dorian": 10, "phrygian": 8,
                   "harmonic minor": 3}

#: Scale intervals (semitones above the tonic) of the modes the composer uses.
MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
}
MAJOR_FAMILY: frozenset[str] = frozenset({"major", "lydian", "mixolydian"})

#: Chord qualities: intervals above the root and the symbol suffix.
QUALITIES: dict[str, tuple[tuple[int, ...], str]] = {
    "maj": ((0, 4, 7), ""),
    "min": ((0, 3, 7), "m"),
    "dim": ((0, 3, 6), "dim"),
    "sus2": ((0, 2, 7), "sus2"),
    "sus4": ((0, 5, 7), "sus4"),
    "7": ((0, 4, 7, 10), "7"),
    "maj7": ((0, 4, 7, 11), "maj7"),
    "m7": ((0, 3, 7, 10), "m7"),
    "6": ((0, 4, 7, 9), "6"),
    "dim7": ((0, 3, 6, 9), "dim7"),
    "hdim7": ((0, 3, 6, 10), "m7b5"),
    "add9": ((0, 4, 7, 14), "add9"),
}


def is_major_family(mode: str) -> bool:
    return mode in MAJOR_FAMILY


def note_name(pc: int, flats: bool | None = None) -> str:
    if flats is None:
        return NOTE_NAMES[pc % 12]
    return (FLAT_NAMES if flats else SHARP_NAMES)[pc % 12]


def uses_flats(tonic: int, mode: str) -> bool:
    """Whether the key signature of ``tonic``/``mode`` has flats (F, Bb, Eb, Ab, Db major)."""
    return (tonic + _RELATIVE_MAJOR[mode]) % 12 in (5, 10, 3, 8, 1)


def key_name(tonic: int, mode: str) -> str:
    """Tonic spelled as in the key signature (Db major, C# minor, F# major, Eb minor ...)."""
    rel = (tonic + _RELATIVE_MAJOR[mode]) % 12
    if rel == 6:  # F#/Gb major signature: prefer sharps
        return SHARP_NAMES[tonic % 12]
    return note_name(tonic, uses_flats(tonic, mode))


def scale_pcs(tonic: int, mode: str) -> tuple[int, ...]:
    return tuple((tonic + i) % 12 for i in MODES[mode])


@dataclass(frozen=True)
class Chord:
    """A chord as root pitch class + quality name (a key of :data:`QUALITIES`)."""

    root: int
    quality: str

    @property
    def intervals(self) -> tuple[int, ...]:
        return QUALITIES[self.quality][0]

    @property
    def pcs(self) -> tuple[int, ...]:
        return tuple((self.root + i) % 12 for i in self.intervals)

    @property
    def fifth(self) -> int:
        """Pitch class of the chord's fifth (or its 4th/6th-less substitute for sus/dim)."""
        return (self.root + self.intervals[2]) % 12

    @property
    def symbol(self) -> str:
        return note_name(self.root) + QUALITIES[self.quality][1]

    def spelled(self, flats: bool) -> str:
        """Chord symbol with the root spelled for a key with flats or sharps."""
        return note_name(self.root, flats) + QUALITIES[self.quality][1]


_ROMAN = re.compile(r"^(b|#)?(VII|VI|IV|V|III|II|I|vii|vi|iv|v|iii|ii|i)(.*)$")
_DEGREE = {"I": 0, "II": 2, "III": 4, "IV": 5, "V": 7, "VI": 9, "VII": 11}


def parse_roman(token: str, tonic: int) -> Chord:
    """Parse ``"bVII"``, ``"iim7"``, ``"V7"``, ``"viio7"``, ``"iih7"`` ... into a :class:`Chord`.

    Upper case numerals default to major triads, lower case to minor; suffixes: ``7``
    (dominant on upper case, m7 on lower case), ``maj7``, ``m7``, ``6``, ``o`` (dim),
    ``o7`` (dim7), ``h7`` (half-diminished), ``sus2``, ``sus4``, ``add9``.
    """
    m = _ROMAN.match(token)
    if m is None:
        raise ValueError(f"bad roman numeral {token!r}")
    acc, numeral, suffix = m.groups()
    upper = numeral.isupper()
    root = tonic + _DEGREE[numeral.upper()] + (-1 if acc == "b" else 1 if acc == "#" else 0)
    if suffix == "":
        quality = "maj" if upper else "min"
    elif suffix == "7":
        quality = "7" if upper else "m7"
    elif suffix == "o":
        quality = "dim"
    elif suffix == "o7":
        quality = "dim7"
    elif suffix == "h7":
        quality = "hdim7"
    elif suffix in QUALITIES:
        quality = suffix
    else:
        raise ValueError(f"bad chord suffix in {token!r}")
    return Chord(root % 12, quality)


def parse_progression(text: str, tonic: int) -> tuple[Chord, ...]:
    return tuple(parse_roman(tok, tonic) for tok in text.split())


#: Progression pools: emotion -> (modes it suits, 4-bar progression in roman numerals).
PROGRESSIONS: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "happy": (
        (("major",), "I V vi IV"),
        (("major",), "I IV I V"),
        (("major",), "I vi IV V"),
        (("major",), "I IV V I"),
        (("major",), "Iadd9 IV vi V"),
        (("lydian",), "I II V I"),
        (("lydian",), "I II I V"),
    ),
    "exciting": (
        (("major",), "I Vsus4 V IV"),
        (("major",), "I IV Vsus4 V7"),
        (("major",), "I V IV V7"),
        (("mixolydian",), "I bVII IV I"),
        (("mixolydian",), "I7 bVII IV Isus4"),
    ),
    "relaxing": (
        (("major",), "Imaj7 IVmaj7 Imaj7 IVmaj7"),
        (("major",), "I6 IVmaj7 Imaj7 V6"),
        (("major",), "Imaj7 IV6 Imaj7 IVmaj7"),
        (("lydian",), "Imaj7 II Imaj7 V6"),
        (("lydian",), "Imaj7 II6 V6 Imaj7"),
    ),
    "neutral": (
        (("major",), "Imaj7 vi7 ii7 V7"),
        (("major",), "Imaj7 IVmaj7 iii7 vi7"),
        (("major",), "I V vi IV"),
        (("dorian",), "im7 IV7 im7 IV7"),
        (("dorian",), "im7 IV im7 bVIImaj7"),
    ),
    "sad": (
        (("minor",), "i bVI i bVII"),
        (("minor",), "im7 ivm7 i bVI"),
        (("minor",), "i bVI bVII i"),
        (("minor",), "i iv bVIIsus2 i"),
        (("minor",), "im7 bVI ivm7 i"),
        (("minor",), "i bIII iv i"),
    ),
    "tense": (
        (("minor", "harmonic minor"), "im7 iio Vsus4 V7"),
        (("minor", "harmonic minor"), "i bVI Vsus4 V7"),
        (("minor",), "im7 ivm7 Vsus4 V7"),
        (("harmonic minor",), "i iio V7 i"),
        (("minor",), "i bVI i V7"),
    ),
    "fearful": (
        (("harmonic minor",), "i viio7 i iih7"),
        (("harmonic minor",), "im7 iih7 viio7 i"),
        (("harmonic minor",), "i bVI viio7 i"),
        (("phrygian",), "i bII i bII"),
        (("phrygian",), "im7 bII im7 viio"),
    ),
}

#: Modes an emotion may use, with weights (first is most common).
EMOTION_MODES: dict[str, tuple[tuple[str, float], ...]] = {
    "happy": (("major", 0.9), ("lydian", 0.1)),
    "exciting": (("major", 0.7), ("mixolydian", 0.3)),
    "relaxing": (("major", 0.8), ("lydian", 0.2)),
    "neutral": (("major", 0.6), ("dorian", 0.4)),
    "sad": (("minor", 1.0),),
    "tense": (("minor", 0.7), ("harmonic minor", 0.3)),
    "fearful": (("harmonic minor", 0.7), ("phrygian", 0.3)),
}


def choose_mode(emotion: str, valence: float, rng: np.random.Generator) -> str:
    """Pick a mode for the emotion; for ``neutral`` the valence sign decides the family."""
    options = EMOTION_MODES[emotion]
    if emotion == "neutral":
        return "major" if valence >= 0.0 else "dorian"
    modes = [m for m, _ in options]
    weights = np.array([w for _, w in options])
    return str(modes[int(rng.choice(len(modes), p=weights / weights.sum()))])


def choose_progression(emotion: str, mode: str, tonic: int, rng: np.random.Generator) -> tuple[Chord, ...]:
    pool = [text for modes, text in PROGRESSIONS[emotion] if mode in modes]
    if not pool:  # e.g. an emotion paired with a borrowed mode: fall back to the family pool
        fam = is_major_family(mode)
        first = "major" if fam else "minor"
        pool = [t for e in PROGRESSIONS for ms, t in PROGRESSIONS[e] if ms[0] == first]
    return parse_progression(pool[int(rng.integers(len(pool)))], tonic)


#: Valence beyond which chords are coloured bright / dark (:func:`colour_chord`).
COLOUR_VALENCE = 0.35
_BRIGHT = {"min": "m7"}
_DARK = {"maj7": "maj", "6": "maj", "add9": "maj"}


def colour_chord(chord: Chord, valence: float) -> Chord:
    """The chord in the valence's colour: bright (valence >= 0.35) turns minor triads into minor 7ths,
    dark (valence <= -0.35) strips major 7ths, 6ths and 9ths (to a plain major triad); in between the
    chord is left as written. (Added 9ths as a bright colour were tried: without their fifth in a
    3-note string voicing they blur the key, and listeners and key finders hear less major.)"""
    table = _BRIGHT if valence >= COLOUR_VALENCE else _DARK if valence <= -COLOUR_VALENCE else {}
    quality = table.get(chord.quality, chord.quality)
    return chord if quality == chord.quality else Chord(chord.root, quality)


def colour_progression(progression: tuple[Chord, ...], valence: float) -> tuple[Chord, ...]:
    return tuple(colour_chord(c, valence) for c in progression)


def relative_candidates(tonic: int, mode: str, new_mode: str) -> list[int]:
    """Close tonics for ``new_mode`` given the current key: same tonic, relative, fifth, fourth."""
    cands = [tonic, (tonic + 7) % 12, (tonic + 5) % 12]
    old_major, new_major = is_major_family(mode), is_major_family(new_mode)
    if old_major and not new_major:
        cands.append((tonic + 9) % 12)  # relative minor
    elif new_major and not old_major:
        cands.append((tonic + 3) % 12)  # relative major
    return cands


def choose_key_change(tonic: int, mode: str, new_mode: str, rng: np.random.Generator) -> int:
    """Pick the new tonic: most common tones with the old scale, a little randomness, a bonus
    for keeping the tonic (continuity)."""
    old = set(scale_pcs(tonic, mode))
    best, best_score = tonic, -1e9
    for cand in relative_candidates(tonic, mode, new_mode):
        score = len(old & set(scale_pcs(cand, new_mode))) + (0.8 if cand == tonic else 0.0)
        score += float(rng.uniform(0.0, 1.5))
        if score > best_score:
            best, best_score = cand, score
    return best


def diatonic_triad(tonic: int, mode: str, degree: int) -> Chord:
    sc = MODES[mode]
    root, third, fifth = sc[degree % 7], sc[(degree + 2) % 7], sc[(degree + 4) % 7]
    t, f = (third - root) % 12, (fifth - root) % 12
    quality = {(4, 7): "maj", (3, 7): "min", (3, 6): "dim"}.get((t, f), "sus4")
    return Chord((tonic + root) % 12, quality)


def dominant_of(tonic: int) -> Chord:
    return Chord((tonic + 7) % 12, "7")


def pivot_chord(old_tonic: int, old_mode: str, new_tonic: int, new_mode: str) -> Chord | None:
    """A major/minor triad diatonic to both keys, preferring pre-dominant functions (IV, ii, vi)
    of the new key, so ``pivot -> V7 -> I`` of the new key sounds like a cadence."""
    old = set(scale_pcs(old_tonic, old_mode))
    for degree in (3, 1, 5, 0, 2):
        ch = diatonic_triad(new_tonic, new_mode, degree)
        if ch.quality in ("maj", "min") and set(ch.pcs) <= old:
            return ch
    return None


def chord_scale(chord: Chord, tonic: int, mode: str) -> tuple[int, ...]:
    """Melody pitch classes over ``chord``: chord tones plus scale tones that do not sit a
    semitone away from a chord tone (the classic "avoid notes"), so passing tones never clash."""
    tones = set(chord.pcs)
    out = set(tones)
    for pc in scale_pcs(tonic, mode):
        if pc in tones:
            continue
        if (pc + 1) % 12 in tones or (pc - 1) % 12 in tones:
            continue
        out.add(pc)
    return tuple(sorted(out))


def pitches_in_range(pcs: Sequence[int], lo: int, hi: int) -> list[int]:
    s = {p % 12 for p in pcs}
    return [n for n in range(lo, hi + 1) if n % 12 in s]


def nearest(pitches: Sequence[int], target: float) -> int:
    return min(pitches, key=lambda p: (abs(p - target), p))


def voice_chord(chord: Chord, prev: Sequence[int], lo: int, hi: int, max_notes: int = 4) -> list[int]:
    """Close-position voicing in ``[lo, hi]`` that moves least from the previous voicing.

    Candidates are every inversion of the chord stacked upwards from each start in range;
    cost = total distance of each new note to the nearest previous note (smooth voice leading),
    plus a small pull towards the middle of the range so voicings do not drift."""
    pcs = list(chord.pcs)
    if len(pcs) > max_notes:  # drop the fifth first: root, third and colour tone carry the chord
        pcs = [pcs[0], pcs[1], *pcs[3:]][:max_notes]
    centre = (lo + hi) / 2.0
    best: list[int] = []
    best_cost = 1e9
    for inv in range(len(pcs)):
        order = pcs[inv:] + pcs[:inv]
        for start in range(lo, lo + 12):
            if start % 12 != order[0]:
                continue
            notes = [start]
            for pc in order[1:]:
                n = notes[-1] + 1
                while n % 12 != pc:
                    n += 1
                notes.append(n)
            while notes[-1] <= hi:
                cost = sum(min(abs(n - p) for p in prev) for n in notes) if prev else 0.0
                cost += 0.3 * abs(sum(notes) / len(notes) - centre)
                if cost < best_cost:
                    best, best_cost = list(notes), cost
                notes = [n + 12 for n in notes]
    if not best:  # range too narrow for the chord: stack from lo
        best = sorted(lo + ((pc - lo) % 12) for pc in pcs)
    return best
