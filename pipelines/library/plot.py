"""The ``recommend --plot`` PNG: the library in the valence-arousal plane, the video's mood path, the picks.

Emotions have the same colours as in the mood timeline (:data:`pipelines.offline.plot.EMOTION_COLOURS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pipelines.library.tracks import TrackInfo
from pipelines.offline.plot import EMOTION_COLOURS

if TYPE_CHECKING:
    from pipelines.library.profile import VideoProfile


def plot_recommendations(path: str, profile: VideoProfile, tracks: Sequence[TrackInfo],
                         recommended: Sequence[int], title: str = "") -> None:
    """The library in the valence-arousal plane, the video's mood trajectory, the picks numbered."""
    fig, ax = plt.subplots(figsize=(7.5, 7))
    for emotion, colour in EMOTION_COLOURS.items():
        pts = [(t.valence, t.arousal) for t in tracks if t.emotion == emotion]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, ys, s=18, color=colour, alpha=0.55, label=f"{emotion} tracks", lw=0)
    ax.plot(profile.valence, profile.arousal, color="#222", lw=1.2, alpha=0.8, label="video mood over time")
    ax.scatter(profile.valence[:1], profile.arousal[:1], marker="o", s=60, color="#222", zorder=5)
    ax.annotate("start", (profile.valence[0], profile.arousal[0]), textcoords="offset points", xytext=(6, 6),
                fontsize=8)
    ax.scatter(profile.valence[-1:], profile.arousal[-1:], marker="s", s=60, color="#222", zorder=5)
    ax.annotate("end", (profile.valence[-1], profile.arousal[-1]), textcoords="offset points", xytext=(6, -12),
                fontsize=8)
    by_id = {t.id: t for t in tracks}
    for rank, track_id in enumerate(recommended, 1):
        t = by_id[track_id]
        ax.scatter([t.valence], [t.arousal], s=160, facecolor="none", edgecolor="k", lw=1.6, zorder=6)
        ax.annotate(f"{rank}. #{t.id} {t.title}", (t.valence, t.arousal), textcoords="offset points",
                    xytext=(8, -3), fontsize=8, weight="bold")
    ax.axhline(0, color="#999", lw=0.5)
    ax.axvline(0, color="#999", lw=0.5)
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")
    ax.legend(loc="lower left", fontsize=7, ncol=2)
    ax.set_title(title or "recommendations", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
