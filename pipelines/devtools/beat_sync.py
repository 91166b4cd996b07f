"""Cut-synced beats benchmark: how many shot cuts land on a beat, without and with the beat plan.

``python -m pipelines.devtools.beat_sync --out BENCHMARKS.md`` (``make bench-beats``) scores synthetic
fast-cut videos (:mod:`pipelines.devtools.beat_videos`, made with ``synth_video``, so their true cut
frames are known), a fast-cut montage of real footage (shots of the real clips, so its cuts are known too) and
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
the next (on a cut, where the plan may step, and elsewhere), the hit rate of the plan alone with other
definitions of the mood's tempo band (the previous plan's among them), and the planning time.

``--contrast`` measures the other side of the band's trade-off: per style and band definition, the ``score``
job on ``make bench-styles``' calm/intense/calm video, the energy contrast of its BGM (from the audio) and
the tempi of its calm and intense parts (``bench:beats-contrast`` markers).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from engines.base import BarInfo
from pipelines.devtools.beat_band import (
    CONTRAST_BANDS,
    CONTRAST_BEGIN,
    CONTRAST_END,
    PREVIOUS_BAND,
    STYLE_BAND,
    contrast_rows,
    contrast_table,
)
from pipelines.devtools.beat_videos import Video, real_clips, real_montage, real_videos, synthetic_videos, video_only
from pipelines.errors import InputError

log = logging.getLogger(__name__)

BEGIN, END = "<!-- bench:beats:begin -->", "<!-- bench:beats:end -->"
#: The plan alone with other options, in the main table: the previous plan (own ±15 %, ≤10 % towards a
#: neighbour, ≤5 % a beat), the default band without tempo steps on cuts, without the high-arousal moods'
#: double time, and anywhere in the style band.
ALTERNATIVE_BANDS: dict[str, dict[str, Any]] = {
    "previous": PREVIOUS_BAND,
    "no steps on cuts": {"cut_beat_change": 0.05},
    "no double time": {"fast_width": None},
    "style band": STYLE_BAND,
}
TITLE = "Cut-synced beats (`make bench-beats`)"


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
            row["max_change"] = largest_beat_change(music.bars, cuts, on_cut=True)
            row["max_change_elsewhere"] = largest_beat_change(music.bars, cuts, on_cut=False)
    return row


def largest_beat_change(bars: Sequence[BarInfo], cuts: Sequence[float] = (), on_cut: bool | None = None) -> float:
    """Largest tempo change (fraction) from one beat to the next within a section (transition bars and
    the first bar of a section excluded: a mood change may change the tempo at once); with ``on_cut``
    True/False only where the later beat starts on a cut (within the plan's tolerance) / elsewhere."""
    from pipelines.offline.beats import BeatOptions, beat_tempi_of_bars

    tol = BeatOptions().tolerance_s + 1e-3
    c = np.sort(np.asarray(cuts, np.float64))
    worst = 0.0
    for a, b in itertools.pairwise([None, *bars]):
        if b is None or b.transition:
            continue
        tempi, starts = beat_tempi_of_bars([b]), list(b.beat_times())
        if a is not None and not a.transition and a.section == b.section:
            tempi, starts = [beat_tempi_of_bars([a])[-1], *tempi], [a.beat_times()[-1], *starts]
        for k, (x, y) in enumerate(itertools.pairwise(tempi)):
            hit = bool(len(c)) and float(np.min(np.abs(c - starts[k + 1]))) <= tol
            if on_cut is None or hit == on_cut:
                worst = max(worst, abs(y - x) / x)
    return worst


def audio_onsets(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Onset times (s) of rendered music: the soundtrack analysis' onset envelope and peak picking."""
    from engines.audio_features.frames import FRAME_RATE, SAMPLE_RATE, frame_features
    from engines.audio_features.rhythm import onset_envelope, pick_onsets
    from pipelines.analysis.sound import to_mono16k

    y = to_mono16k(np.asarray(audio, np.float32), SAMPLE_RATE, sample_rate)
    return np.asarray(pick_onsets(onset_envelope(frame_features(y), y.size)) / FRAME_RATE)


def inside_bands(bars: Sequence[BarInfo]) -> bool:
    """Every beat's tempo inside its style's widest band (double time included; a transition bar plays at
    the outgoing section's)."""
    from engines.composer.styles import STYLE_PRESETS
    from pipelines.offline.beats import beat_tempi_of_bars

    style = None
    for b in bars:
        band = STYLE_PRESETS[style if b.transition and style else b.style].widest_range
        if not all(band[0] - 1e-6 <= t <= band[1] + 1e-6 for t in beat_tempi_of_bars([b])):
            return False
        style = b.style if not b.transition else style
    return True


def _band_label(o: Any) -> str:
    if o.band_width is None:
        return "the style's band"
    away = "" if o.away_width is None else f" ({100 * o.away_width:g} % away from the neighbouring moods' tempi)"
    share = f" or {o.toward_share:.2g} of the way, whichever is more" if o.toward_share > 0 else ""
    towards = "" if o.toward_width is None else \
        f", towards a neighbouring mood's at most {100 * o.toward_width:g} %{share}"
    return (f"the composer's own tempo ±{100 * o.band_width:g} %{away}{towards}; at most "
            f"{100 * o.max_beat_change:g} % from beat to beat, {100 * o.cut_beat_change:g} % on a cut"
            + ("" if o.fast_width is None else f"; a high-arousal mood up to {100 * o.fast_width:g} % above its own "
               "tempo (double time, to the style's fast_max)"))


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
            "tempo before | tempo after (bpm, beats) | in band | largest beat-to-beat change: on a cut / elsewhere | "
            "plan (s) |\n"
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
            f"{100 * float(r['max_change']):.1f} % / {100 * float(r['max_change_elsewhere']):.1f} % | "
            f"{float(r['plan_s']):.2f} |")
    return "\n".join(lines)


def _simulate(out: str | None, n_seeds: int) -> int:
    from pipelines.devtools.beat_sim import SIM_BEGIN, SIM_END, sim_table, simulate
    from pipelines.devtools.report import cpu_name, replace_section
    from pipelines.offline.beats import BeatOptions

    options = {"previous": PREVIOUS_BAND, "no steps on cuts": {"cut_beat_change": 0.05},
               "no double time": {"fast_width": None}, "default": {}}
    rows = simulate(options, range(n_seeds))
    text = (f"Machine: {cpu_name()}. The plan alone (no video, no audio) on random 40 s cut patterns, seeds "
            f"0-{n_seeds - 1} (mean; `pipelines.devtools.beat_sim`): cut times on 30 fps frames, the moods' own "
            "tempi and style bands from the composer, each mood change snapped to a cut. previous: "
            f"{_band_label(replace(BeatOptions(), **PREVIOUS_BAND))}; no steps on cuts: the default with 5 % on "
            "cuts too; no double time: the default without the high-arousal moods' double time (`fast_width` "
            f"None); default: {_band_label(BeatOptions())}.\n\n" + sim_table(rows))
    if out:
        replace_section(out, SIM_BEGIN, SIM_END, "Beat plan on random cut patterns", text)
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="write the table into this Markdown file (between the bench:beats markers)")
    ap.add_argument("--clip", action="append", default=[], help="another real video to measure (repeatable)")
    ap.add_argument("--seconds", type=float, default=24.0,
                    help="length of each synthetic video (default 24: synth-video's three 8 s scenes)")
    ap.add_argument("--contrast", action="store_true",
                    help="instead: the mood's energy contrast per style for each band definition (the score job "
                    "on bench-styles' calm/intense/calm video; the bench:beats-contrast markers)")
    ap.add_argument("--simulate", action="store_true",
                    help="instead: the plan alone on random cut patterns like the bench videos', previous vs "
                    "default options (the bench:beats-sim markers)")
    ap.add_argument("--seeds", type=int, default=None,
                    help="seeds to average: with --contrast (default 2), with --simulate (default 24)")
    ap.add_argument("--styles", default="auto,lofi,cheerful,sad,epic,calm,tense,cinematic",
                    help="with --contrast: comma-separated styles")
    args = ap.parse_args(argv)
    from pipelines.devtools.report import cpu_name, replace_section
    from pipelines.offline.beats import BeatOptions

    if args.simulate:
        return _simulate(args.out, args.seeds or 24)
    if args.contrast:
        bands = CONTRAST_BANDS
        crow = contrast_rows([s.strip() for s in args.styles.split(",") if s.strip()], range(args.seeds or 2),
                             bands)
        ctext = (f"Machine: {cpu_name()}. The `score` job on the 36 s synthetic calm/intense/calm video of "
                 "`make bench-styles` (12 s each; a cut every 0.75 s in the intense part, 80 bpm), seeds "
                 f"0-{(args.seeds or 2) - 1} (mean), per band definition: the BGM's intense-minus-calm arousal "
                 "and onset rate (from the audio, `pipelines.devtools.style_mood`), the beat-hit rate of the "
                 "timeline and the mean tempo of the first calm part and of the intense part. `own tempo`: the "
                 "band narrowed to the composer's own tempo, "
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
            "has onsets between beats too). After: the default plan (`BeatOptions()`: "
            f"{_band_label(BeatOptions())}); then the plan alone (its beats, not composed) with other options: "
            f"previous: {_band_label(replace(BeatOptions(), **PREVIOUS_BAND))}; no steps on cuts: the default "
            "with 5 % on cuts too; no double time: the default without the high-arousal moods' double time "
            "(`fast_width` None); style band: anywhere in the style's band (double time included).\n\n"
            + table(rows))
    if args.out:
        replace_section(args.out, BEGIN, END, TITLE, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
