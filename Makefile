# The README's two commands: `make run` and `make test`. Both install what they need into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

CHROMIUM := /usr/bin/chromium
PROMETHEUS := /usr/bin/prometheus

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

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
test: install $(CHROMIUM) $(PROMETHEUS)
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
compat: install
	$(PY) -m pytest -m compat tests/e2e/clients

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .cache *.egg-info .pytest_cache .mypy_cache .ruff_cache
