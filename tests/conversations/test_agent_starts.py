"""Agents start conversations on the widget, the SDK and messenger, not only by e-mail:
live over `myMessages` to a contact who is online (a real uvicorn and WebSocket client),
an e-mail copy (a real SMTP server) to one who is not, the messenger gateway (a real HTTP
server) for a messenger contact; never by SMS, never with a blocked contact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from strawberry import relay

from core import presence
from jobs.sending import deliver_message
from models.channels import ChannelKind
from models.conversations import DeliveryState, Message
from tests.conftest import SmtpSettings, Tenant, pk, start_server
from tests.conversations.test_inbound import (
    empty_queue,  # noqa: F401 - the autouse fixture, here too
    inbound,
    job_ctx,
    make_channel,
)
from tests.conversations.test_sending import MY_MESSAGES, SESSION, ok, until
from tests.loopback import HttpSink
from tests.realtime.wsclient import GraphQLWs

START = (
    "mutation($i: StartConversationInput!) { startConversation(input: $i) { "
    "conversation { id status contact { id } channel { kind } } message { id body senderKind deliveryState } "
    "userErrors { field code message } } }"
)


def gid(type_name: str, pk_: int) -> str:
    return str(relay.GlobalID(type_name, str(pk_)))


async def agent_start(tenant: Tenant, contact_id: str, channel_id: str, body: str, token: str = "") -> dict[str, Any]:
    data = await tenant.api(
        START,
        {"i": {"body": body, "contactId": contact_id, "channelId": channel_id}},
        token=token or tenant.owner_token,
    )
    return data["startConversation"]  # type: ignore[no-any-return]


async def test_an_agent_starts_a_widget_conversation_heard_live_or_by_email(
    tenant: Tenant, app: Any, tmp_path: Path, smtp_settings: SmtpSettings
) -> None:
    session = await ok(
        tenant.api,
        SESSION,
        {"i": {"channelKey": tenant.channel.public_key, "externalId": "ada-1", "email": "ada@example.com"}},
        "",
        "startContactSession",
    )
    token, contact_gid = session["token"], session["contact"]["id"]
    widget = gid("Channel", tenant.channel.id)
    redis = app.state.hub.redis

    async def online() -> bool:
        return pk(contact_gid) in await presence.online_ids(redis, tenant.workspace.id, "contact")

    server = start_server(tmp_path)
    try:
        async with GraphQLWs.open(server.ws_url, token) as ws:
            sub = await ws.subscribe(MY_MESSAGES)
            await until(online, what="the contact's presence")
            started = await agent_start(tenant, contact_gid, widget, "Your parcel left our warehouse")
            assert started["userErrors"] == []
            assert started["conversation"]["status"] == "OPEN"
            assert started["conversation"]["channel"]["kind"] == "WEB_WIDGET"
            assert started["message"]["senderKind"] == "AGENT"
            assert started["message"]["deliveryState"] == "RECEIVED"
            event = (await sub.next_data())["myMessages"]
            assert event["message"]["body"] == "Your parcel left our warehouse"
            live = pk(started["message"]["id"])
            assert await deliver_message(job_ctx(app), live) == "contact online"

        async def offline() -> bool:
            return not await online()

        await until(offline, what="the contact to leave")
        later = await agent_start(tenant, contact_gid, widget, "It arrives tomorrow")
        assert later["userErrors"] == []
        message_id = pk(later["message"]["id"])
        assert await deliver_message(job_ctx(app), message_id) == "sent"
        [mail] = await smtp_settings.sink.wait_for(1)
        assert mail.envelope_to == ["ada@example.com"] and "It arrives tomorrow" in mail.text
        assert (await Message.get(id=message_id)).delivery_state is DeliveryState.SENT
        assert (await Message.get(id=live)).delivery_state is DeliveryState.RECEIVED
    finally:
        server.stop()

    # The contact sees both conversations in its own list.
    mine = await tenant.api("{ myConversations { edges { node { id } } } }", token=token)
    assert {e["node"]["id"] for e in mine["myConversations"]["edges"]} == {
        started["conversation"]["id"],
        later["conversation"]["id"],
    }


async def test_an_agent_starts_a_messenger_conversation_through_the_gateway(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, http_sink: HttpSink
) -> None:
    channel = await make_channel(
        tenant, ChannelKind.MESSENGER, gateway_url=f"{http_sink.url}/messenger", default_sender="page-42"
    )
    first = await inbound(client, channel, {"from": "6504223512345678", "name": "Grace", "text": "Hello"})
    doc = "query($id: ID!) { conversation(id: $id) { contact { id } } }"
    found = await tenant.api(doc, {"id": first["conversationId"]}, token=tenant.owner_token)
    contact = found["conversation"]["contact"]["id"]
    started = await agent_start(tenant, contact, gid("Channel", channel.id), "Your order shipped")
    assert started["userErrors"] == [] and started["message"]["deliveryState"] == "PENDING"
    assert started["conversation"]["id"] != first["conversationId"]
    message_id = pk(started["message"]["id"])
    assert await deliver_message(job_ctx(app), message_id) == "sent"
    [request] = await http_sink.wait_for(1)
    assert request.json()["to"] == "6504223512345678" and request.json()["text"] == "Your order shipped"

    # A contact who never wrote on messenger has no id there.
    stranger = await tenant.contact(name="Bob", email="bob@example.com")
    refused = await agent_start(tenant, stranger["id"], gid("Channel", channel.id), "Hi")
    assert [(e["field"], e["code"]) for e in refused["userErrors"]] == [(["contactId"], "REQUIRED")]
    assert refused["conversation"] is None


async def test_an_agent_cannot_start_with_a_blocked_contact_nor_by_sms(tenant: Tenant) -> None:
    sms = await make_channel(tenant, ChannelKind.SMS)
    contact = await tenant.contact(name="Ada", email="ada@example.com", phone="+14155550123")
    refused = await agent_start(tenant, contact["id"], gid("Channel", sms.id), "Hi")
    assert [(e["field"], e["code"]) for e in refused["userErrors"]] == [(["channelId"], "NOT_ALLOWED")]

    block = "mutation($i: ContactIdInput!) { blockContact(input: $i) { userErrors { code } } }"
    blocked = await tenant.api(block, {"i": {"id": contact["id"]}}, token=tenant.owner_token)
    assert blocked["blockContact"]["userErrors"] == []
    refused = await agent_start(tenant, contact["id"], gid("Channel", tenant.channel.id), "Hi")
    assert [(e["field"], e["code"]) for e in refused["userErrors"]] == [(["contactId"], "NOT_ALLOWED")]
