"""The CRM lookup (issue 29, item 4): a new conversation's contact is looked up, signed, at
the channel's CRM, a real HTTP server on loopback; the job is the real one, called with
the context an arq worker gives it (which try this is)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq import Retry

from core import keys
from core.config import settings
from core.events import Outbox
from core.scoping import encode_global_id
from core.signing import SIGNATURE_HEADER, signature_problem
from domain.crm import MAX_ANSWER_ATTRIBUTES, MAX_ANSWER_BYTES
from domain.identity import user_hash
from jobs.crm import crm_lookup
from models.channels import Channel
from models.contacts import Contact
from resolvers.conversations import open_conversation
from tests.conftest import Tenant, pk
from tests.loopback import HttpSink

SECRET = "crm-lookup-secret-0123456789"
ERRORS = "userErrors { field code message }"
UPDATE_CHANNEL = (
    "mutation($i: UpdateChannelInput!) { updateChannel(input: $i) { "
    f"channel {{ id crmLookupUrl crmLookupSecretSet }} {ERRORS} }} }}"
)
DEFINE = f"mutation($i: CreateAttributeDefinitionInput!) {{ createAttributeDefinition(input: $i) {{ {ERRORS} }} }}"
SESSION = (
    "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token contact { id } "
    f"{ERRORS} }} }}"
)
START = f"mutation($i: StartConversationInput!) {{ startConversation(input: $i) {{ conversation {{ id }} {ERRORS} }} }}"
ATTRIBUTES = "query($id: ID!) { contact(id: $id) { attributes { key value } } }"


def job_ctx(app: Any, job_try: int = 1) -> dict[str, Any]:
    return {"redis": app.state.jobs, "hub": app.state.hub, "job_try": job_try}


@pytest.fixture(autouse=True)
async def empty_queue(app: Any) -> AsyncIterator[None]:
    await app.state.jobs.delete(keys.arq_queue())
    yield


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "crm_lookup_timeout_seconds", 0.5)
    monkeypatch.setattr(settings, "crm_lookup_retry_base_seconds", 0.01)


async def crm_channel(tenant: Tenant, url: str) -> dict[str, Any]:
    for key, kind, crm in (("plan", "TEXT", True), ("seats", "NUMBER", True), ("notes", "TEXT", False)):
        defined = await tenant.api(
            DEFINE, {"i": {"key": key, "label": key, "type": kind, "crmManaged": crm}}, token=tenant.owner_token
        )
        assert defined["createAttributeDefinition"]["userErrors"] == []
    gid = encode_global_id("Channel", tenant.channel.id)
    payload = (
        await tenant.api(
            UPDATE_CHANNEL, {"i": {"id": gid, "crmLookupUrl": url, "crmLookupSecret": SECRET}}, token=tenant.owner_token
        )
    )["updateChannel"]
    assert payload["userErrors"] == []
    return payload["channel"]  # type: ignore[no-any-return]


async def start(tenant: Tenant, external_id: str | None = "user-1", **session: Any) -> tuple[str, int]:
    """A contact session (verified by its userHash when it names an external id) starts a
    conversation: the contact's id and the conversation's."""
    fields: dict[str, Any] = {"channelKey": tenant.channel.public_key, **session}
    if external_id is not None:
        fields |= {"externalId": external_id, "userHash": user_hash(tenant.channel.secret, external_id)}
    opened = (await tenant.api(SESSION, {"i": fields}))["startContactSession"]
    assert opened["userErrors"] == []
    started = (await tenant.api(START, {"i": {"body": "Hello"}}, token=opened["token"]))["startConversation"]
    assert started["userErrors"] == []
    return opened["contact"]["id"], pk(started["conversation"]["id"])


async def attributes(tenant: Tenant, contact_id: str) -> dict[str, Any]:
    data = await tenant.api(ATTRIBUTES, {"id": contact_id}, token=tenant.owner_token)
    return {a["key"]: a["value"] for a in data["contact"]["attributes"] if a["value"] is not None}


def answer(**values: Any) -> str:
    return json.dumps({"attributes": values})


async def test_a_new_conversation_asks_the_crm_signed_and_fills_crm_managed_attributes(
    tenant: Tenant, http_sink: HttpSink, app: Any
) -> None:
    channel = await crm_channel(tenant, f"{http_sink.url}/lookup")
    assert channel["crmLookupUrl"] == f"{http_sink.url}/lookup" and channel["crmLookupSecretSet"] is True
    stored = await Channel.get(id=tenant.channel.id)
    assert stored.crm_lookup_secret_sealed and SECRET not in stored.crm_lookup_secret_sealed  # sealed at rest
    http_sink.respond_with(
        body=answer(plan="gold", seats=12, notes="not the CRM's", unknown="x"), headers={"content-type": "json"}
    )

    contact_id, conversation_id = await start(tenant)
    # The conversation did not wait: the lookup is a job, queued after the commit.
    assert http_sink.requests == []
    assert await app.state.jobs.zscore(keys.arq_queue(), keys.crm_lookup_job(conversation_id)) is not None

    assert await crm_lookup(job_ctx(app), conversation_id) == "looked up"
    [request] = await http_sink.wait_for(1)
    assert request.path == "/lookup" and request.method == "POST"
    assert signature_problem(SECRET, request.body, request.headers[SIGNATURE_HEADER.lower()]) is None
    assert request.headers["x-parley-event-type"] == "crm.lookup"
    body = request.json()
    assert body["type"] == "crm.lookup" and body["contact"] == {"id": contact_id, "externalId": "user-1"}
    # CRM-managed attributes only; the others and unknown keys are ignored.
    assert await attributes(tenant, contact_id) == {"plan": "gold", "seats": 12}


async def test_the_answer_is_cached_and_erased_with_the_contact(tenant: Tenant, http_sink: HttpSink, app: Any) -> None:
    await crm_channel(tenant, f"{http_sink.url}/lookup")
    http_sink.respond_with(body=answer(plan="silver"))
    contact_id, first = await start(tenant)
    assert await crm_lookup(job_ctx(app), first) == "looked up"
    cache_key = keys.crm_answer(tenant.channel.id, pk(contact_id))
    assert 0 < await app.state.jobs.ttl(cache_key) <= settings.crm_lookup_cache_seconds

    # An agent changes the plan; the next conversation reuses the cached answer (no request).
    await tenant.api(
        "mutation($i: UpdateContactInput!) { updateContact(input: $i) { userErrors { code } } }",
        {"i": {"id": contact_id, "attributes": [{"key": "plan", "value": "bronze"}]}},
        token=tenant.api_key,
    )
    _, second = await start(tenant)
    assert await crm_lookup(job_ctx(app), second) == "cached"
    assert len(http_sink.requests) == 1
    assert (await attributes(tenant, contact_id))["plan"] == "silver"
    assert await crm_lookup(job_ctx(app), second) == "cached, unchanged"

    await tenant.api(
        "mutation($i: ContactIdInput!) { deleteContact(input: $i) { userErrors { code } } }",
        {"i": {"id": contact_id}},
        token=tenant.owner_token,
    )
    assert await app.state.jobs.exists(cache_key) == 0


async def test_failures_retry_with_backoff_then_give_up(
    tenant: Tenant, http_sink: HttpSink, app: Any, fast: None
) -> None:
    await crm_channel(tenant, f"{http_sink.url}/lookup")
    http_sink.respond_with([503, 429], body=answer(plan="gold"))
    contact_id, conversation_id = await start(tenant)
    for job_try in (1, 2):
        with pytest.raises(Retry):
            await crm_lookup(job_ctx(app, job_try), conversation_id)
    assert await crm_lookup(job_ctx(app, 3), conversation_id) == "looked up"
    assert len(http_sink.requests) == 3
    assert (await attributes(tenant, contact_id))["plan"] == "gold"

    # Slower than the timeout: a retry, and at the last try the lookup gives up.
    http_sink.clear()
    http_sink.respond_with(body=answer(plan="late"), delay_seconds=1.5)
    _, slow = await start(tenant, "user-2")
    with pytest.raises(Retry):
        await crm_lookup(job_ctx(app, 1), slow)
    assert await crm_lookup(job_ctx(app, settings.crm_lookup_tries), slow) == "failed"

    # A 4xx other than 404 is not retried; a 404 is "the CRM does not know this contact".
    http_sink.respond_with([400, 404])
    _, refused = await start(tenant, "user-3")
    assert await crm_lookup(job_ctx(app, 1), refused) == "failed"
    _, unknown = await start(tenant, "user-4")
    assert await crm_lookup(job_ctx(app, 1), unknown) == "looked up, unchanged"


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ("x" * (MAX_ANSWER_BYTES + 10), "refused"),
        ('{"attributes": {"plan": ' + "[" * 20_000 + "]" * 20_000 + "}}", "refused"),
        ("not json", "refused"),
        ('["plan", "gold"]', "refused"),
        (answer(**{f"k{i}": 1 for i in range(MAX_ANSWER_ATTRIBUTES + 1)}), "refused"),
        (answer(plan=["gold"], seats="twelve"), "looked up, unchanged"),
        (answer(plan="x" * 5000, seats=True), "looked up, unchanged"),
        (answer(plan="4111 1111 1111 1111", seats=1e308), "looked up"),
    ],
    ids=["huge", "deep", "not-json", "not-an-object", "too-many", "wrong-types", "too-long", "masked"],
)
async def test_a_hostile_answer_is_refused_or_stored_safely(
    tenant: Tenant, http_sink: HttpSink, app: Any, body: str, outcome: str
) -> None:
    await crm_channel(tenant, f"{http_sink.url}/lookup")
    http_sink.respond_with(body=body)
    contact_id, conversation_id = await start(tenant)
    assert await crm_lookup(job_ctx(app), conversation_id) == outcome
    stored = await attributes(tenant, contact_id)
    if outcome == "looked up":
        assert stored == {"plan": "**** **** **** 1111", "seats": 1e308}
    else:
        assert stored == {}
    cached = await app.state.jobs.exists(keys.crm_answer(tenant.channel.id, pk(contact_id)))
    assert cached == (0 if outcome == "refused" else 1)


async def test_only_trusted_identifiers_are_looked_up(tenant: Tenant, http_sink: HttpSink, app: Any) -> None:
    await crm_channel(tenant, f"{http_sink.url}/lookup")
    # An anonymous visitor claiming an address is not looked up under it.
    _, anonymous = await start(tenant, None, email="ceo@example.com")
    assert await crm_lookup(job_ctx(app), anonymous) == "nothing to look up"
    assert http_sink.requests == []
    # A contact an API key created with an e-mail is (a 204: the CRM knows nothing of it).
    http_sink.respond_with(default_status=204)
    contact = await tenant.contact(name="Ada", email="ada@example.com")
    channel = await Channel.get(id=tenant.channel.id)
    opened = await open_conversation(Outbox(None), await Contact.get(id=pk(contact["id"])), channel)
    assert await crm_lookup(job_ctx(app), opened.id) == "looked up, unchanged"
    assert (await http_sink.wait_for(1))[0].json()["contact"] == {"id": contact["id"], "email": "ada@example.com"}


async def test_urls_to_our_network_are_refused(
    tenant: Tenant, http_sink: HttpSink, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await crm_channel(tenant, f"{http_sink.url}/lookup")
    _, conversation_id = await start(tenant)
    monkeypatch.setattr(settings, "outbound_allow_private_networks", False)
    gid = encode_global_id("Channel", tenant.channel.id)
    for url in (
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/latest",
        "http://localhost/",
        "http://[::1]/",
        "ftp://a.example/",
    ):
        payload = (await tenant.api(UPDATE_CHANNEL, {"i": {"id": gid, "crmLookupUrl": url}}, token=tenant.owner_token))[
            "updateChannel"
        ]
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["crmLookupUrl"], "INVALID")], url
    # A URL saved before (or a name that resolves to loopback) is refused when called.
    assert await crm_lookup(job_ctx(app), conversation_id) == "failed"
    assert http_sink.requests == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"crmLookupUrl": "https://crm.example.com/lookup"}, (["crmLookupSecret"], "REQUIRED")),
        ({"crmLookupUrl": "https://crm.example.com/l", "crmLookupSecret": "short"}, (["crmLookupSecret"], "INVALID")),
        ({"crmLookupUrl": "https://crm.example.com/l", "crmLookupSecret": "x" * 257}, (["crmLookupSecret"], "INVALID")),
        ({"crmLookupUrl": "https://crm.example.com/l", "crmLookupSecret": "é" * 20}, (["crmLookupSecret"], "INVALID")),
        ({"crmLookupUrl": "https://e.com/" + "a" * 2048, "crmLookupSecret": SECRET}, (["crmLookupUrl"], "INVALID")),
        ({"crmLookupUrl": "javascript:alert(1)", "crmLookupSecret": SECRET}, (["crmLookupUrl"], "INVALID")),
    ],
    ids=["no-secret", "short-secret", "long-secret", "non-ascii-secret", "long-url", "not-http"],
)
async def test_bad_settings_are_user_errors(tenant: Tenant, fields: dict[str, Any], expected: Any) -> None:
    gid = encode_global_id("Channel", tenant.channel.id)
    payload = (await tenant.api(UPDATE_CHANNEL, {"i": {"id": gid, **fields}}, token=tenant.owner_token))[
        "updateChannel"
    ]
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [expected]
    assert (await Channel.get(id=tenant.channel.id)).crm_lookup_url is None


async def test_removing_the_secret_and_url_stops_lookups(tenant: Tenant, http_sink: HttpSink, app: Any) -> None:
    channel = await crm_channel(tenant, f"{http_sink.url}/lookup")
    payload = (
        await tenant.api(
            UPDATE_CHANNEL,
            {"i": {"id": channel["id"], "crmLookupUrl": None, "crmLookupSecret": None}},
            token=tenant.owner_token,
        )
    )["updateChannel"]
    assert payload["userErrors"] == [] and payload["channel"]["crmLookupSecretSet"] is False
    _, conversation_id = await start(tenant)
    assert await app.state.jobs.zscore(keys.arq_queue(), keys.crm_lookup_job(conversation_id)) is None
    assert await crm_lookup(job_ctx(app), conversation_id) == "no lookup"


async def test_only_owners_and_admins_set_the_lookup_and_nobody_reads_the_secret(
    tenant: Tenant, http_sink: HttpSink
) -> None:
    gid = encode_global_id("Channel", tenant.channel.id)
    change = {"i": {"id": gid, "crmLookupUrl": f"{http_sink.url}/evil", "crmLookupSecret": SECRET}}
    _, agent_token = await tenant.agent()
    opened = (await tenant.api(SESSION, {"i": {"channelKey": tenant.channel.public_key}}))["startContactSession"]
    for token in (agent_token, opened["token"], tenant.api_key):
        body = (await tenant.api.raw(UPDATE_CHANNEL, change, token=token)).json()
        refused = body.get("errors") or body["data"]["updateChannel"]["userErrors"]
        assert refused and "FORBIDDEN" in json.dumps(refused), body
    assert (await Channel.get(id=tenant.channel.id)).crm_lookup_url is None
    # Set by the owner: no field of the schema gives the secret back, to anyone.
    await crm_channel(tenant, f"{http_sink.url}/lookup")
    for token in (tenant.owner_token, agent_token):
        data = await tenant.api(
            "{ channels { edges { node { crmLookupUrl crmLookupSecretSet secret } } } }", token=token
        )
        assert SECRET not in json.dumps(data)
