"""Live music: the playout buffer a BGM track reads from, and the music streams a worker keeps.

* :class:`PlayoutBuffer` -- generated BGM waiting to be played, in output samples (48 kHz
  stereo). A paced reader takes fixed frames (20 ms); an empty buffer is an *underrun*
  (silence is sent and counted). The buffer is bounded: generating far ahead would delay
  mood changes, so the session keeps only ``lead_s`` or so ahead of the play head.
  :meth:`PlayoutBuffer.splice` replaces everything after a point with new audio through an
  equal-power crossfade: how a live session switches to the music of a new mood without
  waiting for the old piece's bar to end.
* :class:`MusicContext` / :class:`MusicRequest` / :class:`MusicReply` -- what a caller sends a
  (possibly remote, possibly restarted) music worker and gets back. The context is all the
  worker needs to continue a stream or, if it no longer has it, to restore one.
* :class:`StreamTable` -- the worker side: open streams keyed by stream id (bounded, idle ones
  closed), restoring from the context when a request arrives for a stream it does not hold
  (a new replica after a failure, or after eviction). A restored stream is a fresh piece in
  the same mood, seeded from the context; the reply says so and the caller crossfades.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from engines.base import BarInfo, MoodControl, MusicEngine, MusicStream, MusicStreamOptions

log = logging.getLogger(__name__)

OUTPUT_RATE = 48_000


def equal_power(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade_out, fade_in) gains of an equal-power crossfade over ``n`` samples."""
    x = (np.arange(n, dtype=np.float32) + 0.5) / max(1, n)
    return np.cos(0.5 * np.pi * x).astype(np.float32), np.sin(0.5 * np.pi * x).astype(np.float32)


class PlayoutBuffer:
    """Stereo float32 audio from absolute output sample ``head`` onwards (see module doc)."""

    def __init__(self, sample_rate: int = OUTPUT_RATE, max_s: float = 30.0) -> None:
        self.sample_rate = sample_rate
        self.head = 0  # absolute index of the next sample to play
        self._data = np.zeros((0, 2), np.float32)
        self._max = int(max_s * sample_rate)
        self.underruns = 0  # frames that could not be filled completely
        self.started = False

    @property
    def end(self) -> int:
        """Absolute index just after the last buffered sample."""
        return self.head + self._data.shape[0]

    @property
    def buffered_s(self) -> float:
        return self._data.shape[0] / self.sample_rate

    def append(self, audio: np.ndarray) -> None:
        audio = np.asarray(audio, np.float32).reshape(-1, 2)
        self._data = np.concatenate([self._data, audio])
        if self._data.shape[0] > self._max:
            raise OverflowError(f"playout buffer above {self._max / self.sample_rate:.0f} s: the producer runs away")

    def splice(self, at: int, audio: np.ndarray, fade: int) -> int:
        """Replace the audio from absolute sample ``at`` with ``audio``, crossfading over ``fade`` samples.

        ``at`` is clamped to the play head. The old audio (if buffered) fades out over the first
        ``fade`` samples of the new audio, which fades in. Returns the (clamped) splice point.
        """
        at = max(at, self.head)
        audio = np.asarray(audio, np.float32).reshape(-1, 2).copy()
        keep = at - self.head
        old_tail = self._data[keep : keep + fade]
        n = min(fade, old_tail.shape[0], audio.shape[0])
        if n > 0:
            out_g, in_g = equal_power(fade)
            audio[:n] = audio[:n] * in_g[:n, None] + old_tail[:n] * out_g[:n, None]
        if keep > self._data.shape[0]:  # a gap before the splice point: silence
            self._data = np.concatenate([self._data, np.zeros((keep - self._data.shape[0], 2), np.float32)])
        self._data = np.concatenate([self._data[:keep], audio])
        return at

    def pull(self, n: int) -> np.ndarray:
        """The next ``n`` samples (zeros where nothing is buffered; counted as an underrun once started)."""
        out = self._data[:n]
        self._data = self._data[n:]
        if out.shape[0] < n:
            if self.started:
                self.underruns += 1
            out = np.concatenate([out, np.zeros((n - out.shape[0], 2), np.float32)])
        else:
            self.started = True
        self.head += n
        return out


@dataclass(frozen=True)
class MusicContext:
    """Everything a music worker needs to continue (or restore) one session's stream."""

    stream_id: str
    seed: int = 0
    style: str | None = None
    #: Output samples of this stream generated so far (stream time of the next chunk).
    generated: int = 0
    #: Restores so far (each restore re-seeds, so a restored piece differs from the lost one).
    generation: int = 0


@dataclass(frozen=True)
class MusicRequest:
    context: MusicContext
    control: MoodControl
    min_duration_s: float = 0.0


@dataclass(frozen=True)
class MusicReply:
    audio: np.ndarray  # (n, 2) float32 at OUTPUT_RATE
    bars: tuple[BarInfo, ...]
    context: MusicContext
    #: True when the worker did not hold the stream and started a fresh one from the context.
    restored: bool = False
    #: Wall seconds the worker spent generating.
    compute_s: float = 0.0


@dataclass
class _Held:
    stream: MusicStream
    generated: int
    generation: int
    last_used: float
    #: Stream time (s) of this stream's first sample: a restored stream starts where the lost one was.
    offset_s: float = 0.0


@dataclass
class StreamTable:
    """Open music streams of one worker (see module doc). Thread-safe."""

    engine: MusicEngine
    max_streams: int = 256
    idle_s: float = 120.0
    sample_rate: int = OUTPUT_RATE
    clock: Callable[[], float] = time.monotonic
    _streams: OrderedDict[str, _Held] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        return len(self._streams)

    def _evict(self, now: float) -> None:
        for sid in [s for s, h in self._streams.items() if now - h.last_used > self.idle_s]:
            self._close(sid)
        while len(self._streams) > self.max_streams:
            self._close(next(iter(self._streams)))

    def _close(self, sid: str) -> None:
        held = self._streams.pop(sid, None)
        if held is not None:
            held.stream.close()

    def close(self, stream_id: str) -> None:
        with self._lock:
            self._close(stream_id)

    def _take(self, ctx: MusicContext, now: float) -> tuple[_Held, bool]:
        held = self._streams.get(ctx.stream_id)
        if held is not None and held.generated == ctx.generated and held.generation == ctx.generation:
            self._streams.move_to_end(ctx.stream_id)
            return held, False
        if held is not None:  # the caller's context disagrees (it restored elsewhere): start over
            self._close(ctx.stream_id)
        generation = ctx.generation + (1 if ctx.generated > 0 else 0)
        seed = (ctx.seed * 1_000_003 + generation) % (2**31)
        stream = self.engine.open_stream(MusicStreamOptions(sample_rate=self.sample_rate, seed=seed, style=ctx.style))
        held = _Held(stream, ctx.generated, generation, now, ctx.generated / self.sample_rate)
        self._streams[ctx.stream_id] = held
        while len(self._streams) > self.max_streams:  # the least recently used go first
            self._close(next(iter(self._streams)))
        return held, ctx.generated > 0

    def generate(self, request: MusicRequest) -> MusicReply:
        t0 = time.perf_counter()
        with self._lock:
            now = self.clock()
            self._evict(now)
            held, restored = self._take(request.context, now)
            held.last_used = now
        # Streams are independent; one stream is only ever used by one caller at a time.
        chunk = held.stream.generate(request.control, request.min_duration_s)
        audio = np.asarray(chunk.audio, np.float32)
        offset = held.offset_s
        bars = tuple(replace(b, start_s=b.start_s + offset) for b in chunk.bars) if offset else chunk.bars
        held.generated += audio.shape[0]
        ctx = replace(request.context, generated=held.generated, generation=held.generation)
        if restored:
            log.info("music stream %s restored (generation %d) at %.1f s", ctx.stream_id, ctx.generation,
                     request.context.generated / self.sample_rate)
        return MusicReply(audio, bars, ctx, restored, time.perf_counter() - t0)
