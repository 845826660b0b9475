"""Contacts through the API: fields, validation, attribute values, tags, notes, the list."""

from __future__ import annotations

from typing import Any

import pytest

from models.contacts import Contact
from tests.attributes.test_attributes import define

CREATE = """mutation($input: CreateContactInput!) { createContact(input: $input) {
  contact { id name email phone country externalId vip smsConsent tags attributes { key value } }
  userErrors { field code message } } }"""
UPDATE = """mutation($input: UpdateContactInput!) { updateContact(input: $input) {
  contact { id name email phone city attributes { key value definition { type } } }
  userErrors { field code message } } }"""


async def test_create_normalises_fields(tenant: Any) -> None:
    data = await tenant.api(
        CREATE,
        {
            "input": {
                "name": "  Ada Lovelace ",
                "email": "Ada@Example.COM",
                "phone": "+44 20 7183 8750",
                "country": "gb",
                "externalId": "u-1",
                "vip": True,
                "smsConsent": "SUBSCRIBED",
                "tags": ["VIP ", "beta", "beta"],
            }
        },
        token=tenant.owner_token,
    )
    contact = data["createContact"]["contact"]
    assert contact["name"] == "Ada Lovelace"
    assert contact["email"] == "ada@example.com"
    assert contact["phone"] == "+442071838750"
    assert contact["country"] == "GB"
    assert contact["smsConsent"] == "SUBSCRIBED"
    assert contact["tags"] == ["beta", "vip"]


async def test_bad_fields_are_named_and_nothing_is_stored(tenant: Any) -> None:
    before = await Contact.filter(workspace_id=tenant.workspace.id).count()
    data = await tenant.api(
        CREATE,
        {"input": {"email": "not-an-email", "phone": "12", "country": "Portugal", "timeZone": "Mars/Olympus"}},
        token=tenant.owner_token,
    )
    errors = data["createContact"]["userErrors"]
    assert {tuple(e["field"]) for e in errors} == {("email",), ("phone",), ("country",), ("timeZone",)}
    assert all(e["code"] == "INVALID" for e in errors)
    assert data["createContact"]["contact"] is None
    assert await Contact.filter(workspace_id=tenant.workspace.id).count() == before


async def test_failed_update_keeps_what_was_stored(tenant: Any) -> None:
    contact = await tenant.contact(name="Grace", email="grace@example.com")
    data = await tenant.api(
        UPDATE, {"input": {"id": contact["id"], "name": "Grace Hopper", "email": "broken@"}}, token=tenant.owner_token
    )
    assert data["updateContact"]["userErrors"][0]["field"] == ["email"]
    again = await tenant.api(
        "query($id: ID!) { contact(id: $id) { name email } }", {"id": contact["id"]}, token=tenant.owner_token
    )
    assert again["contact"] == {"name": "Grace", "email": "grace@example.com"}


async def test_external_id_is_unique_per_workspace(tenant: Any, make_tenant: Any) -> None:
    await tenant.contact(externalId="crm-7")
    data = await tenant.api(CREATE, {"input": {"externalId": "crm-7"}}, token=tenant.owner_token)
    assert data["createContact"]["userErrors"][0]["code"] == "TAKEN"
    other = await make_tenant("Other")
    assert (await other.contact(externalId="crm-7"))["id"]


async def test_custom_attributes_are_typed_by_their_definition(tenant: Any) -> None:
    await define(tenant, "plan", "LIST", options=["free", "pro"])
    await define(tenant, "seats", "NUMBER")
    await define(tenant, "renews_on", "DATE")
    await define(tenant, "churned", "BOOLEAN")
    contact = await tenant.contact(name="Linus")
    good = await tenant.api(
        UPDATE,
        {
            "input": {
                "id": contact["id"],
                "attributes": [
                    {"key": "plan", "value": "pro"},
                    {"key": "seats", "value": 12},
                    {"key": "renews_on", "value": "2027-01-31"},
                    {"key": "churned", "value": False},
                ],
            }
        },
        token=tenant.owner_token,
    )
    assert good["updateContact"]["userErrors"] == []
    values = {a["key"]: a["value"] for a in good["updateContact"]["contact"]["attributes"]}
    assert values == {"plan": "pro", "seats": 12, "renews_on": "2027-01-31", "churned": False}

    bad = await tenant.api(
        UPDATE,
        {
            "input": {
                "id": contact["id"],
                "attributes": [
                    {"key": "plan", "value": "enterprise"},
                    {"key": "seats", "value": "12"},
                    {"key": "renews_on", "value": "31/01/2027"},
                    {"key": "churned", "value": "no"},
                    {"key": "nope", "value": 1},
                ],
            }
        },
        token=tenant.owner_token,
    )
    errors = {tuple(e["field"]): e for e in bad["updateContact"]["userErrors"]}
    assert set(errors) == {
        ("attributes", "0", "value"),
        ("attributes", "1", "value"),
        ("attributes", "2", "value"),
        ("attributes", "3", "value"),
        ("attributes", "4", "key"),
    }
    assert "free, pro" in errors[("attributes", "0", "value")]["message"]
    assert errors[("attributes", "4", "key")]["code"] == "NOT_FOUND"

    cleared = await tenant.api(
        UPDATE,
        {"input": {"id": contact["id"], "attributes": [{"key": "seats", "value": None}]}},
        token=tenant.owner_token,
    )
    assert {a["key"] for a in cleared["updateContact"]["contact"]["attributes"]} == {"plan", "renews_on", "churned"}


async def test_tags_add_and_remove(tenant: Any) -> None:
    contact = await tenant.contact(name="Tagged")
    mutation = "mutation($input: TagContactInput!) { %s(input: $input) { contact { tags } userErrors { field code } } }"
    added = await tenant.api(
        mutation % "tagContact",
        {"input": {"contactId": contact["id"], "tags": ["Trial", "  needs   follow-up "]}},
        token=tenant.owner_token,
    )
    assert added["tagContact"]["contact"]["tags"] == ["needs follow-up", "trial"]
    removed = await tenant.api(
        mutation % "untagContact", {"input": {"contactId": contact["id"], "tags": ["TRIAL"]}}, token=tenant.owner_token
    )
    assert removed["untagContact"]["contact"]["tags"] == ["needs follow-up"]
    bad = await tenant.api(
        mutation % "tagContact", {"input": {"contactId": contact["id"], "tags": ["x" * 65]}}, token=tenant.owner_token
    )
    assert bad["tagContact"]["userErrors"] == [{"field": ["tags", "0"], "code": "INVALID"}]


async def test_notes_by_agents(tenant: Any) -> None:
    contact = await tenant.contact(name="Noted")
    agent, token = await tenant.agent()
    add = (
        "mutation($input: AddContactNoteInput!) { addContactNote(input: $input) { "
        "note { id body author { name } } userErrors { field code } } }"
    )
    note = (
        await tenant.api(add, {"input": {"contactId": contact["id"], "body": "Called, wants a demo"}}, token=token)
    )["addContactNote"]["note"]
    assert note["author"]["name"] == agent.name
    empty = await tenant.api(add, {"input": {"contactId": contact["id"], "body": "   "}}, token=token)
    assert empty["addContactNote"]["userErrors"] == [{"field": ["body"], "code": "REQUIRED"}]

    listing = await tenant.api(
        "query($id: ID!) { contact(id: $id) { notes { edges { node { body } } } } }",
        {"id": contact["id"]},
        token=tenant.owner_token,
    )
    assert [e["node"]["body"] for e in listing["contact"]["notes"]["edges"]] == ["Called, wants a demo"]

    _, other = await tenant.agent()
    delete = "mutation($input: ContactIdInput!) { deleteContactNote(input: $input) { deletedId userErrors { code } } }"
    refused = await tenant.api(delete, {"input": {"id": note["id"]}}, token=other)
    assert refused["deleteContactNote"]["userErrors"] == [{"code": "FORBIDDEN"}]
    assert (await tenant.api(delete, {"input": {"id": note["id"]}}, token=token))["deleteContactNote"][
        "deletedId"
    ] == note["id"]


TRACK = """mutation($input: TrackEventInput!) { trackEvent(input: $input) {
  event { id kind name url properties } userErrors { field code message } } }"""


async def test_event_timeline_newest_first_and_paged(tenant: Any) -> None:
    contact = await tenant.contact(name="Visitor")
    for i in range(5):
        await tenant.api(
            TRACK,
            {"input": {"contactId": contact["id"], "kind": "PAGE_VIEW", "url": f"https://shop.example.com/p/{i}"}},
            token=tenant.api_key,
        )
    await tenant.api(
        TRACK,
        {"input": {"contactId": contact["id"], "name": "checkout_started", "properties": {"total": 42}}},
        token=tenant.api_key,
    )
    query = """query($id: ID!, $after: String, $kind: EventKind) { contact(id: $id) {
      events(first: 4, after: $after, kind: $kind) {
      edges { node { name url properties } } pageInfo { hasNextPage endCursor } } } }"""
    first = (await tenant.api(query, {"id": contact["id"]}, token=tenant.owner_token))["contact"]["events"]
    assert first["edges"][0]["node"] == {"name": "checkout_started", "url": None, "properties": {"total": 42}}
    assert [e["node"]["url"] for e in first["edges"][1:]] == [f"https://shop.example.com/p/{i}" for i in (4, 3, 2)]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = (
        await tenant.api(
            query, {"id": contact["id"], "after": first["pageInfo"]["endCursor"]}, token=tenant.owner_token
        )
    )["contact"]["events"]
    assert [e["node"]["url"] for e in rest["edges"]] == ["https://shop.example.com/p/1", "https://shop.example.com/p/0"]
    assert rest["pageInfo"]["hasNextPage"] is False
    views = (await tenant.api(query, {"id": contact["id"], "kind": "PAGE_VIEW"}, token=tenant.owner_token))["contact"][
        "events"
    ]
    assert all(e["node"]["name"] == "page_view" for e in views["edges"])


async def test_event_validation(tenant: Any) -> None:
    contact = await tenant.contact(name="V")
    bad = await tenant.api(
        TRACK,
        {
            "input": {
                "contactId": contact["id"],
                "kind": "PAGE_VIEW",
                "url": "javascript:alert(1)",
                "properties": [1, 2],
                "occurredAt": "2999-01-01T00:00:00+00:00",
            }
        },
        token=tenant.api_key,
    )
    fields = {tuple(e["field"]) for e in bad["trackEvent"]["userErrors"]}
    assert fields == {("url",), ("properties",), ("occurredAt",)}
    huge = await tenant.api(
        TRACK,
        {"input": {"contactId": contact["id"], "name": "big", "properties": {"blob": "x" * 20000}}},
        token=tenant.api_key,
    )
    assert huge["trackEvent"]["userErrors"][0]["code"] == "TOO_LONG"
    nameless = await tenant.api(TRACK, {"input": {"contactId": contact["id"]}}, token=tenant.api_key)
    assert nameless["trackEvent"]["userErrors"][0]["field"] == ["name"]


async def test_contact_list_sorts_by_last_interaction_and_searches(tenant: Any) -> None:
    a = await tenant.contact(name="Alice Zephyr", email="alice@example.com")
    b = await tenant.contact(name="Bob", email="bob@example.org", phone="+14155550100")
    c = await tenant.contact(name="Carol")
    query = "query($s: String) { contacts(first: 10, search: $s) { edges { node { id } } totalCount } }"
    listed = (await tenant.api(query, {}, token=tenant.owner_token))["contacts"]
    assert [e["node"]["id"] for e in listed["edges"]] == [c["id"], b["id"], a["id"]]
    assert listed["totalCount"] == 3
    await tenant.api(TRACK, {"input": {"contactId": a["id"], "name": "login"}}, token=tenant.api_key)
    listed = (await tenant.api(query, {}, token=tenant.owner_token))["contacts"]
    assert [e["node"]["id"] for e in listed["edges"]][0] == a["id"]

    async def search(term: str) -> list[str]:
        return [
            e["node"]["id"]
            for e in (await tenant.api(query, {"s": term}, token=tenant.owner_token))["contacts"]["edges"]
        ]

    assert await search("zeph") == [a["id"]]
    assert await search("EXAMPLE.ORG") == [b["id"]]
    assert await search("5550100") == [b["id"]]
    assert await search("nobody") == []


async def test_search_matches_searchable_attributes_only(tenant: Any) -> None:
    define = (
        "mutation($i: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $i) { userErrors { code } } }"
    )
    for key, kind, searchable, options in (
        ("company", "TEXT", True, []),
        ("tier", "LIST", True, ["gold", "silver"]),
        ("secret_note", "TEXT", False, []),
        ("seats", "NUMBER", True, []),
    ):
        definition = {"key": key, "label": key, "type": kind, "searchable": searchable, "options": options}
        assert (await tenant.api(define, {"i": definition}, token=tenant.owner_token))["createAttributeDefinition"][
            "userErrors"
        ] == []
    acme = await tenant.contact(name="Ann", attributes=[{"key": "company", "value": "ACME 100%_Corp"}])
    gold = await tenant.contact(name="Gil", attributes=[{"key": "tier", "value": "gold"}])
    await tenant.contact(
        name="Sam", attributes=[{"key": "secret_note", "value": "acme rival"}, {"key": "seats", "value": 100}]
    )
    query = "query($s: String) { contacts(first: 10, search: $s) { edges { node { id } } totalCount } }"

    async def search(term: str) -> list[str]:
        found = (await tenant.api(query, {"s": term}, token=tenant.owner_token))["contacts"]
        assert found["totalCount"] == len(found["edges"])
        return [e["node"]["id"] for e in found["edges"]]

    assert await search("acme") == [acme["id"]]  # not Sam: secret_note is not searchable
    assert await search("100%_c") == [acme["id"]]  # % and _ match themselves
    assert await search("0%") == [acme["id"]] and await search("1_0") == []
    assert await search("GOLD") == [gold["id"]]
    assert await search("100") == [acme["id"]]  # numbers are not searched as text
    # Turned off: no longer searched.
    definitions = (
        await tenant.api("{ attributeDefinitions(first: 50) { edges { node { id key } } } }", token=tenant.owner_token)
    )["attributeDefinitions"]["edges"]
    company = next(e["node"]["id"] for e in definitions if e["node"]["key"] == "company")
    updated = await tenant.api(
        "mutation($i: UpdateAttributeDefinitionInput!) { "
        "updateAttributeDefinition(input: $i) { userErrors { code } } }",
        {"i": {"id": company, "searchable": False}},
        token=tenant.owner_token,
    )
    assert updated["updateAttributeDefinition"]["userErrors"] == []
    assert await search("acme") == []


async def test_pagination_both_ways_and_limits(tenant: Any) -> None:
    ids = [(await tenant.contact(name=f"P{i}"))["id"] for i in range(7)]
    newest_first = list(reversed(ids))
    query = """query($first: Int, $after: String, $last: Int, $before: String) {
      contacts(first: $first, after: $after, last: $last, before: $before) {
      edges { node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""
    seen: list[str] = []
    after = None
    while True:
        page = (await tenant.api(query, {"first": 3, "after": after}, token=tenant.owner_token))["contacts"]
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == newest_first
    back = (await tenant.api(query, {"last": 2, "before": after}, token=tenant.owner_token))["contacts"]
    # `after` is the end of the second page (the sixth contact): the two before it.
    assert [e["node"]["id"] for e in back["edges"]] == newest_first[3:5]
    assert back["pageInfo"]["hasPreviousPage"] is True
    errors = await tenant.api.errors(query, {"first": 1000}, token=tenant.owner_token)
    assert "at most 100" in errors[0]["message"]
    errors = await tenant.api.errors(query, {"first": 2, "after": "garbage!"}, token=tenant.owner_token)
    assert errors[0]["message"] == "Invalid cursor."


@pytest.mark.parametrize("field", ["name", "city"])
async def test_huge_inputs_are_refused(tenant: Any, field: str) -> None:
    data = await tenant.api(CREATE, {"input": {field: "x" * 5000}}, token=tenant.owner_token)
    assert data["createContact"]["userErrors"][0]["field"] == [field]


async def test_the_list_reads_whatever_fields_a_fragment_selects(tenant: Any) -> None:
    """The list fetches only the selected columns: fields asked through fragments count."""
    await tenant.contact(name="Frag Ment", email="frag@example.com", tags=["x"], smsConsent="SUBSCRIBED", vip=True)
    doc = """
    fragment Bits on Contact { smsConsent vip ... on Contact { tags createdAt } }
    query { contacts(first: 5, search: "Frag") { edges { node { __typename id ...Bits email } } } }"""
    node = (await tenant.api(doc, token=tenant.owner_token))["contacts"]["edges"][0]["node"]
    assert node["__typename"] == "Contact" and node["email"] == "frag@example.com"
    assert (node["smsConsent"], node["vip"], node["tags"]) == ("SUBSCRIBED", True, ["x"])
    assert node["createdAt"] is not None


async def test_the_database_itself_refuses_a_second_contact_with_one_external_id(tenant: Any) -> None:
    """Not only the resolvers: the unique index exists on every database (SQLite lost it
    once to a table rebuild)."""
    from datetime import UTC, datetime

    from tortoise.exceptions import IntegrityError

    from models.contacts import Contact

    now = datetime.now(UTC)
    await Contact.create(workspace_id=tenant.workspace.id, external_id="dup-1", last_seen_at=now)
    with pytest.raises(IntegrityError):
        await Contact.create(workspace_id=tenant.workspace.id, external_id="dup-1", last_seen_at=now)
