"""Files that arrive by e-mail and MMS (fetched from the provider through the SSRF-safe
client, on a real HTTP server on loopback), files leaving with their contact, and each
contact seeing only its own."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from core.config import settings
from models.attachments import Attachment
from models.channels import ChannelKind
from models.conversations import Message
from tests.attachments.helpers import (
    MESSAGES,
    MY_MESSAGES,
    SEND,
    UPLOAD_URL,
    contact_conversation,
    fetch,
    put,
    send_files,
    stored_files,
    widget_session,
)
from tests.conftest import LiveServer, Tenant, gql, pk
from tests.conversations.test_inbound import make_channel, post
from tests.loopback import HttpSink

PNG = b"\x89PNG\r\n\x1a\n" + b"p" * 3000
DELETE = """mutation($i: ContactIdInput!) { deleteContact(input: $i) {
  auditRecord { erased { kind count } } userErrors { code } } }"""


async def test_an_inbound_email_keeps_its_attachments(
    client: httpx.AsyncClient, server: LiveServer, tenant: Tenant, http_sink: HttpSink
) -> None:
    channel = await make_channel(tenant, ChannelKind.EMAIL)
    http_sink.respond_with(body=PNG, headers={"content-type": "image/png"})
    payload = {
        "from": "ada@example.com",
        "subject": "My receipt",
        "text": "Attached.",
        "messageId": "<m1@mail.example.com>",
        "attachments": [
            {"url": f"{http_sink.url}/files/receipt.png?token=abc", "filename": "receipt.png"},
            {"url": f"{http_sink.url}/files/evil.html", "filename": "evil.html", "contentType": "text/html"},
        ],
    }
    answer = await post(client, channel, payload)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["skippedAttachments"] == [
        {"index": 1, "code": "NOT_ALLOWED", "message": "evil.html: files ending in .html are refused."}
    ]
    inbox = await gql(server, MESSAGES, {"id": body["conversationId"]}, tenant.owner_token)
    [message] = inbox["conversation"]["messages"]["edges"]
    [attachment] = message["node"]["attachments"]
    assert (attachment["filename"], attachment["contentType"], attachment["size"]) == (
        "receipt.png",
        "image/png",
        len(PNG),
    )
    assert (await fetch(server, attachment["url"])).content == PNG
    assert [r.path for r in http_sink.requests] == ["/files/receipt.png?token=abc", "/files/evil.html"]

    # The provider retries the same delivery: nothing stored twice.
    again = await post(client, channel, payload)
    assert again.json()["duplicate"] is True
    assert len(stored_files(tenant.workspace.id)) == 1


async def test_mms_media_alone_is_a_message(client: httpx.AsyncClient, tenant: Tenant, http_sink: HttpSink) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS)
    http_sink.respond_with(body=PNG, headers={"content-type": "image/png"})
    answer = await post(
        client,
        channel,
        {"from": "+14155550100", "text": "", "messageId": "MM1", "attachments": [{"url": f"{http_sink.url}/m/1"}]},
    )
    assert answer.status_code == 200, answer.text
    message = await Message.get(id=pk(answer.json()["messageId"]))
    assert message.body == ""
    [row] = await Attachment.filter(message_id=message.id)
    assert (row.filename, row.content_type, row.size, row.stored) == ("1", "image/png", len(PNG), True)


async def test_media_the_provider_cannot_serve_now_is_retried_later(
    client: httpx.AsyncClient, tenant: Tenant, http_sink: HttpSink
) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS)
    http_sink.respond_with([200, 503], body=PNG, headers={"content-type": "image/png"})
    answer = await post(
        client,
        channel,
        {
            "from": "+14155550101",
            "text": "two photos",
            "messageId": "MM2",
            "attachments": [{"url": f"{http_sink.url}/m/1"}, {"url": f"{http_sink.url}/m/2"}],
        },
    )
    assert answer.status_code == 502
    assert answer.json()["error"]["field"] == "attachments.1.url"
    # Nothing kept: no message, and the first file was removed again.
    assert not await Message.filter(external_message_id="MM2").exists()
    assert stored_files(tenant.workspace.id) == []


async def test_media_on_a_private_address_is_never_fetched_in_production(
    client: httpx.AsyncClient, tenant: Tenant, http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "outbound_allow_private_networks", False)
    channel = await make_channel(tenant, ChannelKind.SMS)
    answer = await post(
        client,
        channel,
        {"from": "+14155550102", "text": "look", "messageId": "MM3", "attachments": [{"url": f"{http_sink.url}/m/1"}]},
    )
    assert answer.status_code == 200
    assert answer.json()["skippedAttachments"] == [
        {"index": 0, "code": "INVALID", "message": "address refused: 127.0.0.1 is loopback"}
    ]
    assert http_sink.requests == []


async def test_too_large_media_is_skipped(
    client: httpx.AsyncClient, tenant: Tenant, http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    await tenant.api(
        "mutation { setAttachmentPolicy(input: {maxBytes: 1000}) { userErrors { code } } }", token=tenant.owner_token
    )
    channel = await make_channel(tenant, ChannelKind.SMS)
    http_sink.respond_with(body=PNG, headers={"content-type": "image/png"})
    answer = await post(
        client,
        channel,
        {
            "from": "+14155550103",
            "text": "big",
            "messageId": "MM4",
            "attachments": [{"url": f"{http_sink.url}/big.png"}],
        },
    )
    assert answer.json()["skippedAttachments"] == [
        {"index": 0, "code": "TOO_LONG", "message": "big.png: a file may be at most 1000 bytes."}
    ]
    assert stored_files(tenant.workspace.id) == []


@pytest.mark.parametrize(
    ("attachments", "field"),
    [
        ("not a list", "attachments"),
        ([{"url": "http://x/1"}] * 11, "attachments"),
        (["http://x/1"], "attachments.0"),
        ([{"filename": "a.png"}], "attachments.0.url"),
        ([{"url": "http://x/" + "a" * 3000}], "attachments.0.url"),
        ([{"url": "http://x/1", "contentType": 5}], "attachments.0.contentType"),
    ],
)
async def test_a_malformed_attachment_list_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, attachments: Any, field: str
) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS)
    answer = await post(client, channel, {"from": "+14155550104", "text": "x", "attachments": attachments})
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == field


async def test_deleting_a_contact_removes_its_files(server: LiveServer, tenant: Tenant) -> None:
    token, contact_id = await widget_session(tenant, "leaving")
    conversation_id = await contact_conversation(tenant, token)
    mine = await send_files(server, token, conversation_id, [("id-card.png", PNG, "image/png")])
    reply = await send_files(server, tenant.owner_token, conversation_id, [("form.pdf", b"%PDF-1", "application/pdf")])
    # An upload the contact made and never sent goes too.
    ticket = (
        await gql(server, UPLOAD_URL, {"i": {"filename": "x.png", "contentType": "image/png", "size": 3}}, token)
    )["createUploadUrl"]
    assert (await put(server, ticket["url"], b"abc")).status_code == 200
    links = [a["url"] for a in mine["message"]["attachments"] + reply["message"]["attachments"]]
    assert len(stored_files(tenant.workspace.id)) == 3

    deleted = await tenant.api(DELETE, {"i": {"id": contact_id}}, token=tenant.owner_token)
    erased = {e["kind"]: e["count"] for e in deleted["deleteContact"]["auditRecord"]["erased"]}
    assert erased["attachments"] == 3
    assert stored_files(tenant.workspace.id) == []
    assert not await Attachment.filter(workspace_id=tenant.workspace.id).exists()
    for link in links:
        assert (await fetch(server, link)).status_code == 404


async def test_merging_contacts_keeps_the_files_with_the_person(server: LiveServer, tenant: Tenant) -> None:
    token, secondary = await widget_session(tenant, "merge-me")
    conversation_id = await contact_conversation(tenant, token)
    await send_files(server, token, conversation_id, [("a.png", PNG, "image/png")])
    primary = await tenant.contact(name="Primary", email="primary@example.com")
    merged = await tenant.api(
        "mutation($i: MergeContactsInput!) { mergeContacts(input: $i) { userErrors { code } } }",
        {"i": {"primaryId": primary["id"], "secondaryId": secondary}},
        token=tenant.owner_token,
    )
    assert merged["mergeContacts"]["userErrors"] == []
    assert await Attachment.filter(contact_id=pk(primary["id"])).count() == 1
    await tenant.api(DELETE, {"i": {"id": primary["id"]}}, token=tenant.owner_token)
    assert stored_files(tenant.workspace.id) == []


async def test_a_contact_sees_only_its_own_files(server: LiveServer, tenant: Tenant) -> None:
    alice, _ = await widget_session(tenant, "alice")
    bob, _ = await widget_session(tenant, "bob")
    alices = await contact_conversation(tenant, alice)
    await send_files(server, alice, alices, [("alice.png", PNG, "image/png")])
    ticket = (
        await gql(server, UPLOAD_URL, {"i": {"filename": "a.png", "contentType": "image/png", "size": 3}}, alice)
    )["createUploadUrl"]
    await put(server, ticket["url"], b"abc")

    # Bob's widget lists nothing of Alice's, cannot read her conversation, nor send her upload.
    bobs_view = await gql(server, MY_MESSAGES, {}, bob)
    assert bobs_view["myConversations"]["edges"] == []
    assert (await gql(server, MESSAGES, {"id": alices}, bob))["conversation"] is None
    bobs = await contact_conversation(tenant, bob)
    stolen = await gql(server, SEND, {"i": {"conversationId": bobs, "uploadIds": [ticket["uploadId"]]}}, bob)
    assert stolen["sendMessage"]["userErrors"][0]["code"] == "NOT_FOUND"
    # Nor can an agent of the workspace: an upload is its uploader's until sent.
    taken = await gql(
        server, SEND, {"i": {"conversationId": bobs, "uploadIds": [ticket["uploadId"]]}}, tenant.owner_token
    )
    assert taken["sendMessage"]["userErrors"][0]["code"] == "NOT_FOUND"
