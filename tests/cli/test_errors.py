"""Bad input gets one clear line on stderr, a non-zero exit, and leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipelines.cli import main

pytestmark = pytest.mark.hostile  # the hostile-input suite: pytest -m hostile


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          timeout=300)


def files(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def assert_clean_error(res: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.strip().splitlines() if ln]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("backscore: error:"), lines[0]
    assert pattern.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in res.stderr


def audio_only_file(path: Path) -> None:
    with av.open(os.fspath(path), "w") as out:
        s = out.add_stream("aac", rate=48000)
        s.layout = "stereo"
        tone = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000).astype(np.float32) * 0.2
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, 0, Fraction(1, 48000)
        out.mux(s.encode(frame))
        out.mux(s.encode(None))


def test_missing_input(tmp_path: Path) -> None:
    res = run_cli("score", os.fspath(tmp_path / "nope.mp4"), "-o", os.fspath(tmp_path / "o.mp4"))
    assert_clean_error(res, "not found")
    assert files(tmp_path) == set()


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [("empty.mp4", b"", "empty"), ("text.mp4", b"this is not a video\n" * 50, "not a readable video")],
)
def test_not_a_video(tmp_path: Path, name: str, content: bytes, pattern: str) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    res = run_cli("score", os.fspath(src), "-o", os.fspath(tmp_path / "o.mp4"), "--timeline",
                  os.fspath(tmp_path / "t.json"))
    assert_clean_error(res, pattern)
    assert files(tmp_path) == {name}


def test_truncated_video(tmp_path: Path, calm_to_exciting: Path) -> None:
    data = calm_to_exciting.read_bytes()
    src = tmp_path / "cut.mp4"
    src.write_bytes(data[: len(data) // 3])
    res = run_cli("score", os.fspath(src), "-o", os.fspath(tmp_path / "o.mp4"))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert files(tmp_path) == {"cut.mp4"}


def test_no_video_stream(tmp_path: Path) -> None:
    src = tmp_path / "sound.m4a"
    audio_only_file(src)
    res = run_cli("score", os.fspath(src), "-o", os.fspath(tmp_path / "o.mp4"))
    assert_clean_error(res, "no video stream")
    assert files(tmp_path) == {"sound.m4a"}


def test_output_equal_to_input_is_refused_and_input_untouched(tmp_path: Path, calm_to_exciting: Path) -> None:
    src = tmp_path / "in.mp4"
    src.write_bytes(calm_to_exciting.read_bytes())
    before = digest(src)
    res = run_cli("score", os.fspath(src), "-o", os.fspath(src))
    assert_clean_error(res, "input")
    # also through another spelling of the same path
    res2 = run_cli("score", os.fspath(src), "-o", os.fspath(tmp_path / "." / "in.mp4"))
    assert_clean_error(res2, "input")
    assert digest(src) == before and files(tmp_path) == {"in.mp4"}


def test_timeline_equal_to_input_is_refused(tmp_path: Path, calm_to_exciting: Path) -> None:
    res = run_cli("score", os.fspath(calm_to_exciting), "-o", os.fspath(tmp_path / "o.mp4"), "--timeline",
                  os.fspath(calm_to_exciting))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert files(tmp_path) == set()


@pytest.mark.parametrize("target", ["missing-dir/o.mp4", "/proc/o.mp4"])
def test_unwritable_output(tmp_path: Path, calm_to_exciting: Path, target: str) -> None:
    out = target if target.startswith("/") else os.fspath(tmp_path / target)
    res = run_cli("score", os.fspath(calm_to_exciting), "-o", out)
    assert_clean_error(res, "directory")
    assert files(tmp_path) == set()


def test_bad_output_extension(tmp_path: Path, calm_to_exciting: Path) -> None:
    res = run_cli("score", os.fspath(calm_to_exciting), "-o", os.fspath(tmp_path / "o.txt"))
    assert_clean_error(res, ".mp4")
    assert files(tmp_path) == set()


def test_unknown_style(tmp_path: Path, calm_to_exciting: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["score", os.fspath(calm_to_exciting), "-o", os.fspath(tmp_path / "o.mp4"), "--style", "polka"])
    err = capsys.readouterr().err
    assert code != 0 and "unknown style 'polka'" in err and "lofi" in err
    assert files(tmp_path) == set()


def test_input_is_a_directory(tmp_path: Path) -> None:
    res = run_cli("score", os.fspath(tmp_path), "-o", os.fspath(tmp_path / "o.mp4"))
    assert_clean_error(res, "directory")


def test_media_past_the_command_line_limit_is_exit_2(tmp_path: Path) -> None:
    from pipelines.devtools.hostile_media import stamped_video

    hour = stamped_video(tmp_path / "hour.mkv", [0.0, 0.04, 1800.0, 3600.0])
    env = {**os.environ, "BACKSCORE_CLI_MAX_MEDIA_S": "600"}
    before = files(tmp_path)
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "score", os.fspath(hour), "-o",
                          os.fspath(tmp_path / "o.mp4")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 2
    assert_clean_error(res, "has frames stamped at 30.0 min; at most 10.0 min of media is accepted")
    assert files(tmp_path) == before
