# geo_service: the two commands a new machine needs are `make run` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# pytest-xdist workers for `make test` (CI has 2 cores; each worker has its own PostGIS databases).
TEST_WORKERS ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test setup services lint bench lock clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Exact versions from requirements.lock (what CI ran), then the project itself without deps.
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed

## Install and serve the bundled Weifang dataset.
run: setup
	$(BIN)/geo-service serve --host $(HOST) --port $(PORT)

## Install everything (PostgreSQL/PostGIS and Chromium from apt, Python packages), lint, and
## run all tests.
test: setup
	bash scripts/test-services.sh
	$(MAKE) --no-print-directory lint
	. ./.test-env && $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

services:
	bash scripts/test-services.sh

lint: setup
	$(BIN)/ruff check geo_service tests bench scripts deploy
	$(BIN)/ruff format --check geo_service
	$(BIN)/mypy geo_service
	$(BIN)/lint-imports

bench: setup
	bash scripts/test-services.sh
	. ./.test-env && $(BIN)/python -m bench.run_all

## Re-resolve requirements.lock from pyproject.toml in a fresh virtualenv.
lock:
	rm -rf .venv-lock && $(PY) -m venv .venv-lock
	.venv-lock/bin/pip install -q ".[dev]"
	.venv-lock/bin/pip freeze --exclude-editable | grep -v '^geo[-_]service' > requirements.lock
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache artifacts
