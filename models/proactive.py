"""Proactive messages: what an admin publishes to a widget or SDK channel, the minimal bot
and bot answers a message can hand over to, the visits the widget reports, and one
delivery per message pushed to a contact."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.indexes import Index

from models.channels import Channel
from models.contacts import Contact
from models.workspaces import Team, WorkspaceScoped


class ProactiveStatus(StrEnum):
    DRAFT = "draft"
    LIVE = "live"
    PAUSED = "paused"
    # Was live; its channel or bot answer went away or became incompatible. Not sent.
    HAS_ERRORS = "has_errors"


class ResponseType(StrEnum):
    AGENT = "agent"  # a short text, optional name/e-mail request, follow-up, routing
    BOT = "bot"  # a published bot answer leads the conversation


class SendWindow(StrEnum):
    BUSINESS_HOURS = "business_hours"  # the channel's business hours
    ANY_TIME = "any_time"


class Frequency(StrEnum):
    ONCE_PER_CONTACT = "once_per_contact"
    ONCE_PER_VISIT = "once_per_visit"
    # Every time the conditions are met: at most once per page view.
    EVERY_TIME = "every_time"


class Bot(WorkspaceScoped):
    name = fields.CharField(max_length=120)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "bots"


class BotAnswer(WorkspaceScoped):
    """One answer of a bot on one channel: the text the bot posts when it takes over."""

    bot: fields.ForeignKeyRelation[Bot] = fields.ForeignKeyField(
        "models.Bot", related_name="answers", on_delete=fields.CASCADE
    )
    bot_id: int
    channel: fields.ForeignKeyNullableRelation[Channel] = fields.ForeignKeyField(
        "models.Channel", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    channel_id: int | None
    name = fields.CharField(max_length=120)
    body = fields.TextField()
    published = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "bot_answers"


class ProactiveMessage(WorkspaceScoped):
    name = fields.CharField(max_length=120)
    status = fields.CharEnumField(ProactiveStatus, default=ProactiveStatus.DRAFT)
    # Why it has errors (or what publishing would need), for the admin page.
    error = fields.CharField(max_length=500, null=True)
    # A deleted channel leaves the message (which then has errors).
    channel: fields.ForeignKeyNullableRelation[Channel] = fields.ForeignKeyField(
        "models.Channel", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    channel_id: int | None
    response_type = fields.CharEnumField(ResponseType, default=ResponseType.AGENT)
    # What the launcher shows. Agent responses: short, no emoji.
    text = fields.CharField(max_length=500, default="")
    ask_name = fields.BooleanField(default=False)
    ask_email = fields.BooleanField(default=False)
    follow_up_text = fields.CharField(max_length=500, null=True)
    # Agent responses go to this team's queue, or to the unassigned queue when null.
    route_team: fields.ForeignKeyNullableRelation[Team] = fields.ForeignKeyField(
        "models.Team", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    route_team_id: int | None
    bot_answer: fields.ForeignKeyNullableRelation[BotAnswer] = fields.ForeignKeyField(
        "models.BotAnswer", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    bot_answer_id: int | None
    # The rule tree as plain data (domain/proactive.py): {"match": "all", "conditions": [...], "groups": [...]}.
    rules: dict[str, Any] = fields.JSONField(default=dict)  # type: ignore[assignment]
    # Tags of the conversations it starts.
    tags: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    send_window = fields.CharEnumField(SendWindow, default=SendWindow.ANY_TIME)
    frequency = fields.CharEnumField(Frequency, default=Frequency.ONCE_PER_CONTACT)
    # Which predefined template it was created from (the three every workspace gets).
    template_key = fields.CharField(max_length=32, null=True)
    sent = fields.IntField(default=0)
    opened = fields.IntField(default=0)
    # Incremented by attribution (services/attribution.py), never here.
    replied = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "proactive_messages"
        indexes = (Index(fields=("workspace_id", "id")), Index(fields=("channel_id", "status")))


class Visit(WorkspaceScoped):
    """A contact's visit on a widget or SDK channel: page views with less than
    VISIT_TIMEOUT between them (domain/proactive.py)."""

    id = fields.BigIntField(primary_key=True)
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name=False, on_delete=fields.CASCADE
    )
    contact_id: int
    channel: fields.ForeignKeyRelation[Channel] = fields.ForeignKeyField(
        "models.Channel", related_name=False, on_delete=fields.CASCADE
    )
    channel_id: int
    # The contact's how-manyth visit (1 for a new visitor).
    number = fields.IntField(default=1)
    page_views = fields.IntField(default=0)
    started_at = fields.DatetimeField()
    last_seen_at = fields.DatetimeField()

    class Meta:
        table = "visits"
        indexes = (Index(fields=("contact_id", "channel_id", "last_seen_at")),)


class ProactiveDelivery(WorkspaceScoped):
    """One proactive message pushed to one contact, and what the contact did with it."""

    id = fields.BigIntField(primary_key=True)
    message: fields.ForeignKeyRelation[ProactiveMessage] = fields.ForeignKeyField(
        "models.ProactiveMessage", related_name="deliveries", on_delete=fields.CASCADE
    )
    message_id: int
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name=False, on_delete=fields.CASCADE
    )
    contact_id: int
    visit: fields.ForeignKeyNullableRelation[Visit] = fields.ForeignKeyField(
        "models.Visit", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    visit_id: int | None
    # The visit's page view it was sent on (EVERY_TIME sends at most once per page view).
    page_view = fields.IntField(default=0)
    # What the frequency allows once ("12:c7", "12:c7:v3", "12:c7:v3:p2"): two page views
    # racing cannot both deliver.
    dedupe_key = fields.CharField(max_length=96, unique=True)
    opened_at = fields.DatetimeField(null=True)
    dismissed_at = fields.DatetimeField(null=True)
    replied_at = fields.DatetimeField(null=True)
    conversation_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "proactive_deliveries"
        indexes = (Index(fields=("message_id", "contact_id")), Index(fields=("contact_id", "id")))
