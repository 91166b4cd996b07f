"""A gate around the real composer, for tests that must catch an async job mid-way (cancel, limits, leaving clients).

:class:`GatedComposer` is the procedural composer whose first chunk waits until the job's cancel token is set
or the test opens the gate; :func:`gate` makes a gateway's jobs compose behind a new one. The job itself --
analysis, the compose loop and its cancellation checks, the mix, the outputs -- runs unchanged.
"""

from __future__ import annotations

import threading
import time

from engines.base import MoodControl, MusicChunk, MusicEngine, MusicStream, MusicStreamOptions
from engines.composer import ProceduralMusicEngine
from pipelines.cancel import current_token
from pipelines.jobs import JobWork
from serve.core import GatewayCore

WAIT_S = 120.0  # an upper bound for a short job on a busy machine, never a timing assertion


class GatedStream(MusicStream):
    def __init__(self, gate: GatedComposer, inner: MusicStream) -> None:
        self.gate, self.inner = gate, inner

    def generate(self, control: MoodControl, min_duration_s: float = 0.0) -> MusicChunk:
        self.gate.calls += 1
        if self.gate.calls == 1:
            self.gate.entered.set()
            token = current_token()
            deadline = time.monotonic() + WAIT_S
            while not self.gate.opened.is_set() and not (token is not None and token.cancelled):
                if time.monotonic() > deadline:
                    raise RuntimeError("the gate was never opened")
                time.sleep(0.005)
        return self.inner.generate(control, min_duration_s)


class GatedComposer(MusicEngine):
    """The real composer whose first chunk waits until the job is cancelled or :attr:`opened` is set."""

    name = "procedural"

    def __init__(self) -> None:
        self.inner = ProceduralMusicEngine()
        self.change_latency_chunks = self.inner.change_latency_chunks
        self.calls = 0
        self.entered = threading.Event()
        self.opened = threading.Event()

    def open_stream(self, options: MusicStreamOptions) -> MusicStream:
        return GatedStream(self, self.inner.open_stream(options))

    def tempo_band(self, control: MoodControl, options: MusicStreamOptions) -> tuple[float, float, float] | None:
        return self.inner.tempo_band(control, options)


def gate(core: GatewayCore) -> GatedComposer:
    """Jobs of ``core`` from now on compose behind a new gate."""
    g = GatedComposer()
    core.job_store.work = JobWork(music_engine=lambda name, weights: g)
    return g
