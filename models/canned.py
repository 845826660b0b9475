"""Canned responses: saved replies an agent inserts by a short code, with placeholders
(domain/canned.py) filled from the conversation when used."""

from __future__ import annotations

from tortoise import fields
from tortoise.indexes import Index

from models.workspaces import Agent, WorkspaceScoped


class CannedResponse(WorkspaceScoped):
    # Who wrote it. A personal response is seen and used by its owner only; a shared one by
    # every agent of the workspace (owners and admins share and edit them).
    owner: fields.ForeignKeyNullableRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    owner_id: int | None
    shared = fields.BooleanField(default=False)
    # What the agent types to find it, e.g. "refund" (lower case letters, digits, - and _).
    shortcut = fields.CharField(max_length=32)
    body = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "canned_responses"
        indexes = [Index(fields=["workspace_id", "shortcut", "id"])]
