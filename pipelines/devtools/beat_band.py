"""The beat plan's tempo band against the mood's energy contrast (``beat_sync --contrast``).

How far may the beat plan move a section's tempo? Anywhere in the style's band meets the most cuts but can
pull an intense section down (or a calm one up) to the cut rhythm; the own tempo ± a little keeps the mood.
:func:`contrast_rows` runs the real ``score`` job on ``make bench-styles``' synthetic calm/intense/calm video
for each style and band definition (:data:`CONTRAST_BANDS`) and measures, from the audio, the BGM's
intense-minus-calm energy (:mod:`pipelines.devtools.style_mood`), with the timeline's beat-hit rate and the
calm and intense parts' tempi.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from pipelines.devtools.synth_video import write_video

CONTRAST_BEGIN, CONTRAST_END = "<!-- bench:beats-contrast:begin -->", "<!-- bench:beats-contrast:end -->"
#: Band definitions compared (:class:`~pipelines.offline.beats.BeatOptions` fields): the whole style band; the
#: previous default (the composer's own tempo ±15 % inside the style band, at most 10 % towards a neighbouring
#: mood's own tempo, at most 5 % from beat to beat); the default (±15 %, 25 % away from the neighbours, towards
#: them 10 % or a third of the way, 15 % tempo steps on cuts, a high-arousal mood up to 70 % above its own
#: tempo: double time); the own tempo alone (no bending: the composer
#: without a plan).
STYLE_BAND: dict[str, Any] = {"band_width": None, "toward_width": None}
PREVIOUS_BAND: dict[str, Any] = {"away_width": None, "toward_share": 0.0, "cut_beat_change": 0.05, "fast_width": None}
CONTRAST_BANDS: dict[str, dict[str, Any]] = {
    "style band": STYLE_BAND,
    "previous (own ±15 %, ≤10 % towards, ≤5 % a beat)": PREVIOUS_BAND,
    "default": {},
    "own tempo": {"band_width": 0.0, "away_width": None, "toward_width": None, "fast_width": None},
}


def _pct(x: float) -> str:
    return f"{100 * float(x):.0f} %"


def contrast_rows(styles: Sequence[str], seeds: Sequence[int],
                  bands: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per style and band definition: the ``score`` job on ``make bench-styles``' synthetic calm/intense/calm
    video (a cut every 0.75 s in the intense part), its BGM's energy contrast (intense minus calm, from the
    audio: :mod:`pipelines.devtools.style_mood`), its beat-hit rate and the calm and intense parts' tempi."""
    import json

    from pipelines.devtools import style_mood as sm
    from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK
    from pipelines.frames import AUDIO_RATE
    from pipelines.media.decode import load_audio
    from pipelines.offline.beats import BeatOptions, default_options
    from pipelines.offline.score import ScoreRequest, score

    rows = []
    with tempfile.TemporaryDirectory(prefix="backscore-beats-contrast-") as tmp:
        path = os.path.join(tmp, "calm-intense-calm.mp4")
        part = sm.VIDEO_PART_S
        write_video(path, [replace(CALM_DARK, duration_s=part), replace(BRIGHT_FAST, duration_s=part),
                           replace(CALM_DARK, duration_s=part)])
        bgm, tl_path = os.path.join(tmp, "bgm.wav"), os.path.join(tmp, "t.json")
        for name in styles:
            for label, fields in bands.items():
                deltas, hits, tempi, calm_tempi = [], [], [], []
                with default_options(replace(BeatOptions(), **fields)):
                    for seed in seeds:
                        score(ScoreRequest(path, None, bgm_path=bgm, timeline_path=tl_path,
                                           style=None if name == "auto" else name, seed=seed, faces=False))
                        audio = load_audio(bgm, AUDIO_RATE, mono=False)
                        deltas.append(sm.arousal_delta(audio, AUDIO_RATE, sm.VIDEO_WINDOWS))
                        with open(tl_path, encoding="utf-8") as fh:
                            tl = json.load(fh)
                        hits.append(tl.get("beat_hit_rate") or 0.0)
                        mid = [m for m in tl["music"] if m["start_s"] <= 1.5 * part < m["end_s"]]
                        tempi += [m["tempo_bpm"] for m in mid]
                        calm_tempi += [m["tempo_bpm"] for m in tl["music"] if m["start_s"] < 0.5 * part]
                mean = sm.mean_measures(deltas)
                rows.append({"style": name, "band": label, "arousal": mean.arousal, "onsets": mean.onset_rate,
                             "lufs": mean.lufs, "hit": float(np.mean(hits)),
                             "intense_bpm": float(np.mean(tempi)) if tempi else None,
                             "calm_bpm": float(np.mean(calm_tempi)) if calm_tempi else None})
                print(f"  {name} / {label}: Δ arousal {mean.arousal:+.2f}, hit {np.mean(hits):.0%}", file=sys.stderr)
    return rows


def pivot_table(rows: list[dict[str, Any]], row_key: str, col_key: str, columns: Sequence[str], first: str,
                heading: Callable[[str], str], cell: Callable[[dict[str, Any]], str]) -> str:
    """A Markdown table of ``rows``: one line per distinct ``row_key`` (in order), one column per ``columns``
    entry (matched on ``col_key``), each cell ``cell(row)``; ``first`` and ``heading(column)`` head it."""
    lines = [f"| {first} | " + " | ".join(heading(c) for c in columns) + " |\n|---|" + "---|" * len(columns)]
    for key in dict.fromkeys(r[row_key] for r in rows):
        cells = [cell(next(x for x in rows if x[row_key] == key and x[col_key] == c)) for c in columns]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def contrast_table(rows: list[dict[str, Any]], bands: Sequence[str]) -> str:
    def cell(r: dict[str, Any]) -> str:
        bpm = "-" if r["intense_bpm"] is None or r["calm_bpm"] is None else \
            f"{r['calm_bpm']:.0f}, {r['intense_bpm']:.0f}"
        return f"{r['arousal']:+.2f} / {r['onsets']:+.2f} / {_pct(r['hit'])} / {bpm}"

    return pivot_table(rows, "style", "band", bands, "style",
                       lambda b: f"{b}: video Δ arousal / Δ onsets/s / hit / calm, intense bpm", cell)
