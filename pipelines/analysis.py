"""Windowed analysis of a video's pictures and its own soundtrack -> affect per window.

Windows are ``window_s`` long every ``hop_s`` (2 s every 0.5 s by default). Per window the
picture features (colour, light, motion, cut rate, faces) and the sound features (loudness,
spectral shape and flux, onsets/tempo, speech) are gathered into one named-feature mapping
and handed to the affect model. The same :func:`window_features` serves the live path,
which fills windows as frames arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.signal import resample_poly

from engines.base import AffectEstimate, AffectModel, AudioEncoder, FrameEncoder
from pipelines.decode import MIX_SAMPLE_RATE, DecodedMedia, DecodeOptions, decode_media
from pipelines.frames import MediaInfo, VideoFrame
from pipelines.segments import CutOptions, MoodSegment, SegmentOptions, detect_cuts, segment_timeline

log = logging.getLogger(__name__)


class FaceAnalyzer(Protocol):
    """Structural type of :class:`engines.faces.FaceExpressionAnalyzer` (grey frames -> rows)."""

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    def analyze(self, gray_frames: np.ndarray) -> np.ndarray: ...


@dataclass
class Engines:
    """The engines an analysis uses; :func:`default_engines` gives the embedded defaults."""

    frame: FrameEncoder
    audio: AudioEncoder
    affect: AffectModel
    faces: FaceAnalyzer | None = None


def default_engines(faces: bool = True) -> Engines:
    from engines.affect import FeatureAffectModel
    from engines.audio_features import FeatureAudioEncoder
    from engines.frame_features import FeatureFrameEncoder

    face_model: FaceAnalyzer | None = None
    if faces:
        from engines.faces import FaceExpressionAnalyzer

        face_model = FaceExpressionAnalyzer()
    return Engines(FeatureFrameEncoder(), FeatureAudioEncoder(), FeatureAffectModel(), face_model)


#: Peak level below which a whole soundtrack counts as digital silence (-80 dBFS).
SILENT_TRACK_PEAK = 1e-4


@dataclass(frozen=True)
class AnalysisOptions:
    window_s: float = 2.0
    hop_s: float = 0.5
    #: Cut rate is measured over this span around each window's centre (shot rhythm).
    cut_rate_span_s: float = 4.0
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    cuts: CutOptions = field(default_factory=CutOptions)
    segments: SegmentOptions = field(default_factory=SegmentOptions)


@dataclass(frozen=True)
class WindowResult:
    start_s: float
    end_s: float
    features: dict[str, float]
    affect: AffectEstimate

    @property
    def centre_s(self) -> float:
        return 0.5 * (self.start_s + self.end_s)


@dataclass
class Analysis:
    info: MediaInfo
    duration_s: float
    windows: list[WindowResult]
    cuts: list[float]
    segments: list[MoodSegment]
    #: Original soundtrack, 48 kHz stereo float32, or None.
    audio: np.ndarray | None
    #: Speech probability over time for ducking: (times_s, prob), or None without audio.
    speech: tuple[np.ndarray, np.ndarray] | None
    #: "present", "silent" (a track of digital silence, ignored for affect) or "none".
    soundtrack: str = "present"


def window_bounds(duration_s: float, window_s: float, hop_s: float) -> list[tuple[float, float]]:
    """Overlapping windows covering the whole duration (the last one clipped to the end)."""
    if duration_s <= window_s:
        return [(0.0, duration_s)]
    out: list[tuple[float, float]] = []
    start = 0.0
    while start + window_s <= duration_s + 1e-9:
        out.append((start, start + window_s))
        start += hop_s
    if out[-1][1] < duration_s - 1e-6:
        out.append((max(0.0, duration_s - window_s), duration_s))
    return out


@dataclass
class FrameTable:
    """Per-analysed-frame features as arrays (times, picture features, face rows)."""

    times: np.ndarray
    names: tuple[str, ...]
    values: np.ndarray
    face_times: np.ndarray
    face_names: tuple[str, ...]
    face_values: np.ndarray


def encode_frames(frames: Sequence[VideoFrame], engines: Engines, batch: int = 64) -> FrameTable:
    times = np.array([f.pts_s for f in frames], dtype=np.float64)
    rows: list[np.ndarray] = []
    prev: np.ndarray | None = None
    for i in range(0, len(frames), batch):
        arr = np.stack([f.rgb for f in frames[i : i + batch]])
        rows.append(engines.frame.encode(arr, prev))
        prev = arr[-1]
    values = np.concatenate(rows) if rows else np.zeros((0, len(engines.frame.feature_names)), np.float32)
    face_frames = [f for f in frames if f.gray is not None]
    face_names: tuple[str, ...] = ()
    face_times = np.array([f.pts_s for f in face_frames], dtype=np.float64)
    face_values = np.zeros((len(face_frames), 0), np.float32)
    if engines.faces is not None and face_frames:
        face_names = engines.faces.feature_names
        chunks = [
            engines.faces.analyze(np.stack([f.gray for f in face_frames[i : i + batch]]))  # type: ignore[misc]
            for i in range(0, len(face_frames), batch)
        ]
        face_values = np.concatenate(chunks)
    return FrameTable(times, engines.frame.feature_names, values, face_times, face_names, face_values)


def _frame_window_features(table: FrameTable, s: float, e: float, cuts: np.ndarray,
                           duration_s: float, span_s: float) -> dict[str, float]:
    f: dict[str, float] = {}
    idx = np.nonzero((table.times >= s) & (table.times < e))[0]
    if len(idx) == 0 and len(table.times):
        idx = np.array([int(np.argmin(np.abs(table.times - 0.5 * (s + e))))])
    for j, name in enumerate(table.names):
        if name in ("content_change", "hist_change"):
            continue
        col = table.values[idx, j]
        if name == "motion":
            # the first analysed frame has no predecessor
            col = col[table.times[idx] > table.times[0]] if len(col) > 1 else col
        f[name] = float(np.mean(col)) if len(col) else 0.0
    c = 0.5 * (s + e)
    lo, hi = max(0.0, c - span_s / 2), min(duration_s, c + span_s / 2)
    f["cut_rate"] = float(np.sum((cuts >= lo) & (cuts < hi)) / max(hi - lo, 1e-3))
    if table.face_names:
        fidx = np.nonzero((table.face_times >= s) & (table.face_times < e))[0]
        rows = table.face_values[fidx]
        with_face = rows[rows[:, 0] > 0] if len(rows) else rows
        f["face_presence"] = float(len(with_face) / len(rows)) if len(rows) else 0.0
        for j, name in enumerate(table.face_names[1:], start=1):
            f[name] = float(with_face[:, j].mean()) if len(with_face) else 0.0
    return f


def window_features(
    table: FrameTable,
    audio16k: np.ndarray | None,
    engines: Engines,
    bounds: Sequence[tuple[float, float]],
    cuts: Sequence[float],
    duration_s: float,
    span_s: float = 4.0,
) -> list[dict[str, float]]:
    cut_arr = np.asarray(cuts, dtype=np.float64)
    out: list[dict[str, float]] = []
    sr = engines.audio.sample_rate
    for s, e in bounds:
        f = _frame_window_features(table, s, e, cut_arr, duration_s, span_s)
        if audio16k is not None:
            seg = audio16k[int(s * sr) : int(e * sr)]
            if len(seg) >= sr // 4:
                row = engines.audio.encode(seg)
                f.update({n: float(v) for n, v in zip(engines.audio.feature_names, row, strict=True)})
        out.append(f)
    return out


def to_mono16k(audio48k: np.ndarray, target_rate: int) -> np.ndarray:
    mono = audio48k.mean(axis=1) if audio48k.ndim == 2 else audio48k
    if target_rate == MIX_SAMPLE_RATE:
        return mono.astype(np.float32)
    from math import gcd

    g = gcd(MIX_SAMPLE_RATE, target_rate)
    return resample_poly(mono, target_rate // g, MIX_SAMPLE_RATE // g).astype(np.float32)


def analyze_decoded(media: DecodedMedia, engines: Engines, options: AnalysisOptions | None = None,
                    progress: Callable[[float], None] | None = None) -> Analysis:
    o = options or AnalysisOptions()
    duration = media.duration_s
    table = encode_frames(media.frames, engines)
    if progress:
        progress(0.4)
    cuts = detect_cuts(
        table.times,
        table.values[:, table.names.index("hist_change")],
        table.values[:, table.names.index("content_change")],
        o.cuts,
    )
    audio16k = None
    speech = None
    soundtrack = "none"
    if media.audio is not None:
        # A digitally silent track (muted export) says nothing about the mood: treat it like
        # a video without sound rather than as "very quiet".
        if float(np.max(np.abs(media.audio), initial=0.0)) < SILENT_TRACK_PEAK:
            soundtrack = "silent"
        else:
            soundtrack = "present"
            audio16k = to_mono16k(media.audio, engines.audio.sample_rate)
            speech = engines.audio.speech_activity(audio16k)
    bounds = window_bounds(duration, o.window_s, o.hop_s)
    feats = window_features(table, audio16k, engines, bounds, cuts, duration, o.cut_rate_span_s)
    if progress:
        progress(0.8)
    estimates = engines.affect.predict(feats)
    windows = [WindowResult(s, e, f, a) for (s, e), f, a in zip(bounds, feats, estimates, strict=True)]
    segments = segment_timeline([w.centre_s for w in windows], estimates, duration, cuts, o.segments)
    if progress:
        progress(1.0)
    return Analysis(media.info, duration, windows, cuts, segments, media.audio, speech, soundtrack)


def analyze(path: str, engines: Engines | None = None, options: AnalysisOptions | None = None,
            decode_progress: Callable[[float], None] | None = None) -> Analysis:
    """Decode and analyse a video file (the first half of ``backscore score``)."""
    o = options or AnalysisOptions()
    media = decode_media(path, o.decode, decode_progress)
    return analyze_decoded(media, engines or default_engines(), o)
