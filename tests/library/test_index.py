"""The user library index on real files: kajongg voices (ogg), composer renders encoded by PyAV, corrupt files."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from engines.base import EMOTIONS, MoodControl, MusicStreamOptions
from engines.composer import ProceduralMusicEngine
from engines.music_features import MusicAnalyzer, MusicDescriptor
from pipelines.cli.output import track_record, tracks_table
from pipelines.errors import LibraryError
from pipelines.library.index import (
    AUDIO_EXTENSIONS,
    SCHEMA_VERSION,
    IndexSummary,
    LibraryDB,
    audio_files,
    index_directory,
)
from tests.real_media import voices_dir

SR = 44_100
HAS_MP3 = "libmp3lame" in av.codecs_available
#: extension -> (codec, sample format, container format)
ENCODERS = {".wav": ("pcm_s16le", "s16", "wav"), ".flac": ("flac", "s16", "flac"), ".m4a": ("aac", "fltp", "ipod"),
            ".mp3": ("libmp3lame", "fltp", "mp3")}
#: Spoken words longer than the analyzer's 1 s minimum, and one shorter (a real file it rejects).
WORDS = ("female1/violatesoriginalcall.ogg", "female2/violatesoriginalcall.ogg", "male1/violatesoriginalcall.ogg")
SHORT_WORD = "de/male1/chow.ogg"


def render(style: str, emotion: str, seed: int, seconds: float = 6.0) -> np.ndarray:
    stream = ProceduralMusicEngine().open_stream(MusicStreamOptions(sample_rate=SR, seed=seed))
    chunk = stream.generate(MoodControl(valence=0.0, arousal=0.0, emotion=emotion, style=style), min_duration_s=seconds)
    return chunk.audio


def write_audio(path: Path, audio: np.ndarray, title: str = "") -> None:
    """Encode stereo float audio with PyAV in the format the extension names."""
    codec, sample_format, container = ENCODERS[path.suffix.lower()]
    planar = np.ascontiguousarray(np.clip(audio, -1.0, 1.0).T.astype(np.float32))
    with av.open(str(path), "w", format=container) as out:
        if title:
            out.metadata["title"] = title
        stream: Any = out.add_stream(codec, rate=SR)
        stream.layout = "stereo"
        stream.format = sample_format
        for pos in range(0, planar.shape[1], 4096):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, pos : pos + 4096]), format="fltp",
                                               layout="stereo")
            frame.sample_rate = SR
            frame.pts = pos
            frame.time_base = Fraction(1, SR)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A music folder: 3 real ogg words + renders as wav/flac/m4a(/mp3) + 4 files that must fail."""
    root = tmp_path_factory.mktemp("music_src")
    voices = voices_dir()
    (root / "voices").mkdir()
    for i, rel in enumerate(WORDS):
        shutil.copyfile(voices / rel, root / "voices" / f"word{i}.ogg")
    shutil.copyfile(voices / SHORT_WORD, root / "voices" / "short.ogg")
    albums = root / "albums" / "renders"
    albums.mkdir(parents=True)
    write_audio(albums / "cheerful.wav", render("cheerful", "happy", 1))
    write_audio(albums / "sad.flac", render("sad", "sad", 2), title="A Sad Song")
    write_audio(albums / "epic.M4A", render("epic", "exciting", 3))
    if HAS_MP3:
        write_audio(albums / "lofi.mp3", render("lofi", "neutral", 4))
    bad = root / "bad"
    bad.mkdir()
    data = (voices / WORDS[1]).read_bytes()
    (bad / "truncated.ogg").write_bytes(data[: len(data) // 10])
    (bad / "random.mp3").write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    (bad / "empty.wav").write_bytes(b"")
    (root / "notes.txt").write_text("not music")
    (root / ".hidden.wav").write_bytes(b"")
    return root


@pytest.fixture()
def music_dir(source_dir: Path, tmp_path: Path) -> Path:
    """A private copy of :func:`source_dir` that a test may change."""
    dest = tmp_path / "music"
    shutil.copytree(source_dir, dest)
    return dest


N_GOOD = len(WORDS) + 3 + int(HAS_MP3)
N_BAD = 4  # truncated ogg, random bytes .mp3, empty .wav, a 0.27 s word


class CountingAnalyzer:
    """The real analyzer, counting its calls (optionally failing hard on call ``interrupt_at``)."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.inner = MusicAnalyzer()
        self.sample_rate = self.inner.sample_rate
        self.name = self.inner.name
        self.version = self.inner.version
        self.calls = 0
        self.interrupt_at = interrupt_at

    def analyze(self, samples: np.ndarray) -> MusicDescriptor:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return self.inner.analyze(samples)


def index(music: Path, db: Path, analyzer: CountingAnalyzer | None = None) -> IndexSummary:
    return index_directory(music, db, analyzer=analyzer)


# --------------------------------------------------------------------------- indexing


def test_index_real_and_corrupt_files(music_dir: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "lib.sqlite"
    calls: list[tuple[int, int, str]] = []
    s = index_directory(music_dir, db_path, progress=lambda d, t, p: calls.append((d, t, p)))
    assert (s.scanned, s.added, s.updated, s.unchanged, s.removed) == (N_GOOD + N_BAD, N_GOOD, 0, 0, 0)
    assert s.failed == N_BAD == len(s.failures)
    reasons = {os.path.basename(p): r for p, r in s.failures}
    assert set(reasons) == {"truncated.ogg", "random.mp3", "empty.wav", "short.ogg"}
    assert "empty" in reasons["empty.wav"] and "too short" in reasons["short.ogg"]
    assert [c[0] for c in calls] == list(range(1, s.scanned + 1)) and {c[1] for c in calls} == {s.scanned}
    assert [c[2] for c in calls] == audio_files(str(music_dir))  # sorted, deterministic
    assert "notes.txt" not in str(calls) and ".hidden" not in str(calls)
    assert s.seconds > 0 and "failed" in s.describe()

    with LibraryDB(db_path, create=False) as db:
        tracks = db.tracks()
        assert len(db) == N_GOOD == len(tracks)
        by_name = {os.path.basename(t.path): t for t in tracks}
        assert set(by_name) >= {"word0.ogg", "word1.ogg", "word2.ogg", "cheerful.wav", "sad.flac", "epic.M4A"}
        assert by_name["sad.flac"].title == "A Sad Song"  # container title tag
        assert by_name["cheerful.wav"].title == "cheerful"  # file stem
        assert by_name["cheerful.wav"].tempo_bpm == pytest.approx(render_tempo("cheerful", "happy", 1), rel=0.06)
        assert by_name["sad.flac"].mode == "minor" and by_name["cheerful.wav"].valence > by_name["sad.flac"].valence
        for t in tracks:
            assert os.path.isabs(t.path) and os.path.exists(t.path)
            assert t.embedding.shape == (32,) and t.embedding.dtype == np.float32
            assert float(np.linalg.norm(t.embedding)) == pytest.approx(1.0, abs=1e-5)
            assert set(t.emotions) <= set(EMOTIONS) and t.emotions
            assert -1 <= t.valence <= 1 and -1 <= t.arousal <= 1 and np.isfinite(t.loudness_lufs)
            assert t.style is None and t.instruments == ()
            got = db.get(t.id)
            assert got.path == t.path and np.array_equal(got.embedding, t.embedding)
        assert 5.5 < by_name["cheerful.wav"].duration_s < 9.0
        assert 1.0 < by_name["word1.ogg"].duration_s < 3.0
        assert db.paths() == {t.path for t in tracks}
        assert db.lookup(by_name["sad.flac"].path) == (os.stat(by_name["sad.flac"].path).st_size,
                                                       os.stat(by_name["sad.flac"].path).st_mtime_ns)
        assert db.lookup(str(music_dir / "bad" / "random.mp3")) is None
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def render_tempo(style: str, emotion: str, seed: int) -> float:
    stream = ProceduralMusicEngine().open_stream(MusicStreamOptions(sample_rate=8000, seed=seed))
    return stream.generate(MoodControl(valence=0.0, arousal=0.0, emotion=emotion, style=style)).bars[0].tempo_bpm


def test_mp3_is_indexed(music_dir: Path, tmp_path: Path) -> None:
    if not HAS_MP3:
        pytest.skip("this FFmpeg build has no libmp3lame encoder, so no .mp3 test file can be written")
    s = index(music_dir, tmp_path / "lib.sqlite")
    assert str(music_dir / "albums" / "renders" / "lofi.mp3") not in {p for p, _ in s.failures}
    with LibraryDB(tmp_path / "lib.sqlite") as db:
        assert db.lookup(str(music_dir / "albums" / "renders" / "lofi.mp3")) is not None


def test_second_run_is_unchanged_without_analysis(music_dir: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "lib.sqlite"
    first = CountingAnalyzer()
    index(music_dir, db_path, first)
    assert first.calls == N_GOOD + 1  # the short word reaches the analyzer, the corrupt files do not
    second = CountingAnalyzer()
    s = index(music_dir, db_path, second)
    assert second.calls == 1  # only the failed short word is tried again
    assert (s.added, s.updated, s.removed, s.unchanged, s.failed) == (0, 0, 0, N_GOOD, N_BAD)


def test_modified_file_is_updated_and_deleted_file_removed(music_dir: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "lib.sqlite"
    index(music_dir, db_path)
    wav = music_dir / "albums" / "renders" / "cheerful.wav"
    flac = music_dir / "albums" / "renders" / "sad.flac"
    with LibraryDB(db_path) as db:
        before = {os.path.basename(t.path): t for t in db.tracks()}
    write_audio(wav, render("calm", "relaxing", 5, seconds=9.0))  # new content: other size and mtime
    flac.unlink()
    counter = CountingAnalyzer()
    s = index(music_dir, db_path, counter)
    assert (s.added, s.updated, s.removed, s.unchanged) == (0, 1, 1, N_GOOD - 2)
    assert counter.calls == 2  # the rewritten file and the short word
    with LibraryDB(db_path) as db:
        after = {os.path.basename(t.path): t for t in db.tracks()}
        assert "sad.flac" not in after and len(db) == N_GOOD - 1
        assert after["cheerful.wav"].id == before["cheerful.wav"].id  # the id stays
        assert after["cheerful.wav"].duration_s > before["cheerful.wav"].duration_s + 2
        assert not np.array_equal(after["cheerful.wav"].embedding, before["cheerful.wav"].embedding)
        with pytest.raises(LibraryError, match=f"no track {before['sad.flac'].id} in"):
            db.get(before["sad.flac"].id)


def test_a_file_that_turns_corrupt_loses_its_row(music_dir: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "lib.sqlite"
    index(music_dir, db_path)
    wav = music_dir / "albums" / "renders" / "cheerful.wav"
    wav.write_bytes(b"RIFF garbage")
    s = index(music_dir, db_path)
    assert s.failed == N_BAD + 1 and str(wav) in {p for p, _ in s.failures}
    with LibraryDB(db_path) as db:
        assert db.lookup(str(wav)) is None and len(db) == N_GOOD - 1


def test_reopened_library_has_the_same_tracks(music_dir: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "lib.sqlite"
    index(music_dir, db_path)
    db = LibraryDB(db_path, create=False)
    first = db.tracks()
    db.close()
    with LibraryDB(db_path, create=False) as again:
        second = again.tracks()
    assert [t.id for t in first] == [t.id for t in second]
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.embedding, b.embedding)
        assert (a.title, a.path, a.valence, a.arousal, a.emotions, a.key, a.mode, a.tempo_bpm) == (
            b.title, b.path, b.valence, b.arousal, b.emotions, b.key, b.mode, b.tempo_bpm)


def test_interrupted_run_keeps_finished_files(music_dir: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "lib.sqlite"
    with pytest.raises(KeyboardInterrupt):
        index(music_dir, db_path, CountingAnalyzer(interrupt_at=3))
    with LibraryDB(db_path) as db:
        assert len(db) == 2
    s = index(music_dir, db_path)
    assert (s.added, s.unchanged) == (N_GOOD - 2, 2)


def test_changed_analyzer_reanalyses_everything(music_dir: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "lib.sqlite"
    index(music_dir, db_path)
    newer = CountingAnalyzer()
    newer.version = MusicAnalyzer.version + 1
    s = index(music_dir, db_path, newer)
    assert (s.updated, s.unchanged) == (N_GOOD, 0)
    again = CountingAnalyzer()
    again.version = newer.version
    assert index(music_dir, db_path, again).unchanged == N_GOOD


def test_two_folders_share_one_library(music_dir: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "lib.sqlite"
    index(music_dir / "voices", db_path)
    index(music_dir / "albums", db_path)
    with LibraryDB(db_path) as db:
        assert len(db) == N_GOOD  # indexing "albums" does not remove the voices


# --------------------------------------------------------------------------- errors


def test_missing_or_bad_folder(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="not found"):
        index_directory(tmp_path / "nope", tmp_path / "lib.sqlite")
    (tmp_path / "file.wav").write_bytes(b"x")
    with pytest.raises(LibraryError, match="not a folder"):
        index_directory(tmp_path / "file.wav", tmp_path / "lib.sqlite")


def test_opening_missing_or_foreign_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(LibraryError, match=r"missing\.sqlite not found.*backscore library index .* --db"):
        LibraryDB(missing, create=False)
    assert not missing.exists()
    text = tmp_path / "notes.sqlite"
    text.write_text("hello, this is not a database at all")
    with pytest.raises(LibraryError, match="not a backscore library"):
        LibraryDB(text)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE songs (x)")
    with pytest.raises(LibraryError, match="not a backscore library"):
        LibraryDB(other)
    with pytest.raises(LibraryError, match="is a folder"):
        LibraryDB(tmp_path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db_path = tmp_path / "lib.sqlite"
    with LibraryDB(db_path) as db:
        assert db.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert db.get_meta("analyzer") == f"{MusicAnalyzer.name}:{MusicAnalyzer.version}"
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(LibraryError, match="newer backscore"):
        LibraryDB(db_path)


def test_empty_library_and_unknown_track(tmp_path: Path) -> None:
    with LibraryDB(tmp_path / "lib.sqlite") as db:
        assert len(db) == 0 and db.tracks() == [] and db.paths() == set()
        with pytest.raises(LibraryError, match="no track 7 in"):
            db.get(7)
        assert not db.remove("/nowhere.wav")
    assert "no tracks" in tracks_table([])


# --------------------------------------------------------------------------- listing


def test_table_and_json(music_dir: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "lib.sqlite"
    index(music_dir / "albums", db_path)
    with LibraryDB(db_path) as db:
        tracks = db.tracks()
    table = tracks_table(tracks)
    lines = table.splitlines()
    assert len(lines) == len(tracks) + 2 and "A Sad Song" in table and "tempo" in lines[0]
    assert all(f"{t.key} {t.mode}" in table for t in tracks)
    records = json.loads(json.dumps([track_record(t) for t in tracks]))
    assert [r["id"] for r in records] == [t.id for t in tracks]
    assert set(records[0]) >= {"id", "title", "path", "duration_s", "valence", "arousal", "emotions", "tempo_bpm",
                               "key", "mode", "loudness_lufs"}


def test_audio_extensions_are_case_insensitive(tmp_path: Path) -> None:
    for ext in AUDIO_EXTENSIONS:
        (tmp_path / f"a{ext.upper()}").write_bytes(b"")
        (tmp_path / f"b{ext}").write_bytes(b"")
    (tmp_path / "c.txt").write_bytes(b"")
    assert len(audio_files(str(tmp_path))) == 2 * len(AUDIO_EXTENSIONS)
