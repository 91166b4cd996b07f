"""Fewer analysis frames under load, read the same: a degraded live session's frame thinning.

At degrade level 1 or more (:meth:`LiveSession.set_degrade <pipelines.live.session.LiveSession.set_degrade>`)
a session analyses only frames at least :data:`DEGRADED_FRAME_GAP_S` apart: every other frame at the 6 fps
analysis rate. The features must not move with the level, or the mood would:

* **motion** is a per-interval measure: between frames twice as far apart it reads about twice as high. A
  kept frame stands for itself and the frame skipped before it, so its motion is the mean of the two steps
  one analysis interval long (the previous kept frame -> the skipped one -> this one;
  :func:`~engines.frame_features.frame_motion`). A window's mean motion, a shot cut's share of it included,
  is then what it is at full rate.
* **cuts**: the cut detector compares a frame's change with its neighbours' within two frames; at half the
  frames that span would reach the next cut of a fast-cut scene, so its neighbourhood is half as many frames,
  the same time span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from engines.frame_features import frame_motion
from pipelines.analysis.cuts import CutOptions
from pipelines.frames import VideoFrame

#: Degraded (level >= 1), frames closer than this to the last one kept are not analysed.
DEGRADED_FRAME_GAP_S = 0.25


class FrameThinning:
    """Which analysis frames a session at :attr:`level` analyses, and how their features are kept comparable."""

    def __init__(self) -> None:
        #: 0: every frame; 1 and 2: every other one (2 also skips faces, which the analyzer handles).
        self.level = 0
        self._kept: VideoFrame | None = None  # the last frame kept
        self._skipped: VideoFrame | None = None  # the last frame received and not kept
        #: A kept frame's pts -> (the kept frame before it, the frame skipped between them).
        self._steps: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def keep(self, frame: VideoFrame) -> bool:
        """Whether ``frame`` (the next in time) is analysed."""
        kept = self._kept
        if self.level >= 1 and kept is not None and frame.pts_s - kept.pts_s < DEGRADED_FRAME_GAP_S - 1e-6:
            self._skipped = frame
            return False
        skipped = self._skipped
        if kept is not None and skipped is not None and frame.pts_s - kept.pts_s < 2 * DEGRADED_FRAME_GAP_S:
            self._steps[frame.pts_s] = (kept.rgb, skipped.rgb)
        self._skipped, self._kept = None, frame
        return True

    def forget(self, frame: VideoFrame) -> None:
        """A kept frame dropped before it was encoded."""
        self._steps.pop(frame.pts_s, None)

    def motion(self, batch: Sequence[VideoFrame], rows: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """The encoder's ``rows`` for ``batch``, with the motion of each kept frame that had one skipped
        before it the mean of the two single steps (rows unchanged when none had)."""
        steps = [self._steps.pop(f.pts_s, None) for f in batch]
        if "motion" not in names or all(s is None for s in steps):
            return rows
        out = np.array(rows, np.float32)
        col = list(names).index("motion")
        for i, (f, step) in enumerate(zip(batch, steps, strict=True)):
            if step is not None and step[0].shape == step[1].shape == f.rgb.shape:
                out[i, col] = 0.5 * (frame_motion(step[0], step[1]) + frame_motion(step[1], f.rgb))
        return out

    def cut_options(self, options: CutOptions) -> CutOptions:
        """The cut detector's options for the frames analysed now."""
        return replace(options, neighbours=max(1, options.neighbours // 2)) if self.level >= 1 else options
