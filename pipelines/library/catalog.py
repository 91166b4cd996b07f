"""The built-in catalog: 100 royalty-free tracks, numbered 1..100, made by backscore's own composer.

Every track is rendered by :class:`engines.composer.ProceduralMusicEngine` from a fixed
:class:`~pipelines.library.catalog_specs.CatalogSpec` (style, mood, seed, length), so the
catalog is the same on every machine and carries no licence beyond backscore's own. It is
built on first use into a cache folder and afterwards only read. This module builds, caches,
loads, exports and lists it; which tracks it holds is :mod:`pipelines.library.catalog_specs`,
how one is rendered and encoded is :mod:`pipelines.library.catalog_render`.

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
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np

from engines.settings import settings
from pipelines.errors import LibraryError, OutputError
from pipelines.library.catalog_render import (
    OPUS_BIT_RATE,
    SAMPLE_RATE,
    TARGET_LUFS,
    analyzer_id,
    pick_codec,
    render_track,
    worker_init,
)
from pipelines.library.catalog_specs import CATALOG_SIZE, CatalogSpec, catalog_specs
from pipelines.library.tracks import TrackInfo
from pipelines.media.outputs import atomic_output

log = logging.getLogger(__name__)

#: Bump whenever the specs, the composer's output or the encoding change.
#: 2: styles carry the mood (issue 11); 3: articulation and kit level move with energy, -1.5 dBFS ceiling.
CATALOG_VERSION = 3
MANIFEST = "catalog.json"
CSV_NAME = "catalog.csv"
CACHE_ENV = "BACKSCORE_CACHE"

Progress = Callable[[int, int, str], None]


# --------------------------------------------------------------------------- paths


def cache_root(cache_dir: str | None = None) -> str:
    """``cache_dir``, else ``$BACKSCORE_CACHE``, else ``~/.cache/backscore`` (absolute)."""
    return os.path.abspath(cache_dir or settings().cache_root())


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
                             initializer=worker_init) as pool:
        futures: dict[Future[dict[str, Any]], CatalogSpec] = {
            pool.submit(render_track, s, out_dir, codec, with_embedding): s for s in specs}
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
        codec = pick_codec()
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


# --------------------------------------------------------------------------- export

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
