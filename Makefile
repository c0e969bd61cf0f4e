# The two commands of the README, and the steps they need. Everything installs into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench chromium java clean lock

demo: $(STAMP)
	$(BIN)/momento demo

test: $(STAMP) chromium java lint
	$(BIN)/python -m pytest

# The package graph's contracts (pyproject.toml, [tool.importlinter]): a wrong arrow fails;
# so do ruff's rules and its formatting, and mypy's types (pyproject.toml, [tool.ruff], [tool.mypy]).
lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e and not slow"

bench: $(STAMP)
	$(BIN)/momento bench

# Every package, build tools included, from the lock file: pinned versions, each checked against
# its hashes (a tampered or substituted download fails the install). Then Momento itself, editable.
# Refresh the lock after changing pyproject.toml's dependencies with `make lock` (needs pip-tools).
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

lock:
	pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --all-build-deps \
	  --extra test --extra spark --output-file requirements.lock pyproject.toml

# The browser tests drive Debian's Chromium (a test tool's own browser download fails here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The Spark parity tests start pyspark, which needs a Java runtime (Debian's headless OpenJDK).
java:
	@command -v java >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }

clean:
	rm -rf $(VENV) data/lake artifacts .pytest_cache
