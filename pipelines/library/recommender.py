"""The learned recommender at run time: a trained model that scores a library's tracks for a video.

Inputs (early fusion)
    Per analysis window, one vector in a fixed order (:data:`RAW_FEATURES`): the picture
    features (:data:`PICTURE_FEATURES`), the face-expression features (:data:`FACE_FEATURES`)
    and the soundtrack features (:data:`SOUND_FEATURES`) of :func:`pipelines.analysis.analyze.analyze`.
    A feature that is missing (no soundtrack, faces off) becomes 0 after standardisation and
    the modality's presence flag (picture, faces, sound) says so. Standardisation statistics
    (mean, std per column, over the training windows where present) are fitted on the
    training set and stored in the model. Then the affect estimate (valence, arousal and the
    seven emotion probabilities) is appended. Per video, the windows are pooled (mean, std,
    max) into one vector of ``3 * (len(RAW_FEATURES) + 3 + 9)`` numbers.

Model
    A small MLP (one hidden layer, ReLU, dropout) -> logits over the library's track ids. The
    model file records the ordered track ids and the library's identity (a name such as
    ``"catalog"`` and a fingerprint of its contents); predicting against a different library
    raises :class:`~pipelines.errors.DataError`.

Training it (pairs, soft labels, the fit, evaluation, a synthetic data set) is
:mod:`pipelines.training.recommender` and its neighbours; this module holds only what
``recommend --model`` needs, and imports torch only when a model is built, loaded or run.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.base import EMOTIONS
from engines.stats import nan_mean_std
from pipelines.errors import DataError
from pipelines.library.profile import VideoProfile, profile_from_analysis
from pipelines.library.ranking import TrackMatrix
from pipelines.library.tracks import TrackInfo

if TYPE_CHECKING:
    import torch

    from pipelines.analysis.analyze import Analysis


# --------------------------------------------------------------------------- features

#: Picture features, in model order.
PICTURE_FEATURES: tuple[str, ...] = ("brightness", "saturation", "colourfulness", "warmth", "contrast", "motion",
                                     "cut_rate")
#: Face features (absent when the face analyzer is off), in model order.
FACE_FEATURES: tuple[str, ...] = ("face_presence", "face_angry", "face_disgust", "face_fear", "face_happy",
                                  "face_sad", "face_surprise", "face_neutral")
#: Soundtrack features (absent without usable sound), in model order.
SOUND_FEATURES: tuple[str, ...] = ("loudness_db", "loudness_lufs", "dynamic_range_db", "centroid_hz", "rolloff_hz",
                                   "flatness", "bandwidth_hz", "flux", "onset_rate", "tempo_bpm", "pulse_clarity",
                                   "speech", "silence")
RAW_FEATURES: tuple[str, ...] = PICTURE_FEATURES + FACE_FEATURES + SOUND_FEATURES
MODALITIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("picture", PICTURE_FEATURES), ("faces", FACE_FEATURES), ("sound", SOUND_FEATURES))
#: Affect columns appended after the standardised features and the presence flags.
AFFECT_FEATURES: tuple[str, ...] = ("valence", "arousal", *(f"p_{e}" for e in EMOTIONS))
WINDOW_DIM = len(RAW_FEATURES) + len(MODALITIES) + len(AFFECT_FEATURES)
POOLS: tuple[str, ...] = ("mean", "std", "max")
VIDEO_DIM = len(POOLS) * WINDOW_DIM
#: Bumped when the cached per-video arrays change meaning.
FEATURE_VERSION = 1
#: Standardised values are clipped to +-Z_CLIP.
Z_CLIP = 5.0


@dataclass(frozen=True, eq=False)
class VideoRecord:
    """One analysed video as the trainer needs it: raw window features (NaN = missing),
    affect per window and the ranker's profile (for the baseline)."""

    raw: np.ndarray  # (W, len(RAW_FEATURES)) float64, NaN where missing
    affect: np.ndarray  # (W, len(AFFECT_FEATURES))
    profile: VideoProfile


def record_from_analysis(analysis: Analysis) -> VideoRecord:
    """Window features of an analysis in :data:`RAW_FEATURES` order (missing -> NaN)."""
    ws = analysis.windows
    raw = np.array([[w.features.get(n, math.nan) for n in RAW_FEATURES] for w in ws],
                   dtype=np.float64).reshape(-1, len(RAW_FEATURES))
    raw[~np.isfinite(raw)] = np.nan
    affect = np.array([(w.affect.valence, w.affect.arousal, *w.affect.probs) for w in ws],
                      dtype=np.float64).reshape(-1, len(AFFECT_FEATURES))
    return VideoRecord(raw, affect, profile_from_analysis(analysis))


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Per-column mean and std of :data:`RAW_FEATURES`, fitted on training windows."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, records: Sequence[VideoRecord]) -> FeatureStats:
        rows = np.concatenate([r.raw for r in records]) if records else np.zeros((0, len(RAW_FEATURES)))
        return cls(*nan_mean_std(rows))


def window_vectors(rec: VideoRecord, stats: FeatureStats) -> np.ndarray:
    """(W, WINDOW_DIM): standardised features (missing -> 0), presence flags, affect."""
    z = np.clip((rec.raw - stats.mean) / stats.std, -Z_CLIP, Z_CLIP)
    present = np.isfinite(z)
    z = np.where(present, z, 0.0)
    flags = []
    start = 0
    for _, names in MODALITIES:
        flags.append(present[:, start:start + len(names)].any(axis=1, keepdims=True))
        start += len(names)
    return np.concatenate([z, np.concatenate(flags, axis=1).astype(np.float64), rec.affect], axis=1)


def pool(windows: np.ndarray) -> np.ndarray:
    """Video vector: mean, std and max over windows (zeros for a video without windows)."""
    if len(windows) == 0:
        return np.zeros(VIDEO_DIM)
    return np.concatenate([windows.mean(axis=0), windows.std(axis=0), windows.max(axis=0)])


# --------------------------------------------------------------------------- library identity


def library_fingerprint(tracks: Sequence[TrackInfo]) -> str:
    """A short hash of what the model depends on: ids, titles, moods, labels and tempi."""
    h = hashlib.sha1()
    for t in sorted(tracks, key=lambda t: t.id):
        h.update(f"{t.id}|{t.title}|{t.valence:.3f}|{t.arousal:.3f}|{','.join(t.emotions)}|"
                 f"{t.tempo_bpm:.1f}\n".encode())
    return h.hexdigest()[:16]


def _id_span(ids: Sequence[int]) -> str:
    s = sorted(ids)
    if not s:
        return "empty"
    if s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}..{s[-1]}"
    return f"{len(s)} ids in {s[0]}..{s[-1]}"


# --------------------------------------------------------------------------- model

#: Epsilon of the soft labels (mass spread to tracks other than the chosen one); the default
#: of :attr:`ModelConfig.epsilon`, used in training by
#: :func:`pipelines.training.recommender_data.soft_targets`.
SOFT_EPSILON = 0.3


@dataclass(frozen=True)
class ModelConfig:
    hidden: int = 64
    dropout: float = 0.2
    epsilon: float = SOFT_EPSILON


def _build_net(in_dim: int, n_out: int, cfg: ModelConfig) -> torch.nn.Module:
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(in_dim, cfg.hidden), torch.nn.ReLU(), torch.nn.Dropout(cfg.dropout),
        torch.nn.Linear(cfg.hidden, n_out),
    )


MODEL_FORMAT = "backscore-recommender-1"


class RecommenderModel:
    """A trained recommender over one library (ordered :attr:`track_ids`)."""

    def __init__(self, net: torch.nn.Module, stats: FeatureStats, track_ids: Sequence[int], library_name: str,
                 fingerprint: str, config: ModelConfig, path: str | None = None) -> None:
        self.net = net
        self.stats = stats
        self.track_ids = [int(i) for i in track_ids]
        self.library_name = library_name
        self.fingerprint = fingerprint
        self.config = config
        self.path = path

    # ---- persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model atomically (torch file of plain tensors, lists and strings)."""
        import torch

        data = {
            "format": MODEL_FORMAT, "feature_names": list(RAW_FEATURES), "feature_version": FEATURE_VERSION,
            "track_ids": self.track_ids, "library_name": self.library_name, "fingerprint": self.fingerprint,
            "config": {"hidden": self.config.hidden, "dropout": self.config.dropout,
                       "epsilon": self.config.epsilon},
            "mean": torch.tensor(self.stats.mean), "std": torch.tensor(self.stats.std),
            "state": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
        }
        tmp = os.fspath(path) + ".partial"
        torch.save(data, tmp)
        os.replace(tmp, path)
        self.path = os.fspath(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RecommenderModel:
        """Read a model written by :meth:`save`; anything else -> :class:`DataError`."""
        import torch

        p = os.fspath(path)
        if not os.path.isfile(p):
            raise DataError(f"model file {p} not found")
        try:
            data: dict[str, Any] = torch.load(p, map_location="cpu", weights_only=True)
            if data.get("format") != MODEL_FORMAT or list(data["feature_names"]) != list(RAW_FEATURES):
                raise DataError(f"{p} is not a backscore recommender model of this version")
            cfg = ModelConfig(**data["config"])
            stats = FeatureStats(data["mean"].numpy().astype(np.float64), data["std"].numpy().astype(np.float64))
            net = _build_net(VIDEO_DIM, len(data["track_ids"]), cfg)
            net.load_state_dict(data["state"])
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{p} is not a readable backscore recommender model: {exc}") from exc
        net.eval()
        return cls(net, stats, data["track_ids"], str(data["library_name"]), str(data["fingerprint"]), cfg, p)

    # ---- library check
    def check_library(self, tracks: Sequence[TrackInfo] | TrackMatrix) -> None:
        """:class:`DataError` unless ``tracks`` is the library the model was trained on."""
        seq = tracks.tracks if isinstance(tracks, TrackMatrix) else tuple(tracks)
        fp = library_fingerprint(seq)
        if fp != self.fingerprint or sorted(t.id for t in seq) != sorted(self.track_ids):
            raise DataError(
                f"the model was trained on library {self.library_name!r} ({len(self.track_ids)} tracks, "
                f"ids {_id_span(self.track_ids)}, fingerprint {self.fingerprint}); this library has {len(seq)} "
                f"tracks (fingerprint {fp}): retrain it with `backscore recommender train` on this library")

    # ---- prediction
    def _logits(self, x: np.ndarray) -> np.ndarray:
        import torch

        self.net.eval()
        with torch.no_grad():
            out = self.net(torch.as_tensor(x, dtype=torch.float32))
        return np.asarray(out.numpy(), dtype=np.float64)

    def predict_records(self, records: Sequence[VideoRecord]) -> np.ndarray:
        """(N, T) probabilities over :attr:`track_ids`."""
        if not records:
            return np.zeros((0, len(self.track_ids)))
        x = np.stack([pool(window_vectors(r, self.stats)) for r in records])
        logits = self._logits(x)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return np.asarray(p / p.sum(axis=1, keepdims=True))

    def predict_proba(self, analysis: Analysis, tracks: Sequence[TrackInfo] | TrackMatrix | None = None) -> np.ndarray:
        """Probabilities over :attr:`track_ids`, or, given ``tracks`` (checked to be the same
        library), in ``tracks``' order -- ready for ``rank(..., model_scores=...)``."""
        p = self.predict_records([record_from_analysis(analysis)])[0]
        return p if tracks is None else self.align(p, tracks)

    def align(self, probs: np.ndarray, tracks: Sequence[TrackInfo] | TrackMatrix) -> np.ndarray:
        """Reorder probabilities over :attr:`track_ids` into ``tracks``' order."""
        self.check_library(tracks)
        seq = tracks.tracks if isinstance(tracks, TrackMatrix) else tuple(tracks)
        pos = {tid: k for k, tid in enumerate(self.track_ids)}
        return np.asarray(probs[[pos[t.id] for t in seq]])
