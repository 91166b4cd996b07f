"""Media limits: a file is refused for what its container declares (before decoding) and for what
its frames turn out to be (while decoding), with a message naming the file and the limit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipelines.devtools.hostile_media import stamped_video, wav_tone
from pipelines.errors import LimitError, error_status
from pipelines.frames import AudioFrame, MediaInfo, VideoFrame
from pipelines.media.decode import DecodeOptions, decode_audio, decode_video, iter_media, load_audio, probe
from pipelines.media.limits import MediaLimits

pytestmark = pytest.mark.hostile  # the hostile-input suite: pytest -m hostile


def test_declared_duration_is_refused_before_decoding(tmp_path: Path) -> None:
    clip = stamped_video(tmp_path / "six.mkv", [0.0, 0.04, 6.0], declare_duration=True)
    assert probe(os.fspath(clip), MediaLimits(max_duration_s=10)).duration_s == pytest.approx(6.0, abs=0.05)
    with pytest.raises(LimitError, match=r"six\.mkv lasts 6 s; at most 5 s"):
        probe(os.fspath(clip), MediaLimits(max_duration_s=5))
    items = iter_media(os.fspath(clip), DecodeOptions(limits=MediaLimits(max_duration_s=5)))
    with pytest.raises(LimitError):
        next(items)  # nothing is yielded, not even the MediaInfo


def test_frames_stamped_an_hour_apart_are_refused_while_decoding(tmp_path: Path) -> None:
    clip = stamped_video(tmp_path / "hour.mkv", [0.0, 0.04, 1800.0, 3600.0])
    info = probe(os.fspath(clip), MediaLimits(max_duration_s=900))
    assert info.duration_s == 0.0  # it declares nothing; only its stamps tell
    seen: list[float] = []
    with pytest.raises(LimitError, match=r"hour\.mkv has frames stamped at 30\.0 min; at most 15\.0 min"):
        for item in iter_media(os.fspath(clip), DecodeOptions(limits=MediaLimits(max_duration_s=900))):
            if isinstance(item, VideoFrame):
                seen.append(item.pts_s)
    assert seen == [0.0]  # refused at the first frame past the limit, nothing after it decoded
    # Under a limit that allows an hour, the same file decodes (its four frames span the hour).
    _, frames, duration = decode_video(os.fspath(clip), DecodeOptions(limits=MediaLimits(max_duration_s=4000)))
    assert [round(f.pts_s) for f in frames] == [0, 1800, 3600] and duration > 3600


def test_more_frames_than_the_duration_allows_are_refused(tmp_path: Path) -> None:
    # 60 frames 1 ms apart: 0.06 s of stamps, but more frames than 0.1 s at 240 fps can hold.
    clip = stamped_video(tmp_path / "dense.mkv", [i / 1000 for i in range(60)])
    limits = MediaLimits(max_duration_s=0.1)
    assert limits.max_frames == 25
    with pytest.raises(LimitError, match=r"dense\.mkv has more than 25 frames"):
        decode_video(os.fspath(clip), DecodeOptions(analysis_fps=1000.0, limits=limits))
    decode_video(os.fspath(clip), DecodeOptions(analysis_fps=1000.0, limits=MediaLimits(max_duration_s=1.0)))


def test_picture_size_and_pixel_rate(tmp_path: Path) -> None:
    clip = stamped_video(tmp_path / "wide.mkv", [0.0, 0.04, 1.0], size=(640, 360), declare_duration=True)
    with pytest.raises(LimitError, match=r"wide\.mkv is 640x360 \(0 Mpx a picture\)"):
        probe(os.fspath(clip), MediaLimits(max_frame_pixels=640 * 359))
    probe(os.fspath(clip), MediaLimits(max_frame_pixels=640 * 360))
    # It declares 1000 fps (its stream's rate); the rate counted is capped at 240 fps, the most any camera makes.
    with pytest.raises(LimitError, match=r"Mpx/s"):
        probe(os.fspath(clip), MediaLimits(max_pixels_per_s=640 * 360 * 239))
    probe(os.fspath(clip), MediaLimits(max_pixels_per_s=640 * 360 * 240))


def test_audio_only_decode_has_the_same_limits(tmp_path: Path) -> None:
    clip = stamped_video(tmp_path / "six.mkv", [0.0, 0.04, 6.0], declare_duration=True)
    with pytest.raises(LimitError):
        decode_audio(os.fspath(clip), 6.0, MediaLimits(max_duration_s=5))
    assert decode_audio(os.fspath(clip), 6.0, MediaLimits(max_duration_s=10)) is None  # no soundtrack


def test_tracks_longer_than_the_track_limit_are_refused(tmp_path: Path) -> None:
    tone = wav_tone(tmp_path / "tone.wav", 3.0)
    assert load_audio(os.fspath(tone), 22050, limits=MediaLimits(max_track_s=4)).shape == (3 * 22050,)
    with pytest.raises(LimitError, match=r"tone\.wav is longer than 2 s"):
        load_audio(os.fspath(tone), 22050, limits=MediaLimits(max_track_s=2))


def test_limit_errors_are_413_resource_exhausted_exit_2() -> None:
    status = error_status(LimitError("x"))
    assert (status.http_status, status.grpc_code, status.exit_code) == (413, "RESOURCE_EXHAUSTED", 2)


def test_service_and_cli_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSCORE_MAX_MEDIA_S", "120")
    monkeypatch.setenv("BACKSCORE_CLI_MAX_MEDIA_S", "600")
    monkeypatch.setenv("BACKSCORE_MAX_FRAME_PIXELS", "1000")
    monkeypatch.setenv("BACKSCORE_MAX_TRACK_S", "30")
    service, cli = MediaLimits.for_service(), MediaLimits.for_cli()
    assert (service.max_duration_s, cli.max_duration_s) == (120, 600)
    assert service.max_frame_pixels == cli.max_frame_pixels == 1000 and service.max_track_s == 30


def test_ordinary_media_passes_the_default_limits(calm_to_exciting: Path) -> None:
    items = list(iter_media(os.fspath(calm_to_exciting), DecodeOptions(limits=MediaLimits.for_service())))
    assert isinstance(items[0], MediaInfo)
    audio = [i for i in items if isinstance(i, AudioFrame)]
    assert audio and np.isfinite(np.concatenate([a.samples for a in audio])).all()
