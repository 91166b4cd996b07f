"""The beat plan on random cut patterns (``beat_sync --simulate``): plan only, no video, no audio.

The bench videos are few; this draws many cut patterns like theirs and compares the plan's options on them,
so a change that only suits the bench videos shows. Per pattern and seed: random cuts, moods from the
composer's own tempi and style bands (:meth:`ProceduralMusicEngine.tempo_band`), each mood change snapped to
a cut (important), and the hit rate of every option's plan (its beats, as the composer plays them: see
``make bench-beats``). Patterns: 3 s pieces each cut at a steady 0.5-1.5 s (the bench's irregular fast
video), shots of 0.5-1.5 s in one random mood, shots of 0.6-2.5 s over four random moods (the montage).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from pipelines.devtools.beat_band import pivot_table

#: Moods drawn from: (emotion, valence, arousal).
MOODS = (("exciting", 0.5, 0.8), ("neutral", 0.0, -0.1), ("tense", -0.4, 0.6), ("sad", -0.6, -0.5),
         ("happy", 0.6, 0.4), ("relaxing", 0.4, -0.6), ("fearful", -0.6, 0.7))
PATTERNS = {
    "3 s pieces, each cut every 0.5-1.5 s, one mood (exciting)": "pieces",
    "shots of 0.5-1.5 s, one random mood": "fast",
    "shots of 0.6-2.5 s, four random moods": "montage",
}
SIM_BEGIN, SIM_END = "<!-- bench:beats-sim:begin -->", "<!-- bench:beats-sim:end -->"


def scenario(kind: str, seed: int, seconds: float = 40.0, fps: int = 30) -> tuple[list[Any], list[Any]]:
    """``(cuts, spans)`` of one random cut pattern (cut times on ``fps`` frames)."""
    from engines.base import MoodControl, MusicStreamOptions
    from engines.composer import ProceduralMusicEngine
    from pipelines.offline.beats import TempoSpan, weigh_cuts

    rng = np.random.default_rng(seed)
    if kind == "pieces":
        cuts, t = [], 0.0
        while t < seconds:
            period, k = float(rng.uniform(0.5, 1.5)), 1
            while k * period < 3.0 - 1e-9:
                cuts.append(t + k * period)
                k += 1
            t += 3.0
            cuts.append(t)
        moods = [MOODS[0]]
    else:
        lo, hi = (0.5, 1.5) if kind == "fast" else (0.6, 2.5)
        cuts = list(np.cumsum(rng.uniform(lo, hi, int(seconds / lo) + 1)))
        picks = rng.choice(len(MOODS), 4 if kind == "montage" else 1, replace=False)
        moods = [MOODS[int(i)] for i in picks]
    cuts = [round(c * fps) / fps for c in cuts if c < seconds]
    bounds = []
    for k in range(1, len(moods)):  # mood change k on the cut nearest k / len(moods) of the way, ±2 s
        target = k * seconds / len(moods) + float(rng.uniform(-2, 2))
        bounds.append(min(cuts, key=lambda c: abs(c - target)))
    edges = [0.0, *bounds, seconds]
    eng = ProceduralMusicEngine()
    spans = [TempoSpan(edges[i], edges[i + 1], *eng.tempo_band(MoodControl(v, a, e), MusicStreamOptions()))
             for i, (e, v, a) in enumerate(moods)]
    return weigh_cuts(cuts, bounds), spans


def simulate(options: dict[str, dict[str, Any]], seeds: Sequence[int], ceiling_bpm: float | None = None,
             seconds: float = 40.0) -> list[dict[str, Any]]:
    """Per pattern and option set (:class:`BeatOptions` fields): mean hit rate, mean share of mood-change cuts
    on a downbeat and mean planning time over ``seeds``. ``ceiling_bpm``: a what-if -- the intense moods'
    style band raised to it (the composer does not play that: plan only)."""
    from pipelines.offline.beats import BeatOptions, beats_of_plan, cut_report, plan_beats

    rows = []
    for label, kind in PATTERNS.items():
        for name, fields in options.items():
            hits, downs, secs = [], [], []
            for seed in seeds:
                cuts, spans = scenario(kind, seed, seconds)
                if ceiling_bpm is not None:
                    spans = [replace(s, hi_bpm=max(s.hi_bpm, ceiling_bpm))
                             if s.target_bpm - s.lo_bpm > 0.5 * (s.hi_bpm - s.lo_bpm) else s for s in spans]
                t = time.perf_counter()
                plan = plan_beats(cuts, spans, seconds, replace(BeatOptions(), **fields))
                secs.append(time.perf_counter() - t)
                report = cut_report(cuts, beats_of_plan(plan), np.asarray(plan.bar_starts))
                hits.append(report["beat_hit_rate"])
                if report["important_downbeat_rate"] is not None:
                    downs.append(report["important_downbeat_rate"])
            rows.append({"pattern": label, "option": name, "hit": float(np.mean(hits)),
                         "downbeats": float(np.mean(downs)) if downs else None, "plan_s": float(np.mean(secs))})
    return rows


def sim_table(rows: list[dict[str, Any]]) -> str:
    def cell(r: dict[str, Any]) -> str:
        down = "-" if r["downbeats"] is None else f"{100 * r['downbeats']:.0f} %"
        return f"{100 * r['hit']:.1f} % / {down} / {r['plan_s']:.2f}"

    return pivot_table(rows, "pattern", "option", list(dict.fromkeys(r["option"] for r in rows)), "cut pattern",
                       lambda n: f"{n}: hit / mood changes on a downbeat / plan (s)", cell)
