"""``backscore serve``: run the Ray Serve application from a config file (a thin wrapper of ``serve run``).

    backscore serve [--config deploy/local.yaml] [--host H] [--port P] [--grpc-port P] [--local]

``--host/--port/--grpc-port`` override the config's ``http_options``/``grpc_options`` (a config
without ``http_options.host`` gets ``$BACKSCORE_HOST``, default 127.0.0.1); ``--local`` runs the
smallest setup (``models: local``: the engines inside the gateway). The config is written to a
temporary file with the overrides and handed to ``serve run``, which stays in the foreground until
Ctrl-C.

Before anything is started, the API keys are checked (``BACKSCORE_API_KEYS_FILE`` /
``BACKSCORE_API_KEYS``, from this environment or the config's ``runtime_env.env_vars``; a missing or
malformed key file is an error now, not in a replica). With no keys (local mode) the service is
open, so:

* a host that is not loopback is refused (exit 2, saying how to add keys);
* gRPC is left out unless ``--grpc-port`` asks for it: Ray Serve's gRPC proxy listens on every
  interface (``[::]:port``, whatever ``http_options.host`` says), so without keys it would be open
  to the network.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from engines.settings import Settings
from pipelines.cli.args import Handler
from pipelines.errors import OptionError

DEFAULT_CONFIG = "deploy/local.yaml"
KEY_FILE = "BACKSCORE_API_KEYS_FILE"
KEY_VARIABLES = (KEY_FILE, "BACKSCORE_API_KEYS")


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    p = sub.add_parser("serve", help="run the HTTP/gRPC/WebRTC service (Ray Serve) from a config file")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"Serve config YAML (default {DEFAULT_CONFIG})")
    p.add_argument("--host", help="HTTP host (overrides the config; neither: $BACKSCORE_HOST, default 127.0.0.1); "
                   "other than loopback only with API keys")
    p.add_argument("--port", type=int, help="HTTP port (overrides the config)")
    p.add_argument("--grpc-port", type=int, help="gRPC port (overrides the config; with no API keys, gRPC runs only "
                   "when this is given, and listens on every interface)")
    p.add_argument("--local", action="store_true", help="engines inside the gateway (models: local)")
    p.add_argument("--address", default="local",
                   help='Ray cluster for ray.init (default "local": a new one; "auto": the running cluster)')
    return {"serve": run_serve}


def configured(config: dict[str, Any], args: argparse.Namespace, *, keys: bool = True,
               default_host: str = "127.0.0.1") -> dict[str, Any]:
    """``config`` with the command-line overrides applied. ``keys``: whether API keys are configured (without
    them gRPC stays off unless ``--grpc-port`` is given)."""
    out = dict(config)
    http = dict(out.get("http_options") or {})
    if args.host:
        http["host"] = args.host
    elif "host" not in http:
        http["host"] = default_host
    if args.port:
        http["port"] = args.port
    out["http_options"] = http
    if not keys and out.get("grpc_options") and not args.grpc_port:
        del out["grpc_options"]  # Ray's gRPC proxy listens on every interface: not without keys
    if args.grpc_port and out.get("grpc_options"):
        out["grpc_options"] = {**out["grpc_options"], "port": args.grpc_port}
    if args.local:
        out["applications"] = [{**app, "args": {**{k: v for k, v in (app.get("args") or {}).items() if k != "backend"},
                                                "models": "local"},
                                "deployments": [d for d in app.get("deployments", []) if d.get("name") == "Gateway"]}
                               for app in out.get("applications", [])]
    return out


def _config_env(config: dict[str, Any]) -> dict[str, str]:
    """The API-key variables the config's applications set in ``runtime_env.env_vars`` (they win over ours)."""
    out: dict[str, str] = {}
    for app in config.get("applications") or []:
        env = ((app or {}).get("runtime_env") or {}).get("env_vars") or {}
        out.update({k: str(env[k]) for k in KEY_VARIABLES if env.get(k)})
    return out


def _absolute_key_files(config: dict[str, Any]) -> None:
    """A relative ``BACKSCORE_API_KEYS_FILE`` in the config, made absolute (replicas do not start in this folder)."""
    for app in config.get("applications") or []:
        env = ((app or {}).get("runtime_env") or {}).get("env_vars") or {}
        if env.get(KEY_FILE):
            env[KEY_FILE] = os.path.abspath(str(env[KEY_FILE]))


def check_access(config: dict[str, Any], args: argparse.Namespace) -> tuple[Settings, bool]:
    """The settings the service will see and whether it has API keys; refuses (:class:`OptionError`, exit 2) to
    serve a non-loopback host without keys, and checks the keys (:class:`DataError` for a bad key file)."""
    from pipelines.access import is_loopback, load_key_file, parse_env_keys

    env = {**os.environ, **_config_env(config)}
    s = Settings.from_env(env)
    keys = bool(s.api_keys_file or (s.api_keys or "").strip())
    if s.api_keys:
        parse_env_keys(s.api_keys)
    if s.api_keys_file and args.address == "local":  # a new cluster on this machine: the file must be here
        load_key_file(s.api_keys_file)
    host = args.host or (config.get("http_options") or {}).get("host") or s.host
    if not keys and not is_loopback(str(host)):
        raise OptionError(
            f"refusing to listen on {host} with no API keys: anyone who can reach it could use the service. "
            "Listen on 127.0.0.1 (--host), or add a key and restart with it: `backscore keys new NAME --file "
            "keys.json`, then BACKSCORE_API_KEYS_FILE=keys.json backscore serve ... (README: Access control)")
    return s, keys


def run_serve(args: argparse.Namespace) -> int:
    import yaml

    path = Path(args.config)
    if not path.is_file():
        raise OptionError(f"serve config not found: {path} (run from the repository root, or pass --config)")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise OptionError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict) or "applications" not in config:
        raise OptionError(f"{path} is not a Serve config (no 'applications')")
    s, keys = check_access(config, args)
    serve_cli = shutil.which("serve", path=os.path.dirname(sys.executable)) or shutil.which("serve")
    if serve_cli is None:
        raise OptionError("the 'serve' command (ray[serve]) is not installed: pip install -e '.[serve]'")
    final = configured(config, args, keys=keys, default_host=s.host)
    if not keys and final.get("grpc_options"):
        print(f"backscore serve: warning: no API keys, and gRPC on port {final['grpc_options'].get('port')} listens "
              "on every interface (Ray Serve's gRPC proxy cannot be bound to one): firewall it", file=sys.stderr)
    elif not keys and config.get("grpc_options"):
        print("backscore serve: gRPC is off: no API keys, and Ray Serve's gRPC proxy listens on every interface "
              "(add keys, or pass --grpc-port to run it anyway)", file=sys.stderr)
    env = dict(os.environ)
    if args.address == "local":
        _absolute_key_files(final)
        if env.get(KEY_FILE):
            env[KEY_FILE] = os.path.abspath(env[KEY_FILE])
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="backscore-serve-", delete=False) as f:
        yaml.safe_dump(final, f, sort_keys=False)
    try:
        return subprocess.call([serve_cli, "run", "-a", args.address, f.name], env=env)
    except KeyboardInterrupt:
        return 130
    finally:
        os.unlink(f.name)
