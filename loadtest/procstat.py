"""CPU cost of live sessions from ``/proc``: the server's process tree, the load clients, the machine.

A :class:`CostProbe` takes :class:`CpuSnapshot` s (utime + stime of every process, in clock ticks, and
the machine's busy ticks from ``/proc/stat``); :func:`cost_between` turns two of them into cores
(CPU seconds per wall second) and cores per session:

* **server** -- the ``serve run`` process and all its descendants: the driver, Ray's GCS, raylet,
  dashboard and log monitor, the Serve controller and proxy, every replica and any worker process a
  replica starts; broken down by role (:func:`role`);
* **clients** -- the benchmark's own process and its other descendants (the aiortc and gRPC clients);
* **all processes** -- every process's time (the same accounting as the two above); ``other`` is what
  neither of them spent (other work on a shared machine);
* **machine** -- every core's busy time from ``/proc/stat`` (user, nice, system, irq, softirq, steal),
  whoever spent it, kernel work included. The kernel samples it at its timer tick, where the
  processes' times are exact run time: with many short bursts of work (event loops waking every
  20 ms) it can read lower than the processes' sum, as it did here (0.48 cores against 0.58).

A process that appears between two snapshots counts from zero (it started in the interval), and so does
a pid whose ticks went down (reused by a new process); one that ended is missed (its last ticks are gone
with it).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

#: Clock ticks per second of ``/proc/<pid>/stat``'s utime and stime.
HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: What a bare aiortc session costs the server (receive VP8/Opus, send Opus; no analysis, no music),
#: measured before issue 13: the floor a live session's cost is compared with.
AIORTC_FLOOR_CORES = 0.085


def parse_stat(text: str) -> tuple[int, int]:
    """``(ppid, utime + stime)`` from the text of ``/proc/<pid>/stat`` (the name may hold spaces and ')')."""
    rest = text[text.rindex(")") + 2:].split()
    # fields after the name: state(3) ppid(4) ... utime(14) stime(15), numbered from 1 in proc(5)
    return int(rest[1]), int(rest[11]) + int(rest[12])


def parse_machine(text: str) -> int:
    """Busy ticks of all cores from the text of ``/proc/stat``: user nice system irq softirq steal
    (not idle, not iowait; guest time is already inside user)."""
    line = next(ln for ln in text.splitlines() if ln.startswith("cpu "))
    v = [int(x) for x in line.split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    return user + nice + system + irq + softirq + steal


def role(cmdline: str) -> str:
    """A short name for a server process from its command line."""
    if cmdline.startswith("ray::"):
        name = cmdline.split()[0][5:].split(".")[0]  # "ProxyActor.receive_grpc_messages" while in a task
        if name.startswith("ServeReplica:"):
            return name.rsplit(":", 1)[-1]  # the deployment: Gateway, FrameEncoder, ...
        return {"ProxyActor": "proxy", "ServeController": "controller"}.get(name, name)  # IDLE, other actors
    words = cmdline.split()
    if "serve" in [os.path.basename(w) for w in words[:3]] and "run" in words:
        return "serve run"
    for part in ("gcs_server", "raylet", "dashboard", "log_monitor", "monitor.py", "runtime_env"):
        if part in cmdline:
            return "ray core"
    if "-m" in words[:-1]:
        return words[words.index("-m") + 1].rsplit(".", 1)[-1]  # python -m serve.webrtc.worker_process
    return os.path.basename(words[0]) if words else "?"


def descendants(ppid: dict[int, int], root: int) -> set[int]:
    """``root`` and every process below it, from a pid -> parent pid map."""
    children: dict[int, list[int]] = {}
    for pid, parent in ppid.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo += children.get(pid, [])
    return found


@dataclass
class CpuSnapshot:
    """Ticks at one moment: per server process (with its role), per client process, the machine."""

    t: float
    server: dict[int, tuple[int, str]] = field(default_factory=dict)
    clients: dict[int, int] = field(default_factory=dict)
    machine: int = 0
    #: Every process's ticks (server and clients included); empty: not taken.
    processes: dict[int, int] = field(default_factory=dict)


def _since(prev: int, now: int) -> int:
    """Ticks of one pid between two snapshots; fewer than before: the pid was reused by a new process."""
    return now - prev if now >= prev else now


def _delta(a: dict[int, int], b: dict[int, int]) -> int:
    return sum(_since(a.get(pid, 0), v) for pid, v in b.items())


def cost_between(a: CpuSnapshot, b: CpuSnapshot, sessions: int, hz: float = HZ) -> dict[str, Any]:
    """Cores (CPU seconds per wall second) between ``a`` and ``b``: server (and per role), clients, all
    processes, other (all processes less server and clients; without process figures: the machine less
    them), the machine; and per session (``sessions`` running in the interval)."""
    wall = b.t - a.t
    if wall <= 0:
        raise ValueError("the second snapshot must be later than the first")

    def cores(ticks: float) -> float:
        return ticks / hz / wall

    server = cores(_delta({p: v for p, (v, _) in a.server.items()}, {p: v for p, (v, _) in b.server.items()}))
    roles: dict[str, float] = {}
    for pid, (ticks, name) in b.server.items():
        roles[name] = roles.get(name, 0.0) + cores(_since(a.server.get(pid, (0, name))[0], ticks))
    clients = cores(_delta(a.clients, b.clients))
    machine = cores(max(0, b.machine - a.machine))
    everyone = cores(_delta(a.processes, b.processes)) if b.processes else machine
    n = max(1, sessions)
    return {"wall_s": round(wall, 2), "sessions": sessions,
            "server_cores": round(server, 3), "server_cores_per_session": round(server / n, 4),
            "clients_cores": round(clients, 3), "clients_cores_per_session": round(clients / n, 4),
            "processes_cores": round(everyone, 3), "machine_cores": round(machine, 3),
            "other_cores": round(max(0.0, everyone - server - clients), 3),
            "server_roles": {k: round(v, 3) for k, v in sorted(roles.items(), key=lambda kv: -kv[1])},
            "aiortc_floor_cores_per_session": AIORTC_FLOOR_CORES}


class CostProbe:
    """Snapshots of the server tree under ``server_pid`` (None: no server figures) and of this process's
    own tree (the clients: everything below ``client_pid`` that is not the server's)."""

    def __init__(self, server_pid: int | None, client_pid: int | None = None, proc: str = "/proc") -> None:
        self.server_pid = server_pid
        self.client_pid = client_pid if client_pid is not None else os.getpid()
        self.proc = proc

    def _read(self, path: str) -> str | None:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:  # the process ended
            return None

    def snapshot(self) -> CpuSnapshot:
        t = time.perf_counter()
        stats: dict[int, tuple[int, int]] = {}
        for entry in os.listdir(self.proc):
            if entry.isdigit() and (text := self._read(f"{self.proc}/{entry}/stat")) is not None:
                stats[int(entry)] = parse_stat(text)
        ppid = {pid: p for pid, (p, _) in stats.items()}
        server = descendants(ppid, self.server_pid) & stats.keys() if self.server_pid is not None else set()
        clients = (descendants(ppid, self.client_pid) & stats.keys()) - server
        snap = CpuSnapshot(t=t, clients={pid: stats[pid][1] for pid in clients},
                           processes={pid: v for pid, (_, v) in stats.items()})
        for pid in server:
            cmd = (self._read(f"{self.proc}/{pid}/cmdline") or "").replace("\0", " ").strip()
            snap.server[pid] = (stats[pid][1], role(cmd))
        snap.machine = parse_machine(self._read(f"{self.proc}/stat") or "cpu  0 0 0 0 0 0 0")
        return snap


def fmt_cost(c: dict[str, Any] | None) -> str:
    """One line: server, clients and machine cores, per session, next to the aiortc floor."""
    if not c:
        return "CPU: not measured"
    return (f"CPU over {c['wall_s']:.0f} s, {c['sessions']} sessions: server {c['server_cores']:.2f} cores "
            f"({c['server_cores_per_session']:.3f} per session; bare-aiortc floor ~{AIORTC_FLOOR_CORES}), "
            f"clients {c['clients_cores']:.2f} ({c['clients_cores_per_session']:.3f} per session), "
            f"all processes {c['processes_cores']:.2f} (other work {c['other_cores']:.2f}), "
            f"machine (/proc/stat) {c['machine_cores']:.2f}")
