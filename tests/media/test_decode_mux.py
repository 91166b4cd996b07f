"""Decoding every container we accept, and muxing a new soundtrack without touching the video."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import av
import numpy as np
import pytest

from pipelines.devtools.synth_video import CALM_DARK, Scene, write_video
from pipelines.errors import InputError
from pipelines.media.decode import DecodeOptions, decode_media, probe
from pipelines.media.mux import mux

SHORT = Scene(3.0, brightness=0.6, saturation=0.5, speed=0.3, audio="drums", loudness_dbfs=-12.0)


def video_packets(path: Path | str) -> list[str]:
    with av.open(os.fspath(path)) as c:
        return [hashlib.sha1(bytes(p)).hexdigest() for p in c.demux(c.streams.video[0]) if p.size]


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".webm", ".avi", ".mov"])
def test_decodes_each_container(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"v{ext}"
    write_video(os.fspath(path), [SHORT], width=160, height=120, fps=24)
    media = decode_media(os.fspath(path), DecodeOptions(analysis_fps=4.0, face_fps=1.0))
    assert media.duration_s == pytest.approx(3.0, abs=0.1)
    # analysis frames are sampled at the analysis rate, small, in order
    times = [f.pts_s for f in media.frames]
    assert len(times) == pytest.approx(12, abs=1)
    assert np.all(np.diff(times) > 0.2)
    assert media.frames[0].rgb.shape[1] == 96 and media.frames[0].rgb.dtype == np.uint8
    assert sum(f.gray is not None for f in media.frames) == 3
    # the soundtrack is there, at 48 kHz stereo, loud where the drums are
    assert media.audio is not None and media.audio.shape[1] == 2
    assert media.audio.shape[0] == pytest.approx(3.0 * 48000, rel=0.02)
    assert np.abs(media.audio).max() > 0.1


def test_video_without_audio(silent_video: Path) -> None:
    media = decode_media(os.fspath(silent_video))
    assert media.audio is None and not media.info.has_audio
    assert media.duration_s == pytest.approx(8.0, abs=0.1)


def test_real_clip_probe_and_decode(cockatoo: Path) -> None:
    info = probe(os.fspath(cockatoo))
    assert (info.width, info.height, info.video_codec) == (1280, 720, "h264")
    media = decode_media(os.fspath(cockatoo))
    assert media.duration_s == pytest.approx(info.duration_s)
    # the clip carries an mp3 track (16 kHz mono) that is digital silence: it must decode
    # to a silent stereo 48 kHz track of the video's length, not to "no audio"
    assert media.info.audio_codec in ("mp3", "mp3float") and media.audio is not None
    assert media.audio.shape == (int(round(info.duration_s * 48000)), 2)
    assert np.abs(media.audio).max() == 0.0


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov"])
def test_mux_copies_video_packets_and_sets_audio(tmp_path: Path, calm_to_exciting: Path, ext: str) -> None:
    dur = 16.0
    t = np.arange(int(dur * 48000)) / 48000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    audio = np.stack([tone, tone], axis=1)
    out = tmp_path / f"out{ext}"
    res = mux(os.fspath(calm_to_exciting), os.fspath(out), audio, 48000, dur)
    assert res.video_copied
    assert video_packets(out) == video_packets(calm_to_exciting)
    with av.open(os.fspath(out)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac" and a.sample_rate == 48000
        decoded = np.concatenate([f.to_ndarray()[0] for f in c.decode(a)])
    assert decoded.shape[0] / 48000 == pytest.approx(dur, abs=0.05)
    # the tone came through: 440 Hz dominates
    spec = np.abs(np.fft.rfft(decoded[48000:96000]))
    assert abs(np.argmax(spec) - 440) <= 2


def test_mux_reencodes_when_the_container_cannot_hold_the_codec(tmp_path: Path, calm_to_exciting: Path) -> None:
    audio = np.zeros((16 * 48000, 2), np.float32)
    out = tmp_path / "out.webm"
    res = mux(os.fspath(calm_to_exciting), os.fspath(out), audio, 48000, 16.0)
    assert not res.video_copied and res.video_codec == "libvpx-vp9"
    info = probe(os.fspath(out))
    assert info.video_codec == "vp9" and info.audio_codec == "opus"
    assert info.duration_s == pytest.approx(16.0, abs=0.1)


def test_truncated_file_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "full.mp4"
    write_video(os.fspath(src), [CALM_DARK], width=160, height=120)
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"truncated|not a readable|corrupt"):
        decode_media(os.fspath(cut))


@pytest.mark.parametrize("rotation", [90, 270])
def test_sideways_phone_video_faces_are_read_upright_and_rotation_is_kept(tmp_path: Path, rotation: int) -> None:
    """A video stored sideways with a display rotation (as phones record) keeps it, and faces in it are found."""
    from fractions import Fraction

    from skimage import data

    from engines.faces import FaceExpressionAnalyzer

    face = np.ascontiguousarray(data.astronaut()[:, 64:448])  # upright, 512x384
    stored = np.ascontiguousarray(np.rot90(face, k=-rotation // 90))  # what the sensor wrote
    src = tmp_path / "phone.mp4"
    with av.open(os.fspath(src), "w") as out:
        s = out.add_stream("libx264", rate=12)
        s.width, s.height, s.pix_fmt = stored.shape[1], stored.shape[0], "yuv420p"
        s.set_display_rotation(rotation)
        for i in range(24):
            f = av.VideoFrame.from_ndarray(stored, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 12)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    media = decode_media(os.fspath(src))
    gray = np.stack([f.gray for f in media.frames if f.gray is not None])
    rows = FaceExpressionAnalyzer().analyze(gray)
    assert (rows[:, 0] >= 1).all()  # a face in every face frame
    for ext in (".mp4", ".webm"):  # stream copy and re-encode both keep the rotation
        out_path = tmp_path / f"out{ext}"
        mux(os.fspath(src), os.fspath(out_path), np.zeros((2 * 48000, 2), np.float32), 48000, 2.0)
        with av.open(os.fspath(out_path)) as c:
            assert next(c.decode(video=0)).rotation % 360 == rotation
