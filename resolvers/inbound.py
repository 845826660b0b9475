"""Inbound e-mail, SMS and messenger messages: the signed webhook each channel's provider
calls, and what an inbound message does (find or create the contact and conversation,
store the text masked, the SMS keywords STOP / START / HELP, the auto-responder).

    POST /hooks/channels/{public_key}/inbound
    X-Parley-Signature: t=1767225600,v1=<hex HMAC-SHA256(channel secret, "1767225600." + body)>

    {"from": "+14155550100", "text": "STOP", "messageId": "SM8f2c"}

The contract (shapes per channel kind, answers, signing examples) is docs/webhooks.md.
A retried webhook with the same `messageId` stores nothing twice, and one without a
`messageId` is stored once per signature (a replay inside the signature's window answers
like a retry); deliveries from one
sender on one channel are handled one at a time (a short Redis lock), so two concurrent
first messages from a new number make one contact, not two.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core import keys
from core.clock import now
from core.config import settings
from core.errors import Code, DatabaseBusy, RateLimited, UserFailure, request_id_var
from core.events import Outbox, atomic
from core.limits import BodyTooLarge
from core.queue import queue_job
from core.ratelimit import rate_limits
from core.scoping import encode_global_id
from core.signing import SIGNATURE_HEADER, SIGNATURE_TOLERANCE, signature, signature_problem, signed_at
from domain import contact_fields as cf
from domain import sms
from domain.identity import MESSENGER_PREFIX
from domain.masking import mask_card_numbers
from models.channels import WEBHOOK_KINDS, AutoResponderAudience, Channel, ChannelKind
from models.contacts import ChangeKind, Contact, IdentitySource, SmsConsent
from models.conversations import (
    Conversation,
    DeliveryState,
    Direction,
    Message,
    SenderKind,
)
from resolvers.attachments import Incoming, RemoteFile, Unreachable, fetch_files, kept_if_written
from resolvers.contacts import record_change, trusted_only
from resolvers.conversations import (
    MAX_BODY,
    MAX_SUBJECT,
    add_message,
    clean_body,
    open_conversation,
    receive_inbound,
)
from services.attachments import discard

log = logging.getLogger("parley.inbound")

MAX_WEBHOOK_BYTES = 256 * 1024
MAX_ID = 255  # Message.external_message_id
MAX_NAME = 200
MAX_URL = 2048
_MESSENGER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
# Where each kind's payload names its sender (SMS has no name).
_NAME_FIELD = {ChannelKind.EMAIL: "fromName", ChannelKind.MESSENGER: "name"}
# One sender's deliveries on one channel are handled in turn; a holder that dies frees
# the lock after LOCK_TTL, and a request that waits longer than LOCK_WAIT asks for a retry.
LOCK_TTL_MS = 30_000
LOCK_WAIT = 10.0
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
# The auto-responder answers a conversation at most once in this long: two auto-responders
# (ours and an e-mail vacation reply, say) cannot keep answering each other.
AUTO_REPLY_INTERVAL = timedelta(hours=1)


# -- the payload -----------------------------------------------------------------------------


class WebhookError(Exception):
    """An answer other than 200: status, code and message, naming the field if there is one."""

    def __init__(
        self, status: int, code: Code | str, message: str, field: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, str(code), message, field
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        headers = None
        if self.retry_after is not None:
            error["retryAfter"] = self.retry_after
            headers = {"Retry-After": str(self.retry_after)}
        return JSONResponse({"error": error}, status_code=self.status, headers=headers)


@dataclass(frozen=True)
class InboundMessage:
    """A provider's message, checked: `sender` is the normalised phone number, e-mail
    address or messenger user id; `text` is masked and at most MAX_BODY characters (empty
    when files came alone); `attachments` are the files the provider keeps for us."""

    sender: str
    text: str
    name: str | None = None
    subject: str | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    attachments: tuple[RemoteFile, ...] = ()


def parse_payload(kind: ChannelKind, raw: bytes) -> InboundMessage:
    """The payload of a webhook for a channel of `kind`; WebhookError (400 or 422) if not."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise WebhookError(400, Code.INVALID, "The body is not UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise WebhookError(
            400, Code.INVALID, f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    if not isinstance(data, dict):
        raise WebhookError(400, Code.INVALID, "The body must be a JSON object.")

    def text_field(name: str, *, required: bool = False, max_length: int | None = None) -> str | None:
        value = data.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise WebhookError(422, Code.REQUIRED, f"{name} is required.", name)
            return None
        if not isinstance(value, str):
            raise WebhookError(422, Code.INVALID, f"{name} must be a string.", name)
        value = value.strip()
        if max_length is not None and len(value) > max_length:
            raise WebhookError(422, Code.TOO_LONG, f"{name} may be at most {max_length} characters.", name)
        return value

    sender = text_field("from", required=True)
    assert sender is not None
    try:
        if kind is ChannelKind.SMS:
            sender = cf.normalize_phone(sender)
        elif kind is ChannelKind.EMAIL:
            sender = cf.normalize_email(sender)
        elif not _MESSENGER_ID.match(sender):
            raise ValueError("not a messenger user id (1 to 100 letters, digits, or _ . : -)")
    except ValueError as exc:
        raise WebhookError(422, Code.INVALID, f"from is {exc}.", "from") from None
    files = _remote_files(data.get("attachments"))
    raw_text = text_field("text", required=not files) or ""
    # Masked before it is cut: a cut could leave part of a card number that no longer
    # looks like one.
    text = _body(mask_card_numbers(raw_text)[:MAX_BODY], required=not files)
    name = text_field(_NAME_FIELD[kind]) if kind in _NAME_FIELD else None
    subject = text_field("subject") if kind is ChannelKind.EMAIL else None
    # The sender's name and the subject are free text too (masked before they are cut).
    name, subject = (value and mask_card_numbers(value) for value in (name, subject))
    return InboundMessage(
        sender=sender,
        text=text,
        name=_one_line(name, MAX_NAME),
        subject=_one_line(subject, MAX_SUBJECT),
        message_id=text_field("messageId", required=kind is ChannelKind.EMAIL, max_length=MAX_ID),
        in_reply_to=text_field("inReplyTo", max_length=MAX_ID) if kind is ChannelKind.EMAIL else None,
        attachments=files,
    )


def _remote_files(value: Any) -> tuple[RemoteFile, ...]:
    """`attachments`: [{"url": …, "filename": …, "contentType": …}] (e-mail attachments and
    MMS media, kept by the provider; fetched by `fetch_files`)."""
    if value is None:
        return ()
    most = settings.attachments_per_message
    if not isinstance(value, list) or len(value) > most:
        raise WebhookError(422, Code.INVALID, f"attachments is a list of at most {most} files.", "attachments")
    files = []
    for i, item in enumerate(value):
        where = f"attachments.{i}"
        if not isinstance(item, dict):
            raise WebhookError(422, Code.INVALID, f"{where} must be an object.", where)
        url, name, content_type = item.get("url"), item.get("filename"), item.get("contentType")
        if not isinstance(url, str) or not url or len(url) > MAX_URL:
            raise WebhookError(
                422, Code.INVALID, f"{where}.url must be a URL of at most {MAX_URL} characters.", f"{where}.url"
            )
        if name is not None and (not isinstance(name, str) or len(name) > MAX_URL):
            raise WebhookError(422, Code.INVALID, f"{where}.filename must be a short string.", f"{where}.filename")
        if content_type is not None and (not isinstance(content_type, str) or len(content_type) > 127):
            raise WebhookError(422, Code.INVALID, f"{where}.contentType must be a media type.", f"{where}.contentType")
        files.append(RemoteFile(url, name, content_type))
    return tuple(files)


def _one_line(value: str | None, max_length: int) -> str | None:
    """Names and subjects end up in e-mail headers: no line breaks, and not too long."""
    return " ".join(value.split())[:max_length] or None if value else None


def _body(text: str, *, required: bool = True) -> str:
    try:
        return clean_body(text, "text", required=required)
    except UserFailure as failure:
        error = failure.errors[0]
        raise WebhookError(422, error.code, f"text: {error.message}", "text") from None


# -- receiving -------------------------------------------------------------------------------


@dataclass
class Received:
    message: Message
    conversation_id: int
    duplicate: bool = False


async def receive(outbox: Outbox, channel: Channel, inbound: InboundMessage, files: Incoming | None = None) -> Received:
    """Store an inbound message on `channel` (with its fetched files) and act on it, in one transaction."""
    async with atomic(outbox):
        if inbound.message_id is not None:
            earlier = await _already_received(channel, inbound.message_id)
            if earlier is not None:
                return Received(earlier, earlier.conversation_id, duplicate=True)
        contact = await _sender_contact(outbox, channel, inbound)
        conversation = await _conversation_for(outbox, channel, contact, inbound)
        message = await receive_inbound(
            outbox, conversation, contact, inbound.text, external_message_id=inbound.message_id, files=files
        )
        keyword = sms.classify(inbound.text) if channel.kind is ChannelKind.SMS else None
        if keyword is not None:
            await _answer_keyword(outbox, channel, conversation, contact, keyword)
        else:
            await _auto_respond(outbox, channel, conversation, contact)
    return Received(message, conversation.id)


async def _already_received(channel: Channel, message_id: str) -> Message | None:
    return (
        await Message.filter(
            workspace_id=channel.workspace_id,
            external_message_id=message_id,
            direction=Direction.INBOUND,
            conversation__channel_id=channel.id,
        )
        .order_by("id")
        .first()
    )


async def _sender_contact(outbox: Outbox, channel: Channel, inbound: InboundMessage) -> Contact:
    """The contact behind the sender: by phone (SMS), e-mail address, or messenger user id
    (kept as the external id `messenger:<id>`); created when there is none. Only a trusted
    contact is found so: an address a widget visitor typed never receives this mail."""
    if channel.kind is ChannelKind.SMS:
        identity = {"phone": inbound.sender}
    elif channel.kind is ChannelKind.EMAIL:
        identity = {"email": inbound.sender}
    else:
        identity = {"external_id": MESSENGER_PREFIX + inbound.sender}
    trusted = Contact.filter(workspace_id=channel.workspace_id, identity_source=IdentitySource.TRUSTED, **identity)
    if channel.kind in (ChannelKind.SMS, ChannelKind.EMAIL):
        trusted = trusted_only(trusted, next(iter(identity)))  # not an address a session typed
    contact = await trusted.order_by("id").first()
    if contact is None:
        stamp = now()
        contact = await Contact.create(
            workspace_id=channel.workspace_id,
            name=inbound.name,
            platform=channel.kind.value,
            first_seen_at=stamp,
            last_seen_at=stamp,
            **identity,
        )
        await record_change(outbox, contact, ChangeKind.CREATED)
    elif inbound.name and not contact.name:
        contact.name = inbound.name
        await contact.save(update_fields=["name", "updated_at"])
        await record_change(outbox, contact, ChangeKind.UPDATED)
    return contact


async def _conversation_for(
    outbox: Outbox, channel: Channel, contact: Contact, inbound: InboundMessage
) -> Conversation:
    """E-mail: the conversation of the message it answers (the same contact's, in this
    workspace), else a new one with its subject. SMS and messenger: the contact's latest
    conversation on the channel, else a new one."""
    if channel.kind is ChannelKind.EMAIL:
        if inbound.in_reply_to:
            parent = (
                await Message.filter(workspace_id=channel.workspace_id, external_message_id=inbound.in_reply_to)
                .order_by("-id")
                .first()
            )
            if parent is not None:
                conversation = await Conversation.get(id=parent.conversation_id)
                # Knowing a Message-ID is not enough to write into someone else's thread.
                if conversation.contact_id == contact.id:
                    return conversation
        return await open_conversation(outbox, contact, channel, subject=inbound.subject)
    latest = await Conversation.filter(contact_id=contact.id, channel_id=channel.id).order_by("-id").first()
    return latest or await open_conversation(outbox, contact, channel)


async def _answer_keyword(
    outbox: Outbox, channel: Channel, conversation: Conversation, contact: Contact, keyword: sms.Keyword
) -> None:
    """STOP and START change the contact's SMS consent; every keyword is confirmed, even to
    an unsubscribed or blocked contact: carriers require the confirmation."""
    if keyword is sms.Keyword.HELP:
        await reply(outbox, conversation, contact, channel.help_reply or sms.DEFAULT_HELP_REPLY)
        return
    consent, text = (
        (SmsConsent.UNSUBSCRIBED, sms.DEFAULT_STOP_REPLY)
        if keyword is sms.Keyword.STOP
        else (SmsConsent.SUBSCRIBED, sms.DEFAULT_START_REPLY)
    )
    if contact.sms_consent is not consent:
        contact.sms_consent, contact.sms_consent_at = consent, now()
        await contact.save(update_fields=["sms_consent", "sms_consent_at", "updated_at"])
        await record_change(outbox, contact, ChangeKind.UPDATED)
    await reply(outbox, conversation, contact, text)


async def _auto_respond(outbox: Outbox, channel: Channel, conversation: Conversation, contact: Contact) -> None:
    text = channel.auto_responder_text
    if not channel.auto_responder_enabled or not text or contact.blocked:
        return
    audience = channel.auto_responder_audience
    if audience is AutoResponderAudience.WITHOUT_SMS_CONSENT and contact.sms_consent is SmsConsent.SUBSCRIBED:
        return
    recent = Message.filter(
        conversation_id=conversation.id,
        sender_kind=SenderKind.SYSTEM,
        body=text,
        created_at__gte=now() - AUTO_REPLY_INTERVAL,
    )
    if await recent.exists():
        return
    await reply(outbox, conversation, contact, text)


async def reply(outbox: Outbox, conversation: Conversation, contact: Contact, text: str) -> Message:
    """A system message to the contact, sent by the worker (deliver_message)."""
    message = await add_message(
        outbox,
        conversation,
        sender_kind=SenderKind.SYSTEM,
        body=mask_card_numbers(text),
        delivery_state=DeliveryState.PENDING,
        notify=not contact.blocked,
    )
    queue_job(outbox, "deliver_message", message.id, job_id=keys.deliver_job(message.id))
    return message


# -- the route -------------------------------------------------------------------------------


def sender_lock_key(channel_id: int, sender: str) -> str:
    return keys.inbound_sender_lock(channel_id, hashlib.sha256(sender.encode()).hexdigest()[:32])


class _Busy(Exception):
    pass


def replay_key(channel: Channel, body: bytes, header: str) -> tuple[str, int]:
    """The Redis key naming a verified delivery by its signature, and how many seconds it
    has to live: until the signature's timestamp is too old to be accepted again."""
    stamp = signed_at(header)
    assert stamp is not None  # signature_problem checked it
    digest = signature(channel.secret, body, stamp).partition(",v1=")[2]
    return keys.inbound_signature(channel.id, digest[:32]), max(1, stamp + SIGNATURE_TOLERANCE - int(time.time()) + 1)


async def receive_once(
    redis: Any,
    key: tuple[str, int],
    outbox: Outbox,
    channel: Channel,
    inbound: InboundMessage,
    files: Incoming | None = None,
) -> Received:
    """`receive`, at most once per signature (for deliveries without a provider message id).
    The key holds the stored message's id; a replay answers as a retried messageId does."""
    name, ttl = key
    if not await redis.set(name, "", nx=True, ex=ttl):
        stored = await redis.get(name)
        earlier = None
        if stored and stored.isdigit():
            earlier = await Message.get_or_none(id=int(stored), workspace_id=channel.workspace_id)
        if earlier is None:
            # Another request stored it and did not live to say which message it was.
            raise WebhookError(
                409, Code.CONFLICT, "This signed delivery was received already; send a messageId to make retries safe."
            )
        return Received(earlier, earlier.conversation_id, duplicate=True)
    try:
        received = await receive(outbox, channel, inbound, files)
    except BaseException:
        await redis.delete(name)  # nothing was stored: the provider may retry
        raise
    await redis.set(name, str(received.message.id), xx=True, keepttl=True)
    return received


@contextlib.asynccontextmanager
async def sender_lock(redis: Any, key: str) -> AsyncIterator[None]:
    """Hold `key` (SET NX with expiry); _Busy after waiting LOCK_WAIT for it."""
    token = secrets.token_hex(8)
    deadline = time.monotonic() + LOCK_WAIT
    while not await redis.set(key, token, nx=True, px=LOCK_TTL_MS):
        if time.monotonic() > deadline:
            raise _Busy
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        await redis.eval(_RELEASE, 1, key, token)


async def webhook_endpoint(request: Request) -> Response:
    """POST /hooks/channels/{public_key}/inbound (see docs/webhooks.md)."""
    key = request.path_params.get("public_key")
    try:
        # Before anything is read: a flood costs one Redis call a request, not a query.
        await rate_limits.hit(
            "inbound-hook",
            settings.rate_limit_inbound_hook_per_channel,
            str(key),
            what="Too many messages on this channel",
        )
        return await _handle(request)
    except RateLimited as exc:
        return WebhookError(429, Code.RATE_LIMITED, exc.message, retry_after=exc.retry_after).response()
    except WebhookError as exc:
        if exc.status >= 500 or exc.status == 401:
            log.warning("inbound webhook %s: %s %s", key, exc.status, exc.message)
        return exc.response()
    except DatabaseBusy:
        raise  # 503 with Retry-After (asgi.py): the provider retries, nothing was stored
    except BodyTooLarge:
        raise  # answered 413 by core/limits.py's middleware, which counts the bytes
    except Exception:
        # Ours, not the provider's: logged with the request id, masked, and retried by them.
        request_id = request_id_var.get()
        log.exception("inbound webhook %s failed (request %s)", key, request_id)
        return WebhookError(500, "INTERNAL", f"Internal server error (request {request_id}): retry later.").response()


async def _handle(request: Request) -> Response:
    channel = await Channel.get_or_none(public_key=request.path_params["public_key"])
    if channel is None or channel.kind not in WEBHOOK_KINDS:
        # Widget and SDK channels have sessions, not webhooks: to a provider they do not exist.
        raise WebhookError(404, Code.NOT_FOUND, "No e-mail, SMS or messenger channel has this key.")
    body = await _read_body(request)
    header = request.headers.get(SIGNATURE_HEADER)
    problem = signature_problem(channel.secret, body, header)
    if problem is not None:
        raise WebhookError(401, Code.UNAUTHENTICATED, problem)
    assert header is not None
    inbound = parse_payload(channel.kind, body)
    hub = request.app.state.hub
    outbox = Outbox(hub, getattr(request.app.state, "jobs", None))
    files, skipped = await _fetch(channel, inbound)
    try:
        async with kept_if_written(files), sender_lock(hub.redis, sender_lock_key(channel.id, inbound.sender)):
            if inbound.message_id is None:
                received = await receive_once(
                    hub.redis, replay_key(channel, body, header), outbox, channel, inbound, files
                )
            else:
                received = await receive(outbox, channel, inbound, files)
    except _Busy:
        raise WebhookError(
            503,
            Code.CONFLICT,
            "Another message from this sender is being stored: retry in a few seconds.",
            retry_after=5,
        ) from None
    if received.duplicate:
        await discard(files.files)  # the first delivery has them
    log.info(
        "inbound %s message %s on channel %s%s",
        channel.kind.value,
        received.message.id,
        channel.id,
        " (duplicate)" if received.duplicate else "",
    )
    return JSONResponse(
        {
            "ok": True,
            "duplicate": received.duplicate,
            "messageId": encode_global_id("Message", received.message.id),
            "conversationId": encode_global_id("Conversation", received.conversation_id),
            "skippedAttachments": skipped,
        }
    )


async def _fetch(channel: Channel, inbound: InboundMessage) -> tuple[Incoming, list[dict[str, Any]]]:
    """The message's files, fetched (core/outbound.py) and stored; a 502 that the provider
    retries when one could not be fetched for now (nothing is kept)."""
    try:
        return await fetch_files(channel.workspace_id, list(inbound.attachments))
    except Unreachable as exc:
        raise WebhookError(
            502,
            "ATTACHMENT_UNREACHABLE",
            f"attachments.{exc.index}.url: {exc.reason}; retry later.",
            f"attachments.{exc.index}.url",
        ) from None


async def _read_body(request: Request) -> bytes:
    too_large = WebhookError(413, Code.TOO_LONG, f"The body may be at most {MAX_WEBHOOK_BYTES} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_WEBHOOK_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_WEBHOOK_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
