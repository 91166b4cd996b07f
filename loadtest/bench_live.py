"""``make bench-live``: start the service, load it, record the figures in BENCHMARKS.md.

1. ``serve run deploy/local.yaml`` in a subprocess; wait for ``/healthz``.
2. Steady load: the swarm (loadtest/swarm.py) at each ``--sessions`` count for ``--duration`` seconds,
   ``--repeat`` times in a row; ``--grpc`` of the sessions are gRPC ``Stream`` calls and ``--mix-original``
   WebRTC sessions with ``mix_original: true``, the rest plain WebRTC. Each run: the figures per kind,
   the CPU cost (the ``serve run`` process tree, the clients, the machine; loadtest/procstat.py) over its
   steady part, and PASS/FAIL: no underrun and under 1 % of the BGM frames sent more than 40 ms late.
3. Ramp (``--ramp START:END``, loadtest/ramp.py): START sessions, then one more every ``--ramp-step``
   seconds up to END, past capacity; per step the running sessions' underruns and late frames, the new
   offer admitted or refused (503), the CPU per session; the plot to ``--plot``.
4. HTTP: Locust headless (loadtest/locustfile.py) for ``--locust-time`` with ``--users`` users;
   p50/p95 of /v1/recommend from its CSV.
5. The service is stopped (``serve shutdown``, Ray stopped) whatever happens.

``--mood-latency`` instead measures mood following without the service (loadtest/mood_latency.py).
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

from loadtest.procstat import AIORTC_FLOOR_CORES, CostProbe
from loadtest.results import spread
from pipelines.devtools.bench import machine
from pipelines.devtools.report import replace_section

BEGIN = "<!-- bench:live:begin -->"
END = "<!-- bench:live:end -->"
MOOD_BEGIN = "<!-- bench:mood-latency:begin -->"
MOOD_END = "<!-- bench:mood-latency:end -->"


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


def with_session_limit(config: str, sessions: int, directory: str, exact: bool = False) -> str:
    """``config``, or a copy of it in ``directory`` whose gateway admits at least ``sessions`` live sessions
    (``exact``: exactly ``sessions``)."""
    import yaml

    with open(config, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    changed = False
    for app in doc.get("applications", []):
        limit = app.setdefault("args", {}).get("max_live_sessions", 8)
        if sessions > limit or (exact and sessions != limit):
            app["args"]["max_live_sessions"] = sessions
            changed = True
    if not changed:
        return config
    path = os.path.join(directory, os.path.basename(config))
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return path


def session_limit(config: str) -> int:
    """The ``max_live_sessions`` of ``config``'s (first) application (8 when it does not say)."""
    import yaml

    with open(config, encoding="utf-8") as f:
        doc: dict[str, Any] = yaml.safe_load(f)
    apps: list[dict[str, Any]] = doc.get("applications") or [{}]
    return int(apps[0].get("args", {}).get("max_live_sessions", 8))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--config", default="deploy/local.yaml")
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--grpc-target", default="127.0.0.1:9000", help="the service's gRPC address")
    ap.add_argument("--sessions", default="12", help="comma-separated session counts of the steady runs, e.g. 8,12")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of each steady run")
    ap.add_argument("--repeat", type=int, default=3, help="steady runs in a row at each count")
    ap.add_argument("--grpc", type=int, default=2, help="of each count's sessions, how many are gRPC Stream calls")
    ap.add_argument("--mix-original", type=int, default=2,
                    help="of each count's sessions, how many are WebRTC with mix_original: true")
    ap.add_argument("--admit-within", type=float, default=30.0,
                    help="seconds a refused session keeps retrying (after the 503's Retry-After) in the steady runs")
    ap.add_argument("--ramp", default="8:20", help="START:END sessions of the ramp ('none': no ramp)")
    ap.add_argument("--ramp-step", type=float, default=10.0, help="seconds between the ramp's new sessions")
    ap.add_argument("--max-live-sessions", type=int,
                    help="the gateway's max_live_sessions (default: the config's, raised to the largest --sessions)")
    ap.add_argument("--plot", default="benchmarks/live-ramp.png", help="the ramp's plot")
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--locust-time", type=int, default=60, help="seconds of Locust (0: none)")
    ap.add_argument("--dir", default="bench-out")
    ap.add_argument("--out", help="Markdown file to update (e.g. BENCHMARKS.md)")
    ap.add_argument("--mood-latency", action="store_true",
                    help="measure mood following offline and on the virtual clock instead (no service)")
    ap.add_argument("--real", action="append", default=[], metavar="VIDEO",
                    help="with --mood-latency: a real clip to count mood changes on (repeatable; default: the "
                         "test media's cockatoo.mp4 when fetched)")
    args = ap.parse_args(argv)
    try:
        args.counts = [int(x) for x in args.sessions.split(",")]
    except ValueError:
        ap.error(f"--sessions must be comma-separated session counts, got {args.sessions!r}")
    if min(args.counts) < 1 or args.duration <= 0 or args.repeat < 1:
        ap.error("--sessions must be >= 1, --duration > 0, --repeat >= 1")
    if args.grpc < 0 or args.mix_original < 0 or args.grpc + args.mix_original > min(args.counts):
        ap.error("--grpc and --mix-original must be >= 0 and together at most the smallest --sessions")
    args.ramp_range = None
    if args.ramp.lower() not in ("", "none", "off"):
        from loadtest.ramp import parse_ramp

        try:
            args.ramp_range = parse_ramp(args.ramp)
        except ValueError as exc:
            ap.error(str(exc))
        if args.ramp_step <= 0:
            ap.error("--ramp-step must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    if args.mood_latency:
        from loadtest.mood_latency import default_real, mood_latency

        text = mood_latency(args.dir, args.real or default_real())
        print(text)
        if args.out:
            replace_section(args.out, MOOD_BEGIN, MOOD_END, "Mood-following latency", text)
        return 0
    from loadtest.ramp import plot_ramp, ramp, ramp_video_s
    from loadtest.swarm import default_video, report, swarm

    log = open(os.path.join(args.dir, "serve.log"), "w", encoding="utf-8")  # noqa: SIM115 - closed in finally
    t0 = time.perf_counter()
    bindir = os.path.dirname(sys.executable)
    # Ray starts its workers at nice 15 by default; the clients of this benchmark share the machine,
    # so the replicas get the same priority as they do (on a serving node nothing else competes).
    env = {**os.environ, "RAY_worker_niceness": os.environ.get("RAY_worker_niceness", "0")}  # noqa: SIM112
    config = with_session_limit(args.config, args.max_live_sessions or max(args.counts), args.dir,
                                exact=args.max_live_sessions is not None)
    limit = session_limit(config)
    proc = subprocess.Popen([os.path.join(bindir, "serve"), "run", config],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    probe = CostProbe(proc.pid)
    runs: list[dict[str, Any]] = []
    ramped: dict[str, Any] | None = None
    stats: dict[str, Any] = {}
    try:
        wait_healthy(args.url, 300)
        print(f"service healthy after {time.perf_counter() - t0:.1f} s", flush=True)
        startup = time.perf_counter() - t0
        wait_catalog(args.url, 600)
        print(f"catalog ready after {time.perf_counter() - t0:.1f} s", flush=True)
        ramp_s = ramp_video_s(args.ramp_range[0], args.ramp_range[1], args.ramp_step) if args.ramp_range else 0.0
        video = default_video(max(args.duration + args.admit_within + 0.5 * max(args.counts), ramp_s))
        for n in args.counts:
            for k in range(1, args.repeat + 1):
                print(f"swarm: {n} sessions ({args.grpc} gRPC, {args.mix_original} mix_original) x "
                      f"{args.duration:.0f} s, run {k}/{args.repeat} ...", flush=True)
                out = asyncio.run(swarm(args.url, n, args.duration, video, grpc=args.grpc,
                                        mix_original=args.mix_original, grpc_target=args.grpc_target, probe=probe,
                                        admit_within_s=args.admit_within))
                out["run"] = k
                print(report(out), flush=True)
                with open(os.path.join(args.dir, f"swarm-{n}-run{k}.json"), "w", encoding="utf-8") as fh:
                    json.dump(out, fh, indent=1)
                runs.append(out)
                time.sleep(5)  # let the sessions close
        if args.ramp_range:
            start, end = args.ramp_range
            print(f"ramp: {start} -> {end} sessions, one every {args.ramp_step:.0f} s ...", flush=True)
            ramped = asyncio.run(ramp(args.url, start, end, args.ramp_step, video, probe=probe))
            with open(os.path.join(args.dir, "ramp.json"), "w", encoding="utf-8") as fh:
                json.dump(ramped, fh, indent=1)
            plot_ramp(ramped, args.plot)
            print(f"ramp plot: {args.plot}", flush=True)
            time.sleep(5)
        if args.locust_time > 0:
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
    text = markdown(args, startup, runs, ramped, stats, limit)
    print(text)
    if args.out:
        replace_section(args.out, BEGIN, END, "Live serving", text)
    return 0


def _share(late: int, total: int) -> str:
    return f"{late} ({100 * late / total:.2f} %" if total else f"{late} (-"


def _kind_row(n: int, run: int, kind: str, out: dict[str, Any]) -> str:
    from loadtest.mood_latency import pct

    k = out["by_kind"][kind]
    sess = [s for s in out["per_session"] if s["kind"] == kind]
    lat = [x for s in sess for x in s["latencies_s"]]
    dets = [d for s in sess for d in s["detect_s"]]
    auds = [d + x for s in sess for d, x in zip(s["detect_s"], s["latencies_s"], strict=False)]
    if kind == "grpc":
        late = _share(k["grpc_late_arrivals"], k["grpc_frames"]) + f"; max {k['grpc_max_late_ms']:.0f} ms), client"
    else:
        late = _share(k["sender_late_frames"], k["frames_sent"]) + f"; max {k['sender_max_late_ms']:.0f} ms)"
    per_min = k["mood_changes"] / max(1, k["sessions"]) / (k["duration_s"] / 60)

    def p(xs: list[float], most: bool = False) -> str:
        a, b = pct(xs, 50), pct(xs, 95)
        return "-" if a is None or b is None else f"{a:.2f} / {b:.2f}{f' / {max(xs):.2f}' if most else ''} s"

    return (f"| {n} | {run} | {kind} | {k['connected']}/{k['sessions']} | {k['underruns_total']} | {late} "
            f"| {k['glitches_total']} ({k['max_gap_ms']:.0f} ms) | {k['frames_per_session_per_s']:.1f} "
            f"| {k['mood_changes']} ({per_min:.1f}) | {p(lat, True)} | {p(dets)} | {p(auds)} |")


def markdown(args: argparse.Namespace, startup: float, runs: list[dict[str, Any]], ramped: dict[str, Any] | None,
             stats: dict[str, Any], limit: int) -> str:
    """The ``Live serving`` section: steady runs (a row per run, the spread), per kind, the ramp, Locust."""
    lines = ["Mood-change -> music latency: from the tracker confirming a new mood to the new music reaching the "
             "play head. Detection: media seconds from when the new mood began (as dated back by the tracker; for "
             "a change the fast path confirmed, the cut or loud passage) to its confirmation; audible: detection "
             "plus latency, per change (the clip changes every 10 s: 6 changes a minute are expected).", "",
             f"Machine: {machine()}. Service: `serve run {args.config}` (healthy {startup:.0f} s after start, "
             f"max_live_sessions {limit}); the clients run on the same machine, sharing its cores: WebRTC "
             "(aiortc: VP8/Opus packets sent as they are, the BGM decoded), WebRTC with `mix_original: true`, and "
             "gRPC `Stream` calls (the same clip's thumbnails and PCM sent at their media times, the paced BGM "
             "read back). **PASS**: no server underrun and under 1 % of the BGM frames sent more than 40 ms late "
             "(the WebRTC senders' count, from their reports, over the RTP packets received), every session "
             "connected. gRPC has no server-side count of late frames: its column is measured at the client "
             "(through Ray's gRPC proxy and the clients' event loop) and is not part of the verdict. CPU over the "
             "steady part of each run (from 10 s after the last session was admitted to a second before the first "
             "one ends), from /proc: the server is the "
             "`serve run` process tree (Ray, Serve's controller and proxy, every replica and worker process), the "
             "clients this benchmark's process, other work every other process on the machine; per session next to "
             f"the bare-aiortc floor of ~{AIORTC_FLOOR_CORES} core.", "",
             "| sessions (WebRTC / mix_original / gRPC) | run | connected | server underruns / skipped "
             "| frames sent > 40 ms late (share; max) | RTP packet gaps > 60 ms at the clients (max) "
             "| gRPC frames > 40 ms behind schedule (share; max) | server cores (per session) "
             "| clients cores (per session) | all processes, cores (other work) | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        kinds, c, v = r["kinds"], r.get("cpu"), r["verdict"]
        cpu = (f"| {c['server_cores']:.2f} ({c['server_cores_per_session']:.3f}) | {c['clients_cores']:.2f} "
               f"({c['clients_cores_per_session']:.3f}) | {c['processes_cores']:.2f} ({c['other_cores']:.2f}) ") \
            if c else "| - | - | - "
        lines.append(f"| {r['sessions']} ({kinds.get('webrtc', 0)} / {kinds.get('webrtc_mix', 0)} / "
                     f"{kinds.get('grpc', 0)}) x {r['duration_s']:.0f} s | {r['run']} | {r['connected']} "
                     f"| {r['underruns_total']} / {r['sender_skipped_frames']} "
                     f"| {_share(r['sender_late_frames'], r['frames_sent'])}; {r['sender_max_late_ms']:.0f} ms) "
                     f"| {r['packet_gaps_total']} ({r['max_packet_gap_ms']:.0f} ms) "
                     f"| {_share(r['grpc_late_arrivals'], r['grpc_frames'])}; {r['grpc_max_late_ms']:.0f} ms) "
                     f"{cpu}| {'PASS' if v['pass'] else 'FAIL: ' + '; '.join(v['reasons'])} |")
    lines.append("")
    for n in args.counts:
        rs = [r for r in runs if r["sessions"] == n]
        if not rs:
            continue
        cpus = [r["cpu"] for r in rs if r.get("cpu")]
        shares = [100 * r["verdict"]["late_share"] for r in rs if r["verdict"]["late_share"] is not None]
        lines.append(f"{n} sessions, {len(rs)} run(s): {sum(r['verdict']['pass'] for r in rs)} PASS; spread "
                     f"(min-max, mean): frames late {spread(shares)} %, underruns "
                     f"{spread([float(r['underruns_total']) for r in rs])}, server cores per session "
                     f"{spread([c['server_cores_per_session'] for c in cpus])}, clients per session "
                     f"{spread([c['clients_cores_per_session'] for c in cpus])}.")
        if cpus:
            roles = ", ".join(f"{k} {v:.2f}" for k, v in cpus[-1]["server_roles"].items() if v >= 0.005)
            lines.append(f"Server cores by process (run {rs[-1]['run']}): {roles}.")
        lines.append("")
    lines += ["Per kind of session:", "",
              "| sessions | run | kind | connected | server underruns | frames > 40 ms late (share; max) "
              "| gaps > 60 ms at the client (max) | BGM frames/s/session | mood changes (per session-minute) "
              "| mood-change -> music latency p50 / p95 / max | detection p50 / p95 | audible p50 / p95 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines += [_kind_row(r["sessions"], r["run"], kind, r) for kind in r["by_kind"]]
    if ramped:
        from loadtest.ramp import ramp_markdown

        lines += ["", ramp_markdown(ramped, args.plot)]
    rec = stats.get("/v1/recommend")
    if rec:
        lines += ["", f"HTTP under Locust ({args.users} users, {args.locust_time} s, 6 s 320x240 upload, catalog of "
                  f"100 tracks): /v1/recommend {rec['Request Count']} requests, {rec['Failure Count']} failures, "
                  f"p50 {rec['50%']} ms, p95 {rec['95%']} ms, {float(rec['Requests/s']):.2f} req/s."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
