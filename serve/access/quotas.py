"""Per-key quotas of one gateway replica: requests a minute, jobs in flight, live-session minutes a day.

All three keep their state in this process, keyed by the key's name (so it is bounded by the number
of keys), and read time from one injectable clock (wall-clock seconds, ``time.time``: days are UTC
days; tests pass a clock they move by hand).

* :class:`RateLimiter` -- a token bucket per key: ``rpm`` tokens at most (a full minute's worth may
  come at once), refilled at ``rpm / 60`` a second; one request takes one. An empty bucket is
  :class:`~pipelines.errors.QuotaError` with the seconds until the next token as ``Retry-After``.
* :class:`JobCounter` -- uploads and jobs in flight per key (HTTP analyze/recommend/score from the
  first byte to the last of the answer; gRPC Analyze/Recommend/Score); one more is QuotaError.
* :class:`LiveMinutes` -- live-session seconds per key and UTC day: the closed sessions' time plus
  the open ones' so far. A key whose minutes are used up cannot open a session (QuotaError,
  ``Retry-After``: until midnight UTC), and its open sessions end: each holds a :class:`LiveLease`
  whose :meth:`~LiveLease.exhausted` the session's watchdog asks about once a second or so.

A quota of 0 jobs or 0 live minutes means the key may not do that at all:
:class:`~pipelines.errors.ForbiddenError` (403 / PERMISSION_DENIED), not a retry later.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pipelines.errors import ForbiddenError, QuotaError

#: Wall-clock seconds (``time.time``).
WallClock = Callable[[], float]
DAY_S = 86_400.0
#: ``Retry-After`` of a refused job: jobs take seconds to minutes; ask again soon.
JOB_RETRY_S = 5


class RateLimiter:
    """Requests a minute per key (a token bucket; see the module doc)."""

    def __init__(self, clock: WallClock = time.time) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, name: str, rpm: int) -> None:
        """One request of ``name``'s; :class:`QuotaError` when its bucket is empty."""
        now = self._clock()
        rate = rpm / 60.0
        with self._lock:
            tokens, at = self._buckets.get(name, (float(rpm), now))
            tokens = min(float(rpm), tokens + max(0.0, now - at) * rate)
            if tokens < 1.0:
                self._buckets[name] = (tokens, now)
                retry = max(1, math.ceil((1.0 - tokens) / rate))
                raise QuotaError(f"API key {name!r} made its {rpm} requests a minute; retry in {retry} s",
                                 retry_after_s=retry)
            self._buckets[name] = (tokens - 1.0, now)


class JobCounter:
    """Uploads and jobs in flight per key."""

    def __init__(self) -> None:
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def in_flight(self, name: str) -> int:
        with self._lock:
            return self._in_flight.get(name, 0)

    @contextlib.contextmanager
    def slot(self, name: str, limit: int) -> Iterator[None]:
        """Holds one of ``name``'s ``limit`` job slots while the block runs (QuotaError when all are taken)."""
        if limit <= 0:
            raise ForbiddenError(f"API key {name!r} may not run jobs (its jobs quota is 0)")
        with self._lock:
            n = self._in_flight.get(name, 0)
            if n >= limit:
                raise QuotaError(f"API key {name!r} has {n} jobs in flight, its limit; retry in {JOB_RETRY_S} s "
                                 "or when one has finished", retry_after_s=JOB_RETRY_S)
            self._in_flight[name] = n + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._in_flight[name] - 1
                if left:
                    self._in_flight[name] = left
                else:
                    del self._in_flight[name]


@dataclass
class _Day:
    """One key's live time on ``day`` (days since the epoch, UTC)."""

    day: int
    closed_s: float = 0.0
    #: Open sessions: lease id -> when its time on ``day`` started counting.
    open: dict[int, float] = field(default_factory=dict)


class LiveMinutes:
    """Live-session minutes per key and UTC day (see the module doc)."""

    def __init__(self, clock: WallClock = time.time) -> None:
        self.clock = clock
        self._days: dict[str, _Day] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def _today(self, name: str, now: float) -> _Day:
        day = int(now // DAY_S)
        st = self._days.get(name)
        if st is None:
            st = self._days[name] = _Day(day)
        elif st.day != day:  # a new day: yesterday's time is forgotten, open sessions count from midnight
            midnight = day * DAY_S
            st.day, st.closed_s = day, 0.0
            st.open = {i: max(t, midnight) for i, t in st.open.items()}
        return st

    def used_s(self, name: str) -> float:
        """Seconds of live sessions ``name`` used today, the open ones' included."""
        now = self.clock()
        with self._lock:
            st = self._today(name, now)
            return st.closed_s + sum(max(0.0, now - t) for t in st.open.values())

    def open(self, name: str, limit_minutes: float) -> LiveLease:
        """A lease for one more session of ``name``'s; QuotaError when today's minutes are used up."""
        if limit_minutes <= 0:
            raise ForbiddenError(f"API key {name!r} may not open live sessions (its live_minutes quota is 0)")
        if self.used_s(name) >= limit_minutes * 60.0:
            now = self.clock()
            retry = max(1, math.ceil(DAY_S - now % DAY_S))
            raise QuotaError(f"API key {name!r} used its {limit_minutes:g} live minutes for today (UTC); "
                             f"retry in {retry} s", retry_after_s=retry)
        lease_id = next(self._ids)
        now = self.clock()
        with self._lock:
            self._today(name, now).open[lease_id] = now
        return LiveLease(self, name, lease_id, limit_minutes)

    def _close(self, name: str, lease_id: int) -> None:
        now = self.clock()
        with self._lock:
            st = self._today(name, now)
            start = st.open.pop(lease_id, None)
            if start is not None:
                st.closed_s += max(0.0, now - start)


class LiveLease:
    """One open live session's claim on its key's live minutes (see :class:`LiveMinutes`)."""

    def __init__(self, minutes: LiveMinutes, name: str, lease_id: int, limit_minutes: float) -> None:
        self._minutes = minutes
        self.name = name
        self._id = lease_id
        self.limit_minutes = limit_minutes
        self.released = False

    def exhausted(self) -> str | None:
        """Why the session must end now (its key's minutes for today are used up), or None."""
        if not self.released and self._minutes.used_s(self.name) >= self.limit_minutes * 60.0:
            return f"the live minutes of API key {self.name!r} for today ({self.limit_minutes:g}) are used up"
        return None

    def release(self) -> None:
        """The session ended: its time so far is added to the day's (idempotent)."""
        if not self.released:
            self.released = True
            self._minutes._close(self.name, self._id)


class Quotas:
    """The three quotas of one replica, on one clock."""

    def __init__(self, clock: WallClock = time.time) -> None:
        self.clock = clock
        self.requests = RateLimiter(clock)
        self.jobs = JobCounter()
        self.live = LiveMinutes(clock)
