"""How much each decoded video frame differs from the one decoded before it, for cuts to the frame.

The analysis looks at six frames a second, but the decoder decodes every frame (those between two
analysed frames are decoded and dropped). :class:`FrameChangeRecorder` is handed each of them during
that one decode pass: it makes a 32x18 RGB signature (:func:`signature`, the thumbnail
:mod:`pipelines.offline.cut_times` always compared; 25-60 us a frame at any size: 8-bit 4:2:0 is
point-sampled in numpy, other formats go through swscale with one scaler kept for all frames), compares it
with the previous frame's (:func:`change`: mean absolute difference, ~5 us) and keeps only the time and that
one number. So
:func:`~pipelines.offline.cut_times.refine_cuts` finds the frame that changes most near each cut without
opening the file again.

Memory: 12 bytes a decoded frame (float64 time + float32 change) -- 15 minutes at 60 fps is 54,000 frames,
650 KB. The decoder refuses a file before recording more than ``MediaLimits.max_frames`` (the duration limit
at 240 fps): at most 41 MB under the default 4-hour limit; a real hour at 30 fps takes 1.3 MB.

Where the decoder skips non-reference frames (``DecodeOptions.skip_nonref``) the record is not
``complete``: a frame's change is then measured against the last *decoded* frame, and a cut that lands on
a frame after such a gap is timed again from the file (see ``refine_cuts``).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from pipelines.media.pictures import thumbnail_rgb

#: Size of the signature compared between consecutive frames (width, height).
SIGNATURE = (32, 18)


def signature(frame: av.VideoFrame, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """The 32x18 RGB float32 picture two consecutive frames are compared on (``reformatter``: one kept from
    frame to frame, for formats other than 8-bit 4:2:0)."""
    return thumbnail_rgb(frame, *SIGNATURE, reformatter).astype(np.float32)


def change(img: np.ndarray, prev: np.ndarray) -> float:
    """How much ``img`` differs from ``prev`` (mean absolute difference of their signatures, 0-255)."""
    return float(np.mean(np.abs(img - prev)))


@dataclass(frozen=True)
class FrameChanges:
    """Every decoded video frame's time (s, on the analysis clock: 0 = the first frame) and change from the
    frame decoded before it (NaN for the first)."""

    times_s: np.ndarray
    change: np.ndarray
    #: One frame at the stream's declared rate, s.
    frame_s: float
    #: Every frame was decoded (no non-reference frames skipped), so each change is to the frame before.
    complete: bool

    @property
    def nbytes(self) -> int:
        return int(self.times_s.nbytes + self.change.nbytes)

    def after_gap(self, i: int) -> bool:
        """Frames may be missing right before frame ``i`` (skipped by the decoder): its change is then to an
        earlier frame, and the real change may lie on one of those not decoded."""
        if self.complete:
            return False
        return i == 0 or float(self.times_s[i] - self.times_s[i - 1]) > 1.5 * self.frame_s


class FrameChangeRecorder:
    """Filled by the decoder (:func:`~pipelines.media.decode.iter_media`) with every decoded video frame."""

    def __init__(self) -> None:
        self._times = array("d")
        self._change = array("f")
        self._prev: np.ndarray | None = None
        self._reformatter = VideoReformatter()
        self._frame_s = 1.0 / 25
        self._complete = True

    def start(self, fps: float, complete: bool) -> None:
        self._frame_s = 1.0 / max(fps, 1.0)  # as the decoding path of refine_cuts takes it
        self._complete = complete

    def add(self, frame: av.VideoFrame, t: float) -> None:
        img = signature(frame, self._reformatter)
        self._times.append(t)
        self._change.append(math.nan if self._prev is None else change(img, self._prev))
        self._prev = img

    def result(self) -> FrameChanges:
        return FrameChanges(np.array(self._times, np.float64), np.array(self._change, np.float32),
                            self._frame_s, self._complete)
