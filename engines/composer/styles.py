"""Style presets: what a style fixes, and how the mood moves the music inside it.

A style is a frozen :class:`StylePreset`; its parts are :class:`PartSpec` rows, one per layer:

* ``bass``  -- roots/fifths in a per-style rhythm (``bass_pattern`` in :mod:`.patterns`)
* ``pad``   -- sustained chords, common tones tied across chord changes
* ``comp``  -- rhythmic chords: ``block`` (e-piano stabs), ``strum`` (guitar), ``arp``
  (broken chords), ``ostinato`` (repeated root/fifth figure, strings)
* ``lead``  -- the melody/motif layer (:mod:`.melody`)
* ``perc``  -- pitched hits on the chord root (timpani)

Drums live on MIDI channel 9 with a GM drum kit (``drum_kit``: bank 128 preset). Up to 7 parts.

What a style fixes and what the mood moves
    The style fixes the *character*: the instruments, the groove family (its drum and bass
    patterns, swing), the harmony colour of its chords and its tempo band. Inside it the mood
    still moves the music, so a calm - intense - calm video sounds calm - intense - calm in
    every style (``make bench-styles`` measures it from the audio, ``BENCHMARKS.md``):

    * **energy** (0..1, from arousal and the visual pace; :func:`.plan.energy_of`) moves the tempo
      within ``tempo_range`` (per section), the note density (pattern level 0/1/2 in
      :mod:`.patterns`: more bass, comp and drum notes, 16th arpeggios), the layers (a part plays
      while the energy is in ``[enter, leave)``; the kit plays from ``drums_from``), the dynamics
      (note velocity over ``velocity_range`` and CC11 expression over ``expression_range``, a swell
      over the bar when it changes), the register (``register[0]`` semitones up at full energy,
      down at none), the harmonic rhythm (a chord every two bars below ``harmony_rates[0]``,
      one a bar, two a bar from ``harmony_rates[1]``) and, from energy .5 up, the articulation (bass,
      comping and perc notes shortened to ``articulation`` of their length at full energy: detached,
      driving) and the mix (the kit's CC7 up to ``kit_boost_db`` louder: drums forward);
    * **valence** (-1..1) picks the mode family with the emotion (major / lydian / mixolydian vs
      minor / dorian / harmonic minor / phrygian, :mod:`.theory`), colours the chords (bright: minor
      triads soften to minor 7ths; dark: major 7ths, 6ths and 9ths stripped; :func:`.theory.colour_chord`),
      moves the register (``register[1]`` semitones up at valence +1, down at -1), tilts the balance
      (upper parts louder and bass softer when bright) and the hats and shakers (softer at low
      valence) -- low valence is lower and darker.

    Per style (energy thresholds in brackets; "lvl 2" = density level 2, energy >= 0.7; "art." = note
    length at full energy, "kit" = the kit's boost at full energy):

    =========  =====  ========================  ===================================================
    style      bpm    always (calm too)         energy brings in
    =========  =====  ========================  ===================================================
    lofi       60-94  e-piano, finger bass,     vibraphone lead (.3), clean-guitar arpeggio
                      warm pad (leaves at .8),  (.55); kick/snare/hats 8ths (lvl 1), clap, 16th
                      kick + rim                ghost hats, snare ghosts, cabasa 16ths, e-piano
                                                stabs (lvl 2); art. .3, kit +6 dB
    cheerful   104-   pick bass, steel-guitar   kit (.2), pizzicato lead (.25), marimba
               136    strum                     arpeggio (.45); clap (lvl 1), tambourine (lvl 2)
    sad        54-88  cello bass, strings,      piano lead (.3), viola ostinato (.5), timpani
                      piano arpeggio            (.55), orchestral bass drum + low toms (.65)
    epic       84-    contrabass, choir         viola ostinato (.2), power kit (.3), brass lead
               122                              (.3), timpani (.4); toms (lvl 1, 2)
    calm       54-90  fretless bass, warm pad,  piano lead (.3), pizzicato pulse (.5), brush-kit
                      harp arpeggio             pulse (.6); shaker 8ths + 16ths (lvl 2); art. .5,
                                                kit +4 dB
    tense      90-    synth-bass pulse,         cello ostinato (.2), room kit (.3), celesta
               132    tremolo strings           (.35), timpani (.6); clap, cabasa 16ths (lvl 2);
                                                art. .5, kit +3 dB
    cinematic  62-    cello bass, strings,      horn lead (.3), viola ostinato (.45), orchestra
               110    piano arpeggio            kit (.5), timpani (.55); toms, 16th snare
                                                ostinato (lvl 2); art. .6, kit +3 dB
    =========  =====  ========================  ===================================================

    In every style: tempo ``lo + (hi - lo) * energy ** 1.5`` (:func:`.plan.tempo_for`); velocity over
    ``velocity_range`` and CC11 114..127 by energy; harmonic rhythm one chord per 2 bars (energy < .2),
    one a bar, two a bar (>= .7); arpeggios in 16ths and busier bass, comp and drum rows at level 2;
    register +-3 semitones by energy and +-5 by valence, at most +-4 in all (:data:`MAX_SHIFT`; bass
    and timpani stay); articulation and kit level linear in energy from .5 (as written) to 1 (the
    style's ``articulation`` and ``kit_boost_db``; the lead and pads keep their lengths); low valence:
    minor-family mode, plain (dark) chords, lower register, softer upper parts (-12 % velocity at valence
    -1, bass +12 %) and softer hats, shakers and cabasa (-40 %); high valence the other way round.

    Double time (the band rule): a mood with arousal >= :data:`FAST_AROUSAL` (.65) in a driving style may be
    played up to the style's ``fast_max`` -- epic 168, tense 168, cheerful 160 bpm (action, exciting and
    tense music commonly runs 140-170); lofi, sad, calm and cinematic (whose intense part, slower and
    orchestral, read as calmer in double time) have none, and calmer moods keep the ``bpm`` column. The own
    tempo (the formula above) never goes there: only an offline beat plan does, when the cuts pay for it
    (steady cuts 0.75 s apart on every other beat at 160 bpm, :mod:`pipelines.offline.beats`). Above
    ``tempo_range`` a bar plays double time idiomatically: its drum, bass, comping and perc rows lose their
    odd 16ths (16th hats, shakers, cabasa, arpeggios and ostinati become 8ths,
    :func:`.patterns.double_time`), the kick plays every beat and the backbeat stays on 2 and 4.

Automatic style from emotion (``style=None`` / ``"auto"``), :data:`AUTO_STYLE`::

    exciting -> epic        happy -> cheerful     relaxing -> calm     neutral -> lofi
    sad -> sad              tense -> tense        fearful -> cinematic
"""

from __future__ import annotations

from dataclasses import dataclass

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


#: The largest register shift (semitones) the mood makes, up or down.
MAX_SHIFT = 4

#: Moods this aroused (or more) may play double time, up to the style's ``fast_max`` (action, exciting,
#: tense music commonly runs 140-170 bpm); calmer moods keep ``tempo_range``. (.65: clearly intense; the
#: analysis reads a fast-cut exciting scene at about .7.)
FAST_AROUSAL = 0.65


@dataclass(frozen=True)
class PartSpec:
    """One melodic part: role, GM program (0-based), register, mix settings, when it plays."""

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
    #: The part plays while the energy is in ``[enter, leave)`` (a layer that comes with arousal).
    enter: float = 0.0
    leave: float = 2.0
    #: Whether the register follows the mood (``StylePreset.register``); bass and perc stay put.
    moves: bool = True

    @property
    def name(self) -> str:
        import pretty_midi  # here, not at the top: the MusicGen engine's prompts read this module on bare GPU hosts

        return str(pretty_midi.program_to_instrument_name(self.program))

    def plays(self, energy: float, playing: bool = False) -> bool:
        """Whether the part plays at ``energy``; ``playing``: it played the bar before (a 0.04
        hysteresis keeps a layer from flickering when the energy hovers at its threshold)."""
        margin = -0.04 if playing else 0.0
        return self.enter + margin <= energy < self.leave - margin


@dataclass(frozen=True)
class StylePreset:
    name: str
    tempo_range: tuple[float, float]
    parts: tuple[PartSpec, ...]
    drum_kit: int | None
    drum_volume: int = 100
    #: Swing of off-beat 8ths/16ths (0 straight, 0.33 ~ triplet feel).
    swing: float = 0.0
    #: Overall velocity range (quiet .. loud), picked by energy.
    velocity_range: tuple[int, int] = (60, 105)
    #: Probability that the lead plays a given 4-bar phrase (the rest of the time it rests).
    lead_presence: float = 0.8
    #: Level trim (dB) applied to every part's CC7 so styles come out at similar loudness.
    trim_db: float = 0.0
    #: The kit plays from this energy on (0: always).
    drums_from: float = 0.0
    #: CC11 expression (quiet .. loud), picked by energy; it also carries held pad notes.
    expression_range: tuple[int, int] = (114, 127)
    #: Energy below which a chord lasts two bars, and from which a bar has two chords.
    harmony_rates: tuple[float, float] = (0.2, 0.7)
    #: Register shift in semitones at full energy (up; down at none) and at valence +-1.
    register: tuple[int, int] = (3, 5)
    #: Articulation at full energy: the bass, comping and perc notes last this share of their written
    #: length (1: as written). From energy .5 up they get shorter -- detached and driving when intense,
    #: as written when calm; pads and the lead keep their lengths.
    articulation: float = 1.0
    #: The kit's level (CC7) rises by this many dB from energy .5 to full energy: drums forward when intense.
    kit_boost_db: float = 0.0
    #: Double time: a high-arousal mood's band (arousal >= :data:`FAST_AROUSAL`) reaches up to this tempo
    #: (``None``: no double time, the band is ``tempo_range``). The own tempo stays in ``tempo_range``; only a
    #: beat plan goes above it, when the cuts call for it (:mod:`pipelines.offline.beats`), and above
    #: ``tempo_range`` the busy 16th-note rows play as 8ths (:mod:`.patterns`, :func:`.patterns.double_time`).
    fast_max: float | None = None

    def tempo_band(self, arousal: float) -> tuple[float, float]:
        """The tempi (bpm) a section in a mood of ``arousal`` may play at: ``tempo_range``, reaching up to
        :attr:`fast_max` (double time) when the arousal is at least :data:`FAST_AROUSAL`."""
        lo, hi = self.tempo_range
        if self.fast_max is not None and arousal >= FAST_AROUSAL:
            hi = max(hi, self.fast_max)
        return lo, hi

    @property
    def widest_range(self) -> tuple[float, float]:
        """The slowest and fastest tempo of any mood in this style (double time included)."""
        return self.tempo_range[0], max(self.tempo_range[1], self.fast_max or 0.0)

    def cc7(self, volume: float) -> int:
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

    def velocity(self, energy: float) -> float:
        lo, hi = self.velocity_range
        return lo + (hi - lo) * energy

    def expression(self, energy: float) -> int:
        lo, hi = self.expression_range
        return int(round(lo + (hi - lo) * min(1.0, max(0.0, energy))))

    @staticmethod
    def drive(energy: float) -> float:
        """0 up to energy .5, rising to 1 at full energy: how far the intense-only moves (articulation,
        kit level) have gone."""
        return min(1.0, max(0.0, (energy - 0.5) / 0.5))

    def note_length(self, energy: float) -> float:
        """Share of their written length the bass, comping and perc notes last (see :attr:`articulation`)."""
        return 1.0 - (1.0 - self.articulation) * self.drive(energy)

    def kit_cc7(self, energy: float) -> int:
        """The kit's CC7 at ``energy`` (:attr:`drum_volume`, raised by up to :attr:`kit_boost_db`)."""
        return self.cc7(self.drum_volume * 10.0 ** (self.kit_boost_db * self.drive(energy) / 20.0))

    def drums_on(self, energy: float) -> bool:
        return self.drum_kit is not None and energy >= self.drums_from

    def register_shift(self, energy: float, valence: float) -> int:
        """Semitones the moving parts' registers shift by (see :attr:`register`), at most
        :data:`MAX_SHIFT` either way (further down, close string voicings get muddy and blur the key)."""
        up = self.register[0] * 2.0 * (min(1.0, max(0.0, energy)) - 0.5)
        return int(max(-MAX_SHIFT, min(MAX_SHIFT, round(up + self.register[1] * min(1.0, max(-1.0, valence))))))

    def chords_per_bar(self, energy: float) -> float:
        """Harmonic rhythm: 0.5 (a chord every two bars), 1 or 2 chords a bar."""
        slow, fast = self.harmony_rates
        return 0.5 if energy < slow else 2.0 if energy >= fast else 1.0

    @property
    def instruments(self) -> tuple[str, ...]:
        names = [p.name for p in self.parts]
        if self.drum_kit is not None:
            names.append(DRUM_KIT_NAMES.get(self.drum_kit, "Drum Kit"))
        return tuple(dict.fromkeys(names))


STYLE_PRESETS: dict[str, StylePreset] = {
    "lofi": StylePreset(
        "lofi", (60.0, 94.0),
        (
            PartSpec("bass", 33, 33, 52, volume=100, pan=64, velocity=0.95, moves=False),  # Electric Bass (finger)
            PartSpec("comp", 4, 50, 72, volume=92, pan=50, velocity=0.8, figure="block"),  # Electric Piano 1
            PartSpec("pad", 89, 52, 72, volume=55, pan=80, velocity=0.6, leave=0.8),  # Pad 2 (warm)
            PartSpec("lead", 11, 64, 84, volume=82, pan=76, velocity=0.85, enter=0.3),  # Vibraphone
            PartSpec("comp", 27, 60, 79, volume=92, pan=96, velocity=0.8, figure="arp", enter=0.55),  # Clean guitar
        ),
        drum_kit=8, drum_volume=96, swing=0.18, velocity_range=(58, 94), lead_presence=0.7, trim_db=-3.4,
        articulation=0.3, kit_boost_db=6.0,
    ),
    "cheerful": StylePreset(
        "cheerful", (104.0, 136.0),
        (
            PartSpec("bass", 34, 36, 55, volume=100, pan=64, velocity=0.95, moves=False),  # Electric Bass (pick)
            PartSpec("comp", 25, 52, 71, volume=80, pan=44, velocity=0.75, figure="strum"),  # Steel guitar
            PartSpec("lead", 45, 67, 86, volume=96, pan=84, velocity=0.95, enter=0.25),  # Pizzicato Strings
            PartSpec("comp", 12, 72, 88, volume=62, pan=96, velocity=0.55, figure="arp", enter=0.45),  # Marimba
        ),
        drum_kit=0, drum_volume=100, velocity_range=(70, 112), lead_presence=0.85, trim_db=-1.6, drums_from=0.2,
        fast_max=160.0,
    ),
    "sad": StylePreset(
        "sad", (54.0, 88.0),
        (
            PartSpec("bass", 42, 36, 55, volume=82, pan=70, velocity=0.8, moves=False),  # Cello
            PartSpec("pad", 49, 55, 74, volume=90, pan=58, velocity=0.75, max_notes=3),  # String Ensemble 2
            PartSpec("comp", 0, 48, 67, volume=88, pan=48, velocity=0.7, figure="arp"),  # Piano, broken
            PartSpec("lead", 0, 67, 86, volume=100, pan=64, velocity=0.9, enter=0.3),  # Piano melody
            PartSpec("comp", 41, 48, 64, volume=86, pan=36, velocity=0.85, figure="ostinato", enter=0.5),  # Viola
            PartSpec("perc", 47, 36, 55, volume=100, pan=64, velocity=1.0, enter=0.55, moves=False),  # Timpani
        ),
        drum_kit=48, drum_volume=96, velocity_range=(54, 96), lead_presence=0.8, trim_db=1.6, drums_from=0.65,
    ),
    "epic": StylePreset(
        "epic", (84.0, 122.0),
        (
            PartSpec("bass", 43, 28, 48, volume=100, pan=64, velocity=1.0, moves=False),  # Contrabass
            PartSpec("comp", 41, 48, 64, volume=100, pan=44, velocity=0.9, figure="ostinato", enter=0.2),  # Viola
            PartSpec("pad", 52, 55, 74, volume=80, pan=84, velocity=0.8, max_notes=3),  # Choir Aahs
            PartSpec("lead", 61, 65, 82, volume=92, pan=64, velocity=0.95, enter=0.3),  # Brass Section
            PartSpec("perc", 47, 36, 55, volume=100, pan=64, velocity=1.0, enter=0.4, moves=False),  # Timpani
        ),
        drum_kit=16, drum_volume=104, velocity_range=(76, 122), lead_presence=0.7, trim_db=-6.4, drums_from=0.3,
        fast_max=168.0,
    ),
    "calm": StylePreset(
        "calm", (54.0, 90.0),
        (
            PartSpec("bass", 35, 36, 52, volume=72, pan=64, velocity=0.7, moves=False),  # Fretless Bass
            PartSpec("pad", 89, 52, 72, volume=84, pan=64, velocity=0.7),  # Pad 2 (warm)
            PartSpec("comp", 46, 55, 79, volume=88, pan=40, velocity=0.75, figure="arp"),  # Harp
            PartSpec("lead", 0, 67, 86, volume=80, pan=88, velocity=0.75, enter=0.3),  # Piano
            PartSpec("comp", 45, 55, 72, volume=78, pan=24, velocity=0.8, figure="ostinato", enter=0.5),  # Pizzicato
        ),
        drum_kit=40, drum_volume=84, velocity_range=(48, 90), lead_presence=0.55, trim_db=-4.2, drums_from=0.6,
        articulation=0.5, kit_boost_db=4.0,
    ),
    "tense": StylePreset(
        "tense", (90.0, 132.0),
        (
            PartSpec("bass", 38, 28, 45, volume=96, pan=64, velocity=0.95, moves=False),  # Synth Bass 1 (pulses)
            PartSpec("comp", 42, 40, 57, volume=96, pan=50, velocity=0.9, figure="ostinato", enter=0.2),  # Cello
            PartSpec("pad", 44, 55, 74, volume=64, pan=80, velocity=0.7),  # Tremolo Strings
            PartSpec("lead", 8, 72, 90, volume=66, pan=90, velocity=0.7, enter=0.35),  # Celesta (sparse)
            PartSpec("perc", 47, 36, 55, volume=96, pan=64, velocity=0.95, enter=0.6, moves=False),  # Timpani
        ),
        drum_kit=8, drum_volume=100, velocity_range=(66, 112), lead_presence=0.45, trim_db=-6.3, drums_from=0.3,
        articulation=0.5, kit_boost_db=3.0, fast_max=168.0,
    ),
    "cinematic": StylePreset(
        "cinematic", (62.0, 110.0),
        (
            PartSpec("bass", 42, 33, 52, volume=90, pan=70, velocity=0.9, moves=False),  # Cello
            PartSpec("pad", 49, 53, 74, volume=84, pan=56, velocity=0.8, max_notes=3),  # String Ensemble 2
            PartSpec("comp", 0, 50, 74, volume=86, pan=40, velocity=0.75, figure="arp"),  # Piano
            PartSpec("lead", 60, 62, 79, volume=92, pan=80, velocity=0.9, enter=0.3),  # French Horn
            PartSpec("comp", 41, 48, 64, volume=90, pan=30, velocity=0.85, figure="ostinato", enter=0.45),  # Viola
            PartSpec("perc", 47, 36, 55, volume=100, pan=64, velocity=1.0, enter=0.55, moves=False),  # Timpani
        ),
        drum_kit=48, drum_volume=100, velocity_range=(72, 112), lead_presence=0.75, trim_db=-3.7, drums_from=0.5,
        articulation=0.6, kit_boost_db=3.0,
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
