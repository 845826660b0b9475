"""The HTTP surface: GraphQL over HTTP, health, readiness, masking, limits."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from tests.conftest import pk

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
    response = await client.post(
        "/graphql", json={"query": "{ workspace { name } }"}, headers={"accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_get_queries_work_and_mutations_via_get_do_not(client: httpx.AsyncClient, tenant: Any) -> None:
    ok = await client.get(
        "/graphql",
        params={"query": "{ workspace { name } }"},
        headers={"authorization": f"Bearer {tenant.owner_token}"},
    )
    assert ok.json() == {"data": {"workspace": {"name": "Acme"}}}
    refused = await client.get(
        "/graphql", params={"query": 'mutation { login(input: {email: "a@example.com", password: "x"}) { token } }'}
    )
    assert refused.status_code == 400


async def test_malformed_json_body_is_a_clear_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "JSON" in response.text


async def test_depth_limit(client: httpx.AsyncClient, tenant: Any) -> None:
    deep = "{ viewer { agent { id } } " + "contacts { edges { node { " * 6 + "id" + " } } }" * 6 + " }"
    response = await client.post(
        "/graphql", json={"query": deep}, headers={"authorization": f"Bearer {tenant.owner_token}"}
    )
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
    claims = {
        "aud": "parley",
        "iat": expires - 60,
        "exp": expires,
        "typ": "agent",
        "ws": tenant.workspace.id,
        "sub": str(tenant.owner.id),
    }
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
    writer.write(
        b'POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"query":'
    )
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

    from runtime.http import ParleyGraphQL
    from schema import schema

    view = ParleyGraphQL(schema)
    for payload in (
        {"data": {"contact": {"name": "Zoë 東京", "score": 1e30, "tags": ["a", None]}}},
        {"data": {"attributes": {"huge": 2**70}}},
    ):
        encoded = view.encode_json(payload)
        assert isinstance(encoded, str)
        assert json.loads(encoded) == payload


async def test_the_plain_path_answers_as_strawberrys_path_does(
    app: Any, client: httpx.AsyncClient, tenant: Any, make_tenant: Any, monkeypatch: Any
) -> None:
    """runtime/http.py runs a JSON POST of a valid query or mutation itself, without Strawberry's
    view and extension hooks: the same status, content type and body as Strawberry's own
    path for data, field errors, masked unexpected errors, request errors and mutations;
    and every other request goes to Strawberry's path."""
    from tortoise import connections

    from models.contacts import Contact
    from runtime.http import ParleyGraphQL
    from schema import schema

    await tenant.contact(name="Ada", email="ada@example.com")
    await tenant.contact(name="Bo", email="bo@example.com")
    other = await make_tenant("Other")
    theirs = await other.contact(name="Theirs")
    broken = await make_tenant("Broken")
    unreadable = await broken.contact(name="Unreadable")
    # A row no code can read (an unknown consent value): an unexpected error, which is masked.
    db = connections.get("default")
    marker = "$1" if db.capabilities.dialect == "postgres" else "?"
    await db.execute_query(
        f"UPDATE contacts SET sms_consent = 'bogus' WHERE id = {marker}", [int(pk(unreadable["id"]))]
    )
    assert await Contact.filter(workspace_id=broken.workspace.id).count() == 1

    agent, viewer = f"Bearer {tenant.owner_token}", f"Bearer {broken.owner_token}"
    page = (
        "query($n: Int) { contacts(first: $n) { edges { cursor node { "
        "id name email smsConsent lastSeenAt } } pageInfo { hasNextPage endCursor } totalCount } }"
    )
    plain = [
        ({"query": page, "variables": {"n": 1}}, agent, "application/json"),
        ({"query": page, "variables": {"n": 5}}, viewer, "application/json"),
        ({"query": "{ workspace { name } }"}, None, GRAPHQL_RESPONSE),
        ({"query": page, "variables": {"n": "one"}}, agent, GRAPHQL_RESPONSE),
        ({"query": page, "variables": {"n": "one"}}, agent, "application/json"),
        (
            {"query": "query($id: ID!) { node(id: $id) { id } }", "variables": {"id": theirs["id"]}},
            agent,
            "application/json",
        ),
        (
            {
                "query": (
                    'mutation { createContact(input: {email: "nope"}) { contact { id } userErrors { field code } } }'
                )
            },
            agent,
            "*/*",
        ),
        (
            {"query": 'mutation { updateWorkspace(input: {name: "Acme"}) { workspace { name } userErrors { code } } }'},
            agent,
            "*/*",
        ),
        (
            {"query": "query A { viewer { kind } } query B { workspace { name } }", "operationName": "B"},
            agent,
            GRAPHQL_RESPONSE,
        ),
        # Over the query cost budget (core/cost.py): refused before it runs, a request error.
        (
            {
                "query": page.replace("node {", "node { events(first: 100) { edges { node { id } } }"),
                "variables": {"n": 100},
            },
            agent,
            GRAPHQL_RESPONSE,
        ),
        (
            {
                "query": page.replace("node {", "node { events(first: 100) { edges { node { id } } }"),
                "variables": {"n": 100},
            },
            agent,
            "application/json",
        ),
        # An automatic persisted query sent with its document (runtime/persisted.py).
        (
            {
                "query": "{ workspace { name } }",
                "extensions": {
                    "persistedQuery": {
                        "version": 1,
                        "sha256Hash": hashlib.sha256(b"{ workspace { name } }").hexdigest(),
                    }
                },
            },
            agent,
            "application/json",
        ),
    ]
    strawberrys = [
        (
            {"query": "query A { viewer { kind } } query B { workspace { name } }", "operationName": "C"},
            agent,
            GRAPHQL_RESPONSE,
        ),
        ({"query": "query A { viewer { kind } } query B { workspace { name } }"}, agent, "application/json"),
        ({"query": "{ contacts { "}, agent, GRAPHQL_RESPONSE),
        ({"query": "{ workspace { name } }", "extensions": {"trace": True}}, agent, "application/json"),
    ]
    view = next(
        route.app
        for route in app.routes
        if getattr(route, "path", None) == "/graphql" and isinstance(route.app, ParleyGraphQL)
    )
    executed = []
    execute = schema.execute
    monkeypatch.setattr(schema, "execute", lambda *args, **kwargs: executed.append(1) or execute(*args, **kwargs))

    async def answer(
        body: dict[str, Any], authorization: str | None, accept: str, *, plain_path: bool
    ) -> tuple[Any, ...]:
        monkeypatch.setattr(view, "plain_path", plain_path)
        headers = {
            "accept": accept,
            "x-request-id": "equivalence-1",
            **({"authorization": authorization} if authorization else {}),
        }
        executed.clear()
        response = await client.post("/graphql", json=body, headers=headers)
        body = response.json() if "json" in response.headers["content-type"] else response.text
        return response.status_code, response.headers["content-type"], body, len(executed)

    for case in plain + strawberrys:
        *ours, by_strawberry = await answer(*case, plain_path=True)
        *theirs_, strawberry_ran = await answer(*case, plain_path=False)
        assert ours == theirs_, case
        assert strawberry_ran == 1 and by_strawberry == (0 if case in plain else 1), case
    # What the cases cover, as the client sees it.
    first = (await answer(*plain[0], plain_path=True))[2]["data"]["contacts"]
    assert len(first["edges"]) == 1 and first["pageInfo"]["hasNextPage"] is True and first["totalCount"] == 2
    masked = (await answer(*plain[1], plain_path=True))[2]
    assert (
        masked["data"] is None and masked["errors"][0]["message"] == "Internal server error (request id equivalence-1)."
    )
    status, _, refused, _ = await answer(*plain[3], plain_path=True)
    assert status == 400 and "data" not in refused and "Int cannot represent" in refused["errors"][0]["message"]
    assert (await answer(*plain[5], plain_path=True))[2] == {"data": {"node": None}}
    assert (await answer(*plain[6], plain_path=True))[2]["data"]["createContact"]["userErrors"][0]["field"] == ["email"]
    status, _, costly, _ = await answer(*plain[9], plain_path=True)
    assert status == 400 and "data" not in costly and costly["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    status, _, costly, _ = await answer(*plain[10], plain_path=True)
    assert status == 200 and costly["data"] is None and costly["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


def test_prepared_documents_are_bounded_in_number_and_in_characters(monkeypatch: Any) -> None:
    """Clients choose their query texts (and a string literal is one token whatever its
    length): the plain path keeps a bounded number of texts and characters, and prepares
    a longer text each time rather than keep it."""
    from runtime.prepared import ParleySchema
    from schema import build_schema

    monkeypatch.setattr(ParleySchema, "PREPARED_MAX", 3)
    monkeypatch.setattr(ParleySchema, "PREPARED_CHARS_MAX", 400)
    monkeypatch.setattr(ParleySchema, "PREPARED_TEXT_MAX", 150)
    built = build_schema()
    texts = [
        f'{{ contacts(search: "{"x" * n}") {{ totalCount }} }}' for n in (10, 20, 30, 40, 100, 102, 104)
    ]  # 49-143 characters
    for text in texts:
        prepared = built.prepare(text)
        assert prepared is not None and prepared.operation(None) is not None
        kept = built._prepared
        assert len(kept) <= 3 and sum(map(len, kept)) <= 400 and built._prepared_chars == sum(map(len, kept))
    assert list(built._prepared) == texts[-2:]  # the most recent: a third would pass 400 characters
    long_text = f'{{ contacts(search: "{"y" * 200}") {{ totalCount }} }}'
    assert built.prepare(long_text) is not None and long_text not in built._prepared
    assert built.prepare(texts[-2]) is not None and list(built._prepared) == [
        texts[-1],
        texts[-2],
    ]  # used again: the most recent
    assert built.prepare("{ contacts { ") is None and built.prepare("{ nope }") is None and len(built._prepared) == 2


async def test_list_pages_leave_nothing_for_the_garbage_collector(app: Any, tenant: Any) -> None:
    """A request's executor, context and loads go when its response does: a reference
    cycle among them (graphql-core's helpers bound to the executor, row functions or
    loaders keeping the executor or the context, a recursive closure) made each request
    garbage only the collector could free, a pass over tens of thousands of objects every
    few hundred pages (5-7 % of a list page's CPU)."""
    import gc

    import orjson

    from models.conversations import Conversation, Direction, Message, SenderKind

    agent, _ = await tenant.agent()
    for n in range(3):
        contact = await tenant.contact(name=f"Visitor {n}", email=f"v{n}@example.com")
        conversation = await Conversation.create(
            workspace_id=tenant.workspace.id,
            contact_id=int(pk(contact["id"])),
            channel_id=tenant.channel.id,
            assignee_id=agent.id,
        )
        message = await Message.create(
            workspace_id=tenant.workspace.id,
            conversation_id=conversation.id,
            body=f"Question {n}",
            sender_kind=SenderKind.CONTACT,
            direction=Direction.INBOUND,
        )
        await Conversation.filter(id=conversation.id).update(last_message_id=message.id)
    pages = [
        "{ contacts(first: 50) { edges { node { id name email phone lastSeenAt } } } }",
        "{ conversations(first: 25) { edges { node { id status contact { "
        "id name } assignee { id name } lastMessage { id body } } } } }",
    ]

    async def post(query: str) -> dict[str, Any]:
        """Straight into the ASGI app: an HTTP client's own objects are not the request's."""
        body, sent = orjson.dumps({"query": query}), []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        headers = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {tenant.owner_token}".encode())]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)
        return orjson.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))  # type: ignore[no-any-return]

    for query in pages:  # plans, prepared documents and caches made once
        assert "errors" not in await post(query)
    gc.collect()
    gc.disable()
    try:
        answers = [await post(query) for _ in range(5) for query in pages]
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert len(answers[0]["data"]["contacts"]["edges"]) == 3
    inbox = answers[1]["data"]["conversations"]["edges"]
    assert len(inbox) == 3 and all(e["node"]["assignee"]["id"] and e["node"]["lastMessage"]["body"] for e in inbox)
    assert unreachable == 0


async def test_subscriptions_over_http_are_refused_saying_where_they_are_served(client: httpx.AsyncClient) -> None:
    """multipart/mixed (Apollo's HTTP subscriptions) and text/event-stream are not offered:
    such streams would escape the socket guard that closes sockets whose credentials end."""
    subscription = "subscription { unreadCount }"
    for accept in ("multipart/mixed;subscriptionSpec=1.0, application/json", "text/event-stream", GRAPHQL_RESPONSE):
        for response in (
            await client.post("/graphql", json={"query": subscription}, headers={"accept": accept}),
            await client.get("/graphql", params={"query": subscription}, headers={"accept": accept}),
        ):
            assert response.headers["content-type"].startswith(("application/json", GRAPHQL_RESPONSE)), accept
            [error] = response.json()["errors"]
            assert error["extensions"]["code"] == "NOT_ALLOWED"
            assert "over WebSocket only" in error["message"]
            assert response.status_code == (400 if accept == GRAPHQL_RESPONSE else 200)
