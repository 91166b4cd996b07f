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

Loudness presets (``MixOptions.target_lufs``, from :mod:`pipelines.offline.loudness_presets`)
    The final mix (soundtrack + BGM) is brought to an integrated loudness and kept under a
    true-peak ceiling: the mix's limiter becomes a true-peak limiter (BS.1770-4 4x oversampling)
    at the preset's ceiling less a margin for the audio encoder, and the gain in front of it is
    found by measuring the limited result and correcting (a few passes: limiting takes back some
    of the loudness a gain adds). Each pass works on the mix as it is, a chunk at a time, with the
    limiter's gain recorded sparsely, so no full-length copy is made. Without a preset nothing
    changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

# The gates, block powers and integrated loudness live in engines.loudness (the music analyzer
# needs them too); the ones pipelines and tests use from here are re-exported.
from engines.loudness import (  # noqa: F401 - re-exports
    ABSOLUTE_GATE_LUFS,
    BLOCK_S,
    BLOCK_STEP_S,
    RELATIVE_GATE_LU,
    LoudnessMeter,
    as_2d,
    block_powers,
    integrated_loudness,
    to_lufs,
)

# The gain curves (fades, ducking, limiter) live in pipelines.offline.gains; re-exported for callers.
from pipelines.offline.gains import (  # noqa: F401 - re-exports
    CHUNK,
    DuckCurve,
    GainCurve,
    SparseGain,
    TruePeakEnvelope,
    apply_fades,
    duck_gain,
    fade_envelope,
    limit_in_place,
    limiter_gain,
    limiter_gains,
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
    #: A loudness preset for the final mix (see the module doc): integrated loudness (None: no preset)...
    target_lufs: float | None = None
    #: ...and true-peak ceiling; the limiter aims ``true_peak_margin_db`` under it (room for the encoder).
    target_true_peak_dbtp: float = -1.0
    true_peak_margin_db: float = 0.5
    #: Passes of measure-and-correct; stop once within this many LU of the target.
    target_passes: int = 6
    target_tolerance_lu: float = 0.1


@dataclass(frozen=True)
class PresetState:
    """What a loudness preset did to a mix, so that :func:`retarget` can undo it and try a lower ceiling."""

    options: MixOptions
    ceiling_dbtp: float
    post_db: float
    mix_limiter: SparseGain
    #: The BGM written alone (``--bgm``), with ``post * own`` on it; None when it is not written.
    music: np.ndarray | None
    #: The BGM alone's limiter and true peaks (None when neither the BGM alone nor its gain is wanted).
    own: SparseGain | None
    bgm_peaks: TruePeakEnvelope | None
    #: The BGM's gain before the preset (to the loudness target), linear.
    level: float


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
    #: Gain put on the whole mix to reach a loudness preset (0 without one).
    preset_gain_db: float = 0.0
    #: With ``keep_gain``: the whole gain put on the BGM alone, per sample (for stems).
    bgm_gain: GainCurve | None = None
    #: What a loudness preset did, for :func:`retarget`.
    preset: PresetState | None = field(default=None, repr=False)

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
            **({"preset_gain_db": round(self.preset_gain_db, 2)} if self.preset_gain_db else {}),
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
    keep_gain: bool = False,
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
    With a loudness preset (``options.target_lufs``) the mix -- and the BGM alone, by the same gain --
    is brought to it (module doc). ``keep_gain``: also return the BGM's whole gain curve
    (:attr:`MixResult.bgm_gain`: what the BGM alone got, sample by sample).
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
    duck: DuckCurve | None = None
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
    attack, release = o.limiter_attack_s, o.limiter_release_db_per_s
    level = 10.0 ** (gain_db / 20.0)
    preset = o.target_lufs is not None
    # What the BGM alone's limiter needs is taken before the original is summed in (the BGM's array becomes the
    # mix unless the BGM alone is written): its gain (no preset) or its true-peak envelope, scale-free (a
    # preset: its ceiling depends on the preset's gain, known once the mix is measured). So stems need no copy.
    own: SparseGain | None = None
    if keep_gain and not preset:
        own = limiter_gains(music, sample_rate, o.limiter_ceiling_dbfs, attack, release)
    bgm_peaks = TruePeakEnvelope(music) if preset and (bgm_alone or keep_gain) else None
    # the mix: the BGM plus the original, limited (made in the BGM's own array when the BGM alone is not wanted)
    mixed = music.copy() if bgm_alone else music
    if original is not None:
        for c0 in range(0, min(n, np.asarray(original).shape[0]), CHUNK):
            mixed[c0:c0 + CHUNK] += _to_stereo32(original, c0, min(n, c0 + CHUNK))
    post_db = 0.0
    state: PresetState | None = None
    if not preset:
        reduction = limit_in_place(mixed, sample_rate, o.limiter_ceiling_dbfs, attack, release)
        if bgm_alone and own is not None:
            own.apply(music)
        elif bgm_alone:
            limit_in_place(music, sample_rate, o.limiter_ceiling_dbfs, attack, release)
    else:
        ceiling = o.target_true_peak_dbtp - o.true_peak_margin_db
        state = _apply_preset(mixed, music if bgm_alone else None, bgm_peaks, sample_rate, o, ceiling, level)
        post_db, reduction, own = state.post_db, state.mix_limiter.reduction_db(), state.own
    curve = GainCurve(n, sample_rate, o.fade_in_s, o.fade_out_s, level * 10.0 ** (post_db / 20.0), duck, own) \
        if keep_gain else None
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
        preset_gain_db=post_db,
        bgm_gain=curve,
        preset=state,
    )


def _apply_preset(mixed: np.ndarray, music: np.ndarray | None, bgm_peaks: TruePeakEnvelope | None, sample_rate: int,
                  o: MixOptions, ceiling_dbtp: float, level: float) -> PresetState:
    """Bring ``mixed`` to the preset under ``ceiling_dbtp`` in place. The BGM alone (true peaks ``bgm_peaks``)
    gets the same gain and its own true-peak limiter, recorded, and applied to ``music`` when that is given
    (the BGM written alone)."""
    post_db, limiter = _to_target(mixed, sample_rate, o, ceiling_dbtp)
    post = 10.0 ** (post_db / 20.0)
    limiter.apply(mixed, post)
    own = None
    if bgm_peaks is not None:  # limiting x * G at a ceiling = limiting x at the ceiling - G, then * G
        length = np.broadcast_to(np.zeros((1, 1), np.float32), (bgm_peaks.n, 1))  # the limiter reads the peaks
        own = limiter_gains(length, sample_rate, ceiling_dbtp - post_db, o.limiter_attack_s,
                            o.limiter_release_db_per_s, bgm_peaks)
        if music is not None:
            own.apply(music, post)
    return PresetState(o, ceiling_dbtp, post_db, limiter, music, own, bgm_peaks, level)


def retarget(result: MixResult, sample_rate: int, lower_db: float, louder_lu: float = 0.0) -> MixResult:
    """``result`` (made with a loudness preset) again with its true-peak ceiling ``lower_db`` lower and its
    loudness target ``louder_lu`` higher: the preset's gain and limiter are taken off the mix (and the BGM
    alone) in place and found anew. For an audio encoder that put peaks over the ceiling or took loudness
    away (``backscore score`` measures the written file)."""
    p = result.preset
    if p is None:
        raise ValueError("retarget needs a mix made with a loudness preset")
    p.mix_limiter.remove(result.mix, 10.0 ** (p.post_db / 20.0))
    if p.music is not None and p.own is not None:
        p.own.remove(p.music, 10.0 ** (p.post_db / 20.0))
    options = replace(p.options, target_lufs=(p.options.target_lufs or 0.0) + louder_lu)
    state = _apply_preset(result.mix, p.music, p.bgm_peaks, sample_rate, options, p.ceiling_dbtp - lower_db, p.level)
    curve = result.bgm_gain
    if curve is not None:
        curve = replace(curve, scale=p.level * 10.0 ** (state.post_db / 20.0), limiter=state.own)
    return replace(result, limiter_max_reduction_db=state.mix_limiter.reduction_db(), preset_gain_db=state.post_db,
                   bgm_gain=curve, preset=state, mix_lufs=math.nan)


def _to_target(mixed: np.ndarray, sample_rate: int, o: MixOptions, ceiling_dbtp: float) -> tuple[float, SparseGain]:
    """The gain (dB) and true-peak limiter that bring ``mixed`` to ``o.target_lufs`` under ``ceiling_dbtp``
    (not applied). Each pass tries a gain, limits, measures the result a chunk at a time and corrects
    the gain by the difference."""
    assert o.target_lufs is not None
    n = mixed.shape[0]
    start = integrated_loudness(mixed, sample_rate)
    post_db = o.target_lufs - start if math.isfinite(start) else 0.0
    peaks = TruePeakEnvelope(mixed)  # scale-free: computed once for every gain tried
    attack, release = o.limiter_attack_s, o.limiter_release_db_per_s
    for i in range(max(1, o.target_passes)):
        # limiting x * G at the ceiling = limiting x at the ceiling - G, then * G
        limiter = limiter_gains(mixed, sample_rate, ceiling_dbtp - post_db, attack, release, peaks)
        meter = LoudnessMeter(sample_rate, 2)
        scale = 10.0 ** (post_db / 20.0)
        for c0 in range(0, n, CHUNK):
            c1 = min(n, c0 + CHUNK)
            meter.add(mixed[c0:c1] * (limiter.gain(c0, c1) * np.float32(scale))[:, None])
        level = meter.integrated()
        if not math.isfinite(level) or abs(o.target_lufs - level) <= o.target_tolerance_lu or \
                i == o.target_passes - 1:
            break
        post_db += o.target_lufs - level
    return post_db, limiter


def with_mix_loudness(result: MixResult, sample_rate: int) -> MixResult:
    """``result`` with ``mix_lufs`` measured (for a mix made with ``measure_mix=False``)."""
    return replace(result, mix_lufs=integrated_loudness(result.mix, sample_rate))
