"""The HTTP surface: GraphQL over HTTP, health, readiness, masking, limits."""

from __future__ import annotations

from typing import Any

import httpx

GRAPHQL_RESPONSE = "application/graphql-response+json"


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).text == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "database": "ok", "redis": "ok", "pubsub": "ok"}


async def test_parse_error_is_400_for_graphql_response_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": "{ contacts { "}, headers={"accept": GRAPHQL_RESPONSE})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    body = response.json()
    assert "data" not in body
    assert "Syntax Error" in body["errors"][0]["message"]


async def test_validation_error_is_400_for_graphql_response_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": "{ nope }"}, headers={"accept": GRAPHQL_RESPONSE})
    assert response.status_code == 400
    assert "Cannot query field 'nope'" in response.json()["errors"][0]["message"]


async def test_legacy_json_clients_keep_200(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": "{ nope }"}, headers={"accept": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")


async def test_execution_error_keeps_200_with_data(client: httpx.AsyncClient) -> None:
    # Unauthenticated access to a non-null field is an execution error, not a request error.
    response = await client.post("/graphql", json={"query": "{ workspace { name } }"}, headers={"accept": GRAPHQL_RESPONSE})
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_get_queries_work_and_mutations_via_get_do_not(client: httpx.AsyncClient, tenant: Any) -> None:
    ok = await client.get("/graphql", params={"query": "{ workspace { name } }"}, headers={"authorization": f"Bearer {tenant.owner_token}"})
    assert ok.json() == {"data": {"workspace": {"name": "Acme"}}}
    refused = await client.get("/graphql", params={"query": "mutation { login(input: {email: \"a@example.com\", password: \"x\"}) { token } }"})
    assert refused.status_code == 400


async def test_malformed_json_body_is_a_clear_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "JSON" in response.text


async def test_depth_limit(client: httpx.AsyncClient, tenant: Any) -> None:
    deep = "{ viewer { agent { id } } " + "contacts { edges { node { " * 6 + "id" + " } } }" * 6 + " }"
    response = await client.post("/graphql", json={"query": deep}, headers={"authorization": f"Bearer {tenant.owner_token}"})
    assert any("exceeds maximum operation depth" in e["message"] for e in response.json()["errors"])


async def test_alias_limit(client: httpx.AsyncClient) -> None:
    query = "{ " + " ".join(f"a{i}: viewer {{ kind }}" for i in range(40)) + " }"
    response = await client.post("/graphql", json={"query": query})
    assert "aliases" in response.json()["errors"][0]["message"]


async def test_token_limit(client: httpx.AsyncClient) -> None:
    query = "{ viewer { " + " ".join(["kind"] * 5000) + " } }"
    response = await client.post("/graphql", json={"query": query})
    assert "token" in response.json()["errors"][0]["message"].lower()


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz", headers={"x-request-id": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"


async def test_unauthenticated_requests_see_nothing(api: Any) -> None:
    errors = await api.errors("{ contacts(first: 5) { edges { node { id } } } }")
    assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert (await api("{ viewer { kind } }")) == {"viewer": None}


async def test_garbage_bearer_token_is_anonymous(api: Any) -> None:
    assert (await api("{ viewer { kind } }", token="not-a-token")) == {"viewer": None}


async def test_a_token_stops_working_when_it_expires_though_it_was_accepted_before(tenant: Any) -> None:
    """Verified tokens are remembered (core/auth.py), their expiry is not: the next
    request after it is anonymous. A token with a bad signature never gets in."""
    import asyncio
    import time

    import jwt

    from core.config import settings

    expires = int(time.time()) + 2
    claims = {"aud": "parley", "iat": expires - 60, "exp": expires, "typ": "agent", "ws": tenant.workspace.id, "sub": str(tenant.owner.id)}
    token = jwt.encode(claims, settings.secret_key, algorithm="HS256")
    forged = jwt.encode({**claims, "exp": expires + 3600}, "x" * 64, algorithm="HS256")
    assert (await tenant.api("{ viewer { kind } }", token=token)) == {"viewer": {"kind": "AGENT"}}
    assert (await tenant.api("{ viewer { kind } }", token=token)) == {"viewer": {"kind": "AGENT"}}
    assert (await tenant.api("{ viewer { kind } }", token=forged)) == {"viewer": None}
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.1)
    assert (await tenant.api("{ viewer { kind } }", token=token)) == {"viewer": None}


async def test_graphiql_in_dev_passes_the_authorization_header_to_subscriptions(client: httpx.AsyncClient) -> None:
    page = await client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "wsConnectionParams" in page.text
    assert "graphiql:headers" in page.text


async def test_a_client_that_leaves_mid_request_is_not_an_error(live_server: Any) -> None:
    """A load balancer or browser cutting a request short must not log an application error."""
    import asyncio
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(live_server.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"query\":")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    del reader
    time.sleep(0.5)
    async with httpx.AsyncClient(base_url=live_server.url) as http:  # the server is fine
        assert (await http.get("/healthz")).status_code == 200
    assert "Exception in ASGI application" not in live_server.log.read_text()


def test_responses_encode_any_json_value_as_text() -> None:
    """orjson encodes responses and WebSocket frames; an integer beyond 64 bits, which it
    refuses, still gets through (by json). Text, not bytes: graphql-transport-ws clients
    expect text frames."""
    import json

    from asgi import ParleyGraphQL

    view = ParleyGraphQL()
    for payload in ({"data": {"contact": {"name": "Zoë 東京", "score": 1e30, "tags": ["a", None]}}},
                    {"data": {"attributes": {"huge": 2**70}}}):  # fmt: skip
        encoded = view.encode_json(payload)
        assert isinstance(encoded, str)
        assert json.loads(encoded) == payload
