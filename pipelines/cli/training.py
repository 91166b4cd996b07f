"""CLI pieces for affect engines: ``--affect-engine`` / ``--weights`` and ``backscore amt ...``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from engines.affect_engines import AFFECT_ENGINES, parse_weights
from engines.backends import ALIASES, BACKENDS, ENV_VAR
from pipelines.errors import OptionError

if TYPE_CHECKING:
    from pipelines.analysis.engines import Engines

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
    if music_engine == "musicgen" and "" in w:
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


# --------------------------------------------------------------------------- backscore amt


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    amt = sub.add_parser("amt", help="the Affective Multimodal Transformer: export features, train, evaluate")
    amt_sub = amt.add_subparsers(dest="amt_command", required=True, metavar="ACTION")
    ex = amt_sub.add_parser("export-features", help="analyse videos and write one row per window (a dataset)")
    ex.add_argument("videos", nargs="*", metavar="VIDEO", help="videos (default: every video of --labels)")
    ex.add_argument("--labels", metavar="LABELS.csv",
                    help="video,valence,arousal[,emotion][,start_s,end_s] per clip or time range")
    ex.add_argument("-o", "--output", required=True, metavar="windows.csv", help="output .csv (or .parquet)")
    ex.add_argument("--no-faces", action="store_true")
    add_affect_options(ex)
    lb = amt_sub.add_parser("labels", help="a labels CSV from RAVDESS or CREMA-D file names")
    lb.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    lb.add_argument("--dataset", required=True, choices=("ravdess", "crema-d"))
    lb.add_argument("-o", "--output", required=True, metavar="labels.csv")
    tr = amt_sub.add_parser("train", help="train on a window dataset (CSV/Parquet)")
    tr.add_argument("data", metavar="DATA", help="windows .csv or .parquet")
    tr.add_argument("-o", "--output", required=True, metavar="MODEL_DIR")
    tr.add_argument("--epochs", type=int, default=40)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--causal", action="store_true", help="attend to past windows only (for live streams)")
    tr.add_argument("--context", type=int, default=64, help="windows per attention chunk (even; default 64)")
    ev = amt_sub.add_parser("eval", help="MAE/CCC (valence, arousal) and emotion accuracy vs the default model")
    ev.add_argument("model", metavar="MODEL_DIR")
    ev.add_argument("data", metavar="DATA")
    return {"amt": _cmd_amt}


VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg")


def _files(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in sorted(os.walk(p)):
                out.extend(os.path.join(root, n) for n in sorted(names) if n.lower().endswith(VIDEO_EXTENSIONS))
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise OptionError(f"not found: {p}")
    return out


def _cmd_amt(args: argparse.Namespace) -> int:
    from pipelines.training import amt_dataset as amt_data

    if args.amt_command == "labels":
        return _cmd_labels(args)
    if args.amt_command == "export-features":
        from pipelines.media.outputs import check_output_path
        from pipelines.progress import Progress

        check_output_path(args.output, None, (".csv", ".parquet", ".pq"), "output")
        labels = amt_data.load_labels(args.labels) if args.labels else None
        videos = list(args.videos) or (list(dict.fromkeys(lb.video for lb in labels)) if labels else [])
        engines = engines_from_args(args)
        prog = Progress({"export": 1.0})
        prog.stage("export")
        n_videos, n_rows = amt_data.export_features(videos, args.output, engines, labels,
                                                    lambda k, n, _v: prog.update(k / n))
        prog.close()
        print(f"wrote {n_rows} windows of {n_videos} videos to {args.output}")
        return 0
    if args.amt_command == "train":
        from engines.amt import AmtConfig
        from pipelines.training.amt import TrainOptions, train

        if args.context < 2 or args.context % 2:
            raise OptionError(f"--context must be an even number >= 2 (got {args.context})")
        data = amt_data.load_windows(args.data)
        report = train(data, args.output, TrainOptions(epochs=args.epochs, seed=args.seed),
                       AmtConfig(context=args.context, causal=args.causal))
        print(report.format_report())
        return 0
    from engines.amt import AmtAffectModel
    from pipelines.training.amt import evaluate

    model = AmtAffectModel.load(args.model)
    data = amt_data.load_windows(args.data)
    known = set(model.feature_names) & set(data.feature_names)
    if not known:
        raise OptionError(f"{args.data} has none of the model's features ({', '.join(model.feature_names[:5])}, ...)")
    const = model.info.get("constant")
    print(evaluate(model, data, tuple(const) if const and len(const) == 3 else None).format_report())
    return 0


def _cmd_labels(args: argparse.Namespace) -> int:
    import csv

    from engines.affect import PROTOTYPES
    from pipelines.media.outputs import atomic_output, check_output_path
    from pipelines.training.amt_dataset import labels_from_filenames

    check_output_path(args.output, None, (".csv",), "output")
    found = labels_from_filenames(_files(args.paths), args.dataset)
    if not found:
        raise OptionError(f"no {args.dataset} file names found in {', '.join(args.paths)}")
    base = os.path.dirname(os.path.abspath(args.output))
    with atomic_output(args.output) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["video", "valence", "arousal", "emotion"])
        for path, emotion in found:
            v, a = PROTOTYPES[emotion]
            w.writerow([os.path.relpath(os.path.abspath(path), base), v, a, emotion])
    print(f"wrote {len(found)} labels to {args.output}")
    return 0
