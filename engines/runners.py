"""Runners: a model as a callable, numpy arrays in (the model's inputs, in order), the first output out.

One class per runtime: :class:`TorchRunner` (the torch module itself), :class:`OrtRunner` (an ONNX
graph in an ONNX Runtime session) and the adapter of :class:`engines.tensorrt_backend.TensorRTRunner`.
Which runner a model gets, on which backend, is :mod:`engines.backends`' choice
(:func:`engines.backends.spec_runner`, :func:`~engines.backends.model_runner`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from engines.base import EngineUnavailable

if TYPE_CHECKING:
    import torch


class Runner(Protocol):
    """numpy arrays in (the model's inputs, in order), the first output as numpy out."""

    backend: str
    input_names: tuple[str, ...]

    def __call__(self, *arrays: np.ndarray) -> np.ndarray: ...


def _check_arity(names: Sequence[str], arrays: Sequence[Any]) -> None:
    if len(arrays) != len(names):
        raise ValueError(f"expected {len(names)} inputs ({', '.join(names)}), got {len(arrays)}")


class TorchRunner:
    """The torch module itself (moved to ``device``, eval mode, inference mode)."""

    def __init__(self, module: torch.nn.Module, example_inputs: Sequence[torch.Tensor], input_names: Sequence[str],
                 device: str = "cpu", backend: str = "torch-cpu") -> None:
        import torch

        self.backend = backend
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.input_names = tuple(input_names)
        self.dtypes = [t.dtype for t in example_inputs]

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        import torch

        _check_arity(self.input_names, arrays)
        with torch.inference_mode():
            xs = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device, dtype=d)
                  for a, d in zip(arrays, self.dtypes, strict=True)]
            out = self.module(*xs)
        return np.asarray(out.float().cpu().numpy())


_ORT_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_, "tensor(uint8)": np.uint8,
}


class OrtRunner:
    """An ONNX graph in an ONNX Runtime session (CUDA provider for ``device="cuda"``, else CPU)."""

    def __init__(self, path: str, input_names: Sequence[str] | None = None, device: str = "cpu",
                 threads: int | None = None, backend: str = "ort-cpu") -> None:
        import onnxruntime as ort

        self.backend = backend
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else [
            "CPUExecutionProvider"]
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, sess_options=options, providers=providers)
        if device.startswith("cuda") and self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise EngineUnavailable("ONNX Runtime did not start the CUDA execution provider for " + path)
        graph_inputs = {i.name: i.type for i in self.session.get_inputs()}
        self.input_names = tuple(input_names) if input_names is not None else tuple(graph_inputs)
        if sorted(self.input_names) != sorted(graph_inputs):
            raise ValueError(f"graph inputs are {list(graph_inputs)}, not {list(self.input_names)}")
        self.dtypes = {n: _ORT_TYPES.get(t, np.float32) for n, t in graph_inputs.items()}
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        _check_arity(self.input_names, arrays)
        feed = {n: np.ascontiguousarray(a, dtype=self.dtypes[n]) for n, a in zip(self.input_names, arrays, strict=True)}
        return np.asarray(self.session.run([self.output_name], feed)[0])


class _TensorRTAdapter:
    def __init__(self, runner: Any) -> None:
        self.backend = "tensorrt"
        self.runner = runner
        self.input_names: tuple[str, ...] = tuple(runner.input_names)

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        return np.asarray(self.runner(*arrays))

