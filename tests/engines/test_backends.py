"""Backend choice (auto order, $BACKSCORE_BACKEND, explicit names) and runners on every CPU backend."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
import torch

from engines import backends
from engines.backends import (
    BACKENDS,
    ENV_VAR,
    Backend,
    backend_statuses,
    check_backend,
    choose_backend,
    make_runner,
    spec_runner,
)
from engines.base import EngineUnavailable

HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
CPU_ONLY = not torch.cuda.is_available() and importlib.util.find_spec("tensorrt") is None
CPU_BACKENDS = ["torch-cpu", *(["ort-cpu"] if HAS_ORT else [])]


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.mark.skipif(not CPU_ONLY, reason="this machine has CUDA or TensorRT: the auto choice is not a CPU one")
def test_auto_picks_the_first_cpu_backend_on_a_cpu_machine() -> None:
    # documented order: tensorrt, ort-cuda, torch-cuda, ort-cpu, torch-cpu
    assert BACKENDS == ("tensorrt", "ort-cuda", "torch-cuda", "ort-cpu", "torch-cpu")
    chosen = choose_backend()
    assert chosen.name == ("ort-cpu" if HAS_ORT else "torch-cpu") and chosen.device == "cpu"
    assert choose_backend(None) == chosen
    by_name = {b.name: b for b in backend_statuses()}
    for name in ("tensorrt", "ort-cuda", "torch-cuda"):
        assert not by_name[name].available and by_name[name].reason
    assert by_name["torch-cpu"].available


def test_auto_follows_the_documented_order(monkeypatch: pytest.MonkeyPatch) -> None:
    up: set[str] = set()

    def fake(name: str, light: bool = False) -> Backend:
        return Backend(name, name in up, "fake")

    monkeypatch.setattr(backends, "check_backend", fake)
    for avail, expected in [({"torch-cpu"}, "torch-cpu"), ({"ort-cpu", "torch-cpu"}, "ort-cpu"),
                            ({"torch-cuda", "ort-cpu"}, "torch-cuda"), ({"ort-cuda", "torch-cuda"}, "ort-cuda"),
                            (set(BACKENDS), "tensorrt")]:
        up.clear()
        up.update(avail)
        assert choose_backend("auto").name == expected
    up.clear()
    with pytest.raises(EngineUnavailable, match="no inference backend"):
        choose_backend()


def test_explicit_choice_and_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_backend("torch-cpu").name == "torch-cpu"
    monkeypatch.setenv(ENV_VAR, "torch-cpu")
    assert choose_backend().name == "torch-cpu" and choose_backend("auto").name == "torch-cpu"
    if HAS_ORT:
        assert choose_backend("ort-cpu").name == "ort-cpu"  # an explicit argument beats the variable
        assert choose_backend("onnxruntime-cpu").name == "ort-cpu"  # alias


def test_bad_choices_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"unknown backend 'cuda'.*tensorrt, ort-cuda, torch-cuda, ort-cpu, torch-cpu"):
        choose_backend("cuda")
    monkeypatch.setenv(ENV_VAR, "tpu")
    with pytest.raises(ValueError, match=r"'tpu' \(\$BACKSCORE_BACKEND\)"):
        choose_backend()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_unavailable_explicit_choice_says_why() -> None:
    with pytest.raises(EngineUnavailable, match=r"tensorrt \(argument\) cannot run here: package not installed"):
        choose_backend("trt")


@pytest.mark.skipif(torch.version.cuda is not None, reason="torch is a CUDA build here")
def test_torch_cuda_reason_on_a_cpu_build() -> None:
    for light in (True, False):
        b = check_backend("torch-cuda", light)
        assert not b.available and "CPU-only build" in b.reason and b.device == "cuda" and b.runtime == "torch"


def test_light_statuses_import_neither_torch_nor_tensorrt() -> None:
    code = ("import sys; from engines.backends import backend_statuses; s = backend_statuses(light=True); "
            "print(len(s), 'torch' in sys.modules, 'tensorrt' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["5", "False", "False"]


def test_light_and_full_checks_agree_here() -> None:
    light = {b.name: b.available for b in backend_statuses(light=True)}
    full = {b.name: b.available for b in backend_statuses()}
    assert light == full


def test_registry_lists_the_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    from engines.registry import engine_statuses

    rows = {s.name: s for s in engine_statuses() if s.kind == "backend"}
    assert list(rows) == list(BACKENDS)
    assert sum("[auto choice]" in s.detail for s in rows.values()) == 1
    monkeypatch.setenv(ENV_VAR, "torch-cpu")
    rows = {s.name: s for s in engine_statuses() if s.kind == "backend"}
    assert rows["torch-cpu"].detail.endswith(f"[chosen by ${ENV_VAR}]")


# --------------------------------------------------------------------------- runners


class TwoInputs(torch.nn.Module):
    """Token ids and a float signal of dynamic length -> (batch, 8)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(50, 8)
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, ids: Any, signal: Any) -> Any:
        return torch.tanh(self.proj(self.emb(ids).mean(dim=1)) + signal.mean(dim=1, keepdim=True))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_runner_matches_torch(backend: str) -> None:
    module = TwoInputs().eval()
    example = (torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 100))
    axes = {"ids": {0: "batch", 1: "tokens"}, "signal": {0: "batch", 1: "time"}, "out": {0: "batch"}}
    runner = make_runner(module, example, axes, backend, input_names=("ids", "signal"), output_names=("out",),
                         name="two-inputs", threads=1)
    assert runner.backend == backend and runner.input_names == ("ids", "signal")
    rng = np.random.default_rng(0)
    worst = 0.0
    for b, t, n in ((1, 3, 50), (4, 9, 300)):
        ids = rng.integers(0, 50, (b, t))
        sig = rng.standard_normal((b, n)).astype(np.float32)
        with torch.inference_mode():
            ref = module(torch.from_numpy(ids), torch.from_numpy(sig)).numpy()
        out = runner(ids.astype(np.int32), sig)  # inputs are cast to the model's dtypes
        assert out.shape == (b, 8)
        worst = max(worst, float(np.abs(out - ref).max()))
    print(f"\nrunner {backend} vs torch: max abs error {worst:.2e}")
    assert worst < 1e-5
    with pytest.raises(ValueError, match="expected 2 inputs"):
        runner(ids)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_spec_runner_on_wav2vec2(backend: str) -> None:
    pytest.importorskip("transformers")
    from engines.onnx_export import wav2vec2_spec
    from tests.neural_tiny import tiny_wav2vec2

    model = tiny_wav2vec2()
    runner = spec_runner(wav2vec2_spec(model), backend, threads=1)
    x = np.random.default_rng(1).standard_normal((3, 6_400)).astype(np.float32)
    with torch.inference_mode():
        ref = model(input_values=torch.from_numpy(x)).logits.numpy()
    np.testing.assert_allclose(runner(x), ref, atol=1e-5, rtol=1e-4)


def test_runner_on_an_unavailable_backend_fails_clearly() -> None:
    with pytest.raises(EngineUnavailable, match="torch-cuda cannot run here"):
        make_runner(TwoInputs(), (torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 3)), {},
                    Backend("torch-cuda", False, "no GPU"))


# --------------------------------------------------------------------------- engines' runners


def _two_inputs_spec() -> Any:
    from engines.onnx_export import ExportSpec

    return ExportSpec("two-inputs", TwoInputs().eval(), (torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 100)),
                      ("ids", "signal"), ("out",), {"ids": {0: "batch", 1: "tokens"}, "signal": {0: "batch", 1: "t"}})


def test_model_runner_falls_back_to_torch_only_for_auto(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    from engines.backends import model_runner, resolve_backend

    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("exporter says no")

    monkeypatch.setattr(backends, "spec_runner", broken)
    ort = Backend("ort-cpu", True, "fake")
    runner = model_runner(_two_inputs_spec(), ort, pinned=False)
    assert runner.backend == "torch-cpu" and "exporter says no" in caplog.text  # auto: warned, torch instead
    with pytest.raises(EngineUnavailable, match=r"two-inputs does not run on backend ort-cpu: RuntimeError"):
        model_runner(_two_inputs_spec(), ort, pinned=True)
    assert model_runner(_two_inputs_spec(), Backend("torch-cpu", True, "x"), pinned=True).backend == "torch-cpu"
    assert resolve_backend("torch-cpu") == (check_backend("torch-cpu"), True)
    assert resolve_backend("auto")[1] is False
    monkeypatch.setenv(ENV_VAR, "torch-cpu")
    assert resolve_backend("auto") == (check_backend("torch-cpu"), True)  # the variable pins it too


def test_torch_device_follows_the_backend() -> None:
    from engines.backends import torch_device

    assert torch_device(Backend("torch-cpu", True, "")) == "cpu"
    assert torch_device(Backend("ort-cpu", True, "")) == "cpu"
    assert torch_device(Backend("torch-cuda", True, "")) == "cuda"
    assert torch_device(Backend("ort-cuda", True, "")) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert torch_device(Backend("ort-cpu", True, ""), "cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match="contradicts"):
        torch_device(Backend("torch-cuda", True, ""), "cpu")


def test_backend_plan_says_where_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from engines.backends import backend_plan

    b, line = backend_plan("auto")
    assert b is not None and line == f"{b.name} (auto choice)"
    assert backend_plan("torch-cpu")[1] == "torch-cpu (argument)"
    monkeypatch.setenv(ENV_VAR, "torch-cpu")
    assert backend_plan()[1] == f"torch-cpu (${ENV_VAR})"
    assert backend_plan("nope")[0] is None and "unknown backend 'nope'" in backend_plan("nope")[1]
    if importlib.util.find_spec("tensorrt") is None:
        b, line = backend_plan("tensorrt")
        assert b is None and line.startswith("tensorrt (argument) cannot run here: package not installed")
