"""The inbound webhook: signed deliveries from e-mail, SMS and messenger providers, through
the app (real database and Redis), and what they do: contacts, conversations, threading,
SMS keywords and consent, the auto-responder, idempotent retries, card masking."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from core import keys
from core.signing import SIGNATURE_HEADER, signature
from domain import sms
from models.channels import AutoResponderAudience, Channel, ChannelKind
from models.contacts import ChangeKind, Contact, ContactChange, SmsConsent
from models.conversations import Conversation, ConversationStatus, DeliveryState, Direction, Message, SenderKind
from resolvers import inbound as inbound_module
from resolvers.channels import create_channel
from resolvers.inbound import MAX_WEBHOOK_BYTES
from tests.conftest import SmtpSettings, Tenant, pk

PHONE = "+14155550100"
CARD = "4111 1111 1111 1111"


# -- helpers (test_sending.py uses them too) ------------------------------------------------


@pytest.fixture(autouse=True)
async def empty_queue(app: Any) -> AsyncIterator[None]:
    """Jobs queued by earlier tests (nobody ran them) must not reach a worker started here."""
    await app.state.jobs.delete(keys.arq_queue())
    yield


async def make_channel(tenant: Tenant, kind: ChannelKind, **settings: Any) -> Channel:
    channel = await create_channel(tenant.workspace.id, kind, f"{kind.value} channel")
    if settings:
        await Channel.filter(id=channel.id).update(**settings)
        await channel.refresh_from_db()
    return channel


async def make_contact(tenant: Tenant, **fields: Any) -> Contact:
    return await Contact.create(workspace_id=tenant.workspace.id, last_seen_at=datetime.now(UTC), **fields)


def job_ctx(app: Any, job_try: int = 1) -> dict[str, Any]:
    """What the arq worker hands a job: its Redis pool (on our queue) and a hub."""
    return {"redis": app.state.jobs, "hub": app.state.hub, "job_try": job_try}


def signed(channel: Channel, body: bytes, *, at: float | None = None, secret: str | None = None) -> dict[str, str]:
    stamp = int(time.time() if at is None else at)
    return {"content-type": "application/json", SIGNATURE_HEADER: signature(secret or channel.secret, body, stamp)}


async def post(client: httpx.AsyncClient, channel: Channel, payload: Any, **sign: Any) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await client.post(
        f"/hooks/channels/{channel.public_key}/inbound", content=body, headers=signed(channel, body, **sign)
    )


async def inbound(client: httpx.AsyncClient, channel: Channel, payload: dict[str, Any]) -> dict[str, Any]:
    response = await post(client, channel, payload)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def messages_of(conversation_id: int) -> list[Message]:
    return await Message.filter(conversation_id=conversation_id).order_by("id")


# -- authentication and the payload ----------------------------------------------------------


async def test_a_signed_sms_is_stored_as_the_contacts_message(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS)
    answer = await inbound(
        client, channel, {"from": "+1 (415) 555-0100", "text": "Is my order shipped?", "messageId": "SM1"}
    )
    assert answer["ok"] is True and answer["duplicate"] is False

    message = await Message.get(id=pk(answer["messageId"]))
    assert (message.body, message.sender_kind, message.direction) == (
        "Is my order shipped?",
        SenderKind.CONTACT,
        Direction.INBOUND,
    )
    conversation = await Conversation.get(id=pk(answer["conversationId"]))
    assert (conversation.channel_id, conversation.status, conversation.unread_count) == (
        channel.id,
        ConversationStatus.OPEN,
        1,
    )
    contact = await Contact.get(id=conversation.contact_id)
    assert (contact.phone, contact.platform, contact.sms_consent) == (PHONE, "sms", SmsConsent.NEVER)
    assert await ContactChange.filter(contact_id=contact.id, kind=ChangeKind.CREATED).count() == 1


@pytest.mark.parametrize(
    "problem",
    ["missing", "wrong secret", "tampered body", "expired", "from the future", "not ascii", "garbage"],
)
async def test_unsigned_or_badly_signed_deliveries_are_refused(
    client: httpx.AsyncClient, tenant: Tenant, problem: str
) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS)
    body = json.dumps({"from": PHONE, "text": "hi"}).encode()
    headers = signed(channel, body)
    if problem == "missing":
        del headers[SIGNATURE_HEADER]
    elif problem == "wrong secret":
        headers = signed(channel, body, secret="not-the-secret")
    elif problem == "tampered body":
        body = json.dumps({"from": PHONE, "text": "hi!"}).encode()
    elif problem == "expired":
        headers = signed(channel, body, at=time.time() - 301)
    elif problem == "from the future":
        headers = signed(channel, body, at=time.time() + 301)
    elif problem == "not ascii":
        headers[SIGNATURE_HEADER] = f"t={int(time.time())},v1=\u00e9\u00e9".encode()  # type: ignore[assignment]
    else:
        headers[SIGNATURE_HEADER] = "sha256=abc"
    response = await client.post(f"/hooks/channels/{channel.public_key}/inbound", content=body, headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "UNAUTHENTICATED" and SIGNATURE_HEADER in error["message"]
    assert await Message.filter(workspace_id=tenant.workspace.id).count() == 0


async def test_a_signature_four_minutes_old_still_counts(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS)
    assert (await post(client, channel, {"from": PHONE, "text": "hi"}, at=time.time() - 240)).status_code == 200


async def test_unknown_keys_and_session_channels_have_no_webhook(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = json.dumps({"from": PHONE, "text": "hi"}).encode()
    unknown = await client.post(
        "/hooks/channels/ch_nope/inbound", content=body, headers={SIGNATURE_HEADER: "t=1,v1=00"}
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NOT_FOUND"
    widget = tenant.channel  # the workspace's web widget: sessions, not webhooks
    response = await client.post(
        f"/hooks/channels/{widget.public_key}/inbound", content=body, headers=signed(widget, body)
    )
    assert response.status_code == 404
    sdk = await make_channel(tenant, ChannelKind.MOBILE_SDK)
    assert (await post(client, sdk, {"from": PHONE, "text": "hi"})).status_code == 404
    sms_channel = await make_channel(tenant, ChannelKind.SMS)
    assert (await client.get(f"/hooks/channels/{sms_channel.public_key}/inbound")).status_code == 405


@pytest.mark.parametrize(
    ("raw", "status", "field", "words"),
    [
        (b'{"from": "+14155550100", "text": "hi"', 400, None, "not valid JSON"),
        (b"\xff\xfe", 400, None, "UTF-8"),
        (b'["+14155550100", "hi"]', 400, None, "JSON object"),
        (b'{"text": "hi"}', 422, "from", "from is required"),
        (b'{"from": "+1415", "text": "hi"}', 422, "from", "phone number"),
        (b'{"from": "+14155550100"}', 422, "text", "text is required"),
        (b'{"from": "+14155550100", "text": "   "}', 422, "text", "text is required"),
        (b'{"from": "+14155550100", "text": 42}', 422, "text", "must be a string"),
        (
            b'{"from": "+14155550100", "text": "hi", "messageId": "' + b"x" * 256 + b'"}',
            422,
            "messageId",
            "at most 255",
        ),
    ],
)
async def test_malformed_payloads_name_the_problem(
    client: httpx.AsyncClient, tenant: Tenant, raw: bytes, status: int, field: str | None, words: str
) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS)
    response = await client.post(
        f"/hooks/channels/{channel.public_key}/inbound", content=raw, headers=signed(channel, raw)
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error.get("field") == field and words in error["message"], error


async def test_email_and_messenger_payloads_are_checked_for_their_kind(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    email_channel = await make_channel(tenant, ChannelKind.EMAIL)
    no_id = await post(client, email_channel, {"from": "ada@example.com", "subject": "Hi", "text": "hello"})
    assert no_id.status_code == 422 and no_id.json()["error"]["field"] == "messageId"
    bad_address = await post(client, email_channel, {"from": "ada-at-example", "text": "hello", "messageId": "<m@x>"})
    assert bad_address.status_code == 422 and bad_address.json()["error"]["field"] == "from"
    messenger = await make_channel(tenant, ChannelKind.MESSENGER)
    bad_id = await post(client, messenger, {"from": "not an id!", "text": "hello"})
    assert bad_id.status_code == 422 and bad_id.json()["error"]["field"] == "from"


async def test_bodies_over_the_limit_are_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS)
    raw = json.dumps({"from": PHONE, "text": "x" * MAX_WEBHOOK_BYTES}).encode()
    response = await client.post(
        f"/hooks/channels/{channel.public_key}/inbound", content=raw, headers=signed(channel, raw)
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "TOO_LONG"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(5):
            yield b" " * (MAX_WEBHOOK_BYTES // 4)

    streamed = await client.post(
        f"/hooks/channels/{channel.public_key}/inbound", content=chunks(), headers={SIGNATURE_HEADER: "t=1,v1=00"}
    )
    assert streamed.status_code == 413


# -- idempotency -----------------------------------------------------------------------------


async def test_a_retried_delivery_is_stored_once(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS)
    payload = {"from": PHONE, "text": "Where is my parcel?", "messageId": "SM-retry"}
    first = await inbound(client, channel, payload)
    again = await inbound(client, channel, payload)
    assert again["duplicate"] is True
    assert (again["messageId"], again["conversationId"]) == (first["messageId"], first["conversationId"])
    # Delivered twice at once: the sender's lock makes the second wait and find the first.
    concurrent = {**payload, "messageId": "SM-concurrent", "text": "And now?"}
    answers = await asyncio.gather(inbound(client, channel, concurrent), inbound(client, channel, concurrent))
    assert sorted(a["duplicate"] for a in answers) == [False, True]
    bodies = [m.body for m in await messages_of(pk(first["conversationId"]))]
    assert bodies == ["Where is my parcel?", "And now?"]
    assert await Contact.filter(workspace_id=tenant.workspace.id, phone=PHONE).count() == 1


async def test_two_first_messages_at_once_make_one_contact(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS)
    await asyncio.gather(*(inbound(client, channel, {"from": PHONE, "text": f"hello {i}"}) for i in range(4)))
    assert await Contact.filter(workspace_id=tenant.workspace.id).count() == 1
    assert await Conversation.filter(workspace_id=tenant.workspace.id).count() == 1


async def test_a_sender_busy_for_too_long_gets_a_retry_later(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS)
    monkeypatch.setattr(inbound_module, "LOCK_WAIT", 0.2)
    async with inbound_module.sender_lock(app.state.hub.redis, inbound_module.sender_lock_key(channel.id, PHONE)):
        response = await post(client, channel, {"from": PHONE, "text": "hello", "messageId": "SM-busy"})
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "CONFLICT"
    assert (await post(client, channel, {"from": PHONE, "text": "hello", "messageId": "SM-busy"})).status_code == 200


# -- SMS keywords and the auto-responder -----------------------------------------------------


async def replies(conversation_id: int) -> list[Message]:
    return [m for m in await messages_of(conversation_id) if m.sender_kind is SenderKind.SYSTEM]


async def test_stop_and_start_change_consent_and_are_confirmed(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS, default_sender="+14155550199")
    contact = await make_contact(tenant, phone=PHONE, sms_consent=SmsConsent.SUBSCRIBED)
    stop = await inbound(client, channel, {"from": PHONE, "text": "Stop.", "messageId": "SM-stop"})
    await contact.refresh_from_db()
    assert contact.sms_consent is SmsConsent.UNSUBSCRIBED and contact.sms_consent_at is not None
    conversation_id = pk(stop["conversationId"])
    [confirmation] = await replies(conversation_id)
    assert (confirmation.body, confirmation.delivery_state, confirmation.direction) == (
        sms.DEFAULT_STOP_REPLY,
        DeliveryState.PENDING,
        Direction.OUTBOUND,
    )
    # The keyword is kept as the contact's message: agents see it.
    assert [m.body for m in await messages_of(conversation_id) if m.sender_kind is SenderKind.CONTACT] == ["Stop."]
    assert await ContactChange.filter(contact_id=contact.id, kind=ChangeKind.UPDATED).count() == 1

    # UNSUBSCRIBE again: still confirmed (carriers require it), consent unchanged.
    await inbound(client, channel, {"from": PHONE, "text": "UNSUBSCRIBE", "messageId": "SM-unsub"})
    assert [r.body for r in await replies(conversation_id)] == [sms.DEFAULT_STOP_REPLY] * 2
    assert await ContactChange.filter(contact_id=contact.id, kind=ChangeKind.UPDATED).count() == 1

    await inbound(client, channel, {"from": PHONE, "text": "join", "messageId": "SM-join"})
    await contact.refresh_from_db()
    assert contact.sms_consent is SmsConsent.SUBSCRIBED
    assert (await replies(conversation_id))[-1].body == sms.DEFAULT_START_REPLY
    assert await ContactChange.filter(contact_id=contact.id, kind=ChangeKind.UPDATED).count() == 2


async def test_help_gets_the_channels_help_reply_or_the_default(client: httpx.AsyncClient, tenant: Tenant) -> None:
    custom = await make_channel(
        tenant, ChannelKind.SMS, help_reply="Acme support: reply STOP to opt out, or call 555-0100."
    )
    answer = await inbound(client, custom, {"from": PHONE, "text": "HELP"})
    [reply] = await replies(pk(answer["conversationId"]))
    assert reply.body == "Acme support: reply STOP to opt out, or call 555-0100."
    plain = await make_channel(tenant, ChannelKind.SMS)
    answer = await inbound(client, plain, {"from": PHONE, "text": "help"})
    assert [r.body for r in await replies(pk(answer["conversationId"]))] == [sms.DEFAULT_HELP_REPLY]
    contact = await Contact.get(workspace_id=tenant.workspace.id, phone=PHONE)
    assert contact.sms_consent is SmsConsent.NEVER  # HELP changes nothing


@pytest.mark.parametrize(
    ("audience", "consent", "answered"),
    [
        (AutoResponderAudience.EVERYONE, SmsConsent.SUBSCRIBED, True),
        (AutoResponderAudience.EVERYONE, SmsConsent.NEVER, True),
        (AutoResponderAudience.WITHOUT_SMS_CONSENT, SmsConsent.SUBSCRIBED, False),
        (AutoResponderAudience.WITHOUT_SMS_CONSENT, SmsConsent.NEVER, True),
        (AutoResponderAudience.WITHOUT_SMS_CONSENT, SmsConsent.UNSUBSCRIBED, True),
    ],
)
async def test_the_auto_responder_answers_its_audience(
    client: httpx.AsyncClient, tenant: Tenant, audience: AutoResponderAudience, consent: SmsConsent, answered: bool
) -> None:
    text = "Thanks! We answer texts 9-5. Reply JOIN for offers."
    channel = await make_channel(
        tenant, ChannelKind.SMS, auto_responder_enabled=True, auto_responder_text=text, auto_responder_audience=audience
    )
    await make_contact(tenant, phone=PHONE, sms_consent=consent)
    answer = await inbound(client, channel, {"from": PHONE, "text": "Do you ship to Canada?"})
    assert [r.body for r in await replies(pk(answer["conversationId"]))] == ([text] if answered else [])


async def test_the_auto_responder_stays_quiet_for_keywords_repeats_and_when_off(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    text = "We got your message."
    channel = await make_channel(tenant, ChannelKind.SMS, auto_responder_enabled=True, auto_responder_text=text)
    first = await inbound(client, channel, {"from": PHONE, "text": "hello"})
    await inbound(client, channel, {"from": PHONE, "text": "anyone there?"})  # within the hour: once
    await inbound(client, channel, {"from": PHONE, "text": "HELP"})  # a keyword: its own reply only
    assert [r.body for r in await replies(pk(first["conversationId"]))] == [text, sms.DEFAULT_HELP_REPLY]
    off = await make_channel(tenant, ChannelKind.SMS, auto_responder_enabled=False, auto_responder_text=text)
    answer = await inbound(client, off, {"from": "+14155550101", "text": "hello"})
    assert await replies(pk(answer["conversationId"])) == []


# -- conversations ---------------------------------------------------------------------------


async def test_a_text_reopens_the_contacts_resolved_sms_conversation(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS)
    first = await inbound(client, channel, {"from": PHONE, "text": "My order is late"})
    resolved = await tenant.api(
        (
            "mutation($i: SetConversationStatusInput!) { setConversationStatus(input: $i) { "
            "conversation { status } userErrors { code } } }"
        ),
        {"i": {"id": first["conversationId"], "status": "RESOLVED"}},
        token=tenant.owner_token,
    )
    assert resolved["setConversationStatus"]["conversation"]["status"] == "RESOLVED"

    again = await inbound(client, channel, {"from": PHONE, "text": "Still nothing"})
    assert again["conversationId"] == first["conversationId"]
    conversation = await Conversation.get(id=pk(first["conversationId"]))
    assert conversation.status is ConversationStatus.OPEN and conversation.unread_count == 2
    # Another SMS channel of the workspace: the same contact, a conversation of its own.
    other = await make_channel(tenant, ChannelKind.SMS)
    elsewhere = await inbound(client, other, {"from": PHONE, "text": "hi"})
    assert elsewhere["conversationId"] != first["conversationId"]
    assert await Contact.filter(workspace_id=tenant.workspace.id).count() == 1


async def test_a_blocked_contacts_text_is_kept_but_reopens_nothing(
    client: httpx.AsyncClient, tenant: Tenant, app: Any
) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS, auto_responder_enabled=True, auto_responder_text="Hi!")
    first = await inbound(client, channel, {"from": PHONE, "text": "hello"})
    await Contact.filter(workspace_id=tenant.workspace.id).update(blocked=True)
    await Conversation.filter(id=pk(first["conversationId"])).update(status=ConversationStatus.RESOLVED)
    await inbound(client, channel, {"from": PHONE, "text": "let me in"})
    conversation = await Conversation.get(id=pk(first["conversationId"]))
    assert conversation.status is ConversationStatus.RESOLVED
    assert [m.body for m in await messages_of(conversation.id)] == ["hello", "Hi!", "let me in"]
    # Only the first message told anyone: no notification, no auto-response for this one.
    queued = [job.function for job in await app.state.jobs.queued_jobs()]
    assert queued.count("notify_new_message") == 1 and queued.count("deliver_message") == 1


async def test_email_replies_thread_by_in_reply_to(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await make_channel(tenant, ChannelKind.EMAIL)
    first = await inbound(
        client,
        channel,
        {
            "from": "Ada@Example.com",
            "fromName": "Ada Lovelace",
            "subject": "Invoice\r\nBcc: evil@example.com",
            "text": "Can I get an invoice?",
            "messageId": "<a1@mail.example.com>",
        },
    )
    conversation = await Conversation.get(id=pk(first["conversationId"]))
    assert conversation.subject == "Invoice Bcc: evil@example.com"  # one line: it goes into headers later
    contact = await Contact.get(id=conversation.contact_id)
    assert (contact.email, contact.name, contact.platform) == ("ada@example.com", "Ada Lovelace", "email")

    reply = await inbound(
        client,
        channel,
        {
            "from": "ada@example.com",
            "subject": "Re: Invoice",
            "text": "For order 12, please.",
            "messageId": "<a2@mail.example.com>",
            "inReplyTo": "<a1@mail.example.com>",
        },
    )
    assert reply["conversationId"] == first["conversationId"]
    fresh = await inbound(
        client,
        channel,
        {
            "from": "ada@example.com",
            "subject": "Another thing",
            "text": "New question",
            "messageId": "<a3@mail.example.com>",
            "inReplyTo": "<unknown@mail.example.com>",
        },
    )
    assert fresh["conversationId"] != first["conversationId"]
    assert (await Conversation.get(id=pk(fresh["conversationId"]))).subject == "Another thing"
    # Someone else quoting Ada's Message-ID does not get into her conversation.
    intruder = await inbound(
        client,
        channel,
        {
            "from": "mallory@example.com",
            "text": "Let me in",
            "messageId": "<m1@evil.example>",
            "inReplyTo": "<a1@mail.example.com>",
        },
    )
    assert intruder["conversationId"] not in (first["conversationId"], fresh["conversationId"])
    assert [m.body for m in await messages_of(conversation.id)] == ["Can I get an invoice?", "For order 12, please."]


async def test_messenger_users_are_contacts_by_their_page_scoped_id(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await make_channel(tenant, ChannelKind.MESSENGER)
    first = await inbound(client, channel, {"from": "6504223512345678", "name": "Grace Hopper", "text": "Hello!"})
    again = await inbound(client, channel, {"from": "6504223512345678", "name": "Grace H.", "text": "Anyone?"})
    assert again["conversationId"] == first["conversationId"]
    contact = await Contact.get(workspace_id=tenant.workspace.id)
    assert (contact.external_id, contact.name, contact.platform) == (
        "messenger:6504223512345678",
        "Grace Hopper",
        "messenger",
    )


# -- card numbers ----------------------------------------------------------------------------


async def test_card_numbers_are_masked_before_anything_keeps_them(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, smtp_settings: SmtpSettings
) -> None:
    from jobs.sending import notify_new_message

    channel = await make_channel(tenant, ChannelKind.SMS, notify_emails=["support@acme.test"])
    answer = await inbound(
        client, channel, {"from": PHONE, "text": f"Charge my card {CARD} please", "messageId": "SM-card"}
    )
    message = await Message.get(id=pk(answer["messageId"]))
    assert message.body == "Charge my card **** **** **** 1111 please"
    from tortoise import connections  # here: doctest collection trips on the module-level proxy

    rows = await connections.get("default").execute_query_dict(
        "SELECT body FROM messages WHERE workspace_id = " + str(tenant.workspace.id)
    )
    assert rows and not any("4111 1111 1111 1111" in r["body"] or "4111111111111111" in r["body"] for r in rows)

    assert "new" in await notify_new_message(job_ctx(app), message.id)
    mails = await smtp_settings.sink.wait_for(1)
    raw = [m.message.as_string() for m in mails]
    assert any("**** **** **** 1111" in r for r in raw)
    assert not any("4111 1111 1111 1111" in r or "4111111111111111" in r for r in raw)
