"""What a live session needs from the engines, as one async interface.

:class:`LiveBackend` is the seam between the session logic (``pipelines.live.session``) and where the
models run. :class:`LocalBackend` runs the engines in this process, off the event loop (a
thread pool; numpy, OpenCV and the synth release the GIL). The Ray Serve application
implements the same protocol with deployment handles (``serve.backend``), so the session code
is the same in a unit test, in one process and on a cluster.

Every call is *stateless* on the worker side except the music stream, whose worker restores
it from the :class:`~pipelines.live.music.MusicContext` when it has lost it: the rolling
affect state (:class:`~pipelines.analysis.segments.MoodTracker`) travels with each affect call, and
frame encoders are given the previous frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from engines.base import AffectEstimate, AffectModel, AudioEncoder, FrameEncoder, MusicEngine
from pipelines.analysis.analyze import FaceAnalyzer
from pipelines.analysis.segments import MoodChange, MoodTracker
from pipelines.live.music import MusicReply, MusicRequest, StreamTable

T = TypeVar("T")


@dataclass(frozen=True)
class FeatureNames:
    frame: tuple[str, ...]
    audio: tuple[str, ...]
    faces: tuple[str, ...]  # empty without a face analyzer
    audio_rate: int


@dataclass(frozen=True)
class AffectStep:
    estimate: AffectEstimate
    change: MoodChange | None
    tracker: MoodTracker


def affect_step(model: AffectModel, features: Mapping[str, float], tracker: MoodTracker, t_s: float) -> AffectStep:
    """One window through the affect model and the rolling mood tracker (the tracker is updated in place)."""
    estimate = model.predict([dict(features)])[0]
    change = tracker.push(t_s, estimate)
    return AffectStep(estimate, change, tracker)


def encode_audio_window(encoder: AudioEncoder, samples: np.ndarray) -> tuple[np.ndarray, float]:
    """Feature row of one mono window plus its mean speech probability over the last half second."""
    # one pass over the window for both (encode + speech_activity would analyse it twice)
    rows, (times, prob) = encoder.encode_windows(samples, [(0.0, len(samples) / encoder.sample_rate)])
    row = rows[0]
    tail = prob[times >= times[-1] - 0.5] if len(times) else prob
    return row, float(np.mean(tail)) if len(tail) else 0.0


class LiveBackend(Protocol):
    names: FeatureNames

    async def encode_frames(self, rgb: np.ndarray, previous: np.ndarray | None) -> np.ndarray: ...

    async def analyze_faces(self, gray: np.ndarray) -> np.ndarray: ...

    async def encode_audio(self, samples: np.ndarray) -> tuple[np.ndarray, float]: ...

    async def affect(self, features: Mapping[str, float], tracker: MoodTracker, t_s: float) -> AffectStep: ...

    async def music(self, request: MusicRequest) -> MusicReply: ...

    async def close_music(self, stream_id: str) -> None: ...


class LocalBackend:
    """The engines in this process; blocking work runs in a thread pool (or inline for tests)."""

    def __init__(
        self,
        frame: FrameEncoder,
        audio: AudioEncoder,
        affect: AffectModel,
        music: MusicEngine,
        faces: FaceAnalyzer | None = None,
        *,
        threads: int = 2,
        inline: bool = False,
    ) -> None:
        self._frame, self._audio, self._affect, self._faces = frame, audio, affect, faces
        self.streams = StreamTable(music)
        self.names = FeatureNames(frame.feature_names, audio.feature_names,
                                  tuple(faces.feature_names) if faces is not None else (), audio.sample_rate)
        self._inline = inline
        self._pool = None if inline else ThreadPoolExecutor(max_workers=threads, thread_name_prefix="live")

    @classmethod
    def default(cls, faces: bool = True, inline: bool = False) -> LocalBackend:
        from engines.composer import ProceduralMusicEngine
        from pipelines.analysis.analyze import default_engines

        e = default_engines(faces=faces)
        return cls(e.frame, e.audio, e.affect, ProceduralMusicEngine(), e.faces, inline=inline)

    async def run_blocking(self, fn: Callable[..., T], *args: object) -> T:
        """Run blocking work on this backend's pool (or inline)."""
        if self._pool is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def encode_frames(self, rgb: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        return await self.run_blocking(self._frame.encode, rgb, previous)

    async def analyze_faces(self, gray: np.ndarray) -> np.ndarray:
        if self._faces is None:
            return np.zeros((len(gray), 0), np.float32)
        return await self.run_blocking(self._faces.analyze, gray)

    async def encode_audio(self, samples: np.ndarray) -> tuple[np.ndarray, float]:
        return await self.run_blocking(encode_audio_window, self._audio, samples)

    async def affect(self, features: Mapping[str, float], tracker: MoodTracker, t_s: float) -> AffectStep:
        return await self.run_blocking(affect_step, self._affect, features, tracker, t_s)

    async def music(self, request: MusicRequest) -> MusicReply:
        return await self.run_blocking(self.streams.generate, request)

    async def close_music(self, stream_id: str) -> None:
        self.streams.close(stream_id)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
