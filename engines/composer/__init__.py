"""The embedded default music engine: a procedural composer rendered with a GM soundfont.

``ProceduralMusicEngine().open_stream(MusicStreamOptions(...))`` gives a stream whose
``generate(control, min_duration_s)`` returns whole bars of stereo audio that follow the mood.
See :mod:`.engine` (streams, sections, transitions), :mod:`.styles` (presets), :mod:`.theory`
(keys, modes, chords), :mod:`.arrange` / :mod:`.melody` / :mod:`.patterns` (the parts) and
:mod:`.synth` (tinysoundfont rendering).
"""

from .engine import MIN_SECTION_BARS, ProceduralMusicEngine, ProceduralMusicStream
from .plan import SectionPlan
from .styles import AUTO_STYLE, STYLE_PRESETS, PartSpec, StylePreset

__all__ = [
    "AUTO_STYLE",
    "MIN_SECTION_BARS",
    "STYLE_PRESETS",
    "PartSpec",
    "ProceduralMusicEngine",
    "ProceduralMusicStream",
    "SectionPlan",
    "StylePreset",
]
