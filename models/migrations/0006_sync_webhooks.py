import functools
from json import dumps, loads

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.webhooks import DeliveryStatus


class Migration(migrations.Migration):
    dependencies = [("models", "0005_segment_indexes")]

    initial = False

    operations = [
        ops.CreateModel(
            name="ContactChangeHorizon",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.OneToOneField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("pruned_through", fields.BigIntField()),
                ("pruned_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "contact_change_horizons",
                "app": "models",
                "pk_attr": "id",
                "table_description": "The newest contact change pruned from a workspace log: a reader whose cursor is",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ContactSyncRequest",
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
                ("idempotency_key", fields.CharField(max_length=200)),
                ("request_hash", fields.CharField(max_length=64)),
                (
                    "results",
                    fields.JSONField(
                        default=list, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "contact_sync_requests",
                "app": "models",
                "unique_together": (("workspace", "idempotency_key"),),
                "indexes": [Index(fields=["created_at"])],
                "pk_attr": "id",
                "table_description": "A syncContacts call made with an idempotency key, and the results it answered.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="CrmPendingPush",
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
                    "contact",
                    fields.OneToOneField(
                        "models.Contact",
                        source_field="contact_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "attribute_keys",
                    fields.JSONField(
                        default=list, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
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
                ("edited_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "crm_pending_pushes",
                "app": "models",
                "pk_attr": "id",
                "table_description": "CRM-managed attributes of a contact that an agent edited, pushed to the CRM webhook",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="WebhookEndpoint",
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
                ("url", fields.CharField(max_length=2048)),
                ("description", fields.CharField(null=True, max_length=200)),
                (
                    "event_types",
                    fields.JSONField(
                        default=list, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("enabled", fields.BooleanField(default=True)),
                ("secret", fields.CharField(max_length=64)),
                ("consecutive_failures", fields.IntField(default=0)),
                ("disabled_reason", fields.CharField(null=True, max_length=300)),
                ("disabled_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("last_success_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("last_failure_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "webhook_endpoints",
                "app": "models",
                "indexes": [Index(fields=["workspace_id", "enabled"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="WebhookDelivery",
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
                    "endpoint",
                    fields.ForeignKeyField(
                        "models.WebhookEndpoint",
                        source_field="endpoint_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="deliveries",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("event_id", fields.CharField(max_length=40)),
                ("event_type", fields.CharField(max_length=64)),
                (
                    "payload",
                    fields.JSONField(
                        default=dict, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                (
                    "status",
                    fields.CharEnumField(
                        default=DeliveryStatus.PENDING,
                        description="PENDING: pending\nSUCCEEDED: succeeded\nFAILED: failed\nCANCELLED: cancelled",
                        enum_type=DeliveryStatus,
                        max_length=9,
                    ),
                ),
                ("attempts", fields.IntField(default=0)),
                ("next_attempt_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("last_status_code", fields.IntField(null=True)),
                ("last_error", fields.CharField(null=True, max_length=500)),
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
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("completed_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "webhook_deliveries",
                "app": "models",
                "indexes": [Index(fields=["endpoint_id", "id"]), Index(fields=["status", "next_attempt_at"])],
                "pk_attr": "id",
                "table_description": "One event for one endpoint, with its retries.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="WebhookAttempt",
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
                    "delivery",
                    fields.ForeignKeyField(
                        "models.WebhookDelivery",
                        source_field="delivery_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="attempt_log",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("attempt", fields.IntField()),
                ("status_code", fields.IntField(null=True)),
                ("error", fields.CharField(null=True, max_length=500)),
                ("duration_ms", fields.IntField()),
                ("at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "webhook_attempts",
                "app": "models",
                "indexes": [Index(fields=["delivery_id", "attempt"])],
                "pk_attr": "id",
                "table_description": "One POST of a delivery: what the receiver answered and how long it took.",
            },
            bases=["Model"],
        ),
    ]
