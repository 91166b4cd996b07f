"""Every composer style carries the mood: measured from the rendered audio, never from the plan.

The estimators are the library's music analyser (arousal, valence, onset rate from spectral flux,
spectral centroid, major-minus-minor key-profile correlation) and BS.1770 loudness, through
:func:`pipelines.devtools.style_mood.measure` -- nothing reads the composer's tempo, density or chords.
The margins are several times what the composer gave before styles followed the mood (then a pinned
``sad`` style's intense part measured +0.06 arousal and +0.05 onsets/s over its calm parts, and the
valence pair's spectral centroids were within a few Hz in most styles; ``BENCHMARKS.md``). The energy
margins were raised once every style's intense arrangement also got detached notes, a kit brought forward
and, in lofi, tense, cinematic and calm, a 16th percussion layer (lowest then: +1.16 arousal, +8.8 LU,
+1.77 onsets/s, +274 Hz; before, lofi's intense part measured only +0.57 arousal).
"""

from __future__ import annotations

from functools import cache

import pytest

from engines.base import STYLES, MoodControl
from pipelines.devtools.style_mood import (
    HIGH_VALENCE,
    LOW_VALENCE,
    Measures,
    arousal_delta,
    calm_intense_calm,
    mean_measures,
    measure,
    render,
)
from pipelines.frames import AUDIO_RATE

CALM = MoodControl(valence=0.3, arousal=-0.7, emotion="relaxing")
INTENSE = MoodControl(valence=0.3, arousal=0.8, emotion="exciting")
SEEDS = (0, 1)


@cache
def _measured(style: str, control: MoodControl, seed: int) -> Measures:
    audio = render(style, control, seed, 16.0)
    return measure(audio[AUDIO_RATE:], AUDIO_RATE)  # without the first bar's attack


@pytest.mark.parametrize("style", STYLES)
def test_intense_control_sounds_more_energetic_than_calm(style: str) -> None:
    for seed in SEEDS:
        calm, intense = _measured(style, CALM, seed), _measured(style, INTENSE, seed)
        d = intense.minus(calm)
        assert d.arousal >= 1.0, f"{style} seed {seed}: arousal {calm.arousal:+.2f} -> {intense.arousal:+.2f}"
        assert d.lufs >= 7.5, f"{style} seed {seed}: loudness {calm.lufs:.1f} -> {intense.lufs:.1f} LUFS"
        assert d.onset_rate >= 1.2, f"{style} seed {seed}: onsets {calm.onset_rate:.2f} -> {intense.onset_rate:.2f}/s"
        assert d.centroid_hz >= 200.0, (
            f"{style} seed {seed}: centroid {calm.centroid_hz:.0f} -> {intense.centroid_hz:.0f} Hz")


@pytest.mark.parametrize("style", STYLES)
def test_calm_intense_calm_sequence_follows_the_mood(style: str) -> None:
    """The offline plan (``compose`` over mood segments, one stream): the intense third is clearly
    more energetic than both calm thirds."""
    deltas = [arousal_delta(calm_intense_calm(style, seed), AUDIO_RATE) for seed in SEEDS]
    for d in deltas:
        assert d.arousal >= 1.0 and d.lufs >= 7.5 and d.onset_rate >= 1.2, (style, d)


@pytest.mark.parametrize("style", STYLES)
def test_low_valence_is_darker_than_high_valence(style: str) -> None:
    """Same arousal, sad vs happy: the analyser hears a lower valence (mode, brightness), a minor-leaning
    key profile and a lower spectral centroid (register, balance, softer metal)."""
    d = mean_measures([_measured(style, HIGH_VALENCE, s).minus(_measured(style, LOW_VALENCE, s)) for s in SEEDS])
    assert d.valence >= 0.4, f"{style}: valence high - low {d.valence:+.2f}"
    assert d.mode_strength >= 0.1, f"{style}: mode strength high - low {d.mode_strength:+.2f}"
    assert d.centroid_hz >= 40.0, f"{style}: centroid high - low {d.centroid_hz:+.0f} Hz"
