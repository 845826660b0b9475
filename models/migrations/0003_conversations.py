import functools
from json import dumps, loads

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.channels import AutoResponderAudience
from models.conversations import ActivityKind, ConversationStatus, DeliveryState, Direction, SenderKind


class Migration(migrations.Migration):
    dependencies = [("models", "0002_segments")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Topic",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="topics",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=120)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={"table": "topics", "app": "models", "unique_together": (("workspace", "name"),), "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Conversation",
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
                    "contact",
                    fields.ForeignKeyField(
                        "models.Contact",
                        source_field="contact_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="conversations",
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
                (
                    "topic",
                    fields.ForeignKeyField(
                        "models.Topic",
                        source_field="topic_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("subject", fields.CharField(null=True, max_length=255)),
                (
                    "status",
                    fields.CharEnumField(
                        default=ConversationStatus.OPEN,
                        description="OPEN: open\nSNOOZED: snoozed\nRESOLVED: resolved",
                        enum_type=ConversationStatus,
                        max_length=8,
                    ),
                ),
                ("snoozed_until", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                (
                    "assignee",
                    fields.ForeignKeyField(
                        "models.Agent",
                        source_field="assignee_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "team",
                    fields.ForeignKeyField(
                        "models.Team",
                        source_field="team_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("vip", fields.BooleanField(default=False)),
                ("unread_count", fields.IntField(default=0)),
                ("contact_unread_count", fields.IntField(default=0)),
                ("rating", fields.SmallIntField(null=True)),
                ("rated_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("website_url", fields.CharField(null=True, max_length=2048)),
                ("ip", fields.CharField(null=True, max_length=45)),
                ("attributed_source", fields.CharField(null=True, max_length=64)),
                ("last_message_id", fields.BigIntField(null=True)),
                ("last_message_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("first_response_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("resolved_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "conversations",
                "app": "models",
                "indexes": [
                    Index(fields=["workspace_id", "vip", "last_message_at", "id"]),
                    Index(fields=["workspace_id", "status", "snoozed_until"]),
                    Index(fields=["contact_id", "created_at"]),
                    Index(fields=["workspace_id", "unread_count"]),
                ],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ConversationActivity",
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
                    "conversation",
                    fields.ForeignKeyField(
                        "models.Conversation",
                        source_field="conversation_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="activity",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "kind",
                    fields.CharEnumField(
                        description="CREATED: created\nSTATUS_CHANGED: status_changed\nASSIGNED: assigned\nRATED: rated",
                        enum_type=ActivityKind,
                        max_length=14,
                    ),
                ),
                (
                    "actor_agent",
                    fields.ForeignKeyField(
                        "models.Agent",
                        source_field="actor_agent_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "data",
                    fields.JSONField(
                        default=dict, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "conversation_activity",
                "app": "models",
                "indexes": [Index(fields=["workspace_id", "id"])],
                "pk_attr": "id",
                "table_description": "What happened to a conversation besides messages: the cursor of conversationEvents.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Message",
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
                    "conversation",
                    fields.ForeignKeyField(
                        "models.Conversation",
                        source_field="conversation_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="messages",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "sender_kind",
                    fields.CharEnumField(
                        description="CONTACT: contact\nAGENT: agent\nBOT: bot\nSYSTEM: system",
                        enum_type=SenderKind,
                        max_length=7,
                    ),
                ),
                (
                    "agent",
                    fields.ForeignKeyField(
                        "models.Agent",
                        source_field="agent_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "direction",
                    fields.CharEnumField(
                        description="INBOUND: inbound\nOUTBOUND: outbound", enum_type=Direction, max_length=8
                    ),
                ),
                ("body", fields.TextField(unique=False)),
                (
                    "delivery_state",
                    fields.CharEnumField(
                        default=DeliveryState.RECEIVED,
                        description="RECEIVED: received\nPENDING: pending\nSENT: sent\nFAILED: failed\nREAD: read",
                        enum_type=DeliveryState,
                        max_length=8,
                    ),
                ),
                ("delivery_error", fields.CharField(null=True, max_length=500)),
                ("external_message_id", fields.CharField(null=True, max_length=255)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "messages",
                "app": "models",
                "indexes": [Index(fields=["conversation_id", "id"]), Index(fields=["external_message_id"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.AddField(
            model_name="Channel",
            name="auto_responder_audience",
            field=fields.CharEnumField(
                default=AutoResponderAudience.EVERYONE,
                description="EVERYONE: everyone\nWITHOUT_SMS_CONSENT: without_sms_consent",
                enum_type=AutoResponderAudience,
                max_length=19,
            ),
        ),
        ops.AddField(
            model_name="Channel",
            name="auto_responder_enabled",
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name="Channel",
            name="auto_responder_text",
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name="Channel",
            name="business_hours",
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads),
        ),
        ops.AddField(
            model_name="Channel",
            name="default_sender",
            field=fields.CharField(null=True, max_length=254),
        ),
        ops.AddField(
            model_name="Channel",
            name="gateway_url",
            field=fields.CharField(null=True, max_length=2048),
        ),
        ops.AddField(
            model_name="Channel",
            name="help_reply",
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name="Channel",
            name="missed_chat_minutes",
            field=fields.IntField(default=5),
        ),
        ops.AddField(
            model_name="Channel",
            name="notify_emails",
            field=fields.JSONField(
                default=list, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
            ),
        ),
        ops.AddField(
            model_name="Channel",
            name="offline_notifications",
            field=fields.BooleanField(default=True),
        ),
        ops.AddField(
            model_name="Channel",
            name="updated_at",
            field=fields.DatetimeField(auto_now=True, auto_now_add=False),
        ),
    ]
