"""The pure parts of the live benchmark (loadtest/): options, kinds of session, PASS/FAIL, the CPU arithmetic
from /proc, the gRPC arrival schedule, the ramp's steps, table and plot. No service is started here."""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from loadtest.bench_live import markdown, parse_args, session_limit, with_session_limit
from loadtest.grpc_swarm import Arrivals
from loadtest.procstat import (
    HZ,
    CostProbe,
    CpuSnapshot,
    cost_between,
    descendants,
    fmt_cost,
    parse_machine,
    parse_stat,
    role,
)
from loadtest.ramp import admission, parse_ramp, plot_ramp, ramp_markdown, step_record
from loadtest.results import (
    MAX_LATE_SHARE,
    SessionResult,
    fmt_verdict,
    plan_kinds,
    refusal,
    spread,
    summarise,
    swarm_verdict,
    verdict,
)
from loadtest.swarm import measure_window, retry_after_s

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- options


def test_parse_ramp() -> None:
    assert parse_ramp("8:20") == (8, 20)
    assert parse_ramp("1:1") == (1, 1)
    for bad in ("8", "20:8", "0:3", "a:b", "8-20", ""):
        with pytest.raises(ValueError, match="START:END"):
            parse_ramp(bad)


def test_bench_live_defaults_are_the_make_target() -> None:
    a = parse_args([])
    assert (a.counts, a.duration, a.repeat, a.grpc, a.mix_original) == ([12], 120.0, 3, 2, 2)
    assert a.ramp_range == (8, 20) and a.ramp_step == 10.0
    a = parse_args(["--sessions", "8,12", "--duration", "90", "--ramp", "none", "--grpc", "0", "--mix-original", "0"])
    assert a.counts == [8, 12] and a.duration == 90.0 and a.ramp_range is None


@pytest.mark.parametrize("argv", [["--sessions", "3", "--grpc", "2", "--mix-original", "2"], ["--sessions", "x"],
                                  ["--ramp", "9:3"], ["--repeat", "0"], ["--ramp-step", "0"]])
def test_bench_live_refuses_bad_options(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_session_limit_is_raised_or_set(tmp_path: Path) -> None:
    import yaml

    config = os.fspath(ROOT / "deploy" / "local.yaml")
    with open(config, encoding="utf-8") as f:
        limit = yaml.safe_load(f)["applications"][0]["args"]["max_live_sessions"]
    assert with_session_limit(config, limit, os.fspath(tmp_path)) == config  # nothing to change
    assert session_limit(config) == limit
    assert session_limit(with_session_limit(config, max(1, limit - 2), os.fspath(tmp_path))) == limit  # not lowered
    for n, exact in ((limit + 4, False), (max(1, limit - 2), True)):
        path = with_session_limit(config, n, os.fspath(tmp_path), exact=exact)
        with open(path, encoding="utf-8") as f:
            assert yaml.safe_load(f)["applications"][0]["args"]["max_live_sessions"] == n
        assert session_limit(path) == n


# ----------------------------------------------------------------------------- kinds, summary, verdict


def test_plan_kinds_spreads_the_special_sessions() -> None:
    kinds = plan_kinds(12, grpc=2, mix_original=2)
    assert len(kinds) == 12
    assert (kinds.count("grpc"), kinds.count("webrtc_mix"), kinds.count("webrtc")) == (2, 2, 8)
    special = [i for i, k in enumerate(kinds) if k != "webrtc"]
    assert min(b - a for a, b in itertools.pairwise(special)) >= 2  # not bunched
    assert plan_kinds(4, 1, 1).count("webrtc") == 2
    assert plan_kinds(3) == ["webrtc"] * 3
    assert plan_kinds(2, 2, 0) == ["grpc", "grpc"]
    with pytest.raises(ValueError):
        plan_kinds(3, 2, 2)


def test_verdict_is_the_issue_line() -> None:
    ok = verdict(0, 99, 10_000)
    assert ok["pass"] and ok["late_share"] == pytest.approx(0.0099) and fmt_verdict(ok).startswith("PASS")
    edge = verdict(0, int(MAX_LATE_SHARE * 10_000), 10_000)  # exactly 1 %: not "under 1 %"
    assert not edge["pass"] and "1.0 % of frames > 40 ms late" in edge["reasons"]
    under = verdict(3, 0, 10_000)
    assert not under["pass"] and under["reasons"] == ["3 underruns"]
    assert fmt_verdict(under) == "FAIL (3 underruns)"
    assert not verdict(0, 0, 0)["pass"]  # nothing sent is no pass
    assert verdict(0, 0, 100, sessions=4, connected=3)["reasons"] == ["1 of 4 sessions not connected"]


def _session(i: int, kind: str = "webrtc", **kw: object) -> SessionResult:
    return SessionResult(i, kind=kind, connected=True, **kw)  # type: ignore[arg-type]


def test_summary_counts_the_late_frames_every_server_sender_reports() -> None:
    results = [_session(0, packets=6000, late_frames=30, underruns=0, frames=5990),
               _session(1, "webrtc_mix", packets=6000, late_frames=90, frames=5980, max_late_ms=61.0),
               _session(2, "grpc", frames=6000, late_frames=60, max_late_ms=55.0, arrival_late_frames=600,
                        max_arrival_late_ms=250.0, underruns=2),
               SessionResult(3, error="RuntimeError: offer rejected", refused="503 Busy, Retry-After 5")]
    s = summarise(results, 120.0)
    assert s["kinds"] == {"webrtc": 2, "webrtc_mix": 1, "grpc": 1}  # the refused one was plain WebRTC
    # WebRTC: RTP packets received; gRPC: frames received, its server's pacer counting the late ones
    assert (s["connected"], s["refused"], s["frames_sent"], s["sender_late_frames"]) == (3, 1, 18_000, 180)
    assert s["late_share"] == pytest.approx(0.01) and s["sender_max_late_ms"] == 61.0
    assert s["grpc_late_share"] == pytest.approx(0.1) and s["grpc_max_late_ms"] == 250.0
    v = swarm_verdict(s)
    assert not v["pass"]
    assert v["reasons"] == ["2 underruns", "1.0 % of frames > 40 ms late", "1 of 4 sessions not connected"]


def test_refusal_and_admission_strings() -> None:
    body = {"error": {"type": "Busy", "message": "8 live sessions run", "max_sessions": 8}}
    assert refusal(503, body, "5") == "503 Busy, Retry-After 5"
    assert refusal(503, "not json", None) == "503"
    assert admission(SessionResult(0, connected=True)) == "admitted"
    busy = "503 Busy, Retry-After 5"
    assert admission(SessionResult(0, refused=busy, error="RuntimeError: offer rejected")) == f"refused: {busy}"
    retried = SessionResult(0, connected=True, refusals=[busy, busy])
    assert admission(retried) == f"admitted after 2 refusals ({busy})"
    assert admission(SessionResult(0, refused=busy, refusals=[busy] * 4)) == f"refused: {busy} (4 times)"
    assert admission(SessionResult(0)) == "pending"
    assert admission(SessionResult(0, error="TimeoutError: ")) == "error: TimeoutError: "


def test_retry_after_and_the_steady_window() -> None:
    assert retry_after_s("5") == 5.0 and retry_after_s("0") == 0.5
    assert retry_after_s(None) == 2.0 and retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 2.0
    # admitted at 100..106 s, 120 s each: from 10 s after the last to a second before the first ends
    assert measure_window([100.0, 103.0, 106.0], 120.0) == (116.0, 219.0)
    # a short run: the settling is at most half of what is left
    assert measure_window([0.0, 2.0], 20.0) == (10.5, 19.0)
    assert measure_window([], 20.0) is None
    assert measure_window([0.0, 18.5], 20.0) is None  # they hardly overlapped


def test_spread() -> None:
    assert spread([0.1, 0.3, 0.2]) == "0.1-0.3 (mean 0.2)"
    assert spread([]) == "-"


# ----------------------------------------------------------------------------- CPU from /proc


def test_parse_stat_and_machine_on_real_proc() -> None:
    with open(f"/proc/{os.getpid()}/stat", encoding="utf-8") as f:
        ppid, ticks = parse_stat(f.read())
    assert ppid == os.getppid() and ticks >= 0
    # a process name with spaces and a parenthesis
    text = "4242 (a (b) c) S 17 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 1000 0 0"
    assert parse_stat(text) == (17, 300)
    with open("/proc/stat", encoding="utf-8") as f:
        first = parse_machine(f.read())
    assert first > 0
    assert parse_machine("cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n") == 10 + 1 + 5 + 2 + 3 + 4


def test_cost_arithmetic() -> None:
    a = CpuSnapshot(t=10.0, server={1: (100, "Gateway"), 2: (50, "proxy"), 7: (900, "IDLE")},
                    clients={3: 40}, machine=1_000)
    # over 4 s at 100 ticks/s: the Gateway +160 ticks, proxy +40, a new worker 8 (+200 from zero);
    # pid 7 ended and its number was reused by a client-side process (counted from zero)
    b = CpuSnapshot(t=14.0, server={1: (260, "Gateway"), 2: (90, "proxy"), 8: (200, "worker_process")},
                    clients={3: 120, 7: 5}, machine=1_800)
    c = cost_between(a, b, sessions=4, hz=100)  # no process figures: other = the machine less server and clients
    assert c["wall_s"] == 4.0
    assert c["server_cores"] == pytest.approx((160 + 40 + 200) / 100 / 4)  # 1.0
    assert c["server_cores_per_session"] == pytest.approx(0.25)
    assert c["clients_cores"] == pytest.approx((80 + 5) / 100 / 4, abs=1e-3)
    assert c["machine_cores"] == pytest.approx(2.0)
    assert c["other_cores"] == pytest.approx(2.0 - 1.0 - 0.2125, abs=1e-3)
    assert c["server_roles"] == {"worker_process": 0.5, "Gateway": 0.4, "proxy": 0.1}
    assert "0.250 per session" in fmt_cost(c) and "floor ~0.085" in fmt_cost(c)
    # with every process's ticks: other = all processes less server and clients (an unrelated pid 11: +100)
    a.processes = {1: 100, 2: 50, 3: 40, 7: 900, 11: 0}
    b.processes = {1: 260, 2: 90, 8: 200, 3: 120, 7: 5, 11: 100}
    c = cost_between(a, b, sessions=4, hz=100)
    assert c["processes_cores"] == pytest.approx((160 + 40 + 200 + 80 + 5 + 100) / 400, abs=1e-3)
    assert c["other_cores"] == pytest.approx(0.25, abs=1e-3) and c["machine_cores"] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        cost_between(b, a, 4)


def test_roles_of_server_processes() -> None:
    assert role("ray::ServeReplica:backscore:Gateway") == "Gateway"
    assert role("ray::ProxyActor") == "proxy"
    assert role("ray::ProxyActor.receive_grpc_messages") == "proxy"
    assert role("ray::IDLE") == "IDLE"
    assert role("/x/.venv/bin/python .venv/bin/serve run deploy/local.yaml") == "serve run"
    assert role("/x/ray/core/src/ray/raylet/raylet --raylet_socket_name=/tmp/r") == "ray core"
    assert role('/x/python -m serve.webrtc.worker_process 65 {"index": 0}') == "worker_process"


def test_probe_splits_the_server_tree_from_the_clients() -> None:
    # a "server": a shell whose child sleeps; the probe's own process is the client side
    server = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 10
        probe = CostProbe(server.pid)
        while True:
            snap = probe.snapshot()
            if len(snap.server) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert server.pid in snap.server and len(snap.server) == 2  # the shell and its sleep
        assert os.getpid() in snap.clients and not set(snap.server) & set(snap.clients)
        assert snap.machine > 0 and server.pid in snap.processes and os.getpid() in snap.processes
        later = probe.snapshot()
        c = cost_between(snap, later, sessions=1)
        assert c["server_cores"] >= 0 and c["machine_cores"] >= 0
    finally:
        server.kill()
        server.wait()
    assert descendants({2: 1, 3: 2, 4: 1, 5: 9}, 2) == {2, 3}
    assert HZ > 0


# ----------------------------------------------------------------------------- gRPC arrivals


def test_arrivals_on_schedule_have_no_gaps_or_late_frames() -> None:
    a = Arrivals()
    for k in range(100):
        a.add(5.0 + 0.1 * k, 4800 * k, 4800)
    assert (a.messages, a.frames, a.gaps) == (100, 500, 0)
    assert a.max_gap_s == pytest.approx(0.02)  # one frame's length between the last of a message and the next
    assert a.late_frames() == (0, pytest.approx(0.0))


def test_arrivals_count_a_late_message() -> None:
    a = Arrivals()
    for k in range(100):
        a.add(5.0 + 0.1 * k + (0.15 if k == 50 else 0.0), 4800 * k, 4800)
    assert a.gaps == 1 and a.max_gap_s == pytest.approx(0.17)
    late, latest = a.late_frames()
    assert late == 5 and latest == pytest.approx(0.15)
    # the same delay during the first (settling) messages is not counted
    b = Arrivals()
    for k in range(100):
        b.add(5.0 + 0.1 * k + (0.15 if k == 3 else 0.0), 4800 * k, 4800)
    assert b.gaps == 0 and b.late_frames()[0] == 0


# ----------------------------------------------------------------------------- ramp


def _ramp_result() -> dict[str, Any]:
    sessions = [SessionResult(i, connected=True) for i in range(3)]
    steps = []
    # step 1: sessions 0 and 1 start; step 2: 2 starts; step 3: a fourth is refused and 0 underruns
    before: dict[int, dict[str, int]] = {}
    for s in sessions[:2]:
        s.packets, s.late_frames = 500, 2
    steps.append(step_record(0, 2, sessions[:2], before, sessions[:2], 10.0))
    before = {s.index: {"underruns": s.underruns, "late_frames": s.late_frames, "frames_sent": s.packets,
                        "skipped": s.skipped} for s in sessions[:2]}
    for s in sessions:
        s.packets += 500
        s.late_frames += 20
    sessions[2].degraded = 1
    steps.append(step_record(2, 3, [sessions[2]], before, sessions, 10.0))
    before = {s.index: {"underruns": s.underruns, "late_frames": s.late_frames, "frames_sent": s.packets,
                        "skipped": s.skipped} for s in sessions}
    for s in sessions:
        s.packets += 500
    sessions[0].underruns = 7
    refused = SessionResult(3, refused="503 Busy, Retry-After 5", error="RuntimeError: offer rejected")
    steps.append(step_record(3, 4, [refused], before, sessions, 10.0))
    return {"start": 2, "end": 4, "step_s": 10.0, "steps": steps}


def test_ramp_steps_are_deltas(tmp_path: Path) -> None:
    result = _ramp_result()
    s1, s2, s3 = result["steps"]
    assert (s1["running"], s1["late_frames"], s1["frames_sent"]) == (2, 4, 1000)
    assert [x["admission"] for x in s1["new"]] == ["admitted", "admitted"]
    # the sessions running before count their increase; the new one from zero
    assert s2["late_frames"] == 20 + 20 + 20 and s2["frames_sent"] == 500 + 500 + 500
    assert s2["verdict"]["late_share"] == pytest.approx(0.04) and not s2["verdict"]["pass"]
    assert s2["sessions_degraded"] == 1
    assert s3["new"] == [{"index": 3, "admission": "refused: 503 Busy, Retry-After 5"}]
    assert s3["underruns"] == 7 and s3["sessions_with_underruns"] == 1 and s3["late_frames"] == 0
    assert s3["verdict"]["reasons"] == ["7 underruns"]
    table = ramp_markdown(result, "benchmarks/live-ramp.png")
    assert "[benchmarks/live-ramp.png](benchmarks/live-ramp.png)" in table
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert len(rows) == 3
    assert rows[0].startswith("| 2 | 2 | 2 of 2 admitted |") and rows[0].endswith("| PASS |")
    assert "refused: 503 Busy, Retry-After 5" in rows[2] and rows[2].endswith("| FAIL |")


def test_ramp_plot_is_written(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ramp.png"
    plot_ramp(_ramp_result(), os.fspath(path))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


# ----------------------------------------------------------------------------- the section


def test_markdown_has_a_row_per_run_the_spread_and_the_kinds() -> None:
    args = parse_args(["--sessions", "4", "--repeat", "2", "--grpc", "1", "--mix-original", "1", "--ramp", "1:2"])
    runs = []
    for run, late in ((1, 10), (2, 270)):
        res = [_session(0, packets=6000, late_frames=late, frames=6000, latencies_s=[0.4], detect_s=[1.0],
                        mood_changes=1),
               _session(1, "webrtc_mix", packets=6000, frames=6000),
               _session(2, "grpc", frames=6000, arrival_late_frames=12, max_arrival_late_ms=80.0),
               _session(3, packets=6000, frames=6000)]
        out = summarise(res, 120.0)
        out["by_kind"] = {k: summarise([r for r in res if r.kind == k], 120.0) for k in ("webrtc", "webrtc_mix",
                                                                                            "grpc")}
        out["verdict"], out["run"] = swarm_verdict(out), run
        a = CpuSnapshot(t=0.0, server={1: (0, "Gateway")}, clients={2: 0}, machine=0)
        b = CpuSnapshot(t=100.0, server={1: (int(run * 100 * HZ), "Gateway")}, clients={2: int(20 * HZ)},
                        machine=int(180 * HZ))
        out["cpu"] = cost_between(a, b, 4)
        runs.append(out)
    text = markdown(args, 12.0, runs, _ramp_result(), {}, 8)
    rows = [ln for ln in text.splitlines() if ln.startswith("| 4 (2 / 1 / 1) x 120 s")]
    assert len(rows) == 2
    assert rows[0].endswith("| PASS |") and "| 0.250 (0.250) |" not in rows[0]
    assert "| 1.00 (0.250) |" in rows[0] and "| 2.00 (0.500) |" in rows[1]
    assert "FAIL: 1.1 % of frames > 40 ms late" in rows[1]
    assert "4 sessions, 2 run(s): 1 PASS" in text and "server cores per session 0.25-0.5 (mean 0.375)" in text
    kinds = [ln for ln in text.splitlines() if ln.startswith("| 4 | ") and ln.split(" | ")[2] in
             ("webrtc", "webrtc_mix", "grpc")]
    assert len(kinds) == 6 and sum("| grpc |" in ln for ln in kinds) == 2
    assert "12 (0.20 %; max 80 ms), client" in text
    assert "Ramp 2:4" in text
