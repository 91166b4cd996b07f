"""A live session: media in as it arrives, mood-following BGM out in paced 20 ms frames.

The session is transport-agnostic: WebRTC (``serve.webrtc``), the gRPC ``Stream`` call and the
tests push :class:`~pipelines.frames.VideoFrame` / :class:`~pipelines.frames.AudioFrame` items
stamped in session media seconds, and a paced reader pulls output frames with
:meth:`LiveSession.pull_frame`.

Three loops, all on the event loop, with every model call awaited through a
:class:`~pipelines.live.models.LiveBackend` (off-loop or remote):

* **analysis** -- when both tracks have reached a window's end (2 s windows every 0.5 s, like
  the offline job), the new frames are encoded, cuts re-detected on the recent frames, the
  window's sound encoded, and the window goes through the affect model and the rolling
  :class:`~pipelines.analysis.segments.MoodTracker`. If analysis falls behind the media by more than
  ``max_lag_s``, the oldest due windows are dropped (counted), so latency cannot grow.
* **music** -- keeps ``lead_s`` of BGM ahead of the play head, one chunk (a bar, for the
  composer) at a time, steered by the current mood. When the tracker confirms a new mood, a
  new stream is opened in that mood and spliced in at the old music's next beat after
  ``splice_delay_s``, with an equal-power crossfade -- the live counterpart of the offline
  job's transition bar, which would make the change wait for the bar to end.
* **reports** -- a :class:`MoodReport` about once a second for the data channel / SSE.

Mood-change latency is measured from the tracker's confirmation (clock time) to the moment
the play head reaches the splice point.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from engines.base import EMOTIONS, STYLES, AffectEstimate, BarInfo, MoodControl
from pipelines.analysis.analyze import SILENT_TRACK_PEAK, FrameTable, _frame_window_features, to_mono16k
from pipelines.analysis.segments import CutOptions, MoodTracker, SegmentOptions, detect_cuts
from pipelines.clock import Clock, SystemClock
from pipelines.errors import OptionError
from pipelines.frames import AudioFrame, VideoFrame
from pipelines.live.models import LiveBackend
from pipelines.live.music import OUTPUT_RATE, MusicContext, MusicReply, MusicRequest, PlayoutBuffer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveOptions:
    window_s: float = 2.0
    hop_s: float = 0.5
    cut_rate_span_s: float = 4.0
    segments: SegmentOptions = field(default_factory=lambda: SegmentOptions(min_segment_s=4.0))
    cuts: CutOptions = field(default_factory=CutOptions)
    #: Keep this much BGM generated ahead of the play head.
    lead_s: float = 0.6
    #: On a mood change the new music starts at the old music's first beat after this delay.
    splice_delay_s: float = 0.15
    crossfade_s: float = 0.5
    frame_ms: int = 20
    style: str | None = None
    seed: int = 0
    #: Return the client's own audio mixed under the BGM (ducked under speech) instead of BGM alone.
    mix_original: bool = False
    #: BGM gain alone / when mixed with the client's audio, and extra ducking under speech (dB).
    bgm_gain_db: float = -3.0
    mixed_bgm_gain_db: float = -12.0
    duck_db: float = -10.0
    #: Drop the oldest due windows when analysis is further behind the media than this.
    max_lag_s: float = 3.0
    #: Media history kept for analysis (s).
    history_s: float = 12.0
    #: A stream counts as video-only when no audio has arrived for this long after video.
    audio_timeout_s: float = 1.5
    report_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.style is not None and self.style not in STYLES:
            raise OptionError(f"unknown style {self.style!r}; choose one of: auto, {', '.join(STYLES)}")
        if self.frame_ms not in (10, 20, 40, 60):
            raise OptionError(f"frame_ms must be an Opus frame size (10, 20, 40 or 60), got {self.frame_ms}")
        if self.window_s <= 0 or self.hop_s <= 0:
            raise OptionError("window_s and hop_s must be positive")

    @property
    def frame_samples(self) -> int:
        return OUTPUT_RATE * self.frame_ms // 1000


class LiveHooks(Protocol):
    """Observability callbacks (Prometheus in the service; a recorder in tests)."""

    def stage(self, name: str, seconds: float) -> None: ...

    def underrun(self) -> None: ...

    def mood_change(self, latency_s: float) -> None: ...

    def windows_dropped(self, n: int) -> None: ...


class NullHooks:
    def stage(self, name: str, seconds: float) -> None:
        pass

    def underrun(self) -> None:
        pass

    def mood_change(self, latency_s: float) -> None:
        pass

    def windows_dropped(self, n: int) -> None:
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
    #: Media seconds from when the new mood began (dated back by the tracker) to its confirmation.
    last_change_detect_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": "mood", **self.__dict__}


class SampleRing:
    """The last ``capacity`` stereo samples of a stream, addressed by absolute sample index.

    Writing is O(frame) (no reallocation per 20 ms frame, unlike growing an array).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._buf = np.zeros((self.capacity, 2), np.float32)
        self.end = 0  # absolute index after the last written sample

    @property
    def start(self) -> int:
        return max(0, self.end - self.capacity)

    def write(self, samples: np.ndarray, skip: int = 0) -> None:
        """Append ``samples`` after ``skip`` unwritten (lost) samples."""
        self.end += skip
        x = samples[-self.capacity :]
        self.end += samples.shape[0] - x.shape[0]
        pos = self.end % self.capacity
        first = min(x.shape[0], self.capacity - pos)
        self._buf[pos : pos + first] = x[:first]
        self._buf[: x.shape[0] - first] = x[first:]
        self.end += x.shape[0]

    def read(self, i0: int, i1: int) -> np.ndarray:
        """Samples ``[i0, i1)`` clipped to what is held."""
        i0, i1 = max(i0, self.start), min(i1, self.end)
        if i1 <= i0:
            return np.zeros((0, 2), np.float32)
        a, b = i0 % self.capacity, i1 % self.capacity
        if a < b or i1 - i0 == 0:
            return self._buf[a:b].copy()
        return np.concatenate([self._buf[a:], self._buf[:b]])


@dataclass
class _PlacedBar:
    start: int  # absolute output sample
    bar: BarInfo
    end: int = 0  # cut short when new music is spliced in

    def __post_init__(self) -> None:
        if not self.end:
            self.end = self.start + int(round(self.bar.duration_s * OUTPUT_RATE))


@dataclass
class _PendingChange:
    confirmed_at: float  # clock time
    splice_at: int  # absolute output sample


class LiveSession:
    """See the module doc. Create, :meth:`start`, push media, pull frames, :meth:`close`."""

    def __init__(
        self,
        backend: LiveBackend,
        options: LiveOptions | None = None,
        *,
        clock: Clock | None = None,
        hooks: LiveHooks | None = None,
        session_id: str | None = None,
        on_report: Callable[[MoodReport], None] | None = None,
    ) -> None:
        self.options = o = options or LiveOptions()
        self.backend = backend
        self.clock: Clock = clock or SystemClock()
        self.hooks: LiveHooks = hooks or NullHooks()
        self.session_id = session_id or uuid.uuid4().hex[:12]
        self.on_report = on_report
        self.log = logging.LoggerAdapter(log, {"session": self.session_id})
        # --- input
        self._frames: deque[VideoFrame] = deque()  # not yet encoded
        self._table_t: deque[float] = deque()
        self._table_rows: deque[np.ndarray] = deque()
        self._face_t: deque[float] = deque()
        self._face_rows: deque[np.ndarray] = deque()
        self._prev_rgb: np.ndarray | None = None
        self._video_t = -math.inf  # pts of the newest video frame
        self._audio = SampleRing(int(o.history_s * OUTPUT_RATE))  # analysis history, 48 kHz stereo
        self._audio_t0 = 0.0  # media time of the ring's sample 0
        self._audio_end = -math.inf
        self._audio_seen_at: float | None = None  # clock time of the last audio push
        self._video_seen_at: float | None = None
        self._orig: deque[np.ndarray] = deque()  # client audio to mix back, 48 kHz stereo
        self._orig_n = 0
        # --- analysis state
        self._next_window = 0
        self.tracker = MoodTracker(o.segments)
        self.latest: AffectEstimate | None = None
        self._va = (0.0, 0.0)
        self._pace = 0.0
        self._speech = 0.0
        self.windows_done = 0
        self.windows_dropped = 0
        # --- music state
        self.playout = PlayoutBuffer(OUTPUT_RATE)
        self._stream_n = itertools.count()
        self._ctx: MusicContext | None = None
        self._music_emotion: str | None = None
        self._bars: deque[_PlacedBar] = deque()
        self._pending: _PendingChange | None = None
        self._switch_to: str | None = None
        self.mood_changes = 0
        self.latencies: list[float] = []
        self.detections: list[float] = []
        self._detect_s: float | None = None
        self.music_restores = 0
        # --- tasks
        self._wake = asyncio.Event()
        self._music_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._guard(self._analysis_loop()), name=f"analysis-{self.session_id}"),
            asyncio.create_task(self._guard(self._music_loop()), name=f"music-{self.session_id}"),
            asyncio.create_task(self._guard(self._report_loop()), name=f"report-{self.session_id}"),
        ]
        self.log.info("live session started")

    async def _guard(self, coro: Any) -> None:
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
        if self._ctx is not None:
            with contextlib.suppress(Exception):
                await self.backend.close_music(self._ctx.stream_id)
        self.log.info("live session closed: %d windows (%d dropped), %d mood changes, %d underruns",
                      self.windows_done, self.windows_dropped, self.mood_changes, self.playout.underruns)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ input
    def push_video(self, frame: VideoFrame) -> None:
        """An analysis frame (already sampled to the analysis rate and made small)."""
        if frame.pts_s <= self._video_t:
            return  # out of order / duplicate
        self._video_t = frame.pts_s
        self._video_seen_at = self.clock.now()
        self._frames.append(frame)
        if len(self._frames) > 256:  # bounded: drop the oldest unencoded frames
            self._frames.popleft()
        self._wake.set()

    def push_audio(self, frame: AudioFrame) -> None:
        """Client audio at 48 kHz stereo float32, stamped in session media seconds."""
        if frame.sample_rate != OUTPUT_RATE:
            raise ValueError(f"live audio must be {OUTPUT_RATE} Hz, got {frame.sample_rate}")
        samples = np.asarray(frame.samples, np.float32).reshape(-1, 2)
        if self._audio_end == -math.inf:
            self._audio_t0 = frame.pts_s
            self._audio_end = frame.pts_s
        gap = int(round((frame.pts_s - self._audio_end) * OUTPUT_RATE))
        if gap > 0:  # lost packets: keep the timeline, fill with silence
            cap = self._audio.capacity
            self._audio.write(np.zeros((min(gap, cap), 2), np.float32), skip=max(0, gap - cap))
        elif gap < -samples.shape[0]:
            return  # entirely in the past
        elif gap < 0:
            samples = samples[-gap:]
        self._audio.write(samples)
        self._audio_end = self._audio_t0 + self._audio.end / OUTPUT_RATE
        self._audio_seen_at = self.clock.now()
        if self.options.mix_original:
            self._orig.append(samples)
            self._orig_n += samples.shape[0]
            limit = int(0.5 * OUTPUT_RATE)  # bounded: drop the oldest
            while self._orig_n > limit and self._orig:
                self._orig_n -= self._orig.popleft().shape[0]
        self._wake.set()

    # ------------------------------------------------------------------ analysis
    def _window(self, k: int) -> tuple[float, float]:
        s = k * self.options.hop_s
        return s, s + self.options.window_s

    def _audio_active(self) -> bool:
        if self._audio_seen_at is None:
            return False
        return self.clock.now() - self._audio_seen_at < self.options.audio_timeout_s

    def _media_end(self) -> float:
        """Media time up to which both tracks (or the video alone) have arrived."""
        if self._audio_active():
            return min(self._video_t, self._audio_end)
        return self._video_t

    async def _analysis_loop(self) -> None:
        o = self.options
        while True:
            await self._wake.wait()
            self._wake.clear()
            end = self._media_end()
            while self._window(self._next_window)[1] <= end + 1e-9:
                behind = end - self._window(self._next_window)[1]
                if behind > o.max_lag_s:
                    skip = int((behind - o.max_lag_s) / o.hop_s) + 1
                    self._next_window += skip
                    self.windows_dropped += skip
                    self.hooks.windows_dropped(skip)
                    self.log.warning("analysis %.1f s behind: dropped %d windows", behind, skip)
                    continue
                await self._analyse_window(*self._window(self._next_window))
                self._next_window += 1
                end = self._media_end()

    async def _encode_new_frames(self, until: float) -> None:
        batch: list[VideoFrame] = []
        while self._frames and self._frames[0].pts_s < until:
            batch.append(self._frames.popleft())
        if not batch:
            return
        t0 = self.clock.now()
        rgb = np.stack([f.rgb for f in batch])
        rows = await self.backend.encode_frames(rgb, self._prev_rgb)
        self._prev_rgb = rgb[-1]
        for f, r in zip(batch, rows, strict=True):
            self._table_t.append(f.pts_s)
            self._table_rows.append(r)
        grays = [f for f in batch if f.gray is not None]
        if grays and self.backend.names.faces:
            face_rows = await self.backend.analyze_faces(np.stack([f.gray for f in grays if f.gray is not None]))
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
        names = self.backend.names
        values = np.stack(self._table_rows) if self._table_rows else np.zeros((0, len(names.frame)), np.float32)
        fvals = np.stack(self._face_rows) if self._face_rows else np.zeros((0, len(names.faces)), np.float32)
        return FrameTable(np.array(self._table_t), names.frame, values, np.array(self._face_t), names.faces, fvals)

    async def _sound_features(self, s: float, e: float) -> dict[str, float] | None:
        if self._audio_end == -math.inf:
            return None
        i0 = int(round((s - self._audio_t0) * OUTPUT_RATE))
        i1 = int(round((e - self._audio_t0) * OUTPUT_RATE))
        seg = self._audio.read(i0, i1)
        if seg.shape[0] < OUTPUT_RATE // 4 or float(np.max(np.abs(seg), initial=0.0)) < SILENT_TRACK_PEAK:
            self._speech = 0.0
            return None  # no sound, or digital silence: says nothing about the mood
        t0 = self.clock.now()
        # resampling (and scipy's first import) is CPU work: off the event loop, on the backend's
        # own pool when it has one (inline for deterministic tests)
        run_blocking = getattr(self.backend, "run_blocking", None)
        rate = self.backend.names.audio_rate
        mono = await (run_blocking(to_mono16k, seg, rate) if run_blocking is not None
                      else asyncio.to_thread(to_mono16k, seg, rate))
        row, speech = await self.backend.encode_audio(mono)
        self.hooks.stage("audio_encode", self.clock.now() - t0)
        self._speech = speech
        return {n: float(v) for n, v in zip(self.backend.names.audio, row, strict=True)}

    async def _analyse_window(self, s: float, e: float) -> None:
        o = self.options
        await self._encode_new_frames(e)
        table = self._table()
        features: dict[str, float] = {}
        if len(table.times):
            names = table.names
            cuts = detect_cuts(table.times, table.values[:, names.index("hist_change")],
                               table.values[:, names.index("content_change")], o.cuts) \
                if "hist_change" in names and "content_change" in names else []
            features = _frame_window_features(table, s, e, np.asarray(cuts), e, o.cut_rate_span_s)
        sound = await self._sound_features(s, e)
        if sound:
            features.update(sound)
        t0 = self.clock.now()
        step = await self.backend.affect(features, self.tracker, 0.5 * (s + e))
        self.hooks.stage("affect", self.clock.now() - t0)
        self.tracker = step.tracker
        est = self.latest = step.estimate
        a = 0.3  # light smoothing of the continuous controls (the emotion has the tracker's hysteresis)
        self._va = (est.valence, est.arousal) if self.windows_done == 0 else (
            (1 - a) * self._va[0] + a * est.valence, (1 - a) * self._va[1] + a * est.arousal)
        self._pace = float(np.clip(0.5 * features.get("cut_rate", 0.0) + 6.0 * features.get("motion", 0.0), 0, 1))
        self.windows_done += 1
        if step.change is not None:
            self.log.info("mood -> %s (began %.1f s, confirmed %.1f s)", step.change.emotion, step.change.at_s,
                          step.change.confirmed_s)
            if self._music_emotion is not None and step.change.emotion != self._music_emotion:
                self._switch_to = step.change.emotion
                self._detect_s = e - step.change.at_s
        self._music_wake.set()

    # ------------------------------------------------------------------ music
    def _emotion(self) -> str | None:
        if self.tracker.current is not None:
            return self.tracker.current
        return self.latest.emotion if self.latest is not None else None  # provisional until confirmed

    def control(self) -> MoodControl | None:
        emotion = self._emotion()
        if emotion is None:
            return None
        return MoodControl(valence=self._va[0], arousal=self._va[1], emotion=emotion, style=self.options.style,
                           pace=self._pace)

    def _new_context(self) -> MusicContext:
        n = next(self._stream_n)
        return MusicContext(stream_id=f"{self.session_id}:{n}", seed=self.options.seed * 7919 + n,
                            style=self.options.style)

    async def _request(self, ctx: MusicContext, control: MoodControl) -> MusicReply:
        t0 = self.clock.now()
        reply = await self.backend.music(MusicRequest(ctx, control))
        self.hooks.stage("music", self.clock.now() - t0)
        if reply.restored:
            self.music_restores += 1
        return reply

    def _place(self, reply: MusicReply, at: int) -> None:
        """Remember the bars of audio placed at absolute output sample ``at`` (for beats and reports)."""
        base = at - int(round((reply.bars[0].start_s if reply.bars else 0.0) * OUTPUT_RATE))
        for b in reply.bars:
            self._bars.append(_PlacedBar(base + int(round(b.start_s * OUTPUT_RATE)), b))

    def _next_beat(self, after: int) -> int:
        for pb in self._bars:
            if pb.end <= after:
                continue
            beat = int(round(60.0 / pb.bar.tempo_bpm * OUTPUT_RATE))
            k = max(0, math.ceil((after - pb.start) / beat))
            t = pb.start + k * beat
            if t < pb.end:
                return t
        return after

    async def _switch(self, emotion: str, control: MoodControl) -> None:
        confirmed = self.clock.now()
        old = self._ctx
        self._ctx = self._new_context()
        reply = await self._request(self._ctx, control)
        self._ctx = reply.context
        o = self.options
        earliest = self.playout.head + int(o.splice_delay_s * OUTPUT_RATE)
        at = self._next_beat(earliest)
        at = self.playout.splice(at, reply.audio, int(o.crossfade_s * OUTPUT_RATE))
        while self._bars and self._bars[-1].start >= at:
            self._bars.pop()
        if self._bars and self._bars[-1].end > at:
            self._bars[-1].end = at
        self._place(reply, at)
        self._music_emotion = emotion
        self._pending = _PendingChange(confirmed, at)
        if self._detect_s is not None:
            self.detections.append(self._detect_s)
            self._detect_s = None
        self.mood_changes += 1
        if old is not None:
            with contextlib.suppress(Exception):
                await self.backend.close_music(old.stream_id)

    async def _music_loop(self) -> None:
        o = self.options
        tick = 0.1
        while True:
            control = self.control()
            if control is not None:
                if self._ctx is None:
                    self._ctx = self._new_context()
                    self._music_emotion = control.emotion
                if self._switch_to is not None:
                    emotion, self._switch_to = self._switch_to, None
                    await self._switch(emotion, control)
                elif self.playout.buffered_s < o.lead_s:
                    reply = await self._request(self._ctx, control)
                    if reply.restored:  # the worker lost our stream: crossfade into the restored one
                        at = self.playout.splice(self.playout.end, reply.audio, int(o.crossfade_s * OUTPUT_RATE))
                    else:
                        at = self.playout.end
                        self.playout.append(reply.audio)
                    self._ctx = reply.context
                    self._place(reply, at)
                    continue  # top up again without waiting
            self._music_wake.clear()
            if control is None:
                await self._music_wake.wait()
            else:
                await self.clock.sleep(tick)

    # ------------------------------------------------------------------ output
    def pull_frame(self) -> np.ndarray:
        """The next output frame: ``float32`` ``(frame_samples, 2)`` (BGM, or BGM under the client's audio)."""
        o = self.options
        n = o.frame_samples
        before = self.playout.underruns
        bgm = self.playout.pull(n)
        if self.playout.underruns != before:
            self.hooks.underrun()
        gain_db = o.mixed_bgm_gain_db if o.mix_original else o.bgm_gain_db
        if self._speech > 0.5:
            gain_db += o.duck_db
        out = bgm * np.float32(10 ** (gain_db / 20))
        if o.mix_original:
            orig = self._take_orig(n)
            out = out + orig
        if self._pending is not None and self.playout.head >= self._pending.splice_at:
            latency = self.clock.now() - self._pending.confirmed_at
            self.latencies.append(latency)
            self.hooks.mood_change(latency)
            self._pending = None
        while self._bars and self._bars[0].end <= self.playout.head:
            self._bars.popleft()
        if self.playout.buffered_s < o.lead_s:
            self._music_wake.set()
        return np.clip(out, -1.0, 1.0)

    def _take_orig(self, n: int) -> np.ndarray:
        parts: list[np.ndarray] = []
        need = n
        while need > 0 and self._orig:
            head = self._orig[0]
            if head.shape[0] <= need:
                parts.append(self._orig.popleft())
                need -= head.shape[0]
            else:
                parts.append(head[:need])
                self._orig[0] = head[need:]
                need = 0
        self._orig_n -= n - need
        if need:
            parts.append(np.zeros((need, 2), np.float32))
        return np.concatenate(parts)

    # ------------------------------------------------------------------ reports
    def playing_bar(self) -> BarInfo | None:
        head = self.playout.head
        for pb in self._bars:
            if pb.start <= head < pb.end:
                return pb.bar
        return None

    def report(self) -> MoodReport:
        est = self.latest
        bar = self.playing_bar()
        music = None if bar is None else {
            "tempo_bpm": round(bar.tempo_bpm, 1), "key": bar.key, "mode": bar.mode, "style": bar.style,
            "emotion": bar.emotion, "chord": bar.chord, "section": bar.section, "transition": bar.transition,
        }
        media_s = max(self._video_t, self._audio_end, 0.0)
        return MoodReport(
            session_id=self.session_id,
            media_s=round(media_s, 3),
            valence=round(self._va[0], 3),
            arousal=round(self._va[1], 3),
            emotion=self._emotion() or "neutral",
            confidence=round(est.confidence, 3) if est else 0.0,
            probs={e: round(p, 3) for e, p in zip(EMOTIONS, est.probs, strict=True)} if est else {},
            music=music,
            underruns=self.playout.underruns,
            buffer_s=round(self.playout.buffered_s, 3),
            windows=self.windows_done,
            mood_changes=self.mood_changes,
            last_change_latency_s=round(self.latencies[-1], 3) if self.latencies else None,
            last_change_detect_s=round(self.detections[-1], 3) if self.detections else None,
        )

    async def _report_loop(self) -> None:
        while True:
            await self.clock.sleep(self.options.report_interval_s)
            if self.on_report is not None:
                self.on_report(self.report())


async def paced_frames(session: LiveSession) -> Any:
    """Yield ``(pts_samples, frame)`` every ``frame_ms`` of clock time, pts in 48 kHz samples.

    Pacing is against the start time (``start + k * frame``), so it does not drift; a late
    reader does not sleep until it has caught up, and the pts always advance by one frame.
    """
    o = session.options
    n = o.frame_samples
    start = session.clock.now()
    k = 0
    while not session.closed:
        wait = start + k * n / OUTPUT_RATE - session.clock.now()
        if wait > 0:
            await session.clock.sleep(wait)
        yield k * n, session.pull_frame()
        k += 1
