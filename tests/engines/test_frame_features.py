"""Frame features on pictures with known colour, light, motion and cuts."""

from __future__ import annotations

import numpy as np
import pytest

from engines.base import EngineError
from engines.frame_features import FeatureFrameEncoder


def solid(rgb: tuple[int, int, int], h: int = 36, w: int = 64) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


def col(enc: FeatureFrameEncoder, out: np.ndarray, name: str) -> np.ndarray:
    return out[:, enc.feature_names.index(name)]


def test_brightness_saturation_and_colourfulness_follow_the_picture() -> None:
    enc = FeatureFrameEncoder()
    frames = np.stack([solid((0, 0, 0)), solid((128, 128, 128)), solid((255, 255, 255)), solid((255, 0, 0))])
    out = enc.encode(frames)
    np.testing.assert_allclose(col(enc, out, "brightness"), [0.0, 128 / 255, 1.0, 1.0], atol=1e-4)
    np.testing.assert_allclose(col(enc, out, "saturation"), [0.0, 0.0, 0.0, 1.0], atol=1e-4)
    colourful = col(enc, out, "colourfulness")
    assert colourful[3] > 0.5 and colourful[:3].max() < 1e-3
    warm = col(enc, out, "warmth")
    assert warm[3] == pytest.approx(1.0) and abs(warm[1]) < 1e-6


def test_motion_is_zero_for_a_still_picture_and_grows_with_change() -> None:
    enc = FeatureFrameEncoder()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (36, 64, 3), dtype=np.uint8)
    shifted_small = np.roll(base, 1, axis=1)
    shifted_big = np.roll(base, 9, axis=0)
    out = enc.encode(np.stack([base, base, shifted_small, shifted_big]))
    motion = col(enc, out, "motion")
    assert motion[0] == 0.0 and motion[1] == 0.0
    assert motion[2] > 0.05 and motion[3] > 0.05


def test_content_change_spikes_at_a_cut_and_previous_frame_carries_over_batches() -> None:
    enc = FeatureFrameEncoder()
    a, b = solid((20, 40, 200)), solid((250, 200, 10))
    out = enc.encode(np.stack([a, a, b, b]))
    cc = col(enc, out, "content_change")
    assert cc[1] == 0.0 and cc[2] > 50 and cc[3] == 0.0
    # the cut between two batches is seen when the previous frame is passed
    second = enc.encode(np.stack([b]), previous=a)
    assert col(enc, second, "content_change")[0] == pytest.approx(cc[2])


def test_rejects_non_rgb_input() -> None:
    with pytest.raises(EngineError):
        FeatureFrameEncoder().encode(np.zeros((2, 10, 10), np.uint8))


def test_histogram_change_ignores_motion_but_sees_a_new_palette() -> None:
    enc = FeatureFrameEncoder()
    rng = np.random.default_rng(1)
    scene = rng.integers(0, 255, (36, 64, 3), dtype=np.uint8)
    moved = np.roll(scene, 20, axis=1)  # the same shot, camera panned
    other = (255 - scene) // 3  # a different shot: darker, other colours
    out = enc.encode(np.stack([scene, moved, other]))
    hc = col(enc, out, "hist_change")
    assert hc[1] < 0.02 and col(enc, out, "content_change")[1] > 20
    assert hc[2] > 0.5
