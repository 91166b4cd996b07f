"""Every ``BACKSCORE_*`` environment variable, read in one place: :class:`Settings`.

It lives in ``engines/`` because that is the bottom layer: the engines, ``pipelines/`` and
``serve/`` all read their settings here (``engines`` imports nothing of the other two). The
variables are read when :func:`settings` is called, not at import, so a value set by the user's
shell, a Serve ``runtime_env`` or a test applies to the next call. A value that does not parse is
a :class:`SettingsError` naming the variable. The README's table of variables is made from the
field descriptions (``python -m engines.settings`` prints it) and a test keeps the two equal.

A frozen dataclass with typed fields and their bounds, parsed by hand: the command line imports
this on every run, and pydantic would add ~0.1 s to each start for nine variables.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.base import EngineError

PREFIX = "BACKSCORE_"


class SettingsError(EngineError):
    """A ``BACKSCORE_*`` variable has a value that does not parse."""


def _setting(default: Any, description: str, *, lo: float | None = None, hi: float | None = None) -> Any:
    return field(default=default, metadata={"description": description, "lo": lo, "hi": hi})


@dataclass(frozen=True)
class Settings:
    """The environment of one call (see the module doc); each field is ``BACKSCORE_<FIELD>``."""

    backend: str | None = _setting(None, "inference backend of the neural models when `--backend` is `auto` "
                                   "(tensorrt, ort-cuda, torch-cuda, ort-cpu, torch-cpu; default: the first that runs)")
    cache: str | None = _setting(None, "cache folder: the built-in catalog, ONNX exports, TensorRT plans "
                                 "(default `~/.cache/backscore`)")
    soundfont: str | None = _setting(None, "a General MIDI soundfont (.sf2) for the composer instead of the one "
                                     "in the pretty_midi wheel")
    musicgen_weights: str | None = _setting(None, "MusicGen weights folder (`--engine musicgen`)")
    clip_weights: str | None = _setting(None, "CLIP weights folder (`--affect-engine clip...`)")
    wav2vec2_weights: str | None = _setting(None, "wav2vec2 emotion-classifier weights folder")
    amt_weights: str | None = _setting(None, "trained AMT model folder (`--affect-engine amt`)")
    max_upload_mb: float = _setting(200.0, "the largest video the service accepts, HTTP upload or gRPC message "
                                    "(MiB; the app's `max_upload_mb` overrides it)", lo=0.001)
    max_media_s: float = _setting(900.0, "the longest video the service analyses, declared or stamped "
                                  "(seconds; longer is refused before decoding: 413 / RESOURCE_EXHAUSTED)", lo=1.0)
    cli_max_media_s: float = _setting(14400.0, "the longest video `backscore` analyses on the command line "
                                      "(seconds)", lo=1.0)
    max_pixels_per_s: float = _setting(1e9, "decoded pixels per second of media a video may need (width x "
                                       "height x frame rate; 4K at 60 fps is 5e8)", lo=1.0)
    max_frame_pixels: float = _setting(8192 * 8192, "the largest picture a video may have (width x height; 8K is "
                                       "3.3e7)", lo=1.0)
    max_track_s: float = _setting(1800.0, "the longest music track read into a library or under a video "
                                  "(seconds)", lo=1.0)
    max_uploads: int = _setting(64, "uploads one gateway replica receives at once (more: 503 with Retry-After "
                                "at once, so health checks and live signalling always find room)", lo=1)
    max_json_kb: float = _setting(64.0, "the largest JSON request body, e.g. a WebRTC offer (KiB; else 413)",
                                  lo=1.0)
    upload_idle_s: float = _setting(15.0, "an upload (or JSON body) that sends nothing for this long is dropped "
                                    "(seconds; 408)", lo=0.1)
    upload_min_kbps: float = _setting(16.0, "slowest average rate an upload may keep after its first "
                                      "`BACKSCORE_UPLOAD_IDLE_S` (KiB/s; 0: any; else 408)", lo=0.0)
    request_timeout_s: float = _setting(600.0, "longest a job may run after its upload (seconds; then it is "
                                        "stopped: 504 / DEADLINE_EXCEEDED); request folders older than this "
                                        "are swept", lo=1.0)
    tmpdir: str | None = _setting(None, "where the service keeps per-request folders (default: the system's "
                                  "temporary folder)")
    model_niceness: int = _setting(5, "how much the model replicas lower their CPU priority, so the gateway's "
                                   "event loop that paces live audio wins (0: not at all)", lo=0, hi=19)
    api_keys_file: str | None = _setting(None, "JSON file of API keys, hashed (`backscore keys new NAME --file F`); "
                                         "set (or `BACKSCORE_API_KEYS`): every `/v1/*` route and gRPC method needs "
                                         "a key; neither: local mode, open but loopback only")
    api_keys: str | None = _setting(None, "API keys besides the file's, as comma-separated `NAME:SHA256` entries "
                                    "(sha256 hex of the key; or the key file's JSON): hashes only, never keys")
    key_rpm: int = _setting(60, "requests a minute one API key may make, per gateway replica (a key's `rpm` "
                            "overrides it; more: 429 / RESOURCE_EXHAUSTED with Retry-After)", lo=1)
    key_jobs: int = _setting(2, "uploads and jobs (analyze, recommend, score) one API key may have in flight, per "
                             "gateway replica (a key's `jobs` overrides it; more: 429)", lo=0)
    key_live_minutes: float = _setting(120.0, "live-session minutes one API key may use a day (UTC), WebRTC and gRPC "
                                       "`Stream` together, per gateway replica (a key's `live_minutes` overrides "
                                       "it; a session open at the limit is ended)", lo=0.0)
    allowed_origins: str | None = _setting(None, "browser origins besides the service's own that may call `/v1/*`, "
                                           "comma-separated (e.g. `https://studio.example.com`; others: 403; "
                                           "default: same origin only)")
    host: str = _setting("127.0.0.1", "the address `backscore serve` (when neither `--host` nor the config says) and "
                         "`python -m serve.webrtc` listen on; other than loopback only with API keys")
    api_key: str | None = _setting(None, "the API key clients send (`python -m serve.grpc.client`)")
    load_video: str | None = _setting(None, "the video Locust uploads (`loadtest/locustfile.py`; default: a "
                                      "synthesized one)")
    load_mix: str = _setting("8:2:1:1", "Locust's request mix: recommend:analyze:score:health weights")

    def cache_root(self) -> Path:
        """The cache folder, default ``~/.cache/backscore``."""
        return Path(self.cache) if self.cache else Path.home() / ".cache" / "backscore"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings ``env`` (default: this process's environment) holds; :class:`SettingsError` if one
        does not parse or is out of its bounds."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = PREFIX + f.name.upper()
            raw = env.get(name)
            if raw is None:
                continue
            values[f.name] = _parse(name, raw, f)
        return cls(**values)


def _parse(name: str, raw: str, f: dataclasses.Field[Any]) -> Any:
    kind = type(f.default)
    if kind is float or kind is int:
        try:
            value: float = kind(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}: expected {'an integer' if kind is int else 'a number'} (got {raw!r})") \
                from None
        lo, hi = f.metadata["lo"], f.metadata["hi"]
        if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
            raise SettingsError(f"{name}: must be {bounds} (got {raw!r})")
        return value
    return raw


def settings() -> Settings:
    """The settings as the environment says now; :class:`SettingsError` for a value that does not parse."""
    return Settings.from_env()


def setting(env_var: str) -> Any:
    """The value of one variable by its full name (``"BACKSCORE_CLIP_WEIGHTS"``), through :func:`settings`."""
    if not env_var.startswith(PREFIX):
        raise KeyError(env_var)
    return getattr(settings(), env_var[len(PREFIX):].lower())


def variables() -> list[str]:
    """Every variable's full name."""
    return [PREFIX + f.name.upper() for f in dataclasses.fields(Settings)]


def markdown_table() -> str:
    """The README's table of variables."""
    rows = ["| variable | default | what it sets |", "|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default = "" if f.default is None else f"`{f.default}`"
        rows.append(f"| `{PREFIX}{f.name.upper()}` | {default} | {f.metadata['description']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
