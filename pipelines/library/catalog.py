"""The built-in catalog: 100 royalty-free tracks, numbered 1..100, made by backscore's own composer.

Every track is rendered by :class:`engines.composer.ProceduralMusicEngine` from a fixed
:class:`CatalogSpec` (style, mood, seed, length), so the catalog is the same on every machine
and carries no licence beyond backscore's own. It is built on first use into a cache folder
and afterwards only read.

Layout of the 100 specs (:func:`catalog_specs`)
    * **Emotions.** 15 tracks each for ``exciting`` and ``happy``, 14 for each of the other
      five emotions of :data:`engines.base.EMOTIONS`.
    * **Valence/arousal.** The tracks of one emotion lie on a Vogel (sunflower) spiral around
      the emotion's prototype in :data:`engines.affect.PROTOTYPES` -- the k-th point at
      radius ``R * sqrt((k + 0.5) / n)`` and angle ``k * 137.5°`` (plus a per-emotion offset),
      which covers the disc evenly with no randomness. ``R`` is 0.45 x the distance to the
      nearest other prototype (at most 0.3), so every point is nearer its own prototype than
      any other: the primary label agrees with :func:`engines.affect.emotion_probs`. The
      ``neutral`` disc around the origin puts tracks in all four quadrants; each quadrant of
      the plane holds at least 15 tracks.
    * **Styles.** Each emotion's tracks are split over the styles that suit it
      (:data:`STYLE_MIX`); every style appears at least 12 times::

                    lofi cheerful sad epic calm tense cinematic
          exciting     .    4      .    8    .    2      1
          happy        3    9      .    1    2    .      .
          relaxing     4    .      .    .    8    .      2
          neutral      7    1      .    .    3    .      3
          sad          2    .      9    .    1    .      2
          tense        .    .      .    3    .    8      3
          fearful      .    .      3    .    .    4      7

      Within one emotion the styles go to the points by arousal: the calmer points get the
      slower styles (ordered by the midpoint of each style's tempo range).
    * **Secondary emotion.** The runner-up of ``emotion_probs(valence, arousal)`` when its
      probability is at least :data:`SECONDARY_MIN_PROB`; for a track with a development,
      the development's emotion.
    * **Development.** Every third track (ids divisible by 3) of at least 48 s moves, at
      55 % of its length, to the *neighbouring* emotion (the runner-up prototype): its mood
      steps 65 % of the way towards that prototype while the style stays, so the composer
      plays one transition bar (pivot chord, drum fill) into a related key. The first
      section stays the track's main section; its tempo/key/mode are the track's metadata.
    * **Order.** Ids go round-robin over :data:`EMOTIONS` (spiral centre first), so any
      prefix of the catalog (``size=6`` in the tests) already covers the moods.
    * **Seed** ``7000 + id``; **length** ``32 + 52 * frac(id * 0.618...)`` seconds rounded,
      i.e. 32..84 s spread evenly; the rendered track ends on the first bar line after it
      (at most one bar, <= 4 s, later), so every track is 32..88 s long.
    * **Titles.** An adjective from the emotion's word list (unique over the catalog) and a
      noun from the style's word list: "Amber Drift", "Blazing Summit".

Rendering (:func:`build_catalog`)
    48 kHz stereo, a 50 ms fade-in and a 2 s raised-cosine fade-out, loudness-normalised to
    :data:`TARGET_LUFS` (-16 LUFS integrated, BS.1770; Apple Music's level and the quieter
    of the streaming norms, for music heard on its own) and kept under -1 dBFS sample peak by
    the look-ahead limiter of :mod:`pipelines.offline.mix`. Always rendered with the built-in GM
    soundfont (``$BACKSCORE_SOUNDFONT`` is ignored), so track N sounds the same everywhere.
    Encoded as Opus (``libopus``, 112 kb/s) in Ogg through PyAV -- FLAC when the FFmpeg
    build has no libopus -- as ``NNN-title-slug.ogg``. ``catalog.json`` holds the metadata
    (see :func:`build_catalog`). When :class:`engines.music_features.MusicAnalyzer` can be
    imported at build time, each track's 32-d embedding (from the decoded file, as a user
    library is analysed) is stored too, with what the analyzer makes of the track (``analysis``:
    valence, arousal, emotions, tempo, key, mode, loudness) next to the ground truth -- the
    catalog doubles as a labelled test set for the analyzer.

Cache
    ``$BACKSCORE_CACHE`` (default ``~/.cache/backscore``) ``/catalog-v{CATALOG_VERSION}``.
    A build renders into a temporary sibling folder and renames it into place only when every
    track and ``catalog.json`` are written: an interrupted build (error, Ctrl-C) deletes its
    temporary folder and leaves nothing, and an advisory lock file makes a concurrent second
    build wait and then reuse the first one's result. Bump :data:`CATALOG_VERSION` whenever
    the specs, the composer's output or the encoding change: a new version is a new folder.
    The analyzer's name and version are recorded; a catalog whose embeddings came from
    another analyzer (or from none, when one is available now) counts as stale.

Damaged cache
    :func:`load_catalog` checks ``catalog.json`` (readable, right version and size) and that
    every audio file exists and is not empty. A damaged or stale (analyzer) cache is rebuilt (with a
    warning in the log) when ``build=True``; with ``build=False`` it raises
    :class:`LibraryError` saying which folder to delete.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from engines.affect import PROTOTYPES, emotion_probs
from engines.base import EMOTIONS, STYLES
from pipelines.errors import LibraryError, OutputError
from pipelines.library.tracks import TrackInfo
from pipelines.media.outputs import atomic_output

log = logging.getLogger(__name__)

#: Bump whenever the specs, the composer's output or the encoding change.
CATALOG_VERSION = 1
CATALOG_SIZE = 100

SAMPLE_RATE = 48_000
#: Integrated loudness of every track (LUFS, BS.1770).
TARGET_LUFS = -16.0
#: Sample-peak ceiling of the limiter after normalisation (dBFS).
PEAK_CEILING_DBFS = -1.0
FADE_IN_S = 0.05
FADE_OUT_S = 2.0
OPUS_BIT_RATE = 112_000
#: Runner-up emotions at least this probable become the secondary label.
SECONDARY_MIN_PROB = 0.25
MANIFEST = "catalog.json"
CSV_NAME = "catalog.csv"
CACHE_ENV = "BACKSCORE_CACHE"

Progress = Callable[[int, int, str], None]

#: Tracks per (emotion, style); rows sum to the emotion's count, columns are >= 12.
STYLE_MIX: dict[str, dict[str, int]] = {
    "exciting": {"cheerful": 4, "epic": 8, "tense": 2, "cinematic": 1},
    "happy": {"lofi": 3, "cheerful": 9, "epic": 1, "calm": 2},
    "relaxing": {"lofi": 4, "calm": 8, "cinematic": 2},
    "neutral": {"lofi": 7, "cheerful": 1, "calm": 3, "cinematic": 3},
    "sad": {"lofi": 2, "sad": 9, "calm": 1, "cinematic": 2},
    "tense": {"epic": 3, "tense": 8, "cinematic": 3},
    "fearful": {"sad": 3, "tense": 4, "cinematic": 7},
}

#: Style order by energy (midpoint of the composer's tempo range), slowest first.
_STYLE_ENERGY_ORDER: tuple[str, ...] = ("sad", "calm", "lofi", "cinematic", "epic", "tense", "cheerful")

#: Title adjectives per emotion (all distinct, so titles are unique).
EMOTION_WORDS: dict[str, tuple[str, ...]] = {
    "exciting": ("Blazing", "Electric", "Soaring", "Racing", "Rising", "Roaring", "Radiant", "Fiery", "Rapid",
                 "Wild", "Bold", "Vivid", "Charging", "Daring", "Burning"),
    "happy": ("Sunny", "Golden", "Bright", "Merry", "Cheery", "Jolly", "Breezy", "Sparkling", "Lucky", "Rosy",
              "Warm", "Honey", "Playful", "Bouncy", "Lively"),
    "relaxing": ("Gentle", "Soft", "Drifting", "Quiet", "Still", "Mellow", "Tranquil", "Hazy", "Velvet",
                 "Floating", "Silken", "Lazy", "Serene", "Feathered"),
    "neutral": ("Amber", "Paper", "Silver", "Open", "Plain", "Simple", "Steady", "Even", "Urban", "Clear",
                "Modern", "Morning", "Daily", "Linen"),
    "sad": ("Faded", "Grey", "Lonely", "Distant", "Fallen", "Rainy", "Pale", "Wistful", "Hollow", "Weary",
            "Blue", "Empty", "Autumn", "Broken"),
    "tense": ("Restless", "Shifting", "Uneasy", "Ticking", "Tight", "Coiled", "Hidden", "Sharp", "Silent",
              "Crooked", "Edgy", "Looming", "Narrow", "Nervous"),
    "fearful": ("Dark", "Haunted", "Shadowed", "Midnight", "Frozen", "Creeping", "Phantom", "Grim", "Trembling",
                "Ashen", "Sunken", "Lost", "Cold", "Murky"),
}

#: Title nouns per style.
STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "lofi": ("Drift", "Cafe", "Rooftop", "Tape", "Window", "Notebook", "Alley", "Corner", "Sketch", "Vinyl",
             "Streetlight", "Balcony"),
    "cheerful": ("Parade", "Meadow", "Picnic", "Carousel", "Garden", "Kite", "Festival", "Harbor", "Orchard",
                 "Sunrise", "Market", "Bicycle"),
    "sad": ("Letters", "Rain", "Memory", "Farewell", "Echo", "Winter", "Shore", "Lament", "Photograph", "Embers",
            "Goodbye", "Window"),
    "epic": ("Summit", "Horizon", "Kingdom", "Voyage", "Legend", "Frontier", "Tempest", "Citadel", "Banner",
             "Odyssey", "Empire", "Skyline"),
    "calm": ("Lake", "Breeze", "Tide", "Cloud", "Dawn", "Moss", "River", "Lantern", "Pond", "Haze", "Dune",
             "Willow"),
    "tense": ("Pulse", "Signal", "Wire", "Corridor", "Clockwork", "Pursuit", "Static", "Circuit", "Tunnel",
              "Countdown", "Threshold", "Cipher"),
    "cinematic": ("Shadows", "Passage", "Cathedral", "Lighthouse", "Valley", "Requiem", "Prelude", "Nocturne",
                  "Canyon", "Fog", "Procession", "Aurora"),
}

_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
_GOLDEN_FRACTION = (math.sqrt(5.0) - 1.0) / 2.0
_VA_LIMIT = 0.95
_MAX_RADIUS = 0.3
_DEVELOPMENT_EVERY = 3
_DEVELOPMENT_MIN_S = 48.0
_DEVELOPMENT_AT = 0.55
_DEVELOPMENT_STEP = 0.65


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class Development:
    """A gentle change of mood in the middle of a track: from ``at_s`` on, the composer follows this."""

    at_s: float
    emotion: str
    valence: float
    arousal: float


@dataclass(frozen=True)
class CatalogSpec:
    """What catalog track ``id`` is: the composer's inputs plus its title. See the module doc."""

    id: int
    title: str
    style: str
    emotion: str
    secondary_emotion: str | None
    valence: float
    arousal: float
    seed: int
    duration_s: float
    development: Development | None = None

    @property
    def emotions(self) -> tuple[str, ...]:
        """Primary label first, then the secondary one if any."""
        return (self.emotion,) if self.secondary_emotion is None else (self.emotion, self.secondary_emotion)

    def filename(self, ext: str = ".ogg") -> str:
        """``NNN-title-slug.ext``, e.g. ``001-blazing-summit.ogg``."""
        return f"{self.id:03d}-{slugify(self.title)}{ext}"


def slugify(text: str) -> str:
    """Lower-case ASCII words joined by ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _emotion_counts(size: int = CATALOG_SIZE) -> dict[str, int]:
    base, extra = divmod(size, len(EMOTIONS))
    return {e: base + (1 if i < extra else 0) for i, e in enumerate(EMOTIONS)}


def _spiral(emotion: str, n: int) -> list[tuple[float, float]]:
    """``n`` evenly spread (valence, arousal) points around the emotion's prototype, centre first."""
    cv, ca = PROTOTYPES[emotion]
    nearest = min(math.dist((cv, ca), PROTOTYPES[o]) for o in PROTOTYPES if o != emotion)
    radius = min(_MAX_RADIUS, 0.45 * nearest)
    offset = EMOTIONS.index(emotion) * 0.9
    points = []
    for k in range(n):
        r = radius * math.sqrt((k + 0.5) / n)
        theta = offset + k * _GOLDEN_ANGLE
        v = float(np.clip(cv + r * math.cos(theta), -_VA_LIMIT, _VA_LIMIT))
        a = float(np.clip(ca + r * math.sin(theta), -_VA_LIMIT, _VA_LIMIT))
        points.append((round(v, 3), round(a, 3)))
    return points


def _styles_by_arousal(emotion: str, points: Sequence[tuple[float, float]]) -> list[str]:
    """Style of each point: the emotion's style mix, slower styles on the calmer points."""
    mix = STYLE_MIX[emotion]
    pool = [s for s in _STYLE_ENERGY_ORDER for _ in range(mix.get(s, 0))]
    if len(pool) != len(points):
        raise AssertionError(f"STYLE_MIX[{emotion!r}] has {len(pool)} tracks, expected {len(points)}")
    order = sorted(range(len(points)), key=lambda k: (points[k][1], k))
    styles = [""] * len(points)
    for rank, k in enumerate(order):
        styles[k] = pool[rank]
    return styles


def _runner_up(valence: float, arousal: float, emotion: str) -> tuple[str, float]:
    probs = emotion_probs(valence, arousal)
    ranked = [i for i in np.argsort(-probs) if EMOTIONS[i] != emotion]
    return EMOTIONS[ranked[0]], float(probs[ranked[0]])


@functools.cache
def catalog_specs() -> tuple[CatalogSpec, ...]:
    """The 100 track specs, ids 1..100 in order. Pure function of the constants above (cached)."""
    counts = _emotion_counts()
    per_emotion: dict[str, list[tuple[tuple[float, float], str]]] = {}
    for e in EMOTIONS:
        pts = _spiral(e, counts[e])
        per_emotion[e] = list(zip(pts, _styles_by_arousal(e, pts), strict=True))
    order = [(e, k) for k in range(max(counts.values())) for e in EMOTIONS if k < counts[e]]
    style_seen: dict[str, int] = dict.fromkeys(STYLES, 0)
    specs: list[CatalogSpec] = []
    for index, (emotion, k) in enumerate(order):
        track_id = index + 1
        (valence, arousal), style = per_emotion[emotion][k]
        noun_list = STYLE_WORDS[style]
        title = f"{EMOTION_WORDS[emotion][k]} {noun_list[style_seen[style] % len(noun_list)]}"
        style_seen[style] += 1
        duration = float(32 + round(52 * ((track_id * _GOLDEN_FRACTION) % 1.0)))
        other, p_other = _runner_up(valence, arousal, emotion)
        development = None
        if track_id % _DEVELOPMENT_EVERY == 0 and duration >= _DEVELOPMENT_MIN_S:
            tv, ta = PROTOTYPES[other]
            development = Development(
                at_s=round(_DEVELOPMENT_AT * duration, 1),
                emotion=other,
                valence=round(valence + _DEVELOPMENT_STEP * (tv - valence), 3),
                arousal=round(arousal + _DEVELOPMENT_STEP * (ta - arousal), 3),
            )
        secondary = other if development is not None or p_other >= SECONDARY_MIN_PROB else None
        specs.append(CatalogSpec(id=track_id, title=title, style=style, emotion=emotion,
                                 secondary_emotion=secondary, valence=valence, arousal=arousal,
                                 seed=7000 + track_id, duration_s=duration, development=development))
    return tuple(specs)


# --------------------------------------------------------------------------- paths


def cache_root(cache_dir: str | None = None) -> str:
    """``cache_dir``, else ``$BACKSCORE_CACHE``, else ``~/.cache/backscore`` (absolute)."""
    root = cache_dir or os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "backscore")
    return os.path.abspath(root)


def catalog_dir(cache_dir: str | None = None) -> str:
    """Folder of the catalog of this :data:`CATALOG_VERSION` under the cache root."""
    return os.path.join(cache_root(cache_dir), f"catalog-v{CATALOG_VERSION}")


@contextlib.contextmanager
def _build_lock(root: str) -> Iterator[None]:
    """Exclusive advisory lock for building in ``root`` (no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(os.path.join(root, f".catalog-v{CATALOG_VERSION}.lock"), "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- rendering (worker side)


def _pick_codec() -> str:
    """``libopus`` when this FFmpeg build has it, else ``flac``."""
    import av

    return "libopus" if "libopus" in av.codecs_available else "flac"


def _extension(codec: str) -> str:
    return ".ogg" if codec == "libopus" else ".flac"


def _worker_init() -> None:
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


def _render_track(spec: CatalogSpec, out_dir: str, codec: str, with_embedding: bool) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- build


def _mp_context() -> multiprocessing.context.BaseContext:
    """forkserver where available: workers start clean even if the caller has threads (torch)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _remove_leftovers(root: str) -> None:
    """Delete temporary folders of builds that were killed (call with the build lock held)."""
    prefix = f".catalog-v{CATALOG_VERSION}."
    for entry in os.listdir(root):
        if entry.startswith(prefix) and (entry.endswith(".partial") or ".old-" in entry):
            log.info("catalog: removing leftover %s", entry)
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


def _render_all(specs: Sequence[CatalogSpec], out_dir: str, codec: str, with_embedding: bool, workers: int,
                progress: Progress | None) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    total = len(specs)
    if progress is not None:
        progress(0, total, "")
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=_mp_context(),
                             initializer=_worker_init) as pool:
        futures: dict[Future[dict[str, Any]], CatalogSpec] = {
            pool.submit(_render_track, s, out_dir, codec, with_embedding): s for s in specs}
        try:
            for fut in as_completed(futures):
                records.append(fut.result())
                if progress is not None:
                    progress(len(records), total, futures[fut].title)
        except BaseException:
            # Stop queued tracks and wait for the running ones, so nothing writes into
            # out_dir after the caller deletes it.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return sorted(records, key=lambda r: int(r["id"]))


def _manifest(records: list[dict[str, Any]], codec: str, size: int, analyzer: str | None) -> dict[str, Any]:
    dims = {len(r["embedding"]) for r in records if "embedding" in r}
    return {
        "catalog_version": CATALOG_VERSION,
        "size": size,
        "sample_rate": SAMPLE_RATE,
        "codec": codec,
        "bit_rate": OPUS_BIT_RATE if codec == "libopus" else None,
        "target_lufs": TARGET_LUFS,
        "analyzer": analyzer,
        "embedding_dim": dims.pop() if len(dims) == 1 and len(records) == sum("embedding" in r for r in records)
        else None,
        "tracks": records,
    }


def build_catalog(cache_dir: str | None = None, progress: Progress | None = None, workers: int = 2,
                  size: int = CATALOG_SIZE, force: bool = True) -> str:
    """Render the catalog (tracks 1..``size``) into the cache; return the catalog folder.

    ``progress(done, total, title)`` is called as tracks finish (an exception raised from it
    aborts the build cleanly). ``workers`` processes render in parallel. With ``force=False``
    an intact catalog of the same size already in place (e.g. built meanwhile by another
    process) is kept as is.

    ``catalog.json``: ``catalog_version``, ``size``, ``sample_rate``, ``codec``,
    ``bit_rate``, ``target_lufs``, ``analyzer``, ``embedding_dim`` and ``tracks``: per track ``id``,
    ``title``, ``file`` (relative), ``duration_s``, ``emotions``, ``valence``, ``arousal``,
    ``tempo_bpm``, ``key``, ``mode``, ``instruments`` (of the main section as the composer
    planned and rendered it), ``style``, ``loudness_lufs`` (measured), ``seed``,
    ``development``, ``sections`` and, with an analyzer, ``embedding`` and ``analysis``.
    """
    if not 1 <= size <= CATALOG_SIZE:
        raise ValueError(f"size must be in 1..{CATALOG_SIZE}, got {size}")
    root = cache_root(cache_dir)
    final = catalog_dir(cache_dir)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        raise LibraryError(f"cannot create the cache folder {root} ({exc.strerror or exc}); "
                           f"set {CACHE_ENV} to a writable folder") from exc
    with _build_lock(root):
        if not force and _check(final, size) is None:
            log.info("catalog: %s was built meanwhile", final)
            return final
        _remove_leftovers(root)
        specs = catalog_specs()[:size]
        codec = _pick_codec()
        if codec != "libopus":
            log.warning("catalog: this FFmpeg has no libopus; writing FLAC instead")
        analyzer = analyzer_id()
        tmp = tempfile.mkdtemp(prefix=f".catalog-v{CATALOG_VERSION}.", suffix=".partial", dir=root)
        t0 = time.perf_counter()
        try:
            records = _render_all(specs, tmp, codec, analyzer is not None, workers, progress)
            with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as fh:
                json.dump(_manifest(records, codec, size, analyzer), fh, indent=1)
            os.chmod(tmp, 0o755)  # mkdtemp made it private; the catalog is ordinary readable data
            _swap_into_place(tmp, final, root)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise LibraryError(f"building the music catalog in {root} failed ({exc.strerror or exc}); "
                               f"check the free space or set {CACHE_ENV} to another folder") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("catalog: built %d tracks in %.1f s into %s", size, time.perf_counter() - t0, final)
    return final


def _swap_into_place(tmp: str, final: str, root: str) -> None:
    """Rename the finished temporary folder to ``final``, replacing an old catalog there."""
    old = None
    if os.path.lexists(final):
        old = tempfile.mkdtemp(prefix=f".catalog-v{CATALOG_VERSION}.old-", dir=root)
        os.rmdir(old)
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- load


def _check(directory: str, size: int) -> str | None:
    """Why the catalog in ``directory`` cannot be used (None when it is intact)."""
    try:
        manifest = _read_manifest(directory)
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as exc:
        return f"unreadable {MANIFEST}: {exc}"
    return _problem(manifest, directory, size)


def _read_manifest(directory: str) -> dict[str, Any]:
    with open(os.path.join(directory, MANIFEST), encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{MANIFEST} is not an object")
    return data


def _problem(manifest: dict[str, Any], directory: str, size: int) -> str | None:
    if manifest.get("catalog_version") != CATALOG_VERSION:
        return f"catalog version {manifest.get('catalog_version')!r}, expected {CATALOG_VERSION}"
    tracks = manifest.get("tracks")
    if not isinstance(tracks, list) or manifest.get("size") != size or len(tracks) != size:
        return f"expected {size} tracks"
    analyzer = analyzer_id()
    if manifest.get("analyzer") != analyzer:
        return f"embeddings from {manifest.get('analyzer') or 'no analyzer'}, now {analyzer or 'none'}"
    for rec in tracks:
        try:
            path = os.path.join(directory, rec["file"])
        except (KeyError, TypeError):
            return "a track record has no file"
        try:
            if os.path.getsize(path) == 0:
                return f"empty audio file {rec['file']}"
        except OSError:
            return f"missing audio file {rec['file']}"
    return None


def _track_info(rec: dict[str, Any], directory: str) -> TrackInfo:
    emb = rec.get("embedding")
    lufs = rec.get("loudness_lufs")
    return TrackInfo(
        id=int(rec["id"]),
        title=str(rec["title"]),
        path=os.path.join(directory, rec["file"]),
        duration_s=float(rec["duration_s"]),
        valence=float(rec["valence"]),
        arousal=float(rec["arousal"]),
        emotions=tuple(rec["emotions"]),
        tempo_bpm=float(rec["tempo_bpm"]),
        key=str(rec["key"]),
        mode=str(rec["mode"]),
        style=rec.get("style"),
        instruments=tuple(rec.get("instruments", ())),
        loudness_lufs=float(lufs) if lufs is not None else float("nan"),
        embedding=np.asarray(emb, dtype=np.float32) if emb else np.zeros(0, np.float32),
    )


def load_catalog(cache_dir: str | None = None, progress: Progress | None = None, build: bool = True,
                 size: int = CATALOG_SIZE) -> list[TrackInfo]:
    """The catalog's tracks (id order), building it first if it is missing or damaged.

    After the first build this only reads ``catalog.json`` and checks that the audio files
    exist. ``build=False`` raises :class:`LibraryError` instead of building. ``size`` < 100
    is for tests: a catalog of the first ``size`` tracks.
    """
    directory = catalog_dir(cache_dir)
    reason = _check(directory, size)
    if reason is not None:
        if not build:
            if reason == "missing":
                raise LibraryError(f"the music catalog is not built yet ({directory}); "
                                   "run `backscore catalog list` to build it")
            raise LibraryError(f"the music catalog in {directory} is damaged or out of date ({reason}); "
                               f"delete that folder and run `backscore catalog list` to rebuild it")
        if reason != "missing":
            log.warning("catalog: %s is damaged or out of date (%s); rebuilding it", directory, reason)
        else:
            log.info("catalog: building %d tracks into %s (first use)", size, directory)
        build_catalog(cache_dir, progress=progress, size=size, force=False)
    try:
        manifest = _read_manifest(directory)
        tracks = [_track_info(rec, directory) for rec in manifest["tracks"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LibraryError(f"cannot read the music catalog in {directory} ({exc}); "
                           "delete that folder and run `backscore catalog list` to rebuild it") from exc
    return sorted(tracks, key=lambda t: t.id)


def get_track(tracks: Sequence[TrackInfo], track_id: int) -> TrackInfo:
    """The track with catalog number ``track_id``; :class:`LibraryError` if there is none."""
    for t in tracks:
        if t.id == track_id:
            return t
    ids = [t.id for t in tracks]
    span = f"{min(ids)}..{max(ids)}" if ids else "empty"
    raise LibraryError(f"no track {track_id} in the catalog ({span})")


# --------------------------------------------------------------------------- export / listing

_CSV_FIELDS = ("id", "title", "file", "duration_s", "emotions", "valence", "arousal", "tempo_bpm", "key", "mode",
               "style", "instruments", "loudness_lufs")


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def export_catalog(dest_dir: str, cache_dir: str | None = None, progress: Progress | None = None,
                   size: int = CATALOG_SIZE) -> int:
    """Copy the audio files plus ``catalog.json`` and ``catalog.csv`` into ``dest_dir``.

    Builds the catalog first if needed. ``dest_dir`` is created if missing; a file there, or
    the cache itself, is refused with :class:`OutputError`. Returns the number of tracks.
    """
    dest = os.path.abspath(dest_dir)
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise OutputError(f"export destination is a file, not a folder: {dest_dir}")
    directory = catalog_dir(cache_dir)
    if _inside(dest, directory) or os.path.realpath(dest) == os.path.realpath(cache_root(cache_dir)):
        raise OutputError(f"refusing to export into the catalog cache itself ({dest_dir}); choose another folder")
    tracks = load_catalog(cache_dir, progress=progress, size=size)
    manifest = _read_manifest(directory)
    try:
        os.makedirs(dest, exist_ok=True)
        for rec in manifest["tracks"]:
            with atomic_output(os.path.join(dest, rec["file"])) as tmp:
                shutil.copyfile(os.path.join(directory, rec["file"]), tmp)
        with atomic_output(os.path.join(dest, MANIFEST)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1)
        with atomic_output(os.path.join(dest, CSV_NAME)) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=_CSV_FIELDS)
            writer.writeheader()
            for rec in manifest["tracks"]:
                row = {k: rec.get(k) for k in _CSV_FIELDS}
                row["emotions"] = ";".join(rec["emotions"])
                row["instruments"] = ";".join(rec.get("instruments", ()))
                writer.writerow(row)
    except OSError as exc:
        raise OutputError(f"cannot export the catalog to {dest_dir} ({exc.strerror or exc})") from exc
    log.info("catalog: exported %d tracks to %s", len(tracks), dest)
    return len(tracks)


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


def format_table(tracks: Sequence[TrackInfo]) -> str:
    """Plain-text table for ``backscore catalog list``: one row per track."""
    title_w = max([len("title"), *(len(t.title) for t in tracks)])
    head = (f"{'id':>3}  {'title':<{title_w}}  {'style':<9}  {'emotion':<8}  {'val':>5}  {'aro':>5}  "
            f"{'tempo':>5}  {'key':<12}  {'dur':>5}")
    lines = [head, "-" * len(head)]
    for t in tracks:
        key = f"{t.key} {t.mode}"
        lines.append(f"{t.id:>3}  {t.title:<{title_w}}  {t.style or '-':<9}  {t.emotion:<8}  {t.valence:>+5.2f}  "
                     f"{t.arousal:>+5.2f}  {t.tempo_bpm:>5.0f}  {key:<12}  {_duration(t.duration_s):>5}")
    return "\n".join(lines)


def tracks_json(tracks: Sequence[TrackInfo]) -> list[dict[str, Any]]:
    """JSON-ready records for ``backscore catalog list --json`` (embeddings left out)."""
    out = []
    for t in tracks:
        out.append({
            "id": t.id, "title": t.title, "path": t.path, "duration_s": t.duration_s,
            "emotions": list(t.emotions), "valence": t.valence, "arousal": t.arousal,
            "tempo_bpm": t.tempo_bpm, "key": t.key, "mode": t.mode, "style": t.style,
            "instruments": list(t.instruments),
            "loudness_lufs": t.loudness_lufs if math.isfinite(t.loudness_lufs) else None,
        })
    return out
