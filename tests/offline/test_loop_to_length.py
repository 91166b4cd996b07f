"""Fitting a library track to a video's length."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.offline.compose import loop_to_length

SR = 8000


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.stack([x, x], axis=1)


def test_longer_track_is_trimmed() -> None:
    a = tone(10.0)
    out = loop_to_length(a, SR, 4.0)
    assert out.shape == (4 * SR, 2) and np.array_equal(out, a[: 4 * SR])


def test_shorter_track_loops_with_a_smooth_equal_power_join() -> None:
    rng = np.random.default_rng(0)
    a = (0.3 * rng.standard_normal((3 * SR, 2))).astype(np.float32)  # uncorrelated across the join
    out = loop_to_length(a, SR, 10.0, crossfade_s=0.5)
    assert out.shape == (10 * SR, 2)
    # start is the track itself; the loop really repeats it
    assert np.array_equal(out[: 2 * SR], a[: 2 * SR])
    xf = int(0.5 * SR)
    second_start = 3 * SR - xf
    np.testing.assert_allclose(out[second_start + xf : second_start + 2 * SR], a[xf : 2 * SR], atol=1e-6)
    # equal-power crossfade keeps the level of uncorrelated material through the join
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    assert rms(out[second_start : second_start + xf]) == pytest.approx(rms(a), rel=0.15)


def test_rejects_empty() -> None:
    with pytest.raises(ValueError):
        loop_to_length(np.zeros((0, 2), np.float32), SR, 1.0)
