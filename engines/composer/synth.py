"""Sample-accurate rendering of MIDI-like events with tinysoundfont.

One :class:`Renderer` per stream holds one persistent ``tinysoundfont.Synth``, so voices
ringing over a chunk boundary simply continue, and a queue of future events keyed by absolute
sample position. ``render(n)`` synthesises exactly ``n`` frames, applying each event at its
sample: the audio between two events is generated in one ``generate_simple`` call straight
into the output buffer (no copies). Rendering therefore does not depend on how the caller
splits the stream into chunks.

The soundfont is General MIDI ``TimGM6mb.sf2`` shipped inside the pretty_midi wheel. It (and
tinysoundfont) ignore reverb/chorus sends (CC91/93), so none are sent.
"""

from __future__ import annotations

import heapq
import logging
import os
from functools import lru_cache

import numpy as np

from engines.base import EngineUnavailable
from engines.settings import settings

log = logging.getLogger(__name__)

# Event ops; the value is also the order of events that fall on the same sample.
NOTE_OFF, SOUNDS_OFF, PROGRAM, CC, NOTE_ON = 0, 1, 2, 3, 4
DRUM_CHANNEL = 9

#: (sample, op, seq, channel, a, b)
Event = tuple[int, int, int, int, int, int]

#: tinysoundfont output gain in dB; with 4-5 parts at the preset volumes peaks stay < 0.9.
MASTER_GAIN_DB = 0.0
#: Soft-knee limiter: linear below KNEE, smoothly saturating towards CEILING above it.
KNEE, CEILING = 0.75, 0.89


#: Environment variable naming another General MIDI soundfont (.sf2/.sf3), e.g. Debian's
#: ``/usr/share/sounds/sf2/FluidR3_GM.sf2`` (package fluid-soundfont-gm) for richer sound.
SOUNDFONT_ENV = "BACKSCORE_SOUNDFONT"


@lru_cache(maxsize=4)
def soundfont_path(override: str | None = None) -> str:
    """The GM soundfont: ``$BACKSCORE_SOUNDFONT`` if set, else TimGM6mb.sf2 from the pretty_midi wheel."""
    chosen = override if override is not None else settings().soundfont
    if chosen:
        if not os.path.isfile(chosen):
            raise EngineUnavailable(
                f"{SOUNDFONT_ENV}={chosen}: no such soundfont file (unset it to use the built-in one)"
            )
        return chosen
    try:
        import pretty_midi
    except ImportError as e:  # pragma: no cover - pretty_midi is a hard dependency
        raise EngineUnavailable("the procedural composer needs pretty_midi (pip install pretty_midi)") from e
    path = os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")
    if not os.path.exists(path):  # pragma: no cover
        raise EngineUnavailable(f"soundfont not found at {path}; reinstall pretty_midi")
    return path


def soft_limit(x: np.ndarray) -> np.ndarray:
    """Stateless soft limiter (identity below :data:`KNEE`, peaks < :data:`CEILING`).

    Stateless, so it cannot introduce discontinuities at chunk joins."""
    a = np.abs(x)
    over = a > KNEE
    if np.any(over):
        room = CEILING - KNEE
        y = x.copy()
        y[over] = np.sign(x[over]) * (KNEE + room * np.tanh((a[over] - KNEE) / room))
        return y
    return x


class Renderer:
    """A persistent synth plus a queue of scheduled events (see module doc)."""

    def __init__(self, sample_rate: int, gain_db: float = MASTER_GAIN_DB) -> None:
        try:
            import tinysoundfont
        except ImportError as e:
            raise EngineUnavailable(
                "the procedural composer needs tinysoundfont (pip install --no-deps tinysoundfont)"
            ) from e
        self.sample_rate = sample_rate
        self.synth = tinysoundfont.Synth(gain=gain_db, samplerate=sample_rate)
        path = soundfont_path(settings().soundfont or "")
        try:
            self.sfid = self.synth.sfload(path)
        except Exception as exc:  # tinysoundfont raises plain exceptions for bad files
            raise EngineUnavailable(f"cannot load soundfont {path}: {exc}") from exc
        log.debug("renderer: %s at %d Hz, gain %.1f dB", path, sample_rate, gain_db)
        self.position = 0  # samples rendered so far
        self._queue: list[Event] = []
        self._seq = 0

    def schedule(self, sample: int, op: int, chan: int, a: int = 0, b: int = 0) -> None:
        """Queue an event; a sample in the past is played at the current position."""
        heapq.heappush(self._queue, (max(sample, self.position), op, self._seq, chan, a, b))
        self._seq += 1

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _apply(self, op: int, chan: int, a: int, b: int) -> None:
        s = self.synth
        if op == NOTE_ON:
            s.noteon(chan, a, b)
        elif op == NOTE_OFF:
            s.noteoff(chan, a)
        elif op == CC:
            s.control_change(chan, a, b)
        elif op == PROGRAM:  # a = bank, b = preset
            s.program_select(chan, self.sfid, a, b, chan == DRUM_CHANNEL)
        elif op == SOUNDS_OFF:
            s.sounds_off(chan)

    def render(self, n: int) -> np.ndarray:
        """Synthesise the next ``n`` frames as ``float32`` ``(n, 2)``, applying due events."""
        buf = bytearray(n * 8)
        view = memoryview(buf)
        end = self.position + n
        pos = self.position
        q = self._queue
        gen = self.synth.generate_simple
        while q and q[0][0] < end:
            sample, op, _, chan, a, b = heapq.heappop(q)
            if sample > pos:
                gen(sample - pos, buffer=view[(pos - self.position) * 8 : (sample - self.position) * 8])
                pos = sample
            self._apply(op, chan, a, b)
        if end > pos:
            gen(end - pos, buffer=view[(pos - self.position) * 8 :])
        self.position = end
        audio = np.frombuffer(buf, dtype=np.float32).reshape(n, 2)
        return soft_limit(audio)
