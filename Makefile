# The two commands: `make demo` and `make test`. Both set everything up first (`make setup`).
# `make docs` builds the documentation site into site/ (mkdocs --strict; installs the docs extra on first use).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.geomot-setup-stamp
DOCS_STAMP := $(VENV)/.geomot-docs-stamp
SITE ?= site
PYTEST_ARGS ?=

.PHONY: setup test test-all demo docs dist lint format bench matcher clean

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

# the docs extra (mkdocs-material, mkdocstrings), with torch pinned to the installed build so that no CUDA wheel comes in
$(DOCS_STAMP): $(STAMP) pyproject.toml
	@echo "torch==$$($(PY) -c 'import torch; print(torch.__version__)')" > $(VENV)/.torch-constraint.txt
	$(PY) -m pip install -q -c $(VENV)/.torch-constraint.txt -e ".[docs]"
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	MPLBACKEND=Agg NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir $(SITE)

# sdist + wheel in dist/, checked by twine
dist: setup
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(VENV)/bin/twine check --strict dist/*

lint: setup
	$(VENV)/bin/ruff check .

format: setup
	$(VENV)/bin/ruff format geomot tests benchmarks examples

bench: setup
	$(PY) benchmarks/bench_sliced.py

# the default learned matcher, trained for an hour on the FAUST_r meshes of ../shared/data into out/ (never committed:
# FAUST forbids redistribution); use it with: geomot match A B --checkpoint out/matcher_faust --out p2p.txt
MATCHER_DATA ?= ../shared/data/FAUST_r
matcher: setup
	@test -d $(MATCHER_DATA) || { echo "make matcher: $(MATCHER_DATA) not found (set MATCHER_DATA=DIR)"; exit 2; }
	$(VENV)/bin/geomot train matcher --data $(MATCHER_DATA) --out out/matcher_faust --max-minutes 60 --epochs 1000

clean:
	rm -rf out .pytest_cache .ruff_cache site dist build
