"""Shot cuts to the frame, for the beat plan.

The analysis finds cuts on its thumbnails, six a second (``DecodeOptions.analysis_fps``), so a cut it
reports is the first *analysed* frame of the new shot: up to one analysis step (1/6 s) after the real
cut -- more than the ±50 ms within which a cut counts as on the beat. Before a beat plan is made,
:func:`refine_cuts` decodes the frames between the analysed frame before each cut and the cut itself
(seeking to the key frame before it when the previous cut is far, decoding on otherwise) and moves the
cut to the frame that differs most from the frame before it.

Best effort: a file that cannot be read again keeps the analysis' cuts (it was read once already).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import av
import numpy as np

from pipelines.cancel import check_cancelled
from pipelines.media.decode import thumbnail_rgb

log = logging.getLogger(__name__)

#: Decode on (instead of seeking) when the next cut's frames start within this many seconds.
SEEK_GAP_S = 3.0
THUMB = (32, 18)


def _frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
            ) -> Iterator[tuple[float, np.ndarray]]:
    for frame in container.decode(stream):
        check_cancelled()
        if frame.pts is None or frame.time_base is None:
            continue
        yield float(frame.pts * frame.time_base), thumbnail_rgb(frame, *THUMB).astype(np.float32)


def refine_cuts(path: str, cuts: Sequence[float], step_s: float) -> list[float]:
    """``cuts`` (s, on the analysis clock: 0 = the first video frame), each moved to the frame with the
    largest change in ``(cut - step_s - half a frame, cut]``; unchanged where no frame there changes more."""
    if not cuts:
        return []
    try:
        return _refine(path, sorted(cuts), step_s)
    except (av.error.FFmpegError, OSError, ValueError) as exc:  # read once already: keep the analysis' cuts
        log.warning("could not time the cuts to the frame in %s (%s); using the analysis' cuts", path, exc)
        return sorted(cuts)


def _refine(path: str, cuts: list[float], step_s: float) -> list[float]:
    with av.open(path, mode="r", metadata_errors="ignore") as container:
        if not container.streams.video:
            return cuts
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        rate = float(vs.average_rate or vs.guessed_rate or 25)
        frames = _frames(container, vs)
        first = next(frames, None)
        if first is None:
            return cuts
        t0 = first[0]
        half = 0.5 / max(rate, 1.0)
        out: list[float] = []
        prev: tuple[float, np.ndarray] | None = first
        pos = 0.0  # analysis-clock time of ``prev``
        for cut in cuts:
            lo, hi = cut - step_s - half, cut + half
            if lo - pos > SEEK_GAP_S or prev is None:
                container.seek(max(0, int(math.floor((t0 + lo - 1.0) / float(vs.time_base or 1e-6)))), stream=vs,
                               backward=True)
                frames = _frames(container, vs)
                prev = None
            best, best_t = -1.0, cut
            for t_abs, img in frames:
                t = t_abs - t0
                if prev is not None and t >= lo:
                    change = float(np.mean(np.abs(img - prev[1])))
                    if t <= hi and change > best:
                        best, best_t = change, t
                prev, pos = (t, img), t
                if t >= hi:
                    break
            out.append(best_t if best >= 0 else cut)
        return out
