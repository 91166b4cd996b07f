"""``python -m loadtest.bench_live --mood-latency``: mood following measured without the service.

Synthetic clips whose mood changes at known times, and steady ones, through the offline job (analysis,
segments, the composer) and through a live session on the virtual clock (real engines, the media pushed
as it would arrive); the detection delay (the change in the video -> the mood confirmed), the audible
delay (-> the new music heard), and mood changes per minute on steady and real clips.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
from typing import Any

from pipelines.devtools.bench import machine

#: Synthetic clips: (name, scenes as (kind, seconds), true change times). Durations off the 0.5 s window grid.
MOOD_CLIPS: list[tuple[str, list[tuple[str, float]], list[float]]] = [
    ("calm/action every ~10 s", [("calm", 10.3), ("action", 9.8), ("calm", 10.4), ("action", 9.9)],
     [10.3, 20.1, 30.5]),
    ("calm -> action", [("calm", 12.2), ("action", 10.0)], [12.2]),
    ("action -> calm", [("action", 11.7), ("calm", 10.0)], [11.7]),
    ("steady calm", [("calm", 40.0)], []),
    ("steady action (a cut every 0.75 s)", [("action", 40.0)], []),
]


def default_real() -> list[str]:
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "media", "cockatoo.mp4")
    return [path] if os.path.exists(path) else []


def pct(xs: list[float], q: float) -> float | None:
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
                fast_path: bool, degrade: int = 0) -> dict[str, Any]:
    from pipelines.clock import VirtualClock
    from pipelines.live.ingest import feed_items
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
    session.set_degrade(degrade)  # a session shedding analysis under load (every other frame; 2: no faces)
    session.start()

    async def read() -> None:
        async for _ in paced_frames(session):
            pass

    tasks = [asyncio.create_task(feed_items(session, items, clock)), asyncio.create_task(read())]
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
    p50, p95 = pct(xs, 50), pct(xs, 95)
    return "-" if p50 is None or p95 is None else f"{p50:.2f} / {p95:.2f} / {max(xs):.2f} s"


def mood_latency(directory: str, real: list[str]) -> str:
    """The ``Mood-following latency`` section: see the module doc."""
    from dataclasses import replace

    from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, write_video

    scenes = {"calm": CALM_DARK, "action": BRIGHT_FAST}
    runs: dict[str, list[dict[str, Any]]] = {"offline": [], "live, hysteresis only": [], "live": [],
                                             "live, degraded (level 2)": []}
    rows: list[str] = []
    for name, parts, truth in MOOD_CLIPS:
        path = os.path.join(directory, f"mood-{len(rows)}.mp4")
        write_video(path, [replace(scenes[k], duration_s=d) for k, d in parts])
        items, duration = _decoded(path), sum(d for _, d in parts)
        res = {"offline": _offline(path, truth),
               "live, hysteresis only": asyncio.run(_live(items, duration, truth, False)),
               "live": asyncio.run(_live(items, duration, truth, True)),
               "live, degraded (level 2)": asyncio.run(_live(items, duration, truth, True, degrade=2))}
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
               "live": asyncio.run(_live(items, duration, [], True)),
               "live, degraded": asyncio.run(_live(items, duration, [], True, degrade=2))}
        print(path, json.dumps(res), flush=True)
        real_rows.append(f"| {os.path.basename(path)} ({duration:.0f} s) | " + " | ".join(
            f"{60 * r['changes'] / duration:.1f}" for r in res.values()) + " |")
    lines = [f"Machine: {machine()}. `python -m loadtest.bench_live --mood-latency`: synthetic clips (dark, still, "
             "quiet *calm* scenes; bright, saturated, loud *action* scenes cut every 0.75 s: each change is a cut "
             "with a jump in loudness, brightness and motion) through the offline job and through a live session "
             "on the virtual clock (real engines and composer; the media pushed as it would arrive, analysis and "
             "music taking no clock time, so these are the algorithmic delays; *degraded*: the session sheds "
             "analysis as under load, every other frame and no faces). Detection: the true change -> the "
             "mood confirmed (offline: the segment boundary); audible: -> the new music at the play head (offline: "
             "the first section in the new mood; negative when its transition bar anticipates the change).", "",
             "| delays (p50 / p95 / max) | detection | audible |", "|---|---|---|"]
    for k, rs in runs.items():
        det = [x for r in rs for x in r["detect"]]
        aud = [x for r in rs for x in r["audible"]]
        lines.append(f"| {k} ({len(det)} changes) | {_fmt(det)} | {_fmt(aud)} |")
    lines += ["", "| clip | true changes | mood changes offline | live, hysteresis only | live | live, degraded |",
              "|---|---|---|---|---|---|", *rows]
    if real_rows:
        lines += ["", "Real clips (`--real`), mood changes per minute:", "",
                  "| clip | offline | live, hysteresis only | live | live, degraded |", "|---|---|---|---|---|",
                  *real_rows]
    return "\n".join(lines)
