# Two commands on a fresh machine: `make run` (the quick arena suite) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build that pip can take from this machine's disk; a looser
# requirement may pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
# Developers' and CI machines have no internet; the corpus lies beside the project there.
# Users elsewhere need nothing: the loader downloads and checksums it.
SHARED_DATA := $(wildcard ../shared/data)

.PHONY: run test install install-test clean

$(BIN)/layerlab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-extras: $(BIN)/layerlab
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/layerlab

install-test: $(VENV)/.test-extras

run: install
	LAYERLAB_DATA_DIR="$(SHARED_DATA)" $(BIN)/layerlab run quick --workers 2

test: install-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) layerlab-runs
