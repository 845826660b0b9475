# Parley: `make run` serves a demo on SQLite with a private Redis; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: install run test test-postgres schema migrate seed bench clean

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

# The read path (GraphQL beside bare Starlette endpoints, wrk) on SQLite and PostgreSQL,
# message delivery latency to 1,000 subscribers, fan-out to 10,000 open sockets, and short
# arq jobs through the worker beside arq's default settings. Needs wrk (apt-get install
# wrk) and, for PostgreSQL, BENCH_DATABASE_URL or a server at 127.0.0.1:5432.
bench: install
	$(PY) -m bench.readpath
	$(PY) -m bench.readpath --postgres
	$(PY) -m bench.conversations
	$(PY) -m bench.conversations --subscribers 10000 --scenarios fanout --fanout-rates 1,max --messages 5
	$(PY) -m bench.jobs

clean:
	rm -rf $(VENV) data .pytest_cache
