"""Music analyzer: a whole music track -> valence, arousal, emotions, tempo, key, loudness, embedding.

The audio side of the affect engine for *music* (library tracks, catalog renders), numpy in,
numpy out. Input: mono ``float`` samples at :data:`SAMPLE_RATE` (22 050 Hz: enough bandwidth
for brightness and chroma, half the cost of 44.1 kHz). Output: a frozen
:class:`MusicDescriptor`.

Modules (each documents its measures and where their constants come from):

* :mod:`.analyzer` -- :class:`MusicAnalyzer` and :class:`MusicDescriptor`: which part of a track
  is analysed, its loudness, silent and short input;
* :mod:`.spectrum` -- the 8192-point STFT and what is read from it: key and mode
  (:func:`estimate_key`) and the timbre embedding (:func:`timbre_embedding`);
* :mod:`.rhythm` -- tempo consensus, onset rate, flux and spectral shape, from the soundtrack
  encoder's 16 kHz analysis (:mod:`engines.audio_features`);
* :mod:`.affect` -- valence and arousal from those measures, and the emotion labels.
"""

from .affect import (
    AROUSAL_TERMS,
    EMOTION_MIN_PROB,
    MAX_EMOTIONS,
    VALENCE_TERMS,
    Z_CLIP,
    music_affect,
    top_emotions,
)
from .analyzer import (
    EXCERPT_S,
    MIN_DURATION_S,
    N_EXCERPTS,
    WHOLE_TRACK_MAX_S,
    MusicAnalyzer,
    MusicDescriptor,
    excerpt_bounds,
)
from .rhythm import TEMPO_HOP_S, TEMPO_TOLERANCE, TEMPO_WINDOW_S, RhythmStats, rhythm_stats, tempo_consensus
from .spectrum import (
    EMBEDDING_GATE_DB,
    EMBEDDING_MEAN,
    EMBEDDING_STD,
    HARMONIC_WEIGHTS,
    HOP,
    KK_MAJOR,
    KK_MINOR,
    MEL_RANGE_HZ,
    N_MEL,
    NFFT,
    PITCH_CLASSES,
    PITCH_RANGE_HZ,
    SAMPLE_RATE,
    KeyEstimate,
    chroma,
    estimate_key,
    timbre_embedding,
)

__all__ = [
    "AROUSAL_TERMS",
    "EMBEDDING_GATE_DB",
    "EMBEDDING_MEAN",
    "EMBEDDING_STD",
    "EMOTION_MIN_PROB",
    "EXCERPT_S",
    "HARMONIC_WEIGHTS",
    "HOP",
    "KK_MAJOR",
    "KK_MINOR",
    "MAX_EMOTIONS",
    "MEL_RANGE_HZ",
    "MIN_DURATION_S",
    "NFFT",
    "N_EXCERPTS",
    "N_MEL",
    "PITCH_CLASSES",
    "PITCH_RANGE_HZ",
    "SAMPLE_RATE",
    "TEMPO_HOP_S",
    "TEMPO_TOLERANCE",
    "TEMPO_WINDOW_S",
    "VALENCE_TERMS",
    "WHOLE_TRACK_MAX_S",
    "Z_CLIP",
    "KeyEstimate",
    "MusicAnalyzer",
    "MusicDescriptor",
    "RhythmStats",
    "chroma",
    "estimate_key",
    "excerpt_bounds",
    "music_affect",
    "rhythm_stats",
    "tempo_consensus",
    "timbre_embedding",
    "top_emotions",
]
