# Lichen — the front door.  `make run` and `make test` set everything up on a fresh machine.
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP    := $(VENV)/.installed
RUN_HOME ?= .lichen/sim-board
# the simulated board's dashboard (docs/dashboard.md); RUN_HTTP=off for none
RUN_HTTP ?= 127.0.0.1:8470
BOARD    ?= sim
PYTEST_ARGS ?=
WHEELHOUSE ?= dist/wheelhouse
EXTRAS ?= mqtt,gpio,i2c,serial,mdns

.PHONY: run test check lint unit soak bench system-deps venv clean help wheelhouse

help:
	@echo "make run    — set up and run the agent on a simulated board (home: $(RUN_HOME)),"
	@echo "              its dashboard on http://$(RUN_HTTP)/"
	@echo "make test   — set up, lint (ruff, mypy, import contracts) and run the test suite"
	@echo "make check  — the inner loop: lint + the tests not marked slow, in parallel (< 1 min)"
	@echo "make bench  — benchmarks, printed as ratios against limits measured in the same run"
	@echo "make soak   — long, large-scale variants of the tests"
	@echo "make lint   — ruff, mypy and the import contracts (lint-imports) only"
	@echo "make wheelhouse — wheels of lichen and its dependencies in $(WHEELHOUSE), for offline installs"

venv: $(STAMP)

# What `make run` needs: a venv with the package alone (no build headers, no extras).
$(RUN_STAMP): pyproject.toml
	@PYTHON=$(PYTHON) scripts/system-deps.sh base
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check -q -e .
	touch $(RUN_STAMP)

# The dev extra (tests, lint, every plugin's libraries). Some of it builds from
# source (bluezero's dbus-python and PyGObject), so the headers come first.
$(STAMP): $(RUN_STAMP)
	@PYTHON=$(PYTHON) scripts/system-deps.sh build
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

system-deps:
	@PYTHON=$(PYTHON) scripts/system-deps.sh test

run: $(RUN_STAMP)
	@test -f $(RUN_HOME)/lichen.toml || $(BIN)/lichen --home $(RUN_HOME) init --board $(BOARD) --name sim-board
	$(BIN)/lichen --home $(RUN_HOME) run --http $(RUN_HTTP)

lint: $(STAMP)
	$(BIN)/ruff check agent plugins tests bench
	$(BIN)/ruff format --check agent plugins tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo

unit: $(STAMP) system-deps
	$(MAKE) -C firmware-bridge test examples
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint unit

# The inner loop: everything but the slow (processes, radios, many examples), soak and
# hardware tests, with fewer property-test examples, spread over a few workers (most of
# these tests wait on I/O, not on the CPU). `make test` runs them all.
check: lint system-deps
	HYPOTHESIS_PROFILE=check $(BIN)/python -m pytest -q -n 4 -m 'not slow and not hw and not soak' $(PYTEST_ARGS)

soak: $(STAMP) system-deps
	$(BIN)/python -m pytest -m soak $(PYTEST_ARGS)

bench: $(STAMP)
	@PYTHON=$(PYTHON) scripts/system-deps.sh bench
	$(BIN)/python -m bench

# Wheels of lichen[$(EXTRAS)] and its dependencies, checked by an offline install
# into a fresh venv (docs/install.md). EXTRAS= for the agent alone.
wheelhouse: $(RUN_STAMP)
	EXTRAS=$(EXTRAS) PYTHON=$(BIN)/python scripts/wheelhouse.sh $(WHEELHOUSE)

clean:
	rm -rf $(VENV) .lichen .pytest_cache .mypy_cache .ruff_cache
