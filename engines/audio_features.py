"""Feature-based audio encoder: loudness, spectral shape, rhythm and speech of a soundtrack window.

numpy/scipy only (no librosa at runtime: numba start-up is too slow). Input: mono
``float32`` at 16 kHz in [-1, 1], typically a 2 s window. All frame computations share one
vectorised short-time analysis: 40 ms Hann frames every 10 ms (strided view + ``rfft`` of
1024 points, in blocks of 2048 frames so long soundtracks need bounded memory); the same
spectrum gives the frame autocorrelation used for voicing. Cost on one core: ~2-3 ms per
second of audio for :meth:`~FeatureAudioEncoder.speech_activity`, ~2 ms per second for
:meth:`~FeatureAudioEncoder.encode`. "Non-silent frames" below are frames above -80 dBFS.

Columns of :attr:`FeatureAudioEncoder.feature_names`:

``loudness_db``
    RMS level of the window in dBFS (floor -90 for silence). Loudness is the strongest
    audio cue of arousal in Hanjalic & Xu (2005), "Affective video content representation
    and modeling" (their arousal curve combines motion, cut rate and sound energy).
``loudness_lufs``
    Ungated ITU-R BS.1770 loudness of the window (K-weighted mean square, LUFS; floor -90),
    i.e. a 2 s "short-term" loudness. Closer to perceived loudness than RMS: bass counts
    less, presence region (2-5 kHz) more. Uses :func:`pipelines.offline.mix.k_weight`.
``dynamic_range_db``
    95th minus 10th percentile of the 20 ms frame levels (dB): punchy, intermittent sound
    (speech, percussion, action) has a large range, steady beds (drones, noise) a small one.
``centroid_hz``, ``bandwidth_hz``
    Magnitude-weighted mean frequency and spread around it, from the mean magnitude
    spectrum of the non-silent frames. Brightness (centroid) goes with positive valence
    and with arousal: Juslin & Laukka (2004), "Expression, perception, and induction of
    musical emotions", list bright timbre with happiness, dark/soft timbre with sadness
    and tenderness.
``rolloff_hz``
    Frequency under which 85 % of the spectral magnitude lies (same spectrum).
``flatness``
    Spectral flatness (geometric over arithmetic mean of the power spectrum, 60 Hz-8 kHz)
    averaged over non-silent frames: 0 for a pure tone, ~0.5-0.6 for white noise with a
    Hann window. Noise-like soundtracks (wind, crowd, distortion) read as harsher/less
    pleasant (Juslin & Laukka 2004: sharp, rough timbre with anger/fear).
``flux``
    Mean positive spectral flux, *normalised*: for each frame, the summed positive
    magnitude increase over the previous frame divided by the frame's summed magnitude,
    averaged over non-silent frames. Scale-independent; ~0 for steady tones, ~0.2-0.4 for
    stationary noise, larger for busy, changing sound (more arousing).
``onset_rate``
    Onsets per second, peak-picked from an onset-strength envelope (mean positive rise of
    24 log-spaced band levels in dB, 10 ms hop). Event density is an arousal cue (Hanjalic
    & Xu 2005; Juslin & Laukka 2004: fast tempo/many events -> high activity).
``tempo_bpm``, ``pulse_clarity``
    Autocorrelation of the onset envelope over lags 40-200 bpm, weighted by a log-normal
    prior around 110 bpm (one octave wide); ``pulse_clarity`` is the normalised
    autocorrelation at the chosen lag (0..1). ``tempo_bpm`` is 0 when the clarity is below
    :data:`MIN_PULSE_CLARITY` (no periodicity). Fast, clear pulse raises arousal, tempo also
    valence (Juslin & Laukka 2004).
``speech``
    Fraction of the window's 10 ms frames where :meth:`FeatureAudioEncoder.speech_activity`
    says speech. Used for ducking the BGM and to tell dialogue scenes from music/effects.
``silence``
    Fraction of 20 ms frames below -50 dBFS RMS.

Speech detector (:meth:`FeatureAudioEncoder.speech_activity`)
    Per 10 ms frame it measures

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

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engines.base import AudioEncoder, EngineError
from engines.loudness import k_weight

SAMPLE_RATE = 16_000
FRAME = 640  # 40 ms
HOP = 160  # 10 ms
NFFT = 1024  # >= FRAME + max pitch lag, so the autocorrelation from the power spectrum is not aliased
FRAME_RATE = SAMPLE_RATE / HOP
LEVEL_FLOOR_DB = -90.0
SILENCE_DBFS = -50.0
SPEECH_FLOOR_DBFS = -70.0
SPECTRUM_GATE_DBFS = -80.0
MIN_PULSE_CLARITY = 0.4
TEMPO_RANGE_BPM = (40.0, 200.0)
TEMPO_PRIOR_BPM = 110.0
TEMPO_PRIOR_OCTAVES = 1.0
PITCH_RANGE_HZ = (70.0, 400.0)
SPEECH_BAND_HZ = (200.0, 4000.0)
ANALYSIS_BAND_HZ = (60.0, 8000.0)
SHORT_FRAME = 320  # 20 ms, for dynamic range and silence
ROLLOFF = 0.85
ONSET_DELTA_DB = 2.0

FEATURE_NAMES: tuple[str, ...] = (
    "loudness_db",
    "loudness_lufs",
    "dynamic_range_db",
    "centroid_hz",
    "rolloff_hz",
    "flatness",
    "bandwidth_hz",
    "flux",
    "onset_rate",
    "tempo_bpm",
    "pulse_clarity",
    "speech",
    "silence",
)

_FREQS = np.fft.rfftfreq(NFFT, 1.0 / SAMPLE_RATE)
_WINDOW = np.hanning(FRAME + 2)[1:-1].astype(np.float64)
_WINDOW_POWER = float(np.sum(_WINDOW**2))
_WINDOW_ACF = np.correlate(_WINDOW, _WINDOW, "full")[FRAME - 1 :] / _WINDOW_POWER


def _bins(band: tuple[float, float]) -> np.ndarray:
    """Boolean mask of the rfft bins inside ``band`` (Hz, inclusive)."""
    lo, hi = band
    return np.asarray((_FREQS >= lo) & (_FREQS <= hi))


_ANALYSIS = _bins(ANALYSIS_BAND_HZ)
_SPEECH_BAND = _bins(SPEECH_BAND_HZ)
_PITCH_LAGS = np.arange(int(SAMPLE_RATE / PITCH_RANGE_HZ[1]), int(SAMPLE_RATE / PITCH_RANGE_HZ[0]) + 1)


_VOICING_BAND = _bins((250.0, 4000.0)).astype(np.float64)


def _band_matrix(n_bands: int = 24, f_lo: float = 60.0, f_hi: float = 7600.0) -> np.ndarray:
    """Triangular, log-spaced filterbank ``(n_bands, n_bins)`` for the onset envelope."""
    edges = np.geomspace(f_lo, f_hi, n_bands + 2)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    f = _FREQS[None, :]
    tri = np.minimum((f - lo) / (mid - lo), (hi - f) / (hi - mid))
    return np.clip(tri, 0.0, None)


_BANDS = _band_matrix()


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


# --------------------------------------------------------------------------- short-time analysis


@dataclass(frozen=True)
class FrameFeatures:
    """Per-10-ms-frame measurements of one signal (all arrays ``(n_frames,)``)."""

    times_s: np.ndarray
    level_db: np.ndarray  # frame RMS level, dBFS, floored at -90
    power: np.ndarray  # 60 Hz-8 kHz power (linear, arbitrary scale), for weighting
    band: np.ndarray  # share of that power in 200-4000 Hz
    voicing: np.ndarray  # periodicity 70-400 Hz of the 250-4000 Hz magnitude spectrum
    flatness: np.ndarray
    flux: np.ndarray  # positive magnitude flux / magnitude sum
    speech_band_db: np.ndarray  # 200-4000 Hz level, dB
    onset_bands_db: np.ndarray  # (n_frames, 24) band levels for the onset envelope
    magnitude_sum: np.ndarray  # (n_bins,) sum of magnitude spectra of frames above the level gate
    n_gated: int  # number of frames in that sum
    #: Running sums of those gated magnitude spectra taken before frame ``checkpoints[k]``
    #: (``(len(checkpoints), n_bins)``), so any window's magnitude sum is a difference.
    prefix_magnitude: np.ndarray = field(default_factory=lambda: np.zeros((0, _FREQS.size)))

    def window(self, i0: int, i1: int, checkpoints: Sequence[int]) -> FrameFeatures:
        """Frames ``[i0, i1)`` as their own FrameFeatures (both indices must be checkpoints)."""
        k0, k1 = list(checkpoints).index(i0), list(checkpoints).index(i1)
        mag = self.prefix_magnitude[k1] - self.prefix_magnitude[k0]
        gated = int(np.count_nonzero(self.level_db[i0:i1] > SPECTRUM_GATE_DBFS))
        return FrameFeatures(
            times_s=self.times_s[i0:i1], level_db=self.level_db[i0:i1], power=self.power[i0:i1],
            band=self.band[i0:i1], voicing=self.voicing[i0:i1], flatness=self.flatness[i0:i1],
            flux=self.flux[i0:i1], speech_band_db=self.speech_band_db[i0:i1],
            onset_bands_db=self.onset_bands_db[i0:i1], magnitude_sum=mag, n_gated=gated,
        )


def _frames(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Centred frame view ``(n_frames, FRAME)``, frame ``i`` centred on sample ``i * HOP``.

    The ends are padded by reflection, so a sound that fills the window does not get a
    fake onset (a level step) in the first and last frames.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    n_frames = max(1, -(-x.size // HOP))
    half = FRAME // 2
    total = (n_frames - 1) * HOP + FRAME
    width = (half, max(0, total - half - x.size))
    padded = (np.pad(x, width, mode="reflect") if x.size > half else np.pad(x, width))[:total]
    return sliding_window_view(padded, FRAME)[::HOP][:n_frames], n_frames


def _chunk_features(frames: np.ndarray, previous_mag: np.ndarray | None) -> dict[str, np.ndarray]:
    """All spectral per-frame measurements of a block of frames (one ``rfft`` per frame)."""
    spec = np.fft.rfft(frames * _WINDOW, n=NFFT, axis=1)
    power = spec.real**2 + spec.imag**2
    mag = np.sqrt(power)
    mean_sq = power.sum(axis=1) * 2.0 / (NFFT * _WINDOW_POWER)  # Parseval, one-sided (approx.)
    level = 10.0 * np.log10(np.maximum(mean_sq, 10.0 ** (LEVEL_FLOOR_DB / 10.0)))
    prev = np.vstack([mag[:1] if previous_mag is None else previous_mag[None, :], mag[:-1]])
    rise = np.maximum(mag - prev, 0.0).sum(axis=1) / (mag.sum(axis=1) + 1e-12)
    analysis = power[:, _ANALYSIS].sum(axis=1)
    speech_band = power[:, _SPEECH_BAND].sum(axis=1)
    return {
        "level_db": level,
        "power": analysis,
        "band": speech_band / (analysis + 1e-20),
        "voicing": _voicing(mag),
        "flatness": _flatness(power),
        "flux": rise,
        "speech_band_db": 10.0 * np.log10(speech_band / (NFFT * _WINDOW_POWER) + 1e-12),
        "onset_bands_db": 10.0 * np.log10(power @ _BANDS.T / (NFFT * _WINDOW_POWER) + 1e-12),
        "mag": mag,
    }


def frame_features(samples: np.ndarray, chunk_frames: int = 2048, checkpoints: Sequence[int] = ()) -> FrameFeatures:
    """Short-time analysis in blocks of ``chunk_frames`` frames (bounded memory for long audio).

    ``checkpoints`` (sorted frame indices) record running magnitude sums for
    :meth:`FrameFeatures.window`, so many overlapping windows cost one analysis.
    """
    frames, n_frames = _frames(samples)
    parts: dict[str, list[np.ndarray]] = {}
    mag_sum = np.zeros(_FREQS.size)
    n_gated = 0
    prev: np.ndarray | None = None
    cps = np.asarray(checkpoints, dtype=np.int64)
    prefix = np.zeros((cps.size, _FREQS.size))
    for i0 in range(0, n_frames, chunk_frames):
        f = _chunk_features(frames[i0 : i0 + chunk_frames], prev)
        mag = f.pop("mag")
        prev = mag[-1]
        gated = f["level_db"] > SPECTRUM_GATE_DBFS
        if cps.size:
            gm = np.where(gated[:, None], mag, 0.0)
            run = np.concatenate([mag_sum[None, :], mag_sum + np.cumsum(gm, axis=0)])
            inside = (cps >= i0) & (cps <= i0 + mag.shape[0])
            prefix[inside] = run[cps[inside] - i0]
        mag_sum += mag[gated].sum(axis=0)
        n_gated += int(gated.sum())
        for k, v in f.items():
            parts.setdefault(k, []).append(v)
    prefix[cps > n_frames] = mag_sum
    joined = {k: np.concatenate(v) for k, v in parts.items()}
    joined["flux"][0] = 0.0
    times = np.arange(n_frames) * HOP / SAMPLE_RATE
    return FrameFeatures(times_s=times, magnitude_sum=mag_sum, n_gated=n_gated, prefix_magnitude=prefix, **joined)


def _flatness(power: np.ndarray) -> np.ndarray:
    """Spectral flatness per frame over 60 Hz-8 kHz (geometric / arithmetic mean of power)."""
    p = power[:, _ANALYSIS] + 1e-12
    return np.asarray(np.exp(np.mean(np.log(p), axis=1)) / np.mean(p, axis=1))


def _voicing(mag: np.ndarray) -> np.ndarray:
    """Peak normalised autocorrelation over pitch lags (70-400 Hz), per frame.

    Computed from the *magnitude* (not power) spectrum restricted to 250-4000 Hz: the
    compression stops a low-frequency tilt (pink noise) or a kick drum's sub-bass sine from
    looking periodic, while the harmonics of a voice (F0 70-400 Hz) still make a comb. The
    autocorrelation is divided by the Hann window's own autocorrelation (Boersma 1993).
    """
    m = mag * _VOICING_BAND
    acf = np.fft.irfft(m, n=NFFT, axis=1)[:, : _PITCH_LAGS[-1] + 1]
    norm = acf[:, _PITCH_LAGS] / (acf[:, :1] + 1e-20) / _WINDOW_ACF[_PITCH_LAGS]
    return np.asarray(np.clip(norm.max(axis=1), 0.0, 1.0))


# --------------------------------------------------------------------------- speech


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


# --------------------------------------------------------------------------- rhythm


def onset_envelope(f: FrameFeatures, n_samples: int) -> np.ndarray:
    """Onset strength per frame: mean positive rise (dB) of the 24 band levels over the previous frame.

    Band levels are floored 80 dB under the window's loudest band level, so the envelope
    does not depend on the overall gain and digital silence contributes nothing. Frames
    that reach past the end of the signal (into the reflected padding) get 0.
    """
    bands = f.onset_bands_db
    if bands.shape[0] < 2:
        return np.zeros(bands.shape[0])
    bands = np.maximum(bands, bands.max() - 80.0)
    rise = np.concatenate(([0.0], np.maximum(np.diff(bands, axis=0), 0.0).mean(axis=1)))
    rise[np.arange(rise.size) * HOP + FRAME // 2 > n_samples] = 0.0
    return rise


def pick_onsets(env: np.ndarray, delta: float = ONSET_DELTA_DB, wait_s: float = 0.05) -> np.ndarray:
    """Frame indices of onsets: local maxima (+-30 ms) at least ``delta`` above the +-100 ms mean."""
    from scipy import ndimage  # lazily: keeps start-up fast
    if env.size < 3:
        return np.zeros(0, dtype=np.int64)
    local_max = ndimage.maximum_filter1d(env, 7, mode="nearest")
    local_mean = ndimage.uniform_filter1d(env, 21, mode="nearest")
    cand = np.flatnonzero((env >= local_max) & (env >= local_mean + delta) & (env > 0))
    wait = round(wait_s * FRAME_RATE)
    kept: list[int] = []
    for i in cand:
        if not kept or i - kept[-1] > wait:
            kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)


def _tempo_prior(bpm: np.ndarray) -> np.ndarray:
    return np.asarray(np.exp(-0.5 * (np.log2(bpm / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2))


def lag_correlation(env: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Autocorrelation of the mean-removed envelope at ``lags``, normalised by lag 0 (biased estimate).

    The biased estimate (sums over the overlap divided by the full-length energy) needs the
    pattern to repeat across the window: two events that happen to be ``lag`` apart in an
    otherwise quiet window score low, a steady beat scores ``(N - lag) / N`` or more.
    """
    a = env - env.mean()
    energy = float(np.dot(a, a))
    if energy <= 1e-12:
        return np.zeros(lags.size)
    return np.array([np.dot(a[: a.size - lag], a[lag:]) / energy for lag in lags])


def estimate_tempo(env: np.ndarray) -> tuple[float, float]:
    """``(tempo_bpm, pulse_clarity)`` from the onset envelope; tempo 0 without a clear pulse."""
    from scipy import ndimage  # lazily: keeps start-up fast
    lo = int(np.floor(60.0 * FRAME_RATE / TEMPO_RANGE_BPM[1]))
    hi = int(np.ceil(60.0 * FRAME_RATE / TEMPO_RANGE_BPM[0]))
    hi = min(hi, env.size // 2)  # at least half the window overlaps at every lag
    if hi <= lo + 2 or pick_onsets(env).size < 2:
        return 0.0, 0.0
    smooth = ndimage.uniform_filter1d(env, 3, mode="nearest")
    lags = np.arange(lo, hi + 1)
    corr = lag_correlation(smooth, lags)
    score = np.maximum(corr, 0.0) * _tempo_prior(60.0 * FRAME_RATE / lags)
    k = int(np.argmax(score))
    clarity = float(np.clip(corr[k], 0.0, 1.0))
    if clarity < MIN_PULSE_CLARITY:
        return 0.0, clarity
    shift = 0.0
    if 0 < k < lags.size - 1:
        y0, y1, y2 = score[k - 1], score[k], score[k + 1]
        den = y0 - 2.0 * y1 + y2
        shift = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5)) if den < 0 else 0.0
    return float(60.0 * FRAME_RATE / (lags[k] + shift)), clarity


# --------------------------------------------------------------------------- window features


def _level_db(samples: np.ndarray) -> float:
    ms = float(np.mean(np.square(samples, dtype=np.float64))) if samples.size else 0.0
    return max(LEVEL_FLOOR_DB, 10.0 * np.log10(ms)) if ms > 0 else LEVEL_FLOOR_DB


def _short_frame_levels(samples: np.ndarray) -> np.ndarray:
    """RMS level (dBFS, floored) of non-overlapping 20 ms frames."""
    n = SHORT_FRAME
    m = max(1, samples.size // n)
    x = np.zeros(m * n)
    x[: min(samples.size, m * n)] = samples[: m * n]
    ms = np.mean(np.square(x.reshape(m, n)), axis=1)
    return np.asarray(np.maximum(10.0 * np.log10(np.maximum(ms, 1e-30)), LEVEL_FLOOR_DB))


def _k_loudness(samples: np.ndarray) -> float:
    ms = float(np.mean(np.square(k_weight(samples, SAMPLE_RATE)))) if samples.size else 0.0
    return max(LEVEL_FLOOR_DB, -0.691 + 10.0 * np.log10(ms)) if ms > 0 else LEVEL_FLOOR_DB


def spectral_shape(f: FrameFeatures) -> tuple[float, float, float, float]:
    """``(centroid_hz, rolloff_hz, bandwidth_hz, flatness)`` of the non-silent frames (zeros if none)."""
    if f.n_gated == 0 or f.magnitude_sum.sum() <= 0:
        return 0.0, 0.0, 0.0, 0.0
    mag = f.magnitude_sum / f.magnitude_sum.sum()
    centroid = float(np.dot(_FREQS, mag))
    bandwidth = float(np.sqrt(np.dot((_FREQS - centroid) ** 2, mag)))
    rolloff = float(_FREQS[min(int(np.searchsorted(np.cumsum(mag), ROLLOFF)), _FREQS.size - 1)])
    gated = f.level_db > SPECTRUM_GATE_DBFS
    return centroid, rolloff, bandwidth, float(f.flatness[gated].mean())


class FeatureAudioEncoder(AudioEncoder):
    """Hand-crafted soundtrack features (see the module docstring), 16 kHz mono in."""

    feature_names: tuple[str, ...] = FEATURE_NAMES
    sample_rate: int = SAMPLE_RATE

    def encode(self, samples: np.ndarray) -> np.ndarray:
        x = _check(samples)
        f = frame_features(x)
        mean_square = float(np.mean(np.square(x)))
        k_mean_square = float(np.mean(np.square(k_weight(x, SAMPLE_RATE))))
        return self._row(f, x.size, mean_square, k_mean_square, _short_frame_levels(x), speech_probability(f))

    def encode_windows(
        self, samples: np.ndarray, bounds: Sequence[tuple[float, float]]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """All windows of one track plus its speech activity, from a single short-time analysis.

        Equivalent to :meth:`encode` on each window (frames are taken from the whole track
        instead of a reflected-padded excerpt, so the first/last frame of a window can differ
        slightly) at a fraction of the cost when windows overlap.
        """
        x = _check(samples)
        n_frames = max(1, -(-x.size // HOP))
        ranges = [(min(n_frames, max(0, round(s * FRAME_RATE))), min(n_frames, max(0, round(e * FRAME_RATE))))
                  for s, e in bounds]
        checkpoints = sorted({i for r in ranges for i in r})
        f = frame_features(x, checkpoints=checkpoints)
        speech = speech_probability(f)
        sq = np.concatenate(([0.0], np.cumsum(np.square(x))))
        kw = np.concatenate(([0.0], np.cumsum(np.square(k_weight(x, SAMPLE_RATE)))))
        short = _short_frame_levels(x)
        rows = np.zeros((len(bounds), len(self.feature_names)), dtype=np.float32)
        for w, ((s, e), (i0, i1)) in enumerate(zip(bounds, ranges, strict=True)):
            a, b = min(x.size, max(0, round(s * SAMPLE_RATE))), min(x.size, max(0, round(e * SAMPLE_RATE)))
            if i1 <= i0 or b <= a:
                continue
            fw = f.window(i0, i1, checkpoints)
            ms, kms = (sq[b] - sq[a]) / (b - a), (kw[b] - kw[a]) / (b - a)
            sh = short[a // SHORT_FRAME : max(a // SHORT_FRAME + 1, b // SHORT_FRAME)]
            rows[w] = self._row(fw, b - a, ms, kms, sh, speech[i0:i1])
        return rows, (f.times_s, speech.astype(np.float32))

    def _row(self, f: FrameFeatures, n_samples: int, mean_square: float, k_mean_square: float,
             short: np.ndarray, speech: np.ndarray) -> np.ndarray:
        centroid, rolloff, bandwidth, flatness = spectral_shape(f)
        gated = f.level_db > SPECTRUM_GATE_DBFS
        env = onset_envelope(f, n_samples)
        duration = max(n_samples / SAMPLE_RATE, 1.0 / FRAME_RATE)
        tempo, clarity = estimate_tempo(env)
        values = {
            "loudness_db": max(LEVEL_FLOOR_DB, 10.0 * np.log10(mean_square)) if mean_square > 0 else LEVEL_FLOOR_DB,
            "loudness_lufs": max(LEVEL_FLOOR_DB, -0.691 + 10.0 * np.log10(k_mean_square))
            if k_mean_square > 0 else LEVEL_FLOOR_DB,
            "dynamic_range_db": float(np.percentile(short, 95) - np.percentile(short, 10)),
            "centroid_hz": centroid,
            "rolloff_hz": rolloff,
            "flatness": flatness,
            "bandwidth_hz": bandwidth,
            "flux": float(f.flux[gated].mean()) if gated.any() else 0.0,
            "onset_rate": pick_onsets(env).size / duration,
            "tempo_bpm": tempo,
            "pulse_clarity": clarity,
            "speech": float(np.mean(speech >= 0.5)),
            "silence": float(np.mean(short < SILENCE_DBFS)),
        }
        return np.array([values[n] for n in self.feature_names], dtype=np.float32)

    def speech_activity(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(times_s, prob)`` every 10 ms (frame centres); ``prob >= 0.5`` means speech."""
        f = frame_features(_check(samples))
        return f.times_s, speech_probability(f).astype(np.float32)


def _check(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim != 1:
        raise EngineError(f"FeatureAudioEncoder expects mono samples of shape (n,), got {x.shape}")
    if x.size == 0:
        raise EngineError("FeatureAudioEncoder got an empty window")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise EngineError("audio samples contain NaN or infinity")
    return x
