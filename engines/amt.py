"""Affective Multimodal Transformer (AMT): a small transformer over the per-window sequence of
picture and sound features that outputs valence, arousal and an emotion per window.

Input
    One vector per analysis window (2 s every 0.5 s): the named features of
    :func:`pipelines.analysis.analyze.analyze` (picture, faces, sound; plus ``clip_*`` / ``w2v_*``
    when the neural encoders ran) in the checkpoint's :attr:`AmtAffectModel.feature_names`
    order. Each is standardised with the training set's mean and std (clipped to +-5); a
    missing feature (no soundtrack, faces off, a column the data lacked) is 0 and its bit in
    the presence mask is 0. The network sees ``[z * mask, mask]``.

Network (:class:`AmtNet`)
    Linear embedding of ``2 F`` -> ``d_model``, plus a sinusoidal position code (Vaswani et
    al. 2017) -> a pre-LayerNorm ``TransformerEncoder`` (``layers`` x ``heads``, GELU) ->
    LayerNorm -> two heads: valence and arousal (``tanh``, in [-1, 1]) and emotion logits
    over :data:`~engines.base.EMOTIONS`. ``causal=True`` masks attention to later windows
    (for a live stream: a window's output never changes when later windows arrive).

Long videos
    Attention runs over chunks of ``context`` windows (64 = 32 s) with a hop of half that,
    so positions always lie in the range seen in training. Non-causal: each window takes the
    output of the chunk in which it is most central. Causal: each window takes the chunk in
    which it has at least half a context of history, which depends only on earlier windows,
    so the outputs for a prefix of a sequence equal those of the whole sequence.

Checkpoint (a directory, written atomically by :meth:`AmtAffectModel.save`)
    ``config.json`` -- format, :class:`AmtConfig`, feature names, normalisation mean/std,
    whether the emotion head was trained, training summary and the SHA-256 of
    ``model.pt`` -- the network's ``state_dict`` (``torch.save``, loaded with
    ``weights_only=True``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engines.affect import emotion_probs
from engines.base import EMOTIONS, AffectEstimate, AffectModel, EngineError, EngineUnavailable
from engines.stats import nan_mean_std
from engines.weights import AMT_CONFIG_FILE as CONFIG_FILE
from engines.weights import AMT_WEIGHTS_ENV as WEIGHTS_ENV
from engines.weights import find_amt_weights

FORMAT = "backscore-amt-1"
STATE_FILE = "model.pt"
#: Standardised features are clipped to +-Z_CLIP.
Z_CLIP = 5.0


class AmtModelError(EngineError):
    """A checkpoint directory that is missing, incomplete or not an AMT checkpoint."""


@dataclass(frozen=True)
class AmtConfig:
    d_model: int = 32
    heads: int = 4
    layers: int = 2
    ff: int = 64
    dropout: float = 0.1
    #: Windows per attention chunk (see the module doc); even, >= 2.
    context: int = 64
    causal: bool = False

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of heads ({self.heads})")
        if self.context < 2 or self.context % 2:
            raise ValueError(f"context must be an even number >= 2, got {self.context}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AmtConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def positional_encoding(length: int, dim: int) -> torch.Tensor:
    """``(length, dim)`` sinusoidal position code (sin on even, cos on odd channels)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return pe


def causal_mask(length: int) -> torch.Tensor:
    """``(length, length)`` boolean attention mask: True where a query may NOT look (the future)."""
    return torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)


class AmtNet(nn.Module):
    """The transformer (see the module doc). ``forward(z, mask, pad)`` -> ``(va, logits)``."""

    def __init__(self, n_features: int, config: AmtConfig) -> None:
        super().__init__()
        self.n_features = n_features
        self.config = config
        d = config.d_model
        self.embed = nn.Linear(2 * n_features, d)
        layer = nn.TransformerEncoderLayer(d, config.heads, config.ff, config.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.va_head = nn.Linear(d, 2)
        self.emotion_head = nn.Linear(d, len(EMOTIONS))

    def forward(self, z: torch.Tensor, mask: torch.Tensor, pad: torch.Tensor | None = None,
                offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``z``, ``mask``: ``(B, T, F)``; ``pad``: ``(B, T)`` True at padding; ``offset``: position
        of the first window (training places short crops anywhere in the context). Returns
        ``va`` ``(B, T, 2)`` in [-1, 1] and emotion logits ``(B, T, len(EMOTIONS))``."""
        t = z.shape[1]
        pe = positional_encoding(offset + t, self.config.d_model)[offset:].to(z)
        h = self.embed(torch.cat([z * mask, mask], dim=-1)) + pe
        attn = causal_mask(t).to(z.device) if self.config.causal else None
        h = self.norm(self.encoder(h, mask=attn, src_key_padding_mask=pad))
        return torch.tanh(self.va_head(h)), self.emotion_head(h)


def chunk_plan(length: int, context: int, causal: bool) -> list[tuple[int, int, int, int]]:
    """``(start, end, out_lo, out_hi)`` per attention chunk: the chunk covers windows
    ``[start, end)`` and supplies the outputs of ``[out_lo, out_hi)`` (see the module doc)."""
    if length <= context:
        return [(0, length, 0, length)] if length else []
    hop = context // 2
    plan: list[tuple[int, int, int, int]] = []
    start = 0
    while True:
        end = min(start + context, length)
        if causal:
            lo = 0 if start == 0 else start + hop
            hi = end
        else:
            lo = 0 if start == 0 else start + hop // 2
            hi = length if end >= length else start + hop + hop // 2
        plan.append((start, end, lo, hi))
        if end >= length:
            return plan
        start += hop


@dataclass(frozen=True, eq=False)
class Normaliser:
    """Per-feature mean and std (of the present training values)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray) -> Normaliser:
        """``rows`` ``(N, F)`` with NaN for missing values."""
        return cls(*nan_mean_std(rows))

    def apply(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(z, mask)`` float32: standardised values (0 where missing) and the presence mask."""
        present = np.isfinite(rows)
        z = np.clip((np.where(present, rows, 0.0) - self.mean) / self.std, -Z_CLIP, Z_CLIP)
        return np.where(present, z, 0.0).astype(np.float32), present.astype(np.float32)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class AmtAffectModel(AffectModel):
    """A trained AMT as an :class:`~engines.base.AffectModel` (``predict`` over one video's windows in order)."""

    def __init__(self, net: AmtNet, feature_names: Sequence[str], normaliser: Normaliser,
                 has_emotion: bool, info: Mapping[str, Any] | None = None, path: str | None = None) -> None:
        if net.n_features != len(feature_names):
            raise ValueError(f"network expects {net.n_features} features, got {len(feature_names)} names")
        self.net = net.eval()
        self.feature_names = tuple(feature_names)
        self.normaliser = normaliser
        self.has_emotion = has_emotion
        self.info = dict(info or {})
        self.path = path

    @property
    def config(self) -> AmtConfig:
        return self.net.config

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``config.json`` + ``model.pt`` into a fresh sibling folder, then swap it in."""
        target = Path(directory).absolute()
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and not target.is_dir():
            raise AmtModelError(f"{target} exists and is not a directory")
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
        try:
            torch.save({k: v.detach().cpu() for k, v in self.net.state_dict().items()}, tmp / STATE_FILE)
            meta = {
                "format": FORMAT, "config": asdict(self.config), "feature_names": list(self.feature_names),
                "mean": [float(x) for x in self.normaliser.mean], "std": [float(x) for x in self.normaliser.std],
                "has_emotion": self.has_emotion, "emotions": list(EMOTIONS), "info": self.info,
                "state_sha256": _sha256(tmp / STATE_FILE),
            }
            (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
            old = None
            if target.exists():
                old = target.parent / f"{tmp.name}.old"
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.path = os.fspath(target)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> AmtAffectModel:
        """Read a checkpoint written by :meth:`save`; any problem -> :class:`AmtModelError`."""
        d = Path(directory)
        if not (d / CONFIG_FILE).is_file() or not (d / STATE_FILE).is_file():
            raise AmtModelError(f"{d} is not an AMT checkpoint (needs {CONFIG_FILE} and {STATE_FILE}; "
                                "make one with `backscore amt train`)")
        try:
            meta = json.loads((d / CONFIG_FILE).read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT:
                raise AmtModelError(f"{d / CONFIG_FILE}: not a {FORMAT} checkpoint (format {meta.get('format')!r})")
            if list(meta.get("emotions", EMOTIONS)) != list(EMOTIONS):
                raise AmtModelError(f"{d}: trained for other emotion classes {meta['emotions']}")
            if meta.get("state_sha256") and meta["state_sha256"] != _sha256(d / STATE_FILE):
                raise AmtModelError(f"{d / STATE_FILE} does not match {CONFIG_FILE} (checksum differs)")
            names = [str(n) for n in meta["feature_names"]]
            net = AmtNet(len(names), AmtConfig.from_dict(meta["config"]))
            net.load_state_dict(torch.load(d / STATE_FILE, map_location="cpu", weights_only=True))
            norm = Normaliser(np.asarray(meta["mean"], np.float64), np.asarray(meta["std"], np.float64))
            if norm.mean.shape != (len(names),) or norm.std.shape != (len(names),):
                raise AmtModelError(f"{d / CONFIG_FILE}: normalisation stats do not match the feature list")
        except AmtModelError:
            raise
        except Exception as exc:
            raise AmtModelError(f"{d} is not a readable AMT checkpoint: {type(exc).__name__}: {exc}") from exc
        return cls(net, names, norm, bool(meta.get("has_emotion", False)), meta.get("info"), os.fspath(d))

    @classmethod
    def from_pretrained(cls, weights: str | None = None) -> AmtAffectModel:
        """Load from ``weights`` or ``$BACKSCORE_AMT_WEIGHTS``; :class:`EngineUnavailable` when neither is usable."""
        path, where = find_amt_weights(weights)
        if path is None:
            raise EngineUnavailable(f"AMT weights not found ({where}). Train a model with `backscore amt train "
                                    f"windows.csv -o MODEL_DIR`, then pass --weights amt=MODEL_DIR or set "
                                    f"{WEIGHTS_ENV}=MODEL_DIR")
        return cls.load(path)

    # ------------------------------------------------------------------ inference
    def matrix(self, windows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """``(T, F)`` float64 in :attr:`feature_names` order, NaN where a feature is missing."""
        rows = np.full((len(windows), len(self.feature_names)), np.nan)
        for i, w in enumerate(windows):
            for j, n in enumerate(self.feature_names):
                x = w.get(n)
                if x is not None:
                    rows[i, j] = x
        rows[~np.isfinite(rows)] = np.nan
        return rows

    def predict_arrays(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One video's windows ``(T, F)`` (NaN = missing) -> ``va`` ``(T, 2)`` and emotion
        probabilities ``(T, len(EMOTIONS))``, chunked as in the module doc."""
        z, mask = self.normaliser.apply(np.asarray(rows, np.float64).reshape(-1, len(self.feature_names)))
        n = len(z)
        va = np.zeros((n, 2), np.float32)
        logits = np.zeros((n, len(EMOTIONS)), np.float32)
        self.net.eval()
        with torch.inference_mode():
            for s, e, lo, hi in chunk_plan(n, self.config.context, self.config.causal):
                out_va, out_lg = self.net(torch.from_numpy(z[None, s:e]), torch.from_numpy(mask[None, s:e]))
                va[lo:hi] = out_va[0, lo - s : hi - s].numpy()
                logits[lo:hi] = out_lg[0, lo - s : hi - s].numpy()
        if self.has_emotion:
            ex = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = ex / ex.sum(axis=1, keepdims=True)
        else:  # no emotion labels in training: the prototypes of the predicted point
            probs = np.array([emotion_probs(float(v), float(a)) for v, a in va]).reshape(n, len(EMOTIONS))
        return va, probs

    def predict(self, windows: Sequence[Mapping[str, float]]) -> list[AffectEstimate]:
        rows = self.matrix(windows)
        va, probs = self.predict_arrays(rows)
        coverage = np.isfinite(rows).mean(axis=1) if rows.shape[1] else np.zeros(len(rows))
        out: list[AffectEstimate] = []
        for i in range(len(rows)):
            top = int(np.argmax(probs[i]))
            out.append(AffectEstimate(valence=float(va[i, 0]), arousal=float(va[i, 1]), emotion=EMOTIONS[top],
                                      confidence=float(probs[i, top] * coverage[i]),
                                      probs=tuple(float(p) for p in probs[i])))
        return out
