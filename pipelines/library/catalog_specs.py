"""The layout of the built-in catalog: which 100 tracks it holds, as :class:`CatalogSpec` values.

Pure data and arithmetic (no audio, no files): :func:`catalog_specs` is a function of the
constants below, so every machine gets the same specs. :mod:`pipelines.library.catalog_render`
turns a spec into audio and :mod:`pipelines.library.catalog` builds, caches and loads the
catalog.

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
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engines.affect import PROTOTYPES, emotion_probs
from engines.base import EMOTIONS, STYLES

#: Number of tracks; ids are 1..CATALOG_SIZE.
CATALOG_SIZE = 100
#: Runner-up emotions at least this probable become the secondary label.
SECONDARY_MIN_PROB = 0.25

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
