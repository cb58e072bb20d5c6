# Entry points for people and CI. `make test` is what CI runs (through .ci/run); it must work
# from a clean clone on a fresh Debian 12 machine with only python3 installed.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := venv
# Prerequisites run in the order written: system packages (python3-venv among them) must be
# in place before the venv is created, and lint before the tests.
.NOTPARALLEL:
# A half-made target (a venv whose pip upgrade failed) must be remade next time, not trusted.
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install; older than pyproject.toml or the lock means reinstall.
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Arguments for `make bench`, passed to wirelab-bench as they are: make bench ARGS="--quick".
ARGS ?=
# The product (with its dev extra) and the benchmarks' own distribution, both editable: the
# benchmarks are importable in the dev venv and never part of the wirelab wheel or image.
INSTALL := -e '.[dev]' -e ./benchmarks

.PHONY: venv lock system-deps lint test bench demo clean distclean

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml benchmarks/pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt $(INSTALL)
	touch $@

# Regenerate the lock from the venv as it is. Without -c, pip adds whatever pyproject.toml
# gained since the last lock but upgrades nothing; to move a pin, `$(BIN)/pip install -U NAME`
# first. The project itself (and its benchmarks) and the packaging tools are not pinned.
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(INSTALL)
	$(BIN)/python -m pip freeze --exclude-editable \
		| grep -v -E '^(pip|setuptools|wheel|wirelab|wirelab-bench)==|^#' > constraints.txt.new
	mv constraints.txt.new constraints.txt
	touch $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: system-deps venv lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The protocol shoot-out (see benchmarks/README.md); its peers (wrk, h2load, nginx) are
# system packages.
bench: system-deps venv
	$(BIN)/wirelab-bench $(ARGS)

demo: system-deps venv
	$(BIN)/wirelab demo

# The configuration reference is generated from the code's option tables.
docs: venv
	$(BIN)/python scripts/configuration_reference.py > docs/configuration.md

# Build and tool leftovers; the venv stays (see distclean).
clean:
	rm -rf build dist .pytest_cache .ruff_cache *.egg-info constraints.txt.new
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
