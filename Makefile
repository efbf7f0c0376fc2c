# The two commands: `make demo` and `make test`. Both set everything up first (`make setup`).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.geomot-setup-stamp
PYTEST_ARGS ?=

.PHONY: setup test test-all demo lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	@touch $(STAMP)

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -q -m "" $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/geomot demo --out out/demo

lint: setup
	$(VENV)/bin/ruff check .

format: setup
	$(VENV)/bin/ruff format geomot tests benchmarks examples

bench: setup
	$(PY) benchmarks/bench_sliced.py

clean:
	rm -rf out .pytest_cache .ruff_cache
