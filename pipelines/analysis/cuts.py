"""Shot cuts: an adaptive detector in the manner of PySceneDetect's AdaptiveDetector, on colour-histogram
and pixel content changes between analysed frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CutOptions:
    #: A cut needs the colour-histogram change to reach this (0..1) ...
    min_hist_change: float = 0.25
    #: ... or, for cuts between shots of the same palette, this pixel content change (0..255).
    min_content_change: float = 30.0
    #: In both cases the score must also be this many times its neighbours' mean.
    adaptive_ratio: float = 3.0
    neighbours: int = 2  # analysed frames on each side
    min_gap_s: float = 0.4


def _adaptive_peaks(x: np.ndarray, minimum: float, ratio: float, neighbours: int) -> np.ndarray:
    """Boolean mask: ``x[i] >= minimum`` and ``x[i] >= ratio * mean(neighbours of i)``."""
    n = len(x)
    out = np.zeros(n, dtype=bool)
    for i in range(1, n):
        if x[i] < minimum:
            continue
        lo, hi = max(1, i - neighbours), min(n, i + neighbours + 1)
        neigh = np.concatenate([x[lo:i], x[i + 1 : hi]])
        ref = float(neigh.mean()) if len(neigh) else 0.0
        out[i] = x[i] >= ratio * ref
    return out


def detect_cuts(
    times_s: np.ndarray,
    hist_change: np.ndarray,
    content_change: np.ndarray | None = None,
    options: CutOptions | None = None,
) -> list[float]:
    """Times (s) of shot cuts from per-analysed-frame change scores.

    Like PySceneDetect's AdaptiveDetector, a frame is a cut when its change score is large in
    absolute terms *and* several times its neighbours' (so sustained fast motion is not a
    run of cuts). The colour-histogram change carries most cuts; the pixel content change
    catches cuts between shots with the same palette.
    """
    o = options or CutOptions()
    mask = _adaptive_peaks(np.asarray(hist_change, np.float64), o.min_hist_change, o.adaptive_ratio, o.neighbours)
    if content_change is not None:
        mask |= _adaptive_peaks(
            np.asarray(content_change, np.float64), o.min_content_change, o.adaptive_ratio, o.neighbours
        )
    cuts: list[float] = []
    for i in np.nonzero(mask)[0]:
        t = float(times_s[i])
        if cuts and t - cuts[-1] < o.min_gap_s:
            continue
        cuts.append(t)
    return cuts


# --------------------------------------------------------------------------- onsets: immediate evidence


@dataclass(frozen=True)
class OnsetOptions:
    """When a change of the picture or the sound is *immediate evidence* of a new mood (the fast path of
    :class:`~pipelines.analysis.mood.MoodTracker`): a shot cut together with a jump in loudness,
    brightness or motion, or a sudden loud passage on its own. Jumps compare the ``window_s`` after the
    onset with the ``before_s`` before it (energy means for the sound)."""

    window_s: float = 0.5
    before_s: float = 1.5
    #: With a cut: a loudness jump (either way, dB), a brightness jump (HSV V, 0..1) or a motion jump
    #: (mean luma difference, 0..1: at least this much more and ``motion_ratio`` times as much, or the
    #: reverse).
    loudness_db: float = 6.0
    brightness: float = 0.12
    motion: float = 0.02
    motion_ratio: float = 2.0
    #: Without a cut: the sound gets this much louder (dB).
    loud_passage_db: float = 10.0
    #: Audio level blocks (s).
    block_s: float = 0.05
    #: Two onsets closer than this are one.
    min_gap_s: float = 1.0
    #: The short window's cut rate: the cuts from the onset on over at least this span (a shot rhythm
    #: cannot be measured in half a second; :func:`~pipelines.analysis.windows.onset_window_features`).
    cut_span_s: float = 1.0
    #: A live client's sound and picture can be this far apart (s): the sound's own step near a cut is
    #: looked for within it (:func:`sound_step`), so the short window hears the new scene only.
    max_skew_s: float = 0.5
    #: ... comparing this much sound on either side of each block.
    step_span_s: float = 0.4

    def __post_init__(self) -> None:
        if min(self.window_s, self.before_s, self.block_s) <= 0:
            raise ValueError("onset window_s, before_s and block_s must be positive")


def block_power(samples: np.ndarray, block: int) -> np.ndarray:
    """Mean square of each whole ``block`` of samples (mono or (n, channels)); a trailing part block is dropped."""
    x = np.asarray(samples, np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    n = x.shape[0] // max(1, block)
    if n == 0:
        return np.zeros(0, np.float64)
    return np.mean(np.square(x[: n * block].reshape(n, block), dtype=np.float64), axis=1)


def _db(power: np.ndarray) -> float:
    return 10.0 * float(np.log10(max(float(np.mean(power)), 1e-10))) if len(power) else -100.0


def _span(times: np.ndarray, a: float, b: float) -> np.ndarray:
    return np.nonzero((times >= a - 1e-9) & (times < b - 1e-9))[0]


def loudness_jump_db(level_t: np.ndarray, level_p: np.ndarray, t: float, o: OnsetOptions) -> float | None:
    """Level after ``t`` minus level before it (dB of mean power); None when either side has no blocks."""
    before, after = _span(level_t, t - o.before_s, t), _span(level_t, t, t + o.window_s)
    if len(before) == 0 or len(after) == 0:
        return None
    return _db(level_p[after]) - _db(level_p[before])


def sound_step(level_t: np.ndarray, level_p: np.ndarray, t: float, o: OnsetOptions) -> float | None:
    """Where the sound changes level most within ``max_skew_s`` of ``t``: the block whose ``step_span_s``
    after and before differ most, when by at least ``loudness_db``; else None. Only blocks with their whole
    ``step_span_s`` after them are judged."""
    if len(level_t) == 0:
        return None
    best, best_jump = None, o.loudness_db
    last = float(level_t[-1]) + o.block_s - o.step_span_s
    for i in _span(level_t, t - o.max_skew_s, min(t + o.max_skew_s, last) + 1e-9):
        x = float(level_t[i])
        before, after = _span(level_t, x - o.step_span_s, x), _span(level_t, x, x + o.step_span_s)
        if len(before) and len(after):
            jump = abs(_db(level_p[after]) - _db(level_p[before]))
            if jump >= best_jump:
                best, best_jump = x, jump
    return best


def loud_passages(level_t: np.ndarray, level_p: np.ndarray, until_s: float, o: OnsetOptions,
                  after_s: float = -np.inf) -> list[float]:
    """Starts of sudden loud passages up to ``until_s - window_s`` (after ``after_s``): where the level of the
    next ``window_s`` is ``loud_passage_db`` above that of the ``before_s`` before. The start is the first
    block that is itself that much louder (a mean over the next ``window_s`` rises before the passage does)."""
    out: list[float] = []
    if len(level_t) == 0:
        return out
    db = 10.0 * np.log10(np.maximum(level_p, 1e-10))
    lo = max(after_s + 1e-9, float(level_t[0]) + o.before_s)
    for i in _span(level_t, lo, until_s - o.window_s + 1e-9):
        t = float(level_t[i])
        if out and t < out[-1] + o.min_gap_s:
            continue
        jump = loudness_jump_db(level_t, level_p, t, o)
        if jump is None or jump < o.loud_passage_db:
            continue
        ref = _db(level_p[_span(level_t, t - o.before_s, t)])
        post = _span(level_t, t, t + o.window_s)
        step = [k for k in post if db[k] >= ref + o.loud_passage_db]
        start = float(level_t[step[0]]) if step else t
        if start > after_s and start <= until_s - o.window_s + 1e-9 and (not out or start >= out[-1] + o.min_gap_s):
            out.append(start)
    return out


@dataclass(frozen=True)
class Evidence:
    """What makes a change at an onset immediate (``kinds`` empty: nothing does), and how strongly: the sum
    of the jumps, each in units of its threshold."""

    kinds: tuple[str, ...] = ()
    strength: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.kinds)


def onset_evidence(t: float, cut: bool, frame_t: np.ndarray, brightness: np.ndarray | None,
                   motion: np.ndarray | None, level_t: np.ndarray, level_p: np.ndarray,
                   o: OnsetOptions, cuts: Sequence[float] = (), sound_at: float | None = None) -> Evidence:
    """The evidence of a change at ``t``. ``cut``: a shot cut at ``t``. Frame columns are per analysed frame
    at ``frame_t``; sound levels are mean squares of blocks at ``level_t``, the sound's jump measured at
    ``sound_at`` (default ``t``: see :func:`sound_step`); frames at ``cuts`` are left out of the motion
    (their difference to the frame before is a cut, not motion)."""
    kinds: list[str] = []
    strength = 0.0
    jump = loudness_jump_db(level_t, level_p, t if sound_at is None else sound_at, o)
    if not cut:
        if jump is not None and jump >= o.loud_passage_db:
            return Evidence(("loud passage",), jump / o.loud_passage_db)
        return Evidence()
    if jump is not None and abs(jump) >= o.loudness_db:
        kinds.append("loudness")
        strength += abs(jump) / o.loudness_db
    before, after = _span(frame_t, t - o.before_s, t), _span(frame_t, t, t + o.window_s)
    if len(before) and len(after):
        if brightness is not None:
            db = abs(float(np.mean(brightness[after]) - np.mean(brightness[before])))
            if db >= o.brightness:
                kinds.append("brightness")
                strength += db / o.brightness
        if motion is not None:
            cut_arr = np.asarray([*cuts, t], np.float64)
            still = np.array([float(np.min(np.abs(cut_arr - x))) > 1e-6 for x in frame_t], dtype=bool)
            pre, post = before[still[before]], after[still[after]]
            if len(pre) and len(post):
                m0, m1 = float(np.mean(motion[pre])), float(np.mean(motion[post]))
                lo, hi = min(m0, m1), max(m0, m1)
                if hi - lo >= o.motion and hi >= o.motion_ratio * lo:
                    kinds.append("motion")
                    strength += (hi - lo) / o.motion
    return Evidence(("cut", *kinds), strength) if kinds else Evidence()
