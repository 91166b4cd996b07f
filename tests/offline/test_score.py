"""`backscore score` end to end on synthesized mood videos and on real media."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from pipelines.media.decode import load_audio, probe
from pipelines.offline.score import ScoreRequest, ScoreResult, score

MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MAJOR_MODES = {"major", "lydian", "mixolydian"}  # modes with a major third
MINOR_MODES = {"minor", "dorian", "phrygian", "harmonic minor", "harmonic_minor", "aeolian"}
MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def video_packets(path: Path | str) -> list[str]:
    with av.open(os.fspath(path)) as c:
        return [hashlib.sha1(bytes(p)).hexdigest() for p in c.demux(c.streams.video[0]) if p.size]


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(os.fspath(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
        return data.astype(np.float32) / 32768.0, w.getframerate()


def audio_mode(y: np.ndarray, sr: int) -> str:
    """Major/minor from the audio alone: chroma vs Krumhansl-Kessler profiles (librosa)."""
    import librosa

    chroma = librosa.feature.chroma_stft(y=y, sr=sr).mean(axis=1)
    best = max(
        ((np.corrcoef(np.roll(prof, k), chroma)[0, 1], name) for k in range(12)
         for prof, name in ((MAJOR, "major"), (MINOR, "minor"))),
    )
    return best[1]


def run(tmp: Path, src: Path, **kw: object) -> tuple[ScoreResult, dict, Path]:
    out = tmp / "out.mp4"
    req = ScoreRequest(os.fspath(src), os.fspath(out), timeline_path=os.fspath(tmp / "t.json"),
                       plot_path=os.fspath(tmp / "p.png"), bgm_path=os.fspath(tmp / "bgm.wav"), **kw)  # type: ignore[arg-type]
    res = score(req)
    with open(tmp / "t.json", encoding="utf-8") as fh:
        return res, json.load(fh), out


def halves(tl: dict, split: float, key: str) -> tuple[float, float]:
    w = tl["windows"]
    a = [x[key] for x in w if x["end_s"] <= split]
    b = [x[key] for x in w if x["start_s"] >= split]
    return float(np.mean(a)), float(np.mean(b))


def test_calm_to_exciting_end_to_end(tmp_path: Path, calm_to_exciting: Path) -> None:
    _, tl, out = run(tmp_path, calm_to_exciting)
    # --- output validity: streams, duration, video untouched
    info_in, info_out = probe(os.fspath(calm_to_exciting)), probe(os.fspath(out))
    assert info_out.has_audio and info_out.audio_codec == "aac"
    assert video_packets(out) == video_packets(calm_to_exciting)
    with av.open(os.fspath(out)) as c:
        a = c.streams.audio[0]
        n = sum(f.samples for f in c.decode(a))
    assert n / 48000 == pytest.approx(info_in.duration_s, abs=0.05)
    assert tl["duration_s"] == pytest.approx(info_in.duration_s, abs=1e-3)
    # --- mood: arousal and valence move the right way at 8 s
    v0, v1 = halves(tl, 8.0, "valence")
    a0, a1 = halves(tl, 8.0, "arousal")
    assert a1 > a0 + 0.8 and v1 > v0 + 0.5
    for w in tl["windows"]:
        assert {"start_s", "end_s", "valence", "arousal", "emotion", "confidence", "features"} <= set(w)
        assert -1 <= w["valence"] <= 1 and -1 <= w["arousal"] <= 1 and 0 <= w["confidence"] <= 1
        assert {"brightness", "motion", "cut_rate", "loudness_db", "speech"} <= set(w["features"])
    segs = tl["segments"]
    assert len(segs) == 2 and segs[1]["emotion"] == "exciting"
    assert abs(segs[1]["start_s"] - 8.0) <= 1.0
    assert len([c for c in tl["cuts_s"] if c > 8.5]) >= 5 and not [c for c in tl["cuts_s"] if 0.5 < c < 7.5]
    # --- music: a new section near the mood change, faster and (from the audio) major
    music = tl["music"]
    assert len(music) >= 2
    change = music[1]
    bar = 4 * 60 / music[0]["tempo_bpm"]
    assert abs(change["start_s"] - 8.0) <= 0.5 * bar + 0.6
    assert change["tempo_bpm"] > music[0]["tempo_bpm"]
    assert {"start_s", "end_s", "tempo_bpm", "key", "mode", "style", "instruments"} <= set(change)
    bgm, sr = read_wav(tmp_path / "bgm.wav")
    assert bgm.shape[0] == int(round(info_in.duration_s * 48000))
    mono = bgm.mean(axis=1)
    before = mono[int(1.0 * sr): int((music[1].get("transition_s") or change["start_s"]) * sr)]
    after = mono[int((change["start_s"] + 0.2) * sr): int(15.0 * sr)]
    assert audio_mode(before, sr) == "minor" and music[0]["mode"] in MINOR_MODES
    assert audio_mode(after, sr) == "major" and change["mode"] in MAJOR_MODES
    # --- plot is a real PNG
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "p.png").stat().st_size > 20_000
    # nothing else left in the directory
    assert {p.name for p in tmp_path.iterdir()} == {"out.mp4", "t.json", "p.png", "bgm.wav"}


def test_exciting_to_calm_moves_the_other_way(tmp_path: Path, exciting_to_calm: Path) -> None:
    _, tl, _ = run(tmp_path, exciting_to_calm)
    a0, a1 = halves(tl, 8.0, "arousal")
    v0, v1 = halves(tl, 8.0, "valence")
    assert a1 < a0 - 0.8 and v1 < v0 - 0.5
    assert tl["segments"][0]["emotion"] == "exciting"
    assert abs(tl["segments"][1]["start_s"] - 8.0) <= 1.0
    assert tl["music"][1]["tempo_bpm"] < tl["music"][0]["tempo_bpm"]


def test_video_without_audio_gets_a_bgm_track(tmp_path: Path, silent_video: Path) -> None:
    _, tl, out = run(tmp_path, silent_video)
    info = probe(os.fspath(out))
    assert info.has_audio and info.duration_s == pytest.approx(8.0, abs=0.1)
    assert "loudness_db" not in tl["windows"][0]["features"]
    bgm, _ = read_wav(tmp_path / "bgm.wav")
    assert np.sqrt(np.mean(bgm**2)) > 0.01


def test_style_option_is_honoured(tmp_path: Path, calm_to_exciting: Path) -> None:
    _, tl, _ = run(tmp_path, calm_to_exciting, style="lofi")
    assert {m["style"] for m in tl["music"]} == {"lofi"}
    assert tl["style"] == "lofi"


@pytest.mark.parametrize(("src_ext", "dst_ext", "copied"), [(".webm", ".mkv", True), (".avi", ".mp4", True)])
def test_other_containers(tmp_path: Path, src_ext: str, dst_ext: str, copied: bool) -> None:
    from pipelines.devtools.synth_video import BRIGHT_FAST, write_video

    src = tmp_path / f"in{src_ext}"
    write_video(os.fspath(src), [BRIGHT_FAST], width=160, height=120)
    out = tmp_path / f"out{dst_ext}"
    res = score(ScoreRequest(os.fspath(src), os.fspath(out)))
    assert res.mux is not None and res.mux.video_copied is copied
    assert video_packets(out) == video_packets(src)
    assert probe(os.fspath(out)).duration_s == pytest.approx(probe(os.fspath(src)).duration_s, abs=0.1)


def speech_track(media_dir: Path, duration_s: float, at: list[float]) -> np.ndarray:
    """Real recorded words (kajongg voices) placed at known times, 48 kHz mono."""
    words = sorted((media_dir / "voices").rglob("*.ogg"))[:40:5]
    out = np.zeros(int(duration_s * 48000), np.float32)
    for t, w in zip(at, words, strict=False):
        x = load_audio(os.fspath(w), 48000)
        i = int(t * 48000)
        x = x[: len(out) - i]
        out[i: i + len(x)] += 0.5 * x / (np.abs(x).max() + 1e-9)
    return out


def test_real_clip_with_real_speech_is_ducked(tmp_path: Path, cockatoo: Path, media_dir: Path) -> None:
    """cockatoo.mp4 (real 1280x720 footage) with real spoken words muxed in by our own muxer."""
    from pipelines.media.mux import mux

    dur = probe(os.fspath(cockatoo)).duration_s
    speech_at = [2.0, 3.0, 4.0, 9.0, 10.0]
    voice = speech_track(media_dir, dur, speech_at)
    src = tmp_path / "talking.mp4"
    mux(os.fspath(cockatoo), os.fspath(src), np.stack([voice, voice], axis=1), 48000, dur)
    _, tl, out = run(tmp_path, src)
    assert probe(os.fspath(out)).duration_s == pytest.approx(dur, abs=0.1)
    assert video_packets(out) == video_packets(cockatoo)
    assert tl["mix"]["ducked_s"] > 1.0
    speech_windows = [w for w in tl["windows"] if 2.0 <= w["start_s"] and w["end_s"] <= 5.0]
    quiet_windows = [w for w in tl["windows"] if 5.5 <= w["start_s"] and w["end_s"] <= 8.5]
    assert min(w["features"]["speech"] for w in speech_windows) > 0.2
    assert max(w["features"]["speech"] for w in quiet_windows) < 0.1
    # the BGM (as written with --bgm, after ducking) is quieter under the words
    bgm, sr = read_wav(tmp_path / "bgm.wav")
    def rms(a: float, b: float) -> float:
        seg = bgm[int(a * sr): int(b * sr)]
        return float(np.sqrt(np.mean(seg**2)) + 1e-12)
    assert 20 * np.log10(rms(2.2, 4.6) / rms(6.0, 8.0)) < -4.0


def test_cli_score_prints_summary_and_progress_flag(tmp_path: Path, calm_to_exciting: Path) -> None:
    out = tmp_path / "o.mov"
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "score", os.fspath(calm_to_exciting), "-o",
                          os.fspath(out), "--seed", "7", "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "mood:" in res.stdout and "exciting" in res.stdout
    assert probe(os.fspath(out)).has_audio
