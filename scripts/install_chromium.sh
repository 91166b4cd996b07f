#!/usr/bin/env bash
# Debian's chromium for tests/serve/test_demo_page.py (the demo page in a real headless browser, driven
# over the DevTools protocol). `make test` runs it. Needs root (or sudo without a password); a no-op when
# chromium is present.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install_chromium: not root and no sudo; skipping (tests/serve/test_demo_page.py will be skipped)" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_chromium: no apt-get; install chromium yourself (tests/serve/test_demo_page.py will be skipped)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
chromium --version >&2
