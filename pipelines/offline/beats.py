"""Cut-synced beats: a beat-by-beat tempo plan that puts shot cuts on beats (important ones on downbeats).

Offline the whole video is known, so the composer's tempo can bend, beat by beat, to meet the picture.
A *span* is a stretch of music in one mood (one composer section); it has the tempo the composer would
choose and the mood's tempo band (:func:`span_limits`: inside the style's band, the own tempo
± ``band_width``, further away from a neighbouring mood's tempo (``away_width``: a calm mood next to an
intense one may slow down more, the intense one speed up more) and less towards it (``toward_width`` or
``toward_share`` of the way, whichever is more); a high-arousal mood, whose style band reaches double time
(``StylePreset.fast_max``, 160-168 bpm), up to ``fast_width`` (70 %) above its own tempo, so steady fast cuts can
fall on every other beat). :func:`plan_beats` chooses every beat's length (4/4
bars; a beat from ``t_k`` to ``t_{k+1}`` plays at ``60 / (t_{k+1} - t_k)`` bpm) by dynamic programming
over a fine time grid, the state being (time, length of the beat ending there, its place in the bar):

* a bar belongs to the span holding the point two of its first beats after its downbeat (about its
  midpoint, so the music changes within half a bar of the mood change, as without a plan); every beat of
  it must have a tempo inside that span's band;
* a beat earns the weight of the cut it hits (``|cut - beat| <= tolerance``), a downbeat a bonus on top --
  large for an *important* cut (one a mood change was snapped to);
* a beat pays for leaving the span's own tempo (a little within ``±max_deviation``, more beyond) and for
  differing from the beat before (within a span: at most ``max_beat_change``, a smooth tempo curve; at most
  ``cut_beat_change`` where the beat starts on a cut -- a tempo change on a hit point, as a film composer
  writes one into the click track, the cut masking the step), so the tempo stays steady unless bending it
  puts cuts on beats.

Cuts are at least 0.4 s apart and beats at least 0.35 s (168 bpm) long, so a beat can only ever hit one cut and the
score of a beat is a precomputed cut signal sampled at its start; the DP runs block by block (every beat
ending inside a block starts before it), vectorised over the block, the beat lengths and the changes (the
larger steps at cuts only for the few beats that start on one).

:mod:`pipelines.offline.beat_measure` (re-exported here: :func:`beats_of_bars`, :func:`cut_report`, ...)
measures the result from the bars actually composed: each cut's signed distance to the nearest beat and
the beat-hit rate (cuts within ±50 ms of a beat, the measure of the video-to-music literature).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.offline.beat_measure import (
    BEATS_PER_BAR,
    HIT_TOLERANCE_S,
    Cut,
    beat_tempi_of_bars,
    beats_of_bars,
    cut_report,
    hit_rate,
)

__all__ = [  # the measuring names are re-exported from beat_measure
    "BEATS_PER_BAR", "HIT_TOLERANCE_S", "BeatOptions", "BeatPlan", "Cut", "TempoSpan", "beat_tempi_of_bars",
    "beats_of_bars", "beats_of_plan", "cut_report", "default_options", "hit_rate", "mood_limits", "plan_beats",
    "span_limits", "weigh_cuts",
]


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
    #: ... but this fraction away from the neighbouring moods' own tempi when they all lie on one side (a
    #: calm mood next to intense ones may slow down this far, an intense one speed up; ``None``:
    #: ``band_width``) ...
    away_width: float | None = 0.25
    #: ... and towards a neighbouring mood's own tempo at most this fraction of the own tempo or
    #: ``toward_share`` of the way to the neighbour's, whichever is more (``toward_width=None``:
    #: symmetric), so a calm section next to an intense one keeps its distance: moods far apart in tempo
    #: keep at least a third of it between them, close ones (cheerful's 104 and 128) 10 % each.
    toward_width: float | None = 0.10
    toward_share: float = 1.0 / 3.0
    #: Double time: a span whose band reaches ``fast_from_bpm`` or more (a high-arousal mood, the style's
    #: ``fast_max``: :meth:`engines.composer.styles.StylePreset.tempo_band`) may speed up this fraction of
    #: its own tempo (``None``: as any other), so steady fast cuts can fall on every other beat; the
    #: deviation cost still keeps it at its own tempo unless the cuts pay for more.
    fast_width: float | None = 0.7
    fast_from_bpm: float = 140.0
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
    #: Largest tempo change from one beat to the next within a span (fraction): a smooth tempo curve ...
    max_beat_change: float = 0.05
    #: ... except where the beat starts on a cut (within ``tolerance_s``): a tempo change on a hit point,
    #: costing ``step_cost`` per ``max_beat_change`` beyond ``max_beat_change`` (a 15 % step 0.43: worth
    #: putting a cut on a beat, not just an ordinary cut on a downbeat or a tempo nearer the own one).
    cut_beat_change: float = 0.15
    step_cost: float = 0.2


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
    own tempo ± ``band_width`` (``away_width`` on the side away from the neighbouring spans' own tempi, the
    moods before and after, when they all lie on the other side), to at most ``toward_width`` of the own
    tempo or ``toward_share`` of the way towards a neighbour's own tempo, whichever is more (a calm section
    next to an intense one may slow down more than it speeds up, the intense one the other way round; a
    high-arousal mood whose band reaches ``fast_from_bpm`` up to ``fast_width`` above its own tempo: double
    time), and, when ``band_cost`` is infinite, to ±``max_deviation``."""
    own = span.target_bpm
    lo, hi = span.lo_bpm, span.hi_bpm
    faster = [n.target_bpm for n in neighbours if n.target_bpm > own]
    slower = [n.target_bpm for n in neighbours if n.target_bpm < own]
    if o.band_width is not None:
        away = o.band_width if o.away_width is None else o.away_width
        lo = max(lo, own * (1.0 - (away if faster and not slower else o.band_width)))
        up = away if slower and not faster else o.band_width
        if o.fast_width is not None and span.hi_bpm >= o.fast_from_bpm:
            up = max(up, o.fast_width)
        hi = min(hi, own * (1.0 + up))
    if not np.isfinite(o.band_cost):
        lo, hi = max(lo, own * (1.0 - o.max_deviation)), min(hi, own * (1.0 + o.max_deviation))
    if o.toward_width is not None:
        for n in faster:
            hi = min(hi, own + max(o.toward_width * own, o.toward_share * (n - own)))
        for n in slower:
            lo = max(lo, own - max(o.toward_width * own, o.toward_share * (own - n)))
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


def _changes(lengths: np.ndarray, limit: float, o: BeatOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Beat-to-beat tempo changes of at most ``limit``: for each beat length (grid steps), the index of every
    previous length within reach, shortest first, and the cost of the change (``change_cost``, quadratic, up to
    ``max_beat_change``; ``step_cost`` per ``max_beat_change`` beyond), then ``inf`` (out of reach), (NM, D)
    each; and how many are within reach, (NM,): the DP reads only as many columns as its lengths need."""
    m0, m1 = int(lengths[0]), int(lengths[-1])
    d_max = int(np.ceil(limit * m1 / (1.0 - limit))) + 1
    d = np.arange(-d_max, d_max + 1)
    prev_len = lengths[:, None] + d[None, :]  # previous length = length + d
    frac = np.abs(60.0 / lengths[:, None] - 60.0 / np.maximum(prev_len, 1)) / (60.0 / np.maximum(prev_len, 1))
    ok = (prev_len >= m0) & (prev_len <= m1) & (frac <= limit + 1e-9)
    small = np.minimum(frac, o.max_beat_change) / o.max_beat_change
    beyond = np.maximum(frac - o.max_beat_change, 0.0) / o.max_beat_change
    cost = np.where(ok, o.change_cost * small ** 2 + o.step_cost * beyond, np.inf)
    # within reach first, in order: the columns left out are inf, so every minimum (the first of equals) stays
    order = np.argsort(~ok, axis=1, kind="stable")
    prev = np.take_along_axis(np.clip(prev_len - m0, 0, len(lengths) - 1), order, 1)
    return prev, np.take_along_axis(cost, order, 1), np.count_nonzero(ok, axis=1)


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
    # beat-to-beat changes (previous length index, cost): anywhere, and where the beat starts on a cut
    prev_idx, change, reach = _changes(lengths, o.max_beat_change, o)  # (NM, D), (NM,)
    prev_cut, change_cut, reach_cut = _changes(lengths, max(o.max_beat_change, o.cut_beat_change), o)  # (NM, DC)
    on_cut = (hit > 0) & (o.cut_beat_change > o.max_beat_change)

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
        d_near = max(1, int(reach[cols].max()))  # the previous lengths within reach of these
        prev, ch = prev_idx[cols, :d_near], change[cols, :d_near]  # (NA, D)
        flat = (rows[:, :, None] * nm + prev[None])  # (B, NA, D) previous states in a (ring, NM) plane
        # the beats that start on a cut may change more: their previous states, (P, DC)
        pb, pa = np.nonzero(on_cut[ic] & ok_i)
        dc_near = max(1, int(reach_cut[cols].max()))
        c_prev, c_ch = prev_cut[cols[pa], :dc_near], change_cut[cols[pa], :dc_near]
        c_flat = rows[pb, pa][:, None] * nm + c_prev
        b_rows = np.arange(nb)[:, None]
        at_col = np.arange(len(cols))[None, :] * d_near  # (1, NA): row starts in (NA, D), flat
        at_row = b_rows * (len(cols) * d_near) + at_col  # (B, NA): row starts in (B, NA, D), flat
        new_cost = np.full((K, nb, nm), np.inf)
        new_attr = np.zeros((K, nb, nm), np.int64)
        new_pred = np.full((nb, nm, K), _ORIGIN, np.uint8)
        gain = hit[ic]
        # a beat inside a bar: continues the bar's span, smoothly
        for k in range(1, K):
            a_prev = np.take(attr[k - 1], flat)
            tot = np.take(cost[k - 1], flat) + ch[None] + np.take(dev_flat, a_prev * nm + cols[None, :, None])
            best = np.argmin(tot, axis=2)
            val, a_best = tot.take(best + at_row) - gain, a_prev.take(best + at_row)  # best + at_row: flat
            p_best = prev.take(best + at_col)
            if len(pb):
                a_c = np.take(attr[k - 1], c_flat)
                tot_c = np.take(cost[k - 1], c_flat) + c_ch + np.take(dev_flat, a_c * nm + cols[pa][:, None])
                r_c, b_c = np.arange(len(pb)), np.argmin(tot_c, axis=1)
                v_c = tot_c[r_c, b_c] - gain[pb, pa]
                better = v_c < val[pb, pa]
                sel_b, sel_a = pb[better], pa[better]
                val[sel_b, sel_a] = v_c[better]
                a_best[sel_b, sel_a] = a_c[r_c, b_c][better]
                p_best[sel_b, sel_a] = c_prev[r_c, b_c][better]
            new_cost[k][:, cols] = np.where(ok_i, val, np.inf)
            new_attr[k][:, cols] = a_best
            new_pred[:, cols, k] = p_best
        # a downbeat: a new bar whose span holds the point two beats on
        s_new = span_of[ic + 2 * lengths[cols][None, :]]  # (B, NA)
        a3 = np.take(attr[K - 1], flat)
        tot_same = np.where(a3 == s_new[:, :, None], np.take(cost[K - 1], flat) + ch[None], np.inf)
        best_same = np.argmin(tot_same, axis=2)
        v_same = tot_same.take(best_same + at_row)
        p_same = prev.take(best_same + at_col)
        if len(pb):
            tot_c = np.where(np.take(attr[K - 1], c_flat) == s_new[pb, pa][:, None],
                             np.take(cost[K - 1], c_flat) + c_ch, np.inf)
            r_c, b_c = np.arange(len(pb)), np.argmin(tot_c, axis=1)
            better = tot_c[r_c, b_c] < v_same[pb, pa]
            v_same[pb[better], pa[better]] = tot_c[r_c, b_c][better]
            p_same[pb[better], pa[better]] = c_prev[r_c, b_c][better]
        other1 = best1[rows, 2] != s_new  # another span's bar ended there: a mood change, any tempo jump
        v_other = np.where(other1, best1[rows, 0], best2[rows, 0])
        p_other = np.where(other1, best1[rows, 1], best2[rows, 1])
        use_other = v_other < v_same
        v = np.where(use_other, v_other, v_same)
        p = np.where(use_other, p_other, p_same)
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


def beats_of_plan(plan: BeatPlan) -> np.ndarray:
    """The beats (s) of a plan (four a bar, and the end of the last)."""
    return np.asarray(plan.beats, np.float64)
