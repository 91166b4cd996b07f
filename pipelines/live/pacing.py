"""Pacing of a live session's output: one frame every ``frame_ms`` of clock time, without drift.

:class:`FramePacer` is the one pacer every transport uses: the WebRTC BGM track
(``serve.webrtc.track.BgmTrack``) and the gRPC ``Stream`` call (:func:`paced_frames`). Frame ``k``
is due at ``start + k * frame`` (``start`` = the first wait), so the pacing does not drift; a
late caller gets the overdue frames at once. With ``max_late_s``, a caller more than that far
behind (a stalled event loop) skips the missed frames: their indices jump with the clock, as an
RTP receiver expects, and the count is kept in :attr:`FramePacer.skipped`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator

import numpy as np

from pipelines.clock import Clock
from pipelines.frames import AUDIO_RATE
from pipelines.live.session import LiveSession


class FramePacer:
    """Hands out frame indices at the clock's pace (see the module doc) and keeps lateness statistics."""

    def __init__(self, clock: Clock, frame_samples: int, sample_rate: int = AUDIO_RATE, *,
                 max_late_s: float = math.inf, late_s: float = 0.04) -> None:
        self.clock = clock
        self.frame_s = frame_samples / sample_rate
        self.max_late_s = max_late_s
        self.late_s = late_s
        self._start: float | None = None
        self._k = 0
        #: Frames handed out, and frames skipped because the caller fell more than ``max_late_s`` behind.
        self.frames = 0
        self.skipped = 0
        #: How late each recent frame was handed out (clock s after its due time).
        self.lateness: deque[float] = deque(maxlen=3000)
        #: Frames handed out more than ``late_s`` after their due time (a receiver's jitter buffer has to
        #: cover them), and the latest any frame was handed out.
        self.late_frames = 0
        self.max_lateness_s = 0.0

    async def next(self) -> int:
        """Wait until the next frame is due; return its index (its pts is ``index * frame_samples``)."""
        k = await self.wait()
        self.handed_out()
        return k

    async def wait(self) -> int:
        """:meth:`next` without the statistics: a caller with more to do before the frame goes out (an
        encode) calls :meth:`handed_out` when it hands the frame out, so lateness is measured then."""
        now = self.clock.now()
        if self._start is None:
            self._start = now
        due = self._start + self._k * self.frame_s
        if due > now:
            await self.clock.sleep(due - now)
        elif now - due > self.max_late_s:
            skip = int((now - due) / self.frame_s)
            self._k += skip
            self.skipped += skip
        k = self._k
        self._k += 1
        return k

    def handed_out(self) -> None:
        """The frame :meth:`wait` returned goes out now: count it and how late it is."""
        late = self.clock.now() - self.due_at(self._k - 1)
        self.lateness.append(late)
        self.max_lateness_s = max(self.max_lateness_s, late)
        self.late_frames += late > self.late_s
        self.frames += 1

    @property
    def next_index(self) -> int:
        """The index :meth:`wait` returns next unless the caller falls ``max_late_s`` behind."""
        return self._k

    def due_at(self, k: int) -> float:
        """Clock time frame ``k`` is due (from the first wait; before it, from now)."""
        start = self.clock.now() if self._start is None else self._start
        return start + k * self.frame_s


async def paced_frames(session: LiveSession, pacer: FramePacer | None = None) -> AsyncIterator[tuple[int, np.ndarray]]:
    """Yield ``(pts_samples, frame)`` from :meth:`LiveSession.pull_frame` every ``frame_ms`` of the
    session's clock, pts in 48 kHz samples; a late reader is not made to wait until it has caught up,
    and the pts always advance by one frame (no skipping: the gRPC reader buffers on its side). ``pacer``:
    one to use (its lateness statistics then tell the caller how late frames went out)."""
    n = session.options.frame_samples
    pacer = pacer or FramePacer(session.clock, n)
    while not session.closed:
        k = await pacer.next()
        yield k * n, session.pull_frame()
