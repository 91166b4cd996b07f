""":class:`DeploymentModels`: the :class:`~pipelines.live.models.LiveModels` of a live session, over Serve handles.

The session code (``pipelines.live.session``) is the same as with the in-process
:class:`~pipelines.live.models.InProcessModels`; each call becomes a request to the deployment
of :mod:`serve.deployments`. Music requests carry the stream id as the multiplexed model id,
so a stream's chunks go to the replica that holds it (see :mod:`serve.deployments`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
from ray.serve.handle import DeploymentHandle

from pipelines.analysis.mood import MoodTracker
from pipelines.live.inference import AffectStep
from pipelines.live.models import FeatureNames
from pipelines.live.music import MusicReply, MusicRequest

T = TypeVar("T")

#: Deployment names in the application (``serve.app.build_app``).
DEPLOYMENTS = ("FrameEncoder", "AudioEncoder", "AffectFusion", "MusicGenerator")


class DeploymentModels:
    """Create with :meth:`connect` (it asks the deployments for their feature names once)."""

    def __init__(self, frame: DeploymentHandle, audio: DeploymentHandle, affect: DeploymentHandle,
                 music: DeploymentHandle, names: FeatureNames) -> None:
        self._frame, self._audio, self._affect, self._music = frame, audio, affect, music
        self.names = names

    @classmethod
    async def connect(cls, frame: DeploymentHandle, audio: DeploymentHandle, affect: DeploymentHandle,
                      music: DeploymentHandle) -> DeploymentModels:
        frame_names, face_names = await frame.feature_names.remote()
        audio_names, audio_rate = await audio.feature_names.remote()
        return cls(frame, audio, affect, music, FeatureNames(tuple(frame_names), tuple(audio_names),
                                                             tuple(face_names), int(audio_rate)))

    @classmethod
    async def for_app(cls, app_name: str = "backscore") -> DeploymentModels:
        """Handles to the deployments of a running application (from a driver or another deployment)."""
        from ray import serve as ray_serve

        h = [ray_serve.get_deployment_handle(name, app_name=app_name) for name in DEPLOYMENTS]
        return await cls.connect(*h)

    def handles(self) -> dict[str, DeploymentHandle]:
        return dict(zip(DEPLOYMENTS, (self._frame, self._audio, self._affect, self._music), strict=True))

    async def encode_frames(self, rgb: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        result: np.ndarray = await self._frame.encode_frames.remote(rgb, previous)
        return result

    async def analyze_faces(self, gray: np.ndarray) -> np.ndarray:
        if not self.names.faces:
            return np.zeros((len(gray), 0), np.float32)
        result: np.ndarray = await self._frame.analyze_faces.remote(gray)
        return result

    async def encode_audio(self, samples: np.ndarray) -> tuple[np.ndarray, float]:
        row, speech = await self._audio.encode_audio.remote(samples)
        return row, float(speech)

    async def affect(self, features: Mapping[str, float], tracker: MoodTracker, t_s: float) -> AffectStep:
        result: AffectStep = await self._affect.affect.remote(dict(features), tracker, t_s)
        return result

    def _stream(self, stream_id: str) -> Any:
        return self._music.options(multiplexed_model_id=stream_id)

    async def music(self, request: MusicRequest) -> MusicReply:
        result: MusicReply = await self._stream(request.context.stream_id).music.remote(request)
        return result

    async def close_music(self, stream_id: str) -> None:
        await self._stream(stream_id).close_music.remote(stream_id)

    async def run_blocking(self, fn: Callable[..., T], *args: object) -> T:
        """The session's own blocking work runs in a thread of this (the gateway's) process."""
        return await asyncio.to_thread(fn, *args)
