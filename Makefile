# vmvc: `make test` and `make bench` work on a fresh Debian 12 / Ubuntu 22.04+ machine as root;
# both run the idempotent `make setup` first.
PYTHON := .venv/bin/python

.PHONY: setup test test-fast lint bench bench-image

setup:
	scripts/setup.sh

test: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest

test-fast: setup  # the inner loop: no VM boots, whole runs or image builds (make test has them)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -m "not slow"

lint:
	$(PYTHON) -m ruff check .

ifndef RUN
RUN := runs/$(shell date +%Y-%m-%dT%H-%M-%S)
endif

bench: setup
	.venv/bin/vmvc run --suite quick --out $(RUN) || [ -s $(RUN)/results.json ]
	.venv/bin/vmvc report $(RUN)
	@echo "report: $(RUN)/report.html (raw data beside it: results.json, manifest.json, report.csv)"

bench-image: setup
	$(PYTHON) scripts/bench_image_cache.py
