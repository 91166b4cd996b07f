"""The ``--plot`` PNG of ``analyze``/``score``: mood curves over time with segments, cuts and music changes.

:data:`EMOTION_COLOURS` is shared with the recommendations plot (:mod:`pipelines.library.plot`).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pipelines.analysis.analyze import Analysis
from pipelines.offline.compose import MusicSection

#: Colour of each emotion in every ``--plot`` PNG (mood timeline and recommendations).
EMOTION_COLOURS = {
    "exciting": "#f28e2b",
    "happy": "#edc948",
    "relaxing": "#59a14f",
    "neutral": "#bab0ac",
    "sad": "#4e79a7",
    "tense": "#b07aa1",
    "fearful": "#e15759",
}


def plot_timeline(path: str, analysis: Analysis, sections: list[MusicSection] | None = None, title: str = "") -> None:
    times = [w.centre_s for w in analysis.windows]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for seg in analysis.segments:
        ax.axvspan(seg.start_s, seg.end_s, color=EMOTION_COLOURS.get(seg.emotion, "#ccc"), alpha=0.22, lw=0)
        ax.text((seg.start_s + seg.end_s) / 2, 1.04, seg.emotion, ha="center", va="bottom", fontsize=9,
                transform=ax.get_xaxis_transform())
    ax.plot(times, [w.affect.valence for w in analysis.windows], color="#1f77b4", lw=2, label="valence")
    ax.plot(times, [w.affect.arousal for w in analysis.windows], color="#d62728", lw=2, label="arousal")
    ax.plot(times, [w.affect.confidence for w in analysis.windows], color="#555", lw=1, ls=":", label="confidence")
    for i, c in enumerate(analysis.cuts):
        ax.axvline(c, color="#888", lw=0.6, ls="--", label="shot cut" if i == 0 else None)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("affect")
    ax.axhline(0, color="#444", lw=0.5)
    ax.legend(loc="lower left", fontsize=8, ncol=4)
    fig.suptitle(title or "backscore mood timeline")
    ax2.set_yticks([])
    ax2.set_ylabel("music", rotation=0, ha="right", va="center")
    for s in sections or []:
        ax2.axvspan(s.start_s, s.end_s, color=EMOTION_COLOURS.get(s.emotion, "#ccc"), alpha=0.35, lw=0)
        ax2.axvline(s.start_s, color="k", lw=1)
        if s.transition_s is not None:
            ax2.axvspan(s.transition_s, s.start_s, hatch="///", fill=False, lw=0, color="#333")
        ax2.text(s.start_s + 0.1, 0.5, f"{s.style}\n{s.key} {s.mode}\n{s.tempo_bpm:.0f} bpm", fontsize=7,
                 va="center", transform=ax2.get_xaxis_transform())
    ax2.set_xlim(0, analysis.duration_s)
    ax2.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
