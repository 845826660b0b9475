"""/metrics under several processes: two API processes and a worker write to one
PROMETHEUS_MULTIPROC_DIR, and a scrape of either API process counts every request and
every job; the worker also serves its own on WORKER_METRICS_PORT. Open WebSockets and
running subscriptions go up and back down; rate limit refusals are counted by limit;
requests are labelled by operation name, within bounds (agents' and API keys' names
only); the database pool is reported."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from pathlib import Path

import httpx
import pytest

from core import metrics
from core.embedded_redis import free_port
from tests.conftest import LiveServer, Tenant, start_server, start_worker, stop_process
from tests.realtime.wsclient import Closed, GraphQLWs

QUERIES = 24


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of `name` with exactly `labels` (in any order: a shared registry sorts them)."""
    for found in re.finditer(rf"^{re.escape(name)}(?:\{{(.*)\}})? ([0-9.e+]+)$", text, re.M):
        if dict(re.findall(r'(\w+)="([^"]*)"', found.group(1) or "")) == labels:
            return float(found.group(2))
    return None


async def _scrape(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        return (await http.get("/metrics")).text


async def _until(server: LiveServer, **gauges: float) -> None:
    """Until the server's /metrics shows each of `gauges` at its value."""
    text = ""
    for _ in range(200):
        text = await _scrape(server.url)
        if all(_sample(text, name) == value for name, value in gauges.items()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {gauges}:\n{text}")


async def test_two_api_processes_and_a_worker_share_one_registry(tmp_path: Path, tenant: Tenant) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    server = start_server(tmp_path, env=env, workers=2)
    worker_port = free_port()
    worker = start_worker(tmp_path, env={**env, "WORKER_METRICS_PORT": str(worker_port)})
    try:
        # A connection each: the kernel hands them to either process.
        for _ in range(QUERIES):
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                answer = await http.post(
                    "/graphql",
                    json={"query": "{ workspace { name } }"},
                    headers={"authorization": f"Bearer {tenant.api_key}"},
                )
                assert answer.json()["data"]["workspace"]["name"] == "Acme"
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            refused = await http.post("/graphql", json={"query": "{ contacts { totalCount } }"})
            assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

        # Both processes answered some of them; each wrote its own file in the shared directory.
        pids = {m.group(1) for f in shared.iterdir() if (m := re.match(r"histogram_(\d+)\.db$", f.name))}
        assert len(pids) >= 2, sorted(f.name for f in shared.iterdir())

        # Whichever process answers the scrape, it counts all of them.
        for _ in range(6):
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                text = (await http.get("/metrics")).text
            assert (
                _sample(
                    text,
                    "parley_graphql_request_duration_seconds_count",
                    operation_type="query",
                    operation="anonymous",
                    outcome="ok",
                )
                == QUERIES
            )
            assert (
                _sample(
                    text,
                    "parley_graphql_request_duration_seconds_count",
                    operation_type="query",
                    operation="public",  # nobody's request
                    outcome="error",
                )
                == 1
            )
            assert _sample(text, "parley_graphql_errors_total", code="UNAUTHENTICATED") == 1
            assert "parley_hub_subscribers 0\n" in text and "parley_job_queue_depth " in text

        # The worker's jobs (wake_snoozed runs at its start), on its own port and through the API.
        deadline = time.monotonic() + 30
        while True:
            try:
                own = httpx.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=2).text
            except httpx.HTTPError:
                own = ""
            if (_sample(own, "parley_jobs_total", function="wake_snoozed", outcome="ok") or 0) >= 1:
                break
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            await asyncio.sleep(0.2)
        assert _sample(own, "parley_job_duration_seconds_count", function="wake_snoozed") is not None
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            text = (await http.get("/metrics")).text
        assert (_sample(text, "parley_jobs_total", function="wake_snoozed", outcome="ok") or 0) >= 1
    finally:
        stop_process(worker)
        server.stop()


async def test_the_grafana_dashboard_charts_only_metrics_parley_exports(client: httpx.AsyncClient) -> None:
    import json

    from jobs.worker import retry_when_busy

    async def noop(ctx: dict[str, object]) -> None:
        return None

    await retry_when_busy(noop)({})  # the worker's job metrics get a sample in this process
    await client.post("/graphql", json={"query": "{ __typename }"})
    exported = set(re.findall(r"^# TYPE (\w+) ", (await client.get("/metrics")).text, re.M))
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text())
    charted = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(parley_\w+)", target["expr"])
    }
    assert charted and charted <= exported, charted - exported


CONTACT_UPDATED = "subscription($id: ID!) { contactUpdated(id: $id) { kind contactId } }"


async def test_open_websockets_and_subscriptions_show_and_go_back_down(tmp_path: Path, tenant: Tenant) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    server = start_server(tmp_path, env={"PROMETHEUS_MULTIPROC_DIR": str(shared)})
    try:
        await _until(server, parley_websockets_open=0, parley_subscriptions_active=0)
        contact = await tenant.contact(name="Ada")
        async with GraphQLWs.open(server.ws_url, tenant.api_key) as first:
            async with GraphQLWs.open(server.ws_url, tenant.api_key) as second:
                await _until(server, parley_websockets_open=2, parley_subscriptions_active=0)
                one = await first.subscribe(CONTACT_UPDATED, {"id": contact["id"]})
                await first.subscribe(CONTACT_UPDATED, {"id": contact["id"]})
                await second.subscribe(CONTACT_UPDATED, {"id": contact["id"]})
                await _until(server, parley_websockets_open=2, parley_subscriptions_active=3)
                await one.complete()
                await _until(server, parley_websockets_open=2, parley_subscriptions_active=2)
            # The second socket closed by its client: its subscription ended with it.
            await _until(server, parley_websockets_open=1, parley_subscriptions_active=1)
        await _until(server, parley_websockets_open=0, parley_subscriptions_active=0)
    finally:
        server.stop()
    # Stopped, the process no longer counts: nothing live is left in the shared directory.
    assert not [f.name for f in shared.iterdir() if f.name.startswith("gauge_live")]


async def test_a_refused_request_counts_under_its_limit(tmp_path: Path, tenant: Tenant) -> None:
    env = {
        "REDIS_PREFIX": f"{os.environ['REDIS_PREFIX']}-metrics-{secrets.token_hex(3)}",
        "RATE_LIMIT_GRAPHQL_PER_PRINCIPAL": "2/minute",
    }
    server = start_server(tmp_path, env=env)
    try:
        assert _sample(await _scrape(server.url), "parley_rate_limited_total", limit="graphql") is None
        _, token = await tenant.agent()
        statuses = []
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            for _ in range(4):
                answer = await http.post(
                    "/graphql", json={"query": "{ viewer { kind } }"}, headers={"authorization": f"Bearer {token}"}
                )
                statuses.append(answer.status_code)
        assert statuses == [200, 200, 429, 429]
        assert _sample(await _scrape(server.url), "parley_rate_limited_total", limit="graphql") == 2
    finally:
        server.stop()


async def test_a_socket_refused_with_4429_counts_as_a_rate_limit_refusal(tmp_path: Path, tenant: Tenant) -> None:
    server = start_server(tmp_path, env={"MAX_SOCKETS_PER_PRINCIPAL": "1"})
    try:
        assert _sample(await _scrape(server.url), "parley_rate_limited_total", limit="sockets-per-principal") is None
        async with GraphQLWs.open(server.ws_url, tenant.api_key):
            for _ in range(2):
                async with GraphQLWs.connect(server.ws_url) as extra:
                    with pytest.raises(Closed) as closed:
                        await extra.init({"authorization": f"Bearer {tenant.api_key}"})
                    assert closed.value.code == 4429
        refused = _sample(await _scrape(server.url), "parley_rate_limited_total", limit="sockets-per-principal")
        assert refused == 2
    finally:
        server.stop()


def _named(text: str, operation: str) -> float:
    found = _sample(
        text, "parley_graphql_request_duration_seconds_count", operation_type="query", operation=operation, outcome="ok"
    )
    return found or 0


async def test_requests_are_labelled_by_operation_name_within_bounds(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "_operation_names", set())
    monkeypatch.setattr(metrics, "OPERATION_NAMES_MAX", 2)
    long_name = "Q" * 65
    names = ["First", "Second", "Third", long_name]
    before = (await client.get("/metrics")).text
    for name in [*names, None, "First"]:
        assert await _typename(client, name, tenant.api_key) == {"data": {"__typename": "Query"}}
    after = (await client.get("/metrics")).text
    counted = {label: _named(after, label) - _named(before, label) for label in ["First", "Second", "anonymous"]}
    assert counted == {"First": 2, "Second": 1, "anonymous": 1}
    # Past the cap of two names, and a name longer than 64 characters: "other".
    assert _named(after, "other") - _named(before, "other") == 2
    assert 'operation="Third"' not in after and long_name not in after


async def test_a_strangers_made_up_operation_names_take_no_label_from_the_inbox(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "_operation_names", set())
    monkeypatch.setattr(metrics, "OPERATION_NAMES_MAX", 2)
    before = (await client.get("/metrics")).text
    # Anyone may POST (the widget key is public): five made-up names with no credentials…
    for n in range(5):
        assert await _typename(client, f"Junk{n}") == {"data": {"__typename": "Query"}}
    # …and with a contact session's token, which a stranger gets from the public widget key.
    session = await client.post(
        "/graphql",
        json={
            "query": "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token } }",
            "variables": {"i": {"channelKey": tenant.channel.public_key}},
        },
    )
    visitor = session.json()["data"]["startContactSession"]["token"]
    assert await _typename(client, "Junk5", visitor) == {"data": {"__typename": "Query"}}
    # The agents' own operations still get their names.
    _, agent = await tenant.agent()
    assert await _typename(client, "Inbox", agent) == {"data": {"__typename": "Query"}}
    assert await _typename(client, "Sync", tenant.api_key) == {"data": {"__typename": "Query"}}

    after = (await client.get("/metrics")).text
    assert _named(after, "Inbox") - _named(before, "Inbox") == 1
    assert _named(after, "Sync") - _named(before, "Sync") == 1
    assert _named(after, "public") - _named(before, "public") >= 6  # startContactSession counts there too
    assert _named(after, "other") - _named(before, "other") == 0
    assert "Junk" not in after


async def _typename(client: httpx.AsyncClient, name: str | None, token: str | None = None) -> object:
    document = f"query {name} {{ __typename }}" if name else "{ __typename }"
    body: dict[str, object] = {"query": document}
    if name:
        body["operationName"] = name
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return (await client.post("/graphql", json=body, headers=headers)).json()


async def test_the_database_pool_is_reported(client: httpx.AsyncClient) -> None:
    from tortoise import connections

    from core.db import dialect

    await connections.get("default").execute_query("SELECT 1")
    text = (await client.get("/metrics")).text
    in_use, opened, most = (_sample(text, f"parley_db_connections_{n}") for n in ("in_use", "open", "max"))
    if dialect() == "sqlite":
        assert (in_use, opened, most) == (0, 1, 1)  # one connection a process
    else:
        assert most == 5 and in_use is not None and 1 <= opened <= 5 and in_use <= opened
