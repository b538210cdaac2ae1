# geo_service: the two commands a new machine needs are `make run` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test setup setup-dev services lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

## Install and serve the bundled Weifang dataset.
run: setup
	$(BIN)/geo-service serve --host $(HOST) --port $(PORT)

## Install everything (PostgreSQL/PostGIS and Chromium from apt, Python packages) and run all tests.
test: setup
	bash scripts/test-services.sh
	. ./.test-env && $(BIN)/python -m pytest

services:
	bash scripts/test-services.sh

lint: setup
	$(BIN)/ruff check geo_service tests bench scripts
	$(BIN)/mypy geo_service

bench: setup
	bash scripts/test-services.sh
	. ./.test-env && $(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache artifacts
