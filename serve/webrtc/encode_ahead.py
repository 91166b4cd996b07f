"""Opus-encoding a live session's BGM ahead of what is sent, off the event loop, in batches.

**Why.** Encoding each 20 ms frame on the event loop when it is due costs the loop the libopus work
(~0.1-0.2 ms a frame a session) and more: PyAV releases the GIL around the encoder's C calls, so at
every frame the loop hands the GIL away and then waits to get it back behind the process's other
threads (aiortc's decoder threads, two a session). A py-spy profile of the gateway at 12 sessions on
2 cores had the loop thread ~76 % busy, ~21 % of it in the encode. Handing each frame to a thread
instead (what aiortc does with raw frames) is a thread hop a frame a session, and those hops queue
behind each other for the GIL.

**How.** :class:`EncodeAhead` keeps up to ``ahead_frames`` frames pulled from the session and
encoded (or being encoded) ahead of what the track has sent. When fewer than ``ahead_frames -
batch_frames + 1`` are queued, the track pulls a batch from the session on the loop (cheap numpy),
converts it to s16 and hands the whole batch to the process's one encode thread
(:func:`encode_pool`) in one call. Each track keeps its own libopus context (the encoder is
stateful) and has at most one batch in flight, so its frames are encoded in order. Sending a frame
is then popping a ready packet; the loop is not woken when a batch ends (the thread clears the
track's in-flight flag, which the loop reads at its next frame), so a batch costs the loop one
hand-off and nothing more.

**A late encode thread** (a stalled process, the thread waiting for the GIL) does not make a frame
late if that can be helped: when a frame is due and no packet is ready, the track encodes on the
loop the next frame pulled but not yet encoded (taken out of the batch in flight; a newly pulled
one when none is waiting) and counts it in :attr:`EncodeAhead.fallback_frames`. The thread and the
loop encode one frame at a time under the track's lock, so the frames stay in order and the
encoder is never used by two threads at once; the loop waits at most for the one frame the thread
is encoding, counted in :attr:`EncodeAhead.encode_waits`.

**What ``ahead`` costs.** Frames are pulled from the session up to ``ahead_frames`` frames
(``LiveOptions.encode_ahead_s``, 0.12 s) before they go out, so what the session decides per frame
-- ducking under speech, the client's audio in the mix, a mood change's splice -- is heard up to
that much later, and the music shown in reports plays that much before it is heard. The track tells
the session when each frame will go out (``LiveSession.pull_frame(heard_in_s)``), so a mood
change's reported latency counts to then. With ``mix_original`` the client's audio is taken from
its buffer up to that much earlier too, so that buffer runs short (padded with silence, as when a
client frame is late) until it holds that much more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from fractions import Fraction

import av
import numpy as np

from pipelines.frames import AUDIO_RATE

log = logging.getLogger("serve.webrtc")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def encode_pool() -> ThreadPoolExecutor:
    """The process's one BGM encode thread, shared by every track (created on first use)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bgm-opus")
        return _pool


def opus_encoder(bit_rate: int = 96_000) -> av.AudioCodecContext:
    """A libopus context for 48 kHz stereo s16, tuned for music (``application=audio``)."""
    codec = av.CodecContext.create("libopus", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.bit_rate = bit_rate
    codec.format = "s16"
    codec.layout = "stereo"
    codec.sample_rate = AUDIO_RATE
    codec.time_base = Fraction(1, AUDIO_RATE)
    codec.options = {"application": "audio"}
    return codec


def to_s16(pcm: np.ndarray) -> np.ndarray:
    """A float ``(n, 2)`` frame as the ``(1, 2 n)`` interleaved s16 array PyAV takes."""
    return (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)


class EncodeAhead:
    """One track's packets, encoded ahead in batches (see the module doc).

    The track calls :meth:`next_packet` when a frame is due, then :meth:`wants` and, when it says
    so, :meth:`submit` with that many frames pulled from the session. ``ahead_frames=0`` encodes
    every frame on the loop when it is due (nothing ahead, nothing counted as a fallback).
    """

    def __init__(self, codec: av.AudioCodecContext, frame_samples: int, ahead_frames: int, *,
                 batch_frames: int | None = None, executor: Executor | None = None) -> None:
        if ahead_frames < 0:
            raise ValueError(f"ahead_frames must be >= 0, got {ahead_frames}")
        self.codec = codec
        self.samples = frame_samples
        self.ahead_frames = ahead_frames
        #: Frames a batch pulls (at least; the first tops the queue up from empty): half the lead, so the
        #: thread has the other half to deliver the batch before its first frame is due.
        self.batch_frames = min(ahead_frames, batch_frames or (ahead_frames + 1) // 2)
        self.executor = executor
        self._pcm: deque[np.ndarray] = deque()  # pulled, s16, not yet encoded
        self._ready: deque[av.Packet] = deque()  # encoded, not yet handed out
        self._lock = threading.Lock()  # one frame's encode; the thread and the loop take turns
        self._encoded = 0
        self._busy = False  # a batch is with the thread (set by the loop, cleared by the thread: no wake-up)
        self._started = False
        #: Batches handed to the encode thread, and the frames it encoded.
        self.batches = 0
        self.thread_frames = 0
        #: Frames encoded on the loop (the first frame, every frame with ``ahead_frames=0``, fallbacks), and
        #: the fallbacks: frames the thread had not encoded when they were due (it was late).
        self.inline_frames = 0
        self.fallback_frames = 0
        #: Times a due frame waited for the encode thread to finish the frame it was encoding, and the
        #: longest such wait (s of real time).
        self.encode_waits = 0
        self.max_encode_wait_s = 0.0
        #: The longest a batch took from its submission to its end (s of real time): the thread's lateness.
        self.max_batch_s = 0.0
        self._submitted = 0.0

    @property
    def queued(self) -> int:
        """Frames pulled and not yet handed out (encoded or waiting to be)."""
        return len(self._ready) + len(self._pcm)

    @property
    def in_flight(self) -> bool:
        """A batch is with the encode thread (at most one a track)."""
        return self._busy

    @property
    def late_frames(self) -> int:
        """Frames the encode thread had not delivered when they were due (waited for or encoded inline)."""
        return self.fallback_frames + self.encode_waits

    def wants(self) -> int:
        """How many frames to pull now for a batch: 0 while one is in flight or enough are queued."""
        q = self.queued
        if self._busy or q > self.ahead_frames - self.batch_frames:
            return 0
        return self.ahead_frames - q

    def submit(self, frames: list[np.ndarray]) -> None:
        """Queue these frames (float ``(n, 2)``, in order) and hand their encode to the thread, in one call."""
        if self._busy:
            raise RuntimeError("a batch of this track is still being encoded")
        pcm = [to_s16(f) for f in frames]
        with self._lock:
            self._pcm.extend(pcm)
        self._busy = True
        self._submitted = time.perf_counter()
        (self.executor if self.executor is not None else encode_pool()).submit(self._drain)
        self.batches += 1

    def next_packet(self, pull: Callable[[], np.ndarray]) -> av.Packet:
        """The next frame's packet: the ready one, else the next pulled frame encoded here (``pull()``
        gives a new frame when none is waiting). Never waits for more than the thread's current frame."""
        started, self._started = self._started, True
        if self._ready:
            return self._ready.popleft()
        t0 = time.perf_counter()
        with self._lock:
            if self._ready:  # the thread was encoding this very frame
                self.encode_waits += 1
                self.max_encode_wait_s = max(self.max_encode_wait_s, time.perf_counter() - t0)
            else:
                while not self._ready:  # libopus gives one packet a frame
                    self._encode(self._pcm.popleft() if self._pcm else to_s16(pull()))
                    self.inline_frames += 1
                if started and self.ahead_frames:
                    if not self.fallback_frames:
                        log.warning("BGM encode thread late: frames encoded on the event loop")
                    self.fallback_frames += 1
        return self._ready.popleft()

    def _encode(self, pcm: np.ndarray) -> None:
        """Encode one s16 frame into the ready queue (the caller holds the lock)."""
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._encoded * self.samples
        frame.time_base = Fraction(1, AUDIO_RATE)
        self._encoded += 1
        self._ready.extend(self.codec.encode(frame))

    def _drain(self) -> None:
        """The encode thread: encode the waiting frames one at a time, in order, until none is left. The
        loop is not woken when it ends: it pops the packets as they come and sees :attr:`in_flight` drop."""
        try:
            while True:
                with self._lock:
                    if not self._pcm:
                        self.max_batch_s = max(self.max_batch_s, time.perf_counter() - self._submitted)
                        self._busy = False
                        return
                    self._encode(self._pcm.popleft())
                    self.thread_frames += 1
        except BaseException:  # the frames left are encoded on the loop, where the error surfaces in recv
            log.exception("BGM encode thread failed")
            self._busy = False
            raise
