"""Conversations, their messages and their activity log; topics; the inbox feed's log;
private notes."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.indexes import Index

from models.channels import Channel
from models.contacts import Contact
from models.workspaces import Agent, Team, Workspace, WorkspaceScoped, workspace_key


class ConversationStatus(StrEnum):
    OPEN = "open"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


class SenderKind(StrEnum):
    CONTACT = "contact"
    AGENT = "agent"
    BOT = "bot"
    SYSTEM = "system"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class DeliveryState(StrEnum):
    # Stored; nothing to send (widget and SDK messages are delivered by subscription).
    RECEIVED = "received"
    PENDING = "pending"  # waiting for the worker to send it (e-mail, SMS)
    SENT = "sent"
    FAILED = "failed"
    READ = "read"


class ActivityKind(StrEnum):
    CREATED = "created"
    STATUS_CHANGED = "status_changed"
    ASSIGNED = "assigned"
    RATED = "rated"


class Topic(WorkspaceScoped):
    workspace: fields.ForeignKeyRelation[Workspace] = workspace_key("topics")
    name = fields.CharField(max_length=120)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "topics"
        unique_together = (("workspace", "name"),)


class Conversation(WorkspaceScoped):
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="conversations", on_delete=fields.CASCADE
    )
    contact_id: int
    channel: fields.ForeignKeyRelation[Channel] = fields.ForeignKeyField(
        "models.Channel", related_name=False, on_delete=fields.CASCADE
    )
    channel_id: int
    topic: fields.ForeignKeyNullableRelation[Topic] = fields.ForeignKeyField(
        "models.Topic", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    topic_id: int | None
    subject = fields.CharField(max_length=255, null=True)
    status = fields.CharEnumField(ConversationStatus, default=ConversationStatus.OPEN)
    snoozed_until = fields.DatetimeField(null=True)
    assignee: fields.ForeignKeyNullableRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    assignee_id: int | None
    team: fields.ForeignKeyNullableRelation[Team] = fields.ForeignKeyField(
        "models.Team", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    team_id: int | None
    # A copy of the contact's VIP flag: the queue sorts VIP conversations first.
    vip = fields.BooleanField(default=False)
    # Messages from the contact that no agent has read yet, and the converse.
    unread_count = fields.IntField(default=0)
    contact_unread_count = fields.IntField(default=0)
    rating = fields.SmallIntField(null=True)
    rated_at = fields.DatetimeField(null=True)
    # Where and how it started: the page, the visitor's IP, the proactive message or
    # campaign it is attributed to (e.g. 'campaign:12').
    website_url = fields.CharField(max_length=2048, null=True)
    ip = fields.CharField(max_length=45, null=True)
    attributed_source = fields.CharField(max_length=64, null=True)
    # The newest message (a plain column: messages are created after their conversation).
    last_message_id = fields.BigIntField(null=True)
    last_message_at = fields.DatetimeField(null=True)
    # Response-time figures: first agent reply and resolution (the latest, cleared when the
    # conversation reopens; never set for a campaign's conversation, created resolved), and
    # the seconds from creation to each within the channel's business hours, if it has them.
    first_response_at = fields.DatetimeField(null=True)
    resolved_at = fields.DatetimeField(null=True)
    first_response_seconds = fields.IntField(null=True)
    resolution_seconds = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "conversations"
        indexes = [
            Index(fields=["workspace_id", "vip", "last_message_at", "id"]),
            Index(fields=["workspace_id", "status", "snoozed_until"]),
            Index(fields=["contact_id", "created_at"]),
            Index(fields=["workspace_id", "unread_count"]),
            # Reports read a date range; routing counts each agent's open conversations.
            Index(fields=["workspace_id", "created_at"]),
            Index(fields=["assignee_id", "status"]),
        ]


class Message(WorkspaceScoped):
    id = fields.BigIntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="messages", on_delete=fields.CASCADE
    )
    conversation_id: int
    sender_kind = fields.CharEnumField(SenderKind)
    agent: fields.ForeignKeyNullableRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    agent_id: int | None
    direction = fields.CharEnumField(Direction)
    # Card numbers are masked before this is written.
    body = fields.TextField()
    delivery_state = fields.CharEnumField(DeliveryState, default=DeliveryState.RECEIVED)
    delivery_error = fields.CharField(max_length=500, null=True)
    # The provider's id: the e-mail Message-ID (threads replies), the SMS or messenger id
    # (makes webhook retries idempotent).
    external_message_id = fields.CharField(max_length=255, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "messages"
        indexes = [Index(fields=["conversation_id", "id"]), Index(fields=["external_message_id"])]


class ConversationActivity(WorkspaceScoped):
    """What happened to a conversation besides messages: the cursor of conversationEvents."""

    id = fields.BigIntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="activity", on_delete=fields.CASCADE
    )
    conversation_id: int
    kind = fields.CharEnumField(ActivityKind)
    actor_agent: fields.ForeignKeyNullableRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    actor_agent_id: int | None
    data: dict[str, Any] = fields.JSONField(default=dict)  # type: ignore[assignment]
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "conversation_activity"
        indexes = [Index(fields=["workspace_id", "id"])]


class ConversationTag(WorkspaceScoped):
    """A tag of a conversation (proactive messages tag the conversations they start)."""

    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="tags", on_delete=fields.CASCADE
    )
    conversation_id: int
    name = fields.CharField(max_length=64)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "conversation_tags"
        unique_together = (("conversation", "name"),)
        indexes = (Index(fields=("workspace_id", "name")),)


class FeedKind(StrEnum):
    """What an `inboxEvents` event is about (besides the activity kinds, which it shares)."""

    MESSAGE = "message"
    CREATED = "created"
    STATUS_CHANGED = "status_changed"
    ASSIGNED = "assigned"
    RATED = "rated"
    READ = "read"  # an agent read the conversation: its unread count is 0
    CONTACT_READ = "contact_read"  # the contact read the replies: they are READ
    DELIVERY = "delivery"  # an outbound message was sent, or failed
    NOTE = "note"
    TYPING = "typing"  # never stored
    TYPING_STOPPED = "typing_stopped"  # never stored


class InboxEvent(WorkspaceScoped):
    """The log of the inbox feed.

    Every stored `inboxEvents` event, as it was published; its id is the event's cursor,
    from which a client that reconnects catches up. Typing is not kept. Pruned after
    FEED_RETENTION_DAYS (services/inbox.py, jobs/inbox.py)."""

    id = fields.BigIntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name=False, on_delete=fields.CASCADE
    )
    conversation_id: int
    kind = fields.CharEnumField(FeedKind)
    data: dict[str, Any] = fields.JSONField(default=dict)  # type: ignore[assignment]
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "inbox_events"
        indexes = [Index(fields=["workspace_id", "id"]), Index(fields=["created_at"])]


class ConversationNote(WorkspaceScoped):
    """A private note of an agent in a conversation.

    A table of its own, so that nothing that reads messages (the widget, e-mail, SMS,
    webhooks) can ever show it to the contact."""

    id = fields.BigIntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="notes", on_delete=fields.CASCADE
    )
    conversation_id: int
    agent: fields.ForeignKeyNullableRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    agent_id: int | None
    # Card numbers are masked before this is written; search indexes it.
    body = fields.TextField()
    # The agents of the workspace it @mentions.
    mentioned_agent_ids: list[int] = fields.JSONField(default=list)  # type: ignore[assignment]
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "conversation_notes"
        indexes = [Index(fields=["conversation_id", "id"])]
