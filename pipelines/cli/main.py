"""The ``backscore`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from engines.base import STYLES, EngineError
from pipelines.cli.library import Handler, add_commands
from pipelines.cli.serve import add_parser as add_serve_parser
from pipelines.cli.training import add_affect_options, add_backend_option
from pipelines.cli.training import add_commands as add_amt_commands
from pipelines.errors import BackscoreError

log = logging.getLogger("backscore")


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    p = argparse.ArgumentParser(
        prog="backscore",
        description="Adaptive background music for video: reads the mood of the pictures and the soundtrack "
        "over time and composes BGM that follows it.",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sc = sub.add_parser("score", help="compose mood-following BGM and put it under the video")
    sc.add_argument("input", help="input video (mp4, mov, webm, mkv, avi, ...)")
    sc.add_argument("-o", "--output", required=True, help="output video (.mp4, .mov, .mkv, .webm)")
    sc.add_argument("--timeline", metavar="T.json", help="write the analysis and music plan as JSON")
    sc.add_argument("--plot", metavar="P.png", help="draw mood curves, segments and music changes")
    sc.add_argument("--bgm", metavar="B.wav", help="write the background music alone as WAV")
    sc.add_argument("--style", default="auto", help=f"music style: auto (from the mood) or one of {', '.join(STYLES)}")
    sc.add_argument("--seed", type=int, default=0, help="random seed for the composer (default 0)")
    sc.add_argument("--no-faces", action="store_true", help="skip face-expression analysis")
    sc.add_argument("--engine", default="procedural", metavar="procedural|musicgen",
                    help="music engine: the embedded procedural composer (default) or MusicGen (needs --weights)")
    sc.add_argument("--weights", action="append", metavar="[NAME=]DIR",
                    help="local model weights, repeatable: a plain DIR for --engine musicgen (or "
                    "BACKSCORE_MUSICGEN_WEIGHTS, or the Hugging Face cache); NAME=DIR for the affect engine's models "
                    "(clip=DIR, wav2vec2=DIR, amt=DIR; a plain DIR when the music engine needs none)")
    add_affect_options(sc, weights=False)
    sc.add_argument("--track", type=int, metavar="ID",
                    help="put this library track under the video instead of composing (see `backscore recommend`)")
    sc.add_argument("--library", default="catalog", metavar="catalog|LIB.sqlite",
                    help="library for --track: the built-in catalog (default) or an index made by `library index`")
    sc.add_argument("--quiet", action="store_true", help="no progress bar")

    an = sub.add_parser("analyze", help="analyse the mood over time and print/write the timeline JSON")
    an.add_argument("input")
    an.add_argument("--timeline", metavar="T.json", help="write JSON here instead of stdout")
    an.add_argument("--plot", metavar="P.png")
    an.add_argument("--no-faces", action="store_true")
    add_affect_options(an)

    en = sub.add_parser("engines", help="list the engines, whether each is available here and why not")
    en.add_argument("--weights", action="append", metavar="[NAME=]DIR",
                    help="where to look for weights, repeatable: a plain DIR for MusicGen, NAME=DIR for musicgen, "
                    "clip, wav2vec2, amt")
    add_backend_option(en, "the neural engines: which one each would use here")

    sv = sub.add_parser("synth-video", help="write a synthetic test video whose mood changes at known times")
    sv.add_argument("output", help="output file (.mp4, .webm, .mkv, .avi)")
    sv.add_argument("--width", type=int, default=640)
    sv.add_argument("--height", type=int, default=360)
    sv.add_argument("--fps", type=int, default=30)
    sv.add_argument("--pattern", default="calm-exciting-calm",
                    help="dash-separated scenes from: calm, exciting (default calm-exciting-calm)")
    sv.add_argument("--scene-seconds", type=float, default=8.0)
    return p, {**add_commands(sub), **add_amt_commands(sub), **add_serve_parser(sub)}


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _cmd_score(args: argparse.Namespace) -> int:
    from pipelines.cli.training import split_weights
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
    total = sum(result.timings_s.values())
    print(f"  time:  {total:.2f} s ({total / max(result.analysis.duration_s, 1e-9):.3f}x real time)")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from pipelines.analysis.analyze import analyze
    from pipelines.cli.training import engines_from_args
    from pipelines.media.decode import probe
    from pipelines.media.outputs import atomic_output, check_output_path
    from pipelines.offline.timeline import timeline_dict, write_timeline

    if args.timeline:
        check_output_path(args.timeline, args.input, (".json",), "timeline")
    if args.plot:
        check_output_path(args.plot, args.input, (".png",), "plot")
    probe(args.input)  # a bad input fails before any model is loaded
    analysis = analyze(args.input, engines_from_args(args))
    data = timeline_dict(analysis)
    if args.timeline:
        with atomic_output(args.timeline) as tmp:
            write_timeline(tmp, data)
    else:
        json.dump(data, sys.stdout, indent=1)
        sys.stdout.write("\n")
    if args.plot:
        from pipelines.offline.plot import plot_timeline

        with atomic_output(args.plot) as tmp:
            plot_timeline(tmp, analysis, None, title=os.path.basename(args.input))
    return 0


def _cmd_engines(args: argparse.Namespace) -> int:
    from engines.registry import engine_statuses
    from pipelines.cli.training import split_weights

    affect, music = split_weights(args.weights, "musicgen")
    statuses = engine_statuses({**affect, **({"musicgen": music} if music else {})}, backend=args.backend)
    width = max(len(s.name) for s in statuses)
    for s in statuses:
        mark = "yes" if s.available else "no "
        print(f"{s.name:<{width}}  {s.kind:<8}  {mark}  {s.detail}")
    return 0


def _cmd_synth_video(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, write_video
    from pipelines.errors import OptionError
    from pipelines.media.outputs import atomic_output, check_output_path

    check_output_path(args.output, None, (".mp4", ".mkv", ".webm", ".avi", ".mov"))
    table = {"calm": CALM_DARK, "exciting": BRIGHT_FAST}
    names = args.pattern.split("-")
    bad = [n for n in names if n not in table]
    if bad:
        raise OptionError(f"unknown scene(s) {', '.join(bad)} in --pattern; use: {', '.join(table)}")
    scenes = [replace(table[n], duration_s=args.scene_seconds) for n in names]
    with atomic_output(args.output) as tmp:
        total = write_video(tmp, scenes, width=args.width, height=args.height, fps=args.fps)
    print(f"wrote {args.output} ({total:.1f} s; mood changes at "
          f"{', '.join(f'{i * args.scene_seconds:.1f}s' for i in range(1, len(names)))})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser, music_handlers = _build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    handlers: dict[str, Handler] = {"score": _cmd_score, "analyze": _cmd_analyze, "synth-video": _cmd_synth_video,
                                    "engines": _cmd_engines, **music_handlers}
    try:
        return handlers[args.command](args)
    except BackscoreError as exc:
        print(f"backscore: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except EngineError as exc:
        print(f"backscore: error: {exc}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        print("backscore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` & co.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug, not bad input: one line, details with -v
        if args.verbose:
            log.exception("internal error")
        print(f"backscore: internal error: {type(exc).__name__}: {exc} (run with -v for details)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
