"""Bulk actions (issue 29, item 2): bulk_actions, and the job kinds of bulk actions and of a
contact's data export. Made by `tortoise makemigrations`."""

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.bulk import BulkActionKind
from models.job_records import JobKind


class Migration(migrations.Migration):
    dependencies = [("models", "0021_search")]

    initial = False

    operations = [
        ops.CreateModel(
            name="BulkAction",
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
                    "job",
                    fields.ForeignKeyField(
                        "models.Job",
                        source_field="job_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "action",
                    fields.CharEnumField(
                        description="TAG: tag\nUNTAG: untag\nSET_ATTRIBUTE: set_attribute\nASSIGN_CONVERSATIONS: assign_conversations\nRESOLVE_CONVERSATIONS: resolve_conversations\nBLOCK: block\nDELETE: delete",
                        enum_type=BulkActionKind,
                        max_length=32,
                    ),
                ),
                ("target", fields.JSONField(encoder=JSON_DUMPS, decoder=loads)),
                ("args", fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ("total", fields.BigIntField(default=0)),
                ("high_water", fields.BigIntField(default=0)),
                ("done", fields.BigIntField(default=0)),
                ("skipped", fields.BigIntField(default=0)),
                ("failed", fields.BigIntField(default=0)),
                ("heartbeat_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "bulk_actions",
                "app": "models",
                "indexes": [Index(fields=["workspace_id", "id"])],
                "pk_attr": "id",
            },
            bases=["WorkspaceScoped"],
        ),
        ops.AlterField(
            model_name="Job",
            name="kind",
            field=fields.CharEnumField(
                description="EXPORT: export\nATTRIBUTE_REPORT: attribute_report\nSEGMENT_REFRESH: segment_refresh\nWEBHOOK_DELIVERY: webhook_delivery\nCAMPAIGN: campaign\nSYNC: sync\nBULK_ACTION: bulk_action\nCONTACT_DATA_EXPORT: contact_data_export",
                enum_type=JobKind,
                max_length=32,
            ),
        ),
    ]
