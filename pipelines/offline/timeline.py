"""The ``--timeline`` JSON: windows with features and affect, mood segments, music sections."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

from pipelines.analysis.analyze import Analysis
from pipelines.offline.compose import MusicSection

SCHEMA_VERSION = 1


def _num(x: float, nd: int = 4) -> float | None:
    return round(float(x), nd) if math.isfinite(x) else None


def timeline_dict(analysis: Analysis, sections: list[MusicSection] | None = None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
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
                **{k: v for k, v in asdict(s).items() if k not in ("start_s", "end_s", "tempo_bpm", "transition_s")},
                "start_s": _num(s.start_s, 3),
                "end_s": _num(s.end_s, 3),
                "tempo_bpm": _num(s.tempo_bpm, 2),
                "transition_s": None if s.transition_s is None else _num(s.transition_s, 3),
                "instruments": list(s.instruments),
            }
            for s in sections
        ]
    if extra:
        out.update(extra)
    return out


def write_timeline(path: str, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
