"""Options several commands share: ``--affect-engine``, ``--backend``, ``--weights``, and the engines they pick."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from engines.affect_engines import AFFECT_ENGINES, parse_weights
from engines.backends import ALIASES, BACKENDS, ENV_VAR
from pipelines.errors import OptionError

if TYPE_CHECKING:
    from pipelines.analysis.engines import Engines

#: A command: parsed arguments in, exit code out.
Handler = Callable[[argparse.Namespace], int]

AFFECT_MODELS = ("clip", "wav2vec2", "amt")
WEIGHTS_HELP = ("model weights, repeatable: NAME=DIR for clip, wav2vec2 or amt, or a plain DIR for the "
                "chosen engine (clip+wav2vec2: a folder with clip/ and wav2vec2/); else BACKSCORE_CLIP_WEIGHTS, "
                "BACKSCORE_WAV2VEC2_WEIGHTS, BACKSCORE_AMT_WEIGHTS or the Hugging Face cache")


def add_backend_option(p: argparse.ArgumentParser, what: str = "the neural models (CLIP, wav2vec2, MusicGen)") -> None:
    """``--backend auto|tensorrt|ort-cuda|torch-cuda|ort-cpu|torch-cpu`` (aliases of engines.backends accepted)."""
    p.add_argument("--backend", default="auto", metavar="|".join(("auto", *BACKENDS)),
                   help=f"inference backend of {what}: auto (default: ${ENV_VAR} if set, else the first that "
                   f"runs here in the order {', '.join(BACKENDS)}) or one of them "
                   f"(also {', '.join(sorted(ALIASES))}); a named backend that cannot run here is an error")


def add_affect_options(p: argparse.ArgumentParser, weights: bool = True) -> None:
    """``--affect-engine``, ``--backend`` (and ``--weights``, repeatable, unless the parser defines its own)."""
    p.add_argument("--affect-engine", default="default", choices=AFFECT_ENGINES, metavar="|".join(AFFECT_ENGINES),
                   help="how mood is read: the feature model (default), CLIP and/or wav2vec2 fused with it, or a "
                   "trained AMT (amt; the default model when no AMT weights are given)")
    add_backend_option(p)
    if weights:
        p.add_argument("--weights", action="append", metavar="[NAME=]DIR", help=WEIGHTS_HELP)


def split_weights(values: list[str] | None, music_engine: str | None = None) -> tuple[dict[str, str], str | None]:
    """``(affect weights, music weights)`` from ``--weights`` values. A plain DIR is the music
    engine's when ``music_engine`` is ``musicgen`` (``score --engine musicgen --weights DIR``)."""
    try:
        w = parse_weights(values)
    except ValueError as exc:
        raise OptionError(str(exc)) from exc
    music = w.pop("musicgen", None)
    if music_engine in ("musicgen", "musicgen-chunked") and "" in w:
        if music is not None:
            raise OptionError("--weights: a plain DIR and musicgen=DIR given; name the other model: clip=DIR, ...")
        music = w.pop("")
    return w, music


def engines_from_args(args: argparse.Namespace) -> Engines:
    """:class:`pipelines.analysis.analyze.Engines` for ``--affect-engine``, ``--weights`` and ``--no-faces``."""
    from pipelines.analysis.engines import create_engines
    from pipelines.offline.score import check_backend

    backend = getattr(args, "backend", "auto")
    check_backend(backend)  # a named backend that cannot run here fails even when no neural model is used
    weights, _ = split_weights(getattr(args, "weights", None))
    try:
        return create_engines(args.affect_engine, weights, faces=not getattr(args, "no_faces", False),
                              backend=backend)
    except ValueError as exc:
        raise OptionError(str(exc)) from exc
