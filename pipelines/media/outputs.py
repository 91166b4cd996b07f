"""Safe output files: validated up front, written to a temporary sibling, renamed when complete.

Nothing half-written is ever left at the destination: a failure (or Ctrl-C) deletes the
temporary file, and the input file is never a destination.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import wave
from collections.abc import Iterator

import numpy as np

from pipelines.errors import OutputError


def check_output_path(path: str, input_path: str | None = None, allowed_ext: tuple[str, ...] | None = None,
                      what: str = "output") -> str:
    """Raise :class:`OutputError` if ``path`` cannot (or must not) be written. Returns it absolute."""
    ap = os.path.abspath(path)
    if input_path is not None:
        ip = os.path.abspath(input_path)
        same = ap == ip
        if not same and os.path.exists(ap) and os.path.exists(ip):
            same = os.path.samefile(ap, ip)
        if same:
            raise OutputError(f"{what} path is the input file ({path}); refusing to overwrite the input")
    if allowed_ext is not None:
        ext = os.path.splitext(ap)[1].lower()
        if ext not in allowed_ext:
            raise OutputError(f"{what} must end in one of {', '.join(allowed_ext)} (got {path!r})")
    if os.path.isdir(ap):
        raise OutputError(f"{what} path is a directory: {path}")
    parent = os.path.dirname(ap)
    if not os.path.isdir(parent):
        raise OutputError(f"{what} directory does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK) or not _can_create_in(parent):
        raise OutputError(f"{what} directory is not writable: {parent}")
    if os.path.exists(ap) and not os.access(ap, os.W_OK):
        raise OutputError(f"{what} file exists and is not writable: {path}")
    return ap


def _can_create_in(directory: str) -> bool:
    """Really try (permission bits do not tell for root, read-only mounts or /proc)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".backscore-probe-", dir=directory)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return True


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``."""
    ap = os.path.abspath(path)
    parent, name = os.path.split(ap)
    stem, ext = os.path.splitext(name)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".partial{ext}", dir=parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, ap)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_wav(path: str, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV. Write to a path from :func:`atomic_output` for an atomic file."""
    data = np.asarray(audio, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    pcm = (np.clip(data, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
