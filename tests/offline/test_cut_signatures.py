"""Cuts to the frame from the analysis' own decode (``Analysis.frame_changes``), without reading the file again.

On synthetic fast-cut clips whose cuts lie off the analysis' 6 fps grid: the cuts timed from the changes the
analysis recorded for every decoded frame equal those timed by decoding the file again, lie on the first
frame of each new shot, and the file is not opened a second time (``av.open`` is counted by a thin wrapper
that calls the real one). A clip with non-reference B-frames, which the analysis does not decode, gets the
same cuts: those the record cannot time are timed from the file, in one more pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipelines.analysis.analyze import Analysis, analyze
from pipelines.analysis.engines import default_engines
from pipelines.devtools.synth_video import BRIGHT_FAST, Scene, render_frame
from pipelines.offline.cut_times import refine_cuts
from tests.conftest import make_video

FPS = 30
STEP_S = 1.0 / 6.0
#: Shots of 0.7, 1.1, 0.55, 1.45 and 0.9 s: at 30 fps their first frames (21, 33, ...) are mostly off the
#: analysis' grid of every fifth frame.
SCENES = [replace(BRIGHT_FAST, duration_s=2.5, cut_every_s=c, hue=h)
          for c, h in ((0.7, 0.1), (1.1, 0.5), (0.55, 0.8), (1.45, 0.3), (0.9, 0.6))]


def shots(scenes: list[Scene], fps: int) -> list[int]:
    """The shot of every frame, numbered as :func:`~pipelines.devtools.synth_video.write_video` draws them."""
    out, i, start = [], 0, 0.0
    for si, sc in enumerate(scenes):
        for _ in range(round((start + sc.duration_s) * fps) - round(start * fps)):
            t = i / fps - start
            out.append(si * 1000 + (int(t / sc.cut_every_s) if sc.cut_every_s else 0))
            i += 1
        start += sc.duration_s
    return out


def first_frames_of_shots(scenes: list[Scene], fps: int) -> np.ndarray:
    """The time of the first frame of every new shot."""
    s = shots(scenes, fps)
    return np.array([i / fps for i in range(1, len(s)) if s[i] != s[i - 1]])


def write_with_b_frames(path: Path, scenes: list[Scene], fps: int, width: int = 320, height: int = 180) -> Path:
    """The scenes as H.264 with three non-reference B-frames between reference frames and no key frame at
    the cuts, so many first frames of a shot are B-frames the analysis skips."""
    if path.exists():
        return path
    with av.open(os.fspath(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "veryfast", "x264-params": "bframes=3:b-pyramid=0:b-adapt=0:scenecut=0"}
        starts = np.cumsum([0.0] + [sc.duration_s for sc in scenes])
        for i, shot in enumerate(shots(scenes, fps)):
            sc = scenes[shot // 1000]
            t = i / fps - float(starts[shot // 1000])
            frame = av.VideoFrame.from_ndarray(render_frame(sc, t, shot, width, height), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every path ``av.open`` is called with (the real ``av.open`` does the work)."""
    calls: list[str] = []
    real: Callable[..., Any] = av.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(os.fspath(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    yield calls


def _analyse(path: Path) -> Analysis:
    return analyze(os.fspath(path), default_engines(faces=False))


def test_cuts_from_the_analysis_decode_equal_decoding_again(video_dir: Path, opens: list[str]) -> None:
    path = make_video(video_dir, "cut_signatures.mp4", SCENES, width=320, height=180, fps=FPS, with_audio=False)
    truth = first_frames_of_shots(SCENES, FPS)
    assert np.mean(np.round(truth * FPS) % 5 != 0) > 0.6  # most cuts off the 6 fps grid
    an = _analyse(path)
    changes = an.frame_changes
    assert changes is not None
    n_frames = round(sum(s.duration_s for s in SCENES) * FPS)
    assert len(changes.times_s) == n_frames  # every frame, not only the analysed ones (no B-frames here)
    assert changes.nbytes == 12 * n_frames
    assert np.allclose(changes.times_s, np.arange(n_frames) / FPS, atol=1e-6)
    assert len(an.cuts) >= 0.8 * len(truth)
    assert max(float(np.min(np.abs(truth - c))) for c in an.cuts) > 0.05  # the analysis' cuts lie late

    opens.clear()
    recorded = refine_cuts(os.fspath(path), an.cuts, STEP_S, changes=changes)
    assert opens == []  # not opened again
    decoded = refine_cuts(os.fspath(path), an.cuts, STEP_S)
    assert opens == [os.fspath(path)]  # the path without the record reads the file (the wrapper counts)
    assert recorded == decoded
    assert max(float(np.min(np.abs(truth - c))) for c in recorded) < 1e-3  # on the first frame of the new shot


def test_cuts_on_frames_the_analysis_skipped_are_timed_from_the_file(video_dir: Path, opens: list[str]) -> None:
    scenes = SCENES[:3]
    path = write_with_b_frames(video_dir / "cut_signatures_bframes.mp4", scenes, FPS)
    an = _analyse(path)
    changes = an.frame_changes
    assert changes is not None and not changes.complete
    assert len(changes.times_s) < 0.5 * round(sum(s.duration_s for s in scenes) * FPS)  # B-frames skipped

    opens.clear()
    recorded = refine_cuts(os.fspath(path), an.cuts, STEP_S, changes=changes)
    assert opens == [os.fspath(path)]  # once, for all the cuts the record could not time
    decoded = refine_cuts(os.fspath(path), an.cuts, STEP_S)
    assert recorded == decoded
    truth = first_frames_of_shots(scenes, FPS)
    assert max(float(np.min(np.abs(truth - c))) for c in recorded) < 1e-3


def test_a_slow_video_is_recorded_whole_and_never_opened_again(video_dir: Path, opens: list[str]) -> None:
    """Below 2.5x the analysis rate the decoder skips nothing: the record is complete."""
    scenes = SCENES[:2]
    path = make_video(video_dir, "cut_signatures_12fps.mp4", scenes, width=320, height=180, fps=12,
                      with_audio=False)
    an = _analyse(path)
    changes = an.frame_changes
    assert changes is not None and changes.complete
    assert len(changes.times_s) == round(sum(s.duration_s for s in scenes) * 12)
    opens.clear()
    recorded = refine_cuts(os.fspath(path), an.cuts, STEP_S, changes=changes)
    assert opens == []
    assert recorded == refine_cuts(os.fspath(path), an.cuts, STEP_S)
