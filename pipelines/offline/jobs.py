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
    from pipelines.analysis.analyze import Analysis, AnalysisOptions


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


def check_track(spec: str, track_id: int, name: str | None = None) -> None:
    """:class:`~pipelines.errors.LibraryError` unless library ``spec`` (``name`` in the message: what the client
    calls it) has track ``track_id``. The catalog's numbers come from its specs, so nothing is rendered; a
    user's index is read (and kept, as the job would)."""
    from pipelines.library.sources import CATALOG, check_track_id

    if spec == CATALOG:
        from pipelines.library.catalog_specs import catalog_specs

        ids = [s.id for s in catalog_specs()]
    else:
        ids = [t.id for t in load_library_cached(spec)]
    check_track_id(ids, track_id, name or spec)


def service_analysis() -> AnalysisOptions:
    """The analysis options of the service: its media limits (the `MAX_MEDIA_S`, `MAX_PIXELS_PER_S` and
    `MAX_FRAME_PIXELS` settings)."""
    from pipelines.analysis.analyze import analysis_options
    from pipelines.media.limits import MediaLimits

    return analysis_options(MediaLimits.for_service())


def analyze_file(path: str, options: JobOptions) -> dict[str, Any]:
    """Timeline JSON (the same schema as ``backscore analyze --json``)."""
    from pipelines.analysis.analyze import analyze
    from pipelines.analysis.engines import default_engines
    from pipelines.offline.timeline import timeline_dict

    analysis = analyze(path, default_engines(faces=options.faces), service_analysis())
    data = timeline_dict(analysis)
    data["input"]["path"] = None  # a server-side temp file means nothing to the client
    return data


def recommend_file(path: str, options: JobOptions) -> dict[str, Any]:
    """Top-k tracks for the whole video (or per mood segment)."""
    from pipelines.analysis.analyze import analyze
    from pipelines.analysis.engines import default_engines
    from pipelines.media.decode import probe

    analysis_options = service_analysis()
    probe(path, analysis_options.decode.limits)
    # The video first: what only its decode can refuse (stamps past the limits, corrupt data) is
    # refused before a library's first load (the catalog's takes a minute).
    analysis = analyze(path, default_engines(faces=options.faces), analysis_options)
    return recommend_from_analysis(analysis, options)


def recommend_from_analysis(analysis: Analysis, options: JobOptions) -> dict[str, Any]:
    """:func:`recommend_file`'s answer for an analysis made before (the async jobs reuse theirs)."""
    from pipelines.library.profile import profile_from_analysis
    from pipelines.library.ranking import TrackMatrix, rank, rank_per_segment, trajectory_text

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
        analysis=service_analysis(),
        loudness=options.loudness,
    )
    result = score(request)
    data = dict(result.timeline)
    data["input"] = {**data.get("input", {}), "path": None}
    return data


#: What ``score_export_file`` writes for each kind of export: file name and media type.
EXPORTS = {"midi": ("score.mid", "audio/midi"), "stems": ("stems.zip", "application/zip")}


def score_export_file(path: str, work: str, options: JobOptions, kind: str) -> str:
    """The score as MIDI (``kind="midi"``) or the BGM's stems (``"stems"``: a zip of the stem WAVs and the
    timeline JSON), written in the job's private folder ``work``; returns the file's path."""
    import json
    import os
    import zipfile

    from pipelines.offline.score import ScoreRequest, score

    name, _ = EXPORTS[kind]
    out = os.path.join(work, name)
    stems = os.path.join(work, "stems") if kind == "stems" else None
    request = ScoreRequest(input_path=path, output_path=None, style=options.style, seed=options.seed,
                           faces=options.faces, engine=options.engine, weights=options.weights,
                           analysis=service_analysis(), loudness=options.loudness,
                           midi_path=out if kind == "midi" else None, stems_dir=stems)
    result = score(request)
    if stems is not None:
        data = dict(result.timeline)
        data["input"] = {**data.get("input", {}), "path": None}
        entry = data.get("exports", {}).get("stems", {})
        files = entry.get("files", {})
        data["exports"] = {"stems": {**entry, "dir": None}}
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
            for file in files.values():
                zf.write(os.path.join(stems, file), arcname=file)
            zf.writestr("timeline.json", json.dumps(data, indent=1) + "\n")
    return out


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


def _leveled_bgm_chunks(path: str, options: JobOptions) -> Iterator[BgmChunk]:
    """With a loudness preset: the whole score job first (the preset is measured on the whole mix), its BGM
    alone written next to ``path`` (the request's private folder), then sent a bar at a time."""
    import os
    import wave

    from pipelines.offline.score import ScoreRequest, score

    out = os.path.join(os.path.dirname(os.path.abspath(path)), "bgm.leveled.wav")
    result = score(ScoreRequest(input_path=path, output_path=None, bgm_path=out, style=options.style,
                                seed=options.seed, faces=options.faces, engine=options.engine, weights=options.weights,
                                analysis=service_analysis(), loudness=options.loudness))
    with wave.open(out) as w:
        total = w.getnframes()
        bars = [b for b in result.music.bars if round(b.start_s * AUDIO_RATE) < total]
        starts = [int(round(b.start_s * AUDIO_RATE)) for b in bars] or [0]
        for i, start in enumerate(starts):
            stop = starts[i + 1] if i + 1 < len(starts) else total
            w.setpos(start)
            yield BgmChunk(i, start / AUDIO_RATE, w.readframes(stop - start), (bars[i],) if bars else ())


def bgm_chunks(path: str, options: JobOptions) -> Iterator[BgmChunk]:
    """Analyse ``path`` then yield its BGM chunk by chunk, as the music stream generates it (with a loudness
    preset: once the whole mix is made, :func:`_leveled_bgm_chunks`).

    The analysis must see the whole video first (mood segments); the music then streams
    (:func:`~pipelines.offline.compose.compose_chunks`, the loop the offline job uses, on the same beat
    plan from the cuts timed to the frame): the first chunk is ready after one bar of composition and the
    plan, not after the whole piece.
    """
    from pipelines.analysis.analyze import analyze
    from pipelines.analysis.engines import default_engines
    from pipelines.offline.compose import compose_chunks
    from pipelines.offline.score import music_engine_for, pace_function

    if options.loudness:
        yield from _leveled_bgm_chunks(path, options)
        return
    from pipelines.offline.cut_times import refine_cuts

    engine = music_engine_for(options.engine, options.weights)
    analysis_options = service_analysis()
    analysis = analyze(path, default_engines(faces=options.faces), analysis_options)
    duration = analysis.duration_s
    # the cuts to the frame, for the beat plan (as the score job does)
    cuts = refine_cuts(path, analysis.cuts, 1.0 / analysis_options.decode.analysis_fps,
                       changes=analysis.frame_changes)
    chunks = compose_chunks(engine, analysis.segments, duration, style=options.style, seed=options.seed,
                            sample_rate=AUDIO_RATE, pace_at=pace_function(analysis), cuts=cuts)
    with contextlib.closing(chunks):
        for i, chunk in enumerate(chunks):
            audio = chunk.audio[: max(0, int(round((duration - chunk.start_s) * AUDIO_RATE)))]
            yield BgmChunk(i, chunk.start_s, pcm16(audio), chunk.bars)
