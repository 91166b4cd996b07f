"""Tests of the embedded procedural composer (engines.composer).

The musical checks listen to the rendered audio, not to the plan: tempo with librosa's beat
tracker, key/mode with chroma correlated against the Krumhansl-Kessler key profiles.
"""

from __future__ import annotations

import numpy as np
import pytest

from engines.base import STYLES, MoodControl, MusicStreamOptions
from engines.composer import MIN_SECTION_BARS, ProceduralMusicEngine

librosa = pytest.importorskip("librosa")

SR = 48_000
AN_SR = 22_050
MAJOR_FAMILY = {"major", "lydian", "mixolydian"}
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PC = {n: i for i, n in enumerate(("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"))}
PC.update({"Db": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10})

HAPPY = MoodControl(valence=0.9, arousal=0.3, emotion="happy")
SAD = MoodControl(valence=-0.9, arousal=-0.5, emotion="sad")


def _stream(seed: int = 0, style: str | None = None):
    return ProceduralMusicEngine().open_stream(MusicStreamOptions(sample_rate=SR, seed=seed, style=style))


def _mono22(audio: np.ndarray) -> np.ndarray:
    return librosa.resample(audio.mean(axis=1), orig_sr=SR, target_sr=AN_SR)


def _tempo(audio: np.ndarray) -> float:
    tempo, _ = librosa.beat.beat_track(y=_mono22(audio), sr=AN_SR)
    return float(np.atleast_1d(tempo)[0])


def _key(audio: np.ndarray) -> tuple[int, str]:
    """Best Krumhansl-Kessler key of the harmonic part (drum kits have pitch content that
    has nothing to do with the key, so HPSS removes the percussive part first)."""
    y = librosa.effects.harmonic(_mono22(audio), margin=2.0)
    chroma = librosa.feature.chroma_cqt(y=y, sr=AN_SR).mean(axis=1)
    best = (-2.0, 0, "")
    for tonic in range(12):
        for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)):
            r = float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1])
            best = max(best, (r, tonic, mode))
    return best[1], best[2]


def _family(mode: str) -> str:
    return "major" if mode in MAJOR_FAMILY else "minor"


# --------------------------------------------------------------------------- API


def test_unknown_style_raises_with_valid_names():
    with pytest.raises(ValueError, match="lofi"):
        ProceduralMusicEngine().open_stream(MusicStreamOptions(style="polka"))
    stream = _stream()
    with pytest.raises(ValueError, match="cinematic"):
        stream.generate(MoodControl(valence=0.0, arousal=0.0, emotion="happy", style="polka"))
    with pytest.raises(ValueError, match="emotion"):
        stream.generate(MoodControl(valence=0.0, arousal=0.0, emotion="bored"))


@pytest.mark.parametrize("style", STYLES)
def test_every_style_renders_clean_audio(style):
    for emotion, valence in (("happy", 0.7), ("sad", -0.7), ("tense", -0.4)):
        stream = _stream(seed=5, style=style)
        chunk = stream.generate(MoodControl(valence=valence, arousal=0.2, emotion=emotion), 5.0)
        audio = chunk.audio
        assert audio.dtype == np.float32 and audio.ndim == 2 and audio.shape[1] == 2
        assert chunk.duration_s >= 5.0 and chunk.start_s == 0.0
        rms = float(np.sqrt(np.mean(audio**2)))
        assert rms > 0.01, f"{style}/{emotion} is (nearly) silent"
        assert float(np.abs(audio).max()) < 0.9
        for bar in chunk.bars:
            assert bar.style == style and bar.emotion == emotion and bar.instruments
            assert bar.mode and bar.key and bar.chord
            assert bar.duration_s == pytest.approx(240.0 / bar.tempo_bpm, abs=1.0 / SR)


def test_bars_tile_the_stream_without_drift():
    stream = _stream(seed=1, style="lofi")
    bars = []
    for _ in range(3):
        bars.extend(stream.generate(HAPPY, 7.0).bars)
    tempo = bars[0].tempo_bpm
    for i, bar in enumerate(bars):
        # exact float bar grid, rounded to samples: error never grows beyond one sample
        assert abs(bar.start_s - i * 240.0 / tempo) <= 1.0 / SR
        if i:
            prev = bars[i - 1]
            assert bar.start_s == pytest.approx(prev.start_s + prev.duration_s, abs=1e-9)


# --------------------------------------------------------------------------- streaming


def test_chunked_equals_one_shot_and_joins_are_smooth():
    controls = [HAPPY] * 3 + [SAD] * 5  # a section change inside, too
    one = _stream(seed=7)
    first = one.generate(controls[0])  # one bar
    bar_s = first.bars[0].duration_s
    rest = one.generate(HAPPY, 1.5 * bar_s)  # two bars in one call
    # remaining 5 bars with the sad control; min_duration just under 5 bars -> five bars
    tail = one.generate(SAD, 0.0)
    tail2 = one.generate(SAD, 3.5 * 3.75)  # sad tempo bars are longer; asks for >= 4 bars
    whole = np.concatenate([first.audio, rest.audio, tail.audio, tail2.audio])
    n_bars = len(first.bars) + len(rest.bars) + len(tail.bars) + len(tail2.bars)

    chunked = _stream(seed=7)
    parts = [chunked.generate(controls[min(i, len(controls) - 1)]) for i in range(n_bars)]
    joined = np.concatenate([p.audio for p in parts])
    assert [b for p in parts for b in p.bars] == [*first.bars, *rest.bars, *tail.bars, *tail2.bars]
    assert np.array_equal(whole, joined)

    # no click at chunk joins: the step across a join is no bigger than steps inside chunks
    diffs = np.abs(np.diff(joined, axis=0)).max(axis=1)
    joins = np.cumsum([p.audio.shape[0] for p in parts])[:-1]
    typical = float(np.percentile(diffs, 99.9))
    assert float(diffs[joins - 1].max()) <= typical
    for p in parts[1:]:
        assert p.start_s == pytest.approx(p.bars[0].start_s)


def test_section_change_has_no_click():
    stream = _stream(seed=3)
    audio = np.concatenate([stream.generate(c).audio for c in [HAPPY] * 4 + [SAD] * 3])
    diffs = np.abs(np.diff(audio, axis=0)).max(axis=1)
    # the loudest sample-to-sample step anywhere stays within the normal range of the music
    assert float(diffs.max()) < 4.0 * float(np.percentile(diffs, 99.9))


# --------------------------------------------------------------------------- music


@pytest.mark.parametrize(
    ("style", "arousal"),
    [("cheerful", -0.4), ("cheerful", 0.8), ("lofi", 0.0), ("lofi", 0.8), ("epic", 0.5), ("tense", 0.0),
     ("cinematic", 0.3)],
)
def test_tempo_recovered_from_audio(style, arousal):
    stream = _stream(seed=2, style=style)
    chunk = stream.generate(MoodControl(valence=0.3, arousal=arousal, emotion="neutral"), 16.0)
    planned = chunk.bars[0].tempo_bpm
    lo, hi = {"cheerful": (108, 132), "lofi": (70, 90), "epic": (84, 110), "tense": (96, 124),
              "cinematic": (70, 96)}[style]
    assert lo <= planned <= hi
    measured = _tempo(chunk.audio)
    assert abs(measured / planned - 1.0) < 0.06, f"{style}: planned {planned}, measured {measured:.1f}"


def test_higher_arousal_is_faster_and_louder():
    calm = _stream(seed=4, style="cheerful").generate(MoodControl(0.5, -0.8, "happy"), 8.0)
    busy = _stream(seed=4, style="cheerful").generate(MoodControl(0.5, 0.9, "happy"), 8.0)
    assert busy.bars[0].tempo_bpm > calm.bars[0].tempo_bpm
    assert np.sqrt(np.mean(busy.audio**2)) > 1.2 * np.sqrt(np.mean(calm.audio**2))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mode_recovered_from_audio(seed):
    for control, family in ((HAPPY, "major"), (SAD, "minor")):
        chunk = _stream(seed=seed).generate(control, 14.0)
        bar = chunk.bars[0]
        assert _family(bar.mode) == family
        tonic, mode = _key(chunk.audio)
        assert mode == family, f"seed {seed}: planned {bar.key} {bar.mode}, heard {tonic} {mode}"
        if bar.mode in ("major", "minor"):
            assert tonic == PC[bar.key], f"seed {seed}: planned {bar.key} {bar.mode}, heard pc {tonic}"
        elif bar.mode == "lydian":
            # lydian uses exactly the pitch set of the major key a fifth above
            assert tonic in (PC[bar.key], (PC[bar.key] + 7) % 12)


def test_mood_change_mid_stream():
    fast_major = MoodControl(valence=0.9, arousal=0.8, emotion="happy")  # cheerful, ~130 bpm
    slow_minor = MoodControl(valence=-0.8, arousal=-0.6, emotion="sad", style="lofi")  # ~74 bpm
    stream = _stream(seed=11)
    before = [stream.generate(fast_major) for _ in range(8)]
    after = [stream.generate(slow_minor) for _ in range(7)]
    assert len(before) >= MIN_SECTION_BARS
    bars = [c.bars[0] for c in before + after]
    # the first bar asked for with the new mood is the transition bar, then the new section
    trans, first_new = bars[8], bars[9]
    assert all(not b.transition and b.section == 0 for b in bars[:8])
    assert trans.transition and trans.section == 1 and trans.tempo_bpm == bars[0].tempo_bpm
    assert not first_new.transition and first_new.section == 1
    assert first_new.style == "lofi" and first_new.emotion == "sad"
    assert all(b.section == 1 and b.tempo_bpm == first_new.tempo_bpm for b in bars[9:])
    assert first_new.start_s == pytest.approx(trans.start_s + trans.duration_s)
    assert _family(bars[0].mode) == "major" and _family(first_new.mode) == "minor"

    old_audio = np.concatenate([c.audio for c in before])
    new_audio = np.concatenate([c.audio for c in after[1:]])
    for audio, bar in ((old_audio, bars[0]), (new_audio, first_new)):
        measured = _tempo(audio)
        assert abs(measured / bar.tempo_bpm - 1.0) < 0.06, f"planned {bar.tempo_bpm}, measured {measured:.1f}"
        assert _key(audio)[1] == _family(bar.mode)


def test_small_mood_changes_do_not_start_a_section():
    stream = _stream(seed=9)
    bars = []
    for i in range(8):
        control = MoodControl(valence=0.6 + 0.04 * (i % 3), arousal=-0.2 + 0.15 * i, emotion="happy")
        bars.extend(stream.generate(control).bars)
    assert {b.section for b in bars} == {0} and not any(b.transition for b in bars)
    assert len({b.tempo_bpm for b in bars}) == 1


def test_seed_changes_the_music():
    a = _stream(seed=1, style="lofi").generate(HAPPY, 6.0).audio
    b = _stream(seed=2, style="lofi").generate(HAPPY, 6.0).audio
    n = min(len(a), len(b))
    assert not np.allclose(a[:n], b[:n])
