"""The model calls of live sessions as plain functions over numpy, each taking a batch of requests.

A request is one session's; a batch is one session's call (in-process,
:class:`~pipelines.live.models.InProcessModels`) or the requests of several sessions that a Ray
deployment gathered with ``@serve.batch`` (``serve.deployments``). Both run the very same
functions, so a batched result equals the unbatched one (tested).

* :func:`encode_frames_batched` -- picture features. Each request's ``previous`` frame is put in
  front of its own frames (a request without one repeats its first frame, whose difference
  features are then zero, exactly as the encoder does without a previous frame), so the pairwise
  features (motion, content/histogram change) never mix two sessions: valid for any encoder that
  honours the :class:`engines.base.FrameEncoder` contract (a row depends on its frame and the
  frame before it).
* :func:`analyze_faces_batched` -- face expressions, one call per picture size.
* :func:`encode_audio_window` -- sound features and speech probability of one mono window.
* :func:`affect_steps` -- the affect model over fused window features (one ``predict`` call), then
  each session's :class:`~pipelines.analysis.mood.MoodTracker`, which travels with the request
  (the worker is stateless) and is updated in place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engines.base import AffectEstimate, AffectModel, AudioEncoder, FrameEncoder
from pipelines.analysis.engines import FaceAnalyzer
from pipelines.analysis.mood import MoodChange, MoodTracker

#: One session's affect request: the window's features, its tracker, the window's centre (media s).
AffectRequest = tuple[Mapping[str, float], MoodTracker, float]


@dataclass(frozen=True)
class AffectStep:
    """One window's affect estimate, the mood change it confirmed (if any) and the tracker after it."""

    estimate: AffectEstimate
    change: MoodChange | None
    tracker: MoodTracker


def affect_steps(model: AffectModel, items: Sequence[AffectRequest]) -> list[AffectStep]:
    """Windows of one or several sessions through the affect model and each session's mood tracker."""
    estimates = model.predict([dict(f) for f, _, _ in items])
    return [AffectStep(est, tracker.push(t_s, est), tracker)
            for est, (_, tracker, t_s) in zip(estimates, items, strict=True)]


def encode_audio_window(encoder: AudioEncoder, samples: np.ndarray) -> tuple[np.ndarray, float]:
    """Feature row of one mono window plus its mean speech probability over the last half second."""
    # one pass over the window for both (encode + speech_activity would analyse it twice)
    rows, (times, prob) = encoder.encode_windows(samples, [(0.0, len(samples) / encoder.sample_rate)])
    row = rows[0]
    tail = prob[times >= times[-1] - 0.5] if len(times) else prob
    return row, float(np.mean(tail)) if len(tail) else 0.0


def _split(rows: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    i = 0
    for n in sizes:
        out.append(rows[i : i + n])
        i += n
    return out


def encode_frames_batched(encoder: FrameEncoder,
                          items: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> list[np.ndarray]:
    """Several ``encode(frames, previous)`` requests as few encoder calls (one per frame size); see module doc."""
    results: list[np.ndarray | None] = [None] * len(items)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (rgb, _) in enumerate(items):
        groups.setdefault(tuple(rgb.shape[1:]), []).append(i)
    for idx in groups.values():
        seqs: list[np.ndarray] = []
        for i in idx:
            rgb, previous = items[i]
            if len(rgb) == 0:
                continue
            lead = previous if previous is not None and previous.shape == rgb.shape[1:] else rgb[0]
            seqs.append(np.concatenate([lead[None], rgb]))
        rows = encoder.encode(np.concatenate(seqs)) if seqs else None
        pos = 0
        for i in idx:
            rgb, _ = items[i]
            if len(rgb) == 0:
                results[i] = np.zeros((0, len(encoder.feature_names)), np.float32)
                continue
            assert rows is not None
            results[i] = rows[pos + 1 : pos + 1 + len(rgb)]
            pos += 1 + len(rgb)
    return [r for r in results if r is not None]


def analyze_faces_batched(faces: FaceAnalyzer, items: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Several ``analyze(gray)`` requests as one call per picture size."""
    width = len(faces.feature_names)
    results: list[np.ndarray] = [np.zeros((len(g), width), np.float32) for g in items]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, g in enumerate(items):
        if len(g):
            groups.setdefault(tuple(g.shape[1:]), []).append(i)
    for idx in groups.values():
        rows = faces.analyze(np.concatenate([items[i] for i in idx]))
        for i, part in zip(idx, _split(rows, [len(items[i]) for i in idx]), strict=True):
            results[i] = part
    return results
