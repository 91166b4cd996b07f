"""The BGM a WebRTC session sends back: one paced audio track of 20 ms, 48 kHz stereo frames."""

from __future__ import annotations

import logging
from collections import deque
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from pipelines.clock import Clock
from pipelines.frames import AUDIO_RATE
from pipelines.live.pacing import FramePacer
from pipelines.live.session import LiveSession

log = logging.getLogger("serve.webrtc")  # one logger for the package (its name predates the split)


class BgmTrack(MediaStreamTrack):
    """The session's BGM as a WebRTC audio track: 20 ms frames, 48 kHz stereo s16, paced on ``clock``.

    Paced by :class:`~pipelines.live.pacing.FramePacer`: frame ``k`` is due at ``start + k * frame``
    (``start`` = the first ``recv``), so the pacing does not drift; a late reader gets the overdue
    frames at once. When the reader is more than ``max_late_s`` behind (the loop stalled), the
    missed frames are skipped: the pts jump with the clock, as an RTP receiver expects, and the
    count is kept in :attr:`skipped`.

    With ``opus=True`` (what sessions use) :meth:`recv` returns each frame already Opus-encoded, as
    an ``av.Packet`` with the same pts, which aiortc's sender packetises as it is. aiortc would
    otherwise encode every 20 ms frame in the loop's default thread pool: ~0.15 ms of work, but
    a thread hop per frame per session, and with many sessions those hops queue behind each
    other for the GIL until the sender falls half a second behind (measured: 8 sessions on 2
    cores skipped 3% of frames that way with the event loop itself never late by 100 ms).
    Encoded here, on the loop, the cost is the encode alone. The encoder is tuned for music
    (``application=audio``), not speech as aiortc's is.
    """

    kind = "audio"

    def __init__(self, session: LiveSession, clock: Clock, *, max_late_s: float = 0.5, late_s: float = 0.04,
                 opus: bool = False, opus_bitrate: int = 96_000) -> None:
        super().__init__()
        self.session = session
        self.clock = clock
        self._opus: av.AudioCodecContext | None = None
        if opus:
            codec = av.CodecContext.create("libopus", "w")
            assert isinstance(codec, av.AudioCodecContext)
            codec.bit_rate = opus_bitrate
            codec.format = "s16"
            codec.layout = "stereo"
            codec.sample_rate = AUDIO_RATE
            codec.time_base = Fraction(1, AUDIO_RATE)
            codec.options = {"application": "audio"}
            self._opus = codec
        self._pending: deque[av.Packet] = deque()
        self.samples = session.options.frame_samples
        self.time_base = Fraction(1, AUDIO_RATE)
        #: The pacing and its statistics (frames, skipped, lateness, late_frames, max_lateness_s).
        self.pacer = FramePacer(clock, self.samples, max_late_s=max_late_s, late_s=late_s)

    @property
    def frames(self) -> int:
        return self.pacer.frames

    @property
    def skipped(self) -> int:
        return self.pacer.skipped

    @property
    def late_frames(self) -> int:
        return self.pacer.late_frames

    @property
    def max_lateness_s(self) -> float:
        return self.pacer.max_lateness_s

    @property
    def lateness(self) -> deque[float]:
        return self.pacer.lateness

    async def recv(self) -> av.AudioFrame | av.Packet:  # aiortc sends either
        if self.readyState != "live" or self.session.closed:
            raise MediaStreamError
        if self._opus is None:
            return await self._next_frame()
        while not self._pending:  # libopus gives one packet per 20 ms frame; never zero after the first
            frame = await self._next_frame()
            for packet in self._opus.encode(frame):
                packet.pts = frame.pts  # the encoder's own pts start at minus its look-ahead
                packet.time_base = self.time_base
                self._pending.append(packet)
        return self._pending.popleft()

    async def _next_frame(self) -> av.AudioFrame:
        skipped = self.pacer.skipped
        k = await self.pacer.next()
        if self.pacer.skipped != skipped:
            log.warning("session %s: BGM sender %.0f ms late, skipped %d frames", self.session.session_id,
                        1000 * (self.pacer.skipped - skipped) * self.pacer.frame_s, self.pacer.skipped - skipped)
        if self.readyState != "live" or self.session.closed:
            raise MediaStreamError
        pcm = self.session.pull_frame()
        data = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = k * self.samples
        frame.time_base = self.time_base
        return frame
