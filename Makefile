# Parley: `make run` serves a demo on SQLite with a private Redis; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Both locks are compiled for every platform and for Python 3.11-3.13 at once (uv's
# universal resolution), with hashes; pip installs them with --require-hashes.
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock" -q

.PHONY: install python-version lock run test test-postgres lint check-upgrade schema migrate seed bench soak clean

python-version:
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v <= (3, 13) else "Parley needs Python 3.11, 3.12 or 3.13; $(PYTHON) is %d.%d. Run make with PYTHON=python3.12 (or another supported one)." % v)'

# The venv holds the test dependencies too (requirements-dev.lock, a superset of
# requirements.lock) and Parley itself, editable, for the `parley` command.
$(VENV)/.installed: requirements.lock requirements-dev.lock pyproject.toml
	@$(MAKE) --no-print-directory python-version
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

# Regenerates both locks from pyproject.toml, keeping every pin that still fits (add
# `--upgrade` by hand to move them): after editing dependencies, run this and commit both.
lock: install
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra test -c requirements.lock $(LOCK_FLAGS) -o requirements-dev.lock

run: install
	$(VENV)/bin/parley run

# SQLite and a private Redis by default; TEST_DATABASE_URL=postgres://… runs on PostgreSQL,
# REDIS_URL=redis://… uses an existing Redis.
test: install
	$(PY) -m pytest

test-postgres: install
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgres://root@127.0.0.1:5432/test} $(PY) -m pytest

# Lint, format and types (CI runs it; configuration in pyproject.toml): ruff's rules, the
# code as ruff formats it, and mypy --strict on domain/ and core/.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m mypy

# What upgrading the two exactly pinned GraphQL libraries would break: runtime/ relies on
# their internals (each runtime/ module's docstring names which). A scratch venv
# ($(UPGRADE_VENV), rebuilt each time, ignored by git) gets the newest strawberry-graphql
# and graphql-core releases on PyPI and every other package as requirements-dev.lock pins
# it (versions only: the two new ones have no hashes in the lock), then the executor
# comparison suite runs there: the short path against graphql-core's own executor, and
# subscription events through the per-event executor. Failures are listed at the end.
UPGRADE_VENV  ?= .venv-upgrade
UPGRADE_TESTS ?= tests/runtime tests/realtime/test_event_memory.py
UPGRADE_PACKAGES := (strawberry-graphql|graphql-core)
check-upgrade:
	@$(MAKE) --no-print-directory python-version
	rm -rf $(UPGRADE_VENV)
	$(PYTHON) -m venv $(UPGRADE_VENV)
	$(UPGRADE_VENV)/bin/python -m pip install -q --upgrade pip
	grep -E '^[A-Za-z0-9]' requirements-dev.lock | sed -e 's/ *\\$$//' \
		| grep -vE '^$(UPGRADE_PACKAGES)==' > $(UPGRADE_VENV)/pins.txt
	$(UPGRADE_VENV)/bin/python -m pip install -q -r $(UPGRADE_VENV)/pins.txt --upgrade strawberry-graphql graphql-core
	@echo "locked:  $$(grep -hoE '^$(UPGRADE_PACKAGES)==[^ ]+' requirements-dev.lock | tr '\n' ' ')"
	@echo "testing: $$($(UPGRADE_VENV)/bin/python -m pip freeze | grep -E '^$(UPGRADE_PACKAGES)==' | tr '\n' ' ')"
	$(UPGRADE_VENV)/bin/python -m pytest -p no:cacheprovider -q -rfE --tb=short $(UPGRADE_TESTS)

schema: install
	$(PY) -m cli schema > schema.graphql

migrate: install
	$(VENV)/bin/parley migrate

seed: install
	$(VENV)/bin/parley seed --demo

# The whole system under load while PostgreSQL, Redis, the worker and an API process are
# killed and restarted (bench/soak.py): SOAK_SECONDS (600), SOAK_SEED, SOAK_VISITORS (500).
soak: install
	$(PY) -m bench.soak

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
	rm -rf $(VENV) $(UPGRADE_VENV) data .pytest_cache
