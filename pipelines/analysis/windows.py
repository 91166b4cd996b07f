"""Analysis windows: their bounds, the per-frame feature table and the picture features of one window.

Windows are ``window_s`` long every ``hop_s`` (2 s every 0.5 s by default). :func:`frame_window_features`
serves the offline job (all windows at once, :func:`window_features`) and the live session (one window as
its frames arrive) alike. :func:`onset_window_features` is the short window right after an onset that the
live fast path analyses (:mod:`pipelines.analysis.mood`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def window_bounds(duration_s: float, window_s: float, hop_s: float) -> list[tuple[float, float]]:
    """Overlapping windows covering the whole duration (the last one clipped to the end)."""
    if duration_s <= window_s:
        return [(0.0, duration_s)]
    out: list[tuple[float, float]] = []
    start = 0.0
    while start + window_s <= duration_s + 1e-9:
        out.append((start, start + window_s))
        start += hop_s
    if out[-1][1] < duration_s - 1e-6:
        out.append((max(0.0, duration_s - window_s), duration_s))
    return out


@dataclass
class FrameTable:
    """Per-analysed-frame features as arrays (times, picture features, face rows)."""

    times: np.ndarray
    names: tuple[str, ...]
    values: np.ndarray
    face_times: np.ndarray
    face_names: tuple[str, ...]
    face_values: np.ndarray
    #: Rows of :attr:`Engines.picture` on the frames that carry a picture (none by default).
    picture_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    picture_names: tuple[str, ...] = ()
    picture_values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))


def frame_window_features(table: FrameTable, s: float, e: float, cuts: np.ndarray,
                           duration_s: float, span_s: float) -> dict[str, float]:
    f: dict[str, float] = {}
    idx = np.nonzero((table.times >= s) & (table.times < e))[0]
    if len(idx) == 0 and len(table.times):
        idx = np.array([int(np.argmin(np.abs(table.times - 0.5 * (s + e))))])
    for j, name in enumerate(table.names):
        if name in ("content_change", "hist_change"):
            continue
        col = table.values[idx, j]
        if name == "motion":
            # the first analysed frame has no predecessor
            col = col[table.times[idx] > table.times[0]] if len(col) > 1 else col
        f[name] = float(np.mean(col)) if len(col) else 0.0
    c = 0.5 * (s + e)
    lo, hi = max(0.0, c - span_s / 2), min(duration_s, c + span_s / 2)
    f["cut_rate"] = float(np.sum((cuts >= lo) & (cuts < hi)) / max(hi - lo, 1e-3))
    if table.face_names:
        fidx = np.nonzero((table.face_times >= s) & (table.face_times < e))[0]
        rows = table.face_values[fidx]
        with_face = rows[rows[:, 0] > 0] if len(rows) else rows
        f["face_presence"] = float(len(with_face) / len(rows)) if len(rows) else 0.0
        for j, name in enumerate(table.face_names[1:], start=1):
            f[name] = float(with_face[:, j].mean()) if len(with_face) else 0.0
    if table.picture_names and len(table.picture_times):
        pidx = np.nonzero((table.picture_times >= s) & (table.picture_times < e))[0]
        if len(pidx) == 0:  # fewer pictures than windows: the nearest one
            pidx = np.array([int(np.argmin(np.abs(table.picture_times - 0.5 * (s + e))))])
        for j, name in enumerate(table.picture_names):
            f[name] = float(np.mean(table.picture_values[pidx, j]))
    return f


#: Features a short onset window cannot measure: a musical tempo needs seconds.
ONSET_WINDOW_DROPS = ("tempo_bpm", "pulse_clarity")


def onset_window_features(table: FrameTable, onset_s: float, end_s: float, sound: dict[str, float] | None,
                          cuts: Sequence[float], cut_span_s: float) -> dict[str, float]:
    """Features of the short window ``[onset_s, end_s)`` after an onset (a cut, a loud passage), made
    comparable with a regular window's.

    As :func:`frame_window_features` merged with the window's sound features, except for the shot
    rhythm, which half a second cannot measure: the cut rate counts the cuts from the onset on (itself
    included) over at least ``cut_span_s``, and the cut frames' share of the motion (their difference to
    the frame before is the cut) is what that rate gives a regular window, not one in three frames. The
    features a window this short cannot measure at all (:data:`ONSET_WINDOW_DROPS`) are left out, so the
    affect model weighs what is there.
    """
    f = frame_window_features(table, onset_s, end_s, np.zeros(0), end_s, 1.0)
    c = np.asarray(cuts, np.float64)
    n_cuts = int(np.sum((c >= onset_s - 1e-6) & (c < end_s)))
    rate = n_cuts / max(end_s - onset_s, cut_span_s)
    f["cut_rate"] = rate
    idx = np.nonzero((table.times >= onset_s) & (table.times < end_s))[0]
    if "motion" in table.names and len(idx) > 1:
        m = table.values[idx, table.names.index("motion")]
        at_cut = np.array([bool(len(c)) and float(np.min(np.abs(c - x))) < 1e-6 for x in table.times[idx]])
        if at_cut.any() and not at_cut.all():
            share = min(1.0, rate * (end_s - onset_s) / len(idx))  # cut frames per frame, at that rate
            f["motion"] = float((1 - share) * np.mean(m[~at_cut]) + share * np.mean(m[at_cut]))
    if sound:
        f.update(sound)
    for name in ONSET_WINDOW_DROPS:
        f.pop(name, None)
    return f


def window_features(
    table: FrameTable,
    sound: list[dict[str, float]] | None,
    bounds: Sequence[tuple[float, float]],
    cuts: Sequence[float],
    duration_s: float,
    span_s: float = 4.0,
) -> list[dict[str, float]]:
    """Picture features per window, merged with the sound features computed for the same windows."""
    cut_arr = np.asarray(cuts, dtype=np.float64)
    out: list[dict[str, float]] = []
    for i, (s, e) in enumerate(bounds):
        f = frame_window_features(table, s, e, cut_arr, duration_s, span_s)
        if sound is not None:
            f.update(sound[i])
        out.append(f)
    return out
