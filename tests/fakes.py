"""Fakes shared by the tests: scripted music engines, live models with injected latency and faults, a hooks recorder.

The fakes stand *around* the code under test, never in place of it:

* :class:`ScriptedMusicEngine` -- a tiny music engine with a known plan (fixed tempo per emotion, a
  transition bar on every change, like the procedural composer), so a scheduler's own logic is
  what a test checks; :class:`InstantMusicEngine` switches at the next 2 s chunk, like MusicGen.
* :class:`FaultyModels` -- wraps real :class:`~pipelines.live.models.LiveModels` (normally
  :class:`~pipelines.live.models.InProcessModels` with the embedded engines) and injects, per
  method, latency on an injectable clock (the :class:`~pipelines.clock.VirtualClock` of the
  test, or real time), failures on given call numbers, and the loss of every music stream (a
  music replica replaced mid-session).
* :class:`HooksRecorder` -- :class:`~pipelines.live.reports.LiveHooks` that records what it is told.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

import numpy as np

from engines.base import BarInfo, MoodControl, MusicChunk, MusicEngine, MusicStream, MusicStreamOptions
from pipelines.analysis.mood import MoodTracker
from pipelines.clock import Clock, VirtualClock
from pipelines.live.inference import AffectStep
from pipelines.live.models import FeatureNames, InProcessModels
from pipelines.live.music import MusicReply, MusicRequest, StreamTable

T = TypeVar("T")

# --------------------------------------------------------------------------- music engines

#: Tempo of each emotion in :class:`ScriptedMusicEngine`.
SCRIPTED_TEMPO = {"sad": 70.0, "exciting": 128.0, "relaxing": 80.0, "happy": 110.0, "neutral": 90.0,
                  "tense": 100.0, "fearful": 95.0}


class ScriptedStream(MusicStream):
    """One bar of silence per call at the emotion's tempo; a change first plays a transition bar."""

    def __init__(self, sample_rate: int) -> None:
        self.sr = sample_rate
        self.t = 0.0
        self.section = -1
        self.emotion: str | None = None
        self.controls: list[MoodControl] = []

    def generate(self, control: MoodControl, min_duration_s: float = 0.0) -> MusicChunk:
        self.controls.append(control)
        transition = self.emotion is not None and control.emotion != self.emotion
        if self.emotion is None or transition:
            self.section += 1
        tempo = SCRIPTED_TEMPO[self.emotion if transition and self.emotion else control.emotion]
        prev = self.emotion
        self.emotion = control.emotion
        n = int(round(4 * 60 / tempo * self.sr))
        emotion = (prev or "") if transition else control.emotion
        bar = BarInfo(self.t, n / self.sr, tempo, "C", "major", "lofi", emotion, self.section, transition, "C")
        chunk = MusicChunk(np.zeros((n, 2), np.float32), self.sr, self.t, (bar,))
        self.t += n / self.sr
        return chunk


class ScriptedMusicEngine(MusicEngine):
    name = "scripted"
    change_latency_chunks = 1  # it plays a transition bar, like the procedural composer

    def __init__(self) -> None:
        self.streams: list[ScriptedStream] = []

    def open_stream(self, options: MusicStreamOptions) -> MusicStream:
        s = ScriptedStream(options.sample_rate)
        self.streams.append(s)
        return s


class InstantStream(MusicStream):
    """Switches at the next chunk, no transition (like MusicGen); 2 s chunks at 8 kHz."""

    def __init__(self) -> None:
        self.t = 0.0

    def generate(self, control: MoodControl, min_duration_s: float = 0.0) -> MusicChunk:
        bar = BarInfo(self.t, 2.0, 100.0, "?", "unknown", "lofi", control.emotion, 0, False, "?")
        chunk = MusicChunk(np.zeros((16000, 2), np.float32), 8000, self.t, (bar,))
        self.t += 2.0
        return chunk


class InstantMusicEngine(MusicEngine):
    name = "instant"

    def open_stream(self, options: MusicStreamOptions) -> MusicStream:
        return InstantStream()


# --------------------------------------------------------------------------- live models


class InjectedFailure(RuntimeError):
    """What :class:`FaultyModels` raises on a call it was told to fail."""


class FaultyModels:
    """Real :class:`~pipelines.live.models.LiveModels` with latency and faults injected around them.

    ``latency_s``: seconds to wait before each call of a method (on ``clock``, or real time when
    ``clock`` is None). ``fail_calls``: the call numbers (1-based, per method) that raise
    :class:`InjectedFailure` instead of running. ``lose_streams_at``: on that ``music`` call the
    music worker loses every stream it holds (a fresh replica), so the session must restore.
    :attr:`calls` counts the calls per method; :attr:`closed_streams` lists closed stream ids.
    """

    def __init__(self, inner: InProcessModels | None = None, *, clock: Clock | None = None,
                 latency_s: Mapping[str, float] | None = None,
                 fail_calls: Mapping[str, Collection[int]] | None = None,
                 lose_streams_at: int | None = None) -> None:
        self.inner = inner or InProcessModels.default(faces=False, inline=True)
        self.names: FeatureNames = self.inner.names
        self.clock = clock
        self.latency_s = dict(latency_s or {})
        self.fail_calls = {k: set(v) for k, v in (fail_calls or {}).items()}
        self.lose_streams_at = lose_streams_at
        self.calls: Counter[str] = Counter()
        self.closed_streams: list[str] = []

    async def _call(self, method: str, run: Callable[[], Any]) -> Any:
        self.calls[method] += 1
        delay = self.latency_s.get(method, 0.0)
        if delay > 0:
            await (self.clock.sleep(delay) if self.clock is not None else asyncio.sleep(delay))
        if self.calls[method] in self.fail_calls.get(method, ()):
            raise InjectedFailure(f"injected failure of {method} call {self.calls[method]}")
        return await run()

    async def encode_frames(self, rgb: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        result: np.ndarray = await self._call("encode_frames", lambda: self.inner.encode_frames(rgb, previous))
        return result

    async def analyze_faces(self, gray: np.ndarray) -> np.ndarray:
        result: np.ndarray = await self._call("analyze_faces", lambda: self.inner.analyze_faces(gray))
        return result

    async def encode_audio(self, samples: np.ndarray) -> tuple[np.ndarray, float]:
        result: tuple[np.ndarray, float] = await self._call("encode_audio", lambda: self.inner.encode_audio(samples))
        return result

    async def affect(self, features: Mapping[str, float], tracker: MoodTracker, t_s: float) -> AffectStep:
        result: AffectStep = await self._call("affect", lambda: self.inner.affect(features, tracker, t_s))
        return result

    async def music(self, request: MusicRequest) -> MusicReply:
        if self.calls["music"] + 1 == self.lose_streams_at:
            self.inner.streams = StreamTable(self.inner.streams.engine)  # a fresh replica without our streams
        result: MusicReply = await self._call("music", lambda: self.inner.music(request))
        return result

    async def close_music(self, stream_id: str) -> None:
        await self._call("close_music", lambda: self.inner.close_music(stream_id))
        self.closed_streams.append(stream_id)

    async def run_blocking(self, fn: Callable[..., T], *args: object) -> T:
        return await self.inner.run_blocking(fn, *args)

    def shutdown(self) -> None:
        self.inner.shutdown()


# --------------------------------------------------------------------------- hooks


class HooksRecorder:
    """:class:`~pipelines.live.reports.LiveHooks` that keep what they are told."""

    def __init__(self) -> None:
        self.stages: dict[str, int] = {}
        self.underruns = 0
        self.latencies: list[float] = []
        self.dropped = 0
        self.retries: dict[str, int] = {}
        #: Each change of the analysis degrade level: (level, previous).
        self.degrades: list[tuple[int, int]] = []

    def stage(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0) + 1

    def underrun(self) -> None:
        self.underruns += 1

    def mood_change(self, latency_s: float) -> None:
        self.latencies.append(latency_s)

    def windows_dropped(self, n: int) -> None:
        self.dropped += n

    def retry(self, call: str) -> None:
        self.retries[call] = self.retries.get(call, 0) + 1

    def degraded(self, level: int, previous: int) -> None:
        self.degrades.append((level, previous))


class LimitedMusicEngine(MusicEngine):
    """Another engine with at most ``capacity`` open streams; one more is :class:`~engines.base.EngineBusy`
    (what the streaming MusicGen engine raises when every slot of its GPU is taken)."""

    def __init__(self, inner: MusicEngine, capacity: int, name: str = "limited") -> None:
        self.inner, self.capacity, self.name = inner, capacity, name
        self.change_latency_chunks = inner.change_latency_chunks
        self.open = 0

    def open_stream(self, options: MusicStreamOptions) -> MusicStream:
        from engines.base import EngineBusy

        if self.open >= self.capacity:
            raise EngineBusy(f"all {self.capacity} streams in use")
        self.open += 1
        stream = self.inner.open_stream(options)
        engine = self

        class _Counted(MusicStream):
            def generate(self, control: MoodControl, min_duration_s: float = 0.0) -> MusicChunk:
                return stream.generate(control, min_duration_s)

            def close(self) -> None:
                engine.open -= 1
                stream.close()

        return _Counted()


class ClockedHooks(HooksRecorder):
    """Also notes the clock time (= media time: the media is pushed in real time from 0) of each change heard."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock
        self.heard_at: list[float] = []

    def mood_change(self, latency_s: float) -> None:
        super().mood_change(latency_s)
        self.heard_at.append(self.clock.now())
