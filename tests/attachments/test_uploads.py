"""Files on messages through a real uvicorn: multipart uploads as Apollo and urql send them,
direct uploads to a signed URL, downloads (signed, expiring, never rendered inline), and
`Message.attachments` for agents and the contact."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from core.config import settings
from jobs.attachments import prune_uploads
from models.attachments import Attachment
from services.attachments import signed_link
from tests.attachments.helpers import (
    MESSAGES,
    MY_MESSAGES,
    SEND,
    START,
    UPLOAD_URL,
    contact_conversation,
    fetch,
    multipart,
    put,
    send_files,
    stored_files,
    widget_session,
)
from tests.conftest import LiveServer, Tenant, gql, hub_subscriptions, pk
from tests.realtime.wsclient import GraphQLWs

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
PDF = b"%PDF-1.7\n" + b"0" * 5000


async def test_an_agent_sends_files_as_apollo_does_and_both_sides_download_them(
    server: LiveServer, tenant: Tenant
) -> None:
    token, _ = await widget_session(tenant, "visitor-1")
    conversation_id = await contact_conversation(tenant, token)

    payload = await send_files(
        server, tenant.owner_token, conversation_id, [("photo.png", PNG, "image/png"), ("quote.pdf", PDF, "")]
    )
    assert payload["userErrors"] == []
    sent = payload["message"]["attachments"]
    assert [(a["filename"], a["contentType"], a["size"]) for a in sent] == [
        ("photo.png", "image/png", len(PNG)),
        ("quote.pdf", "application/pdf", len(PDF)),  # no type sent: known by its name
    ]

    # The agents' inbox and the contact's widget list the same files.
    inbox = await gql(server, MESSAGES, {"id": conversation_id}, tenant.owner_token)
    listed = inbox["conversation"]["messages"]["edges"][-1]["node"]["attachments"]
    widget = await gql(server, MY_MESSAGES, {}, token)
    [conversation] = widget["myConversations"]["edges"]
    seen = conversation["node"]["messages"]["edges"][-1]["node"]["attachments"]
    assert [a["id"] for a in listed] == [a["id"] for a in seen] == [a["id"] for a in sent]

    download = await fetch(server, seen[0]["url"])
    assert download.status_code == 200 and download.content == PNG
    assert download.headers["content-type"] == "image/png"
    assert download.headers["content-disposition"] == "attachment; filename*=UTF-8''photo.png"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert (await fetch(server, listed[1]["url"])).content == PDF


async def test_a_contact_starts_a_conversation_with_only_a_file(server: LiveServer, tenant: Tenant) -> None:
    token, _ = await widget_session(tenant, "visitor-2")
    response = await multipart(
        server,
        START,
        {"i": {"body": "", "attachments": [None]}},
        {"variables.i.attachments.0": ("screenshot.png", PNG, "image/png")},
        token,
    )
    payload = response.json()["data"]["startConversation"]
    assert payload["userErrors"] == []
    assert payload["message"]["body"] == ""
    [attachment] = payload["message"]["attachments"]
    assert attachment["filename"] == "screenshot.png"

    inbox = await gql(server, MESSAGES, {"id": payload["conversation"]["id"]}, tenant.owner_token)
    [message] = inbox["conversation"]["messages"]["edges"]
    assert message["node"]["attachments"] == [attachment | {"url": message["node"]["attachments"][0]["url"]}]


async def test_a_message_needs_text_or_a_file(server: LiveServer, tenant: Tenant) -> None:
    token, _ = await widget_session(tenant, "visitor-3")
    conversation_id = await contact_conversation(tenant, token)
    data = await gql(server, SEND, {"i": {"conversationId": conversation_id, "body": "  "}}, token)
    assert data["sendMessage"]["userErrors"] == [
        {"field": ["body"], "code": "REQUIRED", "message": "A message needs some text or a file."}
    ]


async def test_a_direct_upload_round_trip(server: LiveServer, tenant: Tenant) -> None:
    token, _ = await widget_session(tenant, "visitor-4")
    conversation_id = await contact_conversation(tenant, token)
    big = bytes(range(256)) * 4096  # 1 MiB
    ticket = (
        await gql(
            server,
            UPLOAD_URL,
            {"i": {"filename": "recording.mp4", "contentType": "video/mp4", "size": len(big)}},
            tenant.owner_token,
        )
    )["createUploadUrl"]
    assert ticket["userErrors"] == [] and ticket["expiresAt"]

    # Sent before its bytes arrived: refused, naming the id.
    early = await gql(
        server, SEND, {"i": {"conversationId": conversation_id, "uploadIds": [ticket["uploadId"]]}}, tenant.owner_token
    )
    assert early["sendMessage"]["userErrors"][0]["field"] == ["uploadIds", "0"]
    assert early["sendMessage"]["userErrors"][0]["code"] == "INVALID"

    assert (await put(server, ticket["url"], big[:-1])).status_code == 400  # not the size given
    assert (await put(server, ticket["url"], big + b"!")).status_code in (400, 413)
    assert (await put(server, ticket["url"], big)).json() == {"ok": True, "size": len(big)}
    assert (await put(server, ticket["url"], big)).status_code == 409  # once

    # The contact cannot send the agent's upload: to it, it does not exist.
    stolen = await gql(
        server, SEND, {"i": {"conversationId": conversation_id, "uploadIds": [ticket["uploadId"]]}}, token
    )
    assert stolen["sendMessage"]["userErrors"] == [
        {"field": ["uploadIds", "0"], "code": "NOT_FOUND", "message": "No upload with this id."}
    ]

    sent = await gql(
        server,
        SEND,
        {"i": {"conversationId": conversation_id, "body": "The recording", "uploadIds": [ticket["uploadId"]]}},
        tenant.owner_token,
    )
    [attachment] = sent["sendMessage"]["message"]["attachments"]
    assert (attachment["id"], attachment["filename"], attachment["size"]) == (
        ticket["uploadId"],
        "recording.mp4",
        len(big),
    )
    assert (await fetch(server, attachment["url"])).content == big

    # Taken once: a second message cannot carry it again.
    again = await gql(
        server, SEND, {"i": {"conversationId": conversation_id, "uploadIds": [ticket["uploadId"]]}}, tenant.owner_token
    )
    assert again["sendMessage"]["userErrors"][0]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("change", ["signature", "id", "workspace", "expires", "purpose"])
async def test_a_changed_download_link_is_refused(server: LiveServer, tenant: Tenant, change: str) -> None:
    token, _ = await widget_session(tenant, f"visitor-link-{change}")
    conversation_id = await contact_conversation(tenant, token)
    [attachment] = (await send_files(server, token, conversation_id, [("a.png", PNG, "image/png")]))["message"][
        "attachments"
    ]
    url: str = attachment["url"]
    row = await Attachment.get(id=pk(attachment["id"]))
    path, _, query = url.partition("?")
    expires = query.split("expires=")[1].split("&")[0]
    changed = {
        "signature": url[:-4] + ("0000" if not url.endswith("0000") else "1111"),
        "id": url.replace(f"/{row.id}?", f"/{row.id + 1}?"),
        "workspace": url.replace(f"/{row.workspace_id}/", f"/{row.workspace_id + 1}/"),
        "expires": url.replace(f"expires={expires}", f"expires={int(expires) + 3600}"),
        "purpose": url.replace("/attachments/", "/uploads/"),
    }[change]
    response = await (put(server, changed, b"x") if change == "purpose" else fetch(server, changed))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"
    assert (await fetch(server, url)).status_code == 200


async def test_an_expired_download_link_is_refused(server: LiveServer, tenant: Tenant) -> None:
    token, _ = await widget_session(tenant, "visitor-expired")
    conversation_id = await contact_conversation(tenant, token)
    [attachment] = (await send_files(server, token, conversation_id, [("a.png", PNG, "image/png")]))["message"][
        "attachments"
    ]
    row = await Attachment.get(id=pk(attachment["id"]))
    ttl = settings.attachment_link_ttl_seconds
    expired = signed_link("attachment", row.workspace_id, row.id, ttl, now=time.time() - ttl - 1)
    assert (await fetch(server, expired)).status_code == 403
    fresh = signed_link("attachment", row.workspace_id, row.id, ttl, now=time.time() - ttl + 30)
    assert (await fetch(server, fresh)).status_code == 200


async def test_refused_uploads_leave_no_file_behind(server: LiveServer, tenant: Tenant) -> None:
    token, _ = await widget_session(tenant, "visitor-5")
    conversation_id = await contact_conversation(tenant, token)
    before = stored_files(tenant.workspace.id)
    response = await multipart(
        server,
        SEND,
        {"i": {"conversationId": conversation_id, "body": "hi", "attachments": [None, None]}},
        {
            "variables.i.attachments.0": ("fine.png", PNG, "image/png"),
            "variables.i.attachments.1": ("page.html", b"<script>alert(1)</script>", "text/html"),
        },
        token,
    )
    assert response.json()["data"]["sendMessage"]["userErrors"] == [
        {
            "field": ["attachments", "1"],
            "code": "NOT_ALLOWED",
            "message": "page.html: files ending in .html are refused.",
        }
    ]
    assert stored_files(tenant.workspace.id) == before


async def test_live_subscribers_get_the_files_with_the_message(server: LiveServer, tenant: Tenant) -> None:
    """`messageAdded` (agents) and `myMessages` (the contact) carry the files, with links
    each subscriber can download, read from the event alone."""
    token, _ = await widget_session(tenant, "live")
    conversation_id = await contact_conversation(tenant, token)
    fields = "message { body attachments { id filename size url } }"
    async with (
        GraphQLWs.open(server.ws_url, tenant.owner_token) as agent,
        GraphQLWs.open(server.ws_url, token) as contact,
    ):
        inbox = await agent.subscribe(
            f"subscription($id: ID!) {{ messageAdded(conversationId: $id) {{ {fields} }} }}", {"id": conversation_id}
        )
        widget = await contact.subscribe(f"subscription {{ myMessages {{ {fields} }} }}")
        await hub_subscriptions(server, 2)
        [sent] = (
            await send_files(server, tenant.owner_token, conversation_id, [("plan.pdf", PDF, "application/pdf")])
        )["message"]["attachments"]
        for subscription, root in ((inbox, "messageAdded"), (widget, "myMessages")):
            [live] = (await subscription.next_data())[root]["message"]["attachments"]
            assert (live["id"], live["filename"], live["size"]) == (sent["id"], "plan.pdf", len(PDF))
            assert (await fetch(server, live["url"])).content == PDF


async def test_direct_uploads_no_message_took_are_removed_after_a_day(server: LiveServer, tenant: Tenant) -> None:
    """A stranger with the widget key could otherwise fill the disk with uploads never sent."""
    token, _ = await widget_session(tenant, "visitor-hoarder")
    conversation_id = await contact_conversation(tenant, token)
    before = stored_files(tenant.workspace.id)

    async def upload(name: str, *, put_bytes: bool = True) -> str:
        variables = {"i": {"filename": name, "contentType": "image/png", "size": len(PNG)}}
        ticket = (await gql(server, UPLOAD_URL, variables, token))["createUploadUrl"]
        if put_bytes:
            assert (await put(server, ticket["url"], PNG)).status_code == 200
        return ticket["uploadId"]  # type: ignore[no-any-return]

    left, sent, fresh = [await upload(name) for name in ("left.png", "sent.png", "fresh.png")]
    never_put = await upload("never.png", put_bytes=False)
    message = await gql(server, SEND, {"i": {"conversationId": conversation_id, "uploadIds": [sent]}}, token)
    [attachment] = message["sendMessage"]["message"]["attachments"]
    assert len(stored_files(tenant.workspace.id)) == len(before) + 3

    day_ago = datetime.now(UTC) - timedelta(days=1, minutes=1)
    await Attachment.filter(id__in=[pk(left), pk(sent), pk(never_put)]).update(created_at=day_ago)
    assert await prune_uploads({}) >= 2

    # The old upload nobody sent is gone, its file with it; the sent one and the fresh one stay.
    assert not await Attachment.filter(id__in=[pk(left), pk(never_put)]).exists()
    assert len(stored_files(tenant.workspace.id)) == len(before) + 2
    late = await gql(server, SEND, {"i": {"conversationId": conversation_id, "uploadIds": [left]}}, token)
    assert late["sendMessage"]["userErrors"][0]["code"] == "NOT_FOUND"
    assert (await fetch(server, attachment["url"])).content == PNG
    ok = await gql(server, SEND, {"i": {"conversationId": conversation_id, "uploadIds": [fresh]}}, token)
    assert ok["sendMessage"]["userErrors"] == []
