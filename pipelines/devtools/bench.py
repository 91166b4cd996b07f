"""``make bench``: end-to-end real-time factor of ``backscore score`` vs pure PyAV decoding.

Makes (once, cached in ``bench-out/``) a 60 s 1280x720 30 fps H.264 + AAC video of real
footage (see :func:`bench_video`), then measures:

* decode-only: PyAV decoding every video and audio frame of the file (threaded, the
  library's usual way), no conversion -- the floor any analysis must stand on;
* ``backscore score`` end to end in a fresh process (model loading included), its per-stage
  timings, and the process's peak resident memory.

Prints a table and, with ``--out FILE``, replaces the section between the markers in that
Markdown file.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from fractions import Fraction

import av
import numpy as np

from pipelines.devtools.report import cpu_name, replace_section
from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, Scene, encode_audio, render_audio
from pipelines.frames import AUDIO_RATE
from pipelines.media.decode import load_audio

BEGIN = "<!-- bench:score:begin -->"
END = "<!-- bench:score:end -->"
REC_BEGIN = "<!-- bench:recommend:begin -->"
REC_END = "<!-- bench:recommend:end -->"


def bench_video(directory: str, media_dir: str = ".cache/media") -> str:
    """60 s of real 1280x720 footage (cockatoo.mp4 looped; each loop point is a cut) re-encoded
    as H.264 (x264 'fast', CRF 20, like a phone export), with a soundtrack whose character
    changes every 15 s (quiet hum, loud drums, real spoken words, hum)."""
    path = os.path.join(directory, "bench-60s-720p.mp4")
    if os.path.exists(path):
        return path
    src = os.path.join(media_dir, "cockatoo.mp4")
    if not os.path.exists(src):
        raise SystemExit(f"bench needs {src}: run scripts/fetch_media.sh")
    os.makedirs(directory, exist_ok=True)
    tmp = path + ".partial.mp4"
    fps, duration = 30, 60.0
    n_frames = int(fps * duration)
    scenes = [replace(CALM_DARK, duration_s=15.0), replace(BRIGHT_FAST, duration_s=15.0),
              Scene(15.0, audio="silence"), replace(CALM_DARK, duration_s=15.0)]
    sound = np.concatenate([render_audio(s, int(s.duration_s * AUDIO_RATE), int(i * 15 * AUDIO_RATE))
                            for i, s in enumerate(scenes)])
    sound[30 * AUDIO_RATE: 45 * AUDIO_RATE] += _words(media_dir, 15.0)
    with av.open(tmp, "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 1280, 720, "yuv420p"
        vs.options = {"preset": "fast", "crf": "20"}
        ast = out.add_stream("aac", rate=AUDIO_RATE)
        ast.layout = "stereo"
        i = 0
        while i < n_frames:
            with av.open(src) as c:
                for frame in c.decode(video=0):
                    if i >= n_frames:
                        break
                    f = frame.reformat(width=1280, height=720, format="yuv420p")
                    f.pts, f.time_base = i, Fraction(1, fps)
                    out.mux(vs.encode(f))
                    i += 1
        out.mux(vs.encode(None))
        encode_audio(out, ast, sound.astype(np.float32), 0)
        out.mux(ast.encode(None))
    os.replace(tmp, path)
    return path


def _words(media_dir: str, seconds: float) -> np.ndarray:
    words = sorted(glob.glob(os.path.join(media_dir, "voices", "*", "*.ogg")))[::7]
    out = np.zeros(int(seconds * AUDIO_RATE), np.float32)
    pos = 0
    for w in words:
        x = load_audio(w, AUDIO_RATE)
        if pos + len(x) > len(out):
            break
        out[pos:pos + len(x)] = 0.3 * x / (np.abs(x).max() + 1e-9)
        pos += len(x) + AUDIO_RATE // 3
    return out


def decode_only(path: str) -> float:
    t = time.perf_counter()
    with av.open(path) as c:
        streams = [c.streams.video[0], *c.streams.audio[:1]]
        c.streams.video[0].thread_type = "AUTO"
        for packet in c.demux(*streams):
            for _ in packet.decode():
                pass
    return time.perf_counter() - t


def run_score(path: str, outdir: str) -> tuple[float, float, dict[str, object]]:
    out = os.path.join(outdir, "scored.mp4")
    tl = os.path.join(outdir, "bench-timeline.json")
    cmd = [sys.executable, "-m", "pipelines.cli", "score", path, "-o", out, "--timeline", tl, "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(tl, encoding="utf-8") as fh:
        timeline = json.load(fh)
    return wall, max(peak_kb, before) / 1024.0, timeline


def machine() -> str:
    return f"{cpu_name()}, Python {platform.python_version()}, PyAV {av.__version__}"


def recommend_section(directory: str) -> str:
    """Catalog build time, library index throughput and ranking latency for 10,000 tracks."""
    import shutil
    import tempfile

    from pipelines.devtools.bench_rank import bench_rank
    from pipelines.library.catalog import build_catalog, load_catalog
    from pipelines.library.index import index_directory

    cache = tempfile.mkdtemp(prefix="bench-catalog-", dir=directory)
    try:
        t = time.perf_counter()
        build_catalog(cache_dir=cache, workers=os.cpu_count() or 2)
        build_s = time.perf_counter() - t
        tracks = load_catalog(cache_dir=cache)
        audio_s = sum(tr.duration_s for tr in tracks)
        music_dir = os.path.dirname(tracks[0].path)
        db = os.path.join(cache, "bench-library.sqlite")
        summary = index_directory(music_dir, db)
        t = time.perf_counter()
        index_directory(music_dir, db)  # incremental: nothing changed
        rescan_s = time.perf_counter() - t
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    rank = bench_rank(n_tracks=10_000, n_windows=117, repeats=200)
    return "\n".join([
        f"Machine: {machine()}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| catalog build, {len(tracks)} tracks ({audio_s / 60:.0f} min of music), {os.cpu_count()} processes "
        f"| {build_s:.1f} s ({audio_s / build_s:.0f}x real time) |",
        f"| library index, first run ({summary.added} catalog tracks, Opus 48 kHz) "
        f"| {summary.seconds:.1f} s = {summary.added / summary.seconds:.2f} tracks/s |",
        f"| library index, re-run with nothing changed | {rescan_s * 1000:.0f} ms |",
        f"| recommend: rank 10,000 tracks for a 60 s video (117 windows), p50 / p95 of 200 "
        f"| {rank['p50_ms']:.1f} / {rank['p95_ms']:.1f} ms (goal p95 <= 50 ms) |",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default="bench-out")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", help="Markdown file to update (e.g. BENCHMARKS.md)")
    ap.add_argument("--skip-recommend", action="store_true", help="only the end-to-end score benchmark")
    args = ap.parse_args(argv)
    path = bench_video(args.dir)
    with av.open(path) as c:
        duration = float(c.duration / av.time_base) if c.duration else 60.0
    decode_only(path)  # warm the page cache
    dec = [decode_only(path) for _ in range(args.repeat)]
    runs = [run_score(path, args.dir) for _ in range(args.repeat)]
    dec_s = statistics.median(dec)
    score_s = statistics.median(r[0] for r in runs)
    peak = max(r[1] for r in runs)
    stages = runs[-1][2].get("timings_s", {})
    lines = [
        f"Machine: {machine()}. Input: {duration:.0f} s 1280x720 30 fps H.264 (x264 fast, CRF 20) + AAC: "
        "real footage (cockatoo.mp4 looped), a soundtrack of hum, drums, spoken words, hum.",
        "",
        "| measure | seconds | x real time |",
        "|---|---|---|",
        f"| PyAV decode only (all frames, threaded), median of {args.repeat} | {dec_s:.2f} | {dec_s / duration:.3f} |",
        f"| `backscore score` end to end (fresh process), median of {args.repeat} | {score_s:.2f} | "
        f"{score_s / duration:.3f} |",
        f"| ratio score / decode-only | {score_s / dec_s:.2f}x | goal <= 2.5x |",
        f"| peak resident memory of `backscore score` | {peak:.0f} MiB | |",
    ]
    if isinstance(stages, dict) and stages:
        lines += ["", "Stages of the last run (in-process): " + ", ".join(
            f"{k} {float(v):.2f} s" for k, v in stages.items())]
    text = "\n".join(lines)
    print(text)
    if args.out:
        replace_section(args.out, BEGIN, END, "`backscore score` end to end", text)
    if not args.skip_recommend:
        rec = recommend_section(args.dir)
        print(rec)
        if args.out:
            replace_section(args.out, REC_BEGIN, REC_END, "Recommendation: catalog, library index, ranking", rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
