"""The options of a live session: windows, music lead and splicing, gains, limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.analysis.cuts import CutOptions, OnsetOptions
from pipelines.analysis.mood import SegmentOptions
from pipelines.errors import OptionError
from pipelines.frames import AUDIO_RATE
from pipelines.options import parse_seed, parse_style


@dataclass(frozen=True)
class LiveOptions:
    """How a live session analyses and plays; ``style`` and ``seed`` are validated by :mod:`pipelines.options`."""

    window_s: float = 2.0
    hop_s: float = 0.5
    cut_rate_span_s: float = 4.0
    #: The first mood is the first window's (the music starts with it); later ones need the hysteresis.
    segments: SegmentOptions = field(default_factory=lambda: SegmentOptions(min_segment_s=4.0, first_hold_s=0.0))
    cuts: CutOptions = field(default_factory=CutOptions)
    #: The fast path: immediate evidence of a change (a cut with a jump in loudness, brightness or motion;
    #: a sudden loud passage) confirms a new mood from the short window after it
    #: (:class:`~pipelines.analysis.mood.MoodTracker`); False leaves every change to the hysteresis.
    fast_path: bool = True
    onset: OnsetOptions = field(default_factory=OnsetOptions)
    #: Keep this much BGM generated ahead of the play head.
    lead_s: float = 0.6
    #: On a mood change the new music starts at the old music's first beat after this delay.
    splice_delay_s: float = 0.15
    crossfade_s: float = 0.5
    #: A change the fast path confirmed cuts the queued music at the first ``1 / urgent_division`` of a
    #: beat after ``urgent_splice_delay_s``, with a short equal-power crossfade (no click).
    urgent_splice_delay_s: float = 0.05
    urgent_division: int = 2
    urgent_crossfade_s: float = 0.04
    frame_ms: int = 20
    #: The WebRTC BGM track pulls and Opus-encodes up to this much ahead of what it sends, in batches off
    #: the event loop (:mod:`serve.webrtc.encode_ahead`): ducking, the mix and mood changes are heard up to
    #: this much later; 0 encodes each frame on the loop when it is due.
    encode_ahead_s: float = 0.12
    style: str | None = None
    seed: int = 0
    #: The music engine the session asks for (None: the music worker's default).
    engine: str | None = None
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
    #: A model call that keeps failing is retried for this long before the session ends on it
    #: (:mod:`pipelines.live.retry`: a replica lost mid-session costs at most one chunk of music).
    retry_budget_s: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "style", parse_style(self.style))
        parse_seed(self.seed)
        if self.frame_ms not in (10, 20, 40, 60):
            raise OptionError(f"frame_ms must be an Opus frame size (10, 20, 40 or 60), got {self.frame_ms}")
        if self.window_s <= 0 or self.hop_s <= 0:
            raise OptionError("window_s and hop_s must be positive")
        if self.urgent_division < 1 or self.urgent_splice_delay_s < 0 or self.urgent_crossfade_s < 0:
            raise OptionError("urgent_division must be >= 1, urgent_splice_delay_s and urgent_crossfade_s >= 0")
        if not 0.0 <= self.encode_ahead_s <= 1.0:
            raise OptionError(f"encode_ahead_s must be between 0 and 1 s, got {self.encode_ahead_s}")

    @property
    def frame_samples(self) -> int:
        return AUDIO_RATE * self.frame_ms // 1000
