"""Routing and reports (issue 28, items 8-9): routing rules (models/routing.py), each agent's
routing capacity, the business-hours response and resolution seconds of conversations, and
the conversation indexes reports and routing read. Made by `tortoise makemigrations`."""

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0016_push")]

    initial = False

    operations = [
        ops.CreateModel(
            name="RoutingRule",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="routing_rules",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=120)),
                ("position", fields.IntField(default=0)),
                ("enabled", fields.BooleanField(default=True)),
                ("channel_ids", fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                (
                    "segment",
                    fields.ForeignKeyField(
                        "models.Segment",
                        source_field="segment_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("rules", fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads)),
                (
                    "team",
                    fields.ForeignKeyField(
                        "models.Team",
                        source_field="team_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("auto_assign", fields.BooleanField(default=True)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "routing_rules",
                "app": "models",
                "indexes": [Index(fields=["workspace_id", "position", "id"])],
                "pk_attr": "id",
                "table_description": "One rule. A workspace tries its rules in (position, id) order, and the first that",
            },
            bases=["Model"],
        ),
        ops.AddField(
            model_name="Agent",
            name="routing_capacity",
            field=fields.IntField(default=10),
        ),
        ops.AddField(
            model_name="Conversation",
            name="first_response_seconds",
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name="Conversation",
            name="resolution_seconds",
            field=fields.IntField(null=True),
        ),
        ops.AddIndex(
            model_name="Conversation",
            index=Index(fields=["workspace_id", "created_at"]),
        ),
        ops.AddIndex(
            model_name="Conversation",
            index=Index(fields=["assignee_id", "status"]),
        ),
    ]
