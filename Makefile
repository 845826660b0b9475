# Parley: `make run` serves a demo on SQLite with a private Redis; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: install run test test-postgres schema migrate seed clean

$(VENV)/.installed: requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m cli run

# SQLite and a private Redis by default; TEST_DATABASE_URL=postgres://… runs on PostgreSQL,
# REDIS_URL=redis://… uses an existing Redis.
test: install
	$(PY) -m pytest

test-postgres: install
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgres://root@127.0.0.1:5432/test} $(PY) -m pytest

schema: install
	$(PY) -m cli schema > schema.graphql

migrate: install
	$(PY) -m cli migrate

seed: install
	$(PY) -m cli seed

clean:
	rm -rf $(VENV) data .pytest_cache
