"""Shot cuts to the frame, for the beat plan.

The analysis finds cuts on its thumbnails, six a second (``DecodeOptions.analysis_fps``), so a cut it
reports is the first *analysed* frame of the new shot: up to one analysis step (1/6 s) after the real
cut -- more than the ±50 ms within which a cut counts as on the beat. Before a beat plan is made,
:func:`refine_cuts` moves each cut to the frame that differs most from the frame before it among the
frames between the analysed frame before the cut and the cut itself.

Those differences come from the analysis' own decode when it recorded them (``Analysis.frame_changes``,
:mod:`pipelines.media.frame_changes`: every decoded frame, 12 bytes each), so the file is not read again.
Without them (or for a cut that lands right after frames the analysis' decoder skipped: non-reference
frames, ``DecodeOptions.skip_nonref``) the frames around the cut are decoded again (seeking to the key
frame before it when the previous cut is far, decoding on otherwise). Both compare the same signature
(:func:`~pipelines.media.frame_changes.signature`) and pick the frame the same way (:func:`_pick`).

Best effort: a file that cannot be read again keeps the analysis' cuts (it was read once already).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from pipelines.cancel import check_cancelled
from pipelines.media.frame_changes import FrameChanges, change, signature

log = logging.getLogger(__name__)

#: Decode on (instead of seeking) when the next cut's frames start within this many seconds.
SEEK_GAP_S = 3.0


def refine_cuts(path: str, cuts: Sequence[float], step_s: float,
                changes: FrameChanges | None = None) -> list[float]:
    """``cuts`` (s, on the analysis clock: 0 = the first video frame), each moved to the frame with the
    largest change in ``[cut - step_s - half a frame, cut + half a frame]``; unchanged where no frame there
    has a frame before it. ``changes`` (``Analysis.frame_changes``): the analysis' record of every frame's
    change; the file is then opened only for cuts that record cannot time (none when it is ``complete``)."""
    if not cuts:
        return []
    ordered = sorted(cuts)
    if changes is not None:
        out, again = _refine_recorded(changes, ordered, step_s)
        if again:
            for i, t in zip(again, refine_cuts(path, [ordered[i] for i in again], step_s), strict=True):
                out[i] = t
        return out
    try:
        return _refine(path, ordered, step_s)
    except (av.error.FFmpegError, OSError, ValueError) as exc:  # read once already: keep the analysis' cuts
        log.warning("could not time the cuts to the frame in %s (%s); using the analysis' cuts", path, exc)
        return ordered


def _window(cut: float, step_s: float, half: float) -> tuple[float, float]:
    return cut - step_s - half, cut + half


def _pick(times: np.ndarray, changes: np.ndarray, cut: float) -> tuple[int | None, float]:
    """The frame (index, time) that changes most (the first of equals); ``(None, cut)`` when none has a
    change (no frame in the window, or only the very first frame of the video)."""
    valid = np.isfinite(changes)
    if not valid.any():
        return None, cut
    i = int(np.argmax(np.where(valid, changes, -1.0)))
    return i, float(times[i])


def _refine_recorded(changes: FrameChanges, cuts: list[float], step_s: float) -> tuple[list[float], list[int]]:
    """The cuts timed from the recorded changes, and the indices of those to time from the file again."""
    times = changes.times_s
    ordered = bool(np.all(np.diff(times) >= 0))
    half = 0.5 * changes.frame_s
    out: list[float] = []
    again: list[int] = []
    for k, cut in enumerate(cuts):
        lo, hi = _window(cut, step_s, half)
        if ordered:
            idx = np.arange(np.searchsorted(times, lo, "left"), np.searchsorted(times, hi, "right"))
        else:
            idx = np.flatnonzero((times >= lo) & (times <= hi))
        i, t = _pick(times[idx], changes.change[idx], cut)
        if not changes.complete and (i is None or changes.after_gap(int(idx[i]))):
            again.append(k)  # the change may lie on a frame the analysis did not decode
        out.append(t)
    return out, again


def _frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
            ) -> Iterator[tuple[float, np.ndarray]]:
    reformatter = VideoReformatter()
    for frame in container.decode(stream):
        check_cancelled()
        if frame.pts is None or frame.time_base is None:
            continue
        yield float(frame.pts * frame.time_base), signature(frame, reformatter)


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
            lo, hi = _window(cut, step_s, half)
            if lo - pos > SEEK_GAP_S or prev is None:
                container.seek(max(0, int(math.floor((t0 + lo - 1.0) / float(vs.time_base or 1e-6)))), stream=vs,
                               backward=True)
                frames = _frames(container, vs)
                prev = None
            times: list[float] = []
            diffs: list[float] = []
            for t_abs, img in frames:
                t = t_abs - t0
                if prev is not None and lo <= t <= hi:
                    times.append(t)
                    diffs.append(change(img, prev[1]))
                prev, pos = (t, img), t
                if t >= hi:
                    break
            out.append(_pick(np.array(times, np.float64), np.array(diffs, np.float32), cut)[1])
        return out
