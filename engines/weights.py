"""Where a neural engine's weights come from: a local directory, an environment variable, or
the Hugging Face cache -- never the network unless the user allows it.

Looked up without importing torch or transformers, so ``backscore engines`` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path


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
