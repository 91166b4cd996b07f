"""Open the music library a command names: the built-in catalog or a user's SQLite index."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from pipelines.errors import LibraryError
from pipelines.library.tracks import TrackInfo

CATALOG = "catalog"


def load_library(spec: str = CATALOG, progress: Callable[[int, int, str], None] | None = None) -> list[TrackInfo]:
    """``"catalog"`` (built on first use) or a path to a library made by ``backscore library index``."""
    if spec == CATALOG:
        from pipelines.library.catalog import load_catalog

        tracks = load_catalog(progress=progress)
    else:
        if not os.path.exists(spec):
            raise LibraryError(
                f"library {spec} not found; create it with: backscore library index MUSIC_DIR --db {spec}"
            )
        from pipelines.library.index import LibraryDB

        with LibraryDB(spec, create=False) as db:
            tracks = db.tracks()
    if not tracks:
        raise LibraryError(f"library {spec} is empty: index a folder with music into it first")
    return tracks


def check_track_id(ids: Sequence[int], track_id: int, name: str = CATALOG) -> None:
    """:class:`LibraryError` unless ``track_id`` is among a library's ``ids`` (``name``: the library in the message)."""
    if track_id not in ids:
        span = f"{min(ids)}..{max(ids)}" if ids else "none"
        raise LibraryError(f"no track {track_id} in the {name} library (ids {span})")


def find_track(tracks: Sequence[TrackInfo], track_id: int, spec: str = CATALOG) -> TrackInfo:
    by_id = {t.id: t for t in tracks}
    check_track_id(list(by_id), track_id, spec)
    return by_id[track_id]
