"""Every ``BACKSCORE_*`` environment variable, read in one place: :class:`Settings`.

It lives in ``engines/`` because that is the bottom layer: the engines, ``pipelines/`` and
``serve/`` all read their settings here (``engines`` imports nothing of the other two). The
variables are read when :func:`settings` is called, not at import, so a value set by the user's
shell, a Serve ``runtime_env`` or a test applies to the next call. A value that does not parse is
a :class:`SettingsError` naming the variable. The README's table of variables is made from the
field descriptions (``python -m engines.settings`` prints it) and a test keeps the two equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from engines.base import EngineError

PREFIX = "BACKSCORE_"


class SettingsError(EngineError):
    """A ``BACKSCORE_*`` variable has a value that does not parse."""


class Settings(BaseSettings):
    """The environment of one call (see the module doc); each field is ``BACKSCORE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    backend: str | None = Field(
        default=None, description="inference backend of the neural models when `--backend` is `auto` (tensorrt, "
        "ort-cuda, torch-cuda, ort-cpu, torch-cpu; default: the first that runs)")
    cache: str | None = Field(
        default=None, description="cache folder: the built-in catalog, ONNX exports, TensorRT plans "
        "(default `~/.cache/backscore`)")
    soundfont: str | None = Field(
        default=None, description="a General MIDI soundfont (.sf2) for the composer instead of the one in the "
        "pretty_midi wheel")
    musicgen_weights: str | None = Field(default=None, description="MusicGen weights folder (`--engine musicgen`)")
    clip_weights: str | None = Field(default=None, description="CLIP weights folder (`--affect-engine clip...`)")
    wav2vec2_weights: str | None = Field(default=None, description="wav2vec2 emotion-classifier weights folder")
    amt_weights: str | None = Field(default=None, description="trained AMT model folder (`--affect-engine amt`)")
    max_upload_mb: float = Field(
        default=200.0, gt=0, description="the largest video the service accepts, HTTP upload or gRPC message "
        "(MiB; the app's `max_upload_mb` overrides it)")
    tmpdir: str | None = Field(
        default=None, description="where the service keeps per-request folders (default: the system's temporary "
        "folder)")
    model_niceness: int = Field(
        default=5, ge=0, le=19, description="how much the model replicas lower their CPU priority, so the "
        "gateway's event loop that paces live audio wins (0: not at all)")
    load_video: str | None = Field(
        default=None, description="the video Locust uploads (`loadtest/locustfile.py`; default: a synthesized one)")
    load_mix: str = Field(default="8:2:1:1", description="Locust's request mix: recommend:analyze:score:health weights")

    def cache_root(self) -> Path:
        """The cache folder, default ``~/.cache/backscore``."""
        return Path(self.cache) if self.cache else Path.home() / ".cache" / "backscore"


def settings() -> Settings:
    """The settings as the environment says now; :class:`SettingsError` for a value that does not parse."""
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = PREFIX + str(err["loc"][0]).upper() if err.get("loc") else "a BACKSCORE_ variable"
        raise SettingsError(f"{name}: {err['msg']} (got {err.get('input')!r})") from exc


def setting(env_var: str) -> Any:
    """The value of one variable by its full name (``"BACKSCORE_CLIP_WEIGHTS"``), through :func:`settings`."""
    if not env_var.startswith(PREFIX):
        raise KeyError(env_var)
    return getattr(settings(), env_var[len(PREFIX):].lower())


def markdown_table() -> str:
    """The README's table of variables."""
    rows = ["| variable | default | what it sets |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else f"`{field.default}`"
        rows.append(f"| `{PREFIX}{name.upper()}` | {default} | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
