"""The ``--timeline`` JSON: windows with features and affect, mood segments, music sections, and how
the music's beats meet the shot cuts (:func:`beat_timeline`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from pipelines.analysis.analyze import Analysis
from pipelines.analysis.mood import MoodSegment
from pipelines.offline.beats import HIT_TOLERANCE_S, beats_of_bars, cut_report, weigh_cuts
from pipelines.offline.compose import ComposedMusic, MusicSection

SCHEMA_VERSION = 1
#: MusicSection fields the timeline writes itself (rounded).
OWN_KEYS = ("start_s", "end_s", "tempo_bpm", "transition_s", "tempo_range_bpm")


def _num(x: float, nd: int = 4) -> float | None:
    return round(float(x), nd) if math.isfinite(x) else None


def beat_timeline(music: ComposedMusic, cuts: Sequence[float], segments: Sequence[MoodSegment] = (),
                  detected: Sequence[float] | None = None) -> dict[str, Any]:
    """The timeline's ``beats``, ``cuts`` (each cut's signed ``beat_offset_ms`` from the nearest beat,
    ``on_beat`` within ±50 ms, ``on_downbeat``, ``important``: a mood change was snapped to it) and
    ``beat_hit_rate``. The composer's beats are where its bars say; other music (MusicGen, a library
    track) is beat-tracked from its audio (``source: "estimated"``, no downbeats). ``cuts``: the cut
    times used (frame-exact), ``detected``: the analysis' own, reported alongside."""
    weighted = weigh_cuts(cuts, [s.start_s for s in segments[1:]])
    beats_info: dict[str, Any]
    if music.bars_are_beats and music.bars:
        beats, downs = beats_of_bars(music.bars)
        beats_info = {"source": "composer", "planned": music.beat_plan is not None, "beats_per_bar": 4,
                      "bars": [{"start_s": _num(b.start_s, 4), "tempo_bpm": _num(b.tempo_bpm, 2),
                                "beats_s": [_num(t, 4) for t in b.beat_times()]}
                               for b in music.bars if b.start_s < music.audio.shape[0] / music.sample_rate]}
        report = cut_report(weighted, beats, downs)
    else:
        from pipelines.offline.beat_track import estimate_beats

        spans = [(s.start_s, s.end_s) for s in music.sections]
        beats = estimate_beats(music.audio, music.sample_rate, spans) if music.audio.size else np.zeros(0)
        period = float(np.median(np.diff(beats))) if len(beats) > 2 else 0.0
        beats_info = {"source": "estimated", "planned": False,
                      "tempo_bpm": _num(60.0 / period, 2) if period > 0 else None,
                      "beat_times_s": [_num(b, 3) for b in beats]}
        report = cut_report(weighted, beats, None)
    rows = report.pop("cuts")
    if detected is not None and len(detected) == len(rows):
        for row, d in zip(rows, sorted(detected), strict=True):
            row["detected_s"] = _num(d, 3)
    return {"beats": {**beats_info, "tolerance_ms": round(1000 * HIT_TOLERANCE_S, 1)}, "cuts": rows, **report}


def mood_changes(segments: Sequence[MoodSegment], sections: Sequence[MusicSection]) -> list[dict[str, Any]]:
    """The timeline's ``mood_changes``: per segment boundary (``at_s``, where the new mood begins) the start
    of the first music section in that mood (``music_s``, where it is heard; ``transition_s``: its
    transition bar) and ``music_delay_s`` (``music_s - at_s``; negative: the music anticipates the change)."""
    out: list[dict[str, Any]] = []
    for i in range(1, len(segments)):
        seg = segments[i]
        lo = 0.5 * (segments[i - 1].start_s + seg.start_s)
        hi = segments[i + 1].start_s if i + 1 < len(segments) else math.inf
        heard = next((m for m in sections if m.emotion == seg.emotion and lo <= m.start_s < hi), None)
        lead_in = None if heard is None else heard.transition_s
        out.append({"at_s": _num(seg.start_s, 3), "emotion": seg.emotion,
                    "music_s": None if heard is None else _num(heard.start_s, 3),
                    "transition_s": None if lead_in is None else _num(lead_in, 3),
                    "music_delay_s": None if heard is None else _num(heard.start_s - seg.start_s, 3)})
    return out


def timeline_dict(analysis: Analysis, sections: list[MusicSection] | None = None,
                  extra: dict[str, Any] | None = None, beats: dict[str, Any] | None = None) -> dict[str, Any]:
    info = analysis.info
    out: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "input": {
            "path": info.path,
            "container": info.container,
            "width": info.width,
            "height": info.height,
            "fps": _num(info.fps, 3),
            "video_codec": info.video_codec,
            "has_audio": info.has_audio,
            "soundtrack": analysis.soundtrack,
            "audio_codec": info.audio_codec,
        },
        "duration_s": _num(analysis.duration_s),
        "cuts_s": [_num(c, 3) for c in analysis.cuts],
        "windows": [
            {
                "start_s": _num(w.start_s, 3),
                "end_s": _num(w.end_s, 3),
                "valence": _num(w.affect.valence),
                "arousal": _num(w.affect.arousal),
                "emotion": w.affect.emotion,
                "confidence": _num(w.affect.confidence),
                "features": {k: _num(v) for k, v in sorted(w.features.items())},
            }
            for w in analysis.windows
        ],
        "segments": [
            {
                "start_s": _num(s.start_s, 3),
                "end_s": _num(s.end_s, 3),
                "emotion": s.emotion,
                "valence": _num(s.valence),
                "arousal": _num(s.arousal),
                "confidence": _num(s.confidence),
            }
            for s in analysis.segments
        ],
    }
    if sections is not None:
        out["music"] = [
            {
                **{k: v for k, v in asdict(s).items() if k not in OWN_KEYS},
                "start_s": _num(s.start_s, 3),
                "end_s": _num(s.end_s, 3),
                "tempo_bpm": _num(s.tempo_bpm, 2),
                "transition_s": None if s.transition_s is None else _num(s.transition_s, 3),
                "tempo_range_bpm": None if s.tempo_range_bpm is None else [_num(x, 2) for x in s.tempo_range_bpm],
                "instruments": list(s.instruments),
            }
            for s in sections
        ]
        out["mood_changes"] = mood_changes(analysis.segments, sections)
    if beats:
        out.update(beats)
    if extra:
        out.update(extra)
    return out


def write_timeline(path: str, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
