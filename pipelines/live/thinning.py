"""Fewer analysis frames under load, read the same: a degraded live session's frame thinning.

At degrade level 1 or more (:meth:`LiveSession.set_degrade <pipelines.live.session.LiveSession.set_degrade>`)
a session analyses only frames at least :data:`DEGRADED_FRAME_GAP_S` apart: every other frame at the 6 fps
analysis rate. The features must not move with the level, or the mood would: measured between frames twice
as far apart, motion reads about twice as high, and the cut detector (a frame's change against its
neighbours' within two frames) loses cuts 0.75 s apart. So the motion of a kept frame is measured against
the frame received just before it (:func:`~engines.frame_features.frame_motion`), and the cut detector's
neighbourhood is half as many frames, the same time span.
"""

from __future__ import annotations

import math
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
        self._kept_t = -math.inf  # pts of the last frame kept
        self._skipped: VideoFrame | None = None  # the last frame received and not kept
        #: A kept frame's pts -> the frame received just before it (when that one was not kept).
        self._motion_ref: dict[float, np.ndarray] = {}

    def keep(self, frame: VideoFrame) -> bool:
        """Whether ``frame`` (the next in time) is analysed."""
        if self.level >= 1 and frame.pts_s - self._kept_t < DEGRADED_FRAME_GAP_S - 1e-6:
            self._skipped = frame
            return False
        if self._skipped is not None and frame.pts_s - self._skipped.pts_s < DEGRADED_FRAME_GAP_S - 1e-6:
            self._motion_ref[frame.pts_s] = self._skipped.rgb
        self._skipped = None
        self._kept_t = frame.pts_s
        return True

    def forget(self, frame: VideoFrame) -> None:
        """A kept frame dropped before it was encoded."""
        self._motion_ref.pop(frame.pts_s, None)

    def motion(self, batch: Sequence[VideoFrame], rows: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """The encoder's ``rows`` for ``batch``, with the motion of each frame that had a frame skipped just
        before it measured against that frame (rows unchanged when none had)."""
        refs = [self._motion_ref.pop(f.pts_s, None) for f in batch]
        if "motion" not in names or all(r is None for r in refs):
            return rows
        out = np.array(rows, np.float32)
        col = list(names).index("motion")
        for i, (f, ref) in enumerate(zip(batch, refs, strict=True)):
            if ref is not None and ref.shape == f.rgb.shape:
                out[i, col] = frame_motion(ref, f.rgb)
        return out

    def cut_options(self, options: CutOptions) -> CutOptions:
        """The cut detector's options for the frames analysed now."""
        return replace(options, neighbours=max(1, options.neighbours // 2)) if self.level >= 1 else options
