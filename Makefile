# Two commands on a fresh machine: `make run` (the quick arena suite, then its HTML report) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build that pip can take from this machine's disk; a looser
# requirement may pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
# Developers' and CI machines have no internet; the corpus lies beside the project there.
# Users elsewhere need nothing: the loader downloads and checksums it.
SHARED_DATA := $(wildcard ../shared/data)

.PHONY: run test install install-test browser clean

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

# The report is written even when some runs failed (they show as failed in it); the exit status
# is the suite's.
run: install
	LAYERLAB_DATA_DIR="$(SHARED_DATA)" $(BIN)/layerlab run quick --workers 2; status=$$?; \
	$(BIN)/layerlab report && exit $$status

test: install-test browser
	LAYERLAB_REQUIRE_EXTENSIONS=1 $(BIN)/python -m pytest -q

# The report's test renders it in headless Chromium from Debian's packages (CI runs as root).
# Where it cannot be installed, that test fails and says how to install it; the others still run.
browser:
	@command -v chromium >/dev/null 2>&1 || { DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
	  echo "could not install chromium (apt-get install -y chromium, as root): the browser test will fail"

clean:
	rm -rf $(VENV) layerlab-runs
