"""``backscore score``: video in -> mood-following BGM under it -> video out.

Stages: decode (small frames + soundtrack) -> windowed analysis -> affect -> mood segments
-> music plan rendered chunk by chunk -> loudness-normalised, ducked mix -> mux (video
stream copied). Every output is validated before the work starts and written atomically.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.base import MusicEngine
from pipelines.analysis.analyze import Analysis, AnalysisOptions, analyze
from pipelines.analysis.engines import Engines, create_engines
from pipelines.cancel import check_cancelled
from pipelines.errors import InputError, OptionError
from pipelines.frames import AUDIO_RATE
from pipelines.library.tracks import TrackInfo
from pipelines.media.decode import probe
from pipelines.media.limits import MediaLimits
from pipelines.media.mux import OUTPUT_EXTENSIONS, MuxResult, mux
from pipelines.media.outputs import atomic_output, check_output_path, write_wav
from pipelines.offline.compose import ComposedMusic, compose
from pipelines.options import parse_loudness, parse_seed, parse_style
from pipelines.progress import Progress

if TYPE_CHECKING:
    from engines.composer.synth import EventLog
    from pipelines.offline.mix import MixResult

log = logging.getLogger(__name__)


#: How many times the mix is made again when the audio encoder pushed a true peak over a loudness preset's
#: ceiling (each time the ceiling is lowered by the excess).
ENCODER_RETRIES = 3
#: ...or moved the loudness more than this off the preset's target.
ENCODER_LOUDNESS_SLACK_LU = 0.3

#: Progress-bar weights of the stages (roughly their share of the run time).
SCORE_STAGES = {"analyse": 6.0, "compose": 1.0, "mix": 1.0, "mux": 1.5}


@dataclass(frozen=True)
class ScoreRequest:
    input_path: str
    output_path: str | None
    timeline_path: str | None = None
    plot_path: str | None = None
    bgm_path: str | None = None
    style: str | None = None
    seed: int = 0
    faces: bool = True
    #: Put this library track under the video instead of composing (``library`` names it).
    track_id: int | None = None
    library: str = "catalog"
    #: Music engine by name (engines.registry) and its weights directory.
    engine: str = "procedural"
    weights: str | None = None
    #: Affect engine by name (engines.affect_engines.AFFECT_ENGINES) and its models' weights
    #: (clip / wav2vec2 / amt -> DIR; "" -> the chosen engine's model).
    affect_engine: str = "default"
    affect_weights: Mapping[str, str] | None = None
    #: Inference backend of the neural models (engines.backends: "auto" or a backend name).
    backend: str = "auto"
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    #: The composed score as a Standard MIDI File, and the BGM as stems in a new or empty folder
    #: (procedural composer only; pipelines.offline.stems).
    midi_path: str | None = None
    stems_dir: str | None = None
    #: Loudness preset of the final mix (pipelines.offline.loudness_presets; None: the mix as it is).
    loudness: str | None = None


@dataclass
class ScoreResult:
    analysis: Analysis
    music: ComposedMusic
    mix_report: dict[str, float]
    mux: MuxResult | None
    timings_s: dict[str, float]
    timeline: dict[str, Any]


def default_music_engine() -> MusicEngine:
    from engines.composer import ProceduralMusicEngine

    return ProceduralMusicEngine()


def music_engine_for(engine: str, weights: str | None = None, backend: str = "auto") -> MusicEngine:
    """The music engine ``engine`` (engines.registry) with its weights; :class:`OptionError` for an unknown name."""
    from engines.registry import create_music_engine

    try:
        return create_music_engine(engine, weights, backend=backend)
    except ValueError as exc:
        raise OptionError(str(exc)) from exc


def _affect_engines(request: ScoreRequest) -> Engines:
    try:
        return create_engines(request.affect_engine, request.affect_weights, faces=request.faces,
                              backend=request.backend)
    except ValueError as exc:
        raise OptionError(str(exc)) from exc


def check_backend(backend: str | None) -> None:
    """A backend named explicitly (not ``auto``) must exist and run here, whichever engines are used:
    ``OptionError`` for an unknown name, ``EngineUnavailable`` saying why it cannot run.
    (``auto`` -- and ``$BACKSCORE_BACKEND`` behind it -- is resolved when a neural model loads.)"""
    from engines.backends import choose_backend, requested_backend

    if (backend or "auto").strip().lower() == "auto":
        return
    try:
        requested_backend(backend)
    except ValueError as exc:
        raise OptionError(f"--backend: {exc}") from exc
    choose_backend(backend)


def pace_function(analysis: Analysis) -> Callable[[float], float]:
    """Visual pacing (0..1) from cut rate and motion, for the composer's rhythmic density."""
    times = np.array([w.centre_s for w in analysis.windows])
    pace = np.array(
        [
            float(np.clip(0.5 * w.features.get("cut_rate", 0.0) + 6.0 * w.features.get("motion", 0.0), 0.0, 1.0))
            for w in analysis.windows
        ]
    )

    def at(t: float) -> float:
        return float(np.interp(t, times, pace)) if len(times) else 0.0

    return at


def library_music(track: TrackInfo, duration_s: float, limits: MediaLimits | None = None) -> ComposedMusic:
    """A library track looped/trimmed to the video (the mixer fades, levels and ducks it)."""
    from pipelines.media.decode import load_audio
    from pipelines.offline.compose import MusicSection, loop_to_length

    audio = load_audio(track.path, AUDIO_RATE, mono=False, limits=limits)
    if audio.shape[0] == 0:
        raise InputError(f"library track {track.id} ({track.path}) has no audio")
    fitted = loop_to_length(audio, AUDIO_RATE, duration_s)
    section = MusicSection(0.0, duration_s, track.tempo_bpm, track.key, track.mode, track.style or "library",
                           track.emotion, track.instruments, None)
    return ComposedMusic(audio=fitted, sample_rate=AUDIO_RATE, bars=[], sections=[section])


def score(
    request: ScoreRequest,
    engines: Engines | None = None,
    music_engine: MusicEngine | None = None,
    progress: Progress | None = None,
    analysis: Analysis | None = None,
) -> ScoreResult:
    """Run the score job of ``request``. ``analysis``: the input's analysis made before (by an earlier job on
    the same file, :mod:`pipelines.jobs`): the analyse stage is skipped and only the music, the mix and the
    outputs are made (``progress`` then needs no ``analyse`` stage)."""
    from pipelines.offline.mix import MixOptions, mix_bgm, with_mix_loudness

    style = parse_style(request.style)
    parse_seed(request.seed)
    loudness = parse_loudness(request.loudness)
    check_backend(request.backend)
    exports = request.midi_path is not None or request.stems_dir is not None
    if exports:
        from pipelines.offline.stems import check_composer

        check_composer(request.engine, request.track_id)
        music_engine = _recording_engine(music_engine)
    # Validate the input and every destination before doing any work.
    limits = request.analysis.decode.limits
    probe(request.input_path, limits)
    paths = [p for p in (request.output_path, request.timeline_path, request.plot_path, request.bgm_path,
                         request.midi_path, request.stems_dir) if p]
    if len({os.path.abspath(p) for p in paths}) != len(paths):
        raise OptionError("output, --timeline, --plot, --bgm, --midi and --stems must be different paths")
    if request.output_path:
        check_output_path(request.output_path, request.input_path, OUTPUT_EXTENSIONS)
    if request.timeline_path:
        check_output_path(request.timeline_path, request.input_path, (".json",), "timeline")
    if request.plot_path:
        check_output_path(request.plot_path, request.input_path, (".png",), "plot")
    if request.bgm_path:
        check_output_path(request.bgm_path, request.input_path, (".wav",), "bgm")
    if request.midi_path:
        check_output_path(request.midi_path, request.input_path, (".mid", ".midi"), "midi")
    if request.stems_dir:
        from pipelines.offline.stems import check_stems_dir

        check_stems_dir(request.stems_dir, request.input_path)
    prog = progress or Progress(SCORE_STAGES, enabled=False)
    timings: dict[str, float] = {}
    track = None
    if music_engine is None and request.track_id is None:  # load weights before the long work
        music_engine = music_engine_for(request.engine, request.weights, request.backend)
    eng = (engines or _affect_engines(request)) if analysis is None else None
    if request.track_id is not None:  # resolve it before the long work, so a bad id fails fast
        from pipelines.library.sources import find_track, load_library

        track = find_track(load_library(request.library), request.track_id, request.library)

    t = time.perf_counter()
    check_cancelled()
    if analysis is None:
        prog.stage("analyse")
        analysis = analyze(request.input_path, eng, request.analysis, prog.update)
        timings["analyse"] = time.perf_counter() - t
    log.info("analysed %s: %.1f s, %d windows, %d cuts, segments: %s", request.input_path, analysis.duration_s,
             len(analysis.windows), len(analysis.cuts),
             ", ".join(f"{s.emotion}@{s.start_s:.1f}" for s in analysis.segments))

    t = time.perf_counter()
    check_cancelled()
    prog.stage("compose")
    from pipelines.offline.cut_times import refine_cuts
    from pipelines.offline.timeline import beat_timeline

    # the cuts to the frame (the analysis sees 6 frames a second), for the beat plan and its report
    cuts = refine_cuts(request.input_path, analysis.cuts, 1.0 / request.analysis.decode.analysis_fps,
                       changes=analysis.frame_changes)
    if track is not None:
        music = library_music(track, analysis.duration_s, limits)
    else:
        music = compose(
            music_engine or default_music_engine(),
            analysis.segments,
            analysis.duration_s,
            style=style,
            seed=request.seed,
            sample_rate=AUDIO_RATE,
            pace_at=pace_function(analysis),
            progress=prog.update,
            cuts=cuts,
        )
    music.beats = beat_timeline(music, cuts, analysis.segments, analysis.cuts)  # before the mix takes the audio
    timings["compose"] = time.perf_counter() - t

    t = time.perf_counter()
    check_cancelled()
    prog.stage("mix")
    from pipelines.offline.loudness_presets import PRESETS, mix_options

    preset = PRESETS[loudness] if loudness else None
    mixed = mix_bgm(analysis.audio, music.audio, AUDIO_RATE, analysis.speech, mix_options(preset, MixOptions()),
                    original_lufs=analysis.loudness_lufs, bgm_alone=request.bgm_path is not None,
                    measure_mix=False, in_place=True,  # the composed audio becomes the mix: one copy less
                    keep_gain=request.stems_dir is not None)
    timings["mix"] = time.perf_counter() - t
    # The mix's loudness (for the report) is measured while the muxer encodes: numpy and
    # FFmpeg both release the GIL, so this costs no wall time.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="measure") as pool:
        measured = pool.submit(with_mix_loudness, mixed, AUDIO_RATE)
        recording = getattr(music_engine, "recording", None) if exports else None
        mux_result, timeline = _write_outputs(request, analysis, music, mixed, measured, timings, style, prog,
                                              recording)
    prog.close()
    return ScoreResult(analysis, music, timeline.get("mix") or measured.result().report(), mux_result, timings,
                       timeline)


def _recording_engine(given: MusicEngine | None) -> MusicEngine:
    """The procedural composer, recording what it plays (for ``--midi`` / ``--stems``)."""
    from engines.composer import ProceduralMusicEngine
    from engines.composer.export import RecordingComposer
    from pipelines.offline.stems import NEEDS_COMPOSER

    if given is None:
        return RecordingComposer()
    if isinstance(given, RecordingComposer):
        return given
    if isinstance(given, ProceduralMusicEngine):
        return RecordingComposer(given.gain_db)
    raise OptionError(f"{NEEDS_COMPOSER}, not the {given.name} engine")


def _check_written_loudness(request: ScoreRequest, analysis: Analysis, mixed: MixResult, measured: Future[MixResult],
                            tmp: str, mux_result: MuxResult) -> tuple[MuxResult, dict[str, Any], MixResult]:
    """Measure the loudness preset on the file as written (decoded). If the audio encoder pushed a true peak
    over the ceiling (or moved the loudness more than :data:`ENCODER_LOUDNESS_SLACK_LU` off the target: its
    low-pass takes away bright content), the mix is made again with the ceiling lowered by the excess and the
    target moved by the difference (the gain in front of the limiter found anew) and written again -- at
    most :data:`ENCODER_RETRIES` times."""
    from pipelines.offline.loudness_presets import PRESETS, measure_file, report
    from pipelines.offline.mix import retarget

    preset = PRESETS[str(request.loudness)]
    found = measure_file(tmp)
    for _ in range(ENCODER_RETRIES):
        excess = found.true_peak_dbtp - preset.true_peak_dbtp
        short = preset.target_lufs - found.lufs if math.isfinite(found.lufs) else 0.0
        if not (excess > 0.0 or abs(short) > ENCODER_LOUDNESS_SLACK_LU):
            break
        measured.result()  # nothing reads the mix any more while it is made again
        lower = max(0.0, excess + 0.1)
        log.info("after encoding: %.2f LUFS, true peak %.2f dBTP: ceiling lowered by %.2f dB, target moved by "
                 "%+.2f LU", found.lufs, found.true_peak_dbtp, lower, short)
        mixed = retarget(mixed, AUDIO_RATE, lower, short)
        mux_result = mux(request.input_path, tmp, mixed.mix, AUDIO_RATE, analysis.duration_s)
        found = measure_file(tmp)
    return mux_result, report(preset, found, "output"), mixed


def _write_exports(request: ScoreRequest, analysis: Analysis, music: ComposedMusic, mixed: MixResult,
                   recording: EventLog, outputs: contextlib.ExitStack) -> dict[str, Any]:
    """``--midi`` and ``--stems`` (atomically, with the other outputs); their timeline entry."""
    from engines.composer.export import section_markers, write_midi
    from pipelines.offline.stems import atomic_dir, write_stems

    exports: dict[str, Any] = {}
    if request.midi_path:
        counts = write_midi(outputs.enter_context(atomic_output(request.midi_path)), recording, music.bars,
                            section_markers(music.sections), analysis.duration_s)
        exports["midi"] = {"path": os.path.abspath(request.midi_path), **counts}
    if request.stems_dir:
        if mixed.bgm_gain is None:  # pragma: no cover - the mix was asked for it
            raise RuntimeError("the mix did not keep the BGM's gain curve")
        folder = outputs.enter_context(atomic_dir(request.stems_dir))
        files = write_stems(folder, recording, mixed.mix.shape[0], mixed.bgm_gain)
        exports["stems"] = {"dir": os.path.abspath(request.stems_dir), "files": files, "sample_rate": AUDIO_RATE,
                            "sum": "the stems add up to the BGM (--bgm) as mixed: fades, level, ducking, limiter"}
    return exports


def _write_outputs(
    request: ScoreRequest,
    analysis: Analysis,
    music: ComposedMusic,
    mixed: MixResult,
    measured: Future[MixResult],
    timings: dict[str, float],
    style: str | None,
    prog: Progress,
    recording: EventLog | None = None,
) -> tuple[MuxResult | None, dict[str, Any]]:
    """Write every requested output atomically; returns the mux result and the timeline dict."""
    from pipelines.offline.timeline import timeline_dict, write_timeline

    mux_result: MuxResult | None = None
    t = time.perf_counter()
    check_cancelled()
    prog.stage("mux")
    timeline: dict[str, Any] = {}
    # All outputs are written to temporary siblings and renamed together at the end, so a
    # failure anywhere leaves none of them behind.
    with contextlib.ExitStack() as outputs:
        loudness: dict[str, Any] | None = None
        first_mix = mixed
        if request.output_path:
            tmp = outputs.enter_context(atomic_output(request.output_path))
            mux_result = mux(request.input_path, tmp, mixed.mix, AUDIO_RATE, analysis.duration_s)
            if request.loudness:
                mux_result, loudness, mixed = _check_written_loudness(request, analysis, mixed, measured, tmp,
                                                                      mux_result)
            timings["mux"] = time.perf_counter() - t
        elif request.loudness:
            from pipelines.offline.loudness_presets import PRESETS, measure_array, report

            loudness = report(PRESETS[request.loudness], measure_array(mixed.mix, AUDIO_RATE), "mix")
        from pipelines.offline.mix import with_mix_loudness

        # the mix's own report: of the mix as written (made again when the encoder pushed a preset off target)
        mix_report = (measured.result() if mixed is first_mix else with_mix_loudness(mixed, AUDIO_RATE)).report()
        extra: dict[str, Any] = {"mix": mix_report, "style": style or "auto", "seed": request.seed,
                                 "timings_s": timings}
        if loudness is not None:
            extra["loudness"] = loudness
        if recording is not None:
            extra["exports"] = _write_exports(request, analysis, music, mixed, recording, outputs)
        if request.track_id is not None:
            extra["track"] = {"id": request.track_id, "library": request.library}
        timeline = timeline_dict(analysis, music.sections, extra=extra, beats=music.beats)
        if mux_result is not None:
            timeline["output"] = {"path": os.path.abspath(str(request.output_path)),
                                  "video_copied": mux_result.video_copied,
                                  "video_codec": mux_result.video_codec, "audio_codec": mux_result.audio_codec}
        if request.bgm_path:
            write_wav(outputs.enter_context(atomic_output(request.bgm_path)), mixed.bgm, AUDIO_RATE)
        if request.timeline_path:
            write_timeline(outputs.enter_context(atomic_output(request.timeline_path)), timeline)
        if request.plot_path:
            from pipelines.offline.plot import plot_timeline

            plot_timeline(outputs.enter_context(atomic_output(request.plot_path)), analysis, music.sections,
                          title=os.path.basename(request.input_path))
    timings["write"] = time.perf_counter() - t - timings.get("mux", 0.0)
    return mux_result, timeline
