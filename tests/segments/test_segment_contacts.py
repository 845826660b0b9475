"""Segment.contacts: the membership as of the last refresh, most recently seen first, paged
by cursor; a contact seen again moves up at the next refresh (the debounced one its change
queues, or the periodic full one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import jobs.segments
from jobs.segments import refresh_dirty_contacts, refresh_segment
from models.contacts import Contact
from tests.conftest import Tenant, pk

CREATE = (
    "mutation($input: CreateSegmentInput!) { createSegment(input: $input) { segment { id } userErrors { message } } }"
)
MEMBERS = """query($id: ID!, $first: Int, $after: String) { segment(id: $id) {
  memberCount contacts(first: $first, after: $after) {
    edges { cursor node { name lastSeenAt } } pageInfo { hasNextPage endCursor }
  }
} }"""
TRACK = "mutation($input: TrackEventInput!) { trackEvent(input: $input) { userErrors { code message } } }"
NOW = datetime.now(UTC).replace(microsecond=0)


async def portugal(tenant: Tenant, seen_days_ago: dict[str, float]) -> tuple[str, dict[str, dict[str, Any]]]:
    """A segment of the contacts in PT, and contacts (in this order) last seen so long ago."""
    made = await tenant.api(
        CREATE,
        {
            "input": {
                "name": "Portugal",
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "country", "operator": "EQUALS", "value": {"text": "PT"}}],
                },
            }
        },
        token=tenant.owner_token,
    )
    contacts = {}
    for name, days in seen_days_ago.items():
        contacts[name] = await tenant.contact(name=name, country="ES" if name.startswith("out") else "PT")
        await Contact.filter(id=pk(contacts[name]["id"])).update(last_seen_at=NOW - timedelta(days=days))
    return made["createSegment"]["segment"]["id"], contacts


async def page(tenant: Tenant, segment: str, first: int, after: str | None = None) -> dict[str, Any]:
    data = await tenant.api(MEMBERS, {"id": segment, "first": first, "after": after}, token=tenant.owner_token)
    return data["segment"]["contacts"]  # type: ignore[no-any-return]


async def walk(tenant: Tenant, segment: str, first: int, after: str | None = None) -> list[str]:
    """Every member's name, page after page."""
    names: list[str] = []
    while True:
        found = await page(tenant, segment, first, after)
        names += [e["node"]["name"] for e in found["edges"]]
        if not found["pageInfo"]["hasNextPage"]:
            return names
        assert len(found["edges"]) == first
        after = found["pageInfo"]["endCursor"]


@pytest.mark.parametrize("few_members", [10_000, 0], ids=["insert on conflict", "insert where not exists"])
async def test_members_most_recently_seen_first_across_pages(
    tenant: Tenant, monkeypatch: Any, few_members: int
) -> None:
    monkeypatch.setattr(jobs.segments, "FEW_MEMBERS", few_members)
    # tie-a and tie-b were last seen at the same instant: the later contact (higher id) first.
    segment, _ = await portugal(tenant, {"d40": 40, "tie-a": 5, "d1": 1, "out-1": 0, "tie-b": 5, "d9": 9, "d3": 3})
    await refresh_segment({}, pk(segment))
    assert await walk(tenant, segment, first=2) == ["d1", "d3", "tie-b", "tie-a", "d9", "d40"]
    # A page boundary between the two: the cursor of tie-b, then tie-a at the same time.
    assert await walk(tenant, segment, first=3) == ["d1", "d3", "tie-b", "tie-a", "d9", "d40"]
    assert await walk(tenant, segment, first=50) == ["d1", "d3", "tie-b", "tie-a", "d9", "d40"]
    first = await page(tenant, segment, first=6)
    seen = [datetime.fromisoformat(e["node"]["lastSeenAt"]) for e in first["edges"]]
    assert seen == sorted(seen, reverse=True)
    assert first["pageInfo"]["hasNextPage"] is False


async def test_a_contact_seen_again_moves_up_at_the_next_refresh(app: Any, tenant: Tenant) -> None:
    segment, contacts = await portugal(tenant, {"d30": 30, "d20": 20, "d10": 10, "out-1": 0})
    await refresh_segment({}, pk(segment))
    assert await walk(tenant, segment, first=2) == ["d10", "d20", "d30"]

    # An event seen now: the contact's last_seen_at moves, and its change queues the
    # debounced refresh of the workspace's changed contacts. Until that runs, the member
    # order is the one of the last refresh.
    done = await tenant.api(
        TRACK, {"input": {"contactId": contacts["d30"]["id"], "name": "login"}}, token=tenant.owner_token
    )
    assert done["trackEvent"]["userErrors"] == []
    assert await walk(tenant, segment, first=2) == ["d10", "d20", "d30"]
    assert await refresh_dirty_contacts({"redis": app.state.hub.redis}, tenant.workspace.id) >= 1
    assert await walk(tenant, segment, first=2) == ["d30", "d10", "d20"]

    # Written without a change record (no debounced refresh): the next full refresh moves it.
    await Contact.filter(id=pk(contacts["d20"]["id"])).update(last_seen_at=datetime.now(UTC) + timedelta(minutes=1))
    await refresh_segment({}, pk(segment))
    assert await walk(tenant, segment, first=2) == ["d20", "d30", "d10"]
    edges = (await page(tenant, segment, first=3))["edges"]
    assert [datetime.fromisoformat(e["node"]["lastSeenAt"]) for e in edges] == sorted(
        (await Contact.filter(workspace_id=tenant.workspace.id, country="PT").values_list("last_seen_at", flat=True)),
        reverse=True,
    )


@pytest.mark.parametrize("window", [5000, 2], ids=["one window", "windows of two contacts"])
async def test_a_cursor_stays_valid_while_members_join_and_leave(tenant: Tenant, monkeypatch: Any, window: int) -> None:
    # On SQLite a full refresh goes a window of contacts per transaction (jobs.segments.WINDOW).
    monkeypatch.setattr(jobs.segments, "WINDOW", window)
    segment, contacts = await portugal(tenant, {"d50": 50, "d40": 40, "d30": 30, "d20": 20, "d10": 10})
    await refresh_segment({}, pk(segment))
    first = await page(tenant, segment, first=2)
    assert [e["node"]["name"] for e in first["edges"]] == ["d10", "d20"]
    cursor = first["pageInfo"]["endCursor"]

    # A newer member joins (before the cursor) and one after the cursor leaves.
    await tenant.contact(name="new", country="PT")
    await tenant.api(
        "mutation($input: UpdateContactInput!) { updateContact(input: $input) { userErrors { code } } }",
        {"input": {"id": contacts["d40"]["id"], "country": "ES"}},
        token=tenant.owner_token,
    )
    result = await refresh_segment({}, pk(segment))
    assert result is not None and (result["joined"], result["left"], result["members"]) == (1, 1, 5)
    assert await walk(tenant, segment, first=2, after=cursor) == ["d30", "d50"]
    assert await walk(tenant, segment, first=2) == ["new", "d10", "d20", "d30", "d50"]

    # Written without change records, in the first window and after the last: the next
    # full refresh finds both.
    await Contact.filter(id=pk(contacts["d10"]["id"])).update(country="ES")
    await tenant.contact(name="newest", country="PT")
    result = await refresh_segment({}, pk(segment))
    assert result is not None and (result["joined"], result["left"], result["members"]) == (1, 1, 5)
    assert await walk(tenant, segment, first=50) == ["newest", "new", "d20", "d30", "d50"]
