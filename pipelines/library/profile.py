"""A video as the ranker sees it: its mood over time, its pace and the emotion-label vocabulary.

:class:`VideoProfile` summarises an :class:`~pipelines.analysis.analyze.Analysis` once
(:func:`profile_from_analysis`): per-window valence, arousal, confidence and emotion
probabilities, its mood segments, and its pace from cuts and motion. Next to it live the
two pieces of music knowledge the ranker (:mod:`pipelines.library.ranking`) and the
recommender's soft labels share:

* :data:`LABEL_SIMILARITY` -- how well music labelled with one emotion serves a scene of
  another (7x7 over :data:`engines.base.EMOTIONS`), and :func:`label_vector`, a track's
  soft label vector;
* :func:`desired_tempo` -- the tempo range a picture asks for, from its arousal and its
  pace (:func:`window_pace`: cut rate and motion).

No torch: importing this module stays light.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.affect import PROTOTYPES, emotion_probs
from engines.base import EMOTIONS
from pipelines.analysis.mood import MoodSegment
from pipelines.errors import DataError

if TYPE_CHECKING:
    from pipelines.analysis.analyze import Analysis

# --------------------------------------------------------------------------- label similarity

#: Width of the circumplex kernel that gives the base label similarity (VA units).
LABEL_SIGMA = 0.5

#: Hand adjustments where music practice differs from circumplex distance (symmetric).
#: Each entry: (a, b) -> similarity used instead of the geometric value.
LABEL_ADJUSTMENTS: dict[tuple[str, str], float] = {
    # Action/trailer cues serve both: driving percussion, fast tempo, ostinati.
    # Geometric value ~0.17 (opposite valence), raised.
    ("exciting", "tense"): 0.45,
    # Slow, soft, sparse music ("melancholic", "reflective", "ambient") is used for calm and
    # for sad scenes alike; only the mode/harmony differs. Geometric ~0.11, raised.
    ("relaxing", "sad"): 0.40,
    # Dark minor-key underscore serves sad and fearful scenes (horror drones, grief).
    # Geometric ~0.06, raised.
    ("sad", "fearful"): 0.30,
    # "Feel-good" acoustic/uplifting music sits between happy and relaxing. Geometric ~0.25.
    ("happy", "relaxing"): 0.40,
    # Suspense cues go from tense to fearful with the same material; geometric ~0.69, kept
    # high but raised to make them near-interchangeable in libraries.
    ("tense", "fearful"): 0.75,
}

#: Neutral underscore (corporate/ambient beds) is an acceptable fallback for any scene:
#: every similarity with "neutral" is at least this.
NEUTRAL_FLOOR = 0.35


def _label_similarity() -> np.ndarray:
    """7x7 similarity over :data:`EMOTIONS`: ``exp(-d^2 / (2 LABEL_SIGMA^2))`` between the
    prototypes of :data:`engines.affect.PROTOTYPES`, then :data:`LABEL_ADJUSTMENTS` and
    :data:`NEUTRAL_FLOOR`; symmetric with a unit diagonal."""
    protos = np.array([PROTOTYPES[e] for e in EMOTIONS], dtype=np.float64)
    d2 = np.sum((protos[:, None, :] - protos[None, :, :]) ** 2, axis=-1)
    sim = np.exp(-d2 / (2 * LABEL_SIGMA**2))
    n = EMOTIONS.index("neutral")
    sim[n, :] = np.maximum(sim[n, :], NEUTRAL_FLOOR)
    sim[:, n] = np.maximum(sim[:, n], NEUTRAL_FLOOR)
    for (a, b), v in LABEL_ADJUSTMENTS.items():
        i, j = EMOTIONS.index(a), EMOTIONS.index(b)
        sim[i, j] = sim[j, i] = v
    np.fill_diagonal(sim, 1.0)
    return np.round(sim, 4)


#: The proposal's "similarity between emotion labels and music labels", rows/columns
#: following :data:`engines.base.EMOTIONS`.
LABEL_SIMILARITY: np.ndarray = _label_similarity()
LABEL_SIMILARITY.setflags(write=False)


def label_vector(emotions: Sequence[str], valence: float = 0.0, arousal: float = 0.0) -> np.ndarray:
    """Soft label vector over :data:`EMOTIONS`: primary 1.0, secondary labels 0.5, normalised
    to sum 1. Unknown words are ignored; with no known label the VA point decides
    (:func:`engines.affect.emotion_probs`)."""
    vec = np.zeros(len(EMOTIONS), dtype=np.float64)
    known = [e for e in emotions if e in EMOTIONS]
    for k, e in enumerate(known):
        vec[EMOTIONS.index(e)] = max(vec[EMOTIONS.index(e)], 1.0 if k == 0 else 0.5)
    if vec.sum() == 0:
        return emotion_probs(valence, arousal)
    return vec / vec.sum()


# --------------------------------------------------------------------------- video profile

#: Cuts per second that count as the fastest pace (trailer-like editing).
PACE_CUT_RATE = 1.5
#: Mean frame motion (feature ``motion``) that counts as the fastest pace (~+2 sd above the
#: affect model's reference centre of 0.05).
PACE_MOTION = 0.12


def window_pace(cut_rate: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """Pace in [0, 1] per window: half cut rate, half motion, each saturating at
    :data:`PACE_CUT_RATE` / :data:`PACE_MOTION`."""
    c = np.clip(np.asarray(cut_rate, np.float64) / PACE_CUT_RATE, 0.0, 1.0)
    m = np.clip(np.asarray(motion, np.float64) / PACE_MOTION, 0.0, 1.0)
    return 0.5 * c + 0.5 * m


#: Desired tempo = TEMPO_BASE + TEMPO_AROUSAL * (arousal + 1) / 2 + TEMPO_PACE * pace (bpm).
TEMPO_BASE = 62.0
TEMPO_AROUSAL = 48.0
TEMPO_PACE = 40.0
#: Half-width of the desired tempo range (bpm).
TEMPO_HALF_WIDTH = 14.0
#: Fall-off outside the range (bpm).
TEMPO_SIGMA = 18.0


def desired_tempo(arousal: np.ndarray | float, pace: np.ndarray | float) -> np.ndarray:
    """Centre of the desired tempo range (bpm): 62 bpm for a still, calm picture, up to 150
    bpm for a fast-cut, high-arousal one (arousal gives up to +48, pace up to +40). The range
    is this +- :data:`TEMPO_HALF_WIDTH`. Values follow common library practice: ambient/calm
    cues 60-80 bpm, pop/feel-good 100-120, action/trailer 130-150."""
    a = np.clip(np.asarray(arousal, np.float64), -1.0, 1.0)
    p = np.clip(np.asarray(pace, np.float64), 0.0, 1.0)
    return TEMPO_BASE + TEMPO_AROUSAL * (a + 1.0) / 2.0 + TEMPO_PACE * p


def _spans(times: np.ndarray, duration_s: float) -> np.ndarray:
    """Seconds of the video each window stands for (midpoints between window centres)."""
    n = len(times)
    if n == 0:
        return np.zeros(0)
    if n == 1:
        return np.array([max(duration_s, 1e-3)])
    mids = 0.5 * (times[1:] + times[:-1])
    edges = np.concatenate([[0.0], mids, [max(duration_s, float(times[-1]))]])
    return np.maximum(np.diff(edges), 1e-3)


@dataclass(frozen=True, eq=False)
class VideoProfile:
    """What the ranker needs to know about a video, per window (centre times ``times``)."""

    times: np.ndarray  # (W,) window centres, seconds
    valence: np.ndarray  # (W,)
    arousal: np.ndarray  # (W,)
    confidence: np.ndarray  # (W,)
    probs: np.ndarray  # (W, 7) over EMOTIONS
    cut_rate: np.ndarray  # (W,) cuts per second around each window
    motion: np.ndarray  # (W,) mean frame motion
    segments: tuple[MoodSegment, ...]
    duration_s: float
    spans: np.ndarray = field(init=False)  # (W,) seconds each window stands for
    window_pace: np.ndarray = field(init=False)  # (W,) 0..1

    def __post_init__(self) -> None:
        object.__setattr__(self, "spans", _spans(self.times, self.duration_s))
        object.__setattr__(self, "window_pace", window_pace(self.cut_rate, self.motion))

    @property
    def n_windows(self) -> int:
        return int(len(self.times))

    def _mean(self, x: np.ndarray) -> float:
        return float(np.sum(x * self.spans) / max(float(np.sum(self.spans)), 1e-9)) if len(x) else 0.0

    @property
    def pace(self) -> float:
        """0..1, time-weighted mean of :attr:`window_pace` (cut rate and motion)."""
        return self._mean(self.window_pace)

    @property
    def cuts_per_s(self) -> float:
        return self._mean(self.cut_rate)

    @property
    def tempo_range(self) -> tuple[float, float]:
        """Desired tempo range (bpm) for the whole video (see :func:`desired_tempo`)."""
        centre = float(desired_tempo(self._mean(self.arousal), self.pace))
        return centre - TEMPO_HALF_WIDTH, centre + TEMPO_HALF_WIDTH

    @property
    def emotion_distribution(self) -> np.ndarray:
        """Time-weighted mean of the windows' emotion probabilities (sums to 1)."""
        if self.n_windows == 0:
            return np.full(len(EMOTIONS), 1.0 / len(EMOTIONS))
        p = (self.spans[:, None] * self.probs).sum(axis=0)
        return np.asarray(p / max(float(p.sum()), 1e-12))

    def slice(self, start_s: float, end_s: float) -> VideoProfile:
        """The windows whose centre lies in ``[start_s, end_s)`` (at least the nearest one)."""
        idx = np.nonzero((self.times >= start_s) & (self.times < end_s))[0]
        if len(idx) == 0 and self.n_windows:
            idx = np.array([int(np.argmin(np.abs(self.times - 0.5 * (start_s + end_s))))])
        segs = tuple(s for s in self.segments if s.end_s > start_s and s.start_s < end_s)
        return VideoProfile(
            times=self.times[idx] - start_s, valence=self.valence[idx], arousal=self.arousal[idx],
            confidence=self.confidence[idx], probs=self.probs[idx], cut_rate=self.cut_rate[idx],
            motion=self.motion[idx], segments=segs, duration_s=max(end_s - start_s, 1e-3),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (cache an analysed video with ``json.dump``)."""
        return {
            "version": 1,
            "duration_s": self.duration_s,
            "times": self.times.tolist(),
            "valence": self.valence.tolist(),
            "arousal": self.arousal.tolist(),
            "confidence": self.confidence.tolist(),
            "probs": self.probs.tolist(),
            "cut_rate": self.cut_rate.tolist(),
            "motion": self.motion.tolist(),
            "segments": [
                {"start_s": s.start_s, "end_s": s.end_s, "emotion": s.emotion, "valence": s.valence,
                 "arousal": s.arousal, "confidence": s.confidence}
                for s in self.segments
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VideoProfile:
        """Inverse of :meth:`to_json`; malformed data -> :class:`DataError`."""
        try:
            arr = {k: np.asarray(data[k], dtype=np.float64) for k in
                   ("times", "valence", "arousal", "confidence", "cut_rate", "motion")}
            probs = np.asarray(data["probs"], dtype=np.float64).reshape(-1, len(EMOTIONS))
            segs = tuple(MoodSegment(float(s["start_s"]), float(s["end_s"]), str(s["emotion"]),
                                     float(s["valence"]), float(s["arousal"]), float(s["confidence"]))
                         for s in data["segments"])
            duration = float(data["duration_s"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"video profile is malformed: {exc}") from exc
        n = len(arr["times"])
        if any(len(v) != n for v in arr.values()) or len(probs) != n:
            raise DataError("video profile is malformed: per-window arrays differ in length")
        return cls(probs=probs, segments=segs, duration_s=duration, **arr)


def profile_from_analysis(analysis: Analysis) -> VideoProfile:
    """Summarise an :class:`~pipelines.analysis.analyze.Analysis` for ranking."""
    ws = analysis.windows
    probs = np.array([w.affect.probs for w in ws], dtype=np.float64).reshape(-1, len(EMOTIONS))
    return VideoProfile(
        times=np.array([w.centre_s for w in ws], dtype=np.float64),
        valence=np.array([w.affect.valence for w in ws], dtype=np.float64),
        arousal=np.array([w.affect.arousal for w in ws], dtype=np.float64),
        confidence=np.array([w.affect.confidence for w in ws], dtype=np.float64),
        probs=probs,
        cut_rate=np.array([w.features.get("cut_rate", 0.0) for w in ws], dtype=np.float64),
        motion=np.array([w.features.get("motion", 0.0) for w in ws], dtype=np.float64),
        segments=tuple(analysis.segments),
        duration_s=float(analysis.duration_s),
    )
