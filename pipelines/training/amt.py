"""Train and evaluate the AMT (``engines/amt.py``) on a window dataset (``pipelines/training/amt_dataset.py``).

Training
    Videos are split into training and validation sets (``val_fraction`` of the videos, at
    least one when there are five or more). Normalisation statistics come from the training
    windows. Each epoch every training video contributes one random crop of at most
    ``context`` windows, placed at a random position offset inside the context (so short
    clips train every position); whole feature columns are dropped at random
    (``feature_dropout``) so the model copes with missing modalities. Loss: mean squared
    error of valence and arousal on labelled windows + ``emotion_weight`` x cross-entropy
    on windows with an emotion. Adam, mini-batches of ``batch`` videos, seeded, CPU; the
    weights with the best validation loss are kept (early stopping after ``patience``
    epochs without improvement).

Evaluation
    Per window, over the labelled windows of every video: mean absolute error and Lin's
    concordance correlation coefficient (CCC) for valence and arousal, and emotion accuracy
    on the windows with an emotion -- for the AMT, for the default
    :class:`~engines.affect.FeatureAffectModel` on the same features, and for a constant
    predictor (the training set's mean valence/arousal and most frequent emotion).
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

from engines.base import EMOTIONS, AffectModel
from pipelines.errors import DataError, OptionError
from pipelines.training.amt_dataset import VideoWindows, WindowData

if TYPE_CHECKING:
    import torch

    from engines.amt import AmtAffectModel, AmtConfig

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- metrics


def ccc(pred: np.ndarray, true: np.ndarray) -> float:
    """Lin's concordance correlation coefficient (1 = identical, 0 for a constant prediction)."""
    x, y = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if len(x) < 2:
        return math.nan
    mx, my = x.mean(), y.mean()
    cov = np.mean((x - mx) * (y - my))
    den = x.var() + y.var() + (mx - my) ** 2
    return float(2 * cov / den) if den > 0 else math.nan


@dataclass(frozen=True)
class Metrics:
    mae_valence: float
    mae_arousal: float
    ccc_valence: float
    ccc_arousal: float
    emotion_accuracy: float
    n_va: int
    n_emotion: int

    @classmethod
    def compute(cls, va_pred: np.ndarray, va_true: np.ndarray, emo_pred: np.ndarray,
                emo_true: np.ndarray) -> Metrics:
        lab = np.all(np.isfinite(va_true), axis=1)
        p, t = va_pred[lab], va_true[lab]
        e = emo_true >= 0
        mae = np.abs(p - t).mean(axis=0) if len(t) else np.array([math.nan, math.nan])
        acc = float(np.mean(emo_pred[e] == emo_true[e])) if e.any() else math.nan
        return cls(float(mae[0]), float(mae[1]), ccc(p[:, 0], t[:, 0]), ccc(p[:, 1], t[:, 1]), acc,
                   int(lab.sum()), int(e.sum()))


def _predict(model: AffectModel, data: WindowData) -> tuple[np.ndarray, np.ndarray]:
    va, emo = [], []
    for v in data.videos:
        est = model.predict(v.windows(data.feature_names))
        va.append(np.array([[e.valence, e.arousal] for e in est]).reshape(-1, 2))
        emo.append(np.array([EMOTIONS.index(e.emotion) for e in est], dtype=np.int64))
    return np.concatenate(va), np.concatenate(emo)


def _labels(data: WindowData) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([v.va for v in data.videos]), np.concatenate([v.emotion for v in data.videos])


def evaluate_model(model: AffectModel, data: WindowData) -> Metrics:
    va_true, emo_true = _labels(data)
    va_pred, emo_pred = _predict(model, data)
    return Metrics.compute(va_pred, va_true, emo_pred, emo_true)


@dataclass(frozen=True)
class EvalReport:
    n_videos: int
    n_windows: int
    rows: list[tuple[str, Metrics]]

    def format_report(self) -> str:
        first = self.rows[0][1]
        lines = [f"{self.n_windows} windows in {self.n_videos} videos ({first.n_va} with valence/arousal, "
                 f"{first.n_emotion} with an emotion)",
                 f"{'model':<28}{'MAE V':>8}{'MAE A':>8}{'CCC V':>8}{'CCC A':>8}{'emotion acc':>13}"]
        for name, m in self.rows:
            cells = [round(x, 3) + 0.0 for x in (m.mae_valence, m.mae_arousal, m.ccc_valence, m.ccc_arousal)]
            lines.append(f"{name:<28}" + "".join(f"{x:>8.3f}" for x in cells) + f"{m.emotion_accuracy:>13.3f}")
        return "\n".join(lines)


def evaluate(model: AffectModel, data: WindowData, constant: tuple[float, float, int] | None = None) -> EvalReport:
    """The AMT, the default feature model and a constant predictor on the same windows."""
    from engines.affect import FeatureAffectModel

    va_true, emo_true = _labels(data)
    if not np.isfinite(va_true).any() and not (emo_true >= 0).any():
        raise DataError(f"{data.source or 'data'}: no labelled windows to evaluate on")
    rows = [("AMT", evaluate_model(model, data)), ("default (feature terms)", evaluate_model(FeatureAffectModel(),
                                                                                            data))]
    if constant is None:
        constant = _constant(data)
    n = len(va_true)
    const_va = np.tile(np.array(constant[:2], np.float64), (n, 1))
    rows.append(("constant (training mean)", Metrics.compute(const_va, va_true, np.full(n, constant[2]),
                                                             emo_true)))
    return EvalReport(len(data.videos), data.n_windows, rows)


def _constant(data: WindowData) -> tuple[float, float, int]:
    va, emo = _labels(data)
    lab = np.all(np.isfinite(va), axis=1)
    mean = va[lab].mean(axis=0) if lab.any() else np.zeros(2)
    counts = np.bincount(emo[emo >= 0], minlength=len(EMOTIONS))
    return float(mean[0]), float(mean[1]), int(np.argmax(counts)) if counts.sum() else EMOTIONS.index("neutral")


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 40
    seed: int = 0
    batch: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    patience: int = 10
    emotion_weight: float = 0.5
    feature_dropout: float = 0.1


@dataclass(frozen=True)
class TrainReport:
    model_dir: str
    n_train: int
    n_val: int
    n_windows: int
    epochs: int
    best_epoch: int
    train_loss: float
    val_loss: float
    seconds: float
    val: Metrics | None = field(default=None)

    def format_report(self) -> str:
        val = ""
        if self.val is not None:
            val = (f"; validation MAE V {self.val.mae_valence:.3f} A {self.val.mae_arousal:.3f}, CCC V "
                   f"{self.val.ccc_valence:.3f} A {self.val.ccc_arousal:.3f}, emotion acc "
                   f"{self.val.emotion_accuracy:.3f}")
        return (f"trained on {self.n_train} videos ({self.n_val} for validation, {self.n_windows} windows); "
                f"{self.epochs} epochs (best {self.best_epoch}), loss {self.train_loss:.4f} train / "
                f"{self.val_loss:.4f} val{val}; {self.seconds:.1f} s -> {self.model_dir}")


def split_videos(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(int(round(val_fraction * n)), 1), n - 1) if n >= 5 and val_fraction > 0 else 0
    return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])


def train(data: WindowData, out_dir: str | os.PathLike[str], options: TrainOptions | None = None,
          config: AmtConfig | None = None, progress: Callable[[float], None] | None = None) -> TrainReport:
    """Train an AMT on ``data`` and save it to ``out_dir`` (see the module doc).

    ``config``: an :class:`engines.amt.AmtConfig` (default: its defaults).
    """
    import torch

    from engines.amt import AmtAffectModel, AmtConfig, AmtNet, Normaliser

    o = options or TrainOptions()
    cfg = config or AmtConfig()
    if o.epochs < 1:
        raise OptionError(f"--epochs must be at least 1, got {o.epochs}")
    va_all, _ = _labels(data)
    if not np.isfinite(va_all).any():
        raise DataError(f"{data.source or 'data'}: no window has valence/arousal labels")
    t0 = time.perf_counter()
    tr, va = split_videos(len(data.videos), o.val_fraction, o.seed)
    train_set, val_set = data.subset(tr), data.subset(va)
    norm = Normaliser.fit(np.concatenate([v.features for v in train_set.videos]))
    has_emotion = bool((np.concatenate([v.emotion for v in train_set.videos]) >= 0).any())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(o.seed)
        net = AmtNet(len(data.feature_names), cfg)
        model = AmtAffectModel(net, data.feature_names, norm, has_emotion)
        epochs, best_epoch, train_loss, val_loss = _fit(model, train_set, val_set, o, progress)
    finally:
        torch.set_num_threads(threads)
    const = _constant(train_set)
    model.info.update({"trained_on": os.path.basename(data.source) if data.source else "", "videos": len(tr),
                       "windows": train_set.n_windows, "epochs": epochs, "best_epoch": best_epoch,
                       "seed": o.seed, "constant": list(const)})
    model.save(out_dir)
    val_metrics = evaluate_model(model, val_set) if val_set.videos else None
    return TrainReport(os.fspath(out_dir), len(tr), len(va), train_set.n_windows, epochs, best_epoch, train_loss,
                       val_loss, time.perf_counter() - t0, val_metrics)


@dataclass
class _Batch:
    z: torch.Tensor
    mask: torch.Tensor
    pad: torch.Tensor
    va: torch.Tensor
    emotion: torch.Tensor
    offset: int


def _batch(videos: Sequence[VideoWindows], model: AmtAffectModel, context: int, rng: np.random.Generator,
           dropout: float) -> _Batch:
    """Padded tensors of random crops (one per video), at one random position offset."""
    import torch

    crops = []
    for v in videos:
        n = len(v)
        length = min(n, context)
        s = int(rng.integers(0, n - length + 1))
        crops.append((v, s, s + length))
    t = max(e - s for _, s, e in crops)
    f = len(model.feature_names)
    z = np.zeros((len(crops), t, f), np.float32)
    mask = np.zeros((len(crops), t, f), np.float32)
    pad = np.ones((len(crops), t), bool)
    va = np.full((len(crops), t, 2), np.nan, np.float32)
    emo = np.full((len(crops), t), -1, np.int64)
    for i, (v, s, e) in enumerate(crops):
        zi, mi = model.normaliser.apply(v.features[s:e])
        if dropout > 0:
            mi = mi * (rng.random(f) >= dropout).astype(np.float32)[None, :]
        z[i, : e - s], mask[i, : e - s], pad[i, : e - s] = zi, mi, False
        va[i, : e - s], emo[i, : e - s] = v.va[s:e], v.emotion[s:e]
    offset = int(rng.integers(0, context - t + 1))
    return _Batch(torch.from_numpy(z), torch.from_numpy(mask), torch.from_numpy(pad), torch.from_numpy(va),
                  torch.from_numpy(emo), offset)


def _loss(va_pred: torch.Tensor, logits: torch.Tensor, va: torch.Tensor, emo: torch.Tensor,
          emotion_weight: float) -> torch.Tensor:
    import torch

    lab = torch.isfinite(va)
    sq = torch.where(lab, (va_pred - torch.nan_to_num(va)) ** 2, torch.zeros_like(va_pred))
    loss = sq.sum() / lab.sum().clamp(min=1)
    e = emo >= 0
    if emotion_weight > 0 and bool(e.any()):
        loss = loss + emotion_weight * torch.nn.functional.cross_entropy(logits[e], emo[e])
    return loss


def _val_loss(model: AmtAffectModel, data: WindowData, emotion_weight: float) -> float:
    sq, n, ce, ne = 0.0, 0, 0.0, 0
    for v in data.videos:
        va, probs = model.predict_arrays(v.features)
        lab = np.isfinite(v.va)
        sq += float(np.sum((va[lab] - v.va[lab]) ** 2))
        n += int(lab.sum())
        e = v.emotion >= 0
        if e.any():
            ce += float(-np.log(np.maximum(probs[e, v.emotion[e]], 1e-9)).sum())
            ne += int(e.sum())
    loss = sq / max(n, 1)
    return loss + (emotion_weight * ce / ne if ne and model.has_emotion else 0.0)


def _fit(model: AmtAffectModel, train_set: WindowData, val_set: WindowData, o: TrainOptions,
         progress: Callable[[float], None] | None) -> tuple[int, int, float, float]:
    import torch

    net = model.net
    rng = np.random.default_rng(o.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    best = (math.inf, 0, {k: v.clone() for k, v in net.state_dict().items()})
    train_loss, epoch = math.nan, 0
    for epoch in range(1, o.epochs + 1):
        net.train()
        order = rng.permutation(len(train_set.videos))
        losses = []
        for i in range(0, len(order), o.batch):
            b = _batch([train_set.videos[j] for j in order[i : i + o.batch]], model, model.config.context, rng,
                       o.feature_dropout)
            va_pred, logits = net(b.z, b.mask, b.pad, offset=b.offset)
            loss = _loss(va_pred, logits, b.va, b.emotion, o.emotion_weight)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.item()))
        train_loss = float(np.mean(losses)) if losses else math.nan
        net.eval()
        val = _val_loss(model, val_set, o.emotion_weight) if val_set.videos else train_loss
        if val < best[0] - 1e-6:
            best = (val, epoch, {k: v.clone() for k, v in net.state_dict().items()})
        elif epoch - best[1] >= o.patience:
            break
        if progress:
            progress(epoch / o.epochs)
    net.load_state_dict(best[2])
    net.eval()
    log.info("amt: %d epochs, best %d (val loss %.4f)", epoch, best[1], best[0])
    return epoch, best[1], train_loss, best[0]
