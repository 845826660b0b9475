"""The inbox feed (`inboxEvents`): one event per thing the inbox shows, on one channel per
workspace, each stored (models.conversations.InboxEvent) so that a client that reconnects
catches up from its cursor; and typing notices, which are published and never stored.

    async with atomic(outbox):
        ...
        await feed(outbox, conversation, FeedKind.MESSAGE, message=message_row(...))
    # after COMMIT: {"type": "feed", "kind": "message", "cursor": "812", "conversationId": …}

Every event carries what subscribers filter on (the conversation's status, assignee, team,
channel, unread count, as the writer knew them), so that no subscriber reads the database
to decide whether an event is for it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core import keys
from core.clock import now
from core.events import Outbox
from core.hub import Hub
from models.attachments import Attachment
from models.conversations import Conversation, ConversationNote, FeedKind, InboxEvent, Message
from services.attachments import event_rows

# How long the feed's log keeps events: a cursor older than this catches up with a gap.
FEED_RETENTION_DAYS = 3
# At most this many stored events after a cursor are replayed; further behind, the client
# reloads the inbox with queries.
CATCH_UP_MAX = 500
# A typing notice shows for TYPING_SECONDS unless renewed; one is published at most every
# TYPING_THROTTLE_SECONDS per person and conversation.
TYPING_SECONDS = 6
TYPING_THROTTLE_SECONDS = 3


def message_row(m: Message, sender_name: str | None, attachments: list[Attachment] | None = None) -> dict[str, Any]:
    """A message as events carry it: subscribers build the GraphQL object from this alone,
    with no read per subscriber (the sender's name and its files included)."""
    return {
        "id": m.id,
        "conversationId": m.conversation_id,
        "senderKind": m.sender_kind.value,
        "agentId": m.agent_id,
        "senderName": sender_name,
        "direction": m.direction.value,
        "body": m.body,
        "deliveryState": m.delivery_state.value,
        "createdAt": m.created_at.isoformat(),
        "attachments": event_rows(attachments or []),
    }


def note_row(note: ConversationNote, author_name: str | None) -> dict[str, Any]:
    """A note as the feed carries it (agents only: notes never reach a contact's channel)."""
    return {
        "id": note.id,
        "conversationId": note.conversation_id,
        "agentId": note.agent_id,
        "authorName": author_name,
        "body": note.body,
        "mentionedAgentIds": list(note.mentioned_agent_ids),
        "createdAt": note.created_at.isoformat(),
    }


def snapshot(conversation: Conversation) -> dict[str, Any]:
    """What subscribers filter an event of this conversation on."""
    return {
        "conversationId": conversation.id,
        "status": conversation.status.value,
        "assigneeId": conversation.assignee_id,
        "teamId": conversation.team_id,
        "channelId": conversation.channel_id,
        "unreadCount": conversation.unread_count,
    }


async def feed(outbox: Outbox, conversation: Conversation, kind: FeedKind, **data: Any) -> None:
    """Store an event of the inbox feed and publish it after the commit."""
    body = {**snapshot(conversation), **data}
    row = await InboxEvent.create(
        workspace_id=conversation.workspace_id, conversation_id=conversation.id, kind=kind, data=body
    )
    outbox.add(keys.inbox_feed_channel(conversation.workspace_id), _event(kind, row.id, body))


def _event(kind: FeedKind, cursor: int | None, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": "feed", "kind": kind.value, "cursor": None if cursor is None else str(cursor), **body}


async def catch_up(workspace_id: int, after: int) -> list[dict[str, Any]] | None:
    """The workspace's stored events after the cursor `after`, oldest first, as they were
    published; None when there are more than CATCH_UP_MAX."""
    rows = (
        await InboxEvent.filter(workspace_id=workspace_id, id__gt=after)
        .order_by("id")
        .limit(CATCH_UP_MAX + 1)
        .values_list("id", "kind", "data")
    )
    if len(rows) > CATCH_UP_MAX:
        return None
    return [_event(FeedKind(kind), pk, data) for pk, kind, data in rows]


async def prune(older_than_days: int = FEED_RETENTION_DAYS) -> int:
    return await InboxEvent.filter(created_at__lt=now() - timedelta(days=older_than_days)).delete()


# -- typing ----------------------------------------------------------------------------------


def typist(sender_kind: str, sender_id: int) -> str:
    """Who types, as the typing keys name them: 'agent:7', 'contact:3'."""
    return f"{sender_kind}:{sender_id}"


async def typing(
    hub: Hub, conversation: Conversation, *, agent_id: int | None, sender_name: str | None
) -> datetime | None:
    """An agent (`agent_id`) or the conversation's contact (None) is typing: published to the
    inbox feed, and to the contact's `myMessages` when an agent types, unless a notice of
    theirs went out less than TYPING_THROTTLE_SECONDS ago. When the notice expires (None:
    throttled, the last one stands)."""
    who = typist("agent", agent_id) if agent_id is not None else typist("contact", conversation.contact_id)
    ws = conversation.workspace_id
    if not await hub.redis.set(
        keys.typing_throttle(ws, conversation.id, who), "1", nx=True, px=TYPING_THROTTLE_SECONDS * 1000
    ):
        return None
    expires = datetime.now(UTC) + timedelta(seconds=TYPING_SECONDS)
    await hub.redis.set(keys.typing_active(ws, conversation.id, who), "1", px=TYPING_SECONDS * 1000)
    notice = {
        "senderKind": "agent" if agent_id is not None else "contact",
        "agentId": agent_id,
        "senderName": sender_name,
        "expiresAt": expires.isoformat(),
    }
    await hub.publish(_typing_events(conversation, FeedKind.TYPING, notice))
    return expires


def _typing_events(conversation: Conversation, kind: FeedKind, notice: dict[str, Any]) -> list[tuple[str, Any]]:
    ws = conversation.workspace_id
    events: list[tuple[str, Any]] = [
        (keys.inbox_feed_channel(ws), _event(kind, None, {**snapshot(conversation), "typing": notice}))
    ]
    if notice["senderKind"] == "agent":
        events.append(
            (
                keys.contact_messages_channel(ws, conversation.contact_id),
                {"type": "typing", "kind": kind.value, "conversationId": conversation.id, "typing": notice},
            )
        )
    return events


def stop_typing(outbox: Outbox, conversation: Conversation, *, agent_id: int | None) -> None:
    """After the commit of a message from this agent (or the contact, None): if they were
    shown typing, everyone is told they stopped."""
    hub = outbox.hub
    if hub is None:
        return
    who = typist("agent", agent_id) if agent_id is not None else typist("contact", conversation.contact_id)

    async def stop() -> None:
        ws = conversation.workspace_id
        if await hub.redis.delete(keys.typing_active(ws, conversation.id, who)):
            await hub.redis.delete(keys.typing_throttle(ws, conversation.id, who))
            notice = {
                "senderKind": "agent" if agent_id is not None else "contact",
                "agentId": agent_id,
                "senderName": None,
                "expiresAt": datetime.now(UTC).isoformat(),
            }
            await hub.publish(_typing_events(conversation, FeedKind.TYPING_STOPPED, notice))

    outbox.after_commit(stop)
