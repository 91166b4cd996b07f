"""A synthetic labelled data set for the recommender: mood-generated clips paired with a track by rule.

:func:`make_pairs` writes short videos from :mod:`pipelines.devtools.synth_video` whose pictures
and sound are generated from a target mood (:func:`scene_for_mood`), each paired with the
library track that best matches the generating mood by :func:`best_track_for_mood`. The label
is therefore learnable but synthetic: it is for trying the workflow and for tests. See
:data:`pipelines.training.recommender_data.REAL_PAIRS_HOWTO` for training on real pairs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipelines.devtools.synth_video import Scene, write_video
from pipelines.errors import LibraryError, OptionError
from pipelines.library.tracks import TrackInfo


def _lerp(lo: float, hi: float, x: float) -> float:
    return lo + (hi - lo) * x


def scene_tempo(arousal: float) -> float:
    """Soundtrack tempo of a synthetic scene: 70 bpm at arousal -1 up to 140 at +1."""
    return _lerp(70.0, 140.0, (float(np.clip(arousal, -1, 1)) + 1) / 2)


def scene_for_mood(valence: float, arousal: float, duration_s: float, rng: np.random.Generator | None = None,
                   jitter: float = 1.0) -> Scene:
    """A :class:`~pipelines.devtools.synth_video.Scene` that expresses (valence, arousal).

    Valence: brighter (0.12 -> 0.85), more saturated and warmer (hue blue 0.62 -> orange 0.08)
    pictures (Valdez & Mehrabian 1994). Arousal: faster motion (0.01 -> 0.9 widths/s), cuts
    from arousal > -0.2 (every 3 s -> every 0.6 s), louder sound (-46 -> -4 dBFS), a drum
    groove above arousal -0.1 (a hum below) at :func:`scene_tempo`. ``rng`` adds seeded
    jitter (scaled by ``jitter``) so no two clips are identical.
    """
    g = rng or np.random.default_rng(0)
    v = float(np.clip(valence, -1, 1))
    a = float(np.clip(arousal, -1, 1))
    uv, ua = (v + 1) / 2, (a + 1) / 2

    def j(scale: float) -> float:
        return float(g.normal(0.0, scale * jitter)) if rng is not None else 0.0

    hue = _lerp(0.62, 0.08, uv) + j(0.04)
    cut = None
    if a > -0.2:
        cut = max(0.4, _lerp(3.0, 0.6, (a + 0.2) / 1.2) * (1 + j(0.1)))
    return Scene(
        duration_s=duration_s,
        brightness=float(np.clip(_lerp(0.12, 0.85, uv) + j(0.04), 0.03, 0.97)),
        saturation=float(np.clip(_lerp(0.1, 0.55, uv) + _lerp(0.0, 0.35, ua) + j(0.04), 0.03, 0.97)),
        hue=float(hue % 1.0),
        speed=float(max(0.0, _lerp(0.01, 0.9, ua**2) * (1 + j(0.15)))),
        cut_every_s=cut,
        audio="drums" if a > -0.1 else "hum",
        loudness_dbfs=float(_lerp(-46.0, -4.0, ua) + j(2.0)),
        tempo_bpm=float(scene_tempo(a) + j(4.0)),
    )


#: Weight of tempo in the synthetic label rule (bpm difference of 60 counts like 1 VA unit).
LABEL_TEMPO_SCALE = 60.0


def best_track_for_mood(tracks: Sequence[TrackInfo], valence: float, arousal: float) -> TrackInfo:
    """The synthetic label rule: the track minimising
    ``(v_t - v)^2 + (a_t - a)^2 + ((tempo_t - scene_tempo(a)) / LABEL_TEMPO_SCALE)^2``
    (tempo term 0 for tracks without a known tempo); ties -> lowest id."""
    if not tracks:
        raise LibraryError("the music library is empty: nothing to pair videos with")

    def cost(t: TrackInfo) -> tuple[float, int]:
        c = (t.valence - valence) ** 2 + (t.arousal - arousal) ** 2
        if math.isfinite(t.tempo_bpm) and t.tempo_bpm > 0:
            c += ((t.tempo_bpm - scene_tempo(arousal)) / LABEL_TEMPO_SCALE) ** 2
        return (c, t.id)

    return min(tracks, key=cost)


def make_pairs(out_dir: str | os.PathLike[str], tracks: Sequence[TrackInfo], n: int = 200, seed: int = 0,
               duration_s: float = 6.0, size: tuple[int, int] = (160, 120), change_share: float = 0.3,
               fps: int = 12, progress: Callable[[str, float], None] | None = None) -> Path:
    """Write ``n`` SYNTHETIC mood clips to ``out_dir/videos/`` and ``out_dir/pairs.csv``.

    Each clip's mood (valence, arousal) is drawn uniformly from [-0.9, 0.9]^2; a share
    ``change_share`` of the clips change mood: 65 % of the clip in the main mood, 35 % (first
    or last) in a second one. The label is :func:`best_track_for_mood` of the main mood.
    Extra CSV columns (valence, arousal, change_s) record the generating mood.
    """
    if n < 1:
        raise OptionError(f"number of pairs must be at least 1, got {n}")
    if duration_s < 2.0:
        raise OptionError(f"clip duration must be at least 2 s, got {duration_s}")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = ["video,track_id,valence,arousal,change_s,note"]
    for k in range(n):
        v, a = (float(x) for x in rng.uniform(-0.9, 0.9, 2))
        scenes = [scene_for_mood(v, a, duration_s, rng)]
        change = math.nan
        if rng.uniform() < change_share:
            v2, a2 = (float(x) for x in rng.uniform(-0.9, 0.9, 2))
            main = round(0.65 * duration_s, 2)
            second = scene_for_mood(v2, a2, round(duration_s - main, 2), rng)
            scenes = [replace(scenes[0], duration_s=main), second]
            if rng.uniform() < 0.5:
                scenes.reverse()
            change = scenes[0].duration_s
        name = f"videos/clip{k + 1:04d}.mp4"
        write_video(os.fspath(out / name), scenes, width=size[0], height=size[1], fps=fps,
                    seed=int(rng.integers(0, 2**31)))
        label = best_track_for_mood(tracks, v, a)
        lines.append(f"{name},{label.id},{v:.3f},{a:.3f},{'' if math.isnan(change) else change},synthetic")
        if progress:
            progress("make-data", (k + 1) / n)
    csv_path = out / "pairs.csv"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path
