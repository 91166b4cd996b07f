"""ONNX export and ONNX Runtime inference for the engines' torch models.

A torch model is exported once (dynamic batch axis; the legacy TorchScript exporter, which
needs only the ``onnx`` package) to a file cached on disk under a key of the caller's choice
(e.g. a hash of the weights), then run with ONNX Runtime: the CUDA provider when asked for and
available, else the CPU provider. The same ONNX graphs are what a TensorRT engine would be
built from (not available on the machines this was developed on).

The export itself is :mod:`engines.onnx_export`'s (:func:`~engines.onnx_export.export_graph`),
which also owns the cache directory (:func:`cache_dir`) and :data:`OPSET`; they are re-exported
here. This module depends on that one, never the other way round.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.base import EngineUnavailable

# The export side (and the cache directory and opset it uses) lives in engines.onnx_export, which
# does not import this module; the names are re-exported here for existing callers.
from engines.onnx_export import INSTALL_HINT as INSTALL_HINT
from engines.onnx_export import OPSET as OPSET
from engines.onnx_export import cache_dir as cache_dir
from engines.onnx_export import export_graph

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: str,
    input_name: str = "input",
    output_name: str = "output",
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> str:
    """Export ``module`` (eval mode) to ``path`` atomically; axis 0 is dynamic ("batch") by default.

    One input and one output; :func:`engines.onnx_export.export_graph` does the work.
    """
    axes = dict(dynamic_axes) if dynamic_axes is not None else {input_name: {0: "batch"}, output_name: {0: "batch"}}
    return export_graph(module, (example,), path, (input_name,), (output_name,), axes)


def ort_providers(device: str = "cpu") -> list[str]:
    """ONNX Runtime providers to use for ``device`` ("cuda" falls back to CPU when unavailable)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise EngineUnavailable(f"the ONNX Runtime backend needs onnxruntime: {INSTALL_HINT}") from exc
    available = set(ort.get_available_providers())
    wanted = (["CUDAExecutionProvider"] if device.startswith("cuda") else []) + ["CPUExecutionProvider"]
    return [p for p in wanted if p in available]


class OnnxModel:
    """One ONNX graph in an ONNX Runtime session: ``run(x) -> first output`` (numpy in, numpy out)."""

    def __init__(self, path: str, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        providers = ort_providers(device)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, sess_options=options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.providers: Sequence[str] = self.session.get_providers()

    def run(self, x: np.ndarray) -> np.ndarray:
        out: Any = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(out[0])
