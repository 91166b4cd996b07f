"""The engines an analysis uses, bundled: picture, sound, affect, faces and an optional image model.

:func:`default_engines` gives the embedded defaults (feature encoders, the feature affect model, the
face-expression model); :func:`create_engines` those of ``--affect-engine NAME``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engines.base import AffectModel, AudioEncoder, FrameEncoder


class FaceAnalyzer(Protocol):
    """Structural type of :class:`engines.faces.FaceExpressionAnalyzer` (grey frames -> rows)."""

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    def analyze(self, gray_frames: np.ndarray) -> np.ndarray: ...


@dataclass
class Engines:
    """The engines an analysis uses; :func:`default_engines` gives the embedded defaults."""

    frame: FrameEncoder
    audio: AudioEncoder
    affect: AffectModel
    faces: FaceAnalyzer | None = None
    #: Optional image model (CLIP) fed with larger RGB pictures (``VideoFrame.picture``, made at
    #: :data:`PICTURE_FPS` only when this is set); its columns join each window's picture features.
    picture: FrameEncoder | None = None


#: Pictures per second for :attr:`Engines.picture` (Video2Music samples CLIP features at 1 fps;
#: two per second puts about four in every 2 s window).
PICTURE_FPS = 2.0


def default_engines(faces: bool = True) -> Engines:
    from engines.affect import FeatureAffectModel
    from engines.audio_features import FeatureAudioEncoder
    from engines.frame_features import FeatureFrameEncoder

    face_model: FaceAnalyzer | None = None
    if faces:
        from engines.faces import FaceExpressionAnalyzer

        face_model = FaceExpressionAnalyzer()
    return Engines(FeatureFrameEncoder(), FeatureAudioEncoder(), FeatureAffectModel(), face_model)


def create_engines(affect_engine: str = "default", weights: str | Mapping[str, str] | Sequence[str] | None = None,
                   faces: bool = True, backend: str = "auto") -> Engines:
    """The engines for ``--affect-engine NAME`` (see :func:`engines.affect_engines.create_affect_engines`),
    plus the face analyzer unless ``faces`` is off; the neural encoders run on ``backend``
    (:mod:`engines.backends`). Raises ``EngineUnavailable`` (missing weights, a named backend that
    cannot run here) or ``ValueError`` (unknown name) before any work starts."""
    from engines.affect_engines import create_affect_engines

    parts = create_affect_engines(affect_engine, weights, backend=backend)
    face_model: FaceAnalyzer | None = None
    if faces:
        from engines.faces import FaceExpressionAnalyzer

        face_model = FaceExpressionAnalyzer()
    return Engines(parts.frame, parts.audio, parts.affect, face_model, parts.picture)
