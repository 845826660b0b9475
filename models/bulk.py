"""Bulk actions (`startBulkAction`): one row per action, beside its job record. The
worker walks the target's contacts by id in keyset batches; `high_water` is the last
contact id a committed batch handled, written in the same transaction as the batch's
effects, so a worker that dies loses nothing and a restarted one touches no contact twice."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.indexes import Index

from models.job_records import Job
from models.workspaces import WorkspaceScoped


class BulkActionKind(StrEnum):
    TAG = "tag"
    UNTAG = "untag"
    SET_ATTRIBUTE = "set_attribute"
    ASSIGN_CONVERSATIONS = "assign_conversations"
    RESOLVE_CONVERSATIONS = "resolve_conversations"
    BLOCK = "block"
    DELETE = "delete"


class BulkAction(WorkspaceScoped):
    id = fields.BigIntField(primary_key=True)
    job: fields.ForeignKeyRelation[Job] = fields.ForeignKeyField(
        "models.Job", related_name=False, on_delete=fields.CASCADE
    )
    job_id: int
    action = fields.CharEnumField(BulkActionKind, max_length=32)
    # Which contacts: {"ids": [...]} or {"rules": {...}} (a segment's rules as they were
    # when the action started, with "segment_id"): plain data.
    target: dict[str, Any] = fields.JSONField()  # type: ignore[assignment]
    # The action's arguments, validated when it started: tags, attribute key and value, agent.
    args: dict[str, Any] = fields.JSONField(default=dict)  # type: ignore[assignment]
    total = fields.BigIntField(default=0)
    high_water = fields.BigIntField(default=0)
    done = fields.BigIntField(default=0)
    skipped = fields.BigIntField(default=0)
    failed = fields.BigIntField(default=0)
    # Set by each batch: a running action silent for BULK_STALE_SECONDS is resumed.
    heartbeat_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "bulk_actions"
        indexes = (Index(fields=("workspace_id", "id")),)
