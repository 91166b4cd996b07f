"""Windowed analysis of a video's pictures and its own soundtrack -> affect per window.

Windows are ``window_s`` long every ``hop_s`` (2 s every 0.5 s by default). Per window the
picture features (colour, light, motion, cut rate, faces) and the sound features (loudness,
spectral shape and flux, onsets/tempo, speech) are gathered into one named-feature mapping
and handed to the affect model. The same :func:`window_features` serves the live path,
which fills windows as frames arrive.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from engines.base import AffectEstimate
from pipelines.analysis.cuts import CutOptions, detect_cuts
from pipelines.analysis.engines import PICTURE_FPS, Engines, default_engines
from pipelines.analysis.frame_workers import FaceWorker, encode_frames, picture_worker
from pipelines.analysis.mood import MoodSegment, SegmentOptions, segment_timeline
from pipelines.analysis.sound import SoundAnalysis, analyze_sound
from pipelines.analysis.windows import FrameTable, window_bounds, window_features
from pipelines.cancel import bind
from pipelines.frames import MediaInfo, VideoFrame
from pipelines.media.decode import DecodeOptions, decode_audio, decode_video, probe
from pipelines.media.frame_changes import FrameChangeRecorder, FrameChanges
from pipelines.media.limits import MediaLimits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisOptions:
    window_s: float = 2.0
    hop_s: float = 0.5
    #: Cut rate is measured over this span around each window's centre (shot rhythm).
    cut_rate_span_s: float = 4.0
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    cuts: CutOptions = field(default_factory=CutOptions)
    segments: SegmentOptions = field(default_factory=SegmentOptions)


def analysis_options(limits: MediaLimits) -> AnalysisOptions:
    """The default analysis under ``limits`` (the service's or the command line's)."""
    return AnalysisOptions(decode=DecodeOptions(limits=limits))


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
    #: Integrated loudness of the original soundtrack (LUFS; -inf when none/silent).
    loudness_lufs: float = -math.inf
    #: Every decoded frame's change from the frame before, recorded during the one decode, so cuts can be
    #: timed to the frame without decoding again (:func:`pipelines.offline.cut_times.refine_cuts`).
    frame_changes: FrameChanges | None = None


def _finish(info: MediaInfo, duration: float, table: FrameTable, sound: SoundAnalysis,
            bounds: list[tuple[float, float]], engines: Engines, o: AnalysisOptions,
            changes: FrameChanges | None = None) -> Analysis:
    cuts = detect_cuts(
        table.times,
        table.values[:, table.names.index("hist_change")],
        table.values[:, table.names.index("content_change")],
        o.cuts,
    )
    feats = window_features(table, sound.windows, bounds, cuts, duration, o.cut_rate_span_s)
    estimates = engines.affect.predict(feats)
    windows = [WindowResult(s, e, f, a) for (s, e), f, a in zip(bounds, feats, estimates, strict=True)]
    segments = segment_timeline([w.centre_s for w in windows], estimates, duration, cuts, o.segments)
    return Analysis(info, duration, windows, cuts, segments, sound.audio, sound.speech, sound.soundtrack,
                    sound.loudness_lufs, changes)


def analyze(path: str, engines: Engines | None = None, options: AnalysisOptions | None = None,
            progress: Callable[[float], None] | None = None) -> Analysis:
    """Decode and analyse a video file (the first half of ``backscore score``).

    Three things run at once: the video decode (FFmpeg's own threads), the face analyzer
    on frames as they arrive, and the soundtrack (a second, audio-only demux of the file,
    its features, speech activity and loudness). PyAV, OpenCV and numpy release the GIL, so
    this uses both cores while the decode alone would leave part of one idle.
    """
    o = options or AnalysisOptions()
    eng = engines or default_engines()
    decode_options = o.decode
    if eng.picture is not None and decode_options.picture_fps <= 0:
        decode_options = replace(decode_options, picture_fps=PICTURE_FPS)
    info = probe(path, decode_options.limits)
    faces = FaceWorker(eng.faces) if eng.faces is not None else None
    pictures = picture_worker(eng.picture) if eng.picture is not None else None
    on_frame = None if faces is None and pictures is None else _fan_out(faces, pictures)
    changes = FrameChangeRecorder()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sound") as pool:
        sound_future = None
        if info.duration_s > 0:
            guess = window_bounds(info.duration_s, o.window_s, o.hop_s)
            sound_future = pool.submit(bind(lambda: analyze_sound(
                decode_audio(path, info.duration_s, decode_options.limits), eng.audio, guess)))
        try:
            info, frames, duration = decode_video(path, decode_options, progress, on_frame=on_frame, changes=changes)
        finally:
            try:
                face_rows = faces.result() if faces is not None else None
            finally:
                picture_rows = pictures.result() if pictures is not None else None
        bounds = window_bounds(duration, o.window_s, o.hop_s)
        if sound_future is not None and duration == info.duration_s:
            sound = sound_future.result()
        else:
            sound = analyze_sound(decode_audio(path, duration, decode_options.limits), eng.audio, bounds)
    table = encode_frames(frames, eng, faces=face_rows, pictures=picture_rows)
    return _finish(info, duration, table, sound, bounds, eng, o, changes.result())


def _fan_out(*workers: FaceWorker | None) -> Callable[[VideoFrame], None]:
    active = [w for w in workers if w is not None]
    if len(active) == 1:
        return active[0].put

    def put(frame: VideoFrame) -> None:
        for w in active:
            w.put(frame)

    return put
