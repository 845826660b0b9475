"""Outbound webhooks: the endpoints a workspace registers, each event delivered to each
endpoint, and every attempt at it (the delivery log)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.indexes import Index

from models.job_records import Job
from models.workspaces import WorkspaceScoped


class WebhookEventType(StrEnum):
    CONTACT_CREATED = "contact.created"
    CONTACT_UPDATED = "contact.updated"
    CONTACT_DELETED = "contact.deleted"
    # CRM-managed attributes an agent edited, sent when a conversation changes status.
    CONTACT_CRM_ATTRIBUTES_CHANGED = "contact.crm_attributes_changed"
    CONVERSATION_STATUS_CHANGED = "conversation.status_changed"
    SEGMENT_JOINED = "segment.joined"
    SEGMENT_LEFT = "segment.left"
    # Sent by pingWebhookEndpoint only; nobody subscribes to it.
    PING = "webhook.ping"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its first or next attempt
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # every attempt failed
    CANCELLED = "cancelled"  # its endpoint was disabled before it succeeded


class WebhookEndpoint(WorkspaceScoped):
    url = fields.CharField(max_length=2048)
    description = fields.CharField(max_length=200, null=True)
    # WebhookEventType values this endpoint receives.
    event_types: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    enabled = fields.BooleanField(default=True)
    # Signs every delivery. Shown once, when created or rotated.
    secret = fields.CharField(max_length=64)
    # Failed attempts since the last success; at settings.webhook_disable_after the
    # endpoint is disabled.
    consecutive_failures = fields.IntField(default=0)
    disabled_reason = fields.CharField(max_length=300, null=True)
    disabled_at = fields.DatetimeField(null=True)
    last_success_at = fields.DatetimeField(null=True)
    last_failure_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "webhook_endpoints"
        indexes = (Index(fields=("workspace_id", "enabled")),)


class WebhookDelivery(WorkspaceScoped):
    """One event for one endpoint, with its retries."""

    id = fields.BigIntField(primary_key=True)
    endpoint: fields.ForeignKeyRelation[WebhookEndpoint] = fields.ForeignKeyField(
        "models.WebhookEndpoint", related_name="deliveries", on_delete=fields.CASCADE
    )
    endpoint_id: int
    # The same for every endpoint and every attempt: receivers deduplicate by it.
    event_id = fields.CharField(max_length=40)
    event_type = fields.CharField(max_length=64)
    # The JSON body, posted as is.
    payload: dict[str, Any] = fields.JSONField(default=dict)  # type: ignore[assignment]
    # The contact the event is about, if one (not a foreign key: the contact.deleted event
    # outlives its contact): deleteContact finds the contact's deliveries by it.
    contact_id = fields.IntField(null=True)
    status = fields.CharEnumField(DeliveryStatus, default=DeliveryStatus.PENDING)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True)
    last_status_code = fields.IntField(null=True)
    last_error = fields.CharField(max_length=500, null=True)
    # Its job record (kind webhook_delivery), made at the first attempt.
    job: fields.ForeignKeyNullableRelation[Job] = fields.ForeignKeyField(
        "models.Job", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    job_id: int | None
    created_at = fields.DatetimeField()
    completed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_deliveries"
        indexes = (
            Index(fields=("endpoint_id", "id")),
            Index(fields=("status", "next_attempt_at")),
            Index(fields=("contact_id",)),
        )


class WebhookAttempt(WorkspaceScoped):
    """One POST of a delivery: what the receiver answered and how long it took."""

    id = fields.BigIntField(primary_key=True)
    delivery: fields.ForeignKeyRelation[WebhookDelivery] = fields.ForeignKeyField(
        "models.WebhookDelivery", related_name="attempt_log", on_delete=fields.CASCADE
    )
    delivery_id: int
    attempt = fields.IntField()
    status_code = fields.IntField(null=True)
    error = fields.CharField(max_length=500, null=True)
    duration_ms = fields.IntField()
    at = fields.DatetimeField()

    class Meta:
        table = "webhook_attempts"
        indexes = (Index(fields=("delivery_id", "attempt")),)
