"""The music side of live sessions: what a session sends a music worker, and the streams a worker keeps.

* :class:`MusicContext` / :class:`MusicRequest` / :class:`MusicReply` -- what a caller sends a
  (possibly remote, possibly restarted) music worker and gets back. The context is all the
  worker needs to continue a stream or, if it no longer has it, to restore one.
* :class:`StreamTable` -- the worker side: open streams keyed by stream id (bounded, idle ones
  closed), restoring from the context when a request arrives for a stream it does not hold
  (a new replica after a failure, or after eviction). A restored stream is a fresh piece in
  the same mood, seeded from the context; the reply says so and the caller crossfades. A context
  may name one of the worker's engines; when that engine is busy (all its stream slots taken,
  :class:`~engines.base.EngineBusy`) the stream plays the worker's fallback engine instead, and the
  reply says which engine plays and why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from engines.base import BarInfo, EngineBusy, MoodControl, MusicEngine, MusicStream, MusicStreamOptions
from pipelines.frames import AUDIO_RATE

log = logging.getLogger(__name__)


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
    #: The music engine the session asked for (None: the worker's default).
    engine: str | None = None


@dataclass(frozen=True)
class MusicRequest:
    context: MusicContext
    control: MoodControl
    min_duration_s: float = 0.0


@dataclass(frozen=True)
class MusicReply:
    audio: np.ndarray  # (n, 2) float32 at AUDIO_RATE
    bars: tuple[BarInfo, ...]
    context: MusicContext
    #: True when the worker did not hold the stream and started a fresh one from the context.
    restored: bool = False
    #: Wall seconds the worker spent generating.
    compute_s: float = 0.0
    #: The engine that made the audio, and why it is not the one asked for (its slots were all taken).
    engine: str = ""
    fallback: str | None = None


@dataclass
class _Held:
    stream: MusicStream
    engine: str
    generated: int
    generation: int
    last_used: float
    #: Stream time (s) of this stream's first sample: a restored stream starts where the lost one was.
    offset_s: float = 0.0
    fallback: str | None = None


@dataclass
class StreamTable:
    """Open music streams of one worker (see module doc). Thread-safe."""

    #: The worker's default engine (a context that names none gets it).
    engine: MusicEngine
    max_streams: int = 256
    idle_s: float = 120.0
    sample_rate: int = AUDIO_RATE
    clock: Callable[[], float] = time.monotonic
    #: Other engines a context may name, by name.
    engines: dict[str, MusicEngine] = field(default_factory=dict)
    #: What a stream plays when the engine it asked for is busy (all its slots taken): admission control
    #: picks this instead of degrading every stream of that engine. None: the busy error goes to the caller.
    fallback: MusicEngine | None = None
    _streams: OrderedDict[str, _Held] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        return len(self._streams)

    def counts(self) -> dict[str, int]:
        """Open streams per engine name (every engine of this worker, zeros included)."""
        with self._lock:
            out = dict.fromkeys([self.engine.name, *self.engines], 0)
            for held in self._streams.values():
                out[held.engine] = out.get(held.engine, 0) + 1
            return out

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

    def engine_for(self, name: str | None) -> MusicEngine:
        """The engine a context names (None: the default); ``ValueError`` when this worker has none such."""
        if name is None or name == self.engine.name:
            return self.engine
        if name in self.engines:
            return self.engines[name]
        known = ", ".join(sorted({self.engine.name, *self.engines}))
        raise ValueError(f"no music engine {name!r} on this worker (it has {known})")

    def _take(self, ctx: MusicContext, now: float) -> tuple[_Held, bool]:
        held = self._streams.get(ctx.stream_id)
        if held is not None and held.generated == ctx.generated and held.generation == ctx.generation:
            self._streams.move_to_end(ctx.stream_id)
            return held, False
        if held is not None:  # the caller's context disagrees (it restored elsewhere): start over
            self._close(ctx.stream_id)
        generation = ctx.generation + (1 if ctx.generated > 0 else 0)
        seed = (ctx.seed * 1_000_003 + generation) % (2**31)
        options = MusicStreamOptions(sample_rate=self.sample_rate, seed=seed, style=ctx.style)
        engine = self.engine_for(ctx.engine)
        fallback = None
        try:
            stream = engine.open_stream(options)
        except EngineBusy as exc:
            if self.fallback is None:
                raise
            fallback = f"{engine.name} is busy ({exc}): {self.fallback.name} instead"
            log.warning("music stream %s: %s", ctx.stream_id, fallback)
            engine = self.fallback
            stream = engine.open_stream(options)
        held = _Held(stream, engine.name, ctx.generated, generation, now, ctx.generated / self.sample_rate,
                     fallback)
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
        return MusicReply(audio, bars, ctx, restored, time.perf_counter() - t0, held.engine, held.fallback)


def worker_streams(default: MusicEngine, **kw: object) -> StreamTable:
    """The streams of a music worker whose engine is ``default``: the procedural composer is there too --
    for sessions that ask for it, and in place of a busy ``default`` (admission control)."""
    from engines.composer import ProceduralMusicEngine

    if default.name == ProceduralMusicEngine.name:
        return StreamTable(default, **kw)  # type: ignore[arg-type]
    composer = ProceduralMusicEngine()
    return StreamTable(default, engines={composer.name: composer}, fallback=composer, **kw)  # type: ignore[arg-type]
