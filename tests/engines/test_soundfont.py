"""Choosing the soundfont: the built-in one by default, another GM soundfont via BACKSCORE_SOUNDFONT."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engines.base import EngineUnavailable, MoodControl, MusicStreamOptions
from engines.composer import ProceduralMusicEngine
from engines.composer.synth import SOUNDFONT_ENV, soundfont_path

HAPPY = MoodControl(valence=0.7, arousal=0.5, emotion="happy")


def render(seconds: float = 3.0) -> np.ndarray:
    stream = ProceduralMusicEngine().open_stream(MusicStreamOptions(seed=1))
    return stream.generate(HAPPY, seconds).audio


def test_default_is_the_soundfont_in_the_pretty_midi_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SOUNDFONT_ENV, raising=False)
    assert soundfont_path("").endswith("TimGM6mb.sf2")


def test_override_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    copy = tmp_path / "my.sf2"
    shutil.copy(soundfont_path(""), copy)
    monkeypatch.setenv(SOUNDFONT_ENV, str(copy))
    assert soundfont_path(str(copy)) == str(copy)
    audio = render()
    assert np.sqrt(np.mean(audio**2)) > 0.01


def test_missing_or_broken_override_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SOUNDFONT_ENV, str(tmp_path / "nope.sf2"))
    with pytest.raises(EngineUnavailable, match="no such soundfont"):
        render()
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF0000not a soundfont")
    monkeypatch.setenv(SOUNDFONT_ENV, str(bad))
    with pytest.raises(EngineUnavailable, match="cannot load soundfont"):
        render()
