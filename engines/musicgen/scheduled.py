"""What the scheduler keeps per stream on the host side, its counters, and its one error.

A :class:`ScheduledStream` is shared between the scheduler's thread and the stream's consumer (under
the scheduler's lock): how many frames the consumer wants, how many are made and handed over, the
audio waiting for it, and the timings the metrics report. The stream's device state (its slot of
the decoder and of the codes) stays with the scheduler.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from engines.base import EngineBusy


class SchedulerFull(EngineBusy):
    """No free slot for another stream (admission control: the caller uses another engine or waits)."""


@dataclass
class ScheduledStream:
    """One stream's state on the scheduler's side (the slot's device state is in the decoder)."""

    sid: int
    seed: int
    text: str
    slot: int = -1
    #: Steps taken so far (the counter of the stream's random numbers).
    steps: int = 0
    #: Frames the consumer wants complete by now, and frames generated so far (absolute).
    target_frames: int = 0
    #: Absolute frame index of the slot's first frame (advances with each window slide).
    frame_base: int = 0
    #: The slot position at which the stream's window slides next.
    slide_at: int = 0
    #: Frames whose audio has been handed over.
    emitted_frames: int = 0
    pending_text: str | None = None
    audio: deque[np.ndarray] = field(default_factory=deque)
    audio_samples: int = 0
    closed: bool = False
    joined_at: float = 0.0
    first_audio_at: float | None = None
    text_changed_at: float | None = None
    #: First absolute frame made under the latest text (set when the text reaches the decoder).
    change_frame: int | None = None
    #: Per text change: clock seconds from :meth:`MusicGenScheduler.set_text` to the hand-over of the
    #: first audio made under the new text.
    text_audio_latencies: list[float] = field(default_factory=list)
    #: Where the stream's consumer waits for its audio (on the scheduler's lock): only this stream's
    #: hand-overs wake it, not every stream's -- hundreds of consumers wait on one replica.
    ready: threading.Condition = field(default_factory=threading.Condition, repr=False)
    #: Times the consumer woke up while waiting (a measure of needless wake-ups).
    wakeups: int = 0

    def push_audio(self, audio: np.ndarray) -> None:
        self.audio.append(audio)
        self.audio_samples += len(audio)

    def hand_over(self, audio: np.ndarray, frames: int, now: float, stats: SchedulerStats) -> None:
        """Give the consumer ``audio`` (the next ``frames`` frames) at clock ``now``; record in ``stats`` the
        time to the stream's first audio, and from a mood change to the first audio made under it."""
        self.push_audio(audio)
        self.emitted_frames += frames
        if self.first_audio_at is None:
            self.first_audio_at = now
            stats.first_audio_s.append(now - self.joined_at)
        changed, first_new = self.text_changed_at, self.change_frame
        if changed is not None and first_new is not None and self.emitted_frames > first_new:
            self.text_audio_latencies.append(now - changed)
            stats.mood_change_s.append(now - changed)
            self.text_changed_at = None

    def pop_audio(self, n: int) -> np.ndarray:
        """The next ``n`` samples waiting (the caller checked there are that many)."""
        parts: list[np.ndarray] = []
        need = n
        while need:
            head = self.audio[0]
            if len(head) <= need:
                parts.append(self.audio.popleft())
                need -= len(head)
            else:
                parts.append(head[:need])
                self.audio[0] = head[need:]
                need = 0
        self.audio_samples -= n
        return np.concatenate(parts)


@dataclass
class SchedulerStats:
    """The scheduler's counters, and the latencies observed since the last :meth:`drain`."""

    steps: int = 0
    step_seconds: float = 0.0
    batch_rows: int = 0
    decodes: int = 0
    decode_seconds: float = 0.0
    slides: int = 0
    text_encodes: int = 0
    #: Host seconds spent encoding texts and re-priming slides (on CUDA the device work is asynchronous:
    #: it shows in whichever phase next waits for the device, the audio decode).
    slide_seconds: float = 0.0
    text_seconds: float = 0.0
    #: Per joining stream, seconds to its first audio; per mood change, seconds to the first audio made
    #: under the new text.
    first_audio_s: list[float] = field(default_factory=list)
    mood_change_s: list[float] = field(default_factory=list)
    _drained: tuple[int, float, int] = (0, 0.0, 0)

    def drain(self) -> dict[str, object]:
        """Since the last call: steps, mean seconds per step, mean streams per step, and the latencies."""
        steps0, secs0, rows0 = self._drained
        self._drained = (self.steps, self.step_seconds, self.batch_rows)
        n = self.steps - steps0
        out = {"steps": n, "step_seconds": (self.step_seconds - secs0) / n if n else 0.0,
               "streams_per_step": (self.batch_rows - rows0) / n if n else 0.0,
               "first_audio_s": list(self.first_audio_s), "mood_change_s": list(self.mood_change_s)}
        self.first_audio_s.clear()
        self.mood_change_s.clear()
        return out
