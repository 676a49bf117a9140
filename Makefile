# Trainyard: `make demo` and `make test` work on a fresh clone (Python 3.11+, Node.js).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.trainyard-installed
NODE_STAMP := node_modules/.trainyard-installed
PYTEST_ARGS ?=

.PHONY: chromium install demo test test-fast lint format synth bench load clean deploy destroy e2e-aws

install: $(STAMP) $(NODE_STAMP) chromium

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

# The CDK CLI is pinned in package.json (the registry's latest cannot read our assemblies).
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The console's browser tests drive Debian's chromium through Playwright's Python client
# (pointed at it; Playwright downloads no browser). Installed when missing: as root, or with
# sudo; otherwise a clear error.
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "error: the browser tests need Chromium at 'chromium' on PATH (no apt-get here to install it)" >&2; exit 1; \
	elif [ "$$(id -u)" = "0" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	elif command -v sudo >/dev/null 2>&1; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "error: the browser tests need Chromium: run 'apt-get install -y chromium' as root, then make install" >&2; exit 1; \
	fi

demo: install
	$(BIN)/trainyard demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-fast: install
	$(BIN)/pytest -m "not integration and not infra" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Scheduler vs the timer-polling baseline (simulation) + the embedded stack; writes bench/results.md.
# BENCH_ARGS: e.g. --cache /tmp/cells.jsonl (resume an interrupted run), --quick.
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# 100 tenants, 1,000 uploads on the embedded stack (too slow for CI); writes bench/load-results.md.
load: install
	$(BIN)/python -m bench.load

synth: install
	npx cdk synth --quiet

# Deploy, adopting what an earlier destroy or failed first deploy kept (docs/deploy.md).
deploy: install
	npx cdk deploy --import-existing-resources

# Remove the platform stack (refused while tenant stacks exist), then list what it
# retained on purpose (tables, buckets, log groups); DELETE_RETAINED=1 deletes those
# too, data included (docs/deploy.md).
destroy: install
	$(BIN)/trainyard aws destroy $(if $(filter 1,$(DELETE_RETAINED)),--delete-retained,)

# The real-account end-to-end suite: opt-in (TRAINYARD_E2E_AWS=1), sandbox accounts only.
e2e-aws: install
	@if [ "$(TRAINYARD_E2E_AWS)" = "1" ]; then \
		TRAINYARD_E2E_AWS=1 $(BIN)/pytest -s -p no:xdist tests/e2e_aws; \
	else \
		echo "e2e-aws skipped: set TRAINYARD_E2E_AWS=1 (it deploys to, and bills, the account of your credentials)"; \
	fi

clean:
	rm -rf $(VENV) node_modules cdk.out .trainyard .pytest_cache .ruff_cache
