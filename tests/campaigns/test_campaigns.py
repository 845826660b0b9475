"""Campaigns through the API, with the real job run in this process (real database and
Redis): audiences, skip reasons, SMS quiet hours at a chosen clock, cancel, stats,
attribution of replies, permissions and hostile input."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core import keys
from core.db import dialect
from jobs.segments import refresh_dirty_contacts, refresh_segment
from jobs.sending import deliver_message
from models.attribution import Receipt
from models.campaigns import Campaign, CampaignRecipient
from models.contacts import Contact
from models.conversations import Conversation, Message
from tests.campaigns.helpers import CANCEL, channel, contact, create, daytime_zone, errors_of, gid, read, run
from tests.conftest import Tenant, pk

SEGMENT = (
    """mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } userErrors { field code } } }"""
)


async def lyon_segment(tenant: Tenant) -> str:
    rules = {"match": "ALL", "conditions": [{"field": "city", "operator": "EQUALS", "value": {"text": "Lyon"}}]}
    payload = await tenant.api(
        SEGMENT, {"i": {"name": "Lyon", "visibility": "EVERYONE", "rules": rules}}, token=tenant.owner_token
    )
    segment_gid: str = payload["createSegment"]["segment"]["id"]
    await refresh_segment({}, pk(segment_gid))
    return segment_gid


async def messages_by_contact(campaign_id: int) -> dict[int, list[str]]:
    rows = await Message.filter(
        conversation__contact_id__in=await CampaignRecipient.filter(campaign_id=campaign_id).values_list(
            "contact_id", flat=True
        ),
    ).values_list("conversation__contact_id", "body")
    found: dict[int, list[str]] = {}
    for contact_id, body in rows:
        found.setdefault(contact_id, []).append(body)
    return found


async def test_a_segment_campaign_reaches_each_member_once_in_a_resolved_conversation(app: Any, tenant: Tenant) -> None:
    members = [await contact(tenant, name=f"Lyonnais {i}", city="Lyon") for i in range(5)]
    await contact(tenant, name="Parisien", city="Paris")
    segment = await lyon_segment(tenant)
    channel_gid = gid("Channel", tenant.channel.id)
    campaign = await create(tenant, name="Winter sale", channelId=channel_gid, body="Hello from us", segmentId=segment)
    assert campaign["status"] == "SCHEDULED" and campaign["job"]["status"] == "QUEUED"

    hub = app.state.hub
    async with hub.subscribe(keys.contact_messages_channel(tenant.workspace.id, members[0].id)) as events:
        result = await run(app, campaign["id"], batch_size=2)
        event = await asyncio.wait_for(events.__anext__(), 5)
    assert result == {"recipients": 5, "sent": 5, "skipped": 0}
    assert event["type"] == "message" and event["message"]["body"] == "Hello from us"
    assert event["message"]["senderName"] == "Olive Owner"

    shown = await read(tenant, campaign["id"])
    assert shown["status"] == "COMPLETED"
    assert shown["stats"] == {"recipients": 5, "sent": 5, "skipped": 0, "failed": 0, "waiting": 0, "replied": 0}
    assert shown["job"] == {"id": campaign["job"]["id"], "status": "SUCCEEDED", "processed": 5, "total": 5}
    assert shown["segment"] == {"id": segment} and shown["createdBy"] == {"id": gid("Agent", tenant.owner.id)}
    sent = await messages_by_contact(pk(campaign["id"]))
    assert sent == {m.id: ["Hello from us"] for m in members}
    conversations = await Conversation.filter(contact_id__in=[m.id for m in members])
    assert len(conversations) == 5 and {c.status.value for c in conversations} == {"resolved"}
    assert all(c.last_message_id is not None and c.contact_unread_count == 1 for c in conversations)
    # Nobody resolved them: reports do not count them as resolved (issue 28, item 9).
    assert all(c.resolved_at is None and c.resolution_seconds is None for c in conversations)
    assert await Receipt.filter(source=f"campaign:{pk(campaign['id'])}").count() == 5

    # Run again (arq is at-least-once): nothing more is sent.
    assert await run(app, campaign["id"]) is None
    assert await messages_by_contact(pk(campaign["id"])) == sent


async def test_a_large_audience_renews_postgresqls_statistics_before_the_batches(
    app: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the statistics of an empty recipients table, each batch's claim was planned
    as a scan of the whole audience; the job ANALYZEs the table once it is frozen."""
    from tortoise import connections

    import jobs.campaigns

    if dialect() != "postgres":
        pytest.skip("SQLite plans the claim by primary key whatever its statistics")
    monkeypatch.setattr(jobs.campaigns, "ANALYZE_AFTER", 3)
    members = [await contact(tenant, name=f"Lyonnais {i}", city="Lyon") for i in range(4)]
    segment = await lyon_segment(tenant)
    conn = connections.get("default")
    counted = "SELECT analyze_count AS n FROM pg_stat_user_tables WHERE relname = 'campaign_recipients'"
    await conn.execute_query("SELECT pg_stat_clear_snapshot()")
    before = (await conn.execute_query_dict(counted))[0]["n"]
    campaign = await create(
        tenant, name="Lyon", channelId=gid("Channel", tenant.channel.id), body="Bonjour", segmentId=segment
    )

    assert await run(app, campaign["id"], batch_size=2) == {"recipients": 4, "sent": 4, "skipped": 0}
    await conn.execute_query("SELECT pg_stat_clear_snapshot()")
    assert (await conn.execute_query_dict(counted))[0]["n"] == before + 1
    assert await messages_by_contact(pk(campaign["id"])) == {m.id: ["Bonjour"] for m in members}


async def test_a_campaign_re_evaluates_the_segments_that_count_conversations_only(app: Any, tenant: Tenant) -> None:
    """The conversations a campaign starts change no contact: the debounced refresh it
    queues re-evaluates the segments with conversation rules, and no other segment."""
    lyonnais = [await contact(tenant, name=f"Lyonnais {i}", city="Lyon") for i in range(3)]
    lyon = await lyon_segment(tenant)
    rules = {
        "match": "ALL",
        "conditions": [{"field": "conversation_count", "operator": "AT_LEAST", "value": {"number": 1}}],
    }
    made = await tenant.api(
        SEGMENT, {"i": {"name": "Talked", "visibility": "EVERYONE", "rules": rules}}, token=tenant.owner_token
    )
    talked = made["createSegment"]["segment"]["id"]
    await refresh_segment({}, pk(talked))
    # Moved without a change record: only a re-evaluation of Lyon would notice.
    await Contact.filter(id=lyonnais[0].id).update(city="Paris")

    async def members(segment: str) -> int:
        data = await tenant.api(
            "query($id: ID!) { segment(id: $id) { memberCount } }", {"id": segment}, token=tenant.owner_token
        )
        return data["segment"]["memberCount"]  # type: ignore[no-any-return]

    assert (await members(lyon), await members(talked)) == (3, 0)
    campaign = await create(
        tenant, name="Hello", channelId=gid("Channel", tenant.channel.id), body="Hello", segmentId=lyon
    )
    assert await run(app, campaign["id"]) == {"recipients": 3, "sent": 3, "skipped": 0}
    assert await refresh_dirty_contacts({"redis": app.state.hub.redis}, tenant.workspace.id) == 3
    assert (await members(lyon), await members(talked)) == (3, 3)
    await refresh_segment({}, pk(lyon))
    assert await members(lyon) == 2


async def test_a_list_campaign_by_email_skips_and_counts_each_reason(app: Any, tenant: Tenant) -> None:
    email = await channel(tenant, "email")
    ok = await contact(tenant, email="ok@example.com", time_zone=daytime_zone())
    no_address = await contact(tenant, name="No address")
    blocked = await contact(tenant, email="blocked@example.com", blocked=True)
    ids = [gid("Contact", c.id) for c in (ok, no_address, blocked, ok)]  # listed twice: sent once
    campaign = await create(
        tenant,
        name="News",
        channelId=gid("Channel", email.id),
        body="Our news",
        subject="December news",
        contactIds=ids,
    )
    await run(app, campaign["id"])
    shown = await read(tenant, campaign["id"])
    assert shown["stats"] == {"recipients": 3, "sent": 1, "skipped": 2, "failed": 0, "waiting": 0, "replied": 0}
    assert shown["skipReasons"] == [{"reason": "BLOCKED", "count": 1}, {"reason": "NO_EMAIL", "count": 1}]
    (message,) = await Message.filter(conversation__contact_id=ok.id)
    assert message.delivery_state.value == "pending"  # handed to deliver_message
    assert (await Conversation.get(id=message.conversation_id)).subject == "December news"
    assert not await Message.filter(conversation__contact_id__in=[no_address.id, blocked.id]).exists()
    # Delivery fails (no mail server is configured here): the campaign counts it.
    assert await deliver_message({}, message.id) == "failed"
    assert (await read(tenant, campaign["id"]))["stats"]["failed"] == 1


async def test_a_campaign_topic_is_the_topic_of_its_conversations(app: Any, tenant: Tenant, make_tenant: Any) -> None:
    topic = (
        await tenant.api(
            "mutation($i: CreateTopicInput!) { createTopic(input: $i) { topic { id } } }",
            {"i": {"name": "Billing"}},
            token=tenant.owner_token,
        )
    )["createTopic"]["topic"]
    people = [await contact(tenant, name=f"P{i}") for i in range(3)]
    campaign = await create(
        tenant,
        name="Invoices",
        channelId=gid("Channel", tenant.channel.id),
        body="Your invoice is ready",
        contactIds=[gid("Contact", p.id) for p in people],
        topicId=topic["id"],
    )
    await run(app, campaign["id"])
    topics = await Conversation.filter(contact_id__in=[p.id for p in people]).values_list("topic_id", flat=True)
    assert sorted(topics) == [pk(topic["id"])] * 3
    shown = await tenant.api(
        "query($id: ID!) { campaign(id: $id) { topic { id } } }", {"id": campaign["id"]}, token=tenant.owner_token
    )
    assert shown["campaign"]["topic"] == {"id": topic["id"]}
    # Another workspace's topic, another kind of id, an id of nothing: NOT_FOUND, naming the field.
    other = await make_tenant("Other")
    theirs = (
        await other.api(
            "mutation($i: CreateTopicInput!) { createTopic(input: $i) { topic { id } } }",
            {"i": {"name": "Theirs"}},
            token=other.owner_token,
        )
    )["createTopic"]["topic"]["id"]
    for bad in (theirs, gid("Contact", people[0].id), gid("Topic", 2**40)):
        refused = await errors_of(
            tenant,
            name="X",
            channelId=gid("Channel", tenant.channel.id),
            body="x",
            contactIds=[gid("Contact", people[0].id)],
            topicId=bad,
        )
        assert refused == [(["topicId"], "NOT_FOUND")], bad


async def test_email_and_messenger_wait_out_quiet_hours_too(app: Any, tenant: Tenant) -> None:
    # 2027-06-01 20:00 UTC: 05:00 in Tokyo (quiet), 16:00 in New York (open).
    at = datetime(2027, 6, 1, 20, 0, tzinfo=UTC)
    for kind, address in (("email", {"email": "a@example.com"}), ("messenger", {"external_id": "messenger:7"})):
        reached = await channel(tenant, kind)
        tokyo = await contact(tenant, time_zone="Asia/Tokyo", **address)
        new_york = await contact(
            tenant,
            time_zone="America/New_York",
            **{k: v.replace("7", "8").replace("a@", "b@") for k, v in address.items()},
        )
        campaign = await create(
            tenant,
            name=f"News by {kind}",
            channelId=gid("Channel", reached.id),
            body="News",
            subject="News" if kind == "email" else None,
            contactIds=[gid("Contact", tokyo.id), gid("Contact", new_york.id)],
        )
        opens = datetime(2027, 6, 1, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo
        assert await run(app, campaign["id"], at=at) == {"waiting": 1, "next_attempt_at": opens.isoformat()}
        assert set(await messages_by_contact(pk(campaign["id"]))) == {new_york.id}
        assert (await read(tenant, campaign["id"]))["stats"]["waiting"] == 1
        assert await run(app, campaign["id"], at=opens) == {"recipients": 2, "sent": 2, "skipped": 0}
        assert set(await messages_by_contact(pk(campaign["id"]))) == {tokyo.id, new_york.id}


async def test_sms_waits_out_quiet_hours_in_the_contacts_time_zone(app: Any, tenant: Tenant) -> None:
    sms = await channel(tenant, "sms")
    # 2027-06-01 20:00 UTC (a clock ahead of the campaign's creation): 22:00 in Paris (quiet), 16:00 in New York (open).
    at = datetime(2027, 6, 1, 20, 0, tzinfo=UTC)
    paris = await contact(tenant, phone="+33612345678", sms_consent="subscribed", time_zone="Europe/Paris")
    new_york = await contact(tenant, phone="+12125550100", sms_consent="subscribed", time_zone="America/New_York")
    unsubscribed = await contact(tenant, phone="+33612345679", sms_consent="unsubscribed")
    no_phone = await contact(tenant, sms_consent="subscribed")
    blocked = await contact(tenant, phone="+33612345670", sms_consent="subscribed", blocked=True)
    everyone = [paris, new_york, unsubscribed, no_phone, blocked]
    campaign = await create(
        tenant,
        name="Flash",
        channelId=gid("Channel", sms.id),
        body="Flash sale",
        contactIds=[gid("Contact", c.id) for c in everyone],
    )

    result = await run(app, campaign["id"], at=at)
    opens = datetime(2027, 6, 2, 6, 0, tzinfo=UTC)  # 08:00 in Paris
    assert result == {"waiting": 1, "next_attempt_at": opens.isoformat()}
    shown = await read(tenant, campaign["id"])
    assert shown["status"] == "RUNNING" and shown["job"]["status"] == "RUNNING"
    assert shown["stats"] == {"recipients": 5, "sent": 1, "skipped": 3, "failed": 0, "waiting": 1, "replied": 0}
    assert shown["skipReasons"] == [
        {"reason": "BLOCKED", "count": 1},
        {"reason": "NO_PHONE", "count": 1},
        {"reason": "NO_SMS_CONSENT", "count": 1},
    ]
    assert set(await messages_by_contact(pk(campaign["id"]))) == {new_york.id}

    # A minute before 08:00 in Paris: still waiting.
    await run(app, campaign["id"], at=opens - timedelta(minutes=1))
    assert (await read(tenant, campaign["id"]))["stats"]["waiting"] == 1
    # 08:00 there: sent, and the campaign completes.
    assert await run(app, campaign["id"], at=opens) == {"recipients": 5, "sent": 2, "skipped": 3}
    (message,) = await Message.filter(conversation__contact_id=paris.id)
    assert message.created_at == opens and message.body == "Flash sale"
    shown = await read(tenant, campaign["id"])
    assert shown["status"] == "COMPLETED" and shown["stats"]["waiting"] == 0
    assert shown["job"] == {"id": shown["job"]["id"], "status": "SUCCEEDED", "processed": 5, "total": 5}


async def test_a_reply_after_a_campaign_counts_once_in_replied(app: Any, tenant: Tenant) -> None:
    session = (
        await tenant.api(
            "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { "
            "token contact { id } userErrors { code } } }",
            {"i": {"channelKey": tenant.channel.public_key, "externalId": "reader-1"}},
        )
    )["startContactSession"]
    campaign = await create(
        tenant,
        name="Hi",
        channelId=gid("Channel", tenant.channel.id),
        body="How is it going?",
        contactIds=[session["contact"]["id"]],
    )
    await run(app, campaign["id"])
    (conversation,) = await Conversation.filter(contact_id=pk(session["contact"]["id"]))
    send = "mutation($i: SendMessageInput!) { sendMessage(input: $i) { message { id } userErrors { code } } }"
    for text in ("Great, thanks!", "And another thing"):
        reply = await tenant.api(
            send, {"i": {"conversationId": gid("Conversation", conversation.id), "body": text}}, token=session["token"]
        )
        assert reply["sendMessage"]["userErrors"] == []
        assert (await read(tenant, campaign["id"]))["stats"]["replied"] == 1
    await conversation.refresh_from_db()
    assert conversation.status.value == "open" and conversation.attributed_source == f"campaign:{pk(campaign['id'])}"


async def test_cancel_stops_a_running_campaign_between_batches(app: Any, tenant: Tenant) -> None:
    people = [await contact(tenant, name=f"P{i}") for i in range(40)]
    campaign = await create(
        tenant,
        name="Long",
        channelId=gid("Channel", tenant.channel.id),
        body="Hi",
        contactIds=[gid("Contact", p.id) for p in people],
    )
    running = asyncio.ensure_future(run(app, campaign["id"], batch_size=4, pause=0.1))
    while not await Campaign.filter(id=pk(campaign["id"]), sent__gt=0).exists():
        await asyncio.sleep(0.02)
    payload = (await tenant.api(CANCEL, {"i": {"id": campaign["id"]}}, token=tenant.owner_token))["cancelCampaign"]
    assert payload == {"campaign": {"id": campaign["id"], "status": "CANCELLED"}, "userErrors": []}
    assert await running is None
    shown = await read(tenant, campaign["id"])
    assert shown["status"] == "CANCELLED" and shown["job"]["status"] == "CANCELLED"
    sent = shown["stats"]["sent"]
    assert 0 < sent < 40
    assert sum(len(v) for v in (await messages_by_contact(pk(campaign["id"]))).values()) == sent
    # Finished: neither a later run nor a second cancel changes anything.
    assert await run(app, campaign["id"]) is None
    assert (await read(tenant, campaign["id"]))["stats"]["sent"] == sent
    again = (await tenant.api(CANCEL, {"i": {"id": campaign["id"]}}, token=tenant.owner_token))["cancelCampaign"]
    assert [(e["field"], e["code"]) for e in again["userErrors"]] == [(["id"], "NOT_ALLOWED")]


async def test_a_scheduled_campaign_waits_for_its_time(app: Any, tenant: Tenant) -> None:
    person = await contact(tenant, name="Later")
    later = datetime.now(UTC) + timedelta(hours=2)
    campaign = await create(
        tenant,
        name="Later",
        channelId=gid("Channel", tenant.channel.id),
        body="Hi",
        contactIds=[gid("Contact", person.id)],
        scheduledAt=later.isoformat(),
    )
    assert datetime.fromisoformat(campaign["scheduledAt"]) == later
    assert await run(app, campaign["id"]) is None  # too early: nothing happens
    assert (await read(tenant, campaign["id"]))["status"] == "SCHEDULED"
    assert await run(app, campaign["id"], at=later) == {"recipients": 1, "sent": 1, "skipped": 0}


async def test_campaigns_list_newest_first(tenant: Tenant) -> None:
    person = await contact(tenant, name="Listed")
    made = [
        await create(
            tenant,
            name=f"C{i}",
            channelId=gid("Channel", tenant.channel.id),
            body="Hi",
            contactIds=[gid("Contact", person.id)],
        )
        for i in range(3)
    ]
    page = await tenant.api(
        "{ campaigns(first: 2) { edges { node { id name } } pageInfo { hasNextPage } } }", token=tenant.owner_token
    )
    assert [e["node"]["id"] for e in page["campaigns"]["edges"]] == [made[2]["id"], made[1]["id"]]
    assert page["campaigns"]["pageInfo"]["hasNextPage"] is True


async def test_hostile_input_gets_user_errors_naming_the_field(tenant: Tenant, make_tenant: Any) -> None:
    other = await make_tenant("Other")
    theirs = await contact(other, name="Theirs")
    their_segment = await lyon_segment(other)
    mine = await contact(tenant, name="Mine")
    widget = gid("Channel", tenant.channel.id)
    base = {"name": "X", "channelId": widget, "body": "Hi"}
    assert await errors_of(tenant, **base, segmentId=their_segment) == [(["segmentId"], "NOT_FOUND")]
    assert await errors_of(
        tenant, **base, contactIds=[gid("Contact", mine.id), gid("Contact", theirs.id), gid("Segment", 1)]
    ) == [(["contactIds", "1"], "NOT_FOUND"), (["contactIds", "2"], "NOT_FOUND")]
    assert await errors_of(tenant, **base, contactIds=[gid("Contact", mine.id), "not-an-id", "%%%", ""]) == [
        (["contactIds", "1"], "NOT_FOUND"),
        (["contactIds", "2"], "NOT_FOUND"),
        (["contactIds", "3"], "NOT_FOUND"),
    ]
    assert await errors_of(
        tenant, **{**base, "channelId": gid("Channel", other.channel.id)}, contactIds=[gid("Contact", mine.id)]
    ) == [(["channelId"], "NOT_FOUND")]
    assert await errors_of(tenant, **base, contactIds=[gid("Contact", mine.id)] * 10_001) == [
        (["contactIds"], "INVALID")
    ]
    assert await errors_of(tenant, **base, contactIds=[]) == [(["contactIds"], "REQUIRED")]
    assert await errors_of(tenant, **base) == [(["segmentId"], "REQUIRED")]
    assert await errors_of(tenant, **base, segmentId=their_segment, contactIds=[gid("Contact", mine.id)]) == [
        (["segmentId"], "REQUIRED")
    ]
    assert await errors_of(
        tenant,
        **{**base, "body": "x" * 20_001, "name": " ", "subject": "s" * 300},
        contactIds=[gid("Contact", mine.id)],
    ) == [(["name"], "REQUIRED"), (["body"], "TOO_LONG"), (["subject"], "TOO_LONG")]
    assert await errors_of(
        tenant, **base, contactIds=[gid("Contact", mine.id)], scheduledAt="2020-01-01T00:00:00+00:00"
    ) == [(["scheduledAt"], "INVALID")]
    assert await errors_of(
        tenant, **base, contactIds=[gid("Contact", mine.id)], scheduledAt="2031-01-01T00:00:00+00:00"
    ) == [(["scheduledAt"], "INVALID")]
    assert not await Campaign.filter(workspace_id=tenant.workspace.id).exists()
    # Card numbers are masked before the campaign is stored.
    made = await create(
        tenant, **{**base, "body": "Pay with 4111 1111 1111 1111 today"}, contactIds=[gid("Contact", mine.id)]
    )
    stored = await Campaign.get(id=pk(made["id"]))
    assert "4111 1111 1111 1111" not in stored.body and "1111" in stored.body


async def test_only_owners_admins_and_keys_with_campaigns_send_create_and_cancel(tenant: Tenant) -> None:
    person = await contact(tenant, name="Someone")
    _, agent_token = await tenant.agent("agent")
    _, admin_token = await tenant.agent("admin")
    base = {
        "name": "X",
        "channelId": gid("Channel", tenant.channel.id),
        "body": "Hi",
        "contactIds": [gid("Contact", person.id)],
    }
    from tests.campaigns.helpers import CREATE

    body = (await tenant.api.raw(CREATE, {"i": base}, token=agent_token)).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    made = await create(tenant, token=admin_token, **base)
    body = (await tenant.api.raw(CANCEL, {"i": {"id": made["id"]}}, token=agent_token)).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # Agents may read campaigns (conversations:read).
    shown = await tenant.api(
        "query($id: ID!) { campaign(id: $id) { id status } }", {"id": made["id"]}, token=agent_token
    )
    assert shown["campaign"] == {"id": made["id"], "status": "SCHEDULED"}


async def test_an_api_key_with_campaigns_send_creates_and_cancels_without_reading(tenant: Tenant) -> None:
    person = await contact(tenant, name="Keyed")
    made_key = (
        await tenant.api(
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret userErrors { code } } }",
            {"i": {"name": "sender", "scopes": ["campaigns:send"]}},
            token=tenant.owner_token,
        )
    )["createApiKey"]
    key = made_key["secret"]
    made = await create(
        tenant,
        token=key,
        name="By key",
        channelId=gid("Channel", tenant.channel.id),
        body="Hi",
        contactIds=[gid("Contact", person.id)],
    )
    assert made["status"] == "SCHEDULED"
    # Reading needs conversations:read, which this key lacks; cancelling does not.
    assert (await tenant.api("query($id: ID!) { campaign(id: $id) { id } }", {"id": made["id"]}, token=key))[
        "campaign"
    ] is None
    payload = (await tenant.api(CANCEL, {"i": {"id": made["id"]}}, token=key))["cancelCampaign"]
    assert payload["userErrors"] == [] and payload["campaign"]["status"] == "CANCELLED"


async def test_a_run_that_fails_is_retried_and_the_campaign_fails_after_five(app: Any, tenant: Tenant) -> None:
    from tortoise import connections

    from jobs.campaigns import MAX_ATTEMPTS

    broken = await channel(tenant, "web_widget")
    person = await contact(tenant, name="Unlucky")
    campaign = await create(
        tenant, name="Broken", channelId=gid("Channel", broken.id), body="Hi", contactIds=[gid("Contact", person.id)]
    )
    # A channel row no code can read (an unknown kind): every run fails unexpectedly.
    await connections.get("default").execute_query(f"UPDATE channels SET kind = 'fax' WHERE id = {broken.id}")
    status = "query($id: ID!) { campaign(id: $id) { status job { status error } } }"
    for attempt in range(1, MAX_ATTEMPTS):
        assert await run(app, campaign["id"]) is None
        shown = (await tenant.api(status, {"id": campaign["id"]}, token=tenant.owner_token))["campaign"]
        assert (shown["status"], shown["job"]["status"]) == ("RUNNING", "QUEUED"), attempt
        assert "will be retried" in shown["job"]["error"]
    assert await run(app, campaign["id"]) is None
    shown = (await tenant.api(status, {"id": campaign["id"]}, token=tenant.owner_token))["campaign"]
    assert (shown["status"], shown["job"]["status"]) == ("FAILED", "FAILED")
    assert not await Message.filter(conversation__contact_id=person.id).exists()
