"""Exporting a torch module to an ONNX graph, and the on-disk cache of exported graphs.

:class:`ExportSpec` holds a model ready for export (wrapper module, example inputs, tensor names,
dynamic axes and their ranges); the specs of the engines' models are :mod:`engines.onnx_export.specs`.

Export uses the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): it needs
only the ``onnx`` package. The dynamo exporter of torch 2.13 needs ``onnxscript``, which
backscore does not depend on. Graphs are written atomically to
``$BACKSCORE_CACHE/onnx/<name>-<key>.onnx`` where ``key`` hashes the weights, the model
configuration, the example shapes, opset, torch version and :data:`EXPORT_VERSION`
(:func:`export_key`), so a second export of the same model is a file lookup.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engines.base import EngineUnavailable
from engines.settings import settings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'backscore[neural]' (onnx, onnxruntime)"
#: ONNX opset of every exported graph (part of every cache key).
OPSET = 17


def cache_dir() -> str:
    """Where exported graphs are kept: ``$BACKSCORE_CACHE/onnx`` (default ``~/.cache/backscore/onnx``)."""
    return os.fspath(settings().cache_root() / "onnx")


#: Bumped whenever a wrapper of :mod:`engines.onnx_export.specs` changes what it computes (part of every cache key).
EXPORT_VERSION = 1

#: ``(min, opt, max)`` of one dynamic axis.
AxisRange = tuple[int, int, int]


@dataclass
class ExportSpec:
    """A model ready for export: wrapper module, example inputs, names, dynamic axes and ranges.

    ``dynamic_axes`` maps a tensor name to ``{axis index: symbolic name}`` (as
    ``torch.onnx.export`` takes it); ``axis_ranges`` maps a symbolic name to ``(min, opt, max)``,
    used for TensorRT optimisation profiles and by the tests.
    """

    name: str
    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    axis_ranges: dict[str, AxisRange] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.example_inputs) != len(self.input_names):
            raise ValueError(f"{self.name}: {len(self.example_inputs)} example inputs, "
                             f"{len(self.input_names)} input names")
        for tensor, axes in self.dynamic_axes.items():
            for symbol in axes.values():
                lo, opt, hi = self.axis_ranges.get(symbol, (1, 1, 1))
                if not 1 <= lo <= opt <= hi:
                    raise ValueError(f"{self.name}: bad range {(lo, opt, hi)} for axis {symbol!r} of {tensor}")


# --------------------------------------------------------------------------- hashing


def _tensor_bytes(t: torch.Tensor) -> bytes:
    import torch

    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return bytes(flat.view(torch.uint8).numpy().tobytes())


def weights_hash(module: torch.nn.Module) -> str:
    """sha256 of a module's state (names, dtypes, shapes, bytes) and of the configs of its submodules."""
    h = hashlib.sha256()
    h.update(type(module).__qualname__.encode())
    for name, t in module.state_dict().items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(_tensor_bytes(t))
    seen: set[int] = set()
    for sub in module.modules():
        cfg = getattr(sub, "config", None)
        if cfg is not None and id(cfg) not in seen and hasattr(cfg, "to_json_string"):
            seen.add(id(cfg))
            h.update(cfg.to_json_string(use_diff=False).encode())
    return h.hexdigest()


def export_key(spec: ExportSpec) -> str:
    """Cache key of an exported graph: weights, configs, wrapper, example shapes, names, axes, opset, torch."""
    import torch

    meta = {
        "export_version": EXPORT_VERSION,
        "opset": OPSET,
        "torch": torch.__version__,
        "wrapper": type(spec.module).__qualname__,
        "inputs": [[n, str(t.dtype), list(t.shape)]
                   for n, t in zip(spec.input_names, spec.example_inputs, strict=True)],
        "outputs": list(spec.output_names),
        "dynamic_axes": {k: {str(a): s for a, s in v.items()} for k, v in sorted(spec.dynamic_axes.items())},
        "weights": weights_hash(spec.module),
    }
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- export


def export_graph(
    module: torch.nn.Module,
    example_inputs: Sequence[torch.Tensor],
    path: str,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> str:
    """Export ``module`` (eval mode, several inputs) to ``path`` atomically with the given dynamic axes.

    The example inputs are moved to the module's device (a module a torch CUDA runner moved still exports).
    """
    import torch

    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError as exc:
        raise EngineUnavailable(f"ONNX export needs the onnx package: {INSTALL_HINT}") from exc
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=folder)
    os.close(fd)
    param = next(module.parameters(), None)
    examples = tuple(t.to(param.device) for t in example_inputs) if param is not None else tuple(example_inputs)
    try:
        module.eval()
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes; checked by tests
            torch.onnx.export(module, examples, tmp, input_names=list(input_names),
                              output_names=list(output_names),
                              dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                              opset_version=OPSET, dynamo=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    log.info("exported %s to %s", type(module).__name__, path)
    return path


def export_spec(spec: ExportSpec, path: str | None = None) -> str:
    """The ONNX file of ``spec``: ``path`` if given, else ``$BACKSCORE_CACHE/onnx/<name>-<key>.onnx``.

    Exported only when the file does not exist yet (the key changes with the weights).
    """
    target = path or os.path.join(cache_dir(), f"{spec.name}-{export_key(spec)}.onnx")
    if not os.path.exists(target):
        export_graph(spec.module, spec.example_inputs, target, spec.input_names, spec.output_names,
                     spec.dynamic_axes)
    return target
