"""Emotion-aware recommendation: rank a music library for a video's mood over time.

A video is summarised once as a :class:`VideoProfile` (per-window valence, arousal,
confidence and emotion probabilities from :func:`pipelines.analysis.analyze.analyze`, its mood
segments, and its pace from cuts and motion). A library is turned once into a
:class:`TrackMatrix` (numpy arrays), so :func:`rank` scores every track with a handful of
vectorised ``W x T`` array operations (W windows, T tracks).

Score of track ``t`` (weights :class:`RankWeights`, normalised to sum 1)::

    score = w_va * va_fit + w_cov * coverage + w_tempo * tempo_fit + w_label * label_match

* ``va_fit`` -- trajectory fit in the valence-arousal plane: the confidence-and-time-weighted
  mean over windows of ``exp(-d_wt^2 / (2 * VA_SIGMA^2))``, ``d_wt`` the distance between
  window ``w``'s (valence, arousal) and the track's. A track that suits only the mean of a
  calm -> tense video scores lower than one that suits where the video spends its time.
* ``coverage`` -- the share of the video's duration in which the track fits at all
  (kernel >= :data:`COVER_THRESHOLD`, i.e. within ~1.18 VA_SIGMA), whatever the confidence.
* ``tempo_fit`` -- per window, the tempo the picture asks for (:func:`desired_tempo`, from
  pace = cut rate and motion, and arousal) is a range ``target +- TEMPO_HALF_WIDTH``; 1
  inside, Gaussian fall-off (``TEMPO_SIGMA``) outside; time-weighted mean over windows.
  A track without a known tempo gets 0.5.
* ``label_match`` -- ``p_video . LABEL_SIMILARITY . l_track``: the video's time-weighted
  emotion distribution against the track's soft label vector (primary label 1.0, the others
  0.5, normalised; a track without labels gets its labels from its VA point). In [0, 1].

Optionally a trained model's probabilities over the same tracks (:mod:`pipelines.library.recommender`)
are blended in: ``final = (1 - model_weight) * score + model_weight * p / max(p)``.

All components are in [0, 1] and reported per recommendation, with a one-line reason.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.affect import PROTOTYPES, emotion_probs
from engines.base import EMOTIONS
from pipelines.analysis.segments import MoodSegment
from pipelines.errors import DataError, LibraryError, OptionError
from pipelines.library.tracks import TrackInfo

if TYPE_CHECKING:
    from pipelines.analysis.analyze import Analysis

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------- tracks


class TrackMatrix:
    """A library as arrays for vectorised scoring (built once, reused for every video)."""

    def __init__(self, tracks: Sequence[TrackInfo]) -> None:
        self.tracks: tuple[TrackInfo, ...] = tuple(tracks)
        self.ids = np.array([t.id for t in self.tracks], dtype=np.int64)
        self.titles = [t.title for t in self.tracks]
        self.valence = np.array([t.valence for t in self.tracks], dtype=np.float32)
        self.arousal = np.array([t.arousal for t in self.tracks], dtype=np.float32)
        tempo = np.array([t.tempo_bpm for t in self.tracks], dtype=np.float64)
        self.tempo_known = np.isfinite(tempo) & (tempo > 0)
        self.tempo = np.where(self.tempo_known, tempo, 0.0).astype(np.float32)
        self.labels = np.array([label_vector(t.emotions, t.valence, t.arousal) for t in self.tracks],
                               dtype=np.float64).reshape(-1, len(EMOTIONS))
        self.primary = [t.emotion for t in self.tracks]
        self._index = {int(i): k for k, i in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.tracks)

    def index_of(self, track_id: int) -> int:
        """Row of a track id; unknown id -> :class:`LibraryError`."""
        try:
            return self._index[int(track_id)]
        except KeyError:
            raise LibraryError(f"no track {track_id} in the library") from None


# --------------------------------------------------------------------------- ranking

#: Kernel width of the valence-arousal fit (VA units).
VA_SIGMA = 0.35
#: A window counts as covered by a track when its VA kernel reaches this.
COVER_THRESHOLD = 0.5
#: Minimum weight of a window in the VA fit (so confidence 0 still counts a little).
MIN_CONFIDENCE = 0.05


@dataclass(frozen=True)
class RankWeights:
    """Weights of the score's components (normalised to sum 1 when used)."""

    va: float = 0.40
    coverage: float = 0.15
    tempo: float = 0.20
    label: float = 0.25

    def normalised(self) -> tuple[float, float, float, float]:
        w = (self.va, self.coverage, self.tempo, self.label)
        if any(x < 0 or not math.isfinite(x) for x in w) or sum(w) <= 0:
            raise OptionError(f"rank weights must be non-negative with a positive sum, got {w}")
        s = sum(w)
        return (w[0] / s, w[1] / s, w[2] / s, w[3] / s)


@dataclass(frozen=True)
class Recommendation:
    track_id: int
    title: str
    score: float
    components: dict[str, float]
    reason: str


@dataclass(frozen=True)
class _Scores:
    """Per-track component arrays (T,) and the combined score."""

    va: np.ndarray
    coverage: np.ndarray
    tempo: np.ndarray
    label: np.ndarray
    model: np.ndarray | None
    total: np.ndarray


def _component_scores(profile: VideoProfile, tracks: TrackMatrix, weights: RankWeights,
                      model_scores: np.ndarray | None, model_weight: float) -> _Scores:
    wv, wc, wt, wl = weights.normalised()
    n_t = len(tracks)
    spans = profile.spans.astype(np.float32)
    if profile.n_windows == 0:
        va = cov = np.full(n_t, 0.5, np.float32)
        tempo = np.full(n_t, 0.5, np.float32)
    else:
        # Two W x T float32 buffers, updated in place (large temporaries cost page faults).
        buf = np.subtract.outer(profile.valence.astype(np.float32), tracks.valence)
        np.square(buf, out=buf)
        buf2 = np.subtract.outer(profile.arousal.astype(np.float32), tracks.arousal)
        np.square(buf2, out=buf2)
        buf += buf2
        buf *= np.float32(-1.0 / (2 * VA_SIGMA**2))
        kern = np.exp(buf, out=buf)  # (W, T) VA kernel
        cw = spans * np.maximum(profile.confidence.astype(np.float32), MIN_CONFIDENCE)
        va = (cw / cw.sum()) @ kern
        np.greater_equal(kern, np.float32(COVER_THRESHOLD), out=buf2)
        time_w = spans / spans.sum()
        cov = time_w @ buf2
        centre = desired_tempo(profile.arousal, profile.window_pace).astype(np.float32)
        off = np.subtract.outer(centre, tracks.tempo, out=buf)
        np.abs(off, out=off)
        off -= np.float32(TEMPO_HALF_WIDTH)
        np.maximum(off, np.float32(0.0), out=off)
        np.square(off, out=off)
        off *= np.float32(-1.0 / (2 * TEMPO_SIGMA**2))
        tempo = time_w @ np.exp(off, out=off)
        tempo = np.where(tracks.tempo_known, tempo, np.float32(0.5))
    label = tracks.labels @ (LABEL_SIMILARITY @ profile.emotion_distribution)
    total = wv * va.astype(np.float64) + wc * cov + wt * tempo + wl * label
    model = None
    if model_scores is not None:
        model = _normalise_model(model_scores, n_t)
        mw = float(model_weight)
        if not 0.0 <= mw <= 1.0:
            raise OptionError(f"model weight must be in [0, 1], got {model_weight}")
        total = (1.0 - mw) * total + mw * model
    clip = np.clip
    return _Scores(clip(va, 0, 1), clip(cov, 0, 1), clip(tempo, 0, 1), clip(label, 0, 1), model,
                   clip(total, 0, 1))


def _normalise_model(model_scores: np.ndarray, n_tracks: int) -> np.ndarray:
    p = np.asarray(model_scores, dtype=np.float64).reshape(-1)
    if len(p) != n_tracks:
        raise DataError(f"model scores cover {len(p)} tracks, the library has {n_tracks}")
    p = np.where(np.isfinite(p), np.maximum(p, 0.0), 0.0)
    top = float(p.max(initial=0.0))
    return p / top if top > 0 else p


#: Scores equal to this many decimals rank as ties (broken by track id).
TIE_DECIMALS = 5


def _top_indices(total: np.ndarray, ids: np.ndarray, top_k: int) -> np.ndarray:
    """Indices of the ``top_k`` best scores, ties broken by ascending track id.

    Scores equal to :data:`TIE_DECIMALS` decimals are ties: identical tracks can score ~1e-8
    apart (float32 sums that BLAS vectorises by position), and the order must not depend on
    the machine's BLAS.
    """
    n = len(total)
    k = min(top_k, n)
    key = -np.round(total, TIE_DECIMALS)
    if k < n:
        kth = np.partition(key, k - 1)[k - 1]
        cand = np.nonzero(key <= kth)[0]
    else:
        cand = np.arange(n)
    order = np.lexsort((ids[cand], key[cand]))
    return np.asarray(cand[order][:k])


def _fmt_time(t: float) -> str:
    s = int(round(t))
    return f"{s // 60}:{s % 60:02d}"


#: A change too short for the segmenter still shows in the reason when each side holds at
#: least this share of the windows.
MIN_CHANGE_SHARE = 0.25


def _window_trajectory(profile: VideoProfile) -> str | None:
    """``"a → b at m:ss"`` when the windows' top emotion changes once for good, else None."""
    n = profile.n_windows
    if n < 4:
        return None
    top = np.argmax(profile.probs, axis=1)
    last = int(top[-1])
    start = n - 1
    while start > 0 and top[start - 1] == last:
        start -= 1
    if start < MIN_CHANGE_SHARE * n or n - start < MIN_CHANGE_SHARE * n:
        return None
    before = int(np.bincount(top[:start], minlength=len(EMOTIONS)).argmax())
    if before == last:
        return None
    return f"{EMOTIONS[before]} → {EMOTIONS[last]} at {_fmt_time(float(profile.times[start]))}"


def trajectory_text(profile: VideoProfile) -> str:
    """E.g. ``"relaxing → tense at 0:12"``, or the single mood when it does not change."""
    segs = [s for s in profile.segments if s.end_s > s.start_s]
    if len(segs) <= 1:
        return _window_trajectory(profile) or (segs[0].emotion if segs else
                                               EMOTIONS[int(np.argmax(profile.emotion_distribution))])
    parts = [segs[0].emotion]
    last = segs[0].emotion
    for s in segs[1:]:
        if s.emotion != last:
            parts.append(f"{s.emotion} at {_fmt_time(s.start_s)}")
            last = s.emotion
    return " → ".join(parts)


def _reason(profile: VideoProfile, tracks: TrackMatrix, i: int, sc: _Scores, mood: str) -> str:
    bits = [f"{mood}; {tracks.primary[i]} track, VA fit {float(sc.va[i]):.2f}"]
    if tracks.tempo_known[i]:
        lo, hi = profile.tempo_range
        bpm = float(tracks.tempo[i])
        pace = f"{profile.cuts_per_s:.1f} cuts/s"
        if sc.tempo[i] >= 0.8:
            bits.append(f"tempo {bpm:.0f} bpm fits {pace}")
        else:
            bits.append(f"tempo {bpm:.0f} bpm ({lo:.0f}-{hi:.0f} wanted for {pace})")
    bits.append(f"mood match {float(sc.label[i]):.2f}")
    if sc.model is not None:
        bits.append(f"model {float(sc.model[i]):.2f}")
    return "; ".join(bits)


def rank(profile: VideoProfile, tracks: TrackMatrix, top_k: int = 5, weights: RankWeights | None = None,
         model_scores: np.ndarray | None = None, model_weight: float = 0.5) -> list[Recommendation]:
    """The ``top_k`` best tracks for the video, best first (see the module doc for the score).

    ``model_scores``: a trained model's probabilities over ``tracks`` (same order), blended in
    with ``model_weight``. ``top_k <= 0`` -> :class:`OptionError`; empty library ->
    :class:`LibraryError`.
    """
    if top_k <= 0:
        raise OptionError(f"top-k must be at least 1, got {top_k}")
    if len(tracks) == 0:
        raise LibraryError("the music library is empty: nothing to recommend")
    sc = _component_scores(profile, tracks, weights or RankWeights(), model_scores, model_weight)
    mood = trajectory_text(profile)
    out: list[Recommendation] = []
    for i in _top_indices(sc.total, tracks.ids, top_k):
        comps = {"va": float(sc.va[i]), "coverage": float(sc.coverage[i]), "tempo": float(sc.tempo[i]),
                 "label": float(sc.label[i])}
        if sc.model is not None:
            comps["model"] = float(sc.model[i])
        out.append(Recommendation(int(tracks.ids[i]), tracks.titles[i], float(sc.total[i]), comps,
                                  _reason(profile, tracks, int(i), sc, mood)))
    return out


def score_all(profile: VideoProfile, tracks: TrackMatrix, weights: RankWeights | None = None) -> np.ndarray:
    """The combined score of every track (library order), for evaluation."""
    if len(tracks) == 0:
        raise LibraryError("the music library is empty: nothing to recommend")
    return _component_scores(profile, tracks, weights or RankWeights(), None, 0.0).total


def rank_per_segment(profile: VideoProfile, tracks: TrackMatrix, top_k: int = 3,
                     weights: RankWeights | None = None) -> list[tuple[MoodSegment, list[Recommendation]]]:
    """Each mood segment ranked on its own windows (a video with no segments is one segment)."""
    segs = list(profile.segments) or [
        MoodSegment(0.0, profile.duration_s, trajectory_text(profile), float(np.mean(profile.valence))
                    if profile.n_windows else 0.0,
                    float(np.mean(profile.arousal)) if profile.n_windows else 0.0, 0.0)]
    out: list[tuple[MoodSegment, list[Recommendation]]] = []
    for seg in segs:
        sub = profile.slice(seg.start_s, seg.end_s)
        recs = rank(sub, tracks, top_k, weights)
        out.append((seg, recs))
    return out


# --------------------------------------------------------------------------- benchmark


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
