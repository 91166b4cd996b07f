"""The input side of a live session: media history, windows analysed as they fill, the rolling mood.

:class:`LiveAnalyzer` keeps the recent frames' feature rows and the client's audio (a
:class:`~pipelines.live.buffers.SampleRing`). When both tracks have reached a window's end (2 s
windows every 0.5 s, like the offline job), the new frames are encoded, cuts re-detected on the
recent frames, the window's sound encoded, and the window goes through the affect model and the
rolling :class:`~pipelines.analysis.mood.MoodTracker`; ``on_window`` is told each step. If
analysis falls behind the media by more than ``max_lag_s``, the oldest due windows are dropped
(counted), so latency cannot grow. Every model call is awaited through
:class:`~pipelines.live.models.LiveModels` (off-loop or remote).

The fast path (``options.fast_path``): at each window end the analyzer also looks for *onsets* --
shot cuts among the recent frames and sudden loud passages in 50 ms sound levels it keeps itself
-- whose ``onset.window_s`` after has arrived. An onset with immediate evidence
(:func:`~pipelines.analysis.cuts.onset_evidence`: a cut with a jump in loudness, brightness or
motion, or a loud passage) gets its short window analysed at once and pushed to the armed tracker,
which may confirm the new mood then (``change.urgent``); the controls jump to that window's
valence, arousal and pace, and the windows still straddling the onset no longer move them. A live
client's sound may arrive up to ``onset.max_skew_s`` before or after its picture: the short window's
sound starts at the sound's own step near the cut (:func:`~pipelines.analysis.cuts.sound_step`), and a
cut whose sound has not stepped yet is looked at again at the next window end. A passage that gets
louder because someone starts talking is not evidence.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from engines.base import AffectEstimate, MoodControl
from pipelines.analysis.cuts import (
    Evidence,
    block_power,
    detect_cuts,
    loud_passages,
    onset_evidence,
    sound_step,
)
from pipelines.analysis.mood import MoodTracker
from pipelines.analysis.sound import SILENT_TRACK_PEAK, to_mono16k
from pipelines.analysis.windows import FrameTable, frame_window_features, onset_window_features
from pipelines.clock import Clock
from pipelines.frames import AUDIO_RATE, AudioFrame, VideoFrame
from pipelines.live.buffers import OriginalAudio, SampleRing
from pipelines.live.inference import AffectStep
from pipelines.live.models import LiveModels
from pipelines.live.options import LiveOptions
from pipelines.live.reports import LiveHooks
from pipelines.live.thinning import FrameThinning

#: Unencoded analysis frames kept when encoding falls behind (the oldest are dropped).
MAX_PENDING_FRAMES = 256
#: A loud passage without a cut whose short window is this much speech is someone talking, not a new mood.
SPEECH_ONSET = 0.5
#: The short window's sound is at least this long (a sound step later than that is not looked for).
MIN_ONSET_SOUND_S = 0.3
#: Client audio kept for mixing back under the BGM (``mix_original``), s; the oldest is dropped.
ORIGINAL_AUDIO_S = 0.5


class LiveAnalyzer:
    """See the module doc. Push media; :meth:`run` analyses; read :meth:`control` for the music."""

    def __init__(self, models: LiveModels, options: LiveOptions, clock: Clock, hooks: LiveHooks,
                 log: logging.LoggerAdapter[Any], on_window: Callable[[AffectStep, float], None]) -> None:
        self.models, self.options, self.clock, self.hooks, self.log = models, options, clock, hooks, log
        self.on_window = on_window
        # --- input
        self._frames: deque[VideoFrame] = deque()  # not yet encoded
        self._table_t: deque[float] = deque()
        self._table_rows: deque[np.ndarray] = deque()
        self._face_t: deque[float] = deque()
        self._face_rows: deque[np.ndarray] = deque()
        self._prev_rgb: np.ndarray | None = None
        self.video_t = -math.inf  # pts of the newest video frame
        self._audio = SampleRing(int(options.history_s * AUDIO_RATE))  # analysis history, 48 kHz stereo
        self._audio_t0 = 0.0  # media time of the ring's sample 0
        self.audio_end = -math.inf
        self._audio_seen_at: float | None = None  # clock time of the last audio push
        self._original = OriginalAudio(ORIGINAL_AUDIO_S)  # client audio to mix back
        # --- analysis state
        self.next_window = 0
        self.tracker = MoodTracker(options.segments)
        self.latest: AffectEstimate | None = None
        self.va = (0.0, 0.0)
        self.pace = 0.0
        #: Speech probability of the latest window (the BGM ducks under it).
        self.speech = 0.0
        self.windows_done = 0
        self.windows_dropped = 0
        #: Under load (:meth:`set_degrade`): 1 analyses every other frame, 2 also skips faces.
        self.thinning = FrameThinning()
        # --- the fast path: sound levels (block start media s, mean square), onsets looked at
        self._level_t: deque[float] = deque()
        self._level_p: deque[float] = deque()
        self._level_next: int | None = None  # ring index of the next level block
        self._onset_seen = -math.inf  # candidates up to here were looked at
        self._levels_due = -math.inf  # loud passages starting up to here were looked for
        self._deferred = -math.inf  # a cut looked at again once, its sound step not there yet
        self._settle_until = -math.inf  # windows centred before this straddle a fast-path change
        #: Onsets with immediate evidence analysed, and the changes they confirmed.
        self.onsets = 0
        self.fast_changes = 0
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ input
    def push_video(self, frame: VideoFrame) -> None:
        """An analysis frame (already sampled to the analysis rate and made small)."""
        if frame.pts_s <= self.video_t:
            return  # out of order / duplicate
        self.video_t = frame.pts_s
        self._wake.set()
        if not self.thinning.keep(frame):
            return  # the media time moves on; the frame is not analysed
        self._frames.append(frame)
        if len(self._frames) > MAX_PENDING_FRAMES:  # bounded: drop the oldest unencoded frames
            self.thinning.forget(self._frames.popleft())

    def set_degrade(self, level: int) -> None:
        """0: full analysis; 1: every other frame; 2: also no faces (their features read as no face found)."""
        self.thinning.level = level

    @property
    def degrade_level(self) -> int:
        return self.thinning.level

    def push_audio(self, frame: AudioFrame) -> None:
        """Client audio at 48 kHz stereo float32, stamped in session media seconds."""
        if frame.sample_rate != AUDIO_RATE:
            raise ValueError(f"live audio must be {AUDIO_RATE} Hz, got {frame.sample_rate}")
        samples = np.asarray(frame.samples, np.float32).reshape(-1, 2)
        if self.audio_end == -math.inf:
            self._audio_t0 = frame.pts_s
            self.audio_end = frame.pts_s
        gap = int(round((frame.pts_s - self.audio_end) * AUDIO_RATE))
        if gap > 0:  # lost packets: keep the timeline, fill with silence
            cap = self._audio.capacity
            self._audio.write(np.zeros((min(gap, cap), 2), np.float32), skip=max(0, gap - cap))
        elif gap < -samples.shape[0]:
            return  # entirely in the past
        elif gap < 0:
            samples = samples[-gap:]
        self._audio.write(samples)
        self.audio_end = self._audio_t0 + self._audio.end / AUDIO_RATE
        self._audio_seen_at = self.clock.now()
        if self.options.mix_original:
            self._original.push(samples)
        self._wake.set()

    def take_original(self, n: int) -> np.ndarray:
        """The next ``n`` samples of the client's own audio (zeros where there is none)."""
        return self._original.take(n)

    @property
    def media_s(self) -> float:
        """The newest media time received on either track."""
        return max(self.video_t, self.audio_end, 0.0)

    # ------------------------------------------------------------------ windows
    def window(self, k: int) -> tuple[float, float]:
        s = k * self.options.hop_s
        return s, s + self.options.window_s

    def _audio_active(self) -> bool:
        if self._audio_seen_at is None:
            return False
        return self.clock.now() - self._audio_seen_at < self.options.audio_timeout_s

    def media_end(self) -> float:
        """Media time up to which both tracks (or the video alone) have arrived."""
        if self._audio_active():
            return min(self.video_t, self.audio_end)
        return self.video_t

    async def run(self) -> None:
        """Analyse windows as they fill, for ever (cancel to stop)."""
        o = self.options
        while True:
            await self._wake.wait()
            self._wake.clear()
            end = self.media_end()
            while self.window(self.next_window)[1] <= end + 1e-9:
                behind = end - self.window(self.next_window)[1]
                if behind > o.max_lag_s:
                    skip = int((behind - o.max_lag_s) / o.hop_s) + 1
                    self.next_window += skip
                    self.windows_dropped += skip
                    self.hooks.windows_dropped(skip)
                    self.log.warning("analysis %.1f s behind: dropped %d windows", behind, skip)
                    continue
                await self._analyse_window(*self.window(self.next_window))
                self.next_window += 1
                end = self.media_end()

    async def _encode_new_frames(self, until: float) -> None:
        batch: list[VideoFrame] = []
        while self._frames and self._frames[0].pts_s < until:
            batch.append(self._frames.popleft())
        if not batch:
            return
        t0 = self.clock.now()
        rgb = np.stack([f.rgb for f in batch])
        rows = await self.models.encode_frames(rgb, self._prev_rgb)
        self._prev_rgb = rgb[-1]
        rows = self.thinning.motion(batch, rows, self.models.names.frame)
        for f, r in zip(batch, rows, strict=True):
            self._table_t.append(f.pts_s)
            self._table_rows.append(r)
        grays = [f for f in batch if f.gray is not None]
        if grays and self.models.names.faces and self.degrade_level < 2:
            face_rows = await self.models.analyze_faces(np.stack([f.gray for f in grays if f.gray is not None]))
            for f, r in zip(grays, face_rows, strict=True):
                self._face_t.append(f.pts_s)
                self._face_rows.append(r)
        self.hooks.stage("frame_encode", self.clock.now() - t0)
        horizon = until - self.options.history_s
        while self._table_t and self._table_t[0] < horizon:
            self._table_t.popleft()
            self._table_rows.popleft()
        while self._face_t and self._face_t[0] < horizon:
            self._face_t.popleft()
            self._face_rows.popleft()

    def _table(self) -> FrameTable:
        names = self.models.names
        values = np.stack(self._table_rows) if self._table_rows else np.zeros((0, len(names.frame)), np.float32)
        fvals = np.stack(self._face_rows) if self._face_rows else np.zeros((0, len(names.faces)), np.float32)
        return FrameTable(np.array(self._table_t), names.frame, values, np.array(self._face_t), names.faces, fvals)

    async def _sound_features(self, s: float, e: float) -> dict[str, float] | None:
        """The sound features of ``[s, e)`` (None without sound); sets :attr:`speech`."""
        if self.audio_end == -math.inf:
            return None
        i0 = int(round((s - self._audio_t0) * AUDIO_RATE))
        i1 = int(round((e - self._audio_t0) * AUDIO_RATE))
        seg = self._audio.read(i0, i1)
        if seg.shape[0] < AUDIO_RATE // 4 or float(np.max(np.abs(seg), initial=0.0)) < SILENT_TRACK_PEAK:
            self.speech = 0.0
            return None  # no sound, or digital silence: says nothing about the mood
        t0 = self.clock.now()
        # resampling (and scipy's first import) is CPU work: off the event loop, on the models' own
        # pool when they have one (inline for deterministic tests)
        mono = await self.models.run_blocking(to_mono16k, seg, self.models.names.audio_rate)
        row, speech = await self.models.encode_audio(mono)
        self.hooks.stage("audio_encode", self.clock.now() - t0)
        self.speech = speech
        return {n: float(v) for n, v in zip(self.models.names.audio, row, strict=True)}

    async def _analyse_window(self, s: float, e: float) -> None:
        o = self.options
        await self._encode_new_frames(e)
        table = self._table()
        features: dict[str, float] = {}
        cuts: list[float] = []
        if len(table.times):
            names = table.names
            cuts = detect_cuts(table.times, table.values[:, names.index("hist_change")],
                               table.values[:, names.index("content_change")], self.thinning.cut_options(o.cuts)) \
                if "hist_change" in names and "content_change" in names else []
            features = frame_window_features(table, s, e, np.asarray(cuts), e, o.cut_rate_span_s)
        if o.fast_path:
            await self._fast_path(table, e)
        sound = await self._sound_features(s, e)
        if sound:
            features.update(sound)
        t0 = self.clock.now()
        step = await self.models.affect(features, self.tracker, 0.5 * (s + e))
        self.hooks.stage("affect", self.clock.now() - t0)
        self.tracker = step.tracker
        est = self.latest = step.estimate
        if 0.5 * (s + e) >= self._settle_until:  # not a window that began before a fast-path change
            a = 0.3  # light smoothing of the continuous controls (the emotion has the tracker's hysteresis)
            self.va = (est.valence, est.arousal) if self.windows_done == 0 else (
                (1 - a) * self.va[0] + a * est.valence, (1 - a) * self.va[1] + a * est.arousal)
            self.pace = _pace(features)
        self.windows_done += 1
        self.on_window(step, e)

    # ------------------------------------------------------------------ the fast path
    def _update_levels(self, until: float) -> None:
        """Sound levels (mean square per ``onset.block_s``) of the client audio received up to ``until``."""
        if self.audio_end == -math.inf:
            return
        o = self.options.onset
        block = max(1, int(round(o.block_s * AUDIO_RATE)))
        start = self._audio.start
        i = start if self._level_next is None else max(self._level_next, start)
        end = min(self._audio.end, int(round((until - self._audio_t0) * AUDIO_RATE)))
        n = (end - i) // block
        if n <= 0:
            return
        power = block_power(self._audio.read(i, i + n * block), block)
        for k, pw in enumerate(power):
            self._level_t.append(self._audio_t0 + (i + k * block) / AUDIO_RATE)
            self._level_p.append(float(pw))
        self._level_next = i + n * block
        keep = until - (o.before_s + o.window_s + self.options.hop_s + 1.0)
        while self._level_t and self._level_t[0] < keep:
            self._level_t.popleft()
            self._level_p.popleft()

    async def _fast_path(self, table: FrameTable, e: float) -> None:
        """Look at the onsets whose short window has arrived by ``e``; analyse the strongest with immediate
        evidence (two cuts a frame apart, one the old scene's: the one with the bigger jumps is the change)."""
        o = self.options.onset
        self._update_levels(e)
        lt, lp = np.array(self._level_t), np.array(self._level_p)
        due = e - o.window_s + 1e-9
        # every cut candidate, also those the cut detector merges with a cut just before (min_gap_s)
        names = table.names
        all_cuts = detect_cuts(table.times, table.values[:, names.index("hist_change")],
                               table.values[:, names.index("content_change")],
                               replace(self.thinning.cut_options(self.options.cuts), min_gap_s=0.0)) \
            if "hist_change" in names and "content_change" in names else []
        found = [(c, True) for c in all_cuts if self._onset_seen < c <= due]
        if self._audio_active():  # earlier blocks were judged at the last look (a passage starts within window_s)
            after = max(self._onset_seen, self._levels_due - o.window_s)
            found += [(t, False) for t in loud_passages(lt, lp, e, o, after_s=after)]
        self._levels_due = due
        if not found:
            return
        self._onset_seen = max(t for t, _ in found)
        bright = table.values[:, names.index("brightness")] if "brightness" in names else None
        motion = table.values[:, names.index("motion")] if "motion" in names else None
        best: tuple[float, float | None, Evidence] | None = None
        for t, cut in sorted(found):
            if not self.tracker.onset_possible(t):
                continue
            # a cut's sound may arrive a little before or after its picture: the sound's own step
            heard = sound_step(lt, lp, t, o) if cut else t
            ev = onset_evidence(t, cut, table.times, bright, motion, lt, lp, o, all_cuts, sound_at=heard)
            if not ev:
                continue
            late = heard is None or heard > e - MIN_ONSET_SOUND_S
            if late and self._audio_active() and t != self._deferred and e - t < o.window_s + o.max_skew_s:
                # the sound's step is not (all) there yet: it may be on its way (the picture ahead); look again
                self._deferred, self._onset_seen = t, t - 1e-6
                return
            if heard is not None and heard > e - MIN_ONSET_SOUND_S:
                heard = None  # still too late after looking again: the picture's time
            if best is None or ev.strength > best[2].strength:
                best = (t, heard, ev)
        if best is not None:
            await self._analyse_onset(best[0], e, best[2].kinds, all_cuts, best[1])

    async def _analyse_onset(self, t: float, end: float, evidence: tuple[str, ...], cuts: list[float],
                             sound_at: float | None) -> None:
        """The short window ``[t, end)`` after an onset (its sound from ``sound_at``, where the sound changed,
        when that is known) through the affect model and the armed tracker."""
        self.onsets += 1
        sound = await self._sound_features(t if sound_at is None else sound_at, end)
        if "cut" not in evidence and sound and sound.get("speech", 0.0) >= SPEECH_ONSET:
            return  # someone starts talking: louder, but no new mood
        features = onset_window_features(self._table(), t, end, sound, cuts, self.options.onset.cut_span_s)
        settle = t + 0.5 * self.options.window_s  # windows centred before this began before the onset
        self.tracker.arm_onset(t, settle)
        t0 = self.clock.now()
        step = await self.models.affect(features, self.tracker, 0.5 * (t + end))
        self.hooks.stage("affect", self.clock.now() - t0)
        self.tracker = step.tracker
        if step.change is None:
            return
        self.fast_changes += 1
        est = self.latest = step.estimate
        self.va, self.pace = (est.valence, est.arousal), _pace(features)
        self._settle_until = settle
        self.log.info("onset at %.2f s (%s): %s", t, ", ".join(evidence), step.change.emotion)
        self.on_window(step, end)

    # ------------------------------------------------------------------ the mood, for the music
    def emotion(self) -> str | None:
        """The confirmed mood, else the latest window's (provisional until the tracker confirms one)."""
        if self.tracker.current is not None:
            return self.tracker.current
        return self.latest.emotion if self.latest is not None else None

    def control(self) -> MoodControl | None:
        """What the music should express now (None before the first window)."""
        emotion = self.emotion()
        if emotion is None:
            return None
        return MoodControl(valence=self.va[0], arousal=self.va[1], emotion=emotion, style=self.options.style,
                           pace=self.pace)


def _pace(features: dict[str, float]) -> float:
    """The visual pacing hint of a window (cut rate and motion), 0..1."""
    return float(np.clip(0.5 * features.get("cut_rate", 0.0) + 6.0 * features.get("motion", 0.0), 0, 1))
