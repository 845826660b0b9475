"""Sending messages out, and telling agents about messages coming in (arq jobs).

- `deliver_message(message_id)`, queued after every agent, bot or system message: e-mail
  conversations by SMTP (threaded with In-Reply-To / References), SMS and messenger
  through the channel's HTTP gateway (signed like inbound webhooks), and for the widget
  and SDK an e-mail copy when the contact has left and gave an address. Only a message
  still waiting (PENDING; RECEIVED for a widget copy) is sent, and the state moves with a
  conditional UPDATE, so a job run twice sends once unless the worker dies mid-send
  (at-least-once, as arq is). Transient failures (SMTP errors, gateway 5xx / 408 / 429,
  connection errors) retry with backoff; after DELIVERY_TRIES the message is FAILED with
  the reason in `delivery_error`. Each delivery-state change reaches the inbox feed
  (`inboxEvents`, kind DELIVERY).
- `notify_new_message(message_id)`, queued by every live inbound message: e-mails the
  channel's notify_emails; when no agent is online, an "offline message" e-mail; when
  some are, a `check_missed_chat` deferred by the channel's missed_chat_minutes, which
  e-mails a "missed chat" if no agent or bot has answered by then.

Who gets offline and missed-chat e-mails: the conversation's assignee; if it has none,
the members of its team; if it has no team either, the workspace's owners and admins.
Both are sent once per run of unanswered messages (the first one), not for each message
of a burst; notify_emails hear of every message.
"""

from __future__ import annotations

import email.utils
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from arq import Retry

from core import keys, outbound
from core.config import settings
from core.events import atomic
from core.mail import Mail, MailError, MailNotConfigured, send_mail
from core.outbound import OutboundError
from core.presence import is_online, online_ids
from core.queue import enqueue
from core.scoping import encode_global_id
from core.signing import signed_headers
from domain.identity import MESSENGER_PREFIX
from jobs.conversations import outbox
from models.channels import SESSION_KINDS, Channel, ChannelKind
from models.contacts import Contact, SmsConsent
from models.conversations import (
    Conversation,
    ConversationStatus,
    DeliveryState,
    Direction,
    FeedKind,
    Message,
    SenderKind,
)
from models.workspaces import Agent, Role, Workspace
from services import inbox
from services.short_links import shorten

log = logging.getLogger("parley.jobs.delivery")

DELIVERY_TRIES = 5
# Seconds before try 2, 3, 4, 5.
RETRY_DELAYS = (2, 15, 60, 300)
GATEWAY_TIMEOUT = 10.0
MAX_RETRY_AFTER = 3600
NOTIFIED_TTL = 7 * 24 * 3600
MAX_REFERENCES = 20
REPLIERS = (SenderKind.AGENT, SenderKind.BOT)


class Transient(Exception):
    """Worth another try later; `retry_after` is the receiver's own wish, in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Permanent(Exception):
    """Another try would fail the same way."""


@dataclass
class Thread:
    """A message with everything delivering it needs, loaded once."""

    message: Message
    conversation: Conversation
    channel: Channel
    contact: Contact
    workspace: Workspace

    @classmethod
    async def load(cls, message_id: int) -> Thread | None:
        message = await Message.get_or_none(id=message_id)
        if message is None:
            return None
        conversation = await Conversation.get(id=message.conversation_id)
        return cls(
            message,
            conversation,
            await Channel.get(id=conversation.channel_id),
            await Contact.get(id=conversation.contact_id),
            await Workspace.get(id=conversation.workspace_id),
        )


def backoff(job_try: int, retry_after: float | None = None) -> float:
    delay = RETRY_DELAYS[min(job_try, len(RETRY_DELAYS)) - 1]
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


# -- delivery --------------------------------------------------------------------------------


async def deliver_message(ctx: dict[str, Any], message_id: int) -> str:
    """Send one outbound message; returns what happened (for the job's result)."""
    thread = await Thread.load(message_id)
    if thread is None or thread.message.direction is not Direction.OUTBOUND:
        return "nothing to send"
    if thread.channel.kind in SESSION_KINDS:
        return await _email_copy(ctx, thread)
    if thread.message.delivery_state is not DeliveryState.PENDING:
        return f"already {thread.message.delivery_state.value}"
    send = _send_email_reply if thread.channel.kind is ChannelKind.EMAIL else _post_to_gateway
    try:
        external_message_id = await send(thread)
    except Permanent as exc:
        await _settle(ctx, thread, DeliveryState.PENDING, DeliveryState.FAILED, error=str(exc))
        log.warning("message %s not delivered: %s", message_id, exc)
        return "failed"
    except Transient as exc:
        job_try = int(ctx.get("job_try", 1))
        if job_try >= DELIVERY_TRIES:
            await _settle(
                ctx,
                thread,
                DeliveryState.PENDING,
                DeliveryState.FAILED,
                error=f"{exc} (gave up after {job_try} tries)",
            )
            log.warning("message %s not delivered after %d tries: %s", message_id, job_try, exc)
            return "failed"
        delay = backoff(job_try, exc.retry_after)
        log.info("message %s: %s; try %d again in %ss", message_id, exc, job_try + 1, delay)
        raise Retry(defer=delay) from exc
    await _settle(ctx, thread, DeliveryState.PENDING, DeliveryState.SENT, external_message_id=external_message_id)
    return "sent"


async def _settle(
    ctx: dict[str, Any],
    thread: Thread,
    expected: DeliveryState,
    state: DeliveryState,
    *,
    error: str | None = None,
    external_message_id: str | None = None,
) -> None:
    """Move the message from `expected` to `state`; the inbox feed hears of it."""
    message = thread.message
    changes: dict[str, Any] = {"delivery_state": state, "delivery_error": error[:500] if error else None}
    if external_message_id is not None:
        changes["external_message_id"] = external_message_id
    events = outbox(ctx)
    async with atomic(events):
        if await Message.filter(id=message.id, delivery_state=expected).update(**changes):
            message.delivery_state = state
            sender = (
                await Agent.filter(id=message.agent_id).first().values_list("name", flat=True)
                if message.agent_id
                else None
            )
            await inbox.feed(events, thread.conversation, FeedKind.DELIVERY, message=inbox.message_row(message, sender))


async def _threading(conversation: Conversation, exclude: int) -> tuple[str | None, list[str]]:
    """In-Reply-To (the contact's last e-mail, else our last) and References (the
    conversation's Message-IDs, oldest first, the first and the latest kept when long)."""
    rows = await (
        Message.filter(conversation_id=conversation.id, external_message_id__isnull=False)
        .exclude(id=exclude)
        .order_by("id")
        .values_list("external_message_id", "direction")
    )
    ids = [mid for mid, _ in rows if mid.startswith("<")]
    inbound = [mid for mid, direction in rows if direction == Direction.INBOUND and mid.startswith("<")]
    parent = inbound[-1] if inbound else (ids[-1] if ids else None)
    if len(ids) > MAX_REFERENCES:
        ids = ids[:1] + ids[-(MAX_REFERENCES - 1) :]
    return parent, ids


def _from_address(thread: Thread) -> str:
    if thread.channel.default_sender:
        return email.utils.formataddr((thread.workspace.name, thread.channel.default_sender))
    return settings.mail_from


async def _signature(thread: Thread) -> str:
    agent = await Agent.get_or_none(id=thread.message.agent_id) if thread.message.agent_id else None
    return f"\n\n-- \n{agent.name + ', ' if agent else ''}{thread.workspace.name}\n"


async def _mail(thread: Thread, *, to: str, subject: str, text: str) -> str:
    in_reply_to, references = await _threading(thread.conversation, thread.message.id)
    headers = {"X-Parley-Conversation": encode_global_id("Conversation", thread.conversation.id)}
    if thread.message.sender_kind is SenderKind.SYSTEM:
        headers["Auto-Submitted"] = "auto-replied"  # RFC 3834: no auto-reply to this
    try:
        return await send_mail(
            Mail(
                to=[to],
                subject=subject,
                text=text,
                from_addr=_from_address(thread),
                in_reply_to=in_reply_to,
                references=references or None,
                headers=headers,
            )
        )
    except (MailNotConfigured, ValueError) as exc:
        raise Permanent(str(exc)) from exc
    except MailError as exc:
        raise Transient(str(exc)) from exc


async def _send_email_reply(thread: Thread) -> str:
    if not thread.contact.email:
        raise Permanent("The contact has no e-mail address.")
    subject = " ".join((thread.conversation.subject or "").split()) or f"Your conversation with {thread.workspace.name}"
    answered = await Message.filter(conversation_id=thread.conversation.id, direction=Direction.INBOUND).exists()
    if answered and not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    return await _mail(
        thread, to=thread.contact.email, subject=subject, text=thread.message.body + await _signature(thread)
    )


async def _email_copy(ctx: dict[str, Any], thread: Thread) -> str:
    """Widget and SDK: the reply is in the chat already; a contact who has left and gave
    an address gets it by e-mail too."""
    message, contact = thread.message, thread.contact
    if message.sender_kind not in REPLIERS or message.delivery_state is not DeliveryState.RECEIVED:
        return "nothing to send"
    if not contact.email or contact.blocked:
        return "no address"
    if await is_online(ctx["redis"], thread.workspace.id, "contact", contact.id):
        return "contact online"
    text = (
        f"You have a new reply from {thread.workspace.name}:\n\n{message.body}{await _signature(thread)}\n"
        "Open the chat on our website or app to answer."
    )
    try:
        external_message_id = await _mail(
            thread, to=contact.email, subject=f"New reply from {thread.workspace.name}", text=text
        )
    except Permanent as exc:
        await Message.filter(id=message.id).update(delivery_error=f"e-mail copy: {exc}"[:500])
        return "failed"
    except Transient as exc:
        job_try = int(ctx.get("job_try", 1))
        if job_try >= DELIVERY_TRIES:
            # The message is in the chat: only the copy is lost, so its state stays.
            await Message.filter(id=message.id).update(delivery_error=f"e-mail copy: {exc}"[:500])
            return "failed"
        raise Retry(defer=backoff(job_try)) from exc
    await _settle(ctx, thread, DeliveryState.RECEIVED, DeliveryState.SENT, external_message_id=external_message_id)
    return "sent"


async def _post_to_gateway(thread: Thread) -> None:
    """POST {"to", "from", "text", "messageId"} to the channel's gateway; 2xx is sent."""
    channel, contact, message = thread.channel, thread.contact, thread.message
    if not channel.gateway_url:
        raise Permanent("This channel has no gateway URL.")
    if channel.kind is ChannelKind.SMS:
        if not contact.phone:
            raise Permanent("The contact has no phone number.")
        # Consent may have been withdrawn (STOP) since the agent wrote; keyword
        # confirmations and auto-responses (system messages) go out regardless.
        if message.sender_kind is not SenderKind.SYSTEM and contact.sms_consent is not SmsConsent.SUBSCRIBED:
            raise Permanent("The contact has not subscribed to SMS.")
        to = contact.phone
    else:
        if not contact.external_id or not contact.external_id.startswith(MESSENGER_PREFIX):
            raise Permanent("The contact has no messenger id.")
        to = contact.external_id.removeprefix(MESSENGER_PREFIX)
    # SMS links go out short (PUBLIC_URL/l/{code}): their clicks are counted.
    text = await shorten(message, contact.id) if channel.kind is ChannelKind.SMS else message.body
    payload = {"to": to, "from": channel.default_sender, "text": text, "messageId": str(message.id)}
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        response = await outbound.post(
            channel.gateway_url, content=body, headers=signed_headers(channel.secret, body), timeout=GATEWAY_TIMEOUT
        )
    except OutboundError as exc:
        reason = f"The gateway could not be reached: {exc.reason}."
        raise (Transient(reason) if exc.retryable else Permanent(reason)) from exc
    # The status only, never the gateway's body: it is not ours to show.
    if response.ok:
        return None
    if response.status in (408, 425, 429) or response.status >= 500:
        raise Transient(f"The gateway answered {response.summary}.", response.retry_after)
    raise Permanent(f"The gateway answered {response.summary}.")


# -- notifications ---------------------------------------------------------------------------


def missed_chat_job_id(message_id: int) -> str:
    return f"{keys.arq_queue()}:missed:{message_id}"


def _notified_key(message_id: int, kind: str) -> str:
    return keys.notification_sent(message_id, kind)


async def notify_new_message(ctx: dict[str, Any], message_id: int) -> list[str]:
    """Tell people about a contact's new message; returns the notifications sent."""
    thread = await Thread.load(message_id)
    if thread is None or thread.message.direction is not Direction.INBOUND or thread.contact.blocked:
        return []
    sent: list[str] = []
    channel = thread.channel
    if channel.notify_emails:
        await _notify_once(ctx, thread, "new", channel.notify_emails, sent)
    if not channel.offline_notifications:
        return sent
    if not await _first_unanswered(thread.message):
        return sent  # the agents were told of this run of messages already
    if not await online_ids(ctx["redis"], thread.workspace.id, "agent"):
        await _notify_once(ctx, thread, "offline", await recipients(thread.conversation), sent)
    else:
        await enqueue(
            ctx["redis"],
            "check_missed_chat",
            thread.conversation.id,
            message_id,
            job_id=missed_chat_job_id(message_id),
            defer=timedelta(minutes=channel.missed_chat_minutes),
        )
    return sent


async def check_missed_chat(ctx: dict[str, Any], conversation_id: int, message_id: int) -> list[str]:
    """Deferred after a message that arrived while agents were online: if none has
    answered it since, the agents hear of a missed chat."""
    thread = await Thread.load(message_id)
    if thread is None or thread.conversation.id != conversation_id or thread.contact.blocked:
        return []
    # Resolved without a word (spam, say) is handled too.
    if thread.conversation.status is ConversationStatus.RESOLVED or not await _first_unanswered(thread.message):
        return []
    sent: list[str] = []
    await _notify_once(ctx, thread, "missed", await recipients(thread.conversation), sent)
    return sent


async def _first_unanswered(message: Message) -> bool:
    """No agent or bot has answered `message`, and it starts its run of unanswered messages."""
    last_reply = (
        await Message.filter(conversation_id=message.conversation_id, sender_kind__in=REPLIERS).order_by("-id").first()
    )
    if last_reply is not None and last_reply.id > message.id:
        return False
    since = last_reply.id if last_reply else 0
    earlier = Message.filter(
        conversation_id=message.conversation_id, direction=Direction.INBOUND, id__gt=since, id__lt=message.id
    )
    return not await earlier.exists()


async def recipients(conversation: Conversation) -> list[str]:
    """The assignee; else the conversation's team; else the workspace's owners and admins."""
    if conversation.assignee_id is not None:
        agents = await Agent.filter(id=conversation.assignee_id)
    elif conversation.team_id is not None:
        agents = await Agent.filter(teams__id=conversation.team_id)
    else:
        agents: list[Agent] = []
    if not agents:
        agents = await Agent.filter(workspace_id=conversation.workspace_id, role__in=[Role.OWNER, Role.ADMIN])
    return sorted({agent.email for agent in agents})


def _who(contact: Contact) -> str:
    return " ".join((contact.name or "").split()) or contact.email or contact.phone or f"Visitor {contact.id}"


_SUBJECTS = {
    "new": "New message from {who}",
    "offline": "Offline message from {who}",
    "missed": "Missed chat with {who}",
}
_INTROS = {
    "new": "{who} wrote on {channel}:",
    "offline": "{who} wrote on {channel} while no agent was online:",
    "missed": "{who} wrote on {channel} and nobody has answered yet:",
}


async def _notify_once(ctx: dict[str, Any], thread: Thread, kind: str, to: list[str], sent: list[str]) -> None:
    """E-mail a notification unless it went out already (a retried job); MailError retries
    the job, which skips what was sent."""
    if not to:
        return
    redis = ctx["redis"]
    key = _notified_key(thread.message.id, kind)
    if await redis.exists(key):
        return
    who = _who(thread.contact)
    conversation_gid = encode_global_id("Conversation", thread.conversation.id)
    text = (
        f"{_INTROS[kind].format(who=who, channel=thread.channel.name)}\n\n{thread.message.body}\n\n"
        f"Conversation {conversation_gid} in {thread.workspace.name}.\n"
    )
    try:
        await send_mail(
            Mail(
                to=to,
                subject=_SUBJECTS[kind].format(who=who),
                text=text,
                headers={"Auto-Submitted": "auto-generated", "X-Parley-Conversation": conversation_gid},
            )
        )
    except (MailNotConfigured, ValueError) as exc:
        log.warning("no %s notification for message %s: %s", kind, thread.message.id, exc)
        return
    except MailError as exc:
        job_try = int(ctx.get("job_try", 1))
        if job_try >= DELIVERY_TRIES:
            log.error("%s notification for message %s lost: %s", kind, thread.message.id, exc)
            return
        raise Retry(defer=backoff(job_try)) from exc
    await redis.set(key, "1", ex=NOTIFIED_TTL)
    sent.append(kind)
