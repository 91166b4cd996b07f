"""The videos of the cut-synced beats benchmark (:mod:`pipelines.devtools.beat_sync`): synthetic fast-cut
videos (made with :mod:`pipelines.devtools.synth_video`, their true cut frames known), a fast-cut montage of
real footage (shots of the real clips, its cuts known too) and the real clips themselves.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, Scene, write_video

MEDIA = Path(__file__).resolve().parents[2] / ".cache" / "media"
REAL_CLIPS = ("cockatoo.mp4", "realshort.mp4", "Megamind.avi", "vtest.avi")
FPS = 30


@dataclass(frozen=True)
class Video:
    name: str
    path: str
    true_cuts: tuple[float, ...] | None  # synthetic: the first frame of every new shot


def _scenes_cuts(scenes: Sequence[Scene], fps: int) -> tuple[float, ...]:
    """The first frame of each new shot, as :func:`write_video` draws them."""
    cuts: list[float] = []
    start = 0.0
    for i, sc in enumerate(scenes):
        if i:
            cuts.append(round(start * fps) / fps)
        if sc.cut_every_s:
            k = 1
            while k * sc.cut_every_s < sc.duration_s - 1e-9:
                cuts.append((round(start * fps) + math.ceil(k * sc.cut_every_s * fps - 1e-6)) / fps)
                k += 1
        start += sc.duration_s
    return tuple(cuts)


def synthetic_videos(folder: str, seconds: float) -> list[Video]:
    """Fast-cut videos: the synth-video ``exciting`` scene (a cut every 0.75 s) throughout; the default
    ``calm-exciting-calm`` pattern; irregular fast cuts (shots of 0.5-1.5 s, changing every 3 s); and
    irregular medium cuts (1.2-3 s)."""
    rng = np.random.default_rng(7)
    third = seconds / 3

    def irregular(lo: float, hi: float, piece: float) -> list[Scene]:
        out, t = [], 0.0
        while t < seconds - 1e-6:
            d = min(piece, seconds - t)
            out.append(replace(BRIGHT_FAST, duration_s=d, cut_every_s=float(rng.uniform(lo, hi)),
                               hue=float(rng.uniform(0.0, 1.0))))
            t += d
        return out

    table = {
        "synthetic exciting (cut every 0.75 s)": [replace(BRIGHT_FAST, duration_s=seconds)],
        f"synthetic calm-exciting-calm ({third:g} s scenes)": [
            replace(CALM_DARK, duration_s=third), replace(BRIGHT_FAST, duration_s=third),
            replace(CALM_DARK, duration_s=third)],
        "synthetic irregular fast cuts (0.5-1.5 s)": irregular(0.5, 1.5, 3.0),
        "synthetic irregular medium cuts (1.2-3 s)": irregular(1.2, 3.0, 6.0),
    }
    videos = []
    for k, (name, scenes) in enumerate(table.items()):
        path = os.path.join(folder, f"synth{k}.mp4")
        write_video(path, scenes, width=320, height=180, fps=FPS)
        videos.append(Video(name, path, _scenes_cuts(scenes, FPS)))
    return videos


def real_clips(extra: Sequence[str]) -> list[str]:
    return [str(MEDIA / n) for n in REAL_CLIPS if (MEDIA / n).is_file()] + list(extra)


def _small_frames(path: str, width: int, height: int, limit_s: float) -> list[np.ndarray]:
    """The video's frames at :data:`FPS` (nearest frame), ``width`` x ``height`` RGB, at most ``limit_s``."""
    import av

    frames: list[np.ndarray] = []
    with av.open(path) as container:
        for frame in container.decode(container.streams.video[0]):
            if frame.pts is None or frame.time_base is None:
                continue
            t = float(frame.pts * frame.time_base)
            while len(frames) <= t * FPS and len(frames) < limit_s * FPS:
                frames.append(frame.to_ndarray(width=width, height=height, format="rgb24"))
            if len(frames) >= limit_s * FPS:
                break
    return frames


def real_montage(clips: Sequence[str], folder: str, seconds: float, seed: int = 3) -> Video | None:
    """Real footage, cut fast: shots of 0.6-2.5 s taken from random places of the real clips, one after
    another (no sound). The cuts are where the montage changes shot."""
    import av

    used = [(c, f) for c, f in ((c, _small_frames(c, 320, 180, 30.0)) for c in clips) if len(f) > 2 * FPS]
    if not used:
        return None
    sources = [f for _c, f in used]
    rng = np.random.default_rng(seed)
    path = os.path.join(folder, "montage.mp4")
    cuts: list[float] = []
    n_total, n = int(seconds * FPS), 0
    last = -1
    with av.open(path, "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 320, 180, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "23"}
        while n < n_total:
            k = int(rng.integers(len(sources))) if len(sources) > 1 else 0
            if len(sources) > 1 and k == last:
                k = (k + 1) % len(sources)
            length = min(n_total - n, int(rng.uniform(0.6, 2.5) * FPS))
            src = sources[k]
            start = int(rng.integers(0, max(1, len(src) - length)))
            if n:
                cuts.append(n / FPS)
            for img in src[start:start + length]:
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = n
                for pkt in vs.encode(frame):
                    out.mux(pkt)
                n += 1
            last = k
        for pkt in vs.encode(None):
            out.mux(pkt)
    names = ", ".join(os.path.basename(c) for c, _f in used)
    return Video(f"real-footage montage ({names}; shots 0.6-2.5 s)", path, tuple(cuts))


def real_videos(clips: Sequence[str]) -> list[Video]:
    return [Video(os.path.basename(p), p, None) for p in clips]


def video_only(path: str, folder: str) -> str:
    """The video stream of ``path`` alone (packets copied into Matroska), for a clip whose sound this
    build cannot decode (Megamind.avi's AC3 track)."""
    import av

    out_path = os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + "-video.mkv")
    with av.open(path) as src, av.open(out_path, "w") as dst:
        vs = src.streams.video[0]
        out = dst.add_stream_from_template(vs)
        for pkt in src.demux(vs):
            if pkt.dts is not None:
                pkt.stream = out
                dst.mux(pkt)
    return out_path
