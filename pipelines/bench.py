"""``make bench``: end-to-end real-time factor of ``backscore score`` vs pure PyAV decoding.

Makes (once, cached in ``bench-out/``) a 60 s 1280x720 30 fps H.264 + AAC video whose mood
changes every 15 s, then measures:

* decode-only: PyAV decoding every video and audio frame of the file (threaded, the
  library's usual way), no conversion -- the floor any analysis must stand on;
* ``backscore score`` end to end in a fresh process (model loading included), its per-stage
  timings, and the process's peak resident memory.

Prints a table and, with ``--out FILE``, replaces the section between the markers in that
Markdown file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import av

from pipelines.synth_video import BRIGHT_FAST, CALM_DARK, Scene, write_video

BEGIN = "<!-- bench:score:begin -->"
END = "<!-- bench:score:end -->"


def bench_video(directory: str) -> str:
    path = os.path.join(directory, "bench-60s-720p.mp4")
    if not os.path.exists(path):
        os.makedirs(directory, exist_ok=True)
        mid = Scene(15.0, brightness=0.55, saturation=0.45, hue=0.35, speed=0.25, cut_every_s=3.0, audio="drums",
                    loudness_dbfs=-24.0, tempo_bpm=96.0)
        scenes = [replace(CALM_DARK, duration_s=15.0), replace(BRIGHT_FAST, duration_s=15.0), mid,
                  replace(CALM_DARK, duration_s=15.0)]
        tmp = path + ".partial.mp4"
        write_video(tmp, scenes, width=1280, height=720, fps=30)
        os.replace(tmp, path)
    return path


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
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            m = re.search(r"model name\s*:\s*(.+)", fh.read())
            if m:
                cpu = m.group(1).strip()
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, PyAV {av.__version__}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default="bench-out")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", help="Markdown file to update (e.g. BENCHMARKS.md)")
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
        f"Machine: {machine()}. Input: {duration:.0f} s 1280x720 30 fps H.264 + AAC (synthesized, 4 moods).",
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
        body = f"{BEGIN}\n{text}\n{END}"
        old = open(args.out, encoding="utf-8").read() if os.path.exists(args.out) else "# Benchmarks\n"
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), body, old, flags=re.S) if BEGIN in old else (
            old.rstrip() + "\n\n## `backscore score` end to end\n\n" + body + "\n")
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
