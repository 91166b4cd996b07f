#!/usr/bin/env bash
# Fetch the real test media (Debian packages, extracted without installing) into .cache/media.
#   python3-imageio : cockatoo.mp4 (14 s, 1280x720 h264 + aac), realshort.mp4   (BSD-2)
#   kajongg         : ~335 recorded spoken words (ogg), 8 speakers              (GPL-2)
# Idempotent: does nothing when the files are already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/media"
marker="$dest/.complete"
[ -f "$marker" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "fetch_media: apt-get not found; real-media tests need Debian's python3-imageio and kajongg packages" >&2
  exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
if ! apt-get download python3-imageio kajongg >/dev/null 2>&1; then
  # package lists may be missing on a fresh machine
  if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null; else sudo apt-get update -qq >/dev/null; fi
  apt-get download python3-imageio kajongg >/dev/null
fi
for deb in ./*.deb; do dpkg-deb -x "$deb" x; done
mkdir -p "$dest/voices"
cp x/usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4 "$dest/"
cp x/usr/lib/python3/dist-packages/imageio/resources/images/realshort.mp4 "$dest/"
cp -r x/usr/share/kajongg/voices/. "$dest/voices/"
touch "$marker"
echo "fetch_media: real media in $dest" >&2
