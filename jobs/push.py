"""Pushing replies to contacts' phones (arq jobs; docs/push.md).

- `push_conversation(conversation_id)`: queued by an agent's or bot's reply in a mobile SDK
  conversation, deferred by settings.push_grace_seconds under one job id per conversation,
  so replies within the grace period make one notification (about the newest). When it
  runs it pushes nothing if the contact has read the reply meanwhile, or has a live
  `myMessages` subscription (core/presence.py: the app is open and showed it); in the
  contact's quiet hours (20:00 to 08:00 in their time zone, when known and the channel
  respects them) it waits until 08:00. Otherwise it queues `deliver_push` for each of the
  contact's devices on the channel.
- `prune_push_attempts()`: daily, drops delivery-log lines older than ATTEMPT_RETENTION.
- `deliver_push(device_id, message_id)`: one request to APNs or FCM (services/push.py),
  one row in the delivery log. 429, 5xx and no answer retry with backoff
  (settings.push_retry_base_seconds, doubling, a longer Retry-After wins) up to
  settings.push_max_attempts; APNs 410 Unregistered and FCM UNREGISTERED remove the device.

At least once, as arq is: a worker dying mid-request may push twice; the collapse id makes
the second replace the first on the phone.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from arq import Retry

from core import keys
from core.clock import now
from core.config import settings
from core.outbound import retry_delay
from core.presence import is_online
from core.queue import enqueue
from core.scoping import encode_global_id
from core.sealed import SealBroken
from domain.schedule import in_quiet_hours, next_quiet_hours_end
from models.contacts import Contact
from models.conversations import Conversation, Message, SenderKind
from models.push import Device, PushAttempt, PushConfig, PushOutcome
from models.workspaces import Workspace
from services.push import Answer, Notification, send

log = logging.getLogger("parley.jobs.push")

REPLIERS = (SenderKind.AGENT, SenderKind.BOT)
# Devices of one contact on one channel pushed at most (registerDevice keeps as many).
MAX_DEVICES = 10
SENT_TTL = 7 * 24 * 3600
MAX_TEXT = 180
# The delivery log keeps this long; pruned daily, in batches.
ATTEMPT_RETENTION = timedelta(days=30)
PRUNE_BATCH = 1000
# arq's own tries: quiet hours and late replies defer push_conversation; attempts at a
# device are counted by push_max_attempts.
ARQ_TRIES = 1000


async def _newest_reply(conversation_id: int) -> Message | None:
    return await Message.filter(conversation_id=conversation_id, sender_kind__in=REPLIERS).order_by("-id").first()


async def push_conversation(ctx: dict[str, Any], conversation_id: int) -> str:
    """Push the conversation's newest reply to its contact's devices, unless seen already."""
    redis = ctx["redis"]
    conversation = await Conversation.get_or_none(id=conversation_id)
    if conversation is None:
        return "no conversation"
    reply = await _newest_reply(conversation.id)
    if reply is None:
        return "nothing to push"
    sent_key = keys.push_sent(conversation.id)
    sent = await redis.get(sent_key)
    if sent is not None and int(sent) >= reply.id:
        return "pushed already"
    contact = await Contact.get_or_none(id=conversation.contact_id)
    if contact is None or contact.blocked:
        return "no contact"
    if conversation.contact_unread_count == 0:
        await redis.set(sent_key, reply.id, ex=SENT_TTL)
        return "read already"
    if await is_online(redis, conversation.workspace_id, "contact", contact.id):
        await redis.set(sent_key, reply.id, ex=SENT_TTL)
        return "contact online"
    config = await PushConfig.get_or_none(channel_id=conversation.channel_id)
    if config is None:
        return "no push credentials"
    stamp = now()
    if config.respect_quiet_hours and contact.time_zone and in_quiet_hours(stamp, contact.time_zone):
        wait = next_quiet_hours_end(stamp, contact.time_zone) - stamp
        log.info("conversation %s: push waits %s for quiet hours to end", conversation.id, wait)
        raise Retry(defer=wait)
    devices = await (
        Device.filter(contact_id=contact.id, channel_id=conversation.channel_id)
        .order_by("-updated_at")
        .limit(MAX_DEVICES)
        .values_list("id", flat=True)
    )
    for device_id in devices:
        await enqueue(redis, "deliver_push", device_id, reply.id, job_id=keys.push_delivery_job(device_id, reply.id))
    await redis.set(sent_key, reply.id, ex=SENT_TTL)
    # A reply stored while this ran found this job's id taken and queued nothing: its turn.
    if await Message.filter(conversation_id=conversation.id, sender_kind__in=REPLIERS, id__gt=reply.id).exists():
        raise Retry(defer=timedelta(seconds=settings.push_grace_seconds))
    return f"queued {len(devices)}"


async def _notification(conversation: Conversation, message: Message, config: PushConfig) -> Notification:
    workspace_name = await Workspace.filter(id=conversation.workspace_id).first().values_list("name", flat=True)
    text = " ".join(message.body.split())
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    badge = await Conversation.filter(contact_id=conversation.contact_id, contact_unread_count__gt=0).count()
    return Notification(
        conversation_id=encode_global_id("Conversation", conversation.id),
        message_id=encode_global_id("Message", message.id),
        title=str(workspace_name or "New reply"),
        body=text if config.show_message_text else "You have a new reply.",
        badge=badge,
    )


async def deliver_push(ctx: dict[str, Any], device_id: int, message_id: int) -> str:
    """One notification to one device; raises arq's Retry to come back after the backoff."""
    device = await Device.get_or_none(id=device_id)
    if device is None:
        return "device removed"
    message = await Message.get_or_none(id=message_id)
    conversation = await Conversation.get_or_none(id=message.conversation_id) if message else None
    if message is None or conversation is None:
        return "message gone"
    if conversation.contact_id != device.contact_id:
        return "device moved"  # someone else signed in on the phone: not theirs to see
    config = await PushConfig.get_or_none(channel_id=device.channel_id)
    if config is None:
        return "no push credentials"
    attempt = int(ctx.get("job_try", 1))
    started = time.monotonic()
    try:
        answer = await send(config, device, await _notification(conversation, message, config))
    except SealBroken as exc:
        answer = Answer(None, f"The credentials {exc}: set them again.")
    if answer.ok:
        outcome = PushOutcome.SENT
    elif answer.token_gone:
        outcome = PushOutcome.TOKEN_REMOVED
    elif answer.retryable and attempt < settings.push_max_attempts:
        outcome = PushOutcome.RETRYING
    else:
        outcome = PushOutcome.FAILED
    await PushAttempt.create(
        workspace_id=device.workspace_id,
        channel_id=device.channel_id,
        device_id=device.id,
        contact_id=device.contact_id,
        conversation_id=conversation.id,
        message_id=message.id,
        platform=device.platform,
        token_hint=device.token[-8:],
        attempt=attempt,
        outcome=outcome,
        status_code=answer.status,
        error=(answer.reason or None) and answer.reason[:300],
        duration_ms=int((time.monotonic() - started) * 1000),
        at=now(),
    )
    if outcome is PushOutcome.TOKEN_REMOVED:
        # Unless the app registered the token again since this attempt read it.
        await Device.filter(id=device.id, updated_at__lte=device.updated_at).delete()
    elif outcome is PushOutcome.RETRYING:
        raise Retry(defer=timedelta(seconds=retry_delay(settings.push_retry_base_seconds, attempt, answer.retry_after)))
    elif outcome is PushOutcome.FAILED:
        log.warning("push to device %s failed after %d attempts: %s", device.id, attempt, answer.reason)
    return outcome.value


async def prune_push_attempts(ctx: dict[str, Any]) -> int:
    """Delete delivery-log lines older than ATTEMPT_RETENTION, a batch at a time."""
    cutoff = now() - ATTEMPT_RETENTION
    deleted = 0
    while True:
        ids = await PushAttempt.filter(at__lt=cutoff).order_by("id").limit(PRUNE_BATCH).values_list("id", flat=True)
        if not ids:
            return deleted
        deleted += await PushAttempt.filter(id__in=list(ids)).delete()
