"""The user's own music library: an SQLite index of analysed audio files.

``backscore library index DIR --db LIB.sqlite`` walks ``DIR``, analyses every audio file
with :class:`engines.music_features.MusicAnalyzer` and stores one row per file;
``backscore library list --db LIB.sqlite`` lists it, and ``--library LIB.sqlite`` makes the
recommender choose from it.

File format (:class:`LibraryDB`)
    A plain SQLite 3 database in WAL mode, two tables:

    * ``meta(key TEXT PRIMARY KEY, value TEXT)``: ``schema_version`` (:data:`SCHEMA_VERSION`),
      ``analyzer`` and ``analyzer_version`` (who described the tracks), ``created_at``.
    * ``tracks``: ``id INTEGER PRIMARY KEY`` (the track number users see; stable while the
      file stays), ``path TEXT UNIQUE`` (absolute), ``size``, ``mtime_ns`` (the change
      check), ``title``, ``duration_s``, ``valence``, ``arousal``, ``emotions`` (JSON list,
      primary first), ``tempo_bpm``, ``key``, ``mode``, ``style`` (NULL: unknown for user
      music), ``instruments`` (JSON list, empty), ``loudness_lufs``, ``embedding`` (BLOB,
      little-endian float32, 32 values), ``analyzed_at`` (UTC ISO 8601).

    Opening checks the file: a missing file with ``create=False``, a file that is not SQLite,
    an SQLite file without backscore's tables, or one written by a newer backscore
    (``schema_version`` above ours) raise :class:`LibraryError` with what to do. Older schema
    versions are upgraded in place by the steps in :data:`MIGRATIONS` (none yet).

Indexing (:func:`index_directory`)
    Walks the folder recursively in sorted order (hidden files and folders skipped), takes
    files whose extension is in :data:`AUDIO_EXTENSIONS` (any case), and for each one:

    * unchanged (same path, size and ``mtime_ns`` as stored, same analyzer) -> skipped
      without decoding;
    * otherwise decoded with :func:`pipelines.media.decode.load_audio` at the analyzer's rate,
      analysed and upserted in its own transaction, so an interrupted run keeps every file
      finished before the interruption;
    * unreadable/corrupt files (:class:`InputError`) and files the analyzer rejects
      (:class:`EngineError`: too short, silent) are logged as warnings, counted in
      ``failed`` with the reason, and the run goes on; a failing file loses any row it had.

    Rows for files under the folder that are no longer there are removed (rows of other
    folders indexed into the same library are kept). When the analyzer's name or version
    differs from the one recorded in ``meta``, every file is analysed again.

Titles are the container's ``title`` tag when the file has one (ID3, Vorbis comment, MP4
``©nam``), else the file name without its extension.

One module on purpose: the database class, the indexer's change check and the listing all
follow the file format documented above, so they change together.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import av
import av.error
import numpy as np

from engines.base import EngineError
from engines.music_features import MusicAnalyzer, MusicDescriptor
from pipelines.errors import InputError, LibraryError, LimitError
from pipelines.library.tracks import TrackInfo
from pipelines.media.decode import load_audio
from pipelines.media.limits import MediaLimits

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3", ".m4a")
SQLITE_MAGIC = b"SQLite format 3\x00"
INDEX_HINT = "backscore library index MUSIC_DIR --db {path}"

ProgressFn = Callable[[int, int, str], None]

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE tracks (
        id INTEGER PRIMARY KEY,
        path TEXT UNIQUE NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        title TEXT NOT NULL,
        duration_s REAL NOT NULL,
        valence REAL NOT NULL,
        arousal REAL NOT NULL,
        emotions TEXT NOT NULL,
        tempo_bpm REAL NOT NULL,
        key TEXT NOT NULL,
        mode TEXT NOT NULL,
        style TEXT,
        instruments TEXT NOT NULL DEFAULT '[]',
        loudness_lufs REAL,
        embedding BLOB NOT NULL,
        analyzed_at TEXT NOT NULL
    )""",
)

#: ``MIGRATIONS[v]``: SQL statements that turn schema version ``v`` into ``v + 1``.
MIGRATIONS: dict[int, tuple[str, ...]] = {}

_COLUMNS = ("id", "path", "title", "duration_s", "valence", "arousal", "emotions", "tempo_bpm", "key", "mode",
            "style", "instruments", "loudness_lufs", "embedding")


class Analyzer(Protocol):
    """What :func:`index_directory` needs from an analyzer (:class:`MusicAnalyzer` or a wrapper)."""

    sample_rate: int

    def analyze(self, samples: np.ndarray) -> MusicDescriptor: ...


def analyzer_identity(analyzer: object) -> str:
    """``"name:version"`` recorded in ``meta``; a change makes the next index re-analyse everything."""
    name = getattr(analyzer, "name", type(analyzer).__name__)
    return f"{name}:{getattr(analyzer, 'version', 0)}"


# --------------------------------------------------------------------------- the database


class LibraryDB:
    """An open library file (see the module docstring); use as a context manager."""

    def __init__(self, path: str | os.PathLike[str], create: bool = True) -> None:
        self.path = os.fspath(path)
        self._check_file(create)
        try:
            self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise LibraryError(f"cannot open library {self.path} ({exc})") from exc
        try:
            self._prepare(create)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise LibraryError(f"{self.path} is not a backscore library ({exc})") from exc
        except BaseException:
            self._conn.close()
            raise

    # ------------------------------------------------------------------ opening
    def _check_file(self, create: bool) -> None:
        if os.path.isdir(self.path):
            raise LibraryError(f"library {self.path} is a folder; give a file name like music.sqlite")
        if not os.path.exists(self.path):
            if not create:
                raise LibraryError(f"library {self.path} not found; create it with: "
                                   + INDEX_HINT.format(path=self.path))
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise LibraryError(f"cannot create library {self.path}: folder {parent} does not exist")
            return
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise LibraryError(f"cannot read library {self.path} ({exc.strerror or exc})") from exc
        if head == b"" and create:
            return  # an empty file: SQLite initialises it
        if head != SQLITE_MAGIC:
            raise LibraryError(f"{self.path} is not a backscore library (not an SQLite database)")

    def _prepare(self, create: bool) -> None:
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            if not create:
                raise LibraryError(f"library {self.path} is empty; create it with: "
                                   + INDEX_HINT.format(path=self.path))
            self._create_schema()
        elif not {"meta", "tracks"} <= tables:
            raise LibraryError(f"{self.path} is an SQLite database but not a backscore library "
                               f"(tables: {', '.join(sorted(tables))})")
        self._migrate()
        with contextlib.suppress(sqlite3.OperationalError):  # read-only file: keep its journal mode
            self._conn.execute("PRAGMA journal_mode=WAL")

    def _create_schema(self) -> None:
        analyzer = MusicAnalyzer()
        with self.transaction():
            for statement in _SCHEMA:
                self._conn.execute(statement)
            now = _utc_now()
            meta = {"schema_version": str(SCHEMA_VERSION), "analyzer": analyzer_identity(analyzer),
                    "analyzer_version": str(analyzer.version), "created_at": now}
            self._conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
        log.info("library: created %s", self.path)

    def _migrate(self) -> None:
        raw = self.get_meta("schema_version")
        try:
            version = int(raw) if raw is not None else -1
        except ValueError:
            version = -1
        if version < 1:
            raise LibraryError(f"{self.path} is not a backscore library (bad schema_version {raw!r})")
        if version > SCHEMA_VERSION:
            raise LibraryError(f"library {self.path} was written by a newer backscore (schema version {version}, "
                               f"this one reads up to {SCHEMA_VERSION}); upgrade backscore to use it")
        while version < SCHEMA_VERSION:
            with self.transaction():
                for statement in MIGRATIONS[version]:
                    self._conn.execute(statement)
                version += 1
                self.set_meta("schema_version", str(version))
            log.info("library: upgraded %s to schema version %d", self.path, version)

    # ------------------------------------------------------------------ plumbing
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LibraryDB:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM tracks").fetchone()[0])

    def tracks(self) -> list[TrackInfo]:
        """Every track, in id order."""
        rows = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM tracks ORDER BY id").fetchall()
        return [_track(row) for row in rows]

    def get(self, track_id: int) -> TrackInfo:
        row = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM tracks WHERE id = ?", (track_id,)).fetchone()
        if row is None:
            raise LibraryError(f"no track {track_id} in {self.path}")
        return _track(row)

    def lookup(self, path: str) -> tuple[int, int] | None:
        """``(size, mtime_ns)`` stored for ``path``, or None."""
        row = self._conn.execute("SELECT size, mtime_ns FROM tracks WHERE path = ?",
                                 (os.path.abspath(path),)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def paths(self) -> set[str]:
        return {str(r[0]) for r in self._conn.execute("SELECT path FROM tracks")}

    # ------------------------------------------------------------------ writing
    def upsert(self, path: str, size: int, mtime_ns: int, descriptor: MusicDescriptor, duration_s: float,
               title: str) -> int:
        """Insert or replace the row for ``path`` (its id is kept on update); returns the id."""
        path = os.path.abspath(path)
        d = descriptor
        values = {
            "path": path, "size": int(size), "mtime_ns": int(mtime_ns), "title": title,
            "duration_s": float(duration_s), "valence": float(d.valence), "arousal": float(d.arousal),
            "emotions": json.dumps(list(d.emotions)), "tempo_bpm": float(d.tempo_bpm), "key": d.key,
            "mode": d.mode, "style": None, "instruments": "[]",
            "loudness_lufs": float(d.loudness_lufs) if math.isfinite(d.loudness_lufs) else None,
            "embedding": np.asarray(d.embedding, dtype="<f4").tobytes(), "analyzed_at": _utc_now(),
        }
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        updates = ", ".join(f"{k} = excluded.{k}" for k in values if k != "path")
        with self.transaction() as conn:
            conn.execute(f"INSERT INTO tracks ({names}) VALUES ({marks}) "
                         f"ON CONFLICT(path) DO UPDATE SET {updates}", tuple(values.values()))
            row = conn.execute("SELECT id FROM tracks WHERE path = ?", (path,)).fetchone()
        return int(row[0])

    def remove(self, path: str) -> bool:
        """Delete the row for ``path``; True when there was one."""
        with self.transaction() as conn:
            cur = conn.execute("DELETE FROM tracks WHERE path = ?", (os.path.abspath(path),))
        return cur.rowcount > 0


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _track(row: Sequence[Any]) -> TrackInfo:
    r = dict(zip(_COLUMNS, row, strict=True))
    return TrackInfo(
        id=int(r["id"]), title=str(r["title"]), path=str(r["path"]), duration_s=float(r["duration_s"]),
        valence=float(r["valence"]), arousal=float(r["arousal"]), emotions=tuple(json.loads(r["emotions"])),
        tempo_bpm=float(r["tempo_bpm"]), key=str(r["key"]), mode=str(r["mode"]), style=r["style"],
        instruments=tuple(json.loads(r["instruments"] or "[]")),
        loudness_lufs=float(r["loudness_lufs"]) if r["loudness_lufs"] is not None else float("nan"),
        embedding=np.frombuffer(r["embedding"], dtype="<f4").astype(np.float32),
    )


# --------------------------------------------------------------------------- indexing


@dataclass(frozen=True)
class IndexSummary:
    """What one :func:`index_directory` run did (``failures``: ``(path, reason)``)."""

    scanned: int
    added: int
    updated: int
    unchanged: int
    removed: int
    failed: int
    failures: tuple[tuple[str, str], ...]
    seconds: float

    def describe(self) -> str:
        return (f"{self.scanned} audio files: {self.added} added, {self.updated} updated, "
                f"{self.unchanged} unchanged, {self.removed} removed, {self.failed} failed "
                f"({self.seconds:.1f} s)")


def audio_files(directory: str) -> list[str]:
    """Absolute paths of the audio files under ``directory``, sorted, hidden entries skipped."""
    found: list[str] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files)
                     if not f.startswith(".") and f.lower().endswith(AUDIO_EXTENSIONS))
    return [os.path.abspath(p) for p in found]


def read_title(path: str) -> str:
    """The container's (or first audio stream's) ``title`` tag, else the file name without extension."""
    stem = os.path.splitext(os.path.basename(path))[0]
    try:
        with av.open(path, metadata_errors="ignore") as container:
            tags = [container.metadata, *(s.metadata for s in container.streams.audio[:1])]
    except (av.error.FFmpegError, OSError):
        return stem
    for t in tags:
        for key, value in t.items():
            if key.lower() == "title" and value.strip():
                return str(value.strip())
    return stem


class _Indexer:
    """One run of :func:`index_directory` over an open library."""

    def __init__(self, db: LibraryDB, analyzer: Analyzer, progress: ProgressFn | None) -> None:
        self.db = db
        self.analyzer = analyzer
        self.progress = progress
        self.limits = MediaLimits.for_cli()
        self.identity = analyzer_identity(analyzer)
        self.stale = db.get_meta("analyzer") != self.identity
        self.counts = {"added": 0, "updated": 0, "unchanged": 0}
        self.failures: list[tuple[str, str]] = []

    def run(self, files: list[str]) -> None:
        if self.stale and len(self.db):
            log.info("library: analyzer changed to %s, re-analysing every file", self.identity)
        for i, path in enumerate(files):
            self._one(path)
            if self.progress is not None:
                self.progress(i + 1, len(files), path)
        if self.stale:
            with self.db.transaction():
                self.db.set_meta("analyzer", self.identity)
                self.db.set_meta("analyzer_version", str(getattr(self.analyzer, "version", 0)))

    def _one(self, path: str) -> None:
        try:
            st = os.stat(path)
        except OSError as exc:
            self._fail(path, f"cannot read file ({exc.strerror or exc})")
            return
        known = self.db.lookup(path)
        if known == (st.st_size, st.st_mtime_ns) and not self.stale:
            self.counts["unchanged"] += 1
            return
        try:
            samples = load_audio(path, self.analyzer.sample_rate, limits=self.limits)
            descriptor = self.analyzer.analyze(samples)
        except (InputError, LimitError, EngineError) as exc:  # one bad file is reported, the rest indexed
            self._fail(path, str(exc))
            return
        title = read_title(path)
        self.db.upsert(path, st.st_size, st.st_mtime_ns, descriptor, samples.size / self.analyzer.sample_rate, title)
        self.counts["added" if known is None else "updated"] += 1

    def _fail(self, path: str, reason: str) -> None:
        log.warning("library: skipping %s: %s", path, reason)
        self.failures.append((path, reason))
        self.db.remove(path)


def index_directory(directory: str | os.PathLike[str], db_path: str | os.PathLike[str],
                    analyzer: Analyzer | None = None, progress: ProgressFn | None = None) -> IndexSummary:
    """Analyse new and changed audio files under ``directory`` into the library ``db_path``.

    See the module docstring. ``progress(done, total, path)`` is called after each file.
    Raises :class:`LibraryError` when ``directory`` is missing or not a folder, or the library
    file cannot be opened; failing audio files do not stop the run.
    """
    t0 = time.perf_counter()
    folder = os.path.abspath(os.fspath(directory))
    if not os.path.exists(folder):
        raise LibraryError(f"music folder not found: {os.fspath(directory)}")
    if not os.path.isdir(folder):
        raise LibraryError(f"not a folder: {os.fspath(directory)} (give the folder that holds your music)")
    files = audio_files(folder)
    with LibraryDB(db_path, create=True) as db:
        indexer = _Indexer(db, analyzer if analyzer is not None else MusicAnalyzer(), progress)
        indexer.run(files)
        present = set(files)
        gone = [p for p in sorted(db.paths()) if p.startswith(folder + os.sep) and p not in present]
        for p in gone:
            db.remove(p)
    summary = IndexSummary(
        scanned=len(files), added=indexer.counts["added"], updated=indexer.counts["updated"],
        unchanged=indexer.counts["unchanged"], removed=len(gone), failed=len(indexer.failures),
        failures=tuple(indexer.failures), seconds=time.perf_counter() - t0,
    )
    log.info("library: %s: %s", folder, summary.describe())
    return summary
