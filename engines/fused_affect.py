"""FusedAffectModel: the default feature terms + CLIP zero-shot mood + wav2vec2 emotion head.

Used by ``--affect-engine clip+wav2vec2`` (and ``clip`` / ``wav2vec2`` alone). Each source gives
a (valence, arousal) estimate for the window; the result is their weighted mean, so faces,
motion, cuts and loudness still count as in :class:`engines.affect.FeatureAffectModel`:

``default``
    :func:`engines.affect.feature_scores` (documented terms, sources in ``engines/affect.py``),
    weighted by its evidence coverage (the share of its terms whose features were present).
``clip``
    The ``clip_<emotion>`` zero-shot probabilities (:mod:`engines.clip_encoder`, averaged over
    the window's pictures) mapped to valence/arousal through each emotion's prototype point
    :data:`engines.affect.PROTOTYPES`: ``v = sum_e p_e v_e``, ``a = sum_e p_e a_e``.
``w2v``
    ``w2v_valence`` / ``w2v_arousal`` (:mod:`engines.wav2vec2_encoder`: the head's class
    probabilities weighted by each label's circumplex point), weighted by how much of the
    window is speech: ``0.25 + 0.75 * speech``. The head is trained on acted speech
    (IEMOCAP); on music or noise it still hears energy and timbre, but less reliably.

Weights (:data:`WEIGHTS`, relative to the feature terms' 1.0)

=========  =======  =======  ==========================================================
source     valence  arousal  why
=========  =======  =======  ==========================================================
default    1.0      1.0      calibrated, documented cues (colour, faces, motion, cuts,
                             loudness -- Hanjalic & Xu 2005 for arousal)
clip       0.6      0.3      scene semantics carry valence; a still frame says little
                             about pace (Video2Music uses CLIP's emotion words as features
                             for a learned model, not as labels, so below the default)
w2v        0.4      0.4      vocal affect of the soundtrack (x speech share, see above)
=========  =======  =======  ==========================================================

Emotion
    :func:`engines.affect.emotion_probs` of the fused (valence, arousal) with the default
    model's categorical evidence (faces, darkness), mixed with CLIP's own distribution over
    the same seven words: ``p = (1 - CLIP_EMOTION_MIX) p_va + CLIP_EMOTION_MIX p_clip``
    (:data:`CLIP_EMOTION_MIX` = 0.3) when the window has CLIP columns. ``confidence`` = top
    probability x the weighted evidence coverage of the three sources.

A source whose columns are absent (no soundtrack, CLIP off, a window too short for
wav2vec2: all-zero probabilities) simply drops out of the mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from engines.affect import PROTOTYPES, emotion_probs, feature_scores
from engines.base import EMOTIONS, AffectEstimate, AffectModel

#: source -> (valence weight, arousal weight); see the module doc.
WEIGHTS: dict[str, tuple[float, float]] = {"default": (1.0, 1.0), "clip": (0.6, 0.3), "w2v": (0.4, 0.4)}
#: Share of CLIP's own emotion distribution in the final emotion probabilities.
CLIP_EMOTION_MIX = 0.3
#: wav2vec2 weight multiplier is ``W2V_SPEECH_FLOOR + (1 - W2V_SPEECH_FLOOR) * speech``.
W2V_SPEECH_FLOOR = 0.25

CLIP_COLUMNS: tuple[str, ...] = tuple(f"clip_{e}" for e in EMOTIONS)
_PROTO = np.array([PROTOTYPES[e] for e in EMOTIONS], dtype=np.float64)


def _finite(f: Mapping[str, float], name: str) -> float | None:
    x = f.get(name)
    return float(x) if x is not None and math.isfinite(x) else None


def clip_distribution(f: Mapping[str, float]) -> np.ndarray | None:
    """CLIP's probabilities over :data:`EMOTIONS` from the ``clip_*`` columns (renormalised), or None."""
    vals = [_finite(f, c) for c in CLIP_COLUMNS]
    if any(v is None for v in vals):
        return None
    p = np.clip(np.array(vals, dtype=np.float64), 0.0, None)
    total = p.sum()
    return p / total if total > 0.5 else None


def clip_affect(f: Mapping[str, float]) -> tuple[float, float] | None:
    """Prototype-weighted (valence, arousal) of the CLIP columns, or None without them."""
    p = clip_distribution(f)
    if p is None:
        return None
    v, a = p @ _PROTO
    return float(v), float(a)


def w2v_affect(f: Mapping[str, float]) -> tuple[float, float, float] | None:
    """``(valence, arousal, weight multiplier)`` of the wav2vec2 columns, or None without them
    (or when the head's probabilities are all zero: a window too short to encode)."""
    v, a = _finite(f, "w2v_valence"), _finite(f, "w2v_arousal")
    if v is None or a is None:
        return None
    probs = [x for k, x in f.items() if k.startswith("w2v_") and k not in ("w2v_valence", "w2v_arousal")]
    if probs and sum(x for x in probs if math.isfinite(x)) < 0.5:
        return None
    speech = _finite(f, "speech")
    share = 1.0 if speech is None else min(1.0, max(0.0, speech))
    return v, a, W2V_SPEECH_FLOOR + (1.0 - W2V_SPEECH_FLOOR) * share


class FusedAffectModel(AffectModel):
    """Weighted fusion of the feature terms with CLIP and/or wav2vec2 (see the module doc).

    ``sources``: the neural sources this model fuses (``"clip"``, ``"w2v"``); only they count,
    and only they lower the confidence when their columns are missing from a window.
    """

    def __init__(self, sources: Sequence[str] = ("clip", "w2v"),
                 weights: Mapping[str, tuple[float, float]] | None = None,
                 clip_emotion_mix: float = CLIP_EMOTION_MIX) -> None:
        bad = [s for s in sources if s not in ("clip", "w2v")]
        if bad:
            raise ValueError(f"unknown fusion source(s) {bad}; expected 'clip' and/or 'w2v'")
        self.sources = tuple(sources)
        self.weights = dict(WEIGHTS if weights is None else weights)
        self.clip_emotion_mix = clip_emotion_mix

    def _estimates(self, features: Mapping[str, float]) -> dict[str, tuple[float, float, float]]:
        """source -> (valence, arousal, weight multiplier) for the sources present in the window."""
        out: dict[str, tuple[float, float, float]] = {}
        if "clip" in self.sources:
            cva = clip_affect(features)
            if cva is not None:
                out["clip"] = (cva[0], cva[1], 1.0)
        if "w2v" in self.sources:
            wva = w2v_affect(features)
            if wva is not None:
                out["w2v"] = wva
        return out

    def predict_one(self, features: Mapping[str, float]) -> AffectEstimate:
        base = feature_scores(features)
        wd_v, wd_a = self.weights["default"]
        num_v, num_a = wd_v * base.valence_coverage * base.valence, wd_a * base.arousal_coverage * base.arousal
        den_v, den_a = wd_v * base.valence_coverage, wd_a * base.arousal_coverage
        nominal = wd_v + wd_a
        found = self._estimates(features)
        for src in self.sources:
            w_v, w_a = self.weights[src]
            nominal += w_v + w_a
            if src in found:
                v, a, m = found[src]
                num_v, num_a, den_v, den_a = num_v + w_v * m * v, num_a + w_a * m * a, den_v + w_v * m, den_a + w_a * m
        valence = float(np.clip(num_v / den_v, -1, 1)) if den_v > 0 else 0.0
        arousal = float(np.clip(num_a / den_a, -1, 1)) if den_a > 0 else 0.0
        probs = emotion_probs(valence, arousal, base.derived)
        clip_p = clip_distribution(features) if "clip" in found else None
        if clip_p is not None:
            probs = (1.0 - self.clip_emotion_mix) * probs + self.clip_emotion_mix * clip_p
        top = int(np.argmax(probs))
        coverage = min(1.0, (den_v + den_a) / nominal) if nominal > 0 else 0.0
        return AffectEstimate(valence=valence, arousal=arousal, emotion=EMOTIONS[top],
                              confidence=float(probs[top] * coverage), probs=tuple(float(p) for p in probs))

    def predict(self, windows: Sequence[Mapping[str, float]]) -> list[AffectEstimate]:
        return [self.predict_one(w) for w in windows]
