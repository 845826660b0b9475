"""One contact across channels: contact sessions, the workspace's matching attribute."""

from __future__ import annotations

from typing import Any

from models.channels import ChannelKind
from models.contacts import Contact
from resolvers.workspaces import create_channel

SESSION = """mutation($input: StartContactSessionInput!) { startContactSession(input: $input) {
  token contact { id email name externalId platform ip os attributes { key value } } userErrors { field code message } } }"""
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
    sdk = await create_channel(tenant.workspace.id, ChannelKind.MOBILE_SDK, "iOS app")
    web = await session(tenant, externalId="u-42")
    app = await tenant.api(SESSION, {"input": {"channelKey": sdk.public_key, "externalId": "u-42"}})
    assert app["startContactSession"]["contact"]["id"] == web["contact"]["id"]
    assert await Contact.filter(workspace_id=tenant.workspace.id, external_id="u-42").count() == 1


async def test_identified_user_joins_the_contact_with_the_same_email(tenant: Any) -> None:
    crm = await tenant.contact(name="From CRM", email="pat@example.com")
    opened = await session(tenant, externalId="pat-1", email="PAT@example.com")
    assert opened["contact"]["id"] == crm["id"]
    assert opened["contact"]["externalId"] == "pat-1"
    assert opened["contact"]["name"] == "From CRM"


async def test_anonymous_visitor_cannot_claim_a_contact_by_typing_its_email(tenant: Any) -> None:
    crm = await tenant.contact(name="Victim", email="victim@example.com")
    opened = await session(tenant, email="victim@example.com")
    assert opened["contact"]["id"] != crm["id"]


async def test_matching_by_phone(tenant: Any) -> None:
    changed = await tenant.api(UPDATE_WS, {"input": {"matchingAttribute": "PHONE"}}, token=tenant.owner_token)
    assert changed["updateWorkspace"]["workspace"]["matchingAttribute"] == "PHONE"
    by_phone = await tenant.contact(name="Phone person", phone="+14155550123", email="a@example.com")
    other_email = await tenant.contact(name="Email twin", email="b@example.com")
    opened = await session(tenant, externalId="ph-1", email="b@example.com")
    # E-mail is no longer the matching attribute: no join with the e-mail twin.
    assert opened["contact"]["id"] not in (by_phone["id"], other_email["id"])


async def test_matching_by_custom_attribute(tenant: Any) -> None:
    bad = await tenant.api(UPDATE_WS, {"input": {"matchingAttribute": "CUSTOM", "matchingAttributeKey": "nope"}}, token=tenant.owner_token)
    assert bad["updateWorkspace"]["userErrors"][0]["field"] == ["matchingAttributeKey"]
    # A platform attribute as the matching key: the SDK reports it, and it identifies the device.
    ok = await tenant.api(UPDATE_WS, {"input": {"matchingAttribute": "CUSTOM", "matchingAttributeKey": "device_model"}}, token=tenant.owner_token)
    assert ok["updateWorkspace"]["workspace"] == {"matchingAttribute": "CUSTOM", "matchingAttributeKey": "device_model"}
    first = await session(tenant, externalId="dev-a", platformAttributes={"device_model": "Pixel-9-XYZ"})
    assert first["userErrors"] == []
    await Contact.filter(workspace_id=tenant.workspace.id, external_id="dev-a").update(external_id=None)
    second = await session(tenant, externalId="dev-b", platformAttributes={"device_model": "Pixel-9-XYZ"})
    assert second["contact"]["id"] == first["contact"]["id"]
    assert second["contact"]["externalId"] == "dev-b"


async def test_unknown_channel_and_bad_platform_attributes(tenant: Any) -> None:
    data = await tenant.api(SESSION, {"input": {"channelKey": "ch_nope"}})
    assert data["startContactSession"]["userErrors"][0] == {"field": ["channelKey"], "code": "NOT_FOUND", "message": "No widget or SDK channel has this key."}
    wrong_type = await session(tenant, platformAttributes={"session_count": "many"})
    assert wrong_type["userErrors"][0]["field"] == ["attributes", "0", "value"]
    not_object = await session(tenant, platformAttributes=[1])
    assert not_object["userErrors"][0]["field"] == ["platformAttributes"]
