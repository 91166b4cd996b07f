"""``make bench-gpu``: how many live MusicGen streams one device keeps in real time (the streaming engine).

Runs on a bare CUDA machine whose Python has torch, transformers and numpy only: it imports the
engine (:mod:`engines.musicgen`) and nothing of the CPU pipeline (no PyAV, pretty_midi, scipy).

1. **check** -- on the tiny debug model, on this device: the streaming scheduler's greedy music
   equals ``MusicgenForConditionalGeneration.generate``; with CUDA graphs it equals the eager steps.
2. **bench** -- the musicgen-small architecture with random weights (speed does not depend on them),
   ``--dtype`` (bf16 on CUDA), CUDA graphs, guidance 3.0, 10 s context, sampling. For each number of
   streams: sustained audio-seconds per second when every stream wants music as fast as it comes;
   whether every stream keeps up when each consumes in real time (its wanted frames grow at 50 per
   second, ``--lead`` ahead), and how many do; time to first audio of a stream joining that load
   (p50/p95); time from a mood change (a new text) to the hand-over of the first audio made under
   it (p95); milliseconds per step; GPU memory.

Prints a table; ``--out BENCHMARKS.md`` puts it in that file's section. Meant to finish in under 5
minutes on an H100/H200 with the default stream counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
import traceback
from typing import Any

BEGIN = "<!-- bench:musicgen-streaming:begin -->"
END = "<!-- bench:musicgen-streaming:end -->"
FRAME_RATE = 50.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def check(device: str) -> tuple[list[str], bool]:
    """The streaming engine against the reference on this device (tiny debug model); and whether CUDA graph
    steps can be trusted here (captured, and equal to eager steps)."""
    import numpy as np
    import torch

    from engines.base import MoodControl
    from engines.musicgen import MusicGenOptions
    from engines.musicgen.debug_models import build_model
    from engines.musicgen.prompts import describe
    from engines.musicgen.scheduler import MusicGenScheduler

    model, processor = build_model("tiny")
    model = model.to(device)
    text = describe(MoodControl(0.7, 0.6, "happy"), None)
    greedy = MusicGenOptions(do_sample=False, guidance_scale=3.0, context_s=0.6, decode_context_s=0.1)
    n, k = 20, int(model.config.decoder.num_codebooks)
    sch = MusicGenScheduler(model, processor, greedy, capacity=2, slide_s=10.0, device=device,
                            dtype=torch.float32, sub_frames=5, lead_frames=0)
    st = sch.open(1, text)
    while sch._complete(st) < n:
        st.target_frames = n
        sch.run_once()
    frames = torch.stack([sch.cols[st.slot, c, 1 + c : 1 + c + n] for c in range(k)])
    with torch.inference_mode():
        ours = model.audio_encoder.decode(frames[None, None], audio_scales=[None]).audio_values[0, 0].float().cpu()
        inputs = {key: v.to(device) for key, v in processor(text=[text], return_tensors="pt").items()}
        ref = model.generate(**inputs, do_sample=False, guidance_scale=3.0, max_new_tokens=n + k - 1)[0, 0].cpu()
    err = float((ours - ref).abs().max())
    lines = [f"check: greedy stream vs transformers generate on {device}: max abs audio difference {err:.2e}"]
    graphs_ok = False
    if device.startswith("cuda"):
        sampled = MusicGenOptions(do_sample=True, top_k=50, guidance_scale=3.0, context_s=0.6)
        runs = []
        for graphs in (False, True):
            s2 = MusicGenScheduler(model, processor, sampled, capacity=4, slide_s=0.4, device=device,
                                   dtype=torch.float32, sub_frames=5, lead_frames=0, cuda_graphs=graphs)
            sts = [s2.open(i, text) for i in range(4)]  # as many as the largest graph: the same kernels run
            while min(s2._complete(x) for x in sts) < 60:
                for x in sts:
                    x.target_frames = 60
                s2.run_once()
            runs.append(s2.cols.clone())
            capture_error = s2.graphs_error
        if capture_error:
            lines.append(f"check: CUDA graph capture failed ({capture_error})")
        graphs_ok = capture_error is None and bool(torch.equal(runs[0], runs[1]))
        lines.append(f"check: CUDA graph steps equal eager steps (4 streams, window slides): {graphs_ok}")
    if not np.isfinite(err) or err > 1e-3:
        raise SystemExit("\n".join([*lines, "check FAILED"]))
    return lines, graphs_ok


def slots_that_fit(size: str, device: str, dtype: Any, context_s: float) -> int | None:
    """How many streams' state fits the device's free memory, leaving 8 GiB for the model and the graphs
    (None off CUDA)."""
    import torch

    from engines.musicgen.debug_models import musicgen_config
    from engines.musicgen.static_decoder import positions_for

    if not device.startswith("cuda"):
        return None
    cfg = musicgen_config(size).decoder
    positions = positions_for(context_s, 2.0, FRAME_RATE, int(cfg.num_codebooks))
    elem = torch.tensor([], dtype=dtype).element_size()
    per_slot = 2 * int(cfg.num_hidden_layers) * 2 * int(cfg.hidden_size) * positions * elem
    free, _ = torch.cuda.mem_get_info()
    return int(max(0, free - 8 * 2**30) // per_slot)


def _engine(size: str, capacity: int, device: str, dtype: Any, graphs: bool, lead_s: float, context_s: float) -> Any:
    from engines.musicgen import MusicGenOptions
    from engines.musicgen.debug_models import build_model
    from engines.musicgen.scheduler import MusicGenScheduler

    model, processor = build_model(size)
    model = model.to(device).eval()
    opts = MusicGenOptions(context_s=context_s, guidance_scale=3.0, top_k=250, do_sample=True)
    return MusicGenScheduler(model, processor, opts, capacity=capacity, slide_s=2.0, device=device, dtype=dtype,
                             sub_frames=25, lead_frames=round(lead_s * FRAME_RATE), cuda_graphs=graphs)


def _made(sch: Any, streams: list[Any]) -> list[int]:
    """Each stream's complete frames, read under the scheduler's lock (its thread updates them)."""
    with sch._lock:
        return [sch._complete(s) for s in streams]


def measure(sch: Any, n: int, seconds: float, texts: list[str]) -> dict[str, float]:
    """One row of the table for ``n`` streams on scheduler ``sch`` (see the module doc)."""
    import torch

    sch.start()
    streams = [sch.open(i, texts[i % len(texts)]) for i in range(n)]
    lead = sch.lead_frames + sch.sub_frames
    # warm up: every stream past its first window slide
    t0 = time.perf_counter()
    while min(_made(sch, streams)) < sch.max_positions and time.perf_counter() - t0 < 60:
        for s in streams:
            sch.want_frames(s, 10**9)
        time.sleep(0.05)
    # 1. sustained throughput, everyone wanting music as fast as it comes
    done0, steps0, step_s0 = sum(_made(sch, streams)), sch.stats.steps, sch.stats.step_seconds
    t0 = time.perf_counter()
    time.sleep(seconds / 2)
    dt = time.perf_counter() - t0
    frames = sum(_made(sch, streams)) - done0
    steps = sch.stats.steps - steps0
    ms_step = 1000 * (sch.stats.step_seconds - step_s0) / max(1, steps)
    # 2. real time: each consumer wants lead + 50 frames a second from now on
    with sch._lock:
        base = {s.sid: sch._complete(s) for s in streams}
        for s in streams:  # from now on each wants only what its listener needs
            s.target_frames = base[s.sid]
    t0 = time.perf_counter()
    st0 = dataclasses.replace(sch.stats)
    behind: set[int] = set()
    latencies: list[float] = []
    changes = 0
    while (elapsed := time.perf_counter() - t0) < seconds:
        want = int(elapsed * FRAME_RATE)
        for s, made in zip(streams, _made(sch, streams), strict=True):
            sch.want_frames(s, base[s.sid] + want + lead)
            if made < base[s.sid] + want - sch.sub_frames:
                behind.add(s.sid)
        if elapsed > changes * (seconds / 8) and changes < 8:  # a mood change now and then
            st = streams[(changes * 7919) % n]
            sch.set_text(st, texts[(changes + 1) % len(texts)] + " " + str(changes))
            changes += 1
        time.sleep(0.02)
    for s in streams:
        latencies.extend(s.text_audio_latencies)
    wall, st1 = time.perf_counter() - t0, sch.stats
    phases = {name: (getattr(st1, f"{name}_seconds") - getattr(st0, f"{name}_seconds")) / wall
              for name in ("step", "slide", "decode", "text")}
    phases["slides"] = float(st1.slides - st0.slides)
    # 3. streams joining this load: time to their first audio
    firsts = []
    for j in range(5):
        st = sch.open(10_000 + j, texts[j % len(texts)])
        sch.want_frames(st, lead)
        t1 = time.perf_counter()
        while st.first_audio_at is None and time.perf_counter() - t1 < 30:
            el = time.perf_counter() - t0
            for s in streams:
                sch.want_frames(s, base[s.sid] + int(el * FRAME_RATE) + lead)
            time.sleep(0.005)
        firsts.append(time.perf_counter() - t1)
        sch.close(st)
    for s in streams:
        sch.close(s)
    time.sleep(0.5)
    mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    audio_s = frames / FRAME_RATE
    return {"streams": n, "audio_s_per_s": audio_s / dt, "x_rt": audio_s / dt / n, "ms_step": ms_step,
            "kept_up": n - len(behind), "first_p50": _pct(firsts, 0.5), "first_p95": _pct(firsts, 0.95),
            "change_p95": _pct(latencies, 0.95), "changes": float(len(latencies)), "mem_gib": mem,
            **{f"phase_{k}": v for k, v in phases.items()}}


def phase_line(r: dict[str, float]) -> str:
    """Where the scheduler's thread spent the real-time part of a row (host time; on CUDA the device's work
    shows in the phase that next waits for it, mostly the audio decode)."""
    return (f"{int(r['streams'])} streams, scheduler thread: steps {100 * r['phase_step']:.0f} %, window slides "
            f"{100 * r['phase_slide']:.0f} % ({int(r['phase_slides'])} re-primed), audio decode "
            f"{100 * r['phase_decode']:.0f} %, texts {100 * r['phase_text']:.0f} %")


def profile(sch: Any, n: int, seconds: float, texts: list[str]) -> str:
    """The kernels (or, off CUDA, the operators) while ``n`` streams each want music as fast as it comes, top
    20 by device time (torch.profiler): what to shorten next. Drives the scheduler on this thread (its own
    thread must be stopped: the profiler sees the operators of the thread that runs it)."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    streams = [sch.open(20_000 + i, texts[i % len(texts)]) for i in range(n)]
    for s in streams:
        sch.want_frames(s, 10**9)
    t0 = time.perf_counter()
    while min(sch._complete(s) for s in streams) < sch.max_positions and time.perf_counter() - t0 < 60:
        sch.run_once()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=activities) as prof:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            sch.run_once()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    for s in streams:
        sch.close(s)
    sch.run_once()
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    return str(prof.key_averages().table(sort_by=key, row_limit=20))


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small", choices=("small", "tiny"))
    ap.add_argument("--streams", default="1,16,64,128,256,512", help="comma-separated stream counts")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, choices=("bfloat16", "float16", "float32"))
    ap.add_argument("--seconds", type=float, default=8.0, help="measuring time per stream count")
    ap.add_argument("--lead", type=float, default=0.5, help="seconds generated ahead of each consumer")
    ap.add_argument("--context", type=float, default=10.0)
    ap.add_argument("--no-graphs", action="store_true", help="eager steps (no CUDA graphs)")
    ap.add_argument("--skip-check", action="store_true")
    ap.add_argument("--profile-streams", type=int, default=None,
                    help="after the table, profile the device's kernels at this many streams (default: 128 on CUDA, "
                         "0 = no profile); printed, not written to --out")
    ap.add_argument("--budget-s", type=float, default=270.0,
                    help="no new stream count is started after this many seconds (the whole run stays near 5 min)")
    ap.add_argument("--out", help="Markdown file to update (e.g. BENCHMARKS.md)")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.streams.split(",") if x.strip()]
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if args.device.startswith("cuda")
                                                            else torch.float32)
    graphs = args.device.startswith("cuda") and not args.no_graphs
    started = time.perf_counter()
    lines, graphs_ok = ([], True) if args.skip_check else check(args.device)
    for line in lines:
        print(line, flush=True)
    if graphs and not graphs_ok:
        graphs = False
        lines.append("CUDA graphs failed the check above: the benchmark runs eager steps")
        print(lines[-1], flush=True)
    fit = slots_that_fit(args.size, args.device, dtype, args.context)
    if fit is not None and max(counts) + 5 > fit:
        dropped = [n for n in counts if n + 5 > fit]
        counts = [n for n in counts if n + 5 <= fit] or [max(1, fit - 5)]
        lines.append(f"{', '.join(map(str, dropped))} streams do not fit this device's memory ({fit} slots): skipped")
        print(lines[-1], flush=True)
    sch = _engine(args.size, max(counts) + 5, args.device, dtype, graphs, args.lead, args.context)
    if sch.graphs_error:
        graphs = False
        lines.append(f"CUDA graph capture failed ({sch.graphs_error}): eager steps")
        print(lines[-1], flush=True)
    texts = ["sad piano ballad slow tempo", "upbeat pop happy joyful fast tempo", "epic orchestral brass strings",
             "lofi hip hop mellow warm bass", "dark suspense cinematic low strings"]
    head = ("| streams | audio s per s, all streams | x real time per stream | ms per step | streams >= 1.0x "
            "real time | first audio p50 / p95 (s) | mood change -> new audio p95 (s) | GPU memory (GiB) |")
    rows = [head, "|---|---|---|---|---|---|---|---|"]
    phase_lines: list[str] = []
    print(head, flush=True)
    n_params = sum(p.numel() for p in sch.model.decoder.parameters()) / 1e6
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"

    def report() -> None:
        """The section so far into ``--out`` (after every row: a run cut short keeps what it measured)."""
        if not args.out:
            return
        from pipelines.devtools.report import replace_section

        text = "\n".join([
            f"MusicGen `{args.size}` architecture (decoder {n_params:.0f} M parameters, random weights), {dev}, "
            f"torch {torch.__version__}, {args.dtype or str(dtype).replace('torch.', '')}, "
            f"{'CUDA graphs' if graphs else 'eager steps'}, guidance 3.0, top-k 250 sampling, "
            f"{args.context:.0f} s context, "
            f"window slide every 2 s, audio handed over in 0.5 s windows, {args.lead:.1f} s lead. "
            f"Run so far {time.perf_counter() - started:.0f} s.", "", *([*lines, ""] if lines else []), *rows,
            *(["", *[f"- {line}" for line in phase_lines]] if phase_lines else [])])
        replace_section(args.out, BEGIN, END, "MusicGen streaming engine (`make bench-gpu`)", text)

    for n in counts:
        if time.perf_counter() - started > args.budget_s:
            lines.append(f"{n} streams and more: not run, the {args.budget_s:.0f} s time budget was spent")
            print(lines[-1], flush=True)
            break
        try:
            r = measure(sch, n, args.seconds, texts)
        except Exception as exc:  # out of memory, a kernel error: keep the rows measured, say what happened
            traceback.print_exc()
            lines.append(f"{n} streams: failed ({type(exc).__name__}: {str(exc)[:200]}); larger counts not run")
            print(lines[-1], flush=True)
            break
        rows.append(f"| {n} | {r['audio_s_per_s']:.1f} | {r['x_rt']:.2f} | {r['ms_step']:.1f} | {r['kept_up']} of {n} "
                    f"| {r['first_p50']:.2f} / {r['first_p95']:.2f} | {r['change_p95']:.2f} | {r['mem_gib']:.1f} |")
        print(rows[-1], flush=True)
        phase_lines.append(phase_line(r))
        print(phase_lines[-1], flush=True)
        report()
    sch.stop()
    report()
    n_prof = args.profile_streams if args.profile_streams is not None else (128 if args.device.startswith("cuda")
                                                                            else 0)
    if n_prof > 0 and time.perf_counter() - started < args.budget_s:
        print(f"profile at {min(n_prof, sch.capacity)} streams:", flush=True)
        try:
            print(profile(sch, min(n_prof, sch.capacity), 2.0, texts), flush=True)
        except Exception:
            traceback.print_exc()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
