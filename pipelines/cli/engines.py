"""``backscore engines``: each engine and inference backend, whether it can run here, and why not."""

from __future__ import annotations

import argparse

from pipelines.cli.args import Handler, add_backend_option


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    en = sub.add_parser("engines", help="list the engines, whether each is available here and why not")
    en.add_argument("--weights", action="append", metavar="[NAME=]DIR",
                    help="where to look for weights, repeatable: a plain DIR for MusicGen, NAME=DIR for musicgen, "
                    "clip, wav2vec2, amt")
    add_backend_option(en, "the neural engines: which one each would use here")
    return {"engines": _cmd_engines}


def _cmd_engines(args: argparse.Namespace) -> int:
    from engines.registry import engine_statuses
    from pipelines.cli.args import split_weights

    affect, music = split_weights(args.weights, "musicgen")
    statuses = engine_statuses({**affect, **({"musicgen": music} if music else {})}, backend=args.backend)
    width = max(len(s.name) for s in statuses)
    for s in statuses:
        mark = "yes" if s.available else "no "
        print(f"{s.name:<{width}}  {s.kind:<8}  {mark}  {s.detail}")
    return 0
