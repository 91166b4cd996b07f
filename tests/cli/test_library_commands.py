"""`backscore catalog|recommend|library|recommender` and `score --track` through the real catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.library.catalog import CATALOG_VERSION
from pipelines.media.decode import load_audio, probe

CALM = {"relaxing", "sad", "neutral"}
AROUSED = {"exciting", "tense", "fearful", "happy"}


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                         timeout=600, env={**os.environ})
    if check:
        assert res.returncode == 0, res.stderr
    return res


def one_line_error(res: subprocess.CompletedProcess[str], needle: str) -> None:
    assert res.returncode != 0 and "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("backscore: error:")]
    assert len(lines) == 1 and needle in lines[0], res.stderr


def test_catalog_list_and_export(catalog_cache: Path, tmp_path: Path) -> None:
    data = json.loads(cli("catalog", "list", "--json").stdout)
    assert [t["id"] for t in data] == list(range(1, 101))
    assert {"title", "emotions", "valence", "arousal", "tempo_bpm", "key", "mode", "style", "instruments",
            "duration_s"} <= set(data[0])
    assert all(30 <= t["duration_s"] <= 90 for t in data)
    table = cli("catalog", "list").stdout
    assert data[41]["title"] in table
    dest = tmp_path / "export"
    cli("catalog", "export", os.fspath(dest))
    assert len(list(dest.glob("*.ogg"))) == 100 and (dest / "catalog.json").exists()


def test_recommend_follows_the_mood(catalog_cache: Path, calm_to_exciting: Path, video_dir: Path,
                                    tmp_path: Path) -> None:
    from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK
    from tests.conftest import make_video

    calm = make_video(video_dir, "calm_only.mp4", [CALM_DARK])
    wild = make_video(video_dir, "wild_only.mp4", [BRIGHT_FAST])
    catalog = {t["id"]: t for t in json.loads(cli("catalog", "list", "--json").stdout)}
    calm_recs = json.loads(cli("recommend", os.fspath(calm), "--top-k", "5", "--json", "--no-faces").stdout)
    wild_recs = json.loads(cli("recommend", os.fspath(wild), "--top-k", "5", "--json", "--no-faces").stdout)
    assert len(calm_recs) == 5 and all(r["reason"] for r in calm_recs)
    assert sum(catalog[r["track_id"]]["emotions"][0] in CALM for r in calm_recs) >= 4
    assert sum(catalog[r["track_id"]]["emotions"][0] in AROUSED for r in wild_recs) >= 4
    assert np.mean([catalog[r["track_id"]]["arousal"] for r in wild_recs]) > np.mean(
        [catalog[r["track_id"]]["arousal"] for r in calm_recs]) + 0.6
    # per segment: the second segment of a calm -> exciting video gets aroused tracks
    segs = json.loads(cli("recommend", os.fspath(calm_to_exciting), "--per-segment", "--top-k", "3", "--json",
                          "--no-faces").stdout)
    assert [s["segment"]["emotion"] for s in segs] == ["sad", "exciting"]
    assert all(catalog[r["track_id"]]["emotions"][0] in AROUSED for r in segs[1]["recommendations"])
    png = tmp_path / "rec.png"
    text = cli("recommend", os.fspath(calm_to_exciting), "--no-faces", "--plot", os.fspath(png)).stdout
    assert "sad → exciting" in text or "sad -> exciting" in text
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000


def test_score_with_a_catalog_track(catalog_cache: Path, calm_to_exciting: Path, tmp_path: Path) -> None:
    out, tl, bgm = tmp_path / "o.mp4", tmp_path / "t.json", tmp_path / "b.wav"
    cli("score", os.fspath(calm_to_exciting), "-o", os.fspath(out), "--track", "42", "--timeline", os.fspath(tl),
        "--bgm", os.fspath(bgm), "--quiet")
    info = probe(os.fspath(out))
    assert info.duration_s == pytest.approx(16.0, abs=0.1) and info.has_audio
    timeline = json.loads(tl.read_text())
    assert timeline["track"]["id"] == 42 and len(timeline["music"]) == 1
    # the BGM is the catalog track itself (trimmed, levelled, faded): it correlates with the original
    catalog = {t["id"]: t for t in json.loads(cli("catalog", "list", "--json").stdout)}
    folder = catalog_cache / f"catalog-v{CATALOG_VERSION}"
    track = load_audio(next(p for p in folder.glob("042-*")).__fspath__(), 48000)
    ours = load_audio(os.fspath(bgm), 48000)
    seg = slice(48000 * 2, 48000 * 6)
    corr = np.corrcoef(track[seg], ours[seg])[0, 1]
    assert corr > 0.9, corr
    assert timeline["music"][0]["tempo_bpm"] == pytest.approx(catalog[42]["tempo_bpm"])


def test_bad_track_id_and_k(catalog_cache: Path, calm_to_exciting: Path, tmp_path: Path) -> None:
    one_line_error(cli("score", os.fspath(calm_to_exciting), "-o", os.fspath(tmp_path / "o.mp4"), "--track", "150",
                       check=False), "no track 150")
    one_line_error(cli("recommend", os.fspath(calm_to_exciting), "--top-k", "0", check=False), "--top-k")
    one_line_error(cli("recommend", os.fspath(calm_to_exciting), "--library", os.fspath(tmp_path / "none.sqlite"),
                       check=False), "not found")
    assert not list(tmp_path.iterdir())


def test_user_library_index_list_recommend(catalog_cache: Path, tmp_path: Path, calm_to_exciting: Path) -> None:
    import shutil

    music = tmp_path / "music"
    music.mkdir()
    for p in sorted((catalog_cache / f"catalog-v{CATALOG_VERSION}").glob("*.ogg"))[:8]:
        shutil.copy(p, music / p.name)
    (music / "broken.mp3").write_bytes(b"\x00garbage" * 100)
    db = tmp_path / "lib.sqlite"
    res = cli("library", "index", os.fspath(music), "--db", os.fspath(db))
    assert "broken.mp3" in res.stderr
    listed = json.loads(cli("library", "list", "--db", os.fspath(db), "--json").stdout)
    assert len(listed) == 8 and all({"valence", "arousal", "tempo_bpm", "key", "mode"} <= set(t) for t in listed)
    again = cli("library", "index", os.fspath(music), "--db", os.fspath(db))
    assert "8 unchanged" in again.stdout or "unchanged: 8" in again.stdout or "unchanged 8" in again.stdout
    recs = json.loads(cli("recommend", os.fspath(calm_to_exciting), "--library", os.fspath(db), "--top-k", "3",
                          "--json", "--no-faces").stdout)
    assert len(recs) == 3 and {r["track_id"] for r in recs} <= {t["id"] for t in listed}
    one_line_error(cli("library", "list", "--db", os.fspath(tmp_path / "missing.sqlite"), check=False), "not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    cli("library", "index", os.fspath(empty), "--db", os.fspath(tmp_path / "empty.sqlite"))
    one_line_error(cli("recommend", os.fspath(calm_to_exciting), "--library", os.fspath(tmp_path / "empty.sqlite"),
                       check=False), "empty")


def test_recommender_cli_make_data_train_eval(catalog_cache: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli("recommender", "make-data", "--out", os.fspath(data), "--n", "16", "--seed", "3")
    csv = next(data.glob("*.csv"))
    model = tmp_path / "model.pt"
    res = cli("recommender", "train", "--pairs", os.fspath(csv), "--out", os.fspath(model))
    assert model.exists() and res.stdout.strip()
    ev = cli("recommender", "eval", "--pairs", os.fspath(csv), "--model", os.fspath(model)).stdout
    assert "MRR" in ev and "untrained" in ev
    bad = tmp_path / "bad.csv"
    bad.write_text("video,track_id\nnope.mp4,3\n")
    one_line_error(cli("recommender", "eval", "--pairs", os.fspath(bad), "--model", os.fspath(model), check=False),
                   "line 2")
