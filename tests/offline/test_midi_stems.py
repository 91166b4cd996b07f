"""``backscore score --midi/--stems``: the procedural score as a MIDI file and as stems, on a real synthetic video.

The stems are checked against the ``--bgm`` WAV written by the same run (they must add up to it), the MIDI
against the composer's own record of what it played (tempo map from its bars, a marker per section of the
timeline, the program of every part of the styles it played, note times).
"""

from __future__ import annotations

import io
import json
import os
import wave
import zipfile
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

from engines.composer import STYLE_PRESETS
from engines.composer.export import STEMS, RecordingComposer
from engines.composer.synth import NOTE_ON
from pipelines.cli import main
from pipelines.errors import OptionError
from pipelines.offline.score import ScoreRequest, ScoreResult, score

SR = 48_000


def read_wav(path: Path) -> np.ndarray:
    with wave.open(os.fspath(path)) as w:
        assert w.getframerate() == SR and w.getnchannels() == 2 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2).astype(np.float64) / 32768.0


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, calm_to_exciting: Path) -> tuple[ScoreResult, dict, Path,
                                                                                         RecordingComposer]:
    out = tmp_path_factory.mktemp("midi-stems")
    engine = RecordingComposer()
    req = ScoreRequest(os.fspath(calm_to_exciting), os.fspath(out / "out.mp4"), timeline_path=os.fspath(out / "t.json"),
                       bgm_path=os.fspath(out / "bgm.wav"), midi_path=os.fspath(out / "score.mid"),
                       stems_dir=os.fspath(out / "stems"), seed=4)
    result = score(req, music_engine=engine)
    with open(out / "t.json", encoding="utf-8") as fh:
        return result, json.load(fh), out, engine


def test_stems_add_up_to_the_bgm(scored: tuple[ScoreResult, dict, Path, RecordingComposer]) -> None:
    _, tl, out, _ = scored
    bgm = read_wav(out / "bgm.wav")
    stems = {name: read_wav(out / "stems" / f"{name}.wav") for name in STEMS}
    assert sorted(os.listdir(out / "stems")) == sorted(f"{n}.wav" for n in STEMS)
    assert all(s.shape == bgm.shape for s in stems.values())
    residual = sum(stems.values()) - bgm
    residual_db = 10 * np.log10(np.sum(residual**2) / np.sum(bgm**2))
    print(f"stem residual {residual_db:.1f} dB")
    assert residual_db < -40.0
    sounding = [n for n, s in stems.items() if np.sqrt(np.mean(s**2)) > 1e-3]
    assert len(sounding) >= 3, sounding  # real parts, not one stem holding everything
    # the timeline lists what was written
    entry = tl["exports"]["stems"]
    assert entry["dir"] == os.path.abspath(out / "stems") and set(entry["files"]) == set(STEMS)
    assert tl["exports"]["midi"]["path"] == os.path.abspath(out / "score.mid")
    # atomic: no temporary siblings left
    assert not [p for p in os.listdir(out) if "partial" in p]


def test_midi_tempo_map_and_markers_match_the_music(scored: tuple[ScoreResult, dict, Path, RecordingComposer]) -> None:
    result, tl, out, _ = scored
    pm = pretty_midi.PrettyMIDI(os.fspath(out / "score.mid"))
    times, tempos = pm.get_tempo_changes()
    expected: list[tuple[float, float]] = []
    for bar in result.music.bars:  # a beat plan's uneven beats: a tempo per beat
        beats = (zip(bar.beat_times(), (60.0 / d for d in bar.beat_durations_s), strict=True)
                 if bar.beat_durations_s else [(bar.start_s, bar.tempo_bpm)])
        for t, bpm in beats:
            if t >= result.analysis.duration_s:
                break
            if not expected or round(60e6 / bpm) != round(60e6 / expected[-1][1]):  # MIDI's resolution
                expected.append((t if expected else 0.0, bpm))
    assert len(times) == len(expected) >= 2  # the calm -> exciting video changes tempo
    for t, bpm, (et, ebpm) in zip(times, tempos, expected, strict=True):
        assert t == pytest.approx(et, abs=2e-3)
        assert bpm == pytest.approx(ebpm, rel=1e-5)
    markers = [(m.time, m.text) for m in _conductor_markers(out / "score.mid", pm)]
    assert len(markers) == len(tl["music"]) >= 2
    for i, ((t, text), sec) in enumerate(zip(markers, tl["music"], strict=True)):
        assert t == pytest.approx(sec["start_s"], abs=2e-3)
        assert text == f"section {i}: {sec['emotion']} / {sec['style']}, {sec['key']} {sec['mode']}"


def _conductor_markers(path: Path, pm: pretty_midi.PrettyMIDI) -> list[mido.MetaMessage]:
    """Marker meta-events with ``time`` in seconds (on the file's own tempo map)."""
    mid = mido.MidiFile(os.fspath(path))
    found, tick = [], 0
    for msg in mid.tracks[0]:
        tick += msg.time
        if msg.type == "marker":
            found.append(msg.copy(time=pm.tick_to_time(tick)))
    return found


def test_midi_programs_and_notes_match_the_styles_parts(
        scored: tuple[ScoreResult, dict, Path, RecordingComposer]) -> None:
    _, tl, out, engine = scored
    log = engine.recording
    assert log is not None
    styles = [STYLE_PRESETS[s["style"]] for s in tl["music"]]
    part_programs = {p.program for st in styles for p in st.parts}
    kits = {st.drum_kit for st in styles if st.drum_kit is not None}
    mid = mido.MidiFile(os.fspath(out / "score.mid"))
    changes = {(m.channel, m.program) for tr in mid.tracks for m in tr if m.type == "program_change"}
    melodic = {p for ch, p in changes if ch != 9}
    assert melodic == {prog for _, chan, role, prog in log.parts if chan != 9}
    assert melodic <= part_programs and len(melodic) >= 4
    assert {p for ch, p in changes if ch == 9} <= kits
    pm = pretty_midi.PrettyMIDI(os.fspath(out / "score.mid"))
    assert any(i.is_drum for i in pm.instruments) == bool(kits)
    for inst in pm.instruments:
        assert inst.program in (kits if inst.is_drum else part_programs), (inst.name, inst.program)
    # every note-on the composer played before the end of the video is in the file, at its time (1 tick)
    onsets = sorted(n.start for i in pm.instruments for n in i.notes)
    played = sorted(s / SR for s, op, *_ in log.events if op == NOTE_ON and s / SR < tl["duration_s"] - 1e-3)
    assert len(onsets) == len(played)
    assert np.max(np.abs(np.array(onsets) - np.array(played))) < 1.5e-3


def test_exports_need_the_procedural_composer(calm_to_exciting: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    src = os.fspath(calm_to_exciting)
    with pytest.raises(OptionError, match="procedural composer"):
        score(ScoreRequest(src, os.fspath(tmp_path / "o.mp4"), stems_dir=os.fspath(tmp_path / "s"), track_id=3))
    cases = [
        (["--stems", os.fspath(tmp_path / "s"), "--track", "3"], 2, "need the procedural composer"),
        (["--midi", os.fspath(tmp_path / "s.mid"), "--engine", "musicgen"], 2, "need the procedural composer"),
        (["--midi", os.fspath(tmp_path / "s.txt")], 3, "midi must end in"),
        (["--midi", src], 3, "input file"),
    ]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "afile").write_text("x")
    cases += [(["--stems", os.fspath(tmp_path / "full")], 3, "not empty"),
              (["--stems", os.fspath(tmp_path / "afile")], 3, "not a folder"),
              (["--stems", os.fspath(tmp_path / "no" / "such")], 3, "does not exist")]
    for extra, code, message in cases:
        before = sorted(os.listdir(tmp_path))
        rc = main(["score", src, "-o", os.fspath(tmp_path / "o.mp4"), "--quiet", *extra])
        err = capsys.readouterr().err
        assert rc == code, (extra, err)
        assert err.startswith("backscore: error:") and message in err, err
        assert sorted(os.listdir(tmp_path)) == before  # nothing written, nothing left behind
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_http_score_returns_midi_and_stems(calm_to_exciting: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from pipelines.live.models import InProcessModels
    from serve.core import GatewayCore
    from serve.http.router import build_app

    core = GatewayCore(InProcessModels.default(faces=False), tmp_dir=os.fspath(tmp_path))
    files = {"file": (calm_to_exciting.name, calm_to_exciting.read_bytes(), "video/mp4")}
    with TestClient(build_app(core)) as client:
        r = client.post("/v1/score?output=midi&seed=2", files=files)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "audio/midi"
        assert 'filename="calm_to_exciting.score.mid"' in r.headers["content-disposition"]
        mid = mido.MidiFile(file=io.BytesIO(r.content))
        assert any(m.type == "marker" for m in mid.tracks[0]) and len(mid.tracks) > 3
        r = client.post("/v1/score?output=stems&seed=2&loudness=podcast", files=files)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
            assert zf.testzip() is None
            assert set(zf.namelist()) == {f"{n}.wav" for n in STEMS} | {"timeline.json"}
            timeline = json.loads(zf.read("timeline.json"))
            with wave.open(io.BytesIO(zf.read("drums.wav"))) as w:
                assert abs(w.getnframes() / SR - timeline["duration_s"]) < 1e-3
        assert set(timeline["exports"]["stems"]["files"]) == set(STEMS)
        assert timeline["loudness"]["preset"] == "podcast" and timeline["input"]["path"] is None
        for query, status in (("output=stems&loudness=loud", 400), ("output=midi&stream=true", 400),
                              ("output=bgm&stream=true&loudness=youtube", 400), ("output=zip", 422)):
            r = client.post(f"/v1/score?{query}", files=files)
            assert r.status_code == status, (query, r.text)
    import asyncio

    asyncio.run(core.shutdown())
    assert not [p for p in os.listdir(tmp_path) if not p.startswith(".")], os.listdir(tmp_path)


def test_stems_follow_a_loudness_preset(calm_to_exciting: Path, tmp_path: Path) -> None:
    """With a preset the BGM alone gets the preset's gain and true-peak limiter: the stems too."""
    req = ScoreRequest(os.fspath(calm_to_exciting), os.fspath(tmp_path / "o.mp4"),
                       bgm_path=os.fspath(tmp_path / "b.wav"), stems_dir=os.fspath(tmp_path / "stems"),
                       loudness="youtube", seed=5)
    result = score(req)
    assert result.timeline["loudness"]["preset"] == "youtube"
    bgm = read_wav(tmp_path / "b.wav")
    residual = sum(read_wav(tmp_path / "stems" / f"{n}.wav") for n in STEMS) - bgm
    residual_db = 10 * np.log10(np.sum(residual**2) / np.sum(bgm**2))
    print(f"stem residual with a preset {residual_db:.1f} dB")
    assert residual_db < -40.0


def test_stems_folder_is_all_or_nothing(tmp_path: Path) -> None:
    from pipelines.errors import OutputError
    from pipelines.offline.stems import atomic_dir

    dest = tmp_path / "stems"
    with pytest.raises(RuntimeError), atomic_dir(os.fspath(dest)) as tmp:
        (Path(tmp) / "drums.wav").write_bytes(b"half")
        raise RuntimeError("the job failed half way")
    assert os.listdir(tmp_path) == []  # neither the folder nor its temporary sibling
    dest.mkdir()  # an empty folder is fine, and replaced
    with atomic_dir(os.fspath(dest)) as tmp:
        (Path(tmp) / "drums.wav").write_bytes(b"whole")
    assert os.listdir(tmp_path) == ["stems"] and os.listdir(dest) == ["drums.wav"]
    with pytest.raises(OutputError, match="cannot put the stems"), atomic_dir(os.fspath(dest)) as tmp:
        (Path(tmp) / "bass.wav").write_bytes(b"late")  # the destination filled up meanwhile
    assert os.listdir(tmp_path) == ["stems"] and os.listdir(dest) == ["drums.wav"]
