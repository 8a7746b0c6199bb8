# The two commands of the README: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test install tools manifests bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

tools:
	bash scripts/install-tools.sh

run: install
	$(BIN)/agentcache-sidecar $(ARGS)

test: install tools
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install tools
	$(BIN)/python bench/sidecar.py
