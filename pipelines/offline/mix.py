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

# The gain curves (fades, ducking, limiter) live in pipelines.offline.gains; re-exported for callers.
from pipelines.offline.gains import (  # noqa: F401 - re-exports
    CHUNK,
    DuckCurve,
    apply_fades,
    duck_gain,
    fade_envelope,
    limit_in_place,
    limiter_gain,
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


def _to_stereo32(audio: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Samples ``start..stop-1`` of ``audio`` as float32 ``(stop - start, 2)``: mono duplicated, more than two
    channels averaged down to stereo, zeros past its end."""
    x = np.asarray(audio)
    if x.ndim == 1:
        x = x[:, None]
    out = np.zeros((stop - start, 2), np.float32)
    m = max(0, min(stop, x.shape[0]) - start)
    if m:
        part = x[start:start + m]
        if part.shape[1] == 1:
            out[:m] = part.astype(np.float32)
        elif part.shape[1] == 2:
            out[:m] = part
        else:
            out[:m, 0] = part[:, 0::2].mean(axis=1)
            out[:m, 1] = part[:, 1::2].mean(axis=1)
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
    in_place: bool = False,
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
    With ``in_place`` a float32 stereo ``bgm`` is worked on in place (it ends up as the mix, or as the
    BGM alone with ``bgm_alone``) instead of copied: one full-length array less.
    """
    o = options or MixOptions()
    n = int(np.asarray(bgm).shape[0])
    # float32 throughout, curves applied in place a chunk at a time: a 15-minute mix needs the BGM, the
    # mix and small chunks -- not a dozen full-length float64 copies.
    given = np.asarray(bgm)
    fits = given.dtype == np.float32 and given.ndim == 2 and given.shape[1] == 2 and given.flags.writeable
    music = given if in_place and fits else _to_stereo32(bgm, 0, n)
    apply_fades(music, sample_rate, o.fade_in_s, o.fade_out_s)
    if original_lufs is None:  # callers that measured it already (the analysis does) pass it in
        original_lufs = integrated_loudness(_to_stereo32(original, 0, n), sample_rate) if original is not None \
            else -math.inf
    bgm_in = integrated_loudness(music, sample_rate)
    target = bgm_target(original_lufs, o)
    gain_db = target - bgm_in if math.isfinite(bgm_in) else 0.0
    music *= np.float32(10.0 ** (gain_db / 20.0))
    ducked_s = 0.0
    if speech is not None and n > 0:
        duck = DuckCurve.for_speech(speech[0], speech[1], n, sample_rate, o.duck_depth_db, o.duck_attack_s,
                                    o.duck_release_s, o.duck_threshold, o.duck_lookahead_s)
        ducked = 0
        for c0 in range(0, n, CHUNK):
            g = duck.gain(c0, min(n, c0 + CHUNK))
            music[c0:c0 + g.size] *= g[:, None]
            ducked += int(np.count_nonzero(g <= 10.0 ** (o.duck_depth_db / 40.0)))
        ducked_s = ducked / sample_rate
    bgm_out = integrated_loudness(music, sample_rate)
    limit = (o.limiter_ceiling_dbfs, o.limiter_attack_s, o.limiter_release_db_per_s)
    # the mix: the BGM plus the original, limited (made in the BGM's own array when the BGM alone is not wanted)
    mixed = music.copy() if bgm_alone else music
    if original is not None:
        for c0 in range(0, min(n, np.asarray(original).shape[0]), CHUNK):
            mixed[c0:c0 + CHUNK] += _to_stereo32(original, c0, min(n, c0 + CHUNK))
    reduction = limit_in_place(mixed, sample_rate, *limit)
    if bgm_alone:
        limit_in_place(music, sample_rate, *limit)
    return MixResult(
        mix=mixed,
        bgm=music if bgm_alone else np.zeros((0, 2), np.float32),
        original_lufs=original_lufs,
        bgm_lufs_in=bgm_in,
        bgm_target_lufs=target,
        bgm_lufs_out=bgm_out,
        mix_lufs=integrated_loudness(mixed, sample_rate) if measure_mix else math.nan,
        applied_gain_db=gain_db,
        ducked_s=ducked_s,
        limiter_max_reduction_db=reduction,
    )


def with_mix_loudness(result: MixResult, sample_rate: int) -> MixResult:
    """``result`` with ``mix_lufs`` measured (for a mix made with ``measure_mix=False``)."""
    return replace(result, mix_lufs=integrated_loudness(result.mix, sample_rate))
