"""Identity after the issue-22 security review, tried as an attacker would: trust is per
identifying value (an address a session typed never links, even once a trusted writer
names the contact), a contact's sessions can be ended (endContactSession, a merge, an
agent identifying an anonymous visitor) with their open sockets, merging needs
contacts:identity, TAKEN names the other contact only to whoever may read contacts, and
the matching attribute's definition cannot be deleted. Sockets and revocation against a
real uvicorn."""

from __future__ import annotations

from typing import Any

from domain.identity import user_hash
from models.channels import ChannelKind
from models.conversations import Conversation
from tests.auth.test_revocation import CLOSED_WITHIN, closed_soon
from tests.conftest import LiveServer, Tenant, gql, pk
from tests.conversations.test_inbound import inbound, make_channel
from tests.realtime.wsclient import GraphQLWs

SESSION = """mutation($i: StartContactSessionInput!) { startContactSession(input: $i) {
  token contact { id externalId email } userErrors { field code message } } }"""
START = (
    "mutation($i: StartConversationInput!) { startConversation(input: $i) { "
    "conversation { id } userErrors { field code message } } }"
)
MINE = "{ myConversations { edges { node { id lastMessage { body } } } } }"
MY_MESSAGES = "subscription { myMessages { message { body } } }"
VIEWER = "{ viewer { contact { id externalId } } }"
SYNC = (
    "mutation($i: SyncContactsInput!) { syncContacts(input: $i) { "
    "results { status contactId errors { code message } } userErrors { code } } }"
)
CREATE = (
    "mutation($i: CreateContactInput!) { createContact(input: $i) { "
    "contact { id } userErrors { field code message } } }"
)
UPDATE = (
    "mutation($i: UpdateContactInput!) { updateContact(input: $i) { "
    "contact { id } userErrors { field code message } } }"
)
MERGE = (
    "mutation($i: MergeContactsInput!) { mergeContacts(input: $i) { "
    "contact { id externalId } userErrors { field code message } } }"
)
END = "mutation { endContactSession { ok userErrors { field code message } } }"
KEY = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret userErrors { code } } }"
DEFINE = (
    "mutation($i: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $i) { "
    "attributeDefinition { id } userErrors { code } } }"
)
UNDEFINE = (
    "mutation($i: ContactIdInput!) { deleteAttributeDefinition(input: $i) { userErrors { field code message } } }"
)
WORKSPACE = "mutation($i: UpdateWorkspaceInput!) { updateWorkspace(input: $i) { userErrors { field code message } } }"


async def session(tenant: Tenant, **fields: Any) -> dict[str, Any]:
    opened = (await tenant.api(SESSION, {"i": {"channelKey": tenant.channel.public_key, **fields}}))[
        "startContactSession"
    ]
    assert opened["userErrors"] == [], opened["userErrors"]
    return opened  # type: ignore[no-any-return]


def proof(tenant: Tenant, external_id: str) -> dict[str, str]:
    return {"externalId": external_id, "userHash": user_hash(tenant.channel.secret, external_id)}


async def bodies(tenant: Tenant, token: str) -> list[str]:
    edges = (await tenant.api(MINE, token=token))["myConversations"]["edges"]
    return [e["node"]["lastMessage"]["body"] for e in edges]


# -- F1: an address a session typed stays untrusted ----------------------------------------


async def test_a_typed_address_links_nothing_after_the_crm_syncs_the_contact_by_external_id(
    make_tenant: Any, client: Any
) -> None:
    tenant = await make_tenant("Typed", identity_verification=True)
    # A real user of the customer's app (verified u-1) types someone else's address.
    attacker = await session(tenant, **proof(tenant, "u-1"), email="ceo@bigcorp.example")
    synced = (
        await tenant.api(SYNC, {"i": {"contacts": [{"externalId": "u-1", "name": "Mallory"}]}}, token=tenant.api_key)
    )["syncContacts"]
    assert [(r["status"], r["contactId"]) for r in synced["results"]] == [("UPDATED", attacker["contact"]["id"])]
    mail = await make_channel(tenant, ChannelKind.EMAIL)
    await inbound(
        client,
        mail,
        {
            "from": "ceo@bigcorp.example",
            "subject": "Acquisition",
            "text": "Board-only: we acquire X on Monday",
            "messageId": "<m1@bigcorp.example>",
        },
    )
    assert await bodies(tenant, attacker["token"]) == []
    # The mail went to a contact of its own, and the address is not TAKEN by the typed one.
    assert (
        await Conversation.filter(workspace_id=tenant.workspace.id)
        .exclude(contact_id=pk(attacker["contact"]["id"]))
        .count()
        == 1
    )
    assert (await tenant.api(VIEWER, token=attacker["token"]))["viewer"]["contact"][
        "externalId"
    ] == "u-1"  # the session goes on
    # A CRM row naming the address (no external id) finds the mail's contact, not the typed one.
    mailed = await Conversation.filter(workspace_id=tenant.workspace.id).values_list("contact_id", flat=True)
    real = (
        await tenant.api(
            SYNC, {"i": {"contacts": [{"email": "ceo@bigcorp.example", "name": "The CEO"}]}}, token=tenant.api_key
        )
    )["syncContacts"]
    assert [(r["status"], pk(r["contactId"])) for r in real["results"]] == [("UPDATED", mailed[0])]


async def test_a_typed_address_links_nothing_after_an_agent_writes_another_identity_field(
    tenant: Tenant, client: Any
) -> None:
    user = await session(tenant, **proof(tenant, "u-7"), email="cfo@bigcorp.example")
    updated = (
        await tenant.api(UPDATE, {"i": {"id": user["contact"]["id"], "phone": "+14155550123"}}, token=tenant.api_key)
    )["updateContact"]
    assert updated["userErrors"] == []
    # The workspace matches by e-mail: a trusted contact with the typed address is no clash.
    created = (
        await tenant.api(CREATE, {"i": {"email": "cfo@bigcorp.example", "name": "The CFO"}}, token=tenant.api_key)
    )["createContact"]
    assert created["userErrors"] == []
    mail = await make_channel(tenant, ChannelKind.EMAIL)
    await inbound(
        client,
        mail,
        {"from": "cfo@bigcorp.example", "subject": "Q4", "text": "Numbers inside", "messageId": "<q4@bigcorp.example>"},
    )
    assert await bodies(tenant, user["token"]) == []
    assert await Conversation.filter(contact_id=pk(created["contact"]["id"])).count() == 1
    # Once a trusted writer sets the address itself, it vouches for it: it links.
    vouched = (
        await tenant.api(UPDATE, {"i": {"id": user["contact"]["id"], "email": "me@u7.example"}}, token=tenant.api_key)
    )["updateContact"]
    assert vouched["userErrors"] == []
    await inbound(
        client, mail, {"from": "me@u7.example", "subject": "Hi", "text": "It is me", "messageId": "<u7@u7.example>"}
    )
    assert await bodies(tenant, user["token"]) == ["It is me"]


async def test_a_merge_keeps_a_typed_address_untrusted(tenant: Tenant, client: Any) -> None:
    typed = await session(tenant, **proof(tenant, "u-9"), email="legal@bigcorp.example")
    crm = await tenant.contact(name="Crm Row", phone="+14155550999")
    merged = (
        await tenant.api(
            MERGE, {"i": {"primaryId": crm["id"], "secondaryId": typed["contact"]["id"]}}, token=tenant.owner_token
        )
    )["mergeContacts"]
    assert merged["userErrors"] == []
    mail = await make_channel(tenant, ChannelKind.EMAIL)
    await inbound(
        client,
        mail,
        {"from": "legal@bigcorp.example", "subject": "NDA", "text": "Signed", "messageId": "<nda@bigcorp.example>"},
    )
    assert await Conversation.filter(contact_id=pk(crm["id"])).count() == 0


# -- F3, F9: merging, and ending a contact's sessions ------------------------------------------


async def test_merging_a_trusted_contact_into_a_visitor_needs_contacts_identity_and_ends_the_visitors_sessions(
    server: LiveServer, make_tenant: Any
) -> None:
    tenant = await make_tenant("Merge", identity_verification=True)
    crm = await tenant.contact(name="Real Ada", email="ada@example.com", externalId="crm-42")
    real = await session(tenant, **proof(tenant, "crm-42"))
    assert real["contact"]["id"] == crm["id"]
    await gql(server, START, {"i": {"body": "my private medical question"}}, real["token"])
    attacker = await session(tenant)
    _, agent_token = await tenant.agent("agent")  # a plain agent: no contacts:identity
    variables = {"i": {"primaryId": attacker["contact"]["id"], "secondaryId": crm["id"]}}
    refused = await tenant.api.errors(MERGE, variables, token=agent_token)
    assert [e["extensions"]["code"] for e in refused] == ["FORBIDDEN"]
    assert "contacts:identity" in refused[0]["message"]

    async with GraphQLWs.open(server.ws_url, attacker["token"]) as ws:
        await ws.subscribe(MY_MESSAGES)
        merged = (await gql(server, MERGE, variables, tenant.owner_token))["mergeContacts"]
        assert merged["userErrors"] == [] and merged["contact"]["externalId"] == "crm-42"
        code, _, took = await closed_soon(ws)
        assert code == 4403 and took < CLOSED_WITHIN
    refused_now = await tenant.api.errors(MINE, token=attacker["token"])
    assert [e["extensions"]["code"] for e in refused_now] == ["UNAUTHENTICATED"]
    # The real user proves the id again and reaches the merged contact and its history.
    again = await session(tenant, **proof(tenant, "crm-42"))
    assert again["contact"]["id"] == attacker["contact"]["id"]
    assert await bodies(tenant, again["token"]) == ["my private medical question"]


async def test_merging_crm_managed_values_needs_contacts_crm(tenant: Tenant) -> None:
    assert (
        await tenant.api(
            DEFINE,
            {"i": {"key": "plan", "label": "Plan", "type": "TEXT", "crmManaged": True}},
            token=tenant.owner_token,
        )
    )["createAttributeDefinition"]["userErrors"] == []
    # An agent who may edit identities, in a workspace whose agents may not edit CRM values.
    _, agent_token = await tenant.agent("agent", can_edit_contact_identity=True)
    a = await tenant.contact(name="A")
    b = await tenant.contact(name="B", attributes=[{"key": "plan", "value": "pro"}])
    variables = {"i": {"primaryId": a["id"], "secondaryId": b["id"]}}
    refused = await tenant.api.errors(MERGE, variables, token=agent_token)
    assert [e["extensions"]["code"] for e in refused] == ["FORBIDDEN"] and "contacts:crm" in refused[0]["message"]
    assert (await tenant.api(MERGE, variables, token=tenant.api_key))["mergeContacts"]["userErrors"] == []


async def test_a_contact_session_ends_itself_with_its_sockets(server: LiveServer, tenant: Tenant) -> None:
    user = await session(tenant, **proof(tenant, "u-3"))
    other = await session(tenant, **proof(tenant, "u-4"))
    async with GraphQLWs.open(server.ws_url, user["token"]) as ws:
        await ws.subscribe(MY_MESSAGES)
        assert (await gql(server, END, {}, user["token"]))["endContactSession"] == {"ok": True, "userErrors": []}
        code, _, took = await closed_soon(ws)
        assert code == 4403 and took < CLOSED_WITHIN
    assert [e["extensions"]["code"] for e in await tenant.api.errors(MINE, token=user["token"])] == ["UNAUTHENTICATED"]
    assert (await tenant.api(VIEWER, token=other["token"]))["viewer"]["contact"]["externalId"] == "u-4"  # others' go on
    # The old token resumes nothing; a new login reaches the same contact.
    resumed = await session(tenant, sessionToken=user["token"])
    assert resumed["contact"]["id"] != user["contact"]["id"]
    again = await session(tenant, **proof(tenant, "u-3"))
    assert again["contact"]["id"] == user["contact"]["id"]
    # Agents and API keys have no contact session to end.
    assert [e["extensions"]["code"] for e in await tenant.api.errors(END, token=tenant.api_key)] == ["FORBIDDEN"]


async def test_an_agent_identifying_an_anonymous_visitor_ends_its_sessions(tenant: Tenant) -> None:
    visitor = await session(tenant)
    updated = (
        await tenant.api(
            UPDATE, {"i": {"id": visitor["contact"]["id"], "email": "vic@example.com"}}, token=tenant.owner_token
        )
    )["updateContact"]
    assert updated["userErrors"] == []
    assert [e["extensions"]["code"] for e in await tenant.api.errors(MINE, token=visitor["token"])] == [
        "UNAUTHENTICATED"
    ]


# -- F8: TAKEN names the other contact only to whoever may read contacts ------------------------


async def test_taken_names_the_existing_contact_only_to_a_reader(tenant: Tenant) -> None:
    made = await tenant.api(
        KEY, {"i": {"name": "write-only", "scopes": ["contacts:write", "contacts:identity"]}}, token=tenant.owner_token
    )
    victim = await tenant.contact(name="Secret Customer", email="ceo@bigcorp.example")
    blind = (await tenant.api(CREATE, {"i": {"email": "ceo@bigcorp.example"}}, token=made["createApiKey"]["secret"]))[
        "createContact"
    ]
    assert [(e["field"], e["code"]) for e in blind["userErrors"]] == [(["email"], "TAKEN")]
    assert victim["id"] not in str(blind) and blind["userErrors"][0]["message"].startswith(
        "Another contact already has this email"
    )
    reader = (await tenant.api(CREATE, {"i": {"email": "ceo@bigcorp.example"}}, token=tenant.api_key))["createContact"]
    assert victim["id"] in reader["userErrors"][0]["message"]


# -- F10: the matching attribute's definition stays --------------------------------------------


async def test_the_custom_matching_attribute_cannot_be_deleted(tenant: Tenant) -> None:
    defined = await tenant.api(
        DEFINE, {"i": {"key": "customer_no", "label": "Customer no", "type": "TEXT"}}, token=tenant.owner_token
    )
    gid = defined["createAttributeDefinition"]["attributeDefinition"]["id"]
    switched = await tenant.api(
        WORKSPACE,
        {"i": {"matchingAttribute": "CUSTOM", "matchingAttributeKey": "customer_no"}},
        token=tenant.owner_token,
    )
    assert switched["updateWorkspace"]["userErrors"] == []
    refused = (await tenant.api(UNDEFINE, {"i": {"id": gid}}, token=tenant.owner_token))["deleteAttributeDefinition"][
        "userErrors"
    ]
    assert [(e["field"], e["code"]) for e in refused] == [(["id"], "CONFLICT")] and "matching attribute" in refused[0][
        "message"
    ]
    assert (await tenant.api(WORKSPACE, {"i": {"matchingAttribute": "EMAIL"}}, token=tenant.owner_token))[
        "updateWorkspace"
    ]["userErrors"] == []
    assert (await tenant.api(UNDEFINE, {"i": {"id": gid}}, token=tenant.owner_token))["deleteAttributeDefinition"][
        "userErrors"
    ] == []


async def test_matching_by_external_id_still_creates_and_syncs(tenant: Tenant) -> None:
    switched = await tenant.api(WORKSPACE, {"i": {"matchingAttribute": "EXTERNAL_ID"}}, token=tenant.owner_token)
    assert switched["updateWorkspace"]["userErrors"] == []
    created = (await tenant.api(CREATE, {"i": {"externalId": "x-1", "email": "x@example.com"}}, token=tenant.api_key))[
        "createContact"
    ]
    assert created["userErrors"] == []
    synced = (await tenant.api(SYNC, {"i": {"contacts": [{"externalId": "x-1", "name": "X"}]}}, token=tenant.api_key))[
        "syncContacts"
    ]
    assert [(r["status"], r["contactId"]) for r in synced["results"]] == [("UPDATED", created["contact"]["id"])]
