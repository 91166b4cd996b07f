"""``make bench-live``: start the service, load it, record the figures in BENCHMARKS.md.

1. ``serve run deploy/local.yaml`` in a subprocess; wait for ``/healthz``.
2. Live sessions: the aiortc swarm (loadtest/swarm.py) at each ``--sessions`` count for
   ``--duration`` seconds; a count passes with zero server underruns and every session connected.
3. HTTP: Locust headless (loadtest/locustfile.py) for ``--locust-time`` with ``--users`` users;
   p50/p95 of /v1/recommend from its CSV.
4. The service is stopped (``serve shutdown``, Ray stopped) whatever happens.

``--mood-latency`` instead measures mood following without the service (:func:`mood_latency`): synthetic
clips whose mood changes at known times, and steady ones, through the offline job (analysis, segments, the
composer) and through a live session on the virtual clock (real engines, the media pushed as it would
arrive); the detection delay (the change in the video -> the mood confirmed), the audible delay (-> the
new music heard), and mood changes per minute on steady and real clips.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any

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
    ap.add_argument("--mood-latency", action="store_true",
                    help="measure mood following offline and on the virtual clock instead (no service)")
    ap.add_argument("--real", action="append", default=[], metavar="VIDEO",
                    help="with --mood-latency: a real clip to count mood changes on (repeatable; default: the "
                         "test media's cockatoo.mp4 when fetched)")
    args = ap.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    if args.mood_latency:
        text = mood_latency(args.dir, args.real or _default_real())
        print(text)
        if args.out:
            replace_section(args.out, MOOD_BEGIN, MOOD_END, "Mood-following latency", text)
        return 0
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
             "play head. Detection: media seconds from when the new mood began (as dated back by the tracker; for "
             "a change the fast path confirmed, the cut or loud passage) to its confirmation; audible: detection "
             "plus latency, per change (the clip changes every 10 s: 6 changes a minute are expected).", "",
             f"Machine: {machine()}. Service: `serve run {args.config}` (healthy {startup:.0f} s after start); "
             "the aiortc clients run on the same machine (they send VP8/Opus packets as they are and decode the "
             "BGM), sharing its 2 cores.", "",
             "| live sessions | connected | server underruns / frames skipped by the sender "
             "| frames sent > 40 ms late (max) | RTP packet gaps > 60 ms at the clients (max) "
             "| decoded-frame gaps > 60 ms at the clients (max) | BGM frames/s/session "
             "| mood changes (per session-minute) | mood-change -> music latency p50 / p95 / max "
             "| detection p50 / p95 | audible p50 / p95 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lat = (f"{r['mood_change_latency_p50_s']:.2f} / {r['mood_change_latency_p95_s']:.2f} / "
               f"{r['mood_change_latency_max_s']:.2f} s") if r["mood_change_latency_p50_s"] is not None else "-"
        dets = [d for sess in r.get("per_session", []) for d in sess.get("detect_s", [])]
        auds = [d + lat for sess in r.get("per_session", [])
                for d, lat in zip(sess.get("detect_s", []), sess.get("latencies_s", []), strict=False)]
        det = f"{_pct(dets, 50):.2f} / {_pct(dets, 95):.2f} s" if dets else "-"
        aud = f"{_pct(auds, 50):.2f} / {_pct(auds, 95):.2f} s" if auds else "-"
        per_min = r["mood_changes"] / max(1, r["sessions"]) / (r["duration_s"] / 60)
        lines.append(f"| {r['sessions']} x {r['duration_s']:.0f} s | {r['connected']} "
                     f"| {r['underruns_total']} / {r.get('sender_skipped_frames', 0)} "
                     f"| {r.get('sender_late_frames', 0)} ({r.get('sender_max_late_ms', 0):.0f} ms) "
                     f"| {r.get('packet_gaps_total', 0)} ({r.get('max_packet_gap_ms', 0):.0f} ms) "
                     f"| {r['glitches_total']} ({r['max_gap_ms']:.0f} ms) "
                     f"| {r['frames_per_session_per_s']:.1f} "
                     f"| {r['mood_changes']} ({per_min:.1f}) | {lat} | {det} | {aud} |")
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


# --------------------------------------------------------------------------- mood following, without the service

#: Synthetic clips: (name, scenes as (kind, seconds), true change times). Durations off the 0.5 s window grid.
MOOD_CLIPS: list[tuple[str, list[tuple[str, float]], list[float]]] = [
    ("calm/action every ~10 s", [("calm", 10.3), ("action", 9.8), ("calm", 10.4), ("action", 9.9)],
     [10.3, 20.1, 30.5]),
    ("calm -> action", [("calm", 12.2), ("action", 10.0)], [12.2]),
    ("action -> calm", [("action", 11.7), ("calm", 10.0)], [11.7]),
    ("steady calm", [("calm", 40.0)], []),
    ("steady action (a cut every 0.75 s)", [("action", 40.0)], []),
]


def _default_real() -> list[str]:
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "media", "cockatoo.mp4")
    return [path] if os.path.exists(path) else []


def _pct(xs: list[float], q: float) -> float | None:
    """The median for q = 50, else the swarm's percentile (the value at index ``int(q% * n)``)."""
    if not xs:
        return None
    return statistics.median(xs) if q == 50 else float(sorted(xs)[min(len(xs) - 1, int(q / 100 * len(xs)))])


def _pair(truth: list[float], at: list[float]) -> tuple[list[tuple[float, int]], int]:
    """Each true change with the first unused event at or after it (within 8 s); the events left over."""
    used: set[int] = set()
    pairs = []
    for t in truth:
        i = next((i for i, a in enumerate(at) if i not in used and t - 0.5 <= a <= t + 8.0), None)
        if i is not None:
            used.add(i)
            pairs.append((t, i))
    return pairs, len(at) - len(used)


def _offline(path: str, truth: list[float]) -> dict[str, Any]:
    from engines.composer import ProceduralMusicEngine
    from pipelines.analysis.analyze import analyze
    from pipelines.offline.compose import compose
    from pipelines.offline.timeline import mood_changes

    a = analyze(path)
    changes = mood_changes(a.segments, compose(ProceduralMusicEngine(), a.segments, a.duration_s).sections)
    pairs, extra = _pair(truth, [c["at_s"] for c in changes])
    return {"detect": [changes[i]["at_s"] - t for t, i in pairs],
            "audible": [changes[i]["music_s"] - t for t, i in pairs if changes[i]["music_s"] is not None],
            "changes": len(changes), "extra": extra, "missed": len(truth) - len(pairs), "duration_s": a.duration_s}


def _decoded(path: str) -> list[tuple[float, Any]]:
    """The clip as a live client would send it (analysis frames, 48 kHz audio), in media-time order."""
    import av

    from pipelines.frames import VideoFrame
    from pipelines.live.ingest import AudioIngest, VideoSampler, timed_frames

    items: list[tuple[float, Any]] = []
    sampler, audio = VideoSampler(), AudioIngest()
    with av.open(path) as container:
        for t, frame in timed_frames(container):
            if isinstance(frame, av.VideoFrame):
                vf = sampler.offer(frame, t)
                if vf is not None:
                    items.append((t, vf))
            else:
                items += [(af.pts_s, af) for af in audio.convert(frame, t)]
    items.sort(key=lambda it: (it[0], not isinstance(it[1], VideoFrame)))
    return items


async def _live(items: list[tuple[float, Any]], duration_s: float, truth: list[float],
                fast_path: bool) -> dict[str, Any]:
    from pipelines.clock import VirtualClock
    from pipelines.frames import VideoFrame
    from pipelines.live.models import InProcessModels
    from pipelines.live.options import LiveOptions
    from pipelines.live.pacing import paced_frames
    from pipelines.live.reports import NullHooks
    from pipelines.live.session import LiveSession

    clock = VirtualClock()
    heard: list[float] = []

    class Hooks(NullHooks):
        def mood_change(self, latency_s: float) -> None:
            heard.append(clock.now())

    session = LiveSession(InProcessModels.default(inline=True), LiveOptions(fast_path=fast_path), clock=clock,
                          hooks=Hooks())
    session.start()

    async def feed() -> None:
        for t, item in items:
            if t > clock.now():
                await clock.sleep(t - clock.now())
            (session.push_video if isinstance(item, VideoFrame) else session.push_audio)(item)

    async def read() -> None:
        async for _ in paced_frames(session):
            pass

    tasks = [asyncio.create_task(feed()), asyncio.create_task(read())]
    await clock.advance(duration_s + 0.5, step=0.02)
    await session.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # the media is pushed in real time from 0: clock time is media time
    confirmed = [h - lat for h, lat in zip(heard, session.latencies, strict=True)]
    pairs, extra = _pair(truth, confirmed)
    return {"detect": [confirmed[i] - t for t, i in pairs], "audible": [heard[i] - t for t, i in pairs],
            "changes": len(heard), "extra": extra, "missed": len(truth) - len(pairs), "duration_s": duration_s,
            "urgent": session.player.urgent_changes, "underruns": session.playout.underruns}


def _fmt(xs: list[float]) -> str:
    p50, p95 = _pct(xs, 50), _pct(xs, 95)
    return "-" if p50 is None or p95 is None else f"{p50:.2f} / {p95:.2f} / {max(xs):.2f} s"


def mood_latency(directory: str, real: list[str]) -> str:
    """The ``Mood-following latency`` section: see the module doc."""
    from dataclasses import replace

    from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, write_video

    scenes = {"calm": CALM_DARK, "action": BRIGHT_FAST}
    runs: dict[str, list[dict[str, Any]]] = {"offline": [], "live, hysteresis only": [], "live": []}
    rows: list[str] = []
    for name, parts, truth in MOOD_CLIPS:
        path = os.path.join(directory, f"mood-{len(rows)}.mp4")
        write_video(path, [replace(scenes[k], duration_s=d) for k, d in parts])
        items, duration = _decoded(path), sum(d for _, d in parts)
        res = {"offline": _offline(path, truth),
               "live, hysteresis only": asyncio.run(_live(items, duration, truth, False)),
               "live": asyncio.run(_live(items, duration, truth, True))}
        for k, r in res.items():
            runs[k].append(r)
        print(name, json.dumps(res), flush=True)
        rows.append(f"| {name} | {len(truth)} | " + " | ".join(
            f"{r['changes']}" + (f" ({r['extra']} extra)" if r["extra"] else "") for r in res.values()) + " |")
    real_rows = []
    for path in real:
        items = _decoded(path)
        duration = max(t for t, _ in items)
        res = {"offline": _offline(path, []), "live, hysteresis only": asyncio.run(_live(items, duration, [], False)),
               "live": asyncio.run(_live(items, duration, [], True))}
        print(path, json.dumps(res), flush=True)
        real_rows.append(f"| {os.path.basename(path)} ({duration:.0f} s) | " + " | ".join(
            f"{60 * r['changes'] / duration:.1f}" for r in res.values()) + " |")
    lines = [f"Machine: {machine()}. `python -m loadtest.bench_live --mood-latency`: synthetic clips (dark, still, "
             "quiet *calm* scenes; bright, saturated, loud *action* scenes cut every 0.75 s: each change is a cut "
             "with a jump in loudness, brightness and motion) through the offline job and through a live session "
             "on the virtual clock (real engines and composer; the media pushed as it would arrive, analysis and "
             "music taking no clock time, so these are the algorithmic delays). Detection: the true change -> the "
             "mood confirmed (offline: the segment boundary); audible: -> the new music at the play head (offline: "
             "the first section in the new mood; negative when its transition bar anticipates the change).", "",
             "| delays (p50 / p95 / max) | detection | audible |", "|---|---|---|"]
    for k, rs in runs.items():
        det = [x for r in rs for x in r["detect"]]
        aud = [x for r in rs for x in r["audible"]]
        lines.append(f"| {k} ({len(det)} changes) | {_fmt(det)} | {_fmt(aud)} |")
    lines += ["", "| clip | true changes | mood changes offline | live, hysteresis only | live |",
              "|---|---|---|---|---|", *rows]
    if real_rows:
        lines += ["", "Real clips (`--real`), mood changes per minute:", "",
                  "| clip | offline | live, hysteresis only | live |", "|---|---|---|---|", *real_rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
