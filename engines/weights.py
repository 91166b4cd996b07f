"""Where a neural engine's weights come from: a local directory, an environment variable, or
the Hugging Face cache -- never the network unless the user allows it.

Looked up without importing torch or transformers, so ``backscore engines`` stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engines.base import EngineUnavailable


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache dir ($HF_HUB_CACHE, $HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface" / "hub"


def cached_snapshot(model_id: str) -> Path | None:
    """A snapshot of ``model_id`` with a ``config.json`` in the Hugging Face cache, or ``None``."""
    snaps = hf_hub_cache() / ("models--" + model_id.replace("/", "--")) / "snapshots"
    if not snaps.is_dir():
        return None
    found = sorted(p for p in snaps.iterdir() if (p / "config.json").is_file())
    return found[-1] if found else None


def find_weights(weights: str | None, model_id: str, env_var: str,
                 source: str = "weights directory") -> tuple[str | None, str]:
    """``(path or None, where)``: ``weights`` dir, else ``$env_var``, else the cache snapshot.

    ``where`` says which source was used or what is missing (``source`` names the first one,
    e.g. ``"--weights"`` for a CLI flag).
    """
    if weights:
        ok = (Path(weights) / "config.json").is_file()
        return (weights if ok else None), f"{source} {weights}" + ("" if ok else " (no config.json there)")
    env = os.environ.get(env_var)
    if env:
        ok = (Path(env) / "config.json").is_file()
        return (env if ok else None), f"{env_var}={env}" + ("" if ok else " (no config.json there)")
    snap = cached_snapshot(model_id)
    if snap is not None:
        return str(snap), f"Hugging Face cache ({snap})"
    return None, f"not in the Hugging Face cache ({hf_hub_cache()})"


def missing_weights_message(what: str, model_id: str, where: str, provide: str) -> str:
    """One message saying what is missing, where we looked and how to provide it."""
    return (
        f"{what} ({model_id}) not found: {where}. Provide a local copy: {provide}; to fetch it on a machine "
        f"with internet: huggingface-cli download {model_id} --local-dir DIR"
    )


def load_pretrained(
    model_cls: Any,
    processor_cls: Any,
    found: tuple[str | None, str],
    model_id: str,
    message: Callable[[str], str],
    explicit: bool,
    allow_download: bool,
) -> tuple[Any, Any, str]:
    """``(model, processor, path)`` from what :func:`find_weights` found.

    Nothing found: :class:`EngineUnavailable` with ``message(where)`` -- unless downloads are
    allowed and the user did not name a location (``explicit``), then the hub id is used.
    A location that does not load (missing files, wrong model) is the same clear error.
    """
    path, where = found
    if path is None:
        if not allow_download or explicit:
            raise EngineUnavailable(message(where))
        path = model_id
    try:
        processor = processor_cls.from_pretrained(path, local_files_only=not allow_download)
        model = model_cls.from_pretrained(path, local_files_only=not allow_download)
    except (OSError, ValueError) as exc:
        raise EngineUnavailable(f"{message(where)} ({type(exc).__name__}: {exc})") from exc
    return model, processor, path
