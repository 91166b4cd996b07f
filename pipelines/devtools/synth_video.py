"""Synthesize test and demo videos whose mood changes at known times.

Each :class:`Scene` fixes the picture's brightness, saturation, motion speed and cut rate
and the soundtrack's character (silence, a quiet hum, or a loud drum groove). Used by the
tests (known ground truth), the benchmark (a 60 s 1280x720 h264 file) and the README demo
when no real clip is at hand.
"""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
import numpy as np
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from pipelines.errors import OptionError
from pipelines.frames import AUDIO_RATE


@dataclass(frozen=True)
class Scene:
    duration_s: float
    brightness: float = 0.5  # 0..1 value of the background
    saturation: float = 0.5  # 0..1
    hue: float = 0.6  # 0..1 (0.6 blue, 0.1 orange)
    speed: float = 0.1  # object speed, frame widths per second
    cut_every_s: float | None = None  # shot cuts (palette/layout change) this often
    audio: str = "hum"  # "silence" | "hum" | "drums"
    loudness_dbfs: float = -30.0
    tempo_bpm: float = 120.0


CALM_DARK = Scene(8.0, brightness=0.14, saturation=0.15, hue=0.62, speed=0.01, audio="hum",
                  loudness_dbfs=-42.0)
BRIGHT_FAST = Scene(8.0, brightness=0.92, saturation=0.85, hue=0.12, speed=0.9, cut_every_s=0.75,
                    audio="drums", loudness_dbfs=-3.0, tempo_bpm=128.0)


#: The largest video :func:`write_video` makes: 8K UHD, 240 frames a second, an hour.
MAX_WIDTH, MAX_HEIGHT, MAX_FPS, MAX_TOTAL_S = 7680, 4320, 240, 3600.0


def check_video_params(width: object, height: object, fps: object, durations: Sequence[object]) -> float:
    """:class:`OptionError` unless :func:`write_video` can make a video of this size, rate and scene
    durations (seconds); returns the total duration.

    Sizes must be even (H.264 in yuv420p, the pixel format of every container here, needs it): an odd
    one is refused rather than silently changed, so the file is the size that was asked for.
    """
    for name, value, top in (("width", width, MAX_WIDTH), ("height", height, MAX_HEIGHT)):
        if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= top:
            raise OptionError(f"{name} must be a whole number of pixels from 2 to {top} (got {value!r})")
        if value % 2:
            raise OptionError(f"{name} must be even: H.264 video in yuv420p needs even sizes (got {value}; "
                              f"use {value - 1} or {value + 1})")
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= MAX_FPS:
        raise OptionError(f"fps must be a whole number of frames per second from 1 to {MAX_FPS} (got {fps!r})")
    if not durations:
        raise OptionError("no scenes: a video needs at least one")
    total = 0.0
    for d in durations:
        if isinstance(d, bool) or not isinstance(d, int | float) or not math.isfinite(d) or d * fps < 1:
            raise OptionError(f"a scene must last a finite number of seconds, at least one frame ({1 / fps:.3g} s "
                              f"at {fps} fps) (got {d!r})")
        total += float(d)
    if total > MAX_TOTAL_S:
        raise OptionError(f"the video would last {total:.1f} s; at most {MAX_TOTAL_S:.0f} s")
    return total


def _codecs_for(path: str) -> tuple[str, str | None, str]:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".webm":
        return "libvpx-vp9", "libopus", "yuv420p"
    if ext == ".avi":
        return "mpeg4", "pcm_s16le", "yuv420p"
    return "libx264", "aac", "yuv420p"


def render_frame(scene: Scene, t_in_scene: float, shot: int, width: int, height: int) -> np.ndarray:
    """One RGB frame: a tinted gradient background with moving discs."""
    rng = np.random.default_rng(1000 + shot)
    hue, value, flip = scene.hue, scene.brightness, False
    if scene.cut_every_s:
        # a new shot: different colour cast, exposure and framing, as real cuts have
        hue = (scene.hue + rng.choice([-1.0, 1.0]) * rng.uniform(0.12, 0.3)) % 1.0
        value = scene.brightness * rng.uniform(0.8, 1.0)
        flip = bool(rng.integers(0, 2))
    base = np.array(colorsys.hsv_to_rgb(hue, scene.saturation, value))
    yy = np.linspace(0.85, 1.15, height, dtype=np.float32)
    if flip:
        yy = yy[::-1]
    img = np.broadcast_to(base[None, None, :] * yy[:, None, None], (height, width, 3)).astype(np.float32).copy()
    n_obj = 4
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    for k in range(n_obj):
        ph = rng.uniform(0, 2 * np.pi)
        r = height * rng.uniform(0.08, 0.18)
        cx = width * (0.5 + 0.4 * np.sin(ph + 2 * np.pi * scene.speed * t_in_scene * (1 + 0.3 * k)))
        cy = height * (0.5 + 0.35 * np.cos(ph * 1.7 + 2 * np.pi * scene.speed * t_in_scene * (0.7 + 0.2 * k)))
        ohue = (hue + 0.25 + 0.2 * k) % 1.0
        col = np.array(colorsys.hsv_to_rgb(ohue, min(1.0, scene.saturation * 1.1), min(1.0, value * 1.15 + 0.05)))
        x0, x1 = int(max(0, cx - r)), int(min(width, cx + r + 1))
        y0, y1 = int(max(0, cy - r)), int(min(height, cy + r + 1))
        if x1 <= x0 or y1 <= y0:
            continue
        mask = (xs[:, x0:x1] - cx) ** 2 + (ys[y0:y1] - cy) ** 2 <= r * r
        img[y0:y1, x0:x1][mask] = col
    return np.clip(img * 255.0, 0, 255).astype(np.uint8)


def render_audio(scene: Scene, n: int, sample_offset: int, seed: int = 0) -> np.ndarray:
    """Mono float32 audio for a scene at :data:`AUDIO_RATE`."""
    t = (np.arange(n) + sample_offset) / AUDIO_RATE
    amp = 10 ** (scene.loudness_dbfs / 20)
    if scene.audio == "silence":
        return np.zeros(n, dtype=np.float32)
    if scene.audio == "hum":
        x = np.sin(2 * np.pi * 55 * t) + 0.5 * np.sin(2 * np.pi * 82.5 * t) + 0.3 * np.sin(2 * np.pi * 110 * t)
        x *= 1 + 0.1 * np.sin(2 * np.pi * 0.2 * t)
        return (amp * x / np.max(np.abs(x) + 1e-9)).astype(np.float32)
    # drums: kick on every beat, snare on 2 and 4, hats on eighths
    rng = np.random.default_rng(seed)
    beat = 60.0 / scene.tempo_bpm
    out = np.zeros(n, dtype=np.float64)
    noise = rng.standard_normal(n + AUDIO_RATE)
    t0 = sample_offset / AUDIO_RATE
    first = int(np.ceil(t0 / (beat / 2)))
    last = int((t0 + n / AUDIO_RATE) / (beat / 2)) + 1
    for k in range(first, last):
        start = int(round(k * beat / 2 * AUDIO_RATE)) - sample_offset
        if start >= n:
            break
        if start < 0:
            continue
        length = min(n - start, int(0.25 * AUDIO_RATE))
        tt = np.arange(length) / AUDIO_RATE
        hat = 0.25 * noise[start:start + length] * np.exp(-tt / 0.02)
        seg = hat
        if k % 2 == 0:
            kick = np.sin(2 * np.pi * (50 * tt + 60 * (1 - np.exp(-tt / 0.03)) * 0.03)) * np.exp(-tt / 0.12)
            seg = seg + kick
            if (k // 2) % 2 == 1:
                seg = seg + 0.8 * noise[start + 7:start + 7 + length] * np.exp(-tt / 0.06)
        out[start:start + length] += seg
    # a sustained bright noise wash (a crash/riser), so the spectrum is bright and dense
    out += 0.08 * np.diff(noise[: n + 1])
    peak = np.max(np.abs(out)) + 1e-9
    return (amp * out / peak).astype(np.float32)


def write_video(
    path: str,
    scenes: Sequence[Scene],
    width: int = 320,
    height: int = 240,
    fps: int = 24,
    with_audio: bool = True,
    seed: int = 0,
    video_codec: str | None = None,
) -> float:
    """Write the scenes back to back; returns the total duration in seconds.

    ``video_codec`` overrides the container's default (e.g. ``"libvpx"``: VP8 in .webm, which a
    WebRTC client can send without re-encoding). Parameters :func:`check_video_params` refuses raise
    :class:`OptionError` before anything is written.
    """
    total = check_video_params(width, height, fps, [s.duration_s for s in scenes])
    vcodec, acodec, pix = _codecs_for(path)
    vcodec = video_codec or vcodec
    with av.open(path, mode="w") as out:
        vs = cast(VideoStream, out.add_stream(vcodec, rate=fps))
        vs.width, vs.height, vs.pix_fmt = width, height, pix
        if vcodec == "libx264":
            vs.options = {"preset": "ultrafast", "crf": "23"}
        elif vcodec == "libvpx-vp9":
            vs.options = {"deadline": "realtime", "cpu-used": "8"}
        elif vcodec == "libvpx":  # VP8; a key frame every second so a receiver joining late can start
            vs.options = {"deadline": "realtime", "cpu-used": "8", "b": "300k"}
            vs.codec_context.gop_size = fps
        ast = None
        if with_audio and acodec is not None:
            ast = cast(AudioStream, out.add_stream(acodec, rate=AUDIO_RATE))
            ast.layout = "stereo"
        frame_idx = 0
        scene_start = 0.0
        sample_pos = 0
        for si, scene in enumerate(scenes):
            n_frames = int(round((scene_start + scene.duration_s) * fps)) - int(round(scene_start * fps))
            for _ in range(n_frames):
                t = frame_idx / fps - scene_start
                shot = si * 1000 + (int(t / scene.cut_every_s) if scene.cut_every_s else 0)
                img = render_frame(scene, t, shot, width, height)
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = frame_idx
                vf.time_base = Fraction(1, fps)
                for pkt in vs.encode(vf):
                    out.mux(pkt)
                frame_idx += 1
            if ast is not None:
                n = int(round((scene_start + scene.duration_s) * AUDIO_RATE)) - sample_pos
                mono = render_audio(scene, n, sample_pos, seed + si)
                encode_audio(out, ast, mono, sample_pos)
                sample_pos += n
            scene_start += scene.duration_s
        for pkt in vs.encode(None):
            out.mux(pkt)
        if ast is not None:
            for pkt in ast.encode(None):
                out.mux(pkt)
    return total


def encode_audio(out: av.container.OutputContainer, stream: AudioStream,
                  mono: np.ndarray, sample_pos: int) -> None:
    fmt = "s16" if stream.codec_context.name.startswith("pcm") else "fltp"
    block = 4800
    for i in range(0, mono.shape[0], block):
        chunk = mono[i:i + block]
        stereo = np.stack([chunk, chunk])
        if fmt == "s16":
            data = (np.clip(stereo.T, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
            af = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
        else:
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo, dtype=np.float32),
                                            format="fltp", layout="stereo")
        af.sample_rate = AUDIO_RATE
        af.pts = sample_pos + i
        af.time_base = Fraction(1, AUDIO_RATE)
        for pkt in stream.encode(af):
            out.mux(pkt)
