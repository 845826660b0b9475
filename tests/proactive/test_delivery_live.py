"""Proactive messages end to end through real uvicorn processes, with a contact subscribed
to `proactiveMessages` over graphql-transport-ws: page view → pushed → opened → answered →
a tagged, routed conversation the agents hear of; each frequency; the sending window;
has-errors and pause stopping the sends; a change on one process reaching another's
compiled messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.proactive import Visit
from tests.conftest import LiveServer, Tenant, gql, hub_subscriptions, start_server
from tests.proactive.helpers import (
    ACTION,
    ANSWER,
    ANSWER_ACTION,
    CREATE_ANSWER,
    CREATE_BOT,
    DISMISS,
    ERRORS,
    EVERYONE,
    GET,
    OPEN,
    REPORT,
    SESSION,
    SUBSCRIBE,
    UPDATE,
    channel_id,
    live_message,
)
from tests.realtime.wsclient import GraphQLWs

EVENTS = (
    "subscription { conversationEvents { kind conversationId conversation { id tags team { id } attributedSource } } }"
)


async def payload(
    server: LiveServer, query: str, variables: dict[str, Any], token: str, root: str, *, expect_errors: bool = False
) -> dict[str, Any]:
    found = (await gql(server, query, variables, token))[root]
    if not expect_errors:
        assert found["userErrors"] == [], found["userErrors"]
    return found  # type: ignore[no-any-return]


class Contact:
    """A widget visitor on a live server: its session, its socket, its pushes."""

    def __init__(self, server: LiveServer, token: str, contact_id: str, ws: GraphQLWs, sub: Any) -> None:
        self.server, self.token, self.id, self.ws, self.sub = server, token, contact_id, ws, sub

    async def view(self, url: str = "https://shop.example/", **extra: Any) -> dict[str, Any] | None:
        """Report a page view; the delivery, checked to have been pushed over the socket too."""
        done = await payload(self.server, REPORT, {"i": {"url": url, **extra}}, self.token, "reportPageView")
        delivery = done["delivery"]
        if delivery is not None:
            pushed = (await self.sub.next_data())["proactiveMessages"]
            assert pushed["delivery"] == delivery and pushed["cursor"]
        return delivery  # type: ignore[no-any-return]

    def nothing_pushed(self) -> None:
        assert self.sub.queue.empty(), self.sub.queue


@pytest.fixture
async def visitor(server: LiveServer, tenant: Tenant) -> AsyncIterator[Any]:
    """Make visitors, each subscribed to proactiveMessages. Each first reports a page view
    (before the test's messages are live), which starts the server's listener for changes."""
    opened: list[Any] = []
    sockets: dict[str, int] = {}
    servers: dict[str, LiveServer] = {}

    async def make(external_id: str = "visitor-1", on: LiveServer | None = None) -> Contact:
        target = on or server
        servers[target.url] = target
        session = await payload(
            target,
            SESSION,
            {"i": {"channelKey": tenant.channel.public_key, "externalId": external_id}},
            "",
            "startContactSession",
        )
        await payload(target, REPORT, {"i": {"url": "https://warm-up.example/"}}, session["token"], "reportPageView")
        await hub_subscriptions(target, 1 + sockets.get(target.url, 0))
        ws_cm = GraphQLWs.open(target.ws_url, session["token"])
        ws = await ws_cm.__aenter__()
        opened.append(ws_cm)
        sub = await ws.subscribe(SUBSCRIBE)
        sockets[target.url] = sockets.get(target.url, 0) + 1
        await hub_subscriptions(target, 1 + sockets[target.url])
        return Contact(target, session["token"], session["contact"]["id"], ws, sub)

    yield make
    for cm in opened:
        await cm.__aexit__(None, None, None)
    for target in servers.values():
        await hub_subscriptions(target, 1)


async def test_page_view_push_open_answer_and_the_agents_see_a_tagged_routed_conversation(
    server: LiveServer, tenant: Tenant, visitor: Any
) -> None:
    contact = await visitor()
    team = await payload(
        server,
        "mutation($i: CreateTeamInput!) { createTeam(input: $i) { team { id } userErrors { field code } } }",
        {"i": {"name": "Checkout squad"}},
        tenant.owner_token,
        "createTeam",
    )
    team_id = team["team"]["id"]
    message = await live_message(
        tenant,
        name="Checkout help",
        text="Need a hand with your order?",
        askEmail=True,
        followUpText="Thanks, an agent is on the way.",
        routeTeamId=team_id,
        tags=["Checkout", "proactive"],
        frequency="ONCE_PER_CONTACT",
        rules={
            "match": "ALL",
            "conditions": [
                {"field": "PAGE_URL", "operator": "MATCHES", "value": {"text": "https://shop.example/*/checkout*"}}
            ],
        },
    )
    mid = message["id"]
    async with GraphQLWs.open(server.ws_url, tenant.owner_token) as agent_ws:
        events = await agent_ws.subscribe(EVENTS)
        await hub_subscriptions(server, 3)

        delivery = await until_delivered(
            contact, "https://shop.example/fr/checkout?step=1", title="Checkout", device="MOBILE"
        )
        assert await contact.view("https://shop.example/fr/cart") is None
        assert delivery | {"id": None} == {
            "id": None,
            "messageId": mid,
            "text": "Need a hand with your order?",
            "responseType": "AGENT",
            "askName": False,
            "askEmail": True,
        }
        # Once per contact: never again, on any page.
        assert await contact.view("https://shop.example/de/checkout") is None

        opened = await payload(
            server, OPEN, {"i": {"deliveryId": delivery["id"]}}, contact.token, "openProactiveMessage"
        )
        assert opened["delivery"]["openedAt"] is not None
        await payload(
            server, OPEN, {"i": {"deliveryId": delivery["id"]}}, contact.token, "openProactiveMessage"
        )  # counted once

        refused = await payload(
            server,
            ANSWER,
            {"i": {"deliveryId": delivery["id"], "body": "Where is my parcel?"}},
            contact.token,
            "answerProactiveMessage",
            expect_errors=True,
        )
        assert [(e["field"], e["code"]) for e in refused["userErrors"]] == [(["email"], "REQUIRED")]
        answered = await payload(
            server,
            ANSWER,
            {"i": {"deliveryId": delivery["id"], "body": "Where is my parcel?", "email": "Sam@Example.com"}},
            contact.token,
            "answerProactiveMessage",
        )
        conversation = answered["conversation"]
        assert conversation["tags"] == []  # the team's tags: the agents see them (below), the contact does not
        assert (
            answered["delivery"]["repliedAt"] is not None
            and answered["delivery"]["conversationId"] == conversation["id"]
        )

        created = (await events.next_data())["conversationEvents"]
        assert created["kind"] == "CREATED" and created["conversationId"] == conversation["id"]
        assert created["conversation"]["tags"] == ["checkout", "proactive"]
        assert created["conversation"]["team"] == {"id": team_id}
        assert created["conversation"]["attributedSource"] == f"proactive:{_pk(mid)}"
        assigned = (await events.next_data())["conversationEvents"]
        assert assigned["kind"] == "ASSIGNED" and assigned["conversation"]["team"] == {"id": team_id}

    again = await payload(
        server,
        ANSWER,
        {"i": {"deliveryId": delivery["id"], "body": "Hello?", "email": "sam@example.com"}},
        contact.token,
        "answerProactiveMessage",
        expect_errors=True,
    )
    assert [e["code"] for e in again["userErrors"]] == ["CONFLICT"]
    thread = await gql(
        server,
        """query($id: ID!) { conversation(id: $id) { team { id } contact { email }
        messages { edges { node { senderKind body } } } } }""",
        {"id": conversation["id"]},
        tenant.owner_token,
    )
    assert [(e["node"]["senderKind"], e["node"]["body"]) for e in thread["conversation"]["messages"]["edges"]] == [
        ("SYSTEM", "Need a hand with your order?"),
        ("CONTACT", "Where is my parcel?"),
        ("SYSTEM", "Thanks, an agent is on the way."),
    ]
    assert thread["conversation"]["contact"] == {"email": "sam@example.com"}
    counters = (await gql(server, GET, {"id": mid}, tenant.owner_token))["proactiveMessage"]
    assert (counters["sent"], counters["opened"], counters["replied"]) == (1, 1, 1)
    by_tag = await gql(
        server,
        'query { conversations(filter: {conversationTags: ["CHECKOUT"]}) { edges { node { id } } } }',
        {},
        tenant.owner_token,
    )
    assert [e["node"]["id"] for e in by_tag["conversations"]["edges"]] == [conversation["id"]]
    contact.nothing_pushed()


async def test_a_bot_response_posts_the_bot_answer(server: LiveServer, tenant: Tenant, visitor: Any) -> None:
    contact = await visitor("bot-visitor")
    cid = await channel_id(tenant)
    bot = await payload(server, CREATE_BOT, {"i": {"name": "Helper"}}, tenant.owner_token, "createBot")
    answer = await payload(
        server,
        CREATE_ANSWER,
        {
            "i": {
                "botId": bot["bot"]["id"],
                "channelId": cid,
                "name": "Orders",
                "body": "Type your order number and I will look it up.",
            }
        },
        tenant.owner_token,
        "createBotAnswer",
    )
    aid = answer["botAnswer"]["id"]
    await payload(
        server,
        ANSWER_ACTION.format(name="publishBotAnswer", errors=ERRORS),
        {"i": {"id": aid}},
        tenant.owner_token,
        "publishBotAnswer",
    )
    await live_message(
        tenant, name="Bot", responseType="BOT", text="Questions about an order? 📦", botAnswerId=aid, tags=["bot"]
    )
    delivery = await until_delivered(contact, "https://shop.example/")
    assert delivery["responseType"] == "BOT"
    answered = await payload(
        server,
        ANSWER,
        {"i": {"deliveryId": delivery["id"], "body": "Order 1234"}},
        contact.token,
        "answerProactiveMessage",
    )
    thread = await gql(
        server,
        (
            "query($id: ID!) { conversation(id: $id) { "
            "tags team { id } messages { edges { node { senderKind body } } } } }"
        ),
        {"id": answered["conversation"]["id"]},
        tenant.owner_token,
    )
    assert [(e["node"]["senderKind"], e["node"]["body"]) for e in thread["conversation"]["messages"]["edges"]] == [
        ("BOT", "Questions about an order? 📦"),
        ("CONTACT", "Order 1234"),
        ("BOT", "Type your order number and I will look it up."),
    ]
    assert thread["conversation"]["tags"] == ["bot"] and thread["conversation"]["team"] is None


def _pk(gid: str) -> int:
    from strawberry.relay import GlobalID

    return int(GlobalID.from_id(gid).node_id)


async def new_visit(contact_gid: str) -> None:
    """Thirty-one minutes pass: the next page view starts a new visit."""
    earlier = datetime.now(UTC) - timedelta(minutes=31)
    await Visit.filter(contact_id=_pk(contact_gid)).update(last_seen_at=earlier)


@pytest.mark.parametrize(
    ("frequency", "expected"),
    [
        # Pushes for: page 1, page 1 again 20 s later, page 2 (dismissed after), page 3, new visit page 1.
        ("ONCE_PER_CONTACT", [True, False, False, False, False]),
        ("ONCE_PER_VISIT", [True, False, False, False, True]),
        ("EVERY_TIME", [True, False, True, True, True]),
    ],
)
async def test_each_frequency(
    server: LiveServer, tenant: Tenant, visitor: Any, frequency: str, expected: list[bool]
) -> None:
    contact = await visitor(f"freq-{frequency}")
    await live_message(tenant, frequency=frequency, rules=EVERYONE)
    got = [await until_delivered(contact, "https://shop.example/1") is not None]
    got.append(
        await contact.view("https://shop.example/1", timeOnPageSeconds=20) is not None
    )  # the same page view, later
    third = await contact.view("https://shop.example/2")
    got.append(third is not None)
    if third is not None:  # dismissed: it may come back as the frequency allows
        await payload(server, DISMISS, {"i": {"deliveryId": third["id"]}}, contact.token, "dismissProactiveMessage")
    got.append(await contact.view("https://shop.example/3") is not None)
    await new_visit(contact.id)
    report = await payload(server, REPORT, {"i": {"url": "https://shop.example/1"}}, contact.token, "reportPageView")
    assert report["visitNumber"] == 2
    got.append(report["delivery"] is not None)
    if report["delivery"] is not None:
        await contact.sub.next_data()
    assert got == expected
    contact.nothing_pushed()


async def test_the_sending_window_follows_the_channels_business_hours(
    server: LiveServer, tenant: Tenant, visitor: Any
) -> None:
    contact = await visitor("window-visitor")
    cid = await channel_id(tenant)
    today = datetime.now(UTC).strftime("%a").lower()[:3]
    other = next(d for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun") if d != today)
    channel_doc = (
        "mutation($i: UpdateChannelInput!) { updateChannel(input: $i) { channel { id } userErrors { field code } } }"
    )
    closed = {"timeZone": "UTC", "days": {other: [["00:00", "24:00"]]}}
    await payload(server, channel_doc, {"i": {"id": cid, "businessHours": closed}}, tenant.owner_token, "updateChannel")
    office = await live_message(
        tenant,
        name="Office hours",
        sendWindow="BUSINESS_HOURS",
        rules={
            "match": "ALL",
            "conditions": [{"field": "PAGE_URL", "operator": "CONTAINS", "value": {"text": "/office"}}],
        },
    )
    await live_message(
        tenant,
        name="Any time",
        sendWindow="ANY_TIME",
        rules={
            "match": "ALL",
            "conditions": [{"field": "PAGE_URL", "operator": "CONTAINS", "value": {"text": "/anytime"}}],
        },
    )
    await until_delivered(contact, "https://shop.example/anytime")  # both messages are compiled now
    assert await contact.view("https://shop.example/office") is None  # closed now
    everyday = {
        "timeZone": "UTC",
        "days": {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    }
    await payload(
        server, channel_doc, {"i": {"id": cid, "businessHours": everyday}}, tenant.owner_token, "updateChannel"
    )
    delivered = await until_delivered(contact, "https://shop.example/office")
    assert delivered["messageId"] == office["id"]


async def until_delivered(contact: Contact, url: str, **extra: Any) -> dict[str, Any]:
    """Page views until one is delivered: a change made through another request reaches the
    process's compiled messages through pub/sub, a moment after its commit."""
    for _ in range(200):
        found = await contact.view(url, **extra)
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing delivered on {url}")


async def test_paused_and_has_errors_messages_stop_sending_and_changes_reach_every_process(
    server: LiveServer, tenant: Tenant, visitor: Any, tmp_path: Path
) -> None:
    admin_server = start_server(tmp_path, name="admin-server")
    try:
        contact = await visitor("cache-visitor")
        cid = await channel_id(tenant)
        message = await live_message(
            tenant,
            rules={
                "match": "ALL",
                "conditions": [{"field": "PAGE_URL", "operator": "CONTAINS", "value": {"text": "/a"}}],
            },
        )
        mid = message["id"]
        await until_delivered(contact, "https://shop.example/a")  # compiled and cached on `server`
        assert await contact.view("https://shop.example/b") is None
        # Edited on the other process: the rule now wants /b, and `server` learns it.
        await payload(
            admin_server,
            UPDATE,
            {
                "i": {
                    "id": mid,
                    "rules": {
                        "match": "ALL",
                        "conditions": [{"field": "PAGE_URL", "operator": "CONTAINS", "value": {"text": "/b"}}],
                    },
                }
            },
            tenant.owner_token,
            "updateProactiveMessage",
        )
        await until_delivered(contact, "https://shop.example/b")

        await payload(
            admin_server,
            ACTION.format(name="pauseProactiveMessage", errors=ERRORS),
            {"i": {"id": mid}},
            tenant.owner_token,
            "pauseProactiveMessage",
        )
        assert await contact.view("https://shop.example/b") is None
        await payload(
            admin_server,
            ACTION.format(name="resumeProactiveMessage", errors=ERRORS),
            {"i": {"id": mid}},
            tenant.owner_token,
            "resumeProactiveMessage",
        )
        await until_delivered(contact, "https://shop.example/b")

        # The channel turned into an SMS channel: has errors, no more sends.
        doc = (
            "mutation($i: UpdateChannelInput!) { updateChannel(input: $i) { "
            "channel { id } userErrors { field code } } }"
        )
        await payload(admin_server, doc, {"i": {"id": cid, "kind": "SMS"}}, tenant.owner_token, "updateChannel")
        assert (await gql(server, GET, {"id": mid}, tenant.owner_token))["proactiveMessage"]["status"] == "HAS_ERRORS"
        await payload(admin_server, doc, {"i": {"id": cid, "kind": "WEB_WIDGET"}}, tenant.owner_token, "updateChannel")
        assert await contact.view("https://shop.example/b") is None  # still has errors until republished
        await payload(
            admin_server,
            ACTION.format(name="publishProactiveMessage", errors=ERRORS),
            {"i": {"id": mid}},
            tenant.owner_token,
            "publishProactiveMessage",
        )
        await until_delivered(contact, "https://shop.example/b")

        # A bot response whose bot answer is unpublished stops too.
        bot = await payload(admin_server, CREATE_BOT, {"i": {"name": "Helper"}}, tenant.owner_token, "createBot")
        answer = await payload(
            admin_server,
            CREATE_ANSWER,
            {"i": {"botId": bot["bot"]["id"], "channelId": cid, "name": "A", "body": "Hi"}},
            tenant.owner_token,
            "createBotAnswer",
        )
        aid = answer["botAnswer"]["id"]
        await payload(
            admin_server,
            ANSWER_ACTION.format(name="publishBotAnswer", errors=ERRORS),
            {"i": {"id": aid}},
            tenant.owner_token,
            "publishBotAnswer",
        )
        await payload(
            admin_server,
            ACTION.format(name="pauseProactiveMessage", errors=ERRORS),
            {"i": {"id": mid}},
            tenant.owner_token,
            "pauseProactiveMessage",
        )
        bot_message = await live_message(
            tenant,
            name="Bot",
            responseType="BOT",
            botAnswerId=aid,
            rules={
                "match": "ALL",
                "conditions": [{"field": "PAGE_URL", "operator": "CONTAINS", "value": {"text": "/bot"}}],
            },
        )
        await until_delivered(contact, "https://shop.example/bot")
        await payload(
            admin_server,
            ANSWER_ACTION.format(name="unpublishBotAnswer", errors=ERRORS),
            {"i": {"id": aid}},
            tenant.owner_token,
            "unpublishBotAnswer",
        )
        assert (await gql(server, GET, {"id": bot_message["id"]}, tenant.owner_token))["proactiveMessage"][
            "status"
        ] == "HAS_ERRORS"
        assert await contact.view("https://shop.example/bot") is None
        contact.nothing_pushed()
    finally:
        admin_server.stop()


async def test_hostile_reports_get_clear_errors(server: LiveServer, tenant: Tenant, visitor: Any) -> None:
    contact = await visitor("hostile")
    bad = await payload(
        server,
        REPORT,
        {"i": {"url": "javascript:alert(1)", "title": "t" * 600, "timeOnPageSeconds": -5, "event": "<script>"}},
        contact.token,
        "reportPageView",
        expect_errors=True,
    )
    assert [(e["field"], e["code"]) for e in bad["userErrors"]] == [
        (["url"], "INVALID"),
        (["title"], "TOO_LONG"),
        (["timeOnPageSeconds"], "INVALID"),
        (["event"], "INVALID"),
    ]
    # Agents do not report page views; a contact cannot open another contact's delivery.
    body = await gql(
        server,
        'mutation { reportPageView(input: {url: "https://x.example"}) { userErrors { code } } }',
        {},
        contact.token,
    )
    assert body["reportPageView"]["userErrors"] == []
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.post(
            "/graphql",
            json={"query": 'mutation { reportPageView(input: {url: "https://x.example"}) { userErrors { code } } }'},
            headers={"authorization": f"Bearer {tenant.owner_token}"},
        )
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["FORBIDDEN"]
