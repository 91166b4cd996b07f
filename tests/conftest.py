"""Shared fixtures: synthesized mood videos (cached per session) and the real test media."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, Scene, write_video

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT / ".cache" / "media"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """Real media fetched by scripts/fetch_media.sh (run by `make test`)."""
    if not (MEDIA / ".complete").exists():
        pytest.fail(f"real test media missing in {MEDIA}: run scripts/fetch_media.sh (make test does)")
    return MEDIA


@pytest.fixture(scope="session")
def cockatoo(media_dir: Path) -> Path:
    return media_dir / "cockatoo.mp4"


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


def make_video(directory: Path, name: str, scenes: list[Scene], **kw: object) -> Path:
    path = directory / name
    if not path.exists():
        write_video(os.fspath(path), scenes, **kw)  # type: ignore[arg-type]
    return path


def calm_then_bright(directory: Path, name: str, half_s: float, **kw: object) -> Path:
    """``half_s`` dark, still and quiet, then ``half_s`` bright, fast-cut and loud (a mood change in the middle),
    made once per name."""
    return make_video(directory, name, [dataclasses.replace(CALM_DARK, duration_s=half_s),
                                        dataclasses.replace(BRIGHT_FAST, duration_s=half_s)], **kw)


@pytest.fixture(scope="session")
def calm_to_exciting(video_dir: Path) -> Path:
    """8 s dark, still, quiet -> 8 s bright, saturated, fast-cut, loud (change at 8.0 s)."""
    return make_video(video_dir, "calm_to_exciting.mp4", [CALM_DARK, BRIGHT_FAST])


@pytest.fixture(scope="session")
def exciting_to_calm(video_dir: Path) -> Path:
    return make_video(video_dir, "exciting_to_calm.mp4", [BRIGHT_FAST, CALM_DARK])


@pytest.fixture(scope="session")
def silent_video(video_dir: Path) -> Path:
    """No audio stream at all."""
    return make_video(video_dir, "silent.mp4", [CALM_DARK], with_audio=False)


@pytest.fixture(scope="session")
def catalog_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real 100-track catalog, built once per test session into a temporary cache.

    ``BACKSCORE_CACHE`` points there for the rest of the session (in-process and for CLI
    subprocesses), so nothing touches the user's ~/.cache.
    """
    from pipelines.library.catalog import load_catalog

    cache = tmp_path_factory.mktemp("cache")
    os.environ["BACKSCORE_CACHE"] = os.fspath(cache)
    tracks = load_catalog(cache_dir=os.fspath(cache))
    assert len(tracks) == 100
    return cache
