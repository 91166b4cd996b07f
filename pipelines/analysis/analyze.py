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
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from engines.base import AffectEstimate, AffectModel, AudioEncoder, FrameEncoder
from pipelines.analysis.segments import CutOptions, MoodSegment, SegmentOptions, detect_cuts, segment_timeline
from pipelines.frames import MediaInfo, VideoFrame
from pipelines.media.decode import MIX_SAMPLE_RATE, DecodeOptions, decode_audio, decode_video, probe

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
    #: Optional image model (CLIP) fed with larger RGB pictures (``VideoFrame.picture``, made at
    #: :data:`PICTURE_FPS` only when this is set); its columns join each window's picture features.
    picture: FrameEncoder | None = None


#: Pictures per second for :attr:`Engines.picture` (Video2Music samples CLIP features at 1 fps;
#: two per second puts about four in every 2 s window).
PICTURE_FPS = 2.0


def default_engines(faces: bool = True) -> Engines:
    from engines.affect import FeatureAffectModel
    from engines.audio_features import FeatureAudioEncoder
    from engines.frame_features import FeatureFrameEncoder

    face_model: FaceAnalyzer | None = None
    if faces:
        from engines.faces import FaceExpressionAnalyzer

        face_model = FaceExpressionAnalyzer()
    return Engines(FeatureFrameEncoder(), FeatureAudioEncoder(), FeatureAffectModel(), face_model)


def create_engines(affect_engine: str = "default", weights: str | Mapping[str, str] | Sequence[str] | None = None,
                   faces: bool = True, backend: str = "auto") -> Engines:
    """The engines for ``--affect-engine NAME`` (see :func:`engines.affect_engines.create_affect_engines`),
    plus the face analyzer unless ``faces`` is off; the neural encoders run on ``backend``
    (:mod:`engines.backends`). Raises ``EngineUnavailable`` (missing weights, a named backend that
    cannot run here) or ``ValueError`` (unknown name) before any work starts."""
    from engines.affect_engines import create_affect_engines

    parts = create_affect_engines(affect_engine, weights, backend=backend)
    face_model: FaceAnalyzer | None = None
    if faces:
        from engines.faces import FaceExpressionAnalyzer

        face_model = FaceExpressionAnalyzer()
    return Engines(parts.frame, parts.audio, parts.affect, face_model, parts.picture)


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
    #: Integrated loudness of the original soundtrack (LUFS; -inf when none/silent).
    loudness_lufs: float = -math.inf


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
    #: Rows of :attr:`Engines.picture` on the frames that carry a picture (none by default).
    picture_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    picture_names: tuple[str, ...] = ()
    picture_values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))


def encode_frames(frames: Sequence[VideoFrame], engines: Engines, batch: int = 64,
                  faces: tuple[np.ndarray, np.ndarray] | None = None,
                  pictures: tuple[np.ndarray, np.ndarray] | None = None) -> FrameTable:
    """Picture features of every analysed frame; face rows (and the picture encoder's rows,
    when :attr:`Engines.picture` is set) are computed here unless given."""
    times = np.array([f.pts_s for f in frames], dtype=np.float64)
    rows: list[np.ndarray] = []
    prev: np.ndarray | None = None
    for i in range(0, len(frames), batch):
        arr = np.stack([f.rgb for f in frames[i : i + batch]])
        rows.append(engines.frame.encode(arr, prev))
        prev = arr[-1]
    values = np.concatenate(rows) if rows else np.zeros((0, len(engines.frame.feature_names)), np.float32)
    table = FrameTable(times, engines.frame.feature_names, values, np.zeros(0), (), np.zeros((0, 0), np.float32))
    if engines.faces is not None:
        if faces is None:
            faces = _run_worker(FaceWorker(engines.faces, threaded=False), frames)
        table.face_times, table.face_names, table.face_values = faces[0], engines.faces.feature_names, faces[1]
    if engines.picture is not None:
        if pictures is None:
            pictures = _run_worker(picture_worker(engines.picture, threaded=False), frames)
        table.picture_times, table.picture_names, table.picture_values = (
            pictures[0], engines.picture.feature_names, pictures[1])
    return table


def _run_worker(worker: FaceWorker, frames: Sequence[VideoFrame]) -> tuple[np.ndarray, np.ndarray]:
    for f in frames:
        worker.put(f)
    return worker.result()


class _PictureAnalyzer:
    """A :class:`FrameEncoder` seen as a :class:`FaceAnalyzer` (pictures in, rows out)."""

    def __init__(self, encoder: FrameEncoder) -> None:
        self._encoder = encoder

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._encoder.feature_names

    def analyze(self, gray_frames: np.ndarray) -> np.ndarray:
        return self._encoder.encode(gray_frames)


def picture_worker(encoder: FrameEncoder, threaded: bool = True) -> FaceWorker:
    """A worker running ``encoder`` (CLIP) on the frames that carry a ``picture``."""
    return FaceWorker(_PictureAnalyzer(encoder), batch=8, threaded=threaded, source="picture")


class FaceWorker:
    """Runs the face analyzer on the frames that carry a grey picture, in batches.

    Threaded, it works while the video is still being decoded (OpenCV and numpy release the
    GIL); ``result()`` waits for it and returns ``(times_s, rows)``. ``source="picture"`` runs it
    on the frames' RGB ``picture`` instead (see :func:`picture_worker`).
    """

    def __init__(self, analyzer: FaceAnalyzer, batch: int = 16, threaded: bool = True,
                 source: str = "gray") -> None:
        if source not in ("gray", "picture"):
            raise ValueError(f"source must be 'gray' or 'picture', got {source!r}")
        self._analyzer = analyzer
        self._source = source
        self._batch = batch
        self._times: list[float] = []
        self._rows: list[np.ndarray] = []
        self._pending: list[VideoFrame] = []
        self._queue: queue.Queue[VideoFrame | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        if threaded:
            self._queue = queue.Queue(maxsize=256)
            name = "faces" if source == "gray" else "pictures"
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def _image(self, frame: VideoFrame) -> np.ndarray | None:
        return frame.gray if self._source == "gray" else frame.picture

    def put(self, frame: VideoFrame) -> None:
        if self._image(frame) is None:
            return
        if self._queue is not None:
            self._queue.put(frame)
        else:
            self._add(frame)

    def _add(self, frame: VideoFrame) -> None:
        self._pending.append(frame)
        if len(self._pending) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        images = [self._image(f) for f in self._pending]
        self._rows.append(self._analyzer.analyze(np.stack([x for x in images if x is not None])))
        self._times.extend(f.pts_s for f in self._pending)
        self._pending = []

    def _run(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is None:
                break
            if self._error is None:
                try:
                    self._add(item)
                except BaseException as exc:  # reported by result()
                    self._error = exc

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error
        self._flush()
        width = len(self._analyzer.feature_names)
        rows = np.concatenate(self._rows) if self._rows else np.zeros((0, width), np.float32)
        return np.array(self._times, dtype=np.float64), rows


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
    if table.picture_names and len(table.picture_times):
        pidx = np.nonzero((table.picture_times >= s) & (table.picture_times < e))[0]
        if len(pidx) == 0:  # fewer pictures than windows: the nearest one
            pidx = np.array([int(np.argmin(np.abs(table.picture_times - 0.5 * (s + e))))])
        for j, name in enumerate(table.picture_names):
            f[name] = float(np.mean(table.picture_values[pidx, j]))
    return f


def window_features(
    table: FrameTable,
    sound: list[dict[str, float]] | None,
    bounds: Sequence[tuple[float, float]],
    cuts: Sequence[float],
    duration_s: float,
    span_s: float = 4.0,
) -> list[dict[str, float]]:
    """Picture features per window, merged with the sound features computed for the same windows."""
    cut_arr = np.asarray(cuts, dtype=np.float64)
    out: list[dict[str, float]] = []
    for i, (s, e) in enumerate(bounds):
        f = _frame_window_features(table, s, e, cut_arr, duration_s, span_s)
        if sound is not None:
            f.update(sound[i])
        out.append(f)
    return out


@dataclass
class SoundAnalysis:
    """What the soundtrack says: features per window, speech over time, loudness."""

    audio: np.ndarray | None  # 48 kHz stereo, as decoded
    soundtrack: str  # "present" | "silent" | "none"
    windows: list[dict[str, float]] | None  # per window bound; None without usable sound
    speech: tuple[np.ndarray, np.ndarray] | None
    loudness_lufs: float  # integrated (BS.1770), -inf without sound


def analyze_sound(audio48k: np.ndarray | None, encoder: AudioEncoder,
                  bounds: Sequence[tuple[float, float]]) -> SoundAnalysis:
    from pipelines.offline.mix import integrated_loudness

    if audio48k is None:
        return SoundAnalysis(None, "none", None, None, -math.inf)
    # A digitally silent track (muted export) says nothing about the mood: treat it like a
    # video without sound rather than as "very quiet".
    if float(np.max(np.abs(audio48k), initial=0.0)) < SILENT_TRACK_PEAK:
        return SoundAnalysis(audio48k, "silent", None, None, -math.inf)
    audio16k = to_mono16k(audio48k, encoder.sample_rate)
    values, speech = encoder.encode_windows(audio16k, bounds)
    min_len = 0.25
    rows = [
        {n: float(v) for n, v in zip(encoder.feature_names, row, strict=True)} if e - s >= min_len else {}
        for (s, e), row in zip(bounds, values, strict=True)
    ]
    return SoundAnalysis(audio48k, "present", rows, speech, integrated_loudness(audio48k, MIX_SAMPLE_RATE))


def to_mono16k(audio48k: np.ndarray, target_rate: int) -> np.ndarray:
    mono = audio48k.mean(axis=1) if audio48k.ndim == 2 else audio48k
    if target_rate == MIX_SAMPLE_RATE:
        return mono.astype(np.float32)
    from math import gcd

    from scipy.signal import resample_poly  # lazily: imported in the sound thread

    g = gcd(MIX_SAMPLE_RATE, target_rate)
    return resample_poly(mono, target_rate // g, MIX_SAMPLE_RATE // g).astype(np.float32)


def _finish(info: MediaInfo, duration: float, table: FrameTable, sound: SoundAnalysis,
            bounds: list[tuple[float, float]], engines: Engines, o: AnalysisOptions) -> Analysis:
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
                    sound.loudness_lufs)


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
    info = probe(path)
    faces = FaceWorker(eng.faces) if eng.faces is not None else None
    pictures = picture_worker(eng.picture) if eng.picture is not None else None
    on_frame = None if faces is None and pictures is None else _fan_out(faces, pictures)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sound") as pool:
        sound_future = None
        if info.duration_s > 0:
            guess = window_bounds(info.duration_s, o.window_s, o.hop_s)
            sound_future = pool.submit(lambda: analyze_sound(decode_audio(path, info.duration_s), eng.audio, guess))
        try:
            info, frames, duration = decode_video(path, decode_options, progress, on_frame=on_frame)
        finally:
            try:
                face_rows = faces.result() if faces is not None else None
            finally:
                picture_rows = pictures.result() if pictures is not None else None
        bounds = window_bounds(duration, o.window_s, o.hop_s)
        if sound_future is not None and duration == info.duration_s:
            sound = sound_future.result()
        else:
            sound = analyze_sound(decode_audio(path, duration), eng.audio, bounds)
    table = encode_frames(frames, eng, faces=face_rows, pictures=picture_rows)
    return _finish(info, duration, table, sound, bounds, eng, o)


def _fan_out(*workers: FaceWorker | None) -> Callable[[VideoFrame], None]:
    active = [w for w in workers if w is not None]
    if len(active) == 1:
        return active[0].put

    def put(frame: VideoFrame) -> None:
        for w in active:
            w.put(frame)

    return put
