"""What a hostile client may send, refused before any work is done on it (core/limits.py):
bodies over the size limit (413 before they are read, declared or chunked), bodies that are
not UTF-8 or nest too deep, too many JSON values, over-long documents; and on WebSockets
over-large messages, too many sockets per user and too many operations per socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from core.config import settings
from tests.conftest import LiveServer, Tenant, start_server
from tests.realtime.wsclient import Closed, GraphQLWs

GRAPHQL_RESPONSE = "application/graphql-response+json"
SMALL_BODY = 64 * 1024
CONTACT_UPDATED = "subscription($id: ID!) { contactUpdated(id: $id) { cursor kind } }"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server with small limits, so going past them is quick."""
    env = {
        "MAX_BODY_BYTES": str(SMALL_BODY),
        "WS_MAX_MESSAGE_BYTES": str(SMALL_BODY),
        "MAX_DOCUMENT_CHARS": "20000",
        "MAX_SOCKETS_PER_PRINCIPAL": "2",
        "MAX_SUBSCRIPTIONS_PER_SOCKET": "2",
    }
    live = start_server(tmp_path_factory.mktemp("limits"), env=env)
    yield live
    live.stop()


async def _raw_request(server: LiveServer, head: str, body_parts: list[bytes]) -> tuple[int, dict[str, Any]]:
    """Send a request's head and only `body_parts` of its body, then wait (a few seconds
    at most) for the answer: its status and JSON body."""
    parts = urlsplit(server.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        # The head with the first part in one write: a part arriving after the server
        # answered and closed would be answered with a reset, which can beat the answer.
        writer.write(head.encode() + b"\r\n" + body_parts[0])
        for part in body_parts[1:]:
            await writer.drain()
            writer.write(part)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=5)  # answered with Connection: close
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(body)


async def _paths(tenant: Tenant) -> dict[str, str]:
    from models.channels import ChannelKind
    from resolvers.channels import create_channel

    sms = await create_channel(tenant.workspace.id, ChannelKind.SMS, "SMS")
    return {"graphql": "/graphql", "hooks": f"/hooks/channels/{sms.public_key}/inbound"}


@pytest.mark.parametrize("route", ["graphql", "hooks"])
async def test_a_body_declared_too_large_is_refused_before_it_is_sent(
    server: LiveServer, tenant: Tenant, route: str
) -> None:
    path = (await _paths(tenant))[route]
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {50 * 1024 * 1024}\r\n"
    )
    status, body = await _raw_request(server, head, [b'{"query": "'])
    assert status == 413
    message = body["errors"][0]["message"] if route == "graphql" else body["error"]["message"]
    assert f"larger than {SMALL_BODY} bytes" in message


@pytest.mark.parametrize("route", ["graphql", "hooks"])
async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(
    server: LiveServer, tenant: Tenant, route: str
) -> None:
    """No Content-Length: the bytes are counted as they arrive, and the answer comes
    while the client has not finished (it never sends the last chunk here)."""
    path = (await _paths(tenant))[route]
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    chunk = b" " * 8192
    # Up to the limit, then one byte past it (bytes the server never reads would turn its
    # close into a reset, which may reach the client before the answer).
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (SMALL_BODY // len(chunk)) + [b"1\r\n \r\n"]
    status, body = await _raw_request(server, head, chunks)
    assert status == 413
    message = body["errors"][0]["message"] if route == "graphql" else body["error"]["message"]
    assert f"larger than {SMALL_BODY} bytes" in message


async def test_a_body_within_the_limit_is_served(server: LiveServer) -> None:
    padded = json.dumps({"query": "{ viewer { kind } }"}).encode().ljust(SMALL_BODY - 100)
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/graphql", content=padded, headers={"content-type": "application/json"})
    assert response.status_code == 200 and response.json() == {"data": {"viewer": None}}


def test_a_full_sync_fits_the_default_limits_twice_over() -> None:
    """syncContacts takes up to 1,000 rows: the largest call a CRM makes, every contact
    field filled, 10 attributes and 5 tags a row, is half the default body limit at most."""
    from core.limits import decode_json_body

    query = "mutation($input: SyncContactsInput!) { syncContacts(input: $input) { results { index status } } }"
    rows = [
        {
            "externalId": f"crm-{i:07d}",
            "name": f"Customer Number {i} Lastname-Hyphenated",
            "email": f"customer.{i}@example-company.com",
            "phone": "+442071838750",
            "country": "PT",
            "city": "Lisbon",
            "timeZone": "Europe/Lisbon",
            "locale": "pt-PT",
            "browserLanguage": "pt-PT",
            "os": "macOS",
            "browser": "Safari",
            "ip": "203.0.113.77",
            "referrer": "https://www.google.com/search?q=parley",
            "vip": False,
            "gdprConsent": True,
            "smsConsent": "SUBSCRIBED",
            "attributes": [{"key": f"custom_attribute_{k}", "value": f"value number {k} of {i}"} for k in range(10)],
            "tags": [f"tag-{t}" for t in range(5)],
        }
        for i in range(1000)
    ]
    body = json.dumps(
        {"query": query, "variables": {"input": {"idempotencyKey": "crm-run-1", "contacts": rows}}}, indent=1
    ).encode()
    assert len(body) * 2 <= settings.max_body_bytes
    assert decode_json_body(body)["variables"]["input"]["contacts"][999]["externalId"] == "crm-0000999"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE_BODIES = [
    pytest.param(
        b'{"query": "{ viewer { kind } }", "variables": {"x": "\xff\xfe"}}',
        "The request body is not valid UTF-8.",
        id="not-utf8",
    ),
    pytest.param(
        b'{"query": "{ viewer { kind } }", "variables": {"x": ' + _nested(10_000).encode() + b"}}",
        "The request's JSON nests deeper than 32 levels.",
        id="10000-deep",
    ),
    pytest.param(
        b'{"query": "{ viewer { kind } }", "variables": {"x": ' + _nested(40).encode() + b"}}",
        "The request's JSON nests deeper than 32 levels.",
        id="40-deep",
    ),
    pytest.param(
        b'{"query": "{ viewer { kind } }", "variables": {"x": [' + b",".join([b"0"] * 250_000) + b"]}}",
        "The request's JSON holds more than 200000 values.",
        id="too-many-values",
    ),
    pytest.param(
        json.dumps({"query": "{ viewer { kind } }" + " " * 100_000}).encode(),
        "The GraphQL document has 100019 characters; at most 100000 are allowed.",
        id="long-document",
    ),
    pytest.param(b'{"query": ', "Unable to parse request body as JSON", id="not-json"),
]


@pytest.mark.parametrize(("body", "message"), HOSTILE_BODIES)
@pytest.mark.parametrize("accept", ["application/json", GRAPHQL_RESPONSE])
async def test_hostile_bodies_are_a_clear_400_on_both_paths(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, body: bytes, message: str, accept: str
) -> None:
    """Never a 500: the same answer from the plain path (runtime/http.py) and Strawberry's."""
    from runtime.http import ParleyGraphQL

    view = next(
        route.app
        for route in app.routes
        if getattr(route, "path", None) == "/graphql" and isinstance(route.app, ParleyGraphQL)
    )
    answers = []
    for plain_path in (True, False):
        monkeypatch.setattr(view, "plain_path", plain_path)
        response = await client.post(
            "/graphql", content=body, headers={"content-type": "application/json", "accept": accept}
        )
        answers.append((response.status_code, response.headers["content-type"], response.json()))
    assert answers[0] == answers[1]
    status, content_type, answer = answers[0]
    assert status == 400 and content_type.startswith(accept)
    assert answer["errors"][0]["message"].startswith(message)
    assert "data" not in answer


async def test_hostile_variables_in_a_get_are_a_clear_400(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql", params={"query": "{ viewer { kind } }", "variables": '{"x": ' + _nested(10_000) + "}"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "The request's JSON nests deeper than 32 levels."


# -- WebSockets ---------------------------------------------------------------------------------


async def test_a_websocket_message_over_the_limit_closes_the_socket(server: LiveServer, tenant: Tenant) -> None:
    async with GraphQLWs.open(server.ws_url, tenant.owner_token) as ws:
        await ws.send(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": CONTACT_UPDATED, "variables": {"pad": "x" * SMALL_BODY}},
            }
        )
        closed = await ws.wait_closed()
    assert (closed.code, closed.reason) == (1009, f"Message larger than {SMALL_BODY} bytes")


async def test_a_websocket_document_over_the_limit_is_an_error(server: LiveServer, tenant: Tenant) -> None:
    contact = await tenant.contact(name="Long")
    async with GraphQLWs.open(server.ws_url, tenant.owner_token) as ws:
        sub = await ws.subscribe(CONTACT_UPDATED + " " * 20_000, {"id": contact["id"]})
        message = await sub.receive()
    assert message["type"] == "error"
    assert (
        message["payload"][0]["message"]
        == f"The GraphQL document has {len(CONTACT_UPDATED) + 20_000} characters; at most 20000 are allowed."
    )


async def test_sockets_per_user_are_capped_and_freed_when_one_closes(server: LiveServer, tenant: Tenant) -> None:
    async with GraphQLWs.open(server.ws_url, tenant.owner_token), GraphQLWs.open(server.ws_url, tenant.owner_token):
        async with GraphQLWs.connect(server.ws_url) as third:
            with pytest.raises(Closed) as closed:
                await third.init({"authorization": f"Bearer {tenant.owner_token}"})
            assert (closed.value.code, closed.value.reason) == (4429, "At most 2 sockets per user")
        # Another user is not held back by this one.
        _, other_token = await tenant.agent()
        async with GraphQLWs.open(server.ws_url, other_token):
            pass
    for _ in range(50):  # the server frees a socket's place once it has seen it close
        try:
            async with (
                GraphQLWs.open(server.ws_url, tenant.owner_token),
                GraphQLWs.open(server.ws_url, tenant.owner_token),
            ):
                return
        except Closed:
            await asyncio.sleep(0.05)
    raise AssertionError("closed sockets still count against their user")


async def test_operations_per_socket_are_capped(server: LiveServer, tenant: Tenant) -> None:
    contact = await tenant.contact(name="Busy")
    async with GraphQLWs.open(server.ws_url, tenant.owner_token) as ws:
        await ws.subscribe(CONTACT_UPDATED, {"id": contact["id"]})
        await ws.subscribe(CONTACT_UPDATED, {"id": contact["id"]})
        third = await ws.subscribe(CONTACT_UPDATED, {"id": contact["id"]})
        message = await third.receive()
    assert message["type"] == "error" and message["payload"][0]["message"] == "Subscription limit reached"
