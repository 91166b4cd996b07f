"""Feature-based affect model (the embedded default): window features -> valence, arousal, emotion.

The model is a transparent, documented weighted sum rather than a learned one, so it works
out of the box, offline, and every number can be traced to a source:

Valence (pleasure)
    * Picture colour: Valdez & Mehrabian (1994), "Effects of color on emotions", J. Exp.
      Psychol. General 123(4): Pleasure = 0.69 Brightness + 0.22 Saturation. We keep that
      ratio for ``brightness`` and ``saturation`` and add Hasler & Süsstrunk's (2003)
      colourfulness and colour warmth with smaller weights.
    * Faces: the pretrained mini-XCEPTION FER-2013 classifier (happy and surprise positive;
      sad, angry, fear and disgust negative), weighted by how often faces are present --
      faces, when visible, are the most direct evidence of valence.
    * Sound: brighter timbre (higher spectral centroid) reads as more positive, noise-like
      spectra (high flatness) slightly negative -- Juslin & Laukka (2004), "Expression,
      perception, and induction of musical emotions", J. New Music Research 33(3).

Arousal
    * Hanjalic & Xu (2005), "Affective video content representation and modeling", IEEE
      Trans. Multimedia 7(1): arousal = motion activity + shot-cut rhythm + sound energy.
      Here: ``motion``, ``cut_rate`` and ``loudness_db`` carry most weight, with onset rate,
      spectral flux and a clear fast pulse (tempo x pulse clarity) from the soundtrack.
    * Valdez & Mehrabian (1994): Arousal = -0.31 Brightness + 0.60 Saturation.
    * Faces: surprise, fear and anger raise arousal; sadness and neutral faces lower it.

Each raw feature becomes a z-score ``(x - centre) / scale`` against a reference centre and
scale chosen for typical phone/Shorts footage (table :data:`VALENCE_TERMS` /
:data:`AROUSAL_TERMS`), clipped to +-2.5; the weighted mean over the features that are
present (a silent video simply has no sound terms) is squashed with ``tanh`` into [-1, 1].

Discrete emotion
    Video2Music's six CLIP emotion words (exciting, fearful, tense, sad, relaxing, neutral)
    plus ``happy``, each a prototype point in the valence-arousal plane (Russell's 1980
    circumplex placement). Probabilities are a softmax of the negative squared distance to
    the prototypes, then sharpened by categorical evidence that valence/arousal alone cannot
    separate (fearful vs tense: fearful faces and darkness; happy vs exciting: smiling
    faces). ``confidence`` = top probability x evidence coverage (the share of the model's
    weight carried by features that were present).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engines.base import EMOTIONS, AffectEstimate, AffectModel


@dataclass(frozen=True)
class Term:
    feature: str
    centre: float
    scale: float
    weight: float


#: (feature, centre, scale, weight). Face terms use derived features computed in
#: :func:`_derived` (``face_valence``, ``face_arousal``, ``pulse``).
VALENCE_TERMS: tuple[Term, ...] = (
    Term("brightness", 0.45, 0.20, 0.69),
    Term("saturation", 0.35, 0.20, 0.22),
    Term("colourfulness", 0.35, 0.25, 0.15),
    Term("warmth", 0.00, 0.15, 0.08),
    Term("face_valence", 0.00, 0.35, 0.90),
    Term("centroid_hz", 1500.0, 1000.0, 0.12),
    Term("flatness", 0.15, 0.15, -0.06),
)

AROUSAL_TERMS: tuple[Term, ...] = (
    Term("motion", 0.05, 0.04, 0.45),
    Term("cut_rate", 0.30, 0.40, 0.35),
    Term("loudness_db", -30.0, 10.0, 0.45),
    Term("onset_rate", 2.0, 2.0, 0.15),
    Term("flux", 0.15, 0.1, 0.08),
    Term("pulse", 0.0, 0.5, 0.12),
    Term("saturation", 0.35, 0.20, 0.20),
    Term("brightness", 0.45, 0.20, -0.10),
    Term("face_arousal", 0.00, 0.35, 0.40),
)

#: Prototype (valence, arousal) of each emotion in the circumplex.
PROTOTYPES: dict[str, tuple[float, float]] = {
    "exciting": (0.55, 0.75),
    "happy": (0.70, 0.25),
    "relaxing": (0.45, -0.55),
    "neutral": (0.00, 0.00),
    "sad": (-0.60, -0.45),
    "tense": (-0.35, 0.50),
    "fearful": (-0.70, 0.75),
}

#: Width of the prototypes' softmax (VA units).
SIGMA = 0.35
Z_CLIP = 2.5


#: Sound features that describe a signal, meaningless for a (nearly) silent window.
SPECTRAL_FEATURES = ("centroid_hz", "rolloff_hz", "bandwidth_hz", "flatness", "flux", "onset_rate", "tempo_bpm",
                     "pulse_clarity")


def _derived(f: Mapping[str, float]) -> dict[str, float]:
    """Add face and pulse summaries to the raw window features."""
    out = dict(f)
    if f.get("silence", 0.0) >= 0.9:
        # Silence itself is evidence (low sound energy); its "spectrum" is not.
        for k in SPECTRAL_FEATURES:
            out.pop(k, None)
    presence = f.get("face_presence")
    if presence is not None and presence > 0:
        g = {k: f.get(f"face_{k}", 0.0) for k in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")}
        # Scale by presence so a face seen in a few frames moves the estimate a little.
        out["face_valence"] = presence * (
            g["happy"] + 0.3 * g["surprise"] - g["sad"] - 0.8 * g["angry"] - 0.8 * g["fear"] - 0.6 * g["disgust"]
        )
        out["face_arousal"] = presence * (
            g["surprise"] + 0.8 * g["fear"] + 0.8 * g["angry"] + 0.3 * g["happy"] - 0.5 * g["sad"] - 0.4 * g["neutral"]
        )
    else:
        out.pop("face_valence", None)
        out.pop("face_arousal", None)
    if "tempo_bpm" in out and "pulse_clarity" in out:
        tempo = out["tempo_bpm"]
        out["pulse"] = out["pulse_clarity"] * ((tempo - 100.0) / 30.0 if tempo > 0 else 0.0)
    return out


def _score(f: Mapping[str, float], terms: Sequence[Term]) -> tuple[float, float]:
    total_w = sum(abs(t.weight) for t in terms)
    acc = 0.0
    present_w = 0.0
    for t in terms:
        x = f.get(t.feature)
        if x is None or not math.isfinite(x):
            continue
        z = max(-Z_CLIP, min(Z_CLIP, (x - t.centre) / t.scale))
        acc += t.weight * z
        present_w += abs(t.weight)
    if present_w == 0:
        return 0.0, 0.0
    return math.tanh(acc / present_w), present_w / total_w


def emotion_probs(valence: float, arousal: float, f: Mapping[str, float] | None = None) -> np.ndarray:
    """Probabilities over :data:`EMOTIONS` for a VA point plus optional categorical evidence."""
    va = np.array([valence, arousal])
    protos = np.array([PROTOTYPES[e] for e in EMOTIONS])
    logits = -np.sum((protos - va) ** 2, axis=1) / (2 * SIGMA**2)
    if f:
        presence = f.get("face_presence", 0.0) or 0.0
        dark = max(0.0, 0.35 - f.get("brightness", 0.35)) / 0.35
        bonus = {
            "fearful": 2.0 * presence * f.get("face_fear", 0.0) + 1.0 * dark * max(0.0, arousal),
            "happy": 1.5 * presence * f.get("face_happy", 0.0),
            "sad": 1.5 * presence * f.get("face_sad", 0.0),
            "tense": 1.5 * presence * f.get("face_angry", 0.0),
            "exciting": 1.0 * presence * f.get("face_surprise", 0.0),
        }
        for k, b in bonus.items():
            logits[EMOTIONS.index(k)] += b
    p = np.exp(logits - logits.max())
    return p / p.sum()


@dataclass(frozen=True)
class FeatureScores:
    """The feature terms' verdict on one window, before the emotion step."""

    valence: float
    arousal: float
    #: Share of the valence / arousal terms' weight carried by features that were present.
    valence_coverage: float
    arousal_coverage: float
    #: The window's features with the derived ones (face_valence, face_arousal, pulse) added.
    derived: dict[str, float]


def feature_scores(features: Mapping[str, float]) -> FeatureScores:
    """Valence and arousal of the documented feature terms, with their evidence coverage."""
    f = _derived(features)
    valence, cov_v = _score(f, VALENCE_TERMS)
    arousal, cov_a = _score(f, AROUSAL_TERMS)
    return FeatureScores(valence, arousal, cov_v, cov_a, f)


class FeatureAffectModel(AffectModel):
    """The documented feature-to-affect mapping above."""

    def predict_one(self, features: Mapping[str, float]) -> AffectEstimate:
        sc = feature_scores(features)
        valence, arousal = sc.valence, sc.arousal
        probs = emotion_probs(valence, arousal, sc.derived)
        top = int(np.argmax(probs))
        coverage = 0.5 * (sc.valence_coverage + sc.arousal_coverage)
        return AffectEstimate(
            valence=valence,
            arousal=arousal,
            emotion=EMOTIONS[top],
            confidence=float(probs[top] * coverage),
            probs=tuple(float(p) for p in probs),
        )

    def predict(self, windows: Sequence[Mapping[str, float]]) -> list[AffectEstimate]:
        return [self.predict_one(w) for w in windows]
