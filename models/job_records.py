"""Job records: every background job (export, segment refresh, webhook delivery, campaign,
CRM sync) leaves one row with its kind, status, progress, result and error, so the API can
show it. services/job_records.py is the only writer."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.indexes import Index

from models.workspaces import Agent, ApiKey, WorkspaceScoped


class JobKind(StrEnum):
    EXPORT = "export"
    ATTRIBUTE_REPORT = "attribute_report"
    SEGMENT_REFRESH = "segment_refresh"
    WEBHOOK_DELIVERY = "webhook_delivery"
    CAMPAIGN = "campaign"
    SYNC = "sync"
    BULK_ACTION = "bulk_action"
    CONTACT_DATA_EXPORT = "contact_data_export"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(WorkspaceScoped):
    id = fields.BigIntField(primary_key=True)
    kind = fields.CharEnumField(JobKind, max_length=32)
    status = fields.CharEnumField(JobStatus, max_length=16, default=JobStatus.QUEUED)
    # What the job was asked to do (columns, segment id, endpoint id), as plain data.
    params: dict[str, Any] = fields.JSONField(default=dict)  # type: ignore[assignment]
    processed = fields.BigIntField(default=0)
    # Unknown until the job has counted its work.
    total = fields.BigIntField(null=True)
    result: dict[str, Any] | None = fields.JSONField(null=True)  # type: ignore[assignment]
    error = fields.TextField(null=True)
    # Who started it: an agent, an API key, or neither (the system).
    agent: fields.ForeignKeyNullableRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    agent_id: int | None
    api_key: fields.ForeignKeyNullableRelation[ApiKey] = fields.ForeignKeyField(
        "models.ApiKey", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    api_key_id: int | None
    # Bumped by every write: progress events carry it as their cursor.
    seq = fields.BigIntField(default=0)
    attempts = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "jobs"
        indexes = (
            Index(fields=("workspace_id", "id")),
            Index(fields=("workspace_id", "kind", "id")),
            Index(fields=("workspace_id", "status", "id")),
        )
