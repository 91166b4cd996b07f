# backscore -- see README.md. Every target sets itself up (.venv, test media) first.
PY := .venv/bin/python
.PHONY: setup media demo serve test check bench bench-beats bench-styles bench-gpu bench-encoders bench-live soak clean

setup:
	@scripts/bootstrap.sh

media:
	@scripts/fetch_media.sh

demo: setup
	@scripts/demo.sh

serve: setup
	.venv/bin/backscore serve --config deploy/local.yaml

test: setup media
	@scripts/install_chromium.sh
	$(PY) -m pytest -q

check: setup
	$(PY) -m ruff check engines pipelines serve tests loadtest
	$(PY) -m mypy engines pipelines serve loadtest

bench: setup media
	$(PY) -m pipelines.devtools.bench --out BENCHMARKS.md

bench-beats: setup media
	$(PY) -m pipelines.devtools.beat_sync --out BENCHMARKS.md $(BENCH_BEATS_ARGS)

bench-styles: setup
	$(PY) -m pipelines.devtools.style_mood --out BENCHMARKS.md $(BENCH_STYLES_ARGS)

# bench-gpu runs on a bare CUDA machine too (torch, transformers, numpy; no .venv, no registry needed)
GPU_PY := $(shell [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)
bench-gpu:
	$(GPU_PY) -m pipelines.devtools.bench_musicgen --out BENCHMARKS.md

bench-encoders: setup
	$(PY) -m pipelines.devtools.bench_neural --out BENCHMARKS.md

bench-live: setup
	$(PY) -m pip install --quiet -e '.[load]'
	$(PY) -m loadtest.bench_live --sessions 12 --duration 120 --repeat 3 --grpc 2 --mix-original 2 \
		--ramp 8:20 --ramp-step 10 --plot benchmarks/live-ramp.png --out BENCHMARKS.md $(BENCH_LIVE_ARGS)

soak: setup
	$(PY) -m loadtest.soak --out BENCHMARKS.md --plot benchmarks/soak.png $(SOAK_ARGS)

clean:
	rm -rf out bench-out .pytest_cache .mypy_cache .ruff_cache
