"""Music plan: drive a music stream chunk by chunk so the BGM follows the mood segments.

The offline job uses the same :class:`engines.base.MusicStream` interface a live session
uses, one chunk (a bar, for the composer) per call. Because it knows the whole timeline it
can look ahead: the composer plays one transition bar before a new section, so the new mood
is requested one bar early, at the bar whose successor starts closest to the segment
boundary (``MusicEngine.change_latency_chunks``). The music change then
lands within half a bar of the mood change (and of the shot cut it was snapped to).

Given the shot cuts, and an engine that follows a requested tempo (``MusicEngine.tempo_band``: the
composer), the bars follow a beat plan instead (:mod:`pipelines.offline.beats`): each beat's length,
inside the mood's tempo band and within a few per cent of the beat before, is chosen so cuts land on
beats (``MoodControl.beat_durations_s``); a bar belongs to the mood holding about its midpoint, so the
music still changes within half a bar of the mood change.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from engines.base import BarInfo, MoodControl, MusicChunk, MusicEngine, MusicStream, MusicStreamOptions
from pipelines.analysis.mood import MoodSegment
from pipelines.cancel import check_cancelled
from pipelines.frames import AUDIO_RATE
from pipelines.offline.beats import (
    BEATS_PER_BAR,
    BeatOptions,
    BeatPlan,
    TempoSpan,
    beat_tempi_of_bars,
    plan_beats,
    weigh_cuts,
)

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
    #: Slowest and fastest beat (a beat plan bends the tempo a little, beat by beat); None: not known.
    tempo_range_bpm: tuple[float, float] | None = None


@dataclass
class ComposedMusic:
    audio: np.ndarray  # (n, 2) float32
    sample_rate: int
    bars: list[BarInfo]
    sections: list[MusicSection]
    #: The bars are real 4/4 bars whose beats are known (the composer); False for MusicGen's chunks
    #: and library tracks (their beats can only be estimated from the audio).
    bars_are_beats: bool = False
    #: The beat plan the bars followed (cuts given to :func:`compose` and an engine that follows it).
    beat_plan: BeatPlan | None = None
    #: The timeline's beat report (:func:`pipelines.offline.timeline.beat_timeline`), once made.
    beats: dict[str, Any] | None = None


def segment_at(segments: Sequence[MoodSegment], t: float) -> MoodSegment:
    for seg in segments:
        if seg.start_s <= t < seg.end_s:
            return seg
    return segments[-1] if t >= segments[-1].start_s else segments[0]


def control_for(seg: MoodSegment, style: str | None, pace: float | None = None) -> MoodControl:
    return MoodControl(valence=seg.valence, arousal=seg.arousal, emotion=seg.emotion, style=style, pace=pace)


def tempo_spans(
    engine: MusicEngine,
    options: MusicStreamOptions,
    segments: Sequence[MoodSegment],
    duration_s: float,
    style: str | None = None,
    pace_at: Callable[[float], float] | None = None,
) -> list[TempoSpan] | None:
    """One :class:`TempoSpan` per run of segments in one emotion (one composer section): the engine's own
    tempo for it and its band. ``None`` when the engine does not follow a requested tempo."""
    spans: list[TempoSpan] = []
    for k, seg in enumerate(segments):
        end = duration_s if k == len(segments) - 1 else seg.end_s
        if spans and seg.emotion == segments[k - 1].emotion:
            spans[-1] = replace(spans[-1], end_s=end)
            continue
        band = engine.tempo_band(control_for(seg, style, pace_at(seg.start_s) if pace_at else None), options)
        if band is None:
            return None
        spans.append(TempoSpan(0.0 if k == 0 else seg.start_s, end, *band))
    return spans


def beat_plan_for(
    engine: MusicEngine,
    segments: Sequence[MoodSegment],
    duration_s: float,
    cuts: Sequence[float],
    *,
    style: str | None = None,
    seed: int = 0,
    sample_rate: int = AUDIO_RATE,
    pace_at: Callable[[float], float] | None = None,
    options: BeatOptions | None = None,
) -> BeatPlan | None:
    """The bars that put ``cuts`` on beats (cuts a mood change was snapped to on downbeats), or ``None``
    without cuts or when the engine does not follow a requested tempo."""
    if not segments:
        raise ValueError("compose needs at least one mood segment")
    weighted = weigh_cuts([c for c in cuts if 0.0 < c < duration_s], [s.start_s for s in segments[1:]])
    if not weighted:
        return None
    stream_options = MusicStreamOptions(sample_rate=sample_rate, seed=seed, style=style)
    spans = tempo_spans(engine, stream_options, segments, duration_s, style, pace_at)
    if spans is None:
        return None
    try:
        return plan_beats(weighted, spans, duration_s, options)
    except ValueError as exc:  # no grid fits (moods too short for their bands): the composer's own tempo
        log.warning("no beat plan: %s", exc)
        return None


def compose_chunks(
    engine: MusicEngine,
    segments: Sequence[MoodSegment],
    duration_s: float,
    *,
    style: str | None = None,
    seed: int = 0,
    sample_rate: int = AUDIO_RATE,
    pace_at: Callable[[float], float] | None = None,
    cuts: Sequence[float] | None = None,
    beat_plan: BeatPlan | None = None,
) -> Generator[MusicChunk, None, None]:
    """The music for ``[0, duration_s]`` following ``segments``, chunk by chunk as the stream makes it
    (look-ahead of one bar; the last chunk may run past ``duration_s``). The offline job collects
    them (:func:`compose`); the streamed score jobs send each as it comes.

    With ``cuts`` (shot cut times) or a ready ``beat_plan``, an engine that follows a requested tempo
    plays the bars of the plan (:func:`beat_plan_for`); otherwise each bar is at the engine's own tempo."""
    if not segments:
        raise ValueError("compose needs at least one mood segment")
    if beat_plan is None and cuts is not None:
        beat_plan = beat_plan_for(engine, segments, duration_s, cuts, style=style, seed=seed,
                                  sample_rate=sample_rate, pace_at=pace_at)
    stream = engine.open_stream(MusicStreamOptions(sample_rate=sample_rate, seed=seed, style=style))
    try:
        if beat_plan is not None:
            yield from _planned_chunks(stream, engine.change_latency_chunks, beat_plan, segments, duration_s,
                                       style, pace_at)
            return
        t = 0.0
        bar_len = 2.0
        first = True
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


def _planned_chunks(
    stream: MusicStream,
    latency: int,
    plan: BeatPlan,
    segments: Sequence[MoodSegment],
    duration_s: float,
    style: str | None,
    pace_at: Callable[[float], float] | None,
) -> Generator[MusicChunk, None, None]:
    """One bar per call with the plan's beats. Bar ``k`` asks for the mood of bar ``k + latency`` (the
    composer's transition bar plays at the old tempo, so a new section starts on the planned bar); its
    first beat is aimed at the plan's second beat from where the stream really is, so a bar the engine
    clamped is made up by the next."""
    t = 0.0  # the next bar's start, computed as the composer computes it (no sample rounding)
    k = 0
    last = max(0.0, duration_s - 1e-6)
    while t < duration_s:
        check_cancelled()
        beats: tuple[float, ...] | None = None
        if k < plan.n_bars:
            probe = plan.anchor(k if k == 0 else min(k + latency, plan.n_bars - 1))
            planned = plan.beat_durations(k)
            first = planned[0] + plan.bar_starts[k] - t
            beats = (first, *planned[1:]) if first > 0.25 else None
        else:  # past the plan (the engine refused a tempo): the engine's own choice
            probe = t
        seg = segment_at(segments, min(probe, last))
        pace = pace_at(min(probe, duration_s)) if pace_at else None
        chunk = stream.generate(replace(control_for(seg, style, pace), beat_durations_s=beats), 0.0)
        for bar in chunk.bars:
            t += sum(bar.beat_durations_s) if bar.beat_durations_s else BEATS_PER_BAR * 60.0 / bar.tempo_bpm
        if not chunk.bars:
            t = chunk.end_s
        k += max(1, len(chunk.bars))
        yield chunk


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
    cuts: Sequence[float] | None = None,
) -> ComposedMusic:
    """Render BGM for ``[0, duration_s]`` following ``segments`` (see :func:`compose_chunks`); with
    ``cuts``, on a beat plan that puts them on beats."""
    bars: list[BarInfo] = []
    n = int(round(duration_s * sample_rate))
    audio = np.zeros((n, 2), np.float32)  # each chunk is written in as it comes (one full-length array)
    at = 0
    plan = None
    if cuts is not None:
        plan = beat_plan_for(engine, segments, duration_s, cuts, style=style, seed=seed, sample_rate=sample_rate,
                             pace_at=pace_at)
    chunks = compose_chunks(engine, segments, duration_s, style=style, seed=seed, sample_rate=sample_rate,
                            pace_at=pace_at, beat_plan=plan)
    with contextlib.closing(chunks):
        for chunk in chunks:
            take = min(n - at, chunk.audio.shape[0])
            if take > 0:
                audio[at:at + take] = chunk.audio[:take]
            at += chunk.audio.shape[0]
            bars.extend(chunk.bars)
            if progress:
                progress(min(1.0, chunk.end_s / duration_s))
    follows = segments and engine.tempo_band(control_for(segments[0], style), MusicStreamOptions(
        sample_rate=sample_rate, seed=seed, style=style)) is not None
    return ComposedMusic(audio=audio, sample_rate=sample_rate, bars=bars, sections=sections_from_bars(bars, duration_s),
                         bars_are_beats=bool(follows), beat_plan=plan)


def sections_from_bars(bars: Sequence[BarInfo], duration_s: float) -> list[MusicSection]:
    """Group bars into sections (by the engine's section number and the music's identity); a transition
    bar is reported as the lead-in of its section. A section's tempo is its bars' mean tempo (the beat
    plan moves it a little beat by beat; ``tempo_range_bpm``, its slowest and fastest beat, says how far)."""
    groups: list[tuple[list[BarInfo], float | None]] = []
    pending_transition: float | None = None
    for bar in bars:
        if bar.start_s >= duration_s:
            break
        if bar.transition:
            if pending_transition is None:
                pending_transition = bar.start_s
            continue
        head = groups[-1][0][-1] if groups else None
        if head is None or pending_transition is not None or head.section != bar.section or (
            (head.key, head.mode, head.style, head.emotion) != (bar.key, bar.mode, bar.style, bar.emotion)
        ):
            groups.append(([bar], pending_transition))
            pending_transition = None
        else:
            groups[-1][0].append(bar)
    sections: list[MusicSection] = []
    for n, (members, transition_s) in enumerate(groups):
        first = members[0]
        # Sections tile the timeline; the transition bar closes the outgoing one.
        end = groups[n + 1][0][0].start_s if n + 1 < len(groups) else duration_s
        tempi = beat_tempi_of_bars(members)  # every beat's (a beat plan bends the tempo beat by beat)
        beats = sum(b.duration_s * b.tempo_bpm for b in members) / 60.0
        span = sum(b.duration_s for b in members)
        mean = first.tempo_bpm if min(tempi) == max(tempi) or span <= 0 else 60.0 * beats / span
        sections.append(MusicSection(first.start_s, end, mean, first.key, first.mode, first.style, first.emotion,
                                     first.instruments, transition_s, (min(tempi), max(tempi))))
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
