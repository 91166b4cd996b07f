"""``make soak``: the service under mixed valid and hostile traffic for a long time, its memory and
open files sampled the whole way, to show they stay flat (issue 12).

1. ``serve run deploy/local.yaml`` in a subprocess (the real Ray Serve application); wait for
   ``/healthz`` and the catalog.
2. For ``--minutes``, at once:
   * valid jobs: analyze, recommend and streamed-BGM score of a short clip, one after another;
   * hostile traffic, one request every ``--hostile-every`` seconds, round robin over
     :data:`HOSTILE` (wrong types, garbage, a file stamped over an hour, bad seeds, unknown routes,
     bad and oversized offers, uploads that stall or vanish half-way) -- each must get its
     expected status (or, for the vanishing ones, leave nothing behind);
   * live sessions coming and going: ``--live`` aiortc clients (loadtest/swarm.py) for 40 s,
     5 s apart, over and over;
   * every ``--sample-s`` seconds: resident memory and open file descriptors of each Serve process
     (gateway, model replicas, proxy, controller) and the request folders in the temp directory.
3. The result: JSON and a plot in ``--dir``, and with ``--out`` the table between the
   ``bench:soak`` markers of BENCHMARKS.md. Exit status 0 when every request got its expected
   status, no session failed, nothing was left behind, and memory and descriptors are flat: the
   mean of the last fifth of the run within ``--tolerance`` of the mean of the second fifth (the
   first is warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.bench_live import wait_catalog, wait_healthy

BEGIN = "<!-- bench:soak:begin -->"
END = "<!-- bench:soak:end -->"
#: The Serve processes sampled, by the name Ray gives their worker (``ps`` shows it).
ROLES = {"Gateway": "gateway", "FrameEncoder": "frame", "AudioEncoder": "audio", "AffectFusion": "affect",
         "MusicGenerator": "music", "ProxyActor": "proxy", "ServeController": "controller"}


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    live_sessions: int = 0
    live_failed: int = 0


def _multipart(name: str, data: bytes, ctype: str = "video/mp4") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type=ctype)
    return form


async def _raw_upload(url: str, data: bytes, cut: int, stall_s: float) -> None:
    """An upload that declares all of ``data`` but sends ``cut`` bytes, waits ``stall_s``, and goes away."""
    host, port = url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    boundary = "soakboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"gone.mp4\"\r\n"
            f"Content-Type: video/mp4\r\n\r\n").encode()
    writer.write((f"POST /v1/analyze HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; "
                  f"boundary={boundary}\r\nContent-Length: {len(head) + len(data) + 100}\r\n\r\n").encode()
                 + head + data[:cut])
    await writer.drain()
    await asyncio.sleep(stall_s)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


def hostile_requests(clip: bytes, hour: bytes) -> list[tuple[str, Any, tuple[int, ...]]]:
    """``(name, coroutine factory(session, url), expected statuses)``: the hostile mix."""
    sdp_300 = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" * 300

    def post(path: str, **kw: Any) -> Any:
        async def go(s: aiohttp.ClientSession, url: str) -> int:
            async with s.post(url + path, **kw) as r:
                await r.read()
                return r.status
        return go

    def get(path: str) -> Any:
        async def go(s: aiohttp.ClientSession, url: str) -> int:
            async with s.get(url + path) as r:
                await r.read()
                return r.status
        return go

    def vanish(cut: int, stall_s: float) -> Any:
        async def go(s: aiohttp.ClientSession, url: str) -> int:
            await _raw_upload(url, clip, cut, stall_s)
            return 0
        return go

    return [
        ("text upload", lambda: post("/v1/analyze", data=_multipart("a.txt", b"hello", "text/plain")), (415,)),
        ("garbage video", lambda: post("/v1/analyze", data=_multipart("a.mp4", os.urandom(4096))), (400,)),
        ("stamped one hour", lambda: post("/v1/analyze", data=_multipart("hour.mkv", hour, "video/x-matroska")),
         (413,)),
        ("negative seed", lambda: post("/v1/score?seed=-1", data=_multipart("c.mp4", clip)), (400,)),
        ("huge seed", lambda: post("/v1/score?seed=18446744073709551616", data=_multipart("c.mp4", clip)),
         (400, 422)),
        ("unknown style", lambda: post("/v1/score?style=disco", data=_multipart("c.mp4", clip)), (400,)),
        ("no file field", lambda: post("/v1/analyze", data=_multipart_field_named("clip")), (422,)),
        ("unknown route", lambda: get("/v1/nothing-here"), (404,)),
        ("wrong method", lambda: get("/v1/analyze"), (405,)),
        ("offer not json", lambda: post("/v1/webrtc/offer", data=b"{not json", headers={"content-type": "text/plain"}),
         (400,)),
        ("offer 300 sections", lambda: post("/v1/webrtc/offer", json={"sdp": sdp_300, "type": "offer"}), (400,)),
        ("offer 1 MB", lambda: post("/v1/webrtc/offer", data=b"{" + b" " * 2**20 + b"}"), (413,)),
        ("upload vanishes", lambda: vanish(len(clip) // 3, 0.2), (0,)),
        ("upload stalls then vanishes", lambda: vanish(1000, 3.0), (0,)),
    ]


def _multipart_field_named(name: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field(name, b"x" * 100, filename="x.mp4", content_type="video/mp4")
    return form


async def valid_jobs(url: str, clip: bytes, stop: asyncio.Event, tally: Tally) -> None:
    routes = ["/v1/analyze?faces=false", "/v1/recommend?top_k=3", "/v1/score?output=bgm&stream=true"]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as s:
        i = 0
        while not stop.is_set():
            route = routes[i % len(routes)]
            i += 1
            tally.sent["valid " + route.split("?")[0]] += 1
            try:
                async with s.post(url + route, data=_multipart("clip.mp4", clip)) as r:
                    await r.read()
                    if r.status not in (200, 503):  # 503: the job queue is full, a documented answer
                        tally.unexpected.append(f"{route}: {r.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                tally.unexpected.append(f"{route}: {type(exc).__name__}")
            await asyncio.sleep(1.0)


async def hostile(url: str, clip: bytes, hour: bytes, every_s: float, stop: asyncio.Event, tally: Tally) -> None:
    mix = hostile_requests(clip, hour)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        i = 0
        while not stop.is_set():
            name, make, expected = mix[i % len(mix)]
            i += 1
            tally.sent[name] += 1
            try:
                status = await make()(s, url)
                if status not in expected:
                    tally.unexpected.append(f"{name}: {status} (expected {expected})")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                tally.unexpected.append(f"{name}: {type(exc).__name__}")
            await asyncio.sleep(every_s)


async def live(url: str, video: str, sessions: int, stop: asyncio.Event, tally: Tally) -> None:
    from loadtest.swarm import swarm

    while not stop.is_set():
        out = await swarm(url, sessions, 40.0, video, stagger_s=2.0)
        tally.live_sessions += sessions
        tally.live_failed += sessions - int(out["connected"]) + len(out["errors"])
        await asyncio.sleep(5.0)


def serve_processes() -> dict[int, str]:
    """PID -> role of the Serve processes (see :data:`ROLES`)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    found: dict[int, str] = {}
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        for key, role in ROLES.items():
            if key in args and "ray::" in args:
                found[int(pid)] = role
    return found


def sample(tmp_root: str) -> dict[str, Any]:
    rss: dict[str, float] = {}
    fds: dict[str, int] = {}
    for pid, role in serve_processes().items():
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/status", encoding="utf-8") as f:
                kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            rss[role] = rss.get(role, 0.0) + kb / 1024
            fds[role] = fds.get(role, 0) + len(os.listdir(f"/proc/{pid}/fd"))
    folders = sum(1 for e in os.scandir(tmp_root) if e.name.startswith(("backscore-req-", "backscore-grpc-")))
    return {"t": time.time(), "rss_mib": rss, "fds": fds, "request_folders": folders}


def flatness(samples: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Mean of the total over the second fifth and the last fifth of the run, and their ratio."""
    totals = [sum(s[key].values()) for s in samples]
    n = len(totals)
    early = totals[n // 5: 2 * n // 5] or totals[:1]
    late = totals[4 * n // 5:] or totals[-1:]
    a, b = sum(early) / len(early), sum(late) / len(late)
    return {"early": round(a, 1), "late": round(b, 1), "ratio": round(b / a, 3) if a else float("nan")}


def plot(samples: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = samples[0]["t"]
    minutes = [(s["t"] - t0) / 60 for s in samples]
    roles = sorted({r for s in samples for r in s["rss_mib"]})
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for r in roles:
        ax1.plot(minutes, [s["rss_mib"].get(r, 0) for s in samples], label=r)
        ax2.plot(minutes, [s["fds"].get(r, 0) for s in samples], label=r)
    ax1.set_ylabel("resident memory, MiB")
    ax2.set_ylabel("open file descriptors")
    ax2.set_xlabel("minutes")
    ax1.legend(fontsize=7, ncol=4)
    ax1.set_title("soak: mixed valid/hostile traffic and live sessions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict[str, Any]) -> str:
    m, f = result["memory"], result["fds"]
    sent = result["sent"]
    lines = [
        f"{result['minutes']:.0f} min on {result['machine']}, `make soak` ({result['date']}): "
        f"{sum(sent.values())} requests ({sum(v for k, v in sent.items() if k.startswith('valid'))} valid jobs, "
        f"the rest hostile in {len([k for k in sent if not k.startswith('valid')])} kinds), "
        f"{result['live_sessions']} live sessions of 40 s.",
        "",
        "| | 2nd fifth (mean) | last fifth (mean) | ratio |",
        "|---|---|---|---|",
        f"| resident memory, all Serve processes (MiB) | {m['early']} | {m['late']} | {m['ratio']} |",
        f"| open file descriptors, all Serve processes | {f['early']} | {f['late']} | {f['ratio']} |",
        "",
        f"Unexpected answers: {len(result['unexpected'])}; failed live sessions: {result['live_failed']}; "
        f"request folders left at the end: {result['request_folders_end']}. "
        f"Plot: `{result['plot']}` (per process).",
    ]
    return "\n".join(lines)


async def drive(args: argparse.Namespace, tmp_root: str, clip: bytes, hour: bytes, video: str) -> dict[str, Any]:
    stop = asyncio.Event()
    tally = Tally()
    samples: list[dict[str, Any]] = []

    async def sampler() -> None:
        while not stop.is_set():
            samples.append(sample(tmp_root))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.sample_s)

    tasks = [asyncio.create_task(c) for c in (
        valid_jobs(args.url, clip, stop, tally), hostile(args.url, clip, hour, args.hostile_every, stop, tally),
        live(args.url, video, args.live, stop, tally), sampler())]
    t_end = time.monotonic() + args.minutes * 60
    while time.monotonic() < t_end and not any(t.done() for t in tasks):
        await asyncio.sleep(1.0)
    stop.set()
    await asyncio.wait(tasks, timeout=120)
    for t in tasks:
        if t.done() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]
    await asyncio.sleep(5.0)  # the last responses' folders go
    end = sample(tmp_root)
    return {"samples": samples, "sent": dict(tally.sent), "unexpected": tally.unexpected,
            "live_sessions": tally.live_sessions, "live_failed": tally.live_failed,
            "request_folders_end": end["request_folders"]}


def _media(directory: str) -> tuple[bytes, bytes, str]:
    from dataclasses import replace

    from loadtest.swarm import default_video
    from pipelines.devtools.hostile_media import stamped_video
    from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, write_video

    clip = os.path.join(directory, "clip.mp4")
    write_video(clip, [replace(CALM_DARK, duration_s=3.0), replace(BRIGHT_FAST, duration_s=3.0)], width=320,
                height=180)
    hour = stamped_video(Path(directory) / "hour.mkv", [0.0, 0.04, 1800.0, 3600.0])
    return Path(clip).read_bytes(), hour.read_bytes(), default_video(40.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="deploy/local.yaml")
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--live", type=int, default=2, help="live sessions at a time")
    ap.add_argument("--hostile-every", type=float, default=1.0)
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--dir", default="bench-out/soak")
    ap.add_argument("--out", help="Markdown file to update (e.g. BENCHMARKS.md)")
    ap.add_argument("--plot", help="where the plot goes (default: DIR/soak.png)")
    args = ap.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    random.seed(0)
    tmp_root = tempfile.mkdtemp(prefix="soak-requests-")
    clip, hour, video = _media(args.dir)
    env = dict(os.environ)  # the service's settings, for the child process
    env.update({"BACKSCORE_TMPDIR": tmp_root, "BACKSCORE_UPLOAD_IDLE_S": "2",
                "RAY_worker_niceness": os.environ.get("RAY_worker_niceness", "0")})  # noqa: SIM112
    log = open(os.path.join(args.dir, "serve.log"), "w", encoding="utf-8")  # noqa: SIM115 - closed below
    bindir = os.path.dirname(sys.executable)
    # "-a local": a cluster of its own, never one that something else on the machine started
    proc = subprocess.Popen([os.path.join(bindir, "serve"), "run", "-a", "local", args.config], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(args.url, 300)
        wait_catalog(args.url, 900)
        out = asyncio.run(drive(args, tmp_root, clip, hour, video))
    finally:
        proc.terminate()  # serve run shuts its application and its own cluster down
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    from pipelines.devtools.bench import machine

    samples = out["samples"]
    png = args.plot or os.path.join(args.dir, "soak.png")
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    plot(samples, png)
    result = {**{k: v for k, v in out.items() if k != "samples"}, "minutes": args.minutes, "machine": machine(),
              "date": time.strftime("%Y-%m-%d"), "memory": flatness(samples, "rss_mib"),
              "fds": flatness(samples, "fds"), "plot": png}
    with open(os.path.join(args.dir, "soak.json"), "w", encoding="utf-8") as f:
        json.dump({**result, "samples": samples}, f, indent=1)
    print(markdown(result))
    if args.out:
        from pipelines.devtools.report import replace_section

        replace_section(args.out, BEGIN, END, "Soak: memory and open files under mixed traffic", markdown(result))
    flat = all(abs(result[k]["ratio"] - 1) <= args.tolerance for k in ("memory", "fds"))
    ok = flat and not out["unexpected"] and not out["live_failed"] and out["request_folders_end"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
