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
