"""Conversations through the GraphQL API: who may start one where, messages and paging,
status and snooze, assignment and views, unread counts, blocking, VIP order, filters,
ratings, topics, card masking."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from strawberry import relay

from models.conversations import Conversation, Message
from tests.conftest import Api, Tenant, pk

ERRORS = "userErrors { field code message }"
CONVERSATION = """id status snoozedUntil unreadCount contactUnreadCount vip rating subject websiteUrl ip
  contact { id name } assignee { id name } team { id name } lastMessage { body senderKind }"""
START = (
    f"mutation($i: StartConversationInput!) {{ startConversation(input: $i) {{ "
    f"conversation {{ {CONVERSATION} }} message {{ id body senderKind direction deliveryState }} {ERRORS} }} }}"
)
SEND = (
    f"mutation($i: SendMessageInput!) {{ sendMessage(input: $i) {{ "
    f"message {{ id body senderKind direction deliveryState senderName }} {ERRORS} }} }}"
)
STATUS = (
    f"mutation($i: SetConversationStatusInput!) {{ setConversationStatus(input: $i) {{ "
    f"conversation {{ {CONVERSATION} }} {ERRORS} }} }}"
)
ASSIGN = (
    f"mutation($i: AssignConversationInput!) {{ assignConversation(input: $i) {{ "
    f"conversation {{ {CONVERSATION} }} {ERRORS} }} }}"
)
READ = (
    f"mutation($i: ConversationIdInput!) {{ markConversationRead(input: $i) {{ "
    f"conversation {{ {CONVERSATION} }} {ERRORS} }} }}"
)
RATE = (
    f"mutation($i: RateConversationInput!) {{ rateConversation(input: $i) {{ conversation {{ rating }} {ERRORS} }} }}"
)
LIST = f"""query($view: InboxView, $filter: ConversationFilter, $first: Int) {{
  conversations(view: $view, filter: $filter, first: $first) {{
  totalCount edges {{ node {{ {CONVERSATION} }} }} }} }}"""
SESSION = (
    "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { "
    "token contact { id } userErrors { field code message } } }"
)
UNREAD = "{ unreadCount }"


async def ok(api: Api, doc: str, variables: dict[str, Any], token: str, field: str) -> dict[str, Any]:
    payload = (await api(doc, variables, token=token))[field]
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload  # type: ignore[no-any-return]


async def user_errors(api: Api, doc: str, variables: dict[str, Any], token: str, field: str) -> list[dict[str, Any]]:
    payload = (await api(doc, variables, token=token))[field]
    assert payload["userErrors"], payload
    return payload["userErrors"]  # type: ignore[no-any-return]


async def session(tenant: Tenant, external_id: str, **extra: Any) -> tuple[str, str]:
    """A widget session: (token, contact id)."""
    data = await ok(
        tenant.api,
        SESSION,
        {"i": {"channelKey": tenant.channel.public_key, "externalId": external_id, **extra}},
        "",
        "startContactSession",
    )
    return data["token"], data["contact"]["id"]


async def start(tenant: Tenant, token: str, body: str = "Hello, I need help", **extra: Any) -> dict[str, Any]:
    return await ok(tenant.api, START, {"i": {"body": body, **extra}}, token, "startConversation")


async def send(api: Api, token: str, conversation_id: str, body: str) -> dict[str, Any]:
    return (await ok(api, SEND, {"i": {"conversationId": conversation_id, "body": body}}, token, "sendMessage"))[
        "message"
    ]


async def get(api: Api, token: str, conversation_id: str) -> dict[str, Any]:
    doc = f"query($id: ID!) {{ conversation(id: $id) {{ {CONVERSATION} }} }}"
    return (await api(doc, {"id": conversation_id}, token=token))["conversation"]  # type: ignore[no-any-return]


async def channel(tenant: Tenant, kind: str, **settings: Any) -> dict[str, Any]:
    doc = (
        f"mutation($i: CreateChannelInput!) {{ createChannel(input: $i) {{ "
        f"channel {{ id kind name secret publicKey }} {ERRORS} }} }}"
    )
    data = await ok(
        tenant.api,
        doc,
        {"i": {"kind": kind, "name": f"{kind} channel", **settings}},
        tenant.owner_token,
        "createChannel",
    )
    return data["channel"]  # type: ignore[no-any-return]


# -- starting ------------------------------------------------------------------------------------


async def test_a_contact_starts_a_conversation_and_an_agent_replies(tenant: Tenant) -> None:
    token, contact_id = await session(tenant, "ada")
    started = await start(tenant, token, websiteUrl="https://shop.example.com/checkout")
    conversation = started["conversation"]
    assert conversation["status"] == "OPEN"
    assert conversation["contact"]["id"] == contact_id
    assert conversation["websiteUrl"] == "https://shop.example.com/checkout"
    assert conversation["ip"] == "203.0.113.7"  # the client address the request came from
    assert conversation["assignee"] is None  # never shown to a contact anyway
    assert started["message"]["senderKind"] == "CONTACT" and started["message"]["direction"] == "INBOUND"

    inbox = (await tenant.api(LIST, {}, token=tenant.owner_token))["conversations"]
    assert [e["node"]["id"] for e in inbox["edges"]] == [conversation["id"]]
    assert inbox["edges"][0]["node"]["unreadCount"] == 1
    assert inbox["edges"][0]["node"]["lastMessage"] == {"body": "Hello, I need help", "senderKind": "CONTACT"}

    reply = await send(tenant.api, tenant.owner_token, conversation["id"], "Happy to help!")
    assert reply["senderKind"] == "AGENT" and reply["direction"] == "OUTBOUND"
    assert reply["senderName"] == "Olive Owner"
    assert reply["deliveryState"] == "RECEIVED"  # widget: delivered by subscription
    mine = await tenant.api(
        "{ myConversations { edges { node { contactUnreadCount lastMessage { body } } } } }", token=token
    )
    assert mine["myConversations"]["edges"][0]["node"] == {
        "contactUnreadCount": 1,
        "lastMessage": {"body": "Happy to help!"},
    }
    await ok(tenant.api, READ, {"i": {"id": conversation["id"]}}, token, "markConversationRead")
    assert (await get(tenant.api, token, conversation["id"]))["contactUnreadCount"] == 0
    assert await Message.filter(id=pk(reply["id"])).values_list("delivery_state", flat=True) == ["read"]


async def test_a_contact_cannot_reach_another_contacts_conversation(tenant: Tenant) -> None:
    ada, _ = await session(tenant, "ada")
    bob, _ = await session(tenant, "bob")
    conversation = (await start(tenant, ada))["conversation"]
    assert await get(tenant.api, bob, conversation["id"]) is None
    errors = await user_errors(
        tenant.api, SEND, {"i": {"conversationId": conversation["id"], "body": "hi"}}, bob, "sendMessage"
    )
    assert errors[0]["code"] == "NOT_FOUND"
    errors = await tenant.api.errors(LIST, {}, token=bob)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_agents_start_conversations_by_email_and_never_by_sms(tenant: Tenant) -> None:
    email = await channel(tenant, "EMAIL", defaultSender="support@acme.example")
    sms = await channel(tenant, "SMS", defaultSender="+14155550100")
    with_address = await tenant.contact(name="Ada", email="ada@example.com")
    without = await tenant.contact(name="Bob")

    started = await start(
        tenant, tenant.owner_token, contactId=with_address["id"], channelId=email["id"], subject="Your order"
    )
    assert started["conversation"]["subject"] == "Your order"
    assert started["message"]["deliveryState"] == "PENDING"  # the worker sends it over SMTP

    errors = await user_errors(
        tenant.api,
        START,
        {"i": {"body": "hi", "contactId": with_address["id"], "channelId": sms["id"]}},
        tenant.owner_token,
        "startConversation",
    )
    assert errors == [
        {
            "field": ["channelId"],
            "code": "NOT_ALLOWED",
            "message": "A business cannot open an SMS conversation: the contact must text first.",
        }
    ]
    errors = await user_errors(
        tenant.api,
        START,
        {"i": {"body": "hi", "contactId": without["id"], "channelId": email["id"]}},
        tenant.owner_token,
        "startConversation",
    )
    assert errors[0]["field"] == ["contactId"] and errors[0]["code"] == "REQUIRED"
    errors = await user_errors(tenant.api, START, {"i": {"body": "   "}}, tenant.owner_token, "startConversation")
    assert errors[0]["field"] == ["body"] and errors[0]["code"] == "REQUIRED"


async def test_sms_replies_need_the_contacts_consent(tenant: Tenant) -> None:
    from models.contacts import Contact, SmsConsent

    sms = await channel(tenant, "SMS", defaultSender="+14155550100")
    contact = await tenant.contact(name="Sam", phone="+14155550123")
    # The contact texted first (the webhook path creates this; here directly).
    row = await Conversation.create(
        workspace_id=tenant.workspace.id,
        contact_id=pk(contact["id"]),
        channel_id=pk(sms["id"]),
        last_message_at=datetime.now(UTC),
    )
    gid = str(relay.GlobalID("Conversation", str(row.id)))
    errors = await user_errors(
        tenant.api, SEND, {"i": {"conversationId": gid, "body": "Hi Sam"}}, tenant.owner_token, "sendMessage"
    )
    assert errors[0]["code"] == "CONSENT_REQUIRED"
    assert await Message.filter(conversation_id=row.id).count() == 0  # nothing stored

    await Contact.filter(id=pk(contact["id"])).update(sms_consent=SmsConsent.SUBSCRIBED)
    message = await send(tenant.api, tenant.owner_token, gid, "Hi Sam")
    assert message["deliveryState"] == "PENDING"


# -- messages ------------------------------------------------------------------------------------


async def test_messages_are_the_last_fifty_paging_backwards(tenant: Tenant) -> None:
    token, _ = await session(tenant, "chatty")
    conversation_id = (await start(tenant, token, body="message 0"))["conversation"]["id"]
    for i in range(1, 60):
        await send(tenant.api, token, conversation_id, f"message {i}")
    doc = """query($id: ID!, $before: String, $after: String) { conversation(id: $id) {
      messages(before: $before, after: $after) { edges { cursor node { body } }
      pageInfo { hasPreviousPage hasNextPage startCursor endCursor } } } }"""
    page = (await tenant.api(doc, {"id": conversation_id}, token=tenant.owner_token))["conversation"]["messages"]
    assert [e["node"]["body"] for e in page["edges"]] == [f"message {i}" for i in range(10, 60)]
    assert page["pageInfo"]["hasPreviousPage"] is True
    earlier = (
        await tenant.api(
            doc, {"id": conversation_id, "before": page["pageInfo"]["startCursor"]}, token=tenant.owner_token
        )
    )["conversation"]["messages"]
    assert [e["node"]["body"] for e in earlier["edges"]] == [f"message {i}" for i in range(10)]
    assert earlier["pageInfo"]["hasPreviousPage"] is False
    # A client that reconnects catches up after the last cursor it saw.
    seen = page["edges"][-3]["cursor"]
    caught_up = (await tenant.api(doc, {"id": conversation_id, "after": seen}, token=tenant.owner_token))[
        "conversation"
    ]["messages"]
    assert [e["node"]["body"] for e in caught_up["edges"]] == ["message 58", "message 59"]


async def test_card_numbers_never_reach_the_database_or_the_logs(
    tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token, _ = await session(tenant, "payer")
    started = await start(tenant, token, body="my card is 4111 1111 1111 1111, exp 12/29")
    reply = await send(
        tenant.api, tenant.owner_token, started["conversation"]["id"], "Please never send 5555-5555-5555-4444 here"
    )
    assert "4111 1111 1111 1111" not in started["message"]["body"] and started["message"]["body"].endswith(
        "1111, exp 12/29"
    )
    assert "5555-5555-5555-4444" not in reply["body"]
    stored = await Message.filter(conversation_id=pk(started["conversation"]["id"])).values_list("body", flat=True)
    for body in stored:
        digits = "".join(ch for ch in body if ch.isdigit())
        assert "4111111111111111" not in digits and "5555555555554444" not in digits
    logged = "".join(ch for ch in caplog.text if ch.isdigit())
    assert "4111111111111111" not in logged and "5555555555554444" not in logged


# -- status and snooze ---------------------------------------------------------------------------


async def test_only_the_assignee_or_an_admin_resolves(tenant: Tenant) -> None:
    token, _ = await session(tenant, "ada")
    conversation_id = (await start(tenant, token))["conversation"]["id"]
    alice, alice_token = await tenant.agent()
    bob, bob_token = await tenant.agent()
    alice_id = str(relay.GlobalID("Agent", str(alice.id)))
    await ok(
        tenant.api, ASSIGN, {"i": {"id": conversation_id, "assigneeId": alice_id}}, bob_token, "assignConversation"
    )

    errors = await user_errors(
        tenant.api, STATUS, {"i": {"id": conversation_id, "status": "RESOLVED"}}, bob_token, "setConversationStatus"
    )
    assert errors == [
        {
            "field": ["status"],
            "code": "NOT_ALLOWED",
            "message": "Only the assignee or an owner or admin may resolve this conversation.",
        }
    ]
    assert (await get(tenant.api, bob_token, conversation_id))["status"] == "OPEN"
    resolved = await ok(
        tenant.api, STATUS, {"i": {"id": conversation_id, "status": "RESOLVED"}}, alice_token, "setConversationStatus"
    )
    assert resolved["conversation"]["status"] == "RESOLVED"
    await ok(tenant.api, STATUS, {"i": {"id": conversation_id, "status": "OPEN"}}, bob_token, "setConversationStatus")
    await ok(
        tenant.api,
        STATUS,
        {"i": {"id": conversation_id, "status": "RESOLVED"}},
        tenant.owner_token,
        "setConversationStatus",
    )
    # Contacts change no status.
    errors = await tenant.api.errors(STATUS, {"i": {"id": conversation_id, "status": "OPEN"}}, token=token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_an_inbound_message_reopens_a_resolved_or_snoozed_conversation(tenant: Tenant) -> None:
    token, _ = await session(tenant, "ada")
    conversation_id = (await start(tenant, token))["conversation"]["id"]
    await ok(
        tenant.api,
        STATUS,
        {"i": {"id": conversation_id, "status": "RESOLVED"}},
        tenant.owner_token,
        "setConversationStatus",
    )
    await send(tenant.api, token, conversation_id, "Actually, one more thing")
    assert (await get(tenant.api, tenant.owner_token, conversation_id))["status"] == "OPEN"

    until = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    snoozed = await ok(
        tenant.api,
        STATUS,
        {"i": {"id": conversation_id, "status": "SNOOZED", "snoozedUntil": until}},
        tenant.owner_token,
        "setConversationStatus",
    )
    assert snoozed["conversation"]["status"] == "SNOOZED" and snoozed["conversation"]["snoozedUntil"] is not None
    await send(tenant.api, token, conversation_id, "Hello again")
    reopened = await get(tenant.api, tenant.owner_token, conversation_id)
    assert reopened["status"] == "OPEN" and reopened["snoozedUntil"] is None
    # An agent's own reply reopens nothing.
    await ok(
        tenant.api,
        STATUS,
        {"i": {"id": conversation_id, "status": "RESOLVED"}},
        tenant.owner_token,
        "setConversationStatus",
    )
    await send(tenant.api, tenant.owner_token, conversation_id, "Closing note")
    assert (await get(tenant.api, tenant.owner_token, conversation_id))["status"] == "RESOLVED"


async def test_a_snoozed_conversation_wakes_when_the_clock_reaches_its_time(tenant: Tenant) -> None:
    from core.clock import frozen
    from jobs.conversations import wake_snoozed

    token, _ = await session(tenant, "dozy")
    conversation_id = (await start(tenant, token))["conversation"]["id"]
    until = datetime.now(UTC) + timedelta(hours=1)
    await ok(
        tenant.api,
        STATUS,
        {"i": {"id": conversation_id, "status": "SNOOZED", "snoozedUntil": until.isoformat()}},
        tenant.owner_token,
        "setConversationStatus",
    )
    with frozen(until - timedelta(seconds=1)):
        assert await wake_snoozed({}) == 0
    assert (await get(tenant.api, tenant.owner_token, conversation_id))["status"] == "SNOOZED"
    with frozen(until + timedelta(seconds=1)):
        await wake_snoozed({})
    assert (await get(tenant.api, tenant.owner_token, conversation_id))["status"] == "OPEN"


async def test_snooze_presets_are_computed_in_the_agents_time_zone(tenant: Tenant) -> None:
    from domain.schedule import SnoozePreset, snooze_until

    token, _ = await session(tenant, "ada")
    conversation_id = (await start(tenant, token))["conversation"]["id"]
    agent, agent_token = await tenant.agent(time_zone="Asia/Tokyo")
    before = datetime.now(UTC)
    snoozed = await ok(
        tenant.api,
        STATUS,
        {"i": {"id": conversation_id, "status": "SNOOZED", "snoozePreset": "TOMORROW"}},
        agent_token,
        "setConversationStatus",
    )
    until = datetime.fromisoformat(snoozed["conversation"]["snoozedUntil"])
    assert until in {
        snooze_until(SnoozePreset.TOMORROW, before, "Asia/Tokyo"),
        snooze_until(SnoozePreset.TOMORROW, datetime.now(UTC), "Asia/Tokyo"),
    }
    assert until.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo")).hour == 9

    bad = [
        ({"status": "SNOOZED"}, ["snoozedUntil"], "REQUIRED"),
        (
            {"status": "SNOOZED", "snoozedUntil": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
            ["snoozedUntil"],
            "INVALID",
        ),
        (
            {"status": "SNOOZED", "snoozedUntil": "2030-01-01T09:00:00", "snoozePreset": "NEXT_WEEK"},
            ["snoozedUntil"],
            "REQUIRED",
        ),
        ({"status": "OPEN", "snoozePreset": "NEXT_WEEK"}, ["snoozedUntil"], "INVALID"),
    ]
    for fields, field, code in bad:
        errors = await user_errors(
            tenant.api, STATUS, {"i": {"id": conversation_id, **fields}}, agent_token, "setConversationStatus"
        )
        assert (errors[0]["field"], errors[0]["code"]) == (field, code), fields


async def test_a_snoozed_conversation_wakes_at_its_time(tenant: Tenant) -> None:
    from jobs.conversations import wake_snoozed

    token, _ = await session(tenant, "sleepy")
    conversation_id = (await start(tenant, token))["conversation"]["id"]
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await ok(
        tenant.api,
        STATUS,
        {"i": {"id": conversation_id, "status": "SNOOZED", "snoozedUntil": soon}},
        tenant.owner_token,
        "setConversationStatus",
    )
    await wake_snoozed({})
    assert (await get(tenant.api, tenant.owner_token, conversation_id))["status"] == "SNOOZED"
    # Its time comes.
    await Conversation.filter(id=pk(conversation_id)).update(snoozed_until=datetime.now(UTC) - timedelta(seconds=1))
    await wake_snoozed({"hub": None, "redis": None})
    woken = await get(tenant.api, tenant.owner_token, conversation_id)
    assert woken["status"] == "OPEN" and woken["snoozedUntil"] is None
    # Idempotent: running again (a retried job, the cron after the deferred job) changes nothing.
    assert await wake_snoozed({}) == 0


# -- assignment, views, unread ---------------------------------------------------------------


async def test_assignment_and_the_views(tenant: Tenant, make_tenant: Any) -> None:
    from models.workspaces import Team

    me, my_token = await tenant.agent()
    team = await Team.create(workspace_id=tenant.workspace.id, name="Billing")
    await team.members.add(me)
    team_id = str(relay.GlobalID("Team", str(team.id)))
    me_id = str(relay.GlobalID("Agent", str(me.id)))
    ids = []
    for name in ("mine", "teams", "nobody's"):
        token, _ = await session(tenant, name)
        ids.append((await start(tenant, token, body=name))["conversation"]["id"])
    assigned = await ok(
        tenant.api, ASSIGN, {"i": {"id": ids[0], "assigneeId": me_id}}, tenant.owner_token, "assignConversation"
    )
    assert assigned["conversation"]["assignee"]["id"] == me_id
    await ok(tenant.api, ASSIGN, {"i": {"id": ids[1], "teamId": team_id}}, tenant.owner_token, "assignConversation")

    async def view(name: str) -> list[str]:
        data = await tenant.api(LIST, {"view": name}, token=my_token)
        return sorted(e["node"]["id"] for e in data["conversations"]["edges"])

    assert await view("MINE") == [ids[0]]
    assert await view("TEAM") == [ids[1]]
    assert await view("UNASSIGNED") == sorted(ids[1:])
    assert await view("ALL") == sorted(ids)

    # Omitted stays, null unassigns.
    both = await ok(
        tenant.api, ASSIGN, {"i": {"id": ids[0], "teamId": team_id}}, tenant.owner_token, "assignConversation"
    )
    assert both["conversation"]["assignee"]["id"] == me_id and both["conversation"]["team"]["id"] == team_id
    cleared = await ok(
        tenant.api, ASSIGN, {"i": {"id": ids[0], "assigneeId": None}}, tenant.owner_token, "assignConversation"
    )
    assert cleared["conversation"]["assignee"] is None and cleared["conversation"]["team"]["id"] == team_id

    other = await make_tenant("Other")
    stranger, _ = await other.agent()
    errors = await user_errors(
        tenant.api,
        ASSIGN,
        {"i": {"id": ids[0], "assigneeId": str(relay.GlobalID("Agent", str(stranger.id)))}},
        tenant.owner_token,
        "assignConversation",
    )
    assert errors == [{"field": ["assigneeId"], "code": "NOT_FOUND", "message": "No agent with this id."}]
    assert (await get(tenant.api, tenant.owner_token, ids[0]))["assignee"] is None  # nothing changed


async def test_the_unread_indicator_counts_contacts_not_messages(tenant: Tenant) -> None:
    assert (await tenant.api(UNREAD, token=tenant.owner_token))["unreadCount"] == 0
    ada, _ = await session(tenant, "ada")
    first = (await start(tenant, ada, body="one"))["conversation"]["id"]
    await send(tenant.api, ada, first, "two")
    second = (await start(tenant, ada, body="another topic"))["conversation"]["id"]
    assert (await get(tenant.api, tenant.owner_token, first))["unreadCount"] == 2
    assert (await tenant.api(UNREAD, token=tenant.owner_token))["unreadCount"] == 1
    bob, _ = await session(tenant, "bob")
    await start(tenant, bob)
    assert (await tenant.api(UNREAD, token=tenant.owner_token))["unreadCount"] == 2

    await ok(tenant.api, READ, {"i": {"id": first}}, tenant.owner_token, "markConversationRead")
    assert (await get(tenant.api, tenant.owner_token, first))["unreadCount"] == 0
    assert (await tenant.api(UNREAD, token=tenant.owner_token))["unreadCount"] == 2  # ada's second is still unread
    await ok(tenant.api, READ, {"i": {"id": second}}, tenant.owner_token, "markConversationRead")
    assert (await tenant.api(UNREAD, token=tenant.owner_token))["unreadCount"] == 1
    # An agent's reply is not unread for agents.
    await send(tenant.api, tenant.owner_token, first, "reply")
    assert (await get(tenant.api, tenant.owner_token, first))["unreadCount"] == 0


async def test_blocked_contacts_are_kept_but_notify_no_one(tenant: Tenant) -> None:
    token, contact_id = await session(tenant, "troll")
    conversation_id = (await start(tenant, token))["conversation"]["id"]
    block = f"mutation($i: ContactIdInput!) {{ blockContact(input: $i) {{ contact {{ blocked }} {ERRORS} }} }}"
    await ok(tenant.api, block, {"i": {"id": contact_id}}, tenant.owner_token, "blockContact")
    closed = await get(tenant.api, tenant.owner_token, conversation_id)
    assert closed["status"] == "RESOLVED"  # blocking closes the contact's conversations
    await ok(tenant.api, READ, {"i": {"id": conversation_id}}, tenant.owner_token, "markConversationRead")

    await send(tenant.api, token, conversation_id, "you can't ignore me")
    after = await get(tenant.api, tenant.owner_token, conversation_id)
    assert after["status"] == "RESOLVED" and after["unreadCount"] == 0
    assert after["lastMessage"]["body"] == "you can't ignore me"  # kept
    assert (await tenant.api(UNREAD, token=tenant.owner_token))["unreadCount"] == 0
    new = (await start(tenant, token, body="a new one"))["conversation"]
    assert new["status"] == "RESOLVED" and new["unreadCount"] == 0


# -- the queue: VIP first, filters --------------------------------------------------------------


async def test_vip_contacts_sort_first_and_filters_narrow_the_inbox(tenant: Tenant) -> None:
    update = f"mutation($i: UpdateContactInput!) {{ updateContact(input: $i) {{ contact {{ vip }} {ERRORS} }} }}"
    tag = f"mutation($i: TagContactInput!) {{ tagContact(input: $i) {{ contact {{ tags }} {ERRORS} }} }}"
    conversations: dict[str, str] = {}
    contacts: dict[str, str] = {}
    for name in ("vip", "tagged", "plain"):
        token, contact_id = await session(tenant, name)
        contacts[name] = contact_id
        conversations[name] = (await start(tenant, token, body=name, websiteUrl=f"https://example.com/{name}"))[
            "conversation"
        ]["id"]
        if name == "tagged":
            await ok(tenant.api, RATE, {"i": {"id": conversations[name], "rating": 4}}, token, "rateConversation")
    await ok(tenant.api, update, {"i": {"id": contacts["vip"], "vip": True}}, tenant.owner_token, "updateContact")
    await ok(
        tenant.api,
        tag,
        {"i": {"contactId": contacts["tagged"], "tags": ["Enterprise"]}},
        tenant.owner_token,
        "tagContact",
    )

    order = [e["node"]["id"] for e in (await tenant.api(LIST, {}, token=tenant.owner_token))["conversations"]["edges"]]
    assert order == [conversations["vip"], conversations["plain"], conversations["tagged"]]

    async def matching(filter_: dict[str, Any]) -> list[str]:
        data = await tenant.api(LIST, {"filter": filter_}, token=tenant.owner_token)
        return [e["node"]["id"] for e in data["conversations"]["edges"]]

    assert await matching({"vip": True}) == [conversations["vip"]]
    assert await matching({"tags": ["enterprise"]}) == [conversations["tagged"]]
    assert await matching({"rating": 4}) == [conversations["tagged"]]
    assert await matching({"websiteUrl": "/plain"}) == [conversations["plain"]]
    assert set(await matching({"ip": "203.0.113.7"})) == set(conversations.values())
    assert await matching({"ip": "198.51.100.1"}) == []
    assert await matching({"status": "RESOLVED"}) == []
    assert await matching({"unread": False}) == []
    assert len(await matching({"unread": True})) == 3
    assert len(await matching({"channelId": str(relay.GlobalID("Channel", str(tenant.channel.id)))})) == 3
    assert await matching({"contactId": contacts["plain"]}) == [conversations["plain"]]
    errors = await tenant.api.errors(LIST, {"filter": {"assigneeId": contacts["plain"]}}, token=tenant.owner_token)
    assert "assigneeId" in errors[0]["message"]


async def test_ratings_are_one_to_five_and_the_contacts_own(tenant: Tenant) -> None:
    token, _ = await session(tenant, "rater")
    conversation_id = (await start(tenant, token))["conversation"]["id"]
    errors = await user_errors(tenant.api, RATE, {"i": {"id": conversation_id, "rating": 6}}, token, "rateConversation")
    assert errors[0]["field"] == ["rating"] and errors[0]["code"] == "INVALID"
    assert (await ok(tenant.api, RATE, {"i": {"id": conversation_id, "rating": 5}}, token, "rateConversation"))[
        "conversation"
    ]["rating"] == 5
    errors = await tenant.api.errors(RATE, {"i": {"id": conversation_id, "rating": 1}}, token=tenant.owner_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_topics_and_the_ones_a_contact_has_not_engaged_with(tenant: Tenant) -> None:
    create = f"mutation($i: CreateTopicInput!) {{ createTopic(input: $i) {{ topic {{ id name }} {ERRORS} }} }}"
    billing = (await ok(tenant.api, create, {"i": {"name": "Billing"}}, tenant.owner_token, "createTopic"))["topic"]
    shipping = (await ok(tenant.api, create, {"i": {"name": "Shipping"}}, tenant.owner_token, "createTopic"))["topic"]
    errors = await user_errors(tenant.api, create, {"i": {"name": " Billing "}}, tenant.owner_token, "createTopic")
    assert errors[0]["code"] == "TAKEN"
    _, agent_token = await tenant.agent()
    errors = await tenant.api.errors(create, {"i": {"name": "Returns"}}, token=agent_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"

    token, contact_id = await session(tenant, "topical")
    await start(tenant, token, topicId=billing["id"])
    doc = "query($c: ID) { topics(notEngagedBy: $c) { edges { node { name } } } }"
    assert [e["node"]["name"] for e in (await tenant.api(doc, {"c": contact_id}, token=token))["topics"]["edges"]] == [
        "Shipping"
    ]
    assert len((await tenant.api(doc, {}, token=tenant.owner_token))["topics"]["edges"]) == 2
    assert shipping["name"] == "Shipping"


async def test_the_inbox_costs_the_same_number_of_queries_whatever_the_page_size(
    make_tenant: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Contact, channel, assignee, team, topic and last message are batched: no N+1."""
    from core.principal_cache import principal_cache
    from models.workspaces import Team

    tenant = await make_tenant("Busy")
    agent, _ = await tenant.agent()
    team = await Team.create(workspace_id=tenant.workspace.id, name="Support")
    create = f"mutation($i: CreateTopicInput!) {{ createTopic(input: $i) {{ topic {{ id }} {ERRORS} }} }}"
    topic = (await ok(tenant.api, create, {"i": {"name": "Orders"}}, tenant.owner_token, "createTopic"))["topic"]["id"]
    for n in range(30):
        token, _ = await session(tenant, f"visitor-{n}")
        conversation_id = (await start(tenant, token, body=f"question {n}", topicId=topic))["conversation"]["id"]
        await send(tenant.api, tenant.owner_token, conversation_id, f"answer {n}")
        assignment = {
            "id": conversation_id,
            "assigneeId": str(relay.GlobalID("Agent", str(agent.id))),
            "teamId": str(relay.GlobalID("Team", str(team.id))),
        }
        await ok(tenant.api, ASSIGN, {"i": assignment}, tenant.owner_token, "assignConversation")
    doc = """query($first: Int) { conversations(first: $first) { edges { node {
      id status contact { id name tags } channel { id name } assignee { id name } team { id name } topic { name }
      lastMessage { body senderName } } } } }"""

    async def queries_for(first: int) -> int:
        # Both counts include authentication: a principal cached by the first request may or
        # may not have expired by the second on a slow machine (it once did, on PostgreSQL).
        principal_cache.invalidate()
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
            data = await tenant.api(doc, {"first": first}, token=tenant.owner_token)
        edges = data["conversations"]["edges"]
        assert len(edges) == first and all(
            e["node"]["assignee"] and e["node"]["lastMessage"]["senderName"] for e in edges
        )
        return sum(1 for r in caplog.records if r.name == "tortoise.db_client")

    small, large = await queries_for(5), await queries_for(25)
    assert small == large, (small, large)
    # Auth (2), the page, then one batch per related table; agents load twice (assignees,
    # then the last messages' senders one level deeper).
    assert large <= 11


async def test_an_inbox_contact_reads_as_the_contact_itself_field_by_field(tenant: Tenant) -> None:
    """The inbox reads only the contact columns its selection asks for: every field of
    Contact, alone, all together, and through an alias and a fragment, reads in the inbox
    as `contact(id:)` answers it (a column the selection needs and the page left out would
    read as null here)."""
    from graphql import GraphQLNonNull, GraphQLObjectType

    from schema import schema

    definition = (
        "mutation($i: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $i) { userErrors { code } } }"
    )
    assert (
        await tenant.api(definition, {"i": {"key": "plan", "label": "Plan", "type": "TEXT"}}, token=tenant.owner_token)
    )["createAttributeDefinition"]["userErrors"] == []
    text = {f: f"{f}-value" for f in ("name", "externalId", "city", "os", "browser", "referrer")} | {
        "country": "PT",
        "locale": "pt-PT",
        "browserLanguage": "pt-BR",
    }
    contact = await tenant.contact(
        **text,
        email="ada@example.com",
        phone="+14155550100",
        timeZone="Europe/Paris",
        ip="203.0.113.9",
        vip=True,
        gdprConsent=True,
        smsConsent="SUBSCRIBED",
        tags=["gold"],
        attributes=[{"key": "plan", "value": "pro"}],
    )
    await Conversation.create(
        workspace_id=tenant.workspace.id, contact_id=pk(contact["id"]), channel_id=tenant.channel.id
    )
    await tenant.contact(name="Someone else")  # another contact, not in the inbox

    def selection(field: Any) -> str | None:
        if any(isinstance(arg.type, GraphQLNonNull) for arg in field.args.values()):
            return None
        inner = _unwrapped(field.type)
        if not isinstance(inner, GraphQLObjectType):
            return ""
        leaves = [
            n for n, f in inner.fields.items() if not f.args and not isinstance(_unwrapped(f.type), GraphQLObjectType)
        ]
        return "{ " + " ".join(leaves) + " }"

    contact_type = schema._schema.type_map["Contact"]
    fields = {name: sub for name, f in contact_type.fields.items() if (sub := selection(f)) is not None}
    assert {"email", "smsConsent", "lastSeenAt", "tags", "attributes", "notes"} <= fields.keys()
    selections = [f"{name} {sub}" for name, sub in fields.items()]
    selections += [" ".join(selections), "n: name ... on Contact { email vip }"]
    for chosen in selections:
        inbox = await tenant.api(
            f"{{ conversations(first: 5) {{ edges {{ node {{ contact {{ id {chosen} }} }} }} }} }}",
            token=tenant.owner_token,
        )
        direct = await tenant.api(
            f"query($id: ID!) {{ contact(id: $id) {{ id {chosen} }} }}", {"id": contact["id"]}, token=tenant.owner_token
        )
        [seen] = [e["node"]["contact"] for e in inbox["conversations"]["edges"]]
        assert seen == direct["contact"], chosen
    assert seen["n"] == "name-value" and seen["email"] == "ada@example.com" and seen["vip"] is True


def _unwrapped(field_type: Any) -> Any:
    from graphql import GraphQLList, GraphQLNonNull

    while isinstance(field_type, (GraphQLNonNull, GraphQLList)):
        field_type = field_type.of_type
    return field_type
