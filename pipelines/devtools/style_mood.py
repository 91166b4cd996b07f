"""``make bench-styles``: does every composer style carry the mood? Measured from the rendered audio.

For each style (and ``auto``) the procedural composer makes

* a **calm - intense - calm** piece through :func:`pipelines.offline.compose.compose` (three
  :class:`~pipelines.analysis.mood.MoodSegment` of :data:`SEGMENT_S` each: relaxing, exciting,
  relaxing, the same valence, only the arousal moves), and (unless ``--no-score``) the real ``score``
  job on a synthetic 36 s calm/intense/calm video (12 s each of :data:`~pipelines.devtools.synth_video.CALM_DARK`,
  ``BRIGHT_FAST``, ``CALM_DARK``; the BGM it writes with ``--bgm``, levelled but not mixed);
* a **low- vs high-valence** pair at the same arousal (sad vs happy, one stream each).

Nothing here reads the composer's plan (tempo, density, chords): every number comes from the
audio, through estimators that know nothing of the composer --

* ``arousal`` / ``valence``: the library's music analyser (:class:`engines.music_features.MusicAnalyzer`,
  -1..1), the estimator that ranks library tracks;
* ``onsets/s``: onset density picked from the spectral-flux onset envelope (the analyser's ``onset_rate``);
* ``LUFS``: BS.1770 integrated loudness (:func:`engines.loudness.integrated_loudness`);
* ``centroid``: spectral centroid (Hz) of the 16 kHz analysis (brightness);
* ``mode``: the analyser's ``mode_strength`` (best major minus best minor key-profile correlation).

Energy rows are *intense minus the mean of the two calm parts*, measured on the middle of each part
(:data:`WINDOWS`: transitions excluded); valence rows are *high minus low*. Results are averaged over
``--seeds`` seeds (``--first-seed`` on: e.g. ``--first-seed 2 --seeds 4`` checks seeds 2-5). ``--cost`` adds
each style's CPU time to compose and render 60 s, calm - intense - calm and held at the intense mood (the
busiest arrangement), best of 3.
Prints the table and, with ``--out FILE``, writes it between ``<!-- bench:style-mood:begin -->`` and
``<!-- bench:style-mood:end -->`` (``--label before``: the ``style-mood-before`` markers, for the
table of the code before a change).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from engines.base import STYLES, MoodControl, MusicEngine, MusicStreamOptions
from engines.composer import ProceduralMusicEngine
from engines.loudness import integrated_loudness
from engines.music_features import SAMPLE_RATE as AN_SR
from engines.music_features import MusicAnalyzer
from pipelines.analysis.mood import MoodSegment
from pipelines.devtools.report import cpu_name, replace_section
from pipelines.frames import AUDIO_RATE
from pipelines.offline.compose import compose

BEGIN, END = "<!-- bench:style-mood:begin -->", "<!-- bench:style-mood:end -->"
BEFORE_BEGIN, BEFORE_END = "<!-- bench:style-mood-before:begin -->", "<!-- bench:style-mood-before:end -->"

SEGMENT_S = 20.0
CALM = (0.3, -0.7, "relaxing")
INTENSE = (0.3, 0.8, "exciting")
#: (start, end) seconds analysed of the calm, intense, calm parts (transition bars excluded).
WINDOWS = ((1.0, 15.0), (25.0, 35.0), (45.0, 59.0))
#: The valence pair: same arousal, low (sad) vs high (happy) valence.
LOW_VALENCE = MoodControl(valence=-0.7, arousal=0.0, emotion="sad")
HIGH_VALENCE = MoodControl(valence=0.7, arousal=0.0, emotion="happy")
PAIR_S = 16.0
#: The synthetic video of the ``score`` runs: 12 s calm (dark, still, hum), 12 s intense, 12 s calm.
VIDEO_PART_S = 12.0
VIDEO_WINDOWS = ((0.5, 7.0), (14.0, 20.0), (26.5, 35.5))

_analyzer = MusicAnalyzer()


@dataclass(frozen=True)
class Measures:
    """What the audio says (see the module doc)."""

    arousal: float
    valence: float
    onset_rate: float
    lufs: float
    centroid_hz: float
    mode_strength: float

    def minus(self, other: Measures) -> Measures:
        return Measures(*(a - b for a, b in zip(self.values(), other.values(), strict=True)))

    def values(self) -> tuple[float, ...]:
        return (self.arousal, self.valence, self.onset_rate, self.lufs, self.centroid_hz, self.mode_strength)


def mean_measures(items: Sequence[Measures]) -> Measures:
    return Measures(*(float(np.mean(col)) for col in zip(*(m.values() for m in items), strict=True)))


def measure(audio: np.ndarray, sample_rate: int = AUDIO_RATE) -> Measures:
    """Measures of ``(n, 2)`` or ``(n,)`` audio, from the audio alone."""
    from scipy import signal  # lazily: keeps start-up fast

    x = np.asarray(audio, dtype=np.float64)
    mono = x.mean(axis=1) if x.ndim == 2 else x
    if sample_rate != AN_SR:
        from math import gcd

        g = gcd(AN_SR, sample_rate)
        mono = signal.resample_poly(mono, AN_SR // g, sample_rate // g)
    d = _analyzer.analyze(mono)
    f = d.features
    return Measures(arousal=d.arousal, valence=d.valence, onset_rate=f["onset_rate"],
                    lufs=integrated_loudness(x, sample_rate), centroid_hz=f["centroid_hz"],
                    mode_strength=f["mode_strength"])


def _window(audio: np.ndarray, sample_rate: int, start_s: float, end_s: float) -> np.ndarray:
    return audio[int(start_s * sample_rate):int(end_s * sample_rate)]


def arousal_delta(audio: np.ndarray, sample_rate: int,
                  windows: Sequence[tuple[float, float]] = WINDOWS) -> Measures:
    """Intense part minus the mean of the two calm parts."""
    calm1, intense, calm2 = (measure(_window(audio, sample_rate, a, b), sample_rate) for a, b in windows)
    return intense.minus(mean_measures([calm1, calm2]))


def calm_intense_calm(style: str | None, seed: int, engine: MusicEngine | None = None) -> np.ndarray:
    """The BGM ``compose`` makes for calm - intense - calm mood segments (style ``None`` = auto)."""
    segs = []
    for i, (v, a, emo) in enumerate((CALM, INTENSE, CALM)):
        segs.append(MoodSegment(i * SEGMENT_S, (i + 1) * SEGMENT_S, emo, v, a, 1.0))
    music = compose(engine or ProceduralMusicEngine(), segs, 3 * SEGMENT_S, style=style, seed=seed)
    return music.audio


def render(style: str | None, control: MoodControl, seed: int, seconds: float = PAIR_S,
           engine: MusicEngine | None = None) -> np.ndarray:
    """One stream in one mood for ``seconds`` (whole bars)."""
    options = MusicStreamOptions(sample_rate=AUDIO_RATE, seed=seed, style=style)
    return (engine or ProceduralMusicEngine()).open_stream(options).generate(control, seconds).audio


def valence_delta(style: str | None, seed: int, engine: MusicEngine | None = None) -> Measures:
    """High-valence stream minus low-valence stream (same arousal), skipping the first bar's attack."""
    lo = render(style, LOW_VALENCE, seed, engine=engine)
    hi = render(style, HIGH_VALENCE, seed, engine=engine)
    return measure(hi[AUDIO_RATE:], AUDIO_RATE).minus(measure(lo[AUDIO_RATE:], AUDIO_RATE))


def score_video_delta(style: str | None, seed: int, directory: str, engine: MusicEngine | None = None) -> Measures:
    """The real ``score`` job on a synthetic calm/intense/calm video: its BGM as written by ``--bgm``
    (levelled against the video's soundtrack and limited, not mixed with it)."""
    from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, write_video
    from pipelines.media.decode import load_audio
    from pipelines.offline.score import ScoreRequest, score

    path = os.path.join(directory, "calm-intense-calm.mp4")
    if not os.path.exists(path):
        write_video(path, [replace(CALM_DARK, duration_s=VIDEO_PART_S), replace(BRIGHT_FAST, duration_s=VIDEO_PART_S),
                           replace(CALM_DARK, duration_s=VIDEO_PART_S)])
    bgm = os.path.join(directory, "bgm.wav")
    score(ScoreRequest(path, None, bgm_path=bgm, style=style, seed=seed, faces=False),
          music_engine=engine or ProceduralMusicEngine())
    return arousal_delta(load_audio(bgm, AUDIO_RATE, mono=False), AUDIO_RATE, VIDEO_WINDOWS)


@dataclass(frozen=True)
class StyleRow:
    style: str
    energy: Measures  # intense minus calm (compose)
    valence: Measures  # high minus low valence
    video: Measures | None  # intense minus calm (score on the synthetic video)


def style_rows(styles: Sequence[str], seeds: Sequence[int], with_score: bool,
               engine: Callable[[], MusicEngine] = ProceduralMusicEngine) -> list[StyleRow]:
    """The table's rows; ``engine`` makes the music engine (another composer to compare with)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="backscore-style-mood-") as tmp:
        for name in styles:
            style = None if name == "auto" else name
            energy = mean_measures([arousal_delta(calm_intense_calm(style, s, engine()), AUDIO_RATE) for s in seeds])
            valence = mean_measures([valence_delta(style, s, engine()) for s in seeds])
            video = mean_measures([score_video_delta(style, s, tmp, engine()) for s in seeds]) if with_score else None
            rows.append(StyleRow(name, energy, valence, video))
            print(f"  {name}: done", file=sys.stderr)
    return rows


def compose_seconds_per_minute(style: str | None = "epic", seed: int = 0,
                               engine: Callable[[], MusicEngine] = ProceduralMusicEngine) -> float:
    """CPU seconds to compose and render 60 s (calm - intense - calm) in one style (best of 3)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        calm_intense_calm(style, seed, engine())
        best = min(best, time.process_time() - t0)
    return best


def held_seconds_per_minute(style: str | None, seed: int = 0,
                            engine: Callable[[], MusicEngine] = ProceduralMusicEngine) -> float:
    """CPU seconds to compose and render 60 s held at the intense mood (best of 3)."""
    control = MoodControl(valence=INTENSE[0], arousal=INTENSE[1], emotion=INTENSE[2])
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        render(style, control, seed, 60.0, engine())
        best = min(best, time.process_time() - t0)
    return best


def cost_line(styles: Sequence[str], engine: Callable[[], MusicEngine] = ProceduralMusicEngine) -> str:
    """Per style: CPU seconds for 60 s calm - intense - calm / 60 s held intense, and the slowest as a
    multiple of real time."""
    cells, worst = [], 0.0
    for name in styles:
        style = None if name == "auto" else name
        cic = compose_seconds_per_minute(style, 0, engine)
        held = held_seconds_per_minute(style, 0, engine)
        worst = max(worst, cic, held)
        cells.append(f"{name} {cic:.2f} / {held:.2f}")
    return (f"CPU s per 60 s, calm-intense-calm / held intense (best of 3, seed 0): {'; '.join(cells)} "
            f"(slowest {60.0 / worst:.0f}x real time).")


def table(rows: Sequence[StyleRow], seeds: Sequence[int], render_s: float, cost: str = "") -> str:
    with_video = any(r.video is not None for r in rows)
    head = ("| style | Δ arousal | Δ onsets/s | Δ LUFS | Δ centroid Hz | "
            + ("video Δ arousal | video Δ onsets/s | video Δ LUFS | " if with_video else "")
            + "valence: Δ valence | Δ centroid Hz | Δ mode |")
    lines = [
        f"Machine: {cpu_name()}. Seeds {', '.join(map(str, seeds))} (mean). Energy: intense minus calm "
        f"(compose: relaxing a={CALM[1]:+.1f} / exciting a={INTENSE[1]:+.1f} / relaxing, valence {CALM[0]:+.1f}, "
        f"{SEGMENT_S:.0f} s each"
        + ("; video: `score` on a 36 s synthetic calm/intense/calm video, its BGM" if with_video else "")
        + f"). Valence: happy (v={HIGH_VALENCE.valence:+.1f}) minus sad (v={LOW_VALENCE.valence:+.1f}) at "
        f"arousal {LOW_VALENCE.arousal:+.1f}. Arousal/valence: `engines.music_features` analyser (-1..1); "
        "onsets from spectral flux; LUFS BS.1770; centroid of the 16 kHz spectrum; mode = major minus minor "
        f"key-profile correlation. Composing + rendering 60 s (epic, calm-intense-calm): {render_s:.2f} s CPU.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    if cost:
        lines[1:1] = ["", cost]
    for r in rows:
        e, v = r.energy, r.valence
        cells = [r.style, f"{e.arousal:+.2f}", f"{e.onset_rate:+.2f}", f"{e.lufs:+.1f}", f"{e.centroid_hz:+.0f}"]
        if with_video:
            vd = r.video
            cells += ["", "", ""] if vd is None else [f"{vd.arousal:+.2f}", f"{vd.onset_rate:+.2f}", f"{vd.lufs:+.1f}"]
        cells += [f"{v.valence:+.2f}", f"{v.centroid_hz:+.0f}", f"{v.mode_strength:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.devtools.style_mood", description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="Markdown file to write the table into (between the markers)")
    ap.add_argument("--label", choices=("after", "before"), default="after",
                    help="before: write between the style-mood-before markers (the code before a change)")
    ap.add_argument("--seeds", type=int, default=2, help="how many seeds to average (default 2)")
    ap.add_argument("--first-seed", type=int, default=0, help="the first of those seeds (default 0)")
    ap.add_argument("--styles", default="auto," + ",".join(STYLES), help="comma-separated styles (auto included)")
    ap.add_argument("--no-score", action="store_true", help="skip the runs of the real score job on a video")
    ap.add_argument("--cost", action="store_true",
                    help="also time each style: 60 s calm-intense-calm and 60 s held intense (CPU, best of 3)")
    args = ap.parse_args(argv)
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    bad = [s for s in styles if s != "auto" and s not in STYLES]
    if bad or args.seeds < 1 or args.first_seed < 0:
        ap.error(f"unknown style(s) {bad}" if bad else "--seeds must be at least 1 and --first-seed at least 0")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    render_s = compose_seconds_per_minute()
    cost = cost_line(styles) if args.cost else ""
    text = table(style_rows(styles, seeds, not args.no_score), seeds, render_s, cost)
    print(text)
    if args.out:
        if args.label == "before":
            replace_section(args.out, BEFORE_BEGIN, BEFORE_END, "Composer styles and mood: before", text)
        else:
            replace_section(args.out, BEGIN, END, "Composer styles and mood", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
