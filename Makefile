# Two commands do all set-up on a fresh machine (Python >= 3.10 with venv):
#   make train [ARGS="loss=minimax k=5"]   train on the bundled digits (creates .venv on first use)
#   make test                              run the test suite, less the tests marked slow (135 s on 2 cores, as README says)
# and `make test-all` runs every test, the slow ones included (CI runs it; 8.5-10 minutes on 2 cores).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=
# the tests run in this many processes (pytest-xdist), one torch thread each; WORKERS=0 runs them in this one
WORKERS ?= 2

.PHONY: train test test-all bench clean-venv

train: $(VENV)/.installed
	$(BIN)/gan-train $(ARGS)

# the package's bytecode, written once here: the tests start many fresh processes, and where the environment sets
# PYTHONDONTWRITEBYTECODE each of them would compile the package anew (0.14 s each); stale files are recompiled
BYTECODE = $(BIN)/python -m compileall -q gan_cli hydra_plugins scripts

test: $(VENV)/.installed
	$(BYTECODE)
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist worksteal -m "not slow" $(PYTEST_ARGS)

test-all: $(VENV)/.installed
	$(BYTECODE)
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/python scripts/bench.py $(ARGS)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $@

clean-venv:
	rm -rf $(VENV)
