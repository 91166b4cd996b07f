"""Cut-synced beats: a beat-by-beat tempo plan that puts shot cuts on beats (important ones on downbeats).

Offline the whole video is known, so the composer's tempo can bend, beat by beat, to meet the picture.
A *span* is a stretch of music in one mood (one composer section); it has the tempo the composer would
choose and the mood's tempo band (:func:`span_limits`: the own tempo ± ``band_width`` inside the style's
band, less towards a neighbouring mood's tempo). :func:`plan_beats` chooses every beat's length (4/4
bars; a beat from ``t_k`` to ``t_{k+1}`` plays at ``60 / (t_{k+1} - t_k)`` bpm) by dynamic programming
over a fine time grid, the state being (time, length of the beat ending there, its place in the bar):

* a bar belongs to the span holding the point two of its first beats after its downbeat (about its
  midpoint, so the music changes within half a bar of the mood change, as without a plan); every beat of
  it must have a tempo inside that span's band;
* a beat earns the weight of the cut it hits (``|cut - beat| <= tolerance``), a downbeat a bonus on top --
  large for an *important* cut (one a mood change was snapped to);
* a beat pays for leaving the span's own tempo (a little within ``±max_deviation``, more beyond) and for
  differing from the beat before (within a span: at most ``max_beat_change``, a smooth tempo curve), so the
  tempo stays steady unless bending it puts cuts on beats.

Cuts are at least 0.4 s apart and beats more than 0.44 s, so a beat can only ever hit one cut and the
score of a beat is a precomputed cut signal sampled at its start; the DP runs block by block (every beat
ending inside a block starts before it), vectorised over the block, the beat lengths and the changes.

:func:`beats_of_bars` and :func:`cut_report` measure the result from the bars actually composed: each
cut's signed distance to the nearest beat and the beat-hit rate (cuts within ±50 ms of a beat, the
measure of the video-to-music literature).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.base import BarInfo

BEATS_PER_BAR = 4
#: A cut "on the beat": within this distance of one (the usual ±50 ms of the video-to-music papers).
HIT_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class Cut:
    time_s: float
    weight: float = 1.0
    #: Wants a downbeat (a mood change was snapped to it, or an explicit strong cut).
    important: bool = False


@dataclass(frozen=True)
class TempoSpan:
    """A stretch of music in one mood: ``[start_s, end_s)``, its own tempo and its style's band (bpm)."""

    start_s: float
    end_s: float
    target_bpm: float
    lo_bpm: float
    hi_bpm: float


@dataclass(frozen=True)
class BeatOptions:
    #: The mood's tempo band: the own tempo ± this fraction, inside the style's band; ``None``: the whole
    #: style band (see README "Cut-synced beats" for the trade-off with the mood's energy contrast).
    band_width: float | None = 0.15
    #: ... and at most this fraction towards a neighbouring mood's own tempo (``None``: symmetric), so a
    #: calm section next to an intense one keeps its distance.
    toward_width: float | None = 0.10
    #: Beats may move this fraction from their span's own tempo cheaply (quadratic cost up to
    #: ``deviation_cost`` at the edge) ...
    max_deviation: float = 0.08
    #: ... and further, to the edge of the band, at this cost per bar and unit of deviation beyond it
    #: (``inf``: never leave ±max_deviation).
    band_cost: float = 1.0
    #: Planning grid (s): beats are multiples of it (twice as coarse past ``fine_grid_max_s`` of video).
    grid_s: float = 0.005
    fine_grid_max_s: float = 600.0
    #: A beat this close to a cut counts as hitting it while planning (a little inside the ±50 ms
    #: of the measure, for the grid and sample rounding).
    tolerance_s: float = 0.0475
    #: Bonus for a cut on a downbeat: ordinary cuts, important cuts.
    downbeat_bonus: float = 0.15
    important_bonus: float = 4.0
    #: Cost of playing a whole bar at ±max_deviation (quadratic in between; a beat pays a quarter).
    deviation_cost: float = 0.1
    #: Cost of a change of ``max_beat_change`` from one beat to the next (quadratic: gradual bends are cheap).
    change_cost: float = 0.03
    #: Largest tempo change from one beat to the next within a span (fraction): a smooth tempo curve.
    max_beat_change: float = 0.05


@dataclass(frozen=True)
class BeatPlan:
    #: Every beat's start (s), four a bar, and the end of the last bar (which runs past the video's end).
    beats: tuple[float, ...]
    #: Span index of each bar.
    spans: tuple[int, ...]

    @property
    def n_bars(self) -> int:
        return len(self.spans)

    @property
    def bar_starts(self) -> tuple[float, ...]:
        """Downbeats, and the end of the last bar."""
        return self.beats[::BEATS_PER_BAR]

    def beat_durations(self, i: int) -> tuple[float, ...]:
        b = self.beats[BEATS_PER_BAR * i:BEATS_PER_BAR * (i + 1) + 1]
        return tuple(b[k + 1] - b[k] for k in range(BEATS_PER_BAR))

    def tempo(self, i: int) -> float:
        """Bar ``i``'s mean tempo (bpm)."""
        return BEATS_PER_BAR * 60.0 / (self.bar_starts[i + 1] - self.bar_starts[i])

    def beat_tempi(self) -> np.ndarray:
        return 60.0 / np.diff(np.asarray(self.beats, np.float64))

    def anchor(self, i: int) -> float:
        """Where bar ``i``'s mood is read: two of its first beats after its downbeat (about its midpoint)."""
        return self.beats[BEATS_PER_BAR * i] + 2.0 * (self.beats[BEATS_PER_BAR * i + 1] - self.beats[BEATS_PER_BAR * i])


def weigh_cuts(cuts: Sequence[float], boundaries: Sequence[float] = (), snap_s: float = 0.2) -> list[Cut]:
    """Cuts as :class:`Cut`: every one weighs 1; those within ``snap_s`` of a mood boundary (snapped to a
    detected cut, which may lie an analysis step after the frame-exact one) are important."""
    b = np.asarray(sorted(boundaries), np.float64)
    out = []
    for c in sorted(cuts):
        important = bool(len(b) and float(np.min(np.abs(b - c))) <= snap_s)
        out.append(Cut(float(c), 1.0, important))
    return out


def span_limits(span: TempoSpan, o: BeatOptions, neighbours: Sequence[TempoSpan] = ()) -> tuple[float, float]:
    """The tempi (bpm) a beat of ``span`` may take -- the mood's tempo band: the style band, narrowed to the
    own tempo ± ``band_width``, to at most ``toward_width`` towards the own tempo of a neighbouring span (the
    mood before or after: a calm section next to an intense one may slow down more than it speeds up), and,
    when ``band_cost`` is infinite, to ±``max_deviation``."""
    own = span.target_bpm
    lo, hi = span.lo_bpm, span.hi_bpm
    for width in (o.band_width, None if np.isfinite(o.band_cost) else o.max_deviation):
        if width is not None:
            lo = max(lo, own * (1.0 - width))
            hi = min(hi, own * (1.0 + width))
    if o.toward_width is not None:
        if any(n.target_bpm > own for n in neighbours):
            hi = min(hi, own * (1.0 + o.toward_width))
        if any(n.target_bpm < own for n in neighbours):
            lo = max(lo, own * (1.0 - o.toward_width))
    if lo > hi:  # the own tempo lies outside the band: the band's nearest edge
        lo = hi = float(np.clip(own, span.lo_bpm, span.hi_bpm))
    return lo, hi


def mood_limits(spans: Sequence[TempoSpan], o: BeatOptions) -> list[tuple[float, float]]:
    """:func:`span_limits` of every span, its neighbours in the list being the moods before and after it."""
    return [span_limits(s, o, [*spans[max(0, k - 1):k], *spans[k + 1:k + 2]]) for k, s in enumerate(spans)]


def deviation_cost(tempo: np.ndarray, target: np.ndarray, o: BeatOptions) -> np.ndarray:
    """Cost of a bar at ``tempo`` in a span whose own tempo is ``target`` (see :class:`BeatOptions`)."""
    dev = np.abs(tempo - target) / target
    inner = o.deviation_cost * (np.minimum(dev, o.max_deviation) / o.max_deviation) ** 2
    beyond = np.maximum(dev - o.max_deviation, 0.0)
    return np.asarray(inner + (o.band_cost * beyond if np.isfinite(o.band_cost) else np.where(beyond > 0, np.inf, 0)))


def _cut_signals(cuts: Sequence[Cut], n: int, q: float, tol: float, o: BeatOptions) -> tuple[np.ndarray, np.ndarray]:
    """Per grid point: what a beat there earns (``hit``) and what a downbeat earns on top (``down``)."""
    hit = np.zeros(n, np.float64)
    down = np.zeros(n, np.float64)
    w = int(tol / q)
    offs = np.arange(-w, w + 1)
    shape = 1.0 - 0.25 * np.abs(offs * q) / tol  # a little better the closer
    for c in cuts:
        idx = int(round(c.time_s / q)) + offs
        ok = (idx >= 0) & (idx < n)
        hit[idx[ok]] = np.maximum(hit[idx[ok]], c.weight * shape[ok])
        bonus = o.important_bonus if c.important else o.downbeat_bonus
        down[idx[ok]] = np.maximum(down[idx[ok]], c.weight * bonus * shape[ok])
    return hit, down


_ORIGIN = 255  # predecessor code of the first beat
#: What :func:`plan_beats` uses when given no options (:func:`default_options` changes it for a benchmark).
_DEFAULT: list[BeatOptions] = [BeatOptions()]


@contextlib.contextmanager
def default_options(options: BeatOptions) -> Iterator[None]:
    """Within the block, :func:`plan_beats` without options uses ``options`` (the benchmarks compare band
    definitions through the whole score job this way)."""
    _DEFAULT.append(options)
    try:
        yield
    finally:
        _DEFAULT.pop()


def plan_beats(
    cuts: Sequence[Cut], spans: Sequence[TempoSpan], duration_s: float, options: BeatOptions | None = None
) -> BeatPlan:
    """Beats covering ``[0, duration_s]`` in whole bars (see the module doc). ``spans`` tile the time line
    in order."""
    o = options or _DEFAULT[-1]
    if not spans:
        raise ValueError("plan_beats needs at least one tempo span")
    if not (duration_s > 0 and np.isfinite(duration_s)):
        raise ValueError(f"duration must be positive, got {duration_s}")
    q = o.grid_s if duration_s <= o.fine_grid_max_s else 2 * o.grid_s
    limits = np.array(mood_limits(list(spans), o))  # (S, 2) bpm
    targets = np.array([float(np.clip(s.target_bpm, lo, hi)) for s, (lo, hi) in zip(spans, limits, strict=True)])
    b_lo = np.ceil(60.0 / limits[:, 1] / q - 1e-9).astype(np.int64)  # beat length in grid steps
    b_hi = np.maximum(np.floor(60.0 / limits[:, 0] / q + 1e-9).astype(np.int64), b_lo)
    m0, m1 = int(b_lo.min()), int(b_hi.max())
    nm = m1 - m0 + 1
    if nm >= _ORIGIN:
        raise ValueError("tempo bands too wide for the planning grid")
    lengths = np.arange(m0, m1 + 1)  # (NM,)
    end = max(1, int(round(duration_s / q)))
    n = end + m1 + 1
    starts = np.array([s.start_s for s in spans])
    span_of = np.clip(np.searchsorted(starts, np.arange(n + 2 * m1 + 1) * q, side="right") - 1, 0, len(spans) - 1)
    hit, down = _cut_signals(cuts, n, q, o.tolerance_s, o)
    # per span and beat length: allowed, and the deviation cost of a beat (a quarter of a bar's)
    allowed = (lengths[None, :] >= b_lo[:, None]) & (lengths[None, :] <= b_hi[:, None])  # (S, NM)
    tempo = 60.0 / (lengths * q)
    dev = np.where(allowed, deviation_cost(tempo[None, :], targets[:, None], o) / BEATS_PER_BAR, np.inf)
    # beat-to-beat changes: previous length = length + d
    d_max = int(np.ceil(o.max_beat_change * m1 / (1.0 - o.max_beat_change))) + 1
    d = np.arange(-d_max, d_max + 1)
    prev_len = lengths[:, None] + d[None, :]  # (NM, D)
    frac = np.abs(60.0 / lengths[:, None] - 60.0 / np.maximum(prev_len, 1)) / (60.0 / np.maximum(prev_len, 1))
    smooth = (prev_len >= m0) & (prev_len <= m1) & (frac <= o.max_beat_change + 1e-9)
    change = np.where(smooth, o.change_cost * (frac / o.max_beat_change) ** 2, np.inf)  # (NM, D)
    prev_idx = np.clip(prev_len - m0, 0, nm - 1)

    ring = m1 + m0 + 1  # rows kept: a block of m0 ends reads back at most m1
    K = BEATS_PER_BAR
    cost = np.full((K, ring, nm), np.inf)
    attr = np.zeros((K, ring, nm), np.int64)  # span of the bar the beat belongs to
    pred = np.full((n, nm, K), _ORIGIN, np.uint8)  # length index of the beat before
    # per row, over the bar-ending beats: the best, its span, and the best of another span (mood changes)
    best1 = np.full((ring, 3), np.inf)  # cost, length index, span
    best2 = np.full((ring, 2), np.inf)  # cost, length index
    dev_flat = dev.ravel()
    x = m0
    while x < n:
        y = min(n, x + m0)
        nb = y - x
        # the lengths the spans near this block allow (a bar started up to 4 beats back, its anchor 2 on)
        near = slice(int(span_of[max(0, x - BEATS_PER_BAR * m1)]), int(span_of[y + 2 * m1]) + 1)
        cols = np.arange(int(b_lo[near].min()) - m0, int(b_hi[near].max()) - m0 + 1)
        j = np.arange(x, y)[:, None]  # (B, 1)
        i = j - lengths[cols][None, :]  # (B, NA): where the beat ending at j starts
        ok_i = i >= 0
        ic = np.where(ok_i, i, 0)
        rows = ic % ring
        prev = prev_idx[cols]  # (NA, D)
        ch = change[cols]
        flat = (rows[:, :, None] * nm + prev[None])  # (B, NA, D) previous states in a (ring, NM) plane
        b_rows = np.arange(nb)[:, None]
        new_cost = np.full((K, nb, nm), np.inf)
        new_attr = np.zeros((K, nb, nm), np.int64)
        new_pred = np.full((nb, nm, K), _ORIGIN, np.uint8)
        gain = hit[ic]
        # a beat inside a bar: continues the bar's span, smoothly
        for k in range(1, K):
            a_prev = np.take(attr[k - 1], flat)
            tot = np.take(cost[k - 1], flat) + ch[None] + np.take(dev_flat, a_prev * nm + cols[None, :, None])
            best = np.argmin(tot, axis=2)
            val = np.take_along_axis(tot, best[:, :, None], 2)[:, :, 0] - gain
            new_cost[k][:, cols] = np.where(ok_i, val, np.inf)
            new_attr[k][:, cols] = np.take_along_axis(a_prev, best[:, :, None], 2)[:, :, 0]
            new_pred[:, cols, k] = np.take_along_axis(prev[None], best[:, :, None], 2)[:, :, 0]
        # a downbeat: a new bar whose span holds the point two beats on
        s_new = span_of[ic + 2 * lengths[cols][None, :]]  # (B, NA)
        a3 = np.take(attr[K - 1], flat)
        tot_same = np.where(a3 == s_new[:, :, None], np.take(cost[K - 1], flat) + ch[None], np.inf)
        best_same = np.argmin(tot_same, axis=2)
        v_same = np.take_along_axis(tot_same, best_same[:, :, None], 2)[:, :, 0]
        other1 = best1[rows, 2] != s_new  # another span's bar ended there: a mood change, any tempo jump
        v_other = np.where(other1, best1[rows, 0], best2[rows, 0])
        p_other = np.where(other1, best1[rows, 1], best2[rows, 1])
        use_other = v_other < v_same
        v = np.where(use_other, v_other, v_same)
        p = np.where(use_other, p_other, np.take_along_axis(prev[None], best_same[:, :, None], 2)[:, :, 0])
        origin = i == 0
        v = np.where(origin, 0.0, v)
        p = np.where(origin | ~np.isfinite(p), _ORIGIN, p)
        val = v + dev[s_new, cols[None, :]] - gain - down[ic]
        new_cost[0][:, cols] = np.where(ok_i, val, np.inf)
        new_attr[0][:, cols] = s_new
        new_pred[:, cols, 0] = p.astype(np.uint8)
        at = np.arange(x, y) % ring
        cost[:, at] = new_cost
        attr[:, at] = new_attr
        pred[x:y] = new_pred
        last = new_cost[K - 1]  # (B, NM)
        i1 = np.argmin(last, axis=1)
        c1 = last[b_rows[:, 0], i1]
        s1 = new_attr[K - 1][b_rows[:, 0], i1]
        masked = np.where(new_attr[K - 1] != s1[:, None], last, np.inf)
        i2 = np.argmin(masked, axis=1)
        best1[at] = np.stack([c1, i1, s1], axis=1)
        best2[at] = np.stack([masked[b_rows[:, 0], i2], i2], axis=1)
        best1[at[~np.isfinite(c1)], 2] = -1
        x = y
    # the last beat holds the end
    js = np.arange(end, n)
    c_end = np.moveaxis(cost[:, js % ring], 0, 2)  # (E, NM, K)
    starts_end = js[:, None, None] - lengths[None, :, None]
    c_end = np.where(starts_end < end, c_end, np.inf)
    if not np.isfinite(c_end).any():
        raise ValueError("no beat grid fits these tempo spans")
    e_end, m_end, k_end = np.unravel_index(int(np.argmin(c_end)), c_end.shape)
    path: list[tuple[int, int, int]] = [(int(js[e_end]), int(m_end), int(k_end))]  # (end, length index, place)
    while True:
        jj, mi, kk = path[-1]
        before = int(pred[jj, mi, kk])
        if before == _ORIGIN:
            break
        path.append((jj - int(lengths[mi]), before, (kk - 1) % BEATS_PER_BAR))
    path.reverse()
    onsets = [0] + [jj for jj, _, _ in path]
    last_len = int(lengths[path[-1][1]])
    for _ in range(BEATS_PER_BAR - 1 - path[-1][2]):  # complete the last bar at its last beat's tempo
        onsets.append(onsets[-1] + last_len)
    firsts = [int(lengths[mi]) for _, mi, kk in path if kk == 0]
    downs = onsets[::BEATS_PER_BAR][:-1]
    bar_spans = tuple(int(span_of[b + 2 * f]) for b, f in zip(downs, firsts, strict=True))
    return BeatPlan(tuple(o_ * q for o_ in onsets), bar_spans)


# --------------------------------------------------------------------------- measuring


def beats_of_bars(bars: Sequence[BarInfo], beats_per_bar: int = BEATS_PER_BAR) -> tuple[np.ndarray, np.ndarray]:
    """``(beats, downbeats)`` (s) of composed bars: each bar's beats as it played them
    (:meth:`BarInfo.beat_times`: even at its tempo, or the beat plan's), and the end of the last bar."""
    beats = [t for b in bars for t in b.beat_times(beats_per_bar)]
    downs = [b.start_s for b in bars]
    if bars:
        beats.append(bars[-1].start_s + bars[-1].duration_s)
        downs.append(bars[-1].start_s + bars[-1].duration_s)
    return np.asarray(beats, np.float64), np.asarray(downs, np.float64)


def beat_tempi_of_bars(bars: Sequence[BarInfo], beats_per_bar: int = BEATS_PER_BAR) -> list[float]:
    """Every beat's tempo (bpm) as the bars played them."""
    out: list[float] = []
    for b in bars:
        if b.beat_durations_s is None:
            out.extend([b.tempo_bpm] * beats_per_bar)
        else:
            out.extend(60.0 / d for d in b.beat_durations_s)
    return out


def beats_of_plan(plan: BeatPlan) -> np.ndarray:
    """The beats (s) of a plan (four a bar, and the end of the last)."""
    return np.asarray(plan.beats, np.float64)


def _nearest(times: np.ndarray, t: float) -> float:
    k = int(np.searchsorted(times, t))
    cands = times[max(0, k - 1):k + 1]
    return float(cands[np.argmin(np.abs(cands - t))])


def cut_report(
    cuts: Sequence[Cut], beats: np.ndarray, downbeats: np.ndarray | None, tolerance_s: float = HIT_TOLERANCE_S
) -> dict[str, Any]:
    """Per cut: signed offset from the nearest beat (ms; + = cut after the beat), on a beat, on a downbeat
    (``None`` when downbeats are unknown); overall beat-hit rate (``None`` without cuts or beats)."""
    rows: list[dict[str, Any]] = []
    beats = np.sort(np.asarray(beats, np.float64))
    downs = None if downbeats is None else np.sort(np.asarray(downbeats, np.float64))
    for c in cuts:
        row: dict[str, Any] = {"time_s": round(c.time_s, 3), "important": c.important}
        if len(beats):
            off = c.time_s - _nearest(beats, c.time_s)
            row["beat_offset_ms"] = round(1000.0 * off, 1)
            row["on_beat"] = bool(abs(off) <= tolerance_s + 1e-9)
            row["on_downbeat"] = (None if downs is None or not len(downs)
                                  else bool(abs(c.time_s - _nearest(downs, c.time_s)) <= tolerance_s + 1e-9))
        else:
            row.update(beat_offset_ms=None, on_beat=None, on_downbeat=None)
        rows.append(row)
    scored = [r for r in rows if r["on_beat"] is not None]
    important = [r for r in scored if r["important"] and r["on_downbeat"] is not None]
    return {
        "cuts": rows,
        "beat_hit_rate": round(sum(r["on_beat"] for r in scored) / len(scored), 4) if scored else None,
        "important_downbeat_rate": (round(sum(r["on_downbeat"] for r in important) / len(important), 4)
                                    if important else None),
        "tolerance_ms": round(1000 * tolerance_s, 1),
    }


def hit_rate(cut_times: Sequence[float], beats: np.ndarray, tolerance_s: float = HIT_TOLERANCE_S) -> float | None:
    """Share of ``cut_times`` within ``tolerance_s`` of a beat (``None`` without cuts or beats)."""
    b = np.sort(np.asarray(beats, np.float64))
    if not len(cut_times) or not len(b):
        return None
    return float(np.mean([abs(c - _nearest(b, c)) <= tolerance_s + 1e-9 for c in cut_times]))
