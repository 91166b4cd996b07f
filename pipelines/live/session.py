"""A live session: media in as it arrives, mood-following BGM out in paced 20 ms frames.

The session is transport-agnostic: WebRTC (``serve.webrtc``), the gRPC ``Stream`` call and the
tests push :class:`~pipelines.frames.VideoFrame` / :class:`~pipelines.frames.AudioFrame` items
stamped in session media seconds, and a paced reader (:mod:`pipelines.live.pacing`) pulls output
frames with :meth:`LiveSession.pull_frame`.

Three loops, all on the event loop:

* **analysis** -- :class:`~pipelines.live.analyzer.LiveAnalyzer`: windows analysed as the media
  fills them, the rolling mood.
* **music** -- :class:`~pipelines.live.bgm.BgmPlayer`: BGM kept ahead of the play head in the
  current mood; a confirmed mood change is spliced in at the old music's next beat.
* **reports** -- a :class:`~pipelines.live.reports.MoodReport` about once a second for the
  client (data channel, gRPC message).

The session wires the two halves together, mixes each output frame (BGM gain, ducking under
speech, optionally the client's own audio under it) and reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from engines.base import EMOTIONS, AffectEstimate, BarInfo, MoodControl
from pipelines.analysis.mood import MoodTracker
from pipelines.clock import Clock, SystemClock
from pipelines.frames import AudioFrame, VideoFrame
from pipelines.live.analyzer import LiveAnalyzer
from pipelines.live.bgm import BgmPlayer
from pipelines.live.buffers import PlayoutBuffer
from pipelines.live.inference import AffectStep
from pipelines.live.models import LiveModels
from pipelines.live.options import LiveOptions
from pipelines.live.reports import LiveHooks, MoodReport, NullHooks
from pipelines.live.retry import RetryingModels, RetryPolicy

log = logging.getLogger(__name__)


class LiveSession:
    """See the module doc. Create, :meth:`start`, push media, pull frames, :meth:`close`."""

    def __init__(
        self,
        models: LiveModels,
        options: LiveOptions | None = None,
        *,
        clock: Clock | None = None,
        hooks: LiveHooks | None = None,
        session_id: str | None = None,
        on_report: Callable[[MoodReport], None] | None = None,
    ) -> None:
        self.options = o = options or LiveOptions()
        self.models = models
        self.clock: Clock = clock or SystemClock()
        self.hooks: LiveHooks = hooks or NullHooks()
        self.session_id = session_id or uuid.uuid4().hex[:12]
        self.on_report = on_report
        self.log = logging.LoggerAdapter(log, {"session": self.session_id})
        # every model call is retried while a replica is replaced (pipelines.live.retry)
        models = self.retrying = RetryingModels(models, self.clock, self.hooks, self.log,
                                                RetryPolicy(budget_s=o.retry_budget_s))
        self.analyzer = LiveAnalyzer(models, o, self.clock, self.hooks, self.log, self._on_window)
        self.player = BgmPlayer(models, o, self.clock, self.hooks, self.session_id, self.log)
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        #: The error that stopped one of the loops (the transports end the session on it).
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._guard(self.analyzer.run()), name=f"analysis-{self.session_id}"),
            asyncio.create_task(self._guard(self.player.run(self.analyzer.control)), name=f"music-{self.session_id}"),
            asyncio.create_task(self._guard(self._report_loop()), name=f"report-{self.session_id}"),
        ]
        self.log.info("live session started")

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surfaced through .error and the log; the session stays up
            self.error = exc
            self.log.exception("live session loop failed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.player.close()
        if self.degrade_level:  # the session no longer counts at its level
            self.hooks.degraded(0, self.degrade_level)
        self.log.info("live session closed: %d windows (%d dropped), %d mood changes, %d underruns",
                      self.windows_done, self.windows_dropped, self.mood_changes, self.playout.underruns)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ input
    def push_video(self, frame: VideoFrame) -> None:
        """An analysis frame (already sampled to the analysis rate and made small)."""
        self.analyzer.push_video(frame)

    def push_audio(self, frame: AudioFrame) -> None:
        """Client audio at 48 kHz stereo float32, stamped in session media seconds."""
        self.analyzer.push_audio(frame)

    # ------------------------------------------------------------------ analysis under load
    def set_degrade(self, level: int) -> None:
        """Shed analysis under load (:mod:`pipelines.live.admission`): 0 full; 1 half the analysis frame
        rate; 2 faces skipped too. The music is never degraded; the mood follows on what is analysed."""
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 2:
            raise ValueError(f"degrade level must be 0, 1 or 2, got {level!r}")
        previous = self.analyzer.degrade_level
        if level != previous and not self._closed:
            self.analyzer.set_degrade(level)
            self.hooks.degraded(level, previous)
            self.log.info("analysis degrade level %d -> %d", previous, level)

    @property
    def degrade_level(self) -> int:
        return self.analyzer.degrade_level

    @property
    def analysis_faces(self) -> bool:
        """Whether grey pictures for faces are wanted now (not at degrade level 2)."""
        return self.analyzer.degrade_level < 2

    def _on_window(self, step: AffectStep, end_s: float) -> None:
        change = step.change
        if change is not None:
            self.log.info("mood -> %s (began %.1f s, confirmed %.1f s%s)", change.emotion, change.at_s,
                          change.confirmed_s, ", fast path" if change.urgent else "")
            # detection: from when the new mood began to now, in media seconds received (analysis lag included)
            detect = max(end_s, self.analyzer.media_s) - change.at_s
            self.player.change_mood(change.emotion, detect, urgent=change.urgent)
        self.player.wake()

    # ------------------------------------------------------------------ output
    def pull_frame(self, heard_in_s: float = 0.0) -> np.ndarray:
        """The next output frame: ``float32`` ``(frame_samples, 2)`` (BGM, or BGM under the client's audio).
        ``heard_in_s``: the transport sends it that much later (it encodes ahead); mood-change latency
        counts to then."""
        o = self.options
        n = o.frame_samples
        bgm = self.player.pull(n, heard_in_s)
        gain_db = o.mixed_bgm_gain_db if o.mix_original else o.bgm_gain_db
        if self.analyzer.speech > 0.5:
            gain_db += o.duck_db
        out = bgm * np.float32(10 ** (gain_db / 20))
        if o.mix_original:
            out = out + self.analyzer.take_original(n)
        return np.clip(out, -1.0, 1.0)

    # ------------------------------------------------------------------ state, for transports and tests
    def control(self) -> MoodControl | None:
        return self.analyzer.control()

    def playing_bar(self) -> BarInfo | None:
        return self.player.playing_bar()

    @property
    def tracker(self) -> MoodTracker:
        return self.analyzer.tracker

    @property
    def latest(self) -> AffectEstimate | None:
        return self.analyzer.latest

    @property
    def windows_done(self) -> int:
        return self.analyzer.windows_done

    @property
    def windows_dropped(self) -> int:
        return self.analyzer.windows_dropped

    @property
    def playout(self) -> PlayoutBuffer:
        return self.player.playout

    @property
    def mood_changes(self) -> int:
        return self.player.mood_changes

    @property
    def latencies(self) -> list[float]:
        return self.player.latencies

    @property
    def detections(self) -> list[float]:
        return self.player.detections

    @property
    def audible(self) -> list[float]:
        """Per mood change heard: media s from when the new mood began to the new music at the play head."""
        return self.player.audible

    @property
    def music_restores(self) -> int:
        return self.player.music_restores

    # ------------------------------------------------------------------ reports
    def report(self) -> MoodReport:
        a, p = self.analyzer, self.player
        est = a.latest
        bar = p.playing_bar()
        last = p.last_change
        music = None if bar is None else {
            "tempo_bpm": round(bar.tempo_bpm, 1), "key": bar.key, "mode": bar.mode, "style": bar.style,
            "emotion": bar.emotion, "chord": bar.chord, "section": bar.section, "transition": bar.transition,
            "engine": p.engine, **({"engine_note": p.engine_note} if p.engine_note else {}),
        }
        return MoodReport(
            session_id=self.session_id,
            media_s=round(a.media_s, 3),
            valence=round(a.va[0], 3),
            arousal=round(a.va[1], 3),
            emotion=a.emotion() or "neutral",
            confidence=round(est.confidence, 3) if est else 0.0,
            probs={e: round(pr, 3) for e, pr in zip(EMOTIONS, est.probs, strict=True)} if est else {},
            music=music,
            underruns=p.playout.underruns,
            buffer_s=round(p.playout.buffered_s, 3),
            windows=a.windows_done,
            mood_changes=p.mood_changes,
            last_change_latency_s=_rounded(last[0]) if last else None,
            last_change_detect_s=_rounded(last[1]) if last else None,
            last_change_audible_s=_rounded(last[2]) if last else None,
            urgent_changes=p.urgent_changes,
            degraded=a.degrade_level,
        )

    async def _report_loop(self) -> None:
        while True:
            await self.clock.sleep(self.options.report_interval_s)
            if self.on_report is not None:
                self.on_report(self.report())


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 3)
