"""The ``backscore`` command line: the root parser, logging, and one error report for every command.

Each command group lives in its own module and adds its sub-commands with ``add_commands``:
:mod:`~pipelines.cli.offline` (score, analyze), :mod:`~pipelines.cli.library` (catalog, library,
recommend), :mod:`~pipelines.cli.training` (amt, recommender), :mod:`~pipelines.cli.engines`,
:mod:`~pipelines.cli.devtools` (synth-video), :mod:`~pipelines.cli.serve` and :mod:`~pipelines.cli.keys`
(API keys for the service). Errors a user can
fix print one ``backscore: error: ...`` line and exit with the code of
:data:`pipelines.errors.ERROR_TABLE`; anything else is an internal error (exit 70, details with -v).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pipelines.cli import devtools, engines, keys, library, offline, serve, training
from pipelines.cli.args import Handler
from pipelines.errors import INTERNAL, error_status, is_reported

log = logging.getLogger("backscore")

#: Exit code of Ctrl-C (128 + SIGINT).
INTERRUPTED = 130


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    p = argparse.ArgumentParser(
        prog="backscore",
        description="Adaptive background music for video: reads the mood of the pictures and the soundtrack "
        "over time and composes BGM that follows it.",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: dict[str, Handler] = {}
    for group in (offline, engines, devtools, library, training, serve, keys):
        handlers.update(group.add_commands(sub))
    return p, handlers


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


#: The interpreter's switch interval while a command runs (s; Python's default is 5 ms). ``backscore score``'s
#: decode loop calls into FFmpeg for every frame next to a sound thread that imports scipy and computes in
#: numpy: with 5 ms it waits up to 5 ms for the GIL after each call and the decoder's threads starve
#: (the analysis of a 60 s video ~0.15 s faster at 0.25 ms on 2 cores; the same results).
SWITCH_INTERVAL_S = 0.00025


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = _build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("backscore: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # output piped into `head` & co.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if is_reported(exc):
            print(f"backscore: error: {exc}", file=sys.stderr)
            return error_status(exc).exit_code
        # a bug, not bad input: one line, details with -v
        if args.verbose:
            log.exception("internal error")
        print(f"backscore: internal error: {type(exc).__name__}: {exc} (run with -v for details)", file=sys.stderr)
        return INTERNAL.exit_code
    finally:
        sys.setswitchinterval(previous)


if __name__ == "__main__":
    sys.exit(main())
