"""Emotion-aware recommendation: rank a music library for a video's mood over time.

A video is summarised once as a :class:`~pipelines.library.profile.VideoProfile` (per-window
valence, arousal, confidence and emotion probabilities from
:func:`pipelines.analysis.analyze.analyze`, its mood segments, and its pace from cuts and motion;
see :mod:`pipelines.library.profile`). A library is turned once into a
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
* ``tempo_fit`` -- per window, the tempo the picture asks for (:func:`~pipelines.library.profile.desired_tempo`, from
  pace = cut rate and motion, and arousal) is a range ``target +- TEMPO_HALF_WIDTH``; 1
  inside, Gaussian fall-off (``TEMPO_SIGMA``) outside; time-weighted mean over windows.
  A track without a known tempo gets 0.5.
* ``label_match`` -- ``p_video . LABEL_SIMILARITY . l_track``
  (:data:`~pipelines.library.profile.LABEL_SIMILARITY`): the video's time-weighted
  emotion distribution against the track's soft label vector (primary label 1.0, the others
  0.5, normalised; a track without labels gets its labels from its VA point). In [0, 1].

Optionally a trained model's probabilities over the same tracks (:mod:`pipelines.library.recommender`)
are blended in: ``final = (1 - model_weight) * score + model_weight * p / max(p)``.

All components are in [0, 1] and reported per recommendation, with a one-line reason.
The benchmark of :func:`rank` is :mod:`pipelines.devtools.bench_rank`. No torch: importing
this module stays light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engines.base import EMOTIONS
from pipelines.analysis.mood import MoodSegment
from pipelines.errors import DataError, LibraryError, OptionError
from pipelines.library.profile import (
    LABEL_SIMILARITY,
    TEMPO_HALF_WIDTH,
    TEMPO_SIGMA,
    VideoProfile,
    desired_tempo,
    label_vector,
)
from pipelines.library.tracks import TrackInfo

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
