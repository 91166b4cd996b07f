"""The faster paths of ``backscore score`` give the same numbers as the straightforward ones they replace.

Each check runs the fast path and a plain reference on real input (frames decoded by PyAV, real faces,
audio-like signals) and asserts exact equality: these paths exist for speed only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from engines.faces import FaceExpressionAnalyzer
from pipelines.analysis.frame_workers import FaceWorker
from pipelines.analysis.sound import _mono, to_mono16k
from pipelines.frames import VideoFrame
from pipelines.media.pictures import thumbnail_rgb
from pipelines.offline.beats import BeatOptions, _changes
from pipelines.offline.gains import _channel_peak, limiter_gain
from tests.real_media import default_face_analyzer

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- thumbnails


def _reference_thumbnail(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """Point-sampling of the 4:2:0 planes on the regular grid and BT.601, written out plainly."""
    sx, sy = frame.width / width, frame.height / height
    rows = (np.arange(height) * sy + sy / 2).astype(np.intp)
    cols = (np.arange(width) * sx + sx / 2).astype(np.intp)
    planes = [np.frombuffer(memoryview(p), np.uint8).reshape(p.height, p.line_size) for p in frame.planes]
    y = planes[0][np.ix_(rows, cols)].astype(np.float32)
    u = planes[1][np.ix_(rows // 2, cols // 2)].astype(np.float32) - 128.0
    v = planes[2][np.ix_(rows // 2, cols // 2)].astype(np.float32) - 128.0
    if frame.format.name == "yuvj420p":
        r, g, b = y + 1.402 * v, y - 0.344 * u - 0.714 * v, y + 1.772 * u
    else:
        y = (y - 16.0) * 1.164
        r, g, b = y + 1.596 * v, y - 0.392 * u - 0.813 * v, y + 2.017 * u
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def _decoded_frames(tmp_path: Path, width: int, height: int, pix_fmt: str) -> list[av.VideoFrame]:
    """A few frames of a moving, noisy picture, encoded with x264 and decoded again (real line sizes)."""
    path = str(tmp_path / f"v{width}x{height}{pix_fmt}.mp4")
    rng = np.random.default_rng(width * height)
    with av.open(path, "w") as out:
        st = out.add_stream("libx264", rate=10)
        st.width, st.height, st.pix_fmt = width, height, pix_fmt
        for i in range(6):
            yy, xx = np.mgrid[0:height, 0:width]
            rgb = np.stack([(xx * 3 + i * 20) % 256, (yy * 2) % 256, (xx + yy + i * 40) % 256], -1)
            rgb = np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            frame.pts, frame.time_base = i, Fraction(1, 10)
            out.mux(st.encode(frame))
        out.mux(st.encode(None))
    with av.open(path) as c:
        return list(c.decode(video=0))


@pytest.mark.parametrize(("width", "height", "pix_fmt"), [(1280, 720, "yuv420p"), (642, 362, "yuvj420p"),
                                                          (202, 398, "yuv420p")])
def test_thumbnails_equal_plain_point_sampling(tmp_path: Path, width: int, height: int, pix_fmt: str) -> None:
    frames = _decoded_frames(tmp_path, width, height, pix_fmt)
    assert frames and frames[0].format.name == pix_fmt
    for frame in frames:
        for tw, th in ((96, 54), (32, 18), (96, 190), (100, 50)):
            if frame.width < 2 * tw:
                continue
            got = thumbnail_rgb(frame, tw, th)
            assert got.shape == (th, tw, 3) and got.dtype == np.uint8
            assert np.array_equal(got, _reference_thumbnail(frame, tw, th))


# --------------------------------------------------------------------------- faces


@pytest.fixture(scope="module")
def analyzer() -> FaceExpressionAnalyzer:
    return default_face_analyzer()


def _face_frames() -> list[np.ndarray]:
    """Grey 320x180 frames with real faces (the astronaut, LFW faces pasted in) and without."""
    cv2 = pytest.importorskip("cv2")
    data = pytest.importorskip("skimage.data")
    astro = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    astro = cv2.resize(astro, (320, 320), interpolation=cv2.INTER_AREA)[40:220]
    lfw = (data.lfw_subset()[:12] * 255).astype(np.uint8)
    rng = np.random.default_rng(3)
    frames = []
    for i in range(23):
        if i % 3 == 0:
            frames.append(np.ascontiguousarray(astro if i % 2 else astro[:, ::-1]))
        elif i % 3 == 1:
            f = np.full((180, 320), 90, np.uint8)
            for k in range(2):
                face = cv2.resize(lfw[(i + k) % len(lfw)], (70 + 20 * k, 70 + 20 * k))
                f[20 + 30 * k:20 + 30 * k + face.shape[0], 30 + 150 * k:30 + 150 * k + face.shape[1]] = face
            frames.append(f)
        else:
            frames.append(rng.integers(0, 256, (180, 320), dtype=np.uint8))
    return frames


@pytest.mark.parametrize("threaded", [True, False])
def test_face_worker_finds_faces_as_frames_come_same_rows(analyzer: FaceExpressionAnalyzer, threaded: bool) -> None:
    frames = _face_frames()
    worker = FaceWorker(analyzer, batch=8, threaded=threaded)
    for i, f in enumerate(frames):
        worker.put(VideoFrame(pts_s=float(i), rgb=np.zeros((2, 2, 3), np.uint8), gray=f))
    times, rows = worker.result()
    # the rows analyze() gives batch by batch (the classifier sees the same batches of crops)
    expected = np.concatenate([analyzer.analyze(np.stack(frames[i:i + 8])) for i in range(0, len(frames), 8)])
    assert np.array_equal(times, np.arange(len(frames), dtype=np.float64))
    assert rows.dtype == expected.dtype and np.array_equal(rows, expected)
    assert rows[:, 0].sum() >= 8  # real faces were found and classified


# --------------------------------------------------------------------------- audio


def _audio(n: int, channels: int, dtype: type) -> np.ndarray:
    rng = np.random.default_rng(channels)
    t = np.arange(n) / 48000.0
    x = np.stack([0.6 * np.sin(2 * np.pi * (110 + 50 * c) * t) for c in range(channels)], 1)
    return (x + 0.3 * rng.standard_normal((n, channels))).astype(dtype)


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_mean_and_peak_equal_numpy(channels: int, dtype: type) -> None:
    x = _audio(48_013, channels, dtype)
    mono = _mono(x)
    assert mono.dtype == x.mean(axis=1).dtype and np.array_equal(mono, x.mean(axis=1))
    peak = _channel_peak(x)
    assert peak.dtype == np.abs(x).max(axis=1).dtype and np.array_equal(peak, np.abs(x).max(axis=1))


def test_mono16k_of_stereo_equals_resampling_the_channel_mean() -> None:
    from scipy.signal import resample_poly

    x = _audio(3 * 48000 + 17, 2, np.float32)
    assert np.array_equal(to_mono16k(x, 16000), np.asarray(resample_poly(x.mean(axis=1), 1, 3), np.float32))


def test_limiter_gain_keeps_the_ceiling_on_loud_stereo() -> None:
    x = 2.5 * _audio(3 * 48000, 2, np.float32)
    g = limiter_gain(x, 48000, ceiling_dbfs=-1.0)
    assert float(np.abs(x * g[:, None]).max()) <= 10 ** (-1 / 20)


# --------------------------------------------------------------------------- beat plan


@pytest.mark.parametrize("limit", [0.05, 0.15])
def test_beat_changes_put_the_lengths_within_reach_first(limit: float) -> None:
    lengths = np.arange(71, 223)
    prev, cost, reach = _changes(lengths, limit, BeatOptions())
    for a, m in enumerate(lengths):
        r = int(reach[a])
        within = prev[a, :r] + lengths[0]
        # the previous lengths within `limit` of this one, shortest first, each once, then nothing in reach
        assert np.all(np.diff(within) == 1) and abs(within[0] / m - 1) <= limit + 1e-3
        assert abs(within[-1] / m - 1) <= limit + 1e-3 and m in within
        assert np.isfinite(cost[a, :r]).all() and np.isinf(cost[a, r:]).all()
        assert cost[a, list(within).index(m)] == 0.0


# --------------------------------------------------------------------------- the command's process


def _cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def test_command_runs_blas_and_opencv_on_one_thread_unless_told() -> None:
    code = ("import pipelines.cli, os, cv2; "
            "print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['OPENCV_FOR_THREADS_NUM'], cv2.getNumThreads())")
    out = subprocess.run([sys.executable, "-c", code], env=_cli_env(), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "1"]
    told = _cli_env(OPENBLAS_NUM_THREADS="2", OPENCV_FOR_THREADS_NUM="2")
    out = subprocess.run([sys.executable, "-c", code], env=told, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "2", "2"]


def test_command_restores_the_switch_interval_it_runs_with(tmp_path: Path) -> None:
    from pipelines.cli import main
    from pipelines.cli.main import SWITCH_INTERVAL_S

    before = sys.getswitchinterval()
    assert SWITCH_INTERVAL_S < before  # Python's default (5 ms) unless someone changed it
    # a command that fails on its input returns normally; the interval is the caller's again either way
    assert main(["score", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "out.mp4")]) != 0
    assert sys.getswitchinterval() == before
