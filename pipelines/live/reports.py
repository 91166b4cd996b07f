"""What a live session tells the outside world: :class:`MoodReport` to its client about once a second,
:class:`LiveHooks` to the metrics (Prometheus in the service, a recorder in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class LiveHooks(Protocol):
    """Observability callbacks (Prometheus in the service; a recorder in tests)."""

    def stage(self, name: str, seconds: float) -> None: ...

    def underrun(self) -> None: ...

    def mood_change(self, latency_s: float) -> None: ...

    def windows_dropped(self, n: int) -> None: ...

    def retry(self, call: str) -> None: ...

    def degraded(self, level: int, previous: int) -> None:
        """A session's analysis degrade level changed (0 full, 1 half frame rate, 2 no faces either)."""
        ...


class NullHooks:
    def stage(self, name: str, seconds: float) -> None:
        pass

    def underrun(self) -> None:
        pass

    def mood_change(self, latency_s: float) -> None:
        pass

    def windows_dropped(self, n: int) -> None:
        pass

    def retry(self, call: str) -> None:
        pass

    def degraded(self, level: int, previous: int) -> None:
        pass


@dataclass(frozen=True)
class MoodReport:
    """What the client is told about once a second."""

    session_id: str
    media_s: float
    valence: float
    arousal: float
    emotion: str
    confidence: float
    probs: dict[str, float]
    music: dict[str, Any] | None
    underruns: int
    buffer_s: float
    windows: int
    mood_changes: int
    last_change_latency_s: float | None
    #: Media seconds from when the new mood began (dated back by the tracker; the onset, for a change the
    #: fast path confirmed) to its confirmation.
    last_change_detect_s: float | None = None
    #: From when the new mood began to the new music heard (detection plus the latency above).
    last_change_audible_s: float | None = None
    #: Mood changes heard so far that the fast path confirmed (immediate evidence; the rest: hysteresis).
    urgent_changes: int = 0
    #: The analysis degrade level under load (0 full; 1 half the analysis frame rate; 2 faces skipped too).
    degraded: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"type": "mood", **self.__dict__}
