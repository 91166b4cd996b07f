"""``backscore score`` and ``backscore analyze``: the offline job on one video."""

from __future__ import annotations

import argparse
import os

from engines.base import STYLES
from pipelines.cli.args import Handler, add_affect_options
from pipelines.cli.output import print_json
from pipelines.offline.loudness_presets import PRESETS


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    sc = sub.add_parser("score", help="compose mood-following BGM and put it under the video")
    sc.add_argument("input", help="input video (mp4, mov, webm, mkv, avi, ...)")
    sc.add_argument("-o", "--output", required=True, help="output video (.mp4, .mov, .mkv, .webm)")
    sc.add_argument("--timeline", metavar="T.json", help="write the analysis and music plan as JSON")
    sc.add_argument("--plot", metavar="P.png", help="draw mood curves, segments and music changes")
    sc.add_argument("--bgm", metavar="B.wav", help="write the background music alone as WAV")
    sc.add_argument("--style", default="auto", help=f"music style: auto (from the mood) or one of {', '.join(STYLES)}")
    sc.add_argument("--seed", type=int, default=0, help="random seed for the composer (default 0)")
    sc.add_argument("--no-faces", action="store_true", help="skip face-expression analysis")
    sc.add_argument("--engine", default="procedural", metavar="procedural|musicgen|musicgen-chunked",
                    help="music engine: the embedded procedural composer (default) or MusicGen (needs --weights): "
                    "musicgen streams (a GPU engine), musicgen-chunked continues chunk by chunk and can run its "
                    "text encoder and EnCodec on the ONNX Runtime / TensorRT backends")
    sc.add_argument("--weights", action="append", metavar="[NAME=]DIR",
                    help="local model weights, repeatable: a plain DIR for --engine musicgen (or "
                    "BACKSCORE_MUSICGEN_WEIGHTS, or the Hugging Face cache); NAME=DIR for the affect engine's models "
                    "(clip=DIR, wav2vec2=DIR, amt=DIR; a plain DIR when the music engine needs none)")
    add_affect_options(sc, weights=False)
    sc.add_argument("--track", type=int, metavar="ID",
                    help="put this library track under the video instead of composing (see `backscore recommend`)")
    sc.add_argument("--library", default="catalog", metavar="catalog|LIB.sqlite",
                    help="library for --track: the built-in catalog (default) or an index made by `library index`")
    sc.add_argument("--midi", metavar="OUT.mid",
                    help="write the composed score as a Standard MIDI File: tempo map, program changes per part, "
                    "a marker per music section (procedural composer only)")
    sc.add_argument("--stems", metavar="DIR",
                    help="write the BGM as stems (drums, bass, harmony, melody WAVs) into this new or empty folder, "
                    "at the mix's level: they add up to --bgm (procedural composer only)")
    sc.add_argument("--loudness", metavar="|".join(PRESETS),
                    help="bring the final mix to a loudness preset (integrated LUFS and true-peak ceiling, "
                    "measured on the written file; see README 'Loudness presets'); default: the mix as it is")
    sc.add_argument("--quiet", action="store_true", help="no progress bar")

    an = sub.add_parser("analyze", help="analyse the mood over time and print/write the timeline JSON")
    an.add_argument("input")
    an.add_argument("--timeline", metavar="T.json", help="write JSON here instead of stdout")
    an.add_argument("--plot", metavar="P.png")
    an.add_argument("--no-faces", action="store_true")
    add_affect_options(an)
    return {"score": _cmd_score, "analyze": _cmd_analyze}


def _cmd_score(args: argparse.Namespace) -> int:
    from pipelines.analysis.analyze import analysis_options
    from pipelines.cli.args import split_weights
    from pipelines.media.limits import MediaLimits
    from pipelines.offline.score import SCORE_STAGES, ScoreRequest, score
    from pipelines.progress import Progress

    affect_weights, music_weights = split_weights(args.weights, args.engine)
    progress = Progress(SCORE_STAGES, enabled=None if not args.quiet else False)
    result = score(
        ScoreRequest(
            input_path=args.input,
            output_path=args.output,
            timeline_path=args.timeline,
            plot_path=args.plot,
            bgm_path=args.bgm,
            style=args.style,
            seed=args.seed,
            faces=not args.no_faces,
            track_id=args.track,
            library=args.library,
            engine=args.engine,
            weights=music_weights,
            affect_engine=args.affect_engine,
            affect_weights=affect_weights,
            backend=args.backend,
            analysis=analysis_options(MediaLimits.for_cli()),
            midi_path=args.midi,
            stems_dir=args.stems,
            loudness=args.loudness,
        ),
        progress=progress,
    )
    segs = ", ".join(f"{s.emotion} {s.start_s:.1f}-{s.end_s:.1f}s" for s in result.analysis.segments)
    music = ", ".join(
        f"{m.style} {m.key} {m.mode} {m.tempo_bpm:.0f}bpm@{m.start_s:.1f}s" for m in result.music.sections
    )
    print(f"wrote {args.output} ({result.analysis.duration_s:.1f} s)")
    print(f"  mood:  {segs}")
    print(f"  music: {music}")
    loud = result.timeline.get("loudness")
    if loud:
        print(f"  loudness: {loud['preset']} {loud['measured_lufs']} LUFS (target {loud['target_lufs']}), "
              f"true peak {loud['measured_true_peak_dbtp']} dBTP (ceiling {loud['target_true_peak_dbtp']})")
    for kind, entry in result.timeline.get("exports", {}).items():
        print(f"  {kind}: {entry.get('path') or entry.get('dir')}")
    total = sum(result.timings_s.values())
    print(f"  time:  {total:.2f} s ({total / max(result.analysis.duration_s, 1e-9):.3f}x real time)")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from pipelines.analysis.analyze import analysis_options, analyze
    from pipelines.cli.args import engines_from_args
    from pipelines.media.decode import probe
    from pipelines.media.limits import MediaLimits
    from pipelines.media.outputs import atomic_output, check_output_path
    from pipelines.offline.timeline import timeline_dict, write_timeline

    if args.timeline:
        check_output_path(args.timeline, args.input, (".json",), "timeline")
    if args.plot:
        check_output_path(args.plot, args.input, (".png",), "plot")
    limits = MediaLimits.for_cli()
    probe(args.input, limits)  # a bad input fails before any model is loaded
    analysis = analyze(args.input, engines_from_args(args), analysis_options(limits))
    data = timeline_dict(analysis)
    if args.timeline:
        with atomic_output(args.timeline) as tmp:
            write_timeline(tmp, data)
    else:
        print_json(data)
    if args.plot:
        from pipelines.offline.plot import plot_timeline

        with atomic_output(args.plot) as tmp:
            plot_timeline(tmp, analysis, None, title=os.path.basename(args.input))
    return 0
