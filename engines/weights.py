"""Where a neural engine's weights come from: a local directory, an environment variable, or
the Hugging Face cache -- never the network unless the user allows it.

* :class:`HFModelSpec`: one Hugging Face model of an engine (CLIP, wav2vec2, MusicGen) -- where
  its weights are looked up (:meth:`~HFModelSpec.find`), the message when they are missing
  (:meth:`~HFModelSpec.missing_message`) and the whole load (:meth:`~HFModelSpec.load`: the
  transformers import, the backend check, the lookup and ``from_pretrained``).
* :func:`find_amt_weights`: the directory of a trained AMT checkpoint (:mod:`engines.amt`),
  from ``--weights amt=DIR`` or ``$BACKSCORE_AMT_WEIGHTS`` (no cache, no download).

Looked up without importing torch or transformers, so ``backscore engines`` stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.base import EngineUnavailable
from engines.settings import setting

#: How to install what the Hugging Face engines need (transformers, torch).
INSTALL_HINT = "pip install 'backscore[neural]'"

#: Environment variable naming a trained AMT checkpoint directory.
AMT_WEIGHTS_ENV = "BACKSCORE_AMT_WEIGHTS"
#: The file that marks a directory as an AMT checkpoint.
AMT_CONFIG_FILE = "config.json"
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
    env = setting(env_var)
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


@dataclass(frozen=True)
class HFModelSpec:
    """One Hugging Face model an engine loads, and the words its errors use.

    ``what``: what is missing, e.g. ``"CLIP weights"``; ``model_id``: the hub id (cache entry,
    and the download when allowed); ``env_var``: the variable naming a local copy;
    ``provide_hint``: how to provide one (e.g. ``"--weights clip=DIR or $VAR=DIR"``);
    ``engine``: who needs transformers, e.g. ``"the CLIP frame encoder"``, and ``needs``: what
    (the install error is ``"<engine> needs <needs>: <install_hint>"``); ``source``: how the
    ``weights`` argument is named in messages (``"--weights"`` where it is a CLI flag).
    """

    what: str
    model_id: str
    env_var: str
    provide_hint: str
    engine: str
    needs: str = "transformers and torch"
    source: str = "weights directory"
    install_hint: str = INSTALL_HINT

    def find(self, weights: str | None = None) -> tuple[str | None, str]:
        """``(path or None, where)`` (:func:`find_weights`), without importing transformers."""
        return find_weights(weights, self.model_id, self.env_var, self.source)

    def missing_message(self, where: str) -> str:
        """What is missing, where we looked (``where`` from :meth:`find`) and how to provide it."""
        return missing_weights_message(self.what, self.model_id, where, self.provide_hint)

    def load(self, model_class: str, processor_class: str, weights: str | None = None, *,
             allow_download: bool = False, backend: str | None = "auto") -> tuple[Any, Any, str]:
        """``(model, processor, path)``: the transformers classes named ``model_class`` and
        ``processor_class`` loaded with ``from_pretrained`` (:func:`load_pretrained`) from
        ``weights``, else ``$env_var``, else the Hugging Face cache.

        Raises :class:`EngineUnavailable` when transformers (or one of the classes) does not
        import, saying how to install it; when the named ``backend`` cannot run here (checked
        before the weights are read, :func:`engines.backends.choose_backend`); or when the weights
        are not found or do not load (:meth:`missing_message`). Nothing is downloaded unless
        ``allow_download`` and no location was named (argument or ``$env_var``).
        """
        try:
            import transformers

            model_cls = getattr(transformers, model_class)
            processor_cls = getattr(transformers, processor_class)
        except (ImportError, AttributeError) as exc:  # AttributeError: what `from transformers import X` reports
            raise EngineUnavailable(f"{self.engine} needs {self.needs}: {self.install_hint}") from exc
        from engines.backends import choose_backend

        choose_backend(backend)  # a named backend that cannot run here fails before the weights load
        return load_pretrained(model_cls, processor_cls, self.find(weights), self.model_id, self.missing_message,
                               explicit=bool(weights or setting(self.env_var)),
                               allow_download=allow_download)


def find_amt_weights(weights: str | None = None) -> tuple[str | None, str]:
    """``(dir or None, where)``: ``weights``, else ``$BACKSCORE_AMT_WEIGHTS``; a checkpoint has a ``config.json``."""
    env = setting(AMT_WEIGHTS_ENV)
    for value, where in ((weights, f"weights directory {weights}"), (env, f"{AMT_WEIGHTS_ENV}={env}")):
        if value:
            ok = (Path(value) / AMT_CONFIG_FILE).is_file()
            return (value if ok else None), where + ("" if ok else f" (no {AMT_CONFIG_FILE} there)")
    return None, "none given"
