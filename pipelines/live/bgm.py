"""The output side of a live session: BGM generated ahead of the play head, mood changes spliced in on a beat.

:class:`BgmPlayer` keeps ``lead_s`` of BGM ahead of the play head in a
:class:`~pipelines.live.buffers.PlayoutBuffer`, one chunk (a bar, for the composer) at a time,
steered by the current mood. When the tracker confirms a new mood, a new music stream is opened
in that mood and spliced in at the old music's next beat after ``splice_delay_s``, with an
equal-power crossfade -- the live counterpart of the offline job's transition bar, which would
make the change wait for the bar to end. A worker that lost the stream restores it (a new piece
in the same mood, crossfaded in).

An *urgent* change (confirmed by the analyzer's fast path on immediate evidence: a cut into an
action scene, a sudden loud passage) does not wait for the old music's next beat: the queued
music is cut at the first half beat (``urgent_division``) after ``urgent_splice_delay_s`` with a
short equal-power crossfade (``urgent_crossfade_s``, a few ms: no click), and the music loop is
woken at once rather than at its next tick.

Per change the player keeps: the *latency* (clock s from the tracker's confirmation to the play
head reaching the splice point, where the new music is heard), the *detection* (media s from when
the new mood began to its confirmation) and the *audible delay* (their sum: from the change in the
video to the new music heard). A change counts in :attr:`BgmPlayer.mood_changes` once it is heard.
A transport that pulls frames before it sends them (the WebRTC track encodes ahead) says how much
later each goes out (``heard_in_s``), and the latency counts to then.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.base import BarInfo, MoodControl
from pipelines.clock import Clock
from pipelines.frames import AUDIO_RATE
from pipelines.live.buffers import PlayoutBuffer
from pipelines.live.models import LiveModels
from pipelines.live.music import MusicContext, MusicReply, MusicRequest
from pipelines.live.options import LiveOptions
from pipelines.live.reports import LiveHooks

#: How often the music loop looks at the buffer when it is full enough (s).
TICK_S = 0.1


@dataclass
class _PlacedBar:
    start: int  # absolute output sample
    bar: BarInfo
    end: int = 0  # cut short when new music is spliced in

    def __post_init__(self) -> None:
        if not self.end:
            self.end = self.start + int(round(self.bar.duration_s * AUDIO_RATE))


@dataclass
class _PendingChange:
    confirmed_at: float  # clock time
    splice_at: int  # absolute output sample
    detect_s: float | None  # media s from when the new mood began to its confirmation
    urgent: bool = False


class BgmPlayer:
    """See the module doc. :meth:`run` fills the buffer; :meth:`pull` takes each output frame's BGM."""

    def __init__(self, models: LiveModels, options: LiveOptions, clock: Clock, hooks: LiveHooks, session_id: str,
                 log: logging.LoggerAdapter[Any]) -> None:
        self.models, self.options, self.clock, self.hooks, self.log = models, options, clock, hooks, log
        self.session_id = session_id
        self.playout = PlayoutBuffer(AUDIO_RATE)
        self._stream_n = itertools.count()
        self._ctx: MusicContext | None = None
        #: The mood the music is in now (None before the first chunk).
        self.music_emotion: str | None = None
        self._bars: deque[_PlacedBar] = deque()
        self._pending: _PendingChange | None = None
        self._switch_to: str | None = None
        self._detect_s: float | None = None
        self._urgent = False
        self._confirmed_at = 0.0
        #: Mood changes heard so far (see the module doc), and how many of them the fast path confirmed.
        self.mood_changes = 0
        self.urgent_changes = 0
        #: Per mood change heard: confirmation -> new music at the play head (clock s); media s from
        #: when the new mood began (dated back by the tracker) to its confirmation; their sum.
        self.latencies: list[float] = []
        self.detections: list[float] = []
        self.audible: list[float] = []
        #: The last change heard: (latency, detection or None, audible delay or None).
        self.last_change: tuple[float, float | None, float | None] | None = None
        self.music_restores = 0
        #: The engine that plays, and why it is not the one asked for (None: it is).
        self.engine = ""
        self.engine_note: str | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def change_mood(self, emotion: str, detect_s: float, urgent: bool = False) -> None:
        """The tracker confirmed ``emotion``: switch to it at the next beat (unless the music is in it);
        ``urgent`` (the fast path): at the next half beat, with a short crossfade."""
        if self.music_emotion is not None and emotion != self.music_emotion:
            self._switch_to = emotion
            self._detect_s = detect_s
            self._urgent = urgent
            self._confirmed_at = self.clock.now()
            self._wake.set()
        elif self._switch_to is not None and emotion == self.music_emotion:
            self._switch_to = None  # back to the mood that plays before the switch happened

    # ------------------------------------------------------------------ generating
    def _new_context(self) -> MusicContext:
        n = next(self._stream_n)
        return MusicContext(stream_id=f"{self.session_id}:{n}", seed=self.options.seed * 7919 + n,
                            style=self.options.style, engine=self.options.engine)

    async def _request(self, ctx: MusicContext, control: MoodControl) -> MusicReply:
        t0 = self.clock.now()
        reply = await self.models.music(MusicRequest(ctx, control))
        self.hooks.stage("music", self.clock.now() - t0)
        if reply.restored:
            self.music_restores += 1
        if reply.engine and reply.engine != self.engine:
            self.engine, self.engine_note = reply.engine, reply.fallback
            if reply.fallback:
                self.log.warning("music: %s", reply.fallback)
        return reply

    def _place(self, reply: MusicReply, at: int) -> None:
        """Remember the bars of audio placed at absolute output sample ``at`` (for beats and reports)."""
        base = at - int(round((reply.bars[0].start_s if reply.bars else 0.0) * AUDIO_RATE))
        for b in reply.bars:
            self._bars.append(_PlacedBar(base + int(round(b.start_s * AUDIO_RATE)), b))

    def _next_beat(self, after: int, division: int = 1) -> int:
        """The first beat (``1 / division`` of a beat) of the placed music at or after ``after``."""
        for pb in self._bars:
            if pb.end <= after:
                continue
            beat = max(1, int(round(60.0 / pb.bar.tempo_bpm / division * AUDIO_RATE)))
            k = max(0, math.ceil((after - pb.start) / beat))
            t = pb.start + k * beat
            if t < pb.end:
                return t
        return after

    async def _switch(self, emotion: str, control: MoodControl) -> None:
        confirmed, detect, urgent = self._confirmed_at, self._detect_s, self._urgent
        self._detect_s = None
        old = self._ctx
        self._ctx = self._new_context()
        reply = await self._request(self._ctx, control)
        self._ctx = reply.context
        o = self.options
        if urgent:
            earliest = self.playout.head + int(o.urgent_splice_delay_s * AUDIO_RATE)
            at = self._next_beat(earliest, o.urgent_division)
            fade = int(o.urgent_crossfade_s * AUDIO_RATE)
        else:
            at = self._next_beat(self.playout.head + int(o.splice_delay_s * AUDIO_RATE))
            fade = int(o.crossfade_s * AUDIO_RATE)
        at = self.playout.splice(at, reply.audio, fade)
        while self._bars and self._bars[-1].start >= at:
            self._bars.pop()
        if self._bars and self._bars[-1].end > at:
            self._bars[-1].end = at
        self._place(reply, at)
        self.music_emotion = emotion
        self._pending = _PendingChange(confirmed, at, detect, urgent)
        if old is not None:
            with contextlib.suppress(Exception):
                await self.models.close_music(old.stream_id)

    async def run(self, control: Callable[[], MoodControl | None]) -> None:
        """Keep the buffer topped up with music for ``control()``, for ever (cancel to stop)."""
        o = self.options
        while True:
            ctl = control()
            if ctl is not None:
                if self._ctx is None:
                    self._ctx = self._new_context()
                    self.music_emotion = ctl.emotion
                if self._switch_to is not None:
                    emotion, self._switch_to = self._switch_to, None
                    await self._switch(emotion, ctl)
                elif self.playout.buffered_s < o.lead_s:
                    reply = await self._request(self._ctx, ctl)
                    if reply.restored:  # the worker lost our stream: crossfade into the restored one
                        at = self.playout.splice(self.playout.end, reply.audio, int(o.crossfade_s * AUDIO_RATE))
                    else:
                        at = self.playout.end
                        self.playout.append(reply.audio)
                    self._ctx = reply.context
                    self._place(reply, at)
                    continue  # top up again without waiting
            self._wake.clear()
            if ctl is None:
                await self._wake.wait()
            else:
                await self._nap()

    async def _nap(self) -> None:
        """Wait ``TICK_S`` on the clock, or less when woken (a mood change, the buffer running low)."""
        woken = asyncio.ensure_future(self._wake.wait())
        tick = asyncio.ensure_future(self.clock.sleep(TICK_S))
        try:
            await asyncio.wait({woken, tick}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            tick.cancel()

    async def close(self) -> None:
        """Close the music stream the worker holds for this session."""
        if self._ctx is not None:
            with contextlib.suppress(Exception):
                await self.models.close_music(self._ctx.stream_id)

    # ------------------------------------------------------------------ playing
    def pull(self, n: int, heard_in_s: float = 0.0) -> np.ndarray:
        """The BGM of the next ``n`` output samples (silence, counted as an underrun, where none is ready).
        ``heard_in_s``: they go out that much later (a transport that encodes ahead); a change's latency
        counts to then."""
        before = self.playout.underruns
        bgm = self.playout.pull(n)
        if self.playout.underruns != before:
            self.hooks.underrun()
        if self._pending is not None and self.playout.head >= self._pending.splice_at:
            latency = self.clock.now() + heard_in_s - self._pending.confirmed_at
            # detection, latency and audible delay of the same change, then the count the reports carry
            detect = self._pending.detect_s
            if detect is not None:
                self.detections.append(detect)
                self.audible.append(detect + latency)
            self.latencies.append(latency)
            # the last change's own figures (its detection may be unknown: then none, not an older one's)
            self.last_change = (latency, detect, None if detect is None else detect + latency)
            self.mood_changes += 1
            self.urgent_changes += self._pending.urgent
            self.hooks.mood_change(latency)
            self._pending = None
        while self._bars and self._bars[0].end <= self.playout.head:
            self._bars.popleft()
        if self.playout.buffered_s < self.options.lead_s:
            self._wake.set()
        return bgm

    def playing_bar(self) -> BarInfo | None:
        head = self.playout.head
        for pb in self._bars:
            if pb.start <= head < pb.end:
                return pb.bar
        return None
