"""Shot cuts: an adaptive detector in the manner of PySceneDetect's AdaptiveDetector, on colour-histogram
and pixel content changes between analysed frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CutOptions:
    #: A cut needs the colour-histogram change to reach this (0..1) ...
    min_hist_change: float = 0.25
    #: ... or, for cuts between shots of the same palette, this pixel content change (0..255).
    min_content_change: float = 30.0
    #: In both cases the score must also be this many times its neighbours' mean.
    adaptive_ratio: float = 3.0
    neighbours: int = 2  # analysed frames on each side
    min_gap_s: float = 0.4


def _adaptive_peaks(x: np.ndarray, minimum: float, ratio: float, neighbours: int) -> np.ndarray:
    """Boolean mask: ``x[i] >= minimum`` and ``x[i] >= ratio * mean(neighbours of i)``."""
    n = len(x)
    out = np.zeros(n, dtype=bool)
    for i in range(1, n):
        if x[i] < minimum:
            continue
        lo, hi = max(1, i - neighbours), min(n, i + neighbours + 1)
        neigh = np.concatenate([x[lo:i], x[i + 1 : hi]])
        ref = float(neigh.mean()) if len(neigh) else 0.0
        out[i] = x[i] >= ratio * ref
    return out


def detect_cuts(
    times_s: np.ndarray,
    hist_change: np.ndarray,
    content_change: np.ndarray | None = None,
    options: CutOptions | None = None,
) -> list[float]:
    """Times (s) of shot cuts from per-analysed-frame change scores.

    Like PySceneDetect's AdaptiveDetector, a frame is a cut when its change score is large in
    absolute terms *and* several times its neighbours' (so sustained fast motion is not a
    run of cuts). The colour-histogram change carries most cuts; the pixel content change
    catches cuts between shots with the same palette.
    """
    o = options or CutOptions()
    mask = _adaptive_peaks(np.asarray(hist_change, np.float64), o.min_hist_change, o.adaptive_ratio, o.neighbours)
    if content_change is not None:
        mask |= _adaptive_peaks(
            np.asarray(content_change, np.float64), o.min_content_change, o.adaptive_ratio, o.neighbours
        )
    cuts: list[float] = []
    for i in np.nonzero(mask)[0]:
        t = float(times_s[i])
        if cuts and t - cuts[-1] < o.min_gap_s:
            continue
        cuts.append(t)
    return cuts
