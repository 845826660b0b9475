"""Shared fan-out (runtime/fanout.py): an event's selection is executed once per audience and
its frame serialized once, yet every subscriber still sees exactly what it may see — an
owner the channel's secret, an agent or an API key null — in the shape its own operation
asked for."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from tests.conftest import LiveServer, Tenant, gql, hub_subscriptions, start_server
from tests.realtime.wsclient import Closed, GraphQLWs

WITH_SECRET = "subscription { conversationEvents { kind conversation { id channel { id secret } } } }"
STATUS_ONLY = "subscription { conversationEvents { kind conversation { status } } }"
SESSION = "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token } }"
START = "mutation($i: StartConversationInput!) { startConversation(input: $i) { conversation { id } } }"


async def test_each_audience_sees_its_own_view_of_one_shared_event(tenant: Tenant, tmp_path: Path) -> None:
    server = start_server(tmp_path)
    _, first_agent = await tenant.agent()
    _, second_agent = await tenant.agent()
    try:
        async with (
            GraphQLWs.open(server.ws_url, tenant.owner_token) as owner_ws,
            GraphQLWs.open(server.ws_url, first_agent) as first_ws,
            GraphQLWs.open(server.ws_url, second_agent) as second_ws,
            GraphQLWs.open(server.ws_url, tenant.api_key) as key_ws,
        ):
            owner = await owner_ws.subscribe(WITH_SECRET)
            first = await first_ws.subscribe(WITH_SECRET)
            first_status = await first_ws.subscribe(STATUS_ONLY)
            second = await second_ws.subscribe(WITH_SECRET)
            key = await key_ws.subscribe(WITH_SECRET)
            await hub_subscriptions(server, 5)

            token = (
                await gql(server, SESSION, {"i": {"channelKey": tenant.channel.public_key, "externalId": "fan-1"}}, "")
            )["startContactSession"]["token"]
            conversation_id = (await gql(server, START, {"i": {"body": "Hello"}}, token))["startConversation"][
                "conversation"
            ]["id"]

            seen_by_owner = (await owner.next_data())["conversationEvents"]
            assert seen_by_owner["conversation"]["id"] == conversation_id
            assert seen_by_owner["conversation"]["channel"]["secret"] == tenant.channel.secret
            hidden = {
                **seen_by_owner,
                "conversation": {
                    **seen_by_owner["conversation"],
                    "channel": {**seen_by_owner["conversation"]["channel"], "secret": None},
                },
            }
            assert (await first.next_data())["conversationEvents"] == hidden
            assert (await second.next_data())["conversationEvents"] == hidden
            assert (await key.next_data())["conversationEvents"] == hidden
            assert (await first_status.next_data())["conversationEvents"] == {
                "kind": "CREATED",
                "conversation": {"status": "OPEN"},
            }
    finally:
        server.stop()


# -- direct delivery: the hub writes shared frames to each socket itself -------------------------

MESSAGE_ADDED = "subscription($id: ID!) { messageAdded(conversationId: $id) { cursor message { body } } }"
SEND = "mutation($i: SendMessageInput!) { sendMessage(input: $i) { message { id } userErrors { code } } }"
CREATE_API_KEY = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } secret } }"
REVOKE_API_KEY = "mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { userErrors { code } } }"


async def _conversation(server: LiveServer, tenant: Tenant, external_id: str) -> str:
    token = (
        await gql(server, SESSION, {"i": {"channelKey": tenant.channel.public_key, "externalId": external_id}}, "")
    )["startContactSession"]["token"]
    return (await gql(server, START, {"i": {"body": "Hello"}}, token))["startConversation"]["conversation"]["id"]  # type: ignore[no-any-return]


async def _send(server: LiveServer, token: str, conversation_id: str, body: str) -> None:
    sent = (await gql(server, SEND, {"i": {"conversationId": conversation_id, "body": body}}, token))["sendMessage"]
    assert sent["userErrors"] == [], sent


async def _metric(server: LiveServer, name: str) -> int:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        found = re.search(rf"^{name} (\d+)$", (await http.get("/metrics")).text, re.M)
    assert found, name
    return int(found.group(1))


async def test_direct_frames_reach_every_operation_in_order(tenant: Tenant, tmp_path: Path) -> None:
    server = start_server(tmp_path)
    _, agent = await tenant.agent()
    try:
        conversation_id = await _conversation(server, tenant, "direct-1")
        async with (
            GraphQLWs.open(server.ws_url, tenant.owner_token) as owner_ws,
            GraphQLWs.open(server.ws_url, agent) as agent_ws,
        ):
            # Two operations on one socket (one id each), and another principal's socket.
            subscribed = [
                await owner_ws.subscribe(MESSAGE_ADDED, {"id": conversation_id}),
                await owner_ws.subscribe(MESSAGE_ADDED, {"id": conversation_id}),
                await agent_ws.subscribe(MESSAGE_ADDED, {"id": conversation_id}),
            ]
            await hub_subscriptions(server, 3)
            before = await _metric(server, "parley_hub_direct_deliveries_total")
            bodies = [f"message {n}" for n in range(20)]
            for body in bodies:
                await _send(server, tenant.owner_token, conversation_id, body)
            for sub in subscribed:
                assert [(await sub.next_data())["messageAdded"]["message"]["body"] for _ in bodies] == bodies
            # They went the direct way (a few may take the stream's, e.g. when a check falls due).
            assert await _metric(server, "parley_hub_direct_deliveries_total") - before >= len(bodies)
            # Completing one operation stops its frames, not the others'.
            await subscribed[0].complete()
            await hub_subscriptions(server, 2)
            await _send(server, tenant.owner_token, conversation_id, "after")
            assert (await subscribed[1].next_data())["messageAdded"]["message"]["body"] == "after"
            assert (await subscribed[2].next_data())["messageAdded"]["message"]["body"] == "after"
            assert subscribed[0].queue.empty()
    finally:
        server.stop()


async def test_a_revoked_keys_socket_is_closed_while_others_keep_receiving(tenant: Tenant, tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        made = (
            await gql(
                server, CREATE_API_KEY, {"i": {"name": "Feed", "scopes": ["conversations:read"]}}, tenant.owner_token
            )
        )["createApiKey"]
        conversation_id = await _conversation(server, tenant, "direct-2")
        async with (
            GraphQLWs.open(server.ws_url, made["secret"]) as key_ws,
            GraphQLWs.open(server.ws_url, tenant.owner_token) as owner_ws,
        ):
            key = await key_ws.subscribe(MESSAGE_ADDED, {"id": conversation_id})
            owner = await owner_ws.subscribe(MESSAGE_ADDED, {"id": conversation_id})
            await hub_subscriptions(server, 2)
            await _send(server, tenant.owner_token, conversation_id, "before")
            assert (await key.next_data())["messageAdded"]["message"]["body"] == "before"
            assert (await owner.next_data())["messageAdded"]["message"]["body"] == "before"
            assert await _metric(server, "parley_hub_direct_deliveries_total") >= 2

            revoked = (await gql(server, REVOKE_API_KEY, {"i": {"id": made["apiKey"]["id"]}}, tenant.owner_token))[
                "revokeApiKey"
            ]
            assert revoked["userErrors"] == []
            # The revocation closes the key's socket at once (runtime/socket_guard.py), before
            # any event; the owner hears every message.
            with pytest.raises(Closed) as closed:
                await key.receive()
            assert (closed.value.code, closed.value.reason) == (4403, "Credentials revoked or expired")
            assert await _metric(server, "parley_sockets_revoked_total") == 1
            await _send(server, tenant.owner_token, conversation_id, "after")
            assert (await owner.next_data())["messageAdded"]["message"]["body"] == "after"
            await hub_subscriptions(server, 1)
    finally:
        server.stop()


class _RawClient:
    """graphql-transport-ws over a socket this test reads only when it wants to (websockets'
    sans-I/O protocol: nothing reads ahead behind the test's back), with a tiny receive
    buffer so that the server soon finds it full."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: ClientProtocol) -> None:
        self.reader, self.writer, self.protocol = reader, writer, protocol
        self.messages: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, token: str) -> _RawClient:
        address = urlsplit(url)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((address.hostname, address.port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        protocol = ClientProtocol(parse_uri(url), subprotocols=[Subprotocol("graphql-transport-ws")])
        protocol.send_request(protocol.connect())
        client = cls(reader, writer, protocol)
        await client._flush()
        while protocol.state is not State.OPEN:
            data = await asyncio.wait_for(reader.read(65536), 10)
            assert data and protocol.handshake_exc is None, protocol.handshake_exc
            protocol.receive_data(data)
        protocol.events_received()  # the handshake's response
        await client.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        assert (await client.receive())["type"] == "connection_ack"
        return client

    async def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            self.writer.write(data)
        await self.writer.drain()

    async def send(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(message).encode())
        await self._flush()

    async def receive(self) -> dict[str, Any]:
        while not self.messages:
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            assert data, "the server closed the socket"
            self.protocol.receive_data(data)
            self.messages += [
                json.loads(e.data)
                for e in self.protocol.events_received()
                if isinstance(e, Frame) and e.opcode is Opcode.TEXT
            ]
            await self._flush()  # pongs
        return self.messages.pop(0)

    def close(self) -> None:
        self.writer.close()


async def test_a_socket_that_stops_reading_is_dropped_without_holding_up_the_others(
    tenant: Tenant, tmp_path: Path
) -> None:
    # Few frames may wait for a socket here, so that a small backlog overflows quickly.
    server = start_server(tmp_path, env={"SUBSCRIBER_QUEUE_SIZE": "4"})
    try:
        conversation_id = await _conversation(server, tenant, "direct-3")
        async with GraphQLWs.open(server.ws_url, tenant.owner_token) as fast_ws:
            fast = await fast_ws.subscribe(MESSAGE_ADDED, {"id": conversation_id})
            slow = await _RawClient.open(server.ws_url, tenant.owner_token)
            try:
                await slow.send(
                    {
                        "id": "slow",
                        "type": "subscribe",
                        "payload": {"query": MESSAGE_ADDED, "variables": {"id": conversation_id}},
                    }
                )
                await hub_subscriptions(server, 2)

                body = "x" * 16_000
                sent = 0
                while await _metric(server, "parley_hub_dropped_subscribers_total") == 0:
                    # Dropped once the kernel's buffers (up to 4 MB of send buffer here) and the
                    # small backlog are full: about 300 frames, more on a busy machine.
                    assert sent < 1_000, "the socket that stopped reading was never dropped"
                    await _send(server, tenant.owner_token, conversation_id, f"{sent} {body}")
                    # The reading socket is not held up: it has each message before the next is sent.
                    assert (await fast.next_data())["messageAdded"]["message"]["body"] == f"{sent} {body}"
                    sent += 1
                await hub_subscriptions(server, 1)
                await _send(server, tenant.owner_token, conversation_id, "still here")
                assert (await fast.next_data())["messageAdded"]["message"]["body"] == "still here"

                # Reading again, the slow client finds the frames that fitted, in order,
                # then the reason it was dropped, then the end of its operation.
                received = []
                while True:
                    message = await slow.receive()
                    if message["type"] != "next" or message["payload"].get("errors"):
                        break
                    received.append(int(message["payload"]["data"]["messageAdded"]["message"]["body"].split()[0]))
                assert received == list(range(len(received))) and len(received) < sent
                assert message["type"] == "next" and [
                    e["extensions"]["code"] for e in message["payload"]["errors"]
                ] == ["CONFLICT"]
                assert await slow.receive() == {"id": "slow", "type": "complete"}
            finally:
                slow.close()
    finally:
        server.stop()
