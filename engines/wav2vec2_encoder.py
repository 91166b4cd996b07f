"""Wav2Vec2AudioEncoder: speech-emotion probabilities of a soundtrack window with wav2vec 2.0.

The default checkpoint is ``superb/wav2vec2-base-superb-er`` (wav2vec 2.0 base fine-tuned on
IEMOCAP's four classes for the SUPERB emotion-recognition task; ``id2label`` ``neu``, ``hap``,
``ang``, ``sad``). Any ``Wav2Vec2ForSequenceClassification`` checkpoint with an emotion head
works: the columns follow the checkpoint's ``config.id2label``.

Columns of :attr:`Wav2Vec2AudioEncoder.feature_names`:

``w2v_<label>`` (one per class, in ``id2label`` order)
    The head's softmax probability of that class for the window (they sum to 1). ``<label>``
    is the label lower-cased with every run of other characters than ``a-z0-9`` replaced by
    ``_`` (:func:`feature_label`), e.g. ``w2v_neu``, ``w2v_hap``, ``w2v_ang``, ``w2v_sad``.
``w2v_valence``, ``w2v_arousal``
    ``sum_k p_k * LABEL_AFFECT[label_k]``: the probabilities weighted by a (valence, arousal)
    point per label on Russell's circumplex (Russell 1980, "A circumplex model of affect";
    coordinates rounded from the placements of the corresponding adjectives). Labels not in
    :data:`LABEL_AFFECT` contribute (0, 0), so both are in [-1, 1].

The model hears a whole window at once (input normalised by the checkpoint's feature
extractor, zero mean and unit variance for the superb model). :meth:`~Wav2Vec2AudioEncoder.encode_windows`
batches windows of equal length (no padding, so the batch gives the rows of the windows one
by one, up to float noise).

Speech activity (for ducking) is not what the emotion head measures: :meth:`~Wav2Vec2AudioEncoder.speech_activity`
delegates to :class:`engines.audio_features.FeatureAudioEncoder`'s detector.

Backend (``backend=``, :mod:`engines.backends`): the classifier (feature encoder, transformer and
head, :func:`engines.onnx_export.wav2vec2_spec`: ``input_values`` -> ``logits``) runs on the chosen
backend (``auto``: TensorRT, ONNX Runtime CUDA, torch CUDA, ONNX Runtime CPU, torch CPU, the first
that can run here, or ``$BACKSCORE_BACKEND``); the exported graph is cached per weights. The
softmax and the affect weighting are numpy. :attr:`Wav2Vec2AudioEncoder.backend` names the
backend. ONNX Runtime CPU gives the torch rows within 1e-4 (``tests/test_neural_encoders.py``).
On TensorRT a window may last 10 s at most (the optimisation profile of the spec).

Weights: :meth:`Wav2Vec2AudioEncoder.from_pretrained` reads a local directory, else
``$BACKSCORE_WAV2VEC2_WEIGHTS``, else the Hugging Face cache entry of
``superb/wav2vec2-base-superb-er``, always offline unless ``allow_download=True`` (:data:`WEIGHTS`,
an :class:`engines.weights.HFModelSpec`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from engines.base import AudioEncoder, EngineUnavailable
from engines.weights import HFModelSpec

log = logging.getLogger(__name__)

MODEL_ID = "superb/wav2vec2-base-superb-er"
WEIGHTS_ENV = "BACKSCORE_WAV2VEC2_WEIGHTS"
#: The wav2vec2 emotion checkpoint: where it is looked up, how it loads, what the errors say.
WEIGHTS = HFModelSpec(
    "wav2vec2 emotion weights", MODEL_ID, WEIGHTS_ENV,
    f"a Wav2Vec2ForSequenceClassification emotion checkpoint, --weights wav2vec2=DIR or {WEIGHTS_ENV}=DIR",
    "the wav2vec2 audio encoder")
INSTALL_HINT = WEIGHTS.install_hint
SAMPLE_RATE = 16_000
#: Shortest input the convolutional feature encoder accepts (its receptive field, 25 ms).
MIN_SAMPLES = 400

#: label -> (valence, arousal), both in [-1, 1] (Russell 1980 circumplex, rounded). Covers the
#: label spellings of IEMOCAP/superb (neu, hap, ang, sad, exc, fru), RAVDESS and similar sets.
LABEL_AFFECT: dict[str, tuple[float, float]] = {
    "neu": (0.0, 0.0), "neutral": (0.0, 0.0),
    "calm": (0.4, -0.6),
    "hap": (0.8, 0.5), "happy": (0.8, 0.5), "happiness": (0.8, 0.5), "joy": (0.8, 0.5),
    "exc": (0.7, 0.8), "excited": (0.7, 0.8),
    "ang": (-0.6, 0.8), "angry": (-0.6, 0.8), "anger": (-0.6, 0.8),
    "fru": (-0.5, 0.4), "frustrated": (-0.5, 0.4),
    "sad": (-0.7, -0.5), "sadness": (-0.7, -0.5),
    "fea": (-0.6, 0.7), "fear": (-0.6, 0.7), "fearful": (-0.6, 0.7),
    "dis": (-0.7, 0.3), "disgust": (-0.7, 0.3),
    "sur": (0.2, 0.8), "surprise": (0.2, 0.8), "surprised": (0.2, 0.8),
}


def feature_label(label: str) -> str:
    """``"Happy!"`` -> ``"happy"``; runs of other characters than ``a-z0-9`` become ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", str(label).lower()).strip("_") or "label"


# --------------------------------------------------------------------------- weights


#: ``(path or None, where)``: where the weights would be read from, without importing transformers.
find_weights = WEIGHTS.find
#: The one message for missing wav2vec2 weights (``where`` from :func:`find_weights`).
missing_weights_message = WEIGHTS.missing_message


# --------------------------------------------------------------------------- encoder


class Wav2Vec2AudioEncoder(AudioEncoder):
    """wav2vec 2.0 emotion-head probabilities of an audio window (see the module doc).

    Build it with :meth:`from_pretrained`, or from a ``Wav2Vec2ForSequenceClassification`` and
    its feature extractor in memory. ``backend``: ``"auto"`` or a name of
    :data:`engines.backends.BACKENDS`; ``device``: the torch device on a torch backend (default
    from the backend). Raises :class:`EngineUnavailable` for a named backend that cannot run here.
    """

    sample_rate: int = SAMPLE_RATE

    def __init__(self, model: Any, feature_extractor: Any, device: str | None = None, batch_size: int = 8,
                 backend: str = "auto") -> None:
        import torch

        from engines.backends import model_runner, resolve_backend, torch_device
        from engines.onnx_export import wav2vec2_spec

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        fe_rate = getattr(feature_extractor, "sampling_rate", SAMPLE_RATE)
        if int(fe_rate) != SAMPLE_RATE:
            raise EngineUnavailable(f"wav2vec2 checkpoint expects {fe_rate} Hz audio; only {SAMPLE_RATE} Hz works")
        chosen, pinned = resolve_backend(backend)
        self.device = torch.device(torch_device(chosen, device))
        self.model = model.to(self.device).eval()
        #: numpy ``input_values`` (B, samples) -> (B, classes) logits, on :attr:`backend`.
        self.runner = model_runner(wav2vec2_spec(self.model, batch=(1, batch_size, batch_size)), chosen, pinned,
                                   device=str(self.device))
        #: The backend the classifier runs on (:data:`engines.backends.BACKENDS`).
        self.backend: str = self.runner.backend
        self.feature_extractor = feature_extractor
        self.batch_size = batch_size
        id2label = model.config.id2label
        #: Class labels in head order, as the checkpoint names them.
        self.labels: tuple[str, ...] = tuple(str(id2label[i]) for i in range(int(model.config.num_labels)))
        names = [f"w2v_{feature_label(lb)}" for lb in self.labels]
        if len(set(names)) != len(names):
            raise EngineUnavailable(f"wav2vec2 checkpoint has labels that clash as feature names: {self.labels}")
        self.feature_names = (*names, "w2v_valence", "w2v_arousal")
        self._affect = np.array([LABEL_AFFECT.get(feature_label(lb), (0.0, 0.0)) for lb in self.labels],
                                np.float32)
        from engines.audio_features import FeatureAudioEncoder

        self._speech = FeatureAudioEncoder()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, weights: str | None = None, device: str | None = None, allow_download: bool = False,
                        batch_size: int = 8, backend: str = "auto") -> Wav2Vec2AudioEncoder:
        """Load model and feature extractor from ``weights`` / ``$BACKSCORE_WAV2VEC2_WEIGHTS`` / the HF cache.

        Never touches the network unless ``allow_download``. Raises :class:`EngineUnavailable`
        saying how to provide the weights, or how to install transformers, or that a named
        ``backend`` cannot run here (checked before the weights are read).
        """
        model, fe, path = WEIGHTS.load("Wav2Vec2ForSequenceClassification", "AutoFeatureExtractor", weights,
                                       allow_download=allow_download, backend=backend)
        enc = cls(model, fe, device, batch_size, backend)
        log.info("wav2vec2: loaded %s on %s", path, enc.backend)
        return enc

    # ------------------------------------------------------------------ inference
    def _probabilities(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """(B, C) class probabilities of equal-length windows."""
        inputs = self.feature_extractor(list(windows), sampling_rate=SAMPLE_RATE, return_tensors="np")
        logits = np.asarray(self.runner(np.asarray(inputs["input_values"], np.float32)), np.float64)
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)

    def _rows(self, probs: np.ndarray) -> np.ndarray:
        va = probs @ self._affect
        return np.concatenate([probs, va], axis=1).astype(np.float32)

    @staticmethod
    def _check(samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"samples must be mono (1-D), got shape {x.shape}")
        if x.size < MIN_SAMPLES:
            raise ValueError(f"need at least {MIN_SAMPLES} samples ({MIN_SAMPLES / SAMPLE_RATE * 1000:.0f} ms)")
        return x

    def encode(self, samples: np.ndarray) -> np.ndarray:
        """One row (:attr:`feature_names`) for a mono 16 kHz window in [-1, 1]."""
        return self._rows(self._probabilities([self._check(samples)]))[0]

    def encode_windows(
        self, samples: np.ndarray, bounds: Sequence[tuple[float, float]]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Like :meth:`AudioEncoder.encode_windows`, batching windows of equal length."""
        return self.window_rows(samples, bounds), self.speech_activity(samples)

    def window_rows(self, samples: np.ndarray, bounds: Sequence[tuple[float, float]]) -> np.ndarray:
        """The rows of :meth:`encode_windows` without the speech activity (zeros for a window too short)."""
        sr = self.sample_rate
        rows = np.zeros((len(bounds), len(self.feature_names)), dtype=np.float32)
        by_len: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, (s, e) in enumerate(bounds):
            seg = np.asarray(samples[int(s * sr) : int(e * sr)], np.float32)
            if len(seg) >= max(sr // 4, MIN_SAMPLES):
                by_len.setdefault(len(seg), []).append((i, seg))
        for group in by_len.values():
            for j in range(0, len(group), self.batch_size):
                part = group[j : j + self.batch_size]
                out = self._rows(self._probabilities([seg for _, seg in part]))
                for (i, _), row in zip(part, out, strict=True):
                    rows[i] = row
        return rows

    def speech_activity(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Delegates to :meth:`engines.audio_features.FeatureAudioEncoder.speech_activity`."""
        return self._speech.speech_activity(samples)
