"""The built-in catalog: spec layout, a small real build, caching, interruption, export, listing."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from engines.affect import PROTOTYPES
from engines.base import EMOTIONS, STYLES, MoodControl, MusicStreamOptions
from engines.composer import STYLE_PRESETS, ProceduralMusicEngine
from pipelines.cli.output import track_record, tracks_table
from pipelines.errors import LibraryError, OutputError
from pipelines.library import catalog, catalog_render
from pipelines.library.catalog_specs import CATALOG_SIZE, STYLE_MIX, catalog_specs, slugify
from pipelines.media.decode import load_audio
from pipelines.offline.mix import integrated_loudness

SMALL = 6


# --------------------------------------------------------------------------- specs (no rendering)


def test_specs_are_deterministic_and_numbered():
    specs = catalog_specs()
    assert specs == catalog_specs.__wrapped__()  # recomputed, not the cached tuple
    assert len(specs) == CATALOG_SIZE == 100
    assert [s.id for s in specs] == list(range(1, 101))
    assert len({s.title for s in specs}) == 100
    assert len({s.filename() for s in specs}) == 100
    assert len({s.seed for s in specs}) == 100
    assert specs[0].filename() == f"001-{slugify(specs[0].title)}.ogg"
    assert all(len(s.title.split()) == 2 for s in specs)


def test_specs_cover_styles_emotions_and_the_plane():
    specs = catalog_specs()
    styles = Counter(s.style for s in specs)
    emotions = Counter(s.emotion for s in specs)
    assert set(styles) == set(STYLES) and min(styles.values()) >= 10
    assert set(emotions) == set(EMOTIONS) and min(emotions.values()) >= 10
    quadrants = Counter((s.valence >= 0, s.arousal >= 0) for s in specs)
    assert len(quadrants) == 4 and min(quadrants.values()) >= 15
    assert all(30.0 <= s.duration_s <= 90.0 for s in specs)
    for s in specs:
        assert -1.0 <= s.valence <= 1.0 and -1.0 <= s.arousal <= 1.0
        nearest = min(PROTOTYPES, key=lambda e, s=s: math.dist(PROTOTYPES[e], (s.valence, s.arousal)))
        assert nearest == s.emotion, s
        assert s.emotion in STYLE_MIX and s.style in STYLE_MIX[s.emotion]
        assert s.secondary_emotion is None or (s.secondary_emotion in EMOTIONS and s.secondary_emotion != s.emotion)
        if s.development is not None:
            assert s.development.emotion == s.secondary_emotion
            assert 0.4 * s.duration_s < s.development.at_s < 0.7 * s.duration_s
    assert 10 <= sum(s.development is not None for s in specs) <= 40
    # the first few ids already span different moods
    assert len({s.emotion for s in specs[:SMALL]}) == SMALL


# --------------------------------------------------------------------------- a small real build


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("cache")
    calls: list[tuple[int, int, str]] = []
    t0 = time.perf_counter()
    tracks = catalog.load_catalog(os.fspath(cache), progress=lambda d, n, t: calls.append((d, n, t)), size=SMALL)
    return {"cache": cache, "tracks": tracks, "calls": calls, "seconds": time.perf_counter() - t0}


def test_small_build_files_and_metadata(built):
    tracks = built["tracks"]
    directory = catalog.catalog_dir(os.fspath(built["cache"]))
    assert [t.id for t in tracks] == list(range(1, SMALL + 1))
    assert built["calls"][0] == (0, SMALL, "") and built["calls"][-1][:2] == (SMALL, SMALL)
    assert sorted(c[2] for c in built["calls"][1:]) == sorted(t.title for t in tracks)
    manifest = json.loads(Path(directory, catalog.MANIFEST).read_text())
    assert manifest["catalog_version"] == catalog.CATALOG_VERSION and manifest["size"] == SMALL
    assert manifest["analyzer"] == catalog_render.analyzer_id()
    specs = catalog_specs()
    ext = ".ogg" if manifest["codec"] == "libopus" else ".flac"
    for t in tracks:
        spec = specs[t.id - 1]
        assert os.path.isabs(t.path) and os.path.dirname(t.path) == directory
        assert os.path.basename(t.path) == spec.filename(ext)
        audio = load_audio(t.path, catalog_render.SAMPLE_RATE, mono=False)
        assert audio.shape[1] == 2
        assert abs(audio.shape[0] / catalog_render.SAMPLE_RATE - t.duration_s) <= 0.1
        assert spec.duration_s <= t.duration_s <= spec.duration_s + 4.1
        assert abs(integrated_loudness(audio, catalog_render.SAMPLE_RATE) - catalog_render.TARGET_LUFS) <= 1.0
        assert abs(t.loudness_lufs - catalog_render.TARGET_LUFS) <= 0.5
        assert float(np.abs(audio).max()) <= 1.0
        # fade-out: the last 50 ms are far quieter than the track
        tail = audio[-catalog_render.SAMPLE_RATE // 20 :]
        assert float(np.sqrt(np.mean(tail**2))) < 0.1 * float(np.sqrt(np.mean(audio**2)))
        if manifest["analyzer"] is not None:
            assert t.embedding.shape == (manifest["embedding_dim"],) and t.embedding.dtype == np.float32
            assert abs(float(np.linalg.norm(t.embedding)) - 1.0) < 1e-3
        else:
            assert t.embedding.size == 0
        assert (t.title, t.style, t.emotions, t.valence, t.arousal) == (
            spec.title, spec.style, spec.emotions, spec.valence, spec.arousal)


def test_metadata_matches_the_composers_plan(built):
    specs = catalog_specs()
    for t in built["tracks"]:
        spec = specs[t.id - 1]
        stream = ProceduralMusicEngine().open_stream(
            MusicStreamOptions(sample_rate=8000, seed=spec.seed, style=spec.style))
        bar = stream.generate(MoodControl(spec.valence, spec.arousal, spec.emotion)).bars[0]
        assert (t.tempo_bpm, t.key, t.mode, t.instruments) == (bar.tempo_bpm, bar.key, bar.mode, bar.instruments)
        lo, hi = STYLE_PRESETS[spec.style].tempo_range
        assert lo <= t.tempo_bpm <= hi


def test_second_load_reads_the_cache(built, monkeypatch):
    cache = os.fspath(built["cache"])
    directory = catalog.catalog_dir(cache)
    before = {p: os.stat(os.path.join(directory, p)).st_mtime_ns for p in os.listdir(directory)}

    def no_build(*a, **k):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(catalog, "build_catalog", no_build)
    t0 = time.perf_counter()
    tracks = catalog.load_catalog(cache, size=SMALL)
    assert time.perf_counter() - t0 < 0.5
    assert [t.id for t in tracks] == [t.id for t in built["tracks"]]
    assert {p: os.stat(os.path.join(directory, p)).st_mtime_ns for p in os.listdir(directory)} == before
    # an explicit non-forced build of an intact catalog is a no-op too
    monkeypatch.undo()
    monkeypatch.setattr(catalog, "_render_all", no_build)
    assert catalog.build_catalog(cache, size=SMALL, force=False) == directory


def test_damaged_or_missing_cache(built, tmp_path, monkeypatch):
    with pytest.raises(LibraryError, match="not built yet"):
        catalog.load_catalog(os.fspath(tmp_path / "empty"), build=False)
    root = tmp_path / "damaged"
    src = catalog.catalog_dir(os.fspath(built["cache"]))
    shutil.copytree(src, catalog.catalog_dir(os.fspath(root)))
    victim = Path(catalog.catalog_dir(os.fspath(root))) / os.path.basename(built["tracks"][2].path)
    victim.unlink()
    with pytest.raises(LibraryError, match=r"damaged .*missing audio file"):
        catalog.load_catalog(os.fspath(root), build=False, size=SMALL)
    with monkeypatch.context() as m:
        m.setattr(catalog, "analyzer_id", lambda: "another-analyzer v9")
        with pytest.raises(LibraryError, match=r"out of date .*another-analyzer v9"):
            catalog.load_catalog(os.fspath(built["cache"]), build=False, size=SMALL)
    calls = []

    def fake_build(cache_dir=None, progress=None, workers=2, size=100, force=True):
        calls.append((cache_dir, size, force))
        shutil.copyfile(os.path.join(src, victim.name), victim)
        return catalog.catalog_dir(cache_dir)

    monkeypatch.setattr(catalog, "build_catalog", fake_build)
    tracks = catalog.load_catalog(os.fspath(root), size=SMALL)
    assert calls == [(os.fspath(root), SMALL, False)] and len(tracks) == SMALL


def test_interrupted_build_leaves_nothing(tmp_path):
    root = tmp_path / "cache"

    def progress(done: int, total: int, title: str) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        catalog.build_catalog(os.fspath(root), progress=progress, size=3)
    leftovers = [p for p in os.listdir(root) if not p.endswith(".lock")]
    assert leftovers == []


def test_export(built, tmp_path):
    cache = os.fspath(built["cache"])
    dest = tmp_path / "out" / "music"
    assert catalog.export_catalog(os.fspath(dest), cache, size=SMALL) == SMALL
    names = sorted(os.listdir(dest))
    assert catalog.MANIFEST in names and catalog.CSV_NAME in names
    for t in built["tracks"]:
        exported = dest / os.path.basename(t.path)
        assert exported.read_bytes() == Path(t.path).read_bytes()
    data = json.loads((dest / catalog.MANIFEST).read_text())
    assert [r["id"] for r in data["tracks"]] == list(range(1, SMALL + 1))
    with open(dest / catalog.CSV_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["id"]) for r in rows] == list(range(1, SMALL + 1))
    assert rows[0]["title"] == built["tracks"][0].title and ";" not in rows[0]["title"]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        catalog.export_catalog(os.fspath(a_file), cache, size=SMALL)
    with pytest.raises(OutputError, match="cache itself"):
        catalog.export_catalog(catalog.catalog_dir(cache), cache, size=SMALL)


def test_get_track_and_listing(built):
    tracks = built["tracks"]
    assert catalog.get_track(tracks, 3).id == 3
    with pytest.raises(LibraryError, match=r"no track 123 in the catalog \(1\.\.6\)"):
        catalog.get_track(tracks, 123)
    table = tracks_table(tracks).splitlines()
    assert len(table) == SMALL + 2 and "title" in table[0]
    assert tracks[0].title in table[2] and f"{tracks[0].key} {tracks[0].mode}" in table[2]
    rows = [track_record(t) for t in tracks]
    json.dumps(rows, allow_nan=False)
    assert rows[0]["id"] == 1 and rows[0]["emotions"] == list(tracks[0].emotions)


def test_flac_fallback_encoding(tmp_path):
    sr = catalog_render.SAMPLE_RATE
    n = sr + 777
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)).astype(np.float32)
    path = os.fspath(tmp_path / "t.flac")
    catalog_render.encode_audio(np.stack([tone, tone], axis=1), path, "flac", "Test", 1)
    back = load_audio(path, sr, mono=False)
    assert back.shape == (n, 2)
    assert np.allclose(back[:, 0], tone, atol=1e-3)

