"""``backscore serve``: run the Ray Serve application from a config file (a thin wrapper of ``serve run``).

    backscore serve [--config deploy/local.yaml] [--host H] [--port P] [--grpc-port P] [--local]

``--host/--port/--grpc-port`` override the config's ``http_options``/``grpc_options``; ``--local``
runs the smallest setup (``models: local``: the engines inside the gateway). The config is
written to a temporary file with the overrides and handed to ``serve run``, which stays in the
foreground until Ctrl-C.
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

from pipelines.cli.args import Handler
from pipelines.errors import OptionError

DEFAULT_CONFIG = "deploy/local.yaml"


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    p = sub.add_parser("serve", help="run the HTTP/gRPC/WebRTC service (Ray Serve) from a config file")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"Serve config YAML (default {DEFAULT_CONFIG})")
    p.add_argument("--host", help="HTTP host (overrides the config)")
    p.add_argument("--port", type=int, help="HTTP port (overrides the config)")
    p.add_argument("--grpc-port", type=int, help="gRPC port (overrides the config)")
    p.add_argument("--local", action="store_true", help="engines inside the gateway (models: local)")
    p.add_argument("--address", default="local",
                   help='Ray cluster for ray.init (default "local": a new one; "auto": the running cluster)')
    return {"serve": run_serve}


def configured(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``config`` with the command-line overrides applied."""
    out = dict(config)
    http = dict(out.get("http_options") or {})
    if args.host:
        http["host"] = args.host
    if args.port:
        http["port"] = args.port
    out["http_options"] = http
    if args.grpc_port and out.get("grpc_options"):
        out["grpc_options"] = {**out["grpc_options"], "port": args.grpc_port}
    if args.local:
        out["applications"] = [{**app, "args": {**{k: v for k, v in (app.get("args") or {}).items() if k != "backend"},
                                                "models": "local"},
                                "deployments": [d for d in app.get("deployments", []) if d.get("name") == "Gateway"]}
                               for app in out.get("applications", [])]
    return out


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
    serve_cli = shutil.which("serve", path=os.path.dirname(sys.executable)) or shutil.which("serve")
    if serve_cli is None:
        raise OptionError("the 'serve' command (ray[serve]) is not installed: pip install -e '.[serve]'")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="backscore-serve-", delete=False) as f:
        yaml.safe_dump(configured(config, args), f, sort_keys=False)
    try:
        return subprocess.call([serve_cli, "run", "-a", args.address, f.name])
    except KeyboardInterrupt:
        return 130
    finally:
        os.unlink(f.name)
