"""``backscore amt ...`` and ``backscore recommender ...``: datasets, training and evaluation of the learned models."""

from __future__ import annotations

import argparse
import os

from pipelines.cli.args import Handler, add_affect_options, engines_from_args
from pipelines.cli.output import count_progress
from pipelines.errors import OptionError
from pipelines.progress import Progress

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

    tr = sub.add_parser("recommender", help="train and evaluate the learned recommender")
    tr_sub = tr.add_subparsers(dest="recommender_command", required=True, metavar="ACTION")
    tt = tr_sub.add_parser("train", help="train on a CSV of (video, track_id) pairs")
    tt.add_argument("--pairs", required=True, metavar="PAIRS.csv")
    tt.add_argument("--out", required=True, metavar="MODEL")
    tt.add_argument("--library", default="catalog", metavar="catalog|LIB.sqlite")
    tt.add_argument("--seed", type=int, default=0)
    te = tr_sub.add_parser("eval", help="accuracy, top-5 accuracy and MRR vs the affect-distance baseline")
    te.add_argument("--pairs", required=True, metavar="TEST.csv")
    te.add_argument("--model", required=True, metavar="MODEL")
    te.add_argument("--library", default="catalog", metavar="catalog|LIB.sqlite")
    tm = tr_sub.add_parser("make-data", help="synthesize a small labelled set of mood videos paired with tracks")
    tm.add_argument("--out", required=True, metavar="DIR")
    tm.add_argument("--n", type=int, default=60)
    tm.add_argument("--seed", type=int, default=0)
    tm.add_argument("--library", default="catalog", metavar="catalog|LIB.sqlite")
    return {"amt": _cmd_amt, "recommender": _cmd_recommender}


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


def _cmd_recommender(args: argparse.Namespace) -> int:
    from pipelines.library.recommender import RecommenderModel
    from pipelines.library.sources import load_library
    from pipelines.training.recommender import evaluate, train
    from pipelines.training.recommender_data import load_pairs
    from pipelines.training.recommender_pairs import make_pairs

    prog, update = count_progress("library")
    tracks = load_library(args.library, progress=update)
    prog.close()
    stages = Progress({"make-data": 1.0, "analyse": 3.0, "train": 1.0})

    def staged(stage: str, fraction: float) -> None:
        if stages.current != stage:
            stages.stage(stage)
        stages.update(fraction)

    if args.recommender_command == "make-data":
        if args.n <= 0:
            raise OptionError(f"--n must be at least 1 (got {args.n})")
        csv_path = make_pairs(args.out, tracks, n=args.n, seed=args.seed, progress=staged)
        stages.close()
        print(f"wrote {args.n} labelled videos and {csv_path}")
        return 0
    pairs = load_pairs(args.pairs, [t.id for t in tracks])
    if args.recommender_command == "train":
        report = train(pairs, tracks, args.out, seed=args.seed, progress=staged, library_name=args.library)
        stages.close()
        print(report.format_report())
        return 0
    model = RecommenderModel.load(args.model)
    result = evaluate(pairs, model, tracks, progress=staged)
    stages.close()
    print(result.format_report())
    return 0
