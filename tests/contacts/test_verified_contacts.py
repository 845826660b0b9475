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
from models.conversations import Conversation
from resolvers.channels import create_channel
from resolvers.workspaces import create_workspace
from tests.conftest import LiveServer, Tenant, gql, pk
from tests.conversations.test_inbound import inbound, make_channel
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
FEED = (
    "query($c: String) { contactsChangedSince(cursor: $c, first: 50) { "
    "edges { node { kind contactId contact { email } } } } }"
)
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


async def test_an_unverified_widget_never_opens_the_crm_contact_of_a_verifying_workspace(
    server: LiveServer, tenant: Tenant
) -> None:
    # The tenant's widget does not verify identities; the workspace's second widget does.
    verifying = await create_channel(tenant.workspace.id, ChannelKind.WEB_WIDGET, "Logged-in app")
    assert verifying.identity_verification  # widgets verify by default
    crm = await tenant.contact(name="Real Customer", email="real@example.com", externalId="crm-42")
    real = await session(
        server, verifying.public_key, externalId="crm-42", userHash=user_hash(verifying.secret, "crm-42")
    )
    assert real["contact"]["id"] == crm["id"]
    conversation = (
        await payload(server, START, {"i": {"body": "My card ends in 1234"}}, real["token"], "startConversation")
    )["conversation"]

    attacker = await session(server, tenant.channel.public_key, externalId="crm-42")
    assert attacker["contact"]["id"] != crm["id"]
    assert attacker["contact"]["externalId"] is None  # its own anonymous contact; the id is not attached
    assert (await gql(server, MINE, {}, attacker["token"]))["myConversations"]["edges"] == []
    assert (await gql(server, CONTACT, {"id": crm["id"]}, attacker["token"]))["contact"] is None
    # Live: an agent's reply to the real customer never reaches the attacker's socket; the
    # attacker's first message is the one on its own conversation.
    own = (await payload(server, START, {"i": {"body": "hello?"}}, attacker["token"], "startConversation"))[
        "conversation"
    ]
    async with GraphQLWs.open(server.ws_url, attacker["token"]) as ws:
        sub = await ws.subscribe(MY_MESSAGES)
        await until_subscribed(keys.contact_messages_channel(tenant.workspace.id, pk(attacker["contact"]["id"])))
        await payload(
            server,
            SEND,
            {"i": {"conversationId": conversation["id"], "body": "Your refund is on its way"}},
            tenant.owner_token,
            "sendMessage",
        )
        await payload(
            server,
            SEND,
            {"i": {"conversationId": own["id"], "body": "How can we help?"}},
            tenant.owner_token,
            "sendMessage",
        )
        assert (await sub.next_data())["myMessages"]["message"] == {
            "body": "How can we help?",
            "conversationId": own["id"],
        }
    # With the userHash, the real customer still has its contact and conversation.
    again = await session(
        server, verifying.public_key, externalId="crm-42", userHash=user_hash(verifying.secret, "crm-42")
    )
    assert again["contact"]["id"] == crm["id"]
    assert [e["node"]["id"] for e in (await gql(server, MINE, {}, again["token"]))["myConversations"]["edges"]] == [
        conversation["id"]
    ]


async def test_an_external_id_claimed_before_the_crm_syncs_it_goes_to_the_crm(
    server: LiveServer, tenant: Tenant
) -> None:
    # No channel of this workspace verifies: the claim itself is possible, and worthless.
    attacker = await session(server, tenant.channel.public_key, externalId="crm-77", email="pat@example.com")
    assert attacker["contact"]["externalId"] == "crm-77"
    synced = await payload(
        server,
        SYNC,
        {
            "i": {
                "contacts": [
                    {"externalId": "crm-77", "name": "Pat Real", "email": "pat.real@example.com"},
                    {
                        "name": "Pat by e-mail",
                        "email": "pat@example.com",
                    },  # the e-mail the attacker typed links nothing
                ]
            }
        },
        tenant.api_key,
        "syncContacts",
    )
    assert [r["status"] for r in synced["results"]] == ["CREATED", "CREATED"], synced["results"]
    crm_ids = {r["contactId"] for r in synced["results"]}
    assert attacker["contact"]["id"] not in crm_ids
    # The attacker's contact holds none of the real user's data, and lost the claim.
    mine = (await gql(server, VIEWER, {}, attacker["token"]))["viewer"]["contact"]
    assert mine == {"id": attacker["contact"]["id"], "externalId": None, "email": "pat@example.com", "name": None}
    # Claiming it again gets nothing either; the real user, with a userHash, gets the CRM's contact.
    retry = await session(server, tenant.channel.public_key, externalId="crm-77")
    assert retry["contact"]["id"] not in crm_ids and retry["contact"]["externalId"] is None
    real = await session(
        server, tenant.channel.public_key, externalId="crm-77", userHash=user_hash(tenant.channel.secret, "crm-77")
    )
    assert real["contact"] == {
        "id": synced["results"][0]["contactId"],
        "externalId": "crm-77",
        "email": "pat.real@example.com",
        "name": "Pat Real",
    }
    # A wrong userHash is an error, not an anonymous session.
    refused = await gql(
        server,
        SESSION,
        {"i": {"channelKey": tenant.channel.public_key, "externalId": "crm-77", "userHash": "0" * 64}},
        "",
    )
    assert [e["code"] for e in refused["startContactSession"]["userErrors"]] == ["IDENTITY_VERIFICATION_FAILED"]


async def test_answering_a_proactive_message_fills_only_empty_fields_through_the_change_path(
    server: LiveServer, tenant: Tenant, http_sink: HttpSink
) -> None:
    await live_message(tenant, askName=True, askEmail=True)
    await register(tenant, f"{http_sink.url}/crm", ["CONTACT_UPDATED"])

    # A CRM contact with an e-mail, in a verified session: its e-mail and name stay.
    crm = await tenant.contact(name="Kim From CRM", email="kim@example.com", externalId="crm-9")
    kim = await session(
        server, tenant.channel.public_key, externalId="crm-9", userHash=user_hash(tenant.channel.secret, "crm-9")
    )
    delivery = (await gql(server, REPORT, {"i": {"url": "https://shop.example/"}}, kim["token"]))["reportPageView"][
        "delivery"
    ]
    await payload(
        server,
        ANSWER,
        {"i": {"deliveryId": delivery["id"], "name": "Someone Else", "email": "attacker@example.com"}},
        kim["token"],
        "answerProactiveMessage",
    )
    assert (await gql(server, CONTACT, {"id": crm["id"]}, tenant.owner_token))["contact"] == {
        "externalId": "crm-9",
        "email": "kim@example.com",
        "name": "Kim From CRM",
    }

    # An anonymous visitor without an e-mail: the answer fills it, and everyone hears of it.
    visitor = await session(server, tenant.channel.public_key)
    before = await ContactChange.filter(workspace_id=tenant.workspace.id).order_by("-id").first()
    assert before is not None
    delivery = (await gql(server, REPORT, {"i": {"url": "https://shop.example/"}}, visitor["token"]))["reportPageView"][
        "delivery"
    ]
    async with GraphQLWs.open(server.ws_url, tenant.owner_token) as ws:
        sub = await ws.subscribe(CONTACT_UPDATED, {"id": visitor["contact"]["id"]})
        await until_subscribed(channel_of(tenant, visitor["contact"]["id"]))
        await payload(
            server,
            ANSWER,
            {"i": {"deliveryId": delivery["id"], "name": "Vic 4111.1111.1111.1111", "email": "vic@example.com"}},
            visitor["token"],
            "answerProactiveMessage",
        )
        event = (await sub.next_data())["contactUpdated"]
    assert event == {"kind": "UPDATED", "contactId": visitor["contact"]["id"], "contact": {"email": "vic@example.com"}}
    assert {
        "kind": "UPDATED",
        "contactId": visitor["contact"]["id"],
        "contact": {"email": "vic@example.com"},
    } in await changes_after(server, tenant, before.id)
    assert "succeeded" in await drain(tenant.workspace.id)
    bodies = [r.json() for r in await http_sink.wait_for(1)]
    updates = [b["data"]["contact"] for b in bodies if b["data"]["contact"]["id"] == visitor["contact"]["id"]]
    assert (
        updates and updates[-1]["email"] == "vic@example.com" and updates[-1]["name"] == "Vic **** **** **** 1111"
    )  # masked


# -- the other paths, in process ---------------------------------------------------------------

ASGI_SESSION = (
    "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { "
    "token contact { id externalId email } userErrors { field code } } }"
)
CREATE = (
    "mutation($i: CreateContactInput!) { createContact(input: $i) { "
    "contact { id externalId } userErrors { field code message } } }"
)
CHANNEL = (
    "mutation($i: CreateChannelInput!) { createChannel(input: $i) { "
    "channel { identityVerification } userErrors { code } } }"
)


async def asgi_session(tenant: Tenant, **fields: Any) -> dict[str, Any]:
    return (await tenant.api(ASGI_SESSION, {"i": {"channelKey": tenant.channel.public_key, **fields}}))[
        "startContactSession"
    ]  # type: ignore[no-any-return]


async def test_a_verified_login_and_an_integrator_each_win_a_claimed_external_id(tenant: Tenant) -> None:
    claim = await asgi_session(tenant, externalId="u-1")
    real = await asgi_session(tenant, externalId="u-1", userHash=user_hash(tenant.channel.secret, "u-1"))
    assert real["contact"]["id"] != claim["contact"]["id"] and real["contact"]["externalId"] == "u-1"
    assert (await tenant.api(VIEWER, token=claim["token"]))["viewer"]["contact"]["externalId"] is None
    # The visitor who claimed an id and then proves it keeps its own contact.
    mine = await asgi_session(tenant, externalId="u-2")
    proven = await asgi_session(
        tenant, externalId="u-2", sessionToken=mine["token"], userHash=user_hash(tenant.channel.secret, "u-2")
    )
    assert proven["contact"]["id"] == mine["contact"]["id"]
    # An API key creating the contact of a claimed id gets it; the claimant loses it.
    squatter = await asgi_session(tenant, externalId="crm-5")
    created = (await tenant.api(CREATE, {"i": {"externalId": "crm-5", "name": "Real"}}, token=tenant.api_key))[
        "createContact"
    ]
    assert created["userErrors"] == [] and created["contact"]["id"] != squatter["contact"]["id"]
    assert (await tenant.api(VIEWER, token=squatter["token"]))["viewer"]["contact"]["externalId"] is None
    # …but an id a trusted writer holds is TAKEN, and no session takes it over.
    taken = (await tenant.api(CREATE, {"i": {"externalId": "crm-5"}}, token=tenant.api_key))["createContact"][
        "userErrors"
    ]
    assert [(e["field"], e["code"]) for e in taken] == [(["externalId"], "TAKEN")]
    assert (await asgi_session(tenant, externalId="crm-5"))["contact"]["externalId"] is None


async def test_an_address_a_visitor_typed_links_nothing(tenant: Tenant, client: Any) -> None:
    visitor = await asgi_session(tenant, email="ceo@example.com")
    assert visitor["contact"]["email"] == "ceo@example.com"
    created = (await tenant.api(CREATE, {"i": {"email": "CEO@example.com", "name": "The CEO"}}, token=tenant.api_key))[
        "createContact"
    ]
    assert created["userErrors"] == []  # not TAKEN by the visitor's say-so
    mail = await make_channel(tenant, ChannelKind.EMAIL)
    await inbound(
        client,
        mail,
        {
            "from": "ceo@example.com",
            "subject": "Board pack",
            "text": "Confidential",
            "messageId": "<b1@mail.example.com>",
        },
    )
    assert (await gql_mine(tenant, visitor["token"])) == []
    assert await Conversation.filter(contact_id=pk(created["contact"]["id"])).count() == 1


async def gql_mine(tenant: Tenant, token: str) -> list[Any]:
    return (await tenant.api(MINE, token=token))["myConversations"]["edges"]  # type: ignore[no-any-return]


async def test_widget_and_sdk_channels_verify_by_default(make_tenant: Any) -> None:
    boot = await create_workspace("Fresh", "owner@example.com", "correct horse battery")
    assert boot.channel.identity_verification
    tenant = await make_tenant()
    made = {}
    for kind, extra in (
        ("WEB_WIDGET", {}),
        ("MOBILE_SDK", {}),
        ("EMAIL", {}),
        ("MOBILE_SDK", {"identityVerification": False}),
    ):
        payload = (
            await tenant.api(
                CHANNEL, {"i": {"kind": kind, "name": f"{kind} {len(made)}", **extra}}, token=tenant.owner_token
            )
        )["createChannel"]
        made[f"{kind}{extra}"] = payload["channel"]["identityVerification"]
    assert made == {
        "WEB_WIDGET{}": True,
        "MOBILE_SDK{}": True,
        "EMAIL{}": False,
        "MOBILE_SDK{'identityVerification': False}": False,
    }
    # A verifying channel refuses an unproven id and a wrong hash; an anonymous visitor is welcome.
    sdk = await create_channel(tenant.workspace.id, ChannelKind.MOBILE_SDK, "App")
    for fields in ({"externalId": "u-9"}, {"externalId": "u-9", "userHash": "00"}):
        errors = (await tenant.api(ASGI_SESSION, {"i": {"channelKey": sdk.public_key, **fields}}))[
            "startContactSession"
        ]["userErrors"]
        assert [e["code"] for e in errors] == ["IDENTITY_VERIFICATION_FAILED"]
    anonymous = (await tenant.api(ASGI_SESSION, {"i": {"channelKey": sdk.public_key}}))["startContactSession"]
    assert anonymous["userErrors"] == [] and anonymous["token"]
