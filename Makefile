# vmvc: `make test` and `make bench` work on a fresh Debian 12 / Ubuntu 22.04+ machine as root;
# both run the idempotent `make setup` first.
PYTHON := .venv/bin/python

.PHONY: setup test lint bench bench-image

setup:
	scripts/setup.sh

test: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest

lint:
	$(PYTHON) -m ruff check .

bench: setup
	@echo "make bench: the benchmark harness (vmvc run) lands with issue 5; for now: .venv/bin/vmvc doctor" >&2
	@exit 2

bench-image: setup
	$(PYTHON) scripts/bench_image_cache.py
