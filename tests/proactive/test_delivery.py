"""Delivery rules that need no socket: racing page views deliver once, blocked contacts
get nothing, another workspace's visitor never sees a message, rules read the contact's
profile (segment membership, attributes, country)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from strawberry.relay import GlobalID

from models.segments import SegmentMembership
from tests.conftest import Tenant
from tests.proactive.helpers import GET, REPORT, live_message, report, session


async def test_racing_page_views_deliver_once(tenant: Tenant) -> None:
    token, _ = await session(tenant, "racer")
    await report(tenant, token, url="https://shop.example/warm-up")  # the visit exists; the next ones race
    message = await live_message(tenant, frequency="ONCE_PER_CONTACT")
    results = await asyncio.gather(
        *(tenant.api(REPORT, {"i": {"url": f"https://shop.example/{i}"}}, token=token) for i in range(8))
    )
    delivered = [r["reportPageView"]["delivery"] for r in results if r["reportPageView"]["delivery"]]
    assert len(delivered) == 1
    got = (await tenant.api(GET, {"id": message["id"]}, token=tenant.owner_token))["proactiveMessage"]
    assert got["sent"] == 1


async def test_blocked_contacts_get_nothing(tenant: Tenant) -> None:
    await live_message(tenant)
    token, contact_id = await session(tenant, "blocked-one")
    block = "mutation($i: ContactIdInput!) { blockContact(input: $i) { userErrors { code } } }"
    assert (await tenant.api(block, {"i": {"id": contact_id}}, token=tenant.owner_token))["blockContact"][
        "userErrors"
    ] == []
    assert (await report(tenant, token))["delivery"] is None


async def test_rules_read_the_contacts_profile(tenant: Tenant) -> None:
    segment = await tenant.api(
        "mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } } }",
        {
            "i": {
                "name": "Gold",
                "visibility": "EVERYONE",
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "city", "operator": "EQUALS", "value": {"text": "Nowhere"}}],
                },
            }
        },
        token=tenant.owner_token,
    )
    segment_id = segment["createSegment"]["segment"]["id"]
    await live_message(
        tenant,
        name="Members",
        rules={
            "match": "ALL",
            "conditions": [
                {"field": "SEGMENT", "operator": "MEMBER_OF", "segmentId": segment_id},
                {"field": "COUNTRY", "operator": "EQUALS", "value": {"text": "PT"}},
            ],
        },
    )
    token, contact_id = await session(tenant, "member")
    assert (await report(tenant, token))["delivery"] is None  # not a member, no country
    update = "mutation($i: UpdateContactInput!) { updateContact(input: $i) { userErrors { field code } } }"
    assert (await tenant.api(update, {"i": {"id": contact_id, "country": "PT"}}, token=tenant.owner_token))[
        "updateContact"
    ]["userErrors"] == []
    assert (await report(tenant, token))["delivery"] is None  # still not a member
    await SegmentMembership.create(
        workspace_id=tenant.workspace.id,
        segment_id=int(GlobalID.from_id(segment_id).node_id),
        contact_id=int(GlobalID.from_id(contact_id).node_id),
        joined_at=datetime.now(UTC),
        last_seen_at=datetime.now(UTC),
    )
    assert (await report(tenant, token))["delivery"] is not None
