# Pointex developer entry points. `make help` lists them.
# Everything runs from the project's own virtualenv (.venv) and npm tooling (node_modules),
# which the first target that needs them creates from pyproject.toml and package.json.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
BUF := node_modules/.bin/buf
INSTALLED := $(VENV)/.installed
NPM_INSTALLED := node_modules/.installed
PYTEST_FLAGS ?= -q

.PHONY: help install run test test-unit test-contract test-integration test-e2e lint fmt \
        proto proto-check buf-lint bench bench-quick clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./client -e '.[dev]'
	touch $@

$(NPM_INSTALLED): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(INSTALLED) $(NPM_INSTALLED) ## create .venv and node_modules from the project's files

run: $(INSTALLED) ## start the command and query servers and the sandbox payment provider
	$(PY) scripts/run_local.py

proto: $(INSTALLED) ## regenerate client/src/pointex/v1 from protos/
	$(PY) scripts/gen_protos.py

proto-check: $(INSTALLED) ## fail when the committed generated code is stale
	$(PY) scripts/gen_protos.py --check

buf-lint: $(NPM_INSTALLED) ## lint the protobuf contract
	$(BUF) lint

lint: $(INSTALLED) buf-lint proto-check ## buf lint, stale codegen, ruff, mypy --strict, import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy server/src client/src/pointex/client client/src/pointex/cli tests scripts bench
	$(BIN)/lint-imports

fmt: $(INSTALLED) ## format and auto-fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint ## lint, then the whole suite (PostgreSQL included)
	$(BIN)/pytest $(PYTEST_FLAGS) tests

test-unit: $(INSTALLED) ## the pure domain
	$(BIN)/pytest $(PYTEST_FLAGS) tests/unit

test-contract: $(INSTALLED) ## the event-store contract suite on SQLite and PostgreSQL
	$(BIN)/pytest $(PYTEST_FLAGS) tests/contract

test-integration: $(INSTALLED) ## actors, group commit, projections on real databases
	$(BIN)/pytest $(PYTEST_FLAGS) tests/integration

test-e2e: $(INSTALLED) ## real server processes over loopback gRPC
	$(BIN)/pytest $(PYTEST_FLAGS) tests/e2e

# The bench extra adds py-spy, the profiler that explains a missed target; it is installed
# on first use.
BENCH_DEPS = test -x $(BIN)/py-spy || \
	$(PY) -m pip install --quiet -e ./client -e '.[dev,bench]'

bench: install ## benchmark every contender and scenario, median of 3 runs: about 35–40 minutes
	$(BENCH_DEPS)
	$(PY) -m bench.run

bench-quick: install ## every benchmark scenario once, in under 3 minutes (same JSON shape)
	$(BENCH_DEPS)
	$(PY) -m bench.run --quick

clean: ## remove local state (.pointex data, caches); keeps .venv and node_modules
	rm -rf .pointex .pytest_cache .mypy_cache .ruff_cache
