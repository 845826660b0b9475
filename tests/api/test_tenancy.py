"""Tenancy, tested by trying: nothing of workspace B is visible to, or changeable by,
any principal of workspace A (its owner, its API key, its contact sessions) through any
query, mutation or subscription.

Two workspaces are built once for the module, each with one object of every Node type.
Every case compares complete snapshots of both workspaces (read by their own owners)
before and after, so a cross-tenant write anywhere fails the case that caused it.

Adding a Node type to the schema fails `test_every_node_type_has_a_tenancy_case` until
it has an object here; adding a mutation that takes an id fails
`test_every_mutation_taking_an_id_has_a_case` until it has a case here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from graphql import (
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
)
from websockets.asyncio.client import connect

from core.config import settings
from domain.identity import user_hash
from resolvers.attributes import PLATFORM_ATTRIBUTES
from tests.conftest import Api, Tenant

# Every object type implementing Node, with the case that creates one in a workspace.
NODE_TYPES = (
    "Workspace",
    "Agent",
    "Team",
    "Channel",
    "ApiKey",
    "Contact",
    "ContactNote",
    "ContactEvent",
    "AttributeDefinition",
    "DeletedContact",
    "Segment",
    "Topic",
    "Conversation",
    "Message",
    "ConversationNote",
    "Job",
    "WebhookEndpoint",
    "WebhookDelivery",
    "Campaign",
    "ProactiveMessage",
    "Bot",
    "BotAnswer",
    "ProactiveDelivery",
    "RoutingRule",
    "CannedResponse",
    "BulkAction",
)

PASSWORD = "correct horse battery"


def _unwrap(t: Any) -> Any:
    while isinstance(t, GraphQLNonNull | GraphQLList):
        t = t.of_type
    return t


def _graphql_schema() -> Any:
    from schema import build_schema

    return build_schema(introspection=True)._schema


# -- the two workspaces ------------------------------------------------------------------


@dataclass
class World:
    tenant: Tenant
    ids: dict[str, str] = field(default_factory=dict)  # Node type -> global id of one
    blocked_contact: str = ""
    definition_ids: list[str] = field(default_factory=list)
    session_token: str = ""
    session_contact: str = ""
    owner_agent: str = ""
    # Direct uploads (createUploadUrl, bytes sent) waiting to be sent: "owner", "key", "session".
    uploads: dict[str, str] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return self.tenant.owner_token

    @property
    def key(self) -> str:
        return self.tenant.api_key


async def _ok(api: Api, doc: str, variables: dict[str, Any], token: str, root: str) -> dict[str, Any]:
    payload = (await api(doc, variables, token=token))[root]
    assert payload["userErrors"] == [], (root, payload["userErrors"])
    return payload  # type: ignore[no-any-return]


async def build_world(api: Api, name: str) -> World:
    from core.auth import TokenKind, issue_token
    from resolvers.workspaces import create_workspace

    boot = await create_workspace(name, "owner@example.com", PASSWORD, owner_name=f"{name} Owner")
    tenant = Tenant(
        api=api,
        workspace=boot.workspace,
        owner=boot.owner,
        owner_token=issue_token(TokenKind.AGENT, workspace_id=boot.workspace.id, subject_id=boot.owner.id),
        api_key=boot.api_key,
        channel=boot.channel,
    )
    world = World(tenant=tenant)
    tag = name.lower()
    tok = tenant.owner_token
    ids = world.ids

    top = await api("{ workspace { id } channels { edges { node { id } } } viewer { agent { id } } }", token=tok)
    world.owner_agent = top["viewer"]["agent"]["id"]
    ids["Workspace"] = top["workspace"]["id"]
    ids["Channel"] = top["channels"]["edges"][0]["node"]["id"]

    agent = await _ok(
        api,
        "mutation($i: CreateAgentInput!) { createAgent(input: $i) { agent { id } userErrors { field code } } }",
        {
            "i": {
                "email": f"{tag}-agent-{secrets.token_hex(3)}@example.com",
                "name": f"{name} Agent",
                "password": PASSWORD,
            }
        },
        tok,
        "createAgent",
    )
    ids["Agent"] = agent["agent"]["id"]
    team = await _ok(
        api,
        "mutation($i: CreateTeamInput!) { createTeam(input: $i) { team { id } userErrors { field code } } }",
        {"i": {"name": f"{name} Team"}},
        tok,
        "createTeam",
    )
    ids["Team"] = team["team"]["id"]
    await _ok(
        api,
        "mutation($i: TeamMembersInput!) { addTeamMembers(input: $i) { team { id } userErrors { field code } } }",
        {"i": {"teamId": ids["Team"], "agentIds": [ids["Agent"]]}},
        tok,
        "addTeamMembers",
    )
    key = await _ok(
        api,
        "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } userErrors { field code } } }",
        {"i": {"name": f"{name} reader", "scopes": ["contacts:read"]}},
        tok,
        "createApiKey",
    )
    ids["ApiKey"] = key["apiKey"]["id"]
    definition = await _ok(
        api,
        "mutation($i: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $i) { "
        "attributeDefinition { id } userErrors { field code } } }",
        {"i": {"key": "plan", "label": "Plan", "type": "TEXT", "crmManaged": True}},
        tok,
        "createAttributeDefinition",
    )
    ids["AttributeDefinition"] = definition["attributeDefinition"]["id"]
    defs = await api("{ attributeDefinitions { edges { node { id } } } }", token=tok)
    world.definition_ids = [e["node"]["id"] for e in defs["attributeDefinitions"]["edges"]]

    contact = await tenant.contact(
        name=f"{name} Person",
        email=f"{tag}.person@example.com",
        city="Lyon",
        tags=[f"{tag}-tag"],
        attributes=[{"key": "plan", "value": f"{tag}-gold"}],
    )
    ids["Contact"] = contact["id"]
    blocked = await tenant.contact(name=f"{name} Blocked", email=f"{tag}.blocked@example.com")
    await _ok(
        api,
        "mutation($i: ContactIdInput!) { blockContact(input: $i) { contact { id } userErrors { field code } } }",
        {"i": {"id": blocked["id"]}},
        tok,
        "blockContact",
    )
    world.blocked_contact = blocked["id"]
    note = await _ok(
        api,
        "mutation($i: AddContactNoteInput!) { addContactNote(input: $i) { note { id } userErrors { field code } } }",
        {"i": {"contactId": ids["Contact"], "body": f"{name} private note"}},
        tok,
        "addContactNote",
    )
    ids["ContactNote"] = note["note"]["id"]
    event = await _ok(
        api,
        "mutation($i: TrackEventInput!) { trackEvent(input: $i) { event { id } userErrors { field code } } }",
        {"i": {"contactId": ids["Contact"], "name": "signed_up", "properties": {"by": tag}}},
        tok,
        "trackEvent",
    )
    ids["ContactEvent"] = event["event"]["id"]
    doomed = await tenant.contact(name=f"{name} Doomed", email=f"{tag}.doomed@example.com")
    deleted = await _ok(
        api,
        "mutation($i: ContactIdInput!) { deleteContact(input: $i) { auditRecord { id } userErrors { field code } } }",
        {"i": {"id": doomed["id"]}},
        tok,
        "deleteContact",
    )
    ids["DeletedContact"] = deleted["auditRecord"]["id"]

    segment = await _ok(
        api,
        "mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } userErrors { field code } } }",
        {
            "i": {
                "name": f"{name} Segment",
                "visibility": "EVERYONE",
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "city", "operator": "EQUALS", "value": {"text": "Lyon"}}],
                },
            }
        },
        tok,
        "createSegment",
    )
    ids["Segment"] = segment["segment"]["id"]
    export = await _ok(
        api,
        "mutation($i: ExportContactsInput!) { exportContacts(input: $i) { job { id } userErrors { field code } } }",
        {"i": {"columns": ["name", "email"], "segmentId": ids["Segment"]}},
        tok,
        "exportContacts",
    )
    ids["Job"] = export["job"]["id"]
    endpoint = await _ok(
        api,
        "mutation($i: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $i) { "
        "endpoint { id } userErrors { field code } } }",
        {"i": {"url": f"https://{tag}.example.com/hooks", "eventTypes": ["CONTACT_UPDATED"]}},
        tok,
        "createWebhookEndpoint",
    )
    ids["WebhookEndpoint"] = endpoint["endpoint"]["id"]
    ping = await _ok(
        api,
        "mutation($i: WebhookEndpointIdInput!) { pingWebhookEndpoint(input: $i) { "
        "delivery { id } userErrors { field code } } }",
        {"i": {"id": ids["WebhookEndpoint"]}},
        tok,
        "pingWebhookEndpoint",
    )
    ids["WebhookDelivery"] = ping["delivery"]["id"]

    session = await _ok(
        api,
        "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { "
        "token contact { id } userErrors { field code } } }",
        {
            "i": {
                "channelKey": tenant.channel.public_key,
                "externalId": f"{tag}-user-1",
                "userHash": user_hash(tenant.channel.secret, f"{tag}-user-1"),
            }
        },
        "",
        "startContactSession",
    )
    world.session_token = session["token"]
    world.session_contact = session["contact"]["id"]

    topic = await _ok(
        api,
        "mutation($i: CreateTopicInput!) { createTopic(input: $i) { topic { id } userErrors { field code } } }",
        {"i": {"name": f"{name} Topic"}},
        tok,
        "createTopic",
    )
    ids["Topic"] = topic["topic"]["id"]
    started = await _ok(
        api,
        "mutation($i: StartConversationInput!) { startConversation(input: $i) { "
        "conversation { id } message { id } userErrors { field code } } }",
        {"i": {"body": f"{name} needs help", "topicId": ids["Topic"]}},
        world.session_token,
        "startConversation",
    )
    ids["Conversation"] = started["conversation"]["id"]
    ids["Message"] = started["message"]["id"]
    noted = await _ok(
        api,
        "mutation($i: AddConversationNoteInput!) { addConversationNote(input: $i) { "
        "note { id } userErrors { field code } } }",
        {"i": {"conversationId": ids["Conversation"], "body": f"{name} private note"}},
        tok,
        "addConversationNote",
    )
    ids["ConversationNote"] = noted["note"]["id"]
    campaign = await _ok(
        api,
        "mutation($i: CreateCampaignInput!) { createCampaign(input: $i) { "
        "campaign { id } userErrors { field code } } }",
        {
            "i": {
                "name": f"{name} Campaign",
                "channelId": ids["Channel"],
                "body": f"{name} news",
                "contactIds": [ids["Contact"]],
                "scheduledAt": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            }
        },
        tok,
        "createCampaign",
    )
    ids["Campaign"] = campaign["campaign"]["id"]
    bot = await _ok(
        api,
        "mutation($i: CreateBotInput!) { createBot(input: $i) { bot { id } userErrors { field code } } }",
        {"i": {"name": f"{name} Bot"}},
        tok,
        "createBot",
    )
    ids["Bot"] = bot["bot"]["id"]
    answer = await _ok(
        api,
        "mutation($i: CreateBotAnswerInput!) { createBotAnswer(input: $i) { "
        "botAnswer { id } userErrors { field code } } }",
        {
            "i": {
                "botId": ids["Bot"],
                "channelId": ids["Channel"],
                "name": f"{name} Answer",
                "body": f"{name} bot says hi",
            }
        },
        tok,
        "createBotAnswer",
    )
    ids["BotAnswer"] = answer["botAnswer"]["id"]
    await _ok(
        api,
        "mutation($i: BotAnswerIdInput!) { publishBotAnswer(input: $i) { userErrors { field code } } }",
        {"i": {"id": ids["BotAnswer"]}},
        tok,
        "publishBotAnswer",
    )
    proactive = await _ok(
        api,
        "mutation($i: CreateProactiveMessageInput!) { createProactiveMessage(input: $i) { "
        "proactiveMessage { id } userErrors { field code } } }",
        {
            "i": {
                "name": f"{name} Proactive",
                "channelId": ids["Channel"],
                "text": f"{name} can help",
                "tags": [f"{tag}-proactive"],
                "routeTeamId": ids["Team"],
                "frequency": "EVERY_TIME",
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "SEGMENT", "operator": "NOT_MEMBER_OF", "segmentId": ids["Segment"]}],
                },
            }
        },
        tok,
        "createProactiveMessage",
    )
    ids["ProactiveMessage"] = proactive["proactiveMessage"]["id"]
    await _ok(
        api,
        "mutation($i: ProactiveMessageIdInput!) { publishProactiveMessage(input: $i) { userErrors { field code } } }",
        {"i": {"id": ids["ProactiveMessage"]}},
        tok,
        "publishProactiveMessage",
    )
    viewed = await _ok(
        api,
        "mutation($i: ReportPageViewInput!) { reportPageView(input: $i) { "
        "delivery { id } userErrors { field code } } }",
        {"i": {"url": f"https://{tag}.example.com/pricing"}},
        world.session_token,
        "reportPageView",
    )
    ids["ProactiveDelivery"] = viewed["delivery"]["id"]
    rule = await _ok(
        api,
        "mutation($i: CreateRoutingRuleInput!) { createRoutingRule(input: $i) { "
        "routingRule { id } userErrors { field code } } }",
        {
            "i": {
                "name": f"{name} VIPs",
                "teamId": ids["Team"],
                "channelIds": [ids["Channel"]],
                "segmentId": ids["Segment"],
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "vip", "operator": "EQUALS", "value": {"boolean": True}}],
                },
            }
        },
        tok,
        "createRoutingRule",
    )
    ids["RoutingRule"] = rule["routingRule"]["id"]

    canned = await _ok(
        api,
        "mutation($i: CreateCannedResponseInput!) { createCannedResponse(input: $i) { "
        "cannedResponse { id } userErrors { field code } } }",
        {"i": {"shortcut": f"{tag}-hello", "body": f"Hello {{{{contact.name}}}}, {name} here", "shared": True}},
        tok,
        "createCannedResponse",
    )
    ids["CannedResponse"] = canned["cannedResponse"]["id"]
    bulk = await _ok(
        api,
        "mutation($i: StartBulkActionInput!) { startBulkAction(input: $i) { "
        "bulkAction { id } userErrors { field code } } }",
        {"i": {"target": {"ids": [ids["Contact"]]}, "action": "TAG", "tags": [f"{tag}-bulk"]}},
        tok,
        "startBulkAction",
    )
    ids["BulkAction"] = bulk["bulkAction"]["id"]
    for who, token in (("owner", tok), ("key", tenant.api_key), ("session", world.session_token)):
        world.uploads[who] = await _upload(api, token, f"{tag}-{who}.png")
    assert set(ids) == set(NODE_TYPES)
    return world


async def _upload(api: Api, token: str, filename: str) -> str:
    """A direct upload of three bytes, not yet sent with a message: its id."""
    ticket = await _ok(
        api,
        "mutation($i: CreateUploadUrlInput!) { createUploadUrl(input: $i) { url uploadId userErrors { field code } } }",
        {"i": {"filename": filename, "contentType": "image/png", "size": 3}},
        token,
        "createUploadUrl",
    )
    url = urlsplit(ticket["url"])
    assert (await api.client.put(f"{url.path}?{url.query}", content=b"png")).status_code == 200
    return ticket["uploadId"]  # type: ignore[no-any-return]


SNAPSHOT = """
query Snapshot {
  workspace { id name slug timeZone matchingAttribute matchingAttributeKey agentsCanEditCrmAttributes }
  agents(first: 100) { edges { node { id name email role canEditContactIdentity timeZone routingCapacity } } }
  routingRules(first: 100) { edges { node { id name position enabled autoAssign channelIds segmentId rules teamId } } }
  attachmentPolicy { maxBytes contentTypes }
  agents(first: 100) { edges { node { id name email role canEditContactIdentity timeZone } } }
  teams(first: 100) { edges { node { id name members { id } } } }
  apiKeys(first: 100) { edges { node { id name prefix scopes revokedAt } } }
  channels(first: 100) { edges { node {
    id kind name publicKey identityVerification secret businessHours defaultSender notifyEmails
    crmLookupUrl crmLookupSecretSet
  } } }
  topics(first: 100) { edges { node { id name } } }
  unreadCount
  conversations(first: 100) { edges { node {
    id status snoozedUntil unreadCount contactUnreadCount rating subject vip
    assignee { id } team { id } topic { id } contact { id }
    messages { edges { node { id body senderKind attachments { id filename contentType size } } } }
    messages { edges { node { id body senderKind shortLinks { code url clicks } } } }
    messages { edges { node { id body senderKind } } }
    notes(first: 100) { edges { node { id body mentions { id } } } }
  } } }
  attributeDefinitions(first: 100) { edges { node {
    id key label type options source crmManaged searchable visible position
  } } }
  segments(first: 100) { edges { node { id name description visibility rules predefinedKey sharedWith owner { id } } } }
  jobs(first: 100) { edges { node { id kind status processed total result } } }
  bulkActions(first: 100) { edges { node { id action total done skipped failed target } } }
  webhookEndpoints(first: 100) { edges { node {
    id url description eventTypes enabled disabledReason updatedAt
    deliveries(first: 100) { edges { node { id eventType status attempts } } }
  } } }
  campaigns(first: 100) { edges { node { id name status body scheduledAt topic { id }
    stats { recipients sent skipped clicks clickedContacts } } } }
  proactiveMessages(first: 100) { edges { node {
    id name status error text tags rules sent opened replied frequency channel { id } routeTeam { id } botAnswer { id }
    deliveries(first: 100) { edges { node { id openedAt dismissedAt repliedAt conversationId } } }
  } } }
  bots(first: 100) { edges { node { id name answers { id name body published channel { id } } } } }
  cannedResponses(first: 100) { edges { node { id shortcut body shared owner { id } } } }
  deletedContacts(first: 100) { edges { node { id nameHint emailHint phoneHint platform deletedByName deletedAt } } }
  contacts(first: 100) {
    totalCount
    edges { node {
      id name email phone externalId country city timeZone locale browserLanguage os browser ip referrer
      platform gdprConsent gdprConsentAt smsConsent smsConsentAt vip blocked firstSeenAt lastSeenAt createdAt updatedAt
      tags
      attributes { key value }
      notes(first: 100) { edges { node { id body createdAt author { id } } } }
      events(first: 100) { edges { node { id kind name url title properties occurredAt } } }
    } }
  }
}
"""


async def snapshot(api: Api, world: World) -> dict[str, Any]:
    # Every row of every kind at once: far over a request's budget (core/cost.py), which
    # is not what these tests are about.
    budget, settings.max_query_cost = settings.max_query_cost, 1_000_000
    try:
        return await api(SNAPSHOT, token=world.owner)
    finally:
        settings.max_query_cost = budget


@pytest.fixture(scope="module")
async def worlds(api: Api) -> list[World]:
    return [await build_world(api, "Alpha"), await build_world(api, "Beta")]


async def intact(api: Api, worlds: list[World]) -> tuple[World, World]:
    """The two workspaces with every object the cases name still there: a case that
    leaked (and deleted or merged something) must not turn later cases into vacuous
    passes, so the workspaces are rebuilt after any loss."""
    for world in worlds:
        wanted = [*world.ids.values(), world.blocked_contact, world.session_contact, *world.definition_ids]
        found = (await api(NODES_Q, {"ids": wanted}, token=world.owner))["nodes"]
        if None in found:
            worlds[:] = [await build_world(api, "Alpha"), await build_world(api, "Beta")]
            break
    return worlds[0], worlds[1]


# -- enumeration ---------------------------------------------------------------------------


def test_every_node_type_has_a_tenancy_case() -> None:
    type_map = _graphql_schema().type_map
    implementing = {
        name
        for name, t in type_map.items()
        if isinstance(t, GraphQLObjectType) and any(i.name == "Node" for i in t.interfaces)
    }
    assert isinstance(type_map["Node"], GraphQLInterfaceType)
    assert implementing == set(NODE_TYPES)


def _takes_an_id(arg_type: Any, seen: set[str] | None = None) -> bool:
    """Does this argument (or any input object field inside it) carry an ID?"""
    seen = set() if seen is None else seen
    t = _unwrap(arg_type)
    if t.name == "ID":
        return True
    if isinstance(t, GraphQLInputObjectType) and t.name not in seen:
        seen.add(t.name)
        return any(_takes_an_id(f.type, seen) for f in t.fields.values())
    return False


# Query and subscription fields taking an id, and the test trying them with B's ids.
ROOT_FIELDS_WITH_IDS = {
    "Query": {
        "node": "test_node_and_nodes_never_return_another_workspaces_objects",
        "nodes": "test_node_and_nodes_never_return_another_workspaces_objects",
        "contact": "test_contact_of_another_workspace_is_null_for_every_principal",
        "contacts": "test_segments_of_another_workspace_are_not_found",
        "segment": "test_segments_of_another_workspace_are_not_found",
        "conversation": "test_conversations_of_another_workspace_are_invisible",
        "conversations": "test_conversations_of_another_workspace_are_invisible",
        "topics": "test_conversations_of_another_workspace_are_invisible",
        "searchConversations": "test_search_never_finds_another_workspaces_conversations",
        "renderCannedResponse": "test_canned_responses_of_another_workspace_are_out_of_reach",
        "job": "test_jobs_and_exports_of_another_workspace_are_invisible",
        "campaign": "test_campaigns_of_another_workspace_are_invisible",
        "proactiveMessage": "test_proactive_messages_of_another_workspace_are_invisible",
        "pushSettings": "test_push_settings_and_log_of_another_workspace_are_out_of_reach",
        "pushAttempts": "test_push_settings_and_log_of_another_workspace_are_out_of_reach",
    },
    "Subscription": {
        "contactUpdated": "test_subscriptions_do_not_cross_workspaces",
        "segmentMembershipChanged": "test_subscriptions_do_not_cross_workspaces",
        "messageAdded": "test_subscriptions_do_not_cross_workspaces",
        "jobProgress": "test_subscriptions_do_not_cross_workspaces",
        "conversationEvents": "test_conversation_events_never_carry_another_workspaces_events",
        "inboxEvents": "test_inbox_events_never_carry_another_workspaces_events",
    },
}


def test_every_query_and_subscription_field_taking_an_id_has_a_case() -> None:
    type_map = _graphql_schema().type_map
    for root, covered in ROOT_FIELDS_WITH_IDS.items():
        taking_ids = {
            name for name, f in type_map[root].fields.items() if any(_takes_an_id(a.type) for a in f.args.values())
        }
        assert taking_ids == set(covered), root
        assert all(test in globals() for test in covered.values())


def test_every_mutation_taking_an_id_has_a_case() -> None:
    mutation = _graphql_schema().type_map["Mutation"]
    taking_ids = {name for name, f in mutation.fields.items() if any(_takes_an_id(a.type) for a in f.args.values())}
    covered = {case.mutation for case in MUTATION_CASES}
    assert taking_ids == covered


# -- reading -------------------------------------------------------------------------------

NODE = "query($id: ID!) { node(id: $id) { __typename id } }"
NODES_Q = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }"


def _a_principals(a: World) -> dict[str, str]:
    return {"A owner": a.owner, "A API key": a.key, "A contact session": a.session_token}


async def test_node_and_nodes_never_return_another_workspaces_objects(api: Api, worlds: list[World]) -> None:
    a, b = await intact(api, worlds)
    # The ids are real: B's owner sees every one of them, with its type.
    for type_name, gid in b.ids.items():
        found = (await api(NODE, {"id": gid}, token=b.owner))["node"]
        assert found == {"__typename": type_name, "id": gid}, type_name
    leaks = []
    for who, token in _a_principals(a).items():
        for type_name, gid in b.ids.items():
            if (await api(NODE, {"id": gid}, token=token))["node"] is not None:
                leaks.append(f"node({type_name}) as {who}")
        listed = (await api(NODES_Q, {"ids": list(b.ids.values())}, token=token))["nodes"]
        if listed != [None] * len(b.ids):
            leaks.append(f"nodes(...) as {who}: {listed}")
    assert leaks == []
    # nodes(ids:) mixing both workspaces' ids: A's own are there, B's are not.
    mixed = [a.ids["Contact"], b.ids["Contact"], a.ids["Team"], b.ids["Team"]]
    listed = (await api(NODES_Q, {"ids": mixed}, token=a.owner))["nodes"]
    assert listed == [
        {"__typename": "Contact", "id": a.ids["Contact"]},
        None,
        {"__typename": "Team", "id": a.ids["Team"]},
        None,
    ]


CONTACT = "query($id: ID!) { contact(id: $id) { id name email } }"


async def test_contact_of_another_workspace_is_null_for_every_principal(api: Api, worlds: list[World]) -> None:
    a, b = await intact(api, worlds)
    assert (await api(CONTACT, {"id": b.ids["Contact"]}, token=b.owner))["contact"]["name"] == "Beta Person"
    # A's session sees its own contact, A's key reads A's contacts.
    assert (await api(CONTACT, {"id": a.session_contact}, token=a.session_token))["contact"]["id"] == a.session_contact
    assert (await api(CONTACT, {"id": a.ids["Contact"]}, token=a.key))["contact"]["name"] == "Alpha Person"
    for who, token in _a_principals(a).items():
        for target in (b.ids["Contact"], b.session_contact, b.blocked_contact):
            assert (await api(CONTACT, {"id": target}, token=token))["contact"] is None, who


SEGMENT = "query($id: ID!) { segment(id: $id) { id name } }"
SEGMENT_CONTACTS = "query($id: ID!) { contacts(segmentId: $id) { totalCount edges { node { id } } } }"


async def test_segments_of_another_workspace_are_not_found(api: Api, worlds: list[World]) -> None:
    a, b = await intact(api, worlds)
    # B's segment is visible to everyone in B, its API key included.
    for token in (b.owner, b.key):
        assert (await api(SEGMENT, {"id": b.ids["Segment"]}, token=token))["segment"]["name"] == "Beta Segment"
        assert "contacts" in await api(SEGMENT_CONTACTS, {"id": b.ids["Segment"]}, token=token)
    for token in (a.owner, a.key):
        assert (await api(SEGMENT, {"id": b.ids["Segment"]}, token=token))["segment"] is None
        errors = await api.errors(SEGMENT_CONTACTS, {"id": b.ids["Segment"]}, token=token)
        assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"]
        # A's own segment works for the same principal.
        assert (await api(SEGMENT_CONTACTS, {"id": a.ids["Segment"]}, token=token))["contacts"]["totalCount"] >= 0
    # A contact session reads no segments at all.
    for query in (SEGMENT, SEGMENT_CONTACTS):
        errors = await api.errors(query, {"id": b.ids["Segment"]}, token=a.session_token)
        assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]


CONVERSATION_Q = "query($id: ID!) { conversation(id: $id) { id status } }"
CONVERSATIONS_Q = """query($f: ConversationFilter) { conversations(filter: $f) { totalCount edges { node { id } } } }"""
TOPICS_Q = "query($c: ID) { topics(notEngagedBy: $c) { edges { node { id } } } }"


async def test_conversations_of_another_workspace_are_invisible(api: Api, worlds: list[World]) -> None:
    a, b = await intact(api, worlds)
    assert (await api(CONVERSATION_Q, {"id": b.ids["Conversation"]}, token=b.owner))["conversation"]["status"] == "OPEN"
    assert (await api(CONVERSATION_Q, {"id": a.ids["Conversation"]}, token=a.session_token))["conversation"] is not None
    for who, token in _a_principals(a).items():
        assert (await api(CONVERSATION_Q, {"id": b.ids["Conversation"]}, token=token))["conversation"] is None, who
        if who != "A contact session":
            # Filtering by B's ids finds nothing of B's (and nothing of A's either).
            for f in (
                {"contactId": b.session_contact},
                {"channelId": b.ids["Channel"]},
                {"teamId": b.ids["Team"]},
                {"assigneeId": b.owner_agent},
            ):
                found = (await api(CONVERSATIONS_Q, {"f": f}, token=token))["conversations"]
                assert found == {"totalCount": 0, "edges": []}, (who, f)
            assert (await api(CONVERSATIONS_Q, {}, token=token))["conversations"]["totalCount"] >= 1
        errors = await api.errors(TOPICS_Q, {"c": b.session_contact}, token=token)
        assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"], who
    listed = (await api(TOPICS_Q, {}, token=a.session_token))["topics"]["edges"]
    assert [e["node"]["id"] for e in listed] == [a.ids["Topic"]]


SEARCH_Q = """query($q: String!, $f: ConversationFilter) {
  searchConversations(query: $q, filter: $f) { totalCount edges { node { conversation { id } highlight } } } }"""


async def test_search_never_finds_another_workspaces_conversations(api: Api, worlds: list[World]) -> None:
    """B's words, and A's words under B's ids, find nothing; a contact session (A's own
    conversation matches) and the bare widget key are refused."""
    a, b = await intact(api, worlds)
    assert (await api(SEARCH_Q, {"q": "beta needs"}, token=b.owner))["searchConversations"]["totalCount"] == 1
    for who, token in _a_principals(a).items():
        if who == "A contact session":
            errors = await api.errors(SEARCH_Q, {"q": "alpha needs"}, token=token)
            assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"], who
            continue
        assert (await api(SEARCH_Q, {"q": "beta"}, token=token))["searchConversations"]["totalCount"] == 0, who
        mine = (await api(SEARCH_Q, {"q": "needs help"}, token=token))["searchConversations"]["edges"]
        assert [e["node"]["conversation"]["id"] for e in mine] == [a.ids["Conversation"]], who
        for f in (
            {"contactId": b.session_contact},
            {"channelId": b.ids["Channel"]},
            {"teamId": b.ids["Team"]},
            {"assigneeId": b.owner_agent},
        ):
            found = (await api(SEARCH_Q, {"q": "needs", "f": f}, token=token))["searchConversations"]
            assert found == {"totalCount": 0, "edges": []}, (who, f)
    errors = await api.errors(SEARCH_Q, {"q": "needs"}, token=a.tenant.channel.public_key)
    assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"]


RENDER_Q = """query($id: ID!, $c: ID!) {
  renderCannedResponse(id: $id, conversationId: $c) { text userErrors { field code } } }"""


async def test_canned_responses_of_another_workspace_are_out_of_reach(api: Api, worlds: list[World]) -> None:
    a, b = await intact(api, worlds)
    mine = {"id": a.ids["CannedResponse"], "c": a.ids["Conversation"]}
    assert (await api(RENDER_Q, mine, token=a.owner))["renderCannedResponse"]["text"].startswith("Hello ")
    for variables, where in (
        ({"id": b.ids["CannedResponse"], "c": a.ids["Conversation"]}, ["id"]),
        ({"id": a.ids["CannedResponse"], "c": b.ids["Conversation"]}, ["conversationId"]),
    ):
        found = (await api(RENDER_Q, variables, token=a.owner))["renderCannedResponse"]
        assert found == {"text": None, "userErrors": [{"field": where, "code": "NOT_FOUND"}]}
    for token in (a.key, a.session_token):
        errors = await api.errors(RENDER_Q, mine, token=token)
        assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]
        assert (await api.raw(NODE, {"id": a.ids["CannedResponse"]}, token=token)).json()["data"]["node"] is None


JOB_Q = "query($id: ID!) { job(id: $id) { id status } }"
JOBS_Q = "{ jobs(first: 100) { edges { node { id } } } }"


async def test_jobs_and_exports_of_another_workspace_are_invisible(api: Api, worlds: list[World]) -> None:
    """B's job is null to A's principals, absent from A's list, and B's export file is a
    404 to them even with a valid download link (links are bearer URLs: with an
    Authorization header, the header's workspace must be the link's)."""
    from datetime import UTC, datetime, timedelta
    from urllib.parse import urlsplit

    from strawberry.relay import GlobalID

    from jobs.exports import export_contacts
    from models.contacts import DeletedContact
    from services.exports import ERASURE_MARGIN

    a, b = await intact(api, worlds)
    assert (await api(JOB_Q, {"id": b.ids["Job"]}, token=b.owner))["job"]["id"] == b.ids["Job"]
    for who, token in _a_principals(a).items():
        assert (await api(JOB_Q, {"id": b.ids["Job"]}, token=token))["job"] is None, who
        if who != "A contact session":
            listed = {e["node"]["id"] for e in (await api(JOBS_Q, token=token))["jobs"]["edges"]}
            assert a.ids["Job"] in listed and b.ids["Job"] not in listed, who
    # B's world deleted a contact moments ago: an export starting this close after it counts
    # as possibly holding it (ERASURE_MARGIN). Make it an old deletion.
    await DeletedContact.filter(id=int(GlobalID.from_id(b.ids["DeletedContact"]).node_id)).update(
        deleted_at=datetime.now(UTC) - ERASURE_MARGIN - timedelta(seconds=1)
    )
    await export_contacts({}, int(GlobalID.from_id(b.ids["Job"]).node_id))
    url = (await api("query($id: ID!) { job(id: $id) { downloadUrl } }", {"id": b.ids["Job"]}, token=b.owner))["job"][
        "downloadUrl"
    ]
    parts = urlsplit(url)
    path = f"{parts.path}?{parts.query}"
    assert (await api.client.get(path, headers={"authorization": f"Bearer {b.owner}"})).status_code == 200
    for who, token in _a_principals(a).items():
        response = await api.client.get(path, headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 404, who
    # Pointing B's link at A's export (or A's workspace) breaks its signature.
    a_job = int(GlobalID.from_id(a.ids["Job"]).node_id)
    a_ws = int(GlobalID.from_id(a.ids["Workspace"]).node_id)
    _, _, b_ws, b_job = parts.path.split("/")
    for forged in (f"/exports/{b_ws}/{a_job}?{parts.query}", f"/exports/{a_ws}/{b_job}?{parts.query}"):
        assert (await api.client.get(forged, headers={"authorization": f"Bearer {a.owner}"})).status_code in (403, 404)
        assert (await api.client.get(forged)).status_code == 403


CAMPAIGN_Q = "query($id: ID!) { campaign(id: $id) { id status } }"


async def test_campaigns_of_another_workspace_are_invisible(api: Api, worlds: list[World]) -> None:
    a, b = await intact(api, worlds)
    assert (await api(CAMPAIGN_Q, {"id": b.ids["Campaign"]}, token=b.owner))["campaign"]["id"] == b.ids["Campaign"]
    for who, token in _a_principals(a).items():
        body = (await api.raw(CAMPAIGN_Q, {"id": b.ids["Campaign"]}, token=token)).json()
        assert body["data"]["campaign"] is None, (who, body)
        if who != "A contact session":
            listed = {
                e["node"]["id"]
                for e in (await api("{ campaigns { edges { node { id } } } }", token=token))["campaigns"]["edges"]
            }
            assert listed == {a.ids["Campaign"]}, who


PUSH_SETTINGS_Q = "query($c: ID!) { pushSettings(channelId: $c) { showMessageText } }"
PUSH_LOG_Q = "query($c: ID) { pushAttempts(channelId: $c) { totalCount } }"


async def test_push_settings_and_log_of_another_workspace_are_out_of_reach(api: Api, worlds: list[World]) -> None:
    a, b = await intact(api, worlds)
    # B's channel is a web widget: B's owner gets null (no push there), A's owner the same.
    assert (await api(PUSH_SETTINGS_Q, {"c": b.ids["Channel"]}, token=b.owner))["pushSettings"] is None
    assert (await api(PUSH_SETTINGS_Q, {"c": b.ids["Channel"]}, token=a.owner))["pushSettings"] is None
    errors = await api.errors(PUSH_LOG_Q, {"c": b.ids["Channel"]}, token=a.owner)
    assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"]
    assert (await api(PUSH_LOG_Q, {"c": None}, token=a.owner))["pushAttempts"]["totalCount"] == 0
    # Keys and contact sessions read neither.
    for token in (a.key, a.session_token):
        for query in (PUSH_SETTINGS_Q, PUSH_LOG_Q):
            errors = await api.errors(query, {"c": a.ids["Channel"]}, token=token)
            assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]


PROACTIVE_Q = "query($id: ID!) { proactiveMessage(id: $id) { id status } }"
PROACTIVE_LIST = (
    "{ proactiveMessages(first: 100) { edges { node { id } } } bots { edges { node { id answers { id } } } } }"
)


async def test_proactive_messages_of_another_workspace_are_invisible(api: Api, worlds: list[World]) -> None:
    a, b = await intact(api, worlds)
    assert (await api(PROACTIVE_Q, {"id": b.ids["ProactiveMessage"]}, token=b.owner))["proactiveMessage"][
        "status"
    ] == "LIVE"
    for who, token in _a_principals(a).items():
        body = (await api.raw(PROACTIVE_Q, {"id": b.ids["ProactiveMessage"]}, token=token)).json()
        if who == "A contact session":
            assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body
            continue
        assert body["data"]["proactiveMessage"] is None, (who, body)
        listed = await api(PROACTIVE_LIST, token=token)
        strings = _all_strings(listed)
        assert a.ids["ProactiveMessage"] in strings and a.ids["Bot"] in strings and a.ids["BotAnswer"] in strings, who
        assert strings & {b.ids["ProactiveMessage"], b.ids["Bot"], b.ids["BotAnswer"]} == set(), who
    # A's visitor on A's channel never gets B's message, whatever page it is on.
    viewed = await api(
        "mutation($i: ReportPageViewInput!) { reportPageView(input: $i) { "
        "delivery { messageId } userErrors { code } } }",
        {"i": {"url": "https://shop.example.com/other"}},
        token=a.session_token,
    )
    assert viewed["reportPageView"]["delivery"]["messageId"] == a.ids["ProactiveMessage"]


def _all_strings(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_all_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_all_strings(v) for v in value)) if value else set()
    return {value} if isinstance(value, str) else set()


async def test_lists_show_only_the_callers_workspace(api: Api, worlds: list[World]) -> None:
    a, b = await intact(api, worlds)
    seen_by_a = await snapshot(api, a)
    b_ids = set(b.ids.values()) | {b.blocked_contact, b.session_contact, *b.definition_ids}
    assert _all_strings(seen_by_a) & b_ids == set()
    assert not any("beta" in s.lower() for s in _all_strings(seen_by_a))
    # ... while A's own objects are all there.
    assert set(a.ids.values()) - {a.ids["Workspace"]} <= _all_strings(seen_by_a)
    for token in (a.owner, a.key):
        found = await api('{ contacts(search: "Beta") { totalCount edges { node { id } } } }', token=token)
        assert found["contacts"] == {"totalCount": 0, "edges": []}
    found = await api('{ contacts(search: "Beta") { totalCount } }', token=b.owner)
    assert found["contacts"]["totalCount"] >= 2
    viewer = await api("{ viewer { kind contact { id } } workspace { id } }", token=a.session_token)
    assert viewer == {
        "viewer": {"kind": "CONTACT", "contact": {"id": a.session_contact}},
        "workspace": {"id": a.ids["Workspace"]},
    }


PERSISTED = "query PersistedContact($id: ID!) { contact(id: $id) { id name } }"


async def test_a_persisted_query_runs_on_the_callers_own_data_and_a_strangers_answer_is_not_cached(
    api: Api, worlds: list[World]
) -> None:
    """Automatic persisted queries are one store for every workspace: a document B's owner
    registered runs, by hash, for A's principals on A's rows only, and the GET of a caller
    with nothing but the widget key (no credentials) gets no data and `no-store`."""
    a, b = await intact(api, worlds)
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(PERSISTED.encode()).hexdigest()}}
    accept = {"accept": "application/json"}

    async def by_hash(contact: str, token: str | None) -> Any:
        headers = {**accept, **({"authorization": f"Bearer {token}"} if token else {})}
        params = {"extensions": json.dumps(extensions), "variables": json.dumps({"id": contact})}
        return await api.client.get("/graphql", params=params, headers=headers)

    registered = await api.client.post(
        "/graphql",
        json={"query": PERSISTED, "variables": {"id": b.ids["Contact"]}, "extensions": extensions},
        headers={"authorization": f"Bearer {b.owner}"},
    )
    assert registered.json()["data"]["contact"]["name"] == "Beta Person"
    own = await by_hash(b.ids["Contact"], b.owner)
    assert own.json()["data"]["contact"]["name"] == "Beta Person"
    assert own.headers["cache-control"].startswith("private, ")
    for who, token in _a_principals(a).items():
        answer = await by_hash(b.ids["Contact"], token)
        assert answer.json()["data"]["contact"] is None, who
    mine = await by_hash(a.ids["Contact"], a.key)
    assert mine.json()["data"]["contact"]["name"] == "Alpha Person"
    stranger = await by_hash(b.ids["Contact"], None)
    assert stranger.json()["data"] == {"contact": None}, stranger.text
    assert [e["extensions"]["code"] for e in stranger.json()["errors"]] == ["UNAUTHENTICATED"]
    assert stranger.headers["cache-control"] == "no-store"


async def test_the_inbox_report_counts_only_the_callers_workspace(api: Api, worlds: list[World]) -> None:
    a, b = await intact(api, worlds)
    doc = """query($from: DateTime!, $to: DateTime!) { inboxReport(from: $from, to: $to, groupBy: CHANNEL) {
      rows { channel { id } conversations } total { conversations } } }"""
    span = {"from": (datetime.now(UTC) - timedelta(days=30)).isoformat(), "to": datetime.now(UTC).isoformat()}
    for world, other in ((a, b), (b, a)):
        report = (await api(doc, span, token=world.owner))["inboxReport"]
        mine = (await snapshot(api, world))["conversations"]["edges"]
        assert report["total"]["conversations"] == len(mine) > 0
        assert {r["channel"]["id"] for r in report["rows"]} == {world.ids["Channel"]}
        assert other.ids["Channel"] not in str(report)
        # Its all-scopes API key (reports:read included) sees the same, and a session nothing.
        assert (await api(doc, span, token=world.key))["inboxReport"] == report
        errors = await api.errors(doc, span, token=world.session_token)
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"


# -- writing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    mutation: str
    input_type: str
    make_input: Callable[[World, World], dict[str, Any]]
    field: list[str]
    label: str = ""
    # A's principals that try it: "owner", "key" (A's all-scopes API key), "session".
    principals: tuple[str, ...] = ("owner", "key")
    code: str = "NOT_FOUND"

    @property
    def id(self) -> str:
        return f"{self.mutation}{'-' + self.label if self.label else ''}"


MUTATION_CASES = [
    Case(
        "updateContact",
        "UpdateContactInput",
        lambda a, b: {
            "id": b.ids["Contact"],
            "city": "Pwned",
            "vip": True,
            "attributes": [{"key": "plan", "value": "free"}],
        },
        ["id"],
    ),
    Case(
        "updateContact",
        "UpdateContactInput",
        lambda a, b: {"id": b.ids["Contact"], "name": "Pwned"},
        ["id"],
        "identity",
    ),
    Case("deleteContact", "ContactIdInput", lambda a, b: {"id": b.ids["Contact"]}, ["id"]),
    Case("blockContact", "ContactIdInput", lambda a, b: {"id": b.ids["Contact"]}, ["id"]),
    Case("unblockContact", "ContactIdInput", lambda a, b: {"id": b.blocked_contact}, ["id"]),
    Case(
        "mergeContacts",
        "MergeContactsInput",
        lambda a, b: {"primaryId": a.ids["Contact"], "secondaryId": b.ids["Contact"]},
        ["secondaryId"],
        "B-into-A",
    ),
    Case(
        "mergeContacts",
        "MergeContactsInput",
        lambda a, b: {"primaryId": b.ids["Contact"], "secondaryId": a.ids["Contact"]},
        ["primaryId"],
        "A-into-B",
    ),
    Case(
        "mergeContacts",
        "MergeContactsInput",
        lambda a, b: {"primaryId": b.ids["Contact"], "secondaryId": b.blocked_contact},
        ["primaryId"],
        "B-into-B",
    ),
    Case(
        "tagContact", "TagContactInput", lambda a, b: {"contactId": b.ids["Contact"], "tags": ["pwned"]}, ["contactId"]
    ),
    Case(
        "untagContact",
        "TagContactInput",
        lambda a, b: {"contactId": b.ids["Contact"], "tags": ["beta-tag"]},
        ["contactId"],
    ),
    Case(
        "addContactNote",
        "AddContactNoteInput",
        lambda a, b: {"contactId": b.ids["Contact"], "body": "pwned"},
        ["contactId"],
        principals=("owner",),
    ),
    Case("deleteContactNote", "ContactIdInput", lambda a, b: {"id": b.ids["ContactNote"]}, ["id"]),
    Case("trackEvent", "TrackEventInput", lambda a, b: {"contactId": b.ids["Contact"], "name": "pwned"}, ["contactId"]),
    Case(
        "trackEvent",
        "TrackEventInput",
        lambda a, b: {"contactId": b.ids["Contact"], "name": "pwned"},
        ["contactId"],
        "session",
        principals=("session",),
        code="FORBIDDEN",
    ),
    Case(
        "updateAttributeDefinition",
        "UpdateAttributeDefinitionInput",
        lambda a, b: {"id": b.ids["AttributeDefinition"], "label": "Pwned", "crmManaged": False},
        ["id"],
    ),
    Case("deleteAttributeDefinition", "ContactIdInput", lambda a, b: {"id": b.ids["AttributeDefinition"]}, ["id"]),
    Case(
        "reorderAttributeDefinitions",
        "ReorderAttributeDefinitionsInput",
        lambda a, b: {"ids": list(reversed(b.definition_ids))},
        ["ids", "0"],
    ),
    Case(
        "reorderAttributeDefinitions",
        "ReorderAttributeDefinitionsInput",
        lambda a, b: {"ids": [*a.definition_ids, b.ids["AttributeDefinition"]]},
        ["ids", str(len(PLATFORM_ATTRIBUTES) + 1)],
        "with-A-ids",
    ),
    Case(
        "updateAgent",
        "UpdateAgentInput",
        lambda a, b: {"id": b.ids["Agent"], "role": "ADMIN", "name": "Pwned", "canEditContactIdentity": True},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "updateAgent",
        "UpdateAgentInput",
        lambda a, b: {"id": b.owner_agent, "role": "AGENT"},
        ["id"],
        "B-owner",
        principals=("owner",),
    ),
    Case(
        "addTeamMembers",
        "TeamMembersInput",
        lambda a, b: {"teamId": b.ids["Team"], "agentIds": [a.ids["Agent"]]},
        ["teamId"],
        "B-team",
        principals=("owner",),
    ),
    Case(
        "addTeamMembers",
        "TeamMembersInput",
        lambda a, b: {"teamId": a.ids["Team"], "agentIds": [b.ids["Agent"]]},
        ["agentIds", "0"],
        "B-agent",
        principals=("owner",),
    ),
    Case(
        "removeTeamMembers",
        "TeamMembersInput",
        lambda a, b: {"teamId": b.ids["Team"], "agentIds": [b.ids["Agent"]]},
        ["teamId"],
        "B-team",
        principals=("owner",),
    ),
    Case(
        "removeTeamMembers",
        "TeamMembersInput",
        lambda a, b: {"teamId": a.ids["Team"], "agentIds": [a.ids["Agent"], b.ids["Agent"]]},
        ["agentIds", "1"],
        "B-agent",
        principals=("owner",),
    ),
    Case("revokeApiKey", "RevokeApiKeyInput", lambda a, b: {"id": b.ids["ApiKey"]}, ["id"], principals=("owner",)),
    Case("deactivateAgent", "AgentIdInput", lambda a, b: {"id": b.ids["Agent"]}, ["id"], principals=("owner",)),
    Case("reactivateAgent", "AgentIdInput", lambda a, b: {"id": b.ids["Agent"]}, ["id"], principals=("owner",)),
    Case(
        "createSegment",
        "CreateSegmentInput",
        lambda a, b: {"name": "Shared", "visibility": "SHARED", "rules": {"match": "ALL"}, "teamIds": [b.ids["Team"]]},
        ["teamIds", "0"],
        "B-team",
        principals=("owner",),
    ),
    Case(
        "createSegment",
        "CreateSegmentInput",
        lambda a, b: {
            "name": "Shared",
            "visibility": "SHARED",
            "rules": {"match": "ALL"},
            "agentIds": [a.ids["Agent"], b.ids["Agent"]],
        },
        ["agentIds", "1"],
        "B-agent",
        principals=("owner",),
    ),
    Case(
        "updateSegment",
        "UpdateSegmentInput",
        lambda a, b: {"id": b.ids["Segment"], "name": "Pwned", "rules": {"match": "ANY"}},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "updateSegment",
        "UpdateSegmentInput",
        lambda a, b: {"id": a.ids["Segment"], "visibility": "SHARED", "teamIds": [b.ids["Team"]]},
        ["teamIds", "0"],
        "B-team",
        principals=("owner",),
    ),
    Case(
        "updateSegment",
        "UpdateSegmentInput",
        lambda a, b: {"id": a.ids["Segment"], "visibility": "SHARED", "agentIds": [b.ids["Agent"]]},
        ["agentIds", "0"],
        "B-agent",
        principals=("owner",),
    ),
    Case("deleteSegment", "DeleteSegmentInput", lambda a, b: {"id": b.ids["Segment"]}, ["id"], principals=("owner",)),
    Case(
        "updateChannel",
        "UpdateChannelInput",
        lambda a, b: {"id": b.ids["Channel"], "name": "Pwned", "notifyEmails": ["x@evil.example"]},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "updateChannel",
        "UpdateChannelInput",
        lambda a, b: {
            "id": b.ids["Channel"],
            "crmLookupUrl": "https://crm.evil.example/lookup",
            "crmLookupSecret": "attacker-chosen-secret",
        },
        ["id"],
        "crm-lookup",
        principals=("owner",),
    ),
    Case("rotateChannelSecret", "ChannelIdInput", lambda a, b: {"id": b.ids["Channel"]}, ["id"], principals=("owner",)),
    Case("deleteChannel", "ChannelIdInput", lambda a, b: {"id": b.ids["Channel"]}, ["id"], principals=("owner",)),
    Case(
        "setApnsCredentials",
        "SetApnsCredentialsInput",
        lambda a, b: {
            "channelId": b.ids["Channel"],
            "privateKey": "k",
            "keyId": "ABC123DEFG",
            "teamId": "TEAM123456",
            "bundleId": "com.evil.app",
        },
        ["channelId"],
        principals=("owner",),
    ),
    Case(
        "setFcmCredentials",
        "SetFcmCredentialsInput",
        lambda a, b: {"channelId": b.ids["Channel"], "serviceAccountJson": "{}"},
        ["channelId"],
        principals=("owner",),
    ),
    Case(
        "removePushCredentials",
        "RemovePushCredentialsInput",
        lambda a, b: {"channelId": b.ids["Channel"], "platform": "IOS"},
        ["channelId"],
        principals=("owner",),
    ),
    Case(
        "setPushOptions",
        "SetPushOptionsInput",
        lambda a, b: {"channelId": b.ids["Channel"], "showMessageText": True},
        ["channelId"],
        principals=("owner",),
    ),
    Case("deleteTopic", "TopicIdInput", lambda a, b: {"id": b.ids["Topic"]}, ["id"], principals=("owner",)),
    # Canned responses are agents' alone: an API key is refused before any lookup.
    Case(
        "updateCannedResponse",
        "UpdateCannedResponseInput",
        lambda a, b: {"id": b.ids["CannedResponse"], "body": "pwned"},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "deleteCannedResponse",
        "CannedResponseIdInput",
        lambda a, b: {"id": b.ids["CannedResponse"]},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "startConversation",
        "StartConversationInput",
        lambda a, b: {"body": "pwned", "contactId": b.ids["Contact"], "channelId": a.ids["Channel"]},
        ["contactId"],
        "B-contact",
    ),
    Case(
        "startConversation",
        "StartConversationInput",
        lambda a, b: {"body": "pwned", "contactId": a.ids["Contact"], "channelId": b.ids["Channel"]},
        ["channelId"],
        "B-channel",
    ),
    Case(
        "startConversation",
        "StartConversationInput",
        lambda a, b: {"body": "pwned", "topicId": b.ids["Topic"]},
        ["topicId"],
        "B-topic",
        principals=("session",),
    ),
    Case(
        "sendMessage",
        "SendMessageInput",
        lambda a, b: {"conversationId": b.ids["Conversation"], "body": "pwned"},
        ["conversationId"],
        principals=("owner", "key", "session"),
    ),
    # Another workspace's direct upload, each of A's principals trying B's counterpart's.
    *(
        Case(
            "sendMessage",
            "SendMessageInput",
            lambda a, b, who=who: {"conversationId": a.ids["Conversation"], "uploadIds": [b.uploads[who]]},
            ["uploadIds", "0"],
            f"B-upload-{who}",
            principals=(who,),
        )
        for who in ("owner", "key", "session")
    ),
    Case(
        "startConversation",
        "StartConversationInput",
        lambda a, b: {"body": "", "uploadIds": [b.uploads["session"]]},
        ["uploadIds", "0"],
        "B-upload",
        principals=("session",),
    ),
    Case(
        "setTyping",
        "SetTypingInput",
        lambda a, b: {"conversationId": b.ids["Conversation"]},
        ["conversationId"],
        principals=("owner", "session"),
    ),
    Case(
        "addConversationNote",
        "AddConversationNoteInput",
        lambda a, b: {"conversationId": b.ids["Conversation"], "body": "pwned"},
        ["conversationId"],
        principals=("owner",),
    ),
    Case(
        "setConversationStatus",
        "SetConversationStatusInput",
        lambda a, b: {"id": b.ids["Conversation"], "status": "RESOLVED"},
        ["id"],
    ),
    Case(
        "assignConversation",
        "AssignConversationInput",
        lambda a, b: {"id": b.ids["Conversation"], "assigneeId": a.owner_agent},
        ["id"],
    ),
    Case(
        "assignConversation",
        "AssignConversationInput",
        lambda a, b: {"id": a.ids["Conversation"], "assigneeId": b.owner_agent},
        ["assigneeId"],
        "B-agent",
    ),
    Case(
        "assignConversation",
        "AssignConversationInput",
        lambda a, b: {"id": a.ids["Conversation"], "teamId": b.ids["Team"]},
        ["teamId"],
        "B-team",
    ),
    Case(
        "markConversationRead",
        "ConversationIdInput",
        lambda a, b: {"id": b.ids["Conversation"]},
        ["id"],
        principals=("owner", "key", "session"),
    ),
    Case(
        "rateConversation",
        "RateConversationInput",
        lambda a, b: {"id": b.ids["Conversation"], "rating": 1},
        ["id"],
        principals=("session",),
    ),
    Case(
        "setConversationTopic",
        "SetConversationTopicInput",
        lambda a, b: {"id": b.ids["Conversation"], "topicId": None},
        ["id"],
    ),
    Case(
        "setConversationTopic",
        "SetConversationTopicInput",
        lambda a, b: {"id": a.ids["Conversation"], "topicId": b.ids["Topic"]},
        ["topicId"],
        "B-topic",
    ),
    Case(
        "exportContacts",
        "ExportContactsInput",
        lambda a, b: {"columns": ["email"], "segmentId": b.ids["Segment"]},
        ["segmentId"],
    ),
    Case(
        "exportAttributeReport",
        "ExportAttributeReportInput",
        lambda a, b: {"segmentId": b.ids["Segment"]},
        ["segmentId"],
    ),
    Case("cancelJob", "CancelJobInput", lambda a, b: {"id": b.ids["Job"]}, ["id"]),
    Case(
        "createCampaign",
        "CreateCampaignInput",
        lambda a, b: {"name": "Pwned", "channelId": a.ids["Channel"], "body": "pwned", "segmentId": b.ids["Segment"]},
        ["segmentId"],
        "B-segment",
    ),
    Case(
        "createCampaign",
        "CreateCampaignInput",
        lambda a, b: {
            "name": "Pwned",
            "channelId": a.ids["Channel"],
            "body": "pwned",
            "contactIds": [a.ids["Contact"], b.ids["Contact"]],
        },
        ["contactIds", "1"],
        "B-contact",
    ),
    Case(
        "createCampaign",
        "CreateCampaignInput",
        lambda a, b: {
            "name": "Pwned",
            "channelId": b.ids["Channel"],
            "body": "pwned",
            "contactIds": [a.ids["Contact"]],
        },
        ["channelId"],
        "B-channel",
    ),
    Case(
        "createCampaign",
        "CreateCampaignInput",
        lambda a, b: {
            "name": "Pwned",
            "channelId": a.ids["Channel"],
            "body": "pwned",
            "contactIds": [a.ids["Contact"]],
            "topicId": b.ids["Topic"],
        },
        ["topicId"],
        "B-topic",
    ),
    Case("cancelCampaign", "CancelCampaignInput", lambda a, b: {"id": b.ids["Campaign"]}, ["id"]),
    Case(
        "startBulkAction",
        "StartBulkActionInput",
        lambda a, b: {"target": {"ids": [a.ids["Contact"], b.ids["Contact"]]}, "action": "BLOCK"},
        ["target", "ids", "1"],
        "B-ids",
    ),
    Case(
        "startBulkAction",
        "StartBulkActionInput",
        lambda a, b: {"target": {"segmentId": b.ids["Segment"]}, "action": "DELETE", "confirm": 1},
        ["target", "segmentId"],
        "B-segment",
    ),
    Case(
        "startBulkAction",
        "StartBulkActionInput",
        lambda a, b: {
            "target": {"ids": [a.ids["Contact"]]},
            "action": "ASSIGN_CONVERSATIONS",
            "assigneeId": b.owner_agent,
        },
        ["assigneeId"],
        "B-agent",
    ),
    Case("cancelBulkAction", "CancelBulkActionInput", lambda a, b: {"id": b.ids["BulkAction"]}, ["id"]),
    Case("exportContactData", "ContactIdInput", lambda a, b: {"id": b.ids["Contact"]}, ["id"]),
    Case(
        "createProactiveMessage",
        "CreateProactiveMessageInput",
        lambda a, b: {"name": "Pwned", "channelId": b.ids["Channel"]},
        ["channelId"],
        "B-channel",
        principals=("owner",),
    ),
    Case(
        "createProactiveMessage",
        "CreateProactiveMessageInput",
        lambda a, b: {"name": "Pwned", "routeTeamId": b.ids["Team"]},
        ["routeTeamId"],
        "B-team",
        principals=("owner",),
    ),
    Case(
        "createProactiveMessage",
        "CreateProactiveMessageInput",
        lambda a, b: {"name": "Pwned", "botAnswerId": b.ids["BotAnswer"]},
        ["botAnswerId"],
        "B-bot-answer",
        principals=("owner",),
    ),
    Case(
        "createProactiveMessage",
        "CreateProactiveMessageInput",
        lambda a, b: {
            "name": "Pwned",
            "rules": {
                "match": "ALL",
                "conditions": [{"field": "SEGMENT", "operator": "MEMBER_OF", "segmentId": b.ids["Segment"]}],
            },
        },
        ["rules", "conditions", "0", "value"],
        "B-segment",
        principals=("owner",),
    ),
    Case(
        "updateProactiveMessage",
        "UpdateProactiveMessageInput",
        lambda a, b: {"id": b.ids["ProactiveMessage"], "name": "Pwned", "text": "Pwned"},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "updateProactiveMessage",
        "UpdateProactiveMessageInput",
        lambda a, b: {"id": a.ids["ProactiveMessage"], "channelId": b.ids["Channel"]},
        ["channelId"],
        "B-channel",
        principals=("owner",),
    ),
    Case(
        "cloneProactiveMessage",
        "ProactiveMessageIdInput",
        lambda a, b: {"id": b.ids["ProactiveMessage"]},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "publishProactiveMessage",
        "ProactiveMessageIdInput",
        lambda a, b: {"id": b.ids["ProactiveMessage"]},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "pauseProactiveMessage",
        "ProactiveMessageIdInput",
        lambda a, b: {"id": b.ids["ProactiveMessage"]},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "resumeProactiveMessage",
        "ProactiveMessageIdInput",
        lambda a, b: {"id": b.ids["ProactiveMessage"]},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "deleteProactiveMessage",
        "ProactiveMessageIdInput",
        lambda a, b: {"id": b.ids["ProactiveMessage"]},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "createBotAnswer",
        "CreateBotAnswerInput",
        lambda a, b: {"botId": b.ids["Bot"], "channelId": a.ids["Channel"], "name": "P", "body": "P"},
        ["botId"],
        "B-bot",
        principals=("owner",),
    ),
    Case(
        "createBotAnswer",
        "CreateBotAnswerInput",
        lambda a, b: {"botId": a.ids["Bot"], "channelId": b.ids["Channel"], "name": "P", "body": "P"},
        ["channelId"],
        "B-channel",
        principals=("owner",),
    ),
    Case(
        "updateBotAnswer",
        "UpdateBotAnswerInput",
        lambda a, b: {"id": b.ids["BotAnswer"], "body": "Pwned"},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "updateBotAnswer",
        "UpdateBotAnswerInput",
        lambda a, b: {"id": a.ids["BotAnswer"], "channelId": b.ids["Channel"]},
        ["channelId"],
        "B-channel",
        principals=("owner",),
    ),
    Case(
        "publishBotAnswer", "BotAnswerIdInput", lambda a, b: {"id": b.ids["BotAnswer"]}, ["id"], principals=("owner",)
    ),
    Case(
        "unpublishBotAnswer", "BotAnswerIdInput", lambda a, b: {"id": b.ids["BotAnswer"]}, ["id"], principals=("owner",)
    ),
    Case("deleteBotAnswer", "BotAnswerIdInput", lambda a, b: {"id": b.ids["BotAnswer"]}, ["id"], principals=("owner",)),
    Case(
        "openProactiveMessage",
        "ProactiveDeliveryIdInput",
        lambda a, b: {"deliveryId": b.ids["ProactiveDelivery"]},
        ["deliveryId"],
        principals=("session",),
    ),
    Case(
        "dismissProactiveMessage",
        "ProactiveDeliveryIdInput",
        lambda a, b: {"deliveryId": b.ids["ProactiveDelivery"]},
        ["deliveryId"],
        principals=("session",),
    ),
    Case(
        "answerProactiveMessage",
        "AnswerProactiveMessageInput",
        lambda a, b: {"deliveryId": b.ids["ProactiveDelivery"], "body": "Pwned"},
        ["deliveryId"],
        principals=("session",),
    ),
    Case(
        "updateWebhookEndpoint",
        "UpdateWebhookEndpointInput",
        lambda a, b: {"id": b.ids["WebhookEndpoint"], "url": "https://evil.example.com/steal", "enabled": False},
        ["id"],
    ),
    Case(
        "rotateWebhookEndpointSecret", "WebhookEndpointIdInput", lambda a, b: {"id": b.ids["WebhookEndpoint"]}, ["id"]
    ),
    Case("deleteWebhookEndpoint", "WebhookEndpointIdInput", lambda a, b: {"id": b.ids["WebhookEndpoint"]}, ["id"]),
    Case("pingWebhookEndpoint", "WebhookEndpointIdInput", lambda a, b: {"id": b.ids["WebhookEndpoint"]}, ["id"]),
    Case(
        "createRoutingRule",
        "CreateRoutingRuleInput",
        lambda a, b: {"name": "Pwned", "teamId": b.ids["Team"]},
        ["teamId"],
        "B-team",
        principals=("owner",),
    ),
    Case(
        "createRoutingRule",
        "CreateRoutingRuleInput",
        lambda a, b: {"name": "Pwned", "teamId": a.ids["Team"], "channelIds": [a.ids["Channel"], b.ids["Channel"]]},
        ["channelIds", "1"],
        "B-channel",
        principals=("owner",),
    ),
    Case(
        "createRoutingRule",
        "CreateRoutingRuleInput",
        lambda a, b: {"name": "Pwned", "teamId": a.ids["Team"], "segmentId": b.ids["Segment"]},
        ["segmentId"],
        "B-segment",
        principals=("owner",),
    ),
    Case(
        "updateRoutingRule",
        "UpdateRoutingRuleInput",
        lambda a, b: {"id": b.ids["RoutingRule"], "enabled": False},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "updateRoutingRule",
        "UpdateRoutingRuleInput",
        lambda a, b: {"id": a.ids["RoutingRule"], "teamId": b.ids["Team"]},
        ["teamId"],
        "A-rule-B-team",
        principals=("owner",),
    ),
    Case(
        "deleteRoutingRule",
        "DeleteRoutingRuleInput",
        lambda a, b: {"id": b.ids["RoutingRule"]},
        ["id"],
        principals=("owner",),
    ),
    Case(
        "setAgentCapacity",
        "SetAgentCapacityInput",
        lambda a, b: {"agentId": b.ids["Agent"], "capacity": 0},
        ["agentId"],
        principals=("owner",),
    ),
]


def _case_params() -> list[Any]:
    return [pytest.param(case, who, id=f"{case.id}-as-{who}") for case in MUTATION_CASES for who in case.principals]


def test_mutation_cases_name_real_mutations_and_inputs() -> None:
    """A typo in a case would be a GraphQL validation error, not a tenancy check."""
    mutation = _graphql_schema().type_map["Mutation"]
    for case in MUTATION_CASES:
        assert case.mutation in mutation.fields, case.mutation
        assert _unwrap(mutation.fields[case.mutation].args["input"].type).name == case.input_type, case.id


@pytest.mark.parametrize(("case", "who"), _case_params())
async def test_mutation_with_another_workspaces_id_is_not_found_and_changes_nothing(
    api: Api, worlds: list[World], case: Case, who: str
) -> None:
    a, b = await intact(api, worlds)
    token = {"owner": a.owner, "key": a.key, "session": a.session_token}[who]
    before = (await snapshot(api, a), await snapshot(api, b))
    doc = f"mutation($i: {case.input_type}!) {{ {case.mutation}(input: $i) {{ userErrors {{ field code message }} }} }}"
    body = (await api.raw(doc, {"i": case.make_input(a, b)}, token=token)).json()
    assert "errors" not in body, body
    errors = body["data"][case.mutation]["userErrors"]
    assert [(e["field"], e["code"]) for e in errors] == [(case.field, case.code)], errors
    after = (await snapshot(api, a), await snapshot(api, b))
    assert after[1] == before[1], "workspace B changed"
    assert after[0] == before[0], "workspace A changed"


async def test_same_mutations_succeed_within_the_workspace(api: Api) -> None:
    """The control for the cases above: with ids of its own workspace, the owner gets
    past the lookups (so the inputs are right and NOT_FOUND above is scoping)."""
    c = await build_world(api, "Gamma")
    for case in MUTATION_CASES:
        if "owner" not in case.principals:
            continue
        # Point the case at C's own objects: "a" and "b" are both C.
        variables = case.make_input(c, c)
        doc = (
            f"mutation($i: {case.input_type}!) {{ {case.mutation}(input: $i) {{ "
            "userErrors { field code message } } }"
        )
        body = (await api.raw(doc, {"i": variables}, token=c.owner)).json()
        assert "errors" not in body, (case.id, body)
        errors = body["data"][case.mutation]["userErrors"]
        assert all(e["code"] != "NOT_FOUND" for e in errors), (case.id, errors)
        c = await build_world(api, "Gamma") if case.mutation in _DESTRUCTIVE else c


_DESTRUCTIVE = {
    "deleteContact",
    "mergeContacts",
    "deleteAttributeDefinition",
    "deleteContactNote",
    "deleteSegment",
    "deleteChannel",
    "deleteTopic",
    "deleteWebhookEndpoint",
    "deleteRoutingRule",
    "deleteCannedResponse",
}


async def test_a_session_token_of_one_workspace_does_not_resume_on_another(api: Api, worlds: list[World]) -> None:
    a, b = await intact(api, worlds)
    before = await snapshot(api, b)
    doc = (
        "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { "
        "token contact { id } userErrors { field code } } }"
    )
    started = (await api(doc, {"i": {"channelKey": a.tenant.channel.public_key, "sessionToken": b.session_token}}))[
        "startContactSession"
    ]
    assert started["userErrors"] == []
    assert started["contact"]["id"] not in (b.session_contact, a.session_contact)
    assert (await api(CONTACT, {"id": b.session_contact}, token=started["token"]))["contact"] is None
    assert await snapshot(api, b) == before


# -- subscriptions -------------------------------------------------------------------------

SUBSCRIBE = "subscription($id: ID!) { contactUpdated(id: $id) { kind contactId contact { id city } } }"
SUBSCRIBE_SEGMENT = "subscription($id: ID!) { segmentMembershipChanged(segmentId: $id) { cursor joinedContactIds } }"
SUBSCRIBE_MESSAGES = "subscription($id: ID!) { messageAdded(conversationId: $id) { cursor message { body } } }"
SUBSCRIBE_JOB = "subscription($id: ID!) { jobProgress(jobId: $id) { id status } }"


async def _receive(ws: Any, timeout: float = 10.0) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
            continue
        return message  # type: ignore[no-any-return]


async def test_subscriptions_do_not_cross_workspaces(api: Api, worlds: list[World], live_server: Any) -> None:
    a, b = await intact(api, worlds)
    attempts = [
        (SUBSCRIBE, b.ids["Contact"]),
        (SUBSCRIBE, b.session_contact),
        (SUBSCRIBE_SEGMENT, b.ids["Segment"]),
        (SUBSCRIBE_MESSAGES, b.ids["Conversation"]),
        (SUBSCRIBE_JOB, b.ids["Job"]),
    ]
    for who, token in _a_principals(a).items():
        async with connect(live_server.ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
            assert (await _receive(ws))["type"] == "connection_ack", who
            for n, (query, target) in enumerate(attempts, start=1):
                await ws.send(
                    json.dumps(
                        {"id": str(n), "type": "subscribe", "payload": {"query": query, "variables": {"id": target}}}
                    )
                )
                message = await _receive(ws)
                assert message["id"] == str(n)
                # Strawberry reports a resolver's error as a `next` without data, then
                # completes the operation; a protocol-level `error` would do as well.
                if message["type"] == "next":
                    assert message["payload"]["data"] is None, (who, message)
                    errors = message["payload"]["errors"]
                    assert (await _receive(ws)) == {"id": str(n), "type": "complete"}
                else:
                    assert message["type"] == "error", (who, message)
                    errors = message["payload"]
                # A contact session may not read segments at all, its own workspace's included.
                forbidden = query in (SUBSCRIBE_SEGMENT, SUBSCRIBE_MESSAGES) and who == "A contact session"
                expected = "FORBIDDEN" if forbidden else "NOT_FOUND"
                assert [e["extensions"]["code"] for e in errors] == [expected], (who, message)

    # The control: A's owner does get its own contact's updates on the same server.
    async with connect(live_server.ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {a.owner}"}}))
        assert (await _receive(ws))["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIBE, "variables": {"id": a.session_contact}},
                }
            )
        )
        update = "mutation($i: UpdateContactInput!) { updateContact(input: $i) { userErrors { code } } }"
        for attempt in range(50):  # the server subscribes to Redis asynchronously: retry until heard
            await api(update, {"i": {"id": a.session_contact, "city": f"City {attempt}"}}, token=a.owner)
            try:
                message = await _receive(ws, timeout=0.3)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("A's owner never received its own contact's update")
        assert message["type"] == "next", message
        assert message["payload"]["data"]["contactUpdated"]["contactId"] == a.session_contact


CONVERSATION_EVENTS = (
    "subscription($f: ConversationEventFilter) { conversationEvents(filter: $f) { kind conversationId } }"
)
SET_STATUS = "mutation($i: SetConversationStatusInput!) { setConversationStatus(input: $i) { userErrors { code } } }"


async def test_conversation_events_never_carry_another_workspaces_events(
    api: Api, worlds: list[World], live_server: Any
) -> None:
    """A's inbox hears A's events only, whatever filter (B's ids included) it asks for.
    B's event is published first: had it leaked, it would arrive before A's."""
    from tests.conftest import hub_subscriptions
    from tests.realtime.wsclient import GraphQLWs

    a, b = await intact(api, worlds)
    async with GraphQLWs.open(live_server.ws_url, a.owner) as ws:
        everything = await ws.subscribe(CONVERSATION_EVENTS, {})
        with_b_ids = await ws.subscribe(
            CONVERSATION_EVENTS, {"f": {"assigneeId": b.owner_agent, "channelId": b.ids["Channel"]}}
        )
        await hub_subscriptions(live_server, 2)
        for world in (b, a):
            for status in ("SNOOZED", "OPEN"):
                extra = {"snoozePreset": "TOMORROW"} if status == "SNOOZED" else {}
                result = await api(
                    SET_STATUS, {"i": {"id": world.ids["Conversation"], "status": status, **extra}}, token=world.owner
                )
                assert result["setConversationStatus"]["userErrors"] == []
        first = (await everything.next_data())["conversationEvents"]
        assert first == {"kind": "STATUS_CHANGED", "conversationId": a.ids["Conversation"]}
        with pytest.raises(TimeoutError):
            await with_b_ids.receive(timeout=0.5)


INBOX_EVENTS = (
    "subscription($f: InboxEventFilter, $after: String) { inboxEvents(filter: $f, after: $after) { "
    "cursor kind conversationId note { body mentions { id } } } }"
)
ADD_NOTE = (
    "mutation($i: AddConversationNoteInput!) { addConversationNote(input: $i) { "
    "note { id mentions { id } } userErrors { field code } } }"
)


async def test_inbox_events_never_carry_another_workspaces_events(
    api: Api, worlds: list[World], live_server: Any
) -> None:
    """A's feed hears A's events only, whatever filter or cursor (B's included) it asks
    for; B's note, written first, would arrive first had it leaked. A mention of B's agent
    in A's note resolves to nobody. A contact session, and so a stranger with the widget
    key, gets no feed at all; nor does an API key without conversations:read."""
    from models.conversations import InboxEvent
    from tests.conftest import hub_subscriptions
    from tests.realtime.wsclient import GraphQLWs

    a, b = await intact(api, worlds)
    b_agent_email = (
        await api("query($id: ID!) { node(id: $id) { ... on Agent { email } } }", {"id": b.ids["Agent"]}, token=b.owner)
    )["node"]["email"]
    b_latest = await InboxEvent.filter(workspace_id=b.tenant.workspace.id).order_by("-id").first()
    assert b_latest is not None
    async with GraphQLWs.open(live_server.ws_url, a.owner) as ws:
        everything = await ws.subscribe(INBOX_EVENTS, {})
        with_b_ids = await ws.subscribe(INBOX_EVENTS, {"f": {"channelId": b.ids["Channel"]}})
        # B's cursor: what A replays from it is A's own events only.
        from_b_cursor = await ws.subscribe(INBOX_EVENTS, {"after": str(b_latest.id - 1), "f": {"kinds": ["NOTE"]}})
        await hub_subscriptions(live_server, 3)
        await _ok(
            api,
            ADD_NOTE,
            {"i": {"conversationId": b.ids["Conversation"], "body": "B secret"}},
            b.owner,
            "addConversationNote",
        )
        mine = await _ok(
            api,
            ADD_NOTE,
            {"i": {"conversationId": a.ids["Conversation"], "body": f"A note for @{b_agent_email}"}},
            a.owner,
            "addConversationNote",
        )
        assert mine["note"]["mentions"] == []
        first = (await everything.next_data())["inboxEvents"]
        assert first["conversationId"] == a.ids["Conversation"] and first["note"]["body"].startswith("A note")
        replayed = (await from_b_cursor.next_data())["inboxEvents"]
        assert replayed["conversationId"] == a.ids["Conversation"], replayed
        with pytest.raises(TimeoutError):
            await with_b_ids.receive(timeout=0.5)

    key = await _ok(
        api,
        "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret userErrors { field code } } }",
        {"i": {"name": "no inbox", "scopes": ["contacts:read"]}},
        a.owner,
        "createApiKey",
    )
    for token in (a.session_token, key["secret"]):
        async with GraphQLWs.open(live_server.ws_url, token) as ws:
            refused = await (await ws.subscribe(INBOX_EVENTS, {})).receive()
            errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
            assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"], refused
