"""The feature affect model moves valence and arousal the documented way."""

from __future__ import annotations

import numpy as np

from engines.affect import FeatureAffectModel, emotion_probs
from engines.base import EMOTIONS

CALM = {"brightness": 0.15, "saturation": 0.12, "colourfulness": 0.05, "warmth": -0.05, "motion": 0.002,
        "cut_rate": 0.0, "loudness_db": -45.0, "onset_rate": 0.0, "flux": 0.05, "tempo_bpm": 0.0,
        "pulse_clarity": 0.0, "centroid_hz": 300.0, "flatness": 0.05}
EXCITING = {"brightness": 0.9, "saturation": 0.8, "colourfulness": 0.8, "warmth": 0.3, "motion": 0.12,
            "cut_rate": 1.3, "loudness_db": -12.0, "onset_rate": 5.0, "flux": 1.2, "tempo_bpm": 128.0,
            "pulse_clarity": 0.8, "centroid_hz": 3000.0, "flatness": 0.2}


def test_dark_still_quiet_is_low_arousal_negative_and_bright_fast_loud_is_high_positive() -> None:
    m = FeatureAffectModel()
    calm, exc = m.predict([CALM, EXCITING])
    assert calm.arousal < -0.4 and exc.arousal > 0.6
    assert calm.valence < -0.3 and exc.valence > 0.6
    assert calm.emotion in ("sad", "relaxing", "neutral")
    assert exc.emotion == "exciting"
    assert 0 < calm.confidence <= 1 and 0 < exc.confidence <= 1
    assert abs(sum(exc.probs) - 1) < 1e-6


def test_each_cue_moves_its_dimension_monotonically() -> None:
    m = FeatureAffectModel()
    base = {k: (CALM[k] + EXCITING[k]) / 2 for k in CALM}
    for feature, dim in [("brightness", "valence"), ("saturation", "valence"), ("motion", "arousal"),
                         ("cut_rate", "arousal"), ("loudness_db", "arousal")]:
        lo, hi = dict(base), dict(base)
        lo[feature], hi[feature] = CALM[feature], EXCITING[feature]
        a, b = m.predict([lo, hi])
        assert getattr(b, dim) > getattr(a, dim) + 0.05, feature


def test_faces_move_valence_and_select_categorical_emotions() -> None:
    m = FeatureAffectModel()
    neutral_pic = {"brightness": 0.45, "saturation": 0.35, "motion": 0.03, "cut_rate": 0.3}
    faces = {k: 0.0 for k in ("face_angry", "face_disgust", "face_fear", "face_happy", "face_sad",
                              "face_surprise", "face_neutral")}
    smile = {**neutral_pic, **faces, "face_presence": 1.0, "face_happy": 0.95}
    frown = {**neutral_pic, **faces, "face_presence": 1.0, "face_sad": 0.95}
    fear = {**neutral_pic, **faces, "face_presence": 1.0, "face_fear": 0.95, "motion": 0.1, "cut_rate": 1.0}
    s, f, fe = m.predict([smile, frown, fear])
    assert s.valence > 0.3 > -0.3 > f.valence
    assert s.emotion == "happy" and f.emotion == "sad" and fe.emotion == "fearful"


def test_no_soundtrack_still_gives_an_estimate_with_lower_coverage() -> None:
    m = FeatureAffectModel()
    pic_only = {k: v for k, v in EXCITING.items() if k in ("brightness", "saturation", "colourfulness", "warmth",
                                                           "motion", "cut_rate")}
    full, pic = m.predict([EXCITING, pic_only])
    assert pic.arousal > 0.3 and pic.emotion == full.emotion
    assert pic.confidence < full.confidence


def test_emotion_probs_peak_at_prototypes() -> None:
    from engines.affect import PROTOTYPES

    for name, (v, a) in PROTOTYPES.items():
        p = emotion_probs(v, a)
        assert EMOTIONS[int(np.argmax(p))] == name
