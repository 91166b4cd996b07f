"""``backscore synth-video``: a synthetic test video whose mood changes at known times."""

from __future__ import annotations

import argparse

from pipelines.cli.args import Handler


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    sv = sub.add_parser("synth-video", help="write a synthetic test video whose mood changes at known times")
    sv.add_argument("output", help="output file (.mp4, .webm, .mkv, .avi)")
    sv.add_argument("--width", type=int, default=640, help="pixels, even, 2 to 7680 (default 640)")
    sv.add_argument("--height", type=int, default=360, help="pixels, even, 2 to 4320 (default 360)")
    sv.add_argument("--fps", type=int, default=30, help="frames per second, 1 to 240 (default 30)")
    sv.add_argument("--pattern", default="calm-exciting-calm",
                    help="dash-separated scenes from: calm, exciting (default calm-exciting-calm)")
    sv.add_argument("--scene-seconds", type=float, default=8.0,
                    help="length of each scene (default 8; the whole video at most 3600 s)")
    return {"synth-video": _cmd_synth_video}


def _cmd_synth_video(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, check_video_params, write_video
    from pipelines.errors import OptionError
    from pipelines.media.outputs import atomic_output, check_output_path

    check_output_path(args.output, None, (".mp4", ".mkv", ".webm", ".avi", ".mov"))
    table = {"calm": CALM_DARK, "exciting": BRIGHT_FAST}
    names = args.pattern.split("-")
    bad = [n for n in names if n not in table]
    if bad:
        raise OptionError(f"unknown scene(s) {', '.join(bad)} in --pattern; use: {', '.join(table)}")
    scenes = [replace(table[n], duration_s=args.scene_seconds) for n in names]
    # before the temporary output exists: a refused size, rate or length leaves nothing behind
    check_video_params(args.width, args.height, args.fps, [s.duration_s for s in scenes])
    with atomic_output(args.output) as tmp:
        total = write_video(tmp, scenes, width=args.width, height=args.height, fps=args.fps)
    print(f"wrote {args.output} ({total:.1f} s; mood changes at "
          f"{', '.join(f'{i * args.scene_seconds:.1f}s' for i in range(1, len(names)))})")
    return 0
