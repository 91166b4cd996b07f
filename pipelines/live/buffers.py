"""The sample buffers of a live session: its audio history in, its generated BGM out.

* :class:`SampleRing` -- the last seconds of the client's audio, addressed by absolute sample index
  (O(frame) writes: no reallocation per 20 ms frame), for the analysis windows.
* :class:`PlayoutBuffer` -- generated BGM waiting to be played, in output samples (48 kHz
  stereo). A paced reader takes fixed frames (20 ms); an empty buffer is an *underrun*
  (silence is sent and counted). The buffer is bounded: generating far ahead would delay
  mood changes, so the session keeps only ``lead_s`` or so ahead of the play head.
  :meth:`PlayoutBuffer.splice` replaces everything after a point with new audio through an
  equal-power crossfade: how a live session switches to the music of a new mood without
  waiting for the old piece's bar to end.
* :class:`OriginalAudio` -- the client's own audio waiting to be mixed back under the BGM
  (``mix_original``), bounded: the oldest is dropped.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from pipelines.frames import AUDIO_RATE


def equal_power(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade_out, fade_in) gains of an equal-power crossfade over ``n`` samples."""
    x = (np.arange(n, dtype=np.float32) + 0.5) / max(1, n)
    return np.cos(0.5 * np.pi * x).astype(np.float32), np.sin(0.5 * np.pi * x).astype(np.float32)


class PlayoutBuffer:
    """Stereo float32 audio from absolute output sample ``head`` onwards (see module doc)."""

    def __init__(self, sample_rate: int = AUDIO_RATE, max_s: float = 30.0) -> None:
        self.sample_rate = sample_rate
        self.head = 0  # absolute index of the next sample to play
        self._data = np.zeros((0, 2), np.float32)
        self._max = int(max_s * sample_rate)
        self.underruns = 0  # frames that could not be filled completely
        self.started = False

    @property
    def end(self) -> int:
        """Absolute index just after the last buffered sample."""
        return self.head + self._data.shape[0]

    @property
    def buffered_s(self) -> float:
        return self._data.shape[0] / self.sample_rate

    def append(self, audio: np.ndarray) -> None:
        audio = np.asarray(audio, np.float32).reshape(-1, 2)
        self._data = np.concatenate([self._data, audio])
        if self._data.shape[0] > self._max:
            raise OverflowError(f"playout buffer above {self._max / self.sample_rate:.0f} s: the producer runs away")

    def splice(self, at: int, audio: np.ndarray, fade: int) -> int:
        """Replace the audio from absolute sample ``at`` with ``audio``, crossfading over ``fade`` samples.

        ``at`` is clamped to the play head. The old audio (if buffered) fades out over the first
        ``fade`` samples of the new audio, which fades in. Returns the (clamped) splice point.
        """
        at = max(at, self.head)
        audio = np.asarray(audio, np.float32).reshape(-1, 2).copy()
        keep = at - self.head
        old_tail = self._data[keep : keep + fade]
        n = min(fade, old_tail.shape[0], audio.shape[0])
        if n > 0:
            out_g, in_g = equal_power(fade)
            audio[:n] = audio[:n] * in_g[:n, None] + old_tail[:n] * out_g[:n, None]
        if keep > self._data.shape[0]:  # a gap before the splice point: silence
            self._data = np.concatenate([self._data, np.zeros((keep - self._data.shape[0], 2), np.float32)])
        self._data = np.concatenate([self._data[:keep], audio])
        return at

    def pull(self, n: int) -> np.ndarray:
        """The next ``n`` samples (zeros where nothing is buffered; counted as an underrun once started)."""
        out = self._data[:n]
        self._data = self._data[n:]
        if out.shape[0] < n:
            if self.started:
                self.underruns += 1
            out = np.concatenate([out, np.zeros((n - out.shape[0], 2), np.float32)])
        else:
            self.started = True
        self.head += n
        return out


class SampleRing:
    """The last ``capacity`` stereo samples of a stream, addressed by absolute sample index.

    Writing is O(frame) (no reallocation per 20 ms frame, unlike growing an array).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._buf = np.zeros((self.capacity, 2), np.float32)
        self.end = 0  # absolute index after the last written sample

    @property
    def start(self) -> int:
        return max(0, self.end - self.capacity)

    def write(self, samples: np.ndarray, skip: int = 0) -> None:
        """Append ``samples`` after ``skip`` unwritten (lost) samples."""
        self.end += skip
        x = samples[-self.capacity :]
        self.end += samples.shape[0] - x.shape[0]
        pos = self.end % self.capacity
        first = min(x.shape[0], self.capacity - pos)
        self._buf[pos : pos + first] = x[:first]
        self._buf[: x.shape[0] - first] = x[first:]
        self.end += x.shape[0]

    def read(self, i0: int, i1: int) -> np.ndarray:
        """Samples ``[i0, i1)`` clipped to what is held."""
        i0, i1 = max(i0, self.start), min(i1, self.end)
        if i1 <= i0:
            return np.zeros((0, 2), np.float32)
        a, b = i0 % self.capacity, i1 % self.capacity
        if a < b or i1 - i0 == 0:
            return self._buf[a:b].copy()
        return np.concatenate([self._buf[a:], self._buf[:b]])


class OriginalAudio:
    """The client's audio (48 kHz stereo float32) to mix back under the BGM: at most ``max_s`` kept."""

    def __init__(self, max_s: float = 0.5, sample_rate: int = AUDIO_RATE) -> None:
        self._parts: deque[np.ndarray] = deque()
        self._n = 0
        self._limit = int(max_s * sample_rate)

    def push(self, samples: np.ndarray) -> None:
        self._parts.append(samples)
        self._n += samples.shape[0]
        while self._n > self._limit and self._parts:  # bounded: drop the oldest
            self._n -= self._parts.popleft().shape[0]

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` samples (zeros where there are none)."""
        parts: list[np.ndarray] = []
        need = n
        while need > 0 and self._parts:
            head = self._parts[0]
            if head.shape[0] <= need:
                parts.append(self._parts.popleft())
                need -= head.shape[0]
            else:
                parts.append(head[:need])
                self._parts[0] = head[need:]
                need = 0
        self._n -= n - need
        if need:
            parts.append(np.zeros((need, 2), np.float32))
        return np.concatenate(parts)
