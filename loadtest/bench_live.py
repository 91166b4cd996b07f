"""``make bench-live``: start the service, load it, record the figures in BENCHMARKS.md.

1. ``serve run deploy/local.yaml`` in a subprocess; wait for ``/healthz``.
2. Live sessions: the aiortc swarm (loadtest/swarm.py) at each ``--sessions`` count for
   ``--duration`` seconds; a count passes with zero server underruns and every session connected.
3. HTTP: Locust headless (loadtest/locustfile.py) for ``--locust-time`` with ``--users`` users;
   p50/p95 of /v1/recommend from its CSV.
4. The service is stopped (``serve shutdown``, Ray stopped) whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

from pipelines.devtools.bench import machine
from pipelines.devtools.report import replace_section

BEGIN = "<!-- bench:live:begin -->"
END = "<!-- bench:live:end -->"


def wait_healthy(url: str, timeout_s: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(1.0)
    raise SystemExit(f"service at {url} not healthy after {timeout_s:.0f} s")


def wait_catalog(url: str, timeout_s: float) -> None:
    """The gateway builds the catalog in the background at start; measure only once it is ready."""
    import json as _json

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
            state = _json.loads(r.read()).get("catalog")
        if state in ("ready", "on demand", None):
            return
        if state == "failed":
            raise SystemExit("the gateway could not build the catalog (see its log)")
        time.sleep(2.0)
    raise SystemExit(f"catalog not ready after {timeout_s:.0f} s")


def run_locust(url: str, users: int, seconds: int, outdir: str) -> dict[str, Any]:
    prefix = os.path.join(outdir, "locust")
    cmd = [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless", "-u", str(users),
           "-r", str(max(1, users // 2)), "-t", f"{seconds}s", "--host", url, "--csv", prefix, "--only-summary"]
    env = dict(os.environ)
    env.setdefault("BACKSCORE_LOAD_MIX", "1:0:0:0")  # recommend only, unless the caller chose a mix
    subprocess.run(cmd, check=False, env=env, stdout=subprocess.DEVNULL)
    rows: dict[str, Any] = {}
    with open(prefix + "_stats.csv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rows[row["Name"]] = row
    return rows


def with_session_limit(config: str, sessions: int, directory: str) -> str:
    """``config``, or a copy of it in ``directory`` whose gateway admits ``sessions`` live sessions."""
    import yaml

    with open(config, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    changed = False
    for app in doc.get("applications", []):
        limit = app.setdefault("args", {}).get("max_live_sessions", 8)
        if sessions > limit:
            app["args"]["max_live_sessions"] = sessions
            changed = True
    if not changed:
        return config
    path = os.path.join(directory, os.path.basename(config))
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="deploy/local.yaml")
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--sessions", default="4,6,8,10", help="comma-separated session counts to try, e.g. 8,10,12")
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--locust-time", type=int, default=60)
    ap.add_argument("--dir", default="bench-out")
    ap.add_argument("--out", help="Markdown file to update (e.g. BENCHMARKS.md)")
    args = ap.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    from loadtest.swarm import default_video, swarm

    log = open(os.path.join(args.dir, "serve.log"), "w", encoding="utf-8")  # noqa: SIM115 - closed in finally
    t0 = time.perf_counter()
    bindir = os.path.dirname(sys.executable)
    # Ray starts its workers at nice 15 by default; the clients of this benchmark share the machine,
    # so the replicas get the same priority as they do (on a serving node nothing else competes).
    env = {**os.environ, "RAY_worker_niceness": os.environ.get("RAY_worker_niceness", "0")}  # noqa: SIM112
    counts = [int(x) for x in args.sessions.split(",")]
    config = with_session_limit(args.config, max(counts), args.dir)
    proc = subprocess.Popen([os.path.join(bindir, "serve"), "run", config],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    results: list[dict[str, Any]] = []
    try:
        startup = wait_healthy(args.url, 300)
        print(f"service healthy after {time.perf_counter() - t0:.1f} s", flush=True)
        wait_catalog(args.url, 600)
        print(f"catalog ready after {time.perf_counter() - t0:.1f} s", flush=True)
        video = default_video(args.duration)
        for n in counts:
            print(f"swarm: {n} sessions x {args.duration:.0f} s ...", flush=True)
            out = asyncio.run(swarm(args.url, n, args.duration, video))
            short = {k: v for k, v in out.items() if k != "per_session"}
            print(json.dumps(short, indent=1), flush=True)
            with open(os.path.join(args.dir, f"swarm-{n}.json"), "w", encoding="utf-8") as fh:
                json.dump(out, fh, indent=1)
            results.append(out)
            time.sleep(5)  # let the sessions close
        print(f"locust: {args.users} users x {args.locust_time} s on /v1/recommend ...", flush=True)
        stats = run_locust(args.url, args.users, args.locust_time, args.dir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run([os.path.join(bindir, "ray"), "stop", "--force"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log.close()
    lines = ["Mood-change -> music latency: from the tracker confirming a new mood to the new music reaching the "
             "play head. Detection: media seconds from when the new mood began (as dated back by the tracker) to "
             "its confirmation (2 s windows, 2 s smoothing, 1.5 s hold).", "",
             f"Machine: {machine()}. Service: `serve run {args.config}` (healthy {startup:.0f} s after start); "
             "the aiortc clients run on the same machine (they send VP8/Opus packets as they are and decode the "
             "BGM), sharing its 2 cores.", "",
             "| live sessions | connected | server underruns / frames skipped by the sender "
             "| frames sent > 40 ms late (max) | RTP packet gaps > 60 ms at the clients (max) "
             "| decoded-frame gaps > 60 ms at the clients (max) | BGM frames/s/session "
             "| mood changes | mood-change -> music latency p50 / p95 / max | detection (media) p50 / max |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lat = (f"{r['mood_change_latency_p50_s']:.2f} / {r['mood_change_latency_p95_s']:.2f} / "
               f"{r['mood_change_latency_max_s']:.2f} s") if r["mood_change_latency_p50_s"] is not None else "-"
        det = (f"{r['mood_detect_p50_s']:.2f} / {r['mood_detect_max_s']:.2f} s"
               if r.get("mood_detect_p50_s") is not None else "-")
        lines.append(f"| {r['sessions']} x {r['duration_s']:.0f} s | {r['connected']} "
                     f"| {r['underruns_total']} / {r.get('sender_skipped_frames', 0)} "
                     f"| {r.get('sender_late_frames', 0)} ({r.get('sender_max_late_ms', 0):.0f} ms) "
                     f"| {r.get('packet_gaps_total', 0)} ({r.get('max_packet_gap_ms', 0):.0f} ms) "
                     f"| {r['glitches_total']} ({r['max_gap_ms']:.0f} ms) "
                     f"| {r['frames_per_session_per_s']:.1f} "
                     f"| {r['mood_changes']} | {lat} | {det} |")
    rec = stats.get("/v1/recommend")
    if rec:
        lines += ["", f"HTTP under Locust ({args.users} users, {args.locust_time} s, 6 s 320x240 upload, catalog of "
                  f"100 tracks): /v1/recommend {rec['Request Count']} requests, {rec['Failure Count']} failures, "
                  f"p50 {rec['50%']} ms, p95 {rec['95%']} ms, {float(rec['Requests/s']):.2f} req/s."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        replace_section(args.out, BEGIN, END, "Live serving", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
