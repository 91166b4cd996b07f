"""``backscore synth-video`` refuses sizes, rates and lengths it cannot (or should not) make: one clear
line, exit 2, no output file; ``write_video`` refuses the same for library callers."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import av
import pytest

from pipelines.devtools.synth_video import CALM_DARK, write_video
from pipelines.errors import OptionError
from tests.cli.test_errors import assert_clean_error, files, run_cli

pytestmark = pytest.mark.hostile  # the hostile-input suite: pytest -m hostile


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--width", "0"], "width must be a whole number of pixels from 2 to 7680 (got 0)"),
        (["--width", "-2"], "width must be"),
        (["--height", "-5"], "height must be a whole number of pixels from 2 to 4320 (got -5)"),
        (["--width", "7682"], "width must be"),
        (["--height", "4322"], "height must be"),
        (["--width", "641"], "width must be even"),
        (["--height", "359"], "height must be even"),
        (["--fps", "0"], "fps must be a whole number of frames per second from 1 to 240 (got 0)"),
        (["--fps", "-30"], "fps must be"),
        (["--fps", "241"], "fps must be"),
        (["--scene-seconds", "-1"], "a scene must last"),
        (["--scene-seconds", "0"], "a scene must last"),
        (["--scene-seconds", "nan"], "(got nan)"),
        (["--scene-seconds", "inf"], "(got inf)"),
        (["--scene-seconds", "0.01", "--fps", "30"], "at least one frame"),
        (["--scene-seconds", "1201"], "the video would last 3603.0 s; at most 3600 s"),
    ],
)
def test_bad_numbers_are_one_clear_error_and_leave_nothing(tmp_path: Path, args: list[str], pattern: str) -> None:
    res = run_cli("synth-video", os.fspath(tmp_path / "out.mp4"), *args)
    assert_clean_error(res, pattern)
    assert res.returncode == 2
    assert files(tmp_path) == set()  # neither the output nor a temporary file


def test_the_smallest_accepted_video_is_written(tmp_path: Path) -> None:
    out = tmp_path / "tiny.mp4"
    res = run_cli("synth-video", os.fspath(out), "--width", "2", "--height", "2", "--fps", "1",
                  "--scene-seconds", "1", "--pattern", "calm")
    assert res.returncode == 0, res.stderr
    with av.open(os.fspath(out)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (2, 2)
        assert sum(1 for _ in c.decode(v)) == 1
    assert files(tmp_path) == {"tiny.mp4"}


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"width": 0}, "width"),
        ({"height": 121}, "height must be even"),
        ({"fps": 0}, "fps"),
        ({"fps": 24.5}, "fps"),
        ({"width": True}, "width"),
        ({"durations": []}, "no scenes"),
        ({"durations": [1.0, float("nan")]}, "(got nan)"),
        ({"durations": [2000.0, 2000.0]}, "at most 3600 s"),
    ],
)
def test_write_video_refuses_the_same_for_library_callers(tmp_path: Path, kw: dict[str, object],
                                                          pattern: str) -> None:
    durations = kw.pop("durations", [1.0])
    assert isinstance(durations, list)
    scenes = [replace(CALM_DARK, duration_s=d) for d in durations]
    params: dict[str, object] = {"width": 160, "height": 120, "fps": 12, **kw}
    with pytest.raises(OptionError, match=re.escape(pattern)):
        write_video(os.fspath(tmp_path / "v.mp4"), scenes, **params)  # type: ignore[arg-type]
    assert files(tmp_path) == set()
