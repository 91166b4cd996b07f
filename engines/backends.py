"""Inference backends for the neural models, which one to use, and a runner per backend.

Backends, in the order ``auto`` tries them (:data:`BACKENDS`):

``tensorrt``
    A TensorRT engine built from the model's ONNX graph (FP16 by default), plans cached on disk
    (:mod:`engines.tensorrt_backend`). Needs ``tensorrt`` and a CUDA device seen by torch.
``ort-cuda``
    The ONNX graph on ONNX Runtime's CUDA execution provider. Needs ``onnxruntime-gpu`` and a GPU
    (checked by opening a one-node session on that provider).
``torch-cuda``
    The torch module itself on a CUDA device. Needs a CUDA build of torch and a GPU.
``ort-cpu``
    The ONNX graph on ONNX Runtime's CPU provider. Needs ``onnx`` (export) and ``onnxruntime``.
``torch-cpu``
    The torch module on the CPU. Needs torch.

:func:`choose_backend` takes ``"auto"`` (the first available in that order) or a backend name;
``"auto"`` defers to ``$BACKSCORE_BACKEND`` when it is set, so a deployment can pin one without
code changes. An explicit choice that cannot run here raises :class:`EngineUnavailable` with
the reason; an unknown name raises ``ValueError`` listing the names.

:func:`make_runner` / :func:`spec_runner` turn a torch module (or an
:class:`engines.onnx_export.ExportSpec`) into a callable, numpy arrays in (positional, in input
order) and the first output as a numpy array out, on any backend (the runner classes, one per
runtime, are :mod:`engines.runners`); exported graphs and TensorRT plans are cached on disk.

:func:`backend_statuses` with ``light=True`` decides without importing torch or tensorrt
(``backscore engines``): the torch build is read from its ``version.py``, a GPU from
``/dev/nvidiactl`` or ``/proc/driver/nvidia/gpus`` (the probes of :mod:`engines.devices`, shared
with :mod:`engines.tensorrt_backend`), the CUDA provider from the installed ``onnxruntime-gpu``
distribution.

Imports go one way: this module imports :mod:`engines.runners`, :mod:`engines.tensorrt_backend` and
:mod:`engines.onnx_export` (the last two inside the functions that need them); none imports this one.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engines.base import EngineUnavailable
from engines.devices import has_package as _has
from engines.devices import nvidia_device_present, torch_build, torch_cuda, torch_cuda_light
from engines.runners import OrtRunner, Runner, TorchRunner, _TensorRTAdapter
from engines.settings import settings

if TYPE_CHECKING:
    import torch

    from engines.onnx_export import AxisRange, ExportSpec

#: Every backend, in the order ``auto`` tries them.
BACKENDS: tuple[str, ...] = ("tensorrt", "ort-cuda", "torch-cuda", "ort-cpu", "torch-cpu")
#: Environment variable that pins the backend ``auto`` resolves to.
ENV_VAR = "BACKSCORE_BACKEND"
#: Other spellings accepted for backend names.
ALIASES: dict[str, str] = {
    "trt": "tensorrt", "onnxruntime-cuda": "ort-cuda", "onnxruntime-cpu": "ort-cpu", "onnxruntime": "ort-cpu",
}
ORT_HINT = "pip install 'backscore[neural]' (onnx, onnxruntime)"


@dataclass(frozen=True)
class Backend:
    """One backend and whether it can run here (``reason`` says what it runs on, or why not)."""

    name: str
    available: bool
    reason: str

    @property
    def device(self) -> str:
        """``"cuda"`` or ``"cpu"``."""
        return "cpu" if self.name.endswith("-cpu") else "cuda"

    @property
    def runtime(self) -> str:
        """``"tensorrt"``, ``"onnxruntime"`` or ``"torch"``."""
        return {"tensorrt": "tensorrt", "ort-cuda": "onnxruntime", "ort-cpu": "onnxruntime"}.get(self.name, "torch")


# --------------------------------------------------------------------------- checks


def _has_distribution(name: str) -> bool:
    import importlib.metadata  # lazily: ~15 ms at start-up, which only these checks need

    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _ort_cuda_probe() -> str | None:
    """None when a session on CUDAExecutionProvider really runs there, else why not."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        node = helper.make_node("Identity", ["x"], ["y"])
        graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = min(model.ir_version, 8)
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        if sess.get_providers()[0] != "CUDAExecutionProvider":
            return "a session asked for CUDAExecutionProvider fell back to the CPU (CUDA/cuDNN libraries missing?)"
    except Exception as exc:
        return f"CUDAExecutionProvider does not start: {type(exc).__name__}: {exc}"
    return None


def _ort_base() -> tuple[bool, str]:
    missing = [p for p in ("onnxruntime", "onnx", "torch") if not _has(p)]
    if missing:
        return False, f"package not installed: {', '.join(missing)} ({ORT_HINT}; torch exports the graphs)"
    return True, ""


def check_backend(name: str, light: bool = False) -> Backend:
    """Whether backend ``name`` can run here, and why (not). ``light``: no torch/tensorrt import."""
    name = ALIASES.get(name, name)
    if name == "tensorrt":
        from engines.tensorrt_backend import available

        ok, why = available(light=light)
        return Backend(name, ok, why)
    if name == "torch-cpu":
        if not _has("torch"):
            return Backend(name, False, "package not installed: torch")
        version, _ = torch_build()
        return Backend(name, True, f"torch {version} on the CPU")
    if name == "torch-cuda":
        ok, why = torch_cuda_light() if light else torch_cuda()
        return Backend(name, ok, why)
    if name in ("ort-cpu", "ort-cuda"):
        ok, why = _ort_base()
        if not ok:
            return Backend(name, False, why)
        if name == "ort-cpu":
            if light:
                return Backend(name, True, "onnxruntime, CPUExecutionProvider")
            import onnxruntime as ort

            if "CPUExecutionProvider" not in ort.get_available_providers():
                return Backend(name, False, f"onnxruntime {ort.__version__} lists no CPUExecutionProvider")
            return Backend(name, True, f"onnxruntime {ort.__version__}, CPUExecutionProvider")
        if light:
            if not _has_distribution("onnxruntime-gpu"):
                return Backend(name, False, "onnxruntime without CUDAExecutionProvider (pip install onnxruntime-gpu)")
        else:
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return Backend(name, False, f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers "
                               f"{', '.join(ort.get_available_providers())}; pip install onnxruntime-gpu)")
        if not nvidia_device_present():
            return Backend(name, False, "onnxruntime-gpu installed, but no NVIDIA GPU is visible here")
        if light:
            return Backend(name, True, "onnxruntime-gpu, NVIDIA GPU present")
        problem = _ort_cuda_probe()
        return Backend(name, problem is None, problem or "onnxruntime, CUDAExecutionProvider")
    raise ValueError(f"unknown backend {name!r}; expected auto or one of {', '.join(BACKENDS)}")


def backend_statuses(light: bool = False) -> list[Backend]:
    """Every backend in :data:`BACKENDS` order with whether it can run here."""
    return [check_backend(name, light) for name in BACKENDS]


def requested_backend(preference: str | None = "auto") -> tuple[str, str]:
    """``(name or "auto", where the choice came from)``; ``"auto"`` defers to ``$BACKSCORE_BACKEND``."""
    pref, source = (preference or "auto").strip().lower(), "argument"
    env = (settings().backend or "").strip()
    if pref == "auto" and env:
        pref, source = env.lower(), f"${ENV_VAR}"
    pref = ALIASES.get(pref, pref)
    if pref != "auto" and pref not in BACKENDS:
        raise ValueError(f"unknown backend {pref!r} ({source}); expected auto or one of {', '.join(BACKENDS)}")
    return pref, source


def choose_backend(preference: str | None = "auto") -> Backend:
    """The backend to use: ``preference`` if named (it must be available), else the first available.

    ``"auto"`` (or ``None``) uses ``$BACKSCORE_BACKEND`` when set, else tries :data:`BACKENDS` in order.
    """
    name, source = requested_backend(preference)
    if name != "auto":
        b = check_backend(name)
        if not b.available:
            raise EngineUnavailable(f"backend {name} ({source}) cannot run here: {b.reason}")
        return b
    tried = []
    for candidate in BACKENDS:
        b = check_backend(candidate)
        if b.available:
            return b
        tried.append(f"{b.name}: {b.reason}")
    raise EngineUnavailable("no inference backend can run here: " + "; ".join(tried))


# --------------------------------------------------------------------------- runners


def spec_runner(spec: ExportSpec, backend: str | Backend | None = "auto", precision: str = "fp16",
                threads: int | None = None) -> Runner:
    """A :class:`Runner` of an export spec on ``backend`` (a name, ``"auto"`` or a :class:`Backend`)."""
    b = backend if isinstance(backend, Backend) else choose_backend(backend)
    if not b.available:
        raise EngineUnavailable(f"backend {b.name} cannot run here: {b.reason}")
    if b.runtime == "torch":
        return TorchRunner(spec.module, spec.example_inputs, spec.input_names, b.device, b.name)
    if b.runtime == "onnxruntime":
        from engines.onnx_export import export_spec

        return OrtRunner(export_spec(spec), spec.input_names, b.device, threads, b.name)
    from engines.tensorrt_backend import spec_runner as trt_runner

    return _TensorRTAdapter(trt_runner(spec, precision))


def make_runner(torch_module: torch.nn.Module, example_inputs: Sequence[torch.Tensor],
                dynamic_axes: Mapping[str, Mapping[int, str]], backend: str | Backend | None = "auto", *,
                input_names: Sequence[str] | None = None, output_names: Sequence[str] = ("output",),
                name: str | None = None, axis_ranges: Mapping[str, AxisRange] | None = None,
                precision: str = "fp16", threads: int | None = None) -> Runner:
    """A numpy-in/numpy-out callable running ``torch_module`` on ``backend``.

    ``example_inputs``: one tensor per positional input (its dtype is the input's dtype; its
    shape is exported); ``dynamic_axes``: tensor name -> ``{axis: symbolic name}`` over
    ``input_names`` (default ``input0``, ``input1``, ...) and ``output_names``; ``axis_ranges``:
    symbolic name -> ``(min, opt, max)`` for the TensorRT profile. The torch backends run the
    module itself (moved to the backend's device).
    """
    from engines.onnx_export import ExportSpec

    examples = tuple(example_inputs)
    names = tuple(input_names) if input_names is not None else tuple(f"input{i}" for i in range(len(examples)))
    spec = ExportSpec(name or type(torch_module).__name__.lower(), torch_module, examples, names,
                      tuple(output_names), {k: dict(v) for k, v in dynamic_axes.items()}, dict(axis_ranges or {}))
    return spec_runner(spec, backend, precision, threads)


# --------------------------------------------------------------------------- models on a backend


def resolve_backend(preference: str | None = "auto") -> tuple[Backend, bool]:
    """``(backend, pinned)``: :func:`choose_backend`'s answer and whether it was asked for by name
    (an argument or ``$BACKSCORE_BACKEND``) rather than picked by ``auto``."""
    name, _ = requested_backend(preference)
    return choose_backend(preference), name != "auto"


def torch_device(backend: Backend, device: str | None = None) -> str:
    """The torch device for the parts of a model that stay in torch next to ``backend``.

    ``device`` when given (it must agree with a torch backend: ``torch-cpu`` with ``device="cuda"``
    is a contradiction); else ``"cuda"`` for a GPU backend when torch sees a CUDA device (ONNX
    Runtime CUDA may run beside a CPU-only torch build), else ``"cpu"``.
    """
    if device is not None:
        if backend.runtime == "torch" and str(device).split(":")[0] != backend.device:
            raise ValueError(f"device {device!r} contradicts backend {backend.name}")
        return str(device)
    if backend.device == "cuda":
        if backend.runtime == "torch":
            return "cuda"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


def model_runner(spec: ExportSpec, backend: Backend, pinned: bool, *, device: str = "cpu",
                 precision: str = "fp16", threads: int | None = None) -> Runner:
    """:func:`spec_runner` of ``spec`` on ``backend``, for an engine.

    A torch backend runs ``spec.module`` on ``device`` (the engine's torch device). When the
    backend was picked by ``auto`` (``pinned`` false) and its ONNX export, ONNX Runtime session or
    TensorRT build fails, this logs a warning and falls back to torch on ``device``: ``auto``
    never makes a model fail that torch runs. A pinned backend raises instead.
    """
    import logging

    if backend.runtime == "torch":
        return TorchRunner(spec.module, spec.example_inputs, spec.input_names, device,
                           "torch-cuda" if device.startswith("cuda") else "torch-cpu")
    try:
        return spec_runner(spec, backend, precision, threads)
    except Exception as exc:
        if pinned:
            if isinstance(exc, EngineUnavailable):
                raise
            raise EngineUnavailable(f"{spec.name} does not run on backend {backend.name}: "
                                    f"{type(exc).__name__}: {exc}") from exc
        fallback = "torch-cuda" if device.startswith("cuda") else "torch-cpu"
        logging.getLogger(__name__).warning("%s: backend %s failed (%s: %s); using %s", spec.name, backend.name,
                                            type(exc).__name__, exc, fallback)
        return TorchRunner(spec.module, spec.example_inputs, spec.input_names, device, fallback)


def backend_plan(preference: str | None = "auto", light: bool = True) -> tuple[Backend | None, str]:
    """``(backend or None, one line)``: the backend a neural engine would use here and why,
    e.g. ``"ort-cpu (auto choice)"`` or ``"tensorrt ($BACKSCORE_BACKEND) cannot run here: ..."``.
    ``light``: decided without importing torch or tensorrt (``backscore engines``)."""
    try:
        name, source = requested_backend(preference)
    except ValueError as exc:
        return None, str(exc)
    if name != "auto":
        b = check_backend(name, light)
        return (b, f"{name} ({source})") if b.available else (None, f"{name} ({source}) cannot run here: {b.reason}")
    for b in backend_statuses(light):
        if b.available:
            return b, f"{b.name} (auto choice)"
    return None, "no inference backend can run here"
