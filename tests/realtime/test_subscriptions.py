"""`contactUpdated` end to end: real uvicorn processes, real Redis, a real WebSocket
client speaking graphql-transport-ws. Mutations go over HTTP to a live server, as a
second browser tab would send them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from strawberry import relay

from core import keys
from core.embedded_redis import PrivateRedis, free_port
from models.contacts import ContactChange
from tests.conftest import LiveServer, Tenant, start_server
from tests.realtime.wsclient import Closed, GraphQLWs

TIMEOUT = 10  # turns a hang into a failure; never a measurement

CONTACT_UPDATED = "subscription($id: ID!) { contactUpdated(id: $id) { cursor kind contactId contact { name } } }"
UPDATE_CONTACT = """
mutation($input: UpdateContactInput!) {
  updateContact(input: $input) { contact { id name email } userErrors { field code message } }
}"""
DELETE_CONTACT = """
mutation($input: ContactIdInput!) {
  deleteContact(input: $input) { deletedContactId userErrors { field code message } }
}"""
TAG_CONTACT = """
mutation($input: TagContactInput!) {
  tagContact(input: $input) { contact { tags } userErrors { field code message } }
}"""
START_SESSION = """
mutation($input: StartContactSessionInput!) {
  startContactSession(input: $input) { token contact { id } userErrors { field code message } }
}"""


# -- helpers ---------------------------------------------------------------------------------


async def graphql(server: LiveServer, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        response = await http.post(
            "/graphql", json={"query": query, "variables": variables}, headers={"authorization": f"Bearer {token}"}
        )
    body = response.json()
    assert response.status_code == 200 and not body.get("errors"), body
    return body["data"]  # type: ignore[no-any-return]


async def update_contact(server: LiveServer, token: str, contact_id: str, **fields: Any) -> dict[str, Any]:
    data = await graphql(server, UPDATE_CONTACT, {"input": {"id": contact_id, **fields}}, token)
    return data["updateContact"]  # type: ignore[no-any-return]


def channel_of(tenant: Tenant, contact_id: str) -> str:
    return keys.contact_channel(tenant.workspace.id, int(relay.GlobalID.from_id(contact_id).node_id))


async def until_subscribed(channel: str, redis_url: str | None = None) -> None:
    """Wait until some server holds a Redis subscription to `channel`: from then on a
    published event reaches it. (The protocol has no "subscribed" acknowledgement.)"""
    client = aioredis.Redis.from_url(redis_url or os.environ["REDIS_URL"])

    async def wait() -> None:
        while True:
            [(_, count)] = await client.pubsub_numsub(channel)
            if count >= 1:
                return
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(wait(), TIMEOUT)
    finally:
        await client.aclose()


async def subscribe_and_wait(ws: GraphQLWs, tenant: Tenant, contact_id: str, redis_url: str | None = None) -> Any:
    sub = await ws.subscribe(CONTACT_UPDATED, {"id": contact_id})
    await until_subscribed(channel_of(tenant, contact_id), redis_url)
    return sub


async def next_update(sub: Any) -> dict[str, Any]:
    return (await sub.next_data())["contactUpdated"]  # type: ignore[no-any-return]


async def error_of(sub: Any) -> list[dict[str, Any]]:
    """The GraphQL errors an operation ended with: an `error` message, or a `next` with
    errors; either way the operation is over."""
    message = await sub.receive()
    if message["type"] == "error":
        return message["payload"]  # type: ignore[no-any-return]
    assert message["type"] == "next" and message["payload"].get("errors"), message
    assert message["payload"].get("data") is None, message
    assert (await sub.receive())["type"] == "complete"
    return message["payload"]["errors"]  # type: ignore[no-any-return]


# -- delivery ---------------------------------------------------------------------------------


async def test_agent_receives_updates_with_increasing_cursors(server: LiveServer, tenant: Tenant) -> None:
    contact = await tenant.contact(name="Ada")
    async with GraphQLWs.open(server.ws_url, tenant.owner_token) as ws:
        sub = await subscribe_and_wait(ws, tenant, contact["id"])

        await update_contact(server, tenant.owner_token, contact["id"], name="Ada Lovelace")
        first = await next_update(sub)
        assert first["kind"] == "UPDATED"
        assert first["contactId"] == contact["id"]
        assert first["contact"] == {"name": "Ada Lovelace"}
        assert first["cursor"].isdigit()

        await update_contact(server, tenant.owner_token, contact["id"], name="Countess Lovelace")
        second = await next_update(sub)
        assert (second["kind"], second["contact"]) == ("UPDATED", {"name": "Countess Lovelace"})
        assert second["cursor"].isdigit() and int(second["cursor"]) > int(first["cursor"])


async def test_events_cross_server_processes(server: LiveServer, tenant: Tenant, tmp_path: Path) -> None:
    other = start_server(tmp_path, name="b")
    try:
        contact = await tenant.contact(name="Grace")
        async with GraphQLWs.open(other.ws_url, tenant.owner_token) as ws:
            sub = await subscribe_and_wait(ws, tenant, contact["id"])
            await update_contact(server, tenant.owner_token, contact["id"], name="Grace Hopper")
            event = await next_update(sub)
            assert (event["kind"], event["contactId"], event["contact"]) == (
                "UPDATED",
                contact["id"],
                {"name": "Grace Hopper"},
            )
    finally:
        other.stop()


async def test_deleting_a_contact_delivers_deleted_with_no_contact(server: LiveServer, tenant: Tenant) -> None:
    contact = await tenant.contact(name="Doomed")
    _, agent_token = await tenant.agent()
    async with GraphQLWs.open(server.ws_url, agent_token) as ws:
        sub = await subscribe_and_wait(ws, tenant, contact["id"])
        data = await graphql(server, DELETE_CONTACT, {"input": {"id": contact["id"]}}, tenant.owner_token)
        assert data["deleteContact"] == {"deletedContactId": contact["id"], "userErrors": []}
        event = await next_update(sub)
        assert event["kind"] == "DELETED"
        assert event["contactId"] == contact["id"]
        assert event["contact"] is None


async def test_a_failed_mutation_publishes_nothing(server: LiveServer, tenant: Tenant) -> None:
    contact = await tenant.contact(name="Before")
    async with GraphQLWs.open(server.ws_url, tenant.owner_token) as ws:
        sub = await subscribe_and_wait(ws, tenant, contact["id"])

        bad = await update_contact(server, tenant.owner_token, contact["id"], name="Bad", email="not-an-email")
        assert bad["contact"] is None
        assert [e["field"] for e in bad["userErrors"]] == [["email"]]
        good = await update_contact(server, tenant.owner_token, contact["id"], name="Good")
        assert good["userErrors"] == []

        # The change log's newest entry for this contact is the good update's.
        latest = (
            await ContactChange.filter(contact_id=int(relay.GlobalID.from_id(contact["id"]).node_id))
            .order_by("-id")
            .first()
        )
        assert latest is not None
        first = await next_update(sub)
        assert first["cursor"] == str(latest.id)
        assert (first["kind"], first["contact"]) == ("UPDATED", {"name": "Good"})


async def test_each_event_shows_the_contact_as_it_is_now(server: LiveServer, tenant: Tenant) -> None:
    # Related data (tags come through a DataLoader) must be read afresh for every event:
    # the socket's context lives far longer than one request.
    contact = await tenant.contact(name="Tagged")
    query = "subscription($id: ID!) { contactUpdated(id: $id) { kind contact { name tags } } }"
    async with GraphQLWs.open(server.ws_url, tenant.owner_token) as ws:
        sub = await ws.subscribe(query, {"id": contact["id"]})
        await until_subscribed(channel_of(tenant, contact["id"]))

        for tags, expected in ((["vip"], ["vip"]), (["gold"], ["gold", "vip"])):
            data = await graphql(
                server, TAG_CONTACT, {"input": {"contactId": contact["id"], "tags": tags}}, tenant.owner_token
            )
            assert data["tagContact"] == {"contact": {"tags": expected}, "userErrors": []}
            event = (await sub.next_data())["contactUpdated"]
            assert event == {"kind": "UPDATED", "contact": {"name": "Tagged", "tags": expected}}


# -- Redis going away -------------------------------------------------------------------------


async def _readyz(http: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await http.get("/readyz")
    return response.status_code, response.json()


async def test_a_redis_restart_ends_subscriptions_so_their_clients_catch_up(tenant: Tenant, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "redis").mkdir()
    redis_server = PrivateRedis(port=port, workdir=str(tmp_path / "redis")).start()
    live: LiveServer | None = None
    try:
        live = start_server(tmp_path, env={"REDIS_URL": redis_server.url}, name="restart")
        contact = await tenant.contact(name="Linus")
        async with (
            GraphQLWs.open(live.ws_url, tenant.owner_token) as ws,
            httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as http,
        ):
            sub = await subscribe_and_wait(ws, tenant, contact["id"], redis_server.url)

            redis_server.stop()
            status, body = await _readyz(http)
            assert status == 503 and body["ready"] is False and body["redis"] != "ok", body

            redis_server = PrivateRedis(port=port, workdir=str(tmp_path / "redis")).start()

            async def ready_again() -> None:
                while (await _readyz(http)) != (200, {"ready": True, "database": "ok", "redis": "ok", "pubsub": "ok"}):
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(ready_again(), TIMEOUT)
            # Events published while Redis was away are lost to pub/sub, and the subscription
            # could not tell: the server ends it, telling the client to catch up.
            [error] = await error_of(sub)
            assert error["extensions"]["code"] == "CONFLICT" and "catch up by cursor" in error["message"], error

            # The socket stays open: the client subscribes again on it and hears what follows.
            sub = await subscribe_and_wait(ws, tenant, contact["id"], redis_server.url)
            await update_contact(live, tenant.owner_token, contact["id"], name="Linus Torvalds")
            event = await next_update(sub)
            assert (event["kind"], event["contact"]) == ("UPDATED", {"name": "Linus Torvalds"})
    finally:
        if live is not None:
            live.stop()
        redis_server.close()


# -- who may listen ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"authorization": "Bearer not-a-token"}, id="bad-token"),
        pytest.param({"authorization": "Basic b3duZXI6cGFzcw=="}, id="not-bearer"),
        pytest.param({}, id="no-authorization"),
        pytest.param(None, id="no-payload"),
        pytest.param({"authorization": ["Bearer x"]}, id="not-a-string"),
    ],
)
async def test_connection_init_without_valid_credentials_is_refused(
    server: LiveServer, payload: dict[str, Any] | None
) -> None:
    async with GraphQLWs.connect(server.ws_url) as ws:
        with pytest.raises(Closed) as closed:
            await ws.init(payload)
        assert (closed.value.code, closed.value.reason) == (4403, "Forbidden")
        # The socket is gone: nothing more can be asked on it.
        sub = await ws.subscribe(CONTACT_UPDATED, {"id": "Q29udGFjdDox"})
        with pytest.raises(Closed):
            await sub.receive()


async def test_subscribing_without_connection_init_is_refused(server: LiveServer, tenant: Tenant) -> None:
    contact = await tenant.contact(name="Quiet")
    async with GraphQLWs.connect(server.ws_url) as ws:
        sub = await ws.subscribe(CONTACT_UPDATED, {"id": contact["id"]})
        with pytest.raises(Closed) as closed:
            await sub.receive()
        assert (closed.value.code, closed.value.reason) == (4401, "Unauthorized")


async def test_the_legacy_graphql_ws_protocol_is_refused(server: LiveServer, tenant: Tenant) -> None:
    async with GraphQLWs.connect(server.ws_url, subprotocols=["graphql-ws"]) as ws:
        assert ws.ws.subprotocol is None
        closed = await ws.wait_closed()
        assert (closed.code, closed.reason) == (4406, "Subprotocol not acceptable")


async def test_a_contact_session_hears_only_its_own_contact(server: LiveServer, tenant: Tenant) -> None:
    other = await tenant.contact(name="Someone Else")
    data = await graphql(
        server, START_SESSION, {"input": {"channelKey": tenant.channel.public_key}}, tenant.owner_token
    )
    session = data["startContactSession"]
    assert session["userErrors"] == [] and session["token"], session
    me = session["contact"]["id"]

    async with GraphQLWs.open(server.ws_url, session["token"]) as ws:
        denied = await ws.subscribe(CONTACT_UPDATED, {"id": other["id"]})
        [error] = await error_of(denied)
        assert error["extensions"]["code"] == "NOT_FOUND", error

        sub = await subscribe_and_wait(ws, tenant, me)
        await update_contact(server, tenant.owner_token, me, name="Visitor Named")
        event = await next_update(sub)
        assert (event["kind"], event["contactId"], event["contact"]) == ("UPDATED", me, {"name": "Visitor Named"})

        await update_contact(server, tenant.owner_token, other["id"], name="Still Someone Else")
        await update_contact(server, tenant.owner_token, me, name="Visitor Renamed")
        assert (await next_update(sub))["contact"] == {"name": "Visitor Renamed"}
        assert denied.queue.empty(), "the refused subscription received something"


async def test_an_agent_cannot_subscribe_to_another_workspaces_contact(server: LiveServer, make_tenant: Any) -> None:
    acme, globex = await make_tenant("Acme"), await make_tenant("Globex")
    theirs = await globex.contact(name="Globex Customer")
    ours = await acme.contact(name="Acme Customer")

    async with (
        GraphQLWs.open(server.ws_url, acme.owner_token) as ws,
        GraphQLWs.open(server.ws_url, globex.owner_token) as owner_ws,
    ):
        denied = await ws.subscribe(CONTACT_UPDATED, {"id": theirs["id"]})
        [error] = await error_of(denied)
        assert error["extensions"]["code"] == "NOT_FOUND", error
        assert "Globex" not in error["message"]

        # Globex's own owner does hear the change, so it was published...
        owner_sub = await subscribe_and_wait(owner_ws, globex, theirs["id"])
        allowed = await subscribe_and_wait(ws, acme, ours["id"])
        await update_contact(server, globex.owner_token, theirs["id"], name="Globex Renamed")
        assert (await next_update(owner_sub))["contact"] == {"name": "Globex Renamed"}
        # ...and Acme's socket, which hears its own contact next, heard nothing of it.
        await update_contact(server, acme.owner_token, ours["id"], name="Acme Renamed")
        assert (await next_update(allowed))["contact"] == {"name": "Acme Renamed"}
        assert denied.queue.empty(), "the refused subscription received something"
