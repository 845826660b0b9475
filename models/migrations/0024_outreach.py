"""Outreach (issue 29, items 4, 5 and 7): each channel's CRM lookup URL and sealed secret,
the short links of outbound SMS, campaign recipients by message (a delivered SMS's links
name their campaign), and a campaign's topic. Made by `tortoise makemigrations`."""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0023_attachments")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Campaign",
            name="topic",
            field=fields.ForeignKeyField(
                "models.Topic",
                source_field="topic_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name=False,
                on_delete=OnDelete.SET_NULL,
            ),
        ),
        ops.CreateModel(
            name="ShortLink",
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
                ("code", fields.CharField(unique=True, max_length=32)),
                ("url", fields.CharField(max_length=2048)),
                (
                    "message",
                    fields.ForeignKeyField(
                        "models.Message",
                        source_field="message_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("position", fields.SmallIntField()),
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
                    "campaign",
                    fields.ForeignKeyField(
                        "models.Campaign",
                        source_field="campaign_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("clicks", fields.IntField(default=0)),
                ("last_clicked_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "short_links",
                "app": "models",
                "unique_together": (("message", "position"),),
                "indexes": [Index(fields=["campaign_id"]), Index(fields=["contact_id"])],
                "pk_attr": "id",
            },
            bases=["WorkspaceScoped"],
        ),
        ops.AddIndex(
            model_name="CampaignRecipient",
            index=Index(fields=["message_id"]),
        ),
        ops.AddField(
            model_name="Channel",
            name="crm_lookup_secret_sealed",
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name="Channel",
            name="crm_lookup_url",
            field=fields.CharField(null=True, max_length=2048),
        ),
    ]
