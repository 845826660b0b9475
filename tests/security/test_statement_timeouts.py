"""A statement that runs too long is stopped by the database and reaches the client as code
TIMEOUT, on SQLite (a progress handler, core/sqlite.py) and PostgreSQL (statement_timeout).

The connection tests open a client from the app's own configuration (core/db.py) with a
tiny timeout; the API test starts a real server with DATABASE_STATEMENT_TIMEOUT_SECONDS
tiny and sends it a segment preview that has to read every one of many contacts.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from tortoise.backends.base.client import BaseDBAsyncClient

from core.db import dialect, tortoise_config
from core.errors import is_statement_timeout
from models.contacts import Contact
from tests.conftest import Tenant, start_server

# Counts to ten million one row at a time: seconds of work on either database.
SLOW = {
    "sqlite": (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000) SELECT count(*) FROM n"
    ),
    "postgres": "SELECT pg_sleep(2)",
}
PREVIEW = "query($rules: SegmentRulesInput!) { previewSegment(rules: $rules, first: 1) { count } }"
CONTACTS = 20_000


async def connect(statement_timeout: float) -> BaseDBAsyncClient:
    config = tortoise_config(statement_timeout=statement_timeout)["connections"]["default"]
    engine = importlib.import_module(config["engine"])
    client: BaseDBAsyncClient = engine.client_class(connection_name="probe", **config["credentials"])
    await client.create_connection(with_db=True)
    return client


@pytest.fixture
async def probe(app: Any) -> AsyncIterator[BaseDBAsyncClient]:
    client = await connect(0.2)
    yield client
    await client.close()


async def test_a_long_statement_is_stopped_and_the_connection_goes_on(probe: BaseDBAsyncClient) -> None:
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        await probe.execute_query(SLOW[dialect()])
    assert is_statement_timeout(caught.value), repr(caught.value)
    assert 0.15 < time.monotonic() - started < 1.5
    # The next statement has a whole budget of its own, on the same connection.
    assert (await probe.execute_query_dict("SELECT 1 AS one")) == [{"one": 1}]
    # Outside a resolver (authentication, inbound hooks, downloads) it answers 503 TIMEOUT.
    from asgi import server_error

    request = Request({"type": "http", "method": "POST", "path": "/hooks/channels/k/inbound", "headers": []})
    response = await server_error(request, caught.value)
    assert response.status_code == 503
    assert json.loads(bytes(response.body))["code"] == "TIMEOUT"
    assert (await server_error(request, RuntimeError("a bug"))).status_code == 500


async def test_without_a_timeout_a_statement_runs_to_its_end(app: Any) -> None:
    client = await connect(0)
    try:
        sql = "SELECT pg_sleep(0.3)" if dialect() == "postgres" else SLOW["sqlite"].replace("10000000", "300000")
        await client.execute_query(sql)
    finally:
        await client.close()


@pytest.fixture
async def crowded(tenant: Tenant) -> Tenant:
    now = datetime.now(UTC)
    await Contact.bulk_create(
        [
            Contact(
                workspace_id=tenant.workspace.id,
                name=f"Person {i}",
                email=f"p{i}@example.com",
                city="Lyon",
                last_seen_at=now,
                first_seen_at=now,
            )
            for i in range(CONTACTS)
        ],
        batch_size=2000,
    )
    return tenant


async def test_a_request_whose_query_runs_too_long_answers_timeout(crowded: Tenant, tmp_path: Path) -> None:
    # Every condition has to be tried on every contact: no index helps.
    rules = {
        "match": "ANY",
        "conditions": [
            {"field": field, "operator": "CONTAINS", "value": {"text": f"zz{n}"}}
            for n in range(16)
            for field in ("name", "email", "city")
        ],
    }
    # PostgreSQL's first statements on a connection (asyncpg's type introspection) take some
    # milliseconds; this preview takes 60-70 ms there with 48 conditions, 20-30 on SQLite.
    timeout = "0.005" if dialect() == "sqlite" else "0.05"
    server = start_server(tmp_path, env={"DATABASE_STATEMENT_TIMEOUT_SECONDS": timeout})
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            headers = {"authorization": f"Bearer {crowded.api_key}"}
            viewer = await http.post("/graphql", json={"query": "{ viewer { kind scopes } }"}, headers=headers)
            assert viewer.json()["data"]["viewer"]["kind"] == "API_KEY", viewer.json()
            response = await http.post(
                "/graphql", json={"query": PREVIEW, "variables": {"rules": rules}}, headers=headers
            )
            body = response.json()
            assert response.status_code == 200, body
            [error] = body["errors"]
            assert error["extensions"]["code"] == "TIMEOUT", error
            assert error["message"] == f"The query took longer than {float(timeout):g} s and was stopped; narrow it."
            assert error["path"] == ["previewSegment"]
            # The server goes on: a request that reads a row or two is well within the limit.
            viewer = await http.post("/graphql", json={"query": "{ viewer { kind scopes } }"}, headers=headers)
            assert viewer.json()["data"]["viewer"]["kind"] == "API_KEY", viewer.json()
    finally:
        server.stop()
    assert "statement timeout in previewSegment" in server.log.read_text()


def test_the_worker_and_migrations_have_a_longer_timeout_of_their_own() -> None:
    from core.config import settings
    from core.db import TORTOISE_ORM

    assert settings.worker_statement_timeout_seconds > settings.database_statement_timeout_seconds
    credentials = TORTOISE_ORM["connections"]["default"]["credentials"]
    if os.environ["DATABASE_URL"].startswith("sqlite"):
        assert credentials["statement_timeout"] == settings.worker_statement_timeout_seconds
    else:
        assert credentials["server_settings"]["statement_timeout"] == str(
            round(settings.worker_statement_timeout_seconds * 1000)
        )
