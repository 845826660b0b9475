"""The real-time inbox end to end: an SDK contact on one server process and an agent on
another exchange messages over real WebSockets; the inbox hears creation, snooze and the
worker's wake-up; the unread indicator moves; card numbers reach no payload and no log."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from models.conversations import Message
from tests.conftest import Tenant, gql, hub_subscriptions, start_server, start_worker, stop_process
from tests.realtime.wsclient import GraphQLWs

CARD = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"
MY_MESSAGES = "subscription { myMessages { cursor message { body senderKind senderName conversationId } } }"
MESSAGE_ADDED = "subscription($id: ID!) { messageAdded(conversationId: $id) { cursor message { id body senderKind } } }"
EVENTS = "subscription { conversationEvents { cursor kind conversationId conversation { status snoozedUntil } } }"
UNREAD = "subscription { unreadCount }"
CATCH_UP = """query($id: ID!, $after: String) {
  conversation(id: $id) { messages(after: $after) { edges { cursor node { body } } } } }"""


def no_card(payload: Any) -> None:
    digits = "".join(ch for ch in json.dumps(payload) if ch.isdigit())
    assert CARD_DIGITS not in digits, payload


async def test_a_contact_and_an_agent_talk_in_real_time_across_processes(tenant: Tenant, tmp_path: Path) -> None:
    contact_server = start_server(tmp_path, name="contact-server")
    agent_server = start_server(tmp_path, name="agent-server")
    worker = start_worker(tmp_path)
    ws_id = tenant.workspace.id
    try:
        session = await gql(
            contact_server,
            "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token contact { id } } }",
            {"i": {"channelKey": tenant.channel.public_key, "externalId": "sdk-user-1", "name": "Sam"}},
            "",
        )
        contact_token = session["startContactSession"]["token"]

        async with (
            GraphQLWs.open(agent_server.ws_url, tenant.owner_token) as agent_ws,
            GraphQLWs.open(contact_server.ws_url, contact_token) as contact_ws,
        ):
            unread = await agent_ws.subscribe(UNREAD)
            assert (await unread.next_data())["unreadCount"] == 0
            events = await agent_ws.subscribe(EVENTS)
            mine = await contact_ws.subscribe(MY_MESSAGES)
            await hub_subscriptions(agent_server, 2)
            await hub_subscriptions(contact_server, 1)

            started = await gql(
                contact_server,
                "mutation($i: StartConversationInput!) { startConversation(input: $i) { "
                "conversation { id } userErrors { code } } }",
                {"i": {"body": "Hi, is anyone there?"}},
                contact_token,
            )
            conversation_id = started["startConversation"]["conversation"]["id"]
            created = (await events.next_data())["conversationEvents"]
            assert (created["kind"], created["conversationId"], created["conversation"]["status"]) == (
                "CREATED",
                conversation_id,
                "OPEN",
            )
            assert (await unread.next_data())["unreadCount"] == 1
            own = (await mine.next_data())["myMessages"]["message"]
            assert (own["body"], own["senderKind"]) == ("Hi, is anyone there?", "CONTACT")

            added = await agent_ws.subscribe(MESSAGE_ADDED, {"id": conversation_id})
            await hub_subscriptions(agent_server, 3)

            # The contact writes on its server; the agent hears it on the other.
            await gql(
                contact_server,
                "mutation($i: SendMessageInput!) { sendMessage(input: $i) { message { id } } }",
                {"i": {"conversationId": conversation_id, "body": f"My card is {CARD}, can you check?"}},
                contact_token,
            )
            heard = (await added.next_data())["messageAdded"]
            assert heard["message"]["senderKind"] == "CONTACT"
            assert heard["message"]["body"].endswith("1111, can you check?")
            no_card(heard)
            no_card((await mine.next_data())["myMessages"])  # the contact's own echo is masked too

            # The agent replies on its server; the contact hears it on the other.
            await gql(
                agent_server,
                "mutation($i: SendMessageInput!) { sendMessage(input: $i) { message { id } userErrors { code } } }",
                {"i": {"conversationId": conversation_id, "body": "Hello Sam, checking now."}},
                tenant.owner_token,
            )
            reply = (await mine.next_data())["myMessages"]
            assert reply["message"] == {
                "body": "Hello Sam, checking now.",
                "senderKind": "AGENT",
                "senderName": "Olive Owner",
                "conversationId": conversation_id,
            }
            # An event's cursor is its message's cursor in `messages`: a client that missed
            # the reply (a dropped socket) catches up after the last cursor it saw.
            for server, token in ((contact_server, contact_token), (agent_server, tenant.owner_token)):
                missed = await gql(server, CATCH_UP, {"id": conversation_id, "after": heard["cursor"]}, token)
                edges = missed["conversation"]["messages"]["edges"]
                assert [(e["node"]["body"], e["cursor"]) for e in edges] == [
                    (reply["message"]["body"], reply["cursor"])
                ]
            assert (await added.next_data())["messageAdded"]["message"]["senderKind"] == "AGENT"

            # Reading clears the indicator for everyone watching it.
            await gql(
                agent_server,
                "mutation($i: ConversationIdInput!) { "
                "markConversationRead(input: $i) { conversation { unreadCount } } }",
                {"i": {"id": conversation_id}},
                tenant.owner_token,
            )
            assert (await unread.next_data())["unreadCount"] == 0

            # Snoozed for two seconds: the worker wakes it and the inbox hears both changes.
            until = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
            await gql(
                agent_server,
                "mutation($i: SetConversationStatusInput!) { "
                "setConversationStatus(input: $i) { userErrors { code } } }",
                {"i": {"id": conversation_id, "status": "SNOOZED", "snoozedUntil": until}},
                tenant.owner_token,
            )
            snoozed = (await events.next_data())["conversationEvents"]
            assert (snoozed["kind"], snoozed["conversation"]["status"]) == ("STATUS_CHANGED", "SNOOZED")
            woken = (await events.next_data(timeout=30))["conversationEvents"]
            assert (woken["kind"], woken["conversationId"]) == ("STATUS_CHANGED", conversation_id)
            assert woken["conversation"] == {"status": "OPEN", "snoozedUntil": None}
            assert int(woken["cursor"]) > int(snoozed["cursor"])

            # Nothing the servers logged, stored or sent holds the raw card number.
            await asyncio.sleep(0.2)
        stored = await Message.filter(workspace_id=ws_id).values_list("body", flat=True)
        assert stored and all(CARD_DIGITS not in "".join(ch for ch in body if ch.isdigit()) for body in stored)
    finally:
        stop_process(worker)
        contact_server.stop()
        agent_server.stop()
    for log in (contact_server.log, agent_server.log, tmp_path / "worker.log"):
        text = log.read_text()
        assert CARD not in text and CARD_DIGITS not in "".join(ch for ch in text if ch.isdigit()), log
