"""Feature-based frame encoder: colour, light and motion of small RGB thumbnails.

Per frame (columns of :attr:`FeatureFrameEncoder.feature_names`):

``brightness``
    Mean HSV value V in [0, 1]. Valdez & Mehrabian (1994) found brightness the strongest
    colour predictor of pleasure (valence) and a mild reducer of arousal.
``saturation``
    Mean HSV saturation S in [0, 1]; raises both pleasure and arousal (ibid.).
``colourfulness``
    Hasler & Süsstrunk (2003) metric M = sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mu_rg^2 + mu_yb^2),
    divided by 100 (so ~0 grey, ~0.5 very colourful, >1 extreme).
``warmth``
    Mean (R - B) / 255 in [-1, 1]: warm (red/orange) versus cold (blue) light.
``contrast``
    Standard deviation of luma / 255.
``motion``
    Mean absolute luma difference to the previous analysed frame / 255 -- Video2Music's
    motion feature (frames a fixed interval apart); the motion component of Hanjalic & Xu's
    (2005) arousal model.
``content_change``
    Mean absolute difference of the H, S and V channels to the previous frame, on 0..255 --
    PySceneDetect's ContentDetector score.
``hist_change``
    Half the L1 distance between the frame's and the previous frame's 64-bin RGB colour
    histograms, in [0, 1]. Insensitive to things moving inside a shot, large at a shot
    change; the pipeline's cut detector thresholds it adaptively together with
    ``content_change``.
"""

from __future__ import annotations

import numpy as np

from engines.base import EngineError, FrameEncoder

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def frame_motion(previous: np.ndarray, frame: np.ndarray) -> float:
    """The ``motion`` feature of ``frame`` (uint8 RGB) against ``previous``: mean absolute luma difference / 255.

    For a frame whose encoded predecessor is not the frame just before it (a live session under load
    analyses every other frame), measured against the frame that was: motion is a per-interval measure.
    """
    a = previous.astype(np.float32) / 255.0 @ _LUMA
    b = frame.astype(np.float32) / 255.0 @ _LUMA
    return float(np.abs(b - a).mean())


def _hsv(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB uint8 frames -> H in [0, 1), S and V in [0, 1] (float32), via OpenCV's converter."""
    import cv2

    hsv = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2HSV) for f in frames])
    scale = np.array([1 / 180.0, 1 / 255.0, 1 / 255.0], dtype=np.float32)
    x = hsv.astype(np.float32) * scale
    return x[..., 0], x[..., 1], x[..., 2]


class FeatureFrameEncoder(FrameEncoder):
    feature_names = (
        "brightness",
        "saturation",
        "colourfulness",
        "warmth",
        "contrast",
        "motion",
        "content_change",
        "hist_change",
    )

    def encode(self, frames: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise EngineError(f"frames must be (N, H, W, 3) RGB, got shape {frames.shape}")
        n = frames.shape[0]
        out = np.zeros((n, len(self.feature_names)), dtype=np.float32)
        if n == 0:
            return out
        if previous is not None and previous.shape != frames.shape[1:]:
            previous = None
        seq = frames if previous is None else np.concatenate([previous[None], frames], axis=0)
        x = seq.astype(np.float32) / 255.0
        h, s, v = _hsv(seq)
        luma = x @ _LUMA
        rg = x[..., 0] - x[..., 1]
        yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
        axes = (1, 2)
        colourful = (
            np.sqrt(rg.std(axis=axes) ** 2 + yb.std(axis=axes) ** 2)
            + 0.3 * np.sqrt(rg.mean(axis=axes) ** 2 + yb.mean(axis=axes) ** 2)
        ) * 255.0 / 100.0
        per = np.stack(
            [
                v.mean(axis=axes),
                s.mean(axis=axes),
                colourful,
                (x[..., 0] - x[..., 2]).mean(axis=axes),
                luma.std(axis=axes),
            ],
            axis=1,
        )
        motion = np.zeros(seq.shape[0], dtype=np.float32)
        change = np.zeros(seq.shape[0], dtype=np.float32)
        if seq.shape[0] > 1:
            motion[1:] = np.abs(np.diff(luma, axis=0)).mean(axis=axes)  # = frame_motion, frame by frame
            # hue is circular: take the shorter way round
            dh = np.abs(np.diff(h, axis=0))
            dh = np.minimum(dh, 1.0 - dh)
            change[1:] = (
                dh.mean(axis=axes) + np.abs(np.diff(s, axis=0)).mean(axis=axes)
                + np.abs(np.diff(v, axis=0)).mean(axis=axes)
            ) * 255.0 / 3.0
        hist_change = np.zeros(seq.shape[0], dtype=np.float32)
        if seq.shape[0] > 1:
            hist = _histograms(seq)
            hist_change[1:] = 0.5 * np.abs(np.diff(hist, axis=0)).sum(axis=1)
        offset = 0 if previous is None else 1
        out[:, :5] = per[offset:]
        out[:, 5] = motion[offset:]
        out[:, 6] = change[offset:]
        out[:, 7] = hist_change[offset:]
        return out


def _histograms(frames: np.ndarray) -> np.ndarray:
    """Normalised 4x4x4-bin RGB histograms, shape (N, 64)."""
    q = frames >> 6  # uint8 0..3 per channel
    idx = (q[..., 0].astype(np.int64) * 16 + q[..., 1] * 4 + q[..., 2]).reshape(frames.shape[0], -1)
    idx += (np.arange(frames.shape[0]) * 64)[:, None]
    counts = np.bincount(idx.ravel(), minlength=frames.shape[0] * 64).reshape(frames.shape[0], 64)
    return counts / counts.sum(axis=1, keepdims=True)
