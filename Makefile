# The two commands: `make demo` (set up, then run the main job on the bundled sample county)
# and `make test` (the whole test suite, including PostGIS and the headless browser).
.PHONY: setup demo test lint bench

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/yzt demo --out out/sample

test: setup
	.venv/bin/pytest

# The linter and the type checker (configured in pyproject.toml); CI runs them before the tests.
lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

# Benchmarks print figures and ratios; they are not tests (run them on a quiet machine).
bench: setup
	.venv/bin/python bench/bench_area.py
	.venv/bin/python bench/bench_overlay.py
	.venv/bin/python bench/bench_analyse.py
	.venv/bin/python bench/bench_load.py
	.venv/bin/python bench/bench_ogc.py
	.venv/bin/python bench/bench_tiles.py
	.venv/bin/python bench/bench_raster.py
	.venv/bin/python bench/bench_hardening.py
