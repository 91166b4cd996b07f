"""Feature-based audio encoder: loudness, spectral shape, rhythm and speech of a soundtrack window.

numpy/scipy only (no librosa at runtime: numba start-up is too slow). Input: mono
``float32`` at 16 kHz in [-1, 1], typically a 2 s window. Cost on one core: ~2-3 ms per
second of audio for :meth:`~FeatureAudioEncoder.speech_activity`, ~2 ms per second for
:meth:`~FeatureAudioEncoder.encode`.

Modules, each building on the one before:

* :mod:`.frames` -- the one vectorised short-time analysis every measure shares
  (:func:`frame_features`: 40 ms Hann frames every 10 ms -> :class:`FrameFeatures`);
* :mod:`.speech` -- the speech detector (:func:`speech_probability`, :class:`SpeechRule`);
* :mod:`.rhythm` -- onsets and tempo (:func:`onset_envelope`, :func:`pick_onsets`,
  :func:`estimate_tempo`), also used by :mod:`engines.music_features`;
* :mod:`.encoder` -- :class:`FeatureAudioEncoder` and what each of its columns means.
"""

from .encoder import FEATURE_NAMES, ROLLOFF, SHORT_FRAME, SILENCE_DBFS, FeatureAudioEncoder, spectral_shape
from .frames import (
    ANALYSIS_BAND_HZ,
    FRAME,
    FRAME_RATE,
    HOP,
    LEVEL_FLOOR_DB,
    NFFT,
    PITCH_RANGE_HZ,
    SAMPLE_RATE,
    SPECTRUM_GATE_DBFS,
    SPEECH_BAND_HZ,
    FrameFeatures,
    frame_features,
)
from .rhythm import (
    MIN_PULSE_CLARITY,
    ONSET_DELTA_DB,
    TEMPO_PRIOR_BPM,
    TEMPO_PRIOR_OCTAVES,
    TEMPO_RANGE_BPM,
    estimate_tempo,
    lag_correlation,
    onset_envelope,
    pick_onsets,
)
from .speech import (
    SPEECH_FLOOR_DBFS,
    SPEECH_WEIGHTS,
    SpeechRule,
    modulation_db,
    speech_logit,
    speech_probability,
)

__all__ = [
    "ANALYSIS_BAND_HZ",
    "FEATURE_NAMES",
    "FRAME",
    "FRAME_RATE",
    "HOP",
    "LEVEL_FLOOR_DB",
    "MIN_PULSE_CLARITY",
    "NFFT",
    "ONSET_DELTA_DB",
    "PITCH_RANGE_HZ",
    "ROLLOFF",
    "SAMPLE_RATE",
    "SHORT_FRAME",
    "SILENCE_DBFS",
    "SPECTRUM_GATE_DBFS",
    "SPEECH_BAND_HZ",
    "SPEECH_FLOOR_DBFS",
    "SPEECH_WEIGHTS",
    "TEMPO_PRIOR_BPM",
    "TEMPO_PRIOR_OCTAVES",
    "TEMPO_RANGE_BPM",
    "FeatureAudioEncoder",
    "FrameFeatures",
    "SpeechRule",
    "estimate_tempo",
    "frame_features",
    "lag_correlation",
    "modulation_db",
    "onset_envelope",
    "pick_onsets",
    "spectral_shape",
    "speech_logit",
    "speech_probability",
]
