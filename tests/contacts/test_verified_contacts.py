"""Verified contacts and contact-session writes (issue 22, parts 1 and 2), tried as a hostile
widget visitor would, against a real uvicorn: a session without a userHash never reaches a
contact a CRM identified, an external id it claims gives way to the CRM's, and what a
session says about itself fills empty fields only, through the change log, the
`contactUpdated` event and webhooks."""

from __future__ import annotations

import asyncio
from typing import Any

from core import keys
from domain.identity import user_hash
from models.channels import ChannelKind
from models.contacts import ContactChange
from resolvers.workspaces import create_channel
from tests.conftest import LiveServer, Tenant, gql, pk
from tests.loopback import HttpSink
from tests.proactive.helpers import ANSWER, REPORT, live_message
from tests.realtime.test_subscriptions import channel_of, until_subscribed
from tests.realtime.wsclient import GraphQLWs
from tests.webhooks.conftest import drain, register

SESSION = """mutation($i: StartContactSessionInput!) { startContactSession(input: $i) {
  token contact { id externalId email name } userErrors { field code message } } }"""
START = """mutation($i: StartConversationInput!) { startConversation(input: $i) {
  conversation { id } userErrors { field code message } } }"""
SEND = "mutation($i: SendMessageInput!) { sendMessage(input: $i) { message { id } userErrors { field code message } } }"
MINE = "{ myConversations { edges { node { id lastMessage { body } } } } }"
MY_MESSAGES = "subscription { myMessages { message { body conversationId } } }"
SYNC = """mutation($i: SyncContactsInput!) { syncContacts(input: $i) {
  results { status contactId contact { externalId email name } errors { code message } } userErrors { code } } }"""
VIEWER = "{ viewer { contact { id externalId email name } } }"
CONTACT = "query($id: ID!) { contact(id: $id) { externalId email name } }"
FEED = "query($c: String) { contactsChangedSince(cursor: $c, first: 50) { edges { node { kind contactId contact { email } } } } }"
CONTACT_UPDATED = "subscription($id: ID!) { contactUpdated(id: $id) { kind contactId contact { email } } }"


async def session(server: LiveServer, channel_key: str, **fields: Any) -> dict[str, Any]:
    opened = (await gql(server, SESSION, {"i": {"channelKey": channel_key, **fields}}, ""))["startContactSession"]
    assert opened["userErrors"] == [], opened["userErrors"]
    return opened  # type: ignore[no-any-return]


async def payload(server: LiveServer, query: str, variables: dict[str, Any], token: str, root: str) -> dict[str, Any]:
    found = (await gql(server, query, variables, token))[root]
    assert found["userErrors"] == [], found["userErrors"]
    return found  # type: ignore[no-any-return]


async def changes_after(server: LiveServer, tenant: Tenant, cursor: int) -> list[dict[str, Any]]:
    """contactsChangedSince from `cursor`, once something shows (on PostgreSQL changes are
    held back until they settle, 2 s: resolvers/sync.py SETTLE)."""
    for _ in range(40):
        edges = (await gql(server, FEED, {"c": str(cursor)}, tenant.api_key))["contactsChangedSince"]["edges"]
        if edges:
            return [e["node"] for e in edges]
        await asyncio.sleep(0.25)
    return []


async def test_an_unverified_widget_never_opens_the_crm_contact_of_a_verifying_workspace(server: LiveServer, tenant: Tenant) -> None:
    # The tenant's widget does not verify identities; the workspace's second widget does.
    verifying = await create_channel(tenant.workspace.id, ChannelKind.WEB_WIDGET, "Logged-in app")
    assert verifying.identity_verification  # widgets verify by default
    crm = await tenant.contact(name="Real Customer", email="real@example.com", externalId="crm-42")
    real = await session(server, verifying.public_key, externalId="crm-42", userHash=user_hash(verifying.secret, "crm-42"))
    assert real["contact"]["id"] == crm["id"]
    conversation = (await payload(server, START, {"i": {"body": "My card ends in 1234"}}, real["token"], "startConversation"))["conversation"]

    attacker = await session(server, tenant.channel.public_key, externalId="crm-42")
    assert attacker["contact"]["id"] != crm["id"]
    assert attacker["contact"]["externalId"] is None  # its own anonymous contact; the id is not attached
    assert (await gql(server, MINE, {}, attacker["token"]))["myConversations"]["edges"] == []
    assert (await gql(server, CONTACT, {"id": crm["id"]}, attacker["token"]))["contact"] is None
    # Live: an agent's reply to the real customer never reaches the attacker's socket; the
    # attacker's first message is the one on its own conversation.
    own = (await payload(server, START, {"i": {"body": "hello?"}}, attacker["token"], "startConversation"))["conversation"]
    async with GraphQLWs.open(server.ws_url, attacker["token"]) as ws:
        sub = await ws.subscribe(MY_MESSAGES)
        await until_subscribed(keys.contact_messages_channel(tenant.workspace.id, pk(attacker["contact"]["id"])))
        await payload(server, SEND, {"i": {"conversationId": conversation["id"], "body": "Your refund is on its way"}}, tenant.owner_token, "sendMessage")
        await payload(server, SEND, {"i": {"conversationId": own["id"], "body": "How can we help?"}}, tenant.owner_token, "sendMessage")
        assert (await sub.next_data())["myMessages"]["message"] == {"body": "How can we help?", "conversationId": own["id"]}
    # With the userHash, the real customer still has its contact and conversation.
    again = await session(server, verifying.public_key, externalId="crm-42", userHash=user_hash(verifying.secret, "crm-42"))
    assert again["contact"]["id"] == crm["id"]
    assert [e["node"]["id"] for e in (await gql(server, MINE, {}, again["token"]))["myConversations"]["edges"]] == [conversation["id"]]


async def test_an_external_id_claimed_before_the_crm_syncs_it_goes_to_the_crm(server: LiveServer, tenant: Tenant) -> None:
    # No channel of this workspace verifies: the claim itself is possible, and worthless.
    attacker = await session(server, tenant.channel.public_key, externalId="crm-77", email="pat@example.com")
    assert attacker["contact"]["externalId"] == "crm-77"
    synced = await payload(server, SYNC, {"i": {"contacts": [
        {"externalId": "crm-77", "name": "Pat Real", "email": "pat.real@example.com"},
        {"name": "Pat by e-mail", "email": "pat@example.com"},  # the e-mail the attacker typed links nothing
    ]}}, tenant.api_key, "syncContacts")  # fmt: skip
    assert [r["status"] for r in synced["results"]] == ["CREATED", "CREATED"], synced["results"]
    crm_ids = {r["contactId"] for r in synced["results"]}
    assert attacker["contact"]["id"] not in crm_ids
    # The attacker's contact holds none of the real user's data, and lost the claim.
    mine = (await gql(server, VIEWER, {}, attacker["token"]))["viewer"]["contact"]
    assert mine == {"id": attacker["contact"]["id"], "externalId": None, "email": "pat@example.com", "name": None}
    # Claiming it again gets nothing either; the real user, with a userHash, gets the CRM's contact.
    retry = await session(server, tenant.channel.public_key, externalId="crm-77")
    assert retry["contact"]["id"] not in crm_ids and retry["contact"]["externalId"] is None
    real = await session(server, tenant.channel.public_key, externalId="crm-77", userHash=user_hash(tenant.channel.secret, "crm-77"))
    assert real["contact"] == {"id": synced["results"][0]["contactId"], "externalId": "crm-77", "email": "pat.real@example.com", "name": "Pat Real"}
    # A wrong userHash is an error, not an anonymous session.
    refused = (await gql(server, SESSION, {"i": {"channelKey": tenant.channel.public_key, "externalId": "crm-77", "userHash": "0" * 64}}, ""))
    assert [e["code"] for e in refused["startContactSession"]["userErrors"]] == ["IDENTITY_VERIFICATION_FAILED"]


async def test_answering_a_proactive_message_fills_only_empty_fields_through_the_change_path(
    server: LiveServer, tenant: Tenant, http_sink: HttpSink
) -> None:
    await live_message(tenant, askName=True, askEmail=True)
    await register(tenant, f"{http_sink.url}/crm", ["CONTACT_UPDATED"])

    # A CRM contact with an e-mail, in a verified session: its e-mail and name stay.
    crm = await tenant.contact(name="Kim From CRM", email="kim@example.com", externalId="crm-9")
    kim = await session(server, tenant.channel.public_key, externalId="crm-9", userHash=user_hash(tenant.channel.secret, "crm-9"))
    delivery = (await gql(server, REPORT, {"i": {"url": "https://shop.example/"}}, kim["token"]))["reportPageView"]["delivery"]
    await payload(server, ANSWER, {"i": {"deliveryId": delivery["id"], "name": "Someone Else", "email": "attacker@example.com"}}, kim["token"],
                  "answerProactiveMessage")  # fmt: skip
    assert (await gql(server, CONTACT, {"id": crm["id"]}, tenant.owner_token))["contact"] == {
        "externalId": "crm-9", "email": "kim@example.com", "name": "Kim From CRM"}  # fmt: skip

    # An anonymous visitor without an e-mail: the answer fills it, and everyone hears of it.
    visitor = await session(server, tenant.channel.public_key)
    before = await ContactChange.filter(workspace_id=tenant.workspace.id).order_by("-id").first()
    assert before is not None
    delivery = (await gql(server, REPORT, {"i": {"url": "https://shop.example/"}}, visitor["token"]))["reportPageView"]["delivery"]
    async with GraphQLWs.open(server.ws_url, tenant.owner_token) as ws:
        sub = await ws.subscribe(CONTACT_UPDATED, {"id": visitor["contact"]["id"]})
        await until_subscribed(channel_of(tenant, visitor["contact"]["id"]))
        await payload(server, ANSWER, {"i": {"deliveryId": delivery["id"], "name": "Vic", "email": "vic@example.com"}}, visitor["token"],
                      "answerProactiveMessage")  # fmt: skip
        event = (await sub.next_data())["contactUpdated"]
    assert event == {"kind": "UPDATED", "contactId": visitor["contact"]["id"], "contact": {"email": "vic@example.com"}}
    assert {"kind": "UPDATED", "contactId": visitor["contact"]["id"], "contact": {"email": "vic@example.com"}} in await changes_after(server, tenant, before.id)
    assert "succeeded" in await drain(tenant.workspace.id)
    bodies = [r.json() for r in await http_sink.wait_for(1)]
    updates = [b["data"]["contact"] for b in bodies if b["data"]["contact"]["id"] == visitor["contact"]["id"]]
    assert updates and updates[-1]["email"] == "vic@example.com" and updates[-1]["name"] == "Vic"
