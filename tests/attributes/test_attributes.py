"""Attribute definitions through the API: created, validated, listed, reordered, changed,
and deleted with their values."""

from __future__ import annotations

from typing import Any

from models.contacts import Contact

DEFINE = """mutation($input: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $input) {
  attributeDefinition { id key type options position source } userErrors { field code message } } }"""


async def define(tenant: Any, key: str, type_: str, **extra: Any) -> dict[str, Any]:
    data = await tenant.api(
        DEFINE, {"input": {"key": key, "label": key.title(), "type": type_, **extra}}, token=tenant.owner_token
    )
    assert data["createAttributeDefinition"]["userErrors"] == []
    return data["createAttributeDefinition"]["attributeDefinition"]  # type: ignore[no-any-return]


async def test_attribute_definitions_crud_reorder_and_delete_strips_values(tenant: Any) -> None:
    a = await define(tenant, "tier", "TEXT")
    b = await define(tenant, "score", "NUMBER")
    assert b["position"] == a["position"] + 1
    bad = await tenant.api(
        DEFINE, {"input": {"key": "Bad Key", "label": "", "type": "LIST", "options": []}}, token=tenant.owner_token
    )
    assert {tuple(e["field"]) for e in bad["createAttributeDefinition"]["userErrors"]} == {
        ("key",),
        ("label",),
        ("options",),
    }
    taken = await tenant.api(
        DEFINE, {"input": {"key": "email", "label": "E", "type": "TEXT"}}, token=tenant.owner_token
    )
    assert taken["createAttributeDefinition"]["userErrors"][0]["code"] == "TAKEN"

    listing = await tenant.api("{ attributeDefinitions { edges { node { id key } } } }", token=tenant.owner_token)
    ids = [e["node"]["id"] for e in listing["attributeDefinitions"]["edges"]]
    reordered = await tenant.api(
        (
            "mutation($input: ReorderAttributeDefinitionsInput!) { reorderAttributeDefinitions(input: $input) { "
            "attributeDefinitions { key position } userErrors { code } } }"
        ),
        {"input": {"ids": list(reversed(ids))}},
        token=tenant.owner_token,
    )
    assert [d["position"] for d in reordered["reorderAttributeDefinitions"]["attributeDefinitions"]] == list(
        range(len(ids))
    )
    assert reordered["reorderAttributeDefinitions"]["attributeDefinitions"][0]["key"] == "score"

    hidden = await tenant.api(
        (
            "mutation($input: UpdateAttributeDefinitionInput!) { updateAttributeDefinition(input: $input) { "
            "attributeDefinition { visible label } userErrors { code } } }"
        ),
        {"input": {"id": a["id"], "visible": False, "label": "Tier (legacy)"}},
        token=tenant.owner_token,
    )
    assert hidden["updateAttributeDefinition"]["attributeDefinition"] == {"visible": False, "label": "Tier (legacy)"}

    contact = await tenant.contact(
        name="Ken", attributes=[{"key": "tier", "value": "gold"}, {"key": "score", "value": 3}]
    )
    deleted = await tenant.api(
        (
            "mutation($input: ContactIdInput!) { deleteAttributeDefinition(input: $input) { "
            "deletedId userErrors { code } } }"
        ),
        {"input": {"id": a["id"]}},
        token=tenant.owner_token,
    )
    assert deleted["deleteAttributeDefinition"]["deletedId"] == a["id"]
    row = await Contact.get(workspace_id=tenant.workspace.id, name="Ken")
    assert row.attributes == {"score": 3}
    assert contact["id"]
