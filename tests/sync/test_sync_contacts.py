"""syncContacts: bulk upsert with per-row results, idempotency keys, CRM-managed attributes,
and a fixed number of statements whatever the batch size."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from core.db import dialect
from models.contacts import Contact, ContactChange, ContactTag
from tests.conftest import Api, Tenant

SYNC = """mutation($i: SyncContactsInput!) { syncContacts(input: $i) {
  replayed created updated unchanged failed
  results {
    index status contactId contact { id externalId email name city vip tags attributes { key value } }
    errors { field code message }
  }
  userErrors { field code message }
} }"""
UPDATE_WS = "mutation($i: UpdateWorkspaceInput!) { updateWorkspace(input: $i) { userErrors { field code message } } }"
DEFINE = (
    "mutation($i: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $i) { userErrors { code } } }"
)


async def sync(
    tenant: Tenant, rows: list[dict[str, Any]], key: str | None = None, token: str | None = None
) -> dict[str, Any]:
    variables = {"i": {"contacts": rows, **({"idempotencyKey": key} if key else {})}}
    payload = (await tenant.api(SYNC, variables, token=token or tenant.api_key))["syncContacts"]
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload  # type: ignore[no-any-return]


def statuses(payload: dict[str, Any]) -> list[str]:
    return [r["status"] for r in payload["results"]]


async def changes(tenant: Tenant) -> int:
    return await ContactChange.filter(workspace_id=tenant.workspace.id).count()


async def test_rows_are_created_updated_or_unchanged_and_a_bad_row_fails_alone(tenant: Tenant) -> None:
    existing = await tenant.contact(name="Ada", email="ada@example.com", city="Paris")
    payload = await sync(
        tenant,
        [
            {"externalId": "crm-1", "email": "grace@example.com", "name": "Grace", "city": "Arlington"},
            {"email": "ADA@example.com", "city": "London"},  # matched by e-mail, the workspace's attribute
            {"externalId": "crm-3", "email": "not an address"},  # invalid: this row only
            {"name": "Nobody"},  # no key to match or create by
            {"externalId": "crm-5", "smsConsent": "SUBSCRIBED", "tags": ["VIP", "crm"]},
        ],
    )
    assert statuses(payload) == ["CREATED", "UPDATED", "ERROR", "ERROR", "CREATED"]
    assert (payload["created"], payload["updated"], payload["unchanged"], payload["failed"]) == (2, 1, 0, 2)
    created, updated, bad, keyless, tagged = payload["results"]
    assert created["contact"]["externalId"] == "crm-1" and created["contact"]["city"] == "Arlington"
    assert updated["contactId"] == existing["id"] and updated["contact"]["city"] == "London"
    assert [(e["field"], e["code"]) for e in bad["errors"]] == [(["contacts", "2", "email"], "INVALID")]
    assert bad["contactId"] is None and bad["contact"] is None
    assert [(e["field"], e["code"]) for e in keyless["errors"]] == [(["contacts", "3"], "REQUIRED")]
    assert "matching attribute (email)" in keyless["errors"][0]["message"]
    assert tagged["contact"]["tags"] == ["crm", "vip"]
    assert await Contact.filter(workspace_id=tenant.workspace.id).count() == 3
    assert not await Contact.filter(external_id="crm-3").exists()

    # The same rows again: nothing differs, nothing is written.
    before = await changes(tenant)
    again = await sync(
        tenant,
        [
            {"externalId": "crm-1", "email": "grace@example.com", "name": "Grace", "city": "Arlington"},
            {"email": "ada@example.com", "city": "London"},
            {"externalId": "crm-5", "smsConsent": "SUBSCRIBED", "tags": ["crm"]},
        ],
    )
    assert statuses(again) == ["UNCHANGED", "UNCHANGED", "UNCHANGED"]
    assert await changes(tenant) == before
    # A new tag is a change; tags are added, never removed.
    more = await sync(tenant, [{"externalId": "crm-5", "tags": ["renewal"]}])
    assert statuses(more) == ["UPDATED"]
    assert more["results"][0]["contact"]["tags"] == ["crm", "renewal", "vip"]


async def test_every_write_is_in_the_change_log_in_order(tenant: Tenant) -> None:
    payload = await sync(tenant, [{"externalId": f"log-{i}", "name": f"Log {i}"} for i in range(5)])
    ids = [r["contactId"] for r in payload["results"]]
    await sync(tenant, [{"externalId": "log-2", "name": "Renamed"}])
    feed = await tenant.api(
        "{ contactsChangedSince(first: 100) { edges { node { kind contactId contact { name } } } } }",
        token=tenant.api_key,
    )
    nodes = [e["node"] for e in feed["contactsChangedSince"]["edges"]]
    assert [(n["kind"], n["contactId"]) for n in nodes] == [("CREATED", i) for i in ids] + [("UPDATED", ids[2])]
    assert nodes[-1]["contact"]["name"] == "Renamed"


async def test_rows_match_by_external_id_first_then_by_the_matching_attribute(tenant: Tenant) -> None:
    web = await tenant.contact(name="Widget visitor", email="kim@example.com")
    other = await tenant.contact(name="Other", email="lee@example.com", externalId="crm-lee")
    payload = await sync(
        tenant,
        [
            # Found by e-mail; it had no external id: it gets this one.
            {"externalId": "crm-kim", "email": "kim@example.com", "name": "Kim"},
            # Found by e-mail, but that contact has another external id: refused.
            {"externalId": "crm-someone", "email": "lee@example.com"},
        ],
    )
    assert statuses(payload) == ["UPDATED", "ERROR"]
    assert payload["results"][0]["contactId"] == web["id"]
    assert payload["results"][0]["contact"]["externalId"] == "crm-kim"
    assert [(e["field"], e["code"]) for e in payload["results"][1]["errors"]] == [(["contacts", "1", "email"], "TAKEN")]
    # Found by external id; moving it onto another contact's e-mail would make two.
    moved = await sync(tenant, [{"city": "Seoul"}, {"externalId": "crm-lee", "email": "kim@example.com"}])
    assert [(e["field"], e["code"]) for e in moved["results"][1]["errors"]] == [(["contacts", "1", "email"], "TAKEN")]
    assert (await Contact.get(external_id="crm-lee", workspace_id=tenant.workspace.id)).email == "lee@example.com"
    assert other["id"]


async def test_a_contact_is_named_once_per_call(tenant: Tenant) -> None:
    await tenant.contact(name="Jo", email="jo@example.com", externalId="crm-jo")
    payload = await sync(
        tenant,
        [
            {"externalId": "dup-1", "name": "First"},
            {"externalId": "dup-1", "name": "Second"},
            {"email": "same@example.com"},
            {"externalId": "dup-3", "email": "same@example.com"},
            {"externalId": "crm-jo"},
            {"email": "jo@example.com", "city": "Oslo"},  # the contact row 4 already names
        ],
    )
    assert statuses(payload) == ["CREATED", "ERROR", "CREATED", "ERROR", "UNCHANGED", "ERROR"]
    assert [e["code"] for r in payload["results"] for e in r["errors"]] == ["CONFLICT", "CONFLICT", "CONFLICT"]
    assert payload["results"][1]["errors"][0]["field"] == ["contacts", "1", "externalId"]
    assert payload["results"][3]["errors"][0]["field"] == ["contacts", "3", "email"]
    assert (await Contact.get(external_id="dup-1", workspace_id=tenant.workspace.id)).name == "First"


async def test_matching_by_phone_and_by_a_custom_attribute(tenant: Tenant) -> None:
    await tenant.api(UPDATE_WS, {"i": {"matchingAttribute": "PHONE"}}, token=tenant.owner_token)
    first = await sync(tenant, [{"phone": "+1 415 555 0100", "name": "Phone"}])
    again = await sync(tenant, [{"phone": "+14155550100", "name": "Phone person"}])
    assert statuses(first) == ["CREATED"] and statuses(again) == ["UPDATED"]
    assert again["results"][0]["contactId"] == first["results"][0]["contactId"]

    await tenant.api(
        DEFINE, {"i": {"key": "sf_id", "label": "Salesforce id", "type": "TEXT"}}, token=tenant.owner_token
    )
    await tenant.api(DEFINE, {"i": {"key": "seats", "label": "Seats", "type": "NUMBER"}}, token=tenant.owner_token)
    await tenant.api(
        UPDATE_WS, {"i": {"matchingAttribute": "CUSTOM", "matchingAttributeKey": "sf_id"}}, token=tenant.owner_token
    )
    rows = [
        {"name": f"Account {i}", "attributes": [{"key": "sf_id", "value": f"SF-{i}"}, {"key": "seats", "value": i}]}
        for i in range(3)
    ]
    created = await sync(tenant, rows)
    assert statuses(created) == ["CREATED"] * 3
    rows[1]["attributes"][1]["value"] = 42
    updated = await sync(tenant, rows)
    assert statuses(updated) == ["UNCHANGED", "UPDATED", "UNCHANGED"]
    assert updated["results"][1]["contactId"] == created["results"][1]["contactId"]
    assert {"key": "seats", "value": 42} in updated["results"][1]["contact"]["attributes"]


async def test_crm_managed_attributes_are_written_by_api_keys_and_agents_only_where_allowed(tenant: Tenant) -> None:
    await tenant.api(
        DEFINE, {"i": {"key": "plan", "label": "Plan", "type": "TEXT", "crmManaged": True}}, token=tenant.owner_token
    )
    _, agent_token = await tenant.agent()
    row = {"externalId": "crm-plan", "attributes": [{"key": "plan", "value": "gold"}]}
    by_agent = await sync(tenant, [row], token=agent_token)
    assert [(e["field"], e["code"]) for e in by_agent["results"][0]["errors"]] == [
        (["contacts", "0", "attributes", "0", "value"], "FORBIDDEN")
    ]
    by_key = await sync(tenant, [row])
    assert statuses(by_key) == ["CREATED"]
    await tenant.api(UPDATE_WS, {"i": {"agentsCanEditCrmAttributes": True}}, token=tenant.owner_token)
    _, allowed_token = await tenant.agent()
    allowed = await sync(tenant, [{**row, "attributes": [{"key": "plan", "value": "platinum"}]}], token=allowed_token)
    assert statuses(allowed) == ["UPDATED"]
    # Platform attributes stay the channel's.
    platform = await sync(
        tenant, [{"externalId": "crm-plan", "attributes": [{"key": "browser_version", "value": "1"}]}]
    )
    assert platform["results"][0]["errors"][0]["code"] in ("READ_ONLY", "NOT_FOUND")


async def test_permissions_and_limits(tenant: Tenant, api: Api) -> None:
    key = await tenant.api(
        'mutation { createApiKey(input: {name: "reader", scopes: ["contacts:read"]}) { secret } }',
        token=tenant.owner_token,
    )
    body = (await api.raw(SYNC, {"i": {"contacts": [{"externalId": "x"}]}}, token=key["createApiKey"]["secret"])).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    too_many = (
        await tenant.api(
            SYNC, {"i": {"contacts": [{"externalId": f"r{i}"} for i in range(1001)]}}, token=tenant.api_key
        )
    )["syncContacts"]
    assert [(e["field"], e["code"]) for e in too_many["userErrors"]] == [(["contacts"], "TOO_LONG")]
    assert not await Contact.filter(workspace_id=tenant.workspace.id, external_id="r0").exists()


# -- idempotency ---------------------------------------------------------------------------


async def test_the_same_idempotency_key_replays_the_first_result(tenant: Tenant, make_tenant: Any) -> None:
    rows = [{"externalId": "idem-1", "name": "One"}, {"externalId": "idem-2", "email": "bad"}]
    first = await sync(tenant, rows, key="batch-2026-11-22")
    assert statuses(first) == ["CREATED", "ERROR"] and first["replayed"] is False
    written = await changes(tenant)
    # Meanwhile an agent renames the contact: a replay must not put the old name back.
    await tenant.api(
        "mutation($i: UpdateContactInput!) { updateContact(input: $i) { userErrors { code } } }",
        {"i": {"id": first["results"][0]["contactId"], "name": "Renamed"}},
        token=tenant.owner_token,
    )
    replay = await sync(tenant, rows, key="batch-2026-11-22")
    assert replay["replayed"] is True
    assert statuses(replay) == ["CREATED", "ERROR"]
    assert replay["results"][0]["contactId"] == first["results"][0]["contactId"]
    assert replay["results"][1]["errors"] == first["results"][1]["errors"]
    assert replay["results"][0]["contact"]["name"] == "Renamed"
    assert await changes(tenant) == written + 1  # the agent's rename only
    # The same key with other rows is a client bug: refused, nothing applied.
    other = await tenant.api(
        SYNC,
        {"i": {"contacts": [{"externalId": "idem-3"}], "idempotencyKey": "batch-2026-11-22"}},
        token=tenant.api_key,
    )
    assert [(e["field"], e["code"]) for e in other["syncContacts"]["userErrors"]] == [(["idempotencyKey"], "CONFLICT")]
    assert not await Contact.filter(external_id="idem-3").exists()
    # Keys are per workspace.
    elsewhere = await make_tenant("Elsewhere")
    theirs = await sync(elsewhere, rows, key="batch-2026-11-22")
    assert theirs["replayed"] is False and statuses(theirs) == ["CREATED", "ERROR"]


async def test_a_concurrent_duplicate_applies_once(tenant: Tenant) -> None:
    rows = [{"externalId": f"race-{i}", "name": f"Race {i}"} for i in range(50)]
    one, two = await asyncio.gather(sync(tenant, rows, key="race"), sync(tenant, rows, key="race"))
    assert sorted([one["replayed"], two["replayed"]]) == [False, True]
    assert statuses(one) == statuses(two) == ["CREATED"] * 50
    assert [r["contactId"] for r in one["results"]] == [r["contactId"] for r in two["results"]]
    assert await Contact.filter(workspace_id=tenant.workspace.id).count() == 50
    assert await changes(tenant) == 50


async def test_concurrent_calls_with_different_keys_never_duplicate_a_contact(tenant: Tenant) -> None:
    rows = [{"externalId": f"both-{i}", "email": f"both{i}@example.com"} for i in range(30)]
    one, two = await asyncio.gather(sync(tenant, rows, key="a"), sync(tenant, rows, key="b"))
    assert sorted([statuses(one)[0], statuses(two)[0]]) == ["CREATED", "UNCHANGED"]
    assert await Contact.filter(workspace_id=tenant.workspace.id).count() == 30


# -- cost ----------------------------------------------------------------------------------


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.statements.append(record.getMessage())


@pytest.fixture
def statements() -> Iterator[_Counter]:
    counter = _Counter()
    logger = logging.getLogger("tortoise.db_client")
    level = logger.level
    logger.setLevel(logging.DEBUG)  # setLevel, not .level: it clears the enabled-for cache
    logger.addHandler(counter)
    yield counter
    logger.removeHandler(counter)
    logger.setLevel(level)


async def test_a_thousand_rows_take_a_fixed_number_of_statements(tenant: Tenant, statements: _Counter) -> None:
    await tenant.api(
        DEFINE, {"i": {"key": "tier", "label": "Tier", "type": "LIST", "options": ["a", "b"]}}, token=tenant.owner_token
    )
    await sync(tenant, [{"externalId": f"bulk-{i}", "name": f"Bulk {i}"} for i in range(500)])
    rows = [
        {
            "externalId": f"bulk-{i}",
            "name": f"Bulk {i}",
            "vip": i % 3 == 0,
            "tags": ["bulk"],
            "attributes": [{"key": "tier", "value": "a" if i % 2 else "b"}],
        }
        for i in range(1000)
    ]
    statements.statements.clear()
    payload = await sync(tenant, rows)
    assert (payload["created"], payload["updated"]) == (500, 500)
    # Reads: principal, workspace, definitions, the batch's contacts, their tags; writes: one
    # statement per kind. The response's contacts and tags are batched loads too.
    assert 10 < len(statements.statements) < 40, "\n".join(s[:120] for s in statements.statements)
    assert await ContactTag.filter(workspace_id=tenant.workspace.id, name="bulk").count() == 1000
    assert await changes(tenant) == 1500
    if dialect() == "postgres":
        assert any("pg_advisory_xact_lock" in s for s in statements.statements), "\n".join(
            s[:100] for s in statements.statements
        )


async def test_a_sync_never_reaches_another_workspaces_contacts(tenant: Tenant, make_tenant: Any) -> None:
    other = await make_tenant("Other")
    theirs = await other.contact(name="Theirs", email="shared@example.com", externalId="crm-shared")
    payload = await sync(
        tenant, [{"externalId": "crm-shared", "name": "Mine"}, {"email": "shared@example.com", "city": "Pwned"}]
    )
    assert statuses(payload) == ["CREATED", "CREATED"]
    assert theirs["id"] not in [r["contactId"] for r in payload["results"]]
    found = await Contact.get(workspace_id=other.workspace.id, external_id="crm-shared")
    assert (found.name, found.city) == ("Theirs", None)
