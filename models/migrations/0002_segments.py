import functools
from json import dumps, loads

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.segments import SegmentVisibility


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Segment",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="segments",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=120)),
                ("description", fields.CharField(default="", max_length=500)),
                (
                    "owner",
                    fields.ForeignKeyField(
                        "models.Agent",
                        source_field="owner_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "visibility",
                    fields.CharEnumField(
                        default=SegmentVisibility.PERSONAL,
                        description="PERSONAL: personal\nSHARED: shared\nEVERYONE: everyone",
                        enum_type=SegmentVisibility,
                        max_length=8,
                    ),
                ),
                (
                    "rules",
                    fields.JSONField(
                        default=dict, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("predefined_key", fields.CharField(null=True, max_length=32)),
                ("member_count", fields.IntField(default=0)),
                ("refreshed_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("refresh_seq", fields.BigIntField(default=0)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "segments",
                "app": "models",
                "indexes": [Index(fields=["workspace_id", "name"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="SegmentMembership",
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
                    "segment",
                    fields.ForeignKeyField(
                        "models.Segment",
                        source_field="segment_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="memberships",
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
                ("joined_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("joined_seq", fields.BigIntField(default=0)),
                ("left_seq", fields.BigIntField(null=True)),
            ],
            options={
                "table": "segment_memberships",
                "app": "models",
                "unique_together": (("segment", "contact"),),
                "indexes": [Index(fields=["contact_id"]), Index(fields=["segment_id", "joined_seq", "contact_id"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="SegmentShare",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "segment",
                    fields.ForeignKeyField(
                        "models.Segment",
                        source_field="segment_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="shares",
                        on_delete=OnDelete.CASCADE,
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
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
            ],
            options={
                "table": "segment_shares",
                "app": "models",
                "pk_attr": "id",
                "table_description": "One team or one agent a SHARED segment is shared with.",
            },
            bases=["Model"],
        ),
        ops.AlterField(
            model_name="Contact",
            name="last_seen_at",
            field=fields.DatetimeField(auto_now=False, auto_now_add=False),
        ),
    ]
