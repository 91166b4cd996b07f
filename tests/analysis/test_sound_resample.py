"""``to_mono16k`` resamples long audio a chunk at a time; the result must equal resampling it whole."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from pipelines.analysis.sound import to_mono16k


@pytest.mark.parametrize("source_rate", [48_000, 44_100, 32_000])
def test_chunked_resampling_equals_resampling_whole(source_rate: int) -> None:
    rng = np.random.default_rng(3)
    n = int(7.3 * source_rate)  # several chunks of 2 s, and a ragged end
    stereo = rng.standard_normal((n, 2)).astype(np.float32)
    chunked = to_mono16k(stereo, 16_000, source_rate, chunk_s=2.0)
    g = np.gcd(source_rate, 16_000)
    whole = resample_poly(stereo.mean(axis=1), 16_000 // g, source_rate // g)
    assert chunked.dtype == np.float32 and chunked.shape == whole.shape
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)


def test_same_rate_only_mixes_down() -> None:
    stereo = np.stack([np.ones(100, np.float32), np.zeros(100, np.float32)], axis=1)
    np.testing.assert_array_equal(to_mono16k(stereo, 16_000, 16_000), np.full(100, 0.5, np.float32))
