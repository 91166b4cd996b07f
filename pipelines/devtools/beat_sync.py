"""Cut-synced beats benchmark: how many shot cuts land on a beat, without and with the beat plan.

``python -m pipelines.devtools.beat_sync --out BENCHMARKS.md`` (``make bench-beats``) scores synthetic
fast-cut videos (made here with :mod:`pipelines.devtools.synth_video`, so their true cut frames are
known), a fast-cut montage of real footage (shots of the real clips, so its cuts are known too) and
the real clips themselves, found in ``.cache/media`` (``scripts/fetch_media.sh``) or given with
``--clip``. Per video: the analysis once, then the composer twice -- at its own tempo, and on the beat
plan -- and the beat-hit rate (cuts within ±50 ms of a beat) of each, measured three ways:

* **bars**: the composed bars' beats (:func:`~pipelines.offline.beats.beats_of_bars`) against the cuts
  as the score job uses them (timed to the frame, :mod:`pipelines.offline.cut_times`);
* **true**: the same beats against the real cut frames (synthetic videos and the montage);
* **audio**: cuts with an onset of the rendered BGM (a drum, bass or chord attack found by the
  soundtrack analysis' onset detector) within ±50 ms -- the music really plays where the bars say.
  Busy music has onsets between its beats too, so this is higher than the beat rates even without a plan.

Also reported: the beat tempi (slowest, fastest) against the style bands, the largest change from one beat to
the next, the hit rate of the plan alone with other definitions of the mood's tempo band, and the planning time.

``--contrast`` measures the other side of the band's trade-off: per style and band definition, the ``score``
job on ``make bench-styles``' calm/intense/calm video, the energy contrast of its BGM (from the audio) and
the tempi of its calm and intense parts (``bench:beats-contrast`` markers).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import BarInfo
from pipelines.devtools.beat_band import CONTRAST_BANDS, CONTRAST_BEGIN, CONTRAST_END, contrast_rows, contrast_table
from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, Scene, write_video
from pipelines.errors import InputError

log = logging.getLogger(__name__)

BEGIN, END = "<!-- bench:beats:begin -->", "<!-- bench:beats:end -->"
#: The plan alone with other bands, in the main table.
ALTERNATIVE_BANDS: dict[str, dict[str, Any]] = {k: CONTRAST_BANDS[k] for k in ("style band", "own ±15 %",
                                                                            "own ±10 %")}
TITLE = "Cut-synced beats (`make bench-beats`)"
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


def _rate(cuts: Sequence[float], beats: np.ndarray) -> float | None:
    from pipelines.offline.beats import hit_rate

    return hit_rate(cuts, beats)


def measure(video: Video) -> dict[str, Any]:
    from pipelines.analysis.analyze import AnalysisOptions, analyze
    from pipelines.analysis.engines import default_engines
    from pipelines.offline.beats import (
        BeatOptions,
        beat_tempi_of_bars,
        beats_of_bars,
        beats_of_plan,
        cut_report,
        weigh_cuts,
    )
    from pipelines.offline.compose import beat_plan_for, compose
    from pipelines.offline.cut_times import refine_cuts
    from pipelines.offline.score import default_music_engine, pace_function

    options = AnalysisOptions()
    analysis = analyze(video.path, default_engines(faces=False), options)
    cuts = refine_cuts(video.path, analysis.cuts, 1.0 / options.decode.analysis_fps, changes=analysis.frame_changes)
    engine = default_music_engine()
    row: dict[str, Any] = {"video": video.name, "duration": analysis.duration_s, "cuts": len(cuts),
                              "moods": "-".join(s.emotion for s in analysis.segments)}
    pace = pace_function(analysis)
    t = time.perf_counter()
    beat_plan_for(engine, analysis.segments, analysis.duration_s, cuts, pace_at=pace)
    row["plan_s"] = time.perf_counter() - t
    for key, band in ALTERNATIVE_BANDS.items():
        alt = beat_plan_for(engine, analysis.segments, analysis.duration_s, cuts, pace_at=pace,
                            options=replace(BeatOptions(), **band))
        row[key] = None if alt is None else _rate(cuts, beats_of_plan(alt))
    for label, given in (("before", None), ("after", cuts)):
        music = compose(engine, analysis.segments, analysis.duration_s, pace_at=pace, cuts=given)
        beats, _downs = beats_of_bars(music.bars)
        row[f"{label}_bars"] = _rate(cuts, beats)
        row[f"{label}_true"] = _rate(video.true_cuts, beats) if video.true_cuts is not None else None
        row[f"{label}_audio"] = _rate(cuts, audio_onsets(music.audio, music.sample_rate))
        if label == "after":
            report = cut_report(weigh_cuts(cuts, [s.start_s for s in analysis.segments[1:]]), beats, _downs)
            row["mood_downbeats"] = report["important_downbeat_rate"]
        tempi = beat_tempi_of_bars(music.bars)
        row[f"{label}_tempo"] = (min(tempi), max(tempi)) if tempi else None
        if label == "after":
            row["inside_band"] = inside_bands(music.bars)
            row["max_change"] = largest_beat_change(music.bars)
    return row


def largest_beat_change(bars: Sequence[BarInfo]) -> float:
    """Largest tempo change (fraction) from one beat to the next within a section (transition bars and
    the first bar of a section excluded: a mood change may change the tempo at once)."""
    from pipelines.offline.beats import beat_tempi_of_bars

    worst = 0.0
    for a, b in itertools.pairwise([None, *bars]):
        if b is None or b.transition:
            continue
        tempi = beat_tempi_of_bars([b])
        if a is not None and not a.transition and a.section == b.section:
            tempi = [beat_tempi_of_bars([a])[-1], *tempi]
        worst = max([worst, *(abs(y - x) / x for x, y in itertools.pairwise(tempi))])
    return worst


def audio_onsets(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Onset times (s) of rendered music: the soundtrack analysis' onset envelope and peak picking."""
    from engines.audio_features.frames import FRAME_RATE, SAMPLE_RATE, frame_features
    from engines.audio_features.rhythm import onset_envelope, pick_onsets
    from pipelines.analysis.sound import to_mono16k

    y = to_mono16k(np.asarray(audio, np.float32), SAMPLE_RATE, sample_rate)
    return np.asarray(pick_onsets(onset_envelope(frame_features(y), y.size)) / FRAME_RATE)


def inside_bands(bars: Sequence[BarInfo]) -> bool:
    """Every beat's tempo inside its style's band (a transition bar plays at the outgoing section's)."""
    from engines.composer.styles import STYLE_PRESETS
    from pipelines.offline.beats import beat_tempi_of_bars

    style = None
    for b in bars:
        band = STYLE_PRESETS[style if b.transition and style else b.style].tempo_range
        if not all(band[0] - 1e-6 <= t <= band[1] + 1e-6 for t in beat_tempi_of_bars([b])):
            return False
        style = b.style if not b.transition else style
    return True


def _band_label(o: Any) -> str:
    if o.band_width is None:
        return "the style's band"
    towards = "" if o.toward_width is None else f", at most {100 * o.toward_width:g} % towards a neighbouring mood's"
    return f"the composer's own tempo ±{100 * o.band_width:g} %{towards}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * float(x):.0f} %"


def _tempo(x: tuple[float, float] | None) -> str:
    if x is None:
        return "-"
    lo, hi = x
    return f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    alts = " / ".join(ALTERNATIVE_BANDS)
    head = ("| video | s | cuts | moods | hit rate before: bars / true / audio | after: bars / true / audio | "
            f"after, band {alts}: bars | mood-change cuts on a downbeat | "
            "tempo before | tempo after (bpm, beats) | in band | largest beat-to-beat change | plan (s) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['video']} | could not be read: {r['error']} |||||||||||")
            continue
        lines.append(
            f"| {r['video']} | {float(r['duration']):.0f} | {r['cuts']} | {r['moods']} | "
            f"{_pct(r['before_bars'])} / {_pct(r['before_true'])} / {_pct(r['before_audio'])} | "
            f"**{_pct(r['after_bars'])}** / {_pct(r['after_true'])} / {_pct(r['after_audio'])} | "
            f"{' / '.join(_pct(r[k]) for k in ALTERNATIVE_BANDS)} | {_pct(r['mood_downbeats'])} | "
            f"{_tempo(r['before_tempo'])} | {_tempo(r['after_tempo'])} | {'yes' if r['inside_band'] else 'NO'} | "
            f"{100 * float(r['max_change']):.1f} % | "
            f"{float(r['plan_s']):.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="write the table into this Markdown file (between the bench:beats markers)")
    ap.add_argument("--clip", action="append", default=[], help="another real video to measure (repeatable)")
    ap.add_argument("--seconds", type=float, default=24.0,
                    help="length of each synthetic video (default 24: synth-video's three 8 s scenes)")
    ap.add_argument("--contrast", action="store_true",
                    help="instead: the mood's energy contrast per style for each band definition (the score job "
                    "on bench-styles' calm/intense/calm video; the bench:beats-contrast markers)")
    ap.add_argument("--seeds", type=int, default=2, help="with --contrast: seeds to average (default 2)")
    ap.add_argument("--styles", default="auto,lofi,cheerful,sad,epic,calm,tense,cinematic",
                    help="with --contrast: comma-separated styles")
    args = ap.parse_args(argv)
    from pipelines.devtools.report import cpu_name, replace_section
    from pipelines.offline.beats import BeatOptions

    if args.contrast:
        bands = CONTRAST_BANDS
        crow = contrast_rows([s.strip() for s in args.styles.split(",") if s.strip()], range(args.seeds), bands)
        ctext = (f"Machine: {cpu_name()}. The `score` job on the 36 s synthetic calm/intense/calm video of "
                 "`make bench-styles` (12 s each; a cut every 0.75 s in the intense part, 80 bpm), seeds "
                 f"0-{args.seeds - 1} (mean), per band definition: the BGM's intense-minus-calm arousal and onset "
                 "rate (from the audio, `pipelines.devtools.style_mood`), the beat-hit rate of the timeline and "
                 "the mean tempo of the first calm part and of the intense part. `own tempo`: the band narrowed "
                 "to the composer's own tempo, "
                 "i.e. no bending (the composer without a plan).\n\n" + contrast_table(crow, list(bands)))
        if args.out:
            replace_section(args.out, CONTRAST_BEGIN, CONTRAST_END, "Beat plan band vs the mood's energy contrast",
                            ctext)
        print(ctext)
        return 0

    rows = []
    clips = real_clips(args.clip)
    with tempfile.TemporaryDirectory(prefix="backscore-beats-") as folder:
        montage = real_montage(clips, folder, args.seconds)
        videos = synthetic_videos(folder, args.seconds) + ([montage] if montage else []) + real_videos(clips)
        for video in videos:
            try:
                rows.append(measure(video))
            except InputError as exc:  # a clip whose sound this build cannot read (Megamind.avi's AC3 track)
                try:
                    log.info("%s: %s; measuring its picture only", video.name, exc)
                    rows.append(measure(replace(video, name=f"{video.name} (picture only: its sound does not "
                                                "decode here)", path=video_only(video.path, folder))))
                except InputError as again:
                    rows.append({"video": video.name, "error": str(again)})
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = (f"Machine: {cpu_name()}, Python {platform.python_version()}. Composer at its own tempo (before) and "
            "on the beat plan (after), seed 0, default analysis; a cut is on the beat within ±50 ms. bars: the "
            "composed bars' beats vs the cuts timed to the frame; true: vs the real cut frames (synthetic "
            "videos and the montage); audio: cuts with an onset of the rendered BGM within ±50 ms (busy music "
            "has onsets between beats too). After: the default band (`BeatOptions().band_width`: "
            f"{_band_label(BeatOptions())}); then the plan alone (its beats, not composed) with the "
            "other band definitions (style band: anywhere in the style's band).\n\n" + table(rows))
    if args.out:
        replace_section(args.out, BEGIN, END, TITLE, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
