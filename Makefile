# Two commands matter: `make run` and `make test`. Everything else is a helper.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test test-sqlite test-postgres lint format bench bench-clients bench-capacity bench-admin bench-patterns clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime-installed

## Start the whole local stack: local AWS endpoint, provisioning, worker, beat and web server.
run: $(VENV)/.runtime-installed
	$(PY) manage.py devstack

## The full suite: SQLite first, then the PostgreSQL-only tests on a throwaway server.
test: test-sqlite test-postgres

test-sqlite: $(VENV)/.dev-installed
	$(PY) -m pytest

# With the workers' prepared statements: Django's default binding is the well-trodden path.
test-postgres: $(VENV)/.dev-installed
	DATABASE_PREPARED_STATEMENTS=true $(PY) -m tests.postgres_server -- $(PY) -m pytest -m postgres

## Lint and check formatting (ruff), as CI does before the tests. `make format` rewrites the tree.
lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## Benchmark the whole flow against a local stack started the way `make run` starts it.
bench: $(VENV)/.dev-installed
	$(PY) bench/order_flow.py

## 50 clients hitting the local stack's web server at the same instant: any reset or 5xx fails it.
bench-clients: $(VENV)/.dev-installed
	$(PY) bench/concurrent_clients.py

## One worker process's handler capacity, AWS out of the picture: SQLite, then a throwaway PostgreSQL.
bench-capacity: $(VENV)/.dev-installed
	$(PY) bench/capacity.py
	$(PY) -m tests.postgres_server -- $(PY) bench/capacity.py

## The admin's busiest pages at 1,000 and at 100,000 orders, on a throwaway PostgreSQL: time and queries.
bench-admin: $(VENV)/.dev-installed
	$(PY) -m tests.postgres_server -- $(PY) bench/admin_volume.py

## How fast the offline pattern engine filters events (checks per second).
bench-patterns: $(VENV)/.dev-installed
	$(PY) bench/patterns.py

clean:
	rm -rf $(VENV) .local .pytest_cache
