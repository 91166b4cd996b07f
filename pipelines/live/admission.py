"""Live capacity from measured headroom: whether a new session may start, and how much analysis to shed.

A process that runs live sessions measures itself every interval (:class:`Headroom`: event-loop lag,
BGM frames sent late, the machine's CPU, its own cores) and feeds :class:`AdmissionPolicy`, which
answers two questions, deterministically on an injectable clock:

* **May one more session start?** (:meth:`AdmissionPolicy.decide`) No while any measure is over its
  bound, while the CPU predicted with one more session is (the machine's busy share plus a learned
  per-session cost -- this process's cores over its sessions, smoothed -- for each session admitted but
  not yet measured, and the new one), at ``max_sessions``, or within ``settle_s`` of the last admission
  unless the headroom is ample (a new session's cost shows only after a few seconds). Measurements older
  than ``stale_s`` are not trusted: then at most ``fallback_sessions`` run. A refusal names the measure
  and says when to retry.
* **How much analysis to shed** (:attr:`AdmissionPolicy.degrade_level`: 0 full; 1 half the analysis
  frame rate; 2 faces skipped too). It rises as soon as the worst measure reaches ``degrade_at`` of its
  bound -- below the bound, so analysis sheds load before sessions are refused for a measure over it (the
  prediction of a costly next session may refuse earlier) -- and falls one level
  at a time after it has stayed ``recover_margin`` below that level's threshold for ``recover_s``.
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass, field, replace

from pipelines.clock import Clock
from pipelines.errors import BusyError, OptionError

#: Degrade levels: full analysis; half the analysis frame rate; faces skipped too.
MAX_DEGRADE_LEVEL = 2


@dataclass(frozen=True)
class Headroom:
    """One measurement of a process that runs live sessions, over its last interval."""

    at_s: float  # clock time of the measurement
    sessions: int  # live sessions open
    loop_lag_p95_s: float  # how late its event loop woke a short timer (p95 over the interval)
    late_ratio: float  # BGM frames sent > 40 ms after their due time / frames sent, over the interval
    cpu_busy: float  # fraction of the whole machine's CPU in use over the interval (0..1, /proc/stat)
    process_cores: float  # this process's CPU time / wall time over the interval


@dataclass(frozen=True)
class AdmissionOptions:
    """Bounds and pacing of :class:`AdmissionPolicy` (see the module doc)."""

    max_sessions: int = 16  # hard cap whatever the headroom
    max_loop_lag_s: float = 0.025
    max_late_ratio: float = 0.005
    max_cpu_busy: float = 0.90
    #: After an admission the next waits this long (its cost shows only then) unless the headroom is ample.
    settle_s: float = 5.0
    #: Ample: every measure, and the CPU predicted with one more session, at most this share of its bound.
    ample: float = 0.5
    #: Measurements older than this are stale: then at most ``fallback_sessions`` (also before the first).
    stale_s: float = 3.0
    fallback_sessions: int = 2
    #: Cores of the machine (``cpu_busy`` is a share of them); a session's cost before any is measured,
    #: and the smoothing of the measured one (weight of the newest measurement).
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    initial_session_cores: float = 0.25
    cost_smoothing: float = 0.3
    #: Shares of the bounds at which the degrade level reaches 1 and 2; a level falls after the worst
    #: measure stayed ``recover_margin`` below its threshold for ``recover_s``.
    degrade_at: tuple[float, float] = (0.7, 0.85)
    #: Whether the machine's CPU share drives the degrade level too (False: only the audio path's own
    #: measures, event-loop lag and late frames, do; CPU then only bounds admission). A busy machine whose
    #: audio is on time loses mood-following speed to degrading for nothing (BENCHMARKS.md "Live serving").
    degrade_on_cpu: bool = True
    recover_margin: float = 0.15
    recover_s: float = 10.0
    #: Retry-After of a refusal by the measures or the session cap (s).
    retry_after_s: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.max_sessions, bool) or not isinstance(self.max_sessions, int) or self.max_sessions < 1:
            raise OptionError(f"max_sessions must be a whole number >= 1, got {self.max_sessions!r}")
        if not 0 <= self.fallback_sessions <= self.max_sessions:
            raise OptionError(f"fallback_sessions must be 0..max_sessions, got {self.fallback_sessions}")
        if not isinstance(self.cores, int) or self.cores < 1:
            raise OptionError(f"cores must be a whole number >= 1, got {self.cores!r}")
        for name in ("max_loop_lag_s", "max_late_ratio", "stale_s", "initial_session_cores", "retry_after_s"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise OptionError(f"{name} must be a positive number, got {v!r}")
        for name in ("settle_s", "recover_margin", "recover_s"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise OptionError(f"{name} must be a number >= 0, got {v!r}")
        for name in ("max_cpu_busy", "ample", "cost_smoothing"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0 < v <= 1):
                raise OptionError(f"{name} must be in (0, 1], got {v!r}")
        lo, hi = self.degrade_at
        if not 0 < lo <= hi:
            raise OptionError(f"degrade_at must be two shares 0 < level 1 <= level 2, got {self.degrade_at!r}")


@dataclass(frozen=True)
class Decision:
    admit: bool
    reason: str
    retry_after_s: float  # 0 when admitted


class AdmissionPolicy:
    """See the module doc. Feed :meth:`observe`; ask :meth:`decide`; tell :meth:`admitted` / :meth:`released`."""

    def __init__(self, options: AdmissionOptions, clock: Clock) -> None:
        self.options, self.clock = options, clock
        self.latest: Headroom | None = None
        #: Learned CPU cost of one session (cores), smoothed over measurements.
        self.session_cores = options.initial_session_cores
        self._measured_cost = False
        self._open = 0  # admitted - released
        self._admits: deque[float] = deque()  # clock times of recent admissions
        self._level = 0
        self._calm_since: float | None = None  # since when the level could fall

    # ------------------------------------------------------------------ measurements
    def observe(self, h: Headroom) -> None:
        """A new measurement (an older one than the latest is ignored)."""
        if self.latest is not None and h.at_s < self.latest.at_s:
            return
        self.latest = h
        if h.sessions > 0 and h.process_cores > 0:
            cost = h.process_cores / h.sessions
            a = self.options.cost_smoothing
            self.session_cores = cost if not self._measured_cost else (1 - a) * self.session_cores + a * cost
            self._measured_cost = True
        while self._admits and self._admits[0] <= h.at_s - self.options.settle_s:
            self._admits.popleft()  # measured long enough after it: its cost shows
        self._update_level(h)

    def pressure(self, h: Headroom) -> float:
        """The worst measure as a share of its bound (1 = at the bound)."""
        o = self.options
        return max(h.loop_lag_p95_s / o.max_loop_lag_s, h.late_ratio / o.max_late_ratio, h.cpu_busy / o.max_cpu_busy)

    def _update_level(self, h: Headroom) -> None:
        o = self.options
        p = self.pressure(h) if o.degrade_on_cpu else self.pressure(replace(h, cpu_busy=0.0))
        target = sum(p >= t for t in o.degrade_at)
        if target >= self._level:
            self._level, self._calm_since = target, None
            return
        if p > o.degrade_at[self._level - 1] - o.recover_margin:  # not clearly below this level's threshold
            self._calm_since = None
            return
        if self._calm_since is None:
            self._calm_since = h.at_s
        elif h.at_s - self._calm_since >= o.recover_s:
            self._level -= 1  # one level at a time, each after its own sustained recovery
            self._calm_since = h.at_s if self._level > 0 else None

    @property
    def degrade_level(self) -> int:
        """0: full analysis; 1: half the analysis frame rate; 2: faces skipped too."""
        return self._level

    # ------------------------------------------------------------------ sessions
    def admitted(self) -> None:
        """A session was started (its cost is predicted until measurements show it)."""
        now = self.clock.now()
        self._open += 1
        # older ones show in any measurement fresh enough to be used (bounded while none arrives)
        while self._admits and self._admits[0] < now - self.options.settle_s - self.options.stale_s:
            self._admits.popleft()
        self._admits.append(now)

    def released(self) -> None:
        """A session ended."""
        self._open = max(0, self._open - 1)

    @property
    def stale(self) -> bool:
        return self.latest is None or self.clock.now() - self.latest.at_s > self.options.stale_s

    @property
    def sessions(self) -> int:
        """Sessions known to run: those told of, or more if the latest measurement says so."""
        if self.stale or self.latest is None:
            return self._open
        return max(self._open, self.latest.sessions)

    def predicted_cpu_busy(self) -> float:
        """The machine's busy share with the sessions not yet measured and one more."""
        h = self.latest
        busy = h.cpu_busy if h is not None else 0.0
        return busy + (len(self._admits) + 1) * self.session_cores / self.options.cores

    # ------------------------------------------------------------------ the answer
    def decide(self) -> Decision:
        """May a new session start now?"""
        o = self.options
        now = self.clock.now()
        n = self.sessions
        if n >= o.max_sessions:
            return Decision(False, f"{n} sessions open (max {o.max_sessions})", o.retry_after_s)
        h = self.latest
        if h is None or self.stale:
            if n >= o.fallback_sessions:
                age = "no measurement yet" if h is None else f"no measurement for {now - h.at_s:.1f} s"
                return Decision(False, f"{age}: at most {o.fallback_sessions} sessions", o.retry_after_s)
            return Decision(True, f"unmeasured: {n} < {o.fallback_sessions} sessions", 0.0)
        over = [(h.loop_lag_p95_s, o.max_loop_lag_s, "event-loop lag", 1000, "ms"),
                (h.late_ratio, o.max_late_ratio, "late BGM frames", 100, "%"),
                (h.cpu_busy, o.max_cpu_busy, "CPU busy", 100, "%")]
        for value, bound, what, scale, unit in over:
            if value > bound:
                return Decision(False, f"{what} {_fmt(value * scale)} {unit} > {_fmt(bound * scale)} {unit}",
                                o.retry_after_s)
        predicted = self.predicted_cpu_busy()
        if predicted > o.max_cpu_busy:
            return Decision(False, f"CPU with one more session {_fmt(predicted * 100)} % > "
                                   f"{_fmt(o.max_cpu_busy * 100)} % ({self.session_cores:.2f} cores a session)",
                            o.retry_after_s)
        last = self._admits[-1] if self._admits else -math.inf
        ample = self.pressure(h) <= o.ample and predicted <= o.ample * o.max_cpu_busy
        if now - last < o.settle_s and not ample:
            wait = o.settle_s - (now - last)
            return Decision(False, f"settling: a session admitted {now - last:.1f} s ago, headroom not ample",
                            max(wait, 0.1))
        return Decision(True, "ample headroom" if ample else "headroom within bounds", 0.0)


def _fmt(x: float) -> str:
    """A measure for a reason: whole numbers when large, one decimal when small."""
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.1f}"


def admit(policy: AdmissionPolicy | None) -> None:
    """Raise :class:`BusyError` (503 / UNAVAILABLE; the reason and when to retry in its message, the seconds in
    ``retry_after_s``) when ``policy`` refuses one more session now; nothing without a policy."""
    if policy is None:
        return
    decision = policy.decide()
    if not decision.admit:
        retry = max(1, math.ceil(decision.retry_after_s))
        err = BusyError(f"no room for another live session now ({decision.reason}); retry in {retry} s")
        err.retry_after_s = retry  # type: ignore[attr-defined]
        raise err
