"""Loudness measurement (ITU-R BS.1770-4), BGM normalisation, speech ducking and the final mix.

Plain numpy/scipy; no PyAV here. Audio arrays are ``float`` in [-1, 1], either mono ``(n,)``
or multichannel ``(n, channels)``.

Loudness (ITU-R BS.1770-4 / EBU R128)
    The signal is K-weighted (a +4 dB high shelf above ~1.7 kHz modelling the head, then the
    "RLB" high-pass at ~38 Hz), mean-squared per channel, weighted (1.0 for L/R/C, 1.41 for
    the surround channels of 5.1, 0 for LFE) and expressed as ``-0.691 + 10 log10(sum)``
    LUFS. Integrated loudness gates 400 ms blocks (75 % overlap) twice: an absolute gate at
    -70 LUFS drops silence, a relative gate 10 LU under the mean of the remaining blocks
    drops pauses, so a tone with long silences around it measures as the tone. The filters
    are designed for any sample rate from their analog prototypes (the method of libebur128
    and pyloudnorm's "DeMan" filter, after Brecht De Man, AES 2018) and reproduce the
    coefficients published in BS.1770 at 48 kHz. Silence (nothing above the absolute gate)
    measures ``-inf``; :meth:`MixResult.report` writes it as :data:`LUFS_FLOOR` (-70).

Targets
    * EBU R128 asks broadcast programmes for -23 LUFS integrated; streaming platforms
      normalise to about -14 LUFS (Spotify, YouTube) or -16 LUFS (Apple).
    * Background music under dialogue typically sits 6-12 LU below the dialogue (film and
      broadcast mixing practice), so speech stays intelligible without the music vanishing.
    * backscore therefore puts the BGM ``bgm_offset_lu`` (6 LU) under the original
      soundtrack's integrated loudness, clamped to [-32, -16] LUFS so a whisper-quiet or
      brick-walled original cannot drag the music to inaudible or overbearing levels. With
      no soundtrack (or a near-silent one) the BGM is the programme and goes to -20 LUFS:
      between broadcast (-23) and streaming (-14), leaving headroom for the user's own
      normalisation. Ducking then lowers the BGM by a further 12 dB while speech is present.

Peak limiting
    The mix goes through a look-ahead peak limiter (gain follows the minimum required gain
    over the next ``attack`` samples, is smoothed by a boxcar of the same length and recovers
    at a fixed dB/s rate), which provably keeps every sample peak under the ceiling (-1 dBFS)
    without hard clipping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

# The gates, block powers and integrated loudness live in engines.loudness (the music analyzer
# needs them too); the ones pipelines and tests use from here are re-exported.
from engines.loudness import (  # noqa: F401 - re-exports
    ABSOLUTE_GATE_LUFS,
    BLOCK_S,
    BLOCK_STEP_S,
    RELATIVE_GATE_LU,
    as_2d,
    block_powers,
    integrated_loudness,
    to_lufs,
)

#: What :meth:`MixResult.report` writes for a silent signal (``-inf`` LUFS).
LUFS_FLOOR = -70.0


def sliding_loudness(
    audio: np.ndarray, sample_rate: float, window_s: float = 3.0, hop_s: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Ungated loudness over a sliding window: ``(centre_times_s, lufs)``.

    ``window_s=3.0`` is EBU short-term loudness, ``0.4`` momentary loudness. Silent windows
    give ``-inf``.
    """
    powers = block_powers(audio, sample_rate, window_s, hop_s)
    n = as_2d(audio).shape[0]
    window = min(window_s, n / sample_rate)
    times = np.arange(powers.size) * hop_s + window / 2.0
    return times, to_lufs(powers)


def short_term_loudness(
    audio: np.ndarray, sample_rate: float, hop_s: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """EBU R128 short-term loudness (3 s window), ``(centre_times_s, lufs)``."""
    return sliding_loudness(audio, sample_rate, 3.0, hop_s)


def momentary_loudness(
    audio: np.ndarray, sample_rate: float, hop_s: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """EBU R128 momentary loudness (400 ms window), ``(centre_times_s, lufs)``."""
    return sliding_loudness(audio, sample_rate, 0.4, hop_s)


def normalize_loudness(audio: np.ndarray, sample_rate: float, target_lufs: float) -> np.ndarray:
    """Scale ``audio`` (gain only) to integrated loudness ``target_lufs``. Silence is returned as is."""
    current = integrated_loudness(audio, sample_rate)
    x = np.asarray(audio)
    if not math.isfinite(current):
        return x.copy()
    return np.asarray(x * 10.0 ** ((target_lufs - current) / 20.0), dtype=x.dtype)


# --------------------------------------------------------------------------- gain curves


def _rise_limited_db(target_db: np.ndarray, up_per_step: float) -> np.ndarray:
    """Largest curve ``<= target_db`` that rises at most ``up_per_step`` per step (falls are instant).

    ``y[n] = min_{m <= n} (target[m] + up * (n - m))``: a cumulative minimum, so no Python loop.
    """
    idx = np.arange(target_db.size, dtype=np.float64)
    return np.asarray(np.minimum.accumulate(target_db - up_per_step * idx) + up_per_step * idx)


def _ramp_limited_db(target_db: np.ndarray, down_per_step: float, up_per_step: float) -> np.ndarray:
    """Lower envelope of ``target_db`` falling <= ``down_per_step`` and rising <= ``up_per_step`` per step.

    Rises after a dip are the release; the fall into a dip is moved *ahead* of it (the
    envelope is computed backwards in time), so the dip is already complete where the target
    starts -- an anticipating attack, possible because the whole curve is known offline.
    """
    after = _rise_limited_db(target_db, up_per_step)
    before = _rise_limited_db(target_db[::-1], down_per_step)[::-1]
    return np.minimum(after, before)


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
    sample_t = np.arange(n_samples) / sample_rate
    return np.asarray(10.0 ** (np.interp(sample_t, grid, gain_db) / 20.0), dtype=np.float32)


def fade_envelope(n_samples: int, sample_rate: float, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Raised-cosine fade-in/out envelope (float64). Fades are scaled down to fit short signals."""
    n_in = round(fade_in_s * sample_rate)
    n_out = round(fade_out_s * sample_rate)
    if n_in + n_out > n_samples and n_in + n_out > 0:
        scale = n_samples / (n_in + n_out)
        n_in, n_out = int(n_in * scale), int(n_out * scale)
    env = np.ones(n_samples)
    if n_in > 0:
        env[:n_in] = np.sin(0.5 * np.pi * (np.arange(n_in) + 0.5) / n_in) ** 2
    if n_out > 0:
        env[n_samples - n_out :] = np.cos(0.5 * np.pi * (np.arange(n_out) + 0.5) / n_out) ** 2
    return env


def limiter_gain(
    audio: np.ndarray,
    sample_rate: float,
    ceiling_dbfs: float = -1.0,
    attack_s: float = 0.005,
    release_db_per_s: float = 40.0,
) -> np.ndarray:
    """Look-ahead peak-limiter gain (float64, ``(n,)``) keeping ``|audio * gain| <= ceiling``.

    1. required gain ``r[n] = min(1, ceiling / peak[n])`` (peak over channels);
    2. forward minimum over the next ``L = attack_s * sr`` samples (look-ahead);
    3. release: the gain recovers at most ``release_db_per_s`` (cumulative-minimum trick);
    4. causal boxcar of length ``L``: the attack becomes a linear ramp of ``attack_s``.
    Each output sample averages values that are each <= ``r[n]``, so the ceiling holds exactly.
    """
    x = as_2d(audio)
    n = x.shape[0]
    if n == 0:
        return np.ones(0)
    ceiling = 10.0 ** (ceiling_dbfs / 20.0) * (1.0 - 1e-6)  # margin for float32 rounding
    peak = np.abs(x).max(axis=1)
    required = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    if required.min() >= 1.0:
        return np.ones(n)
    length = max(1, round(attack_s * sample_rate))
    ahead = _forward_min(required, length)
    held_db = _rise_limited_db(20.0 * np.log10(ahead), release_db_per_s / sample_rate)
    held = np.minimum(10.0 ** (held_db / 20.0), ahead)
    padded = np.concatenate((np.full(length - 1, held[0]), held))
    csum = np.concatenate(([0.0], np.cumsum(padded)))
    return np.minimum(np.asarray((csum[length:] - csum[:-length]) / length), 1.0)


def _forward_min(values: np.ndarray, length: int) -> np.ndarray:
    """``out[n] = min(values[n : n + length])`` (shorter window at the end)."""
    return np.asarray(ndimage.minimum_filter1d(values, size=length, mode="nearest", origin=-(length // 2)))


# --------------------------------------------------------------------------- mix


@dataclass(frozen=True)
class MixOptions:
    """How :func:`mix_bgm` levels, ducks, fades and limits the BGM. See the module docstring."""

    #: BGM loudness when there is no (or a near-silent) original soundtrack.
    bgm_target_lufs: float = -20.0
    #: With an original soundtrack: BGM target = original integrated loudness - this offset...
    bgm_offset_lu: float = 6.0
    #: ...clamped to this range.
    bgm_min_lufs: float = -32.0
    bgm_max_lufs: float = -16.0
    #: An original quieter than this (integrated, LUFS) counts as silent.
    original_silent_lufs: float = -50.0
    duck_depth_db: float = -12.0
    duck_attack_s: float = 0.08
    duck_release_s: float = 0.5
    duck_threshold: float = 0.5
    duck_lookahead_s: float = 0.05
    fade_in_s: float = 0.5
    fade_out_s: float = 1.5
    limiter_ceiling_dbfs: float = -1.0
    limiter_attack_s: float = 0.005
    limiter_release_db_per_s: float = 40.0


@dataclass(frozen=True)
class MixResult:
    """The mix and the numbers behind it (LUFS values may be ``-inf`` for silence)."""

    #: Final mix, ``float32`` ``(len(bgm), 2)``.
    mix: np.ndarray
    #: The BGM alone after normalisation, fades and ducking (peak-limited), ``float32`` ``(n, 2)``.
    bgm: np.ndarray
    original_lufs: float
    bgm_lufs_in: float
    bgm_target_lufs: float
    #: Loudness of the BGM after normalisation, fades and ducking.
    bgm_lufs_out: float
    mix_lufs: float
    applied_gain_db: float
    #: Seconds during which the ducking gain is at least half of the duck depth.
    ducked_s: float
    #: Largest gain reduction of the peak limiter on the mix (dB, >= 0).
    limiter_max_reduction_db: float

    def report(self) -> dict[str, float]:
        """Rounded numbers for the timeline JSON (``-inf`` LUFS written as :data:`LUFS_FLOOR`)."""

        def lufs(v: float) -> float:
            return round(v, 2) if math.isfinite(v) and v > LUFS_FLOOR else LUFS_FLOOR

        return {
            "original_lufs": lufs(self.original_lufs),
            "bgm_lufs_in": lufs(self.bgm_lufs_in),
            "bgm_target_lufs": round(self.bgm_target_lufs, 2),
            "bgm_lufs_out": lufs(self.bgm_lufs_out),
            "mix_lufs": lufs(self.mix_lufs),
            "applied_gain_db": round(self.applied_gain_db, 2),
            "ducked_s": round(self.ducked_s, 2),
            "limiter_max_reduction_db": round(self.limiter_max_reduction_db, 2),
        }


def _reduction_db(gain: np.ndarray) -> float:
    """Largest gain reduction of a gain curve, in dB (>= 0)."""
    if gain.size == 0:
        return 0.0
    return max(0.0, float(-20.0 * np.log10(max(float(gain.min()), 1e-12))))


def _to_stereo(audio: np.ndarray, n: int) -> np.ndarray:
    """float64 ``(n, 2)``: mono duplicated, >2 channels averaged down to stereo, padded/trimmed to ``n``."""
    x = as_2d(audio)
    if x.shape[1] == 1:
        x = np.repeat(x, 2, axis=1)
    elif x.shape[1] > 2:
        x = np.stack([x[:, 0::2].mean(axis=1), x[:, 1::2].mean(axis=1)], axis=1)
    out = np.zeros((n, 2))
    m = min(n, x.shape[0])
    out[:m] = x[:m]
    return out


def bgm_target(original_lufs: float, options: MixOptions) -> float:
    """Target BGM loudness for an original soundtrack measuring ``original_lufs`` (``-inf``: none)."""
    if not math.isfinite(original_lufs) or original_lufs < options.original_silent_lufs:
        return options.bgm_target_lufs
    return float(np.clip(original_lufs - options.bgm_offset_lu, options.bgm_min_lufs, options.bgm_max_lufs))


def mix_bgm(
    original: np.ndarray | None,
    bgm: np.ndarray,
    sample_rate: int,
    speech: tuple[np.ndarray, np.ndarray] | None = None,
    options: MixOptions | None = None,
    original_lufs: float | None = None,
    *,
    bgm_alone: bool = True,
    measure_mix: bool = True,
) -> MixResult:
    """Level the BGM against the original soundtrack, duck it under speech, fade, sum and limit.

    Output length is ``len(bgm)``; ``original`` is padded with silence or trimmed to it. Either
    may be mono or stereo; mono is played on both channels and measured that way (so a mono
    original measures 3 LU louder than the same file measured as mono).

    Order: fades -> gain to the loudness target (measured after the fades, so the faded BGM
    hits the target) -> ducking -> sum with the original -> limiter. The returned ``bgm`` is
    limited on its own (it is written alone with ``--bgm``); with ``bgm_alone=False`` it is
    not rendered (empty). ``bgm_lufs_out`` is the BGM as it sits in the mix (after ducking).
    With ``measure_mix=False`` the mix's loudness is left NaN for the caller to measure
    later (``backscore score`` does it while the muxer encodes, see :func:`with_mix_loudness`).
    """
    o = options or MixOptions()
    n = int(np.asarray(bgm).shape[0])
    music = _to_stereo(bgm, n) * fade_envelope(n, sample_rate, o.fade_in_s, o.fade_out_s)[:, None]
    orig = _to_stereo(original, n) if original is not None else np.zeros((n, 2))
    if original_lufs is None:  # callers that measured it already (the analysis does) pass it in
        original_lufs = integrated_loudness(orig, sample_rate) if original is not None else -math.inf
    bgm_in = integrated_loudness(music, sample_rate)
    target = bgm_target(original_lufs, o)
    gain_db = target - bgm_in if math.isfinite(bgm_in) else 0.0
    music *= 10.0 ** (gain_db / 20.0)
    ducked_s = 0.0
    if speech is not None:
        duck = duck_gain(speech[0], speech[1], n, sample_rate, o.duck_depth_db, o.duck_attack_s,
                         o.duck_release_s, o.duck_threshold, o.duck_lookahead_s)
        music *= duck[:, None]
        ducked_s = float(np.count_nonzero(duck <= 10.0 ** (o.duck_depth_db / 40.0))) / sample_rate
    bgm_out = integrated_loudness(music, sample_rate)
    mixed = orig + music
    limit = (o.limiter_ceiling_dbfs, o.limiter_attack_s, o.limiter_release_db_per_s)
    lim = limiter_gain(mixed, sample_rate, *limit)
    mixed *= lim[:, None]
    if bgm_alone:
        music *= limiter_gain(music, sample_rate, *limit)[:, None]
    mix32 = mixed.astype(np.float32)
    return MixResult(
        mix=mix32,
        bgm=music.astype(np.float32) if bgm_alone else np.zeros((0, 2), np.float32),
        original_lufs=original_lufs,
        bgm_lufs_in=bgm_in,
        bgm_target_lufs=target,
        bgm_lufs_out=bgm_out,
        mix_lufs=integrated_loudness(mix32, sample_rate) if measure_mix else math.nan,
        applied_gain_db=gain_db,
        ducked_s=ducked_s,
        limiter_max_reduction_db=_reduction_db(lim),
    )


def with_mix_loudness(result: MixResult, sample_rate: int) -> MixResult:
    """``result`` with ``mix_lufs`` measured (for a mix made with ``measure_mix=False``)."""
    return replace(result, mix_lufs=integrated_loudness(result.mix, sample_rate))
