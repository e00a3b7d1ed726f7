# Pointex developer entry points. `make help` lists them.
# Everything runs from the project's own virtualenv (.venv) and npm tooling (node_modules),
# which the first target that needs them creates from the locks: requirements/dev.lock
# (exact versions and hashes, compiled from pyproject.toml by `make lock`) and
# package-lock.json (the npm workspace: buf, protoc-gen-es, and the TypeScript SDK in
# sdks/typescript). docs/dependencies.md says how to bump them.

PYTHON ?= python3
# The e2e suites `make test` runs a second time against a cluster of three command servers
# on PostgreSQL, their calls going through a standby that forwards them (docs/scale-out.md).
# The market, refused streams and cooling-off refunds run against the split cluster instead.
CLUSTER_SUITES := tests/e2e/test_commands.py tests/e2e/test_examples.py
# Again with the command servers splitting the slice ranges (trading across owners); and the
# commands again with them balancing the ranges among themselves (their trading is proved by
# tests/e2e/test_split_trading.py).
SPLIT_SUITES := tests/e2e/test_commands.py tests/e2e/test_refused_streams.py \
        tests/e2e/test_market.py tests/e2e/test_cooling_off.py
BALANCED_SUITES := tests/e2e/test_commands.py
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
BUF := node_modules/.bin/buf
INSTALLED := $(VENV)/.installed
NPM_INSTALLED := node_modules/.installed
TS_SDK := sdks/typescript
PYTEST_FLAGS ?= -q
# Every third-party package comes from the lock, hash-checked; the two local packages are then
# installed from the tree without their dependencies (already there) and without build
# isolation (so the locked setuptools builds them, not whatever is newest).
LOCKED_INSTALL = $(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/dev.lock

.PHONY: help install run run-cluster run-cluster-split run-cluster-balanced test test-cluster test-unit test-contract test-integration test-e2e lint fmt \
        proto proto-check docs docs-check buf-lint ts-build lock lock-upgrade lock-check chaos bench \
        bench-quick clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(INSTALLED): requirements/dev.lock pyproject.toml client/pyproject.toml
	@$(PYTHON) scripts/lock.py --check
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(LOCKED_INSTALL)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e ./client -e .
	$(PY) -m pip check
	touch $@

$(NPM_INSTALLED): package.json package-lock.json $(TS_SDK)/package.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(INSTALLED) $(NPM_INSTALLED) ts-build ## create .venv and node_modules from the locks, build the TypeScript SDK

# tsc type-checks (strict) and compiles the SDK, its examples and its unit tests into
# $(TS_SDK)/dist, which the test suite runs with node.
ts-build: $(NPM_INSTALLED) ## type-check and build the TypeScript SDK, its examples and tests (tsc)
	npm run build --silent --workspace $(TS_SDK)

# `lock` cannot need an up-to-date install (that refuses a stale lock): it only needs uv,
# which the current lock provides.
lock: ## recompile requirements/*.lock after editing dependencies in a pyproject.toml
	test -x $(BIN)/uv || { test -x $(PY) || $(PYTHON) -m venv $(VENV); $(LOCKED_INSTALL); }
	$(PY) scripts/lock.py

lock-upgrade: ## move every lock to the newest versions pyproject.toml allows
	test -x $(BIN)/uv || { test -x $(PY) || $(PYTHON) -m venv $(VENV); $(LOCKED_INSTALL); }
	$(PY) scripts/lock.py --upgrade

lock-check: ## fail when a lock is stale against pyproject.toml (offline)
	$(PYTHON) scripts/lock.py --check

run: $(INSTALLED) ## start the command and query servers and the sandbox payment provider
	$(PY) scripts/run_local.py

run-cluster: $(INSTALLED) ## three command servers on PostgreSQL (POINTEX_STORE_URL), the query server, the sandbox
	$(PY) scripts/run_local.py --cluster

run-cluster-split: $(INSTALLED) ## as run-cluster, the command servers splitting the slice ranges (no trading)
	$(PY) scripts/run_local.py --split

run-cluster-balanced: $(INSTALLED) ## as run-cluster, the command servers balancing the slice ranges among themselves (no trading)
	$(PY) scripts/run_local.py --balanced

proto: $(INSTALLED) $(NPM_INSTALLED) ## regenerate the Python and TypeScript stubs, the reasons tables, the blocking client
	$(PY) scripts/gen_protos.py
	$(PY) scripts/gen_typescript.py
	$(PY) scripts/gen_reasons.py
	$(PY) scripts/gen_sync_client.py

proto-check: $(INSTALLED) $(NPM_INSTALLED) ## fail when the committed generated code is stale
	$(PY) scripts/gen_protos.py --check
	$(PY) scripts/gen_typescript.py --check
	$(PY) scripts/gen_reasons.py --check
	$(PY) scripts/gen_sync_client.py --check

docs: $(INSTALLED) ## copy the examples' snippets into the docs that quote them
	$(PY) scripts/gen_snippets.py

docs-check: $(INSTALLED) ## fail when a quoted snippet differs from its example
	$(PY) scripts/gen_snippets.py --check

buf-lint: $(NPM_INSTALLED) ## lint the protobuf contract
	$(BUF) lint

lint: lock-check $(INSTALLED) buf-lint proto-check docs-check ts-build ## stale locks and codegen, buf lint, tsc, ruff, mypy --strict, import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy server/src client/src/pointex/client client/src/pointex/cli tests scripts bench examples
	$(BIN)/lint-imports

fmt: $(INSTALLED) ## format and auto-fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint ## lint, then the whole suite (PostgreSQL included), then e2e suites on a cluster
	$(BIN)/pytest $(PYTEST_FLAGS) tests
	POINTEX_TEST_CLUSTER=1 $(BIN)/pytest $(PYTEST_FLAGS) -k "not sqlite" $(CLUSTER_SUITES)
	POINTEX_TEST_CLUSTER=split $(BIN)/pytest $(PYTEST_FLAGS) -k "not sqlite" $(SPLIT_SUITES)
	POINTEX_TEST_CLUSTER=balanced $(BIN)/pytest $(PYTEST_FLAGS) -k "not sqlite" $(BALANCED_SUITES)

test-cluster: $(INSTALLED) ts-build ## e2e suites with each PostgreSQL command server a 3-process cluster (whole, split, balanced ranges)
	POINTEX_TEST_CLUSTER=1 $(BIN)/pytest $(PYTEST_FLAGS) -k "not sqlite" $(CLUSTER_SUITES)
	POINTEX_TEST_CLUSTER=split $(BIN)/pytest $(PYTEST_FLAGS) -k "not sqlite" $(SPLIT_SUITES)
	POINTEX_TEST_CLUSTER=balanced $(BIN)/pytest $(PYTEST_FLAGS) -k "not sqlite" $(BALANCED_SUITES)

test-unit: $(INSTALLED) ## the pure domain
	$(BIN)/pytest $(PYTEST_FLAGS) tests/unit

test-contract: $(INSTALLED) ## the event-store contract suite on SQLite and PostgreSQL
	$(BIN)/pytest $(PYTEST_FLAGS) tests/contract

test-integration: $(INSTALLED) ## actors, group commit, projections on real databases
	$(BIN)/pytest $(PYTEST_FLAGS) tests/integration

test-e2e: $(INSTALLED) ts-build ## real server processes over loopback gRPC
	$(BIN)/pytest $(PYTEST_FLAGS) tests/e2e

chaos: $(INSTALLED) ## the fault suite at full length (make test runs it short), with its summary table
	POINTEX_CHAOS=full $(BIN)/pytest $(PYTEST_FLAGS) tests/e2e/chaos

bench: install ## benchmark every contender and scenario, median of 3 runs: about 35–40 minutes
	$(PY) -m bench.run

bench-quick: install ## every benchmark scenario once, in under 3 minutes (same JSON shape)
	$(PY) -m bench.run --quick

clean: ## remove local state (.pointex data, caches); keeps .venv and node_modules
	rm -rf .pointex .pytest_cache .mypy_cache .ruff_cache
