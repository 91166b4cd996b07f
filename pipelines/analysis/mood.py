"""Rolling mood: smoothed affect, hysteresis and mood segments.

* :class:`MoodTracker` -- causal, streaming: fed one window estimate at a time (offline job
  and live sessions alike), it smooths the emotion probabilities and switches mood only with
  hysteresis (the challenger must beat the current mood by ``margin`` for ``hold_s``) and
  after ``min_segment_s``, so the music does not flap. A confirmed change is dated back to
  when the challenger first took the lead.
* The fast path: when the caller has *immediate evidence* of a change at ``t`` (a shot cut
  together with a jump in loudness, brightness or motion, or a sudden loud passage:
  :mod:`pipelines.analysis.cuts`), it arms the tracker (:meth:`MoodTracker.arm_onset`) and pushes
  the estimate of a short window right after ``t``. That estimate (raw, not smoothed) confirms a
  new mood at once when it is clear (``onset_min_prob``), beats the current mood by
  ``onset_margin``, lies ``onset_va_jump`` from the smoothed valence-arousal point, and the current
  mood has lasted ``min_segment_s``; the smoothing restarts from it, and the windows that still
  straddle ``t`` are left out of it. Without such evidence (slow drift) the hysteresis above decides.
* :func:`segment_timeline` -- the offline wrapper: runs the tracker over all windows, merges
  too-short segments and snaps boundaries to a shot cut (:mod:`pipelines.analysis.cuts`) when
  one is within ``snap_s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from engines.base import EMOTIONS, AffectEstimate


@dataclass(frozen=True)
class SegmentOptions:
    smoothing_s: float = 2.0  # EMA time constant on emotion probabilities
    margin: float = 0.15  # challenger must lead by this much probability
    hold_s: float = 1.5  # ... for this long
    #: The first mood is the mean of this much of the first windows (None: ``hold_s``). A live session
    #: takes the first window's (0): its music starts then, and a first mood decided later would switch it.
    first_hold_s: float | None = None
    min_segment_s: float = 5.0
    snap_s: float = 1.0  # snap boundaries to a cut within this distance
    #: The fast path: the short window after an onset must be confident of its mood (``onset_min_prob``),
    #: beat the current mood by ``onset_margin`` probability, and its valence-arousal point lie
    #: ``onset_va_jump`` from the smoothed one (a new shot of the same scene differs less). Half a
    #: second of real footage is rarely that clear; when it is not, the hysteresis decides.
    onset_min_prob: float = 0.6
    onset_margin: float = 0.25
    onset_va_jump: float = 0.4


@dataclass(frozen=True)
class MoodSegment:
    start_s: float
    end_s: float
    emotion: str
    valence: float
    arousal: float
    confidence: float


#: How far back a change can be dated (seconds of window history kept).
HISTORY_S = 30.0


@dataclass(frozen=True)
class MoodChange:
    """Emitted by :class:`MoodTracker` when a new mood is confirmed."""

    at_s: float  # when the new mood began (challenger first led; the onset, for the fast path)
    confirmed_s: float  # when the change was confirmed
    emotion: str
    #: Confirmed by the fast path on immediate evidence (the music should follow at once).
    urgent: bool = False


@dataclass
class MoodTracker:
    """Streaming hysteresis over window affect estimates (see module doc)."""

    options: SegmentOptions = field(default_factory=SegmentOptions)
    current: str | None = None
    since_s: float = 0.0
    _smoothed: np.ndarray | None = None
    _va: np.ndarray | None = None  # smoothed (valence, arousal)
    _last_t: float | None = None
    _challenger: str | None = None
    _challenger_since: float = 0.0
    _history: list[tuple[float, np.ndarray]] = field(default_factory=list)
    #: (onset, settle until): the next push is the short window after an onset (see :meth:`arm_onset`).
    _armed: tuple[float, float] | None = None
    #: Window estimates centred before this straddle the last fast-path onset: left out.
    _settle_until: float = -np.inf

    def arm_onset(self, onset_s: float, settle_until_s: float) -> None:
        """The next :meth:`push` is the estimate of a short window starting at ``onset_s``, where the
        caller saw immediate evidence of a change. If it confirms one, window estimates centred before
        ``settle_until_s`` (windows that began before the onset) are ignored afterwards."""
        self._armed = (onset_s, settle_until_s)

    def onset_possible(self, onset_s: float) -> bool:
        """Whether an onset at ``onset_s`` could confirm a change (a mood is set and old enough)."""
        return self.current is not None and onset_s >= self.since_s + self.options.min_segment_s - 1e-9

    def _push_onset(self, onset_s: float, settle_s: float, t_s: float, p: np.ndarray,
                    va: np.ndarray) -> MoodChange | None:
        if self.current is None or not self.onset_possible(onset_s):
            return None
        cur_i = EMOTIONS.index(self.current)
        best = int(np.argmax(p))
        if best == cur_i or p[best] < self.options.onset_min_prob or p[best] - p[cur_i] < self.options.onset_margin:
            return None  # the short window does not say otherwise: nothing changes
        if self._va is not None and float(np.hypot(*(va - self._va))) < self.options.onset_va_jump:
            return None  # too close to the mood so far: another shot of the same scene
        change = MoodChange(at_s=onset_s, confirmed_s=t_s, emotion=EMOTIONS[best], urgent=True)
        self.current, self.since_s = change.emotion, onset_s
        self._smoothed, self._va, self._last_t = p, va, t_s
        self._challenger = None
        self._history = [(t_s, p)]
        self._settle_until = settle_s
        return change

    def push(self, t_s: float, estimate: AffectEstimate) -> MoodChange | None:
        p = np.asarray(estimate.probs, dtype=np.float64)
        if self._armed is not None:
            (onset_s, settle_s), self._armed = self._armed, None
            return self._push_onset(onset_s, settle_s, t_s, p, np.array([estimate.valence, estimate.arousal]))
        if t_s < self._settle_until:
            return None  # a window that began before the fast path's onset
        va = np.array([estimate.valence, estimate.arousal], dtype=np.float64)
        if self._smoothed is None or self._last_t is None or self._va is None:
            self._smoothed, self._va = p, va
        else:
            dt = max(1e-3, t_s - self._last_t)
            a = 1.0 - np.exp(-dt / max(1e-3, self.options.smoothing_s))
            self._smoothed = (1 - a) * self._smoothed + a * p
            self._va = (1 - a) * self._va + a * va
        self._last_t = t_s
        self._history.append((t_s, p))
        if self._history[0][0] < t_s - HISTORY_S:  # bounded memory for endless live streams
            self._history = [h for h in self._history if h[0] >= t_s - HISTORY_S]
        s = self._smoothed
        if self.current is None:
            # The first mood is decided on the mean of the first ``hold_s`` of windows, not
            # on a single (possibly unrepresentative) window.
            t_first = self._history[0][0]
            first_hold = self.options.hold_s if self.options.first_hold_s is None else self.options.first_hold_s
            if t_s - t_first + 1e-9 < first_hold:
                return None
            mean = np.mean([h[1] for h in self._history], axis=0)
            self.current = EMOTIONS[int(np.argmax(mean))]
            self.since_s = t_first
            self._smoothed = mean
            return MoodChange(at_s=t_first, confirmed_s=t_s, emotion=self.current)
        cur_i = EMOTIONS.index(self.current)
        best = int(np.argmax(s))
        best_name = EMOTIONS[best]
        if best_name == self.current or s[best] - s[cur_i] < self.options.margin:
            if best_name == self.current:
                self._challenger = None
            return None
        if self._challenger != best_name:
            self._challenger = best_name
            self._challenger_since = t_s
        if t_s - self._challenger_since + 1e-9 < self.options.hold_s:
            return None
        # Date the change back to when the raw (unsmoothed) estimates started favouring the
        # challenger: smoothing delays the decision, not the mood.
        onset = t_s
        for th, ph in reversed(self._history):
            if ph[best] <= ph[cur_i]:
                break
            onset = th
        onset = max(onset, self.since_s + self.options.min_segment_s)
        if onset > t_s:
            return None
        change = MoodChange(at_s=onset, confirmed_s=t_s, emotion=best_name)
        self.current = best_name
        self.since_s = onset
        self._challenger = None
        self._history = [h for h in self._history if h[0] >= onset]
        return change

    @property
    def smoothed(self) -> np.ndarray | None:
        return self._smoothed


def segment_timeline(
    times_s: Sequence[float],
    estimates: Sequence[AffectEstimate],
    duration_s: float,
    cuts: Sequence[float] = (),
    options: SegmentOptions | None = None,
) -> list[MoodSegment]:
    """Mood segments covering ``[0, duration_s]`` (offline: tracker + merge + cut snapping)."""
    o = options or SegmentOptions()
    if not estimates:
        return [MoodSegment(0.0, duration_s, "neutral", 0.0, 0.0, 0.0)]
    tracker = MoodTracker(o)
    changes: list[MoodChange] = []
    for t, estimate in zip(times_s, estimates, strict=True):
        ch = tracker.push(t, estimate)
        if ch is not None:
            changes.append(ch)
    if not changes:  # shorter than the tracker's first decision
        mean = np.mean([x.probs for x in estimates], axis=0)
        changes.append(MoodChange(at_s=0.0, confirmed_s=float(times_s[-1]), emotion=EMOTIONS[int(np.argmax(mean))]))
    bounds = [0.0] + [c.at_s for c in changes[1:]] + [duration_s]
    labels = [c.emotion for c in changes]
    # Snap boundaries to nearby cuts, keeping order and the minimum length.
    for i in range(1, len(bounds) - 1):
        near = [c for c in cuts if abs(c - bounds[i]) <= o.snap_s]
        if near:
            cand = min(near, key=lambda c: abs(c - bounds[i]))
            if cand - bounds[i - 1] >= 0.5 * o.min_segment_s and bounds[i + 1] - cand >= 0.5:
                bounds[i] = cand
    # A final segment shorter than the minimum is merged into its predecessor.
    while len(labels) > 1 and bounds[-1] - bounds[-2] < 0.5 * o.min_segment_s:
        del bounds[-2]
        del labels[-1]
    t_arr = np.asarray(times_s)
    segs: list[MoodSegment] = []
    for i, label in enumerate(labels):
        s, e = bounds[i], bounds[i + 1]
        idx = [int(j) for j in np.nonzero((t_arr >= s) & (t_arr < e))[0]]
        if not idx:
            idx = [int(np.argmin(np.abs(t_arr - (s + e) / 2)))]
        sel = [estimates[j] for j in idx]
        segs.append(
            MoodSegment(
                start_s=s,
                end_s=e,
                emotion=label,
                valence=float(np.mean([x.valence for x in sel])),
                arousal=float(np.mean([x.arousal for x in sel])),
                confidence=float(np.mean([x.prob(label) for x in sel])),
            )
        )
    # Merge neighbours that ended up with the same label.
    merged: list[MoodSegment] = []
    for seg in segs:
        if merged and merged[-1].emotion == seg.emotion:
            prev = merged[-1]
            wa, wb = prev.end_s - prev.start_s, seg.end_s - seg.start_s
            tot = max(1e-9, wa + wb)
            merged[-1] = MoodSegment(
                prev.start_s, seg.end_s, seg.emotion,
                (prev.valence * wa + seg.valence * wb) / tot,
                (prev.arousal * wa + seg.arousal * wb) / tot,
                (prev.confidence * wa + seg.confidence * wb) / tot,
            )
        else:
            merged.append(seg)
    return merged
