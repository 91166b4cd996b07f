"""Training and evaluating the recommender (:class:`pipelines.library.recommender.RecommenderModel`).

Training (:func:`train`)
    Each video of the pairs is analysed once (:func:`pipelines.training.recommender_data.load_records`)
    and pooled into one vector; training videos also contribute random sub-ranges of their
    windows (augmentation). Loss: cross-entropy against the soft targets of
    :func:`pipelines.training.recommender_data.soft_targets`; Adam, full batch, early stopping on
    a validation split, seeded, CPU. A few seconds for hundreds of videos.

Evaluation (:func:`evaluate`)
    Accuracy, top-5 accuracy and mean reciprocal rank of the model and of the untrained
    affect-distance ranker (:func:`pipelines.library.ranking.score_all`) on the same pairs.

Pairs come from a CSV of real choices (:mod:`pipelines.training.recommender_data`, whose
``REAL_PAIRS_HOWTO`` says how to collect them) or from the synthetic set of
:mod:`pipelines.training.recommender_pairs`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from pipelines.errors import DataError, LibraryError, OptionError
from pipelines.library.ranking import TrackMatrix, score_all
from pipelines.library.recommender import (
    VIDEO_DIM,
    FeatureStats,
    ModelConfig,
    RecommenderModel,
    VideoRecord,
    _build_net,
    library_fingerprint,
    pool,
    window_vectors,
)
from pipelines.library.tracks import TrackInfo
from pipelines.training.recommender_data import AnalyzeFn, Pair, load_records, soft_targets

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


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
