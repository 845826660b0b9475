"""Shared fan-out (core/fanout.py): an event's selection is executed once per audience and
its frame serialized once, yet every subscriber still sees exactly what it may see — an
owner the channel's secret, an agent or an API key null — in the shape its own operation
asked for."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Tenant, gql, hub_subscriptions, start_server
from tests.realtime.wsclient import GraphQLWs

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

            token = (await gql(server, SESSION, {"i": {"channelKey": tenant.channel.public_key, "externalId": "fan-1"}}, ""))["startContactSession"]["token"]
            conversation_id = (await gql(server, START, {"i": {"body": "Hello"}}, token))["startConversation"]["conversation"]["id"]

            seen_by_owner = (await owner.next_data())["conversationEvents"]
            assert seen_by_owner["conversation"]["id"] == conversation_id
            assert seen_by_owner["conversation"]["channel"]["secret"] == tenant.channel.secret
            hidden = {**seen_by_owner, "conversation": {**seen_by_owner["conversation"], "channel": {**seen_by_owner["conversation"]["channel"], "secret": None}}}
            assert (await first.next_data())["conversationEvents"] == hidden
            assert (await second.next_data())["conversationEvents"] == hidden
            assert (await key.next_data())["conversationEvents"] == hidden
            assert (await first_status.next_data())["conversationEvents"] == {"kind": "CREATED", "conversation": {"status": "OPEN"}}
    finally:
        server.stop()
