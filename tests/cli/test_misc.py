"""The other CLI commands and the progress bar."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.media.decode import probe
from pipelines.progress import Progress


def test_analyze_prints_a_timeline(calm_to_exciting: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", os.fspath(calm_to_exciting), "--no-faces"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["duration_s"] == pytest.approx(16.0, abs=0.1)
    assert [s["emotion"] for s in data["segments"]][-1] == "exciting"
    assert "music" not in data and "face_presence" not in data["windows"][0]["features"]


def test_analyze_writes_timeline_and_plot(tmp_path: Path, exciting_to_calm: Path) -> None:
    tl, png = tmp_path / "a.json", tmp_path / "a.png"
    assert main(["analyze", os.fspath(exciting_to_calm), "--timeline", os.fspath(tl), "--plot", os.fspath(png)]) == 0
    assert json.loads(tl.read_text())["segments"][0]["emotion"] == "exciting"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_synth_video_makes_the_pattern(tmp_path: Path) -> None:
    out = tmp_path / "s.mp4"
    assert main(["synth-video", os.fspath(out), "--pattern", "calm-exciting", "--scene-seconds", "3",
                 "--width", "160", "--height", "120", "--fps", "12"]) == 0
    info = probe(os.fspath(out))
    assert info.duration_s == pytest.approx(6.0, abs=0.1) and info.has_audio
    assert main(["synth-video", os.fspath(tmp_path / "x.mp4"), "--pattern", "calm-polka"]) != 0
    assert not (tmp_path / "x.mp4").exists()


def test_progress_bar_draws_on_a_terminal_and_stays_silent_otherwise() -> None:
    buf = io.StringIO()
    p = Progress({"a": 1.0, "b": 3.0}, stream=buf, enabled=True)
    p.stage("a")
    p.update(1.0)
    p.stage("b")
    p.update(0.5)
    assert p.overall == pytest.approx(0.25 + 0.75 * 0.5)
    p.close()
    text = buf.getvalue()
    assert "\r[" in text and "100.0%" in text and text.endswith("\n")
    quiet = io.StringIO()
    q = Progress({"a": 1.0}, stream=quiet, enabled=False)
    q.stage("a")
    q.update(0.5)
    q.close()
    assert quiet.getvalue() == ""


def test_help_lists_the_commands() -> None:
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "score" in res.stdout and "analyze" in res.stdout
