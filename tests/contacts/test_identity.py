"""One contact across channels: contact sessions, the workspace's matching attribute."""

from __future__ import annotations

from typing import Any

from domain.identity import user_hash
from models.channels import ChannelKind
from models.contacts import Contact
from resolvers.channels import create_channel

SESSION = """mutation($input: StartContactSessionInput!) { startContactSession(input: $input) {
  token contact { id email name externalId platform ip os attributes { key value } }
  userErrors { field code message } } }"""
UPDATE_WS = """mutation($input: UpdateWorkspaceInput!) { updateWorkspace(input: $input) {
  workspace { matchingAttribute matchingAttributeKey } userErrors { field code message } } }"""


async def session(tenant: Any, **fields: Any) -> dict[str, Any]:
    data = await tenant.api(SESSION, {"input": {"channelKey": tenant.channel.public_key, **fields}})
    return data["startContactSession"]  # type: ignore[no-any-return]


async def test_anonymous_visitor_keeps_its_contact_with_the_session_token(tenant: Any) -> None:
    first = await session(tenant, device={"os": "Android", "browser": "Chrome"})
    assert first["userErrors"] == []
    assert first["contact"]["platform"] == "web_widget"
    assert first["contact"]["os"] == "Android"
    assert first["contact"]["ip"] == "203.0.113.7"  # the request's peer, never the client's say-so
    again = await session(tenant, sessionToken=first["token"])
    assert again["contact"]["id"] == first["contact"]["id"]
    fresh = await session(tenant)
    assert fresh["contact"]["id"] != first["contact"]["id"]


async def test_the_session_token_authenticates_the_contact(tenant: Any) -> None:
    opened = await session(tenant, externalId="user-1", name="Sam")
    me = await tenant.api("{ viewer { kind contact { name externalId } } }", token=opened["token"])
    assert me["viewer"] == {"kind": "CONTACT", "contact": {"name": "Sam", "externalId": "user-1"}}
    errors = await tenant.api.errors("{ contacts { edges { node { id } } } }", token=opened["token"])
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_same_external_id_on_another_channel_is_the_same_contact(tenant: Any) -> None:
    sdk = await create_channel(tenant.workspace.id, ChannelKind.MOBILE_SDK, "iOS app", identity_verification=False)
    web = await session(tenant, externalId="u-42")
    app = await tenant.api(SESSION, {"input": {"channelKey": sdk.public_key, "externalId": "u-42"}})
    assert app["startContactSession"]["contact"]["id"] == web["contact"]["id"]
    assert await Contact.filter(workspace_id=tenant.workspace.id, external_id="u-42").count() == 1


async def test_an_sdk_session_never_takes_over_a_contact_by_its_email(tenant: Any) -> None:
    crm = await tenant.contact(name="From CRM", email="pat@example.com")
    # Identity verification signs the external id only: the e-mail is the caller's say-so.
    identified = await session(tenant, externalId="attacker-1", email="PAT@example.com")
    assert identified["contact"]["id"] != crm["id"]
    anonymous = await session(tenant, email="pat@example.com")
    assert anonymous["contact"]["id"] not in (crm["id"], identified["contact"]["id"])


async def test_an_integrator_contact_is_found_by_the_external_id_the_sdk_presents(tenant: Any) -> None:
    crm = await tenant.contact(name="From CRM", email="pat@example.com", externalId="pat-1")
    # The SDK proves the external id (the integrator's server signs it): an unproven one
    # never reaches a contact a trusted writer identified (test_verified_contacts.py).
    opened = await session(tenant, externalId="pat-1", userHash=user_hash(tenant.channel.secret, "pat-1"))
    assert opened["contact"]["id"] == crm["id"]
    assert opened["contact"]["name"] == "From CRM"


async def test_an_anonymous_visitor_who_logs_in_keeps_its_history(tenant: Any) -> None:
    visitor = await session(tenant)
    await tenant.api(
        "mutation($input: TrackEventInput!) { trackEvent(input: $input) { userErrors { code } } }",
        {"input": {"kind": "PAGE_VIEW", "url": "https://example.com/pricing"}},
        token=visitor["token"],
    )
    logged_in = await session(tenant, sessionToken=visitor["token"], externalId="u-77")
    assert logged_in["contact"]["id"] == visitor["contact"]["id"]
    assert logged_in["contact"]["externalId"] == "u-77"


CREATE = (
    "mutation($input: CreateContactInput!) { createContact(input: $input) { "
    "contact { id } userErrors { field code message } } }"
)


async def test_the_matching_attribute_keeps_one_contact_per_email(tenant: Any) -> None:
    first = await tenant.contact(name="Ana", email="ana@example.com")
    again = await tenant.api(CREATE, {"input": {"name": "Ana again", "email": "ANA@example.com"}}, token=tenant.api_key)
    error = again["createContact"]["userErrors"][0]
    assert (error["field"], error["code"]) == (["email"], "TAKEN")
    assert first["id"] in error["message"]


async def test_matching_by_phone(tenant: Any) -> None:
    changed = await tenant.api(UPDATE_WS, {"input": {"matchingAttribute": "PHONE"}}, token=tenant.owner_token)
    assert changed["updateWorkspace"]["workspace"]["matchingAttribute"] == "PHONE"
    await tenant.contact(name="Phone person", phone="+14155550123", email="a@example.com")
    # E-mail no longer matches: a second contact with it is fine; the same phone is not.
    assert (await tenant.api(CREATE, {"input": {"email": "a@example.com"}}, token=tenant.api_key))["createContact"][
        "userErrors"
    ] == []
    clash = await tenant.api(CREATE, {"input": {"phone": "+1 415 555 0123"}}, token=tenant.api_key)
    assert clash["createContact"]["userErrors"][0]["field"] == ["phone"]


async def test_matching_by_custom_attribute(tenant: Any) -> None:
    bad = await tenant.api(
        UPDATE_WS, {"input": {"matchingAttribute": "CUSTOM", "matchingAttributeKey": "nope"}}, token=tenant.owner_token
    )
    assert bad["updateWorkspace"]["userErrors"][0]["field"] == ["matchingAttributeKey"]
    await tenant.api(
        (
            'mutation { createAttributeDefinition(input: {key: "crm_id", label: "CRM id", type: TEXT}) { '
            "userErrors { code } } }"
        ),
        token=tenant.owner_token,
    )
    ok = await tenant.api(
        UPDATE_WS,
        {"input": {"matchingAttribute": "CUSTOM", "matchingAttributeKey": "crm_id"}},
        token=tenant.owner_token,
    )
    assert ok["updateWorkspace"]["workspace"] == {"matchingAttribute": "CUSTOM", "matchingAttributeKey": "crm_id"}
    await tenant.contact(name="One", attributes=[{"key": "crm_id", "value": "SF-001"}])
    clash = await tenant.api(
        CREATE, {"input": {"name": "Two", "attributes": [{"key": "crm_id", "value": "SF-001"}]}}, token=tenant.api_key
    )
    assert clash["createContact"]["userErrors"][0]["code"] == "TAKEN"
    other = await tenant.api(
        CREATE, {"input": {"name": "Three", "attributes": [{"key": "crm_id", "value": "SF-002"}]}}, token=tenant.api_key
    )
    assert other["createContact"]["userErrors"] == []


async def test_unknown_channel_and_bad_platform_attributes(tenant: Any) -> None:
    data = await tenant.api(SESSION, {"input": {"channelKey": "ch_nope"}})
    assert data["startContactSession"]["userErrors"][0] == {
        "field": ["channelKey"],
        "code": "NOT_FOUND",
        "message": "No widget or SDK channel has this key.",
    }
    wrong_type = await session(tenant, platformAttributes={"session_count": "many"})
    assert wrong_type["userErrors"][0]["field"] == ["attributes", "0", "value"]
    not_object = await session(tenant, platformAttributes=[1])
    assert not_object["userErrors"][0]["field"] == ["platformAttributes"]
