"""What the scheduler keeps per stream on the host side, its counters, and its one error.

A :class:`ScheduledStream` is shared between the scheduler's thread and the stream's consumer (under
the scheduler's lock): how many frames the consumer wants, how many are made and handed over, the
audio waiting for it, and the timings the metrics report. The stream's device state (its slot of
the decoder and of the codes) stays with the scheduler.
"""

from __future__ import annotations

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

    def push_audio(self, audio: np.ndarray) -> None:
        self.audio.append(audio)
        self.audio_samples += len(audio)

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
    steps: int = 0
    step_seconds: float = 0.0
    batch_rows: int = 0
    decodes: int = 0
    decode_seconds: float = 0.0
    slides: int = 0
    text_encodes: int = 0
