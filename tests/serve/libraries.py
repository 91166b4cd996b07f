"""A small real library for the service tests: three composer renders, indexed into SQLite."""

from __future__ import annotations

import os
from pathlib import Path

from engines.base import MoodControl, MusicStreamOptions
from engines.composer import ProceduralMusicEngine
from pipelines.media.outputs import write_wav


def write_small_library(folder: Path) -> Path:
    """Three 6 s composer renders (relaxing, sad, exciting) in ``folder``, indexed like
    `backscore library index DIR --db LIB.sqlite`; returns the index's path."""
    from pipelines.library.index import index_directory

    sr = 44_100
    for i, (style, emotion, v, a) in enumerate([("calm", "relaxing", 0.3, -0.6), ("sad", "sad", -0.6, -0.4),
                                                 ("epic", "exciting", 0.6, 0.8)]):
        stream = ProceduralMusicEngine().open_stream(MusicStreamOptions(sample_rate=sr, seed=i))
        audio = stream.generate(MoodControl(valence=v, arousal=a, emotion=emotion, style=style), min_duration_s=6.0)
        write_wav(os.fspath(folder / f"{i + 1:02d}_{emotion}.wav"), audio.audio, sr)
    db = folder / "lib.sqlite"
    summary = index_directory(folder, db)
    assert summary.added == 3, summary
    return db
