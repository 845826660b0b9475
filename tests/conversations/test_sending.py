"""Messages going out and agents being told, against real servers on loopback: SMTP
(aiosmtpd), an HTTP gateway, a live uvicorn holding a contact's subscription, and a real
arq worker. Jobs are also called directly with the context a worker would give them,
where that says more (which try this is, what a retry asks for)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq import Retry

from core import presence
from core.config import settings
from core.signing import SIGNATURE_HEADER, signature_problem
from jobs.sending import (
    DELIVERY_TRIES,
    RETRY_DELAYS,
    check_missed_chat,
    deliver_message,
    missed_chat_job_id,
    notify_new_message,
)
from models.channels import ChannelKind
from models.contacts import SmsConsent
from models.conversations import Conversation, ConversationStatus, DeliveryState, Direction, Message, SenderKind
from tests.conftest import Api, SmtpSettings, Tenant, start_server, start_worker, stop_process
from tests.conversations.test_inbound import (
    PHONE,
    empty_queue,  # noqa: F401 - the autouse fixture, here too
    inbound,
    job_ctx,
    make_channel,
    make_contact,
    pk,
)
from tests.loopback import HttpSink, ReceivedMail
from tests.realtime.wsclient import GraphQLWs

ERRORS = "userErrors { field code message }"
SEND = f"mutation($i: SendMessageInput!) {{ sendMessage(input: $i) {{ message {{ id deliveryState }} {ERRORS} }} }}"
START = (
    f"mutation($i: StartConversationInput!) {{ startConversation(input: $i) {{ "
    f"conversation {{ id }} message {{ id }} {ERRORS} }} }}"
)
SESSION = (
    f"mutation($i: StartContactSessionInput!) {{ startContactSession(input: $i) {{ "
    f"token contact {{ id }} {ERRORS} }} }}"
)
ASSIGN = (
    f"mutation($i: AssignConversationInput!) {{ assignConversation(input: $i) {{ conversation {{ id }} {ERRORS} }} }}"
)
MY_MESSAGES = "subscription { myMessages { cursor message { id body senderKind } } }"


async def ok(api: Api, doc: str, variables: dict[str, Any], token: str, field: str) -> dict[str, Any]:
    payload = (await api(doc, variables, token=token))[field]
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload  # type: ignore[no-any-return]


async def reply(tenant: Tenant, conversation_id: str, body: str, token: str | None = None) -> int:
    data = await ok(
        tenant.api,
        SEND,
        {"i": {"conversationId": conversation_id, "body": body}},
        token or tenant.owner_token,
        "sendMessage",
    )
    return pk(data["message"]["id"])


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def state_of(message_id: int) -> DeliveryState:
    return (await Message.get(id=message_id)).delivery_state


def mails_to(mails: list[ReceivedMail], address: str) -> list[ReceivedMail]:
    return [m for m in mails if address in m.envelope_to]


# -- e-mail ----------------------------------------------------------------------------------


async def test_an_agent_reply_to_an_email_goes_out_threaded(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, smtp_settings: SmtpSettings
) -> None:
    channel = await make_channel(tenant, ChannelKind.EMAIL, default_sender="support@acme.test")
    first = await inbound(
        client,
        channel,
        {
            "from": "ada@example.com",
            "fromName": "Ada",
            "subject": "Invoice",
            "text": "Can I get an invoice?",
            "messageId": "<q1@mail.example.com>",
        },
    )
    await inbound(
        client,
        channel,
        {
            "from": "ada@example.com",
            "subject": "Re: Invoice",
            "text": "For order 12.",
            "messageId": "<q2@mail.example.com>",
            "inReplyTo": "<q1@mail.example.com>",
        },
    )
    message_id = await reply(tenant, first["conversationId"], "Here it is, Ada.")
    assert await state_of(message_id) is DeliveryState.PENDING

    assert await deliver_message(job_ctx(app), message_id) == "sent"
    [mail] = await smtp_settings.sink.wait_for(1)
    msg = mail.message
    assert mail.envelope_to == ["ada@example.com"] and mail.envelope_from == "support@acme.test"
    assert msg["From"] == "Acme <support@acme.test>"
    assert msg["Subject"] == "Re: Invoice"
    assert msg["In-Reply-To"] == "<q2@mail.example.com>"
    assert msg["References"] == "<q1@mail.example.com> <q2@mail.example.com>"
    assert mail.text.startswith("Here it is, Ada.\n") and "Olive Owner, Acme" in mail.text
    sent = await Message.get(id=message_id)
    assert (sent.delivery_state, sent.external_message_id) == (DeliveryState.SENT, msg["Message-ID"])

    # Run again (arq is at-least-once): nothing goes out twice.
    assert await deliver_message(job_ctx(app), message_id) == "already sent"
    assert len(smtp_settings.sink.messages) == 1
    # Ada answers our e-mail: her mail client names ours, so it lands in the same conversation.
    answer = await inbound(
        client,
        channel,
        {
            "from": "ada@example.com",
            "text": "Thanks!",
            "messageId": "<q3@mail.example.com>",
            "inReplyTo": msg["Message-ID"],
        },
    )
    assert answer["conversationId"] == first["conversationId"]


async def test_an_email_conversation_an_agent_starts_is_not_a_reply(
    tenant: Tenant, app: Any, smtp_settings: SmtpSettings
) -> None:
    channel = await make_channel(tenant, ChannelKind.EMAIL)
    contact = await tenant.contact(name="Bob", email="bob@example.com")
    from strawberry import relay

    started = await ok(
        tenant.api,
        START,
        {
            "i": {
                "body": "Your order has shipped.",
                "contactId": contact["id"],
                "channelId": str(relay.GlobalID("Channel", str(channel.id))),
                "subject": "Order 12",
            }
        },
        tenant.owner_token,
        "startConversation",
    )
    assert await deliver_message(job_ctx(app), pk(started["message"]["id"])) == "sent"
    [mail] = await smtp_settings.sink.wait_for(1)
    assert mail.message["Subject"] == "Order 12" and mail.message["In-Reply-To"] is None
    assert mail.message["From"] == settings.mail_from  # the channel has no sender of its own


async def test_smtp_failures_retry_then_fail(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, smtp_settings: SmtpSettings
) -> None:
    channel = await make_channel(tenant, ChannelKind.EMAIL)
    first = await inbound(
        client, channel, {"from": "ada@example.com", "text": "hi", "messageId": "<f1@mail.example.com>"}
    )
    message_id = await reply(tenant, first["conversationId"], "Hello!")
    smtp_settings.sink.fail_next(DELIVERY_TRIES)
    for job_try in range(1, DELIVERY_TRIES):
        with pytest.raises(Retry) as retry:
            await deliver_message(job_ctx(app, job_try), message_id)
        assert retry.value.defer_score == RETRY_DELAYS[job_try - 1] * 1000
        assert await state_of(message_id) is DeliveryState.PENDING
    assert await deliver_message(job_ctx(app, DELIVERY_TRIES), message_id) == "failed"
    failed = await Message.get(id=message_id)
    assert failed.delivery_state is DeliveryState.FAILED and "451" in (failed.delivery_error or "")


async def test_without_smtp_an_email_reply_fails_with_the_reason(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "smtp_host", None)
    channel = await make_channel(tenant, ChannelKind.EMAIL)
    first = await inbound(
        client, channel, {"from": "ada@example.com", "text": "hi", "messageId": "<n1@mail.example.com>"}
    )
    message_id = await reply(tenant, first["conversationId"], "Hello!")
    assert await deliver_message(job_ctx(app), message_id) == "failed"
    failed = await Message.get(id=message_id)
    assert failed.delivery_state is DeliveryState.FAILED and "SMTP_HOST" in (failed.delivery_error or "")


# -- SMS and messenger gateways --------------------------------------------------------------


async def subscribed_sms_conversation(client: httpx.AsyncClient, tenant: Tenant, sink: HttpSink) -> tuple[Any, str]:
    channel = await make_channel(
        tenant, ChannelKind.SMS, gateway_url=f"{sink.url}/sms/send", default_sender="+14155550199"
    )
    await make_contact(tenant, phone=PHONE, sms_consent=SmsConsent.SUBSCRIBED)
    first = await inbound(client, channel, {"from": PHONE, "text": "Is it in stock?"})
    return channel, first["conversationId"]


async def test_an_sms_reply_goes_through_the_gateway_retrying_its_failures(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, http_sink: HttpSink
) -> None:
    channel, conversation_id = await subscribed_sms_conversation(client, tenant, http_sink)
    message_id = await reply(tenant, conversation_id, "Yes, 3 left.")
    http_sink.respond_with([500, 503], headers={"Retry-After": "30"})

    with pytest.raises(Retry) as first_retry:
        await deliver_message(job_ctx(app, 1), message_id)
    assert first_retry.value.defer_score == 30_000  # the gateway's Retry-After, over our 2 s
    with pytest.raises(Retry):
        await deliver_message(job_ctx(app, 2), message_id)
    assert await state_of(message_id) is DeliveryState.PENDING
    assert await deliver_message(job_ctx(app, 3), message_id) == "sent"
    assert await state_of(message_id) is DeliveryState.SENT

    requests = await http_sink.wait_for(3)
    assert len(requests) == 3 and {r.body for r in requests} == {requests[0].body}
    request = requests[0]
    assert (request.method, request.path, request.headers["content-type"]) == ("POST", "/sms/send", "application/json")
    assert request.json() == {"to": PHONE, "from": "+14155550199", "text": "Yes, 3 left.", "messageId": str(message_id)}
    assert signature_problem(channel.secret, request.body, request.headers[SIGNATURE_HEADER.lower()]) is None


async def test_gateway_refusals_and_exhausted_retries_fail_the_message(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, http_sink: HttpSink
) -> None:
    _, conversation_id = await subscribed_sms_conversation(client, tenant, http_sink)
    refused = await reply(tenant, conversation_id, "One")
    http_sink.respond_with([400], body='{"error": "bad number"}')
    assert await deliver_message(job_ctx(app), refused) == "failed"
    failed = await Message.get(id=refused)
    assert failed.delivery_state is DeliveryState.FAILED and "400" in (failed.delivery_error or "")

    exhausted = await reply(tenant, conversation_id, "Two")
    http_sink.respond_with(default_status=502)
    assert await deliver_message(job_ctx(app, DELIVERY_TRIES), exhausted) == "failed"
    assert "gave up after 5 tries" in ((await Message.get(id=exhausted)).delivery_error or "")


async def test_an_unreachable_gateway_is_retried(client: httpx.AsyncClient, tenant: Tenant, app: Any) -> None:
    with HttpSink() as sink:  # started and stopped: its port now refuses connections
        pass
    _, conversation_id = await subscribed_sms_conversation(client, tenant, sink)
    message_id = await reply(tenant, conversation_id, "Hello?")
    with pytest.raises(Retry):
        await deliver_message(job_ctx(app), message_id)
    assert await state_of(message_id) is DeliveryState.PENDING


async def test_keyword_confirmations_reach_unsubscribed_contacts_but_agent_replies_do_not(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, http_sink: HttpSink
) -> None:
    channel, conversation_id = await subscribed_sms_conversation(client, tenant, http_sink)
    pending = await reply(tenant, conversation_id, "A reply written before the STOP arrived")
    await inbound(client, channel, {"from": PHONE, "text": "STOP"})
    confirmation = await Message.filter(
        conversation_id=pk(conversation_id), body__startswith="You have been unsubscribed"
    ).first()
    assert confirmation is not None

    assert await deliver_message(job_ctx(app), pending) == "failed"
    assert "not subscribed" in ((await Message.get(id=pending)).delivery_error or "")
    assert await deliver_message(job_ctx(app), confirmation.id) == "sent"
    [request] = await http_sink.wait_for(1)
    assert request.json()["text"].startswith("You have been unsubscribed")
    # And from now on sendMessage refuses, as the lead's resolver does.
    payload = (
        await tenant.api(SEND, {"i": {"conversationId": conversation_id, "body": "hi"}}, token=tenant.owner_token)
    )["sendMessage"]
    assert payload["userErrors"][0]["code"] == "CONSENT_REQUIRED"


async def test_messenger_replies_go_to_the_page_scoped_id(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, http_sink: HttpSink
) -> None:
    channel = await make_channel(
        tenant, ChannelKind.MESSENGER, gateway_url=f"{http_sink.url}/messenger", default_sender="page-42"
    )
    first = await inbound(client, channel, {"from": "6504223512345678", "name": "Grace", "text": "Hello"})
    message_id = await reply(tenant, first["conversationId"], "Hi Grace!")
    assert await deliver_message(job_ctx(app), message_id) == "sent"
    [request] = await http_sink.wait_for(1)
    assert request.json() == {
        "to": "6504223512345678",
        "from": "page-42",
        "text": "Hi Grace!",
        "messageId": str(message_id),
    }


# -- the widget: an e-mail copy for a contact who has left -----------------------------------


async def test_a_widget_reply_is_emailed_only_to_a_contact_who_has_left(
    tenant: Tenant, app: Any, tmp_path: Path, smtp_settings: SmtpSettings
) -> None:
    session = await ok(
        tenant.api,
        SESSION,
        {"i": {"channelKey": tenant.channel.public_key, "externalId": "ada-1", "email": "ada@example.com"}},
        "",
        "startContactSession",
    )
    token, contact_id = session["token"], pk(session["contact"]["id"])
    started = await ok(tenant.api, START, {"i": {"body": "Hi, my login fails"}}, token, "startConversation")
    conversation_id = started["conversation"]["id"]
    redis = app.state.hub.redis

    async def online() -> bool:
        return contact_id in await presence.online_ids(redis, tenant.workspace.id, "contact")

    server = start_server(tmp_path)
    try:
        async with GraphQLWs.open(server.ws_url, token) as ws:
            sub = await ws.subscribe(MY_MESSAGES)
            await until(online, what="the contact's presence")
            seen = await reply(tenant, conversation_id, "Try resetting your password")
            assert (await sub.next_data())["myMessages"]["message"]["body"] == "Try resetting your password"
            assert await deliver_message(job_ctx(app), seen) == "contact online"
            assert await state_of(seen) is DeliveryState.RECEIVED

        async def offline() -> bool:
            return not await online()

        await until(offline, what="the contact to leave")
        missed = await reply(tenant, conversation_id, "Did that work, Ada?")
        assert await deliver_message(job_ctx(app), missed) == "sent"
        [mail] = await smtp_settings.sink.wait_for(1)
        assert mail.envelope_to == ["ada@example.com"] and mail.message["Subject"] == "New reply from Acme"
        assert "Did that work, Ada?" in mail.text and "Try resetting" not in mail.text
        assert (await Message.get(id=missed)).external_message_id == mail.message["Message-ID"]
        assert await state_of(missed) is DeliveryState.SENT
        assert await deliver_message(job_ctx(app), missed) == "nothing to send"
        assert len(smtp_settings.sink.messages) == 1
    finally:
        server.stop()


async def test_a_widget_contact_without_an_address_gets_no_copy(
    tenant: Tenant, app: Any, smtp_settings: SmtpSettings
) -> None:
    session = await ok(tenant.api, SESSION, {"i": {"channelKey": tenant.channel.public_key}}, "", "startContactSession")
    started = await ok(tenant.api, START, {"i": {"body": "Hello"}}, session["token"], "startConversation")
    message_id = await reply(tenant, started["conversation"]["id"], "Hi there")
    assert await deliver_message(job_ctx(app), message_id) == "no address"
    assert await state_of(message_id) is DeliveryState.RECEIVED


# -- notifications ---------------------------------------------------------------------------


async def test_offline_messages_are_emailed_to_whoever_should_answer(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, smtp_settings: SmtpSettings
) -> None:
    admin, _ = await tenant.agent(role="admin")
    plain, _ = await tenant.agent(role="agent")
    channel = await make_channel(tenant, ChannelKind.SMS)
    first = await inbound(client, channel, {"from": PHONE, "text": "Anyone there?"})
    ctx = job_ctx(app)
    assert await notify_new_message(ctx, pk(first["messageId"])) == ["offline"]
    [mail] = await smtp_settings.sink.wait_for(1)
    assert sorted(mail.envelope_to) == sorted([admin.email, tenant.owner.email])  # not the plain agent
    assert mail.message["Subject"] == f"Offline message from {PHONE}"
    assert "Anyone there?" in mail.text and mail.message["Auto-Submitted"] == "auto-generated"

    # The rest of the burst: the agents know already. A retried job sends nothing again.
    second = await inbound(client, channel, {"from": PHONE, "text": "Hello??"})
    assert await notify_new_message(ctx, pk(second["messageId"])) == []
    assert await notify_new_message(ctx, pk(first["messageId"])) == []

    # Assigned and answered, the next question goes to the assignee alone.
    await ok(
        tenant.api,
        ASSIGN,
        {"i": {"id": first["conversationId"], "assigneeId": str(_gid("Agent", plain.id))}},
        tenant.owner_token,
        "assignConversation",
    )
    await Message.create(
        workspace_id=tenant.workspace.id,
        conversation_id=pk(first["conversationId"]),
        sender_kind=SenderKind.AGENT,
        agent_id=plain.id,
        direction=Direction.OUTBOUND,
        body="Here!",
    )
    third = await inbound(client, channel, {"from": PHONE, "text": "One more thing"})
    assert await notify_new_message(ctx, pk(third["messageId"])) == ["offline"]
    mails = await smtp_settings.sink.wait_for(2)
    assert mails[1].envelope_to == [plain.email]


async def test_notify_emails_hear_of_every_message_and_offline_can_be_off(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, smtp_settings: SmtpSettings
) -> None:
    channel = await make_channel(
        tenant, ChannelKind.SMS, notify_emails=["inbox@acme.test", "boss@acme.test"], offline_notifications=False
    )
    for text in ("one", "two"):
        answer = await inbound(client, channel, {"from": PHONE, "text": text})
        assert await notify_new_message(job_ctx(app), pk(answer["messageId"])) == ["new"]
    mails = await smtp_settings.sink.wait_for(2)
    assert [m.envelope_to for m in mails] == [["inbox@acme.test", "boss@acme.test"]] * 2
    assert [m.message["Subject"] for m in mails] == [f"New message from {PHONE}"] * 2
    assert "two" in mails[1].text
    assert "check_missed_chat" not in [j.function for j in await app.state.jobs.queued_jobs()]


async def test_a_missed_chat_is_emailed_when_online_agents_do_not_answer(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, smtp_settings: SmtpSettings
) -> None:
    channel = await make_channel(tenant, ChannelKind.SMS, missed_chat_minutes=3)
    await make_contact(tenant, phone=PHONE, sms_consent=SmsConsent.SUBSCRIBED)  # so that agents may answer
    ctx = job_ctx(app)
    async with presence.present(app.state.hub.redis, tenant.workspace.id, "agent", tenant.owner.id):
        first = await inbound(client, channel, {"from": PHONE, "text": "Quick question"})
        message_id, conversation_id = pk(first["messageId"]), pk(first["conversationId"])
        started = time.time()
        assert await notify_new_message(ctx, message_id) == []  # agents are online: no offline e-mail
        assert await notify_new_message(ctx, message_id) == []  # a retried job: still one check queued
    [job] = [j for j in await app.state.jobs.queued_jobs() if j.function == "check_missed_chat"]
    assert job.args == (conversation_id, message_id)
    assert job.job_id == missed_chat_job_id(message_id)
    assert abs(job.score / 1000 - (started + 180)) < 5  # deferred by missed_chat_minutes

    # Three minutes later (the job, run now): nobody answered.
    assert await check_missed_chat(ctx, conversation_id, message_id) == ["missed"]
    [mail] = await smtp_settings.sink.wait_for(1)
    assert mail.message["Subject"] == f"Missed chat with {PHONE}" and mail.envelope_to == [tenant.owner.email]
    assert await check_missed_chat(ctx, conversation_id, message_id) == []  # once per message

    # Answered in time: no e-mail.
    second = await inbound(client, channel, {"from": PHONE, "text": "Another one"})
    await reply(tenant, first["conversationId"], "Answered!")
    assert await check_missed_chat(ctx, conversation_id, pk(second["messageId"])) == []
    # Resolved without a word (spam, say): no e-mail either.
    third = await inbound(client, channel, {"from": PHONE, "text": "Buy cheap watches"})
    await Conversation.filter(id=conversation_id).update(status=ConversationStatus.RESOLVED)
    assert await check_missed_chat(ctx, conversation_id, pk(third["messageId"])) == []
    assert len(smtp_settings.sink.messages) == 1


def _gid(type_name: str, pk_value: int) -> str:
    from strawberry import relay

    return str(relay.GlobalID(type_name, str(pk_value)))


# -- through a real worker -------------------------------------------------------------------


async def test_a_real_worker_delivers_replies_and_notifies(
    client: httpx.AsyncClient, tenant: Tenant, tmp_path: Path, smtp_settings: SmtpSettings, http_sink: HttpSink
) -> None:
    """Webhooks in, a real arq worker out: an SMS STOP confirmation through a gateway that
    fails once (the worker's retry sends it), an agent's e-mail reply to the SMTP server,
    and the offline-message e-mail for an inbound message nobody has answered."""
    sms_channel = await make_channel(tenant, ChannelKind.SMS, gateway_url=f"{http_sink.url}/sms")
    email_channel = await make_channel(tenant, ChannelKind.EMAIL, default_sender="help@acme.test")
    http_sink.respond_with([500])
    stop = await inbound(client, sms_channel, {"from": PHONE, "text": "STOP", "messageId": "SM-w1"})
    question = await inbound(
        client,
        email_channel,
        {
            "from": "ada@example.com",
            "subject": "Refund",
            "text": "I want a refund",
            "messageId": "<w1@mail.example.com>",
        },
    )
    answer_id = await reply(tenant, question["conversationId"], "Refund on its way.")
    confirmation = await Message.get(conversation_id=pk(stop["conversationId"]), sender_kind="system")

    worker = start_worker(tmp_path, env=smtp_settings.env)
    try:

        def delivered(message_id: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return await state_of(message_id) is DeliveryState.SENT

            return check

        await until(delivered(answer_id), what="the e-mail reply to be sent")
        await until(delivered(confirmation.id), what="the STOP confirmation to be sent (after one retry)")
        requests = await http_sink.wait_for(2)
        assert [r.json()["text"] for r in requests] == [confirmation.body] * 2
        assert all(r.json()["to"] == PHONE for r in requests)

        async def all_mail() -> bool:
            mails = smtp_settings.sink.messages
            return bool(mails_to(mails, "ada@example.com")) and bool(mails_to(mails, tenant.owner.email))

        await until(all_mail, what="the reply and the offline notification")
        [sent] = mails_to(smtp_settings.sink.messages, "ada@example.com")
        assert sent.message["In-Reply-To"] == "<w1@mail.example.com>" and sent.message["Subject"] == "Re: Refund"
        # Ada's e-mail was answered before the worker got to it: only the STOP tells anyone.
        [offline] = mails_to(smtp_settings.sink.messages, tenant.owner.email)
        assert offline.message["Subject"] == f"Offline message from {PHONE}"
        assert json.loads(requests[1].body)["messageId"] == str(confirmation.id)
    finally:
        stop_process(worker)
    log = (tmp_path / "worker.log").read_text()
    assert "deliver_message" in log and "retrying job in 2.00s" in log
