"""Campaigns and their recipients (models/campaigns.py). Written by hand."""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.campaigns import CampaignStatus, RecipientStatus, SkipReason


class Migration(migrations.Migration):
    dependencies = [("models", "0010_proactive")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Campaign",
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
                ("name", fields.CharField(max_length=200)),
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
                ("body", fields.TextField()),
                ("subject", fields.CharField(null=True, max_length=255)),
                (
                    "segment",
                    fields.ForeignKeyField(
                        "models.Segment",
                        source_field="segment_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "status",
                    fields.CharEnumField(default=CampaignStatus.SCHEDULED, enum_type=CampaignStatus, max_length=16),
                ),
                ("scheduled_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("audience_frozen_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                (
                    "job",
                    fields.ForeignKeyField(
                        "models.Job",
                        source_field="job_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "created_by",
                    fields.ForeignKeyField(
                        "models.Agent",
                        source_field="created_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("recipients", fields.IntField(default=0)),
                ("sent", fields.IntField(default=0)),
                ("skipped", fields.IntField(default=0)),
                ("replied", fields.IntField(default=0)),
                ("started_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("heartbeat_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("failed_runs", fields.IntField(default=0)),
                ("finished_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "campaigns",
                "app": "models",
                "indexes": [Index(fields=["workspace_id", "id"]), Index(fields=["status", "scheduled_at"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="CampaignRecipient",
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
                    "campaign",
                    fields.ForeignKeyField(
                        "models.Campaign",
                        source_field="campaign_id",
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
                    "status",
                    fields.CharEnumField(default=RecipientStatus.PENDING, enum_type=RecipientStatus, max_length=16),
                ),
                ("skip_reason", fields.CharEnumField(null=True, enum_type=SkipReason, max_length=32)),
                ("message_id", fields.BigIntField(null=True)),
                ("sent_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("next_attempt_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "campaign_recipients",
                "app": "models",
                "unique_together": (("campaign", "contact"),),
                "indexes": [Index(fields=["campaign_id", "status", "id"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
    ]
