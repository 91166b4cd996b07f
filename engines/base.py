"""Engine interfaces: one small ABC per kind, numpy in and numpy out.

Engines never see PyAV, aiortc or Ray types. The pipelines (``pipelines/``) feed them
arrays and get arrays, frozen dataclasses or plain floats back, so the same engine
serves the offline job, a Ray Serve replica and a test.

Kinds:

* :class:`FrameEncoder` -- a batch of small RGB frames -> per-frame feature rows.
* :class:`AudioEncoder` -- a window of mono audio -> one feature row; plus a fine
  speech-activity curve used for ducking.
* :class:`AffectModel` -- per-window picture+sound features -> valence, arousal,
  a discrete emotion and a confidence.
* :class:`MusicEngine` -- hands out :class:`MusicStream` objects that generate music
  chunk by chunk, each chunk steered by the current :class:`MoodControl`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: The discrete emotions backscore reports. Video2Music's six CLIP emotion words
#: (exciting, fearful, tense, sad, relaxing, neutral) plus ``happy``.
EMOTIONS: tuple[str, ...] = ("exciting", "happy", "relaxing", "neutral", "sad", "tense", "fearful")

#: Music styles the composer knows. ``None`` / "auto" picks one from the mood.
STYLES: tuple[str, ...] = ("lofi", "cheerful", "sad", "epic", "calm", "tense", "cinematic")


class EngineError(Exception):
    """Base class for engine failures (bad input, missing weights, ...)."""


class EngineUnavailable(EngineError):
    """An engine cannot run here (missing package or weights); the message says how to fix it."""


class EngineBusy(EngineError):
    """An engine has no room for another stream now (all its slots are taken); another may take it."""


# --------------------------------------------------------------------------- frames


class FrameEncoder(abc.ABC):
    """Turns analysed video frames into per-frame feature rows.

    ``encode`` is given frames in presentation order (``uint8`` array of shape
    ``(N, H, W, 3)``, RGB) and optionally the frame analysed just before the batch,
    so motion and content-change features are continuous across batches.
    """

    #: Column names of the rows ``encode`` returns.
    feature_names: tuple[str, ...]

    @abc.abstractmethod
    def encode(self, frames: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        """Return a ``float32`` array of shape ``(N, len(feature_names))``."""


# --------------------------------------------------------------------------- audio


class AudioEncoder(abc.ABC):
    """Turns one window of mono audio into a feature row."""

    feature_names: tuple[str, ...]
    #: Sample rate the encoder expects; the pipeline resamples to it.
    sample_rate: int

    @abc.abstractmethod
    def encode(self, samples: np.ndarray) -> np.ndarray:
        """``samples``: mono ``float32`` in [-1, 1]. Returns ``float32`` of shape ``(len(feature_names),)``."""

    @abc.abstractmethod
    def speech_activity(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Speech probability over time: ``(times_s, prob)`` at a fine hop (~10-20 ms)."""

    def encode_windows(
        self, samples: np.ndarray, bounds: Sequence[tuple[float, float]]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Every window ``(start_s, end_s)`` of one track, plus its speech activity.

        Returns ``(rows (W, F), (times_s, prob))``; a window too short to analyse is a row of
        zeros. Encoders override this to share work between overlapping windows.
        """
        sr = self.sample_rate
        rows = np.zeros((len(bounds), len(self.feature_names)), dtype=np.float32)
        for i, (s, e) in enumerate(bounds):
            seg = samples[int(s * sr) : int(e * sr)]
            if len(seg) >= sr // 4:
                rows[i] = self.encode(seg)
        return rows, self.speech_activity(samples)


# --------------------------------------------------------------------------- affect


@dataclass(frozen=True)
class AffectEstimate:
    """Affect of one window. valence/arousal in [-1, 1]; ``probs`` follows :data:`EMOTIONS`."""

    valence: float
    arousal: float
    emotion: str
    confidence: float
    probs: tuple[float, ...]

    def prob(self, emotion: str) -> float:
        return self.probs[EMOTIONS.index(emotion)]


class AffectModel(abc.ABC):
    """Maps per-window features (named floats, picture and sound) to affect."""

    @abc.abstractmethod
    def predict(self, windows: Sequence[Mapping[str, float]]) -> list[AffectEstimate]:
        """One estimate per window. Missing features (e.g. no soundtrack) are simply absent."""


# --------------------------------------------------------------------------- music


@dataclass(frozen=True)
class MoodControl:
    """What the music should express now.

    ``style`` is one of :data:`STYLES` or ``None`` for automatic choice from the mood.
    ``pace`` (0..1, optional) is a visual pacing hint (cut rate / motion) the composer may
    use for rhythmic density.
    ``tempo_bpm`` (optional) asks for this tempo for the next bar (an offline plan that puts shot
    cuts on beats); an engine that follows it clamps it to the section's own tempo band
    (:meth:`MusicEngine.tempo_band`), others ignore it. ``None``: the engine's own choice.
    ``beat_durations_s`` (optional) asks for the next bar's beats one by one (seconds each, a smooth
    tempo curve from the same plan; overrides ``tempo_bpm``); each beat is clamped to the band like
    ``tempo_bpm``. ``None``: even beats.
    """

    valence: float
    arousal: float
    emotion: str
    style: str | None = None
    pace: float | None = None
    tempo_bpm: float | None = None
    beat_durations_s: tuple[float, ...] | None = None


@dataclass(frozen=True)
class MusicStreamOptions:
    sample_rate: int = 48_000
    seed: int = 0
    #: Fixed style for the whole stream (overrides MoodControl.style when set).
    style: str | None = None


@dataclass(frozen=True)
class BarInfo:
    """One rendered bar, in stream time (seconds since the stream's first sample)."""

    start_s: float
    duration_s: float
    tempo_bpm: float
    key: str  # tonic name, e.g. "A"
    mode: str  # "major" | "minor" (or a church mode name)
    style: str
    emotion: str
    section: int  # increments each time the music changes section
    transition: bool  # a transition bar (pivot chord / fill / crossfade) leading into ``section``
    chord: str  # chord symbol of the bar's first chord, e.g. "Am7"
    instruments: tuple[str, ...] = ()
    #: Seconds of each beat when the beats are uneven (a beat plan's tempo curve; they add up to
    #: ``duration_s`` to the sample); ``None``: even beats at ``tempo_bpm`` (:meth:`beat_times`).
    beat_durations_s: tuple[float, ...] | None = None

    def beat_times(self, beats_per_bar: int = 4) -> tuple[float, ...]:
        """Stream times (s) of the bar's beats, its downbeat first."""
        if self.beat_durations_s is None:
            return tuple(self.start_s + k * self.duration_s / beats_per_bar for k in range(beats_per_bar))
        out, t = [], self.start_s
        for d in self.beat_durations_s:
            out.append(t)
            t += d
        return tuple(out)


@dataclass(frozen=True)
class MusicChunk:
    """``audio``: ``float32`` ``(n_samples, 2)`` at ``sample_rate``; ``start_s`` in stream time."""

    audio: np.ndarray
    sample_rate: int
    start_s: float
    bars: tuple[BarInfo, ...] = field(default_factory=tuple)

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


class MusicStream(abc.ABC):
    """A continuing piece of music. Each ``generate`` call continues seamlessly from the last."""

    @abc.abstractmethod
    def generate(self, control: MoodControl, min_duration_s: float = 0.0) -> MusicChunk:
        """Render the next chunk: at least one bar (procedural) and at least ``min_duration_s``.

        A change of mood takes effect on a bar boundary with a musical transition; the
        returned chunk's ``bars`` say which bars are transitions and which section each
        belongs to.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the stream."""


class MusicEngine(abc.ABC):
    name: str
    #: Chunks between a requested mood change and the new music proper (the procedural
    #: composer plays one transition bar first: 1; MusicGen switches at the next chunk: 0).
    #: The offline plan uses it to request a change early enough to land on time.
    change_latency_chunks: int = 0

    @abc.abstractmethod
    def open_stream(self, options: MusicStreamOptions) -> MusicStream:
        """Start a new independent piece."""

    def tempo_band(self, control: MoodControl, options: MusicStreamOptions) -> tuple[float, float, float] | None:
        """``(own tempo, lowest, highest)`` bpm of a section started by ``control``: the tempo the
        engine would choose and the band within which it honours ``MoodControl.tempo_bpm``. ``None``
        (the default) when the engine does not follow a requested tempo (MusicGen, library tracks)."""
        return None
