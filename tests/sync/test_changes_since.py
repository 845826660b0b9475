"""contactsChangedSince: every change in order, deletions included, by cursor; a pruned
cursor asks for a full resync."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import jobs.sync
from core.db import dialect
from jobs.sync import prune_contact_changes
from models.contacts import ContactChange
from tests.conftest import Tenant

FEED = """query($cursor: String, $first: Int) { contactsChangedSince(cursor: $cursor, first: $first) {
  edges { cursor node { cursor kind contactId changedAt contact { id name } } }
  pageInfo { hasNextPage endCursor }
  latestCursor
} }"""
UPDATE = "mutation($i: UpdateContactInput!) { updateContact(input: $i) { userErrors { code } } }"
DELETE = "mutation($i: ContactIdInput!) { deleteContact(input: $i) { userErrors { code } } }"
MERGE = "mutation($i: MergeContactsInput!) { mergeContacts(input: $i) { userErrors { code } } }"


async def feed(
    tenant: Tenant, cursor: str | None = None, first: int | None = None, token: str | None = None
) -> dict[str, Any]:
    data = await tenant.api(FEED, {"cursor": cursor, "first": first}, token=token or tenant.api_key)
    return data["contactsChangedSince"]  # type: ignore[no-any-return]


async def pull_all(
    tenant: Tenant, cursor: str | None = None, first: int = 2
) -> tuple[list[dict[str, Any]], str | None]:
    """What an integrator's incremental pull does: page until hasNextPage is false."""
    nodes: list[dict[str, Any]] = []
    while True:
        page = await feed(tenant, cursor, first)
        nodes += [e["node"] for e in page["edges"]]
        cursor = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes, cursor


async def test_pages_through_every_change_in_order_deletions_included(tenant: Tenant) -> None:
    ada = await tenant.contact(name="Ada", email="ada@example.com")
    bob = await tenant.contact(name="Bob", email="bob@example.com")
    await tenant.api(UPDATE, {"i": {"id": ada["id"], "city": "London"}}, token=tenant.owner_token)
    await tenant.api(DELETE, {"i": {"id": bob["id"]}}, token=tenant.owner_token)
    nodes, cursor = await pull_all(tenant)
    assert [(n["kind"], n["contactId"]) for n in nodes] == [
        ("CREATED", ada["id"]),
        ("CREATED", bob["id"]),
        ("UPDATED", ada["id"]),
        ("DELETED", bob["id"]),
    ]
    assert [n["contact"] and n["contact"]["name"] for n in nodes] == ["Ada", None, "Ada", None]
    assert [int(n["cursor"]) for n in nodes] == sorted(int(n["cursor"]) for n in nodes)

    # Nothing new: the same cursor comes back, so the client keeps it.
    empty = await feed(tenant, cursor)
    assert empty["edges"] == [] and empty["pageInfo"] == {"hasNextPage": False, "endCursor": cursor}
    # Later changes, from where the client stopped; a merge deletes the secondary.
    cid = await tenant.contact(name="Cid", email="cid@example.com")
    await tenant.api(MERGE, {"i": {"primaryId": ada["id"], "secondaryId": cid["id"]}}, token=tenant.owner_token)
    later, _ = await pull_all(tenant, cursor)
    assert [(n["kind"], n["contactId"]) for n in later] == [
        ("CREATED", cid["id"]),
        ("DELETED", cid["id"]),
        ("UPDATED", ada["id"]),
    ]
    assert (await feed(tenant))["latestCursor"] == later[-1]["cursor"]


async def test_the_cursor_of_a_contact_updated_event_works_too(tenant: Tenant) -> None:
    ada = await tenant.contact(name="Ada")
    first = (await feed(tenant))["edges"][0]["cursor"]
    change = await ContactChange.filter(workspace_id=tenant.workspace.id).order_by("id").first()
    assert change is not None and first == str(change.id)  # contactUpdated events carry str(change.id)
    await tenant.api(UPDATE, {"i": {"id": ada["id"], "name": "Ada L."}}, token=tenant.owner_token)
    after = await feed(tenant, first)
    assert [(e["node"]["kind"], e["node"]["contact"]["name"]) for e in after["edges"]] == [("UPDATED", "Ada L.")]


async def test_another_workspaces_changes_are_never_listed(tenant: Tenant, make_tenant: Any) -> None:
    other = await make_tenant("Other")
    theirs = await other.contact(name="Theirs")
    mine = await tenant.contact(name="Mine")
    nodes, _ = await pull_all(tenant, first=50)
    assert [n["contactId"] for n in nodes] == [mine["id"]]
    # A cursor of theirs is only a number: it pages my log, never theirs.
    their_cursor = (await feed(other))["edges"][0]["cursor"]
    assert all(
        e["node"]["contactId"] != theirs["id"] for e in (await feed(tenant, str(int(their_cursor) - 1)))["edges"]
    )


async def test_a_pruned_cursor_asks_for_a_full_resync(tenant: Tenant, make_tenant: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(jobs.sync, "PRUNE_BATCH", 1)  # each row in a statement of its own
    ada = await tenant.contact(name="Ada")
    old_cursor = (await feed(tenant))["edges"][0]["cursor"]
    await tenant.api(UPDATE, {"i": {"id": ada["id"], "name": "Ada 2"}}, token=tenant.owner_token)
    untouched = await make_tenant("Untouched")
    await untouched.contact(name="Kept")
    kept_cursor = (await feed(untouched))["edges"][0]["cursor"]
    # Age this workspace's log past the retention window, then run the real pruning job.
    await ContactChange.filter(workspace_id=tenant.workspace.id).update(at=datetime.now(UTC) - timedelta(days=91))
    assert await prune_contact_changes({}) >= 2
    assert not await ContactChange.filter(workspace_id=tenant.workspace.id).exists()
    errors = await tenant.api.errors(FEED, {"cursor": old_cursor}, token=tenant.api_key)
    assert [e["extensions"]["code"] for e in errors] == ["CURSOR_EXPIRED"]
    assert "Resync in full" in errors[0]["message"]
    # Changes after the pruned ones page on as usual, from latestCursor.
    latest = (await feed(tenant))["latestCursor"]
    await tenant.api(UPDATE, {"i": {"id": ada["id"], "name": "Ada 3"}}, token=tenant.owner_token)
    assert [e["node"]["contact"]["name"] for e in (await feed(tenant, latest))["edges"]] == ["Ada 3"]
    # Another workspace's cursors are not affected.
    assert (await feed(untouched, kept_cursor))["edges"] == []


async def test_bad_cursors_and_page_sizes(tenant: Tenant) -> None:
    for cursor in ("abc", "-1", "1" * 30):
        errors = await tenant.api.errors(FEED, {"cursor": cursor}, token=tenant.api_key)
        assert [e["extensions"]["code"] for e in errors] == ["INVALID"], cursor
    errors = await tenant.api.errors(FEED, {"first": 1001}, token=tenant.api_key)
    assert [e["extensions"]["code"] for e in errors] == ["INVALID"]
    # A contact session cannot read the log.
    session = await tenant.api(
        "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token } }",
        {"i": {"channelKey": tenant.channel.public_key}},
    )
    errors = await tenant.api.errors(FEED, {}, token=session["startContactSession"]["token"])
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]


async def test_postgresql_holds_back_changes_until_they_settle(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids are handed out at INSERT, not at COMMIT: a fresh change might still have an
    older, uncommitted neighbour, so PostgreSQL readers see changes once settled."""
    from resolvers import sync

    if dialect() != "postgres":
        pytest.skip("SQLite has a single writer: ids commit in order")
    monkeypatch.setattr(sync, "SETTLE", timedelta(seconds=60))
    await tenant.contact(name="Fresh")
    page = await feed(tenant)
    assert page["edges"] == [] and page["latestCursor"] is None
    await ContactChange.filter(workspace_id=tenant.workspace.id).update(at=datetime.now(UTC) - timedelta(seconds=61))
    assert len((await feed(tenant))["edges"]) == 1
