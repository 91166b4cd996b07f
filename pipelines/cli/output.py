"""How the command line shows results: JSON, track tables, recommendation lines, progress over a count.

One formatter for every command, so ``catalog list`` and ``library list`` (and their ``--json``)
look alike, and every ``--json`` output is indented the same way.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pipelines.library.tracks import TrackInfo
from pipelines.progress import Progress

if TYPE_CHECKING:
    from pipelines.library.ranking import Recommendation

#: Longest title shown in a table (longer ones are cut with an ellipsis).
MAX_TITLE = 40


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout."""
    json.dump(data, sys.stdout, indent=1)
    sys.stdout.write("\n")


def count_progress(label: str, quiet: bool = False) -> tuple[Progress, Callable[[int, int, str], None]]:
    """A one-stage progress bar and the ``(done, total, name)`` callback that moves it."""
    prog = Progress({label: 1.0}, enabled=False if quiet else None)
    prog.stage(label)

    def update(done: int, total: int, _name: str) -> None:
        prog.update(done / max(total, 1))

    return prog, update


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


def tracks_table(tracks: Sequence[TrackInfo], empty: str = "(no tracks)") -> str:
    """Plain-text table of a library (``catalog list``, ``library list``): one row per track."""
    if not tracks:
        return empty
    title_w = min(MAX_TITLE, max([len("title"), *(len(t.title) for t in tracks)]))
    id_w = max(3, *(len(str(t.id)) for t in tracks))
    head = (f"{'id':>{id_w}}  {'title':<{title_w}}  {'style':<9}  {'emotion':<8}  {'val':>5}  {'aro':>5}  "
            f"{'tempo':>5}  {'key':<12}  {'dur':>5}")
    lines = [head, "-" * len(head)]
    for t in tracks:
        title = t.title if len(t.title) <= title_w else t.title[: title_w - 1] + "…"
        tempo = f"{t.tempo_bpm:5.0f}" if t.tempo_bpm > 0 else "    -"
        lines.append(f"{t.id:>{id_w}}  {title:<{title_w}}  {t.style or '-':<9}  {t.emotion:<8}  {t.valence:>+5.2f}  "
                     f"{t.arousal:>+5.2f}  {tempo}  {t.key + ' ' + t.mode:<12}  {_duration(t.duration_s):>5}")
    return "\n".join(lines)


def track_record(t: TrackInfo) -> dict[str, Any]:
    """One track as JSON (``--json`` of the listings); the embedding is left out."""
    return {
        "id": t.id, "title": t.title, "path": t.path, "duration_s": round(t.duration_s, 3),
        "emotions": list(t.emotions), "valence": round(t.valence, 4), "arousal": round(t.arousal, 4),
        "tempo_bpm": round(t.tempo_bpm, 2), "key": t.key, "mode": t.mode, "style": t.style,
        "instruments": list(t.instruments),
        "loudness_lufs": round(t.loudness_lufs, 2) if math.isfinite(t.loudness_lufs) else None,
    }


def recommendation_line(rank: int, r: Recommendation) -> str:
    return f"{rank}. #{r.track_id:<4} {r.title:<28} {r.score:.3f}  {r.reason}"
