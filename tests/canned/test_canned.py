"""Canned responses through the GraphQL API: personal and shared, who edits what,
placeholders checked when saved and filled for a conversation, limits, and who gets
nothing (API keys, contacts' sessions, the widget key, another workspace)."""

from __future__ import annotations

from typing import Any

from strawberry import relay

from tests.conftest import Api, Tenant
from tests.conversations.test_conversations import session, start

ERRORS = "userErrors { field code message }"
FIELDS = "id shortcut body shared owner { id }"
CREATE = f"""mutation($i: CreateCannedResponseInput!) {{ createCannedResponse(input: $i) {{
  cannedResponse {{ {FIELDS} }} {ERRORS} }} }}"""
UPDATE = f"""mutation($i: UpdateCannedResponseInput!) {{ updateCannedResponse(input: $i) {{
  cannedResponse {{ {FIELDS} }} {ERRORS} }} }}"""
DELETE = f"""mutation($i: CannedResponseIdInput!) {{ deleteCannedResponse(input: $i) {{ deletedId {ERRORS} }} }}"""
LIST = f"""query($s: String, $first: Int, $after: String) {{
  cannedResponses(search: $s, first: $first, after: $after) {{
  edges {{ node {{ {FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"""
RENDER = (
    f"""query($id: ID!, $c: ID!) {{ renderCannedResponse(id: $id, conversationId: $c) {{ text missing {ERRORS} }} }}"""
)


async def create(api: Api, token: str, **values: Any) -> dict[str, Any]:
    return (await api(CREATE, {"i": values}, token=token))["createCannedResponse"]  # type: ignore[no-any-return]


async def shortcuts(api: Api, token: str, search: str | None = None) -> list[str]:
    data = await api(LIST, {"s": search}, token=token)
    return [e["node"]["shortcut"] for e in data["cannedResponses"]["edges"]]


async def test_personal_ones_are_their_owners_and_shared_ones_everyones(tenant: Tenant) -> None:
    api = tenant.api
    agent, agent_token = await tenant.agent()
    _, other_token = await tenant.agent()
    mine = await create(api, agent_token, shortcut="Hello", body="Hi {{contact.name}}!")
    assert mine["userErrors"] == [] and mine["cannedResponse"]["shortcut"] == "hello"
    assert mine["cannedResponse"]["owner"]["id"] == str(relay.GlobalID("Agent", str(agent.id)))
    shared = await create(api, tenant.owner_token, shortcut="refund", body="Your refund is on its way.", shared=True)
    assert shared["userErrors"] == []

    assert await shortcuts(api, agent_token) == ["hello", "refund"]
    assert await shortcuts(api, other_token) == ["refund"]
    assert await shortcuts(api, tenant.owner_token) == ["refund"]  # not even an owner sees another's personal ones
    assert await shortcuts(api, agent_token, "on its way") == ["refund"]
    assert await shortcuts(api, agent_token, "HEL") == ["hello"]
    node = "query($id: ID!) { node(id: $id) { id } }"
    assert (await api(node, {"id": mine["cannedResponse"]["id"]}, token=other_token))["node"] is None

    # Agents do not share; they edit only their own personal ones.
    refused = await create(api, agent_token, shortcut="x", body="y", shared=True)
    assert [(e["field"], e["code"]) for e in refused["userErrors"]] == [(["shared"], "FORBIDDEN")]
    share = await api(UPDATE, {"i": {"id": mine["cannedResponse"]["id"], "shared": True}}, token=agent_token)
    assert [e["code"] for e in share["updateCannedResponse"]["userErrors"]] == ["FORBIDDEN"]
    edit = await api(UPDATE, {"i": {"id": shared["cannedResponse"]["id"], "body": "no"}}, token=agent_token)
    assert [(e["field"], e["code"]) for e in edit["updateCannedResponse"]["userErrors"]] == [(["id"], "FORBIDDEN")]
    gone = await api(DELETE, {"i": {"id": shared["cannedResponse"]["id"]}}, token=agent_token)
    assert [e["code"] for e in gone["deleteCannedResponse"]["userErrors"]] == ["FORBIDDEN"]
    stranger = await api(DELETE, {"i": {"id": mine["cannedResponse"]["id"]}}, token=other_token)
    assert [e["code"] for e in stranger["deleteCannedResponse"]["userErrors"]] == ["NOT_FOUND"]

    changed = await api(UPDATE, {"i": {"id": mine["cannedResponse"]["id"], "body": "Hey there"}}, token=agent_token)
    assert changed["updateCannedResponse"]["cannedResponse"]["body"] == "Hey there"
    edited = await api(UPDATE, {"i": {"id": shared["cannedResponse"]["id"], "body": "Done."}}, token=tenant.owner_token)
    assert edited["updateCannedResponse"]["userErrors"] == []
    deleted = await api(DELETE, {"i": {"id": mine["cannedResponse"]["id"]}}, token=agent_token)
    assert deleted["deleteCannedResponse"] == {"deletedId": mine["cannedResponse"]["id"], "userErrors": []}
    assert await shortcuts(api, agent_token) == ["refund"]


async def test_placeholders_are_checked_when_saved_and_filled_for_a_conversation(tenant: Tenant) -> None:
    api = tenant.api
    define = """mutation($i: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $i) {
      userErrors { field code message } } }"""
    defined = await api(define, {"i": {"key": "plan", "label": "Plan", "type": "TEXT"}}, token=tenant.owner_token)
    assert defined["createAttributeDefinition"]["userErrors"] == []

    bad = await create(
        api, tenant.owner_token, shortcut="bad", body="Hi {{contact.nmae}} on {{ contact.attributes.tier }}"
    )
    assert [(e["field"], e["code"]) for e in bad["userErrors"]] == [(["body"], "UNKNOWN_FIELD")] * 2
    assert "{{contact.nmae}}" in bad["userErrors"][0]["message"]
    assert "{{contact.attributes.tier}}" in bad["userErrors"][1]["message"]

    body = "Hi {{ contact.name }}, {{agent.name}} here. Plan: {{contact.attributes.plan}}. Mail: {{contact.email}}"
    saved = await create(api, tenant.owner_token, shortcut="hi", body=body)
    assert saved["userErrors"] == []
    # Updating to an unknown placeholder is refused too, and changes nothing.
    update = await api(
        UPDATE, {"i": {"id": saved["cannedResponse"]["id"], "body": "{{contact.password}}"}}, token=tenant.owner_token
    )
    assert [e["code"] for e in update["updateCannedResponse"]["userErrors"]] == ["UNKNOWN_FIELD"]

    token, contact_id = await session(tenant, "ada", name="Ada <script>")
    conversation = (await start(tenant, token, body="hello"))["conversation"]["id"]
    set_plan = """mutation($i: UpdateContactInput!) { updateContact(input: $i) { userErrors { field code } } }"""
    await api(
        set_plan, {"i": {"id": contact_id, "attributes": [{"key": "plan", "value": "pro"}]}}, token=tenant.owner_token
    )
    rendered = await api(RENDER, {"id": saved["cannedResponse"]["id"], "c": conversation}, token=tenant.owner_token)
    assert rendered["renderCannedResponse"] == {
        "text": "Hi Ada <script>, Olive Owner here. Plan: pro. Mail: ",  # plain text, not HTML
        "missing": ["contact.email"],
        "userErrors": [],
    }


async def test_limits_and_bad_input_are_named(tenant: Tenant) -> None:
    api, token = tenant.api, tenant.owner_token
    cases = [
        ({"shortcut": "", "body": "x"}, ["shortcut"], "INVALID"),
        ({"shortcut": "has space", "body": "x"}, ["shortcut"], "INVALID"),
        ({"shortcut": "x" * 33, "body": "x"}, ["shortcut"], "INVALID"),
        ({"shortcut": "ok", "body": "   "}, ["body"], "REQUIRED"),
        ({"shortcut": "ok", "body": "x" * 5001}, ["body"], "TOO_LONG"),
    ]
    for values, field, code in cases:
        errors = (await create(api, token, **values))["userErrors"]
        assert [(e["field"], e["code"]) for e in errors] == [(field, code)], values
    assert (await create(api, token, shortcut="dup", body="one"))["userErrors"] == []
    errors = (await create(api, token, shortcut="DUP", body="two"))["userErrors"]
    assert [(e["field"], e["code"]) for e in errors] == [(["shortcut"], "TAKEN")]
    long_search = await api.errors(LIST, {"first": 101}, token=token)
    assert long_search[0]["extensions"]["code"] == "INVALID"
    assert await shortcuts(api, token, "d" * 10_000) == []  # cut to 100 characters, finds nothing


async def test_a_personal_limit_per_agent(tenant: Tenant) -> None:
    from models.canned import CannedResponse
    from resolvers.canned import MAX_PERSONAL

    agent, token = await tenant.agent()
    await CannedResponse.bulk_create(
        [
            CannedResponse(workspace_id=tenant.workspace.id, owner_id=agent.id, shortcut=f"s{n}", body="x")
            for n in range(MAX_PERSONAL)
        ]
    )
    errors = (await create(tenant.api, token, shortcut="one-more", body="x"))["userErrors"]
    assert [(e["field"], e["code"]) for e in errors] == [(["shared"], "INVALID")]
    assert (await create(tenant.api, tenant.owner_token, shortcut="one-more", body="x"))["userErrors"] == []


async def test_api_keys_sessions_and_strangers_get_nothing(tenant: Tenant, make_tenant: Any) -> None:
    api = tenant.api
    saved = (await create(api, tenant.owner_token, shortcut="s", body="shared", shared=True))["cannedResponse"]
    token, _ = await session(tenant, "visitor")
    conversation = (await start(tenant, token, body="hello"))["conversation"]["id"]
    for who in (tenant.api_key, token, tenant.channel.public_key):
        assert (await api.raw(LIST, {}, token=who)).json()["data"] is None
        body = (await api.raw(CREATE, {"i": {"shortcut": "x", "body": "y"}}, token=who)).json()
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] in {"FORBIDDEN", "UNAUTHENTICATED"}
        body = (await api.raw(RENDER, {"id": saved["id"], "c": conversation}, token=who)).json()
        assert body["data"] is None
    # Another workspace's owner: its ids are NOT_FOUND, and it lists none of ours.
    other = await make_tenant("Other")
    assert await shortcuts(api, other.owner_token) == []
    found = await api(RENDER, {"id": saved["id"], "c": conversation}, token=other.owner_token)
    assert [e["code"] for e in found["renderCannedResponse"]["userErrors"]] == ["NOT_FOUND"]
    theirs = (await create(api, other.owner_token, shortcut="t", body="theirs"))["cannedResponse"]
    found = await api(RENDER, {"id": theirs["id"], "c": conversation}, token=other.owner_token)
    assert [(e["field"], e["code"]) for e in found["renderCannedResponse"]["userErrors"]] == [
        (["conversationId"], "NOT_FOUND")
    ]
