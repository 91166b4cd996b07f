"""K-weighting of ITU-R BS.1770-4, for any sample rate (shared by the audio encoder and the mixer).

The filters are designed from their analog prototypes (the method of libebur128 and
pyloudnorm's "DeMan" filter, after Brecht De Man, AES 2018) and reproduce the coefficients
published in BS.1770 at 48 kHz.

Also the BS.1770-4 block powers and the two-gate integrated loudness (absolute gate -70 LUFS,
relative gate 10 LU under the mean of the blocks above it), used by the mixer
(:mod:`pipelines.offline.mix`, which documents the measures) and by the music analyzer
(:mod:`engines.music_features`, which pools the blocks of several excerpts with
:func:`gated_loudness`).
"""

from __future__ import annotations

import math

import numpy as np

_SHELF_F0 = 1681.9744509555319
_SHELF_GAIN_DB = 3.99984385397
_SHELF_Q = 0.7071752369554193
_HP_F0 = 38.13547087602444
_HP_Q = 0.5003270373238773


# --------------------------------------------------------------------------- K-weighting


def k_weighting_sos(sample_rate: float) -> np.ndarray:
    """K-weighting as second-order sections ``(2, 6)``: the high shelf, then the RLB high-pass.

    Bilinear transform of the analog prototypes with frequency pre-warping (``tan(pi f0 / fs)``);
    at 48 kHz this yields BS.1770's published coefficients to ~1e-9.
    """
    k = math.tan(math.pi * _SHELF_F0 / sample_rate)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = [
        (vh + vb * k / _SHELF_Q + k * k) / a0,
        2.0 * (k * k - vh) / a0,
        (vh - vb * k / _SHELF_Q + k * k) / a0,
        1.0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / _SHELF_Q + k * k) / a0,
    ]
    k = math.tan(math.pi * _HP_F0 / sample_rate)
    a0 = 1.0 + k / _HP_Q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HP_Q + k * k) / a0]
    return np.array([shelf, highpass], dtype=np.float64)


def k_weight(audio: np.ndarray, sample_rate: float) -> np.ndarray:
    """K-weighted copy (float64, same shape) of mono ``(n,)`` or ``(n, ch)`` audio.

    The filter state starts at steady state for the first sample, so a short window that
    starts mid-signal does not measure a start-up transient.
    """
    from scipy import signal  # lazily: keeps start-up fast

    x = np.asarray(audio, dtype=np.float64)
    sos = k_weighting_sos(sample_rate)
    if x.shape[0] == 0:
        return x.copy()
    zi = signal.sosfilt_zi(sos)  # (2, 2)
    zi = zi[:, :, None] * x[0] if x.ndim == 2 else zi * x[0]
    y, _ = signal.sosfilt(sos, x, axis=0, zi=zi)
    return np.asarray(y)


# --------------------------------------------------------------------------- gated loudness

#: BS.1770 gates.
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
BLOCK_S = 0.4
BLOCK_STEP_S = 0.1


def channel_weights(n_channels: int) -> np.ndarray:
    """BS.1770 channel weights: 1.0 for L, R, C; 0 for LFE and 1.41 for Ls/Rs in 5.1 order."""
    if n_channels == 6:
        return np.array([1.0, 1.0, 1.0, 0.0, 1.41, 1.41])
    return np.ones(n_channels)


def as_2d(audio: np.ndarray) -> np.ndarray:
    """``(n,)`` or ``(n, channels)`` audio as float64 ``(n, channels)``."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 1:
        return x[:, None]
    if x.ndim != 2:
        raise ValueError(f"audio must be (n,) or (n, channels), got shape {x.shape}")
    return x


def to_lufs(power: np.ndarray) -> np.ndarray:
    """Channel-weighted K-weighted mean square -> LUFS (``-inf`` for 0)."""
    with np.errstate(divide="ignore"):
        return -0.691 + 10.0 * np.log10(power)


def running_power(audio: np.ndarray, edges: np.ndarray, sample_rate: float, *, k_weighted: bool = True,
                  chunk: int = 1 << 18) -> np.ndarray:
    """``S[i] = sum_{t < edges[i]} w . y[t]**2`` for sorted sample indices ``edges`` (0..n), where ``y`` is
    the (K-weighted, when ``k_weighted``) signal and ``w`` the channel weights; ``S`` differences are the
    energy between edges.

    The signal is filtered ``chunk`` samples at a time (the filter state carried over) and only the
    sums at ``edges`` are kept, so memory stays a few MB however long the audio (15 min at 48 kHz
    stereo would otherwise take ~2 GB of float64 copies).
    """
    from scipy import signal  # lazily: keeps start-up fast

    x = np.asarray(audio)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"audio must be (n,) or (n, channels), got shape {x.shape}")
    edges = np.asarray(edges, dtype=np.int64)
    n = x.shape[0]
    sums = np.zeros(edges.size)
    if n == 0 or edges.size == 0:
        return sums
    weights = channel_weights(x.shape[1])
    sos = k_weighting_sos(sample_rate) if k_weighted else None
    zi = signal.sosfilt_zi(sos)[:, :, None] * np.asarray(x[0], np.float64) if sos is not None else None
    total = 0.0
    j = int(np.searchsorted(edges, 0, side="right"))  # edges at 0: sum 0
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        y = np.asarray(x[c0:c1], np.float64)
        if sos is not None:
            y, zi = signal.sosfilt(sos, y, axis=0, zi=zi)
        running = np.cumsum((y * y) @ weights)
        running += total
        k = int(np.searchsorted(edges, c1, side="right"))
        sums[j:k] = running[edges[j:k] - c0 - 1]
        j, total = k, float(running[-1])
    return sums


def block_powers(audio: np.ndarray, sample_rate: float, block_s: float = BLOCK_S,
                 step_s: float = BLOCK_STEP_S) -> np.ndarray:
    """Channel-weighted mean square of K-weighted audio in blocks of ``block_s`` every ``step_s``
    (in a few MB of memory: :func:`running_power`).

    Audio shorter than one block yields a single block over the whole signal.
    """
    n = np.asarray(audio).shape[0]
    if n == 0:
        return np.zeros(0)
    block = max(1, round(block_s * sample_rate))
    step = max(1, round(step_s * sample_rate))
    if n <= block:
        return np.array([float(running_power(audio, np.array([n]), sample_rate)[0] / n)])
    starts = np.arange(0, n - block + 1, step)
    edges = np.unique(np.concatenate([starts, starts + block]))
    sums = running_power(audio, edges, sample_rate)
    return np.asarray((sums[np.searchsorted(edges, starts + block)] - sums[np.searchsorted(edges, starts)]) / block)


def gated_loudness(powers: np.ndarray) -> float:
    """BS.1770-4 two-gate loudness (LUFS) of 400 ms block powers; ``-inf`` if all are under -70 LUFS."""
    loud = to_lufs(powers)
    kept = powers[loud > ABSOLUTE_GATE_LUFS]
    if kept.size == 0:
        return -math.inf
    relative_gate = float(to_lufs(np.array([kept.mean()]))[0]) + RELATIVE_GATE_LU
    kept = powers[(loud > ABSOLUTE_GATE_LUFS) & (loud > relative_gate)]
    return float(to_lufs(np.array([kept.mean()]))[0])


def integrated_loudness(audio: np.ndarray, sample_rate: float) -> float:
    """BS.1770-4 gated integrated loudness in LUFS; ``-inf`` when every block is below -70 LUFS."""
    return gated_loudness(block_powers(audio, sample_rate, BLOCK_S, BLOCK_STEP_S))


# --------------------------------------------------------------------------- streaming meters


class LoudnessMeter:
    """BS.1770-4 integrated loudness of audio given a chunk at a time (the same gates and blocks as
    :func:`integrated_loudness`, to float rounding), in a few KB: the K-weighting filter state and the
    running energy at each 100 ms block edge are all it keeps."""

    def __init__(self, sample_rate: float, channels: int = 2) -> None:
        self.sample_rate = sample_rate
        self.block = max(1, round(BLOCK_S * sample_rate))
        self.step = max(1, round(BLOCK_STEP_S * sample_rate))
        self._sos = k_weighting_sos(sample_rate)
        self._weights = channel_weights(channels)
        self._zi: np.ndarray | None = None
        self._n = 0
        self._total = 0.0
        self._at: dict[int, float] = {0: 0.0}  # running energy at block edges

    def add(self, audio: np.ndarray) -> None:
        from scipy import signal

        x = as_2d(audio)
        m = x.shape[0]
        if m == 0:
            return
        if self._zi is None:
            self._zi = signal.sosfilt_zi(self._sos)[:, :, None] * x[0]
        y, self._zi = signal.sosfilt(self._sos, x, axis=0, zi=self._zi)
        running = np.cumsum((y * y) @ self._weights) + self._total
        c0, c1 = self._n, self._n + m
        for offset in (0, self.block):  # edges k * step (block starts) and k * step + block (block ends)
            k0 = max(0, -(-(c0 + 1 - offset) // self.step))
            for e in range(k0 * self.step + offset, c1 + 1, self.step):
                self._at[e] = float(running[e - c0 - 1])
        self._n, self._total = c1, float(running[-1])

    def block_powers(self) -> np.ndarray:
        n = self._n
        if n == 0:
            return np.zeros(0)
        if n <= self.block:
            return np.array([self._total / n])
        starts = np.arange(0, n - self.block + 1, self.step)
        return np.array([(self._at[int(s) + self.block] - self._at[int(s)]) / self.block for s in starts])

    def integrated(self) -> float:
        """Integrated loudness (LUFS) of everything added so far; ``-inf`` for silence."""
        return gated_loudness(self.block_powers())


#: BS.1770-4 Annex 2: the 48-tap interpolation filter of the 4x true-peak meter, as 12 taps x 4 phases
#: (row k: tap k of phases 0..3).
TRUE_PEAK_FIR = np.array([
    [0.0017089843750, -0.0291748046875, -0.0189208984375, -0.0083007812500],
    [0.0109863281250, 0.0292968750000, 0.0330810546875, 0.0148925781250],
    [-0.0196533203125, -0.0517578125000, -0.0582275390625, -0.0266113281250],
    [0.0332031250000, 0.0891113281250, 0.1015625000000, 0.0476074218750],
    [-0.0594482421875, -0.1665039062500, -0.2003173828125, -0.1022949218750],
    [0.1373291015625, 0.4650878906250, 0.7797851562500, 0.9721679687500],
    [0.9721679687500, 0.7797851562500, 0.4650878906250, 0.1373291015625],
    [-0.1022949218750, -0.2003173828125, -0.1665039062500, -0.0594482421875],
    [0.0476074218750, 0.1015625000000, 0.0891113281250, 0.0332031250000],
    [-0.0266113281250, -0.0582275390625, -0.0517578125000, -0.0196533203125],
    [0.0148925781250, 0.0330810546875, 0.0292968750000, 0.0109863281250],
    [-0.0083007812500, -0.0189208984375, -0.0291748046875, 0.0017089843750],
])
_TAPS = TRUE_PEAK_FIR.shape[0]


def oversampled_peaks(x: np.ndarray) -> np.ndarray:
    """``out[j] = max over channels and the 4 phases of |4x-interpolated signal|`` computed from
    ``x[j : j + 12]`` (``(len(x) - 11,)``): the interpolated values at ``j + 5 + (2p + 1) / 8``,
    ``p = 0..3``, i.e. between the input's samples ``j + 5`` and ``j + 6`` (BS.1770-4 Annex 2 filter).
    Computed in float32 (a relative error of ~1e-7, far under what a meter shows)."""
    xx = np.asarray(x)
    if xx.ndim == 1:
        xx = xx[:, None]
    m = xx.shape[0] - (_TAPS - 1)
    if m <= 0:
        return np.zeros(0)
    out = np.zeros(m, np.float32)
    h = TRUE_PEAK_FIR.astype(np.float32)
    for c in range(xx.shape[1]):
        xc = np.ascontiguousarray(xx[:, c], dtype=np.float32)
        for p in range(h.shape[1]):  # np.convolve: y[n] = sum_k h[k] x[n - k], "valid": n = j + 11
            np.maximum(out, np.abs(np.convolve(xc, h[:, p], mode="valid")), out=out)
    return out.astype(np.float64)


class TruePeakMeter:
    """BS.1770-4 true peak (4x oversampling with the Annex 2 filter) of audio given a chunk at a time."""

    def __init__(self) -> None:
        self._tail: np.ndarray | None = None
        self.peak = 0.0

    def add(self, audio: np.ndarray) -> None:
        x = as_2d(audio)
        if x.shape[0] == 0:
            return
        if self._tail is None:
            self._tail = np.zeros((_TAPS - 1, x.shape[1]))
        ext = np.concatenate((self._tail, x))
        p = oversampled_peaks(ext)
        if p.size:
            self.peak = max(self.peak, float(p.max()))
        self._tail = ext[-(_TAPS - 1):]

    def true_peak(self) -> float:
        """Linear true peak so far (the filter's tail flushed with silence, as at the end of a programme)."""
        if self._tail is None:
            return 0.0
        tail = np.concatenate((self._tail, np.zeros_like(self._tail)))
        p = oversampled_peaks(tail)
        return max(self.peak, float(p.max()) if p.size else 0.0)

    def true_peak_dbtp(self) -> float:
        peak = self.true_peak()
        return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def true_peak(audio: np.ndarray, chunk: int = 1 << 18) -> float:
    """BS.1770-4 true peak of ``audio`` in dBTP (``-inf`` for silence)."""
    meter = TruePeakMeter()
    x = np.asarray(audio)
    for c0 in range(0, x.shape[0], chunk):
        meter.add(x[c0:c0 + chunk])
    return meter.true_peak_dbtp()


def true_peak_envelope(audio: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Per-sample peak for a true-peak limiter: for each sample ``m`` in ``start..stop-1``, the largest of
    ``|x[m]|`` and the 4x-interpolated values between samples ``m - 1`` and ``m + 1`` (over channels).
    Float64 ``(stop - start,)``; the signal is taken as silent beyond its ends."""
    x = as_2d(audio) if np.asarray(audio).ndim == 1 else np.asarray(audio)
    n = x.shape[0]
    lo, hi = start - 6, stop + 6  # x[lo + e] = ext[e]
    ext = np.asarray(x[max(0, lo):min(n, hi)], np.float64)
    if lo < 0 or hi > n:
        ext = np.concatenate((np.zeros((max(0, -lo), x.shape[1])), ext, np.zeros((max(0, hi - n), x.shape[1]))))
    p = oversampled_peaks(ext)  # p[i] covers x(start + i - 1 .. start + i): both sides of m = start + i
    own = np.abs(ext[6:6 + (stop - start)]).max(axis=1)
    return np.maximum(own, np.maximum(p[:stop - start], p[1:stop - start + 1]))
