"""Music plan: drive a music stream chunk by chunk so the BGM follows the mood segments.

The offline job uses the same :class:`engines.base.MusicStream` interface a live session
uses, one chunk (a bar, for the composer) per call. Because it knows the whole timeline it
can look ahead: the composer plays one transition bar before a new section, so the new mood
is requested one bar early, at the bar whose successor starts closest to the segment
boundary (``MusicEngine.change_latency_chunks``). The music change then
lands within half a bar of the mood change (and of the shot cut it was snapped to).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np

from engines.base import BarInfo, MoodControl, MusicChunk, MusicEngine, MusicStreamOptions
from pipelines.analysis.mood import MoodSegment
from pipelines.cancel import check_cancelled
from pipelines.frames import AUDIO_RATE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MusicSection:
    """A stretch of music with one tempo/key/mode/style (for the timeline)."""

    start_s: float
    end_s: float
    tempo_bpm: float
    key: str
    mode: str
    style: str
    emotion: str
    instruments: tuple[str, ...]
    #: Start of the transition bar that leads into this section (None for the first).
    transition_s: float | None


@dataclass
class ComposedMusic:
    audio: np.ndarray  # (n, 2) float32
    sample_rate: int
    bars: list[BarInfo]
    sections: list[MusicSection]


def segment_at(segments: Sequence[MoodSegment], t: float) -> MoodSegment:
    for seg in segments:
        if seg.start_s <= t < seg.end_s:
            return seg
    return segments[-1] if t >= segments[-1].start_s else segments[0]


def control_for(seg: MoodSegment, style: str | None, pace: float | None = None) -> MoodControl:
    return MoodControl(valence=seg.valence, arousal=seg.arousal, emotion=seg.emotion, style=style, pace=pace)


def compose_chunks(
    engine: MusicEngine,
    segments: Sequence[MoodSegment],
    duration_s: float,
    *,
    style: str | None = None,
    seed: int = 0,
    sample_rate: int = AUDIO_RATE,
    pace_at: Callable[[float], float] | None = None,
) -> Generator[MusicChunk, None, None]:
    """The music for ``[0, duration_s]`` following ``segments``, chunk by chunk as the stream makes it
    (look-ahead of one bar; the last chunk may run past ``duration_s``). The offline job collects
    them (:func:`compose`); the streamed score jobs send each as it comes."""
    if not segments:
        raise ValueError("compose needs at least one mood segment")
    stream = engine.open_stream(MusicStreamOptions(sample_rate=sample_rate, seed=seed, style=style))
    t = 0.0
    bar_len = 2.0
    first = True
    try:
        while t < duration_s:
            check_cancelled()
            # With a transition bar the new section starts one chunk after the request: ask
            # for the mood in force (latency + 0.5) chunks ahead, so the change lands on the
            # chunk boundary nearest the mood change.
            probe = t if first else t + (engine.change_latency_chunks + 0.5) * bar_len
            seg = segment_at(segments, min(probe, max(0.0, duration_s - 1e-6)))
            pace = pace_at(min(probe, duration_s)) if pace_at else None
            chunk = stream.generate(control_for(seg, style, pace), 0.0)
            if chunk.bars:
                bar_len = chunk.bars[-1].duration_s
            yield chunk
            t = chunk.end_s
            first = False
    finally:
        stream.close()


def compose(
    engine: MusicEngine,
    segments: Sequence[MoodSegment],
    duration_s: float,
    *,
    style: str | None = None,
    seed: int = 0,
    sample_rate: int = AUDIO_RATE,
    pace_at: Callable[[float], float] | None = None,
    progress: Callable[[float], None] | None = None,
) -> ComposedMusic:
    """Render BGM for ``[0, duration_s]`` following ``segments`` (see :func:`compose_chunks`)."""
    bars: list[BarInfo] = []
    n = int(round(duration_s * sample_rate))
    audio = np.zeros((n, 2), np.float32)  # each chunk is written in as it comes (one full-length array)
    at = 0
    chunks = compose_chunks(engine, segments, duration_s, style=style, seed=seed, sample_rate=sample_rate,
                            pace_at=pace_at)
    with contextlib.closing(chunks):
        for chunk in chunks:
            take = min(n - at, chunk.audio.shape[0])
            if take > 0:
                audio[at:at + take] = chunk.audio[:take]
            at += chunk.audio.shape[0]
            bars.extend(chunk.bars)
            if progress:
                progress(min(1.0, chunk.end_s / duration_s))
    return ComposedMusic(audio=audio, sample_rate=sample_rate, bars=bars, sections=sections_from_bars(bars, duration_s))


def sections_from_bars(bars: Sequence[BarInfo], duration_s: float) -> list[MusicSection]:
    """Group bars into sections; a transition bar is reported as the lead-in of its section."""
    sections: list[MusicSection] = []
    pending_transition: float | None = None
    for bar in bars:
        if bar.start_s >= duration_s:
            break
        if bar.transition:
            if pending_transition is None:
                pending_transition = bar.start_s
            continue
        if not sections or sections[-1].tempo_bpm != bar.tempo_bpm or _identity(sections[-1]) != (
            bar.key, bar.mode, bar.style, bar.emotion
        ) or pending_transition is not None:
            if sections:
                prev = sections[-1]
                # Sections tile the timeline; the transition bar closes the outgoing one.
                sections[-1] = MusicSection(prev.start_s, bar.start_s, prev.tempo_bpm, prev.key, prev.mode, prev.style,
                                            prev.emotion, prev.instruments, prev.transition_s)
            sections.append(MusicSection(bar.start_s, duration_s, bar.tempo_bpm, bar.key, bar.mode, bar.style,
                                         bar.emotion, bar.instruments, pending_transition))
            pending_transition = None
    return sections


def _identity(s: MusicSection) -> tuple[str, str, str, str]:
    return (s.key, s.mode, s.style, s.emotion)


def loop_to_length(audio: np.ndarray, sample_rate: int, duration_s: float, crossfade_s: float = 2.0) -> np.ndarray:
    """A library track fitted to the video: trimmed if longer, looped with equal-power crossfades if shorter.

    ``audio`` is ``(n, channels)``; the result has exactly ``round(duration_s * sample_rate)`` rows.
    The caller fades the ends (the mixer does).
    """
    n_out = int(round(duration_s * sample_rate))
    if audio.ndim != 2 or audio.shape[0] == 0:
        raise ValueError("loop_to_length needs non-empty (n, channels) audio")
    n = audio.shape[0]
    if n >= n_out:
        return np.ascontiguousarray(audio[:n_out])
    xf = min(int(crossfade_s * sample_rate), n // 4)
    out = np.zeros((n_out, audio.shape[1]), dtype=np.float32)
    t = np.linspace(0.0, np.pi / 2, xf, endpoint=False) if xf > 0 else np.zeros(0)
    fade_in, fade_out = np.sin(t)[:, None], np.cos(t)[:, None]
    pos = 0
    first = True
    while pos < n_out:
        piece = audio.astype(np.float32, copy=True)
        if not first and xf > 0:
            piece[:xf] *= fade_in
        end = min(n_out, pos + n)
        out[pos:end] += piece[: end - pos]
        if end == n_out:
            break
        if xf > 0:
            # the tail of this pass fades out while the next pass fades in over it
            out[end - xf : end] -= piece[n - xf : n]
            out[end - xf : end] += piece[n - xf : n] * fade_out
        pos = end - xf
        first = False
    return out
