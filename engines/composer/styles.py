"""Style presets: tempo range, instrumentation (General MIDI programs), grooves and mix.

A style is a frozen :class:`StylePreset`; its parts are :class:`PartSpec` rows, one per role:

* ``bass``  -- roots/fifths in a per-style rhythm (``bass_pattern`` in :mod:`.patterns`)
* ``pad``   -- sustained chords, common tones tied across chord changes
* ``comp``  -- rhythmic chords: ``block`` (e-piano stabs), ``strum`` (guitar), ``arp``
  (broken chords), ``ostinato`` (repeated root/fifth figure, strings)
* ``lead``  -- the melody/motif layer (:mod:`.melody`)
* ``perc``  -- pitched hits on the chord root (timpani)

Drums live on MIDI channel 9 with a GM drum kit (``drum_kit``: bank 128 preset), or are
absent (``drum_kit is None``) for the sad and calm styles.

Automatic style from emotion (``style=None`` / ``"auto"``), :data:`AUTO_STYLE`::

    exciting -> epic        happy -> cheerful     relaxing -> calm     neutral -> lofi
    sad -> sad              tense -> tense        fearful -> cinematic
"""

from __future__ import annotations

from dataclasses import dataclass

import pretty_midi

from engines.base import EMOTIONS, STYLES

DRUM_KIT_NAMES: dict[int, str] = {
    0: "Standard Drum Kit",
    8: "Room Drum Kit",
    16: "Power Drum Kit",
    24: "Electronic Drum Kit",
    25: "TR-808 Drum Kit",
    32: "Jazz Drum Kit",
    40: "Brush Drum Kit",
    48: "Orchestra Drum Kit",
}


@dataclass(frozen=True)
class PartSpec:
    """One melodic part: role, GM program (0-based), register, mix settings."""

    role: str  # "bass" | "pad" | "comp" | "lead" | "perc" (a role may repeat)
    program: int
    lo: int  # lowest MIDI note
    hi: int  # highest MIDI note
    volume: int = 100  # CC7
    pan: int = 64  # CC10
    velocity: float = 1.0  # velocity scale for this part
    figure: str = ""  # comp figure: "block" | "strum" | "arp" | "ostinato"
    #: Most notes in a chord voicing; string ensembles use 3 (root, third, seventh) because
    #: every ensemble note costs several soundfont voices.
    max_notes: int = 4

    @property
    def name(self) -> str:
        return str(pretty_midi.program_to_instrument_name(self.program))


@dataclass(frozen=True)
class StylePreset:
    name: str
    tempo_range: tuple[float, float]
    parts: tuple[PartSpec, ...]
    drum_kit: int | None
    drum_volume: int = 100
    #: Swing of off-beat 8ths/16ths (0 straight, 0.33 ~ triplet feel).
    swing: float = 0.0
    #: Overall velocity range (quiet .. loud), picked by arousal.
    velocity_range: tuple[int, int] = (60, 105)
    #: Probability that the lead plays a given 4-bar phrase (the rest of the time it rests).
    lead_presence: float = 0.8
    #: Level trim (dB) applied to every part's CC7 so styles come out at similar loudness.
    trim_db: float = 0.0

    def cc7(self, volume: int) -> int:
        """CC7 value for a part volume (linear amplitude scale, 127 = unity) after the style trim.

        tinysoundfont's CC7/CC11 response is about cubic in amplitude (CC 64 is -18 dB), so
        the linear target is mapped through a cube root."""
        gain = volume / 127.0 * 10.0 ** (self.trim_db / 20.0)
        return max(1, min(127, round(127.0 * gain ** (1.0 / 3.0))))

    def part(self, role: str) -> PartSpec | None:
        for p in self.parts:
            if p.role == role:
                return p
        return None

    @property
    def instruments(self) -> tuple[str, ...]:
        names = [p.name for p in self.parts]
        if self.drum_kit is not None:
            names.append(DRUM_KIT_NAMES.get(self.drum_kit, "Drum Kit"))
        return tuple(dict.fromkeys(names))


STYLE_PRESETS: dict[str, StylePreset] = {
    "lofi": StylePreset(
        "lofi", (70.0, 90.0),
        (
            PartSpec("bass", 33, 33, 52, volume=100, pan=64, velocity=0.95),  # Electric Bass (finger)
            PartSpec("comp", 4, 50, 72, volume=92, pan=50, velocity=0.8, figure="block"),  # Electric Piano 1
            PartSpec("pad", 89, 52, 72, volume=55, pan=80, velocity=0.6),  # Pad 2 (warm)
            PartSpec("lead", 11, 64, 84, volume=82, pan=76, velocity=0.85),  # Vibraphone
        ),
        drum_kit=8, drum_volume=96, swing=0.18, velocity_range=(55, 92), lead_presence=0.7, trim_db=-3.4,
    ),
    "cheerful": StylePreset(
        "cheerful", (108.0, 132.0),
        (
            PartSpec("bass", 34, 36, 55, volume=100, pan=64, velocity=0.95),  # Electric Bass (pick)
            PartSpec("comp", 25, 52, 71, volume=80, pan=44, velocity=0.75, figure="strum"),  # Steel guitar
            PartSpec("lead", 45, 67, 86, volume=96, pan=84, velocity=0.95),  # Pizzicato Strings
            PartSpec("comp", 12, 72, 88, volume=62, pan=96, velocity=0.55, figure="arp"),  # Marimba
        ),
        drum_kit=0, drum_volume=100, velocity_range=(70, 110), lead_presence=0.85, trim_db=-1.6,
    ),
    "sad": StylePreset(
        "sad", (60.0, 76.0),
        (
            PartSpec("bass", 42, 36, 55, volume=82, pan=70, velocity=0.8),  # Cello
            PartSpec("pad", 49, 55, 74, volume=90, pan=58, velocity=0.75, max_notes=3),  # String Ensemble 2
            PartSpec("comp", 0, 48, 67, volume=88, pan=48, velocity=0.7, figure="arp"),  # Piano, broken
            PartSpec("lead", 0, 67, 86, volume=100, pan=64, velocity=0.9),  # Piano melody
        ),
        drum_kit=None, velocity_range=(50, 88), lead_presence=0.8, trim_db=1.6,
    ),
    "epic": StylePreset(
        "epic", (84.0, 110.0),
        (
            PartSpec("bass", 43, 28, 48, volume=100, pan=64, velocity=1.0),  # Contrabass
            PartSpec("comp", 41, 48, 64, volume=100, pan=44, velocity=0.9, figure="ostinato"),  # Viola
            PartSpec("pad", 52, 55, 74, volume=80, pan=84, velocity=0.8, max_notes=3),  # Choir Aahs
            PartSpec("lead", 61, 65, 82, volume=92, pan=64, velocity=0.95),  # Brass Section
            PartSpec("perc", 47, 36, 55, volume=100, pan=64, velocity=1.0),  # Timpani
        ),
        drum_kit=16, drum_volume=104, velocity_range=(75, 120), lead_presence=0.7, trim_db=-6.4,
    ),
    "calm": StylePreset(
        "calm", (60.0, 80.0),
        (
            PartSpec("bass", 35, 36, 52, volume=72, pan=64, velocity=0.7),  # Fretless Bass
            PartSpec("pad", 89, 52, 72, volume=84, pan=64, velocity=0.7),  # Pad 2 (warm)
            PartSpec("comp", 46, 55, 79, volume=88, pan=40, velocity=0.75, figure="arp"),  # Harp
            PartSpec("lead", 0, 67, 86, volume=80, pan=88, velocity=0.75),  # Piano
        ),
        drum_kit=None, velocity_range=(45, 82), lead_presence=0.55, trim_db=-4.2,
    ),
    "tense": StylePreset(
        "tense", (96.0, 124.0),
        (
            PartSpec("bass", 38, 28, 45, volume=96, pan=64, velocity=0.95),  # Synth Bass 1 (pulses)
            PartSpec("comp", 42, 40, 57, volume=96, pan=50, velocity=0.9, figure="ostinato"),  # Cello
            PartSpec("pad", 44, 55, 74, volume=64, pan=80, velocity=0.7),  # Tremolo Strings
            PartSpec("lead", 8, 72, 90, volume=66, pan=90, velocity=0.7),  # Celesta (sparse)
        ),
        drum_kit=8, drum_volume=100, velocity_range=(65, 108), lead_presence=0.45, trim_db=-6.3,
    ),
    "cinematic": StylePreset(
        "cinematic", (70.0, 96.0),
        (
            PartSpec("bass", 42, 33, 52, volume=90, pan=70, velocity=0.9),  # Cello
            PartSpec("pad", 49, 53, 74, volume=84, pan=56, velocity=0.8, max_notes=3),  # String Ensemble 2
            PartSpec("comp", 0, 50, 74, volume=86, pan=40, velocity=0.75, figure="arp"),  # Piano
            PartSpec("lead", 60, 62, 79, volume=92, pan=80, velocity=0.9),  # French Horn
        ),
        drum_kit=48, drum_volume=100, velocity_range=(60, 110), lead_presence=0.75, trim_db=-3.7,
    ),
}

AUTO_STYLE: dict[str, str] = {
    "exciting": "epic",
    "happy": "cheerful",
    "relaxing": "calm",
    "neutral": "lofi",
    "sad": "sad",
    "tense": "tense",
    "fearful": "cinematic",
}

assert set(STYLE_PRESETS) == set(STYLES) and set(AUTO_STYLE) == set(EMOTIONS)


def check_style(style: str | None) -> str | None:
    """Validate a style name (``None``/``"auto"`` mean automatic); raise ValueError otherwise."""
    if style is None or style == "auto":
        return None
    if style not in STYLE_PRESETS:
        raise ValueError(f"unknown style {style!r}; valid styles: auto, {', '.join(STYLES)}")
    return style


def resolve_style(fixed: str | None, requested: str | None, emotion: str) -> StylePreset:
    """Stream option wins over the control's style; otherwise the emotion's automatic style."""
    name = check_style(fixed) or check_style(requested) or AUTO_STYLE.get(emotion, "lofi")
    return STYLE_PRESETS[name]


def check_emotion(emotion: str) -> str:
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; valid emotions: {', '.join(EMOTIONS)}")
    return emotion
