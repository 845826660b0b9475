"""A contact's data export (issue 29, item 3): `exportContactData` queues a job whose signed,
expiring download is one JSON archive of everything Parley keeps about the contact; who may
ask for it; another workspace's contact is NOT_FOUND; the archive is streamed in bounded
memory; a deletion meanwhile removes it (410). The task runs in this process here."""

from __future__ import annotations

import json
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from jobs.exports import export_contact_data, write_contact_archive
from jobs.segments import refresh_segment
from models.attachments import Attachment
from models.contacts import Contact, ContactEvent, ContactNote, ContactTag, EventKind
from models.conversations import Conversation, Direction, Message, SenderKind
from services.exports import signed_url
from tests.conftest import Api, Tenant, pk
from tests.exports.test_exports import download, job_of

EXPORT = """mutation($i: ContactIdInput!) { exportContactData(input: $i) {
  job { id kind status downloadUrl } userErrors { field code message } } }"""
DELETE = "mutation($i: ContactIdInput!) { deleteContact(input: $i) { userErrors { code } } }"


def gid(type_name: str, key: int) -> str:
    from core.scoping import encode_global_id

    return encode_global_id(type_name, key)


async def person(tenant: Tenant) -> Contact:
    define = """mutation($i: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $i) {
      userErrors { code } } }"""
    await tenant.api(define, {"i": {"key": "plan", "label": "Plan", "type": "TEXT"}}, token=tenant.owner_token)
    created = await tenant.contact(name="Ada Lovelace", email="ada@example.com", gdprConsent=True)
    contact = await Contact.get(id=pk(created["id"]))
    ws = tenant.workspace.id
    await Contact.filter(id=contact.id).update(attributes={"plan": "pro"}, city="London")
    await ContactTag.create(workspace_id=ws, contact_id=contact.id, name="vip")
    await ContactNote.create(workspace_id=ws, contact_id=contact.id, author_id=tenant.owner.id, body="Prefers e-mail")
    now = datetime.now(UTC)
    for i in range(3):
        await ContactEvent.create(
            workspace_id=ws,
            contact_id=contact.id,
            kind=EventKind.EVENT,
            name=f"step_{i}",
            properties={"i": i},
            occurred_at=now,
        )
    conversation = await Conversation.create(workspace_id=ws, contact_id=contact.id, channel_id=tenant.channel.id)
    for body, sender, direction in (
        ("Hello?", SenderKind.CONTACT, Direction.INBOUND),
        ("Hi Ada", SenderKind.AGENT, Direction.OUTBOUND),
    ):
        message = await Message.create(
            workspace_id=ws, conversation_id=conversation.id, sender_kind=sender, direction=direction, body=body
        )
    # The agent's reply carries a file; an upload never sent is no part of the record.
    for sent in (message.id, None):
        await Attachment.create(
            workspace_id=ws,
            message_id=sent,
            contact_id=contact.id,
            uploader=f"agent:{tenant.owner.id}",
            filename="invoice.pdf" if sent else "draft.pdf",
            content_type="application/pdf",
            size=1234,
            storage_key=f"{ws}/{'sent' if sent else 'draft'}-{contact.id}",
            stored=True,
        )
    segment = (
        await tenant.api(
            "mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } } }",
            {
                "i": {
                    "name": "Londoners",
                    "rules": {
                        "match": "ALL",
                        "conditions": [{"field": "city", "operator": "EQUALS", "value": {"text": "London"}}],
                    },
                }
            },
            token=tenant.owner_token,
        )
    )["createSegment"]["segment"]
    await refresh_segment({"redis": None}, pk(segment["id"]))
    return await Contact.get(id=contact.id)


async def start(tenant: Tenant, contact_gid: str, token: str | None = None) -> dict[str, Any]:
    return (await tenant.api(EXPORT, {"i": {"id": contact_gid}}, token=token or tenant.owner_token))[
        "exportContactData"
    ]  # type: ignore[no-any-return]


async def test_the_archive_holds_everything_about_the_contact_behind_a_signed_link(
    app: Any, tenant: Tenant, client: httpx.AsyncClient
) -> None:
    contact = await person(tenant)
    other = await tenant.contact(name="Someone Else")
    started = await start(tenant, gid("Contact", contact.id))
    assert started["userErrors"] == []
    job = started["job"]
    assert job["kind"] == "CONTACT_DATA_EXPORT" and job["status"] == "QUEUED" and job["downloadUrl"] is None
    result = await export_contact_data({"hub": app.state.hub}, pk(job["id"]))
    assert result is not None and result["events"] == 3 and result["messages"] == 2
    finished = await job_of(tenant, job["id"])
    assert finished["status"] == "SUCCEEDED" and finished["downloadUrl"]

    response = await download(client, finished["downloadUrl"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert f"contact-data-{pk(job['id'])}.json" in response.headers["content-disposition"]
    archive = response.json()
    assert archive["format"] == "parley.contact-data/1"
    assert archive["contact"]["id"] == gid("Contact", contact.id)
    assert archive["contact"]["name"] == "Ada Lovelace" and archive["contact"]["email"] == "ada@example.com"
    assert archive["attributes"] == [{"key": "plan", "label": "Plan", "value": "pro"}]
    assert archive["consents"]["gdprConsent"] is True and archive["consents"]["gdprConsentAt"]
    assert archive["tags"] == ["vip"]
    assert [n["body"] for n in archive["notes"]] == ["Prefers e-mail"]
    assert [e["name"] for e in archive["events"]] == ["step_0", "step_1", "step_2"]
    assert archive["events"][2]["properties"] == {"i": 2}
    [conversation] = archive["conversations"]
    assert [(m["senderKind"], m["body"]) for m in conversation["messages"]] == [
        ("contact", "Hello?"),
        ("agent", "Hi Ada"),
    ]
    assert [s["name"] for s in archive["segmentMemberships"]] == ["Londoners"]
    [attachment] = archive["attachments"]
    reply = await Message.get(conversation_id=pk(conversation["id"]), body="Hi Ada")
    assert {k: v for k, v in attachment.items() if k != "url"} == {
        "id": attachment["id"],
        "messageId": gid("Message", reply.id),
        "filename": "invoice.pdf",
        "contentType": "application/pdf",
        "size": 1234,
    }
    assert f"/attachments/{tenant.workspace.id}/" in attachment["url"] and "signature=" in attachment["url"]
    assert "draft.pdf" not in response.text
    # Nothing of anyone else.
    assert other["id"] not in response.text and "Someone Else" not in response.text

    # A tampered or expired link is refused; after the contact's deletion the archive is gone.
    assert (await download(client, finished["downloadUrl"].replace("signature=", "signature=0"))).status_code == 403
    expired = signed_url(tenant.workspace.id, pk(job["id"]), now=time.time() - 10**6)
    assert (await download(client, expired)).status_code == 403
    deleted = await tenant.api(DELETE, {"i": {"id": gid("Contact", contact.id)}}, token=tenant.owner_token)
    assert deleted["deleteContact"]["userErrors"] == []
    assert (await download(client, finished["downloadUrl"])).status_code == 410


async def test_who_may_export_a_contacts_data(tenant: Tenant, make_tenant: Any, api: Api) -> None:
    contact = await tenant.contact(name="Ann")
    # An agent has no contacts:export; a key without the scope neither; a session never.
    _, agent = await tenant.agent("agent")
    errors = await api.errors(EXPORT, {"i": {"id": contact["id"]}}, token=agent)
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]
    create_key = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }"
    reader = (
        await tenant.api(create_key, {"i": {"name": "r", "scopes": ["contacts:read"]}}, token=tenant.owner_token)
    )["createApiKey"]["secret"]
    errors = await api.errors(EXPORT, {"i": {"id": contact["id"]}}, token=reader)
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]
    session = (
        await tenant.api(
            "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token contact { id } } }",
            {"i": {"channelKey": tenant.channel.public_key}},
        )
    )["startContactSession"]
    errors = await api.errors(EXPORT, {"i": {"id": session["contact"]["id"]}}, token=session["token"])
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]
    errors = await api.errors(EXPORT, {"i": {"id": contact["id"]}})
    assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"]
    # Another workspace's contact: NOT_FOUND, and no job.
    beta = await make_tenant("Beta")
    stranger = await beta.contact(name="Beta person")
    refused = await start(tenant, stranger["id"])
    assert [(e["field"], e["code"]) for e in refused["userErrors"]] == [(["id"], "NOT_FOUND")]
    assert refused["job"] is None
    listed = await tenant.api("{ jobs(kind: CONTACT_DATA_EXPORT) { totalCount } }", token=tenant.owner_token)
    assert listed["jobs"]["totalCount"] == 0


async def test_the_archive_is_streamed_in_bounded_memory(tenant: Tenant, tmp_path: Path) -> None:
    created = await tenant.contact(name="Chatty")
    contact = await Contact.get(id=pk(created["id"]))
    conversation = await Conversation.create(
        workspace_id=tenant.workspace.id, contact_id=contact.id, channel_id=tenant.channel.id
    )
    body = "x" * 2000

    async def archive_peak(messages: int) -> int:
        have = await Message.filter(conversation_id=conversation.id).count()
        await Message.bulk_create(
            [
                Message(
                    workspace_id=tenant.workspace.id,
                    conversation_id=conversation.id,
                    sender_kind=SenderKind.CONTACT,
                    direction=Direction.INBOUND,
                    body=body,
                )
                for _ in range(messages - have)
            ]
        )
        tracemalloc.start()
        try:
            counts = await write_contact_archive(tmp_path / f"{messages}.json", contact)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert counts["messages"] == messages
        assert len(json.loads((tmp_path / f"{messages}.json").read_text())["conversations"][0]["messages"]) == messages
        return peak

    small = await archive_peak(1000)
    large = await archive_peak(4000)
    # Four times the messages (8 MB of bodies), about the same peak: one batch at a time.
    assert large < small * 1.5 + 1_000_000, (small, large)
    assert large < 6_000_000, large
