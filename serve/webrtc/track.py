"""The BGM a WebRTC session sends back: one paced audio track of 20 ms, 48 kHz stereo frames.

With Opus (what sessions use) the frames are pulled from the session and encoded ahead of what is
sent, in batches on the process's encode thread (:mod:`serve.webrtc.encode_ahead`): sending a frame
is popping a packet.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Executor
from fractions import Fraction

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from pipelines.clock import Clock
from pipelines.frames import AUDIO_RATE
from pipelines.live.pacing import FramePacer
from pipelines.live.session import LiveSession
from serve.webrtc.encode_ahead import EncodeAhead, opus_encoder, to_s16

log = logging.getLogger("serve.webrtc")  # one logger for the package (its name predates the split)


class BgmTrack(MediaStreamTrack):
    """The session's BGM as a WebRTC audio track: 20 ms frames, 48 kHz stereo s16, paced on ``clock``.

    Paced by :class:`~pipelines.live.pacing.FramePacer`: frame ``k`` is due at ``start + k * frame``
    (``start`` = the first ``recv``), so the pacing does not drift; a late reader gets the overdue
    frames at once. When the reader is more than ``max_late_s`` behind (the loop stalled), the
    missed frames are skipped: the pts jump with the clock, as an RTP receiver expects, and the
    count is kept in :attr:`skipped`. Lateness is measured when :meth:`recv` hands a frame out.

    With ``opus=True`` (what sessions use) :meth:`recv` returns each frame already Opus-encoded, as
    an ``av.Packet`` stamped ``k * frame`` (time base 1/48000), which aiortc's sender packetises as
    it is (aiortc would otherwise encode every frame in the loop's default thread pool: a thread hop
    a frame a session, and with many sessions those hops queue behind each other for the GIL until
    the sender falls behind). The frames are encoded ``encode_ahead_s`` ahead (default the session's
    ``LiveOptions.encode_ahead_s``), in batches on the process's encode thread (or ``executor``), by
    :attr:`encoder` (:class:`~serve.webrtc.encode_ahead.EncodeAhead`, which keeps the statistics:
    batches, frames encoded on the loop because the thread was late); 0 encodes each frame on the
    loop when it is due. The encoder is tuned for music (``application=audio``), not speech as aiortc's is.
    """

    kind = "audio"

    def __init__(self, session: LiveSession, clock: Clock, *, max_late_s: float = 0.5, late_s: float = 0.04,
                 opus: bool = False, opus_bitrate: int = 96_000, encode_ahead_s: float | None = None,
                 executor: Executor | None = None) -> None:
        super().__init__()
        self.session = session
        self.clock = clock
        self.samples = session.options.frame_samples
        self.time_base = Fraction(1, AUDIO_RATE)
        #: The pacing and its statistics (frames, skipped, lateness, late_frames, max_lateness_s).
        self.pacer = FramePacer(clock, self.samples, max_late_s=max_late_s, late_s=late_s)
        #: The Opus encoder and its statistics (None: raw frames).
        self.encoder: EncodeAhead | None = None
        if opus:
            ahead_s = session.options.encode_ahead_s if encode_ahead_s is None else encode_ahead_s
            self.encoder = EncodeAhead(opus_encoder(opus_bitrate), self.samples,
                                       int(round(ahead_s / self.pacer.frame_s)), executor=executor)

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
        k = await self._due()
        out: av.AudioFrame | av.Packet
        if self.encoder is None:
            out = av.AudioFrame.from_ndarray(to_s16(self.session.pull_frame()), format="s16", layout="stereo")
            out.sample_rate = AUDIO_RATE
        else:
            out = self.encoder.next_packet(self.session.pull_frame)
            self._top_up()
        out.pts = k * self.samples  # the encoder's own pts start at minus its look-ahead
        out.time_base = self.time_base
        self.pacer.handed_out()
        return out

    async def _due(self) -> int:
        skipped = self.pacer.skipped
        k = await self.pacer.wait()
        if self.pacer.skipped != skipped:
            log.warning("session %s: BGM sender %.0f ms late, skipped %d frames", self.session.session_id,
                        1000 * (self.pacer.skipped - skipped) * self.pacer.frame_s, self.pacer.skipped - skipped)
        if self.readyState != "live" or self.session.closed:
            raise MediaStreamError
        return k

    def _top_up(self) -> None:
        """Pull the next batch from the session when the encoder wants one, each frame told when it goes out."""
        assert self.encoder is not None
        n = self.encoder.wants()
        if n:
            first = self.pacer.next_index + self.encoder.queued
            now = self.clock.now()
            frames = [self.session.pull_frame(max(0.0, self.pacer.due_at(first + j) - now)) for j in range(n)]
            self.encoder.submit(frames)
