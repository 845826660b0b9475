"""Merging, blocking and deleting contacts."""

from __future__ import annotations

from typing import Any

from models.contacts import Contact, ContactEvent, ContactNote, ContactTag
from tests.conftest import pk

MERGE = """mutation($input: MergeContactsInput!) { mergeContacts(input: $input) {
  contact { id name email phone externalId city tags vip attributes { key value } }
  userErrors { field code message } } }"""
DELETE = """mutation($input: ContactIdInput!) { deleteContact(input: $input) {
  deletedContactId auditRecord { nameHint emailHint phoneHint platform deletedByName deletedAt }
  userErrors { field code } } }"""
TRACK = "mutation($input: TrackEventInput!) { trackEvent(input: $input) { event { id } userErrors { code } } }"
NOTE = "mutation($input: AddContactNoteInput!) { addContactNote(input: $input) { note { id } userErrors { code } } }"
NODE = "query($id: ID!) { node(id: $id) { id } }"


async def test_merge_moves_everything_and_the_primary_wins(tenant: Any) -> None:
    await tenant.api(
        (
            'mutation { createAttributeDefinition(input: {key: "plan", label: "Plan", type: TEXT}) { '
            "userErrors { code } } }"
        ),
        token=tenant.owner_token,
    )
    primary = await tenant.contact(
        name="Primary", email="p@example.com", tags=["a"], attributes=[{"key": "plan", "value": "pro"}]
    )
    secondary = await tenant.contact(
        name="Secondary",
        email="s@example.com",
        phone="+14155550111",
        externalId="ext-s",
        city="Porto",
        vip=True,
        tags=["b"],
        attributes=[{"key": "plan", "value": "free"}],
    )
    await tenant.api(TRACK, {"input": {"contactId": secondary["id"], "name": "signed_up"}}, token=tenant.api_key)
    await tenant.api(NOTE, {"input": {"contactId": secondary["id"], "body": "met at a fair"}}, token=tenant.owner_token)

    merged = (
        await tenant.api(
            MERGE, {"input": {"primaryId": primary["id"], "secondaryId": secondary["id"]}}, token=tenant.owner_token
        )
    )["mergeContacts"]
    assert merged["userErrors"] == []
    c = merged["contact"]
    assert (c["id"], c["name"], c["email"]) == (primary["id"], "Primary", "p@example.com")
    assert (c["phone"], c["externalId"], c["city"], c["vip"]) == ("+14155550111", "ext-s", "Porto", True)
    assert c["tags"] == ["a", "b"]
    assert c["attributes"] == [{"key": "plan", "value": "pro"}]
    assert await ContactEvent.filter(contact_id=pk(primary["id"]), name="signed_up").count() == 1
    assert await ContactNote.filter(contact_id=pk(primary["id"])).count() == 1
    assert (await tenant.api(NODE, {"id": secondary["id"]}, token=tenant.owner_token))["node"] is None

    itself = await tenant.api(
        MERGE, {"input": {"primaryId": primary["id"], "secondaryId": primary["id"]}}, token=tenant.owner_token
    )
    assert itself["mergeContacts"]["userErrors"][0]["field"] == ["secondaryId"]


async def test_delete_removes_everything_and_leaves_a_masked_audit_record(tenant: Any) -> None:
    contact = await tenant.contact(name="Jane Doe", email="jane.doe@example.com", phone="+442071838750", tags=["x"])
    await tenant.api(TRACK, {"input": {"contactId": contact["id"], "name": "viewed_pricing"}}, token=tenant.api_key)
    await tenant.api(NOTE, {"input": {"contactId": contact["id"], "body": "secret note"}}, token=tenant.owner_token)
    deleted = (await tenant.api(DELETE, {"input": {"id": contact["id"]}}, token=tenant.owner_token))["deleteContact"]
    assert deleted["userErrors"] == []
    record = deleted["auditRecord"]
    assert (record["nameHint"], record["emailHint"], record["phoneHint"]) == (
        "J*** D***",
        "j***@e***.com",
        "+44*******750",
    )
    assert record["deletedByName"] == "Olive Owner"
    cid = pk(contact["id"])
    for model in (Contact, ContactEvent, ContactNote, ContactTag):
        assert await model.filter(**({"id": cid} if model is Contact else {"contact_id": cid})).count() == 0
    audit = await tenant.api(
        "{ deletedContacts { edges { node { emailHint deletedByName } } } }", token=tenant.owner_token
    )
    assert audit["deletedContacts"]["edges"] == [
        {"node": {"emailHint": "j***@e***.com", "deletedByName": "Olive Owner"}}
    ]
    again = await tenant.api(DELETE, {"input": {"id": contact["id"]}}, token=tenant.owner_token)
    assert again["deleteContact"]["userErrors"] == [{"field": ["id"], "code": "NOT_FOUND"}]


async def test_block_and_unblock(tenant: Any) -> None:
    contact = await tenant.contact(name="Spammer")
    mutation = "mutation($input: ContactIdInput!) { %s(input: $input) { contact { blocked } userErrors { code } } }"
    assert (await tenant.api(mutation % "blockContact", {"input": {"id": contact["id"]}}, token=tenant.owner_token))[
        "blockContact"
    ]["contact"] == {"blocked": True}
    assert (await tenant.api(mutation % "unblockContact", {"input": {"id": contact["id"]}}, token=tenant.owner_token))[
        "unblockContact"
    ]["contact"] == {"blocked": False}
