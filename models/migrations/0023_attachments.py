"""Attachments (issue 28, item 1): files of messages and each workspace's attachment policy
(models/attachments.py). Made by `tortoise makemigrations`."""

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0022_bulk")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Attachment",
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
                    "message",
                    fields.ForeignKeyField(
                        "models.Message",
                        source_field="message_id",
                        null=True,
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
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("uploader", fields.CharField(max_length=40)),
                ("filename", fields.CharField(max_length=255)),
                ("content_type", fields.CharField(max_length=127)),
                ("size", fields.BigIntField()),
                ("storage_key", fields.CharField(unique=True, max_length=255)),
                ("stored", fields.BooleanField(default=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "attachments",
                "app": "models",
                "indexes": [Index(fields=["message_id", "id"]), Index(fields=["contact_id"])],
                "pk_attr": "id",
                "table_description": "A file of a message. An upload waits with no message (`message_id` null) until a",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="AttachmentPolicy",
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
                ("max_bytes", fields.BigIntField()),
                ("content_types", fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "attachment_policies",
                "app": "models",
                "unique_together": (("workspace",),),
                "pk_attr": "id",
                "table_description": "The limits on attachments of one workspace. A workspace without one uses the",
            },
            bases=["Model"],
        ),
    ]
