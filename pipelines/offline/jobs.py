"""The offline jobs as request/response functions for the HTTP and gRPC front ends.

Each function takes a file the front end has saved (an upload) and returns JSON-able data,
an output file, or an iterator of audio chunks. They are blocking (run them in a thread); all
failures are :class:`~pipelines.errors.BackscoreError` subclasses with a message fit for the
client (the front ends map them to HTTP 4xx / gRPC INVALID_ARGUMENT).
"""

from __future__ import annotations

import contextlib
import struct
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.base import BarInfo
from pipelines.frames import AUDIO_RATE
from pipelines.library.tracks import TrackInfo
from pipelines.options import JobOptions

if TYPE_CHECKING:
    from pipelines.analysis.analyze import AnalysisOptions


@dataclass
class _LibraryCache:
    tracks: dict[str, list[TrackInfo]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, spec: str) -> list[TrackInfo]:
        with self.lock:  # one build at a time; later callers get the loaded library
            if spec not in self.tracks:
                from pipelines.library.sources import load_library

                self.tracks[spec] = load_library(spec)
            return self.tracks[spec]


_libraries = _LibraryCache()


def load_library_cached(spec: str) -> list[TrackInfo]:
    """A library loaded once per process (``"catalog"`` is built on first use)."""
    return _libraries.get(spec)


def _service_analysis() -> AnalysisOptions:
    from pipelines.analysis.analyze import analysis_options
    from pipelines.media.limits import MediaLimits

    return analysis_options(MediaLimits.for_service())


def analyze_file(path: str, options: JobOptions) -> dict[str, Any]:
    """Timeline JSON (the same schema as ``backscore analyze --json``)."""
    from pipelines.analysis.analyze import analyze
    from pipelines.analysis.engines import default_engines
    from pipelines.offline.timeline import timeline_dict

    analysis = analyze(path, default_engines(faces=options.faces), _service_analysis())
    data = timeline_dict(analysis)
    data["input"]["path"] = None  # a server-side temp file means nothing to the client
    return data


def recommend_file(path: str, options: JobOptions) -> dict[str, Any]:
    """Top-k tracks for the whole video (or per mood segment)."""
    from pipelines.analysis.analyze import analyze
    from pipelines.analysis.engines import default_engines
    from pipelines.library.profile import profile_from_analysis
    from pipelines.library.ranking import TrackMatrix, rank, rank_per_segment, trajectory_text
    from pipelines.media.decode import probe

    analysis_options = _service_analysis()
    probe(path, analysis_options.decode.limits)
    # The video first: what only its decode can refuse (stamps past the limits, corrupt data) is
    # refused before a library's first load (the catalog's takes a minute).
    analysis = analyze(path, default_engines(faces=options.faces), analysis_options)
    tracks = _libraries.get(options.library)
    profile = profile_from_analysis(analysis)
    matrix = TrackMatrix(tracks)
    out: dict[str, Any] = {"duration_s": round(analysis.duration_s, 3), "mood": trajectory_text(profile),
                           "library_size": len(tracks)}
    if options.per_segment:
        out["segments"] = [
            {"start_s": round(seg.start_s, 3), "end_s": round(seg.end_s, 3), "emotion": seg.emotion,
             "recommendations": [asdict(r) for r in recs]}
            for seg, recs in rank_per_segment(profile, matrix, options.top_k)
        ]
    else:
        out["recommendations"] = [asdict(r) for r in rank(profile, matrix, options.top_k)]
    return out


def score_file(path: str, output_path: str, options: JobOptions, bgm_only: bool = False) -> dict[str, Any]:
    """Write the scored video (or, with ``bgm_only``, the BGM as WAV) to ``output_path``; returns the timeline."""
    from pipelines.offline.score import ScoreRequest, score

    request = ScoreRequest(
        input_path=path,
        output_path=None if bgm_only else output_path,
        bgm_path=output_path if bgm_only else None,
        style=options.style,
        seed=options.seed,
        faces=options.faces,
        engine=options.engine,
        weights=options.weights,
        analysis=_service_analysis(),
    )
    result = score(request)
    data = dict(result.timeline)
    data["input"] = {**data.get("input", {}), "path": None}
    return data


def wav_header(sample_rate: int = AUDIO_RATE, channels: int = 2) -> bytes:
    """A 16-bit PCM WAV header for a stream of unknown length (sizes set to the maximum, as streamers do)."""
    byte_rate = sample_rate * channels * 2
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt "
            + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * 2, 16)
            + b"data" + struct.pack("<I", 0xFFFFFFFF))


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


@dataclass(frozen=True)
class BgmChunk:
    """One streamed piece of BGM: 16-bit little-endian stereo PCM at 48 kHz and the bars it holds."""

    index: int
    start_s: float
    pcm: bytes
    bars: tuple[BarInfo, ...]

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / (4 * AUDIO_RATE)


def bgm_chunks(path: str, options: JobOptions) -> Iterator[BgmChunk]:
    """Analyse ``path`` then yield its BGM chunk by chunk, as the music stream generates it.

    The analysis must see the whole video first (mood segments); the music then streams
    (:func:`~pipelines.offline.compose.compose_chunks`, the loop the offline job uses): the first
    chunk is ready after one bar of composition, not after the whole piece.
    """
    from pipelines.analysis.analyze import analyze
    from pipelines.analysis.engines import default_engines
    from pipelines.offline.compose import compose_chunks
    from pipelines.offline.score import music_engine_for, pace_function

    engine = music_engine_for(options.engine, options.weights)
    analysis = analyze(path, default_engines(faces=options.faces), _service_analysis())
    duration = analysis.duration_s
    chunks = compose_chunks(engine, analysis.segments, duration, style=options.style, seed=options.seed,
                            sample_rate=AUDIO_RATE, pace_at=pace_function(analysis))
    with contextlib.closing(chunks):
        for i, chunk in enumerate(chunks):
            audio = chunk.audio[: max(0, int(round((duration - chunk.start_s) * AUDIO_RATE)))]
            yield BgmChunk(i, chunk.start_s, pcm16(audio), chunk.bars)
