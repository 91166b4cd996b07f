"""Affect engines by name: the encoders and the affect model behind ``--affect-engine NAME``.

=================  =======================  ========================  ==========================
name               pictures                 sound                     affect model
=================  =======================  ========================  ==========================
``default``        feature frames           feature audio             ``FeatureAffectModel``
``clip``           feature frames + CLIP    feature audio             ``FusedAffectModel``
``wav2vec2``       feature frames           feature audio + wav2vec2  ``FusedAffectModel``
``clip+wav2vec2``  feature frames + CLIP    feature audio + wav2vec2  ``FusedAffectModel``
``amt``            feature frames (+ CLIP)  feature audio (+ w2v)     ``AmtAffectModel``
=================  =======================  ========================  ==========================

(:mod:`engines.affect`, :mod:`engines.fused_affect`, :mod:`engines.amt`.)

The neural encoders are *added* to the feature encoders (CLIP sees 224 px pictures at
``pipelines.analysis.analyze.PICTURE_FPS``; the wav2vec2 columns join the sound features), so the
feature terms (faces, motion, cuts, loudness) keep counting. ``amt`` loads CLIP / wav2vec2
only when its checkpoint was trained with ``clip_*`` / ``w2v_*`` columns; without AMT weights
it falls back to ``default`` with a warning.

Weights (:func:`parse_weights`): a mapping model name -> directory for ``clip``, ``wav2vec2``
and ``amt`` (``--weights NAME=DIR``); a plain directory (``--weights DIR``, key ``""``) is the
chosen engine's model, and for ``clip+wav2vec2`` a folder holding ``clip/`` and ``wav2vec2/``.
Unnamed models come from ``$BACKSCORE_CLIP_WEIGHTS`` / ``$BACKSCORE_WAV2VEC2_WEIGHTS`` /
``$BACKSCORE_AMT_WEIGHTS``, else (CLIP, wav2vec2) the Hugging Face cache. Nothing is downloaded.
The lookups are :mod:`engines.weights`'s (:func:`~engines.weights.find_amt_weights` for AMT), so
:mod:`engines.amt` and this module share them without importing each other.

Backend (``--backend``, :mod:`engines.backends`): CLIP's image tower and the wav2vec2 classifier
run on ``backend`` (``auto``: the first of TensorRT, ONNX Runtime CUDA, torch CUDA, ONNX Runtime CPU,
torch CPU that can run here, or ``$BACKSCORE_BACKEND``); a named backend that cannot run here
raises :class:`EngineUnavailable` saying why.

This module imports neither torch nor transformers until an engine is built.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engines.base import AffectModel, AudioEncoder, EngineUnavailable, FrameEncoder
from engines.settings import setting
from engines.weights import AMT_WEIGHTS_ENV, find_amt_weights

log = logging.getLogger(__name__)

#: Names ``--affect-engine`` accepts.
AFFECT_ENGINES: tuple[str, ...] = ("default", "clip+wav2vec2", "clip", "wav2vec2", "amt")
#: Model names ``--weights NAME=DIR`` accepts.
WEIGHT_NAMES: tuple[str, ...] = ("musicgen", "clip", "wav2vec2", "amt")


def parse_weights(values: str | Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """``["clip=/a", "/b"]`` -> ``{"clip": "/a", "": "/b"}``; a mapping is copied, a string is one entry.

    ``NAME=DIR`` is split only for the names in :data:`WEIGHT_NAMES`, so other paths may contain ``=``.
    Raises ``ValueError`` for two plain directories or a name given twice.
    """
    if values is None:
        return {}
    if isinstance(values, Mapping):
        return {str(k): str(v) for k, v in values.items() if v}
    items = [values] if isinstance(values, str) else list(values)
    out: dict[str, str] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        key, path = (name, rest) if sep and name in WEIGHT_NAMES else ("", item)
        if not path:
            raise ValueError(f"--weights {item!r}: no directory given")
        if key in out:
            what = f"{key}=DIR" if key else "a plain DIR"
            raise ValueError(f"--weights {what} given twice ({out[key]} and {path}); name each: --weights clip=DIR")
        out[key] = path
    return out


def _model_weights(engine: str, model: str, weights: Mapping[str, str]) -> str | None:
    """The directory for ``model`` under ``engine``: named, else the plain DIR (or its ``model/`` subfolder)."""
    if weights.get(model):
        return weights[model]
    plain = weights.get("")
    if not plain:
        return None
    if engine == model:
        return plain
    if engine == "clip+wav2vec2":
        return os.path.join(plain, model)
    return None


class CombinedAudioEncoder(AudioEncoder):
    """Several audio encoders at one sample rate: their columns side by side; speech activity
    (for ducking) from the first."""

    def __init__(self, first: AudioEncoder, *more: AudioEncoder) -> None:
        self.encoders = (first, *more)
        rates = {e.sample_rate for e in self.encoders}
        if len(rates) != 1:
            raise ValueError(f"audio encoders need one sample rate, got {sorted(rates)}")
        self.sample_rate = first.sample_rate
        self.feature_names = tuple(n for e in self.encoders for n in e.feature_names)
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError("audio encoders have clashing feature names")

    def encode(self, samples: np.ndarray) -> np.ndarray:
        return np.concatenate([e.encode(samples) for e in self.encoders]).astype(np.float32)

    def speech_activity(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.encoders[0].speech_activity(samples)

    def encode_windows(
        self, samples: np.ndarray, bounds: Sequence[tuple[float, float]]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        rows, speech = self.encoders[0].encode_windows(samples, bounds)
        parts = [rows]
        for e in self.encoders[1:]:
            window_rows = getattr(e, "window_rows", None)  # skips a second speech analysis
            parts.append(window_rows(samples, bounds) if window_rows else e.encode_windows(samples, bounds)[0])
        return np.concatenate(parts, axis=1).astype(np.float32), speech


@dataclass
class AffectEngineParts:
    """What an affect engine adds to an analysis (faces are the caller's choice)."""

    name: str
    frame: FrameEncoder
    audio: AudioEncoder
    affect: AffectModel
    #: Image model run on the larger pictures (CLIP), or None.
    picture: FrameEncoder | None = None


def _load(engine: str, model: str, weights: Mapping[str, str], device: str | None,
          backend: str) -> FrameEncoder | AudioEncoder:
    path = _model_weights(engine, model, weights)
    try:
        if model == "clip":
            from engines.clip_encoder import ClipFrameEncoder

            return ClipFrameEncoder.from_pretrained(path, device=device, backend=backend)
        from engines.wav2vec2_encoder import Wav2Vec2AudioEncoder

        return Wav2Vec2AudioEncoder.from_pretrained(path, device=device, backend=backend)
    except EngineUnavailable as exc:
        raise EngineUnavailable(f"--affect-engine {engine}: {exc}") from exc


def create_affect_engines(name: str = "default", weights: str | Mapping[str, str] | Sequence[str] | None = None,
                          device: str | None = None, backend: str = "auto") -> AffectEngineParts:
    """The encoders and affect model of ``--affect-engine name`` (table in the module doc).

    ``backend``: where the neural encoders run (``"auto"`` or a name of
    :data:`engines.backends.BACKENDS`); ``device``: their torch device (default from the backend).
    Raises ``ValueError`` for an unknown name, bad ``weights`` or an unknown backend name and
    :class:`EngineUnavailable` (saying which model is missing and how to provide it, or why the
    named backend cannot run here) when an encoder cannot be loaded.
    """
    from engines.affect import FeatureAffectModel
    from engines.audio_features import FeatureAudioEncoder
    from engines.frame_features import FeatureFrameEncoder

    if name not in AFFECT_ENGINES:
        raise ValueError(f"unknown affect engine {name!r}; expected one of {', '.join(AFFECT_ENGINES)}")
    w = parse_weights(weights)
    audio: AudioEncoder = FeatureAudioEncoder()
    if name == "default":
        return AffectEngineParts(name, FeatureFrameEncoder(), audio, FeatureAffectModel())
    affect: AffectModel
    if name == "amt":
        path, where = find_amt_weights(w.get("amt") or w.get(""))
        if path is None:
            if w.get("amt") or w.get("") or setting(AMT_WEIGHTS_ENV):
                raise EngineUnavailable(f"--affect-engine amt: AMT weights not found: {where}; train a model "
                                        "with `backscore amt train windows.csv -o MODEL_DIR`")
            log.warning("--affect-engine amt: no trained AMT weights (--weights amt=DIR or %s=DIR); using the "
                        "default feature affect model", AMT_WEIGHTS_ENV)
            return AffectEngineParts("default", FeatureFrameEncoder(), audio, FeatureAffectModel())
        from engines.amt import AmtAffectModel

        amt = AmtAffectModel.load(path)
        affect = amt
        needs = {"clip": any(n.startswith("clip_") for n in amt.feature_names),
                 "wav2vec2": any(n.startswith("w2v_") for n in amt.feature_names)}
    else:
        needs = {"clip": "clip" in name, "wav2vec2": "wav2vec2" in name}
        affect = _fused([s for s, k in (("clip", "clip"), ("w2v", "wav2vec2")) if needs[k]])
    picture = _load(name, "clip", w, device, backend) if needs["clip"] else None
    if needs["wav2vec2"]:
        w2v = _load(name, "wav2vec2", w, device, backend)
        assert isinstance(w2v, AudioEncoder)
        audio = CombinedAudioEncoder(audio, w2v)
    assert picture is None or isinstance(picture, FrameEncoder)
    return AffectEngineParts(name, FeatureFrameEncoder(), audio, affect, picture)


def _fused(sources: Sequence[str]) -> AffectModel:
    from engines.fused_affect import FusedAffectModel

    return FusedAffectModel(sources)
