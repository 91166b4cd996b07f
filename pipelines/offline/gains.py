"""The gain curves of the mix: fades, speech ducking and the look-ahead peak limiter.

Each exists as a whole-signal function (:func:`fade_envelope`, :func:`duck_gain`, :func:`limiter_gain`)
and in the form :func:`pipelines.offline.mix.mix_bgm` applies it: in place on float32 audio, a chunk
of samples at a time (:func:`apply_fades`, :class:`DuckCurve`, :func:`limit_in_place`), so a 15-minute
mix needs no full-length float64 curves. Both forms give the same gains.

The limiter can also work on true peaks (:class:`TruePeakEnvelope`: BS.1770-4's 4x-oversampled peaks,
kept as maxima of 16-sample blocks, for the loudness presets) and hand back the gain it would apply
instead of applying it (:func:`limiter_gains`, a :class:`SparseGain`). :class:`GainCurve` is the whole
gain the mixer put on the BGM (fades x level x ducking x limiter), sample by sample, so that parts of
the BGM (stems) can be given exactly the same treatment.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from engines.loudness import as_2d, true_peak_envelope

#: Samples per chunk of the in-place forms.
CHUNK = 1 << 18


def _rise_limited_db(target_db: np.ndarray, up_per_step: float, start_db: float | None = None) -> np.ndarray:
    """Largest curve ``<= target_db`` that rises at most ``up_per_step`` per step (falls are instant).

    ``y[n] = min_{m <= n} (target[m] + up * (n - m))``: a cumulative minimum, so no Python loop.
    ``start_db``: the curve's value just before ``target_db[0]`` (continuing an earlier chunk).
    """
    idx = np.arange(target_db.size, dtype=np.float64)
    y = np.minimum.accumulate(target_db - up_per_step * idx) + up_per_step * idx
    if start_db is not None:
        y = np.minimum(y, start_db + up_per_step * (idx + 1))
    return np.asarray(y)


def _ramp_limited_db(target_db: np.ndarray, down_per_step: float, up_per_step: float) -> np.ndarray:
    """Lower envelope of ``target_db`` falling <= ``down_per_step`` and rising <= ``up_per_step`` per step.

    Rises after a dip are the release; the fall into a dip is moved *ahead* of it (the
    envelope is computed backwards in time), so the dip is already complete where the target
    starts -- an anticipating attack, possible because the whole curve is known offline.
    """
    after = _rise_limited_db(target_db, up_per_step)
    before = _rise_limited_db(target_db[::-1], down_per_step)[::-1]
    return np.minimum(after, before)


# --------------------------------------------------------------------------- fades


def _fade_lengths(n_samples: int, sample_rate: float, fade_in_s: float, fade_out_s: float) -> tuple[int, int]:
    n_in = round(fade_in_s * sample_rate)
    n_out = round(fade_out_s * sample_rate)
    if n_in + n_out > n_samples and n_in + n_out > 0:
        scale = n_samples / (n_in + n_out)
        n_in, n_out = int(n_in * scale), int(n_out * scale)
    return n_in, n_out


def fade_envelope(n_samples: int, sample_rate: float, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Raised-cosine fade-in/out envelope (float64). Fades are scaled down to fit short signals."""
    n_in, n_out = _fade_lengths(n_samples, sample_rate, fade_in_s, fade_out_s)
    env = np.ones(n_samples)
    if n_in > 0:
        env[:n_in] = np.sin(0.5 * np.pi * (np.arange(n_in) + 0.5) / n_in) ** 2
    if n_out > 0:
        env[n_samples - n_out :] = np.cos(0.5 * np.pi * (np.arange(n_out) + 0.5) / n_out) ** 2
    return env


def apply_fades(audio: np.ndarray, sample_rate: float, fade_in_s: float, fade_out_s: float) -> None:
    """:func:`fade_envelope` applied in place to ``(n, channels)`` audio (only its ends are touched)."""
    n = audio.shape[0]
    n_in, n_out = _fade_lengths(n, sample_rate, fade_in_s, fade_out_s)
    if n_in > 0:
        audio[:n_in] *= (np.sin(0.5 * np.pi * (np.arange(n_in) + 0.5) / n_in) ** 2)[:, None].astype(audio.dtype)
    if n_out > 0:
        audio[n - n_out:] *= (np.cos(0.5 * np.pi * (np.arange(n_out) + 0.5) / n_out) ** 2)[:, None].astype(audio.dtype)


# --------------------------------------------------------------------------- ducking


def _speech_mask(
    times_s: np.ndarray, speech_prob: np.ndarray, grid_s: np.ndarray, threshold: float
) -> np.ndarray:
    """Speech decision on ``grid_s`` (sample-and-hold of the frames; no speech outside them)."""
    t = np.asarray(times_s, dtype=np.float64)
    p = np.asarray(speech_prob, dtype=np.float64)
    if t.size == 0:
        return np.zeros(grid_s.size, dtype=bool)
    idx = np.searchsorted(t, grid_s, side="right") - 1
    inside = (idx >= 0) & (grid_s <= t[-1] + (t[-1] - t[0]) / max(t.size - 1, 1))
    return inside & (p[np.clip(idx, 0, t.size - 1)] >= threshold)


@dataclass(frozen=True)
class DuckCurve:
    """The ducking gain on a 1 ms control grid (see :func:`duck_gain`); :meth:`gain` gives it at audio rate
    for any span of samples."""

    grid_s: np.ndarray
    gain_db: np.ndarray
    sample_rate: float

    @classmethod
    def for_speech(cls, times_s: np.ndarray, speech_prob: np.ndarray, n_samples: int, sample_rate: float,
                   depth_db: float = -12.0, attack_s: float = 0.08, release_s: float = 0.5,
                   threshold: float = 0.5, lookahead_s: float = 0.05) -> DuckCurve:
        control_hz = 1000.0
        n_ctrl = math.ceil(n_samples / sample_rate * control_hz) + 2
        grid = np.arange(n_ctrl) / control_hz
        speech = _speech_mask(times_s, speech_prob, grid, threshold)
        speech |= _speech_mask(times_s, speech_prob, grid + lookahead_s, threshold)
        target = np.where(speech, depth_db, 0.0)
        depth = abs(depth_db)
        gain_db = _ramp_limited_db(
            target,
            down_per_step=depth / max(attack_s * control_hz, 1.0),
            up_per_step=depth / max(release_s * control_hz, 1.0),
        )
        return cls(grid, gain_db, sample_rate)

    def gain(self, start: int, stop: int) -> np.ndarray:
        """Linear gain (float32) of samples ``start..stop-1``."""
        t = np.arange(start, stop) / self.sample_rate
        return np.asarray(10.0 ** (np.interp(t, self.grid_s, self.gain_db) / 20.0), dtype=np.float32)


def duck_gain(
    times_s: np.ndarray,
    speech_prob: np.ndarray,
    n_samples: int,
    sample_rate: float,
    depth_db: float = -12.0,
    attack_s: float = 0.08,
    release_s: float = 0.5,
    threshold: float = 0.5,
    lookahead_s: float = 0.05,
) -> np.ndarray:
    """Per-sample linear BGM gain (float32, ``(n_samples,)``) that dips by ``depth_db`` under speech.

    Speech is where ``speech_prob >= threshold`` (frames at ``times_s``, held until the next
    frame). The ducked region is each speech span widened by ``lookahead_s`` at its start, so
    the music is fully down before the first syllable; the gain falls to ``depth_db`` on a
    linear-in-dB ramp of ``attack_s`` before that region and climbs back over ``release_s``
    after it (short pauses are bridged by the slow release). The curve is built on a 1 ms
    control grid and linearly interpolated to audio rate, so it has no steps: the largest
    sample-to-sample change is ``|depth| / (attack_s * sample_rate)`` dB.
    """
    if n_samples <= 0:
        return np.zeros(0, dtype=np.float32)
    curve = DuckCurve.for_speech(times_s, speech_prob, n_samples, sample_rate, depth_db, attack_s, release_s,
                                 threshold, lookahead_s)
    return curve.gain(0, n_samples)


# --------------------------------------------------------------------------- peak limiter


def _forward_min(values: np.ndarray, length: int) -> np.ndarray:
    """``out[n] = min(values[n : n + length])`` (shorter window at the end)."""
    from scipy import ndimage  # lazily: ~0.1 s to import, off the score job's start (the sound thread has it)

    return np.asarray(ndimage.minimum_filter1d(values, size=length, mode="nearest", origin=-(length // 2)))


def _channel_peak(x: np.ndarray) -> np.ndarray:
    """``np.abs(x).max(axis=1)`` of ``(n, channels)`` audio, a channel at a time (the same numbers; numpy's
    reduction over a row of two is ~7x slower than an element-wise maximum of two columns)."""
    a = np.abs(x)
    out = a[:, 0].copy()
    for k in range(1, a.shape[1]):
        np.maximum(out, a[:, k], out=out)
    return out


#: Per-sample peak of ``audio[start:stop]`` (float64), what the limiter keeps under its ceiling.
Peaks = Callable[[int, int], np.ndarray]


def _limiter_chunks(audio: np.ndarray, sample_rate: float, ceiling_dbfs: float, attack_s: float,
                    release_db_per_s: float, chunk: int, peaks: Peaks | None = None,
                    ) -> Iterator[tuple[int, np.ndarray | None]]:
    """``(start, gain)`` for consecutive chunks of ``audio`` (``None``: unity gain all through the chunk).

    1. required gain ``r[n] = min(1, ceiling / peak[n])`` (peak over channels);
    2. forward minimum over the next ``L = attack_s * sr`` samples (look-ahead);
    3. release: the gain recovers at most ``release_db_per_s`` (cumulative-minimum trick);
    4. causal boxcar of length ``L``: the attack becomes a linear ramp of ``attack_s``.
    Each output sample averages values that are each <= ``r[n]``, so the ceiling holds exactly. The
    state carried between chunks (the held gain, the boxcar's last ``L - 1`` values) makes the result
    the same as over the whole signal at once. ``peaks``: the per-sample peak (default: the largest
    ``|sample|`` over channels; a :class:`TruePeakEnvelope` for a true-peak limiter).
    """
    x = audio if audio.ndim == 2 else audio[:, None]
    n = x.shape[0]
    ceiling = 10.0 ** (ceiling_dbfs / 20.0) * (1.0 - 1e-6)  # margin for float32 rounding
    length = max(1, round(attack_s * sample_rate))
    up = release_db_per_s / sample_rate
    held_db_prev: float | None = None
    history: np.ndarray | None = None  # the boxcar's previous L - 1 held values
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        stop = min(n, c1 + length - 1)
        ext = peaks(c0, stop) if peaks is not None else _channel_peak(x[c0:stop]).astype(np.float64)
        required = np.minimum(1.0, ceiling / np.maximum(ext, 1e-12))
        idle = required.min() >= 1.0 and (held_db_prev is None or held_db_prev >= 0.0) and \
            (history is None or history.min() >= 1.0)
        if idle:
            held_db_prev, history = 0.0, np.ones(length - 1)
            yield c0, None
            continue
        ahead = _forward_min(required, length)[: c1 - c0]
        held_db = _rise_limited_db(20.0 * np.log10(ahead), up, held_db_prev)
        held = np.minimum(10.0 ** (held_db / 20.0), ahead)
        if history is None:
            history = np.full(length - 1, held[0])
        padded = np.concatenate((history, held))
        csum = np.concatenate(([0.0], np.cumsum(padded)))
        yield c0, np.minimum((csum[length:] - csum[:-length]) / length, 1.0)
        held_db_prev = float(held_db[-1])
        history = padded[len(padded) - (length - 1):] if length > 1 else np.zeros(0)


def limiter_gain(
    audio: np.ndarray,
    sample_rate: float,
    ceiling_dbfs: float = -1.0,
    attack_s: float = 0.005,
    release_db_per_s: float = 40.0,
) -> np.ndarray:
    """Look-ahead peak-limiter gain (float64, ``(n,)``) keeping ``|audio * gain| <= ceiling``
    (see :func:`_limiter_chunks`)."""
    x = as_2d(audio)
    gain = np.ones(x.shape[0])
    for c0, g in _limiter_chunks(x, sample_rate, ceiling_dbfs, attack_s, release_db_per_s, CHUNK):
        if g is not None:
            gain[c0:c0 + g.size] = g
    return gain


def limit_in_place(audio: np.ndarray, sample_rate: float, ceiling_dbfs: float = -1.0, attack_s: float = 0.005,
                   release_db_per_s: float = 40.0, chunk: int = CHUNK, peaks: Peaks | None = None) -> float:
    """Apply :func:`limiter_gain` to ``(n, channels)`` ``audio`` in place, a chunk at a time; returns the
    largest gain reduction in dB (>= 0)."""
    lowest = 1.0
    for c0, g in _limiter_chunks(audio, sample_rate, ceiling_dbfs, attack_s, release_db_per_s, chunk, peaks):
        if g is not None:
            audio[c0:c0 + g.size] *= g[:, None].astype(audio.dtype)
            lowest = min(lowest, float(g.min()))
    return max(0.0, -20.0 * math.log10(max(lowest, 1e-12)))


# --------------------------------------------------------------------------- recorded gains


class TruePeakEnvelope:
    """True-peak limiter input: per-sample peaks of ``audio`` from the 4x-oversampled signal
    (:func:`engines.loudness.true_peak_envelope`), kept as the maxima of ``block``-sample blocks (a few MB
    for 15 minutes; the limiter then sees each sample as loud as the loudest in its block, which only
    errs towards more reduction). Computed once; any gain or ceiling can then be tried on it."""

    def __init__(self, audio: np.ndarray, block: int = 16, chunk: int = CHUNK) -> None:
        self.n = int(audio.shape[0])
        self.block = block
        maxima = []
        for c0 in range(0, self.n, chunk):
            env = true_peak_envelope(audio, c0, min(self.n, c0 + chunk))
            pad = (-env.size) % block
            maxima.append(np.pad(env, (0, pad)).reshape(-1, block).max(axis=1).astype(np.float32))
        self.maxima = np.concatenate(maxima) if maxima else np.zeros(0, np.float32)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        b0, b1 = start // self.block, -(-stop // self.block)
        return np.repeat(self.maxima[b0:b1].astype(np.float64), self.block)[start - b0 * self.block:
                                                                            stop - b0 * self.block]


@dataclass
class SparseGain:
    """A per-sample gain stored only where it is not 1: ``{chunk start: float32 gain}`` over chunks of
    ``chunk`` samples."""

    n: int
    chunk: int = CHUNK
    parts: dict[int, np.ndarray] = field(default_factory=dict)

    def gain(self, start: int, stop: int) -> np.ndarray:
        out = np.ones(stop - start, np.float32)
        for c0 in range(start - start % self.chunk, stop, self.chunk):
            g = self.parts.get(c0)
            if g is not None:
                a, b = max(start, c0), min(stop, c0 + g.size)
                if b > a:
                    out[a - start:b - start] = g[a - c0:b - c0]
        return out

    def reduction_db(self) -> float:
        lowest = min((float(g.min()) for g in self.parts.values()), default=1.0)
        return max(0.0, -20.0 * math.log10(max(lowest, 1e-12)))

    def apply(self, audio: np.ndarray, scale: float = 1.0) -> None:
        """``audio *= scale * gain`` in place, a chunk at a time."""
        for c0 in range(0, self.n, self.chunk):
            g = self.parts.get(c0)
            if g is not None:
                audio[c0:c0 + g.size] *= (g * np.float32(scale))[:, None]
            elif scale != 1.0:
                audio[c0:c0 + self.chunk] *= np.float32(scale)

    def remove(self, audio: np.ndarray, scale: float = 1.0) -> None:
        """Undo :meth:`apply` (``audio /= scale * gain``), a chunk at a time."""
        for c0 in range(0, self.n, self.chunk):
            audio[c0:c0 + self.chunk] /= (self.gain(c0, min(self.n, c0 + self.chunk)) * np.float32(scale))[:, None]


def limiter_gains(audio: np.ndarray, sample_rate: float, ceiling_dbfs: float = -1.0, attack_s: float = 0.005,
                  release_db_per_s: float = 40.0, peaks: Peaks | None = None, chunk: int = CHUNK) -> SparseGain:
    """The gain :func:`limit_in_place` would apply, not applied (see :class:`SparseGain`)."""
    out = SparseGain(int(audio.shape[0]), chunk)
    for c0, g in _limiter_chunks(audio, sample_rate, ceiling_dbfs, attack_s, release_db_per_s, chunk, peaks):
        if g is not None and float(g.min()) < 1.0:
            out.parts[c0] = g.astype(np.float32)
    return out


@dataclass(frozen=True)
class GainCurve:
    """Everything the mixer did to the BGM, as one per-sample gain (see the module doc)."""

    n: int
    sample_rate: float
    fade_in_s: float
    fade_out_s: float
    #: Linear gain: to the loudness target (and the loudness preset's gain, if any).
    scale: float
    duck: DuckCurve | None = None
    limiter: SparseGain | None = None

    def gain(self, start: int, stop: int) -> np.ndarray:
        """Linear gain (float32) of samples ``start..stop-1``."""
        stop = min(stop, self.n)
        idx = np.arange(start, stop)
        g = np.full(idx.size, self.scale)
        n_in, n_out = _fade_lengths(self.n, self.sample_rate, self.fade_in_s, self.fade_out_s)
        head = idx < n_in
        if n_in > 0 and head.any():
            g[head] *= np.sin(0.5 * np.pi * (idx[head] + 0.5) / n_in) ** 2
        tail = idx >= self.n - n_out
        if n_out > 0 and tail.any():
            g[tail] *= np.cos(0.5 * np.pi * (idx[tail] - (self.n - n_out) + 0.5) / n_out) ** 2
        if self.duck is not None:
            g *= self.duck.gain(start, stop)
        if self.limiter is not None:
            g *= self.limiter.gain(start, stop)
        return g.astype(np.float32)
