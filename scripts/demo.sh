#!/usr/bin/env bash
# The main job on a sample: a real clip (Debian's python3-imageio cockatoo.mp4) when it can
# be fetched, else a synthesized video whose mood changes; writes into out/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mkdir -p out
if scripts/fetch_media.sh 2>/dev/null; then
  sample=".cache/media/cockatoo.mp4"
else
  sample="out/sample.mp4"
  [ -f "$sample" ] || .venv/bin/backscore synth-video "$sample"
fi
.venv/bin/backscore score "$sample" -o out/scored.mp4 --timeline out/timeline.json --plot out/timeline.png --bgm out/bgm.wav
.venv/bin/backscore synth-video out/mood-change.mp4 --pattern calm-exciting-calm
.venv/bin/backscore score out/mood-change.mp4 -o out/mood-change-scored.mp4 --timeline out/mood-change.json --plot out/mood-change.png
echo "demo: outputs in $root/out (scored.mp4, timeline.json, timeline.png, bgm.wav, mood-change-scored.mp4, ...)"
