"""Proactive messages, bots and bot answers, visits and deliveries; conversation tags."""

import functools
from json import dumps, loads

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.proactive import Frequency, ProactiveStatus, ResponseType, SendWindow

JSON = {"encoder": functools.partial(dumps, separators=(",", ":")), "decoder": loads}


class Migration(migrations.Migration):
    dependencies = [("models", "0009_attribution")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Bot",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=120)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={"table": "bots", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="BotAnswer",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "bot",
                    fields.ForeignKeyField(
                        "models.Bot",
                        source_field="bot_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="answers",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "channel",
                    fields.ForeignKeyField(
                        "models.Channel",
                        source_field="channel_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("name", fields.CharField(max_length=120)),
                ("body", fields.TextField(unique=False)),
                ("published", fields.BooleanField(default=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "bot_answers",
                "app": "models",
                "pk_attr": "id",
                "table_description": "One answer of a bot on one channel: the text the bot posts when it takes over.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ProactiveMessage",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=120)),
                (
                    "status",
                    fields.CharEnumField(
                        default=ProactiveStatus.DRAFT,
                        description="DRAFT: draft\nLIVE: live\nPAUSED: paused\nHAS_ERRORS: has_errors",
                        enum_type=ProactiveStatus,
                        max_length=10,
                    ),
                ),
                ("error", fields.CharField(null=True, max_length=500)),
                (
                    "channel",
                    fields.ForeignKeyField(
                        "models.Channel",
                        source_field="channel_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "response_type",
                    fields.CharEnumField(
                        default=ResponseType.AGENT,
                        description="AGENT: agent\nBOT: bot",
                        enum_type=ResponseType,
                        max_length=5,
                    ),
                ),
                ("text", fields.CharField(default="", max_length=500)),
                ("ask_name", fields.BooleanField(default=False)),
                ("ask_email", fields.BooleanField(default=False)),
                ("follow_up_text", fields.CharField(null=True, max_length=500)),
                (
                    "route_team",
                    fields.ForeignKeyField(
                        "models.Team",
                        source_field="route_team_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "bot_answer",
                    fields.ForeignKeyField(
                        "models.BotAnswer",
                        source_field="bot_answer_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("rules", fields.JSONField(default=dict, **JSON)),
                ("tags", fields.JSONField(default=list, **JSON)),
                (
                    "send_window",
                    fields.CharEnumField(
                        default=SendWindow.ANY_TIME,
                        description="BUSINESS_HOURS: business_hours\nANY_TIME: any_time",
                        enum_type=SendWindow,
                        max_length=14,
                    ),
                ),
                (
                    "frequency",
                    fields.CharEnumField(
                        default=Frequency.ONCE_PER_CONTACT,
                        description="ONCE_PER_CONTACT: once_per_contact\nONCE_PER_VISIT: once_per_visit\nEVERY_TIME: every_time",
                        enum_type=Frequency,
                        max_length=16,
                    ),
                ),
                ("template_key", fields.CharField(null=True, max_length=32)),
                ("sent", fields.IntField(default=0)),
                ("opened", fields.IntField(default=0)),
                ("replied", fields.IntField(default=0)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "proactive_messages",
                "app": "models",
                "indexes": [Index(fields=["workspace_id", "id"]), Index(fields=["channel_id", "status"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Visit",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "contact",
                    fields.ForeignKeyField(
                        "models.Contact",
                        source_field="contact_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "channel",
                    fields.ForeignKeyField(
                        "models.Channel",
                        source_field="channel_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("number", fields.IntField(default=1)),
                ("page_views", fields.IntField(default=0)),
                ("started_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("last_seen_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "visits",
                "app": "models",
                "indexes": [Index(fields=["contact_id", "channel_id", "last_seen_at"])],
                "pk_attr": "id",
                "table_description": "A contact's visit on a widget or SDK channel: page views with less than",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ProactiveDelivery",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "message",
                    fields.ForeignKeyField(
                        "models.ProactiveMessage",
                        source_field="message_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="deliveries",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "contact",
                    fields.ForeignKeyField(
                        "models.Contact",
                        source_field="contact_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "visit",
                    fields.ForeignKeyField(
                        "models.Visit",
                        source_field="visit_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("page_view", fields.IntField(default=0)),
                ("dedupe_key", fields.CharField(unique=True, max_length=96)),
                ("opened_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("dismissed_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("replied_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("conversation_id", fields.IntField(null=True)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "proactive_deliveries",
                "app": "models",
                "indexes": [Index(fields=["message_id", "contact_id"]), Index(fields=["contact_id", "id"])],
                "pk_attr": "id",
                "table_description": "One proactive message pushed to one contact, and what the contact did with it.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ConversationTag",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "conversation",
                    fields.ForeignKeyField(
                        "models.Conversation",
                        source_field="conversation_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="tags",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=64)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "conversation_tags",
                "app": "models",
                "unique_together": (("conversation", "name"),),
                "indexes": [Index(fields=["workspace_id", "name"])],
                "pk_attr": "id",
                "table_description": "A tag of a conversation (proactive messages tag the conversations they start).",
            },
            bases=["Model"],
        ),
    ]
