"""TensorRT backend: what can be checked without a GPU or tensorrt (availability reason, profile
shapes, plan keys, the build steps against a stand-in ``tensorrt`` module that records the calls),
and a GPU-only comparison with torch that is skipped unless TensorRT can run here.

The stand-in checks this module's wiring (which calls, in which order, with which shapes, the plan
cache); it cannot check TensorRT itself."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engines.base import EngineError, EngineUnavailable
from engines.tensorrt_backend import (
    available,
    build_plan,
    default_range,
    file_sha256,
    plan_key,
    profile_shapes,
)

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSCORE_CACHE", str(tmp_path / "cache"))


# --------------------------------------------------------------------------- no GPU needed


def test_module_imports_without_tensorrt() -> None:
    code = ("import sys; sys.modules['tensorrt'] = None; import engines.tensorrt_backend as t; "
            "ok, why = t.available(); print(ok); print(why)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == "False" and "tensorrt" in lines[1]


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_unavailable_here_with_a_reason() -> None:
    for light in (True, False):
        ok, why = available(light=light)
        assert not ok and why.startswith("package not installed: tensorrt") and "pip install tensorrt" in why
    with pytest.raises(EngineUnavailable, match="tensorrt"):
        build_plan("missing.onnx", {})


def test_profile_shapes_from_dynamic_axes() -> None:
    shapes = {"ids": (2, 5), "hidden": (2, 6, 24), "mask": (2, 6)}
    axes = {"ids": {0: "rows", 1: "steps"}, "hidden": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"}}
    prof = profile_shapes(shapes, axes, {"rows": (4, 8, 512), "batch": (1, 2, 128), "steps": (1, 128, 1024)})
    assert prof["ids"] == ((4, 1), (8, 128), (512, 1024))
    assert prof["hidden"] == ((1, 1, 24), (2, 6, 24), (128, 48, 24))  # tokens: default range of 6; width static
    assert prof["mask"] == ((1, 1), (2, 6), (128, 48))  # shares "batch" and "tokens" with hidden
    assert default_range(6) == (1, 6, 48)
    assert profile_shapes({"x": (3, 7)}, {}) == {"x": ((3, 7), (3, 7), (3, 7))}  # static input
    with pytest.raises(ValueError, match="min <= opt <= max"):
        profile_shapes({"x": (3, 7)}, {"x": {0: "b"}}, {"b": (4, 2, 8)})
    with pytest.raises(ValueError, match="no axis 2"):
        profile_shapes({"x": (3, 7)}, {"x": {2: "b"}})


def test_profile_of_the_musicgen_decoder_spec() -> None:
    pytest.importorskip("transformers")
    from engines.onnx_export import musicgen_decoder_spec
    from engines.tensorrt_backend import spec_profile
    from tests.neural_tiny import K, tiny_musicgen

    prof = spec_profile(musicgen_decoder_spec(tiny_musicgen()))
    assert prof["decoder_input_ids"] == ((K, 1), (2 * K, 128), (128 * K, 1024))
    assert prof["encoder_hidden_states"] == ((1, 1, 24), (2, 32, 24), (128, 256, 24))
    assert prof["decoder_attention_mask"] == ((1, 1), (2, 128), (128, 1024))


def test_plan_key_covers_model_gpu_version_precision_and_profile() -> None:
    prof = {"x": ((1, 400), (8, 32000), (32, 160000))}
    base = ("a" * 64, "NVIDIA H100 80GB HBM3", (9, 0), "10.9.0", "fp16", prof)
    key = plan_key(*base)
    assert len(key) == 64 and key == plan_key(*base)
    variants = [
        ("b" * 64, *base[1:]),
        (base[0], "NVIDIA A100-SXM4-40GB", *base[2:]),
        (*base[:2], (8, 0), *base[3:]),
        (*base[:3], "10.10.0", *base[4:]),
        (*base[:4], "fp32", prof),
        (*base[:5], {"x": ((1, 400), (8, 32000), (64, 160000))}),
    ]
    keys = {plan_key(*v) for v in variants}
    assert len(keys) == len(variants) and key not in keys
    with pytest.raises(ValueError, match="precision"):
        plan_key(*base[:4], "int8", prof)


# --------------------------------------------------------------------------- stand-in tensorrt


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []


def fake_tensorrt(onnx_inputs: list[str], rec: _Recorder, fp16: bool = True, parse_ok: bool = True) -> Any:
    """A module with the TensorRT 10 names build_plan uses; records what it is asked."""
    trt: Any = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.0"

    class Logger:
        WARNING = "WARNING"

        def __init__(self, severity: str) -> None:
            rec.calls.append(("Logger", severity))

    class Input:
        def __init__(self, name: str) -> None:
            self.name = name

    class Network:
        num_inputs = 0

        def get_input(self, i: int) -> Input:
            return Input(onnx_inputs[i])

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network

        def parse_from_file(self, path: str) -> bool:
            rec.calls.append(("parse_from_file", path))
            self.network.num_inputs = len(onnx_inputs)
            return parse_ok

        def get_error(self, i: int) -> str:
            return "unsupported operator FancyOp"

    class Profile:
        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            rec.calls.append(("set_shape", name, tuple(lo), tuple(opt), tuple(hi)))

    class Config:
        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            rec.calls.append(("set_memory_pool_limit", pool, size))

        def set_flag(self, flag: str) -> None:
            rec.calls.append(("set_flag", flag))

        def add_optimization_profile(self, profile: Profile) -> int:
            rec.calls.append(("add_optimization_profile",))
            return 0

    class Builder:
        def __init__(self, logger: Logger) -> None:
            rec.calls.append(("Builder",))

        def create_network(self, flags: int) -> Network:
            rec.calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            rec.calls.append(("build_serialized_network",))
            return b"PLAN-BYTES"

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    trt.BuilderFlag = types.SimpleNamespace(**({"FP16": "FP16"} if fp16 else {}))
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    return trt


@pytest.fixture()
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really onnx, hashed only")
    return path


GPU = ("NVIDIA H100 80GB HBM3", (9, 0))
PROFILE = {"ids": ((1, 1), (2, 16), (64, 77)), "mask": ((1, 1), (2, 16), (64, 77))}


def test_build_plan_steps_and_cache(onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(["ids", "mask"], rec))
    path = build_plan(str(onnx_file), PROFILE, "fp16", workspace_bytes=1 << 30, device=GPU)
    names = [c[0] for c in rec.calls]
    assert names == ["Logger", "Builder", "create_network", "parse_from_file", "set_memory_pool_limit", "set_flag",
                     "set_shape", "set_shape", "add_optimization_profile", "build_serialized_network"]
    assert ("create_network", 0) in rec.calls and ("set_flag", "FP16") in rec.calls
    assert ("set_memory_pool_limit", "WORKSPACE", 1 << 30) in rec.calls
    assert ("set_shape", "ids", (1, 1), (2, 16), (64, 77)) in rec.calls
    plan = Path(path)
    key = plan_key(file_sha256(str(onnx_file)), *GPU, "10.99.0", "fp16", PROFILE)
    assert plan == tmp_path / "cache" / "tensorrt" / f"model-{key[:16]}.plan"
    assert plan.read_bytes() == b"PLAN-BYTES"
    meta = json.loads(plan.with_suffix(".json").read_text())
    assert meta["gpu"] == GPU[0] and meta["compute_capability"] == "9.0" and meta["precision"] == "fp16"
    assert sorted(p.name for p in plan.parent.iterdir()) == sorted([plan.name, plan.with_suffix(".json").name])

    rec.calls.clear()  # the same model, GPU, version, precision and profile: the cached plan
    assert build_plan(str(onnx_file), PROFILE, "fp16", device=GPU) == path and rec.calls == []
    other = build_plan(str(onnx_file), PROFILE, "fp32", device=GPU)  # another precision: another plan
    assert other != path and ("set_flag", "FP16") not in rec.calls


def test_build_plan_reports_parser_errors_and_missing_shapes(onnx_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(["ids", "mask"], rec, parse_ok=False))
    with pytest.raises(EngineError, match=r"could not parse.*FancyOp"):
        build_plan(str(onnx_file), PROFILE, device=GPU)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(["ids", "mask", "extra"], rec))
    with pytest.raises(EngineError, match=r"no profile shapes for network inputs \['extra'\]"):
        build_plan(str(onnx_file), PROFILE, device=GPU)


def test_fp16_without_the_builder_flag_builds_fp32(onnx_file: Path, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    rec = _Recorder()  # TensorRT 11 removed BuilderFlag.FP16 (strongly typed networks only)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(["ids", "mask"], rec, fp16=False))
    path = build_plan(str(onnx_file), PROFILE, "fp16", device=GPU)
    assert json.loads(Path(path).with_suffix(".json").read_text())["precision"] == "fp32"
    assert not any(c[0] == "set_flag" for c in rec.calls) and "no BuilderFlag.FP16" in caplog.text


# --------------------------------------------------------------------------- GPU only

_TRT_OK, _TRT_WHY = available(light=True)


@pytest.mark.skipif(not _TRT_OK, reason=f"GPU-only: needs tensorrt and a CUDA device ({_TRT_WHY})")
def test_tensorrt_matches_torch_on_wav2vec2() -> None:  # pragma: no cover - not run on the CPU machines
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from engines.onnx_export import wav2vec2_spec
    from engines.tensorrt_backend import spec_runner
    from tests.neural_tiny import tiny_wav2vec2

    model = tiny_wav2vec2()
    for precision, tol in (("fp32", 1e-4), ("fp16", 5e-2)):
        runner = spec_runner(wav2vec2_spec(model, batch=(1, 2, 4), samples=(400, 8_000, 16_000)), precision)
        worst = 0.0
        for b, n in ((1, 3_200), (4, 16_000)):
            x = np.random.default_rng(b).standard_normal((b, n)).astype(np.float32)
            with torch.inference_mode():
                ref = model(input_values=torch.from_numpy(x)).logits.numpy()
            worst = max(worst, float(np.abs(runner(x) - ref).max()))
        print(f"\nTensorRT {precision} vs torch: max abs error {worst:.2e}")
        assert worst < tol
