"""The short-time analysis every soundtrack measure shares: per-10-ms-frame levels and spectra.

Input: mono samples at :data:`SAMPLE_RATE` (16 kHz). All frame computations share one vectorised
short-time analysis: 40 ms Hann frames every 10 ms (strided view + ``rfft`` of 1024 points, in
blocks of 2048 frames so long soundtracks need bounded memory); the same spectrum gives the frame
autocorrelation used for voicing. :func:`frame_features` returns a :class:`FrameFeatures` that
the speech detector (:mod:`engines.audio_features.speech`), the rhythm analysis
(:mod:`engines.audio_features.rhythm`) and the encoder's columns read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SAMPLE_RATE = 16_000
FRAME = 640  # 40 ms
HOP = 160  # 10 ms
NFFT = 1024  # >= FRAME + max pitch lag, so the autocorrelation from the power spectrum is not aliased
FRAME_RATE = SAMPLE_RATE / HOP
LEVEL_FLOOR_DB = -90.0
SPECTRUM_GATE_DBFS = -80.0
PITCH_RANGE_HZ = (70.0, 400.0)
SPEECH_BAND_HZ = (200.0, 4000.0)
ANALYSIS_BAND_HZ = (60.0, 8000.0)

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
    x = np.asarray(samples).ravel()  # float32 stays float32 here: each block becomes float64 when windowed
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
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
