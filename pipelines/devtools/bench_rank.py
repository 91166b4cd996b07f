"""Benchmark of :func:`pipelines.library.ranking.rank`: synthetic libraries and video profiles.

:func:`bench_rank` is the ``rank`` row of ``backscore bench`` (:mod:`pipelines.devtools.bench`);
:func:`synthetic_library` and :func:`synthetic_profile` make reproducible random inputs for it
and for tests. No torch.
"""

from __future__ import annotations

import time

import numpy as np

from engines.affect import emotion_probs
from engines.base import EMOTIONS
from pipelines.analysis.mood import MoodSegment
from pipelines.library.profile import VideoProfile
from pipelines.library.ranking import TrackMatrix, rank
from pipelines.library.tracks import TrackInfo


def synthetic_library(n_tracks: int, seed: int = 0) -> list[TrackInfo]:
    """Random tracks spread over VA and tempo (for benchmarks and tests)."""
    rng = np.random.default_rng(seed)
    out: list[TrackInfo] = []
    for i in range(n_tracks):
        v, a = (float(x) for x in rng.uniform(-0.95, 0.95, 2))
        probs = emotion_probs(v, a)
        order = np.argsort(-probs)
        out.append(TrackInfo(id=i + 1, title=f"Track {i + 1}", path="", duration_s=120.0, valence=v, arousal=a,
                             emotions=(EMOTIONS[order[0]], EMOTIONS[order[1]]),
                             tempo_bpm=float(70 + 60 * (a + 1) / 2 + rng.normal(0, 10)), key="C", mode="major"))
    return out


def synthetic_profile(n_windows: int, seed: int = 0, hop_s: float = 0.5) -> VideoProfile:
    """A random-walk mood trajectory of ``n_windows`` windows (for benchmarks and tests)."""
    rng = np.random.default_rng(seed)
    va = np.clip(np.cumsum(rng.normal(0, 0.08, (n_windows, 2)), axis=0), -1, 1)
    probs = np.array([emotion_probs(float(v), float(a)) for v, a in va]).reshape(-1, len(EMOTIONS))
    times = 1.0 + hop_s * np.arange(n_windows)
    duration = float(times[-1] + 1.0) if n_windows else 0.0
    seg = MoodSegment(0.0, duration, EMOTIONS[int(np.argmax(probs.mean(axis=0)))], 0.0, 0.0, 0.5)
    return VideoProfile(times, va[:, 0], va[:, 1], rng.uniform(0.2, 0.8, n_windows), probs,
                        rng.uniform(0, 1.5, n_windows), rng.uniform(0, 0.12, n_windows), (seg,), duration)


def bench_rank(n_tracks: int = 10_000, n_windows: int = 117, repeats: int = 200, top_k: int = 5) -> dict[str, float]:
    """Latency of :func:`rank` for one video profile against ``n_tracks`` (TrackMatrix prebuilt)."""
    tracks = TrackMatrix(synthetic_library(n_tracks))
    profile = synthetic_profile(n_windows)
    rank(profile, tracks, top_k)  # warm-up
    times: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rank(profile, tracks, top_k)
        times.append((time.perf_counter() - t0) * 1000.0)
    arr = np.array(times)
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "n_tracks": float(n_tracks), "n_windows": float(n_windows)}
