#!/usr/bin/env bash
# Debian's chromium for tests/serve/test_demo_page.py (the demo page in a real headless browser, driven
# over the DevTools protocol). Needs root (CI runs it as root); a no-op when chromium is present.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_chromium: not root; skipping (tests/serve/test_demo_page.py will be skipped)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
chromium --version >&2
