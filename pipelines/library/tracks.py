"""The music-library vocabulary shared by the catalog, the user library index and the recommender."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TrackInfo:
    """One piece of music a recommendation can point to.

    ``id`` is the catalog number (1..100) for the built-in catalog and the SQLite row id for
    a user library. ``valence``/``arousal`` are in [-1, 1]; ``emotions`` are labels from
    :data:`engines.base.EMOTIONS`, the primary one first. ``embedding`` is a compact,
    L2-normalised audio embedding (float32) from the music analyzer.
    """

    id: int
    title: str
    path: str
    duration_s: float
    valence: float
    arousal: float
    emotions: tuple[str, ...]
    tempo_bpm: float
    key: str
    mode: str
    style: str | None = None
    instruments: tuple[str, ...] = ()
    loudness_lufs: float = float("nan")
    embedding: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    @property
    def emotion(self) -> str:
        return self.emotions[0] if self.emotions else "neutral"
