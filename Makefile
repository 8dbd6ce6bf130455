# The two commands of this project: `make demo` and `make test` (CI runs `.ci/run`, i.e. `make test`).
# The virtualenv is .venv; stamp files inside it make repeated runs skip reinstalling, and are
# remade when pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
RUN_STAMP := $(VENV)/.herder-run.stamp
DEV_STAMP := $(VENV)/.herder-dev.stamp

.PHONY: demo test test-deps lint typecheck pytest clean

demo: $(RUN_STAMP)
	$(BIN)/python scripts/demo.py

test: test-deps lint typecheck pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

pytest: $(DEV_STAMP)
	$(BIN)/pytest -q

# System packages the tests need, then the Python dev dependencies. Run as root on a fresh
# Debian machine. The dashboard tests drive Debian's Chromium (never a browser Playwright
# downloads); the store's tests start a PostgreSQL server of their own from Debian's binaries
# (/usr/lib/postgresql/*/bin). Without them those tests fail when CI is set.
test-deps: $(DEV_STAMP)
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# An editable install writes no bytecode: compiled here, so that the first start (and every
# one, where PYTHONDONTWRITEBYTECODE is set) does not compile herder's modules again.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m compileall -q src
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m compileall -q src
	touch $@ $(RUN_STAMP)

clean:
	rm -rf $(VENV) src/*.egg-info .mypy_cache .pytest_cache .ruff_cache

# Benchmarks (issue 5; docs/benchmarks.md). `bench` prepares Debian's redis-server and the peers'
# virtualenv (bench/.venv-peers), then runs herder and its peers side by side, 3 repeats;
# `bench-quick` runs herder alone (and W3's bound) at small sizes in under a minute.
.PHONY: bench bench-quick

bench: $(RUN_STAMP)
	bash bench/setup.sh
	$(BIN)/python -m bench

bench-quick: $(RUN_STAMP)
	$(BIN)/python -m bench --quick
