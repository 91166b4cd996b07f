"""The trainable recommender: (video, chosen track) pairs -> a small model over a library's tracks.

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

Soft labels
    The target for a pair (video, track ``t``) is a distribution over all tracks: ``1 - eps`` on
    ``t`` and ``eps`` spread over the others in proportion to
    ``(l_t . LABEL_SIMILARITY . l_u) * exp(-|va_t - va_u|^2 / (2 * SOFT_VA_SIGMA^2))``: label
    similarity of their emotion labels times valence-arousal proximity. Loss: cross-entropy
    against the soft target; Adam, full batch, early stopping on a validation split, seeded,
    CPU. A few seconds for hundreds of videos.

Training data
    :func:`make_pairs` writes a *synthetic* set: short videos from :mod:`pipelines.devtools.synth_video`
    whose pictures and sound are generated from a target mood (:func:`scene_for_mood`), each
    paired with the library track that best matches the generating mood by
    :func:`best_track_for_mood`. The label is therefore learnable but synthetic. See
    :data:`REAL_PAIRS_HOWTO` for training on real pairs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.base import EMOTIONS
from engines.stats import nan_mean_std
from pipelines.devtools.synth_video import Scene, write_video
from pipelines.errors import DataError, LibraryError, OptionError
from pipelines.library.ranking import LABEL_SIMILARITY, TrackMatrix, VideoProfile, profile_from_analysis, score_all
from pipelines.library.tracks import TrackInfo

if TYPE_CHECKING:
    import torch

    from pipelines.analysis.analyze import Analysis

log = logging.getLogger(__name__)

REAL_PAIRS_HOWTO = """\
### Training the recommender on real pairs

`backscore recommender train` learns which library track a person would put under a video.
It needs a CSV with the header `video,track_id`, one row per choice: the video file (relative
to the CSV's folder, or absolute) and the number of the track a human chose for it from the
same library the model will recommend from (`1..100` for the built-in catalog, or the ids of
your `backscore library index` database). Extra columns are ignored.

    video,track_id
    clips/beach_day.mp4,12
    clips/night_drive.mov,57

Sources of real pairs: a creators' own history (the videos they published and the library
track they used), or an annotation session in which editors pick the best of the top-10
tracks `backscore recommend` proposes. Aim for at least 5-10 videos per track you expect to
be chosen; the soft labels let neighbouring tracks (similar mood labels and valence-arousal)
share evidence, so tracks never chosen still get sensible scores.

    backscore recommender train pairs.csv -o model.pt          # analyses each video once (cached)
    backscore recommender eval held_out.csv --model model.pt  # accuracy, top-5, MRR vs the
                                                              # untrained affect-distance ranker
    backscore recommend VIDEO --model model.pt                # blends the model into the ranking

Keep a held-out CSV of videos never used in training and compare the model with the
untrained ranker on it before relying on it. `backscore recommender make-data` writes a
synthetic set (mood-generated clips, labelled by a documented rule) to try the workflow.
"""

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


def _cache_path(cache_dir: str, video: str) -> str:
    st = os.stat(video)
    key = f"{os.path.abspath(video)}|{st.st_size}|{st.st_mtime_ns}|v{FEATURE_VERSION}"
    return os.path.join(cache_dir, hashlib.sha1(key.encode()).hexdigest()[:20] + ".npz")


def _save_record(path: str, rec: VideoRecord) -> None:
    tmp = path + ".partial.npz"
    np.savez(tmp, raw=rec.raw, affect=rec.affect, profile=np.array(json.dumps(rec.profile.to_json())))
    os.replace(tmp, path)


def _load_record(path: str) -> VideoRecord | None:
    try:
        with np.load(path) as z:
            return VideoRecord(z["raw"], z["affect"], VideoProfile.from_json(json.loads(str(z["profile"]))))
    except (OSError, ValueError, KeyError, DataError) as exc:
        log.warning("ignoring unreadable cache entry %s: %s", path, exc)
        return None


AnalyzeFn = Callable[[str], "Analysis"]


def default_analyze_fn() -> AnalyzeFn:
    """:func:`pipelines.analysis.analyze.analyze` with the default engines, loaded once."""
    from pipelines.analysis.analyze import analyze, default_engines

    engines = default_engines()
    return lambda path: analyze(path, engines)


def load_records(videos: Sequence[str], analyze_fn: AnalyzeFn | None = None, cache_dir: str | None = None,
                 progress: Callable[[str, float], None] | None = None) -> list[VideoRecord]:
    """Analyse each distinct video once (reusing ``cache_dir/*.npz`` keyed by path, size, mtime)."""
    fn = analyze_fn
    out: dict[str, VideoRecord] = {}
    distinct = list(dict.fromkeys(videos))
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
    for k, video in enumerate(distinct):
        cpath = _cache_path(cache_dir, video) if cache_dir else None
        rec = _load_record(cpath) if cpath and os.path.exists(cpath) else None
        if rec is None:
            if fn is None:
                fn = default_analyze_fn()
            rec = record_from_analysis(fn(video))
            if cpath:
                _save_record(cpath, rec)
        out[video] = rec
        if progress:
            progress("analyse", (k + 1) / len(distinct))
    return [out[v] for v in videos]


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


def _crops(n: int, rng: np.random.Generator, k: int, min_share: float = 0.6) -> list[slice]:
    """``k`` random contiguous window ranges covering at least ``min_share`` of ``n``."""
    out: list[slice] = []
    if n < 3:
        return out
    for _ in range(k):
        length = int(rng.integers(max(2, int(math.ceil(min_share * n))), n + 1))
        start = int(rng.integers(0, n - length + 1))
        out.append(slice(start, start + length))
    return out


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


# --------------------------------------------------------------------------- soft labels

#: Epsilon of the soft labels (mass spread to tracks other than the chosen one).
SOFT_EPSILON = 0.3
#: VA proximity width of the soft labels.
SOFT_VA_SIGMA = 0.35


def soft_targets(tracks: TrackMatrix, epsilon: float = SOFT_EPSILON, va_sigma: float = SOFT_VA_SIGMA) -> np.ndarray:
    """(T, T): row ``t`` is the target distribution when track ``t`` was chosen (see module doc)."""
    n = len(tracks)
    label_sim = tracks.labels @ LABEL_SIMILARITY @ tracks.labels.T
    va = np.stack([tracks.valence, tracks.arousal], axis=1).astype(np.float64)
    d2 = ((va[:, None, :] - va[None, :, :]) ** 2).sum(axis=-1)
    w = label_sim * np.exp(-d2 / (2 * va_sigma**2))
    np.fill_diagonal(w, 0.0)
    out = np.eye(n)
    if n == 1:
        return out
    sums = w.sum(axis=1, keepdims=True)
    spread = np.where(sums > 1e-12, w / np.maximum(sums, 1e-12), (1 - np.eye(n)) / (n - 1))
    return np.asarray((1.0 - epsilon) * np.eye(n) + epsilon * spread)


# --------------------------------------------------------------------------- pairs CSV


@dataclass(frozen=True)
class Pair:
    """One training/evaluation example: a video and the track a person (or a rule) chose."""

    video: str
    track_id: int
    line: int = 0


def load_pairs(csv_path: str | os.PathLike[str], library_ids: Sequence[int]) -> list[Pair]:
    """Read ``video,track_id`` rows; videos relative to the CSV's folder. Any problem ->
    :class:`DataError` naming the file and line."""
    path = Path(csv_path)
    name = path.name
    if not path.is_file():
        raise DataError(f"pairs file {csv_path} not found")
    ids = {int(i) for i in library_ids}
    base = path.parent
    pairs: list[Pair] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{name}: cannot read: {exc}") from exc
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["video", "track_id"]:
        raise DataError(f"{name} line 1: expected the header video,track_id")
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        pairs.append(_parse_row(row, lineno, name, base, ids))
    if not pairs:
        raise DataError(f"{name}: no pairs after the header")
    return pairs


def _parse_row(row: list[str], lineno: int, name: str, base: Path, ids: set[int]) -> Pair:
    if len(row) < 2 or not row[0].strip() or not row[1].strip():
        raise DataError(f"{name} line {lineno}: expected video,track_id, got {','.join(row)!r}")
    video, raw_id = row[0].strip(), row[1].strip()
    try:
        tid = int(raw_id)
    except ValueError:
        raise DataError(f"{name} line {lineno}: track id {raw_id!r} is not a whole number") from None
    if tid not in ids:
        raise DataError(f"{name} line {lineno}: track id {tid} is not in the library ({_id_span(sorted(ids))})")
    vpath = Path(video) if os.path.isabs(video) else base / video
    if not vpath.is_file():
        raise DataError(f"{name} line {lineno}: video {video} not found")
    return Pair(os.fspath(vpath), tid, lineno)


# --------------------------------------------------------------------------- model


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


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainReport:
    model_path: str
    n_pairs: int
    n_train: int
    n_val: int
    n_tracks: int
    epochs: int
    best_epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    val_top5: float
    seconds: float
    #: The trained model (also saved at ``model_path``).
    model: RecommenderModel | None = field(default=None, repr=False, compare=False)

    def format_report(self) -> str:
        return (f"trained on {self.n_train} pairs ({self.n_val} for validation), {self.n_tracks} tracks; "
                f"{self.epochs} epochs (best {self.best_epoch}), loss {self.train_loss:.3f} train / "
                f"{self.val_loss:.3f} val, val accuracy {self.val_accuracy:.2f}, top-5 {self.val_top5:.2f}; "
                f"{self.seconds:.1f} s -> {self.model_path}")


@dataclass
class _Data:
    x: np.ndarray  # (N, VIDEO_DIM)
    y: np.ndarray  # (N,) track rows


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(val_fraction * n)) if n >= 5 else 0
    n_val = min(max(n_val, 1 if n >= 5 and val_fraction > 0 else 0), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _dataset(records: Sequence[VideoRecord], rows: np.ndarray, stats: FeatureStats, crops: int,
             rng: np.random.Generator) -> _Data:
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for rec, y in zip(records, rows, strict=True):
        win = window_vectors(rec, stats)
        xs.append(pool(win))
        ys.append(int(y))
        for sl in _crops(len(win), rng, crops):
            xs.append(pool(win[sl]))
            ys.append(int(y))
    return _Data(np.stack(xs) if xs else np.zeros((0, VIDEO_DIM)), np.array(ys, dtype=np.int64))


def train(pairs: Sequence[Pair], tracks: Sequence[TrackInfo], out_path: str | os.PathLike[str],
          analyze_fn: AnalyzeFn | None = None, epochs: int = 400, seed: int = 0,
          progress: Callable[[str, float], None] | None = None, cache_dir: str | None = None,
          library_name: str = "library", val_fraction: float = 0.2, patience: int = 40,
          config: ModelConfig | None = None, lr: float = 3e-3, weight_decay: float = 1e-3,
          crops: int = 4) -> TrainReport:
    """Train a model on ``pairs`` over ``tracks`` and save it to ``out_path``.

    Each video is analysed once (``analyze_fn``, default :func:`pipelines.analysis.analyze.analyze`)
    and cached in ``cache_dir`` (default: ``recommender-cache/`` next to the model). Training
    videos also contribute ``crops`` random sub-ranges of their windows (augmentation).
    """
    import torch

    t0 = time.perf_counter()
    cfg = config or ModelConfig()
    if not pairs:
        raise DataError("no training pairs")
    if epochs < 1:
        raise OptionError(f"epochs must be at least 1, got {epochs}")
    matrix = TrackMatrix(tracks)
    if len(matrix) == 0:
        raise LibraryError("the music library is empty: nothing to train on")
    rows = np.array([matrix.index_of(p.track_id) for p in pairs], dtype=np.int64)
    cache = cache_dir or os.path.join(os.path.dirname(os.path.abspath(out_path)), "recommender-cache")
    records = load_records([p.video for p in pairs], analyze_fn, cache, progress)
    tr, va = _split(len(pairs), val_fraction, seed)
    stats = FeatureStats.fit([records[i] for i in tr])
    rng = np.random.default_rng(seed)
    d_tr = _dataset([records[i] for i in tr], rows[tr], stats, crops, rng)
    d_va = _dataset([records[i] for i in va], rows[va], stats, 0, rng)
    targets = torch.as_tensor(soft_targets(matrix, cfg.epsilon), dtype=torch.float32)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        net = _build_net(VIDEO_DIM, len(matrix), cfg)
        fit = _fit(net, d_tr, d_va, targets, epochs, patience, lr, weight_decay, progress)
    finally:
        torch.set_num_threads(threads)
    model = RecommenderModel(net, stats, [int(i) for i in matrix.ids], library_name,
                             library_fingerprint(matrix.tracks), cfg)
    model.save(out_path)
    val_acc, val_top5 = _accuracy(model, d_va)
    report = TrainReport(os.fspath(out_path), len(pairs), len(tr), len(va), len(matrix), fit[0], fit[1], fit[2],
                         fit[3], val_acc, val_top5, time.perf_counter() - t0, model)
    log.info("%s", report.format_report())
    return report


def _fit(net: torch.nn.Module, d_tr: _Data, d_va: _Data, targets: torch.Tensor, epochs: int, patience: int,
         lr: float, weight_decay: float,
         progress: Callable[[str, float], None] | None) -> tuple[int, int, float, float]:
    """Full-batch Adam with early stopping on validation loss; restores the best weights.
    Returns (epochs run, best epoch, train loss, best val loss)."""
    import torch

    x_tr = torch.as_tensor(d_tr.x, dtype=torch.float32)
    y_tr = targets[torch.as_tensor(d_tr.y)]
    x_va = torch.as_tensor(d_va.x, dtype=torch.float32)
    y_va = targets[torch.as_tensor(d_va.y)] if len(d_va.y) else None
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    best = (math.inf, 0, {k: v.clone() for k, v in net.state_dict().items()})
    train_loss = math.nan
    epoch = 0
    for epoch in range(1, epochs + 1):
        net.train()
        opt.zero_grad()
        loss = _soft_ce(net(x_tr), y_tr)
        loss.backward()
        opt.step()
        train_loss = float(loss.item())
        net.eval()
        with torch.no_grad():
            val = float(_soft_ce(net(x_va), y_va).item()) if y_va is not None else train_loss
        if val < best[0] - 1e-5:
            best = (val, epoch, {k: v.clone() for k, v in net.state_dict().items()})
        elif epoch - best[1] >= patience:
            break
        if progress and epoch % 10 == 0:
            progress("train", epoch / epochs)
    net.load_state_dict(best[2])
    net.eval()
    if progress:
        progress("train", 1.0)
    return epoch, best[1], train_loss, best[0]


def _soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    import torch

    return -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _accuracy(model: RecommenderModel, data: _Data) -> tuple[float, float]:
    if len(data.y) == 0:
        return math.nan, math.nan
    p = model._logits(data.x)
    ranks = np.array([_rank_of(p[i], int(data.y[i]), np.array(model.track_ids)) for i in range(len(data.y))])
    return float(np.mean(ranks == 1)), float(np.mean(ranks <= 5))


# --------------------------------------------------------------------------- evaluation


def _rank_of(scores: np.ndarray, row: int, ids: np.ndarray) -> int:
    """1-based rank of ``row`` under descending scores, ties broken by ascending id."""
    s = scores[row]
    better = np.sum(scores > s) + np.sum((scores == s) & (ids < ids[row]))
    return int(better) + 1


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    top5: float
    mrr: float

    @classmethod
    def from_ranks(cls, ranks: Sequence[int]) -> Metrics:
        r = np.asarray(ranks, dtype=np.float64)
        if len(r) == 0:
            return cls(math.nan, math.nan, math.nan)
        return cls(float(np.mean(r == 1)), float(np.mean(r <= 5)), float(np.mean(1.0 / r)))


@dataclass(frozen=True)
class EvalReport:
    n: int
    n_tracks: int
    model: Metrics
    baseline: Metrics
    model_ranks: list[int] = field(default_factory=list)
    baseline_ranks: list[int] = field(default_factory=list)

    def format_report(self) -> str:
        lines = [f"{self.n} pairs, {self.n_tracks} tracks (chance: accuracy {1 / max(self.n_tracks, 1):.3f})",
                 f"{'ranker':<34}{'accuracy':>9}{'top-5':>8}{'MRR':>8}"]
        for name, m in (("trained model", self.model), ("affect distance (untrained)", self.baseline)):
            lines.append(f"{name:<34}{m.accuracy:>9.3f}{m.top5:>8.3f}{m.mrr:>8.3f}")
        return "\n".join(lines)


def evaluate(pairs: Sequence[Pair], model: RecommenderModel, tracks: Sequence[TrackInfo],
             analyze_fn: AnalyzeFn | None = None, cache_dir: str | None = None,
             progress: Callable[[str, float], None] | None = None) -> EvalReport:
    """Accuracy, top-5 accuracy and MRR of the model and of the untrained ranker
    (:func:`pipelines.library.ranking.rank`'s score without a model) on the same pairs."""
    matrix = TrackMatrix(tracks)
    model.check_library(matrix)
    if not pairs:
        raise DataError("no evaluation pairs")
    if cache_dir is None and model.path:
        cache_dir = os.path.join(os.path.dirname(os.path.abspath(model.path)), "recommender-cache")
    records = load_records([p.video for p in pairs], analyze_fn, cache_dir, progress)
    probs = np.stack([model.align(p, matrix) for p in model.predict_records(records)])
    m_ranks, b_ranks = [], []
    for k, (pair, rec) in enumerate(zip(pairs, records, strict=True)):
        row = matrix.index_of(pair.track_id)
        m_ranks.append(_rank_of(probs[k], row, matrix.ids))
        b_ranks.append(_rank_of(score_all(rec.profile, matrix), row, matrix.ids))
    return EvalReport(len(pairs), len(matrix), Metrics.from_ranks(m_ranks), Metrics.from_ranks(b_ranks),
                      m_ranks, b_ranks)


# --------------------------------------------------------------------------- synthetic data


def _lerp(lo: float, hi: float, x: float) -> float:
    return lo + (hi - lo) * x


def scene_tempo(arousal: float) -> float:
    """Soundtrack tempo of a synthetic scene: 70 bpm at arousal -1 up to 140 at +1."""
    return _lerp(70.0, 140.0, (float(np.clip(arousal, -1, 1)) + 1) / 2)


def scene_for_mood(valence: float, arousal: float, duration_s: float, rng: np.random.Generator | None = None,
                   jitter: float = 1.0) -> Scene:
    """A :class:`~pipelines.devtools.synth_video.Scene` that expresses (valence, arousal).

    Valence: brighter (0.12 -> 0.85), more saturated and warmer (hue blue 0.62 -> orange 0.08)
    pictures (Valdez & Mehrabian 1994). Arousal: faster motion (0.01 -> 0.9 widths/s), cuts
    from arousal > -0.2 (every 3 s -> every 0.6 s), louder sound (-46 -> -4 dBFS), a drum
    groove above arousal -0.1 (a hum below) at :func:`scene_tempo`. ``rng`` adds seeded
    jitter (scaled by ``jitter``) so no two clips are identical.
    """
    g = rng or np.random.default_rng(0)
    v = float(np.clip(valence, -1, 1))
    a = float(np.clip(arousal, -1, 1))
    uv, ua = (v + 1) / 2, (a + 1) / 2

    def j(scale: float) -> float:
        return float(g.normal(0.0, scale * jitter)) if rng is not None else 0.0

    hue = _lerp(0.62, 0.08, uv) + j(0.04)
    cut = None
    if a > -0.2:
        cut = max(0.4, _lerp(3.0, 0.6, (a + 0.2) / 1.2) * (1 + j(0.1)))
    return Scene(
        duration_s=duration_s,
        brightness=float(np.clip(_lerp(0.12, 0.85, uv) + j(0.04), 0.03, 0.97)),
        saturation=float(np.clip(_lerp(0.1, 0.55, uv) + _lerp(0.0, 0.35, ua) + j(0.04), 0.03, 0.97)),
        hue=float(hue % 1.0),
        speed=float(max(0.0, _lerp(0.01, 0.9, ua**2) * (1 + j(0.15)))),
        cut_every_s=cut,
        audio="drums" if a > -0.1 else "hum",
        loudness_dbfs=float(_lerp(-46.0, -4.0, ua) + j(2.0)),
        tempo_bpm=float(scene_tempo(a) + j(4.0)),
    )


#: Weight of tempo in the synthetic label rule (bpm difference of 60 counts like 1 VA unit).
LABEL_TEMPO_SCALE = 60.0


def best_track_for_mood(tracks: Sequence[TrackInfo], valence: float, arousal: float) -> TrackInfo:
    """The synthetic label rule: the track minimising
    ``(v_t - v)^2 + (a_t - a)^2 + ((tempo_t - scene_tempo(a)) / LABEL_TEMPO_SCALE)^2``
    (tempo term 0 for tracks without a known tempo); ties -> lowest id."""
    if not tracks:
        raise LibraryError("the music library is empty: nothing to pair videos with")

    def cost(t: TrackInfo) -> tuple[float, int]:
        c = (t.valence - valence) ** 2 + (t.arousal - arousal) ** 2
        if math.isfinite(t.tempo_bpm) and t.tempo_bpm > 0:
            c += ((t.tempo_bpm - scene_tempo(arousal)) / LABEL_TEMPO_SCALE) ** 2
        return (c, t.id)

    return min(tracks, key=cost)


def make_pairs(out_dir: str | os.PathLike[str], tracks: Sequence[TrackInfo], n: int = 200, seed: int = 0,
               duration_s: float = 6.0, size: tuple[int, int] = (160, 120), change_share: float = 0.3,
               fps: int = 12, progress: Callable[[str, float], None] | None = None) -> Path:
    """Write ``n`` SYNTHETIC mood clips to ``out_dir/videos/`` and ``out_dir/pairs.csv``.

    Each clip's mood (valence, arousal) is drawn uniformly from [-0.9, 0.9]^2; a share
    ``change_share`` of the clips change mood: 65 % of the clip in the main mood, 35 % (first
    or last) in a second one. The label is :func:`best_track_for_mood` of the main mood.
    Extra CSV columns (valence, arousal, change_s) record the generating mood.
    """
    if n < 1:
        raise OptionError(f"number of pairs must be at least 1, got {n}")
    if duration_s < 2.0:
        raise OptionError(f"clip duration must be at least 2 s, got {duration_s}")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = ["video,track_id,valence,arousal,change_s,note"]
    for k in range(n):
        v, a = (float(x) for x in rng.uniform(-0.9, 0.9, 2))
        scenes = [scene_for_mood(v, a, duration_s, rng)]
        change = math.nan
        if rng.uniform() < change_share:
            v2, a2 = (float(x) for x in rng.uniform(-0.9, 0.9, 2))
            main = round(0.65 * duration_s, 2)
            second = scene_for_mood(v2, a2, round(duration_s - main, 2), rng)
            scenes = [replace(scenes[0], duration_s=main), second]
            if rng.uniform() < 0.5:
                scenes.reverse()
            change = scenes[0].duration_s
        name = f"videos/clip{k + 1:04d}.mp4"
        write_video(os.fspath(out / name), scenes, width=size[0], height=size[1], fps=fps,
                    seed=int(rng.integers(0, 2**31)))
        label = best_track_for_mood(tracks, v, a)
        lines.append(f"{name},{label.id},{v:.3f},{a:.3f},{'' if math.isnan(change) else change},synthetic")
        if progress:
            progress("make-data", (k + 1) / n)
    csv_path = out / "pairs.csv"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path

