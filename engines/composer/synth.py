"""Sample-accurate rendering of MIDI-like events with tinysoundfont.

One :class:`Renderer` per stream holds one persistent ``tinysoundfont.Synth``, so voices
ringing over a chunk boundary simply continue, and a queue of future events keyed by absolute
sample position. ``render(n)`` synthesises exactly ``n`` frames, applying each event at its
sample: the audio between two events is generated in one ``generate_simple`` call straight
into the output buffer (no copies). Rendering therefore does not depend on how the caller
splits the stream into chunks.

The soundfont is General MIDI ``TimGM6mb.sf2`` shipped inside the pretty_midi wheel. It (and
tinysoundfont) ignore reverb/chorus sends (CC91/93), so none are sent.

Recording (for MIDI and stems, :mod:`.export`): a Renderer given an :class:`EventLog` writes down
every event as it applies it (sample, op, channel, a, b) and where each ``render`` call ended. The
synth is linear in its voices, but *where* its output is cut into ``generate_simple`` calls matters
(envelopes and LFOs advance in 64-sample blocks from the start of each call: replaying a part alone
without the other parts' cuts differs by about -30 dB), so :func:`EventLog.split_points` gives back
every cut and a replay (:func:`replay_chunks`) makes exactly the same calls: each stem's synth then
computes its voices sample for sample as the full render did.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

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


@dataclass
class EventLog:
    """What a recording :class:`Renderer` played (see the module doc).

    ``events``: ``(sample, op, channel, a, b)`` in the order they were applied; ``ends``: the sample
    where each ``render`` call ended; ``parts``: ``(sample, channel, role, program)`` -- from
    ``sample`` on, ``channel`` plays a part of this role (set by the composer when it sets a channel
    up; drums are role ``"drums"``)."""

    sample_rate: int
    gain_db: float
    events: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    parts: list[tuple[int, int, str, int]] = field(default_factory=list)

    def assign(self, sample: int, channel: int, role: str, program: int) -> None:
        self.parts.append((sample, channel, role, program))

    def role_at(self) -> Callable[[int, int], str]:
        """``f(channel, sample)``: the role ``channel`` plays at ``sample`` (``""`` before any)."""
        table: dict[int, tuple[list[int], list[str]]] = {}
        for sample, chan, role, _ in sorted(self.parts, key=lambda p: p[0]):
            starts, roles = table.setdefault(chan, ([], []))
            starts.append(sample)
            roles.append(role)

        def f(chan: int, sample: int) -> str:
            starts, roles = table.get(chan, ([], []))
            i = bisect.bisect_right(starts, sample) - 1
            return roles[i] if i >= 0 else ""

        return f


def replay_chunks(log: EventLog, synths: list[tuple[Any, int]], keep: Callable[[int, int, int], int | None],
                  stop: int | None = None) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Play ``log`` again into several tinysoundfont synths at once, cut exactly as it was rendered.

    Every event but NOTE_ON goes to every synth (controllers, program changes, note-offs and sound-offs
    are per channel, so each synth's voices see what they saw in the full render); a NOTE_ON goes only
    to synth ``keep(sample, channel, key)`` (``None``: dropped). Yields ``(start, [float32 (n, 2) per
    synth])`` per original ``render`` call, before any limiting, up to ``stop`` samples."""
    events, ends = log.events, log.ends
    stop = ends[-1] if stop is None or not ends else min(stop, ends[-1])
    i, pos = 0, 0
    for end in ends:
        if pos >= stop:
            break
        n = end - pos
        bufs = [bytearray(n * 8) for _ in synths]
        views = [memoryview(b) for b in bufs]
        cut = pos
        while i < len(events) and events[i][0] < end:
            sample, op, chan, a, b = events[i]
            if sample > cut:
                lo, hi = (cut - pos) * 8, (sample - pos) * 8
                for (synth, _), v in zip(synths, views, strict=True):
                    synth.generate_simple(sample - cut, buffer=v[lo:hi])
                cut = sample
            if op == NOTE_ON:
                target = keep(sample, chan, a)
                if target is not None:
                    apply_event(*synths[target], op, chan, a, b)
            else:
                for synth, sfid in synths:
                    apply_event(synth, sfid, op, chan, a, b)
            i += 1
        if end > cut:
            for (synth, _), v in zip(synths, views, strict=True):
                synth.generate_simple(end - cut, buffer=v[(cut - pos) * 8:])
        yield pos, [np.frombuffer(b, dtype=np.float32).reshape(n, 2) for b in bufs]
        pos = end


def apply_event(synth: Any, sfid: int, op: int, chan: int, a: int, b: int) -> None:
    """Apply one event to a tinysoundfont synth (``sfid``: its loaded soundfont)."""
    if op == NOTE_ON:
        synth.noteon(chan, a, b)
    elif op == NOTE_OFF:
        synth.noteoff(chan, a)
    elif op == CC:
        synth.control_change(chan, a, b)
    elif op == PROGRAM:  # a = bank, b = preset
        synth.program_select(chan, sfid, a, b, chan == DRUM_CHANNEL)
    elif op == SOUNDS_OFF:
        synth.sounds_off(chan)


def load_synth(sample_rate: int, gain_db: float = MASTER_GAIN_DB) -> tuple[Any, int]:
    """A tinysoundfont synth with the GM soundfont loaded, and the soundfont's id."""
    try:
        import tinysoundfont
    except ImportError as e:
        raise EngineUnavailable(
            "the procedural composer needs tinysoundfont (pip install --no-deps tinysoundfont)"
        ) from e
    synth = tinysoundfont.Synth(gain=gain_db, samplerate=sample_rate)
    path = soundfont_path(settings().soundfont or "")
    try:
        sfid = synth.sfload(path)
    except Exception as exc:  # tinysoundfont raises plain exceptions for bad files
        raise EngineUnavailable(f"cannot load soundfont {path}: {exc}") from exc
    log.debug("synth: %s at %d Hz, gain %.1f dB", path, sample_rate, gain_db)
    return synth, sfid


class Renderer:
    """A persistent synth plus a queue of scheduled events (see module doc)."""

    def __init__(self, sample_rate: int, gain_db: float = MASTER_GAIN_DB) -> None:
        self.sample_rate = sample_rate
        self.synth, self.sfid = load_synth(sample_rate, gain_db)
        self.gain_db = gain_db
        #: Set to an :class:`EventLog` to record what is played (see the module doc).
        self.recording: EventLog | None = None
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
        apply_event(self.synth, self.sfid, op, chan, a, b)

    def render(self, n: int) -> np.ndarray:
        """Synthesise the next ``n`` frames as ``float32`` ``(n, 2)``, applying due events."""
        buf = bytearray(n * 8)
        view = memoryview(buf)
        end = self.position + n
        pos = self.position
        q = self._queue
        gen = self.synth.generate_simple
        rec = self.recording
        while q and q[0][0] < end:
            sample, op, _, chan, a, b = heapq.heappop(q)
            if sample > pos:
                gen(sample - pos, buffer=view[(pos - self.position) * 8 : (sample - self.position) * 8])
                pos = sample
            self._apply(op, chan, a, b)
            if rec is not None:
                rec.events.append((sample, op, chan, a, b))
        if end > pos:
            gen(end - pos, buffer=view[(pos - self.position) * 8 :])
        if rec is not None and n > 0:
            rec.ends.append(end)
        self.position = end
        audio = np.frombuffer(buf, dtype=np.float32).reshape(n, 2)
        return soft_limit(audio)
