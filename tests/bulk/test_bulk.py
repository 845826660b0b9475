"""Bulk actions through the API: targets (ids, filter, segment), every action, dry runs,
DELETE's confirmation and audit records, permissions, caps, cancel, and exactly once per
contact across interrupted runs. The task runs in this process (jobs/bulk.run_bulk_action);
tests/bulk/test_bulk_live.py kills a real worker mid-action."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from jobs import bulk as job
from jobs.segments import refresh_segment
from models.bulk import BulkAction
from models.contacts import Contact, ContactChange, ContactTag, DeletedContact
from models.conversations import Conversation, ConversationStatus
from models.job_records import Job
from models.sync import CrmPendingPush
from tests.conftest import Api, Tenant, pk

START = """mutation($i: StartBulkActionInput!) { startBulkAction(input: $i) {
  count bulkAction { id action total done skipped failed target job { id kind status processed total } }
  userErrors { field code message } } }"""
CANCEL = """mutation($i: CancelBulkActionInput!) { cancelBulkAction(input: $i) {
  bulkAction { id job { status error } } userErrors { field code message } } }"""
READ = """query($id: ID!) { node(id: $id) { ... on BulkAction { id action total done skipped failed
  job { id status processed total result error startedBy { id } } } } }"""
CITY = {"match": "ALL", "conditions": [{"field": "city", "operator": "EQUALS", "value": {"text": "Paris"}}]}


def gid(type_name: str, key: int) -> str:
    from core.scoping import encode_global_id

    return encode_global_id(type_name, key)


async def contact(tenant: Tenant, **fields: Any) -> Contact:
    now = datetime.now(UTC)
    return await Contact.create(workspace_id=tenant.workspace.id, last_seen_at=now, first_seen_at=now, **fields)


async def payload(tenant: Tenant, token: str | None = None, **input: Any) -> dict[str, Any]:
    return (await tenant.api(START, {"i": input}, token=token or tenant.owner_token))["startBulkAction"]  # type: ignore[no-any-return]


async def start(tenant: Tenant, token: str | None = None, **input: Any) -> dict[str, Any]:
    found = await payload(tenant, token, **input)
    assert found["userErrors"] == [], found["userErrors"]
    return found  # type: ignore[no-any-return]


async def errors_of(tenant: Tenant, token: str | None = None, **input: Any) -> list[tuple[list[str], str]]:
    found = await payload(tenant, token, **input)
    assert found["bulkAction"] is None
    return [(e["field"], e["code"]) for e in found["userErrors"]]


async def run(app: Any, action_gid: str) -> dict[str, int] | None:
    """What the worker does with the queued action, here."""
    return await job.run_bulk_action({"hub": app.state.hub, "redis": None}, pk(action_gid))


async def read(tenant: Tenant, action_gid: str, token: str | None = None) -> dict[str, Any]:
    return (await tenant.api(READ, {"id": action_gid}, token=token or tenant.owner_token))["node"]  # type: ignore[no-any-return]


async def tags_of(contact_id: int) -> list[str]:
    return sorted(await ContactTag.filter(contact_id=contact_id).values_list("name", flat=True))


async def test_tagging_a_filter_counts_first_then_tags_each_matching_contact_once(app: Any, tenant: Tenant) -> None:
    paris = [await contact(tenant, name=f"P{i}", city="Paris") for i in range(7)]
    london = await contact(tenant, name="L", city="London")
    await ContactTag.create(workspace_id=tenant.workspace.id, contact_id=paris[0].id, name="vip")
    dry = await start(tenant, target={"filter": CITY}, action="TAG", tags=["VIP"], dryRun=True)
    assert dry["count"] == 7 and dry["bulkAction"] is None
    assert await BulkAction.filter(workspace_id=tenant.workspace.id).count() == 0

    started = await start(tenant, target={"filter": CITY}, action="TAG", tags=["VIP", "  Spring  Sale "])
    action = started["bulkAction"]
    assert started["count"] == 7 and action["total"] == 7 and action["action"] == "TAG"
    assert action["job"]["kind"] == "BULK_ACTION" and action["job"]["status"] == "QUEUED"
    changes_before = await ContactChange.filter(contact_id__in=[p.id for p in paris]).count()
    assert await run(app, action["id"]) == {"done": 7, "skipped": 0, "failed": 0}
    for p in paris:
        assert await tags_of(p.id) == ["spring sale", "vip"]
    assert await tags_of(london.id) == []
    # One change-log row per contact, as tagContact writes.
    assert await ContactChange.filter(contact_id__in=[p.id for p in paris]).count() == changes_before + 7
    shown = await read(tenant, action["id"])
    assert (shown["done"], shown["skipped"], shown["failed"]) == (7, 0, 0)
    assert shown["job"]["status"] == "SUCCEEDED" and shown["job"]["processed"] == 7
    assert shown["job"]["result"] == {"done": 7, "skipped": 0, "failed": 0}
    assert shown["job"]["startedBy"]["id"] == gid("Agent", tenant.owner.id)
    # Run again (arq is at least once): nothing more happens.
    assert await run(app, action["id"]) is None
    assert await ContactChange.filter(contact_id__in=[p.id for p in paris]).count() == changes_before + 7

    again = await start(tenant, target={"filter": CITY}, action="TAG", tags=["vip"])
    assert await run(app, again["bulkAction"]["id"]) == {"done": 0, "skipped": 7, "failed": 0}


async def test_interrupted_runs_resume_at_the_mark_and_touch_each_contact_once(
    app: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import settings
    from core.events import Outbox

    people = [await contact(tenant, name=f"C{i}") for i in range(25)]
    monkeypatch.setattr(settings, "bulk_batch_size", 4)
    started = await start(tenant, target={"ids": [gid("Contact", p.id) for p in people]}, action="TAG", tags=["x"])
    action_id = pk(started["bulkAction"]["id"])
    row = await BulkAction.get(id=action_id)
    await Job.filter(id=row.job_id).update(status="running")
    # Two batches commit, then the "worker" dies.
    for _ in range(2):
        assert await job._batch(Outbox(None), action_id, 4) is not None
    row = await BulkAction.get(id=action_id)
    assert row.done == 8 and row.high_water == sorted(p.id for p in people)[7]
    assert await run(app, started["bulkAction"]["id"]) == {"done": 25, "skipped": 0, "failed": 0}
    for p in people:
        assert await ContactChange.filter(contact_id=p.id).count() == 1
        assert await tags_of(p.id) == ["x"]


async def test_untag_set_attribute_and_block(app: Any, tenant: Tenant) -> None:
    define = """mutation($i: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $i) {
      attributeDefinition { id } userErrors { field code message } } }"""
    await tenant.api(define, {"i": {"key": "plan", "label": "Plan", "type": "TEXT"}}, token=tenant.owner_token)
    people = [await contact(tenant, name=f"C{i}") for i in range(3)]
    ids = [gid("Contact", p.id) for p in people]
    await ContactTag.create(workspace_id=tenant.workspace.id, contact_id=people[0].id, name="old")
    untag = await start(tenant, target={"ids": ids}, action="UNTAG", tags=["old"])
    assert await run(app, untag["bulkAction"]["id"]) == {"done": 1, "skipped": 2, "failed": 0}
    assert await tags_of(people[0].id) == []

    assert await errors_of(tenant, target={"ids": ids}, action="SET_ATTRIBUTE", attribute={"key": "nope", "value": 1})
    assert await errors_of(
        tenant, target={"ids": ids}, action="SET_ATTRIBUTE", attribute={"key": "plan", "value": 5}
    ) == [(["attribute", "value"], "INVALID")]
    setting = await start(
        tenant, target={"ids": ids}, action="SET_ATTRIBUTE", attribute={"key": "plan", "value": "gold"}
    )
    assert await run(app, setting["bulkAction"]["id"]) == {"done": 3, "skipped": 0, "failed": 0}
    assert [(await Contact.get(id=p.id)).attributes for p in people] == [{"plan": "gold"}] * 3
    # An agent's bulk edit of a CRM-managed attribute waits to be pushed to the CRM, as updateContact's does.
    await tenant.api(
        define, {"i": {"key": "tier", "label": "Tier", "type": "TEXT", "crmManaged": True}}, token=tenant.owner_token
    )
    crm = await start(tenant, target={"ids": ids}, action="SET_ATTRIBUTE", attribute={"key": "tier", "value": "a"})
    assert await run(app, crm["bulkAction"]["id"]) == {"done": 3, "skipped": 0, "failed": 0}
    pushes = await CrmPendingPush.filter(contact_id__in=[p.id for p in people]).values_list(
        "attribute_keys", "agent_id"
    )
    assert sorted(pushes) == [(["tier"], tenant.owner.id)] * 3

    conversation = await Conversation.create(
        workspace_id=tenant.workspace.id, contact_id=people[1].id, channel_id=tenant.channel.id
    )
    await Contact.filter(id=people[2].id).update(blocked=True)
    block = await start(tenant, target={"ids": ids}, action="BLOCK")
    assert await run(app, block["bulkAction"]["id"]) == {"done": 2, "skipped": 1, "failed": 0}
    assert all([(await Contact.get(id=p.id)).blocked for p in people])
    # Blocking resolves the contact's open conversations, as blockContact does.
    assert (await Conversation.get(id=conversation.id)).status is ConversationStatus.RESOLVED


async def test_resolving_and_assigning_conversations(app: Any, tenant: Tenant) -> None:
    people = [await contact(tenant, name=f"C{i}") for i in range(3)]
    ids = [gid("Contact", p.id) for p in people]
    convs = [
        await Conversation.create(workspace_id=tenant.workspace.id, contact_id=p.id, channel_id=tenant.channel.id)
        for p in people[:2]
    ]
    helper, helper_token = await tenant.agent("agent")
    # An agent below admin runs neither conversation action in bulk.
    assert await errors_of(tenant, helper_token, target={"ids": ids}, action="RESOLVE_CONVERSATIONS") == [
        (["action"], "FORBIDDEN")
    ]
    assign = await start(tenant, target={"ids": ids}, action="ASSIGN_CONVERSATIONS", assigneeId=gid("Agent", helper.id))
    assert await run(app, assign["bulkAction"]["id"]) == {"done": 2, "skipped": 1, "failed": 0}
    assert {(await Conversation.get(id=c.id)).assignee_id for c in convs} == {helper.id}
    resolve = await start(tenant, target={"ids": ids}, action="RESOLVE_CONVERSATIONS")
    assert await run(app, resolve["bulkAction"]["id"]) == {"done": 2, "skipped": 1, "failed": 0}
    assert {(await Conversation.get(id=c.id)).status for c in convs} == {ConversationStatus.RESOLVED}


async def test_delete_by_segment_needs_the_permission_and_the_count_and_leaves_an_audit_record_each(
    app: Any, tenant: Tenant, api: Api
) -> None:
    paris = [await contact(tenant, name=f"Pierre {i}", email=f"p{i}@example.com", city="Paris") for i in range(4)]
    keep = await contact(tenant, name="Lena", city="London")
    segment = (
        await tenant.api(
            "mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } userErrors { code } } }",
            {"i": {"name": "Parisians", "rules": CITY}},
            token=tenant.owner_token,
        )
    )["createSegment"]["segment"]
    await refresh_segment({"redis": None}, pk(segment["id"]))
    target = {"segmentId": segment["id"]}
    assert (await start(tenant, target=target, action="DELETE", dryRun=True))["count"] == 4
    assert await errors_of(tenant, target=target, action="DELETE") == [(["confirm"], "CONFLICT")]
    assert await errors_of(tenant, target=target, action="DELETE", confirm=5) == [(["confirm"], "CONFLICT")]
    # An agent has no contacts:delete; neither has a key without the scope.
    _, agent = await tenant.agent("agent")
    errors = await api.errors(START, {"i": {"target": target, "action": "DELETE", "confirm": 4}}, token=agent)
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]
    create_key = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret userErrors { code } } }"
    writer = (
        await tenant.api(
            create_key, {"i": {"name": "w", "scopes": ["contacts:read", "contacts:write"]}}, token=tenant.owner_token
        )
    )["createApiKey"]["secret"]
    errors = await api.errors(START, {"i": {"target": target, "action": "DELETE", "confirm": 4}}, token=writer)
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]
    assert await Contact.filter(workspace_id=tenant.workspace.id).count() == 5

    started = await start(tenant, target=target, action="DELETE", confirm=4)
    assert await run(app, started["bulkAction"]["id"]) == {"done": 4, "skipped": 0, "failed": 0}
    assert await Contact.filter(id__in=[p.id for p in paris]).count() == 0
    assert await Contact.filter(id=keep.id).exists()
    records = await DeletedContact.filter(workspace_id=tenant.workspace.id).order_by("id")
    assert len(records) == 4
    # Masked hints only, as deleteContact leaves.
    assert all(r.email_hint and r.email_hint not in {p.email for p in paris} for r in records)
    assert all(r.deleted_by_id == tenant.owner.id and r.erased is not None for r in records)


async def test_strangers_sessions_and_agents_without_rights_start_nothing(tenant: Tenant, api: Api) -> None:
    person = await contact(tenant, name="Ann")
    request = {"i": {"target": {"ids": [gid("Contact", person.id)]}, "action": "TAG", "tags": ["x"]}}
    # No credentials at all (a stranger with the widget key has no more).
    errors = await api.errors(START, request)
    assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"]
    session = (
        await tenant.api(
            "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token } }",
            {"i": {"channelKey": tenant.channel.public_key}},
        )
    )["startContactSession"]["token"]
    errors = await api.errors(START, request, token=session)
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]
    create_key = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret userErrors { code } } }"
    reader = (
        await tenant.api(create_key, {"i": {"name": "r", "scopes": ["contacts:read"]}}, token=tenant.owner_token)
    )["createApiKey"]["secret"]
    errors = await api.errors(START, request, token=reader)
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]
    assert await BulkAction.filter(workspace_id=tenant.workspace.id).count() == 0
    # Nor do they read or cancel one.
    action = (await start(tenant, target={"ids": [gid("Contact", person.id)]}, action="TAG", tags=["x"]))["bulkAction"]
    assert (await tenant.api(READ, {"id": action["id"]}, token=session))["node"] is None
    assert (await tenant.api(READ, {"id": action["id"]}, token=reader))["node"] is None
    errors = await api.errors(CANCEL, {"i": {"id": action["id"]}}, token=reader)
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]


async def test_bad_input_names_the_field(tenant: Tenant) -> None:
    person = await contact(tenant, name="Ann")
    one = [gid("Contact", person.id)]
    assert await errors_of(tenant, target={}, action="TAG", tags=["x"]) == [(["target"], "INVALID")]
    assert await errors_of(tenant, target={"ids": one, "filter": CITY}, action="TAG", tags=["x"]) == [
        (["target"], "INVALID")
    ]
    assert await errors_of(tenant, target={"ids": []}, action="TAG", tags=["x"]) == [(["target", "ids"], "REQUIRED")]
    too_many = [gid("Contact", i) for i in range(1, 10_002)]
    assert await errors_of(tenant, target={"ids": too_many}, action="TAG", tags=["x"]) == [
        (["target", "ids"], "TOO_LONG")
    ]
    assert await errors_of(tenant, target={"ids": [gid("Agent", 1)]}, action="TAG", tags=["x"]) == [
        (["target", "ids", "0"], "INVALID")
    ]
    assert await errors_of(tenant, target={"ids": one}, action="TAG") == [(["tags"], "REQUIRED")]
    assert await errors_of(tenant, target={"ids": one}, action="TAG", tags=["x" * 65]) == [(["tags", "0"], "INVALID")]
    assert await errors_of(tenant, target={"ids": one}, action="TAG", tags=[f"t{i}" for i in range(51)]) == [
        (["tags"], "TOO_LONG")
    ]
    bad_rule = {"match": "ALL", "conditions": [{"field": "shoe_size", "operator": "EQUALS", "value": {"number": 3}}]}
    assert [f[0][:2] for f in await errors_of(tenant, target={"filter": bad_rule}, action="TAG", tags=["x"])] == [
        ["target", "filter"]
    ]
    assert await errors_of(tenant, target={"ids": one}, action="ASSIGN_CONVERSATIONS") == [
        (["assigneeId"], "NOT_FOUND")
    ]
    # At most MAX_RUNNING actions queued or running per workspace.
    for _ in range(3):
        await start(tenant, target={"ids": one}, action="TAG", tags=["x"])
    assert await errors_of(tenant, target={"ids": one}, action="TAG", tags=["x"]) == [(["action"], "NOT_ALLOWED")]


async def test_cancel_stops_before_the_next_batch(app: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import settings
    from core.events import Outbox

    people = [await contact(tenant, name=f"C{i}") for i in range(10)]
    monkeypatch.setattr(settings, "bulk_batch_size", 3)
    action = (await start(tenant, target={"ids": [gid("Contact", p.id) for p in people]}, action="TAG", tags=["x"]))[
        "bulkAction"
    ]
    row = await BulkAction.get(id=pk(action["id"]))
    await Job.filter(id=row.job_id).update(status="running")
    assert await job._batch(Outbox(None), row.id, 3) is not None
    cancelled = (await tenant.api(CANCEL, {"i": {"id": action["id"]}}, token=tenant.owner_token))["cancelBulkAction"]
    assert cancelled["userErrors"] == [] and cancelled["bulkAction"]["job"]["status"] == "CANCELLED"
    assert await run(app, action["id"]) is None
    assert await ContactTag.filter(contact_id__in=[p.id for p in people]).count() == 3
    again = (await tenant.api(CANCEL, {"i": {"id": action["id"]}}, token=tenant.owner_token))["cancelBulkAction"]
    assert [(e["field"], e["code"]) for e in again["userErrors"]] == [(["id"], "NOT_ALLOWED")]


async def test_a_contact_the_database_refuses_counts_as_failed_and_the_rest_go_on(app: Any, tenant: Tenant) -> None:
    from tortoise import connections

    from core.db import dialect

    people = [await contact(tenant, name=f"C{i}") for i in range(6)]
    refused = people[2].id
    conn = connections.get("default")
    # A real refusal, by the database: a trigger that aborts any update of one contact.
    if dialect() == "postgres":
        await conn.execute_script(
            "CREATE FUNCTION bulk_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'refused'; END $$; "
            f"CREATE TRIGGER bulk_refuse BEFORE UPDATE ON contacts FOR EACH ROW WHEN (NEW.id = {refused}) "
            "EXECUTE FUNCTION bulk_refuse();"
        )
    else:
        await conn.execute_script(
            f"CREATE TRIGGER bulk_refuse BEFORE UPDATE ON contacts WHEN NEW.id = {refused} "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END;"
        )
    try:
        block = await start(tenant, target={"ids": [gid("Contact", p.id) for p in people]}, action="BLOCK")
        assert await run(app, block["bulkAction"]["id"]) == {"done": 5, "skipped": 0, "failed": 1}
    finally:
        await conn.execute_script(
            "DROP TRIGGER bulk_refuse ON contacts; DROP FUNCTION bulk_refuse();"
            if dialect() == "postgres"
            else "DROP TRIGGER bulk_refuse;"
        )
    assert [(await Contact.get(id=p.id)).blocked for p in people] == [p.id != refused for p in people]
    # The others' changes are recorded once each; the refused contact's not at all.
    assert await ContactChange.filter(contact_id=refused).count() == 0
    assert all([await ContactChange.filter(contact_id=p.id).count() == 1 for p in people if p.id != refused])
    shown = await read(tenant, block["bulkAction"]["id"])
    assert (shown["done"], shown["failed"]) == (5, 1) and shown["job"]["status"] == "SUCCEEDED"
