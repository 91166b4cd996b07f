"""Measuring cut-synced beats: the beats of composed bars (or of a plan) against the shot cuts.

:func:`beats_of_bars` and :func:`cut_report` measure the result from the bars actually composed: each cut's
signed distance to the nearest beat, on a beat (within ±50 ms: the measure of the video-to-music
literature), on a downbeat, and the beat-hit rate -- always of *all* cuts. (Split out of
:mod:`pipelines.offline.beats`, which re-exports these names.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.base import BarInfo

BEATS_PER_BAR = 4
#: A cut "on the beat": within this distance of one (the usual ±50 ms of the video-to-music papers).
HIT_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class Cut:
    """A shot cut to put on a beat, with its weight in the plan."""

    time_s: float
    weight: float = 1.0
    #: Wants a downbeat (a mood change was snapped to it, or an explicit strong cut).
    important: bool = False


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
