"""An input that is not a regular file (a FIFO, a socket, a device, a directory) is refused before it is
opened: reading one could block forever or never end."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.errors import InputError
from pipelines.media.decode import decode_video, load_audio, probe
from tests.cli.test_errors import assert_clean_error

pytestmark = pytest.mark.hostile  # the hostile-input suite: pytest -m hostile


@pytest.fixture()
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    os.mkfifo(path)
    return path


@pytest.fixture()
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "s.mp4"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(os.fspath(path))
        s.listen(1)
        yield path


def test_fifo_is_refused_by_name(fifo: Path) -> None:
    # nobody ever writes to the FIFO: opening it for reading would block for good
    with pytest.raises(InputError, match=r"is not a regular file \(a FIFO\)"):
        probe(os.fspath(fifo))
    with pytest.raises(InputError, match=r"\(a FIFO\)"):
        decode_video(os.fspath(fifo))
    with pytest.raises(InputError, match=r"\(a FIFO\)"):
        load_audio(os.fspath(fifo), 48_000)


def test_socket_is_refused(unix_socket: Path) -> None:
    assert stat.S_ISSOCK(os.stat(unix_socket).st_mode)
    with pytest.raises(InputError, match=r"is not a regular file \(a socket\)"):
        probe(os.fspath(unix_socket))


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_character_devices_are_refused(device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"no {device} here")
    with pytest.raises(InputError, match=r"is not a regular file \(a character device\)"):
        probe(device)


def test_directory_and_symlinks(tmp_path: Path, fifo: Path, calm_to_exciting: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        probe(os.fspath(tmp_path))
    to_fifo = tmp_path / "link-to-fifo.mp4"
    to_fifo.symlink_to(fifo)
    with pytest.raises(InputError, match=r"\(a FIFO\)"):
        probe(os.fspath(to_fifo))
    to_video = tmp_path / "link-to-video.mp4"
    to_video.symlink_to(calm_to_exciting)
    assert probe(os.fspath(to_video)).width > 0  # a link to a real video is still a video
    with pytest.raises(InputError, match="not found"):
        probe(os.fspath(tmp_path / "dangling.mp4"))
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "nothing")
    with pytest.raises(InputError, match="not found"):
        probe(os.fspath(tmp_path / "dangling.mp4"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    # a hang is the bug: a short timeout makes it a failure, not a stuck test run
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, timeout=60)


def test_cli_analyze_and_score_refuse_a_fifo_without_hanging(tmp_path: Path, fifo: Path) -> None:
    res = _cli("analyze", os.fspath(fifo), "--timeline", os.fspath(tmp_path / "t.json"))
    assert_clean_error(res, "is not a regular file (a FIFO)")
    assert res.returncode == 2
    res = _cli("score", os.fspath(fifo), "-o", os.fspath(tmp_path / "out.mp4"))
    assert_clean_error(res, "is not a regular file (a FIFO)")
    assert res.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no outputs, no temporary files


@pytest.mark.parametrize(("target", "pattern"), [("/dev/zero", "(a character device)"), (".", "is a directory")])
def test_cli_analyze_refuses_devices_and_directories(tmp_path: Path, target: str, pattern: str) -> None:
    if not os.path.exists(target):
        pytest.skip(f"no {target} here")
    res = _cli("analyze", target if target != "." else os.fspath(tmp_path))
    assert_clean_error(res, pattern)
    assert res.returncode == 2
