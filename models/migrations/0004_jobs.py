import functools
from json import dumps, loads

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.job_records import JobKind, JobStatus


class Migration(migrations.Migration):
    dependencies = [("models", "0003_conversations")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Job",
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
                    "kind",
                    fields.CharEnumField(
                        description="EXPORT: export\nATTRIBUTE_REPORT: attribute_report\nSEGMENT_REFRESH: segment_refresh\nWEBHOOK_DELIVERY: webhook_delivery\nCAMPAIGN: campaign\nSYNC: sync",
                        enum_type=JobKind,
                        max_length=32,
                    ),
                ),
                (
                    "status",
                    fields.CharEnumField(
                        default=JobStatus.QUEUED,
                        description="QUEUED: queued\nRUNNING: running\nSUCCEEDED: succeeded\nFAILED: failed\nCANCELLED: cancelled",
                        enum_type=JobStatus,
                        max_length=16,
                    ),
                ),
                (
                    "params",
                    fields.JSONField(
                        default=dict, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("processed", fields.BigIntField(default=0)),
                ("total", fields.BigIntField(null=True)),
                (
                    "result",
                    fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads),
                ),
                ("error", fields.TextField(null=True, unique=False)),
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
                    "api_key",
                    fields.ForeignKeyField(
                        "models.ApiKey",
                        source_field="api_key_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("seq", fields.BigIntField(default=0)),
                ("attempts", fields.IntField(default=0)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("started_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("finished_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "jobs",
                "app": "models",
                "indexes": [
                    Index(fields=["workspace_id", "id"]),
                    Index(fields=["workspace_id", "kind", "id"]),
                    Index(fields=["workspace_id", "status", "id"]),
                ],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
    ]
