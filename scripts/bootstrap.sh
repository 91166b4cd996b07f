#!/usr/bin/env bash
# Create .venv in the repo root (if missing) and install backscore into it from the package
# registries. Idempotent and quick when nothing changed (keyed by the dependency files).
#   scripts/bootstrap.sh          runtime + dev tools (tests, lint) + the service (Ray Serve, WebRTC, gRPC) + the service (Ray Serve, aiortc, gRPC)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.backscore-installed"
want="$(cat pyproject.toml requirements/nodeps.txt | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "bootstrap: installing backscore and its dependencies into .venv (first run takes a few minutes)" >&2
.venv/bin/python -m pip install --quiet --upgrade pip
# torch is pinned to 2.13.0 in pyproject.toml: that is the CPU build; an unpinned torch
# would pull several GB of CUDA libraries.
.venv/bin/python -m pip install --quiet -e '.[dev,serve]'
# Packages whose declared dependencies are not needed (and do not install here):
.venv/bin/python -m pip install --quiet --no-deps -r requirements/nodeps.txt
echo "$want" > "$stamp"
echo "bootstrap: done" >&2
