"""Delivering webhooks to a real HTTP server on loopback: signatures, retries with backoff,
the delivery log, automatic disabling, and the events the product emits."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core import keys
from core.signing import SIGNATURE_HEADER, signature_problem
from domain.identity import user_hash
from jobs.segments import refresh_segment
from jobs.webhooks import backoff, dispatch_webhooks
from models.webhooks import DeliveryStatus, WebhookDelivery
from tests.conftest import Tenant, start_worker, stop_process
from tests.loopback import HttpSink, RecordedRequest
from tests.webhooks.conftest import Endpoint, drain, register

LOG = """query($id: ID!) { node(id: $id) { ... on WebhookEndpoint {
  enabled disabledReason consecutiveFailures lastSuccessAt
  deliveries(first: 50) { edges { node {
    id eventId eventType status attempts lastStatusCode lastError payload
    attemptLog { attempt statusCode error durationMs at }
    job { kind status error }
  } } }
} } }"""
UPDATE_CONTACT = "mutation($i: UpdateContactInput!) { updateContact(input: $i) { userErrors { field code message } } }"
SET_STATUS = (
    "mutation($i: SetConversationStatusInput!) { "
    "setConversationStatus(input: $i) { userErrors { field code message } } }"
)
DEFINE = (
    "mutation($i: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $i) { userErrors { code } } }"
)
PING = (
    "mutation($i: WebhookEndpointIdInput!) { pingWebhookEndpoint(input: $i) { "
    "delivery { id eventType status } userErrors { code } } }"
)


async def delivery_log(tenant: Tenant, endpoint: Endpoint) -> dict[str, Any]:
    node = (await tenant.api(LOG, {"id": endpoint.id}, token=tenant.owner_token))["node"]
    node["deliveries"] = [e["node"] for e in node["deliveries"]["edges"]]
    return node  # type: ignore[no-any-return]


def verified(request: RecordedRequest, endpoint: Endpoint) -> dict[str, Any]:
    """The body, after checking its signature the way docs/webhooks.md tells receivers to."""
    assert signature_problem(endpoint.secret, request.body, request.headers[SIGNATURE_HEADER.lower()]) is None
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert request.headers["x-parley-event-id"] == body["id"]
    assert request.headers["x-parley-event-type"] == body["type"]
    return body  # type: ignore[no-any-return]


async def test_a_contact_change_is_delivered_signed(tenant: Tenant, http_sink: HttpSink) -> None:
    endpoint = await register(tenant, f"{http_sink.url}/crm", ["CONTACT_CREATED", "CONTACT_UPDATED", "CONTACT_DELETED"])
    other = await register(tenant, f"{http_sink.url}/segments-only", ["SEGMENT_JOINED"])
    contact = await tenant.contact(name="Ada", email="ada@example.com", externalId="crm-ada")
    await tenant.api(UPDATE_CONTACT, {"i": {"id": contact["id"], "city": "London"}}, token=tenant.owner_token)
    assert await drain(tenant.workspace.id) == ["succeeded"] * 2
    await tenant.api(
        "mutation($i: ContactIdInput!) { deleteContact(input: $i) { userErrors { code } } }",
        {"i": {"id": contact["id"]}},
        token=tenant.owner_token,
    )
    assert await drain(tenant.workspace.id) == ["succeeded"]
    requests = await http_sink.wait_for(3)
    assert {r.path for r in requests} == {"/crm"}
    bodies = [verified(r, endpoint) for r in sorted(requests, key=lambda r: int(r.headers["x-parley-delivery-id"]))]
    assert [b["type"] for b in bodies] == ["contact.created", "contact.updated", "contact.deleted"]
    created, updated, deleted = bodies
    assert (
        created["data"]["contact"].items()
        >= {"id": contact["id"], "externalId": "crm-ada", "email": "ada@example.com"}.items()
    )
    assert updated["data"]["contact"]["city"] == "London"
    assert deleted["data"]["contact"] == {"id": contact["id"], "externalId": "crm-ada"}
    # The cursor of each change, for contactsChangedSince.
    assert int(created["data"]["cursor"]) < int(updated["data"]["cursor"]) < int(deleted["data"]["cursor"])
    assert len({b["id"] for b in bodies}) == 3 and created["workspaceId"]
    assert (await delivery_log(tenant, other))["deliveries"] == []

    # The deletion erased the deliveries that carried the contact's data; its own stays.
    log = await delivery_log(tenant, endpoint)
    assert [d["status"] for d in log["deliveries"]] == ["SUCCEEDED"]
    newest = log["deliveries"][0]
    assert newest["eventType"] == "contact.deleted" and newest["payload"] == deleted
    assert [(a["attempt"], a["statusCode"], a["error"]) for a in newest["attemptLog"]] == [(1, 200, None)]
    assert newest["job"] == {"kind": "WEBHOOK_DELIVERY", "status": "SUCCEEDED", "error": None}


async def test_a_receiver_that_fails_first_gets_retries_with_backoff(
    tenant: Tenant, http_sink: HttpSink, fast_retries: Any
) -> None:
    endpoint = await register(tenant, f"{http_sink.url}/flaky", ["CONTACT_CREATED"])
    http_sink.respond_with([500, 503], body="database is down")
    await tenant.contact(name="Retry me")
    started = time.monotonic()
    assert await drain(tenant.workspace.id) == ["retry", "retry", "succeeded"]
    requests = await http_sink.wait_for(3)
    # One event, three attempts: the same id and body each time, signed afresh.
    assert len({verified(r, endpoint)["id"] for r in requests}) == 1
    assert [r.headers["x-parley-attempt"] for r in requests] == ["1", "2", "3"]
    assert time.monotonic() - started >= 0.05 * 0.9 + 0.1 * 0.9  # 0.05 s, then 0.1 s
    [delivery] = (await delivery_log(tenant, endpoint))["deliveries"]
    assert delivery["status"] == "SUCCEEDED" and delivery["attempts"] == 3 and delivery["lastError"] is None
    assert [(a["attempt"], a["statusCode"], a["error"]) for a in delivery["attemptLog"]] == [
        (1, 500, "HTTP 500"),
        (2, 503, "HTTP 503"),
        (3, 200, None),
    ]  # the receiver's body is never shown: tests/security/test_outbound.py
    assert all(a["durationMs"] >= 0 for a in delivery["attemptLog"])
    assert delivery["job"]["status"] == "SUCCEEDED"
    log = await delivery_log(tenant, endpoint)
    assert log["consecutiveFailures"] == 0 and log["lastSuccessAt"] is not None


def test_backoff_doubles_and_is_capped(fast_retries: Any) -> None:
    fast_retries.webhook_retry_base_seconds = 30
    delays = [backoff(attempt) for attempt in range(1, 9)]
    for attempt, delay in enumerate(delays, start=1):
        assert 30 * 2 ** (attempt - 1) * 0.9 <= delay <= min(30 * 2 ** (attempt - 1) * 1.1, 3600)
    assert backoff(20) == 3600
    assert backoff(1, retry_after=120) == 120


async def test_a_delivery_fails_after_the_last_attempt(tenant: Tenant, http_sink: HttpSink, fast_retries: Any) -> None:
    fast_retries.webhook_max_attempts = 3
    endpoint = await register(tenant, f"{http_sink.url}/down", ["CONTACT_CREATED"])
    http_sink.respond_with(default_status=500)
    await tenant.contact(name="Never delivered")
    assert await drain(tenant.workspace.id) == ["retry", "retry", "failed"]
    [delivery] = (await delivery_log(tenant, endpoint))["deliveries"]
    assert (delivery["status"], delivery["attempts"], delivery["lastStatusCode"]) == ("FAILED", 3, 500)
    assert delivery["job"]["status"] == "FAILED" and "HTTP 500" in delivery["job"]["error"]
    log = await delivery_log(tenant, endpoint)
    assert log["enabled"] is True and log["consecutiveFailures"] == 3


async def test_an_endpoint_failing_too_often_is_disabled(
    tenant: Tenant, http_sink: HttpSink, fast_retries: Any
) -> None:
    fast_retries.webhook_disable_after = 4
    endpoint = await register(tenant, f"{http_sink.url}/broken", ["CONTACT_CREATED"])
    http_sink.respond_with(default_status=502)
    for i in range(3):
        await tenant.contact(name=f"Contact {i}")
    await drain(tenant.workspace.id)
    log = await delivery_log(tenant, endpoint)
    assert log["enabled"] is False
    assert log["disabledReason"].startswith("4 failed attempts in a row; the last: HTTP 502")
    assert len(http_sink.requests) == 4
    statuses = sorted(d["status"] for d in log["deliveries"])
    assert "FAILED" in statuses and "CANCELLED" in statuses and "PENDING" not in statuses
    assert all(d["job"] is None or d["job"]["status"] in ("FAILED", "CANCELLED") for d in log["deliveries"])
    # Disabled: new events are not even queued for it.
    await tenant.contact(name="After")
    assert await WebhookDelivery.filter(endpoint_id=int(_pk(endpoint.id)), status=DeliveryStatus.PENDING).count() == 0
    # Enabling it again starts afresh.
    again = await tenant.api(
        "mutation($i: UpdateWebhookEndpointInput!) { "
        "updateWebhookEndpoint(input: $i) { endpoint { enabled consecutiveFailures } } }",
        {"i": {"id": endpoint.id, "enabled": True}},
        token=tenant.owner_token,
    )
    assert again["updateWebhookEndpoint"]["endpoint"] == {"enabled": True, "consecutiveFailures": 0}


async def test_410_gone_disables_at_once(tenant: Tenant, http_sink: HttpSink) -> None:
    endpoint = await register(tenant, f"{http_sink.url}/gone", ["CONTACT_CREATED"])
    http_sink.respond_with(default_status=410)
    await tenant.contact(name="Gone")
    assert await drain(tenant.workspace.id) == ["failed"]
    log = await delivery_log(tenant, endpoint)
    assert log["enabled"] is False and log["disabledReason"] == "The receiver answered 410 Gone."


async def test_a_receiver_that_does_not_answer_in_time(tenant: Tenant, http_sink: HttpSink, fast_retries: Any) -> None:
    fast_retries.webhook_timeout_seconds = 0.3
    fast_retries.webhook_max_attempts = 1
    endpoint = await register(tenant, f"{http_sink.url}/slow", ["CONTACT_CREATED"])
    http_sink.respond_with(delay_seconds=1)
    await tenant.contact(name="Slow")
    assert await drain(tenant.workspace.id) == ["failed"]
    [delivery] = (await delivery_log(tenant, endpoint))["deliveries"]
    [attempt] = delivery["attemptLog"]
    assert attempt["statusCode"] is None and attempt["error"] == "no answer within 0.3 s"
    assert 250 <= attempt["durationMs"] < 1000


async def test_ping_reaches_even_a_disabled_endpoint(tenant: Tenant, http_sink: HttpSink) -> None:
    endpoint = await register(tenant, f"{http_sink.url}/ping", ["CONTACT_CREATED"])
    await tenant.api(
        "mutation($i: UpdateWebhookEndpointInput!) { updateWebhookEndpoint(input: $i) { userErrors { code } } }",
        {"i": {"id": endpoint.id, "enabled": False}},
        token=tenant.owner_token,
    )
    pinged = (await tenant.api(PING, {"i": {"id": endpoint.id}}, token=tenant.owner_token))["pingWebhookEndpoint"]
    assert pinged["delivery"]["eventType"] == "webhook.ping" and pinged["delivery"]["status"] == "PENDING"
    assert await drain(tenant.workspace.id) == ["succeeded"]
    [request] = await http_sink.wait_for(1)
    assert verified(request, endpoint)["data"] == {"endpointId": endpoint.id}


# -- what the product emits ----------------------------------------------------------------


async def _conversation(tenant: Tenant, external_id: str) -> tuple[str, str]:
    # The session proves its external id: a CRM sync of an id that a session merely
    # claimed goes to a contact of its own (tests/contacts/test_verified_contacts.py).
    session = (
        await tenant.api(
            "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token contact { id } } }",
            {
                "i": {
                    "channelKey": tenant.channel.public_key,
                    "externalId": external_id,
                    "userHash": user_hash(tenant.channel.secret, external_id),
                }
            },
        )
    )["startContactSession"]
    started = (
        await tenant.api(
            "mutation($i: StartConversationInput!) { startConversation(input: $i) { "
            "conversation { id } userErrors { code } } }",
            {"i": {"body": "Hello"}},
            token=session["token"],
        )
    )["startConversation"]
    return session["contact"]["id"], started["conversation"]["id"]


async def test_agent_edits_of_crm_attributes_reach_the_crm_when_the_conversation_status_changes(
    tenant: Tenant, http_sink: HttpSink
) -> None:
    await tenant.api(
        DEFINE, {"i": {"key": "plan", "label": "Plan", "type": "TEXT", "crmManaged": True}}, token=tenant.owner_token
    )
    await tenant.api(DEFINE, {"i": {"key": "notes", "label": "Notes", "type": "TEXT"}}, token=tenant.owner_token)
    await tenant.api(
        "mutation { updateWorkspace(input: {agentsCanEditCrmAttributes: true}) { userErrors { code } } }",
        token=tenant.owner_token,
    )
    crm = await register(tenant, f"{http_sink.url}/crm", ["CONTACT_CRM_ATTRIBUTES_CHANGED"])
    status_hook = await register(tenant, f"{http_sink.url}/status", ["CONVERSATION_STATUS_CHANGED"])
    contact_id, conversation_id = await _conversation(tenant, "user-77")
    agent, agent_token = await tenant.agent()

    # The CRM's own writes (an API key) are not pushed back; an agent's are, later.
    await tenant.api(
        UPDATE_CONTACT,
        {"i": {"id": contact_id, "attributes": [{"key": "plan", "value": "silver"}]}},
        token=tenant.api_key,
    )
    edit = {
        "id": contact_id,
        "attributes": [{"key": "plan", "value": "gold"}, {"key": "notes", "value": "asked for an upgrade"}],
    }
    assert (await tenant.api(UPDATE_CONTACT, {"i": edit}, token=agent_token))["updateContact"]["userErrors"] == []
    assert await drain(tenant.workspace.id) == []
    assert http_sink.requests == []

    changed = await tenant.api(
        SET_STATUS, {"i": {"id": conversation_id, "status": "RESOLVED"}}, token=tenant.owner_token
    )
    assert changed["setConversationStatus"]["userErrors"] == []
    assert await drain(tenant.workspace.id) == ["succeeded", "succeeded"]
    by_path = {r.path: r for r in await http_sink.wait_for(2)}
    push = verified(by_path["/crm"], crm)
    assert push["type"] == "contact.crm_attributes_changed"
    assert push["data"]["attributes"] == {"plan": "gold"}  # CRM-managed ones only
    assert push["data"]["contact"] == {"id": contact_id, "externalId": "user-77", "email": None}
    assert push["data"]["editedByAgentId"] is not None and agent.id
    assert (
        push["data"]["conversation"]["id"] == conversation_id and push["data"]["conversation"]["status"] == "resolved"
    )
    status = verified(by_path["/status"], status_hook)
    assert (
        status["data"]["conversation"].items()
        >= {
            "id": conversation_id,
            "status": "resolved",
            "previousStatus": "open",
            "contactId": contact_id,
        }.items()
    )
    # Pushed once: the next status change sends only the status event.
    http_sink.clear()
    await tenant.api(SET_STATUS, {"i": {"id": conversation_id, "status": "OPEN"}}, token=tenant.owner_token)
    assert await drain(tenant.workspace.id) == ["succeeded"]
    assert [r.path for r in await http_sink.wait_for(1)] == ["/status"]
    # An agent's bulk edit through syncContacts is an agent's edit too.
    http_sink.clear()
    synced = await tenant.api(
        "mutation($i: SyncContactsInput!) { syncContacts(input: $i) { updated } }",
        {"i": {"contacts": [{"externalId": "user-77", "attributes": [{"key": "plan", "value": "platinum"}]}]}},
        token=agent_token,
    )
    assert synced["syncContacts"]["updated"] == 1
    await tenant.api(SET_STATUS, {"i": {"id": conversation_id, "status": "RESOLVED"}}, token=tenant.owner_token)
    assert await drain(tenant.workspace.id) == ["succeeded", "succeeded"]
    pushed = [verified(r, crm) for r in await http_sink.wait_for(2) if r.path == "/crm"]
    assert [p["data"]["attributes"] for p in pushed] == [{"plan": "platinum"}]


async def test_segment_joins_and_leaves_are_delivered(tenant: Tenant, http_sink: HttpSink, app: Any) -> None:
    endpoint = await register(tenant, f"{http_sink.url}/segments", ["SEGMENT_JOINED", "SEGMENT_LEFT"])
    made = await tenant.api(
        "mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } userErrors { message } } }",
        {
            "i": {
                "name": "Lyon",
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "city", "operator": "EQUALS", "value": {"text": "Lyon"}}],
                },
            }
        },
        token=tenant.owner_token,
    )
    segment_id = made["createSegment"]["segment"]["id"]
    lyon = [await tenant.contact(name=f"Lyonnais {i}", city="Lyon") for i in range(3)]
    ctx = {"redis": app.state.jobs, "hub": None}
    await refresh_segment(ctx, _pk(segment_id))
    # The refresh wrote the deliveries in its transaction; the sweep queues their jobs.
    assert await dispatch_webhooks(ctx) >= 1
    await tenant.api(UPDATE_CONTACT, {"i": {"id": lyon[0]["id"], "city": "Paris"}}, token=tenant.owner_token)
    await refresh_segment(ctx, _pk(segment_id))
    assert await drain(tenant.workspace.id) == ["succeeded", "succeeded"]
    bodies = [verified(r, endpoint) for r in await http_sink.wait_for(2)]
    assert [(b["type"], sorted(b["data"]["contactIds"])) for b in bodies] == [
        ("segment.joined", sorted(c["id"] for c in lyon)),
        ("segment.left", [lyon[0]["id"]]),
    ]
    assert bodies[0]["data"]["segment"] == {"id": segment_id, "name": "Lyon"}


async def test_a_bulk_sync_fans_out_in_the_database(tenant: Tenant, http_sink: HttpSink, app: Any) -> None:
    first = await register(tenant, f"{http_sink.url}/one", ["CONTACT_CREATED"])
    await register(tenant, f"{http_sink.url}/two", ["CONTACT_CREATED", "CONTACT_UPDATED"])
    await register(tenant, f"{http_sink.url}/off", ["CONTACT_UPDATED"])
    rows = [{"externalId": f"fan-{i}"} for i in range(300)]
    payload = (
        await tenant.api(
            "mutation($i: SyncContactsInput!) { syncContacts(input: $i) { created } }",
            {"i": {"contacts": rows}},
            token=tenant.api_key,
        )
    )["syncContacts"]
    assert payload["created"] == 300
    ws = tenant.workspace.id
    assert await WebhookDelivery.filter(workspace_id=ws).count() == 600
    assert await WebhookDelivery.filter(workspace_id=ws, endpoint_id=_pk(first.id)).count() == 300
    # Too many to queue one by one after the commit: one dispatch job queues them.
    queued = [job.function for job in await app.state.jobs.queued_jobs()]
    assert "dispatch_webhooks" in queued
    assert await dispatch_webhooks({"redis": app.state.jobs}) >= 600
    assert await dispatch_webhooks({"redis": app.state.jobs}) == 0  # arq refuses what is queued already


def _pk(gid: str) -> int:
    from core.scoping import decode_global_id

    decoded = decode_global_id(gid)
    assert decoded is not None
    return decoded[1]


# -- a real worker -------------------------------------------------------------------------


@pytest.fixture
async def empty_queue(app: Any) -> None:
    """Jobs queued by earlier tests (nobody ran them) must not reach the worker started here."""
    await app.state.jobs.delete(keys.arq_queue())


async def test_an_arq_worker_delivers_and_retries(
    tenant: Tenant, http_sink: HttpSink, tmp_path: Path, empty_queue: None
) -> None:
    endpoint = await register(tenant, f"{http_sink.url}/worker", ["CONTACT_CREATED"])
    # Deliveries other tests left waiting (nobody ran them) are not this worker's business.
    await (
        WebhookDelivery.filter(status=DeliveryStatus.PENDING)
        .exclude(workspace_id=tenant.workspace.id)
        .update(status=DeliveryStatus.CANCELLED)
    )
    http_sink.respond_with([500, 500])
    worker = start_worker(tmp_path, env={"WEBHOOK_RETRY_BASE_SECONDS": "0.2"})
    try:
        contact = await tenant.contact(name="Through the worker", externalId="w-1")
        requests = await http_sink.wait_for(3, timeout=30)
        deadline = time.monotonic() + 15
        while True:
            [delivery] = (await delivery_log(tenant, endpoint))["deliveries"]
            finished = delivery["status"] == "SUCCEEDED" and delivery["job"]["status"] == "SUCCEEDED"
            if finished or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        stop_process(worker)
    bodies = [verified(r, endpoint) for r in requests]
    assert [b["data"]["contact"]["id"] for b in bodies] == [contact["id"]] * 3
    assert [a["statusCode"] for a in delivery["attemptLog"]] == [500, 500, 200]
    assert delivery["status"] == "SUCCEEDED" and delivery["job"]["status"] == "SUCCEEDED"
    stamps = [datetime.fromisoformat(a["at"]) for a in delivery["attemptLog"]]
    # The backoff doubles: 0.2 s, then 0.4 s (±10 %); a deferred attempt never runs early,
    # so these lower bounds hold however loaded the machine is.
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(stamps, stamps[1:], strict=False)]
    assert gaps[0] >= 0.18 and gaps[1] >= 0.36, gaps
    assert "deliver_webhook" in (tmp_path / "worker.log").read_text()
    assert json.loads(requests[0].body)["type"] == "contact.created"
    assert datetime.now(UTC) > stamps[0]
