"""The gateway's event-loop monitor: lag histogram, and a stall reported (with where the loop is) while it lasts."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from serve.loop_monitor import LoopMonitor, LoopMonitorOptions
from serve.metrics import LOOP_LAG_SECONDS, LOOP_STALLS_TOTAL


def _lag_count_over(seconds: float) -> float:
    for metric in LOOP_LAG_SECONDS.collect():
        total = next(s.value for s in metric.samples if s.name.endswith("_count"))
        below = max(s.value for s in metric.samples
                    if s.name.endswith("_bucket") and float(s.labels["le"]) <= seconds)
        return total - below
    return 0.0


def hog_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # a blocking call on the loop thread


async def test_a_blocked_loop_is_reported_once_with_its_stack(caplog: pytest.LogCaptureFixture) -> None:
    monitor = LoopMonitor(LoopMonitorOptions(interval_s=0.02, stall_s=0.15))
    stalls0, slow0 = LOOP_STALLS_TOTAL._value.get(), _lag_count_over(0.25)
    with caplog.at_level(logging.WARNING, logger="serve.loop_monitor"):
        monitor.start()
        await asyncio.sleep(0.2)  # a healthy loop: nothing reported
        assert monitor.stalls == 0
        hog_the_loop(0.45)
        await asyncio.sleep(0.2)
        monitor.stop()
    assert monitor.stalls == 1
    assert LOOP_STALLS_TOTAL._value.get() == stalls0 + 1
    assert monitor.max_lag_s > 0.3
    assert _lag_count_over(0.25) == slow0 + 1
    [record] = [r for r in caplog.records if "stalled" in r.getMessage()]
    assert "hog_the_loop" in record.getMessage()  # where the loop thread was
