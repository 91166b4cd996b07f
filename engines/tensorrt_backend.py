"""TensorRT backend: an engine built from an exported ONNX graph, run on torch CUDA tensors.

Written against the TensorRT 10 Python API (``import tensorrt``; docs.nvidia.com/deeplearning/
tensorrt/latest/_static/python-api). **Not executed where it was written**: those machines have no
NVIDIA GPU and ``tensorrt`` is not installable there; the tests run what needs no GPU (cache keys,
profile shapes, the availability check, and the build steps against a stand-in module) and skip
the rest with the reason. The module imports without ``tensorrt``: it is imported inside the
functions that need it. It does not import :mod:`engines.backends` (which dispatches to it); the
torch/GPU checks it shares with that module are in :mod:`engines.devices`.

Build (:func:`build_plan`):

1. ``trt.Builder(logger).create_network(0)`` (TensorRT 10 networks are always explicit-batch) and
   ``trt.OnnxParser(network, logger).parse_from_file(onnx_path)``; parser errors are reported.
2. ``builder.create_builder_config()``: workspace limit with
   ``set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, bytes)``; ``precision="fp16"`` sets
   ``trt.BuilderFlag.FP16`` (TensorRT may then pick FP16 kernels; accuracy-critical layers can stay FP32).
   TensorRT 11 removed that flag (networks are strongly typed, precision comes from the graph):
   there the build falls back to the FP32 graph, with a warning, and the plan is keyed ``fp32``.
3. One optimisation profile (``builder.create_optimization_profile()``,
   ``profile.set_shape(name, min, opt, max)`` for every network input,
   ``config.add_optimization_profile(profile)``): shapes from :func:`profile_shapes` -- static
   dimensions as exported, dynamic ones from the export spec's ``(min, opt, max)`` per axis.
4. ``builder.build_serialized_network(network, config)`` -> the plan, written atomically to
   ``$BACKSCORE_CACHE/tensorrt/<onnx name>-<key>.plan`` (plus a ``.json`` saying what the key
   covers). :func:`plan_key` is the sha256 of the ONNX file's sha256, the GPU name and compute
   capability, the TensorRT version, the precision and the profile shapes: a plan is rebuilt for
   another GPU, TensorRT, precision, profile or model, and reused otherwise.

Run (:class:`TensorRTRunner`): ``trt.Runtime(logger).deserialize_cuda_engine(plan)``,
``engine.create_execution_context()``; per call, inputs become torch CUDA tensors of the
engine's I/O dtypes (``engine.get_tensor_dtype``), ``context.set_input_shape`` and
``context.set_tensor_address(name, tensor.data_ptr())`` for every input, outputs allocated with
``context.get_tensor_shape`` and bound the same way, then ``context.execute_async_v3(stream)``
on a dedicated torch CUDA stream, which the caller's current stream then waits for.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.base import EngineError, EngineUnavailable
from engines.devices import torch_cuda, torch_cuda_light
from engines.settings import settings

if TYPE_CHECKING:
    import torch

    from engines.onnx_export import ExportSpec

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install tensorrt: TensorRT 10, Linux with an NVIDIA GPU, and a CUDA build of torch for the buffers"
PRECISIONS: tuple[str, ...] = ("fp16", "fp32")
#: Default builder workspace limit.
WORKSPACE_BYTES = 4 << 30

#: ``(min, opt, max)`` shapes of one input.
ShapeTriple = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
#: input name -> its shapes: one optimisation profile.
Profile = dict[str, ShapeTriple]


def plan_cache_dir() -> str:
    """Where engine plans are kept: ``$BACKSCORE_CACHE/tensorrt`` (default ``~/.cache/backscore/tensorrt``)."""
    return os.fspath(settings().cache_root() / "tensorrt")


def _import_trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineUnavailable(f"the TensorRT backend needs the tensorrt package: {INSTALL_HINT}") from exc
    return trt


# --------------------------------------------------------------------------- availability


def available(light: bool = False) -> tuple[bool, str]:
    """``(True, what)`` when TensorRT can run here, else ``(False, why not)``.

    Needs the ``tensorrt`` package and a CUDA device seen by torch (torch CUDA tensors are the
    engine's buffers). ``light`` decides without importing torch or tensorrt (for
    ``backscore engines``): the package is looked up, torch's build read from its files and the
    GPU from ``/dev`` and ``/proc`` (the probes of :mod:`engines.devices`).
    """
    if importlib.util.find_spec("tensorrt") is None:
        return False, f"package not installed: tensorrt ({INSTALL_HINT})"
    if light:
        ok, why = torch_cuda_light()
        return (True, f"tensorrt installed; {why}") if ok else (False, f"tensorrt installed, but {why}")
    try:
        trt = _import_trt()
    except Exception as exc:  # a broken install (missing libnvinfer, ...) raises more than ImportError
        return False, f"tensorrt does not import: {type(exc).__name__}: {exc}"
    ok, why = torch_cuda()
    if not ok:
        return False, f"TensorRT {trt.__version__} installed, but {why}"
    name, cc = device_identity(0)
    return True, f"TensorRT {trt.__version__}, {name} (compute capability {cc[0]}.{cc[1]})"


def device_identity(device_index: int = 0) -> tuple[str, tuple[int, int]]:
    """GPU name and compute capability of a CUDA device (part of the plan key)."""
    import torch

    major, minor = torch.cuda.get_device_capability(device_index)
    return str(torch.cuda.get_device_name(device_index)), (int(major), int(minor))


# --------------------------------------------------------------------------- profiles and keys


def default_range(example: int) -> tuple[int, int, int]:
    """``(min, opt, max)`` of a dynamic axis no range was given for: 1, the example size, 8x it."""
    return 1, example, max(example * 8, 1)


def profile_shapes(input_shapes: Mapping[str, Sequence[int]], dynamic_axes: Mapping[str, Mapping[int, str]],
                   axis_ranges: Mapping[str, tuple[int, int, int]] | None = None) -> Profile:
    """One optimisation profile: per input, ``(min, opt, max)`` shapes.

    ``input_shapes``: each input's example (exported) shape; ``dynamic_axes``: tensor name ->
    ``{axis: symbolic name}`` as given to the exporter; ``axis_ranges``: symbolic name ->
    ``(min, opt, max)`` (:func:`default_range` of the example size for a name without one).
    Static axes keep their exported size in all three shapes. Axes that share a symbolic name
    get the same range.
    """
    ranges = dict(axis_ranges or {})
    out: Profile = {}
    for name, shape in input_shapes.items():
        dims = [int(d) for d in shape]
        lo, opt, hi = list(dims), list(dims), list(dims)
        for axis, symbol in dynamic_axes.get(name, {}).items():
            if not -len(dims) <= axis < len(dims):
                raise ValueError(f"input {name!r} has no axis {axis} (shape {tuple(dims)})")
            r = ranges.setdefault(symbol, default_range(dims[axis]))
            if not 1 <= r[0] <= r[1] <= r[2]:
                raise ValueError(f"range of axis {symbol!r} must be 1 <= min <= opt <= max, got {r}")
            lo[axis], opt[axis], hi[axis] = r
        out[name] = (tuple(lo), tuple(opt), tuple(hi))
    return out


def spec_profile(spec: ExportSpec) -> Profile:
    """:func:`profile_shapes` of an export spec (its example shapes, dynamic axes and ranges)."""
    shapes = {n: tuple(t.shape) for n, t in zip(spec.input_names, spec.example_inputs, strict=True)}
    return profile_shapes(shapes, spec.dynamic_axes, spec.axis_ranges)


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str) -> str:
    """sha256 of a file (remembered per path, size and mtime: ONNX graphs can be a GB)."""
    st = os.stat(path)
    ident = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if ident not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[ident] = h.hexdigest()
    return _FILE_HASHES[ident]


def plan_key(onnx_sha256: str, gpu_name: str, compute_capability: tuple[int, int], trt_version: str,
             precision: str, profile: Mapping[str, ShapeTriple]) -> str:
    """sha256 (hex) of everything a plan depends on: model, GPU, TensorRT version, precision, profile."""
    meta = plan_meta(onnx_sha256, gpu_name, compute_capability, trt_version, precision, profile)
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


def plan_meta(onnx_sha256: str, gpu_name: str, compute_capability: tuple[int, int], trt_version: str,
              precision: str, profile: Mapping[str, ShapeTriple]) -> dict[str, Any]:
    """What :func:`plan_key` hashes, as JSON-ready data (also written next to each plan)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return {
        "onnx_sha256": onnx_sha256,
        "gpu": gpu_name,
        "compute_capability": f"{compute_capability[0]}.{compute_capability[1]}",
        "tensorrt": trt_version,
        "precision": precision,
        "profile": {name: [list(s) for s in shapes] for name, shapes in sorted(profile.items())},
    }


def plan_path(onnx_path: str, key: str) -> str:
    """``$BACKSCORE_CACHE/tensorrt/<onnx file stem>-<key[:16]>.plan``."""
    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    return os.path.join(plan_cache_dir(), f"{stem}-{key[:16]}.plan")


def _atomic_write(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".plan-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def effective_precision(trt: Any, precision: str) -> str:
    """The precision a build gets: ``fp16`` needs ``BuilderFlag.FP16`` (gone in TensorRT 11)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and not hasattr(trt.BuilderFlag, "FP16"):
        log.warning("TensorRT %s has no BuilderFlag.FP16 (strongly typed networks only): building the FP32 graph "
                    "as FP32", trt.__version__)
        return "fp32"
    return precision


# --------------------------------------------------------------------------- build


def build_plan(onnx_path: str, profile: Mapping[str, ShapeTriple], precision: str = "fp16",
               workspace_bytes: int = WORKSPACE_BYTES, device_index: int = 0,
               device: tuple[str, tuple[int, int]] | None = None) -> str:
    """Path of the serialized engine of ``onnx_path`` for this GPU, built once and cached (see the module doc).

    ``device``: ``(gpu name, compute capability)`` for the key, default that of CUDA device
    ``device_index``. Raises :class:`EngineUnavailable` without tensorrt and :class:`EngineError`
    when parsing or building fails (with TensorRT's messages).
    """
    trt = _import_trt()
    precision = effective_precision(trt, precision)
    gpu, cc = device or device_identity(device_index)
    meta = plan_meta(file_sha256(onnx_path), gpu, cc, str(trt.__version__), precision, profile)
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
    path = plan_path(onnx_path, key)
    if os.path.exists(path):
        log.info("tensorrt: cached plan %s", path)
        return path

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.path.abspath(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT could not parse {onnx_path}: {errors or 'no message'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    missing = [n for n in names if n not in profile]
    if missing:
        raise EngineError(f"no profile shapes for network inputs {missing} (profile has {sorted(profile)})")
    for name in names:
        lo, opt, hi = profile[name]
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    log.info("tensorrt: building %s (%s, TensorRT %s, %s)", onnx_path, precision, trt.__version__, gpu)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT could not build an engine from {onnx_path} (see its log above)")
    _atomic_write(path, bytes(serialized))
    _atomic_write(os.path.splitext(path)[0] + ".json", json.dumps(meta, indent=1, sort_keys=True).encode())
    return path


# --------------------------------------------------------------------------- run


def _torch_dtypes(trt: Any) -> dict[Any, torch.dtype]:
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.INT32: torch.int32,
             trt.DataType.INT8: torch.int8, trt.DataType.BOOL: torch.bool}
    for attr, dtype in (("INT64", torch.int64), ("BF16", torch.bfloat16), ("UINT8", torch.uint8)):
        if hasattr(trt.DataType, attr):
            table[getattr(trt.DataType, attr)] = dtype
    return table


class TensorRTRunner:
    """A deserialized engine with one execution context: numpy (or torch) in, numpy (or torch CUDA) out.

    ``input_names`` gives the order of positional inputs (default: the engine's order). Calls are
    not thread-safe (one context); make one runner per thread.
    """

    def __init__(self, plan: str, input_names: Sequence[str] | None = None, device_index: int = 0) -> None:
        import torch

        trt = _import_trt()
        self.device = torch.device("cuda", device_index)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        with open(plan, "rb") as f:
            self.engine = self.runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise EngineError(f"TensorRT could not deserialize {plan} (built by another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        engine_inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.input_names: tuple[str, ...] = tuple(input_names) if input_names is not None else tuple(engine_inputs)
        if sorted(self.input_names) != sorted(engine_inputs):
            raise EngineError(f"engine inputs are {engine_inputs}, not {list(self.input_names)}")
        self.output_names: tuple[str, ...] = tuple(n for n in names if n not in engine_inputs)
        dtypes = _torch_dtypes(trt)
        self.dtypes: dict[str, torch.dtype] = {n: dtypes[self.engine.get_tensor_dtype(n)] for n in names}
        self.stream = torch.cuda.Stream(device=self.device)

    def run_torch(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Run on tensors (any device); returns the outputs as CUDA tensors, ordered after the caller's stream."""
        import torch

        if len(inputs) != len(self.input_names):
            raise ValueError(f"expected {len(self.input_names)} inputs ({', '.join(self.input_names)}), "
                             f"got {len(inputs)}")
        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)
        with torch.cuda.stream(self.stream):
            held = []
            for name, x in zip(self.input_names, inputs, strict=True):
                t = x.to(self.device, dtype=self.dtypes[name], non_blocking=True).contiguous()
                held.append(t)
                if not self.context.set_input_shape(name, tuple(t.shape)):
                    raise EngineError(f"input {name} shape {tuple(t.shape)} is outside the engine's profile "
                                      f"{self.engine.get_tensor_profile_shape(name, 0)}")
                self.context.set_tensor_address(name, t.data_ptr())
            outs = []
            for name in self.output_names:
                shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise EngineError(f"output {name} has an unresolved shape {shape}")
                out = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
                self.context.set_tensor_address(name, out.data_ptr())
                outs.append(out)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EngineError("TensorRT execute_async_v3 failed (see its log above)")
        caller.wait_stream(self.stream)
        for out in outs:  # allocated on self.stream, used on the caller's
            out.record_stream(caller)
        return outs

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """numpy in, first output as ``float32`` numpy out (like the other backends' runners)."""
        import torch

        out = self.run_torch(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))[0]
        return np.asarray(out.float().cpu().numpy())


def spec_runner(spec: ExportSpec, precision: str = "fp16", device_index: int = 0,
                workspace_bytes: int = WORKSPACE_BYTES) -> TensorRTRunner:
    """Export ``spec`` (cached), build its plan (cached) and load it."""
    from engines.onnx_export import export_spec

    ok, why = available()
    if not ok:
        raise EngineUnavailable(f"the TensorRT backend cannot run here: {why}")
    onnx_path = export_spec(spec)
    plan = build_plan(onnx_path, spec_profile(spec), precision, workspace_bytes, device_index)
    return TensorRTRunner(plan, spec.input_names, device_index)
