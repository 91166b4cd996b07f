# backscore -- see README.md. Every target sets itself up (.venv, test media) first.
PY := .venv/bin/python
.PHONY: setup media demo test check bench bench-gpu clean

setup:
	@scripts/bootstrap.sh

media:
	@scripts/fetch_media.sh

demo: setup
	@scripts/demo.sh

test: setup media
	$(PY) -m pytest -q

check: setup
	$(PY) -m ruff check engines pipelines serve tests loadtest
	$(PY) -m mypy engines pipelines serve

bench: setup media
	$(PY) -m pipelines.bench --out BENCHMARKS.md

bench-gpu: setup
	$(PY) -m pipelines.bench_neural --out BENCHMARKS.md

clean:
	rm -rf out bench-out .pytest_cache .mypy_cache .ruff_cache
