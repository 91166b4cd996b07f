"""``--stems DIR`` and ``--midi OUT.mid``: the procedural score as editable parts.

Stems: the composer's recorded events played again per stem (drums, bass, harmony, melody:
:func:`engines.composer.export.stem_chunks`, which add up to the composed BGM), each then given the
gain the mixer put on the BGM (:class:`pipelines.offline.gains.GainCurve`: fades, loudness
normalisation, ducking, the limiter -- and a loudness preset's gain), a chunk at a time, and written
as 16-bit WAVs like ``--bgm``. The stems sum to the ``--bgm`` WAV (to 16-bit rounding; the tests
measure the residual). The folder is written as a temporary sibling and renamed into place when
every stem is complete; it must be new or empty.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import wave
from collections.abc import Iterator
from typing import Any

import numpy as np

from engines.composer.export import STEMS, stem_chunks
from engines.composer.synth import EventLog
from pipelines.cancel import check_cancelled
from pipelines.errors import OptionError, OutputError
from pipelines.offline.gains import GainCurve

#: What ``--midi`` / ``--stems`` ask of the music engine.
NEEDS_COMPOSER = "--midi/--stems need the procedural composer"


def check_composer(engine: str, track_id: int | None) -> None:
    """``--midi`` / ``--stems`` come from the procedural composer's events: :class:`OptionError` otherwise."""
    if track_id is not None:
        raise OptionError(f"{NEEDS_COMPOSER}, not a library track (--track)")
    if engine != "procedural":
        raise OptionError(f"{NEEDS_COMPOSER}, not the {engine} engine")


def check_stems_dir(path: str, input_path: str | None = None) -> str:
    """Raise :class:`OutputError` unless ``path`` is a new or empty folder we can create. Returns it absolute."""
    ap = os.path.abspath(path)
    if input_path is not None and os.path.exists(ap) and os.path.exists(input_path) and \
            os.path.samefile(ap, input_path):
        raise OutputError(f"stems path is the input file ({path}); refusing to overwrite the input")
    if os.path.exists(ap) or os.path.islink(ap):
        if not os.path.isdir(ap):
            raise OutputError(f"stems path exists and is not a folder: {path}")
        if os.listdir(ap):
            raise OutputError(f"stems folder is not empty: {path} (give a new or empty folder)")
    parent = os.path.dirname(ap)
    if not os.path.isdir(parent):
        raise OutputError(f"stems folder's parent does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"stems folder's parent is not writable: {parent}")
    return ap


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Yield a temporary folder next to ``path``; on success rename it to ``path`` (replacing an empty one)."""
    ap = os.path.abspath(path)
    parent, name = os.path.split(ap)
    try:
        tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent)
    except OSError as exc:
        raise OutputError(f"cannot create the stems folder in {parent}: {exc}") from exc
    try:
        yield tmp
        try:
            os.replace(tmp, ap)  # an empty destination folder is replaced
        except OSError as exc:  # e.g. something was put in it meanwhile
            raise OutputError(f"cannot put the stems in {path}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pcm16(audio: np.ndarray) -> bytes:
    """As :func:`pipelines.media.outputs.write_wav` quantises."""
    return bytes((np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes())


def write_stems(folder: str, log: EventLog, n_samples: int, gain: GainCurve) -> dict[str, str]:
    """Write ``<stem>.wav`` for every stem of :data:`~engines.composer.export.STEMS` into ``folder``
    (from :func:`atomic_dir`); returns ``{stem: file name}``."""
    files = {stem: f"{stem}.wav" for stem in STEMS}
    with contextlib.ExitStack() as stack:
        writers: dict[str, Any] = {}
        for stem, name in files.items():
            w = stack.enter_context(wave.open(os.path.join(folder, name), "wb"))
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(log.sample_rate)
            writers[stem] = w
        written = 0
        for start, parts in stem_chunks(log, n_samples):
            check_cancelled()
            m = next(iter(parts.values())).shape[0]
            g = gain.gain(start, start + m)[:, None]
            for stem, audio in parts.items():
                writers[stem].writeframes(_pcm16(audio * g))
            written = start + m
        silence = np.zeros((max(0, n_samples - written), 2), np.float32)
        for w in writers.values():  # a recording shorter than the video (not expected): pad like the BGM
            w.writeframes(_pcm16(silence))
    return files
