"""What this machine offers the neural backends: installed packages, an NVIDIA GPU, a CUDA build
of torch.

The probes :mod:`engines.backends` (which backend can run here) and
:mod:`engines.tensorrt_backend` (whether TensorRT can) both need. They live here, below both, so
neither of those modules imports the other to ask: :mod:`engines.backends` imports
:mod:`engines.tensorrt_backend`, never the reverse.

The ``*_light`` checks and :func:`torch_build` decide without importing torch (``backscore
engines``): the torch build is read from its ``version.py``, a GPU from ``/dev/nvidiactl`` or
``/proc/driver/nvidia/gpus``. :func:`torch_cuda` imports torch and asks it.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path


def has_package(package: str) -> bool:
    """Whether ``package`` can be imported here (looked up, not imported)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def nvidia_device_present() -> bool:
    """An NVIDIA driver with a GPU is visible (device node or ``/proc`` entry), without loading CUDA."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return os.path.exists("/dev/nvidiactl") or (gpus.is_dir() and any(gpus.iterdir()))


def torch_build() -> tuple[str | None, str | None]:
    """``(torch version, CUDA version or None)`` read from ``torch/version.py`` without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "version.py"
        if path.is_file():
            text = path.read_text()
            version = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
            cuda = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
            return (version.group(1) if version else "?"), (cuda.group(1) if cuda else None)
    return "?", None


def torch_cuda_light() -> tuple[bool, str]:
    """Whether torch could use CUDA here, without importing torch (build + a visible GPU)."""
    version, cuda = torch_build()
    if version is None:
        return False, "package not installed: torch"
    if cuda is None:
        return False, f"torch {version} is a CPU-only build"
    if not nvidia_device_present():
        return False, f"torch {version} (CUDA {cuda}) finds no NVIDIA GPU here"
    return True, f"torch {version} (CUDA {cuda}), NVIDIA GPU present"


def torch_cuda() -> tuple[bool, str]:
    """Whether torch can use a CUDA device here (imports torch)."""
    if not has_package("torch"):
        return False, "package not installed: torch"
    import torch

    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"
    return True, f"torch {torch.__version__} (CUDA {torch.version.cuda}), {torch.cuda.get_device_name(0)}"
