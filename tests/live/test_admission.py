"""Admission of live sessions from measured headroom, and the analysis degrade level, on the virtual clock.

The policy is plain arithmetic over the measurements a live worker reports each second; these tests
feed it series of measurements (a process whose load grows with its sessions, one that stalls, one
that recovers) and check what it answers, with the clock moved by hand.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipelines.clock import VirtualClock
from pipelines.errors import OptionError
from pipelines.live.admission import AdmissionOptions, AdmissionPolicy, Decision, Headroom

OPTS = AdmissionOptions(cores=2, max_sessions=16, settle_s=5.0, stale_s=3.0, fallback_sessions=2,
                        recover_s=10.0, retry_after_s=2.0)


def replace_opts(**kw: object) -> AdmissionOptions:
    return replace(OPTS, **kw)  # type: ignore[arg-type]


def calm(at_s: float, sessions: int, cpu: float = 0.2, cores: float = 0.3) -> Headroom:
    return Headroom(at_s=at_s, sessions=sessions, loop_lag_p95_s=0.002, late_ratio=0.0, cpu_busy=cpu,
                    process_cores=cores)


async def feed(policy: AdmissionPolicy, clock: VirtualClock, h: Headroom) -> None:
    """Move the clock to the measurement's time and hand it over (as a worker does each interval)."""
    if h.at_s > clock.now():
        await clock.advance(h.at_s - clock.now(), step=h.at_s - clock.now())
    policy.observe(h)


async def test_admits_while_headroom_is_ample_and_learns_the_session_cost() -> None:
    clock = VirtualClock()
    policy = AdmissionPolicy(OPTS, clock)
    await feed(policy, clock, calm(1.0, 0, cpu=0.05, cores=0.02))
    d = policy.decide()
    assert d == Decision(True, "ample headroom", 0.0)
    policy.admitted()
    # right after: ample headroom lets a second one in without waiting for the first's cost to show
    assert policy.decide().admit
    policy.admitted()
    # measured: 2 sessions cost 0.5 cores -> 0.25 a session
    await feed(policy, clock, calm(2.0, 2, cpu=0.3, cores=0.5))
    assert policy.session_cores == pytest.approx(0.25)
    await feed(policy, clock, calm(3.0, 2, cpu=0.3, cores=0.7))  # smoothed towards 0.35
    assert policy.session_cores == pytest.approx(0.7 * 0.25 + 0.3 * 0.35)


async def test_refuses_with_the_measure_named_and_a_retry_after() -> None:
    clock = VirtualClock()
    policy = AdmissionPolicy(OPTS, clock)
    base = calm(10.0, 4, cpu=0.4, cores=1.0)
    cases = [
        (Headroom(10.0, 4, 0.040, 0.0, 0.4, 1.0), "event-loop lag 40 ms > 25 ms"),
        (Headroom(10.0, 4, 0.002, 0.012, 0.4, 1.0), "late BGM frames 1.2 % > 0.5 %"),
        (Headroom(10.0, 4, 0.002, 0.0, 0.95, 1.0), "CPU busy 95 % > 90 %"),
    ]
    for h, reason in cases:
        p = AdmissionPolicy(OPTS, clock)
        await feed(p, clock, h)
        d = p.decide()
        assert not d.admit and d.reason == reason and d.retry_after_s == OPTS.retry_after_s
    await feed(policy, clock, base)
    assert policy.decide().admit  # the same process under its bounds


async def test_refuses_when_the_next_session_is_predicted_not_to_fit() -> None:
    clock = VirtualClock()
    policy = AdmissionPolicy(OPTS, clock)
    # 6 sessions use 1.2 cores (0.2 each); the machine is 85 % busy; one more adds 0.2 / 2 cores = 10 %
    await feed(policy, clock, calm(10.0, 6, cpu=0.85, cores=1.2))
    d = policy.decide()
    assert not d.admit and d.retry_after_s == 2.0
    assert d.reason == "CPU with one more session 95 % > 90 % (0.20 cores a session)"
    await feed(policy, clock, calm(11.0, 6, cpu=0.78, cores=1.2))  # 78 + 10 = 88 %: fits
    assert policy.decide().admit


async def test_sessions_admitted_but_not_yet_measured_count_in_the_prediction() -> None:
    clock = VirtualClock()
    policy = AdmissionPolicy(replace_opts(settle_s=0.0), clock)  # no settle time: only the prediction holds
    await feed(policy, clock, calm(10.0, 4, cpu=0.50, cores=1.0))  # 0.25 cores = 12.5 % a session
    admitted = 0
    while policy.decide().admit:
        policy.admitted()
        admitted += 1
    # 50 % + k * 12.5 % <= 90 %  -> 3 more (the 4th would make 100 %)
    assert admitted == 3
    assert policy.predicted_cpu_busy() == pytest.approx(0.5 + 4 * 0.125)
    # once a measurement long enough after them shows their cost, the prediction starts from it
    await feed(policy, clock, calm(11.0, 7, cpu=0.85, cores=1.75))
    assert not policy.decide().admit


async def test_settle_time_after_an_admission_unless_headroom_is_ample() -> None:
    clock = VirtualClock()
    policy = AdmissionPolicy(OPTS, clock)
    await feed(policy, clock, calm(10.0, 6, cpu=0.55, cores=1.5))  # within bounds, not ample (55 % > 45 %)
    assert policy.decide() == Decision(True, "headroom within bounds", 0.0)
    policy.admitted()
    await feed(policy, clock, calm(12.0, 7, cpu=0.56, cores=1.5))
    d = policy.decide()
    assert not d.admit and d.reason.startswith("settling") and d.retry_after_s == pytest.approx(3.0)
    await feed(policy, clock, calm(14.0, 7, cpu=0.60, cores=1.75))
    assert not policy.decide().admit
    await feed(policy, clock, calm(15.0, 7, cpu=0.62, cores=1.75))  # 5 s after: its cost shows, admit again
    assert policy.decide().admit


async def test_session_cap_whatever_the_headroom() -> None:
    clock = VirtualClock()
    policy = AdmissionPolicy(replace_opts(max_sessions=3, fallback_sessions=1), clock)
    await feed(policy, clock, calm(10.0, 3, cpu=0.05, cores=0.1))
    d = policy.decide()
    assert not d.admit and d.reason == "3 sessions open (max 3)"
    await feed(policy, clock, calm(11.0, 2, cpu=0.05, cores=0.1))
    assert policy.decide().admit
    for _ in range(3):
        policy.admitted()
    assert policy.sessions == 3 and not policy.decide().admit  # counted as told, before any measurement
    policy.released()
    assert policy.sessions == 2 and policy.decide().admit


async def test_stale_measurements_fall_back_to_the_configured_count() -> None:
    clock = VirtualClock()
    policy = AdmissionPolicy(OPTS, clock)
    # before the first measurement: up to fallback_sessions
    assert policy.decide().admit
    policy.admitted()
    policy.admitted()
    d = policy.decide()
    assert not d.admit and d.reason == "no measurement yet: at most 2 sessions"
    await feed(policy, clock, calm(10.0, 2, cpu=0.1, cores=0.3))
    assert policy.decide().admit  # ample
    for _ in range(2):
        policy.admitted()
    await clock.advance(4.0, step=1.0)  # measurements stop (the worker is stuck); 4 sessions run, over the fallback
    d = policy.decide()
    assert not d.admit and d.reason == "no measurement for 4.0 s: at most 2 sessions" and d.retry_after_s == 2.0
    for _ in range(3):
        policy.released()
    assert policy.decide().admit  # 1 < 2
    await feed(policy, clock, calm(15.0, 1, cpu=0.1, cores=0.2))
    assert not policy.stale and policy.decide().admit


async def test_admission_recovers_when_the_measures_do() -> None:
    clock = VirtualClock()
    policy = AdmissionPolicy(OPTS, clock)
    await feed(policy, clock, Headroom(10.0, 8, 0.060, 0.02, 0.97, 1.9))
    assert not policy.decide().admit
    await feed(policy, clock, Headroom(11.0, 7, 0.030, 0.0, 0.80, 1.7))  # lag still over
    assert policy.decide().reason == "event-loop lag 30 ms > 25 ms"
    await feed(policy, clock, Headroom(12.0, 6, 0.010, 0.0, 0.70, 1.5))
    assert policy.decide().admit


async def test_degrade_level_rises_before_any_refusal_and_falls_with_hysteresis() -> None:
    clock = VirtualClock()
    policy = AdmissionPolicy(OPTS, clock)
    levels: list[int] = []
    admits: list[bool] = []
    # 6 sessions of 0.15 cores (7.5 % of the machine each); the CPU climbs from 30 % to 95 %, stays, then
    # falls to 50 % (0.56 of its bound: clearly below level 2's threshold, 0.85 - 0.15, but not level 1's,
    # 0.7 - 0.15) and to 30 %; one measurement a second
    climb = [0.30 + 0.05 * i for i in range(14)] + [0.95] * 3 + [0.50] * 12 + [0.30] * 25
    for i, cpu in enumerate(climb):
        await feed(policy, clock, calm(float(i), 6, cpu=cpu, cores=0.9))
        levels.append(policy.degrade_level)
        admits.append(policy.decide().admit)
    first_1, first_2, first_refusal = levels.index(1), levels.index(2), admits.index(False)
    assert first_1 < first_2 < first_refusal  # analysis degrades first, sessions are refused later
    assert climb[first_1 - 1] < 0.7 * 0.9 <= climb[first_1]  # level 1 at 0.7 of the CPU bound
    assert climb[first_2 - 1] < 0.85 * 0.9 <= climb[first_2]  # level 2 at 0.85
    assert climb[first_refusal - 1] + 0.075 <= 0.9 < climb[first_refusal] + 0.075  # the next would not fit
    assert levels[:17] == sorted(levels[:17])
    # recovery: one level at a time, each after recover_s (10 s) of measures clearly below its threshold
    assert levels[17:27] == [2] * 10 and levels[27] == 1  # calm for level 2 from 17 s
    assert levels[27:39] == [1] * 12 and levels[39] == 0  # calm for level 1 only from 29 s (30 %)
    assert levels[39:] == [0] * (len(climb) - 39)
    assert all(admits[17:])  # admission resumed as soon as the measures were back under the bounds


async def test_one_spike_raises_the_level_at_once_and_a_relapse_restarts_the_recovery() -> None:
    clock = VirtualClock()
    policy = AdmissionPolicy(OPTS, clock)
    await feed(policy, clock, calm(0.0, 4, cpu=0.2))
    assert policy.degrade_level == 0
    await feed(policy, clock, Headroom(1.0, 4, 0.030, 0.0, 0.2, 1.0))  # one laggy second: straight to 2
    assert policy.degrade_level == 2 and not policy.decide().admit
    for t in range(2, 8):
        await feed(policy, clock, calm(float(t), 4, cpu=0.2))
    await feed(policy, clock, Headroom(8.0, 4, 0.020, 0.0, 0.2, 1.0))  # 0.8 of the lag bound: a relapse
    assert policy.degrade_level == 2 and policy.decide().admit  # under the bounds: admitted, still degraded
    for t in range(9, 19):
        await feed(policy, clock, calm(float(t), 4, cpu=0.2))
    assert policy.degrade_level == 2  # calm again only from 9 s
    await feed(policy, clock, calm(19.0, 4, cpu=0.2))
    assert policy.degrade_level == 1


def test_bad_options_are_option_errors() -> None:
    for kw, match in [({"max_sessions": 0}, "max_sessions"), ({"max_cpu_busy": 1.5}, "max_cpu_busy"),
                      ({"max_loop_lag_s": 0}, "max_loop_lag_s"), ({"fallback_sessions": 20}, "fallback_sessions"),
                      ({"degrade_at": (0.9, 0.5)}, "degrade_at"), ({"settle_s": -1.0}, "settle_s"),
                      ({"cores": 0}, "cores")]:
        with pytest.raises(OptionError, match=match):
            AdmissionOptions(**kw)  # type: ignore[arg-type]


def test_cpu_alone_can_be_kept_from_degrading_the_analysis() -> None:
    """With ``degrade_on_cpu=False`` a busy machine whose audio is on time keeps full analysis (CPU still
    bounds admission); late frames still degrade it."""
    clock = VirtualClock()
    policy = AdmissionPolicy(AdmissionOptions(max_cpu_busy=0.8, degrade_at=(0.85, 0.95), degrade_on_cpu=False), clock)
    busy = Headroom(at_s=0.0, sessions=12, loop_lag_p95_s=0.005, late_ratio=0.001, cpu_busy=0.79, process_cores=1.2)
    policy.observe(busy)
    assert policy.degrade_level == 0
    assert not policy.decide().admit  # the next session would not fit under 80 %
    policy.observe(replace(busy, at_s=1.0, late_ratio=0.0049))
    assert policy.degrade_level == 2
