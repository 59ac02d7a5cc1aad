# JouleScale developer entry points. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml router/pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_FLAGS ?=
CLUSTER_DIR ?= .cluster

.PHONY: help venv demo test test-unit test-integration test-e2e lint crds chart-docs provision chromium cluster-up cluster-down bench clean

help:
	@echo "make demo          run the digital twin comparison on the embedded default workload"
	@echo "make test          lint + unit + integration (real kube-apiserver) + e2e (local cluster)"
	@echo "make test-unit     the fast pure tests only"
	@echo "make lint          ruff, mypy (strict), import layering, CRD freshness"
	@echo "make crds          regenerate crds/ (and the Helm chart's copy) from joulescale/api"
	@echo "make chart-docs    rewrite the values table of helm/joulescale/README.md from its schema"
	@echo "make chromium      install headless Chromium (Debian package) for the HTML report test, if missing"
	@echo "make cluster-up    start the local cluster in the background ($(CLUSTER_DIR)/kubeconfig)"
	@echo "make cluster-down  stop it"
	@echo "make bench         run every benchmark in bench/ (each prints one JSON document)"

$(STAMP): pyproject.toml router/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,operator,agent,twin,profilegen,planning]' -e ./router
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/joulescale twin compare --trace azure-conv --load 0.67 --report reports/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m joulescale.api.crd --check crds
	$(PY) -m e2e.harness.chartdoc --check

crds: $(STAMP)
	$(PY) -m joulescale.api.crd crds
	cp crds/joulescale.io_*.yaml helm/joulescale/crds/

chart-docs: $(STAMP)
	$(PY) -m e2e.harness.chartdoc

provision: $(STAMP)
	$(PY) -m e2e.harness.provision

# The HTML report test opens the page in a real browser: the Debian package `chromium`, installed
# only when neither it nor $$JOULESCALE_CHROMIUM (any Chromium or Chrome binary) is there.
chromium:
	@if [ -n "$$JOULESCALE_CHROMIUM" ] || command -v chromium >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "headless Chromium is missing: install your distribution's chromium, or set JOULESCALE_CHROMIUM" >&2; exit 1; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else \
	  echo "headless Chromium is missing: run 'apt-get install chromium' as root, or set JOULESCALE_CHROMIUM" >&2; exit 1; fi; \
	echo "installing the Debian package chromium (for the HTML report test)"; \
	$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

test-unit: $(STAMP) chromium
	$(VENV)/bin/pytest tests/unit $(PYTEST_FLAGS)

test-integration: $(STAMP) provision
	$(VENV)/bin/pytest -m "integration" $(PYTEST_FLAGS)

test-e2e: $(STAMP) provision
	$(VENV)/bin/pytest -m "e2e" $(PYTEST_FLAGS)

test: $(STAMP) lint provision chromium
	$(VENV)/bin/pytest $(PYTEST_FLAGS)

cluster-up: $(STAMP) provision
	$(PY) -m e2e.harness.cluster up --dir $(CLUSTER_DIR)

cluster-down:
	@if [ -x $(PY) ]; then $(PY) -m e2e.harness.cluster down --dir $(CLUSTER_DIR); else echo "no cluster running"; fi

bench: $(STAMP) provision
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) reports .mypy_cache .ruff_cache .pytest_cache
