"""Scopes on every path (issue 22): personal data is checked wherever it is reached, not
only at the root field, and a contact session gets its own narrow view.

The types that carry personal data (`PROTECTED`) each have a guard (runtime/guards.py).
`test_every_path_to_personal_data_has_a_case` walks the GraphQL type graph from Query,
Mutation and Subscription and lists every field by which each protected type is reached
(looking through connections and the Node interface); each one must have a case below, so
a new field reaching Contact fails here until it is tried. Each case runs twice: with the
all-scopes key (the control: the response holds the personal value) and with an API key
lacking the type's scope, or a contact session (the response holds none of it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from graphql import GraphQLInterfaceType, GraphQLList, GraphQLNonNull, GraphQLObjectType

from jobs.segments import refresh_segment
from models.conversations import Conversation as ConversationRow
from models.conversations import ConversationTag
from tests.conftest import Api, Tenant, pk

# Protected type -> the scope an agent or API key needs to see it.
PROTECTED = {
    "Contact": "contacts:read",
    "ContactNote": "contacts:read",
    "ContactEvent": "contacts:read",
    "Conversation": "conversations:read",
    "Message": "conversations:read",
    "WebhookDelivery": "webhooks:manage",
}

# Personal values planted in the workspace: a refused response holds none of them.
EMAIL = "dana.private@example.com"
PHONE = "+14155550123"
NOTE = "note: owes us money"
EVENT_SECRET = "event-private-value"
MESSAGE = "my card is in my drawer"
SUBJECT = "private subject line"
SECRETS = (EMAIL, PHONE, NOTE, EVENT_SECRET, MESSAGE, SUBJECT)


def _unwrap(t: Any) -> Any:
    while isinstance(t, GraphQLNonNull | GraphQLList):
        t = t.of_type
    return t


def entries() -> dict[str, set[str]]:
    """Protected type -> every `Type.field` by which it is reached from the roots."""
    from schema import build_schema

    schema = build_schema(introspection=True)._schema

    def targets(field_type: Any) -> list[Any]:
        t = _unwrap(field_type)
        if isinstance(t, GraphQLInterfaceType):
            return list(schema.get_possible_types(t))
        if isinstance(t, GraphQLObjectType) and t.name.endswith("Connection") and "edges" in t.fields:
            return targets(_unwrap(t.fields["edges"].type).fields["node"].type)
        return [t] if isinstance(t, GraphQLObjectType) else []

    found: dict[str, set[str]] = {name: set() for name in PROTECTED}
    seen: set[str] = set()
    todo = ["Query", "Mutation", "Subscription"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for field_name, field in schema.type_map[name].fields.items():
            for target in targets(field.type):
                if target.name in found:
                    found[target.name].add(f"{name}.{field_name}")
                todo.append(target.name)
    return found


# -- the workspace -------------------------------------------------------------------------


@dataclass
class World:
    tenant: Tenant
    ids: dict[str, str]
    session: str  # a contact session's token (another contact than ids["Contact"])
    session_contact: str
    keys: dict[tuple[str, ...], str]

    async def key(self, *scopes: str) -> str:
        if scopes not in self.keys:
            made = await self.tenant.api(
                "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret userErrors { code } } }",
                {"i": {"name": "+".join(scopes), "scopes": list(scopes)}},
                token=self.tenant.owner_token,
            )
            self.keys[scopes] = made["createApiKey"]["secret"]
        return self.keys[scopes]


async def _ok(api: Api, doc: str, variables: dict[str, Any], token: str, root: str) -> dict[str, Any]:
    payload = (await api(doc, variables, token=token))[root]
    assert payload["userErrors"] == [], (root, payload["userErrors"])
    return payload  # type: ignore[no-any-return]


async def build_world(api: Api, tenant: Tenant) -> World:
    owner = tenant.owner_token
    ids: dict[str, str] = {}
    contact = await tenant.contact(name="Dana Private", email=EMAIL, phone=PHONE, tags=["owes-money"])
    ids["Contact"] = contact["id"]
    note = await _ok(
        api,
        "mutation($i: AddContactNoteInput!) { addContactNote(input: $i) { note { id } userErrors { code } } }",
        {"i": {"contactId": ids["Contact"], "body": NOTE}},
        owner,
        "addContactNote",
    )
    ids["ContactNote"] = note["note"]["id"]
    event = await _ok(
        api,
        "mutation($i: TrackEventInput!) { trackEvent(input: $i) { event { id } userErrors { code } } }",
        {"i": {"contactId": ids["Contact"], "name": "paid", "properties": {"card": EVENT_SECRET}}},
        owner,
        "trackEvent",
    )
    ids["ContactEvent"] = event["event"]["id"]
    channel = await _ok(
        api,
        "mutation($i: CreateChannelInput!) { createChannel(input: $i) { channel { id } userErrors { code } } }",
        {"i": {"kind": "EMAIL", "name": "Mail", "defaultSender": "help@acme.example"}},
        owner,
        "createChannel",
    )
    ids["Channel"] = channel["channel"]["id"]
    started = await _ok(
        api,
        """mutation($i: StartConversationInput!) { startConversation(input: $i) {
        conversation { id } message { id } userErrors { code } } }""",
        {"i": {"contactId": ids["Contact"], "channelId": ids["Channel"], "body": MESSAGE, "subject": SUBJECT}},
        owner,
        "startConversation",
    )
    ids["Conversation"] = started["conversation"]["id"]
    ids["Message"] = started["message"]["id"]
    endpoint = await _ok(
        api,
        "mutation($i: CreateWebhookEndpointInput!) { "
        "createWebhookEndpoint(input: $i) { endpoint { id } userErrors { code } } }",
        {"i": {"url": "https://hooks.example.com/in", "eventTypes": ["CONTACT_UPDATED"]}},
        owner,
        "createWebhookEndpoint",
    )
    ids["WebhookEndpoint"] = endpoint["endpoint"]["id"]
    await _ok(
        api,
        "mutation($i: UpdateContactInput!) { updateContact(input: $i) { userErrors { code } } }",
        {"i": {"id": ids["Contact"], "city": "Lyon"}},
        owner,
        "updateContact",
    )
    for _ in range(50):  # the delivery is queued after the update's commit
        listed = await api(DELIVERIES, {"id": ids["WebhookEndpoint"]}, token=owner)
        edges = listed["node"]["deliveries"]["edges"]
        if edges:
            break
        await asyncio.sleep(0.1)
    assert EMAIL in json.dumps(edges), edges
    ids["WebhookDelivery"] = edges[0]["node"]["id"]
    segment = await _ok(
        api,
        "mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } userErrors { code } } }",
        {
            "i": {
                "name": "Lyon",
                "visibility": "EVERYONE",
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "city", "operator": "EQUALS", "value": {"text": "Lyon"}}],
                },
            }
        },
        owner,
        "createSegment",
    )
    ids["Segment"] = segment["segment"]["id"]
    await refresh_segment({}, pk(ids["Segment"]))  # what the worker does
    session = await _ok(
        api,
        "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { "
        "token contact { id } userErrors { code } } }",
        {"i": {"channelKey": tenant.channel.public_key}},
        "",
        "startContactSession",
    )
    return World(tenant=tenant, ids=ids, session=session["token"], session_contact=session["contact"]["id"], keys={})


DELIVERIES = (
    "query($id: ID!) { node(id: $id) { ... on WebhookEndpoint { "
    "deliveries { edges { node { id eventType payload } } } } } }"
)
CONTACT_FIELDS = "id name email phone tags attributes { key value } "


# -- the cases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    doc: str
    variables: Callable[[World], dict[str, Any]]
    # Scopes of the key that tries it: what reaches the field, without the type's scope.
    scopes: tuple[str, ...]
    session: bool = False  # tried with a contact session as well (one that is not the contact)
    by_owner: bool = False  # the control runs as the owner (only agents reach it)


def _id(name: str) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"id": w.ids[name]}


NODE = (
    "query($id: ID!) { node(id: $id) { id ... on Contact { email phone } "
    "... on ContactNote { body } ... on ContactEvent { properties } ... on Conversation { subject } "
    "... on Message { body } ... on WebhookDelivery { payload } } }"
)
NODES = NODE.replace("query($id: ID!) { node(id: $id)", "query($id: ID!) { nodes(ids: [$id])")
CONVERSATION_CONTACT = "query($id: ID!) { conversation(id: $id) { id contact { " + CONTACT_FIELDS + "} } }"


def _node_cases(type_name: str, scopes: tuple[str, ...]) -> list[Case]:
    return [Case(NODE, _id(type_name), scopes, session=True), Case(NODES, _id(type_name), scopes, session=True)]


CASES: dict[str, list[Case]] = {
    # Contact: a key without contacts:read (conversations:read, contacts:write, ...).
    "Query.contact": [
        Case(
            "query($id: ID!) { contact(id: $id) { " + CONTACT_FIELDS + "} }",
            _id("Contact"),
            ("conversations:read",),
            session=True,
        )
    ],
    "Query.contacts": [
        Case(
            "{ contacts { edges { node { " + CONTACT_FIELDS + "} } } }",
            lambda w: {},
            ("conversations:read",),
            session=True,
        )
    ],
    "Query.node+Contact": _node_cases("Contact", ("conversations:read",)),
    "Conversation.contact": [
        Case(
            "{ conversations { edges { node { id contact { " + CONTACT_FIELDS + "} } } } }",
            lambda w: {},
            ("conversations:read",),
        ),
        Case(CONVERSATION_CONTACT, _id("Conversation"), ("conversations:read",)),
    ],
    "ContactPayload.contact": [
        Case(
            "mutation($i: UpdateContactInput!) { updateContact(input: $i) { contact { "
            + CONTACT_FIELDS
            + "} userErrors { code } } }",
            lambda w: {"i": {"id": w.ids["Contact"], "city": "Lyon"}},
            ("contacts:write",),
        ),
        Case(
            "mutation($i: TagContactInput!) { tagContact(input: $i) { contact { "
            + CONTACT_FIELDS
            + "} userErrors { code } } }",
            lambda w: {"i": {"contactId": w.ids["Contact"], "tags": ["owes-money"]}},
            ("contacts:write",),
        ),
    ],
    "SyncContactResult.contact": [
        Case(
            "mutation($i: SyncContactsInput!) { syncContacts(input: $i) { results { contact { "
            + CONTACT_FIELDS
            + "} } userErrors { code } } }",
            lambda w: {"i": {"contacts": [{"email": EMAIL, "city": "Lyon"}]}},
            ("contacts:write",),
        ),
    ],
    "ContactChange.contact": [
        Case(
            "{ contactsChangedSince { edges { node { contact { " + CONTACT_FIELDS + "} } } } }",
            lambda w: {},
            ("contacts:write", "conversations:read"),
        ),
    ],
    "Segment.contacts": [
        Case(
            "query($id: ID!) { segment(id: $id) { contacts { edges { node { " + CONTACT_FIELDS + "} } } } }",
            _id("Segment"),
            ("conversations:read",),
            session=True,
        ),
    ],
    "SegmentPreview.contacts": [
        Case(
            """{ previewSegment(
                  rules: {match: ALL, conditions: [{field: "city", operator: EQUALS, value: {text: "Lyon"}}]}
                ) {
                  contacts { """
            + CONTACT_FIELDS
            + "} } }",
            lambda w: {},
            ("conversations:read",),
            session=True,
        ),
    ],
    # ContactNote and ContactEvent: contacts:write or events:write lets a key write them, not read them back.
    "ContactNotePayload.note": [
        Case(
            "mutation($i: AddContactNoteInput!) { addContactNote(input: $i) { note { id body } userErrors { code } } }",
            lambda w: {"i": {"contactId": w.ids["Contact"], "body": NOTE}},
            ("contacts:write",),
            by_owner=True,
        ),
    ],
    "Contact.notes": [
        Case(
            "query($id: ID!) { contact(id: $id) { notes { edges { node { body } } } } }",
            _id("Contact"),
            ("conversations:read",),
        )
    ],
    "Query.node+ContactNote": _node_cases("ContactNote", ("contacts:write",)),
    "TrackEventPayload.event": [
        Case(
            "mutation($i: TrackEventInput!) { trackEvent(input: $i) { event { id properties } userErrors { code } } }",
            lambda w: {"i": {"contactId": w.ids["Contact"], "name": "paid", "properties": {"card": EVENT_SECRET}}},
            ("events:write",),
        ),
    ],
    "Contact.events": [
        Case(
            "query($id: ID!) { contact(id: $id) { events { edges { node { properties } } } } }",
            _id("Contact"),
            ("events:write",),
        )
    ],
    "Query.node+ContactEvent": _node_cases("ContactEvent", ("events:write",)),
    # Conversation and Message: conversations:write lets a key act on them, not read them.
    "ConversationPayload.conversation": [
        Case(
            "mutation($i: SetConversationStatusInput!) { setConversationStatus(input: $i) { "
            "conversation { subject contact { email } lastMessage { body } } userErrors { code } } }",
            lambda w: {"i": {"id": w.ids["Conversation"], "status": "OPEN"}},
            ("conversations:write", "contacts:read"),
        ),
    ],
    "StartConversationPayload.conversation": [
        Case(
            "mutation($i: StartConversationInput!) { startConversation(input: $i) { "
            "conversation { subject } message { body } userErrors { code } } }",
            lambda w: {
                "i": {"contactId": w.ids["Contact"], "channelId": w.ids["Channel"], "body": MESSAGE, "subject": SUBJECT}
            },
            ("conversations:write", "contacts:read"),
        ),
    ],
    "SendMessagePayload.message": [
        Case(
            "mutation($i: SendMessageInput!) { sendMessage(input: $i) { message { body } userErrors { code } } }",
            lambda w: {"i": {"conversationId": w.ids["Conversation"], "body": MESSAGE}},
            ("conversations:write",),
        ),
    ],
    "Query.conversation": [
        Case(
            "query($id: ID!) { conversation(id: $id) { subject lastMessage { body } } }",
            _id("Conversation"),
            ("contacts:read",),
            session=True,
        )
    ],
    "Query.conversations": [
        Case("{ conversations { edges { node { subject } } } }", lambda w: {}, ("contacts:read",), session=True)
    ],
    "ConversationSearchResult.conversation": [
        Case(
            '{ searchConversations(query: "private subject") { edges { node { highlight conversation { subject } } } } '
            "}",
            lambda w: {},
            ("contacts:read",),
            session=True,
        )
    ],
    "Conversation.messages": [
        Case(
            "query($id: ID!) { conversation(id: $id) { messages { edges { node { body } } } } }",
            _id("Conversation"),
            ("contacts:read",),
            session=True,
        ),
    ],
    "Query.node+Conversation": _node_cases("Conversation", ("contacts:read", "conversations:write")),
    "Query.node+Message": _node_cases("Message", ("contacts:read", "conversations:write")),
    # WebhookDelivery: its payload carries the contact; webhooks:manage alone does not read it.
    "WebhookEndpoint.deliveries": [Case(DELIVERIES, _id("WebhookEndpoint"), ("webhooks:manage",))],
    "Query.node+WebhookDelivery": _node_cases("WebhookDelivery", ("webhooks:manage",))
    + _node_cases("WebhookDelivery", ("contacts:read",)),
}
# Reached by the same cases as another entry.
CASES["Query.nodes+Contact"] = CASES["Query.node+Contact"]
CASES["Query.nodes+ContactNote"] = CASES["Query.node+ContactNote"]
CASES["Query.nodes+ContactEvent"] = CASES["Query.node+ContactEvent"]
CASES["Query.nodes+Conversation"] = CASES["Query.node+Conversation"]
CASES["Query.nodes+Message"] = CASES["Query.node+Message"]
CASES["Query.nodes+WebhookDelivery"] = CASES["Query.node+WebhookDelivery"]
CASES["Conversation.lastMessage"] = CASES["Query.conversation"] + CASES["ConversationPayload.conversation"]
CASES["StartConversationPayload.message"] = CASES["StartConversationPayload.conversation"]

# Entries tried elsewhere, and where.
ELSEWHERE = {
    "ContactUpdate.contact": "test_subscriptions_check_the_scope_of_what_they_carry",
    "ConversationEvent.conversation": "test_subscriptions_check_the_scope_of_what_they_carry",
    "MessageEvent.message": "test_subscriptions_check_the_scope_of_what_they_carry",
    "InboxEvent.message": "test_subscriptions_check_the_scope_of_what_they_carry",
    "InboxEvent.conversation": "test_subscriptions_check_the_scope_of_what_they_carry",
    # Only a contact session (or the request opening one) reaches these: its own contact and
    # conversations (answerProactiveMessage's conversation is the session's own, under the
    # same Conversation guard that startConversation's payload meets there).
    "StartContactSessionPayload.contact": "test_a_contact_session_sees_its_own_narrow_view",
    "Viewer.contact": "test_a_contact_session_sees_its_own_narrow_view",
    "AnswerProactiveMessagePayload.conversation": "test_a_contact_session_sees_its_own_narrow_view",
    "Query.myConversations": "test_a_contact_session_sees_its_own_narrow_view",
    # pingWebhookEndpoint's delivery is a ping: nothing personal (its payload is checked like any other).
    "PingWebhookEndpointPayload.delivery": "test_webhook_payloads_need_the_scope_of_what_they_carry",
}


def _entry_names() -> set[str]:
    names = set()
    for type_name, fields in entries().items():
        for entry in fields:
            names.add(f"{entry}+{type_name}" if entry in ("Query.node", "Query.nodes") else entry)
    return names


def test_every_protected_type_has_a_guard() -> None:
    from runtime.guards import guarded_types
    from schema import build_schema

    assert set(PROTECTED) <= set(guarded_types(build_schema(introspection=True)._schema))


def test_every_path_to_personal_data_has_a_case() -> None:
    """A new field reaching a protected type fails here until it has a case."""
    assert _entry_names() == set(CASES) | set(ELSEWHERE)
    assert all(test in globals() for test in ELSEWHERE.values())


@pytest.fixture
async def world(api: Api, tenant: Tenant) -> World:
    return await build_world(api, tenant)


def _leaks(body: dict[str, Any]) -> list[str]:
    text = json.dumps(body.get("data"))
    return [s for s in SECRETS if s in text]


async def test_every_path_refuses_a_caller_without_the_scope(api: Api, world: World) -> None:
    failures = []
    unique = {id(c): (entry, c) for entry, cases in CASES.items() for c in cases}
    for entry, case in unique.values():
        variables = case.variables(world)
        control_token = world.tenant.owner_token if case.by_owner else world.tenant.api_key
        for _ in range(40):  # PostgreSQL lists a contact change once it settled (resolvers/sync.py, SETTLE)
            control = (await api.raw(case.doc, variables, token=control_token)).json()
            if _leaks(control):
                break
            await asyncio.sleep(0.1)
        if not _leaks(control) or control.get("errors"):
            failures.append(f"{entry}: the control (all scopes) does not read the data: {control}")
        tries = {f"key {case.scopes}": await world.key(*case.scopes)}
        if case.session:
            tries["contact session"] = world.session
        for who, token in tries.items():
            body = (await api.raw(case.doc, variables, token=token)).json()
            if _leaks(body):
                failures.append(f"{entry} as {who} leaks {_leaks(body)}: {body}")
            codes = {e["extensions"]["code"] for e in body.get("errors") or []}
            if not codes <= {"FORBIDDEN", "NOT_FOUND"}:
                failures.append(f"{entry} as {who}: unexpected errors {body['errors']}")
            # A refusal below the root names the missing scope.
            for error in body.get("errors") or []:
                below_root = error["extensions"]["code"] == "FORBIDDEN" and len(error.get("path") or []) > 1
                if below_root and who.startswith("key") and "permission" not in error["message"]:
                    failures.append(f"{entry} as {who}: {error['message']!r} does not name the permission")
    assert failures == [], "\n".join(failures)


async def test_a_nested_refusal_is_a_forbidden_field_error_naming_the_scope(api: Api, world: World) -> None:
    """What a client sees: the conversation, with its contact null and an error at its path."""
    key = await world.key("conversations:read")
    body = (await api.raw(CONVERSATION_CONTACT, {"id": world.ids["Conversation"]}, token=key)).json()
    assert body["data"] == {"conversation": {"id": world.ids["Conversation"], "contact": None}}
    assert [(e["path"], e["extensions"]["code"], e["message"]) for e in body["errors"]] == [
        (["conversation", "contact"], "FORBIDDEN", "This needs the contacts:read permission.")
    ]
    # An agent (who holds contacts:read by role) reads the same conversation whole.
    _, agent = await world.tenant.agent()
    seen = await api(CONVERSATION_CONTACT, {"id": world.ids["Conversation"]}, token=agent)
    assert seen["conversation"]["contact"]["email"] == EMAIL
    assert seen["conversation"]["contact"]["tags"] == ["owes-money"]


# -- webhook delivery payloads --------------------------------------------------------------


async def test_webhook_payloads_need_the_scope_of_what_they_carry(api: Api, world: World) -> None:
    ping = await _ok(
        api,
        "mutation($i: WebhookEndpointIdInput!) { pingWebhookEndpoint(input: $i) { "
        "delivery { id eventType payload } userErrors { code } } }",
        {"i": {"id": world.ids["WebhookEndpoint"]}},
        await world.key("webhooks:manage"),
        "pingWebhookEndpoint",
    )
    # A ping carries nothing personal: a key managing webhooks reads it.
    assert ping["delivery"]["eventType"] == "webhook.ping" and ping["delivery"]["payload"]["type"] == "webhook.ping"
    body = (
        await api.raw(DELIVERIES, {"id": world.ids["WebhookEndpoint"]}, token=await world.key("webhooks:manage"))
    ).json()
    deliveries = {e["node"]["eventType"]: e["node"] for e in body["data"]["node"]["deliveries"]["edges"]}
    # The contact's delivery is listed (its status, attempts...), its payload is not.
    assert deliveries["contact.updated"]["payload"] is None and deliveries["webhook.ping"]["payload"] is not None
    assert EMAIL not in json.dumps(body)
    assert [(e["extensions"]["code"], e["message"]) for e in body["errors"]] == [
        ("FORBIDDEN", "This needs the contacts:read permission.")
    ]
    # With contacts:read as well, the payload is there as posted.
    seen = await api(
        DELIVERIES, {"id": world.ids["WebhookEndpoint"]}, token=await world.key("webhooks:manage", "contacts:read")
    )
    assert EMAIL in json.dumps(seen)


# -- contact sessions ------------------------------------------------------------------------

NARROW = "id name email tags attributes { key value definition { key label } } "
CHANNEL = "name notifyEmails gatewayUrl defaultSender secret "
SESSION = (
    """mutation($i: StartContactSessionInput!) { startContactSession(input: $i) {
  token contact { """
    + NARROW
    + "} channel { "
    + CHANNEL
    + """} userErrors { code } } }"""
)


async def test_a_contact_session_sees_its_own_narrow_view(api: Api, world: World) -> None:
    owner = world.tenant.owner_token
    for key, extra in (("plan", {"crmManaged": True}), ("score", {"visible": False}), ("color", {})):
        await _ok(
            api,
            "mutation($i: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $i) { "
            "attributeDefinition { id } userErrors { code } } }",
            {"i": {"key": key, "label": key.title(), "type": "TEXT", **extra}},
            owner,
            "createAttributeDefinition",
        )
    me = world.session_contact
    await _ok(
        api,
        "mutation($i: UpdateContactInput!) { updateContact(input: $i) { userErrors { code } } }",
        {
            "i": {
                "id": me,
                "name": "Vic Visitor",
                "attributes": [
                    {"key": "plan", "value": "gold"},
                    {"key": "score", "value": "risky"},
                    {"key": "color", "value": "teal"},
                ],
            }
        },
        owner,
        "updateContact",
    )
    await _ok(
        api,
        "mutation($i: TagContactInput!) { tagContact(input: $i) { userErrors { code } } }",
        {"i": {"contactId": me, "tags": ["difficult"]}},
        owner,
        "tagContact",
    )
    await _ok(
        api,
        "mutation($i: UpdateChannelInput!) { updateChannel(input: $i) { userErrors { code } } }",
        {
            "i": {
                "id": (await api("{ channels { edges { node { id kind } } } }", token=owner))["channels"]["edges"][0][
                    "node"
                ]["id"],
                "notifyEmails": ["boss@acme.example"],
                "defaultSender": "support@acme.example",
            }
        },
        owner,
        "updateChannel",
    )
    widget = (await api("{ channels { edges { node { id kind " + CHANNEL + "} } } }", token=owner))["channels"]["edges"]
    widget = next(e["node"] for e in widget if e["node"]["kind"] == "WEB_WIDGET")
    # The owner sees everything: the control.
    full = (await api("query($id: ID!) { contact(id: $id) { " + NARROW + "} }", {"id": me}, token=owner))["contact"]
    assert full["tags"] == ["difficult"] and {a["key"] for a in full["attributes"]} == {"plan", "score", "color"}
    assert widget["notifyEmails"] == ["boss@acme.example"] and widget["defaultSender"] == "support@acme.example"

    mine = {
        "id": me,
        "name": "Vic Visitor",
        "email": "vic@example.com",
        "tags": [],
        "attributes": [{"key": "color", "value": "teal", "definition": {"key": "color", "label": "Color"}}],
    }
    channel = {"name": widget["name"], "notifyEmails": [], "gatewayUrl": None, "defaultSender": None, "secret": None}
    # Resuming the session (the visitor types its e-mail: an agent writing it would end the
    # anonymous visitor's sessions): the payload is the session's own view.
    resumed = await _ok(
        api,
        SESSION,
        {
            "i": {
                "channelKey": world.tenant.channel.public_key,
                "sessionToken": world.session,
                "email": "vic@example.com",
            }
        },
        "",
        "startContactSession",
    )
    assert resumed["contact"] == mine and resumed["channel"] == channel
    token = resumed["token"]
    viewer = await api("{ viewer { kind contact { " + NARROW + "} } }", token=token)
    assert viewer["viewer"] == {"kind": "CONTACT", "contact": mine}
    assert (await api("query($id: ID!) { contact(id: $id) { " + NARROW + "} }", {"id": me}, token=token))[
        "contact"
    ] == mine
    # Its conversations and messages, with its contact and channel seen the same way.
    started = await _ok(
        api,
        """mutation($i: StartConversationInput!) { startConversation(input: $i) {
        conversation { id contact { """
        + NARROW
        + "} channel { "
        + CHANNEL
        + "} } message { body } userErrors { code } } }",
        {"i": {"body": "Hello there"}},
        token,
        "startConversation",
    )
    assert started["conversation"]["contact"] == mine and started["conversation"]["channel"] == channel
    assert started["message"] == {"body": "Hello there"}
    # The team's tags and attribution of the conversation are not the contact's to see.
    await ConversationTag.create(
        workspace_id=world.tenant.workspace.id, conversation_id=pk(started["conversation"]["id"]), name="churn-risk"
    )
    await ConversationRow.filter(id=pk(started["conversation"]["id"])).update(attributed_source="campaign:12")
    internals = "tags attributedSource"
    seen = await api(
        "query($id: ID!) { node(id: $id) { ... on Conversation { " + internals + " } } }",
        {"id": started["conversation"]["id"]},
        token=owner,
    )
    assert seen["node"] == {"tags": ["churn-risk"], "attributedSource": "campaign:12"}  # the control
    listed = await api(
        "{ myConversations { edges { node { id contact { "
        + NARROW
        + "} lastMessage { body } "
        + internals
        + " } } } }",
        token=token,
    )
    assert [e["node"] for e in listed["myConversations"]["edges"]] == [
        {
            "id": started["conversation"]["id"],
            "contact": mine,
            "lastMessage": {"body": "Hello there"},
            "tags": [],
            "attributedSource": None,
        }
    ]
    # Its timeline: its page views, not the events an API key tracked on it (nor their properties).
    await _ok(
        api,
        "mutation($i: ReportPageViewInput!) { reportPageView(input: $i) { userErrors { code } } }",
        {"i": {"url": "https://shop.example/pricing", "title": "Pricing"}},
        token,
        "reportPageView",
    )
    tracked = await _ok(
        api,
        "mutation($i: TrackEventInput!) { trackEvent(input: $i) { event { id } userErrors { code } } }",
        {"i": {"contactId": me, "name": "churn_risk_scored", "properties": {"score": 91}}},
        world.tenant.api_key,
        "trackEvent",
    )
    timeline = "query($id: ID!) { contact(id: $id) { events { edges { node { kind name properties } } } } }"
    assert {
        e["node"]["name"] for e in (await api(timeline, {"id": me}, token=owner))["contact"]["events"]["edges"]
    } >= {"churn_risk_scored"}
    assert [e["node"] for e in (await api(timeline, {"id": me}, token=token))["contact"]["events"]["edges"]] == [
        {"kind": "PAGE_VIEW", "name": "page_view", "properties": {}}
    ]
    body = (
        await api.raw(
            "query($id: ID!) { node(id: $id) { ... on ContactEvent { properties } } }",
            {"id": tracked["event"]["id"]},
            token=token,
        )
    ).json()
    assert body["data"]["node"] is None and [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    # The event its own trackEvent writes, it sees in the payload.
    own = await _ok(
        api,
        "mutation($i: TrackEventInput!) { trackEvent(input: $i) { event { name } userErrors { code } } }",
        {"i": {"name": "clicked_help"}},
        token,
        "trackEvent",
    )
    assert own["event"] == {"name": "clicked_help"}
    # What it may not read at all: FORBIDDEN, or null for an object by id.
    for refused in (
        "{ attributeDefinitions { edges { node { key } } } }",
        "query($id: ID!) { contact(id: $id) { notes { edges { node { body } } } } }",
    ):
        body = (await api.raw(refused, {"id": me}, token=token)).json()
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body
    definitions = (await api("{ attributeDefinitions { edges { node { id key } } } }", token=owner))[
        "attributeDefinitions"
    ]["edges"]
    for definition in definitions:
        assert (await api("query($id: ID!) { node(id: $id) { id } }", {"id": definition["node"]["id"]}, token=token))[
            "node"
        ] is None


# -- subscriptions ---------------------------------------------------------------------------


async def test_subscriptions_check_the_scope_of_what_they_carry(api: Api, world: World, server: Any) -> None:
    """A key with conversations:read hears the inbox's events, without the contacts in them;
    the subscriptions to one contact or one conversation's messages refuse a key without
    the scope at once."""
    from tests.conftest import hub_subscriptions
    from tests.realtime.wsclient import GraphQLWs

    inbox_key = await world.key("conversations:read")
    async with GraphQLWs.open(server.ws_url, inbox_key) as ws:
        events = await ws.subscribe(
            "subscription { conversationEvents { conversationId conversation { subject contact { email phone } } } }"
        )
        await hub_subscriptions(server, 1)
        await _ok(
            api,
            "mutation($i: SetConversationStatusInput!) { setConversationStatus(input: $i) { userErrors { code } } }",
            {"i": {"id": world.ids["Conversation"], "status": "SNOOZED", "snoozePreset": "TOMORROW"}},
            world.tenant.owner_token,
            "setConversationStatus",
        )
        message = await events.receive()
        assert message["type"] == "next", message
        assert message["payload"]["data"]["conversationEvents"]["conversation"] == {"subject": SUBJECT, "contact": None}
        assert [(e["path"][-1], e["extensions"]["code"]) for e in message["payload"]["errors"]] == [
            ("contact", "FORBIDDEN")
        ]
        assert EMAIL not in json.dumps(message)
    # The one inbox feed carries the same: its conversations without their contacts.
    async with GraphQLWs.open(server.ws_url, inbox_key) as ws:
        feed = await ws.subscribe(
            "subscription { inboxEvents(filter: {kinds: [STATUS_CHANGED]}) { kind message { body } "
            "conversation { subject contact { email phone } } } }"
        )
        await hub_subscriptions(server, 1)
        await _ok(
            api,
            "mutation($i: SetConversationStatusInput!) { setConversationStatus(input: $i) { userErrors { code } } }",
            {"i": {"id": world.ids["Conversation"], "status": "OPEN"}},
            world.tenant.owner_token,
            "setConversationStatus",
        )
        message = await feed.receive()
        assert message["type"] == "next", message
        event = message["payload"]["data"]["inboxEvents"]
        assert (event["kind"], event["conversation"]) == ("STATUS_CHANGED", {"subject": SUBJECT, "contact": None})
        assert [(e["path"][-1], e["extensions"]["code"]) for e in message["payload"]["errors"]] == [
            ("contact", "FORBIDDEN")
        ]
        assert EMAIL not in json.dumps(message)
    attempts = (
        ("subscription { inboxEvents { kind message { body } } }", None, ("contacts:read",)),
        (
            "subscription($id: ID!) { contactUpdated(id: $id) { contact { email } } }",
            world.ids["Contact"],
            ("conversations:read",),
        ),
        (
            "subscription($id: ID!) { messageAdded(conversationId: $id) { message { body } } }",
            world.ids["Conversation"],
            ("contacts:read",),
        ),
        ("subscription { myMessages { message { body } } }", None, ("contacts:read", "conversations:read")),
    )
    for query, target, scopes in attempts:
        async with GraphQLWs.open(server.ws_url, await world.key(*scopes)) as ws:
            operation = await ws.subscribe(query, {"id": target} if target else {})
            message = await operation.receive()
            errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
            assert [e["extensions"]["code"] for e in errors] in (["FORBIDDEN"], ["NOT_FOUND"]), (query, message)
            assert message["type"] == "error" or message["payload"]["data"] is None, message
