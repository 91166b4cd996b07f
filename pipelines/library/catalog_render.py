"""Rendering one catalog track: compose its :class:`~pipelines.library.catalog_specs.CatalogSpec`,
master it and encode it (the build worker's side of :mod:`pipelines.library.catalog`).

Rendering (:func:`render_track`)
    48 kHz stereo, a 50 ms fade-in and a 2 s raised-cosine fade-out, loudness-normalised to
    :data:`TARGET_LUFS` (-16 LUFS integrated, BS.1770; Apple Music's level and the quieter
    of the streaming norms, for music heard on its own) and kept under -1.5 dBFS sample peak by
    the look-ahead limiter of :mod:`pipelines.offline.mix`. Always rendered with the built-in GM
    soundfont (``$BACKSCORE_SOUNDFONT`` is ignored), so track N sounds the same everywhere.
    Encoded as Opus (``libopus``, 112 kb/s) in Ogg through PyAV -- FLAC when the FFmpeg
    build has no libopus -- as ``NNN-title-slug.ogg``. ``catalog.json`` holds the metadata
    (see :func:`pipelines.library.catalog.build_catalog`). When
    :class:`engines.music_features.MusicAnalyzer` can be imported at build time, each track's
    32-d embedding (from the decoded file, as a user library is analysed) is stored too, with
    what the analyzer makes of the track (``analysis``: valence, arousal, emotions, tempo, key,
    mode, loudness) next to the ground truth -- the catalog doubles as a labelled test set for
    the analyzer.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from typing import Any

import numpy as np

from pipelines.library.catalog_specs import CatalogSpec

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
#: Integrated loudness of every track (LUFS, BS.1770).
TARGET_LUFS = -16.0
#: Sample-peak ceiling of the limiter after normalisation (dBFS): 1.5 dB of room for the Opus codec's overshoot
#: (up to about 1 dB on busy drums), so a decoded track never clips.
PEAK_CEILING_DBFS = -1.5
FADE_IN_S = 0.05
FADE_OUT_S = 2.0
OPUS_BIT_RATE = 112_000


def pick_codec() -> str:
    """``libopus`` when this FFmpeg build has it, else ``flac``."""
    import av

    return "libopus" if "libopus" in av.codecs_available else "flac"


def _extension(codec: str) -> str:
    return ".ogg" if codec == "libopus" else ".flac"


def worker_init() -> None:
    """Catalog tracks always use the built-in soundfont, whatever the user's environment says."""
    from engines.composer.synth import SOUNDFONT_ENV

    os.environ.pop(SOUNDFONT_ENV, None)


def render_audio(spec: CatalogSpec) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Compose, fade, normalise and limit one track: ``(audio (n, 2) float32, sections)``.

    ``sections`` lists each section's first regular bar (start_s, emotion, tempo_bpm, key,
    mode, style, instruments), the main section first.
    """
    from engines.base import MoodControl, MusicStreamOptions
    from engines.composer import ProceduralMusicEngine
    from pipelines.offline.mix import fade_envelope, limiter_gain, normalize_loudness

    stream = ProceduralMusicEngine().open_stream(
        MusicStreamOptions(sample_rate=SAMPLE_RATE, seed=spec.seed, style=spec.style))
    try:
        main = MoodControl(spec.valence, spec.arousal, spec.emotion)
        dev = spec.development
        if dev is None:
            chunks = [stream.generate(main, spec.duration_s)]
        else:
            first = stream.generate(main, dev.at_s)
            second = stream.generate(MoodControl(dev.valence, dev.arousal, dev.emotion),
                                     max(0.0, spec.duration_s - first.duration_s))
            chunks = [first, second]
    finally:
        stream.close()
    audio = np.concatenate([c.audio for c in chunks]).astype(np.float64)
    sections: list[dict[str, Any]] = []
    seen: set[int] = set()
    for bar in (b for c in chunks for b in c.bars):
        if bar.transition or bar.section in seen:
            continue
        seen.add(bar.section)
        sections.append({"start_s": round(bar.start_s, 3), "emotion": bar.emotion, "tempo_bpm": bar.tempo_bpm,
                         "key": bar.key, "mode": bar.mode, "style": bar.style,
                         "instruments": list(bar.instruments)})
    audio *= fade_envelope(audio.shape[0], SAMPLE_RATE, FADE_IN_S, FADE_OUT_S)[:, None]
    audio = normalize_loudness(audio, SAMPLE_RATE, TARGET_LUFS)
    audio *= limiter_gain(audio, SAMPLE_RATE, ceiling_dbfs=PEAK_CEILING_DBFS)[:, None]
    return audio.astype(np.float32), sections


def encode_audio(audio: np.ndarray, path: str, codec: str, title: str = "", track: int | None = None) -> None:
    """Write stereo float audio at :data:`SAMPLE_RATE` as Opus-in-Ogg (``libopus``) or FLAC."""
    import av

    fmt = "ogg" if codec == "libopus" else "flac"
    planar = np.ascontiguousarray(np.clip(audio, -1.0, 1.0).T.astype(np.float32))
    with av.open(path, "w", format=fmt) as out:
        if title:
            out.metadata["title"] = title
            out.metadata["artist"] = "backscore catalog"
        if track is not None:
            out.metadata["tracknumber"] = str(track)
        stream: Any = out.add_stream(codec, rate=SAMPLE_RATE)
        stream.layout = "stereo"
        if codec == "libopus":
            stream.bit_rate = OPUS_BIT_RATE
            stream.format = "flt"
        else:
            stream.format = "s16"
        block = 960 * 20
        for pos in range(0, planar.shape[1], block):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, pos:pos + block]),
                                               format="fltp", layout="stereo")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = pos
            frame.time_base = Fraction(1, SAMPLE_RATE)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _analyzer() -> Any | None:
    """``engines.music_features.MusicAnalyzer()`` if that module exists and works here, else None."""
    try:
        from engines.music_features import MusicAnalyzer
    except ImportError:
        return None
    from engines.base import EngineUnavailable

    try:
        return MusicAnalyzer()
    except EngineUnavailable as exc:
        log.warning("catalog: music analyzer unavailable, no embeddings: %s", exc)
        return None


def analyzer_id() -> str | None:
    """Name and version of the music analyzer that embeddings come from here (None: no analyzer).

    A catalog built with another analyzer (or none, when one is available now) is stale.
    """
    analyzer = _analyzer()
    if analyzer is None:
        return None
    return f"{getattr(analyzer, 'name', type(analyzer).__name__)} v{getattr(analyzer, 'version', 0)}"


def render_track(spec: CatalogSpec, out_dir: str, codec: str, with_embedding: bool) -> dict[str, Any]:
    """Worker: render and encode one track into ``out_dir``; return its ``catalog.json`` record."""
    from pipelines.offline.mix import integrated_loudness

    audio, sections = render_audio(spec)
    name = spec.filename(_extension(codec))
    encode_audio(audio, os.path.join(out_dir, name), codec, spec.title, spec.id)
    main = sections[0]
    record: dict[str, Any] = {
        "id": spec.id,
        "title": spec.title,
        "file": name,
        "duration_s": round(audio.shape[0] / SAMPLE_RATE, 4),
        "emotions": list(spec.emotions),
        "valence": spec.valence,
        "arousal": spec.arousal,
        "tempo_bpm": main["tempo_bpm"],
        "key": main["key"],
        "mode": main["mode"],
        "style": spec.style,
        "instruments": main["instruments"],
        "loudness_lufs": round(integrated_loudness(audio, SAMPLE_RATE), 2),
        "seed": spec.seed,
        "development": None if spec.development is None else {
            "at_s": spec.development.at_s, "emotion": spec.development.emotion,
            "valence": spec.development.valence, "arousal": spec.development.arousal},
        "sections": sections,
    }
    if with_embedding:
        analyzer = _analyzer()
        if analyzer is None:
            raise RuntimeError("the music analyzer is available in the parent but not in a build worker")
        from pipelines.media.decode import load_audio

        mono = load_audio(os.path.join(out_dir, name), int(analyzer.sample_rate), mono=True)
        desc = analyzer.analyze(mono)
        record["embedding"] = [round(float(x), 6) for x in np.asarray(desc.embedding, dtype=np.float32)]
        # What the analyzer hears, next to the ground truth above (a labelled test set for it).
        record["analysis"] = {"valence": round(float(desc.valence), 3), "arousal": round(float(desc.arousal), 3),
                              "emotions": list(desc.emotions), "tempo_bpm": round(float(desc.tempo_bpm), 1),
                              "key": desc.key, "mode": desc.mode,
                              "loudness_lufs": round(float(desc.loudness_lufs), 2)}
    return record
