"""The text description MusicGen is given for a mood: genre, mood words, brightness, instruments, tempo.

:func:`describe` builds it from a :class:`~engines.base.MoodControl` and the stream's style, with the
style resolved as the composer resolves it (:data:`engines.composer.styles.AUTO_STYLE`).
"""

from __future__ import annotations

from engines.base import MoodControl
from engines.composer.styles import check_emotion
from engines.composer.styles import resolve_style as resolve_style_preset

#: style -> (genre words, instrument words).
STYLE_WORDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lofi": ("lofi hip hop", ("mellow electric piano", "soft drums", "warm bass")),
    "cheerful": ("upbeat pop", ("acoustic guitar", "piano", "claps", "bright drums")),
    "sad": ("sad piano ballad", ("solo piano", "soft strings")),
    "epic": ("epic orchestral", ("big drums", "brass", "strings", "choir")),
    "calm": ("ambient", ("soft pads", "gentle piano", "no drums")),
    "tense": ("dark suspense", ("low strings", "pulsing synth", "ticking percussion")),
    "cinematic": ("cinematic film score", ("strings", "piano", "timpani")),
}

#: emotion -> mood words.
EMOTION_WORDS: dict[str, str] = {
    "exciting": "exciting, energetic",
    "happy": "happy, joyful",
    "relaxing": "relaxing, peaceful",
    "neutral": "neutral, easy-going",
    "sad": "sad, melancholic",
    "tense": "tense, suspenseful",
    "fearful": "fearful, eerie",
}


def tempo_for(arousal: float) -> int:
    """Tempo asked for: arousal -1..1 maps linearly to 60..150 bpm, rounded to 5 bpm."""
    a = min(1.0, max(-1.0, float(arousal)))
    return int(5 * round((60.0 + (a + 1.0) / 2.0 * 90.0) / 5.0))


def tempo_words(bpm: float) -> str:
    """<= 80 slow, < 105 moderate tempo, < 130 upbeat, else fast."""
    if bpm <= 80:
        return "slow"
    if bpm < 105:
        return "moderate tempo"
    if bpm < 130:
        return "upbeat"
    return "fast"


def resolve_style(stream_style: str | None, control: MoodControl) -> str:
    """The stream's fixed style, else the control's, else the emotion's automatic style (the
    composer's own table, :data:`engines.composer.styles.AUTO_STYLE`)."""
    check_emotion(control.emotion)
    return resolve_style_preset(stream_style, control.style, control.emotion).name


def describe(control: MoodControl, style: str | None) -> str:
    """Text prompt for MusicGen from the mood.

    ``"<genre>, <mood words>[, bright|dark], <instruments>, <tempo words>, <bpm> bpm"``:
    genre and instruments from :data:`STYLE_WORDS` (``style`` resolved as in
    :func:`resolve_style`), mood words from :data:`EMOTION_WORDS`, "bright" when
    valence > 0.5 and "dark" when valence < -0.5, tempo from :func:`tempo_for` (arousal) and
    :func:`tempo_words`. E.g. ``"lofi hip hop, sad, melancholic, mellow electric piano, soft
    drums, warm bass, slow, 70 bpm"``.
    """
    name = resolve_style(style, control)
    genre, instruments = STYLE_WORDS[name]
    parts = [genre, EMOTION_WORDS[control.emotion]]
    if control.valence > 0.5:
        parts.append("bright")
    elif control.valence < -0.5:
        parts.append("dark")
    parts.extend(instruments)
    bpm = tempo_for(control.arousal)
    parts.extend([tempo_words(bpm), f"{bpm} bpm"])
    return ", ".join(parts)
