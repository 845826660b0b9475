"""Erasure end to end (issue 22, part 5): a contact with conversations, notes, events,
webhook deliveries to a real receiver on loopback, an export holding it and live Redis
state, deleted through a real uvicorn server; then the whole database (every row of
every table, as text), every file under the export folder and every Redis key and value
of this run are searched for its e-mail, name and phone: nothing is left but the masked
hints of the audit record."""

from __future__ import annotations

import importlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis

from core import presence
from core.config import settings
from core.db import dialect
from core.scoping import encode_global_id
from domain.identity import user_hash
from jobs.exports import export_contacts
from models.webhooks import WebhookDelivery, WebhookEventType
from tests.conftest import LiveServer, Tenant, gql, hub_subscriptions, pk
from tests.loopback import HttpSink
from tests.realtime.wsclient import GraphQLWs
from tests.webhooks.conftest import drain, register

EMAIL = "erasmus.forgetme-7f3a@example.org"
NAME = "Erasmus Forgetme"
PHONE = "+442071830042"
NEEDLES = (EMAIL, NAME, PHONE, "Forgetme")

SESSION = (
    "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { "
    "token contact { id } userErrors { code } } }"
)
UPDATE = "mutation($i: UpdateContactInput!) { updateContact(input: $i) { userErrors { field code } } }"
START = (
    "mutation($i: StartConversationInput!) { startConversation(input: $i) { conversation { id } userErrors { code } } }"
)
REPLY = "mutation($i: SendMessageInput!) { sendMessage(input: $i) { userErrors { field code } } }"
NOTE = "mutation($i: AddContactNoteInput!) { addContactNote(input: $i) { userErrors { code } } }"
TRACK = "mutation($i: TrackEventInput!) { trackEvent(input: $i) { userErrors { code } } }"
EXPORT = "mutation($i: ExportContactsInput!) { exportContacts(input: $i) { job { id } userErrors { code } } }"
JOB = "query($id: ID!) { job(id: $id) { status downloadUrl } }"
DELETE = """mutation($i: ContactIdInput!) { deleteContact(input: $i) {
  auditRecord { emailHint nameHint phoneHint erased { kind count } } userErrors { code } } }"""
MY_MESSAGES = "subscription { myMessages { cursor } }"


async def database_dump() -> str:
    """Every row of every table of the database, as text."""
    from tortoise import connections

    conn = connections.get("default")
    if dialect() == "postgres":
        rows = await conn.execute_query_dict(
            "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    else:
        rows = await conn.execute_query_dict("SELECT name FROM sqlite_master WHERE type = 'table'")
    dump = []
    for row in rows:
        dump.append(f"== {row['name']}")
        dump += [repr(r) for r in await conn.execute_query_dict(f'SELECT * FROM "{row["name"]}"')]
    assert len(rows) > 30, "not the whole database"
    return "\n".join(dump)


def export_folder_text() -> str:
    texts = []
    for path in Path(os.environ["EXPORT_DIR"]).rglob("*"):
        if path.is_file():
            texts.append(path.read_text("utf-8", errors="replace"))
    return "\n".join(texts)


async def redis_dump() -> str:
    """Every key of this run's prefix (the app's and arq's) with its value, as text."""
    client = aioredis.Redis.from_url(settings.redis_url)
    dump = []
    try:
        async for key in client.scan_iter(match=f"{settings.redis_prefix}*", count=1000):
            kind = (await client.type(key)).decode()
            value: Any = {
                "string": lambda: client.get(key),
                "hash": lambda: client.hgetall(key),
                "set": lambda: client.smembers(key),
                "zset": lambda: client.zrange(key, 0, -1, withscores=True),
                "list": lambda: client.lrange(key, 0, -1),
                "stream": lambda: client.xrange(key),
            }.get(kind, lambda: client.type(key))()
            dump.append(f"{key!r} {kind} {await value!r}")
    finally:
        await client.aclose()
    assert dump, "not this run's Redis"
    return "\n".join(dump)


def found(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle.lower() in text.lower()]


async def test_a_deleted_contact_is_gone_from_every_table_file_and_redis_key(
    tenant: Tenant, server: LiveServer, http_sink: HttpSink
) -> None:
    endpoint = await register(
        tenant,
        f"{http_sink.url}/crm",
        ["CONTACT_CREATED", "CONTACT_UPDATED", "CONTACT_DELETED", "CONVERSATION_STATUS_CHANGED"],
    )
    # A signed-in user of the customer's app (an anonymous visitor's sessions would end when the agent identifies it).
    proof = {"externalId": "erasmus-1", "userHash": user_hash(tenant.channel.secret, "erasmus-1")}
    session = (await gql(server, SESSION, {"i": {"channelKey": tenant.channel.public_key, **proof}}, ""))[
        "startContactSession"
    ]
    contact_id, contact_token = session["contact"]["id"], session["token"]
    cid = pk(contact_id)
    owner = tenant.owner_token
    assert (await gql(server, UPDATE, {"i": {"id": contact_id, "email": EMAIL, "name": NAME, "phone": PHONE}}, owner))[
        "updateContact"
    ]["userErrors"] == []
    started = (
        await gql(
            server, START, {"i": {"body": f"Hi, I am {NAME}, {EMAIL}", "subject": f"From {EMAIL}"}}, contact_token
        )
    )["startConversation"]
    conversation_id = started["conversation"]["id"]
    await gql(
        server, REPLY, {"i": {"conversationId": conversation_id, "body": f"Thanks {NAME}, we wrote to {EMAIL}"}}, owner
    )
    await gql(server, NOTE, {"i": {"contactId": contact_id, "body": f"{NAME} called from {PHONE}"}}, owner)
    await gql(
        server,
        TRACK,
        {"i": {"contactId": contact_id, "name": "signed_up", "properties": {"email": EMAIL}}},
        tenant.api_key,
    )
    assert "succeeded" in await drain(tenant.workspace.id)
    assert any(EMAIL in r.body.decode() for r in await http_sink.wait_for(2)), "the receiver got the contact's data"
    # One more change, left pending: its delivery still holds the e-mail.
    await gql(server, UPDATE, {"i": {"id": contact_id, "city": "Porto"}}, owner)
    assert found(await database_dump())

    job_id = (await gql(server, EXPORT, {"i": {"columns": ["id", "name", "email", "phone"]}}, owner))["exportContacts"][
        "job"
    ]["id"]
    await export_contacts({"hub": None}, pk(job_id))
    link = (await gql(server, JOB, {"id": job_id}, owner))["job"]["downloadUrl"]
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        url = urlsplit(link)
        before = await http.get(f"{url.path}?{url.query}")
        assert before.status_code == 200 and EMAIL in before.text
    assert EMAIL in export_folder_text()

    async with GraphQLWs.open(server.ws_url, contact_token) as ws:
        await ws.subscribe(MY_MESSAGES)
        await hub_subscriptions(server, 1)
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            assert cid in await presence.online_ids(redis, tenant.workspace.id, "contact")
            deleted = (await gql(server, DELETE, {"i": {"id": contact_id}}, owner))["deleteContact"]
            assert deleted["userErrors"] == []
            assert cid not in await presence.online_ids(redis, tenant.workspace.id, "contact")
        finally:
            await redis.aclose()

    assert found(await database_dump()) == []
    assert found(export_folder_text()) == []
    assert found(await redis_dump()) == []
    record = deleted["auditRecord"]
    assert (record["emailHint"], record["nameHint"], record["phoneHint"]) == (
        "e***@e***.org",
        "E*** F***",
        "+44*******042",
    )
    erased = {e["kind"]: e["count"] for e in record["erased"]}
    assert erased["conversations"] == 1 and erased["messages"] >= 2 and erased["notes"] == 1 and erased["events"] >= 1
    assert erased["webhookDeliveries"] >= 3 and erased["exportFiles"] == 1
    # The revoked session's socket is closed at the commit (runtime/socket_guard.py), which may
    # remove its presence before deleteContact does: either way it is gone (checked above).
    assert erased["presence"] in (0, 1)

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        after = await http.get(f"{url.path}?{url.query}")
    assert after.status_code == 410 and EMAIL not in after.text
    assert after.json()["error"]["code"] == "GONE"
    # Only the contact.deleted event is left to deliver: ids, no personal data.
    [left] = await WebhookDelivery.filter(contact_id=cid).values_list("event_type", flat=True)
    assert left == "contact.deleted"
    assert endpoint.id


MERGE = "mutation($i: MergeContactsInput!) { mergeContacts(input: $i) { userErrors { code message } } }"


async def test_erasing_a_merged_contact_erases_what_its_secondary_sent(tenant: Tenant) -> None:
    """Merging hands the secondary's webhook deliveries to the primary: deleting the
    primary then leaves none of the secondary's data behind."""
    await register(tenant, "https://crm.example.com/hook", ["CONTACT_CREATED", "CONTACT_UPDATED", "CONTACT_DELETED"])
    primary = await tenant.contact(name="Ada Work", email="ada.work@example.com")
    secondary = await tenant.contact(name=NAME, email=EMAIL, phone=PHONE)
    assert found(await database_dump())
    merged = await tenant.api(
        MERGE, {"i": {"primaryId": primary["id"], "secondaryId": secondary["id"]}}, token=tenant.owner_token
    )
    assert merged["mergeContacts"]["userErrors"] == []
    deleted = (await tenant.api(DELETE, {"i": {"id": primary["id"]}}, token=tenant.owner_token))["deleteContact"]
    assert deleted["userErrors"] == []
    assert found(await database_dump()) == []


async def test_the_migration_names_the_contact_of_deliveries_written_before_it(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0014_erasure fills contact_id from each payload as emit does, a few rows per
    statement; a ping, a conversation's id or a malformed id names no contact."""
    from tortoise import connections

    from models.webhooks import DeliveryStatus
    from services.webhooks import envelope

    migration = importlib.import_module("models.migrations.0014_erasure")
    monkeypatch.setattr(migration, "FILL_CHUNK", 2)
    endpoint = await register(
        tenant, "https://crm.example.com/hook", ["CONTACT_CREATED", "CONVERSATION_STATUS_CHANGED"]
    )
    ada, bob = await tenant.contact(name="Ada"), await tenant.contact(name="Bob")
    ws, stamp = tenant.workspace.id, datetime.now(UTC)
    for data in (
        {"conversation": {"id": encode_global_id("Conversation", 7), "contactId": bob["id"]}},
        {"contact": {"id": encode_global_id("Conversation", pk(ada["id"]))}},
        {"contact": {"id": "not base64!"}},
        {"contact": {"id": "Q29udGFjdDp4"}},  # "Contact:x"
        {"endpointId": endpoint.id},
    ):
        await WebhookDelivery.create(
            workspace_id=ws,
            endpoint_id=pk(endpoint.id),
            event_id="evt_old",
            event_type="contact.created",
            payload=envelope("evt_old", WebhookEventType.CONTACT_CREATED, ws, stamp, data),
            status=DeliveryStatus.PENDING,
            created_at=stamp,
        )
    expected = [pk(ada["id"]), pk(bob["id"]), pk(bob["id"]), None, None, None, None]
    rows = WebhookDelivery.filter(workspace_id=ws).order_by("id")
    assert await rows.values_list("contact_id", flat=True) == expected[:2] + [None] * 5
    await WebhookDelivery.filter(workspace_id=ws).update(contact_id=None)
    await migration.fill_contact_ids(connections.get("default"))
    assert await rows.values_list("contact_id", flat=True) == expected
