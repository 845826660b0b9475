"""Conversation activity, as the API and the jobs both write it: the activity record and
its event on the inbox channel (with the webhook and the segment mark a status change
brings), the response-time figures, closing a conversation, and waking snoozed ones
(jobs/conversations.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core import keys
from core.clock import now
from core.events import Outbox, atomic
from domain import schedule
from models.channels import Channel
from models.conversations import ActivityKind, Conversation, ConversationActivity, ConversationStatus, FeedKind
from services import inbox, webhooks
from services.segments import mark_for_segments


async def record_activity(
    outbox: Outbox, conversation: Conversation, kind: ActivityKind, actor_agent_id: int | None = None, **data: Any
) -> ConversationActivity:
    activity = await ConversationActivity.create(
        workspace_id=conversation.workspace_id,
        conversation_id=conversation.id,
        kind=kind,
        actor_agent_id=actor_agent_id,
        data=data,
    )
    outbox.add(
        keys.inbox_channel(conversation.workspace_id),
        {
            "type": "activity",
            "kind": kind.value,
            "cursor": str(activity.id),
            "conversationId": conversation.id,
            "status": conversation.status.value,
            "assigneeId": conversation.assignee_id,
            "teamId": conversation.team_id,
            "channelId": conversation.channel_id,
            "data": data,
        },
    )
    await inbox.feed(outbox, conversation, FeedKind(kind.value), activity=data)
    if kind is ActivityKind.STATUS_CHANGED:
        await webhooks.conversation_status_changed(
            outbox, conversation, data.get("previous"), actor_agent_id, data.get("reason")
        )
    if kind in (ActivityKind.CREATED, ActivityKind.STATUS_CHANGED):
        # Segment rules count conversations by status: re-evaluate the contact.
        mark_for_segments(outbox, conversation.workspace_id, conversation.contact_id, conversations_only=True)
    return activity


async def business_seconds(conversation: Conversation, until: datetime) -> int:
    """Seconds from the conversation's creation to `until`, counting only its channel's
    business hours when the channel has them."""
    raw = await Channel.filter(id=conversation.channel_id).first().values_list("business_hours", flat=True)
    hours = schedule.BusinessHours.parse(raw) if raw else None
    return round(schedule.open_seconds(hours, conversation.created_at, until))


async def set_resolution(conversation: Conversation) -> None:
    """The resolution figures for the status the conversation now has: stamped when it is
    resolved, cleared otherwise (a reopened conversation is not resolved any more)."""
    if conversation.status is ConversationStatus.RESOLVED:
        conversation.resolved_at = now()
        conversation.resolution_seconds = await business_seconds(conversation, conversation.resolved_at)
    else:
        conversation.resolved_at = conversation.resolution_seconds = None


RESOLUTION_FIELDS = ["resolved_at", "resolution_seconds"]


async def close_conversation(
    outbox: Outbox, conversation: Conversation, actor_agent_id: int | None, *, reason: str
) -> None:
    previous = conversation.status
    conversation.status, conversation.snoozed_until = ConversationStatus.RESOLVED, None
    await set_resolution(conversation)
    await conversation.save(update_fields=["status", "snoozed_until", *RESOLUTION_FIELDS, "updated_at"])
    await record_activity(
        outbox, conversation, ActivityKind.STATUS_CHANGED, actor_agent_id, previous=previous.value, reason=reason
    )


async def wake_due(outbox: Outbox, conversation_id: int | None = None, *, batch: int = 500) -> int:
    """Reopen snoozed conversations whose time has come. Idempotent: a conversation that
    is no longer snoozed, or was snoozed again for later, is left alone."""
    woken = 0
    while True:
        stamp = now()
        query = Conversation.filter(status=ConversationStatus.SNOOZED, snoozed_until__lte=stamp)
        if conversation_id is not None:
            query = query.filter(id=conversation_id)
        due = await query.order_by("snoozed_until").limit(batch)
        if not due:
            return woken
        for conversation in due:
            async with atomic(outbox):
                changed = await Conversation.filter(
                    id=conversation.id, status=ConversationStatus.SNOOZED, snoozed_until__lte=stamp
                ).update(status=ConversationStatus.OPEN, snoozed_until=None, updated_at=stamp)
                if changed:
                    conversation.status, conversation.snoozed_until = ConversationStatus.OPEN, None
                    await record_activity(
                        outbox, conversation, ActivityKind.STATUS_CHANGED, previous="snoozed", reason="snooze_ended"
                    )
                    woken += 1
        if conversation_id is not None or len(due) < batch:
            return woken
