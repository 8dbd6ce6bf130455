# The two commands of this project: `make demo` and `make test` (CI runs `.ci/run`, i.e. `make test`).
# The virtualenv is .venv; stamp files inside it make repeated runs skip reinstalling, and are
# remade when pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
RUN_STAMP := $(VENV)/.herder-run.stamp
DEV_STAMP := $(VENV)/.herder-dev.stamp

.PHONY: demo test test-deps lint typecheck pytest pytest-newer clean

demo: $(RUN_STAMP)
	$(BIN)/python scripts/demo.py

test: test-deps lint typecheck pytest pytest-newer

# ruff, then the import contracts of pyproject.toml ([tool.importlinter])
lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

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
	[ -x /usr/bin/systemd-analyze ] || missing="$$missing systemd"; \
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

# herder claims Python >= 3.11 and the rest of `make test` runs on 3.11: the unit tests and one
# end-to-end test (a real master and workers) also run under each newer version, in a venv of
# its own (.venv-3.12, ...) with the `test` extra. A version whose interpreter is missing is
# skipped with a message, or fails the run under CI.
NEWER_PYTHONS := 3.12 3.13
# sqlite3's warning that Python 3.14 refuses a parameter binding is an error here
NEWER_WARNINGS := -W "error:Binding:DeprecationWarning"
NEWER_TESTS   := tests/unit \
	tests/integration/test_lifecycle.py::test_exception_in_execute_is_retried_then_reported

# pythonX.Y that runs (a pyenv shim may exist for a version it does not select), else pyenv's own
find_python = $(shell for p in python$(1) $$(pyenv root 2>/dev/null)/versions/$(1).*/bin/python$(1); \
	do "$$p" -c '' >/dev/null 2>&1 && command -v "$$p" && break; done)

pytest-newer: $(addprefix pytest-,$(NEWER_PYTHONS))

pytest-%: pyproject.toml
	@if [ -z "$(call find_python,$*)" ]; then \
		if [ "$${CI:-}" = true ]; then echo "error: python$* not found; CI must test it" >&2; exit 1; fi; \
		echo "SKIPPED: the tests under Python $*: no python$* found (install it, or pyenv's $*)"; \
		exit 0; \
	fi; \
	$(MAKE) --no-print-directory .venv-$*/.herder-test.stamp NEWER_PYTHON="$(call find_python,$*)" \
	&& .venv-$*/bin/python -m pytest -q -p no:cacheprovider $(NEWER_WARNINGS) $(NEWER_TESTS)

.venv-%/.herder-test.stamp: pyproject.toml
	$(NEWER_PYTHON) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet -e '.[test]'
	.venv-$*/bin/python -m compileall -q src
	touch $@

clean:
	rm -rf $(VENV) $(addprefix .venv-,$(NEWER_PYTHONS)) src/*.egg-info .mypy_cache .pytest_cache \
		.ruff_cache .import_linter_cache .grimp_cache

# Benchmarks (docs/benchmarks.md). `bench` prepares Debian's redis-server and the peers'
# virtualenv (bench/.venv-peers), then runs herder and its peers side by side, 3 repeats;
# `bench-quick` runs herder alone (and W3's bound) at small sizes in under a minute.
.PHONY: bench bench-quick

bench: $(RUN_STAMP)
	bash bench/setup.sh
	$(BIN)/python -m bench

bench-quick: $(RUN_STAMP)
	$(BIN)/python -m bench --quick
