"""Segments through the API: predefined ones, visibility and sharing, preview, rules
errors, and membership materialised by the refresh job."""

from __future__ import annotations

from base64 import b64decode
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import jobs.segments
from jobs.segments import refresh_segment
from models.contacts import Contact
from models.conversations import Conversation, ConversationStatus

SEGMENTS = (
    "query($s: String) { segments(search: $s, first: 50) { edges { node { id name visibility predefinedKey } } } }"
)
CREATE = """mutation($input: CreateSegmentInput!) { createSegment(input: $input) {
  segment { id name visibility rules sharedWith } userErrors { field code message } } }"""
UPDATE = """mutation($input: UpdateSegmentInput!) { updateSegment(input: $input) {
  segment { id name visibility } userErrors { field code message } } }"""
DELETE = (
    "mutation($input: DeleteSegmentInput!) { deleteSegment(input: $input) { deletedId userErrors { field code } } }"
)
PREVIEW = "query($rules: SegmentRulesInput!) { previewSegment(rules: $rules, first: 5) { count contacts { name } } }"


def text(value: str) -> dict[str, str]:
    return {"text": value}


async def names(tenant: Any, token: str, search: str | None = None) -> set[str]:
    data = await tenant.api(SEGMENTS, {"s": search}, token=token)
    return {e["node"]["name"] for e in data["segments"]["edges"]}


async def test_every_workspace_has_the_predefined_shared_segments(tenant: Any) -> None:
    data = await tenant.api(SEGMENTS, {}, token=tenant.owner_token)
    nodes = [e["node"] for e in data["segments"]["edges"]]
    assert {n["predefinedKey"] for n in nodes} == {"all_users", "new_users", "recently_active", "lapsed", "inactive"}
    assert all(n["visibility"] == "EVERYONE" for n in nodes)
    _, agent_token = await tenant.agent()
    assert await names(tenant, agent_token) == {"All users", "New users", "Recently active", "Lapsed", "Inactive"}
    assert await names(tenant, tenant.owner_token, search="users") == {"All users", "New users"}


@pytest.mark.parametrize("small_segment", [1000, 0], ids=["member-ids", "membership-subquery"])
async def test_predefined_segments_sort_contacts_by_recency(tenant: Any, monkeypatch: Any, small_segment: int) -> None:
    # Both ways of paging a membership: small segments by their member ids, large ones by
    # a subquery (resolvers.segments.SMALL_SEGMENT).
    monkeypatch.setattr("resolvers.segments.SMALL_SEGMENT", small_segment)
    now = datetime.now(UTC)
    seen = {"fresh": 1, "lapsing": 45, "gone": 200}
    for name, days in seen.items():
        contact = await tenant.contact(name=name)
        await Contact.filter(name=name, workspace_id=tenant.workspace.id).update(
            last_seen_at=now - timedelta(days=days), first_seen_at=now - timedelta(days=days)
        )
        assert contact
    data = await tenant.api(SEGMENTS, {}, token=tenant.owner_token)
    members: dict[str, set[str]] = {}
    for edge in data["segments"]["edges"]:
        segment = edge["node"]
        from base64 import b64decode

        result = await refresh_segment({}, int(b64decode(segment["id"]).decode().split(":")[1]))
        assert result is not None
        listed = await tenant.api(
            "query($id: ID!) { contacts(segmentId: $id) { edges { node { name } } } }",
            {"id": segment["id"]},
            token=tenant.owner_token,
        )
        members[segment["predefinedKey"]] = {e["node"]["name"] for e in listed["contacts"]["edges"]}
    assert members == {
        "all_users": {"fresh", "lapsing", "gone"},
        "new_users": {"fresh"},
        "recently_active": {"fresh"},
        "lapsed": {"lapsing"},
        "inactive": {"gone"},
    }


async def test_personal_segments_are_their_owners_only(tenant: Any) -> None:
    _, alice = await tenant.agent()
    _, bob = await tenant.agent()
    made = await tenant.api(
        CREATE,
        {
            "input": {
                "name": "My trials",
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "tag", "operator": "EQUALS", "value": text("trial")}],
                },
            }
        },
        token=alice,
    )
    segment = made["createSegment"]["segment"]
    assert segment["visibility"] == "PERSONAL"
    assert "My trials" in await names(tenant, alice)
    assert "My trials" not in await names(tenant, bob)
    assert "My trials" not in await names(tenant, tenant.owner_token)
    hidden = await tenant.api("query($id: ID!) { segment(id: $id) { name } }", {"id": segment["id"]}, token=bob)
    assert hidden["segment"] is None
    refused = await tenant.api(UPDATE, {"input": {"id": segment["id"], "name": "Bob's now"}}, token=bob)
    assert refused["updateSegment"]["userErrors"][0]["code"] == "NOT_FOUND"
    renamed = await tenant.api(UPDATE, {"input": {"id": segment["id"], "name": "Trials"}}, token=alice)
    assert renamed["updateSegment"]["segment"]["name"] == "Trials"
    shared = await tenant.api(UPDATE, {"input": {"id": segment["id"], "visibility": "EVERYONE"}}, token=alice)
    assert shared["updateSegment"]["userErrors"][0] == {
        "field": ["visibility"],
        "code": "FORBIDDEN",
        "message": "Only owners and admins share segments.",
    }
    assert (await tenant.api(DELETE, {"input": {"id": segment["id"]}}, token=alice))["deleteSegment"][
        "deletedId"
    ] == segment["id"]


async def test_sharing_with_teams_and_agents(tenant: Any) -> None:
    from models.workspaces import Team

    member, member_token = await tenant.agent()
    named, named_token = await tenant.agent()
    _, outsider_token = await tenant.agent()
    team = await Team.create(workspace_id=tenant.workspace.id, name="Support")
    await team.members.add(member)
    from base64 import b64encode

    gid = lambda t, i: b64encode(f"{t}:{i}".encode()).decode()  # noqa: E731
    made = await tenant.api(
        CREATE,
        {
            "input": {
                "name": "VIPs",
                "visibility": "SHARED",
                "teamIds": [gid("Team", team.id)],
                "agentIds": [gid("Agent", named.id)],
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "vip", "operator": "EQUALS", "value": {"boolean": True}}],
                },
            }
        },
        token=tenant.owner_token,
    )
    segment = made["createSegment"]["segment"]
    assert set(segment["sharedWith"]) == {gid("Team", team.id), gid("Agent", named.id)}
    assert "VIPs" in await names(tenant, member_token)
    assert "VIPs" in await names(tenant, named_token)
    assert "VIPs" not in await names(tenant, outsider_token)
    # Shared segments are edited and deleted by owners and admins only.
    edit = await tenant.api(UPDATE, {"input": {"id": segment["id"], "name": "Mine"}}, token=member_token)
    assert edit["updateSegment"]["userErrors"][0]["code"] == "FORBIDDEN"
    gone = await tenant.api(DELETE, {"input": {"id": segment["id"]}}, token=member_token)
    assert gone["deleteSegment"]["userErrors"][0]["code"] == "FORBIDDEN"
    _, admin_token = await tenant.agent(role="admin")
    assert (await tenant.api(UPDATE, {"input": {"id": segment["id"], "name": "VIP customers"}}, token=admin_token))[
        "updateSegment"
    ]["userErrors"] == []
    bad = await tenant.api(
        CREATE,
        {
            "input": {
                "name": "x",
                "visibility": "EVERYONE",
                "teamIds": [gid("Team", team.id)],
                "rules": {"match": "ALL"},
            }
        },
        token=tenant.owner_token,
    )
    assert bad["createSegment"]["userErrors"][0]["field"] == ["visibility"]


async def test_predefined_segments_cannot_be_deleted_but_can_be_tuned(tenant: Any) -> None:
    data = await tenant.api(SEGMENTS, {}, token=tenant.owner_token)
    new_users = next(e["node"] for e in data["segments"]["edges"] if e["node"]["predefinedKey"] == "new_users")
    refused = await tenant.api(DELETE, {"input": {"id": new_users["id"]}}, token=tenant.owner_token)
    assert refused["deleteSegment"]["userErrors"] == [{"field": ["id"], "code": "READ_ONLY"}]
    tuned = await tenant.api(
        UPDATE,
        {
            "input": {
                "id": new_users["id"],
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "first_seen_at", "operator": "WITHIN_LAST_DAYS", "days": 14}],
                },
            }
        },
        token=tenant.owner_token,
    )
    assert tuned["updateSegment"]["userErrors"] == []


async def test_preview_counts_in_the_database(tenant: Any) -> None:
    await tenant.contact(name="Ana", country="PT", tags=["trial"])
    await tenant.contact(name="Bea", country="PT")
    await tenant.contact(name="Cid", country="ES", tags=["trial"])
    rules = {
        "match": "ANY",
        "conditions": [{"field": "country", "operator": "EQUALS", "value": text("pt")}],
        "groups": [
            {
                "match": "ALL",
                "conditions": [
                    {"field": "tag", "operator": "EQUALS", "value": text("trial")},
                    {"field": "country", "operator": "IN", "values": [text("ES"), text("FR")]},
                ],
            }
        ],
    }
    preview = (await tenant.api(PREVIEW, {"rules": rules}, token=tenant.owner_token))["previewSegment"]
    assert preview["count"] == 3
    only_pt = {
        "match": "ALL",
        "conditions": [
            {"field": "country", "operator": "EQUALS", "value": text("PT")},
            {"field": "tag", "operator": "IS_NOT_SET"},
        ],
    }
    preview = (await tenant.api(PREVIEW, {"rules": only_pt}, token=tenant.owner_token))["previewSegment"]
    assert preview == {"count": 1, "contacts": [{"name": "Bea"}]}


async def test_bad_rules_name_the_condition(tenant: Any) -> None:
    rules = {
        "match": "ALL",
        "conditions": [{"field": "country", "operator": "EQUALS", "value": text("PT")}],
        "groups": [
            {"match": "ANY", "conditions": [{"field": "favourite_colour", "operator": "EQUALS", "value": text("red")}]}
        ],
    }
    made = await tenant.api(CREATE, {"input": {"name": "Bad", "rules": rules}}, token=tenant.owner_token)
    error = made["createSegment"]["userErrors"][0]
    assert error["code"] == "UNKNOWN_FIELD"
    assert error["field"][0] == "rules"
    assert "favourite_colour" in error["message"]
    wrong_op = {"match": "ALL", "conditions": [{"field": "vip", "operator": "CONTAINS", "value": text("x")}]}
    made = await tenant.api(CREATE, {"input": {"name": "Bad", "rules": wrong_op}}, token=tenant.owner_token)
    assert made["createSegment"]["userErrors"][0]["code"] == "INVALID_OPERATOR"
    errors = await tenant.api.errors(PREVIEW, {"rules": wrong_op}, token=tenant.owner_token)
    assert errors[0]["extensions"]["code"] == "INVALID_OPERATOR"


@pytest.mark.parametrize("few_members", [10_000, 0], ids=["insert on conflict", "insert where not exists"])
async def test_membership_refresh_computes_joins_and_leaves(tenant: Any, monkeypatch: Any, few_members: int) -> None:
    """Both ways of inserting the joins: ON CONFLICT DO NOTHING while the segment has few
    members, the NOT EXISTS anti-join from FEW_MEMBERS on."""
    monkeypatch.setattr(jobs.segments, "FEW_MEMBERS", few_members)
    made = await tenant.api(
        CREATE,
        {
            "input": {
                "name": "Portugal",
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "country", "operator": "EQUALS", "value": text("PT")}],
                },
            }
        },
        token=tenant.owner_token,
    )
    segment = made["createSegment"]["segment"]
    segment_pk = int(b64decode(segment["id"]).decode().split(":")[1])
    ana = await tenant.contact(name="Ana", country="PT")
    await tenant.contact(name="Cid", country="ES")
    first = await refresh_segment({}, segment_pk)
    assert first is not None and (first["joined"], first["left"], first["members"]) == (1, 0, 1)
    again = await refresh_segment({}, segment_pk)
    assert again is not None and (again["joined"], again["left"], again["members"]) == (0, 0, 1)
    await tenant.api(
        "mutation($input: UpdateContactInput!) { updateContact(input: $input) { userErrors { code } } }",
        {"input": {"id": ana["id"], "country": "ES"}},
        token=tenant.owner_token,
    )
    moved = await refresh_segment({}, segment_pk)
    assert moved is not None and (moved["joined"], moved["left"], moved["members"]) == (0, 1, 0)
    info = await tenant.api(
        "query($id: ID!) { segment(id: $id) { memberCount refreshedAt count } }",
        {"id": segment["id"]},
        token=tenant.owner_token,
    )
    assert info["segment"]["memberCount"] == 0
    assert info["segment"]["count"] == 0
    assert info["segment"]["refreshedAt"] is not None


async def test_conversation_rules_through_the_api(tenant: Any) -> None:
    """conversation_count (with AT_LEAST and a number, optional days and status) and
    last_conversation_at, in the typed input, counted in the database; a refresh after a
    conversation changes moves the contact."""
    ana = await tenant.contact(name="Ana")
    bea = await tenant.contact(name="Bea")
    await tenant.contact(name="Cid")

    async def start(contact: dict[str, Any], status: ConversationStatus, days_ago: int) -> Conversation:
        pk = int(b64decode(contact["id"]).decode().split(":")[1])
        made = await Conversation.create(
            workspace_id=tenant.workspace.id, contact_id=pk, channel_id=tenant.channel.id, status=status
        )
        await Conversation.filter(id=made.id).update(created_at=datetime.now(UTC) - timedelta(days=days_ago))
        return made

    await start(ana, ConversationStatus.OPEN, 1)
    await start(ana, ConversationStatus.RESOLVED, 40)
    old = await start(bea, ConversationStatus.SNOOZED, 20)

    async def preview(*conditions: dict[str, Any]) -> list[str]:
        rules = {"match": "ALL", "conditions": list(conditions)}
        found = (await tenant.api(PREVIEW, {"rules": rules}, token=tenant.owner_token))["previewSegment"]
        return sorted(c["name"] for c in found["contacts"])

    assert await preview({"field": "conversation_count", "operator": "AT_LEAST", "value": {"number": 1}}) == [
        "Ana",
        "Bea",
    ]
    assert await preview({"field": "conversation_count", "operator": "EXACTLY", "value": {"number": 0}}) == ["Cid"]
    assert await preview(
        {"field": "conversation_count", "operator": "AT_LEAST", "value": {"number": 1}, "status": "SNOOZED"}
    ) == ["Bea"]
    assert await preview(
        {"field": "conversation_count", "operator": "AT_MOST", "value": {"number": 1}, "days": 30}
    ) == ["Ana", "Bea", "Cid"]
    assert await preview({"field": "last_conversation_at", "operator": "WITHIN_LAST_DAYS", "days": 7}) == ["Ana"]
    assert await preview({"field": "last_conversation_at", "operator": "MORE_THAN_DAYS_AGO", "days": 7}) == ["Bea"]
    assert await preview({"field": "last_conversation_at", "operator": "IS_NOT_SET"}) == ["Cid"]

    made = await tenant.api(
        CREATE,
        {
            "input": {
                "name": "Snoozed",
                "rules": {
                    "match": "ALL",
                    "conditions": [
                        {
                            "field": "conversation_count",
                            "operator": "AT_LEAST",
                            "value": {"number": 1},
                            "status": "SNOOZED",
                        }
                    ],
                },
            }
        },
        token=tenant.owner_token,
    )
    assert made["createSegment"]["userErrors"] == []
    assert made["createSegment"]["segment"]["rules"]["conditions"] == [
        {"field": "conversation_count", "event_count_op": "at_least", "count": 1, "status": "snoozed"}
    ]
    segment_pk = int(b64decode(made["createSegment"]["segment"]["id"]).decode().split(":")[1])
    first = await refresh_segment({}, segment_pk)
    assert first is not None and (first["joined"], first["members"]) == (1, 1)
    await Conversation.filter(id=old.id).update(status=ConversationStatus.OPEN)
    woke = await refresh_segment({}, segment_pk)
    assert woke is not None and (woke["left"], woke["members"]) == (1, 0)

    bad = {"match": "ALL", "conditions": [{"field": "conversation_count", "operator": "CONTAINS", "value": text("x")}]}
    made = await tenant.api(CREATE, {"input": {"name": "Bad", "rules": bad}}, token=tenant.owner_token)
    assert made["createSegment"]["userErrors"][0]["code"] == "INVALID_OPERATOR"
    assert "conversation" in made["createSegment"]["userErrors"][0]["message"]
