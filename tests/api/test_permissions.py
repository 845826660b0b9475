"""Who may do what (DESIGN.md, "Tenancy, principals and permissions"), through the API.

Permission checks made with `ctx.require(...)` (a role or scope the principal lacks
altogether) answer with a GraphQL error whose extensions.code is FORBIDDEN and no data;
finer rules about one field or one object (identity fields, CRM-managed and platform
attributes, owners) answer with a userError. Each refusal is paired with the success it
blocks, and with a re-read showing nothing changed.
"""

from __future__ import annotations

import secrets
from typing import Any

from tests.conftest import Api

PASSWORD = "correct horse battery"

CONTACT = """query($id: ID!) { contact(id: $id) {
  id name email city attributes { key value }
} }"""
UPDATE_CONTACT = (
    "mutation($i: UpdateContactInput!) { updateContact(input: $i) { "
    "contact { id name email city } userErrors { field code message } } }"
)
CREATE_CONTACT = (
    "mutation($i: CreateContactInput!) { createContact(input: $i) { "
    "contact { id } userErrors { field code message } } }"
)
DELETE_CONTACT = """mutation($i: ContactIdInput!) { deleteContact(input: $i) {
  deletedContactId auditRecord { id nameHint emailHint deletedByName } userErrors { field code message }
} }"""
DELETED_CONTACTS = "{ deletedContacts { edges { node { id nameHint emailHint deletedByName } } } }"
CREATE_DEFINITION = """mutation($i: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $i) {
  attributeDefinition { id key crmManaged } userErrors { field code message }
} }"""
UPDATE_WORKSPACE = (
    "mutation($i: UpdateWorkspaceInput!) { updateWorkspace(input: $i) { "
    "workspace { agentsCanEditCrmAttributes } userErrors { field code message } } }"
)
UPDATE_AGENT = (
    "mutation($i: UpdateAgentInput!) { updateAgent(input: $i) { agent { id role } userErrors { field code message } } }"
)
CREATE_API_KEY = (
    "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { "
    "apiKey { id scopes } secret userErrors { field code message } } }"
)
REVOKE_API_KEY = (
    "mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { "
    "apiKey { id revokedAt } userErrors { field code message } } }"
)
LOGIN = "mutation($i: LoginInput!) { login(input: $i) { token agent { id email } userErrors { field code message } } }"
SESSION = """mutation($i: StartContactSessionInput!) { startContactSession(input: $i) {
  token contact { id externalId } userErrors { field code message }
} }"""
VIEWER = "{ viewer { kind agent { id email role } contact { id } scopes } }"


def codes(errors: list[dict[str, Any]]) -> list[str]:
    return [e["extensions"]["code"] for e in errors]


def user_errors(payload: dict[str, Any]) -> list[tuple[list[str] | None, str]]:
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


async def forbidden(api: Api, query: str, variables: dict[str, Any] | None, token: str) -> None:
    """The request is refused as a whole: a FORBIDDEN GraphQL error and no data."""
    body = (await api.raw(query, variables, token=token)).json()
    assert body.get("errors"), body
    assert codes(body["errors"]) == ["FORBIDDEN"], body
    assert body["data"] is None, body


async def read_contact(api: Api, tenant: Any, gid: str) -> dict[str, Any] | None:
    return (await api(CONTACT, {"id": gid}, token=tenant.owner_token))["contact"]  # type: ignore[no-any-return]


def attrs(contact: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in contact["attributes"]}


# -- deleting contacts -------------------------------------------------------------------------


async def test_agents_cannot_delete_contacts_admins_can_and_the_audit_is_for_admins(api: Api, make_tenant: Any) -> None:
    tenant = await make_tenant()
    _, agent = await tenant.agent(role="agent")
    admin_model, admin = await tenant.agent(role="admin")
    contact = await tenant.contact(name="Dana Doe", email="dana.doe@example.com")

    await forbidden(api, DELETE_CONTACT, {"i": {"id": contact["id"]}}, agent)
    assert (await read_contact(api, tenant, contact["id"]))["name"] == "Dana Doe"  # type: ignore[index]
    assert (await api(DELETED_CONTACTS, token=tenant.owner_token))["deletedContacts"]["edges"] == []

    deleted = (await api(DELETE_CONTACT, {"i": {"id": contact["id"]}}, token=admin))["deleteContact"]
    assert deleted["userErrors"] == []
    assert deleted["deletedContactId"] == contact["id"]
    assert await read_contact(api, tenant, contact["id"]) is None
    audit = (await api(DELETED_CONTACTS, token=tenant.owner_token))["deletedContacts"]["edges"]
    assert [e["node"] for e in audit] == [deleted["auditRecord"]]
    record = audit[0]["node"]
    assert record["deletedByName"] == admin_model.name
    # Masked hints, never the data itself.
    assert record["nameHint"] and "Dana Doe" not in record["nameHint"]
    assert record["emailHint"] and record["emailHint"] != "dana.doe@example.com"

    await forbidden(api, DELETED_CONTACTS, None, agent)


# -- identity fields ---------------------------------------------------------------------------


async def test_identity_fields_need_their_own_permission(api: Api, make_tenant: Any) -> None:
    tenant = await make_tenant()
    _, plain = await tenant.agent(role="agent")
    _, trusted = await tenant.agent(role="agent", can_edit_contact_identity=True)
    contact = await tenant.contact(name="Ivy Original", email="ivy@example.com", city="Paris")
    gid = contact["id"]

    for name, value in (("name", "Ivy Renamed"), ("email", "other@example.com")):
        payload = (await api(UPDATE_CONTACT, {"i": {"id": gid, name: value}}, token=plain))["updateContact"]
        assert user_errors(payload) == [([name], "FORBIDDEN")]
        assert payload["contact"] is None
    # A refused field refuses the whole update: the city does not change with it.
    payload = (await api(UPDATE_CONTACT, {"i": {"id": gid, "name": "X", "city": "Nice"}}, token=plain))["updateContact"]
    assert user_errors(payload) == [(["name"], "FORBIDDEN")]
    after = await read_contact(api, tenant, gid)
    assert (after["name"], after["email"], after["city"]) == ("Ivy Original", "ivy@example.com", "Paris")  # type: ignore[index]

    payload = (await api(UPDATE_CONTACT, {"i": {"id": gid, "city": "Lyon"}}, token=plain))["updateContact"]
    assert payload["userErrors"] == []
    assert (await read_contact(api, tenant, gid))["city"] == "Lyon"  # type: ignore[index]

    payload = (
        await api(
            UPDATE_CONTACT, {"i": {"id": gid, "name": "Ivy Renamed", "email": "ivy.new@example.com"}}, token=trusted
        )
    )["updateContact"]
    assert payload["userErrors"] == []
    after = await read_contact(api, tenant, gid)
    assert (after["name"], after["email"]) == ("Ivy Renamed", "ivy.new@example.com")  # type: ignore[index]


# -- platform and CRM-managed attributes ---------------------------------------------------------


async def test_platform_attributes_are_written_by_the_channel_only(api: Api, make_tenant: Any) -> None:
    tenant = await make_tenant()
    _, agent = await tenant.agent(role="agent")
    started = (
        await api(
            SESSION, {"i": {"channelKey": tenant.channel.public_key, "platformAttributes": {"app_version": "2.1"}}}
        )
    )["startContactSession"]
    assert started["userErrors"] == []
    gid = started["contact"]["id"]
    assert attrs(await read_contact(api, tenant, gid)) == {"app_version": "2.1"}  # type: ignore[arg-type]

    for who, token in (("owner", tenant.owner_token), ("API key", tenant.api_key), ("agent", agent)):
        payload = (
            await api(
                UPDATE_CONTACT, {"i": {"id": gid, "attributes": [{"key": "app_version", "value": "9.9"}]}}, token=token
            )
        )["updateContact"]
        assert user_errors(payload) == [(["attributes", "0", "value"], "READ_ONLY")], who
        payload = (
            await api(
                UPDATE_CONTACT, {"i": {"id": gid, "attributes": [{"key": "app_version", "value": None}]}}, token=token
            )
        )["updateContact"]
        assert user_errors(payload) == [(["attributes", "0", "value"], "READ_ONLY")], who
        created = (
            await api(CREATE_CONTACT, {"i": {"attributes": [{"key": "app_version", "value": "9.9"}]}}, token=token)
        )["createContact"]
        assert user_errors(created) == [(["attributes", "0", "value"], "READ_ONLY")], who
    assert attrs(await read_contact(api, tenant, gid)) == {"app_version": "2.1"}  # type: ignore[arg-type]

    # The widget updates it on its next session.
    again = (
        await api(
            SESSION,
            {
                "i": {
                    "channelKey": tenant.channel.public_key,
                    "sessionToken": started["token"],
                    "platformAttributes": {"app_version": "2.2"},
                }
            },
        )
    )["startContactSession"]
    assert again["contact"]["id"] == gid
    assert attrs(await read_contact(api, tenant, gid)) == {"app_version": "2.2"}  # type: ignore[arg-type]


async def test_a_contact_session_cannot_write_custom_attributes_as_platform_attributes(
    api: Api, make_tenant: Any
) -> None:
    """platformAttributes is for platform attributes: the widget's user must not set a
    CRM-managed or any other custom value on themselves through it."""
    tenant = await make_tenant()
    for key, crm in (("plan", True), ("nickname", False)):
        made = (
            await api(
                CREATE_DEFINITION,
                {"i": {"key": key, "label": key, "type": "TEXT", "crmManaged": crm}},
                token=tenant.owner_token,
            )
        )["createAttributeDefinition"]
        assert made["userErrors"] == []
    for key in ("plan", "nickname"):
        started = (
            await api(
                SESSION, {"i": {"channelKey": tenant.channel.public_key, "platformAttributes": {key: "enterprise"}}}
            )
        )["startContactSession"]
        assert user_errors(started) == [(["platformAttributes", key], "FORBIDDEN")]
        assert started["token"] is None
    listed = await api("{ contacts { totalCount } }", token=tenant.owner_token)
    assert listed["contacts"]["totalCount"] == 0


async def test_crm_managed_attributes_are_for_integrators_and_for_agents_where_allowed(
    api: Api, make_tenant: Any
) -> None:
    tenant = await make_tenant()
    _, agent = await tenant.agent(role="agent")
    made = (
        await api(
            CREATE_DEFINITION,
            {"i": {"key": "plan", "label": "Plan", "type": "TEXT", "crmManaged": True}},
            token=tenant.owner_token,
        )
    )["createAttributeDefinition"]
    assert made["userErrors"] == [] and made["attributeDefinition"]["crmManaged"] is True
    gid = (await tenant.contact(name="Carl"))["id"]

    def set_plan(value: str) -> dict[str, Any]:
        return {"i": {"id": gid, "attributes": [{"key": "plan", "value": value}]}}

    payload = (await api(UPDATE_CONTACT, set_plan("pro"), token=tenant.api_key))["updateContact"]
    assert payload["userErrors"] == []
    payload = (await api(UPDATE_CONTACT, set_plan("free"), token=agent))["updateContact"]
    assert user_errors(payload) == [(["attributes", "0", "value"], "FORBIDDEN")]
    assert attrs(await read_contact(api, tenant, gid)) == {"plan": "pro"}  # type: ignore[arg-type]

    # Only the owner (or an admin) opens it to agents; the agent cannot do it itself.
    await forbidden(api, UPDATE_WORKSPACE, {"i": {"agentsCanEditCrmAttributes": True}}, agent)
    opened = (await api(UPDATE_WORKSPACE, {"i": {"agentsCanEditCrmAttributes": True}}, token=tenant.owner_token))[
        "updateWorkspace"
    ]
    assert opened == {"workspace": {"agentsCanEditCrmAttributes": True}, "userErrors": []}
    payload = (await api(UPDATE_CONTACT, set_plan("free"), token=agent))["updateContact"]
    assert payload["userErrors"] == []
    assert attrs(await read_contact(api, tenant, gid)) == {"plan": "free"}  # type: ignore[arg-type]

    # ... and closing it again takes effect on the same agent token.
    await api(UPDATE_WORKSPACE, {"i": {"agentsCanEditCrmAttributes": False}}, token=tenant.owner_token)
    payload = (await api(UPDATE_CONTACT, set_plan("pro"), token=agent))["updateContact"]
    assert user_errors(payload) == [(["attributes", "0", "value"], "FORBIDDEN")]


# -- API keys ------------------------------------------------------------------------------------


async def test_api_key_scopes_limit_what_it_does(api: Api, make_tenant: Any) -> None:
    tenant = await make_tenant()
    await tenant.contact(name="Rita Reader")
    made = (
        await api(CREATE_API_KEY, {"i": {"name": "Reader", "scopes": ["contacts:read"]}}, token=tenant.owner_token)
    )["createApiKey"]
    assert made["userErrors"] == [] and made["apiKey"]["scopes"] == ["contacts:read"]
    reader = made["secret"]

    listed = await api("{ contacts { edges { node { name } } } }", token=reader)
    assert [e["node"]["name"] for e in listed["contacts"]["edges"]] == ["Rita Reader"]
    await forbidden(api, CREATE_CONTACT, {"i": {"name": "Nope"}}, reader)
    await forbidden(api, DELETED_CONTACTS, None, reader)
    listed = await api("{ contacts { totalCount } }", token=tenant.owner_token)
    assert listed["contacts"]["totalCount"] == 1
    # The all-scopes key does write.
    assert (await api(CREATE_CONTACT, {"i": {"name": "Yes"}}, token=tenant.api_key))["createContact"][
        "userErrors"
    ] == []

    # Workspace management is no scope a key can have.
    refused = (
        await api(CREATE_API_KEY, {"i": {"name": "Boss", "scopes": ["workspace:manage"]}}, token=tenant.owner_token)
    )["createApiKey"]
    assert user_errors(refused) == [(["scopes", "0"], "INVALID")]


async def test_a_revoked_api_key_is_anonymous(api: Api, make_tenant: Any) -> None:
    tenant = await make_tenant()
    made = (
        await api(
            CREATE_API_KEY,
            {"i": {"name": "Temp", "scopes": ["contacts:read", "contacts:write"]}},
            token=tenant.owner_token,
        )
    )["createApiKey"]
    key = made["secret"]
    assert (await api(VIEWER, token=key))["viewer"]["kind"] == "API_KEY"

    revoked = (await api(REVOKE_API_KEY, {"i": {"id": made["apiKey"]["id"]}}, token=tenant.owner_token))["revokeApiKey"]
    assert revoked["userErrors"] == [] and revoked["apiKey"]["revokedAt"]
    assert (await api(VIEWER, token=key))["viewer"] is None
    assert codes(await api.errors("{ contacts { totalCount } }", token=key)) == ["UNAUTHENTICATED"]
    assert codes(await api.errors(CREATE_CONTACT, {"i": {"name": "Ghost"}}, token=key)) == ["UNAUTHENTICATED"]
    # Other keys of the workspace keep working.
    assert (await api(VIEWER, token=tenant.api_key))["viewer"]["kind"] == "API_KEY"


# -- logging in ----------------------------------------------------------------------------------


async def test_login_does_not_tell_unknown_emails_from_wrong_passwords(api: Api, make_tenant: Any) -> None:
    tenant = await make_tenant()
    email = f"login-{secrets.token_hex(4)}@example.com"
    create = "mutation($i: CreateAgentInput!) { createAgent(input: $i) { agent { id } userErrors { field code } } }"
    made = (await api(create, {"i": {"email": email, "name": "Lou", "password": PASSWORD}}, token=tenant.owner_token))[
        "createAgent"
    ]
    assert made["userErrors"] == []

    wrong_password = (await api(LOGIN, {"i": {"email": email, "password": "not the password"}}))["login"]
    unknown_email = (
        await api(LOGIN, {"i": {"email": f"nobody-{secrets.token_hex(4)}@example.com", "password": PASSWORD}})
    )["login"]
    assert wrong_password == unknown_email
    assert wrong_password["token"] is None and wrong_password["agent"] is None
    assert user_errors(wrong_password) == [(None, "INVALID_CREDENTIALS")]

    ok = (await api(LOGIN, {"i": {"email": email.upper(), "password": PASSWORD}}))["login"]
    assert ok["userErrors"] == [] and ok["agent"] == {"id": made["agent"]["id"], "email": email}
    viewer = await api("{ viewer { agent { email } } }", token=ok["token"])
    assert viewer == {"viewer": {"agent": {"email": email}}}


async def test_login_with_an_email_of_several_workspaces_reveals_nothing_without_the_password(
    api: Api, make_tenant: Any
) -> None:
    email = f"shared-{secrets.token_hex(4)}@example.com"
    first, second = await make_tenant("First"), await make_tenant("Second")
    create = "mutation($i: CreateAgentInput!) { createAgent(input: $i) { agent { id } userErrors { field code } } }"
    for t in (first, second):
        assert (await api(create, {"i": {"email": email, "name": "Sam", "password": PASSWORD}}, token=t.owner_token))[
            "createAgent"
        ]["userErrors"] == []

    wrong = (await api(LOGIN, {"i": {"email": email, "password": "not the password"}}))["login"]
    assert user_errors(wrong) == [(None, "INVALID_CREDENTIALS")]
    ambiguous = (await api(LOGIN, {"i": {"email": email, "password": PASSWORD}}))["login"]
    assert user_errors(ambiguous) == [(["workspace"], "REQUIRED")] and ambiguous["token"] is None
    named = (await api(LOGIN, {"i": {"email": email, "password": PASSWORD, "workspace": second.workspace.slug}}))[
        "login"
    ]
    assert named["userErrors"] == []
    assert (await api("{ workspace { id } viewer { agent { email } } }", token=named["token"]))["viewer"]["agent"][
        "email"
    ] == email
    wrong_named = (
        await api(LOGIN, {"i": {"email": email, "password": "not the password", "workspace": second.workspace.slug}})
    )["login"]
    assert wrong_named == wrong


# -- identity verification -----------------------------------------------------------------------


async def test_identity_verification_needs_the_right_user_hash(api: Api, make_tenant: Any) -> None:
    from domain.identity import user_hash
    from models.contacts import Contact

    tenant = await make_tenant()
    channel = tenant.channel
    channel.identity_verification = True
    await channel.save(update_fields=["identity_verification"])
    external_id = "user-42"

    for bad in ("0" * 64, user_hash(channel.secret, "user-43"), user_hash("another secret", external_id), None):
        started = (
            await api(SESSION, {"i": {"channelKey": channel.public_key, "externalId": external_id, "userHash": bad}})
        )["startContactSession"]
        assert user_errors(started) == [(["userHash"], "IDENTITY_VERIFICATION_FAILED")], bad
        assert started["token"] is None and started["contact"] is None
    assert await Contact.filter(workspace_id=tenant.workspace.id).count() == 0

    good = user_hash(channel.secret, external_id)
    first = (
        await api(SESSION, {"i": {"channelKey": channel.public_key, "externalId": external_id, "userHash": good}})
    )["startContactSession"]
    assert first["userErrors"] == []
    assert first["contact"]["externalId"] == external_id
    second = (
        await api(
            SESSION, {"i": {"channelKey": channel.public_key, "externalId": external_id, "userHash": good.upper()}}
        )
    )["startContactSession"]
    assert second["userErrors"] == []
    assert second["contact"]["id"] == first["contact"]["id"]
    assert await Contact.filter(workspace_id=tenant.workspace.id).count() == 1
    viewer = await api(VIEWER, token=second["token"])
    assert viewer["viewer"]["kind"] == "CONTACT" and viewer["viewer"]["contact"]["id"] == first["contact"]["id"]

    # Without an external id, a verified channel does not let a session claim an identity.
    anonymous = (await api(SESSION, {"i": {"channelKey": channel.public_key, "email": "someone@example.com"}}))[
        "startContactSession"
    ]
    assert user_errors(anonymous) == [(["externalId"], "REQUIRED")]
