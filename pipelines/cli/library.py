"""``backscore catalog|library|recommend ...``: the built-in catalog, your own library, recommendations."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict

from pipelines.cli.args import Handler, add_affect_options
from pipelines.cli.output import count_progress, print_json, recommendation_line, track_record, tracks_table
from pipelines.options import parse_top_k


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    cat = sub.add_parser("catalog", help="the built-in catalog of 100 numbered tracks")
    cat_sub = cat.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    cl = cat_sub.add_parser("list", help="list the tracks (built on first use)")
    cl.add_argument("--json", action="store_true")
    ce = cat_sub.add_parser("export", help="copy the audio files and metadata to a folder")
    ce.add_argument("dir")

    rec = sub.add_parser("recommend", help="rank library tracks for a video")
    rec.add_argument("input")
    rec.add_argument("--top-k", type=int, default=5)
    rec.add_argument("--library", default="catalog", metavar="catalog|LIB.sqlite")
    rec.add_argument("--json", action="store_true")
    rec.add_argument("--per-segment", action="store_true", help="recommend for each mood segment")
    rec.add_argument("--model", metavar="MODEL", help="blend in a trained recommender (`recommender train`)")
    rec.add_argument("--no-faces", action="store_true")
    rec.add_argument("--plot", metavar="P.png", help="draw the library, the video's mood path and the picks")
    add_affect_options(rec)

    lib = sub.add_parser("library", help="index and list your own music")
    lib_sub = lib.add_subparsers(dest="library_command", required=True, metavar="ACTION")
    li = lib_sub.add_parser("index", help="analyse every audio file in a folder into an SQLite library")
    li.add_argument("dir")
    li.add_argument("--db", required=True, metavar="LIB.sqlite")
    ll = lib_sub.add_parser("list", help="list an indexed library")
    ll.add_argument("--db", required=True, metavar="LIB.sqlite")
    ll.add_argument("--json", action="store_true")

    return {"catalog": _cmd_catalog, "recommend": _cmd_recommend, "library": _cmd_library}



def _cmd_catalog(args: argparse.Namespace) -> int:
    from pipelines.library import catalog

    prog, update = count_progress("catalog")
    if args.catalog_command == "list":
        tracks = catalog.load_catalog(progress=update)
        prog.close()
        if args.json:
            print_json([track_record(t) for t in tracks])
        else:
            print(tracks_table(tracks))
        return 0
    n = catalog.export_catalog(args.dir, progress=update)
    prog.close()
    print(f"exported {n} tracks to {args.dir}")
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from pipelines.analysis.analyze import analysis_options, analyze
    from pipelines.cli.training import engines_from_args
    from pipelines.library.profile import profile_from_analysis
    from pipelines.library.ranking import TrackMatrix, rank, rank_per_segment
    from pipelines.library.sources import load_library
    from pipelines.media.decode import probe
    from pipelines.media.limits import MediaLimits
    from pipelines.media.outputs import atomic_output, check_output_path

    parse_top_k(args.top_k, "--top-k")
    limits = MediaLimits.for_cli()
    probe(args.input, limits)  # a bad input fails before the library is built
    if args.plot:
        check_output_path(args.plot, args.input, (".png",), "plot")
    engines = engines_from_args(args)  # missing weights fail before the library is built
    prog, update = count_progress("library")
    tracks = load_library(args.library, progress=update)
    prog.close()
    model = None
    if args.model:
        from pipelines.library.recommender import RecommenderModel

        model = RecommenderModel.load(args.model)
    analysis = analyze(args.input, engines, analysis_options(limits))
    profile = profile_from_analysis(analysis)
    matrix = TrackMatrix(tracks)
    model_scores = model.predict_proba(analysis, matrix) if model is not None else None
    if args.per_segment:
        result = rank_per_segment(profile, matrix, args.top_k)
        if args.json:
            out = [{"segment": {"start_s": seg.start_s, "end_s": seg.end_s, "emotion": seg.emotion},
                    "recommendations": [asdict(r) for r in recs]} for seg, recs in result]
            print_json(out)
        else:
            for seg, recs in result:
                print(f"{seg.start_s:5.1f}-{seg.end_s:5.1f}s  {seg.emotion}")
                for i, r in enumerate(recs, 1):
                    print("   " + recommendation_line(i, r))
        return 0
    recs = rank(profile, matrix, args.top_k, model_scores=model_scores)
    if args.plot:
        from pipelines.library.plot import plot_recommendations

        with atomic_output(args.plot) as tmp:
            plot_recommendations(tmp, profile, tracks, [r.track_id for r in recs],
                                 title=f"{os.path.basename(args.input)}: top {len(recs)} of {len(tracks)}")
    if args.json:
        print_json([asdict(r) for r in recs])
    else:
        for i, r in enumerate(recs, 1):
            print(recommendation_line(i, r))
    return 0


def _cmd_library(args: argparse.Namespace) -> int:
    from pipelines.library import index

    if args.library_command == "index":
        prog, update = count_progress("index")
        summary = index.index_directory(args.dir, args.db, progress=update)
        prog.close()
        print(summary.describe())
        for path, reason in summary.failures:
            print(f"  skipped {path}: {reason}", file=sys.stderr)
        return 0
    with index.LibraryDB(args.db, create=False) as db:
        tracks = db.tracks()
    if args.json:
        print_json([track_record(t) for t in tracks])
    else:
        print(tracks_table(tracks, empty=f"(no tracks: index a folder with `{index.INDEX_HINT.format(path=args.db)}`)"))
    return 0
