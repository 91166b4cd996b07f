#!/usr/bin/env bash
# The one script a GPU task runs for issue 10: check the streaming MusicGen engine against transformers on
# the card, then measure live streams per GPU (make bench-gpu), inside ~5 minutes.
# Works on a bare CUDA machine (python3 with torch, transformers, numpy; no .venv, no registry, no make).
# Results: BENCHMARKS.md's "MusicGen streaming engine" section, and copies under $OUT when it is set.
#   scripts/gpu_bench.sh [extra bench_musicgen args, e.g. --streams 1,64,128,256]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
OUT_DIR=${OUT:-out/gpu}
mkdir -p "$OUT_DIR"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)"
} 2>&1 | tee "$OUT_DIR/env.txt"
export PYTHONUNBUFFERED=1
timeout "${GPU_BENCH_TIMEOUT_S:-540}" $PY -m pipelines.devtools.bench_musicgen --out BENCHMARKS.md "$@" 2>&1 \
  | grep -v '^\[transformers\] Model config' | tee "$OUT_DIR/bench_gpu.log"
rc=${PIPESTATUS[0]}
cp BENCHMARKS.md "$OUT_DIR/BENCHMARKS.md"
echo "bench_musicgen exit status: $rc" | tee -a "$OUT_DIR/bench_gpu.log"
exit "$rc"
