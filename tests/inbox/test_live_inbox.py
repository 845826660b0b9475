"""The live inbox end to end, over a real uvicorn and real WebSockets: one `inboxEvents`
subscription shows everything the inbox shows and catches up after a reconnect; views
and workspaces see only their own; typing goes both ways, throttled and expiring; private
notes never reach the contact (socket or e-mail) and a mention e-mails an offline agent
through a real worker and a real SMTP server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.conversations import FeedKind, InboxEvent
from services import inbox
from tests.conftest import LiveServer, SmtpSettings, Tenant, gql, hub_subscriptions, start_server, start_worker
from tests.conftest import stop_process as stop_worker
from tests.realtime.wsclient import GraphQLWs, Operation

FEED = (
    "subscription($f: InboxEventFilter, $after: String) { inboxEvents(filter: $f, after: $after) { "
    "cursor kind conversationId status unreadCount "
    "message { body senderKind deliveryState } note { body mentions { email } } "
    "typing { senderKind active senderName expiresAt agent { email } } } }"
)
MY_MESSAGES = (
    "subscription($typing: Boolean) { myMessages(typing: $typing) { cursor message { body senderKind } "
    "typing { senderKind active senderName expiresAt agent { email } } } }"
)
SESSION = (
    "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token contact { id } "
    "userErrors { code } } }"
)
START = (
    "mutation($i: StartConversationInput!) { startConversation(input: $i) { conversation { id } userErrors { code } } }"
)
SEND = "mutation($i: SendMessageInput!) { sendMessage(input: $i) { message { id } userErrors { field code } } }"
READ = "mutation($i: ConversationIdInput!) { markConversationRead(input: $i) { userErrors { code } } }"
ASSIGN = "mutation($i: AssignConversationInput!) { assignConversation(input: $i) { userErrors { field code } } }"
STATUS = "mutation($i: SetConversationStatusInput!) { setConversationStatus(input: $i) { userErrors { code } } }"
NOTE = (
    "mutation($i: AddConversationNoteInput!) { addConversationNote(input: $i) { "
    "note { id body mentions { email } agent { email } } userErrors { field code message } } }"
)
TYPING = "mutation($i: SetTypingInput!) { setTyping(input: $i) { expiresAt userErrors { field code } } }"


async def session(server: LiveServer, tenant: Tenant, external_id: str, **extra: Any) -> str:
    data = await gql(
        server, SESSION, {"i": {"channelKey": tenant.channel.public_key, "externalId": external_id, **extra}}, ""
    )
    return data["startContactSession"]["token"]  # type: ignore[no-any-return]


async def start(server: LiveServer, token: str, body: str) -> str:
    data = await gql(server, START, {"i": {"body": body}}, token)
    assert data["startConversation"]["userErrors"] == []
    return data["startConversation"]["conversation"]["id"]  # type: ignore[no-any-return]


async def send(server: LiveServer, token: str, conversation_id: str, body: str) -> None:
    data = await gql(server, SEND, {"i": {"conversationId": conversation_id, "body": body}}, token)
    assert data["sendMessage"]["userErrors"] == []


async def note(server: LiveServer, token: str, conversation_id: str, body: str) -> dict[str, Any]:
    data = await gql(server, NOTE, {"i": {"conversationId": conversation_id, "body": body}}, token)
    assert data["addConversationNote"]["userErrors"] == []
    return data["addConversationNote"]["note"]  # type: ignore[no-any-return]


async def raw(server: LiveServer, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    """The whole response body, errors included."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        headers = {"authorization": f"Bearer {token}"}
        response = await http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    return response.json()  # type: ignore[no-any-return]


async def mails_to(smtp: SmtpSettings, address: str, containing: str, timeout: float = 30) -> list[Any]:
    """The mails sent to `address` with `containing` in their text, once there is one.
    (Jobs other tests queued with no worker running may send theirs here too.)"""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [m for m in smtp.sink.messages if address in m.envelope_to and containing in m.text]
        if found or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.1)


async def refusal(sub: Operation) -> list[dict[str, Any]]:
    """The errors a subscription was refused with (Strawberry sends a resolver's error as a
    `next` without data; a protocol `error` would do as well)."""
    message = await sub.receive()
    if message["type"] == "error":
        return message["payload"]  # type: ignore[no-any-return]
    assert message["type"] == "next" and message["payload"]["data"] is None, message
    return message["payload"]["errors"]  # type: ignore[no-any-return]


async def events(sub: Operation, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    return [(await sub.next_data(timeout))["inboxEvents"] for _ in range(count)]


async def nothing_more(sub: Operation) -> None:
    with pytest.raises(TimeoutError):
        await sub.receive(timeout=0.5)


# -- one feed ------------------------------------------------------------------------------


async def test_one_subscription_shows_the_whole_inbox_and_catches_up_after_a_reconnect(
    tenant: Tenant, server: LiveServer
) -> None:
    owner = tenant.owner_token
    contact = await session(server, tenant, "feed-1", name="Sam")
    async with GraphQLWs.open(server.ws_url, owner) as ws:
        feed = await ws.subscribe(FEED, {})
        await hub_subscriptions(server, 1)
        conversation = await start(server, contact, "Hello?")
        await send(server, owner, conversation, "Hi Sam")
        await gql(server, READ, {"i": {"id": conversation}}, owner)
        await gql(server, READ, {"i": {"id": conversation}}, contact)
        await gql(server, ASSIGN, {"i": {"id": conversation, "assigneeId": tenant_owner_gid(tenant)}}, owner)
        await note(server, owner, conversation, "VIP, be nice")
        seen = await events(feed, 7)
    assert [e["kind"] for e in seen] == [
        "CREATED",
        "MESSAGE",
        "MESSAGE",
        "READ",
        "CONTACT_READ",
        "ASSIGNED",
        "NOTE",
    ]
    assert {e["conversationId"] for e in seen} == {conversation}
    assert [e["unreadCount"] for e in seen] == [0, 1, 1, 0, 0, 0, 0]
    assert seen[1]["message"] == {"body": "Hello?", "senderKind": "CONTACT", "deliveryState": "RECEIVED"}
    assert seen[2]["message"]["senderKind"] == "AGENT" and seen[6]["note"]["body"] == "VIP, be nice"
    cursors = [int(e["cursor"]) for e in seen]
    assert cursors == sorted(cursors) and len(set(cursors)) == 7

    # While the owner is away: the contact writes, the owner resolves.
    await send(server, contact, conversation, "Thanks!")
    await gql(server, STATUS, {"i": {"id": conversation, "status": "RESOLVED"}}, owner)
    async with GraphQLWs.open(server.ws_url, owner) as ws:
        feed = await ws.subscribe(FEED, {"after": seen[-1]["cursor"]})
        missed = await events(feed, 2)
        assert [(e["kind"], e["status"]) for e in missed] == [("MESSAGE", "OPEN"), ("STATUS_CHANGED", "RESOLVED")]
        assert missed[0]["message"]["body"] == "Thanks!"
        await hub_subscriptions(server, 1)
        # Then live, with nothing replayed twice: the contact's message (the status at it:
        # resolved) reopens the conversation.
        await send(server, contact, conversation, "One more thing")
        live = await events(feed, 2)
        assert [(e["kind"], e["status"]) for e in live] == [("MESSAGE", "RESOLVED"), ("STATUS_CHANGED", "OPEN")]
        assert int(live[0]["cursor"]) > int(missed[-1]["cursor"])
        await nothing_more(feed)

        # A cursor that is not one is refused, by name.
        [error] = await refusal(await ws.subscribe(FEED, {"after": "1; DROP TABLE"}))
        assert error["extensions"]["code"] == "INVALID" and "`after`" in error["message"]


def tenant_owner_gid(tenant: Tenant) -> str:
    from core.scoping import encode_global_id

    return encode_global_id("Agent", tenant.owner.id)


async def test_catch_up_is_bounded(tenant: Tenant) -> None:
    """More events after a cursor than CATCH_UP_MAX: no replay (the client reloads)."""
    from models.channels import Channel
    from models.contacts import Contact
    from models.conversations import Conversation

    contact = await Contact.create(workspace_id=tenant.workspace.id, name="Bulk", last_seen_at=datetime.now(UTC))
    channel = await Channel.get(id=tenant.channel.id)
    conversation = await Conversation.create(workspace_id=tenant.workspace.id, contact=contact, channel=channel)
    await InboxEvent.bulk_create(
        [
            InboxEvent(workspace_id=tenant.workspace.id, conversation_id=conversation.id, kind=FeedKind.READ, data={})
            for _ in range(inbox.CATCH_UP_MAX + 1)
        ]
    )
    first = await InboxEvent.filter(workspace_id=tenant.workspace.id).order_by("id").first()
    assert first is not None
    assert await inbox.catch_up(tenant.workspace.id, first.id - 1) is None
    replayed = await inbox.catch_up(tenant.workspace.id, first.id)
    assert replayed is not None and len(replayed) == inbox.CATCH_UP_MAX


# -- who sees what --------------------------------------------------------------------------


async def test_views_teams_and_workspaces_see_only_theirs(tenant: Tenant, make_tenant: Any, server: LiveServer) -> None:
    """Billing's agent sees the billing conversation in its team view, Support's agent does
    not; in `mine`, only what is assigned to the agent; another workspace sees nothing. Each
    subscriber's next event is checked to be its own marker, so a leak arrives first."""
    from models.workspaces import Team

    billing_agent, billing_token = await tenant.agent()
    support_agent, support_token = await tenant.agent()
    billing = await Team.create(workspace_id=tenant.workspace.id, name="Billing")
    support = await Team.create(workspace_id=tenant.workspace.id, name="Support")
    await billing.members.add(billing_agent)
    await support.members.add(support_agent)
    other = await make_tenant("Other")

    owner = tenant.owner_token
    first = await start(server, await session(server, tenant, "v-1"), "Invoice wrong")
    second = await start(server, await session(server, tenant, "v-2"), "Login broken")
    from core.scoping import encode_global_id

    await gql(server, ASSIGN, {"i": {"id": first, "teamId": encode_global_id("Team", billing.id)}}, owner)
    await gql(server, ASSIGN, {"i": {"id": second, "teamId": encode_global_id("Team", support.id)}}, owner)
    async with (
        GraphQLWs.open(server.ws_url, billing_token) as billing_ws,
        GraphQLWs.open(server.ws_url, support_token) as support_ws,
        GraphQLWs.open(server.ws_url, other.owner_token) as other_ws,
    ):
        billing_team = await billing_ws.subscribe(FEED, {"f": {"view": "TEAM"}})
        support_team = await support_ws.subscribe(FEED, {"f": {"view": "TEAM"}})
        support_mine = await support_ws.subscribe(FEED, {"f": {"view": "MINE"}})
        other_all = await other_ws.subscribe(FEED, {"f": {"view": "ALL"}})
        other_by_channel = await other_ws.subscribe(
            FEED, {"f": {"channelId": encode_global_id("Channel", tenant.channel.id)}}
        )
        await hub_subscriptions(server, 5)

        await note(server, owner, first, "Refund it")
        assert (await billing_team.next_data())["inboxEvents"]["note"]["body"] == "Refund it"
        await note(server, owner, second, "Support marker")
        assert (await support_team.next_data())["inboxEvents"]["note"]["body"] == "Support marker"
        # Assigned to the support agent: it leaves nobody's team view, enters its `mine`.
        await gql(
            server, ASSIGN, {"i": {"id": second, "assigneeId": encode_global_id("Agent", support_agent.id)}}, owner
        )
        assert (await support_mine.next_data())["inboxEvents"]["kind"] == "ASSIGNED"
        assert (await support_team.next_data())["inboxEvents"]["kind"] == "ASSIGNED"
        # A mention reaches the billing agent in any view, even for a conversation outside it.
        await note(server, owner, second, f"@{billing_agent.email} can you look?")
        mention = (await billing_team.next_data())["inboxEvents"]
        assert mention["note"]["mentions"] == [{"email": billing_agent.email}]
        for sub in (support_team, support_mine):  # theirs anyway
            assert (await sub.next_data())["inboxEvents"]["note"]["body"] == mention["note"]["body"]

        other_conversation = await start(server, await session(server, other, "o-1"), "Other's marker")
        kinds = [(await other_all.next_data())["inboxEvents"]["kind"] for _ in range(2)]
        assert kinds == ["CREATED", "MESSAGE"]
        for sub in (billing_team, support_team, support_mine, other_by_channel):
            await nothing_more(sub)
        assert other_conversation


# -- typing ----------------------------------------------------------------------------------


async def test_typing_both_ways_throttled_expiring_and_stopped_by_sending(tenant: Tenant, server: LiveServer) -> None:
    owner = tenant.owner_token
    contact = await session(server, tenant, "typist", name="Tia")
    conversation = await start(server, contact, "Hi")
    async with (
        GraphQLWs.open(server.ws_url, owner) as agent_ws,
        GraphQLWs.open(server.ws_url, contact) as contact_ws,
    ):
        feed = await agent_ws.subscribe(FEED, {"f": {"kinds": ["TYPING", "TYPING_STOPPED", "MESSAGE"]}})
        with_typing = await contact_ws.subscribe(MY_MESSAGES, {"typing": True})
        without = await contact_ws.subscribe(MY_MESSAGES, {})
        await hub_subscriptions(server, 3)

        # The agent types: the contact sees it, with the agent's name and no agent object.
        before = datetime.now(UTC)
        typed = (await gql(server, TYPING, {"i": {"conversationId": conversation}}, owner))["setTyping"]
        assert typed["userErrors"] == []
        expires = datetime.fromisoformat(typed["expiresAt"])
        assert 5 <= (expires - before).total_seconds() <= 8
        notice = (await with_typing.next_data())["myMessages"]
        assert notice["cursor"] is None and notice["message"] is None
        assert notice["typing"] == {
            "senderKind": "AGENT",
            "active": True,
            "senderName": "Olive Owner",
            "expiresAt": typed["expiresAt"],
            "agent": None,
        }
        own = (await feed.next_data())["inboxEvents"]
        assert (own["kind"], own["cursor"], own["typing"]["agent"]) == ("TYPING", None, {"email": "owner@example.com"})
        # Throttled: a second notice within 3 s publishes nothing.
        again = (await gql(server, TYPING, {"i": {"conversationId": conversation}}, owner))["setTyping"]
        assert again == {"expiresAt": None, "userErrors": []}

        # Sending stops it, before the message; the subscriber without typing gets the message only.
        await send(server, owner, conversation, "How can I help?")
        stopped = (await with_typing.next_data())["myMessages"]["typing"]
        assert (stopped["active"], stopped["senderKind"]) == (False, "AGENT")
        assert (await with_typing.next_data())["myMessages"]["message"]["body"] == "How can I help?"
        assert (await without.next_data())["myMessages"]["message"]["body"] == "How can I help?"
        assert [(await feed.next_data())["inboxEvents"]["kind"] for _ in range(2)] == ["TYPING_STOPPED", "MESSAGE"]

        # The contact types: the agents' feed hears it; the contact hears nothing of its own.
        typed = (await gql(server, TYPING, {"i": {"conversationId": conversation}}, contact))["setTyping"]
        assert typed["expiresAt"] is not None
        heard = (await feed.next_data())["inboxEvents"]
        assert (heard["kind"], heard["typing"]["senderKind"], heard["typing"]["senderName"]) == (
            "TYPING",
            "CONTACT",
            None,
        )
        # Past the throttle, a new notice goes out with a later expiry.
        await asyncio.sleep(inbox.TYPING_THROTTLE_SECONDS + 0.2)
        renewed = (await gql(server, TYPING, {"i": {"conversationId": conversation}}, contact))["setTyping"]
        assert renewed["expiresAt"] > typed["expiresAt"]
        assert (await feed.next_data())["inboxEvents"]["typing"]["expiresAt"] == renewed["expiresAt"]
        await send(server, contact, conversation, "I cannot log in")
        assert [(await feed.next_data())["inboxEvents"]["kind"] for _ in range(2)] == ["TYPING_STOPPED", "MESSAGE"]
        assert (await with_typing.next_data())["myMessages"]["message"]["body"] == "I cannot log in"
        await nothing_more(with_typing)

    # Never stored.
    stored = await InboxEvent.filter(workspace_id=tenant.workspace.id).values_list("kind", flat=True)
    assert stored and not {FeedKind.TYPING, FeedKind.TYPING_STOPPED} & set(stored)


async def test_contacts_typing_is_rate_limited_and_bounded_to_their_own_conversations(
    tenant: Tenant, server: LiveServer
) -> None:
    from core.config import settings

    mine = await session(server, tenant, "rl-1")
    theirs = await session(server, tenant, "rl-2")
    conversation = await start(server, mine, "Hi")
    other = await start(server, theirs, "Hello")
    refused = (await gql(server, TYPING, {"i": {"conversationId": other}}, mine))["setTyping"]
    assert refused["userErrors"] == [{"field": ["conversationId"], "code": "NOT_FOUND"}]
    budget = int(settings.rate_limit_typing_per_contact.split("/")[0])  # 60/minute
    for _ in range(budget - 1):
        await gql(server, TYPING, {"i": {"conversationId": conversation}}, mine)
    body = await raw(server, TYPING, {"i": {"conversationId": conversation}}, mine)
    assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    # Agents are only throttled.
    for _ in range(3):
        await gql(server, TYPING, {"i": {"conversationId": conversation}}, tenant.owner_token)


# -- notes -----------------------------------------------------------------------------------


async def test_notes_never_reach_the_contact_and_a_mention_emails_an_offline_agent(
    tenant: Tenant, tmp_path: Path, smtp_settings: SmtpSettings
) -> None:
    server = start_server(tmp_path, env=smtp_settings.env)
    worker = start_worker(tmp_path, env=smtp_settings.env)
    try:
        away, _ = await tenant.agent()
        present, present_token = await tenant.agent()
        owner = tenant.owner_token
        contact = await session(server, tenant, "noted", name="Nia", email="nia@example.com")
        conversation = await start(server, contact, "My order is late")
        async with (
            GraphQLWs.open(server.ws_url, owner) as agent_ws,
            GraphQLWs.open(server.ws_url, present_token) as present_ws,
            GraphQLWs.open(server.ws_url, contact) as contact_ws,
        ):
            feed = await agent_ws.subscribe(FEED, {"f": {"kinds": ["NOTE", "MESSAGE", "DELIVERY"]}})
            present_feed = await present_ws.subscribe(FEED, {"f": {"view": "MINE"}})
            mine = await contact_ws.subscribe(MY_MESSAGES, {"typing": True})
            await hub_subscriptions(server, 3)

            body = f"Card 4111 1111 1111 1111 on file. @{away.email} @{present.email} @nobody@example.com"
            written = await note(server, owner, conversation, body)
            assert "4111 1111 1111 1111" not in written["body"] and written["body"].startswith("Card **** ")
            assert sorted(m["email"] for m in written["mentions"]) == sorted([away.email, present.email])
            # The online agent hears of its mention live, outside its view.
            assert (await present_feed.next_data())["inboxEvents"]["note"]["body"] == written["body"]
            heard = (await feed.next_data())["inboxEvents"]
            assert (heard["kind"], heard["note"]["body"]) == ("NOTE", written["body"])

            # The contact's socket gets the next message, never the note.
            await send(server, owner, conversation, "We are on it")
            assert (await mine.next_data())["myMessages"]["message"]["body"] == "We are on it"
            assert (await feed.next_data())["inboxEvents"]["kind"] == "MESSAGE"

            # The offline agent is e-mailed; the one online on the feed is not.
            [mail] = await mails_to(smtp_settings, away.email, "on file")
            assert "Olive Owner mentioned you" in mail.message["Subject"] and written["body"] in mail.text

            # Notes are listed for agents; a contact's session reads none.
            listed = await gql(
                server,
                "query($id: ID!) { conversation(id: $id) { notes { totalCount edges { node { body } } } } }",
                {"id": conversation},
                owner,
            )
            assert listed["conversation"]["notes"]["edges"] == [{"node": {"body": written["body"]}}]
            refused = await raw(
                server,
                "query($id: ID!) { conversation(id: $id) { id notes { totalCount } } }",
                {"id": conversation},
                contact,
            )
            assert refused["data"]["conversation"] is None or refused["data"]["conversation"]["notes"] is None
            assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
            # A contact cannot write one either.
            written_by_contact = await raw(server, NOTE, {"i": {"conversationId": conversation, "body": "x"}}, contact)
            assert written_by_contact["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        # The contact has left: the next reply is e-mailed to it, and the feed hears it was sent.
        async with GraphQLWs.open(server.ws_url, owner) as agent_ws:
            feed = await agent_ws.subscribe(FEED, {"f": {"kinds": ["DELIVERY"]}})
            await hub_subscriptions(server, 1)
            await send(server, owner, conversation, "Shipped today")
            delivered = (await feed.next_data(timeout=30))["inboxEvents"]
            assert delivered["message"] == {"body": "Shipped today", "senderKind": "AGENT", "deliveryState": "SENT"}
        [copy] = await mails_to(smtp_settings, "nia@example.com", "Shipped today")
        assert copy.message["Subject"] == "New reply from Acme"
        # Only the mentioned agent's e-mail holds the note.
        await asyncio.sleep(0.5)
        holding = [m.envelope_to for m in smtp_settings.sink.messages if "on file" in m.text]
        assert holding == [[away.email]]
    finally:
        stop_worker(worker)
        server.stop()
