# The two front doors: `make run` (the platform on this machine) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test install install-dev bench chaos clean check-stack

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamp files: reinstall only when the requirements change.
$(VENV)/.installed: $(VENV)/bin/python requirements.txt constraints.txt pyproject.toml
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The port is checked before anything is installed or started; PORT defaults to an exported
# AIRFLOW__API__PORT, else 8080.
run:
	@PORT="$(PORT)" PYTHON="$(PYTHON)" scripts/run.sh --check-port
	@$(MAKE) --no-print-directory install
	PORT="$(PORT)" PYTHON="$(PYTHON)" VENV="$(VENV)" scripts/run.sh

# Tests run in parallel (pytest-xdist), each worker with its own Airflow home, metadata
# database and ports (tests/conftest.py). `--dist loadgroup` hands tests out one at a time
# (tests marked with the same xdist_group stay together), longest first, so the end-to-end
# `make run` test starts at once and the quick unit tests fill the end. Three workers on two
# cores: much of a DAG test is waiting on pods, sensors and the e2e test's own processes.
# PYTEST_WORKERS=0 runs everything in one process; PYTEST_EXIT_FILE=path keeps pytest's exit code
# there when it fails (make itself reports any failure as 2).
PYTEST_WORKERS ?= 3
# The layers' import contracts (pyproject.toml, [tool.importlinter]) are checked first: a second.
test: install-dev
	$(VENV)/bin/lint-imports --no-cache
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup \
	  --cov=release --cov=sandbox --cov-report=term --cov-fail-under=85 $(PYTEST_ARGS) \
	  || { status=$$?; $(if $(PYTEST_EXIT_FILE),echo $$status > $(PYTEST_EXIT_FILE);) exit $$status; }

bench: install-dev
	$(PY) bench/registry.py
	$(PY) bench/parse.py
	$(PY) bench/affected.py

# The fault suite: the stack of `make run` on a free port, one injected fault per scenario
# (bench/faults.py says which), and the figures the README's Reliability section shows.
# CHAOS_ARGS=--only a,b runs some of them. About 20 minutes; stops everything it started.
chaos: install-dev
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) bench/faults.py $(CHAOS_ARGS)

# The full-stack and production files, checked offline (also part of make test).
check-stack: install-dev
	$(PY) scripts/check_stack.py

clean:
	rm -rf .airflow .local
