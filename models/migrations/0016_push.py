"""Mobile push (issue 30): devices, each SDK channel's provider credentials and the delivery
log (models/push.py). Made by `tortoise makemigrations`."""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.push import ApnsEnvironment, DevicePlatform, PushOutcome


class Migration(migrations.Migration):
    dependencies = [("models", "0015_identity_fields")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Device",
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
                    "platform",
                    fields.CharEnumField(
                        description="IOS: ios\nANDROID: android", enum_type=DevicePlatform, max_length=7
                    ),
                ),
                ("token", fields.CharField(max_length=512)),
                ("app_id", fields.CharField(max_length=255)),
                ("locale", fields.CharField(null=True, max_length=35)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "push_devices",
                "app": "models",
                "unique_together": (("workspace", "token"),),
                "indexes": [Index(fields=["contact_id", "id"])],
                "pk_attr": "id",
                "table_description": "A phone (an app install) that receives a contact's notifications. One token is one",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="PushAttempt",
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
                ("channel_id", fields.IntField()),
                ("device_id", fields.IntField()),
                ("contact_id", fields.IntField()),
                ("conversation_id", fields.IntField()),
                ("message_id", fields.BigIntField()),
                (
                    "platform",
                    fields.CharEnumField(
                        description="IOS: ios\nANDROID: android", enum_type=DevicePlatform, max_length=7
                    ),
                ),
                ("token_hint", fields.CharField(max_length=12)),
                ("attempt", fields.IntField()),
                (
                    "outcome",
                    fields.CharEnumField(
                        description="SENT: sent\nRETRYING: retrying\nFAILED: failed\nTOKEN_REMOVED: token_removed",
                        enum_type=PushOutcome,
                        max_length=13,
                    ),
                ),
                ("status_code", fields.IntField(null=True)),
                ("error", fields.CharField(null=True, max_length=300)),
                ("duration_ms", fields.IntField()),
                ("at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "push_attempts",
                "app": "models",
                "indexes": [Index(fields=["workspace_id", "id"]), Index(fields=["contact_id"])],
                "pk_attr": "id",
                "table_description": "One request to APNs or FCM for one device: what it answered (the delivery log).",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="PushConfig",
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
                    "channel",
                    fields.OneToOneField(
                        "models.Channel",
                        source_field="channel_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("apns_key_sealed", fields.TextField(null=True, unique=False)),
                ("apns_key_id", fields.CharField(null=True, max_length=10)),
                ("apns_team_id", fields.CharField(null=True, max_length=10)),
                ("apns_bundle_id", fields.CharField(null=True, max_length=255)),
                (
                    "apns_environment",
                    fields.CharEnumField(
                        default=ApnsEnvironment.PRODUCTION,
                        description="SANDBOX: sandbox\nPRODUCTION: production",
                        enum_type=ApnsEnvironment,
                        max_length=10,
                    ),
                ),
                ("fcm_account_sealed", fields.TextField(null=True, unique=False)),
                ("fcm_project_id", fields.CharField(null=True, max_length=100)),
                ("fcm_client_email", fields.CharField(null=True, max_length=255)),
                ("show_message_text", fields.BooleanField(default=False)),
                ("respect_quiet_hours", fields.BooleanField(default=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "push_configs",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A mobile SDK channel's push providers. The private parts (the .p8 key, the service",
            },
            bases=["Model"],
        ),
    ]
