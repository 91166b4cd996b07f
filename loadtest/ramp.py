"""Ramp: live WebRTC sessions added one at a time, past capacity, all kept running to the end.

``--ramp START:END`` opens START sessions (``stagger_s`` apart; a 503 is retried after its
Retry-After for up to ``warmup_admit_s``, as the server may admit one session at a time while the
last one settles) and waits until each is admitted or given up; then, one step a new offer, one more
every ``--ramp-step`` seconds until END were offered. Each step records, over its ``step_s`` seconds
(from the new offer to the next one; the first step: the START sessions, after they were admitted):

* each running session's underruns and BGM frames sent more than 40 ms late (deltas of the counters in
  its mood reports, which come about once a second), and the frames the server sent it (RTP packets);
* whether the step's new offer was admitted (possibly after refusals retried within the step), or
  refused (HTTP 503 ``Busy`` with ``Retry-After``: the expected answer past capacity; retried after its
  Retry-After until a second before the step ends) -- refused sessions are recorded and the ramp goes on;
* the sessions whose analysis the server sheds (``degraded`` in their last report);
* the server's CPU per running session (loadtest/procstat.py), and PASS/FAIL as for a steady step.

:func:`plot_ramp` draws the sessions running, and underruns and late frames per session, against the
sessions offered.

Usage (service running)::

    python -m loadtest.ramp --url http://127.0.0.1:8000 --ramp 8:20 --step 10 --plot benchmarks/live-ramp.png \\
        --server-pid "$(pgrep -f 'serve run')" --json out/ramp.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

from loadtest.procstat import CostProbe, cost_between, fmt_cost
from loadtest.results import SessionResult, fmt_verdict, verdict


def parse_ramp(text: str) -> tuple[int, int]:
    """``"8:20"`` -> ``(8, 20)``; ValueError unless ``1 <= START <= END``."""
    start_s, sep, end_s = text.partition(":")
    try:
        start, end = int(start_s), int(end_s)
    except ValueError:
        raise ValueError(f"--ramp must be START:END (session counts, e.g. 8:20), got {text!r}") from None
    if not sep or start < 1 or end < start:
        raise ValueError(f"--ramp START:END needs 1 <= START <= END, got {text!r}")
    return start, end


def _counters(r: SessionResult) -> dict[str, int]:
    return {"underruns": r.underruns, "late_frames": r.late_frames, "frames_sent": r.packets, "skipped": r.skipped}


def admission(r: SessionResult) -> str:
    """What became of a session's offer: ``admitted``, ``admitted after 2 refusals (503 Busy, Retry-After 2)``,
    ``refused: 503 Busy, Retry-After 2 (4 times)``, ``error: ...`` or ``pending`` (no answer yet)."""
    n = len(r.refusals)
    if r.refused:
        return f"refused: {r.refused}" + (f" ({n} times)" if n > 1 else "")
    if r.connected:
        after = f" after {n} refusal{'s' if n > 1 else ''} ({r.refusals[-1]})" if n else ""
        return f"admitted{after}" if r.error is None else f"admitted{after}, then ended: {r.error}"
    return f"error: {r.error}" if r.error else "pending"


def step_record(sessions_before: int, attempted: int, new: list[SessionResult],
                before: dict[int, dict[str, int]], running: list[SessionResult], wall_s: float) -> dict[str, Any]:
    """One step's figures from the counters at its start (``before``, by session index; a session missing
    there started in the step) and the ``running`` sessions' counters now."""
    zero = {"underruns": 0, "late_frames": 0, "frames_sent": 0, "skipped": 0}
    per = []
    for r in running:
        b, a = before.get(r.index, zero), _counters(r)
        per.append({"index": r.index, **{k: a[k] - b[k] for k in zero}, "degraded": r.degraded})
    under = sum(p["underruns"] for p in per)
    late = sum(p["late_frames"] for p in per)
    sent = sum(p["frames_sent"] for p in per)
    shares = [p["late_frames"] / p["frames_sent"] for p in per if p["frames_sent"]]
    return {"attempted": attempted, "running": len(running), "wall_s": round(wall_s, 1),
            "new": [{"index": r.index, "admission": admission(r)} for r in new],
            "underruns": under, "late_frames": late, "frames_sent": sent,
            "sessions_with_underruns": sum(p["underruns"] > 0 for p in per),
            "sessions_degraded": sum(p["degraded"] > 0 for p in per),
            "worst_late_share": max(shares, default=0.0), "per_session": per,
            "verdict": verdict(under, late, sent), "previous_running": sessions_before}


async def ramp(url: str, start: int, end: int, step_s: float, video: str, *, glitch_ms: float = 60.0,
               stagger_s: float = 0.5, style: str | None = None, probe: CostProbe | None = None,
               warmup_admit_s: float = 60.0, log: Any = print) -> dict[str, Any]:
    """Run the ramp (module doc); ``{"start", "end", "step_s", "steps": [step_record(...) + "cpu"]}``."""
    from loadtest.swarm import run_session

    stop = asyncio.Event()
    results: list[SessionResult] = []
    tasks: list[asyncio.Task[SessionResult]] = []
    steps: list[dict[str, Any]] = []

    async def launch(res: SessionResult, delay: float, admit_within_s: float) -> SessionResult:
        await asyncio.sleep(delay)
        return await run_session(res.index, url, video, None, glitch_ms, style, until=stop, res=res,
                                 admit_within_s=admit_within_s)

    def alive() -> list[SessionResult]:
        return [r for r in results if r.connected and r.error is None]

    try:
        # the first START sessions: offered stagger_s apart, each retrying a 503 for up to warmup_admit_s
        new = [SessionResult(i) for i in range(start)]
        results += new
        tasks += [asyncio.ensure_future(launch(r, i * stagger_s, warmup_admit_s)) for i, r in enumerate(new)]
        deadline = time.perf_counter() + start * stagger_s + warmup_admit_s + 10.0
        while any(not (r.connected or r.error) for r in new) and time.perf_counter() < deadline:
            await asyncio.sleep(0.5)
        for n in range(start, end + 1):
            running_before = alive()
            before = {r.index: _counters(r) for r in running_before}
            if n > start:  # one new offer a step, retrying a 503 within the step
                new = [SessionResult(len(results))]
                results += new
                tasks.append(asyncio.ensure_future(launch(new[0], 0.0, max(0.0, step_s - 1.0))))
            a = probe.snapshot() if probe is not None else None
            t0 = time.perf_counter()
            await asyncio.sleep(step_s)
            running = alive()
            rec = step_record(len(running_before), n, new, before, running, time.perf_counter() - t0)
            rec["cpu"] = cost_between(a, probe.snapshot(), len(running)) if a is not None and probe else None
            steps.append(rec)
            log(f"ramp {n}: {len(running)} running; new: {'; '.join(x['admission'] for x in rec['new'])}; "
                f"underruns {rec['underruns']}, late {rec['late_frames']}/{rec['frames_sent']}; "
                f"{fmt_verdict(rec['verdict'])}; {fmt_cost(rec['cpu'])}")
    finally:
        stop.set()
        _done, hung = await asyncio.wait(tasks, timeout=30.0) if tasks else (set(), set())
        if hung:
            log(f"ramp: {len(hung)} sessions did not close within 30 s; left behind")
            for t in hung:
                t.cancel()
    return {"start": start, "end": end, "step_s": step_s, "steps": steps}


def plot_ramp(result: dict[str, Any], path: str) -> None:
    """Against the sessions offered: the sessions running (refused offers marked), then underruns and the share
    of frames sent > 40 ms late per running session (each session, the mean, the worst)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    steps = result["steps"]
    offered = [s["attempted"] for s in steps]
    fig, (ax0, ax1, ax2) = plt.subplots(3, 1, figsize=(8, 8), sharex=True, height_ratios=[1, 1.3, 1.3])
    ax0.plot(offered, [s["running"] for s in steps], "o-", color="C0", label="running")
    ax0.plot(offered, offered, ":", color="0.5", label="offered")
    refused = [s for s in steps if any(x["admission"].startswith("refused") for x in s["new"])]
    if refused:
        ax0.scatter([s["attempted"] for s in refused], [s["running"] for s in refused], marker="x", s=70,
                    color="C3", zorder=5, label="new offer refused (503)")
    ax0.set_ylabel("live sessions")
    ax0.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax, key, label in ((ax1, "underruns", "underruns per session\nin the step"),
                           (ax2, "late", "frames sent > 40 ms late,\n% per session in the step")):
        xs, ys, means, worst = [], [], [], []
        for s in steps:
            vals = [float(p["underruns"]) if key == "underruns" else
                    (100.0 * p["late_frames"] / p["frames_sent"] if p["frames_sent"] else 0.0)
                    for p in s["per_session"]]
            xs += [s["attempted"]] * len(vals)
            ys += vals
            means.append(sum(vals) / len(vals) if vals else float("nan"))
            worst.append(max(vals) if vals else float("nan"))
        ax.scatter(xs, ys, s=10, color="0.6", label="each session")
        ax.plot(offered, means, "o-", color="C0", label="mean")
        ax.plot(offered, worst, "s--", color="C3", label="worst session")
        ax.set_ylabel(label)
        top = max([y for y in ys if y == y] + [1.0])  # the pass line (1 %) and one underrun stay in view
        ax.set_ylim(0, 1.15 * top)
    ax2.axhline(1.0, color="C2", linestyle=":", label="1 % (pass line)")
    for ax in (ax0, ax1, ax2):
        ax.legend(fontsize=7)
    ax2.set_xlabel("live sessions offered")
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax0.set_title(f"ramp {result['start']}:{result['end']}, a new session every {result['step_s']:.0f} s")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def ramp_markdown(result: dict[str, Any], plot: str | None = None) -> str:
    """The ramp's table (one row a step) and the plot's link."""
    lines = [f"Ramp {result['start']}:{result['end']}: {result['start']} WebRTC session(s), then one more every "
             f"{result['step_s']:.0f} s, all kept running; per step (from one offer to the next) the running "
             "sessions' underruns and frames sent > 40 ms late (deltas of their reports), the new offer's answer, "
             "the sessions whose analysis the server was shedding at the step's end (their last report), and the "
             "server's CPU per running session." + (f" Plot: [{plot}]({plot})." if plot else ""), "",
             "| offered | running | new offer | underruns (sessions with any) | frames > 40 ms late (share; worst "
             "session) | sessions with analysis degraded | server cores / session | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for s in result["steps"]:
        v = s["verdict"]
        share = "-" if v["late_share"] is None else f"{100 * v['late_share']:.2f} %"
        new = "; ".join(x["admission"] for x in s["new"]) if len(s["new"]) == 1 else (
            f"{sum(x['admission'].startswith('admitted') for x in s['new'])} of {len(s['new'])} admitted")
        cpu = f"{s['cpu']['server_cores_per_session']:.3f}" if s.get("cpu") else "-"
        lines.append(f"| {s['attempted']} | {s['running']} | {new} | {s['underruns']} "
                     f"({s['sessions_with_underruns']}) | {s['late_frames']} ({share}; "
                     f"{100 * s['worst_late_share']:.1f} %) | {s['sessions_degraded']} | {cpu} "
                     f"| {'PASS' if v['pass'] else 'FAIL'} |")
    return "\n".join(lines)


def ramp_video_s(start: int, end: int, step_s: float, stagger_s: float = 0.5, warmup_admit_s: float = 60.0) -> float:
    """How long the ramp's clip must play (it must not loop: see loadtest.swarm.default_video)."""
    return (end - start + 1) * step_s + start * stagger_s + warmup_admit_s + 10.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.ramp", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--ramp", default="8:20", help="START:END session counts")
    p.add_argument("--step", type=float, default=10.0, help="seconds between new sessions")
    p.add_argument("--video", help="video to stream (default: the swarm's synthetic clip)")
    p.add_argument("--server-pid", type=int, help="the `serve run` process: its CPU per session")
    p.add_argument("--admit-within", type=float, default=60.0,
                   help="seconds the first START sessions retry a 503 (after its Retry-After)")
    p.add_argument("--plot", help="write the PNG here")
    p.add_argument("--json", help="write the full result here")
    args = p.parse_args(argv)
    try:
        start, end = parse_ramp(args.ramp)
    except ValueError as exc:
        p.error(str(exc))
    if args.step <= 0:
        p.error("--step must be > 0")
    logging.basicConfig(level=logging.WARNING)
    from loadtest.swarm import default_video

    video = args.video or default_video(ramp_video_s(start, end, args.step))
    probe = CostProbe(args.server_pid) if args.server_pid else None
    out = asyncio.run(ramp(args.url, start, end, args.step, video, probe=probe, warmup_admit_s=args.admit_within))
    if args.plot:
        plot_ramp(out, args.plot)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    print(ramp_markdown(out, args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
