"""Query cost (core/cost.py): every operation is costed from its document and variables
before it runs, and refused over MAX_QUERY_COST with QUERY_TOO_COSTLY; over HTTP (both
paths alike) and on WebSocket subscribe. `X-Parley-Cost: 1` reports the cost."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from core.config import settings
from core.cost import operation_cost
from tests.conftest import Api, LiveServer, Tenant
from tests.realtime.wsclient import GraphQLWs

GRAPHQL_RESPONSE = "application/graphql-response+json"
COST = {"x-parley-cost": "1"}

# 30 pages of 100 segments, each with its live count: 30 × (1 + 100 × (edges + node + count 51)).
THIRTY_SEGMENT_PAGES = (
    "{ " + " ".join(f"a{i}: segments(first: 100) {{ edges {{ node {{ count }} }} }}" for i in range(30)) + " }"
)
# 1 + 100 × (edges + node + events (1 + 100 × (edges + node + id))) = 30,301.
NESTED = "{ contacts(first: 100) { edges { node { events(first: 100) { edges { node { id } } } } } } }"
NESTED_IN_FRAGMENTS = """
query { contacts(first: 100) { ...Page } }
fragment Page on ContactConnection { edges { node { ... on Contact { ...Timeline } } } }
fragment Timeline on Contact { events(first: 100) { edges { node { id } } } }
"""
NESTED_BY_VARIABLE = (
    "query($n: Int) { contacts(first: $n) { edges { node { events(first: $n) { edges { node { id } } } } } } }"
)
# The inbox at its largest page: each row with its contact, assignee and last message.
INBOX = """
{ conversations(first: 100) {
    edges { cursor node {
      id status subject unreadCount lastMessageAt
      contact { id name email }
      assignee { id name }
      lastMessage { id body createdAt senderKind }
    } }
    pageInfo { hasNextPage endCursor }
    totalCount
} }
"""
# Per row 3 + 5 + 4 + 3 + 5 = 20; plus the field, pageInfo (3) and totalCount (11).
INBOX_COST = 1 + 100 * 20 + 3 + 11


async def _post(
    api: Api,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str,
    headers: dict[str, str] | None = None,
    accept: str = "application/json",
) -> httpx.Response:
    return await api.raw(query, variables, token=token, headers={"accept": accept, **(headers or {})})


def _refusal(body: dict[str, Any], cost: int) -> None:
    assert body.get("data") is None, body
    [error] = body["errors"]
    assert error["message"] == f"This query costs {cost:,}; the budget is 10,000 a request.", error
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY", "cost": cost, "budget": 10_000}, error


async def test_thirty_pages_of_live_segment_counts_are_refused_before_any_sql_runs(
    api: Api, tenant: Tenant, caplog: Any
) -> None:
    assert settings.max_query_cost == 10_000
    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
        response = await _post(api, THIRTY_SEGMENT_PAGES, token=tenant.owner_token, accept=GRAPHQL_RESPONSE)
    assert response.status_code == 400  # a request error, as a validation error answers
    _refusal(response.json(), 30 * (1 + 100 * 53))
    statements = [r.getMessage() for r in caplog.records if r.name == "tortoise.db_client"]
    assert not any("segment" in s.lower() for s in statements), statements
    # The same page once, with its counts, is fine (the five predefined segments).
    body = (
        await _post(
            api, "{ segments(first: 100) { edges { node { count } } } }", token=tenant.owner_token, headers=COST
        )
    ).json()
    assert len(body["data"]["segments"]["edges"]) == 5
    assert body["extensions"] == {"cost": {"requested": 1 + 100 * 53, "budget": 10_000}}


async def test_a_mutation_over_budget_writes_nothing(api: Api, tenant: Tenant) -> None:
    mutation = (
        "mutation($input: CreateSegmentInput!) { createSegment(input: $input) { segment { id " + NESTED[2:-2] + " } } }"
    )
    rules = {"match": "ALL", "conditions": [{"field": "tag", "operator": "EQUALS", "value": {"text": "pro"}}]}
    body = (await _post(api, mutation, {"input": {"name": "Costly", "rules": rules}}, token=tenant.owner_token)).json()
    _refusal(body, 1 + 1 + 1 + 30_301)
    found = await api('{ segments(search: "Costly") { edges { node { id } } } }', token=tenant.owner_token)
    assert found["segments"]["edges"] == []


async def test_nested_connections_multiply(api: Api, tenant: Tenant) -> None:
    _refusal((await _post(api, NESTED, token=tenant.owner_token)).json(), 30_301)
    small = NESTED.replace("events(first: 100)", "events(first: 3)")
    body = (await _post(api, small, token=tenant.owner_token, headers=COST)).json()
    assert body["extensions"]["cost"]["requested"] == 1 + 100 * (3 + 3 * 3)


async def test_fragments_and_inline_fragments_count_as_written_out(api: Api, tenant: Tenant) -> None:
    _refusal((await _post(api, NESTED_IN_FRAGMENTS, token=tenant.owner_token)).json(), 30_301)


async def test_page_sizes_from_variables(api: Api, tenant: Tenant) -> None:
    async def cost(variables: dict[str, Any]) -> dict[str, Any]:
        return (await _post(api, NESTED_BY_VARIABLE, variables, token=tenant.owner_token, headers=COST)).json()  # type: ignore[no-any-return]

    _refusal(await cost({"n": 100}), 30_301)
    _refusal(await cost({"n": 5000}), 30_301)  # counted as the largest page it can be
    assert (await cost({"n": 10}))["extensions"]["cost"]["requested"] == 1 + 10 * (3 + 10 * 3)
    # Without one, the connection's default page size (20 for contacts and events).
    assert (await cost({}))["extensions"]["cost"]["requested"] == 1 + 20 * (3 + 20 * 3)


async def test_the_inbox_at_its_largest_page_passes_with_its_cost(api: Api, tenant: Tenant) -> None:
    session = await api(
        "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token userErrors { code } } }",
        {"i": {"channelKey": tenant.channel.public_key, "externalId": "ada"}},
    )
    started = await api(
        "mutation($i: StartConversationInput!) { startConversation(input: $i) { "
        "conversation { id } userErrors { code } } }",
        {"i": {"body": "Hello"}},
        token=session["startContactSession"]["token"],
    )
    assert started["startConversation"]["userErrors"] == []
    body = (await _post(api, INBOX, token=tenant.owner_token, headers=COST)).json()
    assert "errors" not in body, body
    [edge] = body["data"]["conversations"]["edges"]
    assert edge["node"]["contact"]["id"] and edge["node"]["lastMessage"]["body"] == "Hello"
    assert body["extensions"] == {"cost": {"requested": INBOX_COST, "budget": 10_000}}
    # Without the header, the response is as it always was.
    assert "extensions" not in (await _post(api, INBOX, token=tenant.owner_token)).json()


async def test_both_http_paths_answer_alike(
    app: Any, client: httpx.AsyncClient, tenant: Tenant, monkeypatch: Any
) -> None:
    from runtime.http import ParleyGraphQL

    view = next(
        route.app
        for route in app.routes
        if getattr(route, "path", None) == "/graphql" and isinstance(route.app, ParleyGraphQL)
    )
    cases = [
        (NESTED, {}, GRAPHQL_RESPONSE),
        (NESTED_IN_FRAGMENTS, {}, "application/json"),
        (INBOX, COST, GRAPHQL_RESPONSE),
        (INBOX, {}, "application/json"),
    ]
    for query, headers, accept in cases:
        answers = []
        for plain_path in (True, False):
            monkeypatch.setattr(view, "plain_path", plain_path)
            response = await client.post(
                "/graphql",
                json={"query": query},
                headers={
                    "accept": accept,
                    "authorization": f"Bearer {tenant.owner_token}",
                    "x-request-id": "cost-1",
                    **headers,
                },
            )
            answers.append((response.status_code, response.headers["content-type"], response.json()))
        assert answers[0] == answers[1], (query, headers, accept)
    assert answers[0][0] == 200


def test_costing_a_hostile_document_is_bounded() -> None:
    """Fragments each spreading the one before twice: 2^11 copies of the first written
    out, costed in one pass over the document (each fragment once), for any variables."""
    from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse

    from schema import schema

    fragments = ["fragment F0 on Contact { events(first: $n) { edges { node { id } } } }"]
    fragments += [f"fragment F{i} on Contact {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 12)]
    document = parse('query($n: Int) { contact(id: "x") { ...F11 } } ' + " ".join(fragments))
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    by_name = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    started = time.perf_counter()
    costs = [operation_cost(schema._schema, operation, by_name, {"n": n}) for n in (1, 2, 100)]
    assert time.perf_counter() - started < 0.1
    assert costs == [1 + 2**11 * (1 + n * 3) for n in (1, 2, 100)]


# -- WebSocket ---------------------------------------------------------------------------------


async def test_a_subscription_over_budget_is_refused_at_subscribe(server: LiveServer, tenant: Tenant) -> None:
    pages = " ".join(f"m{i}: messages(last: 100) {{ edges {{ cursor node {{ id body }} }} }}" for i in range(30))
    costly = f"subscription {{ conversationEvents {{ kind conversation {{ {pages} }} }} }}"
    async with GraphQLWs.open(server.ws_url, tenant.owner_token) as ws:
        refused = await ws.subscribe(costly)
        message = await refused.receive()
        assert message["type"] == "error", message
        [error] = message["payload"]
        cost = 1 + 1 + 1 + 30 * (1 + 100 * 5)
        assert error["extensions"] == {"code": "QUERY_TOO_COSTLY", "cost": cost, "budget": 10_000}, error
        # The socket stays open: a subscription within the budget is taken.
        fine = await ws.subscribe("subscription { unreadCount }")
        assert (await fine.next_data()) == {"unreadCount": 0}
