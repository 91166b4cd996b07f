"""The speech detector of the soundtrack encoder (:meth:`~engines.audio_features.FeatureAudioEncoder.speech_activity`).

Per 10 ms frame (:mod:`engines.audio_features.frames`) it measures

* ``band``: share of the 60 Hz-8 kHz power in 200-4000 Hz, where F1-F3 live (wider
  than the telephone band 300-3400 Hz because nasals and male low vowels put most of
  their power around 250 Hz; kick drums and hi-hats still fall outside);
* ``voicing``: normalised autocorrelation peak over pitch lags 70-400 Hz, computed from
  the *magnitude* spectrum restricted to 250-4000 Hz (so pink noise's tilt and a kick
  drum's sub-bass sine do not look periodic; harmonics of a voice still do);
* ``modulation``: RMS (dB) of the 2-8 Hz band-passed level of the 200-4000 Hz band over
  ~300 ms -- the ~4 Hz syllabic rhythm of speech (Houtgast & Steeneken's modulation
  transfer; Scheirer & Slaney 1997 used the same cue for speech/music); ~0 for
  sustained sounds and stationary noise;
* ``flatness``: spectral flatness (noise-like vs tonal/formant structure);
* ``level``: frame level in dBFS; frames under :data:`SPEECH_FLOOR_DBFS` are never speech.

They are combined by the logistic rule of :class:`SpeechRule` (``band x voicing``,
power-weighted over 150 ms, AND-ed with the saturated modulation, minus a flatness
term), the probability is smoothed over 70 ms, thresholded at 0.5, blips under 60 ms
are removed, gaps under 200 ms between speech runs are bridged and runs are held 50 ms
longer (hangover).

Measured on all 335 kajongg words (normalised so the loudest frame is -20 dBFS, placed
in 3 s; the same words the constants were chosen on, so optimistic): on average 97 % of
a word's frames (frames within 20 dB of its loudest) are detected in silence (3 % of
the words under 80 %), 92 % with pink noise 15 dB or white noise 20 dB under the
loudest frame (12-13 % of the words under 80 %, mostly short German words); no frames
at all on white/pink/brown noise, sustained chords, chord progressions and drum loops.

Limitations: it detects *voiced, syllabically modulated, mid-band* sound, so a
singer over music is ambiguous (usually detected as speech, which is fine for ducking)
and so is a melodic instrument playing short notes (a synth melody of 250 ms notes is
detected); a sustained chord that starts from silence reads as speech for ~0.3-0.5 s
around its onset; whispered speech (unvoiced) is missed, long fricatives (> 200 ms) can
split a segment; heavily reverberant speech loses modulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .frames import FRAME_RATE, LEVEL_FLOOR_DB, FrameFeatures

SPEECH_FLOOR_DBFS = -70.0


@dataclass(frozen=True)
class SpeechRule:
    """The speech detector's logistic rule and its smoothing.

    ``logit = gain * (voiced_band * modulated - threshold) - flatness_weight * flatness`` where

    * ``voiced_band`` = band share (200-4000 Hz) x voicing, power-weighted average over
      ``smooth_s`` (so the loud, voiced parts of a syllable dominate its neighbourhood);
    * ``modulated`` = ``1 - exp(-max(modulation_db - modulation_floor_db, 0) / modulation_scale_db)``:
      the floor ignores the beating of a sustained chord's partials; saturating: any
      syllabic modulation beyond a few dB counts the same, so very strongly modulated sounds
      (drum hits in silence) gain nothing over speech;
    * ``flatness`` = spectral flatness averaged over ``smooth_s``.

    The product is an AND: a sustained chord is voiced and in-band but unmodulated, a drum
    loop is modulated but neither voiced nor in-band, noise is neither. The constants were
    chosen on kajongg words vs. noise, chords and drum loops (a class-weighted logistic fit
    of the product term, then rounded; a plain linear rule could not reject drum loops).
    ``p = sigmoid(logit)`` is averaged over ``prob_smooth_s``;
    ``p >= 0.5`` runs shorter than ``min_speech_s`` are dropped, gaps shorter than
    ``bridge_s`` between speech runs are bridged, and each run is held ``hangover_s`` longer.
    """

    gain: float = 30.0
    threshold: float = 0.045
    flatness_weight: float = 3.0
    modulation_floor_db: float = 1.0
    modulation_scale_db: float = 3.0
    smooth_s: float = 0.15
    prob_smooth_s: float = 0.07
    min_speech_s: float = 0.06
    bridge_s: float = 0.2
    hangover_s: float = 0.05


SPEECH_WEIGHTS = SpeechRule()


def _weighted_smooth(values: np.ndarray, weights: np.ndarray, width: int) -> np.ndarray:
    from scipy import ndimage  # lazily: keeps start-up fast
    num = ndimage.uniform_filter1d(values * weights, width, mode="nearest")
    den = ndimage.uniform_filter1d(weights, width, mode="nearest")
    return np.asarray(num / (den + 1e-20))


def modulation_db(speech_band_db: np.ndarray, span_s: float = 0.3) -> np.ndarray:
    """RMS (dB) of the 2-8 Hz band-passed 200-4000 Hz level over ``span_s``: syllabic modulation."""
    from scipy import ndimage, signal  # lazily: keeps start-up fast
    env = np.maximum(speech_band_db, LEVEL_FLOOR_DB)
    if env.size < 16:
        return np.zeros(env.size)
    sos = signal.butter(2, (2.0, 8.0), btype="bandpass", fs=FRAME_RATE, output="sos")
    mod = signal.sosfiltfilt(sos, env, padlen=min(env.size - 1, 36))
    width = max(1, round(span_s * FRAME_RATE))
    return np.sqrt(np.maximum(ndimage.uniform_filter1d(mod**2, width, mode="nearest"), 0.0))


def speech_logit(f: FrameFeatures) -> np.ndarray:
    """The logistic rule of the speech detector (see :data:`SPEECH_WEIGHTS`)."""
    from scipy import ndimage  # lazily: keeps start-up fast
    w = SPEECH_WEIGHTS
    width = max(1, round(w.smooth_s * FRAME_RATE))
    voiced_band = _weighted_smooth(f.band * f.voicing, f.power, width)
    excess = np.maximum(modulation_db(f.speech_band_db) - w.modulation_floor_db, 0.0)
    modulated = 1.0 - np.exp(-excess / w.modulation_scale_db)
    flat = ndimage.uniform_filter1d(f.flatness, width, mode="nearest")
    z = w.gain * (voiced_band * modulated - w.threshold) - w.flatness_weight * flat
    return np.where(f.level_db > SPEECH_FLOOR_DBFS, z, -20.0)


def _close_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill runs of False no longer than ``max_gap`` that lie between two True runs."""
    from scipy import ndimage  # lazily: keeps start-up fast
    if max_gap <= 0 or not mask.any():
        return mask
    closed = ndimage.binary_closing(mask, structure=np.ones(max_gap + 1, dtype=bool), border_value=0)
    return np.asarray(closed | mask)


def _drop_short(mask: np.ndarray, min_len: int) -> np.ndarray:
    """Remove True runs shorter than ``min_len``."""
    from scipy import ndimage  # lazily: keeps start-up fast
    if min_len <= 1 or not mask.any():
        return mask
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_len
    keep[0] = False
    return np.asarray(keep[labels])


def _hold(mask: np.ndarray, frames: int) -> np.ndarray:
    """Keep each True for ``frames`` more frames (hangover)."""
    if frames <= 0:
        return mask
    held = np.convolve(mask.astype(np.float64), np.ones(frames + 1))[: mask.size]
    return np.asarray(held > 0.5)


def speech_probability(f: FrameFeatures) -> np.ndarray:
    """Smoothed probability with hangover: ``>= 0.5`` exactly where the segmentation says speech."""
    from scipy import ndimage  # lazily: keeps start-up fast
    w = SPEECH_WEIGHTS
    p = 1.0 / (1.0 + np.exp(-speech_logit(f)))
    p = ndimage.uniform_filter1d(p, max(1, round(w.prob_smooth_s * FRAME_RATE)), mode="nearest")
    speech = _drop_short(p >= 0.5, round(w.min_speech_s * FRAME_RATE))
    speech = _close_gaps(speech, round(w.bridge_s * FRAME_RATE))
    speech = _hold(speech, round(w.hangover_s * FRAME_RATE))
    return np.where(speech, np.maximum(p, 0.5), np.minimum(p, 0.49))
