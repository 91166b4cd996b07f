"""Small numeric helpers shared by the trainable models."""

from __future__ import annotations

import numpy as np


def nan_mean_std(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation of ``rows`` ``(N, F)``, ignoring NaN/inf (missing) values.

    A column without values has mean 0; a constant (or empty) column gets std 1, so standardising
    with these never divides by zero.
    """
    present = np.isfinite(rows)
    cnt = np.maximum(present.sum(axis=0), 1)
    mean = np.where(present, rows, 0.0).sum(axis=0) / cnt
    std = np.sqrt((np.where(present, rows - mean, 0.0) ** 2).sum(axis=0) / cnt)
    return mean, np.where(std > 1e-9, std, 1.0)
