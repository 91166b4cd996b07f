"""What a live session needs from the models, as one async interface: :class:`LiveModels`.

:class:`LiveModels` is the seam between the session logic (:mod:`pipelines.live.session`) and
where the models run. :class:`InProcessModels` runs the engines in this process, off the event
loop (a thread pool; numpy, OpenCV and the synth release the GIL). The Ray Serve application
implements the same protocol over deployment handles (``serve.handles.DeploymentModels``), so the
session code is the same in a unit test, in one process and on a cluster. Both run the functions
of :mod:`pipelines.live.inference`.

Every call is *stateless* on the worker side except the music stream, whose worker restores
it from the :class:`~pipelines.live.music.MusicContext` when it has lost it: the rolling
affect state (:class:`~pipelines.analysis.mood.MoodTracker`) travels with each affect call, and
frame encoders are given the previous frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from engines.base import AffectModel, AudioEncoder, FrameEncoder, MusicEngine
from pipelines.analysis.engines import FaceAnalyzer
from pipelines.analysis.mood import MoodTracker
from pipelines.live.inference import AffectStep, affect_steps, encode_audio_window
from pipelines.live.music import MusicReply, MusicRequest, worker_streams

T = TypeVar("T")


@dataclass(frozen=True)
class FeatureNames:
    """The columns the models return, asked for once when a :class:`LiveModels` is made."""

    frame: tuple[str, ...]
    audio: tuple[str, ...]
    faces: tuple[str, ...]  # empty without a face analyzer
    audio_rate: int


class LiveModels(Protocol):
    names: FeatureNames

    async def encode_frames(self, rgb: np.ndarray, previous: np.ndarray | None) -> np.ndarray: ...

    async def analyze_faces(self, gray: np.ndarray) -> np.ndarray: ...

    async def encode_audio(self, samples: np.ndarray) -> tuple[np.ndarray, float]: ...

    async def affect(self, features: Mapping[str, float], tracker: MoodTracker, t_s: float) -> AffectStep: ...

    async def music(self, request: MusicRequest) -> MusicReply: ...

    async def close_music(self, stream_id: str) -> None: ...

    async def run_blocking(self, fn: Callable[..., T], *args: object) -> T:
        """Run the session's own blocking work (resampling a window) off the event loop."""
        ...


class InProcessModels:
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
        self.frame, self.audio, self.affect_model, self.faces = frame, audio, affect, faces
        self.streams = worker_streams(music)
        self.names = FeatureNames(frame.feature_names, audio.feature_names,
                                  tuple(faces.feature_names) if faces is not None else (), audio.sample_rate)
        self._pool = None if inline else ThreadPoolExecutor(max_workers=threads, thread_name_prefix="live")

    @classmethod
    def default(cls, faces: bool = True, inline: bool = False, music: MusicEngine | None = None) -> InProcessModels:
        """The embedded default engines (and the procedural composer unless ``music`` is given)."""
        from engines.composer import ProceduralMusicEngine
        from pipelines.analysis.engines import default_engines

        e = default_engines(faces=faces)
        return cls(e.frame, e.audio, e.affect, music or ProceduralMusicEngine(), e.faces, inline=inline)

    async def run_blocking(self, fn: Callable[..., T], *args: object) -> T:
        """Run blocking work on this pool (or inline)."""
        if self._pool is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def encode_frames(self, rgb: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        return await self.run_blocking(self.frame.encode, rgb, previous)

    async def analyze_faces(self, gray: np.ndarray) -> np.ndarray:
        if self.faces is None:
            return np.zeros((len(gray), 0), np.float32)
        return await self.run_blocking(self.faces.analyze, gray)

    async def encode_audio(self, samples: np.ndarray) -> tuple[np.ndarray, float]:
        return await self.run_blocking(encode_audio_window, self.audio, samples)

    async def affect(self, features: Mapping[str, float], tracker: MoodTracker, t_s: float) -> AffectStep:
        steps = await self.run_blocking(affect_steps, self.affect_model, [(features, tracker, t_s)])
        return steps[0]

    async def music(self, request: MusicRequest) -> MusicReply:
        return await self.run_blocking(self.streams.generate, request)

    async def close_music(self, stream_id: str) -> None:
        self.streams.close(stream_id)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
