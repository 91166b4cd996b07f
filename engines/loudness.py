"""K-weighting of ITU-R BS.1770-4, for any sample rate (shared by the audio encoder and the mixer).

The filters are designed from their analog prototypes (the method of libebur128 and
pyloudnorm's "DeMan" filter, after Brecht De Man, AES 2018) and reproduce the coefficients
published in BS.1770 at 48 kHz. See :mod:`pipelines.mix` for the gated loudness measures.
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
