"""Media files that ask too much of the decoder, made with PyAV: the inputs of the limit tests and of
the soak (loadtest/soak.py).

Each is small on disk (a few KB); what it asks for is in the name: frames stamped an hour apart,
thousands of frames a second, pictures larger than any screen.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class _Pipe(io.RawIOBase):
    """A write-only, non-seekable sink: the muxer cannot go back to write the duration."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.data += bytes(b)
        return len(b)


def stamped_video(path: Path, stamps_s: Sequence[float], size: tuple[int, int] = (64, 48),
                  declare_duration: bool = False) -> Path:
    """A Matroska video with one frame at each of ``stamps_s``; by default it declares no duration
    (written as a live stream would be), so only the stamps say how long it is."""
    sink: io.RawIOBase | str = _Pipe() if not declare_duration else str(path)
    width, height = size
    with av.open(sink, "w", format="matroska") as out:
        stream = out.add_stream("mpeg4", rate=1000)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for i, t in enumerate(stamps_s):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), (i * 40) % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(round(t * 1000)), Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    if isinstance(sink, _Pipe):
        path.write_bytes(bytes(sink.data))
    return path


def wav_tone(path: Path, seconds: float, rate: int = 22050) -> Path:
    """A mono 16-bit WAV of a 440 Hz tone."""
    import wave

    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path
