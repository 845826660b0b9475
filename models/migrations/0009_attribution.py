from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0008_segment_member_order")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Workspace",
            name="attribution_window_hours",
            field=fields.IntField(default=24),
        ),
        ops.CreateModel(
            name="Receipt",
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
                ("source", fields.CharField(max_length=64)),
                ("sent_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("replied_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "outreach_receipts",
                "app": "models",
                "indexes": [Index(fields=["contact_id", "sent_at"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
    ]
