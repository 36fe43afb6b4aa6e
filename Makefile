# dsa-stream: the two commands a newcomer needs are `make demo` and `make test`.
# Both create .venv, install the project and the Debian packages it needs
# (WSClean, PostgreSQL) when they are missing, then run.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
DEMO_DIR ?= demo-site
# wsclean: the fast imager; casacore-data: its measures; python3-casacore: a casacore 3.5
# reader (the one WSClean links) used to check that our MSs open there; postgresql: the
# registry tests start their own server; time: /usr/bin/time -v for benchmarks.
DEBIAN_PACKAGES := wsclean casacore-data python3-casacore postgresql time
PYTEST_ARGS ?=

.PHONY: demo test lint venv system-deps clean-demo help

help:
	@echo "make demo   - simulate a night of DSA-110 data and run dsa-stream on it (in $(DEMO_DIR)/)"
	@echo "make test   - run the full test suite (CASA, WSClean and PostgreSQL tests included)"
	@echo "make lint   - ruff check + ruff format --check"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "dsa-stream needs Python 3.11 (casatools wheels)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dask]'
	rm -f $(VENV)/.installed-*
	touch $@

system-deps:
	@missing=""; \
	for pkg in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

demo: venv system-deps
	$(BIN)/dsa-stream demo $(DEMO_DIR)
	$(BIN)/run-first-mosaic $(DEMO_DIR)/night --site $(DEMO_DIR)
	$(BIN)/dsa-stream --config $(DEMO_DIR)/dsa-stream.yaml registry stats

test: venv system-deps
	DSA_STREAM_REQUIRE_HEAVY=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check dsa_stream tests bench
	$(BIN)/ruff format --check dsa_stream tests bench

clean-demo:
	rm -rf $(DEMO_DIR)
