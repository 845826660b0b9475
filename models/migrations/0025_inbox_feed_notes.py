"""Issue 28: the inbox feed's log (inbox_events, the cursors of inboxEvents) and private notes
(conversation_notes) (models/conversations.py). Made by `tortoise makemigrations`."""

import importlib
from typing import Any

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.conversations import FeedKind

# Notes are one more source of the search index (migration 0021's NOTE_SOURCE): the same
# triggers as messages keep their documents in step.
_search = importlib.import_module("models.migrations.0021_search")


async def _index_notes(apps: Any, schema_editor: Any) -> None:
    dialect = schema_editor.client.capabilities.dialect
    await _search.run(schema_editor.client, _search.source_triggers(dialect, _search.NOTE_SOURCE))


async def _unindex_notes(apps: Any, schema_editor: Any) -> None:
    dialect = schema_editor.client.capabilities.dialect
    await _search.run(schema_editor.client, _search.drop_source_triggers(dialect, _search.NOTE_SOURCE))


class Migration(migrations.Migration):
    dependencies = [("models", "0024_outreach")]

    initial = False

    operations = [
        ops.CreateModel(
            name="ConversationNote",
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
                        related_name="notes",
                        on_delete=OnDelete.CASCADE,
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
                ("body", fields.TextField(unique=False)),
                ("mentioned_agent_ids", fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "conversation_notes",
                "app": "models",
                "indexes": [Index(fields=["conversation_id", "id"])],
                "pk_attr": "id",
                "table_description": "A private note of an agent in a conversation.",
            },
            bases=["WorkspaceScoped"],
        ),
        ops.CreateModel(
            name="InboxEvent",
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
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "kind",
                    fields.CharEnumField(
                        description="MESSAGE: message\nCREATED: created\nSTATUS_CHANGED: status_changed\nASSIGNED: assigned\nRATED: rated\nREAD: read\nCONTACT_READ: contact_read\nDELIVERY: delivery\nNOTE: note\nTYPING: typing\nTYPING_STOPPED: typing_stopped",
                        enum_type=FeedKind,
                        max_length=14,
                    ),
                ),
                ("data", fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "inbox_events",
                "app": "models",
                "indexes": [Index(fields=["workspace_id", "id"]), Index(fields=["created_at"])],
                "pk_attr": "id",
                "table_description": "The log of the inbox feed.",
            },
            bases=["WorkspaceScoped"],
        ),
        ops.RunPython(_index_notes, _unindex_notes),
    ]
